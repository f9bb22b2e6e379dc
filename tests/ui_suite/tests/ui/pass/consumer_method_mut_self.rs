#![deny(warnings)]

use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};

pub struct Counter {
    bytes: usize,
    messages: u64,
}

impl Counter {
    #[tracehop::traced_consumer]
    pub fn on_order(&mut self, message: OwnedMessage) {
        self.messages += 1;
        self.bytes += message.payload().map_or(0, <[u8]>::len);
    }

    #[tracehop::traced_consumer]
    pub async fn on_order_async(&mut self, message: &BorrowedMessage<'_>) -> Result<(), std::io::Error> {
        self.messages += 1;
        self.bytes += message.payload_len();
        Ok(())
    }
}

fn main() {}
