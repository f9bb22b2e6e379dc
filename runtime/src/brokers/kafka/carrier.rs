//! Kafka through rdkafka: reading the trace context from consumed messages and writing it into records.
//!
//! Consumed messages ([`BorrowedMessage`], [`OwnedMessage`]) implement [`ConsumedMessage`]; records
//! ([`FutureRecord`], [`BaseRecord`]) implement [`PublishedMessage`]. Their spans carry `messaging.system =
//! kafka`, the topic as `messaging.destination.name`, `messaging.destination.partition.id`,
//! `messaging.kafka.offset`, `messaging.kafka.message.key` (when the key is UTF-8, as the conventions ask),
//! `messaging.kafka.message.tombstone` for a message with no payload and `messaging.message.body.size`.
//! Kafka has no message id, so `messaging.message.id` is not set.

use opentelemetry::Context;
use crate::conventions as semconv;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

use rdkafka::bindings;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers, Message, OwnedHeaders, OwnedMessage, ToBytes};
use rdkafka::producer::{BaseRecord, FutureRecord};
use rdkafka::util::IntoOpaque;

use crate::attributes::SpanAttributes;
use crate::brokers::MessagingSystem;
use crate::carrier::{inject_context, ConsumedMessage, MessageFacts, PublishedMessage};
use crate::lineage::HEADER_PREFIX;
use crate::w3c::{BAGGAGE_HEADER, TRACEPARENT_HEADER, TRACESTATE_HEADER};

fn record_consumed<M: Message>(message: &M, attributes: &mut SpanAttributes) {
    record_partition(message.partition(), attributes);
    attributes.add(semconv::MESSAGING_KAFKA_OFFSET, message.offset());
    record_key_and_payload(message.key(), message.payload(), attributes);
}

fn record_identity<M: Message>(message: &M, attributes: &mut SpanAttributes) {
    attributes.add(semconv::MESSAGING_DESTINATION_NAME, message.topic());
    record_partition(message.partition(), attributes);
    attributes.add(semconv::MESSAGING_KAFKA_OFFSET, message.offset());
}

/// `messaging.destination.partition.id`, a string in the conventions. The first partitions' names are static, so
/// most messages copy nothing for it.
pub(crate) fn record_partition(partition: i32, attributes: &mut SpanAttributes) {
    const NAMES: [&str; 16] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"];
    match usize::try_from(partition).ok().and_then(|index| NAMES.get(index)) {
        Some(name) => attributes.add_static(semconv::MESSAGING_DESTINATION_PARTITION_ID, name),
        None => attributes.add(semconv::MESSAGING_DESTINATION_PARTITION_ID, partition.to_string()),
    }
}

fn record_key_and_payload(key: Option<&[u8]>, payload: Option<&[u8]>, attributes: &mut SpanAttributes) {
    if let Some(key) = key.and_then(|key| std::str::from_utf8(key).ok()) {
        attributes.add(semconv::MESSAGING_KAFKA_MESSAGE_KEY, key);
    }
    match payload {
        Some(payload) => attributes.add(semconv::MESSAGING_MESSAGE_BODY_SIZE, payload.len()),
        None => attributes.add(semconv::MESSAGING_KAFKA_MESSAGE_TOMBSTONE, true),
    }
}

/// Every header of `headers` whose name is UTF-8.
///
/// rdkafka's own `Headers::iter` panics on a header name that is not UTF-8 (it unwraps the conversion), and any
/// producer can send one; so tracehop reads the headers through librdkafka's C API and skips such names, which
/// can be no trace header. librdkafka hands names out as C strings: a name ends at its first NUL byte
/// (`traceparent\0junk` reads as `traceparent`), and it compares them the same way when removing a header.
fn headers_of(headers: Option<&BorrowedHeaders>) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
    headers.into_iter().flat_map(|headers| (0..headers.count()).filter_map(move |index| header_at(headers, index)))
}

fn header_at(headers: &BorrowedHeaders, index: usize) -> Option<(&str, Option<&[u8]>)> {
    let (name, value) = raw_header_at(headers, index)?;
    Some((std::str::from_utf8(name).ok()?, value))
}

