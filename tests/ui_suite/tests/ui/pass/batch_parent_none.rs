#![deny(warnings)]

use rdkafka::message::{BorrowedMessage, OwnedMessage};

// A batch span that ignores every message's context: no links, the headers not even read.
#[tracehop::traced_consumer(group = "inventory-service", parent = "none")]
pub fn on_orders(messages: &[BorrowedMessage<'_>]) -> usize {
    messages.len()
}

// "link" is what a batch does anyway; writing it is allowed.
#[tracehop::traced_consumer(parent = "link")]
pub async fn on_orders_async(messages: Vec<OwnedMessage>) -> usize {
    messages.len()
}

fn main() {}
