#![deny(warnings)]

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

// No record parameter: the body builds the record and puts the span's context into its headers.
#[tracehop::traced_producer(system = "kafka", destination = "orders")]
pub async fn publish(producer: &FutureProducer, order_id: u64) -> Result<(), String> {
    let payload = format!("{{\"id\":{order_id}}}");
    let record: FutureRecord<'_, str, str> = FutureRecord::to("orders")
        .payload(payload.as_str())
        .headers(tracehop::kafka::trace_headers());
    producer
        .send(record, Duration::from_secs(5))
        .await
        .map(|_| ())
        .map_err(|(error, _)| error.to_string())
}

#[tracehop::traced_producer(system = "kafka", destination = "orders")]
pub fn build(order_id: &str) -> FutureRecord<'_, str, str> {
    FutureRecord::to("orders")
        .key(order_id)
        .headers(tracehop::kafka::trace_headers())
}

fn main() {}
