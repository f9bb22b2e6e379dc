//! The static description of one traced handler.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::brokers::MessagingSystem;
use crate::conventions::Operation;
use crate::settings::ParentPolicy;

/// Which side of the broker a handler is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Handles delivered messages: a CONSUMER span, operation type `process`.
    Consumer,
    /// Publishes messages: a PRODUCER span, operation type `send`.
    Producer,
}

impl Role {
    /// `messaging.operation.type` and `messaging.operation.name` (the conventions use the same word for Kafka
    /// and RabbitMQ), and the first word of the span name.
    pub const fn operation(self) -> &'static str {
        self.messaging_operation().name()
    }

    pub(crate) const fn messaging_operation(self) -> Operation {
        match self {
            Self::Consumer => Operation::Process,
            Self::Producer => Operation::Send,
        }
    }
}

/// Everything about a traced handler that is the same for every message: built once, in a `static`, so the
/// per-message path builds none of it.
///
/// `#[traced_consumer]` and `#[traced_producer]` emit one per function. Without the macros, declare it
/// yourself and pass it to [`MessageSpan`](crate::MessageSpan):
///
/// ```
/// use tracehop::{Handler, MessagingSystem};
///
/// static ON_ORDER: Handler = Handler::consumer("inventory::on_order")
///     .system(MessagingSystem::Kafka)
///     .group("inventory-service");
/// static PUBLISH_ORDER: Handler = Handler::producer("orders::publish").destination("orders");
/// ```
#[derive(Debug)]
pub struct Handler {
    function: &'static str,
    role: Role,
    system: Option<MessagingSystem>,
    destination: Option<&'static str>,
    group: Option<&'static str>,
    routing_key: Option<&'static str>,
    span_name: Option<&'static str>,
    parent: Option<ParentPolicy>,
    replay: bool,
    captured_headers: &'static [&'static str],
    excluded_headers: &'static [&'static str],
    attempt_header: Option<&'static str>,
    reported_missing_injection: AtomicBool,
}

impl Handler {
    /// A handler of delivered messages; `function` is its path, recorded as `code.function.name`.
    pub const fn consumer(function: &'static str) -> Self {
        Self::new(function, Role::Consumer)
    }

    /// A publish function; `function` is its path, recorded as `code.function.name`.
    pub const fn producer(function: &'static str) -> Self {
        Self::new(function, Role::Producer)
    }

    const fn new(function: &'static str, role: Role) -> Self {
        Self {
            function,
            role,
            system: None,
            destination: None,
            group: None,
            routing_key: None,
            span_name: None,
            parent: None,
            replay: false,
            captured_headers: &[],
            excluded_headers: &[],
            attempt_header: None,
            reported_missing_injection: AtomicBool::new(false),
        }
    }

    /// The broker, for spans whose message does not say it (a producer that builds its record in the body).
    /// A message's own system wins over this one.
    pub const fn system(mut self, system: MessagingSystem) -> Self {
        self.system = Some(system);
        self
    }

    /// A fixed destination (topic, exchange). Without it a consumer's destination is the message's own and a
    /// producer's is its record's.
    pub const fn destination(mut self, destination: &'static str) -> Self {
        self.destination = Some(destination);
        self
    }

    /// The consumer group: `messaging.consumer.group.name`.
    pub const fn group(mut self, group: &'static str) -> Self {
        self.group = Some(group);
        self
    }

    /// A fixed RabbitMQ routing key for a producer whose properties do not carry one:
    /// `messaging.rabbitmq.destination.routing_key`.
    pub const fn routing_key(mut self, routing_key: &'static str) -> Self {
        self.routing_key = Some(routing_key);
        self
    }

    /// This handler's [`ParentPolicy`], instead of the process-wide default.
    pub const fn parent(mut self, policy: ParentPolicy) -> Self {
        self.parent = Some(policy);
        self
    }

    /// Marks this handler as handling replayed events: each span starts a new trace linked to the original
    /// (unless a [`ParentPolicy`] is set explicitly), is marked `tracehop.replay = true` and keeps the
    /// message's own time as `tracehop.replay.original_time_ms`.
    pub const fn replay(mut self) -> Self {
        self.replay = true;
        self
    }

