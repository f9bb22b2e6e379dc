#![deny(warnings)]

use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};

#[tracehop::traced_consumer(group = "inventory")]
pub async fn on_order(delivery: &Delivery) -> Result<usize, String> {
    Ok(delivery.data.len())
}

#[tracehop::traced_consumer]
pub fn on_order_sync(delivery: Delivery) -> usize {
    delivery.data.len()
}

#[tracehop::traced_producer(destination = exchange, routing_key = routing_key)]
pub async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<(), lapin::Error> {
    channel
        .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), payload, properties)
        .await?
        .await?;
    Ok(())
}

#[tracehop::traced_producer(system = "rabbitmq", destination = "orders", routing_key = "order.created")]
pub async fn publish_built(channel: &Channel, payload: &[u8]) -> Result<(), lapin::Error> {
    let properties = tracehop::rabbitmq::trace_properties();
    channel
        .basic_publish("orders".into(), "order.created".into(), BasicPublishOptions::default(), payload, properties)
        .await?
        .await?;
    Ok(())
}

fn main() {}
