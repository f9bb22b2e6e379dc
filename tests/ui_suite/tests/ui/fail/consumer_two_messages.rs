use rdkafka::message::{BorrowedMessage, OwnedMessage};

#[tracehop::traced_consumer]
pub async fn on_orders(first: &BorrowedMessage<'_>, second: OwnedMessage) {
    let _ = (first, second);
}

fn main() {}
