//! How RabbitMQ itself dead-lettered a message, as the consumer span of the dead letter records it.
//!
//! When a queue with a dead-letter exchange drops a message (a consumer rejected or nacked it without requeue, its
//! TTL expired, the queue was over its `x-max-length`, a quorum queue delivered it more than its `x-delivery-limit`
//! allows), RabbitMQ republishes it with its properties and headers unchanged — the trace headers included, so the
//! dead letter's consumer span continues the original producer's trace — and adds an `x-death` header: an array of
//! tables, one per queue and reason, the most recent first, each with the `reason`, the `queue` it died in, the
//! `exchange` and `routing-keys` it had been published to that queue with, and a `count`. The first dead-lettering
//! also adds the `x-first-death-reason`, `x-first-death-queue` and `x-first-death-exchange` headers, never changed
//! after.
//!
//! The consumer span records the total count ([`DEATH_COUNT_ATTRIBUTE`](super::DEATH_COUNT_ATTRIBUTE)), the most
//! recent death ([`DEATH_REASON_ATTRIBUTE`], [`DEATH_QUEUE_ATTRIBUTE`], [`DEATH_EXCHANGE_ATTRIBUTE`],
//! [`DEATH_ROUTING_KEYS_ATTRIBUTE`]) and, when it is another (the message died in more than one queue or for more
//! than one reason, as in a retry loop through a queue with a TTL), the first one ([`FIRST_DEATH_REASON_ATTRIBUTE`],
//! [`FIRST_DEATH_QUEUE_ATTRIBUTE`], [`FIRST_DEATH_EXCHANGE_ATTRIBUTE`]): where the message's trouble started.
//! Read only for recorded spans, and only when the delivery has an `x-death` header.
//!
//! A header is anyone's to write: a value of the wrong type, text that is not UTF-8, an `x-death` that is not an
//! array of tables, or whose most recent entry is not a table, leaves the attribute it would give absent. Never a
//! panic, never a guess.

/// Attribute holding why RabbitMQ dead-lettered the message most recently, as it says it: `rejected` (a consumer's
/// `basic.reject` or `basic.nack` without requeue), `expired` (the message's or the queue's TTL), `maxlen` (the
/// queue's `x-max-length` or `x-max-length-bytes` overflowed), `delivery_limit` (a quorum queue delivered it more
/// often than its `x-delivery-limit`). The `reason` of the first entry of the `x-death` header.
pub const DEATH_REASON_ATTRIBUTE: &str = "tracehop.rabbitmq.death.reason";

/// Attribute holding the queue the message was in when RabbitMQ dead-lettered it most recently: the `queue` of the
/// first entry of the `x-death` header.
pub const DEATH_QUEUE_ATTRIBUTE: &str = "tracehop.rabbitmq.death.queue";

/// Attribute holding the exchange the message was published to before it reached the queue it most recently died
/// in (the empty string for the default exchange, as `messaging.destination.name` records it; a dead-letter exchange
/// when the message died before): the `exchange` of the first entry of the `x-death` header. The delivery's own
/// exchange, `messaging.destination.name`, is the dead-letter exchange.
pub const DEATH_EXCHANGE_ATTRIBUTE: &str = "tracehop.rabbitmq.death.exchange";

/// Attribute holding, as an array of strings, the routing keys the message was published with before it reached the
/// queue it most recently died in (`CC` keys included): the `routing-keys` of the first entry of the `x-death`
/// header. The delivery's own routing key is the queue's `x-dead-letter-routing-key` when it sets one.
pub const DEATH_ROUTING_KEYS_ATTRIBUTE: &str = "tracehop.rabbitmq.death.routing_keys";

/// Attribute holding why RabbitMQ dead-lettered the message the first time (the `x-first-death-reason` header),
/// recorded only when the first death was in another queue or for another reason than the most recent one.
pub const FIRST_DEATH_REASON_ATTRIBUTE: &str = "tracehop.rabbitmq.first_death.reason";

