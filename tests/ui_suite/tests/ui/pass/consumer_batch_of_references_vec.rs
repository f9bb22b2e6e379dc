#![deny(warnings)]

use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer]
pub fn on_orders(messages: Vec<&OwnedMessage>) {
    let _ = messages;
}

fn main() {}
