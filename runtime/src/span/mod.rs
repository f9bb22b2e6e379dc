//! The span of one handled or published message, one idea a file: where its parent and links come from
//! (`origin`), how it starts ([`SpanStart`], `start`), how it is named and described (`describer`, also for the
//! receive and settle spans; the names of recurring destinations made once, `names`), how it lives and ends
//! ([`MessageSpan`], `life`), how a handler's result becomes its outcome ([`HandlerOutcome`], `outcome`), and
//! the creation spans of records published together (`creation`).

mod creation;
mod describer;
mod life;
mod names;
mod origin;
mod outcome;
mod start;

use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, InstrumentationScope};

use crate::w3c::WireOnly;

pub use creation::inject_creation_context;
pub(crate) use describer::{mark_failed, MessagingSpan};
pub use life::{Instrumented, MessageSpan};
pub(crate) use names::recurring;
pub use outcome::HandlerOutcome;
pub use start::SpanStart;

/// Attribute naming why an incoming context was not continued; its values are
/// [`ContextRejection::as_str`](crate::ContextRejection::as_str).
pub const CONTEXT_REJECTED_ATTRIBUTE: &str = "tracehop.context.rejected";

/// Attribute set to `false` on a producer span during which no trace context was written into any message.
pub const CONTEXT_INJECTED_ATTRIBUTE: &str = "tracehop.context.injected";

/// Event added to a producer span during which no trace context was written into any message.
pub const CONTEXT_NOT_INJECTED_EVENT: &str = "tracehop.context.not_injected";

/// Attribute set to `true` on the span of a handler marked as handling replayed events.
pub const REPLAY_ATTRIBUTE: &str = "tracehop.replay";

/// Attribute holding a replayed message's own time (the Kafka timestamp, the AMQP `timestamp` property), in
/// milliseconds since the Unix epoch, when the message carries one.
pub const REPLAY_ORIGINAL_TIME_ATTRIBUTE: &str = "tracehop.replay.original_time_ms";

/// Attribute naming why members of a continued context's `tracestate` were left out; its values are
/// [`TrimReason::as_str`](crate::TrimReason::as_str).
pub const TRACESTATE_TRIMMED_ATTRIBUTE: &str = "tracehop.context.tracestate.trimmed";

/// Attribute naming why members of a continued context's `baggage` were left out; its values are
/// [`TrimReason::as_str`](crate::TrimReason::as_str).
pub const BAGGAGE_TRIMMED_ATTRIBUTE: &str = "tracehop.context.baggage.trimmed";

/// Attribute counting the valid message contexts a batch span did not link to, past
/// [`max_links_per_span`](crate::max_links_per_span). Past the cap a message counts when its W3C `traceparent`
/// is valid or, without one, when the installed propagator finds a context in its headers; no context is built
/// for it.
pub const LINKS_DROPPED_ATTRIBUTE: &str = "tracehop.links.dropped";

/// The scope of every tracer tracehop uses: its name, version and the semantic conventions' schema.
pub(crate) fn instrumentation_scope() -> InstrumentationScope {
    static SCOPE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE
        .get_or_init(|| {
            InstrumentationScope::builder("tracehop")
                .with_version(env!("CARGO_PKG_VERSION"))
                .with_schema_url(crate::conventions::SCHEMA_URL)
                .build()
        })
        .clone()
}

/// `context`, holding the span tracehop just started, marked so the `traceparent` written for it carries W3C Trace
/// Context Level 2's random flag when that span `starts_a_trace` and [`random_trace_ids`](crate::random_trace_ids)
/// says the process's trace ids are random: the SDK gives the traces it starts no such flag.
fn marked_random_if_started(context: Context, starts_a_trace: bool) -> Context {
    if !(starts_a_trace && crate::settings::random_trace_ids()) {
        return context;
    }
    let trace_id = context.span().span_context().trace_id();
    if trace_id == opentelemetry::trace::TraceId::INVALID {
        return context;
    }
    context.with_value(WireOnly::random_root(trace_id))
}
