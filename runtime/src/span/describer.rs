//! The one describer of messaging spans: every span tracehop starts (process, send, create, receive, settle) is
//! named and given its convention attributes here, from its operation and the broker's facts. Called only for a
//! span that is, or is expected to be, recorded.

use opentelemetry::trace::SpanKind;

use crate::attributes::SpanAttributes;
use crate::brokers::MessagingSystem;
use crate::conventions::{self as semconv, Operation};

/// What a messaging span does, and where.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MessagingSpan<'a> {
    pub(crate) operation: Operation,
    pub(crate) system: Option<MessagingSystem>,
    pub(crate) destination: Option<&'a str>,
}

impl<'a> MessagingSpan<'a> {
    pub(crate) const fn new(operation: Operation, system: Option<MessagingSystem>, destination: Option<&'a str>) -> Self {
        MessagingSpan { operation, system, destination }
    }

    /// The name a span starts with, before it is known to be recorded: the operation's, formatted from nothing.
    pub(crate) const fn initial_name(&self) -> &'static str {
        self.operation.name()
    }

    pub(crate) const fn kind(&self) -> SpanKind {
        self.operation.span_kind()
    }

    /// `{operation} {destination}` (`process orders`, `ack amq.default`), with the destination as its broker
    /// writes it in span names; `None` without a destination, when the span keeps [`initial_name`](Self::initial_name).
    pub(crate) fn name(&self) -> Option<String> {
        let destination = self.destination?;
        let destination = self.system.map_or(destination, |system| system.span_name_destination(destination));
        let operation = self.operation.name();
        // Sized once: `format!` costs several times as much, on every recorded message.
        let mut name = String::with_capacity(operation.len() + 1 + destination.len());
        name.push_str(operation);
        name.push(' ');
        name.push_str(destination);
        Some(name)
    }

    /// `messaging.system`, `messaging.operation.type`, `messaging.operation.name` and
    /// `messaging.destination.name`, each when known.
    pub(crate) fn describe(&self, attributes: &mut SpanAttributes) {
        if let Some(system) = self.system {
            attributes.add_static(semconv::MESSAGING_SYSTEM, system.as_str());
        }
        attributes.add_static(semconv::MESSAGING_OPERATION_TYPE, self.operation.type_name());
        attributes.add_static(semconv::MESSAGING_OPERATION_NAME, self.operation.name());
        if let Some(destination) = self.destination {
            attributes.add_recurring(semconv::MESSAGING_DESTINATION_NAME, destination);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_named_from_its_operation_and_its_destination_as_the_broker_writes_it() {
        let process = MessagingSpan::new(Operation::Process, Some(MessagingSystem::Kafka), Some("orders"));
        assert_eq!(process.name().as_deref(), Some("process orders"));
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
        let mut unknown = SpanAttributes::default();
        MessagingSpan::new(Operation::Receive, None, None).describe(&mut unknown);
        assert_eq!(unknown.len(), 2, "only the operation's type and name");
    }
}
