use rdkafka::message::OwnedMessage;

pub struct Order {
    pub id: u64,
    pub bytes: Vec<u8>,
}

#[tracehop::traced_consumer(attributes(app.order.id = order.id, app.order.bytes = order.bytes))]
pub fn on_order(message: &OwnedMessage, order: &Order) {
    let _ = (message, order);
}

fn main() {}
