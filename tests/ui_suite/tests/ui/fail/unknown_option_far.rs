use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(colour = "red")]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
