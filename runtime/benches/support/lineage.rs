//! The retry cases: a retry republish's span and header work ([`tracehop_retry`]), and the CONSUMER span of a
//! message that came through one ([`retried_message`]), beside the plain publish and consumer cases.

use std::hint::black_box;

use opentelemetry::Context;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use tracehop::Republish;

use super::{order_message, traceparent, TRACESTATE};

/// What `tracehop::clients::kafka::retry` does for `message` before it sends, its failed CONSUMER span the one
/// in `consumer`: the retry's PRODUCER span (described, linked to the first creation, ended) and its headers (the
/// message's own but the trace headers, the new trace headers, the attempt, the first and previous contexts).
pub fn tracehop_retry(message: &OwnedMessage, consumer: &Context) {
    let headers =
        tracehop::clients::kafka::__retry_headers(message, "orders.retry", Republish::new().consumer_span(consumer));
    black_box(headers);
}

/// An order message as its third attempt arrives: [`super::traced_message`]'s headers and the lineage a
/// retry writes (its attempt, the first creation's and the failed attempt's `traceparent`).
pub fn retried_message(trace_id: u128, sampled: bool) -> OwnedMessage {
    let traceparent = traceparent(trace_id, sampled);
    let first = format!("00-{trace_id:032x}-1111111111111111-01");
    let previous = format!("00-{trace_id:032x}-2222222222222222-01");
    order_message(
        OwnedHeaders::new()
            .insert(Header { key: "content-type", value: Some("application/json") })
            .insert(Header { key: "x-request-id", value: Some("7f3c2a") })
            .insert(Header { key: "traceparent", value: Some(&traceparent) })
            .insert(Header { key: "tracestate", value: Some(TRACESTATE) })
            .insert(Header { key: "tracehop-attempt", value: Some("3") })
            .insert(Header { key: "tracehop-first-traceparent", value: Some(&first) })
            .insert(Header { key: "tracehop-previous-attempt", value: Some(&previous) }),
    )
}
