//! The span of one handled or published message: how it starts, what it records and how it ends.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::task::{Context as TaskContext, Poll};

use opentelemetry::trace::{Link, Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{global, Context, InstrumentationScope, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;

use crate::attributes::SpanAttributes;
use crate::carrier::{
    extract_context, inject_context, propagate, ConsumedMessage, IncomingContext, InjectionScope, MessageFacts,
    PublishedMessage,
};
use crate::handler::{Handler, MessagingSystem, ParentPolicy, Role};
use crate::outcome::HandlerOutcome;
use crate::settings::max_links_per_span;
use crate::w3c::{TrimReason, Trims};

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
/// [`max_links_per_span`](crate::max_links_per_span).
pub const LINKS_DROPPED_ATTRIBUTE: &str = "tracehop.links.dropped";

fn instrumentation_scope() -> InstrumentationScope {
    static SCOPE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE
        .get_or_init(|| {
            InstrumentationScope::builder("tracehop")
                .with_version(env!("CARGO_PKG_VERSION"))
                .with_schema_url(opentelemetry_semantic_conventions::SCHEMA_URL)
                .build()
        })
        .clone()
}

/// Where a span's parent and links come from, decided before sampling.
enum Origin<'a> {
    /// One consumed message under a [`ParentPolicy`].
    Message { incoming: Option<IncomingContext>, policy: ParentPolicy },
    /// A publish, or a message of a batch handled in its own span: a child of the current context, linked to
    /// `link` when the message carried a context.
    Current { link: Option<IncomingContext> },
    /// A batch: a new root linked to each message's context, computed only when the span is recorded.
    Batch(Batch<'a>),
}

/// The messages of a batch span, as what the span needs of them. What takes a pass over every message is
/// computed only for a recorded span, by `facts`.
struct Batch<'a> {
    count: usize,
    system: Option<MessagingSystem>,
    facts: Box<dyn FnOnce(usize) -> BatchFacts<'a> + 'a>,
}

struct BatchFacts<'a> {
    /// The destination, when every message has the same one.
    destination: Option<&'a str>,
    links: Vec<Link>,
    dropped: usize,
}

/// Everything a [`MessageSpan`] starts from; made by [`MessageSpan::consumer`] or [`MessageSpan::producer`],
/// refined with its methods and turned into a span by [`SpanStart::start`].
#[must_use = "a span is started only by `SpanStart::start`"]
pub struct SpanStart<'a> {
    handler: &'static Handler,
    origin: Origin<'a>,
    message: Option<&'a dyn MessageFacts>,
    destination: Option<&'a str>,
    routing_key: Option<&'a str>,
    server: Option<(&'a str, u16)>,
    user_attributes: Option<&'a mut dyn FnMut(&mut SpanAttributes)>,
}

impl<'a> SpanStart<'a> {
    fn new(handler: &'static Handler, origin: Origin<'a>, message: Option<&'a dyn MessageFacts>) -> Self {
        SpanStart {
            handler,
            origin,
            message,
            destination: None,
            routing_key: None,
            server: None,
            user_attributes: None,
        }
    }

    /// The destination, computed per message, for handlers whose destination is neither fixed nor the message's
    /// own (`destination = expr` in the macros).
    pub fn destination(mut self, destination: &'a str) -> Self {
        self.destination = Some(destination);
        self
    }

    /// The RabbitMQ routing key a producer publishes with, computed per message (`routing_key = expr` in the
    /// macros): `messaging.rabbitmq.destination.routing_key`. Recorded for RabbitMQ spans only, and only when
    /// not empty, as the conventions ask.
    pub fn routing_key(mut self, routing_key: &'a str) -> Self {
        self.routing_key = Some(routing_key);
        self
    }

    /// The broker this span's message came from or goes to: `server.address` and `server.port`. A message does
    /// not know its broker, so the macros cannot fill these in; code that knows the connection's address can.
    pub fn server(mut self, address: &'a str, port: u16) -> Self {
        self.server = Some((address, port));
        self
    }

