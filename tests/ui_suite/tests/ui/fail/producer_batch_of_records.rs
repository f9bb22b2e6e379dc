use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

#[tracehop::traced_producer]
pub async fn publish_all(producer: &FutureProducer, records: Vec<FutureRecord<'_, str, str>>) {
    for record in records {
        let _ = producer.send(record, Duration::from_secs(5)).await;
    }
}

fn main() {}
