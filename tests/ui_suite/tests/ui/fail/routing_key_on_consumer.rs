use lapin::message::Delivery;

#[tracehop::traced_consumer(routing_key = "order.created")]
pub fn on_order(delivery: &Delivery) {
    let _ = delivery;
}

fn main() {}