/// The headers of `headers` that the trace context is read from ([`ConsumedMessage::trace_headers`]), as
/// [`headers_of`] yields them.
fn trace_headers_of(headers: Option<&BorrowedHeaders>) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
    // One range over the indices, not a nested iterator per list: the scan's state stays two numbers.
    let count = headers.map_or(0, |headers| headers.count());
    (0..count).filter_map(move |index| {
        let (name, value) = raw_header_at(headers?, index)?;
        Some((trace_header_name(name)?, value))
    })
}

/// A header name the trace context is read from, as text: the W3C names by comparing bytes, with no UTF-8
/// pass, the lineage names (`tracehop-*`) when they are UTF-8; `None` for any other, unread.
fn trace_header_name(name: &[u8]) -> Option<&str> {
    // Most other names are told apart by their first byte, before any comparison of the whole name.
    if !matches!(name.first(), Some(b't' | b'b')) {
        return None;
    }
    match name.len() {
        11 if same_name(name, b"traceparent") => Some(TRACEPARENT_HEADER),
        10 if same_name(name, b"tracestate") => Some(TRACESTATE_HEADER),
        7 if name == b"baggage" => Some(BAGGAGE_HEADER),
        _ if name.starts_with(HEADER_PREFIX.as_bytes()) => std::str::from_utf8(name).ok(),
        _ => None,
    }
}

/// Whether `name` is `expected`, a name of 8 to 16 bytes, compared as its first and last eight bytes (which
/// overlap), two loads each instead of one comparison per byte.
fn same_name(name: &[u8], expected: &[u8]) -> bool {
    let word = |bytes: &[u8], at: usize| bytes.get(at..at + 8).and_then(|word| <[u8; 8]>::try_from(word).ok());
    let last = expected.len().saturating_sub(8);
    name.len() == expected.len() && word(name, 0) == word(expected, 0) && word(name, last) == word(expected, last)
}

/// The header at `index`, its name as the bytes before its first NUL.
fn raw_header_at(headers: &BorrowedHeaders, index: usize) -> Option<(&[u8], Option<&[u8]>)> {
    // rdkafka hands out `&BorrowedHeaders` as the address of librdkafka's `rd_kafka_headers_t` itself (it is a
    // zero-sized handle type); this is the pointer its own `Headers` methods pass to the C API.
    let native = headers as *const BorrowedHeaders as *const bindings::rd_kafka_headers_t;
    let mut name: *const c_char = ptr::null();
    let mut value: *const c_void = ptr::null();
    let mut size: usize = 0;
    // SAFETY: `native` is a valid header list for as long as `headers` is borrowed, and librdkafka checks
    // `index` against its length, writing the out-pointers only on success.
    let error = unsafe { bindings::rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size) };
    if error != bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
        return None;
    }
    // SAFETY: on success `name` points to a NUL-terminated string owned by the header list, which outlives
    // the returned borrow.
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    let value = if value.is_null() {
        None
    } else {
        // SAFETY: on success `value` points to `size` bytes owned by the header list.
        Some(unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) })
    };
    Some((name, value))
}

/// Implements [`MessageFacts`] and [`ConsumedMessage`] for a consumed rdkafka message type, given how to reach
/// its headers as `BorrowedHeaders`.
macro_rules! consumed_kafka_message {
    ($message:ty, $headers:expr) => {
        impl MessageFacts for $message {
            fn system(&self) -> MessagingSystem {
                MessagingSystem::Kafka
            }
            fn destination(&self) -> Option<&str> {
                Some(self.topic())
            }
            fn record_attributes(&self, attributes: &mut SpanAttributes) {
                record_consumed(self, attributes)
            }
            fn record_identity(&self, attributes: &mut SpanAttributes) {
                record_identity(self, attributes)
            }
            fn timestamp_millis(&self) -> Option<i64> {
                self.timestamp().to_millis()
            }
        }

        impl ConsumedMessage for $message {
            fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
                headers_of($headers(self))
            }
            fn trace_headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
                trace_headers_of($headers(self))
            }
        }
    };
}

