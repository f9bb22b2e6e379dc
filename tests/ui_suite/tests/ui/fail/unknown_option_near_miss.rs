use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(destinaton = "orders")]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
