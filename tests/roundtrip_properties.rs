//! Properties of tracehop's own round trip, on Kafka records and on AMQP field tables, checked with proptest
//! against oracles written here from the W3C specifications, not from tracehop's code:
//!
//! - whatever valid span context, `tracestate` (within W3C's limits and beyond them) and baggage tracehop's
//!   installed propagators write, tracehop reads back the same trace id, span id and sampled flag, the
//!   `tracestate` or its W3C truncation (with the reason on the span), and every baggage member;
//! - for any header set a producer can send (names in any case, bytes that are not UTF-8, null values, trace
//!   headers repeated), extraction never panics, and continues exactly the header's context only when there is
//!   one `traceparent` and it is valid W3C; otherwise it starts a new root and says why.

use std::collections::BTreeMap;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString};
use lapin::BasicProperties;
use opentelemetry::baggage::{Baggage, BaggageExt, KeyValueMetadata};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, Value};
use proptest::prelude::*;
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::FutureRecord;
use suite::{attribute, spans_to, with_raw_header};
use tracehop::{ConsumedMessage, Handler, IncomingContext, MessageSpan, TrimReason};

// ---------------------------------------------------------------------------------------------------------------
// Oracles, from the specifications.

/// W3C Trace Context, "Mutating the tracestate Field": over 512 characters, members longer than 128 go first
/// (here from the end), then members from the end.
fn w3c_truncation(members: &[(String, String)]) -> (Vec<(String, String)>, bool) {
    let mut kept: Vec<(String, String)> = members.iter().take(32).cloned().collect();
    let length = |kept: &[(String, String)]| {
        kept.iter().map(|(key, value)| key.len() + 1 + value.len()).sum::<usize>() + kept.len().saturating_sub(1)
    };
    let mut truncated = false;
    while length(&kept) > 512 {
        truncated = true;
        let at = kept.iter().rposition(|(key, value)| key.len() + 1 + value.len() > 128).unwrap_or(kept.len() - 1);
        kept.remove(at);
    }
    (kept, truncated)
}

/// Whether `value` is a `traceparent` W3C Trace Context level 1 accepts: 55 characters of lower-case hex
/// fields (`00` exactly so; later versions may continue after a `-`), version not `ff`, ids not all zeros.
fn w3c_valid_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, bool)> {
    let text = std::str::from_utf8(value.get(..55)?).ok()?;
    let fields: Vec<&str> = text.split('-').collect();
    let [version, trace, span, flags] = fields[..] else { return None };
    let lower_hex = |field: &str, len: usize| {
        field.len() == len && field.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !(lower_hex(version, 2) && lower_hex(trace, 32) && lower_hex(span, 16) && lower_hex(flags, 2)) || version == "ff"
    {
        return None;
    }
    if value.len() > 55 && (version == "00" || value[55] != b'-') {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok().filter(|id| *id != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span).ok().filter(|id| *id != SpanId::INVALID)?;
    Some((trace_id, span_id, u8::from_str_radix(flags, 16).ok()? & 1 == 1))
}

// ---------------------------------------------------------------------------------------------------------------
// Strategies.

/// A W3C `tracestate` key OpenTelemetry's `TraceState` accepts: simple, or `tenant@system` (system id of at
/// most 13 characters there); short ones mostly, some long enough to be over 128 characters with their value.
fn tracestate_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9_*/-]{0,12}",
        1 => "[a-z][a-z0-9_*/-]{100,200}",
        2 => "[a-z0-9][a-z0-9_*/-]{0,20}@[a-z][a-z0-9_*/-]{0,12}",
    ]
}

/// A W3C `tracestate` value: printable ASCII but `,` and `=`, not ending in a space.
fn tracestate_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -+--<>-~]{0,15}[!-+--<>-~]",
        1 => "[ -+--<>-~]{60,200}[!-+--<>-~]",
    ]
}

/// Up to 40 members with distinct keys: within the limits and past them.
fn tracestate_members() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((tracestate_key(), tracestate_value()), 0..40).prop_map(|members| {
        let mut seen = std::collections::HashSet::new();
        members.into_iter().filter(|(key, _)| seen.insert(key.clone())).collect()
    })
}

