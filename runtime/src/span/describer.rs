//! The one describer of messaging spans: every span tracehop starts (process, send, create, receive, settle) is
//! named and given its convention attributes here, from its operation and the broker's facts. Called only for a
//! span that is, or is expected to be, recorded.

use std::borrow::Cow;
use std::fmt::Display;

use opentelemetry::global::{self, BoxedSpan};
use opentelemetry::trace::{Link, Span, SpanKind, SpanRef, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, Value};

use super::names;
use super::origin::{Batch, BatchFacts, Parent};
use super::{
    BAGGAGE_TRIMMED_ATTRIBUTE, CONTEXT_REJECTED_ATTRIBUTE, LINKS_DROPPED_ATTRIBUTE, REPLAY_ATTRIBUTE,
    REPLAY_ORIGINAL_TIME_ATTRIBUTE, TRACESTATE_TRIMMED_ATTRIBUTE,
};
use crate::attributes::SpanAttributes;
use crate::brokers::MessagingSystem;
use crate::carrier::MessageFacts;
use crate::consumer_extras::HeaderSource;
use crate::conventions::{self as semconv, Operation};
use crate::handler::{Handler, Role};
use crate::settings::max_links_per_span;
use crate::w3c::{ContextRejection, TrimReason};

/// What a messaging span does, and where.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MessagingSpan<'a> {
    pub(crate) operation: Operation,
    pub(crate) system: Option<MessagingSystem>,
    pub(crate) destination: Option<&'a str>,
}

impl<'a> MessagingSpan<'a> {
    #[inline]
    pub(crate) const fn new(
        operation: Operation,
        system: Option<MessagingSystem>,
        destination: Option<&'a str>,
    ) -> Self {
        MessagingSpan { operation, system, destination }
    }

    /// The name a span starts with, before it is known to be recorded: the operation's, formatted from nothing.
    #[inline]
    pub(crate) const fn initial_name(&self) -> &'static str {
        self.operation.name()
    }

    #[inline]
    pub(crate) const fn kind(&self) -> SpanKind {
        self.operation.span_kind()
    }

    /// `{operation} {destination}` (`process orders`, `ack amq.default`), with the destination as its broker
    /// writes it in span names; `None` without a destination, when the span keeps [`initial_name`](Self::initial_name).
    /// A recurring destination's name is made once and borrowed after that (see `names`).
    #[inline]
    pub(crate) fn name(&self) -> Option<Cow<'static, str>> {
        let (_, name) = names::named(self.operation.name(), self.system, self.destination?);
        Some(name)
    }

    /// Starts this span as a child of `parent`, of its operation's kind and named by the operation alone. A
    /// recorded one is then named in full and described; its attributes are returned for the caller to add its
    /// own before setting them. An unrecorded one formats and copies nothing. (A handler's own span starts
    /// otherwise: under a sampled parent it is described before it starts, see `SpanStart::start`.)
    pub(crate) fn start(&self, parent: &Context) -> (BoxedSpan, Option<SpanAttributes>) {
        let tracer = global::tracer_with_scope(super::instrumentation_scope());
        let mut span =
            tracer.span_builder(self.initial_name()).with_kind(self.kind()).start_with_context(&tracer, parent);
        if !span.is_recording() {
            return (span, None);
        }
        let mut attributes = SpanAttributes::with_capacity(12);
        if let Some(name) = self.describe_named(&mut attributes) {
            span.update_name(name);
        }
        (span, Some(attributes))
    }

    /// `messaging.system`, `messaging.operation.type`, `messaging.operation.name` and
    /// `messaging.destination.name`, each when known.
    #[inline]
    pub(crate) fn describe(&self, attributes: &mut SpanAttributes) {
        self.describe_operation(attributes);
        if let Some(destination) = self.destination {
            attributes.add_recurring(semconv::MESSAGING_DESTINATION_NAME, destination);
        }
    }

    /// [`describe`](Self::describe), returning [`name`](Self::name) too: the destination's shared string and the
    /// span's name come from one look-up.
    #[inline]
    pub(crate) fn describe_named(&self, attributes: &mut SpanAttributes) -> Option<Cow<'static, str>> {
        self.describe_operation(attributes);
        let (destination, name) = names::named(self.operation.name(), self.system, self.destination?);
        attributes.push(semconv::MESSAGING_DESTINATION_NAME, Value::String(destination));
        Some(name)
    }

    /// `messaging.system` when known, `messaging.operation.type` and `messaging.operation.name`.
    #[inline]
    fn describe_operation(&self, attributes: &mut SpanAttributes) {
        if let Some(system) = self.system {
            attributes.add_static(semconv::MESSAGING_SYSTEM, system.as_str());
        }
        attributes.add_static(semconv::MESSAGING_OPERATION_TYPE, self.operation.type_name());
        attributes.add_static(semconv::MESSAGING_OPERATION_NAME, self.operation.name());
    }
}

/// What a recorded span is told about its message besides its origin.
pub(super) struct Described<'a> {
    pub(super) handler: &'static Handler,
    pub(super) message: Option<&'a dyn MessageFacts>,
    pub(super) destination: Option<&'a str>,
    pub(super) routing_key: Option<&'a str>,
    pub(super) server: Option<(&'a str, u16)>,
    pub(super) headers: Option<&'a dyn HeaderSource>,
}

/// What a recorded span says about its message, the user's own attributes still to come.
pub(super) struct Description {
    /// The span's name, when it is not the handler's fixed one: borrowed for a recurring destination.
    pub(super) name: Option<Cow<'static, str>>,
    pub(super) links: Vec<Link>,
    pub(super) attributes: SpanAttributes,
}

