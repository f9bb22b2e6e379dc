use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(group = "a", group = "b")]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
