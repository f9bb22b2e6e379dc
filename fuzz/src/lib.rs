//! What the fuzz targets share: how an input becomes message headers, and the tracing set-up.
//!
//! Input format, so seeds can be written by hand and libFuzzer's mutations stay meaningful: headers are
//! separated by byte 0x1E; in each, the first 0x1F separates the name from the value, and a header without
//! 0x1F has a null value (Kafka) or a value that is not bytes (AMQP). Names and values are any other bytes.

use std::sync::Once;

use opentelemetry::global;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};

/// Separates headers.
pub const HEADER_SEPARATOR: u8 = 0x1e;
/// Separates a header's name from its value.
pub const VALUE_SEPARATOR: u8 = 0x1f;

/// The headers an input describes.
pub fn headers(data: &[u8]) -> Vec<(&[u8], Option<&[u8]>)> {
    data.split(|&byte| byte == HEADER_SEPARATOR)
        .map(|header| match header.iter().position(|&byte| byte == VALUE_SEPARATOR) {
            Some(at) => (&header[..at], Some(&header[at + 1..])),
            None => (header, None),
        })
        .collect()
}

/// The headers as a Kafka header list, names added as raw bytes through librdkafka (a foreign producer can
/// send any bytes; rdkafka's safe API takes only `&str` names).
pub fn kafka_headers(headers: &[(&[u8], Option<&[u8]>)]) -> OwnedHeaders {
    let owned = OwnedHeaders::new_with_capacity(headers.len());
    let native =
        owned.as_borrowed() as *const rdkafka::message::BorrowedHeaders as *mut rdkafka::bindings::rd_kafka_headers_t;
    for (name, value) in headers {
        let (value, size) = value.map_or((std::ptr::null(), 0), |value| (value.as_ptr(), value.len() as isize));
        // SAFETY: `native` is the live, writable list `owned` owns; librdkafka copies name and value.
        unsafe {
            rdkafka::bindings::rd_kafka_header_add(
                native,
                name.as_ptr().cast(),
                name.len() as isize,
                value.cast(),
                size,
            );
        }
    }
    owned
}

/// A consumed Kafka message carrying `headers`.
pub fn kafka_message(headers: OwnedHeaders, offset: i64) -> OwnedMessage {
    OwnedMessage::new(
        Some(b"order".to_vec()),
        Some(b"key".to_vec()),
        "orders".to_owned(),
        Timestamp::NotAvailable,
        0,
        offset,
        Some(headers),
    )
}

/// Installs tracehop's propagators and a tracer provider that records every span (and exports nowhere), so
/// the targets run the recorded path: attributes, links, trims.
pub fn set_up() {
    static SET_UP: Once = Once::new();
    SET_UP.call_once(|| {
        global::set_tracer_provider(SdkTracerProvider::builder().build());
        tracehop::install_propagator();
    });
}

/// A valid, sampled context with a `tracestate` and baggage, as a producer would write.
pub fn producer_context() -> Context {
    use opentelemetry::baggage::BaggageExt;
    let trace_state = TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap_or_default();
    let span_context = SpanContext::new(
        TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
        SpanId::from(0x00f067aa0ba902b7),
        TraceFlags::SAMPLED,
        true,
        trace_state,
    );
    Context::new().with_remote_span_context(span_context).with_baggage([opentelemetry::KeyValue::new("tenant", "acme")])
}
