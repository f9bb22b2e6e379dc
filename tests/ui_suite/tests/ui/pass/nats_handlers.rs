#![deny(warnings)]

use async_nats::jetstream;
use async_nats::{Client, HeaderMap, Message};

#[tracehop::traced_consumer(group = "inventory")]
pub async fn on_order(message: &Message) -> Result<usize, String> {
    Ok(message.payload.len())
}

#[tracehop::traced_consumer(destination = "orders.*")]
pub fn on_any_order(message: Message) -> usize {
    message.payload.len()
}

#[tracehop::traced_consumer]
pub async fn on_stored_order(message: jetstream::Message) -> Result<(), async_nats::Error> {
    tracehop::clients::nats::ack(&message).await
}

#[tracehop::traced_consumer(group = "analytics")]
pub fn on_stored_orders(messages: Vec<jetstream::Message>) -> usize {
    messages.len()
}

#[tracehop::traced_producer(destination = subject)]
pub async fn publish(client: &Client, subject: &str, headers: HeaderMap, payload: &[u8]) -> Result<(), String> {
    let subject = subject.to_owned();
    client.publish_with_headers(subject, headers, payload.to_vec().into()).await.map_err(|error| error.to_string())
}

#[tracehop::traced_producer(system = "nats", destination = "orders.created")]
pub async fn publish_built(client: &Client, payload: &[u8]) -> Result<(), String> {
    let headers = tracehop::nats::trace_headers();
    client
        .publish_with_headers("orders.created", headers, payload.to_vec().into())
        .await
        .map_err(|error| error.to_string())
}

fn main() {}
