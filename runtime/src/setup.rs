//! Process-wide set-up: the propagator tracehop reads and writes with.

use opentelemetry::global;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_sdk::propagation::BaggagePropagator;

use crate::W3cTraceContext;

/// Installs the W3C propagators (tracehop's [`W3cTraceContext`] for `traceparent`/`tracestate`, OpenTelemetry's
/// for `baggage`) as OpenTelemetry's global text-map propagator, which tracehop uses on both sides of the broker.
/// Any other propagator you install instead (B3, Jaeger, the SDK's own) works too.
///
/// OpenTelemetry's default global propagator propagates nothing: without this call (or your own
/// `opentelemetry::global::set_text_map_propagator`), every consumer span starts a new trace with
/// `tracehop.context.rejected = "propagator_rejected"` and every producer writes no header.
pub fn install_propagator() {
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(W3cTraceContext::new()),
        Box::new(BaggagePropagator::new()),
    ]));
}
