//! Nothing a producer puts on the wire panics a hop or breaks a trace it should not break: headers forwarded
//! with names that are not UTF-8, attribute expressions that panic, and headers at and far past the W3C limits
//! (a 5,000-member or 1 MiB `tracestate`, a 1 MiB `baggage`, 10,000 headers, a `traceparent` repeated 1,000
//! times or 100 KB long). Each handler runs (or, for the panicking attribute, says on its span why it did not),
//! and each span records exactly what was rejected or trimmed. What these cost is measured in
//! `runtime/benches/wire_limits.rs`, not here.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use suite::{attribute, raw_headers, spans_to, with_raw_header, Broker};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tracehop::traced_producer]
async fn forward(producer: &FutureProducer, record: FutureRecord<'_, str, [u8]>) -> Result<(i32, i64), KafkaError> {
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|delivery| (delivery.partition, delivery.offset))
        .map_err(|(error, _)| error)
}

/// Relays a consumed message, every header included, the way a service forwards what it received.
#[tracehop::traced_consumer(group = "wire-relay")]
async fn relay(message: &OwnedMessage, producer: &FutureProducer, to: &str) -> Result<(i32, i64), KafkaError> {
    let headers = message.headers().cloned().unwrap_or_default();
    let record = FutureRecord::to(to).key("relayed").payload(message.payload().unwrap_or_default()).headers(headers);
    forward(producer, record).await
}

/// A message whose headers a foreign producer wrote, one with a name that is not UTF-8, is forwarded by a
/// `#[traced_producer]`: the injection replaces the old `traceparent`, every other header goes on byte for
/// byte, and the trace runs unbroken from the foreign producer through the relay to the next consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_header_whose_name_is_not_utf8_goes_on_and_the_trace_continues() {
    suite::spans();
    let broker = Broker::start();
    let (upstream, downstream) = (suite::unique_topic("wire-upstream"), suite::unique_topic("wire-downstream"));
    broker.create_topic(&upstream, 1);
    broker.create_topic(&downstream, 1);
    let producer = broker.producer();

    let headers = OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(TRACEPARENT) });
    let headers = with_raw_header(headers, b"x-\xff\xfe-name", Some(b"value"));
    let headers = headers.insert(Header { key: "tenant", value: Some("acme") });
    let record = FutureRecord::to(&upstream).key("original").payload(&b"order"[..]).headers(headers);
    producer.send(record, Duration::from_secs(10)).await.expect("the broker accepts the message");

    let message = suite::receive(&broker.consumer("wire-relay", &upstream)).await;
    let relayed = AssertUnwindSafe(relay(&message, &producer, &downstream));
    let delivered = futures_catch(relayed).await.expect("relaying does not panic").expect("relayed");

    let received = suite::receive(&broker.consumer("wire-downstream", &downstream)).await;
    assert_eq!(received.offset(), delivered.1);
    let relay_span = only(spans_to(&upstream), SpanKind::Consumer);
    let forward_span = only(spans_to(&downstream), SpanKind::Producer);
    let forwarded_traceparent =
        format!("00-{}-{}-01", forward_span.span_context.trace_id(), forward_span.span_context.span_id());
    assert_eq!(
        raw_headers(received.headers().expect("headers")),
        vec![
            (b"x-\xff\xfe-name".to_vec(), Some(b"value".to_vec())),
            (b"tenant".to_vec(), Some(b"acme".to_vec())),
            (b"traceparent".to_vec(), Some(forwarded_traceparent.into_bytes())),
        ]
    );
    assert_eq!(relay_span.span_context.trace_id(), TraceId::from_hex(TRACE_ID).unwrap());
    assert_eq!(relay_span.parent_span_id, SpanId::from_hex(SPAN_ID).unwrap());
    assert!(relay_span.parent_span_is_remote, "the producer's span is a remote parent");
    assert_eq!(forward_span.span_context.trace_id(), relay_span.span_context.trace_id());
    assert_eq!(forward_span.parent_span_id, relay_span.span_context.span_id());
    assert_eq!(forward_span.status, Status::Unset);
    assert_eq!(attribute(&forward_span, "tracehop.context.injected"), None, "the record carried the context");
}

