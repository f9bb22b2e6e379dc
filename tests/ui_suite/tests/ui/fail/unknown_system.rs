use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(system = "pulsar")]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
