#![deny(warnings)]

use rdkafka::message::{BorrowedMessage, OwnedMessage};

#[tracehop::traced_consumer]
pub fn implicit_unit(message: &OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_consumer]
pub fn explicit_unit(message: &OwnedMessage) -> () {
    let _ = message;
}

#[tracehop::traced_consumer]
pub fn early_return(message: &OwnedMessage) {
    if rdkafka::Message::payload(message).is_none() {
        return;
    }
}

#[tracehop::traced_consumer]
pub async fn async_unit(message: &BorrowedMessage<'_>) {
    let _ = message;
}

#[tracehop::traced_consumer]
pub async fn async_early_return(message: &BorrowedMessage<'_>) {
    if rdkafka::Message::payload(message).is_none() {
        return;
    }
}

fn main() {}