/// Polls `future`, turning a panic into an `Err` (no extra crate for `catch_unwind` on futures).
async fn futures_catch<F: std::future::Future>(future: AssertUnwindSafe<F>) -> std::thread::Result<F::Output> {
    let mut future = std::pin::pin!(future.0);
    std::future::poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
        Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
        Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
        Err(panic) => std::task::Poll::Ready(Err(panic)),
    })
    .await
}

/// The one span of `kind` among `spans`.
fn only(spans: Vec<SpanData>, kind: SpanKind) -> SpanData {
    let mut of_kind: Vec<SpanData> = spans.into_iter().filter(|span| span.span_kind == kind).collect();
    assert_eq!(of_kind.len(), 1, "one {kind:?} span: {of_kind:#?}");
    of_kind.remove(0)
}

fn order_id_that_panics() -> u64 {
    panic!("no order id in this message")
}

#[tracehop::traced_consumer(group = "wire-attributes", attributes(app.order.id = order_id_that_panics()))]
fn with_a_panicking_attribute(_message: &OwnedMessage, ran: &AtomicBool) {
    ran.store(true, Ordering::SeqCst);
}

/// Runs the handler whose `attributes(...)` panics on a message to `topic` with `headers`, checks the panic goes
/// on unwinding and the body did not run, and returns the handler's span, checked to say why it failed: status
/// Error, `error.type = panic`, an `exception` event, with the message's other attributes.
fn span_of_a_panicking_attribute(topic: &str, headers: OwnedHeaders) -> SpanData {
    suite::spans();
    let message = kafka_message(topic, headers);
    let ran = AtomicBool::new(false);

    let panic = catch_unwind(AssertUnwindSafe(|| with_a_panicking_attribute(&message, &ran)))
        .expect_err("the attribute's panic goes on unwinding");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"no order id in this message"));
    assert!(!ran.load(Ordering::SeqCst), "the body did not run");

    let span = only(spans_to(topic), SpanKind::Consumer);
    let description = "an attributes(...) expression panicked, so the handler did not run: no order id in this message";
    assert_eq!(span.status, Status::error(description));
    assert_eq!(attribute(&span, "error.type"), Some(Value::from("panic")));
    assert_eq!(span.events.events.len(), 1);
    assert_eq!(span.events.events[0].name, "exception");
    assert_eq!(span.name, format!("process {topic}"));
    assert_eq!(attribute(&span, "messaging.system"), Some(Value::from("kafka")));
    assert_eq!(attribute(&span, "app.order.id"), None);
    span
}

/// A panic in an `attributes(...)` expression goes on unwinding (tracehop does not swallow it), the body never
/// runs, the span says so, and the trace still continues.
#[test]
fn a_panicking_attribute_fails_the_span_and_the_handler_does_not_run() {
    let topic = suite::unique_topic("wire-attributes");
    let headers = OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(TRACEPARENT) });
    let span = span_of_a_panicking_attribute(&topic, headers);
    assert_eq!(span.span_context.trace_id(), TraceId::from_hex(TRACE_ID).unwrap(), "the trace still continues");
}

/// The same for a message with no context: its span is a new root, started before it is described (a sampled
/// parent's span is described before it starts), and fails the same way.
#[test]
fn a_panicking_attribute_fails_a_new_root_span_too() {
    let topic = suite::unique_topic("wire-attributes-root");
    let span = span_of_a_panicking_attribute(&topic, OwnedHeaders::new());
    assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID, "a new root");
    assert!(span.links.links.is_empty());
}

fn kafka_message(topic: &str, headers: OwnedHeaders) -> OwnedMessage {
    OwnedMessage::new(
        Some(b"order".to_vec()),
        Some(b"key".to_vec()),
        topic.to_owned(),
        Timestamp::NotAvailable,
        0,
        7,
        Some(headers),
    )
}

