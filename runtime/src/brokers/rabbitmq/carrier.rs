//! RabbitMQ through lapin: reading the trace context from deliveries and writing it into published properties.
//!
//! A [`Delivery`] implements [`ConsumedMessage`]; [`BasicProperties`] implement [`PublishedMessage`]. Their
//! spans carry `messaging.system = rabbitmq`, the exchange as `messaging.destination.name` (the empty string
//! for the default exchange, as the conventions say; span names call it `amq.default`),
//! `messaging.rabbitmq.destination.routing_key` when not empty, `messaging.rabbitmq.message.delivery_tag`,
//! `messaging.message.id` and `messaging.message.conversation_id` (the AMQP `message-id` and `correlation-id`
//! properties) when set, and `messaging.message.body.size`. A delivery's consumer span also says whether it is a
//! redelivery ([`REDELIVERED_ATTRIBUTE`], when RabbitMQ set the `redelivered`
//! flag), how many times a quorum queue delivered it before ([`DELIVERY_COUNT_ATTRIBUTE`],
//! from `x-delivery-count`) and how many times it was dead-lettered
//! ([`DEATH_COUNT_ATTRIBUTE`](crate::DEATH_COUNT_ATTRIBUTE), from `x-death`), with why and where RabbitMQ
//! dead-lettered it last, and first if elsewhere ([`DEATH_REASON_ATTRIBUTE`](crate::DEATH_REASON_ATTRIBUTE) and
//! the other `DEATH_*` and `FIRST_DEATH_*` constants of the crate).
//!
//! AMQP headers arrive as long strings, short strings or byte arrays depending on the publishing client; each
//! is read as bytes. A trace header of any other AMQP type is unreadable: the consumer starts a new trace that
//! records `traceparent_unreadable`. Injection writes long strings, which every client reads.

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use opentelemetry::Context;
use crate::conventions as semconv;

use crate::attributes::SpanAttributes;
use crate::brokers::MessagingSystem;
use crate::carrier::{inject_context, ConsumedMessage, MessageFacts, PublishedMessage};
use crate::consumer_extras::{whole_number, DELIVERY_COUNT_ATTRIBUTE, REDELIVERED_ATTRIBUTE};

/// The header a quorum queue counts a message's earlier deliveries in.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// The bytes of an AMQP header value, for the types clients use for strings.
pub(super) fn value_bytes(value: &AMQPValue) -> Option<&[u8]> {
    match value {
        AMQPValue::LongString(value) => Some(value.as_bytes()),
        AMQPValue::ShortString(value) => Some(value.as_str().as_bytes()),
        AMQPValue::ByteArray(value) => Some(value.as_slice()),
        _ => None,
    }
}

/// An AMQP value as a whole number: any integer type, or decimal text. Anything else (a float, a table) is none.
pub(super) fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(value) => Some(i64::from(*value)),
        AMQPValue::ShortShortUInt(value) => Some(i64::from(*value)),
        AMQPValue::ShortInt(value) => Some(i64::from(*value)),
        AMQPValue::ShortUInt(value) => Some(i64::from(*value)),
        AMQPValue::LongInt(value) => Some(i64::from(*value)),
        AMQPValue::LongUInt(value) => Some(i64::from(*value)),
        AMQPValue::LongLongInt(value) => Some(*value),
        AMQPValue::Timestamp(value) => i64::try_from(*value).ok(),
        other => value_bytes(other).and_then(whole_number),
    }
}

/// Whether the delivery is a redelivery, and the counts its headers keep, on its span.
fn record_redelivery(delivery: &Delivery, attributes: &mut SpanAttributes) {
    if delivery.redelivered {
        attributes.add(REDELIVERED_ATTRIBUTE, true);
    }
    let Some(headers) = delivery.properties.headers() else { return };
    let headers = headers.inner();
    attributes.add(DELIVERY_COUNT_ATTRIBUTE, headers.get(DELIVERY_COUNT_HEADER).and_then(integer));
    super::death::record_deaths(headers, attributes);
}

fn record_properties(properties: &BasicProperties, attributes: &mut SpanAttributes) {
    attributes.add(semconv::MESSAGING_MESSAGE_ID, properties.message_id().as_ref().map(|id| id.as_str()));
    attributes
        .add(semconv::MESSAGING_MESSAGE_CONVERSATION_ID, properties.correlation_id().as_ref().map(|id| id.as_str()));
}

