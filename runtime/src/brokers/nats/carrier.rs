//! NATS through async-nats: reading the trace context from core and JetStream messages and writing it into the
//! header maps a publish sends.
//!
//! A core [`Message`] and a JetStream [`jetstream::Message`] implement [`ConsumedMessage`]; a [`HeaderMap`]
//! implements [`PublishedMessage`]. Their spans carry `messaging.system = nats`, the subject as
//! `messaging.destination.name` (span names call every reply inbox `_INBOX`; a handler whose `destination` is a
//! wildcard subject, `orders.*`, is named for it and records it as `messaging.destination.template`),
//! `messaging.message.id` from the [`MESSAGE_ID_HEADER`] when set, and `messaging.message.body.size`. A message
//! JetStream delivered (its reply subject is a JetStream acknowledgement subject, whether it came through a
//! JetStream consumer or a push consumer's core subscription) also records its stream ([`STREAM_ATTRIBUTE`]),
//! its sequence in the stream ([`STREAM_SEQUENCE_ATTRIBUTE`]) and in its consumer's deliveries
//! ([`CONSUMER_SEQUENCE_ATTRIBUTE`]), how many times it was delivered
//! ([`DELIVERY_COUNT_ATTRIBUTE`](crate::DELIVERY_COUNT_ATTRIBUTE)), whether it is a redelivery
//! ([`REDELIVERED_ATTRIBUTE`](crate::REDELIVERED_ATTRIBUTE), when delivered more than once), its consumer's name
//! as `messaging.consumer.group.name` (unless the handler names a group) and its age from the time the stream
//! stored it ([`AGE_ATTRIBUTE`](crate::AGE_ATTRIBUTE)).
//!
//! NATS headers are multi-valued and keep their names' case. Every value is read, each name's values in the order
//! they arrived, and names match exactly, as for the other brokers. Across names there is no order: async-nats keeps
//! a message's headers in a hash map, whose order differs from map to map, and sorting them would cost every message
//! (a fifth of a sampled consumer span's instructions) for the one thing it changes, the order in which the values
//! of two names alike but for case (`X-Tenant`, `x-tenant`) are captured into one attribute. A `traceparent`
//! header with two values is two `traceparent` headers, which the W3C rules reject as ambiguous (the consumer
//! starts a new trace recording `duplicate_traceparent`); two `tracestate` values are joined in order. Injection
//! replaces every value of a trace header with the one it writes.

use async_nats::jetstream;
use async_nats::{HeaderMap, HeaderName, Message};
use opentelemetry::Context;

use super::AckSubject;
use crate::attributes::SpanAttributes;
use crate::brokers::MessagingSystem;
use crate::carrier::{inject_context, ConsumedMessage, MessageFacts, PublishedMessage};
use crate::consumer_extras::{DELIVERY_COUNT_ATTRIBUTE, REDELIVERED_ATTRIBUTE};
use crate::conventions as semconv;
use crate::w3c::{BAGGAGE_HEADER, TRACEPARENT_HEADER, TRACESTATE_HEADER};

// The NATS conventions are still a proposal (semantic-conventions #2297; #3680, which named
// `messaging.nats.stream` and `messaging.nats.sequence`, closed unmerged): until they are written, JetStream's own
// facts live in tracehop's namespace, as every name outside the conventions does.

/// Attribute holding a JetStream message's stream name.
pub const STREAM_ATTRIBUTE: &str = "tracehop.nats.stream";

/// Attribute holding a JetStream message's sequence number in its stream.
pub const STREAM_SEQUENCE_ATTRIBUTE: &str = "tracehop.nats.stream_sequence";

/// Attribute holding a JetStream message's sequence number in its consumer's deliveries (which counts
/// redeliveries too).
pub const CONSUMER_SEQUENCE_ATTRIBUTE: &str = "tracehop.nats.consumer_sequence";

/// The header a NATS publisher names a message by, which JetStream deduplicates on and tracehop records as
/// `messaging.message.id`.
pub const MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";

/// Every value of every header of `headers`, each name beside each of its values, in the map's order across names
/// and in arrival order within one.
fn header_values(headers: Option<&HeaderMap>) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
    headers.into_iter().flat_map(|headers| {
        headers.iter().flat_map(|(name, values)| {
            let name: &str = name.as_ref();
            values.iter().map(move |value| (name, Some(value.as_str().as_bytes())))
        })
    })
}

/// The message id a publisher set in `headers`: the first value of [`MESSAGE_ID_HEADER`].
fn message_id(headers: Option<&HeaderMap>) -> Option<&str> {
    headers?.get(MESSAGE_ID_HEADER).map(|id| id.as_str())
}

/// The acknowledgement subject of a message JetStream delivered; none for a core message.
fn ack_subject(message: &Message) -> Option<AckSubject<'_>> {
    AckSubject::parse(message.reply.as_deref()?)
}

