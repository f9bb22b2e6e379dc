use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(message = mesage)]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_consumer(message = "message")]
pub fn on_order_quoted(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
