#![deny(warnings)]

use rdkafka::message::{BorrowedMessage, OwnedMessage};
use rdkafka::producer::FutureRecord;

pub struct Order {
    pub id: u64,
    pub customer: String,
    pub coupon: Option<String>,
}

// `destination` as an expression over the parameters, a fixed span name, and attributes computed from a
// struct parameter, with dotted and quoted keys. An `Option` attribute that is `None` records nothing.
#[tracehop::traced_consumer(
    destination = topic,
    name = "reserve stock",
    group = "inventory-service",
    attributes(app.order.id = order.id, app.customer = order.customer, "app.order.coupon" = order.coupon),
)]
pub fn reserve(message: &OwnedMessage, topic: &str, order: &Order) -> Result<(), std::io::Error> {
    let _ = (message, topic, order);
    Ok(())
}

#[tracehop::traced_consumer(
    destination = format!("orders.{}", order.customer),
    attributes(app.order.id = order.id, app.order.customer_len = order.customer.len()),
)]
pub async fn reserve_async(message: &BorrowedMessage<'_>, order: Order) {
    let _ = (message, order);
}

#[tracehop::traced_producer(
    destination = "orders",
    name = "publish order",
    attributes(app.order.id = order.id, app.order.express = order.id > 100),
)]
pub fn prepare(record: &mut FutureRecord<'_, str, str>, order: &Order) {
    let _ = (record, order);
}

fn main() {}
