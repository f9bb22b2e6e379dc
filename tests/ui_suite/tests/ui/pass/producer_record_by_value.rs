#![deny(warnings)]

use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord};

#[tracehop::traced_producer]
pub async fn publish(producer: &FutureProducer, record: FutureRecord<'_, str, str>) -> Result<(i32, i64), String> {
    producer
        .send(record, Duration::from_secs(5))
        .await
        .map(|delivery| (delivery.partition, delivery.offset))
        .map_err(|(error, _)| error.to_string())
}

#[tracehop::traced_producer]
pub fn publish_sync(producer: &BaseProducer, record: BaseRecord<'_, str, [u8]>) -> Result<(), String> {
    producer.send(record).map_err(|(error, _)| error.to_string())
}

fn main() {}
