use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(destinaton = "orders", group = "a", colour = "red", group = "b")]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
