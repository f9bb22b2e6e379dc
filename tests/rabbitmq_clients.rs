//! Traced RabbitMQ clients (`tracehop::clients`) against the real RabbitMQ server `scripts/test` starts: a
//! publish whose span lasts until the publisher confirm, a lapin `Consumer` stream whose deliveries come with
//! the CONSUMER span `#[traced_consumer]` would give them, and the proof that wrapper and macro spans are the same.

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer};
use opentelemetry::{global, Value};
use opentelemetry_sdk::trace::SpanData;
use suite::{attribute, attributes, declare_exchange, declare_queue, expected, next_delivery, spans_to, Shape};
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

// The same message, traced by the macros and by the clients.

#[tracehop::traced_producer(destination = exchange, routing_key = routing_key)]
async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    properties: BasicProperties,
) -> Result<Confirmation, lapin::Error> {
    channel
        .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), b"{}", properties)
        .await?
        .await
}

#[tracehop::traced_consumer(group = "inventory")]
async fn reserve(delivery: &Delivery) -> Result<bool, lapin::Error> {
    delivery.ack(BasicAckOptions::default()).await
}

/// The handlers the clients use, described as the macros describe `publish` and `reserve` above.
static PUBLISH: Handler = Handler::producer("rabbitmq_clients::publish");
static RESERVE_AS_MACRO: Handler = Handler::consumer("rabbitmq_clients::reserve").group("inventory");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn the_clients_and_the_macros_give_the_same_message_the_same_spans() {
    let channel = channel().await;
    let exchange = suite::unique_topic("client-same");
    let (macro_queue, client_queue) = (format!("{exchange}.macro"), format!("{exchange}.client"));
    // Fan-out: each queue gets every message; one is handled by the macro, the other by the stream adapter.
    declare_exchange(&channel, &exchange, ExchangeKind::Fanout, &[&macro_queue, &client_queue], "").await;
    let traced = TracedChannel::new(channel.clone()).with_handler(&PUBLISH);

    let request = global::tracer("api").start("POST /orders");
    let request = opentelemetry::Context::current_with_span(request);
    {
        let _current = request.clone().attach();
        let properties = || BasicProperties::default().with_message_id("m-1".into());
        publish(&channel, &exchange, "order.created", properties()).await.expect("sent by the macro");
        traced
            .basic_publish(&exchange, "order.created", BasicPublishOptions::default(), b"{}", properties())
            .await
            .expect("sent by the client");
    }
    request.span().end();

    // Each side on a channel of its own, so both see the same delivery tags.
    let macro_channel = suite::rabbitmq_channel().await;
    let mut client_deliveries = pin!(ConsumerTracing::new(&RESERVE_AS_MACRO).stream(consume(&client_queue).await));
    for _ in 0..2 {
        reserve(&next_delivery(&macro_channel, &macro_queue).await).await.expect("handled by the macro");
        next_traced(&mut client_deliveries)
            .await
            .process_async(|delivery| async move { delivery.ack(BasicAckOptions::default()).await })
            .await
            .expect("handled by the client");
    }

    let spans = spans_to(&exchange);
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let producers: Vec<&SpanData> = spans.iter().filter(|span| span.span_kind == SpanKind::Producer).collect();
    // The macro's publish and the client's: each continues the request and says the same of the message.
    let request_span = suite::finished_span(request.span().span_context().span_id());
    let producer_shape = Shape {
        name: format!("send {exchange}"),
        kind: SpanKind::Producer,
        child_of_origin: true,
        links_to_origin: Vec::new(),
        status: Status::Unset,
        attributes: expected(&[
            ("code.function.name", Value::from("rabbitmq_clients::publish")),
            ("messaging.system", Value::from("rabbitmq")),
            ("messaging.operation.type", Value::from("send")),
            ("messaging.operation.name", Value::from("send")),
            ("messaging.destination.name", Value::from(exchange.clone())),
            ("messaging.rabbitmq.destination.routing_key", Value::from("order.created")),
            ("messaging.message.id", Value::from("m-1")),
        ]),
    };
    let producer_shapes: Vec<Shape> = producers.iter().map(|span| suite::shape(span, &request_span)).collect();
    assert_eq!(producer_shapes, vec![producer_shape.clone(), producer_shape]);

    for producer in producers {
        let consumers: Vec<&SpanData> =
            spans.iter().filter(|span| span.parent_span_id == producer.span_context.span_id()).collect();
        assert_eq!(consumers.len(), 2, "the macro's and the adapter's: {consumers:#?}");
        let (first, second) = (suite::shape(consumers[0], producer), suite::shape(consumers[1], producer));
        assert_eq!(first, second);
        assert_eq!(first.kind, SpanKind::Consumer);
        assert!(first.child_of_origin && first.links_to_origin == vec![true], "{first:#?}");
    }
}
