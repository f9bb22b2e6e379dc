use async_nats::jetstream;

#[tracehop::traced_consumer(group = "inventory")]
pub async fn on_order(message: jetstream::Message) {
    let _ = message;
}

fn main() {}
