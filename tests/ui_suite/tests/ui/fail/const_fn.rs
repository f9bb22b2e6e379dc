use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer]
pub const fn on_order(message: &OwnedMessage) -> usize {
    let _ = message;
    0
}

fn main() {}
