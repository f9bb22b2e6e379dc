use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(group = "reprocessing", replay)]
pub async fn on_replayed_orders(messages: Vec<OwnedMessage>) {
    let _ = messages;
}

fn main() {}
