use rdkafka::message::OwnedMessage;

pub struct OrderId(u64);

#[tracehop::traced_consumer(attributes(app.order.id = order))]
pub fn on_order(message: &OwnedMessage, order: OrderId) {
    let _ = (message, order.0);
}

fn main() {}
