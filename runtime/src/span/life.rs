//! How a message's span lives and ends: current while the handler runs (sync or across every poll), its
//! outcome recorded, ended on every exit, and a producer's injections counted.

use std::any::Any;
use std::cell::Cell;
use std::fmt::Display;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context as TaskContext, Poll};

use opentelemetry::trace::{SpanRef, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use crate::conventions as semconv;

use opentelemetry::trace::Link;

use super::start::{Batch, BatchFacts, BatchHandler, Origin, SpanStart};
use super::{CONTEXT_INJECTED_ATTRIBUTE, CONTEXT_NOT_INJECTED_EVENT};
use crate::attributes::SpanAttributes;
use crate::carrier::{carries_context, extract_context, propagate, ConsumedMessage, IncomingContext, PublishedMessage};
use crate::handler::{Handler, Role};
use crate::settings::ParentPolicy;
use crate::metrics::Measurement;
use crate::outcome::HandlerOutcome;

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

    /// Runs `body` with this span's context current, records its outcome ([`HandlerOutcome`]) and ends the
    /// span. A panic in `body` is recorded as an error and goes on unwinding.
    pub fn run<R: HandlerOutcome>(self, body: impl FnOnce() -> R) -> R {
        self.run_with_outcome(body, |result, span| result.record(span))
    }

    /// [`MessageSpan::run`] with the outcome recorded by `record` instead of [`HandlerOutcome`], for return
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

    /// Wraps `future` so this span's context is current on every poll; when it completes, its output is
    /// recorded ([`HandlerOutcome`]) and the span ends. A panic while polling is recorded and goes on unwinding.
    pub fn instrument<F>(self, future: F) -> Instrumented<F, fn(&F::Output, &MessageSpan)>
    where
        F: Future,
        F::Output: HandlerOutcome,
    {
        self.instrument_with_outcome(future, |output, span| output.record(span))
    }

    /// [`MessageSpan::instrument`] with the outcome recorded by `record` instead of [`HandlerOutcome`].
    pub fn instrument_with_outcome<F, Rec>(self, future: F, record: Rec) -> Instrumented<F, Rec>
    where
        F: Future,
        Rec: FnOnce(&F::Output, &MessageSpan),
    {
        Instrumented { future, span: Some(self), record: Some(record) }
    }

    /// Marks the span as failed: status Error with `message`, `error.type = error_type`, and an `exception`
    /// event. Nothing is formatted when the span is not recorded.
    pub fn record_error(&self, error_type: &'static str, message: &dyn Display) {
        // The metrics see every failure, recorded span or not.
        self.measurement.fail(error_type);
        mark_failed(&self.context.span(), error_type, message);
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

/// Marks `span` failed: status Error with `message`, `error.type = error_type`, and an `exception` event. Nothing
/// is formatted when the span is not recorded.
pub(crate) fn mark_failed(span: &SpanRef<'_>, error_type: &'static str, message: &dyn Display) {
    if !span.is_recording() {
        return;
    }
    let message = message.to_string();
    span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type));
    span.add_event(
        "exception",
        vec![
            KeyValue::new(semconv::EXCEPTION_TYPE, error_type),
            KeyValue::new(semconv::EXCEPTION_MESSAGE, message.clone()),
        ],
    );
    span.set_status(Status::error(message));
}

/// The handler per-message spans belong to when no batch span is current: [`MessageSpan::in_batch`] called
/// outside a batch handler.
static OUTSIDE_A_BATCH: Handler = Handler::consumer("tracehop::in_batch");

impl MessageSpan {
    /// Prepares the CONSUMER span of `message`: extracts its trace context ([`extract_context`]), to continue
    /// it (parent and link) or, when missing or malformed, start a new trace that records why.
    pub fn consumer<'a, M: ConsumedMessage>(handler: &'static Handler, message: &'a M) -> SpanStart<'a> {
        // Under `ParentPolicy::None` the headers are not even read: an untrusted context costs nothing.
        let incoming = (handler.parent_policy() != ParentPolicy::None).then(|| extract_context(message));
        Self::consumer_of_extracted(handler, message, incoming)
    }