fn record_delivery(ack: &AckSubject<'_>, attributes: &mut SpanAttributes) {
    attributes.add(STREAM_ATTRIBUTE, ack.stream);
    attributes.add(STREAM_SEQUENCE_ATTRIBUTE, ack.stream_sequence);
    attributes.add(CONSUMER_SEQUENCE_ATTRIBUTE, ack.consumer_sequence);
    attributes.add(DELIVERY_COUNT_ATTRIBUTE, ack.delivered);
    if ack.redelivered() {
        attributes.add(REDELIVERED_ATTRIBUTE, true);
    }
}

impl MessageFacts for Message {
    fn system(&self) -> MessagingSystem {
        MessagingSystem::Nats
    }
    fn destination(&self) -> Option<&str> {
        Some(self.subject.as_str())
    }
    fn record_attributes(&self, attributes: &mut SpanAttributes) {
        attributes.add(semconv::MESSAGING_MESSAGE_ID, message_id(self.headers.as_ref()));
        attributes.add(semconv::MESSAGING_MESSAGE_BODY_SIZE, self.payload.len());
        if let Some(ack) = ack_subject(self) {
            record_delivery(&ack, attributes);
        }
    }
    fn record_identity(&self, attributes: &mut SpanAttributes) {
        attributes.add(semconv::MESSAGING_MESSAGE_ID, message_id(self.headers.as_ref()));
        if let Some(ack) = ack_subject(self) {
            attributes.add(STREAM_ATTRIBUTE, ack.stream);
            attributes.add(STREAM_SEQUENCE_ATTRIBUTE, ack.stream_sequence);
        }
    }
    fn timestamp_millis(&self) -> Option<i64> {
        ack_subject(self).map(|ack| ack.published_millis())
    }
    fn consumer_group(&self) -> Option<&str> {
        ack_subject(self).map(|ack| ack.consumer)
    }
}

impl ConsumedMessage for Message {
    fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        header_values(self.headers.as_ref())
    }
}

/// A JetStream message says what its core message says.
impl MessageFacts for jetstream::Message {
    fn system(&self) -> MessagingSystem {
        self.message.system()
    }
    fn destination(&self) -> Option<&str> {
        self.message.destination()
    }
    fn record_attributes(&self, attributes: &mut SpanAttributes) {
        self.message.record_attributes(attributes)
    }
    fn record_identity(&self, attributes: &mut SpanAttributes) {
        self.message.record_identity(attributes)
    }
    fn timestamp_millis(&self) -> Option<i64> {
        self.message.timestamp_millis()
    }
    fn consumer_group(&self) -> Option<&str> {
        self.message.consumer_group()
    }
}

impl ConsumedMessage for jetstream::Message {
    fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        header_values(self.message.headers.as_ref())
    }
}

impl MessageFacts for HeaderMap {
    fn system(&self) -> MessagingSystem {
        MessagingSystem::Nats
    }
    fn destination(&self) -> Option<&str> {
        None
    }
    fn record_attributes(&self, attributes: &mut SpanAttributes) {
        attributes.add(semconv::MESSAGING_MESSAGE_ID, message_id(Some(self)));
    }
}

impl PublishedMessage for HeaderMap {
    fn set_header(&mut self, key: &str, value: &str) {
        // The trace headers' names are static: no copy of them per message. Another propagator's name is checked,
        // as async-nats would panic on one NATS cannot carry (it asserts when given a `&str`).
        let name = match key {
            TRACEPARENT_HEADER => HeaderName::from_static(TRACEPARENT_HEADER),
            TRACESTATE_HEADER => HeaderName::from_static(TRACESTATE_HEADER),
            BAGGAGE_HEADER => HeaderName::from_static(BAGGAGE_HEADER),
            other => match other.parse() {
                Ok(name) => name,
                Err(_) => {
                    tracing::debug!(header = other, "tracehop: a header name NATS cannot carry is not written");
                    return;
                }
            },
        };
        // `insert` replaces every value the name had: a map copied from a consumed message loses its old context.
        // A value's CR and LF, which no propagator writes, become spaces (async-nats's `from_lossy`).
        self.insert(name, value);
    }
}

/// `headers` with the current trace context added, for a map the body of a `#[traced_producer]` builds itself.
///
/// ```
/// use async_nats::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("Nats-Msg-Id", "ord-1");
/// let headers = tracehop::nats::with_trace_context(headers);
/// assert_eq!(headers.get("Nats-Msg-Id").map(|id| id.as_str()), Some("ord-1"));
/// ```
pub fn with_trace_context(mut headers: HeaderMap) -> HeaderMap {
    inject_context(&Context::current(), &mut headers);
    headers
}

