//! How a message's span starts: where its parent and links come from (decided before sampling), and, only for a
//! recorded span, its name and attributes.

use std::any::Any;
use std::borrow::Cow;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use opentelemetry::trace::{Link, Span, TraceContextExt, Tracer};
use opentelemetry::{global, Context};

use super::describer::MessagingSpan;
use super::life::MessageSpan;
use super::{
    instrumentation_scope, marked_random_if_started, BAGGAGE_TRIMMED_ATTRIBUTE, CONTEXT_REJECTED_ATTRIBUTE,
    LINKS_DROPPED_ATTRIBUTE, REPLAY_ATTRIBUTE, REPLAY_ORIGINAL_TIME_ATTRIBUTE, TRACESTATE_TRIMMED_ATTRIBUTE,
};
use crate::attributes::SpanAttributes;
use crate::brokers::MessagingSystem;
use crate::carrier::{IncomingContext, MessageFacts};
use crate::conventions as semconv;
use crate::delivery::HeaderSource;
use crate::handler::{Handler, Role};
use crate::settings::ParentPolicy;
use crate::conventions::Operation;
use crate::metrics::Measurement;
use crate::settings::max_links_per_span;
use crate::w3c::{ContextRejection, TrimReason, Trims};

/// Where a span's parent and links come from, decided before sampling.
pub(super) enum Origin<'a> {
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
pub(super) struct Batch<'a> {
    pub(super) count: usize,
    pub(super) system: Option<MessagingSystem>,
    pub(super) facts: Box<dyn FnOnce(usize) -> BatchFacts<'a> + 'a>,
}