/// Attribute holding the queue the message first died in (the `x-first-death-queue` header), recorded only when
/// the first death was in another queue or for another reason than the most recent one.
pub const FIRST_DEATH_QUEUE_ATTRIBUTE: &str = "tracehop.rabbitmq.first_death.queue";

/// Attribute holding the exchange the message was published to before its first death (the
/// `x-first-death-exchange` header), recorded only when the first death was in another queue or for another reason
/// than the most recent one.
pub const FIRST_DEATH_EXCHANGE_ATTRIBUTE: &str = "tracehop.rabbitmq.first_death.exchange";

#[cfg(feature = "rabbitmq")]
pub(super) use reading::record_deaths;

#[cfg(feature = "rabbitmq")]
mod reading {
    use std::collections::BTreeMap;

    use lapin::types::{AMQPValue, ShortString};
    use opentelemetry::{Array, StringValue, Value};

    use super::*;
    use crate::attributes::SpanAttributes;
    use crate::brokers::rabbitmq::carrier::{integer, value_bytes};
    use crate::brokers::rabbitmq::DEATH_COUNT_ATTRIBUTE;

    /// The header RabbitMQ lists a message's dead-letterings in: one table per queue and reason, most recent first.
    const DEATH_HEADER: &str = "x-death";
    const FIRST_DEATH_REASON_HEADER: &str = "x-first-death-reason";
    const FIRST_DEATH_QUEUE_HEADER: &str = "x-first-death-queue";
    const FIRST_DEATH_EXCHANGE_HEADER: &str = "x-first-death-exchange";

    /// Records how RabbitMQ dead-lettered the message whose headers these are; nothing when it did not.
    pub(in crate::brokers::rabbitmq) fn record_deaths(
        headers: &BTreeMap<ShortString, AMQPValue>,
        attributes: &mut SpanAttributes,
    ) {
        let Some(x_death) = headers.get(DEATH_HEADER) else { return };
        attributes.add(DEATH_COUNT_ATTRIBUTE, death_count(x_death));
        let last = most_recent_death(x_death);
        let (mut last_reason, mut last_queue) = (None, None);
        if let Some(last) = last {
            last_reason = text(last.get("reason"));
            last_queue = text(last.get("queue"));
            add_reason(attributes, DEATH_REASON_ATTRIBUTE, last_reason);
            attributes.add(DEATH_QUEUE_ATTRIBUTE, last_queue);
            attributes.add(DEATH_EXCHANGE_ATTRIBUTE, text(last.get("exchange")));
            attributes.add(DEATH_ROUTING_KEYS_ATTRIBUTE, routing_keys(last.get("routing-keys")));
        }
        let first_reason = text(headers.get(FIRST_DEATH_REASON_HEADER));
        let first_queue = text(headers.get(FIRST_DEATH_QUEUE_HEADER));
        // The same queue and reason are the same `x-death` entry, whose every field is on the span already.
        if (first_reason, first_queue) == (last_reason, last_queue) {
            return;
        }
        add_reason(attributes, FIRST_DEATH_REASON_ATTRIBUTE, first_reason);
        attributes.add(FIRST_DEATH_QUEUE_ATTRIBUTE, first_queue);
        attributes.add(FIRST_DEATH_EXCHANGE_ATTRIBUTE, text(headers.get(FIRST_DEATH_EXCHANGE_HEADER)));
    }

    /// The total of the `count` fields of an `x-death` header; none when it is not an array of tables with counts.
    /// A malformed header (another type, entries without a count) is read as far as it makes sense, never trusted.
    pub(super) fn death_count(x_death: &AMQPValue) -> Option<i64> {
        let AMQPValue::FieldArray(deaths) = x_death else { return None };
        let counts = deaths.as_slice().iter().filter_map(|death| match death {
            AMQPValue::FieldTable(death) => death.inner().get("count").and_then(integer),
            _ => None,
        });
        counts.fold(None, |total: Option<i64>, count| Some(total.unwrap_or(0).saturating_add(count.max(0))))
    }

