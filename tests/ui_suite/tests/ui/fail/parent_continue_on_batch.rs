use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(group = "inventory-service", parent = "continue")]
pub fn on_orders(messages: &[OwnedMessage]) {
    let _ = messages;
}

fn main() {}
