#![deny(warnings)]

use std::fmt;

use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};

#[derive(Debug)]
pub struct MyError(String);

impl fmt::Display for MyError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for MyError {}

impl From<std::str::Utf8Error> for MyError {
    fn from(error: std::str::Utf8Error) -> Self {
        MyError(error.to_string())
    }
}

// An `anyhow`-like alias that shadows `std`'s `Result` in this module.
pub type Result<T> = std::result::Result<T, MyError>;

#[tracehop::traced_consumer]
pub fn on_order(message: &OwnedMessage) -> Result<String> {
    let text = std::str::from_utf8(message.payload().unwrap_or_default())?;
    Ok(text.to_owned())
}

#[tracehop::traced_consumer]
pub async fn on_order_async(message: &BorrowedMessage<'_>) -> Result<()> {
    if message.payload().is_none() {
        return Err(MyError("empty".to_owned()));
    }
    Ok(())
}

fn main() {}
