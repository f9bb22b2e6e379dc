#![deny(warnings)]

use rdkafka::message::{BorrowedMessage, Message};

// A batch of messages borrowed from the consumer: one CONSUMER span for the whole batch, linked to each
// message's producer.
#[tracehop::traced_consumer(group = "inventory-service")]
pub fn on_orders(messages: &[BorrowedMessage<'_>]) -> usize {
    messages.iter().filter_map(Message::payload).map(<[u8]>::len).sum()
}

#[tracehop::traced_consumer(group = "inventory-service", destination = "orders")]
pub async fn on_orders_async(messages: &[BorrowedMessage<'_>]) -> Result<usize, std::io::Error> {
    Ok(messages.len())
}

fn main() {}