impl MessageFacts for Delivery {
    fn system(&self) -> MessagingSystem {
        MessagingSystem::RabbitMq
    }
    fn destination(&self) -> Option<&str> {
        Some(self.exchange.as_str())
    }
    fn record_attributes(&self, attributes: &mut SpanAttributes) {
        let routing_key = self.routing_key.as_str();
        if !routing_key.is_empty() {
            attributes.add(semconv::MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY, routing_key);
        }
        attributes.add(semconv::MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG, self.delivery_tag);
        record_properties(&self.properties, attributes);
        attributes.add(semconv::MESSAGING_MESSAGE_BODY_SIZE, self.data.len());
        record_redelivery(self, attributes);
    }
    fn record_identity(&self, attributes: &mut SpanAttributes) {
        attributes.add(semconv::MESSAGING_MESSAGE_ID, self.properties.message_id().as_ref().map(|id| id.as_str()));
        attributes.add(semconv::MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG, self.delivery_tag);
    }
    fn timestamp_millis(&self) -> Option<i64> {
        // The AMQP `timestamp` property counts seconds.
        self.properties.timestamp().and_then(|seconds| i64::try_from(seconds).ok()?.checked_mul(1000))
    }
}

impl ConsumedMessage for Delivery {
    fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        self.properties
            .headers()
            .iter()
            .flat_map(|headers| headers.inner())
            .map(|(key, value)| (key.as_str(), value_bytes(value)))
    }
}

impl MessageFacts for BasicProperties {
    fn system(&self) -> MessagingSystem {
        MessagingSystem::RabbitMq
    }
    fn destination(&self) -> Option<&str> {
        None
    }
    fn record_attributes(&self, attributes: &mut SpanAttributes) {
        record_properties(self, attributes)
    }
}

impl PublishedMessage for BasicProperties {
    fn set_header(&mut self, key: &str, value: &str) {
        // lapin's properties are built by value; their header table can only be replaced whole.
        let properties = std::mem::take(self);
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
        *self = properties.with_headers(headers);
    }
}

/// `properties` with the current trace context added to their headers, for properties the body of a
/// `#[traced_producer]` builds itself.
///
/// ```no_run
/// use lapin::BasicProperties;
///
/// let properties = tracehop::rabbitmq::with_trace_context(BasicProperties::default().with_message_id("m-1".into()));
/// ```
pub fn with_trace_context(mut properties: BasicProperties) -> BasicProperties {
    inject_context(&Context::current(), &mut properties);
    properties
}

/// New properties whose headers carry the current trace context; see [`with_trace_context`].
pub fn trace_properties() -> BasicProperties {
    with_trace_context(BasicProperties::default())
}

