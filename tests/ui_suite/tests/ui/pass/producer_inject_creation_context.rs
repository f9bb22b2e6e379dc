#![deny(warnings)]

use rdkafka::producer::{BaseProducer, BaseRecord};

// One PRODUCER span for several records, each given its own creation context. No record parameter, and the
// suite enables both broker features, so `system` says which broker this is.
#[tracehop::traced_producer(system = "kafka", destination = "orders")]
pub fn publish_all(producer: &BaseProducer, orders: &[String]) -> Result<(), String> {
    for order in orders {
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to("orders").key(order.as_str()).payload(order.as_str());
        tracehop::inject_creation_context(&mut record);
        producer.send(record).map_err(|(error, _)| error.to_string())?;
    }
    Ok(())
}

fn main() {}
