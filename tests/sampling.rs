//! Sampling decides what tracehop records: under a sampler that drops new traces (`ParentBased(AlwaysOff)`),
//! an unsampled span evaluates no `attributes(...)` expression and exports nothing, a sampled producer's
//! context is still continued and recorded, and an unsampled one is continued unsampled, down to the next
//! hop's headers. In a test binary of its own: the sampler is the process's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use opentelemetry::{global, Context};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::FutureRecord;

fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
            .with_simple_exporter(exporter.clone())
            .build();
        global::set_tracer_provider(provider);
        tracehop::install_propagator();
        exporter
    })
}

fn spans_to(topic: &str) -> Vec<SpanData> {
    exporter()
        .get_finished_spans()
        .expect("the exporter is up")
        .into_iter()
        .filter(|span| {
            span.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "messaging.destination.name" && kv.value.as_str() == topic)
        })
        .collect()
}

fn message(topic: &str, traceparent: Option<&str>) -> OwnedMessage {
    let headers =
        traceparent.map(|value| OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(value) }));
    OwnedMessage::new(Some(b"{}".to_vec()), None, topic.to_owned(), Timestamp::NotAvailable, 0, 0, headers)
}

/// How often the `attributes(...)` expression ran.
static EVALUATED: AtomicUsize = AtomicUsize::new(0);

fn order_id() -> u64 {
    EVALUATED.fetch_add(1, Ordering::SeqCst);
    7
}

#[tracehop::traced_producer]
fn forward(record: &mut FutureRecord<'_, str, str>) {
    let _ = record;
}

/// Handles a message and forwards it; returns what its span was and the `traceparent` it wrote.
#[tracehop::traced_consumer(group = "sampling", attributes(app.order.id = order_id()))]
fn handle(message: &OwnedMessage, next: &str) -> (TraceId, bool, String) {
    let _ = message;
    let context = Context::current();
    let span = context.span();
    let mut record = FutureRecord::to(next).payload("{}");
    forward(&mut record);
    let headers = record.headers.expect("the producer wrote its context");
    let traceparent = headers.iter().find(|header| header.key == "traceparent").and_then(|header| header.value);
    let traceparent = String::from_utf8(traceparent.expect("a traceparent").to_vec()).expect("UTF-8");
    (span.span_context().trace_id(), span.span_context().is_sampled(), traceparent)
}

#[test]
fn only_recorded_spans_evaluate_attributes_and_an_unsampled_parent_is_continued_unsampled() {
    exporter();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";

    // A new trace: dropped by the sampler, so nothing is evaluated or exported, and nothing is sampled downstream.
    let (topic, next) = (suite::unique_topic("sampling-new"), suite::unique_topic("sampling-new-next"));
    let (trace_id, sampled, traceparent) = handle(&message(&topic, None), &next);
    assert!(!sampled);
    assert!(traceparent.starts_with(&format!("00-{trace_id}-")) && traceparent.ends_with("-00"), "{traceparent}");
    assert_eq!(EVALUATED.load(Ordering::SeqCst), 0, "no attribute evaluated for a span that is not recorded");
    assert!(spans_to(&topic).is_empty() && spans_to(&next).is_empty());

    // An unsampled parent: its trace continues, unsampled, into the next hop's headers.
    let (topic, next) = (suite::unique_topic("sampling-unsampled"), suite::unique_topic("sampling-unsampled-next"));
    let unsampled = format!("00-{trace}-00f067aa0ba902b7-00");
    let (trace_id, sampled, traceparent) = handle(&message(&topic, Some(&unsampled)), &next);
    assert_eq!(trace_id, TraceId::from_hex(trace).unwrap(), "the producer's trace continues");
    assert!(!sampled, "unsampled, as the producer decided");
    assert!(traceparent.starts_with(&format!("00-{trace}-")) && traceparent.ends_with("-00"), "{traceparent}");
    assert!(!traceparent.contains("00f067aa0ba902b7"), "the next hop's parent is this hop's span");
    assert_eq!(EVALUATED.load(Ordering::SeqCst), 0);
    assert!(spans_to(&topic).is_empty() && spans_to(&next).is_empty());

    // A sampled parent: recorded, its attribute evaluated once, and the next hop sampled.
    let (topic, next) = (suite::unique_topic("sampling-sampled"), suite::unique_topic("sampling-sampled-next"));
    let sampled_parent = format!("00-{trace}-00f067aa0ba902b7-01");
    let (trace_id, sampled, traceparent) = handle(&message(&topic, Some(&sampled_parent)), &next);
    assert_eq!(trace_id, TraceId::from_hex(trace).unwrap());
    assert!(sampled);
    assert!(traceparent.ends_with("-01"), "{traceparent}");
    assert_eq!(EVALUATED.load(Ordering::SeqCst), 1, "evaluated once, for the one recorded span");
    let consumer = spans_to(&topic);
    assert_eq!(consumer.len(), 1);
    assert_eq!(consumer[0].parent_span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap());
    assert!(consumer[0].parent_span_is_remote);
    assert!(consumer[0].attributes.iter().any(|kv| kv.key.as_str() == "app.order.id" && kv.value == 7_i64.into()));
    let producer = spans_to(&next);
    assert_eq!(producer.len(), 1);
    assert_eq!(producer[0].parent_span_id, consumer[0].span_context.span_id());
}