    /// The record this producer span publishes: its facts (topic, partition, key, body size) become the span's
    /// attributes. Write the span's context into it with [`MessageSpan::inject`] once the span has started.
    pub fn describing<M: MessageFacts>(mut self, record: &'a M) -> Self {
        self.message = Some(record);
        self
    }

    /// The user's own attributes, computed only when the span is recorded.
    pub fn attributes(mut self, add: &'a mut dyn FnMut(&mut SpanAttributes)) -> Self {
        self.user_attributes = Some(add);
        self
    }

    /// Starts the span. The sampling decision comes first: an unsampled span formats no name and sets no
    /// attribute.
    pub fn start(self) -> MessageSpan {
        let SpanStart { handler, origin, message, destination, routing_key, server, user_attributes } = self;
        let role = handler.role();
        let replay = handler.is_replay();
        // The parent, the one link (a single message's producer), why an incoming context was not continued and
        // what of it was trimmed.
        let mut trims = Trims::default();
        let (parent_context, link, rejection, batch) = match origin {
            Origin::Message { incoming: Some(IncomingContext::Continued(context, trimmed)), policy } => {
                let producer = context.span().span_context().clone();
                if policy == ParentPolicy::Continue {
                    trims = trimmed;
                    (context, Some(producer), None, None)
                } else {
                    // Linked, never adopted: no trace id, sampling flag or baggage of the producer's crosses over.
                    trims.tracestate = trimmed.tracestate;
                    (Context::new(), Some(producer), None, None)
                }
            }
            Origin::Message { incoming: Some(IncomingContext::NewRoot(rejection)), .. } => {
                (Context::new(), None, Some(rejection), None)
            }
            Origin::Message { incoming: None, .. } => (Context::new(), None, None, None),
            Origin::Current { link } => {
                let link = match link {
                    Some(IncomingContext::Continued(context, trimmed)) => {
                        trims.tracestate = trimmed.tracestate;
                        Some(context.span().span_context().clone())
                    }
                    _ => None,
                };
                (Context::current(), link, None, None)
            }
            Origin::Batch(batch) => (Context::new(), None, None, Some(batch)),
        };
        let tracer = global::tracer_with_scope(instrumentation_scope());
        let kind = match role {
            Role::Consumer => SpanKind::Consumer,
            Role::Producer => SpanKind::Producer,
        };
        let initial_name = handler.configured_span_name().unwrap_or(role.operation());
        let mut span = tracer.span_builder(initial_name).with_kind(kind).start_with_context(&tracer, &parent_context);

        if span.is_recording() {
            let facts = message;
            let batch_facts = batch.map(|batch| (batch.count, batch.system, (batch.facts)(max_links_per_span())));
            let system = facts
                .map(|facts| facts.system())
                .or(batch_facts.as_ref().and_then(|(_, system, _)| *system))
                .or(handler.configured_system());
            let destination = destination
                .or(handler.configured_destination())
                .or_else(|| facts.and_then(|facts| facts.destination()))
                .or_else(|| batch_facts.as_ref().and_then(|(_, _, facts)| facts.destination));
            if handler.configured_span_name().is_none() {
                if let Some(destination) = destination {
                    let destination = system.map_or(destination, |system| system.span_name_destination(destination));
                    span.update_name(format!("{} {destination}", role.operation()));
                }
            }
            if let Some(link) = link {
                span.add_link(link, Vec::new());
            }
            let mut attributes = SpanAttributes::with_capacity(16);
            if let Some(system) = system {
                attributes.add(semconv::MESSAGING_SYSTEM, system.as_str());
            }
            attributes.add(semconv::MESSAGING_OPERATION_TYPE, role.operation());
            attributes.add(semconv::MESSAGING_OPERATION_NAME, role.operation());
            attributes.add(semconv::MESSAGING_DESTINATION_NAME, destination);
            attributes.add(semconv::MESSAGING_CONSUMER_GROUP_NAME, handler.configured_group());
            attributes.add(semconv::CODE_FUNCTION_NAME, handler.function());
            if let Some(facts) = facts {
                facts.record_attributes(&mut attributes);
                if replay {
                    attributes.add(REPLAY_ATTRIBUTE, true);
                    attributes.add(REPLAY_ORIGINAL_TIME_ATTRIBUTE, facts.timestamp_millis());
                }
            }
            if let Some((count, _, BatchFacts { links, dropped, .. })) = batch_facts {
                attributes.add(semconv::MESSAGING_BATCH_MESSAGE_COUNT, count);
                for Link { span_context, attributes: link_attributes, .. } in links {
                    span.add_link(span_context, link_attributes);
                }
                if dropped > 0 {
                    attributes.add(LINKS_DROPPED_ATTRIBUTE, dropped);
                }
            }
            let routing_key = routing_key.or(handler.configured_routing_key()).filter(|key| !key.is_empty());
            if let (Some(MessagingSystem::RabbitMq), Some(routing_key)) = (system, routing_key) {
                attributes.add(semconv::MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY, routing_key);
            }
            if let Some((address, port)) = server {
                attributes.add(semconv::SERVER_ADDRESS, address);
                attributes.add(semconv::SERVER_PORT, port);
            }
            if let Some(rejection) = rejection {
                attributes.add(CONTEXT_REJECTED_ATTRIBUTE, rejection.as_str());
            }
            attributes.add(TRACESTATE_TRIMMED_ATTRIBUTE, trims.tracestate.map(TrimReason::as_str));
            attributes.add(BAGGAGE_TRIMMED_ATTRIBUTE, trims.baggage.map(TrimReason::as_str));
            if let Some(add) = user_attributes {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| add(&mut attributes))) {
                    // The handler never runs: its span says so, with the attributes made so far, and ends.
                    span.set_attributes(attributes.into_inner());
                    let span = MessageSpan::new(parent_context.with_span(span), handler);
                    span.record_panic(&*panic, "an attributes(...) expression panicked, so the handler did not run");
                    drop(span);
                    resume_unwind(panic);
                }
            }
            span.set_attributes(attributes.into_inner());
        }

        MessageSpan::new(parent_context.with_span(span), handler)
    }
}

