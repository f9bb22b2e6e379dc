//! `tracing` events written in a handler's body become events of its span.
//!
//! A service that traces with `tracing` and `tracing-opentelemetry` gets its `tracing` spans (and the events in
//! them) under tracehop's spans already: tracehop's span is OpenTelemetry's current context while a handler
//! runs. What it does not get is the event written directly in the handler's body — `tracing::info!("reserved
//! stock")` — because no `tracing` span is current there, so `tracing-opentelemetry` has nowhere to put it.
//! [`HandlerEventsLayer`] puts it on OpenTelemetry's current span: the handler's.

use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, Key, KeyValue, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::layer::{self, Layer};
use tracing_subscriber::registry::LookupSpan;

/// A `tracing-subscriber` layer that records every `tracing` event emitted outside any `tracing` span onto
/// OpenTelemetry's current span — inside a traced handler, the handler's CONSUMER or PRODUCER span — as a span
/// event named by the event's message, with its fields as attributes and `level` and `target` beside them.
/// Events inside `tracing` spans are left to `tracing-opentelemetry`, as before; an unrecorded span records
/// nothing and formats nothing. Needs the `tracing` cargo feature.
///
/// The one line a service adds to its subscriber:
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let subscriber = tracing_subscriber::registry()
///     // .with(tracing_opentelemetry::layer().with_tracer(tracer)) as the service already has
///     .with(tracehop::HandlerEventsLayer::new());
/// # let _ = subscriber;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HandlerEventsLayer {
    _private: (),
}

impl HandlerEventsLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl<S> Layer<S> for HandlerEventsLayer
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_event(&self, event: &Event<'_>, context: layer::Context<'_, S>) {
        if context.event_span(event).is_some() {
            // Inside a `tracing` span: that span's, recorded by `tracing-opentelemetry` where it is installed.
            return;
        }
        let current = Context::current();
        let span = current.span();
        if !span.is_recording() {
            return;
        }
        let metadata = event.metadata();
        let mut fields = EventFields { message: None, attributes: Vec::with_capacity(4) };
        event.record(&mut fields);
        fields.attributes.push(KeyValue::new("level", metadata.level().as_str()));
        fields.attributes.push(KeyValue::new("target", metadata.target()));
        let name = fields.message.unwrap_or_else(|| metadata.name().to_owned());
        span.add_event(name, fields.attributes);
    }
}

/// Log correlation: wraps a `tracing-subscriber` event format so that every line written while an OpenTelemetry
/// span is current — in a traced handler, its span — begins with `trace_id=<32 hex> span_id=<16 hex>`, the ids
/// a trace backend finds the trace by. Lines written outside any span are unchanged. Needs the `tracing` cargo
/// feature.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let logs = tracing_subscriber::fmt::layer()
///     .event_format(tracehop::WithTraceIds::new(tracing_subscriber::fmt::format()));
/// let subscriber = tracing_subscriber::registry().with(logs).with(tracehop::HandlerEventsLayer::new());
/// # let _ = subscriber;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct WithTraceIds<F> {
    inner: F,
}

impl<F> WithTraceIds<F> {
    /// `inner`, its lines prefixed with the current trace and span ids.
    pub const fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let current = Context::current();
        let span = current.span();
        let ids = span.span_context();
        if ids.is_valid() {
            write!(writer, "trace_id={} span_id={} ", ids.trace_id(), ids.span_id())?;
        }
        self.inner.format_event(context, writer, event)
    }
}

/// An event's message and its other fields as attributes.
struct EventFields {
    message: Option<String>,
    attributes: Vec<KeyValue>,
}

impl EventFields {
    fn add(&mut self, field: &Field, value: Value) {
        self.attributes.push(KeyValue::new(Key::from_static_str(field.name()), value));
    }
}

impl Visit for EventFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.add(field, Value::from(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.add(field, Value::from(value.to_owned()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.add(field, Value::I64(value)),
            Err(_) => self.add(field, Value::from(value.to_string())),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, Value::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, Value::Bool(value));
    }
}
