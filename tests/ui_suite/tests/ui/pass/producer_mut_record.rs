#![deny(warnings)]

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

// A `mut` binding the body uses.
#[tracehop::traced_producer]
pub async fn publish(producer: &FutureProducer, mut record: FutureRecord<'_, str, str>) -> bool {
    record.partition = Some(0);
    producer.send(record, Duration::from_secs(5)).await.is_ok()
}

// A `mut` binding the body does not need: the span writes into it, so `unused_mut` does not fire.
#[tracehop::traced_producer]
pub fn publish_sync(mut record: FutureRecord<'_, str, str>) -> FutureRecord<'_, str, str> {
    record
}

fn main() {}