    /// [`MessageSpan::consumer`] of a message whose context was already extracted (`None` under
    /// [`ParentPolicy::None`]), so that a receive span and the consumer span read the headers once.
    pub(crate) fn consumer_of_extracted<'a, M: ConsumedMessage>(
        handler: &'static Handler,
        message: &'a M,
        incoming: Option<IncomingContext>,
    ) -> SpanStart<'a> {
        let policy = handler.parent_policy();
        SpanStart::new(handler, Origin::Message { incoming, policy }, Some(message)).with_headers(message)
    }

    /// Prepares the PRODUCER span of a publish, a child of the current context.
    ///
    /// Describe the record with [`SpanStart::describing`] and, once started, write the span's context into it
    /// with [`MessageSpan::inject`]; or write the current context into the records the body builds with
    /// [`inject_current_context`](crate::inject_current_context) (or the broker helpers that call it) while
    /// the span is current. A producer span that ends with no injection records `tracehop.context.injected = false` and
    /// the event `tracehop.context.not_injected`, and logs a warning once per handler.
    pub fn producer<'a>(handler: &'static Handler) -> SpanStart<'a> {
        SpanStart::new(handler, Origin::Current { link: None }, None)
    }

    /// Prepares the CONSUMER span of a batch of messages handled at once: a new trace with no producer parent,
    /// linked to every message whose context is valid (up to [`max_links_per_span`](crate::max_links_per_span); the number left out is
    /// recorded as `tracehop.links.dropped`), each link carrying that message's identity (partition and offset,
    /// or message id and delivery tag), with `messaging.batch.message_count`. Messages without a valid context
    /// count but add no link. The links are computed only when the span is recorded; under
    /// [`ParentPolicy::None`] there are none. Attributes follow the messaging semantic conventions 1.42.0
    /// ([`SCHEMA_URL`](opentelemetry_semantic_conventions::SCHEMA_URL)): operation type `process`,
    /// `messaging.batch.message_count`, and the destination only when every message has the same one.
    pub fn consumer_batch<'a, M: ConsumedMessage>(handler: &'static Handler, messages: &'a [M]) -> SpanStart<'a> {
        let policy = handler.parent_policy();
        let facts = move |cap: usize| {
            let destination = messages
                .first()
                .and_then(|first| first.destination())
                .filter(|destination| messages.iter().all(|message| message.destination() == Some(*destination)));
            let mut links = Vec::new();
            let mut dropped = 0;
            if policy == ParentPolicy::None {
                return BatchFacts { destination, links, dropped };
            }
            for message in messages {
                if links.len() == cap {
                    // Past the cap a context is only counted: no need to build it.
                    dropped += usize::from(carries_context(message));
                    continue;
                }
                let IncomingContext::Continued(context, _) = extract_context(message) else { continue };
                let mut identity = SpanAttributes::with_capacity(3);
                message.record_identity(&mut identity);
                links.push(Link::new(context.span().span_context().clone(), identity.into_inner(), 0));
            }
            BatchFacts { destination, links, dropped }
        };
        SpanStart::new(
            handler,
            Origin::Batch(Batch {
                count: messages.len(),
                system: messages.first().map(|first| first.system()),
                facts: Box::new(facts),
            }),
            None,
        )
    }

    /// Prepares the CONSUMER span of one message of a batch, for handlers that want a span per message too: a
    /// child of the current span (the batch's), linked to the message's producer (unless the batch handler's
    /// [`ParentPolicy`] is [`ParentPolicy::None`]), with the message's attributes and, when its context is
    /// missing or malformed, the reason. It belongs to the handler of the batch span it runs in (its group,
    /// function and policy); outside one, to a handler named `tracehop::in_batch`.
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] {
    /// use rdkafka::message::OwnedMessage;
    /// use tracehop::MessageSpan;
    ///
    /// #[tracehop::traced_consumer(group = "inventory-service")]
    /// fn on_orders(messages: &[OwnedMessage]) {
    ///     for message in messages {
    ///         MessageSpan::in_batch(message).start().run(|| {
    ///             // handle one message
    ///         });
    ///     }
    /// }
    /// # }
    /// ```
    pub fn in_batch<M: ConsumedMessage>(message: &M) -> SpanStart<'_> {
        let handler = Context::map_current(|context| context.get::<BatchHandler>().map(|batch| batch.0));
        Self::in_batch_as(handler.unwrap_or(&OUTSIDE_A_BATCH), message)
    }

    /// [`MessageSpan::in_batch`] under a handler of its own, for per-message spans that differ from the batch's:
    /// replayed messages (`Handler::consumer(..).replay()`), another group or policy.
    pub fn in_batch_as<'a, M: ConsumedMessage>(handler: &'static Handler, message: &'a M) -> SpanStart<'a> {
        let link = (handler.parent_policy() != ParentPolicy::None).then(|| extract_context(message));
        SpanStart::new(handler, Origin::Current { link }, Some(message)).with_headers(message)
    }
}

