#![deny(warnings)]

use rdkafka::message::{Message, OwnedMessage};

// The batch taken by value: the body still owns the messages and may move them away.
#[tracehop::traced_consumer(group = "inventory-service")]
pub fn on_orders(messages: Vec<OwnedMessage>) -> Vec<OwnedMessage> {
    messages.into_iter().filter(|message| message.payload().is_some()).collect()
}

#[tracehop::traced_consumer(group = "inventory-service")]
pub async fn on_orders_async(mut messages: Vec<OwnedMessage>) -> Option<OwnedMessage> {
    messages.pop()
}

fn main() {}
