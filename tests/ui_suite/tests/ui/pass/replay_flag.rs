#![deny(warnings)]

use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};

// A handler of replayed events: each span starts a new trace linked to the original one.
#[tracehop::traced_consumer(group = "reprocessing", replay)]
pub async fn on_replayed_order(message: &BorrowedMessage<'_>) -> Result<usize, std::io::Error> {
    Ok(message.payload().map_or(0, <[u8]>::len))
}

#[tracehop::traced_consumer(replay = true, group = "reprocessing")]
pub fn on_replayed_audit(message: OwnedMessage) -> i64 {
    message.offset()
}

// `replay` with an explicit parent policy, which wins over the replay default of "link".
#[tracehop::traced_consumer(replay, parent = "none")]
pub fn on_replayed_delivery(delivery: lapin::message::Delivery) -> usize {
    delivery.data.len()
}

fn main() {}