    /// Headers to record on this handler's consumer spans as `messaging.header.<name>` string arrays, beside
    /// the process-wide ones ([`set_captured_headers`](crate::set_captured_headers)). Each is a header name or
    /// a pattern with `*` (any run of characters) and `?` (one character), matched without regard to ASCII case.
    /// Trace headers and headers whose names suggest a secret ([`is_protected_header`](crate::is_protected_header))
    /// are recorded only when a pattern names them exactly. `#[traced_consumer(capture_headers("x-tenant", "x-*"))]`
    /// in the macros.
    ///
    /// Capturing headers copies their values into every recorded span: a broad pattern (`"*"`, `"x-*"`) can
    /// expose secrets a producer put in a header under an unexpected name. Name the headers you need.
    ///
    /// ```
    /// use tracehop::Handler;
    ///
    /// static ON_ORDER: Handler = Handler::consumer("inventory::on_order")
    ///     .capture_headers(&["x-tenant", "x-region-*"])
    ///     .exclude_headers(&["x-region-internal"]);
    /// ```
    pub const fn capture_headers(mut self, patterns: &'static [&'static str]) -> Self {
        self.captured_headers = patterns;
        self
    }

    /// Headers never to record, whatever [`Handler::capture_headers`] or the process-wide list says: names or
    /// patterns, as there. An exclusion always wins. `exclude_headers("x-internal-*")` in the macros.
    pub const fn exclude_headers(mut self, patterns: &'static [&'static str]) -> Self {
        self.excluded_headers = patterns;
        self
    }

    /// The header carrying how many times the message was attempted before (a retry counter your producers or
    /// retry topics write), recorded on the consumer span as
    /// [`tracehop.message.attempt`](crate::ATTEMPT_ATTRIBUTE) when its value is a whole number: decimal text, or
    /// a 4- or 8-byte big-endian integer. `attempt_header = "x-retry-count"` in the macros.
    ///
    /// ```
    /// use tracehop::Handler;
    ///
    /// static ON_ORDER: Handler = Handler::consumer("inventory::on_order").attempt_header("x-retry-count");
    /// ```
    pub const fn attempt_header(mut self, header: &'static str) -> Self {
        self.attempt_header = Some(header);
        self
    }

    /// Whether this handler handles replayed events ([`Handler::replay`]).
    pub const fn is_replay(&self) -> bool {
        self.replay
    }

    /// The [`ParentPolicy`] in force for this handler: its own, [`ParentPolicy::Link`] for a replay handler,
    /// else the process-wide default.
    pub fn parent_policy(&self) -> ParentPolicy {
        match (self.parent, self.replay) {
            (Some(policy), _) => policy,
            (None, true) => ParentPolicy::Link,
            (None, false) => crate::settings::default_parent_policy(),
        }
    }

    /// A span name to use instead of the conventions' `{operation} {destination}`.
    pub const fn span_name(mut self, span_name: &'static str) -> Self {
        self.span_name = Some(span_name);
        self
    }

    /// The handler's path, as given to [`Handler::consumer`] or [`Handler::producer`].
    pub const fn function(&self) -> &'static str {
        self.function
    }

    /// Consumer or producer.
    pub const fn role(&self) -> Role {
        self.role
    }

    pub(crate) const fn configured_system(&self) -> Option<MessagingSystem> {
        self.system
    }

    pub(crate) const fn configured_destination(&self) -> Option<&'static str> {
        self.destination
    }

    pub(crate) const fn configured_group(&self) -> Option<&'static str> {
        self.group
    }

    pub(crate) const fn configured_routing_key(&self) -> Option<&'static str> {
        self.routing_key
    }

    pub(crate) const fn captured_headers(&self) -> &'static [&'static str] {
        self.captured_headers
    }

    pub(crate) const fn excluded_headers(&self) -> &'static [&'static str] {
        self.excluded_headers
    }

    pub(crate) const fn configured_attempt_header(&self) -> Option<&'static str> {
        self.attempt_header
    }

    pub(crate) const fn configured_span_name(&self) -> Option<&'static str> {
        self.span_name
    }

    /// True the first time it is called for this handler, false after: a missing injection is logged once per
    /// function, not once per message.
    pub(crate) fn first_missing_injection(&self) -> bool {
        !self.reported_missing_injection.load(Ordering::Relaxed)
            && !self.reported_missing_injection.swap(true, Ordering::Relaxed)
    }
}
