//! Log lines that find their trace: a service's `tracing` log, printed by `tracing-subscriber`'s fmt layer
//! with `tracehop::WithTraceIds`, and `tracehop::HandlerEventsLayer` recording the same events on the handler's
//! span. Every line written inside the handler starts with the handler span's `trace_id` and `span_id`.
//!
//! Run: `cargo run --example log_correlation`.

use opentelemetry::global;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use tracing_subscriber::layer::SubscriberExt;

#[tracehop::traced_consumer(group = "inventory-service")]
fn reserve_inventory(message: &OwnedMessage) {
    let _ = message;
    tracing::info!(order_id = 1001, "reserving stock");
    tracing::warn!(sku = "A-7", "low stock");
}

fn main() {
    let exporter = InMemorySpanExporter::default();
    global::set_tracer_provider(SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build());
    tracehop::install_propagator();
    let logs = tracing_subscriber::fmt::layer()
        .without_time()
        .with_ansi(false)
        .event_format(tracehop::WithTraceIds::new(tracing_subscriber::fmt::format().without_time().with_ansi(false)));
    let subscriber = tracing_subscriber::registry().with(logs).with(tracehop::HandlerEventsLayer::new());
    tracing::subscriber::set_global_default(subscriber).expect("the example's one subscriber");

    tracing::info!("inventory service started");
    // An order published upstream, in trace 4bf92f35…: the handler's lines carry that trace.
    let headers = OwnedHeaders::new()
        .insert(Header { key: "traceparent", value: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") });
    let message = OwnedMessage::new(
        Some(br#"{"id":1001}"#.to_vec()),
        Some(b"1001".to_vec()),
        "orders.created".to_owned(),
        Timestamp::NotAvailable,
        0,
        0,
        Some(headers),
    );
    reserve_inventory(&message);

    let spans = exporter.get_finished_spans().expect("the exporter is up");
    for span in spans {
        println!(
            "span {:?} \"{}\" trace_id={} span_id={} events={}",
            span.span_kind,
            span.name,
            span.span_context.trace_id(),
            span.span_context.span_id(),
            span.events.events.len()
        );
    }
}