/// The trace headers of the current context as an AMQP header table, to merge into a table of your own.
pub fn trace_headers() -> FieldTable {
    trace_properties().headers().clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{ByteArray, ShortString};

    #[test]
    fn string_and_byte_values_are_read_as_bytes_and_others_are_unreadable() {
        assert_eq!(value_bytes(&AMQPValue::LongString("a".into())), Some(&b"a"[..]));
        assert_eq!(value_bytes(&AMQPValue::ShortString(ShortString::from("b"))), Some(&b"b"[..]));
        assert_eq!(value_bytes(&AMQPValue::ByteArray(ByteArray::from(vec![0xff]))), Some(&[0xff][..]));
        assert_eq!(value_bytes(&AMQPValue::LongInt(7)), None);
        assert_eq!(value_bytes(&AMQPValue::Boolean(true)), None);
    }

    #[test]
    fn a_delivery_keeps_its_amqp_timestamp_in_milliseconds_and_its_identity() {
        let mut delivery = Delivery::mock(7, "orders".into(), "order.created".into(), false, b"{}".to_vec());
        assert_eq!(delivery.timestamp_millis(), None);
        delivery.properties = BasicProperties::default().with_timestamp(1_700_000_000).with_message_id("m-1".into());
        assert_eq!(delivery.timestamp_millis(), Some(1_700_000_000_000));
        let mut identity = SpanAttributes::default();
        delivery.record_identity(&mut identity);
        assert_eq!(
            identity.into_inner(),
            vec![
                opentelemetry::KeyValue::new("messaging.message.id", "m-1"),
                opentelemetry::KeyValue::new("messaging.rabbitmq.message.delivery_tag", 7_i64),
            ]
        );
    }

    #[test]
    fn redeliveries_and_their_counts_are_recorded_and_malformed_counts_ignored() {
        use lapin::types::FieldArray;
        use opentelemetry::KeyValue;
        let death = |count: AMQPValue| {
            let mut table = FieldTable::default();
            table.insert("count".into(), count);
            table.insert("queue".into(), AMQPValue::LongString("orders".into()));
            AMQPValue::FieldTable(table)
        };
        let mut headers = FieldTable::default();
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                death(AMQPValue::LongLongInt(3)),
                death(AMQPValue::LongInt(1)),
                death(AMQPValue::Boolean(true)),
                AMQPValue::LongString("not a table".into()),
            ])),
        );
        let mut delivery = Delivery::mock(7, "orders".into(), "".into(), true, Vec::new());
        delivery.properties = BasicProperties::default().with_headers(headers);
        let mut attributes = SpanAttributes::default();
        record_redelivery(&delivery, &mut attributes);
        assert_eq!(
            attributes.into_inner(),
            vec![
                KeyValue::new("tracehop.message.redelivered", true),
                KeyValue::new("tracehop.message.delivery_count", 2_i64),
                KeyValue::new("tracehop.message.death_count", 4_i64),
                KeyValue::new("tracehop.rabbitmq.death.queue", "orders"),
            ]
        );
        assert_eq!(integer(&AMQPValue::LongString("5".into())), Some(5));
        assert_eq!(integer(&AMQPValue::Double(5.0)), None);
        let first = Delivery::mock(8, "orders".into(), "".into(), false, Vec::new());
        let mut attributes = SpanAttributes::default();
        record_redelivery(&first, &mut attributes);
        assert!(attributes.is_empty(), "a first delivery without headers records nothing");
    }

    #[test]
    fn setting_a_header_keeps_the_other_properties_and_headers() {
        let mut existing = FieldTable::default();
        existing.insert("tenant".into(), AMQPValue::LongString("acme".into()));
        existing.insert("traceparent".into(), AMQPValue::ShortString("stale".into()));
        let mut properties = BasicProperties::default().with_message_id("m-1".into()).with_headers(existing);
        properties.set_header("traceparent", "fresh");
        assert_eq!(properties.message_id().as_ref().map(|id| id.as_str()), Some("m-1"));
        let headers = properties.headers().as_ref().expect("headers").inner();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers.get("traceparent"), Some(&AMQPValue::LongString("fresh".into())));
        assert_eq!(headers.get("tenant"), Some(&AMQPValue::LongString("acme".into())));
    }

    #[test]
    fn a_delivery_says_where_it_was_and_what_it_carries() {
        use opentelemetry::KeyValue;
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString("tp".into()));
        headers.insert("count".into(), AMQPValue::LongInt(3));
        let mut delivery = Delivery::mock(7, "orders".into(), "order.created".into(), false, b"{}".to_vec());
        delivery.properties = BasicProperties::default()
            .with_headers(headers)
            .with_message_id("m-1".into())
            .with_correlation_id("c-1".into());
        assert_eq!((delivery.system(), delivery.destination()), (MessagingSystem::RabbitMq, Some("orders")));
        assert_eq!(
            ConsumedMessage::headers(&delivery).collect::<Vec<_>>(),
            vec![("count", None), ("traceparent", Some(&b"tp"[..]))]
        );
        let mut attributes = SpanAttributes::default();
        delivery.record_attributes(&mut attributes);
        assert_eq!(
            attributes.into_inner(),
            vec![
                KeyValue::new("messaging.rabbitmq.destination.routing_key", "order.created"),
                KeyValue::new("messaging.rabbitmq.message.delivery_tag", 7_i64),
                KeyValue::new("messaging.message.id", "m-1"),
                KeyValue::new("messaging.message.conversation_id", "c-1"),
                KeyValue::new("messaging.message.body.size", 2_i64),
            ]
        );
        let unrouted = Delivery::mock(8, "".into(), "".into(), false, Vec::new());
        let mut attributes = SpanAttributes::default();
        unrouted.record_attributes(&mut attributes);
        assert!(!attributes
            .into_inner()
            .iter()
            .any(|kv| kv.key.as_str() == "messaging.rabbitmq.destination.routing_key"));
    }

    #[test]
    fn published_properties_say_their_ids_and_carry_the_current_context() {
        use opentelemetry::KeyValue;
        let properties = BasicProperties::default().with_message_id("m-2".into());
        assert_eq!((properties.system(), properties.destination()), (MessagingSystem::RabbitMq, None));
        let mut attributes = SpanAttributes::default();
        properties.record_attributes(&mut attributes);
        assert_eq!(attributes.into_inner(), vec![KeyValue::new("messaging.message.id", "m-2")]);

        let _attached = crate::brokers::tests::producer_context().attach();
        let traceparent = AMQPValue::LongString("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        assert_eq!(trace_headers().inner().get("traceparent"), Some(&traceparent));
        let written = with_trace_context(properties);
        assert_eq!(written.message_id().as_ref().map(|id| id.as_str()), Some("m-2"));
        assert_eq!(
            written.headers().as_ref().and_then(|headers| headers.inner().get("traceparent")),
            Some(&traceparent)
        );
        assert_eq!(trace_properties().headers().as_ref().map(|headers| headers.inner().len()), Some(2));
    }
}