    /// The first entry of an `x-death` header, the most recent death; none when the header is not an array or that
    /// entry is not a table (the next one may be older: it cannot stand in for it).
    pub(super) fn most_recent_death(x_death: &AMQPValue) -> Option<&BTreeMap<ShortString, AMQPValue>> {
        let AMQPValue::FieldArray(deaths) = x_death else { return None };
        match deaths.as_slice().first()? {
            AMQPValue::FieldTable(death) => Some(death.inner()),
            _ => None,
        }
    }

    /// A header or field that holds text, as RabbitMQ writes it (a long string) or another client might (a short
    /// string, a byte array); none for another type or bytes that are not UTF-8.
    pub(super) fn text(value: Option<&AMQPValue>) -> Option<&str> {
        std::str::from_utf8(value_bytes(value?)?).ok()
    }

    /// Records a dead-lettering reason: RabbitMQ's own without copying it, any other as it reads.
    fn add_reason(attributes: &mut SpanAttributes, key: &'static str, reason: Option<&str>) {
        match reason {
            Some("rejected") => attributes.add_static(key, "rejected"),
            Some("expired") => attributes.add_static(key, "expired"),
            Some("maxlen") => attributes.add_static(key, "maxlen"),
            Some("delivery_limit") => attributes.add_static(key, "delivery_limit"),
            other => attributes.add(key, other),
        }
    }

    /// The `routing-keys` of an `x-death` entry as an array of strings; none unless it is a non-empty array of
    /// text, so that a partly unreadable list is never recorded as if it were the whole.
    pub(super) fn routing_keys(value: Option<&AMQPValue>) -> Option<Value> {
        let AMQPValue::FieldArray(keys) = value? else { return None };
        let keys = keys.as_slice();
        if keys.is_empty() {
            return None;
        }
        let read: Option<Vec<StringValue>> =
            keys.iter().map(|key| text(Some(key)).map(|key| StringValue::from(key.to_owned()))).collect();
        read.map(|keys| Value::Array(Array::String(keys)))
    }
}

#[cfg(all(test, feature = "rabbitmq"))]
mod tests {
    use lapin::types::{AMQPValue, ByteArray, FieldArray, FieldTable, LongString, ShortString};
    use opentelemetry::{Array, KeyValue, StringValue, Value};

    use super::reading::{death_count, most_recent_death, routing_keys, text};
    use super::*;
    use crate::attributes::SpanAttributes;

