//! How a message's span starts: where its parent and links come from (decided before sampling), and, only for a
//! recorded span, its name and attributes.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{Link, Span, SpanContext, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{global, Context};
use opentelemetry_semantic_conventions::attribute as semconv;

use super::life::MessageSpan;
use super::{
    instrumentation_scope, BAGGAGE_TRIMMED_ATTRIBUTE, CONTEXT_REJECTED_ATTRIBUTE, LINKS_DROPPED_ATTRIBUTE,
    REPLAY_ATTRIBUTE, REPLAY_ORIGINAL_TIME_ATTRIBUTE, TRACESTATE_TRIMMED_ATTRIBUTE,
};
use crate::attributes::SpanAttributes;
use crate::carrier::{extract_context, ConsumedMessage, IncomingContext, MessageFacts};
use crate::handler::{Handler, MessagingSystem, ParentPolicy, Role};
use crate::settings::max_links_per_span;
use crate::w3c::{ContextRejection, TrimReason, Trims};

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
        let is_batch = matches!(origin, Origin::Batch(_));
        let mut parent = resolve_parent(origin);
        let tracer = global::tracer_with_scope(instrumentation_scope());
        let kind = match handler.role() {
            Role::Consumer => SpanKind::Consumer,
            Role::Producer => SpanKind::Producer,
        };
        let initial_name = handler.configured_span_name().unwrap_or(handler.role().operation());
        let mut span = tracer.span_builder(initial_name).with_kind(kind).start_with_context(&tracer, &parent.context);

        if span.is_recording() {
            let described = Described { handler, message, destination, routing_key, server };
            let batch = parent.batch.take();
            let mut attributes = describe(&mut span, described, &parent, batch);
            if let Some(add) = user_attributes {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| add(&mut attributes))) {
                    // The handler never runs: its span says so, with the attributes made so far, and ends.
                    span.set_attributes(attributes.into_inner());
                    let span = MessageSpan::new(parent.context.with_span(span), handler);
                    span.record_panic(&*panic, "an attributes(...) expression panicked, so the handler did not run");
                    drop(span);
                    resume_unwind(panic);
                }
            }
            span.set_attributes(attributes.into_inner());
        }

        let context = parent.context.with_span(span);
        // A batch span tells the per-message spans started inside it which handler they belong to.
        let context = if is_batch { context.with_value(BatchHandler(handler)) } else { context };
        MessageSpan::new(context, handler)
    }
}

/// The handler of the batch span current where [`MessageSpan::in_batch`] is called.
struct BatchHandler(&'static Handler);

/// A span's parent, its links and what its incoming context lost, resolved from its [`Origin`].
struct Parent<'a> {
    context: Context,
    /// The one link of a single message's span: its producer's span.
    link: Option<SpanContext>,
    rejection: Option<ContextRejection>,
    trims: Trims,
    batch: Option<Batch<'a>>,
}

/// Resolves where a span's parent and links come from. Decided before sampling: the parent decides it.
fn resolve_parent(origin: Origin<'_>) -> Parent<'_> {
    let parent = |context, link, rejection, trims| Parent { context, link, rejection, trims, batch: None };
    match origin {
        Origin::Message { incoming: Some(IncomingContext::Continued(context, trims)), policy } => {
            let producer = context.span().span_context().clone();
            if policy == ParentPolicy::Continue {
                parent(context, Some(producer), None, trims)
            } else {
                // Linked, never adopted: no trace id, sampling flag or baggage of the producer's crosses over.
                let trims = Trims { tracestate: trims.tracestate, baggage: None };
                parent(Context::new(), Some(producer), None, trims)
            }
        }
        Origin::Message { incoming: Some(IncomingContext::NewRoot(rejection)), .. } => {
            parent(Context::new(), None, Some(rejection), Trims::default())
        }
        Origin::Message { incoming: None, .. } => parent(Context::new(), None, None, Trims::default()),
        Origin::Current { link: Some(IncomingContext::Continued(context, trims)) } => {
            let trims = Trims { tracestate: trims.tracestate, baggage: None };
            parent(Context::current(), Some(context.span().span_context().clone()), None, trims)
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
}

/// Names a recorded span, adds its links and returns its attributes (the user's own still to come). Only for
/// recorded spans: this is where names are formatted and batches are read.
fn describe(
    span: &mut BoxedSpan,
    described: Described<'_>,
    parent: &Parent<'_>,
    batch: Option<Batch<'_>>,
) -> SpanAttributes {
    let Described { handler, message, destination, routing_key, server } = described;
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
    if handler.configured_span_name().is_none() {
        if let Some(destination) = destination {
            let destination = system.map_or(destination, |system| system.span_name_destination(destination));
            span.update_name(format!("{} {destination}", role.operation()));
        }
    }
    if let Some(link) = &parent.link {
        span.add_link(link.clone(), Vec::new());
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
    if let Some(facts) = message {
        facts.record_attributes(&mut attributes);
        if handler.is_replay() {
            attributes.add(REPLAY_ATTRIBUTE, true);
            attributes.add(REPLAY_ORIGINAL_TIME_ATTRIBUTE, facts.timestamp_millis());
        }
    }
    if let Some((count, _, BatchFacts { links, dropped, .. })) = batch {
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
    attributes.add(CONTEXT_REJECTED_ATTRIBUTE, parent.rejection.map(ContextRejection::as_str));
    attributes.add(TRACESTATE_TRIMMED_ATTRIBUTE, parent.trims.tracestate.map(TrimReason::as_str));
    attributes.add(BAGGAGE_TRIMMED_ATTRIBUTE, parent.trims.baggage.map(TrimReason::as_str));
    attributes
}

/// The handler per-message spans belong to when no batch span is current: [`MessageSpan::in_batch`] called
/// outside a batch handler.
static OUTSIDE_A_BATCH: Handler = Handler::consumer("tracehop::in_batch");

impl MessageSpan {
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
        SpanStart::new(handler, Origin::Current { link }, Some(message))
    }
}
