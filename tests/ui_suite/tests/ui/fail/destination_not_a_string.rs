use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(destination = partition + 1)]
pub fn on_order(message: &OwnedMessage, partition: i32) {
    let _ = (message, partition);
}

fn main() {}
