//! A process that installs no propagator (OpenTelemetry's default propagates nothing): a valid `traceparent`
//! passes tracehop's checks, but nothing turns it into a context, so the consumer starts a new trace and says
//! `propagator_rejected`, pointing at the missing set-up. In a test binary of its own: the propagator is the
//! process's.

use opentelemetry::global;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

#[tracehop::traced_consumer(group = "unconfigured")]
fn handle(message: &OwnedMessage) {
    let _ = message;
}

#[test]
fn a_valid_context_without_an_installed_propagator_is_rejected_as_propagator_rejected() {
    let exporter = InMemorySpanExporter::default();
    global::set_tracer_provider(SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build());
    let message = |traceparent: Option<&str>| {
        let headers =
            traceparent.map(|value| OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(value) }));
        OwnedMessage::new(Some(b"{}".to_vec()), None, "orders".to_owned(), Timestamp::NotAvailable, 0, 0, headers)
    };
    handle(&message(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")));
    handle(&message(None));

    let spans = exporter.get_finished_spans().expect("the exporter is up");
    let reasons: Vec<Option<Value>> = spans
        .iter()
        .map(|span| {
            span.attributes.iter().find(|kv| kv.key.as_str() == "tracehop.context.rejected").map(|kv| kv.value.clone())
        })
        .collect();
    assert_eq!(reasons, vec![Some(Value::from("propagator_rejected")), Some(Value::from("missing"))]);
    for span in &spans {
        assert_eq!(span.parent_span_id, SpanId::INVALID, "a new root");
        assert_ne!(span.span_context.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
    }
}
