#![deny(warnings)]

use lapin::message::Delivery;

// A batch of RabbitMQ deliveries, by the full path of the type.
#[tracehop::traced_consumer(group = "inventory")]
pub fn on_orders(deliveries: &[lapin::message::Delivery]) -> usize {
    deliveries.iter().map(|delivery| delivery.data.len()).sum()
}

#[tracehop::traced_consumer(group = "inventory")]
pub async fn on_orders_async(deliveries: &[Delivery]) -> Result<usize, String> {
    Ok(deliveries.len())
}

fn main() {}
