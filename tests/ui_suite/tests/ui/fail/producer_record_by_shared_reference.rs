use rdkafka::producer::{BaseProducer, BaseRecord};

#[tracehop::traced_producer]
pub fn publish(producer: &BaseProducer, record: &BaseRecord<'_, str, str>) {
    let _ = (producer, record);
}

fn main() {}