/// What a handler saw: its trace, and the baggage and tracestate it was handed.
#[derive(Debug, PartialEq)]
struct Seen {
    trace_id: TraceId,
    tracestate: String,
    baggage: Vec<String>,
}

fn seen() -> Seen {
    let context = Context::current();
    let mut baggage: Vec<String> = context.baggage().iter().map(|(key, (value, _))| format!("{key}={value}")).collect();
    baggage.sort();
    let span = context.span();
    Seen { trace_id: span.span_context().trace_id(), tracestate: span.span_context().trace_state().header(), baggage }
}

#[tracehop::traced_consumer(group = "wire-limits")]
fn on_kafka(_message: &OwnedMessage) -> Seen {
    seen()
}

#[tracehop::traced_consumer(group = "wire-limits")]
fn on_delivery(_delivery: &Delivery) -> Seen {
    seen()
}

/// One limit case: the headers, and what the span must record.
struct Limit {
    name: &'static str,
    headers: Vec<(String, Vec<u8>)>,
    /// `tracehop.context.rejected`, when the context must not be continued.
    rejected: Option<&'static str>,
    tracestate_trimmed: Option<&'static str>,
    baggage_trimmed: Option<&'static str>,
    /// The tracestate and baggage the handler must be handed when the trace continues.
    tracestate: String,
    baggage: Vec<String>,
}

fn header(name: &str, value: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_owned(), value.into())
}

/// Every limit case; `repeats` says whether the carrier can hold one header name more than once (Kafka can,
/// an AMQP field table cannot).
fn limits(repeats: bool) -> Vec<Limit> {
    let valid = || header("traceparent", TRACEPARENT);
    let many_members: String = (0..5_000).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
    let mut cases = vec![
        Limit {
            name: "tracestate-5000-members",
            headers: vec![valid(), header("tracestate", many_members)],
            rejected: None,
            // Longer than any valid list (16,447 bytes): not read, discarded whole.
            tracestate_trimmed: Some("oversized"),
            baggage_trimmed: None,
            tracestate: String::new(),
            baggage: vec![],
        },
        Limit {
            name: "tracestate-1-mib",
            headers: vec![valid(), header("tracestate", format!("congo=t61rcWkgMzE,big={}", "x".repeat(1 << 20)))],
            rejected: None,
            tracestate_trimmed: Some("oversized"),
            baggage_trimmed: None,
            tracestate: String::new(),
            baggage: vec![],
        },
        Limit {
            name: "baggage-1-mib",
            headers: vec![valid(), header("baggage", format!("tenant=acme,big={}", "x".repeat(1 << 20)))],
            rejected: None,
            tracestate_trimmed: None,
            baggage_trimmed: Some("oversized"),
            tracestate: String::new(),
            baggage: vec!["tenant=acme".to_owned()],
        },
        Limit {
            name: "10000-headers",
            headers: (0..10_000).map(|i| header(&format!("x-header-{i}"), "v")).chain([valid()]).collect(),
            rejected: None,
            tracestate_trimmed: None,
            baggage_trimmed: None,
            tracestate: String::new(),
            baggage: vec![],
        },
        Limit {
            name: "traceparent-100-kb",
            headers: vec![header("traceparent", format!("{TRACEPARENT}-{}", "f".repeat(100_000)))],
            rejected: Some("traceparent_trailing_data"),
            tracestate_trimmed: None,
            baggage_trimmed: None,
            tracestate: String::new(),
            baggage: vec![],
        },
    ];
    if repeats {
        cases.push(Limit {
            name: "traceparent-repeated-1000-times",
            headers: (0..1_000).map(|_| valid()).collect(),
            rejected: Some("duplicate_traceparent"),
            tracestate_trimmed: None,
            baggage_trimmed: None,
            tracestate: String::new(),
            baggage: vec![],
        });
    }
    cases
}

