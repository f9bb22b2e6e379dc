//! How a message's span starts: what it starts from (one message, a publish, a batch, a message of a batch), and
//! [`SpanStart::start`], which resolves its parent before sampling and describes it only when it is recorded.

use std::any::Any;
use std::borrow::Cow;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::trace::{Link, Span, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{global, Context};

use super::describer::{describe, Described, Description};
use super::life::MessageSpan;
use super::origin::{resolve_parent, Batch, BatchFacts, BatchHandler, Origin};
use super::{instrumentation_scope, marked_random_if_started};
use crate::attributes::SpanAttributes;
use crate::carrier::{carries_context, extract_context, ConsumedMessage, IncomingContext, MessageFacts};
use crate::consumer_extras::HeaderSource;
use crate::conventions::Operation;
use crate::handler::{Handler, Role};
use crate::metrics::Measurement;
use crate::settings::{max_links_per_span, ParentPolicy};

/// The handler per-message spans belong to when no batch span is current: [`MessageSpan::in_batch`] called
/// outside a batch handler.
static OUTSIDE_A_BATCH: Handler = Handler::consumer("tracehop::in_batch");

impl MessageSpan {
    /// Prepares the CONSUMER span of `message`: extracts its trace context ([`extract_context`]), to continue
    /// it (parent and link) or, when missing or malformed, start a new trace that records why.
    pub fn consumer<'a, M: ConsumedMessage>(handler: &'static Handler, message: &'a M) -> SpanStart<'a> {
        let policy = handler.parent_policy();
        // Under `ParentPolicy::None` the headers are not even read: an untrusted context costs nothing. Not a
        // call of `consumer_of_extracted`: one call less on every message keeps this small enough to inline.
        let incoming = (policy != ParentPolicy::None).then(|| extract_context(message));
        SpanStart::new(handler, Origin::Message { incoming, policy }, Some(message)).with_headers(message)
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
    /// count but add no link. The links are computed only when the span is recorded (or, with
    /// [`links_before_sampling`](crate::links_before_sampling), before it is sampled); under
    /// [`ParentPolicy::None`] there are none. Attributes follow the messaging semantic conventions 1.42.0
    /// ([`SCHEMA_URL`](opentelemetry_semantic_conventions::SCHEMA_URL)): operation type `process`,
    /// `messaging.batch.message_count`, and the destination only when every message has the same one.
    pub fn consumer_batch<'a, M: ConsumedMessage>(handler: &'static Handler, messages: &'a [M]) -> SpanStart<'a> {
        let policy = handler.parent_policy();
        crate::metrics::count_batch_contexts(handler, messages);
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
    headers: Option<&'a dyn HeaderSource>,
}

impl<'a> SpanStart<'a> {
    pub(super) fn new(handler: &'static Handler, origin: Origin<'a>, message: Option<&'a dyn MessageFacts>) -> Self {
        SpanStart {
            handler,
            origin,
            message,
            destination: None,
            routing_key: None,
            server: None,
            user_attributes: None,
            headers: None,
        }
    }

    /// The consumed message's headers, for what a recorded span captures of them.
    pub(super) fn with_headers(mut self, headers: &'a dyn HeaderSource) -> Self {
        self.headers = Some(headers);
        self
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

    /// Starts the span. An unsampled span formats no name and sets no attribute.
    ///
    /// A span whose parent is sampled is described before it starts, so its name, links and attributes go to
    /// the SDK in the span builder (the sampler sees them, and no per-attribute call is made on the span).
    /// Any other span (a new root, an unsampled parent) starts first and is described only if it is recorded;
    /// with [`links_before_sampling`](crate::links_before_sampling) on (a [`LinkSampler`](crate::LinkSampler)
    /// turns it on), a span that starts a trace and has links starts with those links, for the sampler to read;
    /// its name and attributes still wait until it is recorded.
    pub fn start(self) -> MessageSpan {
        let SpanStart { handler, origin, message, destination, routing_key, server, user_attributes, headers } = self;
        let measurement = measure(handler, &origin, message, destination);
        let is_batch = matches!(origin, Origin::Batch(_));
        let mut parent = resolve_parent(origin);
        let tracer = global::tracer_with_scope(instrumentation_scope());
        let kind = handler.role().messaging_operation().span_kind();
        let initial_name = handler.configured_span_name().unwrap_or(handler.role().operation());
        let described = Described { handler, message, destination, routing_key, server, headers };
        let (mut link, mut batch) = (parent.link.take(), parent.batch.take());

        let span = if parent.context.span().span_context().is_sampled() {
            let Description { name, links, mut attributes } = describe(described, &parent, link, batch);
            let panic = user_attributes.and_then(|add| catch_unwind(AssertUnwindSafe(|| add(&mut attributes))).err());
            let span = tracer
                .span_builder(name.unwrap_or(Cow::Borrowed(initial_name)))
                .with_kind(kind)
                .with_links(links)
                .with_attributes(attributes.into_inner())
                .start_with_context(&tracer, &parent.context);
            if let Some(panic) = panic {
                fail_for_panicked_attributes(parent.context.with_span(span), handler, panic);
            }
            span
        } else {
            // A sampler that reads links (`LinkSampler`) judges a span that starts a trace by them.
            let mut span = if crate::sampling::links_before_sampling()
                && (link.is_some() || batch.is_some())
                && !parent.context.span().span_context().is_valid()
            {
                start_with_links(&tracer, initial_name, kind, &parent.context, &mut link, &mut batch)
            } else {
                tracer.span_builder(initial_name).with_kind(kind).start_with_context(&tracer, &parent.context)
            };
            if span.is_recording() {
                let Description { name, links, mut attributes } = describe(described, &parent, link, batch);
                if let Some(name) = name {
                    span.update_name(name);
                }
                for Link { span_context, attributes: link_attributes, .. } in links {
                    span.add_link(span_context, link_attributes);
                }
                let panic =
                    user_attributes.and_then(|add| catch_unwind(AssertUnwindSafe(|| add(&mut attributes))).err());
                span.set_attributes(attributes.into_inner());
                if let Some(panic) = panic {
                    fail_for_panicked_attributes(parent.context.with_span(span), handler, panic);
                }
            }
            span
        };

        let starts_a_trace = !parent.context.span().span_context().is_valid();
        let context = marked_random_if_started(parent.context.with_span(span), starts_a_trace);
        // A batch span tells the per-message spans started inside it which handler they belong to.
        let context = if is_batch { context.with_value(BatchHandler(handler)) } else { context };
        MessageSpan::new(context, handler).measured(measurement)
    }
}

/// Starts a span that starts a trace with its links in the builder, for the sampler to read; its name and
/// attributes still wait for the decision. The links are those `describe` would add once it is recorded: `link`
/// is taken, and `batch` left with what is described only once the span is recorded. Out of line, and nothing
/// moved on the way: the common path (a parent to continue, or no sampler that reads links) stays as it was.
#[inline(never)]
fn start_with_links<'a>(
    tracer: &BoxedTracer,
    name: &'static str,
    kind: SpanKind,
    parent: &Context,
    link: &mut Option<Context>,
    batch: &mut Option<Batch<'a>>,
) -> BoxedSpan {
    let mut links = Vec::new();
    if let Some(link) = link.take() {
        links.push(Link::with_context(link.span().span_context().clone()));
    }
    *batch = batch.take().map(|Batch { count, system, facts }| {
        let BatchFacts { destination, links: batch_links, dropped } = facts(max_links_per_span());
        if links.is_empty() {
            links = batch_links;
        } else {
            links.extend(batch_links);
        }
        let described_later: Box<dyn FnOnce(usize) -> BatchFacts<'a> + 'a> =
            Box::new(move |_| BatchFacts { destination, links: Vec::new(), dropped });
        Batch { count, system, facts: described_later }
    });
    tracer.span_builder(name).with_kind(kind).with_links(links).start_with_context(tracer, parent)
}

/// Starts the metrics of a span (feature `metrics`): a handler's own span is measured; a message's span inside a
/// batch is part of the batch's processing, which is.
fn measure(
    handler: &'static Handler,
    origin: &Origin<'_>,
    message: Option<&dyn MessageFacts>,
    destination: Option<&str>,
) -> Measurement {
    match (origin, handler.role()) {
        (Origin::Current { .. }, Role::Consumer) => Measurement::none(),
        (Origin::Batch(batch), _) => Measurement::begin(handler, Operation::Process, batch.system, destination, None),
        (Origin::Message { incoming, policy }, Role::Consumer) => {
            let mut measurement = Measurement::begin(handler, Operation::Process, None, destination, message);
            // Counted for every message, sampled or not: where traces break (`tracehop.consumer.context`).
            measurement.count_context(incoming.as_ref(), *policy);
            measurement
        }
        (_, Role::Producer) => Measurement::begin(handler, Operation::Send, None, destination, message),
    }
}

/// The handler never runs when its `attributes(...)` panicked: its span says so, with the attributes made so far,
/// ends, and the panic goes on unwinding.
fn fail_for_panicked_attributes(context: Context, handler: &'static Handler, panic: Box<dyn Any + Send>) -> ! {
    let span = MessageSpan::new(context, handler);
    span.record_panic(&*panic, "an attributes(...) expression panicked, so the handler did not run");
    drop(span);
    resume_unwind(panic)
}
