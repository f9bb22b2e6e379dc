#![deny(warnings)]
//! Headers to capture (names and patterns), headers to leave out and the attempt header, on Kafka and RabbitMQ
//! handlers, single and batch.

use lapin::message::Delivery;
use rdkafka::message::{BorrowedMessage, OwnedMessage};

#[tracehop::traced_consumer(capture_headers("x-tenant", "x-request-*", "x-region-??"), exclude_headers("x-request-body"))]
pub async fn on_order(message: &BorrowedMessage<'_>) {
    let _ = message;
}

#[tracehop::traced_consumer(group = "billing", attempt_header = "x-retry-count", capture_headers("Authorization"))]
pub fn on_retry(message: OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_consumer(capture_headers("*"), exclude_headers("x-internal-*", "x-debug"))]
pub async fn on_delivery(delivery: &Delivery) {
    let _ = delivery;
}

#[tracehop::traced_consumer(attempt_header = "x-retry-count", capture_headers("x-tenant"))]
pub fn on_batch(messages: &[OwnedMessage]) {
    let _ = messages;
}

fn main() {}
