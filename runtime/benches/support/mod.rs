//! What the benchmarks share: a consumed message as the consumer gets it, an exporter that drops spans, and the
//! SDK floor.
// Each bench binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::hint::black_box;

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};

/// An order message on partition 0 of `orders`, at offset 42, carrying `headers`.
pub fn order_message(headers: OwnedHeaders) -> OwnedMessage {
    OwnedMessage::new(
        Some(b"{\"id\":7}".to_vec()),
        Some(b"order-7".to_vec()),
        "orders".to_owned(),
        Timestamp::NotAvailable,
        0,
        42,
        Some(headers),
    )
}

/// Drops every span: export stays out of the measurement, which is tracehop plus the SDK's own span work.
#[derive(Debug)]
pub struct DiscardingExporter;

impl SpanExporter for DiscardingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        drop(black_box(batch));
        Ok(())
    }
}

/// The floor tracehop is held to: OpenTelemetry's own span with the parent already extracted, the same ten
/// attributes tracehop records for [`order_message`] and one link to the producer.
pub fn sdk_floor<T>(tracer: &T, parent: &Context)
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    let producer = parent.span().span_context().clone();
    let span = tracer
        .span_builder("process orders")
        .with_kind(SpanKind::Consumer)
        .with_links(vec![Link::with_context(producer)])
        .with_attributes([
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.destination.name", "orders"),
            KeyValue::new("messaging.consumer.group.name", "inventory-service"),
            KeyValue::new("code.function.name", "bench::on_order"),
            KeyValue::new("messaging.destination.partition.id", "0"),
            KeyValue::new("messaging.kafka.offset", 42_i64),
            KeyValue::new("messaging.kafka.message.key", "order-7"),
            KeyValue::new("messaging.message.body.size", 8_i64),
        ])
        .start_with_context(tracer, parent);
    let context = parent.with_span(span);
    let attached = context.clone().attach();
    black_box(());
    drop(attached);
    context.span().end();
}