/// Gives `record` a creation context of its own, for a producer that publishes several records under one
/// PRODUCER span: a short `create {destination}` span (kind PRODUCER, `messaging.operation.type = create`), a
/// child of the current span, is written into the record's headers and linked from the current span, as the
/// messaging conventions describe batch publishing. Each record's consumers then continue their own record's
/// creation span instead of all sharing the publish span. Counts as an injection of the current producer span.
///
/// ```no_run
/// # #[cfg(feature = "kafka")] {
/// use rdkafka::producer::{BaseProducer, BaseRecord};
///
/// #[tracehop::traced_producer(system = "kafka", destination = "orders")]
/// fn publish_all(producer: &BaseProducer, orders: &[String]) {
///     for order in orders {
///         let mut record: BaseRecord<'_, str, str> = BaseRecord::to("orders").payload(order.as_str());
///         tracehop::inject_creation_context(&mut record);
///         let _ = producer.send(record);
///     }
/// }
/// # }
/// ```
pub fn inject_creation_context<M: PublishedMessage + ?Sized>(record: &mut M) {
    let current = Context::current();
    let tracer = global::tracer_with_scope(instrumentation_scope());
    let mut create = tracer.span_builder("create").with_kind(SpanKind::Producer).start_with_context(&tracer, &current);
    if create.is_recording() {
        let system = record.system();
        let destination = record.destination();
        if let Some(destination) = destination {
            create.update_name(format!("create {}", system.span_name_destination(destination)));
        }
        let mut attributes = SpanAttributes::with_capacity(8);
        attributes.add(semconv::MESSAGING_SYSTEM, system.as_str());
        attributes.add(semconv::MESSAGING_OPERATION_TYPE, "create");
        attributes.add(semconv::MESSAGING_OPERATION_NAME, "create");
        attributes.add(semconv::MESSAGING_DESTINATION_NAME, destination);
        record.record_attributes(&mut attributes);
        create.set_attributes(attributes.into_inner());
    }
    let creation = create.span_context().clone();
    let creation_context = current.with_span(create);
    inject_context(&creation_context, record);
    creation_context.span().end();
    current.span().add_link(creation, Vec::new());
}

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
}

