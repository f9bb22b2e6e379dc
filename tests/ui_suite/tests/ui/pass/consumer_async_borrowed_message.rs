#![deny(warnings)]

use rdkafka::message::{BorrowedMessage, Message};

#[tracehop::traced_consumer(group = "inventory-service")]
pub async fn on_order(message: &BorrowedMessage<'_>) -> Result<usize, std::io::Error> {
    Ok(message.payload().map_or(0, <[u8]>::len))
}

fn main() {}
