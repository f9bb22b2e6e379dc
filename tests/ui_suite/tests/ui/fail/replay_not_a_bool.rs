use rdkafka::message::BorrowedMessage;

#[tracehop::traced_consumer(replay = "yes")]
pub fn on_replayed_order(message: &BorrowedMessage<'_>) {
    let _ = message;
}

fn main() {}
