//! The same macros over lapin, against the real RabbitMQ server `scripts/test` starts: fan-out through a fanout
//! exchange, messages from plain clients through the default exchange, every AMQP header type, properties built in
//! the body. What every broker shares (one trace from a #[traced_producer] publish to a #[traced_consumer] handler,
//! a handler's error and panic left for the caller to settle, a batch of deliveries, ...) is in
//! `tests/shared_behaviour.rs`.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use suite::{attribute, declare_exchange, declare_queue, next_delivery, spans_to};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tracehop::traced_producer(destination = exchange, routing_key = routing_key)]
async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<(), lapin::Error> {
    channel
        .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), payload, properties)
        .await?
        .await?;
    Ok(())
}

/// Publishes as a plain client would, bypassing tracehop: exactly `properties`, no trace context added.
async fn publish_plain(channel: &Channel, exchange: &str, routing_key: &str, properties: BasicProperties) {
    channel
        .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), b"plain", properties)
        .await
        .expect("basic.publish")
        .await
        .expect("confirmed");
}

#[tracehop::traced_consumer(group = "inventory")]
async fn reserve(delivery: &Delivery) -> Result<usize, String> {
    Ok(delivery.data.len())
}

fn producer_and_consumers(destination: &str, consumers: usize) -> (SpanData, Vec<SpanData>) {
    let spans = spans_to(destination);
    assert_eq!(spans.len(), 1 + consumers, "{spans:#?}");
    let producer = spans.iter().find(|span| span.span_kind == SpanKind::Producer).expect("a producer span").clone();
    let consumers = spans.into_iter().filter(|span| span.span_kind == SpanKind::Consumer).collect();
    (producer, consumers)
}

fn assert_child_of(consumer: &SpanData, producer: &SpanData) {
    assert_eq!(consumer.span_context.trace_id(), producer.span_context.trace_id());
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    assert!(consumer.parent_span_is_remote, "the producer's span is a remote parent");
    assert!(consumer.parent_span_is_remote);
    assert_eq!(consumer.links.links.len(), 1);
    assert_eq!(consumer.links.links[0].span_context.span_id(), producer.span_context.span_id());
}

