//! What the benchmarks share: a consumed message as the consumer gets it, and an exporter that drops spans.

use std::hint::black_box;

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
