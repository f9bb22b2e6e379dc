use async_nats::jetstream::Message;

#[tracehop::traced_consumer(group = "inventory")]
pub async fn on_order(message: Message) {
    let _ = message;
}

fn main() {}
