//! How a message's span lives and ends: current while the handler runs (sync or across every poll), its outcome
//! recorded by the rule the caller gives, ended on every exit, and a producer's injections counted.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context as TaskContext, Poll};

use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};

use super::describer::mark_failed;
use super::{CONTEXT_INJECTED_ATTRIBUTE, CONTEXT_NOT_INJECTED_EVENT};
use crate::carrier::{propagate, PublishedMessage};
use crate::handler::{Handler, Role};
use crate::injections::InjectionScope;
use crate::logs::Event;
use crate::metrics::Measurement;

/// The span of one handled or published message, current while the handler runs and ended when it is dropped.
///
/// This is what `#[traced_consumer]` and `#[traced_producer]` expand to; code that cannot use the attributes
/// gets the same behaviour from it directly:
///
/// ```no_run
/// # #[cfg(feature = "kafka")] {
/// use rdkafka::message::BorrowedMessage;
/// use tracehop::{Handler, MessageSpan};
///
/// static ON_ORDER: Handler = Handler::consumer("inventory::on_order").group("inventory-service");
///
/// fn on_order(message: &BorrowedMessage<'_>) -> Result<(), std::io::Error> {
///     MessageSpan::consumer(&ON_ORDER, message).start().run(|| {
///         // handle the message; spans started here are children of the consumer span
///         Ok(())
///     })
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct MessageSpan {
    context: Context,
    handler: &'static Handler,
    // Atomic only so a future holding the span stays `Sync`; one thread updates it at a time.
    injections: AtomicU32,
    ended: bool,
    measurement: Measurement,
}

impl MessageSpan {
    pub(super) fn new(context: Context, handler: &'static Handler) -> Self {
        MessageSpan { context, handler, injections: AtomicU32::new(0), ended: false, measurement: Measurement::none() }
    }

    /// This span's metrics, recorded when it ends.
    pub(super) fn measured(mut self, measurement: Measurement) -> Self {
        self.measurement = measurement;
        self
    }

    /// The context holding this span (and, for a continued consumer, the producer's baggage).
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Writes this span's context into `record`'s headers with the global propagator (replacing any trace
    /// headers it already carries), and counts it as this producer span's injection.
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] {
    /// use rdkafka::producer::FutureRecord;
    /// use tracehop::{Handler, MessageSpan};
    ///
    /// static PUBLISH: Handler = Handler::producer("orders::publish");
    ///
    /// let mut record: FutureRecord<'_, str, str> = FutureRecord::to("orders").payload("{}");
    /// let span = MessageSpan::producer(&PUBLISH).describing(&record).start();
    /// span.inject(&mut record);
    /// // send `record` inside `span.run(...)` or `span.instrument(...)`
    /// # }
    /// ```
    pub fn inject<M: PublishedMessage + ?Sized>(&self, record: &mut M) {
        if propagate(&self.context, record) {
            self.injections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// [`MessageSpan::run`] with the outcome recorded by `record` instead of [`HandlerOutcome`](crate::HandlerOutcome), for return
    /// types that do not implement it.
    pub fn run_with_outcome<R>(mut self, body: impl FnOnce() -> R, record: impl FnOnce(&R, &MessageSpan)) -> R {
        let result = {
            let _attached = self.context.clone().attach();
            let _injections = self.injection_scope();
            catch_unwind(AssertUnwindSafe(body))
        };
        match result {
            Ok(value) => {
                record(&value, &self);
                self.end();
                value
            }
            Err(panic) => {
                self.record_panic(&*panic, "panicked");
                self.end();
                resume_unwind(panic)
            }
        }
    }

    /// [`MessageSpan::instrument`] with the outcome recorded by `record` instead of [`HandlerOutcome`](crate::HandlerOutcome).
    pub fn instrument_with_outcome<F, Rec>(self, future: F, record: Rec) -> Instrumented<F, Rec>
    where
        F: Future,
        Rec: FnOnce(&F::Output, &MessageSpan),
    {
        Instrumented { future, span: Some(self), record: Some(record) }
    }

    /// Marks the span as failed: status Error with `message`, `error.type = error_type`, and an `exception`
    /// event. Nothing is formatted when the span is not recorded. With the `logs` feature, the failure is also
    /// the conventions' `messaging.process.exception` (a consumer) or `messaging.send.exception` (a producer)
    /// log record (`tracehop::logs`).
    pub fn record_error(&self, error_type: &'static str, message: &dyn Display) {
        // The metrics see every failure, recorded span or not.
        self.measurement.fail(error_type);
        mark_failed(&self.context.span(), error_type, message);
        let event = match self.handler.role() {
            Role::Consumer => Event::Process,
            Role::Producer => Event::Send,
        };
        crate::logs::exception(event, self.context.span().span_context(), error_type, message);
    }

    /// Records a panic caught while `doing` as the span's error.
    pub(super) fn record_panic(&self, panic: &(dyn Any + Send), doing: &str) {
        let message = panic
            .downcast_ref::<&'static str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
        match message {
            Some(message) => self.record_error("panic", &format_args!("{doing}: {message}")),
            None => self.record_error("panic", &format_args!("{doing} (with a payload that is not a string)")),
        }
    }

    fn injection_scope(&self) -> Option<InjectionScope<'_>> {
        (self.handler.role() == Role::Producer).then(|| InjectionScope::enter(&self.injections))
    }

    fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.measurement.finish(self.injections.load(Ordering::Relaxed));
        let span = self.context.span();
        if self.handler.role() == Role::Producer && self.injections.load(Ordering::Relaxed) == 0 {
            if self.handler.first_missing_injection() {
                tracing::warn!(
                    handler = self.handler.function(),
                    "tracehop: a producer span ended without writing its trace context into any message; \
                     pass the record to the function, or call tracehop::inject_current_context (or your \
                     broker module's trace_headers) on the headers you publish"
                );
            }
            if span.is_recording() {
                span.set_attribute(KeyValue::new(CONTEXT_INJECTED_ATTRIBUTE, false));
                span.add_event(CONTEXT_NOT_INJECTED_EVENT, Vec::new());
            }
        }
        span.end();
    }
}

impl Drop for MessageSpan {
    /// Ends the span on every exit: a future dropped before it completed, or a panic that unwound past a span
    /// not run through [`MessageSpan::run`].
    fn drop(&mut self) {
        if !self.ended && std::thread::panicking() {
            self.record_error("panic", &"the handler panicked");
        }
        self.end();
    }
}

pin_project_lite::pin_project! {
    /// A future running under a [`MessageSpan`]; made by [`MessageSpan::instrument`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Instrumented<F, Rec> {
        #[pin]
        future: F,
        span: Option<MessageSpan>,
        record: Option<Rec>,
    }
}

impl<F, Rec> Future for Instrumented<F, Rec>
where
    F: Future,
    Rec: FnOnce(&F::Output, &MessageSpan),
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(span) = this.span.as_mut() else {
            return this.future.poll(cx);
        };
        let polled = {
            let _attached = span.context.clone().attach();
            let _injections = span.injection_scope();
            catch_unwind(AssertUnwindSafe(|| this.future.poll(cx)))
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                if let Some(record) = this.record.take() {
                    record(&output, span);
                }
                drop(this.span.take());
                Poll::Ready(output)
            }
            Err(panic) => {
                span.record_panic(&*panic, "panicked");
                drop(this.span.take());
                resume_unwind(panic)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn spans_and_instrumented_futures_are_send_and_sync() {
        assert_send_sync::<MessageSpan>();
        assert_send_sync::<Instrumented<std::future::Ready<()>, fn(&(), &MessageSpan)>>();
    }
}
