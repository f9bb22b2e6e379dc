#![deny(warnings)]

use rdkafka::producer::{BaseProducer, BaseRecord, FutureRecord};

#[tracehop::traced_producer(destination = record.topic, attributes(app.key = record.key))]
pub fn prepare(record: &mut FutureRecord<'_, str, str>) {
    record.partition = Some(0);
}

#[tracehop::traced_producer(attributes(app.key = record.key, app.partition = record.partition))]
pub fn publish(producer: &BaseProducer, record: BaseRecord<'_, str, str>) -> Result<(), String> {
    producer.send(record).map_err(|(error, _)| error.to_string())
}

fn main() {}
