#![deny(warnings)]

use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};

// An error type with `Display`: its message is recorded on the span.
#[tracehop::traced_consumer]
pub fn parse(message: &OwnedMessage) -> Result<u64, std::num::ParseIntError> {
    let text = String::from_utf8_lossy(message.payload().unwrap_or_default());
    let id = text.trim().parse::<u64>()?;
    Ok(id)
}

// An error type without `Display` is accepted too: its `Err` is recorded without a message.
#[derive(Debug)]
pub enum Rejected {
    Empty,
}

#[tracehop::traced_consumer]
pub fn check(message: &OwnedMessage) -> Result<(), Rejected> {
    if message.payload().is_none() {
        return Err(Rejected::Empty);
    }
    Ok(())
}

#[tracehop::traced_consumer]
pub async fn parse_async(message: &BorrowedMessage<'_>) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let text = std::str::from_utf8(message.payload().unwrap_or_default())?;
    Ok(text.trim().parse::<u64>()?)
}

fn main() {}
