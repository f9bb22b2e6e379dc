//! A service that traces with `tracing` + `tracing-opentelemetry`, on the same tracer provider as tracehop, with
//! tracehop's `HandlerEventsLayer`: an event written in a handler's body (sync, or async across `.await`) becomes
//! an event of the handler's span; `tracing` spans and `#[tracing::instrument]` functions inside a handler are
//! its children; an event inside a `tracing` span stays that span's; a publish inside a `tracing` span is that
//! span's child. Exact parent ids throughout. In a test binary of its own: the subscriber is the process's.

use std::sync::OnceLock;

use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry::{global, KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::FutureRecord;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID: &str = "00f067aa0ba902b7";

fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("service")))
            .with(tracehop::HandlerEventsLayer::new());
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
        global::set_tracer_provider(provider);
        tracehop::install_propagator();
        exporter
    })
}

fn finished() -> Vec<SpanData> {
    exporter().get_finished_spans().expect("the exporter is up")
}

fn message(topic: &str) -> OwnedMessage {
    let traceparent = format!("00-{TRACE_ID}-{SPAN_ID}-01");
    let headers = OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(&traceparent) });
    OwnedMessage::new(Some(b"{}".to_vec()), None, topic.to_owned(), Timestamp::NotAvailable, 0, 0, Some(headers))
}

/// The one span named `name`.
fn span_named(name: &str) -> SpanData {
    let mut spans: Vec<SpanData> = finished().into_iter().filter(|span| span.name == name).collect();
    assert_eq!(spans.len(), 1, "one span named {name:?}: {spans:#?}");
    spans.remove(0)
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<Value> {
    attributes.iter().find(|attribute| attribute.key.as_str() == key).map(|attribute| attribute.value.clone())
}

#[tracing::instrument]
fn reserve_stock(order_id: u64) {
    tracing::info!("stock row locked");
}

#[tracehop::traced_producer]
fn publish_shipment(record: &mut FutureRecord<'_, str, str>) {
    let _ = record;
}

#[tracehop::traced_consumer(group = "inventory")]
fn on_order(message: &OwnedMessage, shipments: &str) {
    let _ = message;
    tracing::info!(order_id = 7_u64, retried = false, "reserved stock");
    reserve_stock(7);
    let validation = tracing::info_span!("validate order");
    validation.in_scope(|| {
        tracing::warn!("address missing a postcode");
        publish_shipment(&mut FutureRecord::to(shipments).payload("{}"));
    });
}

#[tracehop::traced_consumer(group = "inventory-async")]
async fn on_order_async(message: &OwnedMessage) {
    let _ = message;
    tokio::task::yield_now().await;
    tracing::error!(attempt = 2_i64, "payment declined");
}

#[test]
fn events_spans_and_publishes_of_a_service_that_uses_tracing_land_in_the_handlers_trace() {
    exporter();
    let (topic, shipments) = ("tracing-orders", "tracing-shipments");
    on_order(&message(topic), shipments);

    let consumer = span_named(&format!("process {topic}"));
    assert_eq!(consumer.span_kind, SpanKind::Consumer);
    assert_eq!(consumer.span_context.trace_id(), TraceId::from_hex(TRACE_ID).unwrap());
    assert_eq!(consumer.parent_span_id, SpanId::from_hex(SPAN_ID).unwrap());

    // The event written in the body, outside any `tracing` span, is the consumer span's.
    let events: Vec<&str> = consumer.events.events.iter().map(|event| event.name.as_ref()).collect();
    assert_eq!(events, vec!["reserved stock"], "only the body's own event");
    let event = &consumer.events.events[0];
    assert_eq!(attribute(&event.attributes, "order_id"), Some(Value::I64(7)));
    assert_eq!(attribute(&event.attributes, "retried"), Some(Value::Bool(false)));
    assert_eq!(attribute(&event.attributes, "level"), Some(Value::from("INFO")));
    assert_eq!(attribute(&event.attributes, "target"), Some(Value::from("tracing_bridge")));

    // `#[tracing::instrument]` and `tracing` spans are children of the consumer span.
    let instrumented = span_named("reserve_stock");
    assert_eq!(instrumented.parent_span_id, consumer.span_context.span_id());
    assert_eq!(instrumented.span_context.trace_id(), consumer.span_context.trace_id());
    let validation = span_named("validate order");
    assert_eq!(validation.parent_span_id, consumer.span_context.span_id());
    // An event inside a `tracing` span stays that span's.
    let inner: Vec<&str> = validation.events.events.iter().map(|event| event.name.as_ref()).collect();
    assert_eq!(inner, vec!["address missing a postcode"]);

    // A publish inside a `tracing` span is that span's child, in the same trace.
    let producer = span_named(&format!("send {shipments}"));
    assert_eq!(producer.span_kind, SpanKind::Producer);
    assert_eq!(producer.parent_span_id, validation.span_context.span_id());
    assert_eq!(producer.span_context.trace_id(), consumer.span_context.trace_id());
}

#[tokio::test]
async fn an_event_after_an_await_in_an_async_handler_is_the_handlers() {
    exporter();
    let topic = "tracing-orders-async";
    on_order_async(&message(topic)).await;

    let consumer = span_named(&format!("process {topic}"));
    let events: Vec<&str> = consumer.events.events.iter().map(|event| event.name.as_ref()).collect();
    assert_eq!(events, vec!["payment declined"]);
    let event = &consumer.events.events[0];
    assert_eq!(attribute(&event.attributes, "attempt"), Some(Value::I64(2)));
    assert_eq!(attribute(&event.attributes, "level"), Some(Value::from("ERROR")));
}
