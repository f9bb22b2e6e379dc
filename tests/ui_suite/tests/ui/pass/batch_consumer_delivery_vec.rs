#![deny(warnings)]

use lapin::message::Delivery;

#[tracehop::traced_consumer(group = "inventory")]
pub fn on_orders(deliveries: Vec<Delivery>) -> Vec<Vec<u8>> {
    deliveries.into_iter().map(|delivery| delivery.data).collect()
}

#[tracehop::traced_consumer(group = "inventory", destination = "orders")]
pub async fn on_orders_async(deliveries: Vec<Delivery>) -> Result<usize, String> {
    Ok(deliveries.len())
}

fn main() {}