impl MessageSpan {
    fn new(context: Context, handler: &'static Handler) -> Self {
        MessageSpan { context, handler, injections: AtomicU32::new(0), ended: false }
    }

    /// Prepares the CONSUMER span of `message`: extracts its trace context ([`extract_context`]), to continue
    /// it (parent and link) or, when missing or malformed, start a new trace that records why.
    pub fn consumer<'a, M: ConsumedMessage>(handler: &'static Handler, message: &'a M) -> SpanStart<'a> {
        let policy = handler.parent_policy();
        // Under `ParentPolicy::None` the headers are not even read: an untrusted context costs nothing.
        let incoming = (policy != ParentPolicy::None).then(|| extract_context(message));
        SpanStart::new(handler, Origin::Message { incoming, policy }, Some(message))
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
    /// linked to every message whose context is valid (up to [`max_links_per_span`]; the number left out is
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
                let IncomingContext::Continued(context, _) = extract_context(message) else { continue };
                if links.len() == cap {
                    dropped += 1;
                    continue;
                }
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
    /// child of the current span (the batch's), linked to the message's producer (unless the handler's
    /// [`ParentPolicy`] is [`ParentPolicy::None`]), with the message's attributes.
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] {
    /// use rdkafka::message::OwnedMessage;
    /// use tracehop::{Handler, MessageSpan};
    ///
    /// static ON_ORDERS: Handler = Handler::consumer("inventory::on_orders").group("inventory-service");
    ///
    /// #[tracehop::traced_consumer(group = "inventory-service")]
    /// fn on_orders(messages: &[OwnedMessage]) {
    ///     for message in messages {
    ///         MessageSpan::in_batch(&ON_ORDERS, message).start().run(|| {
    ///             // handle one message
    ///         });
    ///     }
    /// }
    /// # }
    /// ```
    pub fn in_batch<'a, M: ConsumedMessage>(handler: &'static Handler, message: &'a M) -> SpanStart<'a> {
        let link = (handler.parent_policy() != ParentPolicy::None).then(|| extract_context(message));
        SpanStart::new(handler, Origin::Current { link }, Some(message))
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
        self.run_recording(body, |result, span| result.record(span))
    }

    /// [`MessageSpan::run`] with the outcome recorded by `record` instead of [`HandlerOutcome`], for return
    /// types that do not implement it.
    pub fn run_recording<R>(mut self, body: impl FnOnce() -> R, record: impl FnOnce(&R, &MessageSpan)) -> R {
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
        self.instrument_recording(future, |output, span| output.record(span))
    }

    /// [`MessageSpan::instrument`] with the outcome recorded by `record` instead of [`HandlerOutcome`].
    pub fn instrument_recording<F, Rec>(self, future: F, record: Rec) -> Instrumented<F, Rec>
    where
        F: Future,
        Rec: FnOnce(&F::Output, &MessageSpan),
    {
        Instrumented { future, span: Some(self), record: Some(record) }
    }

    /// Marks the span as failed: status Error with `message`, `error.type = error_type`, and an `exception`
    /// event. Nothing is formatted when the span is not recorded.
    pub fn record_error(&self, error_type: &'static str, message: &dyn Display) {
        let span = self.context.span();
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

    /// Records a panic caught while `doing` as the span's error.
    fn record_panic(&self, panic: &(dyn Any + Send), doing: &str) {
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
        let span = self.context.span();
        if self.handler.role() == Role::Producer && self.injections.load(Ordering::Relaxed) == 0 {
            if self.handler.first_missing_injection() {
                tracing::warn!(
                    handler = self.handler.function(),
                    "tracehop: a producer span ended without writing its trace context into any message; \
                     pass the record to the function, or call tracehop::inject_current_context (or \
                     tracehop::kafka::trace_headers) on the headers you publish"
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
