#![deny(warnings)]

use rdkafka::message::{Message, OwnedMessage};

#[tracehop::traced_consumer(group = "inventory-service")]
pub fn on_orders(messages: &Vec<OwnedMessage>) -> usize {
    messages.iter().filter(|message| message.key().is_some()).count()
}

#[tracehop::traced_consumer(group = "inventory-service")]
pub async fn on_orders_async(messages: &Vec<OwnedMessage>) -> Result<usize, std::io::Error> {
    Ok(messages.len())
}

fn main() {}
