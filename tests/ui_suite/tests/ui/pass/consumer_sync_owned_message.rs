#![deny(warnings)]

use rdkafka::message::{Message, OwnedMessage};

// The message taken by value, in a sync handler: the body still owns it and may move it away.
#[tracehop::traced_consumer]
pub fn on_order(message: OwnedMessage) -> Option<OwnedMessage> {
    if message.payload().is_none() {
        return None;
    }
    Some(message)
}

// A mutable binding of the message is the body's own business.
#[tracehop::traced_consumer(group = "audit")]
pub fn on_audit(mut message: OwnedMessage) -> OwnedMessage {
    message = message.clone();
    message
}

fn main() {}