fn headers_of_borrowed<'a>(message: &'a BorrowedMessage<'_>) -> Option<&'a BorrowedHeaders> {
    Message::headers(message)
}

fn headers_of_owned(message: &OwnedMessage) -> Option<&BorrowedHeaders> {
    Message::headers(message).map(OwnedHeaders::as_borrowed)
}

consumed_kafka_message!(BorrowedMessage<'_>, headers_of_borrowed);
consumed_kafka_message!(OwnedMessage, headers_of_owned);

/// Sets one header, keeping the record's other headers as they are. A header of the same key is replaced, not
/// repeated: a record built from a consumed message's headers must not carry the old `traceparent` beside the
/// new one, which consumers reject as ambiguous.
///
/// The other headers are never read as text: headers forwarded from a consumed message may have names that
/// are not UTF-8 (rdkafka's own `Headers::iter` panics on those), and they go on unchanged.
fn set_header(headers: &mut Option<OwnedHeaders>, key: &str, value: &str) {
    let headers = headers.get_or_insert_with(|| OwnedHeaders::new_with_capacity(2));
    let has_key = headers_of(Some(headers.as_borrowed())).any(|(name, _)| name == key);
    if has_key {
        remove_headers(headers, key);
    }
    let native = native_headers(headers);
    // SAFETY: `native` is the header list `headers` owns, writable (an `OwnedHeaders` is never a consumed
    // message's read-only list) and exclusively borrowed here; librdkafka copies the name and value.
    let error = unsafe {
        bindings::rd_kafka_header_add(
            native,
            key.as_ptr().cast::<c_char>(),
            key.len() as isize,
            value.as_ptr().cast::<c_void>(),
            value.len() as isize,
        )
    };
    if error != bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        tracing::debug!(header = key, ?error, "tracehop: librdkafka refused a trace header");
    }
}

/// Removes every header named `key`. librdkafka compares names as C strings, as it hands them out.
fn remove_headers(headers: &mut OwnedHeaders, key: &str) {
    // Propagators write plain header names; one with a NUL cannot be named to librdkafka and stays.
    let Ok(name) = CString::new(key) else { return };
    // SAFETY: as in `set_header`; `name` is NUL-terminated and outlives the call.
    let _ = unsafe { bindings::rd_kafka_header_remove(native_headers(headers), name.as_ptr()) };
}

/// The librdkafka header list an `OwnedHeaders` owns.
fn native_headers(headers: &mut OwnedHeaders) -> *mut bindings::rd_kafka_headers_t {
    // `as_borrowed` is a reference to librdkafka's list itself (see `header_at`); the `&mut` borrow of the
    // owner makes writing through it exclusive.
    headers.as_borrowed() as *const BorrowedHeaders as *mut bindings::rd_kafka_headers_t
}

fn record_outgoing(
    partition: Option<i32>,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    attributes: &mut SpanAttributes,
) {
    if let Some(partition) = partition {
        record_partition(partition, attributes);
    }
    record_key_and_payload(key, payload, attributes);
}

/// Implements [`MessageFacts`] and [`PublishedMessage`] for an rdkafka record type (they share their fields).
macro_rules! published_kafka_record {
    ([$($generics:tt)*] $record:ty) => {
        impl<$($generics)*> MessageFacts for $record {
            fn system(&self) -> MessagingSystem {
                MessagingSystem::Kafka
            }
            fn destination(&self) -> Option<&str> {
                Some(self.topic)
            }
            fn record_attributes(&self, attributes: &mut SpanAttributes) {
                record_outgoing(
                    self.partition,
                    self.key.map(ToBytes::to_bytes),
                    self.payload.map(ToBytes::to_bytes),
                    attributes,
                )
            }
        }

        impl<$($generics)*> PublishedMessage for $record {
            fn set_header(&mut self, key: &str, value: &str) {
                set_header(&mut self.headers, key, value)
            }
        }
    };
}