pub(super) struct BatchFacts<'a> {
    /// The destination, when every message has the same one.
    pub(super) destination: Option<&'a str>,
    pub(super) links: Vec<Link>,
    pub(super) dropped: usize,
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
    /// Any other span (a new root, an unsampled parent) starts first and is described only if it is recorded.
    pub fn start(self) -> MessageSpan {
        let SpanStart { handler, origin, message, destination, routing_key, server, user_attributes, headers } = self;
        let measurement = measure(handler, &origin, message, destination);
        let is_batch = matches!(origin, Origin::Batch(_));
        let mut parent = resolve_parent(origin);
        let tracer = global::tracer_with_scope(instrumentation_scope());
        let kind = handler.role().messaging_operation().span_kind();
        let initial_name = handler.configured_span_name().unwrap_or(handler.role().operation());
        let described = Described { handler, message, destination, routing_key, server, headers };
        let (link, batch) = (parent.link.take(), parent.batch.take());

        let span = if parent.context.span().span_context().is_sampled() {
            let Description { name, links, mut attributes } = describe(described, &parent, link, batch);
            let panic = user_attributes.and_then(|add| catch_unwind(AssertUnwindSafe(|| add(&mut attributes))).err());
            let span = tracer
                .span_builder(name.map_or(Cow::Borrowed(initial_name), Cow::Owned))
                .with_kind(kind)
                .with_links(links)
                .with_attributes(attributes.into_inner())
                .start_with_context(&tracer, &parent.context);
            if let Some(panic) = panic {
                fail_for_panicked_attributes(parent.context.with_span(span), handler, panic);
            }
            span
        } else {
            let mut span =
                tracer.span_builder(initial_name).with_kind(kind).start_with_context(&tracer, &parent.context);
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
        (_, Role::Consumer) => Measurement::begin(handler, Operation::Process, None, destination, message),
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

/// The handler of the batch span current where [`MessageSpan::in_batch`] is called.
pub(super) struct BatchHandler(pub(super) &'static Handler);

/// A span's parent, its links and what its incoming context lost, resolved from its [`Origin`].
struct Parent<'a> {
    context: Context,
    /// The one link of a single message's span: its producer's span.
    /// The context holding the producer's span, which is read only for a recorded span: a span context (and
    /// its tracestate) is not copied for a span that is dropped.
    link: Option<Context>,
    rejection: Option<ContextRejection>,
    trims: Trims,
    batch: Option<Batch<'a>>,
}

/// Resolves where a span's parent and links come from. Decided before sampling: the parent decides it.
fn resolve_parent(origin: Origin<'_>) -> Parent<'_> {
    let parent = |context, link, rejection, trims| Parent { context, link, rejection, trims, batch: None };
    match origin {
        Origin::Message { incoming: Some(IncomingContext::Continued(context, trims)), policy } => {
            if policy == ParentPolicy::Continue {
                parent(context.clone(), Some(context), None, trims)
            } else {
                // Linked, never adopted: no trace id, sampling flag or baggage of the producer's crosses over.
                let trims = Trims { tracestate: trims.tracestate, baggage: None };
                parent(Context::new(), Some(context), None, trims)
            }
        }
        Origin::Message { incoming: Some(IncomingContext::NewRoot(rejection)), .. } => {
            parent(Context::new(), None, Some(rejection), Trims::default())
        }
        Origin::Message { incoming: None, .. } => parent(Context::new(), None, None, Trims::default()),
        Origin::Current { link: Some(IncomingContext::Continued(context, trims)) } => {
            let trims = Trims { tracestate: trims.tracestate, baggage: None };
            parent(Context::current(), Some(context), None, trims)
        }
        Origin::Current { link: Some(IncomingContext::NewRoot(rejection)) } => {
            parent(Context::current(), None, Some(rejection), Trims::default())
        }
        Origin::Current { link: None } => parent(Context::current(), None, None, Trims::default()),
        Origin::Batch(batch) => Parent { batch: Some(batch), ..parent(Context::new(), None, None, Trims::default()) },
    }
}

/// What a recorded span is told about its message besides its origin.
struct Described<'a> {
    handler: &'static Handler,
    message: Option<&'a dyn MessageFacts>,
    destination: Option<&'a str>,
    routing_key: Option<&'a str>,
    server: Option<(&'a str, u16)>,
    headers: Option<&'a dyn HeaderSource>,
}

/// What a recorded span says about its message, the user's own attributes still to come.
struct Description {
    /// The span's name, when it is not the handler's fixed one.
    name: Option<String>,
    links: Vec<Link>,
    attributes: SpanAttributes,
}

/// Describes a span that is, or is expected to be, recorded: this is where names are formatted and batches are
/// read.
fn describe(
    described: Described<'_>,
    parent: &Parent<'_>,
    link: Option<Context>,
    batch: Option<Batch<'_>>,
) -> Description {
    let Described { handler, message, destination, routing_key, server, headers } = described;
    let role = handler.role();
    let batch = batch.map(|batch| (batch.count, batch.system, (batch.facts)(max_links_per_span())));
    let system = message
        .map(|facts| facts.system())
        .or(batch.as_ref().and_then(|(_, system, _)| *system))
        .or(handler.configured_system());
    let destination = destination
        .or(handler.configured_destination())
        .or_else(|| message.and_then(|facts| facts.destination()))
        .or_else(|| batch.as_ref().and_then(|(_, _, facts)| facts.destination));
    let messaging = MessagingSpan::new(role.messaging_operation(), system, destination);
    let name = match handler.configured_span_name() {
        None => messaging.name(),
        Some(_) => None,
    };
    let mut links = Vec::new();
    if let Some(link) = link {
        links.push(Link::with_context(link.span().span_context().clone()));
    }
    let mut attributes = SpanAttributes::with_capacity(16);
    messaging.describe(&mut attributes);
    if let Some(group) = handler.configured_group() {
        attributes.add_static(semconv::MESSAGING_CONSUMER_GROUP_NAME, group);
    }
    attributes.add_static(semconv::CODE_FUNCTION_NAME, handler.function());
    if let Some(facts) = message {
        facts.record_attributes(&mut attributes);
        if handler.is_replay() {
            attributes.add(REPLAY_ATTRIBUTE, true);
            attributes.add(REPLAY_ORIGINAL_TIME_ATTRIBUTE, facts.timestamp_millis());
        }
        if role == Role::Consumer {
            crate::delivery::record_delivery(handler, facts, headers, &mut attributes);
        }
    }
    if let Some((count, _, BatchFacts { links: batch_links, dropped, .. })) = batch {
        attributes.add(semconv::MESSAGING_BATCH_MESSAGE_COUNT, count);
        if links.is_empty() {
            links = batch_links;
        } else {
            links.extend(batch_links);
        }
        if dropped > 0 {
            attributes.add(LINKS_DROPPED_ATTRIBUTE, dropped);
        }
    }
    let routing_key = routing_key.or(handler.configured_routing_key()).filter(|key| !key.is_empty());
    if let (Some(attribute), Some(routing_key)) = (system.and_then(MessagingSystem::routing_key_attribute), routing_key)
    {
        attributes.add(attribute, routing_key);
    }
    if let Some((address, port)) = server {
        attributes.add(semconv::SERVER_ADDRESS, address);
        attributes.add(semconv::SERVER_PORT, port);
    }
    let reasons = [
        (CONTEXT_REJECTED_ATTRIBUTE, parent.rejection.map(ContextRejection::as_str)),
        (TRACESTATE_TRIMMED_ATTRIBUTE, parent.trims.tracestate.map(TrimReason::as_str)),
        (BAGGAGE_TRIMMED_ATTRIBUTE, parent.trims.baggage.map(TrimReason::as_str)),
    ];
    for (key, reason) in reasons {
        if let Some(reason) = reason {
            attributes.add_static(key, reason);
        }
    }
    Description { name, links, attributes }
}
