//! Traced RabbitMQ clients (`tracehop::clients`) against the real RabbitMQ server `scripts/test` starts: a
//! publish whose span lasts until the publisher confirm, a lapin `Consumer` stream whose deliveries come with
//! the CONSUMER span `#[traced_consumer]` would give them. That wrapper and macro spans are the same is shown on
//! every broker by `tests/shared_behaviour.rs`.

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId};
use opentelemetry::Value;
use suite::{attribute, attributes, declare_exchange, declare_queue, expected, next_delivery, spans_to};
use tracehop::clients::rabbitmq::TracedChannel;
use tracehop::clients::{ConsumerTracing, TracedMessage};
use tracehop::Handler;

const PUBLISH_FUNCTION: &str = "tracehop::clients::rabbitmq::TracedChannel::basic_publish";

static RESERVE: Handler = Handler::consumer("rabbitmq_clients::deliveries_loop").group("inventory");

async fn channel() -> Channel {
    suite::spans();
    let channel = suite::rabbitmq_channel().await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    channel
}

/// A lapin consumer of `queue`, on a channel of its own.
async fn consume(queue: &str) -> lapin::Consumer {
    let channel = suite::rabbitmq_channel().await;
    channel
        .basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("basic.consume")
}

async fn next_traced(
    deliveries: &mut (impl futures_util::Stream<Item = lapin::Result<TracedMessage<Delivery>>> + Unpin),
) -> TracedMessage<Delivery> {
    tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await
        .expect("a delivery within 10 seconds")
        .expect("the stream goes on")
        .expect("no AMQP error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn traced_channel_span_lasts_until_the_publisher_confirm_and_carries_its_context_beside_the_users_headers() {
    let channel = channel().await;
    let exchange = suite::unique_topic("client-direct");
    let queue = format!("{exchange}.inventory");
    declare_exchange(&channel, &exchange, ExchangeKind::Direct, &[&queue], "order.created").await;
    let traced = TracedChannel::new(channel.clone());

    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString(LongString::from("acme")));
    let properties = BasicProperties::default()
        .with_message_id("m-1".into())
        .with_correlation_id("c-9".into())
        .with_headers(headers);
    let confirmation = traced
        .basic_publish(&exchange, "order.created", BasicPublishOptions::default(), b"{\"id\":1}", properties)
        .await
        .expect("published");
    assert_eq!(confirmation, Confirmation::Ack(None));

    let producer = suite::the_span(&spans_to(&exchange), SpanKind::Producer);
    assert_eq!(producer.name, format!("send {exchange}"));
    assert_eq!(producer.parent_span_id, SpanId::INVALID);
    assert_eq!(producer.status, Status::Unset);
    assert_eq!(
        attributes(&producer),
        expected(&[
            ("code.function.name", Value::from(PUBLISH_FUNCTION)),
            ("messaging.system", Value::from("rabbitmq")),
            ("messaging.operation.type", Value::from("send")),
            ("messaging.operation.name", Value::from("send")),
            ("messaging.destination.name", Value::from(exchange.clone())),
            ("messaging.rabbitmq.destination.routing_key", Value::from("order.created")),
            ("messaging.message.id", Value::from("m-1")),
            ("messaging.message.conversation_id", Value::from("c-9")),
        ])
    );
    let delivery = next_delivery(&channel, &queue).await;
    let headers = delivery.properties.headers().as_ref().expect("headers").inner();
    let traceparent = format!("00-{}-{}-01", producer.span_context.trace_id(), producer.span_context.span_id());
    assert_eq!(headers.get("traceparent"), Some(&AMQPValue::LongString(LongString::from(traceparent))));
    assert_eq!(headers.get("tenant"), Some(&AMQPValue::LongString(LongString::from("acme"))), "the user's header");
    delivery.ack(BasicAckOptions::default()).await.expect("ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_publish_the_broker_refuses_is_recorded_as_an_error_on_the_producer_span() {
    let channel = channel().await;
    let missing = suite::unique_topic("client-no-such-exchange");
    let traced = TracedChannel::new(channel);

    let error = traced
        .basic_publish(&missing, "k", BasicPublishOptions::default(), b"{}", BasicProperties::default())
        .await
        .expect_err("the broker closes the channel: no such exchange");

    let producer = suite::the_span(&spans_to(&missing), SpanKind::Producer);
    assert_eq!(producer.status, Status::error(error.to_string()));
    assert!(error.to_string().contains("NOT_FOUND"), "{error}");
    assert_eq!(attribute(&producer, "error.type"), Some(Value::from("lapin::error::Error")));
    assert_eq!(producer.events.events[0].name, "exception");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_mandatory_message_returned_as_unroutable_is_recorded_as_an_error() {
    let channel = channel().await;
    let exchange = suite::unique_topic("client-unroutable");
    declare_exchange(&channel, &exchange, ExchangeKind::Direct, &[], "").await;
    let traced = TracedChannel::new(channel);

    let mandatory = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
    let confirmation = traced
        .basic_publish(&exchange, "nowhere", mandatory, b"{}", BasicProperties::default())
        .await
        .expect("confirmed");
    assert!(matches!(confirmation, Confirmation::Ack(Some(_))), "returned: {confirmation:?}");

    let producer = suite::the_span(&spans_to(&exchange), SpanKind::Producer);
    assert_eq!(producer.status, Status::error("the broker returned the message as unroutable"));
    assert_eq!(attribute(&producer, "error.type"), Some(Value::from("returned")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn the_consumer_stream_adapter_continues_the_producers_trace_and_leaves_the_ack_to_the_caller() {
    let channel = channel().await;
    let exchange = suite::unique_topic("client-stream");
    let queue = format!("{exchange}.inventory");
    declare_exchange(&channel, &exchange, ExchangeKind::Direct, &[&queue], "order.created").await;
    let properties = BasicProperties::default().with_message_id("m-2".into());
    TracedChannel::new(channel.clone())
        .basic_publish(&exchange, "order.created", BasicPublishOptions::default(), b"{}", properties)
        .await
        .expect("published");

    let mut deliveries = pin!(ConsumerTracing::new(&RESERVE).stream(consume(&queue).await));
    let delivery = next_traced(&mut deliveries).await;
    let tag = delivery.message().delivery_tag;
    let (seen, acked) = delivery
        .process_async(|delivery| async move {
            let seen = opentelemetry::Context::current().span().span_context().span_id();
            // The caller settles the message; tracehop never does.
            let acked = delivery.ack(BasicAckOptions::default()).await;
            Ok::<_, lapin::Error>((seen, acked.is_ok()))
        })
        .await
        .expect("handled");
    assert!(acked);

    let spans = spans_to(&exchange);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let producer = suite::the_span(&spans, SpanKind::Producer);
    let consumer = suite::the_span(&spans, SpanKind::Consumer);
    suite::assert_child_of(&consumer, &producer);
    assert_eq!(seen, consumer.span_context.span_id(), "the future ran with the span current");
    assert_eq!(consumer.name, format!("process {exchange}"));
    assert_eq!(
        attributes(&consumer),
        expected(&[
            ("code.function.name", Value::from("rabbitmq_clients::deliveries_loop")),
            ("messaging.system", Value::from("rabbitmq")),
            ("messaging.operation.type", Value::from("process")),
            ("messaging.operation.name", Value::from("process")),
            ("messaging.destination.name", Value::from(exchange.clone())),
            ("messaging.consumer.group.name", Value::from("inventory")),
            ("messaging.rabbitmq.destination.routing_key", Value::from("order.created")),
            ("messaging.rabbitmq.message.delivery_tag", Value::I64(tag as i64)),
            ("messaging.message.id", Value::from("m-2")),
            ("messaging.message.body.size", Value::I64(2)),
        ])
    );
}

/// Through the default exchange, whose spans name it `amq.default`: the consumer and receive spans of a message
/// with a malformed context. (The same through a named exchange, on every broker: `tests/shared_behaviour.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_malformed_traceparent_through_the_consumer_stream_gives_a_new_root() {
    let channel = channel().await;
    let queue = suite::unique_topic("client-malformed");
    declare_queue(&channel, &queue).await;
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(LongString::from("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0")),
    );
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"plain",
            BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("basic.publish")
        .await
        .expect("confirmed");

    let mut deliveries = pin!(ConsumerTracing::new(&RESERVE).with_receive_spans().stream(consume(&queue).await));
    let span_id = next_traced(&mut deliveries)
        .await
        .process_with_outcome(|_| opentelemetry::Context::current().span().span_context().span_id(), |_, _| {});

    let span = suite::finished().into_iter().find(|span| span.span_context.span_id() == span_id).expect("exported");
    assert_eq!(span.name, "process amq.default");
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert_ne!(span.span_context.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
    assert!(span.links.links.is_empty());
    assert_eq!(attribute(&span, "tracehop.context.rejected"), Some(Value::from("traceparent_wrong_length")));
    let receive = suite::finished()
        .into_iter()
        .find(|span| {
            span.span_kind == SpanKind::Client
                && attribute(span, "messaging.rabbitmq.destination.routing_key") == Some(Value::from(queue.clone()))
        })
        .expect("the receive span");
    assert_eq!(receive.name, "receive amq.default");
    assert!(receive.links.links.is_empty(), "no valid context to link to");
    assert_eq!(attribute(&receive, "messaging.operation.type"), Some(Value::from("receive")));
}
