//! The messaging conventions' exception events, as OpenTelemetry log records (cargo feature `logs`).
//!
//! The current messaging semantic conventions ("Semantic conventions for messaging exceptions", status
//! Development, newer than the schema 1.42.0 whose attributes tracehop records; `opentelemetry-semantic-conventions`
//! 0.33 has no constants for them) record a failed messaging operation as an event: a log record named
//! `messaging.{operation}.exception` with `exception.type` and `exception.message`. tracehop emits three of them,
//! beside the `exception` event it adds to the failed span, which stays as it is:
//!
//! | event | severity | emitted when |
//! |:-|:-|:-|
//! | [`PROCESS_EXCEPTION_EVENT`] | `ERROR` (17) | a consumer's handler returns an error or panics ([`MessageSpan::record_error`](crate::MessageSpan::record_error) on a consumer span) |
//! | [`SEND_EXCEPTION_EVENT`] | `WARN` (13) | a publish fails: a producer handler's error or panic, a failed delivery report, a broker's refusal |
//! | [`SETTLE_EXCEPTION_EVENT`] | `WARN` (13) | a settle call fails ([`Settle`](crate::Settle): an ack, a commit, ...) |
//!
//! Each record carries the trace id, span id and trace flags of the span that failed (so a log backend joins it
//! to the trace), the conventions' severity number and text, `exception.type` (the span's `error.type`: the
//! error's type name, or `panic`) and `exception.message` (the error's `Display`, as the span's status
//! description). The conventions' optional `exception.stacktrace` is not recorded: a Rust error carries none.
//!
//! A failure is logged whether its span is sampled or not: logs are sampled by their own pipeline. The
//! OpenTelemetry logs API has no global logger provider, so tracehop is given one with [`set_logger_provider`];
//! until then nothing is emitted. The success path costs nothing: nothing is looked up until a span fails, and a
//! message is formatted only when the logger says the event is enabled.

use std::fmt::Display;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider, Severity};
use opentelemetry::trace::SpanContext;

use crate::conventions as semconv;

/// The event of a failed processing: a consumer's handler returned an error or panicked.
///
/// ```
/// assert_eq!(tracehop::logs::PROCESS_EXCEPTION_EVENT, "messaging.process.exception");
/// ```
pub const PROCESS_EXCEPTION_EVENT: &str = semconv::MESSAGING_PROCESS_EXCEPTION_EVENT;

/// The event of a failed publish.
///
/// ```
/// assert_eq!(tracehop::logs::SEND_EXCEPTION_EVENT, "messaging.send.exception");
/// ```
pub const SEND_EXCEPTION_EVENT: &str = semconv::MESSAGING_SEND_EXCEPTION_EVENT;

/// The event of a failed settle call (an ack, a nack, a commit, an offset store).
///
/// ```
/// assert_eq!(tracehop::logs::SETTLE_EXCEPTION_EVENT, "messaging.settle.exception");
/// ```
pub const SETTLE_EXCEPTION_EVENT: &str = semconv::MESSAGING_SETTLE_EXCEPTION_EVENT;

/// Gives tracehop the logger provider its exception events go to, replacing any given before. The logger is made
/// once, here, with tracehop's instrumentation scope (the one its spans and metrics have).
///
/// ```
/// use opentelemetry_sdk::logs::SdkLoggerProvider;
///
/// let provider = SdkLoggerProvider::builder().build(); // with an exporter: `.with_batch_exporter(...)`
/// tracehop::logs::set_logger_provider(&provider);
/// ```
pub fn set_logger_provider<P>(provider: &P)
where
    P: LoggerProvider,
    P::Logger: Send + Sync + 'static,
{
    let logger: Arc<dyn ExceptionLogger> = Arc::new(provider.logger_with_scope(crate::span::instrumentation_scope()));
    *LOGGER.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(logger);
}

/// The logger of the provider given to [`set_logger_provider`], behind a trait object: a [`Logger`] has an
/// associated record type, so only what tracehop does with it is kept.
static LOGGER: RwLock<Option<Arc<dyn ExceptionLogger>>> = RwLock::new(None);

/// What tracehop does with a logger: emit one exception event.
trait ExceptionLogger: Send + Sync {
    fn emit_exception(&self, event: Event, span: &SpanContext, error_type: &'static str, message: &dyn Display);
}

impl<L: Logger + Send + Sync> ExceptionLogger for L {
    fn emit_exception(&self, event: Event, span: &SpanContext, error_type: &'static str, message: &dyn Display) {
        let (severity, severity_text) = event.severity();
        if !self.event_enabled(severity, TARGET, Some(event.name())) {
            return;
        }
        let mut record = self.create_log_record();
        record.set_event_name(event.name());
        record.set_target(TARGET);
        record.set_timestamp(SystemTime::now());
        record.set_severity_number(severity);
        record.set_severity_text(severity_text);
        record.add_attribute(semconv::EXCEPTION_TYPE, AnyValue::from(error_type));
        record.add_attribute(semconv::EXCEPTION_MESSAGE, AnyValue::from(message.to_string()));
        if span.is_valid() {
            record.set_trace_context(span.trace_id(), span.span_id(), Some(span.trace_flags()));
        }
        self.emit(record);
    }
}

/// The target of tracehop's log records, for a logger that filters by it.
const TARGET: &str = "tracehop";

/// Which messaging operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Process,
    Send,
    Settle,
}

impl Event {
    const fn name(self) -> &'static str {
        match self {
            Event::Process => PROCESS_EXCEPTION_EVENT,
            Event::Send => SEND_EXCEPTION_EVENT,
            Event::Settle => SETTLE_EXCEPTION_EVENT,
        }
    }

    /// The conventions' severity: ERROR for a processing that failed, WARN for a client operation.
    const fn severity(self) -> (Severity, &'static str) {
        match self {
            Event::Process => (Severity::Error, "ERROR"),
            Event::Send | Event::Settle => (Severity::Warn, "WARN"),
        }
    }
}

/// Emits `event` for the failed `span` to the logger provider given to [`set_logger_provider`], if any.
pub(crate) fn exception(event: Event, span: &SpanContext, error_type: &'static str, message: &dyn Display) {
    let logger = LOGGER.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    if let Some(logger) = logger {
        logger.emit_exception(event, span, error_type, message);
    }
}
