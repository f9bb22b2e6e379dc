use lapin::message::Delivery;

#[tracehop::traced_consumer(group = "inventory")]
pub fn on_delivery(delivery: &Delivery) {
    let _ = delivery;
}

fn main() {}
