use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(system = "rabbitmq")]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