    fn long(value: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(value))
    }

    /// An `x-death` entry as RabbitMQ writes one.
    fn death(reason: &str, queue: &str, exchange: &str, routing_keys: &[&str], count: i64) -> AMQPValue {
        let mut table = FieldTable::default();
        table.insert("count".into(), AMQPValue::LongLongInt(count));
        table.insert("exchange".into(), long(exchange));
        table.insert("queue".into(), long(queue));
        table.insert("reason".into(), long(reason));
        table.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(FieldArray::from(routing_keys.iter().map(|key| long(key)).collect::<Vec<_>>())),
        );
        table.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
        AMQPValue::FieldTable(table)
    }

    fn headers(x_death: Vec<AMQPValue>, first: Option<(&str, &str, &str)>) -> FieldTable {
        let mut headers = FieldTable::default();
        headers.insert("x-death".into(), AMQPValue::FieldArray(FieldArray::from(x_death)));
        if let Some((reason, queue, exchange)) = first {
            headers.insert("x-first-death-reason".into(), long(reason));
            headers.insert("x-first-death-queue".into(), long(queue));
            headers.insert("x-first-death-exchange".into(), long(exchange));
        }
        headers
    }

    fn recorded(headers: &FieldTable) -> Vec<KeyValue> {
        let mut attributes = SpanAttributes::default();
        record_deaths(headers.inner(), &mut attributes);
        attributes.into_inner()
    }

    fn strings(values: &[&str]) -> Value {
        Value::Array(Array::String(values.iter().map(|value| StringValue::from(value.to_string())).collect()))
    }

    #[test]
    fn a_single_death_records_its_reason_queue_exchange_and_routing_keys_once() {
        let headers = headers(
            vec![death("expired", "orders.wait", "orders", &["order.created"], 1)],
            Some(("expired", "orders.wait", "orders")),
        );
        assert_eq!(
            recorded(&headers),
            vec![
                KeyValue::new("tracehop.message.death_count", 1_i64),
                KeyValue::new("tracehop.rabbitmq.death.reason", "expired"),
                KeyValue::new("tracehop.rabbitmq.death.queue", "orders.wait"),
                KeyValue::new("tracehop.rabbitmq.death.exchange", "orders"),
                KeyValue::new("tracehop.rabbitmq.death.routing_keys", strings(&["order.created"])),
            ],
            "the first death is the most recent one: not recorded twice"
        );
    }

    #[test]
    fn the_most_recent_death_is_the_first_entry_and_the_first_death_is_recorded_when_it_is_another() {
        // Rejected in `orders` twice, then expired from the retry queue `orders.retry`, which the dead-letter
        // exchange `orders.dlx` routed it to with the routing keys `orders` and `audit` (a CC).
        let headers = headers(
            vec![
                death("expired", "orders.retry", "orders.dlx", &["orders", "audit"], 1),
                death("rejected", "orders", "", &["orders"], 2),
            ],
            Some(("rejected", "orders", "")),
        );
        assert_eq!(
            recorded(&headers),
            vec![
                KeyValue::new("tracehop.message.death_count", 3_i64),
                KeyValue::new("tracehop.rabbitmq.death.reason", "expired"),
                KeyValue::new("tracehop.rabbitmq.death.queue", "orders.retry"),
                KeyValue::new("tracehop.rabbitmq.death.exchange", "orders.dlx"),
                KeyValue::new("tracehop.rabbitmq.death.routing_keys", strings(&["orders", "audit"])),
                KeyValue::new("tracehop.rabbitmq.first_death.reason", "rejected"),
                KeyValue::new("tracehop.rabbitmq.first_death.queue", "orders"),
                KeyValue::new("tracehop.rabbitmq.first_death.exchange", ""),
            ]
        );
    }

    #[test]
    fn every_reason_rabbitmq_writes_is_recorded_as_written_and_an_unknown_one_too() {
        for reason in ["rejected", "expired", "maxlen", "delivery_limit", "a-future-reason"] {
            let headers = headers(vec![death(reason, "q", "x", &["k"], 1)], None);
            let reasons: Vec<_> = recorded(&headers)
                .into_iter()
                .filter(|kv| kv.key.as_str() == DEATH_REASON_ATTRIBUTE)
                .map(|kv| kv.value)
                .collect();
            assert_eq!(reasons, vec![Value::from(reason.to_owned())]);
        }
    }

    #[test]
    fn text_is_read_from_long_and_short_strings_and_byte_arrays_and_nothing_else() {
        assert_eq!(text(Some(&long("orders"))), Some("orders"));
        assert_eq!(text(Some(&AMQPValue::ShortString(ShortString::from("orders")))), Some("orders"));
        assert_eq!(text(Some(&AMQPValue::ByteArray(ByteArray::from(b"orders".to_vec())))), Some("orders"));
        assert_eq!(text(Some(&AMQPValue::LongString(LongString::from(vec![0xff, 0xfe])))), None, "not UTF-8");
        assert_eq!(text(Some(&AMQPValue::LongInt(7))), None);
        assert_eq!(text(Some(&AMQPValue::Void)), None);
        assert_eq!(text(None), None);
    }

    #[test]
    fn routing_keys_are_recorded_only_when_every_one_is_text() {
        let array = |keys: Vec<AMQPValue>| AMQPValue::FieldArray(FieldArray::from(keys));
        assert_eq!(routing_keys(Some(&array(vec![long("a"), long("")]))), Some(strings(&["a", ""])));
        assert_eq!(routing_keys(Some(&array(vec![]))), None, "an empty list");
        assert_eq!(routing_keys(Some(&array(vec![long("a"), AMQPValue::LongInt(1)]))), None, "a number among them");
        assert_eq!(
            routing_keys(Some(&array(vec![long("a"), AMQPValue::LongString(LongString::from(vec![0xc3]))]))),
            None,
            "bytes that are not UTF-8 among them"
        );
        assert_eq!(routing_keys(Some(&long("a"))), None, "a string, not an array");
        assert_eq!(routing_keys(None), None);
    }

    #[test]
    fn a_malformed_x_death_header_gives_no_death_attributes() {
        let empty = headers(vec![], None);
        assert_eq!(recorded(&empty), vec![], "an empty array: no count, no death");
        let not_a_table = headers(vec![long("expired"), death("rejected", "older", "x", &["k"], 1)], None);
        assert_eq!(
            recorded(&not_a_table),
            vec![KeyValue::new("tracehop.message.death_count", 1_i64)],
            "the most recent entry is unreadable: an older one does not stand in for it"
        );
        let mut not_an_array = FieldTable::default();
        not_an_array.insert("x-death".into(), long("rejected"));
        assert_eq!(recorded(&not_an_array), vec![]);
        let mut wrong_types = FieldTable::default();
        wrong_types.insert("count".into(), AMQPValue::Boolean(true));
        wrong_types.insert("reason".into(), AMQPValue::LongInt(1));
        wrong_types.insert("queue".into(), AMQPValue::LongString(LongString::from(vec![0xff])));
        wrong_types.insert("exchange".into(), AMQPValue::FieldArray(FieldArray::default()));
        wrong_types.insert("routing-keys".into(), long("order.created"));
        let wrong_types = headers(vec![AMQPValue::FieldTable(wrong_types)], None);
        assert_eq!(recorded(&wrong_types), vec![], "no field of the entry is readable");
        assert!(most_recent_death(&AMQPValue::Boolean(false)).is_none());
    }

    #[test]
    fn first_death_headers_of_the_wrong_type_are_left_out() {
        let mut headers = headers(vec![death("expired", "retry", "dlx", &["k"], 1)], None);
        headers.insert("x-first-death-reason".into(), long("rejected"));
        headers.insert("x-first-death-queue".into(), AMQPValue::LongInt(3));
        headers.insert("x-first-death-exchange".into(), AMQPValue::LongString(LongString::from(vec![0xff])));
        let first: Vec<_> =
            recorded(&headers).into_iter().filter(|kv| kv.key.as_str().contains("first_death")).collect();
        assert_eq!(first, vec![KeyValue::new("tracehop.rabbitmq.first_death.reason", "rejected")]);
    }

    #[test]
    fn without_an_x_death_header_nothing_is_recorded_not_even_the_first_death_headers() {
        let mut headers = FieldTable::default();
        headers.insert("x-first-death-reason".into(), long("rejected"));
        headers.insert("x-first-death-queue".into(), long("orders"));
        assert_eq!(recorded(&headers), vec![]);
    }

    #[test]
    fn death_counts_add_up_over_entries_and_skip_the_unreadable() {
        let with_count = |count: AMQPValue| {
            let mut table = FieldTable::default();
            table.insert("count".into(), count);
            AMQPValue::FieldTable(table)
        };
        let deaths = AMQPValue::FieldArray(FieldArray::from(vec![
            with_count(AMQPValue::LongLongInt(3)),
            with_count(AMQPValue::LongInt(1)),
            with_count(AMQPValue::LongLongInt(-5)),
            with_count(AMQPValue::Boolean(true)),
            long("not a table"),
        ]));
        assert_eq!(death_count(&deaths), Some(4));
        assert_eq!(death_count(&long("x")), None);
        assert_eq!(death_count(&AMQPValue::FieldArray(FieldArray::from(vec![]))), None);
    }
}
