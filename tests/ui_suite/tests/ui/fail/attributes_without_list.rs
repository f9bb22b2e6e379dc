use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(attributes = 5)]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
