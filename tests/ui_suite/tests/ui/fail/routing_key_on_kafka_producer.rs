use rdkafka::producer::{BaseProducer, BaseRecord};

#[tracehop::traced_producer(routing_key = "order.created")]
pub fn publish(producer: &BaseProducer, record: BaseRecord<'_, str, str>) {
    let _ = producer.send(record);
}

fn main() {}
