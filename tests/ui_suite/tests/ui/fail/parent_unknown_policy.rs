use rdkafka::message::BorrowedMessage;

#[tracehop::traced_consumer(parent = "sideways")]
pub fn on_order(message: &BorrowedMessage<'_>) {
    let _ = message;
}

fn main() {}