published_kafka_record!([K: ToBytes + ?Sized, P: ToBytes + ?Sized] FutureRecord<'_, K, P>);
published_kafka_record!([K: ToBytes + ?Sized, P: ToBytes + ?Sized, D: IntoOpaque] BaseRecord<'_, K, P, D>);

/// Kafka headers to publish while no record exists yet, collecting what a propagator writes.
struct HeaderList(Option<OwnedHeaders>);

impl MessageFacts for HeaderList {
    fn system(&self) -> MessagingSystem {
        MessagingSystem::Kafka
    }
    fn destination(&self) -> Option<&str> {
        None
    }
    fn record_attributes(&self, _attributes: &mut SpanAttributes) {}
}

impl PublishedMessage for HeaderList {
    fn set_header(&mut self, key: &str, value: &str) {
        set_header(&mut self.0, key, value)
    }
}

/// New Kafka headers carrying the current trace context, for a record the body of a `#[traced_producer]`
/// builds itself.
///
/// ```no_run
/// use rdkafka::producer::FutureRecord;
///
/// let record: FutureRecord<'_, str, str> =
///     FutureRecord::to("orders").payload("{}").headers(tracehop::kafka::trace_headers());
/// ```
pub fn trace_headers() -> OwnedHeaders {
    with_trace_context(OwnedHeaders::new_with_capacity(2))
}

/// `headers` with the current trace context added; see [`trace_headers`].
pub fn with_trace_context(headers: OwnedHeaders) -> OwnedHeaders {
    let mut list = HeaderList(Some(headers));
    inject_context(&Context::current(), &mut list);
    list.0.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Header;

    /// Every header as raw bytes, read through librdkafka (rdkafka's `Headers::iter` panics on names that are
    /// not UTF-8).
    fn raw_pairs(headers: &OwnedHeaders) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let native = headers.as_borrowed() as *const BorrowedHeaders as *const bindings::rd_kafka_headers_t;
        (0..headers.count())
            .map(|index| {
                let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) =
                    (ptr::null(), ptr::null(), 0);
                // SAFETY: a valid list and an index below its count.
                let error =
                    unsafe { bindings::rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size) };
                assert_eq!(error, bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
                // SAFETY: on success both point into the list.
                let name = unsafe { CStr::from_ptr(name) }.to_bytes().to_vec();
                let value = (!value.is_null())
                    .then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec());
                (name, value)
            })
            .collect()
    }

    fn pairs(headers: &OwnedHeaders) -> Vec<(String, Option<Vec<u8>>)> {
        raw_pairs(headers).into_iter().map(|(name, value)| (String::from_utf8(name).unwrap(), value)).collect()
    }

    /// Headers as a foreign producer may send them, with a name that is not UTF-8.
    fn with_raw_header(headers: OwnedHeaders, name: &[u8], value: &[u8]) -> OwnedHeaders {
        let mut headers = headers;
        // SAFETY: an owned, writable list; librdkafka copies name and value.
        let error = unsafe {
            bindings::rd_kafka_header_add(
                native_headers(&mut headers),
                name.as_ptr().cast(),
                name.len() as isize,
                value.as_ptr().cast(),
                value.len() as isize,
            )
        };
        assert_eq!(error, bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
        headers
    }

    #[test]
    fn forwarded_headers_whose_names_are_not_utf8_go_on_unchanged() {
        let forwarded = with_raw_header(OwnedHeaders::new(), b"caf\xe9", b"au lait");
        let forwarded = with_raw_header(forwarded, b"traceparent", b"stale");
        let forwarded = forwarded.insert(Header { key: "tenant", value: Some("acme") });
        let mut headers = Some(forwarded.clone());
        set_header(&mut headers, "traceparent", "fresh");
        assert_eq!(
            raw_pairs(headers.as_ref().unwrap()),
            vec![
                (b"caf\xe9".to_vec(), Some(b"au lait".to_vec())),
                (b"tenant".to_vec(), Some(b"acme".to_vec())),
                (b"traceparent".to_vec(), Some(b"fresh".to_vec())),
            ]
        );
        let with_context = with_trace_context(forwarded);
        assert_eq!(raw_pairs(&with_context)[0], (b"caf\xe9".to_vec(), Some(b"au lait".to_vec())));
    }

    #[test]
    fn the_trace_headers_are_the_ones_named_for_the_trace_in_order_and_no_other() {
        let headers = with_raw_header(OwnedHeaders::new(), b"caf\xe9", b"au lait");
        let headers = with_raw_header(headers, b"tracehop-\xff", b"1");
        let headers = with_raw_header(headers, b"traceparent\0junk", b"tp");
        let headers = headers
            .insert(Header { key: "tracehop-attempt", value: Some("2") })
            .insert(Header { key: "content-type", value: Some("application/json") })
            .insert(Header { key: "tracestate", value: Some("a=1") })
            .insert(Header { key: "TraceParent", value: Some("upper") })
            .insert(Header { key: "tracestate", value: None::<&str> })
            .insert(Header { key: "baggage", value: Some("k=v") })
            .insert(Header { key: "traceparent", value: Some("second") });
        let message = consumed(Some(headers), Some(b"{}"));
        let trace: Vec<_> = message.trace_headers().collect();
        let named_for_the_trace = |&(name, _): &(&str, _)| {
            matches!(name, "traceparent" | "tracestate" | "baggage") || name.starts_with("tracehop-")
        };
        assert_eq!(trace, ConsumedMessage::headers(&message).filter(named_for_the_trace).collect::<Vec<_>>());
        assert_eq!(
            trace,
            vec![
                ("traceparent", Some(&b"tp"[..])),
                ("tracehop-attempt", Some(&b"2"[..])),
                ("tracestate", Some(&b"a=1"[..])),
                ("tracestate", None),
                ("baggage", Some(&b"k=v"[..])),
                ("traceparent", Some(&b"second"[..])),
            ]
        );
        let by_reference = &message;
        assert_eq!(ConsumedMessage::trace_headers(&by_reference).collect::<Vec<_>>(), trace, "through a reference");
        assert_eq!(consumed(None, None).trace_headers().count(), 0);
    }

    #[test]
    fn names_are_the_same_only_when_every_byte_is() {
        for expected in [&b"traceparent"[..], b"tracestate"] {
            assert!(same_name(expected, expected));
            for place in 0..expected.len() {
                let mut other = expected.to_vec();
                other[place] ^= 0x20;
                assert!(!same_name(&other, expected), "{other:?}");
            }
            assert!(!same_name(&expected[..expected.len() - 1], expected));
            assert!(!same_name(&[expected, b"x"].concat(), expected));
        }
    }

    #[test]
    fn setting_a_header_replaces_the_same_key_and_keeps_the_others() {
        let mut headers = Some(
            OwnedHeaders::new()
                .insert(Header { key: "traceparent", value: Some("stale") })
                .insert(Header { key: "tenant", value: Some("acme") })
                .insert(Header { key: "traceparent", value: Some("staler") }),
        );
        set_header(&mut headers, "traceparent", "fresh");
        assert_eq!(
            pairs(headers.as_ref().unwrap()),
            vec![("tenant".to_owned(), Some(b"acme".to_vec())), ("traceparent".to_owned(), Some(b"fresh".to_vec()))]
        );
    }

    #[test]
    fn partitions_are_named_by_their_number() {
        for partition in [0, 9, 15, 16, 1234, -1] {
            let mut attributes = SpanAttributes::default();
            record_partition(partition, &mut attributes);
            assert_eq!(
                attributes.into_inner(),
                vec![opentelemetry::KeyValue::new("messaging.destination.partition.id", partition.to_string())]
            );
        }
    }

    #[test]
    fn setting_a_header_replaces_it_when_it_is_the_only_one() {
        let mut headers = Some(OwnedHeaders::new().insert(Header { key: "traceparent", value: Some("stale") }));
        set_header(&mut headers, "traceparent", "fresh");
        assert_eq!(pairs(headers.as_ref().unwrap()), vec![("traceparent".to_owned(), Some(b"fresh".to_vec()))]);
    }

    #[test]
    fn setting_a_header_on_a_record_without_headers_creates_them() {
        let mut headers = None;
        set_header(&mut headers, "traceparent", "fresh");
        assert_eq!(pairs(headers.as_ref().unwrap()), vec![("traceparent".to_owned(), Some(b"fresh".to_vec()))]);
    }

    fn attributes_of(record: impl FnOnce(&mut SpanAttributes)) -> Vec<opentelemetry::KeyValue> {
        let mut attributes = SpanAttributes::default();
        record(&mut attributes);
        attributes.into_inner()
    }

    fn consumed(headers: Option<OwnedHeaders>, payload: Option<&[u8]>) -> OwnedMessage {
        OwnedMessage::new(
            payload.map(<[u8]>::to_vec),
            Some(b"order-7".to_vec()),
            "orders".to_owned(),
            rdkafka::Timestamp::CreateTime(1_700_000_000_123),
            3,
            42,
            headers,
        )
    }

    #[test]
    fn a_consumed_message_says_where_it_was_and_what_it_carries() {
        use opentelemetry::KeyValue;
        let message =
            consumed(Some(OwnedHeaders::new().insert(Header { key: "traceparent", value: Some("tp") })), Some(b"{}"));
        assert_eq!((message.system(), message.destination()), (MessagingSystem::Kafka, Some("orders")));
        assert_eq!(message.timestamp_millis(), Some(1_700_000_000_123));
        assert_eq!(ConsumedMessage::headers(&message).collect::<Vec<_>>(), vec![("traceparent", Some(&b"tp"[..]))]);
        assert_eq!(
            attributes_of(|attributes| message.record_attributes(attributes)),
            vec![
                KeyValue::new("messaging.destination.partition.id", "3"),
                KeyValue::new("messaging.kafka.offset", 42_i64),
                KeyValue::new("messaging.kafka.message.key", "order-7"),
                KeyValue::new("messaging.message.body.size", 2_i64),
            ]
        );
        assert_eq!(
            attributes_of(|attributes| message.record_identity(attributes)),
            vec![
                KeyValue::new("messaging.destination.name", "orders"),
                KeyValue::new("messaging.destination.partition.id", "3"),
                KeyValue::new("messaging.kafka.offset", 42_i64),
            ]
        );
        let tombstone = consumed(None, None);
        assert_eq!(ConsumedMessage::headers(&tombstone).count(), 0);
        assert!(attributes_of(|attributes| tombstone.record_attributes(attributes))
            .contains(&KeyValue::new("messaging.kafka.message.tombstone", true)));
    }

    #[test]
    fn a_record_says_where_it_goes_and_what_it_carries() {
        use opentelemetry::KeyValue;
        let record: FutureRecord<'_, str, str> = FutureRecord::to("orders").key("order-7").payload("{}").partition(1);
        assert_eq!((record.system(), record.destination()), (MessagingSystem::Kafka, Some("orders")));
        assert_eq!(
            attributes_of(|attributes| record.record_attributes(attributes)),
            vec![
                KeyValue::new("messaging.destination.partition.id", "1"),
                KeyValue::new("messaging.kafka.message.key", "order-7"),
                KeyValue::new("messaging.message.body.size", 2_i64),
            ]
        );
    }

    #[test]
    fn body_built_headers_carry_the_current_context_beside_the_given_ones() {
        let _attached = crate::brokers::tests::producer_context().attach();
        let trace = vec![
            ("traceparent".to_owned(), Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec())),
            ("tracestate".to_owned(), Some(b"congo=t61rcWkgMzE".to_vec())),
        ];
        assert_eq!(pairs(&trace_headers()), trace);
        let given = OwnedHeaders::new().insert(Header { key: "tenant", value: Some("acme") });
        let mut expected = vec![("tenant".to_owned(), Some(b"acme".to_vec()))];
        expected.extend(trace);
        assert_eq!(pairs(&with_trace_context(given)), expected);
        assert_eq!(HeaderList(None).destination(), None);
    }
}
