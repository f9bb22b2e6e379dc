//! The README's "What the spans say" for the attributes only some messages have: a Kafka tombstone, a record
//! sent to a chosen partition, a literal RabbitMQ routing key. In memory: these are about the span, not the
//! broker.

use lapin::BasicProperties;
use opentelemetry::trace::SpanKind;
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::FutureRecord;
use suite::{attribute, attributes, expected, spans_to};

fn only(spans: Vec<SpanData>) -> SpanData {
    assert_eq!(spans.len(), 1, "one span: {spans:#?}");
    spans.into_iter().next().unwrap()
}

#[tracehop::traced_consumer(group = "compaction")]
fn on_change(message: &OwnedMessage) -> bool {
    rdkafka::Message::payload(message).is_none()
}

/// A message without payload (a tombstone, deleting its key from a compacted topic) is marked
/// `messaging.kafka.message.tombstone = true` and has no body size; a message with an empty payload is no
/// tombstone.
#[test]
fn a_message_without_payload_is_a_tombstone_and_an_empty_one_is_not() {
    suite::spans();
    let (tombstones, empties) = (suite::unique_topic("tombstones"), suite::unique_topic("empties"));
    let message = |topic: &str, payload: Option<Vec<u8>>| {
        OwnedMessage::new(
            payload,
            Some(b"customer-7".to_vec()),
            topic.to_owned(),
            Timestamp::NotAvailable,
            0,
            3,
            Some(OwnedHeaders::new()),
        )
    };
    assert!(on_change(&message(&tombstones, None)));
    assert!(!on_change(&message(&empties, Some(Vec::new()))));

    let common = |topic: &str| {
        vec![
            ("code.function.name", Value::from("span_attributes::on_change")),
            ("messaging.system", Value::from("kafka")),
            ("messaging.operation.type", Value::from("process")),
            ("messaging.operation.name", Value::from("process")),
            ("messaging.destination.name", Value::from(topic.to_owned())),
            ("messaging.destination.partition.id", Value::from("0")),
            ("messaging.kafka.offset", Value::I64(3)),
            ("messaging.kafka.message.key", Value::from("customer-7")),
            ("messaging.consumer.group.name", Value::from("compaction")),
            ("tracehop.context.rejected", Value::from("missing")),
        ]
    };
    let mut tombstone = common(&tombstones);
    tombstone.push(("messaging.kafka.message.tombstone", Value::Bool(true)));
    assert_eq!(attributes(&only(spans_to(&tombstones))), expected(&tombstone));
    let mut empty = common(&empties);
    empty.push(("messaging.message.body.size", Value::I64(0)));
    assert_eq!(attributes(&only(spans_to(&empties))), expected(&empty));
}

#[tracehop::traced_producer]
fn prepare(record: &mut FutureRecord<'_, str, str>) {
    let _ = record;
}

/// A record sent to a chosen partition says so on its PRODUCER span; one left to the partitioner does not.
#[test]
fn a_record_with_a_partition_records_it_and_one_without_does_not() {
    suite::spans();
    let (chosen, unchosen) = (suite::unique_topic("partitioned"), suite::unique_topic("unpartitioned"));
    prepare(&mut FutureRecord::to(&chosen).key("k").payload("{}").partition(3));
    prepare(&mut FutureRecord::to(&unchosen).key("k").payload("{}"));

    let partitioned = only(spans_to(&chosen));
    assert_eq!(partitioned.span_kind, SpanKind::Producer);
    let scope = &partitioned.instrumentation_scope;
    assert_eq!((scope.name(), scope.version()), ("tracehop", Some(env!("CARGO_PKG_VERSION"))));
    assert_eq!(scope.schema_url(), Some("https://opentelemetry.io/schemas/1.42.0"), "the schema the README names");
    assert_eq!(attribute(&partitioned, "messaging.destination.partition.id"), Some(Value::from("3")));
    let unpartitioned = only(spans_to(&unchosen));
    assert_eq!(attribute(&unpartitioned, "messaging.destination.partition.id"), None);
    assert_eq!(attribute(&unpartitioned, "messaging.kafka.message.key"), Some(Value::from("k")));
}

#[tracehop::traced_producer(destination = exchange, routing_key = "order.created")]
fn prepare_order(exchange: &str, properties: &mut BasicProperties) {
    let _ = (exchange, properties);
}

#[tracehop::traced_producer(destination = exchange, routing_key = "")]
fn prepare_unrouted(exchange: &str, properties: &mut BasicProperties) {
    let _ = (exchange, properties);
}

/// A literal `routing_key` option is recorded on the PRODUCER span; an empty one is not, as the conventions
/// ask.
#[test]
fn a_literal_routing_key_is_recorded_and_an_empty_one_is_not() {
    suite::spans();
    let (routed, unrouted) = (suite::unique_topic("routed"), suite::unique_topic("unrouted"));
    let mut properties = BasicProperties::default();
    prepare_order(&routed, &mut properties);
    assert!(properties.headers().as_ref().is_some_and(|headers| headers.inner().contains_key("traceparent")));
    prepare_unrouted(&unrouted, &mut BasicProperties::default());

    let span = only(spans_to(&routed));
    assert_eq!(span.name, format!("send {routed}"));
    assert_eq!(attribute(&span, "messaging.system"), Some(Value::from("rabbitmq")));
    assert_eq!(attribute(&span, "messaging.rabbitmq.destination.routing_key"), Some(Value::from("order.created")));
    assert_eq!(attribute(&only(spans_to(&unrouted)), "messaging.rabbitmq.destination.routing_key"), None);
}
