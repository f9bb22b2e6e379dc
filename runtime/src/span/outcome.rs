//! Outcomes: how a handler's return value becomes its span's, by the [`HandlerOutcome`] rule of its type.

use std::fmt::Display;
use std::future::Future;

use super::life::{Instrumented, MessageSpan};

/// A handler result tracehop knows how to record on the handler's span.
///
/// `()` records nothing; `Result<T, E>` with `E: Display` records an `Err` as status Error with the error's
/// `Display`, `error.type` (the error's type name) and an `exception` event. Implement it for your own
/// return types to record their failures. The macros also accept return types that do not implement it:
/// any other `Result` records its `Err` without a message, anything else records nothing.
///
/// ```
/// use tracehop::{HandlerOutcome, MessageSpan};
///
/// enum Ack { Done, Rejected(&'static str) }
///
/// impl HandlerOutcome for Ack {
///     fn record(&self, span: &MessageSpan) {
///         if let Ack::Rejected(reason) = self {
///             span.record_error("Ack::Rejected", reason);
///         }
///     }
/// }
/// ```
pub trait HandlerOutcome {
    /// Records this outcome on `span`.
    fn record(&self, span: &MessageSpan);
}

impl HandlerOutcome for () {
    fn record(&self, _span: &MessageSpan) {}
}

impl<T, E: Display> HandlerOutcome for Result<T, E> {
    fn record(&self, span: &MessageSpan) {
        if let Err(error) = self {
            span.record_error(std::any::type_name::<E>(), error);
        }
    }
}

impl MessageSpan {
    /// Runs `body` with this span's context current, records its outcome ([`HandlerOutcome`]) and ends the
    /// span. A panic in `body` is recorded as an error and goes on unwinding.
    pub fn run<R: HandlerOutcome>(self, body: impl FnOnce() -> R) -> R {
        self.run_with_outcome(body, |result, span| result.record(span))
    }

    /// Wraps `future` so this span's context is current on every poll; when it completes, its output is
    /// recorded ([`HandlerOutcome`]) and the span ends. A panic while polling is recorded and goes on unwinding.
    pub fn instrument<F>(self, future: F) -> Instrumented<F, fn(&F::Output, &MessageSpan)>
    where
        F: Future,
        F::Output: HandlerOutcome,
    {
        self.instrument_with_outcome(future, |output, span| output.record(span))
    }
}
