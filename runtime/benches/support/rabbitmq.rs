//! The RabbitMQ side of `per_message`: a delivery that is the twin of a Kafka bench message (the same trace
//! contexts, `tracestate` values and application headers), the same delivery as a dead-letter queue receives it
//! after RabbitMQ dead-lettered it (`x-death` and the `x-first-death-*` headers), and tracehop's consumer path on it.

use std::hint::black_box;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::BasicProperties;
use rdkafka::message::{Headers, Message as _, OwnedMessage};
use tracehop::{Handler, MessageSpan};

/// The handler of the RabbitMQ paths: the Kafka one's names, but its own static, so that nothing one broker's case
/// caches on its handler serves the other's.
pub static RABBITMQ_CONSUMER: Handler = Handler::consumer("bench::on_order").group("inventory-service");

/// A delivery from exchange `orders` with routing key `order.created`, with `message`'s body and headers (as long
/// strings, as tracehop and most clients write them) and its key as the AMQP `message-id`.
pub fn rabbitmq_twin(message: &OwnedMessage) -> Delivery {
    let mut table = FieldTable::default();
    for header in message.headers().iter().flat_map(|headers| headers.iter()) {
        table.insert(header.key.into(), AMQPValue::LongString(LongString::from(header.value.unwrap_or_default())));
    }
    let mut delivery =
        Delivery::mock(1, "orders".into(), "order.created".into(), false, message.payload().unwrap_or_default().into());
    let id = std::str::from_utf8(message.key().unwrap_or_default()).expect("the bench messages' keys are text");
    delivery.properties = BasicProperties::default().with_message_id(id.into()).with_headers(table);
    delivery
}

/// [`rabbitmq_twin`] as the dead-letter queue of `orders.work` receives it, once a consumer rejected it there: from
/// the dead-letter exchange `orders.dlx`, with the headers RabbitMQ adds.
pub fn dead_letter_twin(message: &OwnedMessage) -> Delivery {
    let mut delivery = rabbitmq_twin(message);
    let long = |text: &str| AMQPValue::LongString(text.into());
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(1));
    death.insert("exchange".into(), long("orders"));
    death.insert("queue".into(), long("orders.work"));
    death.insert("reason".into(), long("rejected"));
    death.insert("routing-keys".into(), AMQPValue::FieldArray(FieldArray::from(vec![long("order.created")])));
    death.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert("x-death".into(), AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])));
    headers.insert("x-first-death-exchange".into(), long("orders"));
    headers.insert("x-first-death-queue".into(), long("orders.work"));
    headers.insert("x-first-death-reason".into(), long("rejected"));
    delivery.exchange = "orders.dlx".into();
    delivery.properties = delivery.properties.with_headers(headers);
    delivery
}

/// What `#[traced_consumer(group = "inventory-service")]` does for one delivery.
pub fn tracehop_rabbitmq_consumer(delivery: &Delivery) {
    MessageSpan::consumer(&RABBITMQ_CONSUMER, delivery).start().run(|| black_box(()))
}

/// The handler the broker benches consume RabbitMQ deliveries with, traced (the twin of `support::handle_traced`).
#[tracehop::traced_consumer(group = "bench")]
pub fn handle_traced_delivery(delivery: &Delivery) {
    black_box(&delivery.data);
}

/// [`handle_traced_delivery`] without tracehop.
pub fn handle_untraced_delivery(delivery: &Delivery) {
    black_box(&delivery.data);
}