async fn channel() -> Channel {
    suite::spans();
    let channel = suite::rabbitmq_channel().await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    channel
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn fanout_exchange_with_three_queues_gives_three_children_of_one_producer_span() {
    let channel = channel().await;
    let exchange = suite::unique_topic("orders-fanout");
    let queues: Vec<String> =
        ["inventory", "payment", "notification"].iter().map(|q| format!("{exchange}.{q}")).collect();
    let queue_names: Vec<&str> = queues.iter().map(String::as_str).collect();
    declare_exchange(&channel, &exchange, ExchangeKind::Fanout, &queue_names, "").await;

    publish(&channel, &exchange, "", b"{}", BasicProperties::default()).await.expect("published");
    for queue in &queues {
        let delivery = next_delivery(&channel, queue).await;
        reserve(&delivery).await.expect("handled");
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }

    let (producer, consumers) = producer_and_consumers(&exchange, 3);
    for consumer in &consumers {
        assert_child_of(consumer, &producer);
        assert_eq!(attribute(consumer, "messaging.rabbitmq.destination.routing_key"), None, "empty routing key");
    }
    let span_ids: std::collections::HashSet<SpanId> =
        consumers.iter().map(|consumer| consumer.span_context.span_id()).collect();
    assert_eq!(span_ids.len(), 3);
}

#[tracehop::traced_consumer]
fn handle_plain(delivery: &Delivery) -> (TraceId, SpanId) {
    use opentelemetry::trace::TraceContextExt;
    let context = opentelemetry::Context::current();
    let span = context.span();
    let _ = delivery;
    (span.span_context().trace_id(), span.span_context().span_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn default_exchange_message_from_a_plain_client_without_headers_starts_a_new_root() {
    let channel = channel().await;
    let queue = suite::unique_topic("plain-queue");
    declare_queue(&channel, &queue).await;
    publish_plain(&channel, "", &queue, BasicProperties::default()).await;

    let delivery = next_delivery(&channel, &queue).await;
    assert!(delivery.properties.headers().is_none(), "a plain client sends no headers at all");
    let (trace_id, span_id) = handle_plain(&delivery);
    delivery.ack(BasicAckOptions::default()).await.expect("ack");

    let span = suite::finished()
        .into_iter()
        .find(|span| span.span_context.span_id() == span_id)
        .expect("the consumer span is exported");
    assert_eq!(span.span_context.trace_id(), trace_id);
    assert_eq!(span.name, "process amq.default");
    assert_eq!(span.span_kind, SpanKind::Consumer);
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert!(span.links.links.is_empty());
    assert_eq!(attribute(&span, "messaging.destination.name"), Some(Value::from("")), "the default exchange's name");
    assert_eq!(attribute(&span, "messaging.rabbitmq.destination.routing_key"), Some(Value::from(queue.clone())));
    assert_eq!(attribute(&span, "tracehop.context.rejected"), Some(Value::from("missing")));
}

/// What crosses RabbitMQ: a `traceparent` in a long string or a byte array is continued; a long int or a boolean
/// is unreadable. The third string type, the short string, is read the same way (the runtime's unit test
/// `string_and_byte_values_are_read_as_bytes_and_others_are_unreadable`) but cannot cross RabbitMQ: its
/// field-table codec takes the AMQP 0-9-1 short-string tag `s` for a 16-bit integer and closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn long_strings_and_byte_arrays_carry_the_context_across_rabbitmq_and_other_types_are_unreadable() {
    let channel = channel().await;
    let queue = suite::unique_topic("header-types");
    declare_queue(&channel, &queue).await;
    let cases: Vec<(&str, AMQPValue, Option<&str>)> = vec![
        ("long string", AMQPValue::LongString(LongString::from(TRACEPARENT)), None),
        ("byte array", AMQPValue::ByteArray(ByteArray::from(TRACEPARENT.as_bytes().to_vec())), None),
        ("long int", AMQPValue::LongInt(42), Some("traceparent_unreadable")),
        ("boolean", AMQPValue::Boolean(true), Some("traceparent_unreadable")),
    ];
    for (name, value, _) in &cases {
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), value.clone());
        let properties = BasicProperties::default().with_message_id((*name).into()).with_headers(headers);
        publish_plain(&channel, "", &queue, properties).await;
    }

    for (name, value, rejection) in &cases {
        let delivery = next_delivery(&channel, &queue).await;
        assert_eq!(delivery.properties.message_id().as_ref().map(ShortString::as_str), Some(*name));
        let received = delivery.properties.headers().as_ref().and_then(|headers| headers.inner().get("traceparent"));
        assert_eq!(received, Some(value), "{name}: the broker kept the header's AMQP type");
        let (_, span_id) = handle_plain(&delivery);
        delivery.ack(BasicAckOptions::default()).await.expect("ack");

        let span = suite::finished()
            .into_iter()
            .find(|span| span.span_context.span_id() == span_id)
            .expect("the consumer span is exported");
        assert_eq!(attribute(&span, "messaging.message.id"), Some(Value::from(name.to_string())));
        match rejection {
            None => {
                assert_eq!(
                    span.span_context.trace_id(),
                    TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                    "{name}"
                );
                assert_eq!(span.parent_span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap(), "{name}");
                assert!(span.parent_span_is_remote, "the producer's span is a remote parent");
                assert_eq!(attribute(&span, "tracehop.context.rejected"), None, "{name}");
            }
            Some(rejection) => {
                assert_eq!(span.parent_span_id, SpanId::INVALID, "{name}");
                assert_ne!(
                    span.span_context.trace_id(),
                    TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
                );
                assert_eq!(attribute(&span, "tracehop.context.rejected"), Some(Value::from(*rejection)), "{name}");
            }
        }
    }
}

#[tracehop::traced_producer(system = "rabbitmq", destination = "", routing_key = queue)]
async fn publish_built_in_body(channel: &Channel, queue: &str) -> Result<(), lapin::Error> {
    let properties = tracehop::rabbitmq::with_trace_context(BasicProperties::default().with_message_id("built".into()));
    channel.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), b"b", properties).await?.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn producer_building_properties_in_the_body_propagates_through_the_default_exchange() {
    let channel = channel().await;
    let queue = suite::unique_topic("built-queue");
    declare_queue(&channel, &queue).await;
    publish_built_in_body(&channel, &queue).await.expect("published");
    let delivery = next_delivery(&channel, &queue).await;
    let (trace_id, span_id) = handle_plain(&delivery);
    delivery.ack(BasicAckOptions::default()).await.expect("ack");

    let spans = suite::spans_of_trace(trace_id);
    let producer = spans.iter().find(|span| span.span_kind == SpanKind::Producer).expect("the producer span");
    let consumer = spans.iter().find(|span| span.span_context.span_id() == span_id).expect("the consumer span");
    assert_child_of(consumer, producer);
    assert_eq!(producer.name, "send amq.default");
    assert_eq!(consumer.name, "process amq.default");
    assert_eq!(attribute(producer, "messaging.destination.name"), Some(Value::from("")));
    assert_eq!(attribute(producer, "messaging.rabbitmq.destination.routing_key"), Some(Value::from(queue.clone())));
    assert_eq!(attribute(producer, tracehop::CONTEXT_INJECTED_ATTRIBUTE), None);
    assert_eq!(attribute(consumer, "messaging.message.id"), Some(Value::from("built")));
}