/// A new header map carrying the current trace context; see [`with_trace_context`].
///
/// ```no_run
/// # async fn example(client: async_nats::Client) -> Result<(), async_nats::Error> {
/// client.publish_with_headers("orders.created", tracehop::nats::trace_headers(), "{}".into()).await?;
/// # Ok(()) }
/// ```
pub fn trace_headers() -> HeaderMap {
    with_trace_context(HeaderMap::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;

    fn message(subject: &str, reply: Option<&str>, headers: Option<HeaderMap>) -> Message {
        Message {
            subject: subject.into(),
            reply: reply.map(Into::into),
            payload: "{\"id\":1}".into(),
            headers,
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn every_value_of_every_header_is_read_and_names_keep_their_case() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", "first");
        headers.append("traceparent", "second");
        headers.insert("Tenant", "acme");
        let message = message("orders.created", None, Some(headers));
        let mut read: Vec<(&str, Option<&[u8]>)> = ConsumedMessage::headers(&message).collect();
        // Across names, the map's order; sorted by name alone (a stable sort), each name's values keep theirs.
        read.sort_by_key(|(name, _)| *name);
        assert_eq!(
            read,
            vec![("Tenant", Some(&b"acme"[..])), ("traceparent", Some(&b"first"[..])), ("traceparent", Some(&b"second"[..]))]
        );
        assert_eq!(ConsumedMessage::headers(&self::message("a", None, None)).count(), 0);
        assert_eq!(ConsumedMessage::headers(&self::message("a", None, Some(HeaderMap::new()))).count(), 0);
    }

    #[test]
    fn a_core_message_says_its_subject_id_and_size() {
        let mut headers = HeaderMap::new();
        headers.insert(MESSAGE_ID_HEADER, "ord-1");
        let message = message("orders.created", Some("_INBOX.x.y"), Some(headers));
        assert_eq!((message.system(), message.destination()), (MessagingSystem::Nats, Some("orders.created")));
        let mut attributes = SpanAttributes::default();
        message.record_attributes(&mut attributes);
        assert_eq!(
            attributes.into_inner(),
            vec![KeyValue::new("messaging.message.id", "ord-1"), KeyValue::new("messaging.message.body.size", 8_i64)]
        );
        assert_eq!((message.timestamp_millis(), message.consumer_group()), (None, None));
    }

    #[test]
    fn a_jetstream_delivery_says_its_stream_sequences_deliveries_consumer_and_time() {
        let delivered = message("orders.created", Some("$JS.ACK.ORDERS.inventory.3.41.57.1700000000123456789.0"), None);
        let mut attributes = SpanAttributes::default();
        delivered.record_attributes(&mut attributes);
        assert_eq!(
            attributes.into_inner(),
            vec![
                KeyValue::new("messaging.message.body.size", 8_i64),
                KeyValue::new("tracehop.nats.stream", "ORDERS"),
                KeyValue::new("tracehop.nats.stream_sequence", 41_i64),
                KeyValue::new("tracehop.nats.consumer_sequence", 57_i64),
                KeyValue::new("tracehop.message.delivery_count", 3_i64),
                KeyValue::new("tracehop.message.redelivered", true),
            ]
        );
        assert_eq!(delivered.timestamp_millis(), Some(1_700_000_000_123));
        assert_eq!(delivered.consumer_group(), Some("inventory"));
        let mut identity = SpanAttributes::default();
        delivered.record_identity(&mut identity);
        assert_eq!(
            identity.into_inner(),
            vec![KeyValue::new("tracehop.nats.stream", "ORDERS"), KeyValue::new("tracehop.nats.stream_sequence", 41_i64)]
        );
        let first = message("orders.created", Some("$JS.ACK.ORDERS.inventory.1.41.57.1700000000123456789.0"), None);
        let mut attributes = SpanAttributes::default();
        first.record_attributes(&mut attributes);
        assert!(!attributes.into_inner().iter().any(|kv| kv.key.as_str() == "tracehop.message.redelivered"));
    }

    #[test]
    fn injection_replaces_every_value_of_a_trace_header_and_keeps_the_others() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", "stale-1");
        headers.append("traceparent", "stale-2");
        headers.insert(MESSAGE_ID_HEADER, "ord-2");
        assert_eq!((headers.system(), headers.destination()), (MessagingSystem::Nats, None));
        let _attached = crate::brokers::tests::producer_context().attach();
        let written = with_trace_context(headers);
        assert_eq!(
            written.get_all("traceparent").map(|value| value.as_str()).collect::<Vec<_>>(),
            ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
        );
        assert_eq!(written.get("tracestate").map(|value| value.as_str()), Some("congo=t61rcWkgMzE"));
        assert_eq!(written.get(MESSAGE_ID_HEADER).map(|value| value.as_str()), Some("ord-2"));
        let mut attributes = SpanAttributes::default();
        written.record_attributes(&mut attributes);
        assert_eq!(attributes.into_inner(), vec![KeyValue::new("messaging.message.id", "ord-2")]);
        assert_eq!(trace_headers().len(), 2);
    }

    #[test]
    fn a_header_name_nats_cannot_carry_is_not_written_and_nothing_panics() {
        let mut headers = HeaderMap::new();
        headers.set_header("x-b3: sampled", "1");
        headers.set_header("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1");
        headers.set_header("traceparent", "a\r\nb");
        assert_eq!(headers.len(), 2);
        assert_eq!(headers.get("traceparent").map(|value| value.as_str()), Some("a  b"));
    }
}