crate::brokers::with_broker_notes! { reads,
    message = "`{Self}` is neither a message tracehop can read the trace context from nor a batch of them",
    label = "not a message or a batch of messages",
    note = "by value or by reference, or a batch of them (`&[M]`, `Vec<M>`, `&Vec<M>`); for another type, implement `tracehop::ConsumedMessage`";
/// What a `#[traced_consumer]` handler takes: one message, or a batch of them (`[M]`, `Vec<M>`, reached through
/// any reference). The expansion starts the handler's span through it, so the compiler, not the macro, decides
/// which span a parameter gets, and a parameter that is neither is reported as such, at the parameter.
pub trait MessageParameter {
    /// Prepares the handler's CONSUMER span: [`MessageSpan::consumer`] for one message,
    /// [`MessageSpan::consumer_batch`] for a batch.
    fn consumer_span(&self, handler: &'static Handler) -> SpanStart<'_>;
}
}

#[diagnostic::do_not_recommend]
impl<M: ConsumedMessage> MessageParameter for M {
    fn consumer_span(&self, handler: &'static Handler) -> SpanStart<'_> {
        MessageSpan::consumer(handler, self)
    }
}

#[diagnostic::do_not_recommend]
impl<M: ConsumedMessage> MessageParameter for [M] {
    fn consumer_span(&self, handler: &'static Handler) -> SpanStart<'_> {
        MessageSpan::consumer_batch(handler, self)
    }
}

#[diagnostic::do_not_recommend]
impl<M: ConsumedMessage> MessageParameter for Vec<M> {
    fn consumer_span(&self, handler: &'static Handler) -> SpanStart<'_> {
        MessageSpan::consumer_batch(handler, self)
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

thread_local! {
    /// How many injections happened on this thread since the innermost producer scope was entered. Scopes save
    /// and restore it around each run or poll, so an inner producer's injections are not counted for the outer
    /// one and no lock or allocation is needed.
    static INJECTIONS_IN_SCOPE: Cell<u32> = const { Cell::new(0) };
}

/// Counts one injection for the producer span current on this thread, if any.
pub(crate) fn count_injection() {
    INJECTIONS_IN_SCOPE.with(|count| count.set(count.get().saturating_add(1)));
}

/// Counts the injections made while one producer scope is entered (one `run`, or one poll of an instrumented
/// future) into `total`; see [`INJECTIONS_IN_SCOPE`]. Restores the outer scope's count on drop, panics included.
struct InjectionScope<'a> {
    outer: u32,
    total: &'a AtomicU32,
}

impl<'a> InjectionScope<'a> {
    fn enter(total: &'a AtomicU32) -> Self {
        Self { outer: INJECTIONS_IN_SCOPE.with(|count| count.replace(0)), total }
    }
}

impl Drop for InjectionScope<'_> {
    fn drop(&mut self) {
        let inner = INJECTIONS_IN_SCOPE.with(|count| count.replace(self.outer));
        self.total.fetch_add(inner, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn injection_scopes_count_their_own_injections_and_restore_the_outer_count() {
        let (outer_total, inner_total) = (AtomicU32::new(0), AtomicU32::new(0));
        {
            let _outer = InjectionScope::enter(&outer_total);
            count_injection();
            {
                let _inner = InjectionScope::enter(&inner_total);
                count_injection();
                count_injection();
            }
            count_injection();
        }
        assert_eq!(inner_total.load(Ordering::Relaxed), 2);
        assert_eq!(outer_total.load(Ordering::Relaxed), 2, "the inner scope's injections are not the outer's");
    }

    #[test]
    fn spans_and_instrumented_futures_are_send_and_sync() {
        assert_send_sync::<MessageSpan>();
        assert_send_sync::<Instrumented<std::future::Ready<()>, fn(&(), &MessageSpan)>>();
    }
}