/// Baggage as an application builds it: token keys, any text as values, sometimes properties.
fn baggage_entries() -> impl Strategy<Value = Vec<(String, String, String)>> {
    let key = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}";
    let value =
        prop_oneof![3 => "[ -~]{0,24}", 1 => any::<String>().prop_map(|value| value.chars().take(24).collect())];
    let metadata = prop_oneof![3 => Just(String::new()), 1 => "[a-z]{1,6}(;[a-z]{1,6}(=[a-z0-9]{1,4})?){0,2}"];
    prop::collection::vec((key, value, metadata), 0..12)
}

fn span_context(trace: u128, span: u64, sampled: bool, members: &[(String, String)]) -> SpanContext {
    let trace_state = TraceState::from_key_value(members.iter().map(|(key, value)| (key.as_str(), value.as_str())))
        .expect("the strategy makes only valid members");
    let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    SpanContext::new(TraceId::from(trace), SpanId::from(span), flags, true, trace_state)
}

/// A baggage's entries, comparable: key to (value, metadata).
fn entries(baggage: &Baggage) -> BTreeMap<String, (String, String)> {
    baggage
        .iter()
        .map(|(key, (value, metadata))| (key.to_string(), (value.to_string(), metadata.as_str().to_owned())))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The round trip.

/// Injects `context` with tracehop into a record of `carrier`, reads the message back with tracehop, and checks
/// everything that must survive; for a sampled context, also the consumer span's trim attributes.
fn round_trip(carrier: Carrier, context: &Context, members: &[(String, String)], written_baggage: &Baggage) {
    suite::spans();
    let destination = suite::unique_topic("properties");
    let message = carrier.write_and_read(context, &destination);
    let sent = context.span().span_context().clone();

    let IncomingContext::Continued(received, trims) = message.extract() else {
        panic!("{carrier:?}: tracehop's own context was not continued");
    };
    let received_span = received.span();
    let got = received_span.span_context();
    assert_eq!(got.trace_id(), sent.trace_id(), "{carrier:?}: trace id");
    assert_eq!(got.span_id(), sent.span_id(), "{carrier:?}: span id");
    assert_eq!(got.is_sampled(), sent.is_sampled(), "{carrier:?}: sampled flag");
    assert!(got.is_remote(), "{carrier:?}: remote");

    let (kept, truncated) = w3c_truncation(members);
    let expected_tracestate = kept.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(",");
    assert_eq!(got.trace_state().header(), expected_tracestate, "{carrier:?}: tracestate");
    assert_eq!(trims.tracestate, truncated.then_some(TrimReason::Oversized), "{carrier:?}: tracestate trim");

    let written = entries(written_baggage);
    let read = entries(received.baggage());
    if trims.baggage.is_none() {
        assert_eq!(read, written, "{carrier:?}: baggage");
    } else {
        // Only a header longer than W3C's 8,192 bytes is trimmed, by whole members at its end.
        assert_eq!(trims.baggage, Some(TrimReason::Oversized), "{carrier:?}: baggage trim");
        assert!(read.len() < written.len(), "{carrier:?}: members were dropped");
        for (key, entry) in &read {
            assert_eq!(written.get(key), Some(entry), "{carrier:?}: a kept member comes back whole");
        }
    }

    if got.is_sampled() {
        message.handle();
        let spans = spans_to(&destination);
        assert_eq!(spans.len(), 1, "{carrier:?}: one consumer span");
        let span = &spans[0];
        assert_eq!(span.parent_span_id, sent.span_id(), "{carrier:?}: parent");
        assert!(span.parent_span_is_remote, "the producer's span is a remote parent");
        assert_eq!(
            attribute(span, "tracehop.context.tracestate.trimmed"),
            trims.tracestate.map(|reason| Value::from(reason.as_str())),
        );
        assert_eq!(
            attribute(span, "tracehop.context.baggage.trimmed"),
            trims.baggage.map(|reason| Value::from(reason.as_str()))
        );
    }
}

#[derive(Clone, Copy, Debug)]
enum Carrier {
    Kafka,
    Amqp,
}

/// A message as its consumer receives it.
enum Received {
    Kafka(OwnedMessage),
    Amqp(Box<Delivery>),
}

impl Carrier {
    fn write_and_read(self, context: &Context, destination: &str) -> Received {
        match self {
            Carrier::Kafka => {
                let mut record: FutureRecord<'_, str, str> = FutureRecord::to(destination).payload("order");
                tracehop::inject_context(context, &mut record);
                Received::Kafka(kafka_message(destination, record.headers.unwrap_or_default()))
            }
            Carrier::Amqp => {
                let mut properties = BasicProperties::default();
                tracehop::inject_context(context, &mut properties);
                Received::Amqp(Box::new(delivery(destination, properties)))
            }
        }
    }
}

impl Received {
    fn extract(&self) -> IncomingContext {
        match self {
            Received::Kafka(message) => tracehop::extract_context(message),
            Received::Amqp(delivery) => tracehop::extract_context(&**delivery),
        }
    }

    fn handle(&self) {
        static HANDLE: Handler = Handler::consumer("roundtrip_properties::handle").group("properties");
        match self {
            Received::Kafka(message) => MessageSpan::consumer(&HANDLE, message).start().run(|| ()),
            Received::Amqp(delivery) => MessageSpan::consumer(&HANDLE, &**delivery).start().run(|| ()),
        }
    }
}

fn kafka_message(topic: &str, headers: OwnedHeaders) -> OwnedMessage {
    OwnedMessage::new(Some(b"order".to_vec()), None, topic.to_owned(), Timestamp::NotAvailable, 0, 0, Some(headers))
}

fn delivery(exchange: &str, properties: BasicProperties) -> Delivery {
    let mut delivery = Delivery::mock(1, exchange.into(), "orders".into(), false, b"order".to_vec());
    delivery.properties = properties;
    delivery
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tracehops_own_round_trip_is_lossless(
        trace in 1..=u128::MAX,
        span in 1..=u64::MAX,
        sampled in any::<bool>(),
        members in tracestate_members(),
        baggage in baggage_entries(),
    ) {
        let parent = span_context(trace, span, sampled, &members);
        let baggage: Baggage =
            baggage.iter().map(|(key, value, metadata)| KeyValueMetadata::new(key.clone(), value.clone(), metadata.as_str())).collect();
        let written_baggage: Baggage = entries(&baggage)
            .into_iter()
            .map(|(key, (value, metadata))| KeyValueMetadata::new(key, value, metadata.as_str()))
            .collect();
        let context = Context::new().with_remote_span_context(parent).with_baggage(baggage);
        for carrier in [Carrier::Kafka, Carrier::Amqp] {
            round_trip(carrier, &context, &members, &written_baggage);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Arbitrary header sets.

/// A header name: the trace headers in any case, near misses, and anything else, UTF-8 or not.
fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(b"traceparent".to_vec()),
        1 => Just(b"TraceParent".to_vec()),
        1 => Just(b"traceparent ".to_vec()),
        2 => Just(b"tracestate".to_vec()),
        1 => Just(b"baggage".to_vec()),
        2 => "[a-zA-Z-]{1,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(1..=255u8, 1..12),
    ]
}

/// A header value: valid and nearly valid `traceparent`s, list headers, arbitrary bytes, or null.
fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    // Version 00, or a later version with more fields after a `-`.
    let tail = prop_oneof![Just(String::new()), "-[ -~]{0,8}"];
    let valid = (1..=u128::MAX, 1..=u64::MAX, any::<u8>(), tail).prop_map(|(trace, span, flags, tail)| {
        let version = if tail.is_empty() { "00" } else { "cc" };
        format!("{version}-{trace:032x}-{span:016x}-{flags:02x}{tail}").into_bytes()
    });
    let mutated = (valid.clone(), 0..60usize, any::<u8>()).prop_map(|(mut value, at, byte)| {
        let at = at % value.len();
        value[at] = byte;
        value
    });
    prop_oneof![
        3 => valid.prop_map(Some),
        3 => mutated.prop_map(Some),
        1 => "[a-z0-9=,;% ]{0,40}".prop_map(|text| Some(text.into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(Some),
        1 => Just(None),
    ]
}

fn header_set() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    prop::collection::vec((header_name(), header_value()), 0..8)
}

/// What extraction must give for `headers` as `names` reports them to tracehop: the single `traceparent`'s
/// context when it is valid, else a new root.
fn expected_context(traceparents: &[&Option<Vec<u8>>]) -> Option<(TraceId, SpanId, bool)> {
    match traceparents {
        [Some(value)] => w3c_valid_traceparent(value),
        _ => None,
    }
}

fn check_extraction<M: ConsumedMessage>(message: &M, traceparents: &[&Option<Vec<u8>>]) -> Result<(), TestCaseError> {
    let extracted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tracehop::extract_context(message)));
    let extracted = extracted.map_err(|_| TestCaseError::fail("extraction panicked"))?;
    match (expected_context(traceparents), extracted) {
        (Some((trace_id, span_id, sampled)), IncomingContext::Continued(context, _)) => {
            let span = context.span();
            let got = span.span_context();
            prop_assert_eq!((got.trace_id(), got.span_id(), got.is_sampled()), (trace_id, span_id, sampled));
        }
        (None, IncomingContext::NewRoot(rejection)) => {
            let expected_missing = traceparents.is_empty();
            prop_assert_eq!(rejection == tracehop::ContextRejection::Missing, expected_missing, "{:?}", rejection);
        }
        (expected, got) => prop_assert!(false, "expected {:?}, got {:?}", expected, got),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn kafka_extraction_of_any_header_set_never_panics_and_continues_only_a_valid_traceparent(headers in header_set()) {
        suite::spans();
        let owned = headers.iter().fold(OwnedHeaders::new(), |owned, (name, value)| with_raw_header(owned, name, value.as_deref()));
        // librdkafka hands names back as C strings: a name is what precedes its first NUL.
        let traceparents: Vec<&Option<Vec<u8>>> = headers
            .iter()
            .filter(|(name, _)| name.split(|&byte| byte == 0).next() == Some(b"traceparent"))
            .map(|(_, value)| value)
            .collect();
        check_extraction(&kafka_message("arbitrary", owned), &traceparents)?;
    }

    #[test]
    fn amqp_extraction_of_any_header_set_never_panics_and_continues_only_a_valid_traceparent(
        headers in header_set(),
        types in prop::collection::vec(0..4u8, 8),
    ) {
        suite::spans();
        // A field table holds one value per name (the last one written) and names that are UTF-8 strings.
        let mut table = BTreeMap::new();
        for ((name, value), kind) in headers.iter().zip(types) {
            let Ok(name) = String::from_utf8(name.clone()) else { continue };
            let value = match (value, kind) {
                (None, _) => AMQPValue::Void,
                (Some(bytes), 0) => AMQPValue::ByteArray(ByteArray::from(bytes.clone())),
                (Some(_), 1) => AMQPValue::LongInt(7),
                (Some(bytes), _) => AMQPValue::LongString(LongString::from(bytes.clone())),
            };
            table.insert(name, value);
        }
        let unreadable = None;
        let traceparents: Vec<Option<Vec<u8>>> = table
            .get("traceparent")
            .map(|value| match value {
                AMQPValue::ByteArray(bytes) => Some(bytes.as_slice().to_vec()),
                AMQPValue::LongString(bytes) => Some(bytes.as_bytes().to_vec()),
                _ => unreadable.clone(),
            })
            .into_iter()
            .collect();
        let mut field_table = FieldTable::default();
        for (name, value) in table {
            field_table.insert(name.into(), value);
        }
        let delivery = delivery("arbitrary", BasicProperties::default().with_headers(field_table));
        check_extraction(&delivery, &traceparents.iter().collect::<Vec<_>>())?;
    }
}
