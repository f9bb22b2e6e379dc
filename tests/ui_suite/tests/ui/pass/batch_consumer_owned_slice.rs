#![deny(warnings)]

use rdkafka::message::{Message, OwnedMessage};

#[tracehop::traced_consumer(group = "inventory-service")]
pub fn on_orders(messages: &[OwnedMessage]) -> Vec<i64> {
    messages.iter().map(Message::offset).collect()
}

#[tracehop::traced_consumer(group = "inventory-service")]
pub async fn on_orders_async(messages: &[OwnedMessage]) -> Result<(), String> {
    if messages.is_empty() {
        return Err("empty batch".to_owned());
    }
    Ok(())
}

fn main() {}
