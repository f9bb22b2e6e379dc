use rdkafka::message::{BorrowedMessage, OwnedMessage};

#[tracehop::traced_consumer]
pub fn on_orders(batch: &[OwnedMessage], trigger: &BorrowedMessage<'_>) {
    let _ = (batch, trigger);
}

fn main() {}
