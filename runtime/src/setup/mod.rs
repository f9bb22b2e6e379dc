//! Setting a process up for tracehop, in one place: the propagator it reads and writes with (here, always), and
//! with the `otlp` feature a whole tracer provider from the `OTEL_*` variables (`telemetry`, `tracehop::init()`)
//! or the older HTTP-only one (`otlp`).

#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "otlp")]
pub(crate) mod telemetry;

use opentelemetry::global;
use opentelemetry::propagation::TextMapCompositePropagator;

use crate::{W3cBaggage, W3cTraceContext};

/// Installs the W3C propagators (tracehop's [`W3cTraceContext`] for `traceparent`/`tracestate` and
/// [`W3cBaggage`] for `baggage`) as OpenTelemetry's global text-map propagator, which tracehop uses on both
/// sides of the broker. What they write, tracehop's consumers read back whole; other W3C readers (the
/// OpenTelemetry SDK's, other languages') read it too. Any other propagator you install instead (B3, Jaeger, the
/// SDK's own) works as well.
///
/// OpenTelemetry's default global propagator propagates nothing: without this call (or your own
/// `opentelemetry::global::set_text_map_propagator`), every consumer span starts a new trace with
/// `tracehop.context.rejected = "propagator_rejected"` and every producer writes no header.
pub fn install_propagator() {
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(W3cTraceContext::new()),
        Box::new(W3cBaggage::new()),
    ]));
}