/// Checks the handler's view and its span for one limit case.
fn check_limit(case: &Limit, seen: Seen, span: &SpanData) {
    let name = case.name;
    assert_eq!(span.span_kind, SpanKind::Consumer, "{name}");
    assert_eq!(seen.trace_id, span.span_context.trace_id(), "{name}: the handler ran under its span");
    assert_eq!(attribute(span, "tracehop.context.rejected"), case.rejected.map(Value::from), "{name}");
    assert_eq!(
        attribute(span, "tracehop.context.tracestate.trimmed"),
        case.tracestate_trimmed.map(Value::from),
        "{name}"
    );
    assert_eq!(attribute(span, "tracehop.context.baggage.trimmed"), case.baggage_trimmed.map(Value::from), "{name}");
    if case.rejected.is_some() {
        assert_ne!(seen.trace_id, TraceId::from_hex(TRACE_ID).unwrap(), "{name}: a new trace");
        assert_eq!(span.parent_span_id, SpanId::INVALID, "{name}: a root");
    } else {
        assert_eq!(seen.trace_id, TraceId::from_hex(TRACE_ID).unwrap(), "{name}: the trace continues");
        assert_eq!(span.parent_span_id, SpanId::from_hex(SPAN_ID).unwrap(), "{name}: the producer is the parent");
        assert!(span.parent_span_is_remote, "the producer's span is a remote parent");
        assert_eq!(seen.tracestate, case.tracestate, "{name}: tracestate");
        assert_eq!(seen.baggage, case.baggage, "{name}: baggage");
    }
}

#[test]
fn kafka_headers_far_past_the_limits_cost_only_what_breaks_them() {
    suite::spans();
    for case in limits(true) {
        let topic = suite::unique_topic(case.name);
        let headers =
            case.headers.iter().fold(OwnedHeaders::new_with_capacity(case.headers.len()), |headers, (name, value)| {
                headers.insert(Header { key: name, value: Some(value) })
            });
        let seen = on_kafka(&kafka_message(&topic, headers));
        check_limit(&case, seen, &only(spans_to(&topic), SpanKind::Consumer));
    }
}

#[test]
fn amqp_headers_far_past_the_limits_cost_only_what_breaks_them() {
    suite::spans();
    for case in limits(false) {
        let exchange = suite::unique_topic(case.name);
        let mut table = FieldTable::default();
        for (name, value) in &case.headers {
            table.insert(name.as_str().into(), AMQPValue::LongString(LongString::from(value.clone())));
        }
        let mut delivery = Delivery::mock(1, exchange.as_str().into(), "orders".into(), false, b"order".to_vec());
        delivery.properties = BasicProperties::default().with_headers(table);
        let seen = on_delivery(&delivery);
        check_limit(&case, seen, &only(spans_to(&exchange), SpanKind::Consumer));
    }
}

/// librdkafka hands header names out as C strings: a Kafka header named `traceparent\0junk` is read as
/// `traceparent` (as the README says), while an AMQP name is its whole string.
#[test]
fn a_kafka_header_name_ends_at_its_first_nul_and_an_amqp_name_does_not() {
    suite::spans();
    let topic = suite::unique_topic("wire-nul");
    let headers = with_raw_header(OwnedHeaders::new(), b"traceparent\0junk", Some(TRACEPARENT.as_bytes()));
    let seen = on_kafka(&kafka_message(&topic, headers));
    assert_eq!(seen.trace_id, TraceId::from_hex(TRACE_ID).unwrap(), "read as `traceparent`");

    let exchange = suite::unique_topic("wire-nul-amqp");
    let mut table = FieldTable::default();
    table.insert("traceparent\0junk".into(), AMQPValue::LongString(LongString::from(TRACEPARENT)));
    let mut delivery = Delivery::mock(1, exchange.as_str().into(), "orders".into(), false, b"order".to_vec());
    delivery.properties = BasicProperties::default().with_headers(table);
    let seen = on_delivery(&delivery);
    assert_ne!(seen.trace_id, TraceId::from_hex(TRACE_ID).unwrap(), "another header");
    let span = only(spans_to(&exchange), SpanKind::Consumer);
    assert_eq!(attribute(&span, "tracehop.context.rejected"), Some(Value::from("missing")));
}
