#![deny(warnings)]

use lapin::message::Delivery;
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};

// A new trace linked to the producer's span: messages from outside the trust boundary.
#[tracehop::traced_consumer(group = "inventory-service", parent = "link")]
pub async fn on_partner_order(message: &BorrowedMessage<'_>) -> Result<usize, std::io::Error> {
    Ok(message.payload().map_or(0, <[u8]>::len))
}

// A new trace, the incoming context ignored.
#[tracehop::traced_consumer(parent = "none")]
pub fn on_public_event(message: OwnedMessage) -> i64 {
    message.offset()
}

// The default, written out.
#[tracehop::traced_consumer(parent = "continue", group = "inventory")]
pub fn on_delivery(delivery: &Delivery) -> usize {
    delivery.data.len()
}

fn main() {}
