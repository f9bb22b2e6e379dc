use rdkafka::producer::FutureRecord;

#[tracehop::traced_producer(parent = "link")]
pub fn prepare(record: &mut FutureRecord<'_, str, str>) {
    let _ = record;
}

fn main() {}
