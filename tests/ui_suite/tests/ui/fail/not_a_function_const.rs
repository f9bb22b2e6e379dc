#[tracehop::traced_producer(destination = "orders")]
pub const ORDERS_TOPIC: &str = "orders";

fn main() {}
