//! The shapes of handler #[traced_consumer] and #[traced_producer] accept, and what each records: sync and
//! async, free functions and methods, generic handlers, errors, panics, body-built headers, options. A sync
//! handler's error and panic on every broker: `tests/shared_behaviour.rs`.

use std::time::Duration;

use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{global, Context, KeyValue, Value};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use suite::{attribute, receive, spans_to, Broker};

#[derive(Debug, PartialEq)]
struct OrderError(&'static str);

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "order rejected: {}", self.0)
    }
}

#[tracehop::traced_producer]
async fn publish(producer: &FutureProducer, record: FutureRecord<'_, str, str>) {
    producer.send(record, Duration::from_secs(10)).await.expect("the broker accepts the message");
}

async fn published_message(broker: &Broker, topic: &str, group: &str, payload: &str) -> OwnedMessage {
    broker.create_topic(topic, 1);
    let consumer = broker.consumer(group, topic);
    publish(&broker.producer(), FutureRecord::to(topic).key("k").payload(payload)).await;
    receive(&consumer).await
}

fn producer_and_consumer(topic: &str) -> (opentelemetry_sdk::trace::SpanData, opentelemetry_sdk::trace::SpanData) {
    let spans = spans_to(topic);
    let producer = spans.iter().find(|span| span.span_kind == SpanKind::Producer).expect("a producer span").clone();
    let consumer = spans.iter().find(|span| span.span_kind == SpanKind::Consumer).expect("a consumer span").clone();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    (producer, consumer)
}

fn assert_child_of(consumer: &opentelemetry_sdk::trace::SpanData, producer: &opentelemetry_sdk::trace::SpanData) {
    assert_eq!(consumer.span_context.trace_id(), producer.span_context.trace_id());
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    assert!(consumer.parent_span_is_remote, "the producer's span is a remote parent");
    assert_eq!(consumer.links.links.len(), 1);
    assert_eq!(consumer.links.links[0].span_context.span_id(), producer.span_context.span_id());
}

#[tracehop::traced_consumer(group = "billing")]
fn bill_sync(message: &BorrowedMessage<'_>) -> Result<i64, OrderError> {
    let _child = global::tracer("billing").start("charge card");
    Ok(message.offset())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_handler_on_a_borrowed_message_runs_in_a_child_span() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("sync");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("billing", &topic);
    publish(&broker.producer(), FutureRecord::to(&topic).key("k").payload("p")).await;
    let message = tokio::time::timeout(Duration::from_secs(30), rdkafka::consumer::StreamConsumer::recv(&consumer))
        .await
        .expect("a message")
        .expect("no Kafka error");
    assert_eq!(bill_sync(&message), Ok(message.offset()));

    let (producer, consumer_span) = producer_and_consumer(&topic);
    assert_child_of(&consumer_span, &producer);
    assert_eq!(attribute(&consumer_span, "messaging.consumer.group.name"), Some(Value::from("billing")));
    let child = suite::spans_of_trace(producer.span_context.trace_id())
        .into_iter()
        .find(|span| span.name == "charge card")
        .expect("the sync body's span is in the trace");
    assert_eq!(child.parent_span_id, consumer_span.span_context.span_id());
}

struct Warehouse {
    name: &'static str,
}

