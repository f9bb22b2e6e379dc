//! A producer annotated with #[traced_producer] sends through the embedded Kafka broker, a consumer annotated
//! with #[traced_consumer] receives over loopback, and the in-memory exporter shows one trace.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status, Tracer};
use opentelemetry::{global, Value};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use suite::{attributes, expected, receive, spans_to, Broker};

#[tracehop::traced_producer]
async fn publish_order(producer: &FutureProducer, record: FutureRecord<'_, str, str>) -> Result<(i32, i64), String> {
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|delivery| (delivery.partition, delivery.offset))
        .map_err(|(error, _)| error.to_string())
}

#[tracehop::traced_consumer(group = "inventory-service")]
async fn reserve_inventory(message: &OwnedMessage) -> Result<usize, String> {
    // Spans the body starts, across an await, are children of the consumer span.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let _child = global::tracer("inventory").start("reserve stock");
    Ok(message.payload().map_or(0, <[u8]>::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_span_continues_the_producer_trace_across_the_broker() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("orders");
    broker.create_topic(&topic, 1);
    let producer = broker.producer();
    let consumer = broker.consumer("inventory-service", &topic);

    let record = FutureRecord::to(&topic).key("order-7").payload("{\"id\":7}");
    let (partition, offset) = publish_order(&producer, record).await.expect("published");
    let message = receive(&consumer).await;
    assert!(message.headers().is_some_and(|headers| headers.iter().any(|h| h.key == "traceparent")));
    let handled = reserve_inventory(&message).await;
    assert_eq!(handled, Ok(8), "the handler's value is passed through unchanged");

    let spans = spans_to(&topic);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let producer_span = spans.iter().find(|span| span.span_kind == SpanKind::Producer).expect("a producer span");
    let consumer_span = spans.iter().find(|span| span.span_kind == SpanKind::Consumer).expect("a consumer span");

    assert_eq!(producer_span.name, format!("send {topic}"));
    assert_eq!(consumer_span.name, format!("process {topic}"));
    assert_eq!(consumer_span.span_context.trace_id(), producer_span.span_context.trace_id());
    assert_eq!(consumer_span.parent_span_id, producer_span.span_context.span_id());
    assert!(consumer_span.parent_span_is_remote, "the producer's span is a remote parent");
    assert!(consumer_span.parent_span_is_remote);
    assert_eq!(consumer_span.links.links.len(), 1);
    assert_eq!(consumer_span.links.links[0].span_context.span_id(), producer_span.span_context.span_id());
    assert_eq!(consumer_span.links.links[0].span_context.trace_id(), producer_span.span_context.trace_id());
    assert_eq!(consumer_span.status, Status::Unset);
    assert_eq!(producer_span.status, Status::Unset);

    assert_eq!(
        attributes(producer_span),
        expected(&[
            ("code.function.name", Value::from("kafka_roundtrip::publish_order")),
            ("messaging.system", Value::from("kafka")),
            ("messaging.operation.type", Value::from("send")),
            ("messaging.operation.name", Value::from("send")),
            ("messaging.destination.name", Value::from(topic.clone())),
            ("messaging.kafka.message.key", Value::from("order-7")),
            ("messaging.message.body.size", Value::I64(8)),
        ])
    );
    assert_eq!(
        attributes(consumer_span),
        expected(&[
            ("code.function.name", Value::from("kafka_roundtrip::reserve_inventory")),
            ("messaging.system", Value::from("kafka")),
            ("messaging.operation.type", Value::from("process")),
            ("messaging.operation.name", Value::from("process")),
            ("messaging.destination.name", Value::from(topic.clone())),
            ("messaging.destination.partition.id", Value::from(partition.to_string())),
            ("messaging.kafka.offset", Value::I64(offset)),
            ("messaging.kafka.message.key", Value::from("order-7")),
            ("messaging.consumer.group.name", Value::from("inventory-service")),
            ("messaging.message.body.size", Value::I64(8)),
        ])
    );

    let child = suite::finished()
        .into_iter()
        .find(|span| {
            span.name == "reserve stock" && span.span_context.trace_id() == consumer_span.span_context.trace_id()
        })
        .expect("the body's span is exported in the same trace");
    assert_eq!(child.parent_span_id, consumer_span.span_context.span_id());
}