/// Describes a span that is, or is expected to be, recorded: this is where names are formatted and batches are
/// read.
pub(super) fn describe(
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
    let own_destination = || {
        message
            .and_then(|facts| facts.destination())
            .or_else(|| batch.as_ref().and_then(|(_, _, facts)| facts.destination))
    };
    // A wildcard subscription's subject names the span; the message's own subject is its destination.
    let template = handler.configured_destination().filter(|configured| {
        destination.is_none() && system.is_some_and(|system| system.is_destination_template(configured))
    });
    let named_for = destination.or(handler.configured_destination()).or_else(own_destination);
    let destination = match template {
        Some(_) => own_destination(),
        None => named_for,
    };
    let operation = role.messaging_operation();
    let messaging = MessagingSpan::new(operation, system, destination);
    let mut attributes = SpanAttributes::with_capacity(16);
    // Named for its destination, the span's name and `messaging.destination.name` come from one look-up.
    let name = match (handler.configured_span_name(), template) {
        (None, None) => messaging.describe_named(&mut attributes),
        (None, Some(_)) => {
            messaging.describe(&mut attributes);
            MessagingSpan::new(operation, system, named_for).name()
        }
        (Some(_), _) => {
            messaging.describe(&mut attributes);
            None
        }
    };
    let mut links = Vec::new();
    if let Some(link) = &link {
        links.push(Link::with_context(link.span().span_context().clone()));
    }
    if let Some(template) = template {
        attributes.add_static(semconv::MESSAGING_DESTINATION_TEMPLATE, template);
    }
    if let Some(group) = handler.configured_group() {
        attributes.add_static(semconv::MESSAGING_CONSUMER_GROUP_NAME, group);
    } else if role == Role::Consumer {
        attributes.add(semconv::MESSAGING_CONSUMER_GROUP_NAME, message.and_then(|facts| facts.consumer_group()));
    }
    attributes.add_static(semconv::CODE_FUNCTION_NAME, handler.function());
    if let Some(facts) = message {
        facts.record_attributes(&mut attributes);
        if handler.is_replay() {
            attributes.add(REPLAY_ATTRIBUTE, true);
            attributes.add(REPLAY_ORIGINAL_TIME_ATTRIBUTE, facts.timestamp_millis());
        }
        if role == Role::Consumer {
            crate::consumer_extras::record_delivery(handler, facts, headers, &mut attributes);
            crate::lineage::record_lineage(handler, link.as_ref(), headers, &mut attributes, &mut links);
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

/// Marks `span` failed: status Error with `message`, `error.type = error_type`, and an `exception` event. Nothing
/// is formatted when the span is not recorded.
pub(crate) fn mark_failed(span: &SpanRef<'_>, error_type: &'static str, message: &dyn Display) {
    if !span.is_recording() {
        return;
    }
    let message = message.to_string();
    span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type));
    span.add_event(
        semconv::EXCEPTION_EVENT,
        vec![
            KeyValue::new(semconv::EXCEPTION_TYPE, error_type),
            KeyValue::new(semconv::EXCEPTION_MESSAGE, message.clone()),
        ],
    );
    span.set_status(Status::error(message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_named_from_its_operation_and_its_destination_as_the_broker_writes_it() {
        let process = MessagingSpan::new(Operation::Process, Some(MessagingSystem::Kafka), Some("orders"));
        assert_eq!(process.name().as_deref(), Some("process orders"));
        assert!(matches!(process.name(), Some(Cow::Borrowed("process orders"))), "made once, then borrowed");
        assert_eq!(process.initial_name(), "process");
        let ack = MessagingSpan::new(Operation::Settle("ack"), Some(MessagingSystem::RabbitMq), Some(""));
        assert_eq!(ack.name().as_deref(), Some("ack amq.default"), "RabbitMQ's default exchange");
        assert_eq!(ack.kind(), SpanKind::Client);
        assert_eq!(MessagingSpan::new(Operation::Send, None, None).name(), None);
    }

    #[test]
    fn a_span_is_described_by_its_system_operation_and_destination() {
        let mut attributes = SpanAttributes::default();
        MessagingSpan::new(Operation::Settle("commit"), Some(MessagingSystem::Kafka), Some("orders"))
            .describe(&mut attributes);
        let described: Vec<(String, String)> = attributes
            .into_inner()
            .into_iter()
            .map(|attribute| (attribute.key.to_string(), attribute.value.to_string()))
            .collect();
        let expected = [
            ("messaging.system", "kafka"),
            ("messaging.operation.type", "settle"),
            ("messaging.operation.name", "commit"),
            ("messaging.destination.name", "orders"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        assert_eq!(described, expected);
        let mut named = SpanAttributes::default();
        let name = MessagingSpan::new(Operation::Settle("commit"), Some(MessagingSystem::Kafka), Some("orders"))
            .describe_named(&mut named);
        assert_eq!(name.as_deref(), Some("commit orders"));
        let named: Vec<(String, String)> = named
            .into_inner()
            .into_iter()
            .map(|attribute| (attribute.key.to_string(), attribute.value.to_string()))
            .collect();
        assert_eq!(named, described, "the same attributes, named in the same look-up");
        let mut unknown = SpanAttributes::default();
        MessagingSpan::new(Operation::Receive, None, None).describe(&mut unknown);
        assert_eq!(unknown.len(), 2, "only the operation's type and name");
        let mut unnamed = SpanAttributes::default();
        assert_eq!(MessagingSpan::new(Operation::Receive, None, None).describe_named(&mut unnamed), None);
        assert_eq!(unnamed.len(), 2);
    }
}
