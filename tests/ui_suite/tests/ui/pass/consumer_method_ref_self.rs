#![deny(warnings)]

use std::collections::HashSet;

use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};

pub struct Inventory {
    known: HashSet<String>,
}

impl Inventory {
    #[tracehop::traced_consumer(group = "inventory-service")]
    pub fn on_order(&self, message: &OwnedMessage) -> bool {
        message
            .key()
            .and_then(|key| std::str::from_utf8(key).ok())
            .is_some_and(|key| self.known.contains(key))
    }

    #[tracehop::traced_consumer(group = "inventory-service")]
    pub async fn on_order_async(&self, message: &BorrowedMessage<'_>) -> usize {
        self.known.len() + message.payload().map_or(0, <[u8]>::len)
    }
}

fn main() {}
