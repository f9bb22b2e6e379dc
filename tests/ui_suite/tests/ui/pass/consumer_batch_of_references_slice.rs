#![deny(warnings)]

use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer]
pub fn on_orders(messages: &[&OwnedMessage]) {
    let _ = messages;
}

fn main() {}