impl Warehouse {
    #[tracehop::traced_consumer(group = "warehouse", attributes(app.warehouse = self.name))]
    async fn on_order(&self, message: OwnedMessage) -> Result<(), OrderError> {
        let _ = message;
        Err(OrderError("out of stock"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_handler_err_marks_the_span_failed_and_returns_the_error() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("method");
    let message = published_message(&broker, &topic, "warehouse", "order").await;
    let warehouse = Warehouse { name: "north" };

    assert_eq!(warehouse.on_order(message).await, Err(OrderError("out of stock")));

    let (producer, consumer) = producer_and_consumer(&topic);
    assert_child_of(&consumer, &producer);
    assert_eq!(consumer.status, Status::error("order rejected: out of stock"));
    assert_eq!(attribute(&consumer, "error.type"), Some(Value::from("kafka_handlers::OrderError")));
    assert_eq!(attribute(&consumer, "app.warehouse"), Some(Value::from("north")));
    assert_eq!(consumer.events.events.len(), 1);
    let exception = &consumer.events.events[0];
    assert_eq!(exception.name, "exception");
    assert_eq!(
        exception.attributes,
        vec![
            KeyValue::new("exception.type", "kafka_handlers::OrderError"),
            KeyValue::new("exception.message", "order rejected: out of stock"),
        ]
    );
}

#[tracehop::traced_consumer(group = "audit")]
async fn audit_panics_async(message: &OwnedMessage) {
    tokio::task::yield_now().await;
    panic!("async corrupt order at offset {}", message.offset())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_async_handler_still_exports_a_failed_span() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("panic-async");
    let message = published_message(&broker, &topic, "audit", "order").await;

    let task = tokio::spawn(async move { audit_panics_async(&message).await });
    let error = task.await.expect_err("the task panicked");
    assert!(error.is_panic());

    let (producer, consumer) = producer_and_consumer(&topic);
    assert_child_of(&consumer, &producer);
    let Status::Error { description } = &consumer.status else { panic!("status {:?}", consumer.status) };
    assert!(description.starts_with("panicked: async corrupt order at offset"), "{description}");
}

trait Decode {
    fn decode(bytes: &[u8]) -> Self;
}

impl Decode for String {
    fn decode(bytes: &[u8]) -> Self {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

#[tracehop::traced_consumer(group = "generic")]
async fn decode_with<T>(message: &OwnedMessage) -> Option<T>
where
    T: Decode + Send,
{
    message.payload().map(T::decode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_handler_is_traced_and_returns_its_value() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("generic");
    let message = published_message(&broker, &topic, "generic", "hello").await;

    assert_eq!(decode_with::<String>(&message).await, Some("hello".to_owned()));

    let (producer, consumer) = producer_and_consumer(&topic);
    assert_child_of(&consumer, &producer);
    assert_eq!(consumer.name, format!("process {topic}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumer_groups_give_two_children_of_one_producer_span() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("fan-out");
    broker.create_topic(&topic, 1);
    let inventory = broker.consumer("inventory", &topic);
    let payment = broker.consumer("payment", &topic);
    publish(&broker.producer(), FutureRecord::to(&topic).key("order-1").payload("{}")).await;

    #[tracehop::traced_consumer(group = "inventory")]
    async fn on_inventory(_message: &OwnedMessage) {}
    #[tracehop::traced_consumer(group = "payment")]
    async fn on_payment(_message: &OwnedMessage) {}

    on_inventory(&receive(&inventory).await).await;
    on_payment(&receive(&payment).await).await;

    let spans = spans_to(&topic);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let producer = spans.iter().find(|span| span.span_kind == SpanKind::Producer).expect("a producer span");
    let mut groups: Vec<Value> = spans
        .iter()
        .filter(|span| span.span_kind == SpanKind::Consumer)
        .inspect(|consumer| assert_child_of(consumer, producer))
        .map(|consumer| attribute(consumer, "messaging.consumer.group.name").expect("a group"))
        .collect();
    groups.sort_by_key(|group| group.to_string());
    assert_eq!(groups, vec![Value::from("inventory"), Value::from("payment")]);
}

#[tracehop::traced_producer(system = "kafka", destination = topic, name = "publish shipment", attributes(app.shipment.id = shipment_id))]
async fn publish_shipment(producer: &FutureProducer, topic: &str, shipment_id: u64) {
    let payload = format!("{{\"shipment\":{shipment_id}}}");
    let record: FutureRecord<'_, str, str> =
        FutureRecord::to(topic).payload(payload.as_str()).headers(tracehop::kafka::trace_headers());
    producer.send(record, Duration::from_secs(10)).await.expect("the broker accepts the message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_building_its_record_in_the_body_propagates_with_trace_headers() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("shipments");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("shipping", &topic);
    publish_shipment(&broker.producer(), &topic, 99).await;

    #[tracehop::traced_consumer(group = "shipping", name = "ship order")]
    async fn on_shipment(_message: &OwnedMessage) {}
    on_shipment(&receive(&consumer).await).await;

    let (producer, consumer) = producer_and_consumer(&topic);
    assert_child_of(&consumer, &producer);
    assert_eq!(producer.name, "publish shipment");
    assert_eq!(consumer.name, "ship order");
    assert_eq!(attribute(&producer, "app.shipment.id"), Some(Value::I64(99)));
    assert_eq!(attribute(&producer, "messaging.destination.name"), Some(Value::from(topic.clone())));
    assert_eq!(attribute(&producer, "messaging.system"), Some(Value::from("kafka")));
    assert_eq!(attribute(&producer, tracehop::CONTEXT_INJECTED_ATTRIBUTE), None);
}

#[tracehop::traced_producer(system = "kafka", destination = "forgotten")]
fn publish_without_context(producer: &rdkafka::producer::BaseProducer, payload: &str) {
    let record: rdkafka::producer::BaseRecord<'_, str, str> =
        rdkafka::producer::BaseRecord::to("forgotten").payload(payload);
    producer.send(record).expect("queued");
}

#[test]
fn producer_that_injects_nothing_is_reported_on_the_span_and_warned_once() {
    suite::spans();
    let broker = Broker::start();
    let producer: rdkafka::producer::BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()
        .expect("a producer");

    let ((), logs) = suite::capture_logs(|| {
        publish_without_context(&producer, "one");
        publish_without_context(&producer, "two");
    });

    let spans = spans_to("forgotten");
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(span.name, "send forgotten");
        assert_eq!(span.span_kind, SpanKind::Producer);
        assert_eq!(attribute(span, tracehop::CONTEXT_INJECTED_ATTRIBUTE), Some(Value::Bool(false)));
        let events: Vec<&str> = span.events.events.iter().map(|event| event.name.as_ref()).collect();
        assert_eq!(events, vec![tracehop::CONTEXT_NOT_INJECTED_EVENT]);
    }
    let warnings = logs.at_least(tracing::Level::WARN);
    assert_eq!(warnings.len(), 1, "one warning per function, not per message: {warnings:?}");
    assert!(warnings[0].contains("without writing its trace context"), "{}", warnings[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baggage_and_the_callers_trace_reach_the_consumer() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("baggage");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("baggage", &topic);

    let caller = global::tracer("checkout").start("checkout");
    let caller_ids = (caller.span_context().trace_id(), caller.span_context().span_id());
    let context = Context::current_with_span(caller).with_baggage(vec![KeyValue::new("tenant", "acme")]);
    {
        let _attached = context.clone().attach();
        publish(&broker.producer(), FutureRecord::to(&topic).key("k").payload("p")).await;
    }
    context.span().end();

    #[tracehop::traced_consumer(group = "baggage")]
    async fn tenant_of(_message: &OwnedMessage) -> Option<String> {
        Context::current().baggage().get("tenant").map(|value| value.to_string())
    }
    assert_eq!(tenant_of(&receive(&consumer).await).await, Some("acme".to_owned()));

    let (producer, consumer) = producer_and_consumer(&topic);
    assert_eq!((producer.span_context.trace_id(), producer.parent_span_id), caller_ids);
    assert_child_of(&consumer, &producer);
}

#[tracehop::traced_consumer(group = "futures")]
fn settle_later(message: &OwnedMessage) -> impl std::future::Future<Output = Result<(), OrderError>> + Send + '_ {
    async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let _child = global::tracer("futures").start("settle");
        let _ = message;
        Err(OrderError("settled late"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_handler_returning_a_future_is_traced_until_the_future_completes() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("future");
    let message = published_message(&broker, &topic, "futures", "order").await;

    let future = settle_later(&message);
    assert_eq!(
        spans_to(&topic).iter().filter(|span| span.span_kind == SpanKind::Consumer).count(),
        0,
        "open until the future completes"
    );
    assert_eq!(future.await, Err(OrderError("settled late")));

    let (producer, consumer) = producer_and_consumer(&topic);
    assert_child_of(&consumer, &producer);
    assert_eq!(consumer.status, Status::error("order rejected: settled late"));
    let child = suite::spans_of_trace(producer.span_context.trace_id())
        .into_iter()
        .find(|span| span.name == "settle")
        .expect("the future's span is in the trace");
    assert_eq!(child.parent_span_id, consumer.span_context.span_id());
}

type BoxedOutcome<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<i64, OrderError>> + Send + 'a>>;

/// The shape `#[async_trait]` gives an `async fn`.
#[tracehop::traced_consumer(group = "futures")]
fn settle_boxed(
    message: &OwnedMessage,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<i64, OrderError>> + Send + '_>> {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let _child = global::tracer("futures").start("settle boxed");
        Ok(message.offset())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_handler_returning_a_boxed_future_is_traced_until_the_future_completes() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("boxed-future");
    let message = published_message(&broker, &topic, "futures", "order").await;

    let future: BoxedOutcome<'_> = settle_boxed(&message);
    assert!(spans_to(&topic).iter().all(|span| span.span_kind != SpanKind::Consumer), "open until it completes");
    assert_eq!(future.await, Ok(message.offset()));

    let (producer, consumer) = producer_and_consumer(&topic);
    assert_child_of(&consumer, &producer);
    let child = suite::spans_of_trace(producer.span_context.trace_id())
        .into_iter()
        .find(|span| span.name == "settle boxed")
        .expect("the future's span is in the trace");
    assert_eq!(child.parent_span_id, consumer.span_context.span_id());
}
