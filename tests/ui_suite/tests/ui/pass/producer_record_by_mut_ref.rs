#![deny(warnings)]

use rdkafka::producer::{BaseRecord, FutureRecord};

// The caller keeps the record; the span writes its context into it before the body runs.
#[tracehop::traced_producer]
pub fn prepare(record: &mut FutureRecord<'_, str, str>) {
    record.partition = Some(0);
}

#[tracehop::traced_producer(destination = "orders")]
pub async fn prepare_async(record: &mut BaseRecord<'_, str, str>) -> usize {
    record.payload.map_or(0, str::len)
}

fn main() {}
