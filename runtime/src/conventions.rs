//! The OpenTelemetry semantic conventions tracehop follows, in one place: the schema, every attribute and metric
//! name it writes, and the messaging operations with their names. Every other module names a convention through
//! here, so moving to a later version of the conventions is a change to this file.

use opentelemetry::trace::SpanKind;

// Some are written only by one broker's module, compiled with its feature.
#[allow(unused_imports)]
pub(crate) use opentelemetry_semantic_conventions::attribute::{
    CODE_FUNCTION_NAME, ERROR_TYPE, EXCEPTION_MESSAGE, EXCEPTION_TYPE, MESSAGING_BATCH_MESSAGE_COUNT,
    MESSAGING_CONSUMER_GROUP_NAME, MESSAGING_DESTINATION_NAME, MESSAGING_DESTINATION_PARTITION_ID,
    MESSAGING_DESTINATION_TEMPLATE, MESSAGING_KAFKA_MESSAGE_KEY, MESSAGING_KAFKA_MESSAGE_TOMBSTONE,
    MESSAGING_KAFKA_OFFSET, MESSAGING_MESSAGE_BODY_SIZE, MESSAGING_MESSAGE_CONVERSATION_ID, MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME, MESSAGING_OPERATION_TYPE, MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY,
    MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG, MESSAGING_SYSTEM, SERVER_ADDRESS, SERVER_PORT,
};
#[cfg(feature = "metrics")]
pub(crate) use opentelemetry_semantic_conventions::metric::{
    MESSAGING_CLIENT_CONSUMED_MESSAGES, MESSAGING_CLIENT_OPERATION_DURATION, MESSAGING_CLIENT_SENT_MESSAGES,
    MESSAGING_PROCESS_DURATION,
};
pub(crate) use opentelemetry_semantic_conventions::SCHEMA_URL;

/// The name of the event that records an exception, with `exception.type` and `exception.message`.
pub(crate) const EXCEPTION_EVENT: &str = "exception";

/// The messaging conventions' exception events, log records named for the operation that failed ("Semantic
/// conventions for messaging exceptions", status Development): the conventions crate has no constants for event
/// names, so they are spelled here, the one place a later version of the conventions changes.
#[cfg(feature = "logs")]
pub(crate) const MESSAGING_PROCESS_EXCEPTION_EVENT: &str = "messaging.process.exception";
#[cfg(feature = "logs")]
pub(crate) const MESSAGING_SEND_EXCEPTION_EVENT: &str = "messaging.send.exception";
#[cfg(feature = "logs")]
pub(crate) const MESSAGING_SETTLE_EXCEPTION_EVENT: &str = "messaging.settle.exception";

/// The messaging operations of the conventions, each the `messaging.operation.type` of the spans and metrics
/// tracehop records for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    /// A message made to be sent later, or one of several sent together: a creation span.
    Create,
    /// A publish: a producer span.
    Send,
    /// A message taken from the broker by a consumer loop: a receive span.
    Receive,
    /// A message handled: a consumer span.
    Process,
    /// An acknowledgement, rejection or offset commit, named by the broker's verb (`ack`, `commit`, ...).
    Settle(&'static str),
}

impl Operation {
    /// `messaging.operation.type`.
    #[inline]
    pub(crate) const fn type_name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Send => "send",
            Operation::Receive => "receive",
            Operation::Process => "process",
            Operation::Settle(_) => "settle",
        }
    }

    /// `messaging.operation.name`, and the first word of the span's name: the type, but a settle's verb.
    #[inline]
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Operation::Settle(verb) => verb,
            _ => self.type_name(),
        }
    }

    /// The span kind the conventions give the operation's span.
    #[inline]
    pub(crate) const fn span_kind(self) -> SpanKind {
        match self {
            Operation::Create | Operation::Send => SpanKind::Producer,
            Operation::Receive | Operation::Settle(_) => SpanKind::Client,
            Operation::Process => SpanKind::Consumer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_has_the_conventions_type_name_and_span_kind() {
        let operations =
            [Operation::Create, Operation::Send, Operation::Receive, Operation::Process, Operation::Settle("ack")];
        assert_eq!(operations.map(Operation::type_name), ["create", "send", "receive", "process", "settle"]);
        assert_eq!(operations.map(Operation::name), ["create", "send", "receive", "process", "ack"]);
        assert_eq!(
            operations.map(Operation::span_kind),
            [SpanKind::Producer, SpanKind::Producer, SpanKind::Client, SpanKind::Consumer, SpanKind::Client]
        );
    }
}
