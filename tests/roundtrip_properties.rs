//! Properties of tracehop's own round trip, on Kafka records and on AMQP field tables, checked with proptest
//! against oracles written from the W3C specifications, not from tracehop's code (the `tracestate` truncation
//! here; the `traceparent` and `baggage` oracles in `fuzz/src/lib.rs`, which the fuzz targets check with too):
//!
//! - whatever valid span context, `tracestate` (within W3C's limits and beyond them) and baggage (up to
//!   OpenTelemetry's 64 entries, its header under and over W3C's 8,192 bytes) tracehop's installed propagators
//!   write, the `baggage` header is W3C baggage holding exactly those entries, and tracehop reads back the same
//!   trace id, span id and sampled flag, the `tracestate` or its W3C truncation, and the baggage the oracle reads
//!   from that header, with the reasons on the span;
//! - any `baggage` header (W3C members, tracehop's documented leniencies, malformed members, NUL and non-UTF-8
//!   bytes, around the 64-member and 8,192-byte limits) loses exactly the members the oracle says, for the reason
//!   it says;
//! - for any header set a producer can send (names in any case, with NUL bytes, bytes that are not UTF-8, null
//!   values, trace headers repeated), extraction never panics, continues exactly the header's context only when
//!   there is one `traceparent` and it is valid W3C, and otherwise starts a new root for exactly the reason the
//!   oracle gives.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod wire;

use std::collections::BTreeMap;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString};
use lapin::BasicProperties;
use opentelemetry::baggage::{BaggageExt, KeyValueMetadata};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, Value};
use proptest::prelude::*;
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::FutureRecord;
use suite::{attribute, spans_to, with_raw_header};
use tracehop::{ConsumedMessage, Handler, IncomingContext, MessageSpan, TrimReason};
use wire::w3c;

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

/// Baggage as an application builds it: distinct token keys, any text as values, sometimes properties (their
/// values any text too). A few entries, or 56 to 64 (OpenTelemetry's `Baggage` holds no more than 64), or long
/// values that fill OpenTelemetry's 8,192 bytes of entries: percent-encoded, the header tracehop writes then
/// lands under and over W3C's 8,192-byte limit.
fn baggage_entries() -> impl Strategy<Value = Vec<(String, String, String)>> {
    let key = "[A-Za-z0-9!#$%&'*+.^_`|~-]{0,15}";
    let short =
        || prop_oneof![3 => "[ -~]{0,24}", 1 => any::<String>().prop_map(|value| value.chars().take(24).collect())];
    let long = prop_oneof!["[ -~]{100,400}", "[a-z é✓%=,;\"\\\\]{40,160}"];
    let metadata = || prop_oneof![3 => Just(String::new()), 1 => "[a-z]{1,6}(;[a-z]{1,6}(=[a-z0-9 é%,]{1,4})?){0,2}"];
    prop_oneof![
        2 => prop::collection::vec((key, short(), metadata()), 0..12),
        1 => prop::collection::vec((key, short(), metadata()), 56..=64),
        2 => prop::collection::vec((key, long, metadata()), 8..48),
    ]
    .prop_map(|entries| {
        // A numbered key each: no two entries collapse into one, so 64 are 64.
        entries
            .into_iter()
            .enumerate()
            .map(|(index, (key, value, metadata))| (format!("{key}{index}"), value, metadata))
            .collect()
    })
}

fn span_context(trace: u128, span: u64, sampled: bool, members: &[(String, String)]) -> SpanContext {
    let trace_state = TraceState::from_key_value(members.iter().map(|(key, value)| (key.as_str(), value.as_str())))
        .expect("the strategy makes only valid members");
    let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    SpanContext::new(TraceId::from(trace), SpanId::from(span), flags, true, trace_state)
}

/// Optional white space: none mostly, spaces and tabs.
fn ows() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => Just(Vec::new()), 1 => "[ \t]{1,2}".prop_map(String::into_bytes)]
}

/// An RFC 7230 token.
fn token() -> impl Strategy<Value = Vec<u8>> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}".prop_map(String::into_bytes)
}

/// A W3C Baggage value: `baggage-octet`s (a `%` among them may or may not start an escape) and percent-encoded
/// characters of any kind.
fn w3c_value() -> impl Strategy<Value = Vec<u8>> {
    let octets: Vec<u8> = (0x21..=0x7e).filter(|&byte| w3c::is_baggage_octet(byte)).collect();
    let part = prop_oneof![
        3 => prop::sample::select(octets).prop_map(|octet| vec![octet]),
        1 => any::<char>().prop_map(|character| {
            character.to_string().bytes().flat_map(|byte| format!("%{byte:02X}").into_bytes()).collect()
        }),
    ];
    prop::collection::vec(part, 0..10).prop_map(|parts| parts.concat())
}

/// One W3C list member: `key OWS "=" OWS value *( OWS ";" OWS property )`, white space around it too.
fn w3c_member() -> impl Strategy<Value = Vec<u8>> {
    let property = (token(), prop::option::of((ows(), ows(), w3c_value()))).prop_map(|(key, value)| match value {
        None => key,
        Some((before, after, value)) => [key, before, b"=".to_vec(), after, value].concat(),
    });
    let properties = prop::collection::vec((ows(), ows(), property), 0..3).prop_map(|properties| {
        properties
            .into_iter()
            .flat_map(|(before, after, property)| [before, b";".to_vec(), after, property].concat())
            .collect::<Vec<u8>>()
    });
    (ows(), token(), ows(), ows(), w3c_value(), properties, ows()).prop_map(
        |(lead, key, before, after, value, properties, trail)| {
            [lead, key, before, b"=".to_vec(), after, value, properties, trail].concat()
        },
    )
}

/// Members tracehop documents keeping beyond the W3C grammar: `"` and `\` in a value, a `%` that starts no
/// escape, a property of another shape.
fn lenient_member() -> impl Strategy<Value = Vec<u8>> {
    const LENIENT: &[&str] =
        &["quote=\"quoted\"", "path=C:\\temp", "note=50%off", "short=%4", "end=100%", "k=v;=x", "k=v;a b", "k=v;;"];
    prop::sample::select(LENIENT).prop_map(|member| member.as_bytes().to_vec())
}

/// Members both W3C and tracehop reject: no `=`, an empty key, a key that is no token, a value with white space,
/// a control character (NUL among them) or a byte that is not ASCII, escapes that are not UTF-8, a property with
/// a NUL or a bad escape.
fn malformed_member() -> impl Strategy<Value = Vec<u8>> {
    let bad_key_byte = prop::sample::select(&b"()/:<>?@[]{}\" \x00\x7f\xc3"[..]);
    let bad_value_byte = prop::sample::select(&b" \t\x00\x01\x1f\x7f\x80\xff"[..]);
    let bad_rest = prop::sample::select(&["=%FF", "=%C3", "=%C3%28", "=%80", "=v;p=%C3", "=v;p\x00", "=v;p\u{e9}"][..]);
    prop_oneof![
        token(),
        (ows(), w3c_value()).prop_map(|(before, value)| [before, b"=".to_vec(), value].concat()),
        (token(), bad_key_byte, w3c_value())
            .prop_map(|(key, bad, value)| [key, vec![bad], b"k=".to_vec(), value].concat()),
        (token(), w3c_value(), bad_value_byte, w3c_value()).prop_map(|(key, before, bad, after)| [
            key,
            b"=v".to_vec(),
            before,
            vec![bad, b'x'],
            after
        ]
        .concat()),
        (token(), bad_rest).prop_map(|(key, rest)| [key, rest.as_bytes().to_vec()].concat()),
    ]
}

/// A member long enough that a few of them go past 8,192 bytes.
fn long_member() -> impl Strategy<Value = Vec<u8>> {
    (token(), 1000..3000usize).prop_map(|(key, length)| [key, b"=".to_vec(), vec![b'x'; length]].concat())
}

/// One piece of a `baggage` header (what lies between two commas) of any kind.
fn baggage_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => w3c_member(),
        1 => lenient_member(),
        2 => malformed_member(),
        1 => "[ \t]{0,2}".prop_map(String::into_bytes),
        1 => long_member(),
    ]
}

/// A raw `baggage` header: any mix of members; 56 to 96 of them, around the 64-member limit, well-formed
/// (empty ones among them) or mostly so; or a header that ends 3 bytes either side of 8,192 (a long last member
/// padded to it) after a few members or after 60 to 72, sometimes with one more member after.
fn baggage_header() -> impl Strategy<Value = Vec<u8>> {
    let well_formed = || prop_oneof![9 => w3c_member(), 1 => Just(Vec::new())];
    let mostly_well_formed = || prop_oneof![8 => w3c_member(), 1 => malformed_member(), 1 => Just(Vec::new())];
    let before_the_padding = prop_oneof![
        prop::collection::vec(well_formed(), 0..6),
        prop::collection::vec(mostly_well_formed(), 0..6),
        prop::collection::vec(well_formed(), 60..72),
        prop::collection::vec(mostly_well_formed(), 60..72),
    ];
    let at_the_limit =
        (before_the_padding, -3..=3_isize, prop::option::of(w3c_member())).prop_map(|(members, offset, after)| {
            let mut header = members.join(&b","[..]);
            if !header.is_empty() {
                header.push(b',');
            }
            header.extend_from_slice(b"pad=");
            let padding = (w3c::MAX_BAGGAGE_LEN as isize + offset) as usize;
            header.extend(std::iter::repeat_n(b'x', padding.saturating_sub(header.len())));
            if let Some(after) = after {
                header.push(b',');
                header.extend(after);
            }
            header
        });
    prop_oneof![
        3 => prop::collection::vec(baggage_piece(), 0..12).prop_map(|pieces| pieces.join(&b","[..])),
        2 => prop::collection::vec(well_formed(), 56..80).prop_map(|pieces| pieces.join(&b","[..])),
        1 => prop::collection::vec(mostly_well_formed(), 64..96).prop_map(|pieces| pieces.join(&b","[..])),
        3 => at_the_limit,
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// The round trip.

/// Injects `context` with tracehop into a record of `carrier`, reads the message back with tracehop, and checks
/// everything that must survive; for a sampled context, also the consumer span's trim attributes.
fn round_trip(carrier: Carrier, context: &Context, members: &[(String, String)]) {
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

    // What tracehop wrote is W3C baggage, every entry once, exactly.
    let written = w3c::entries(context.baggage());
    let header = message.baggage_header();
    match &header {
        None => assert_eq!(written, BTreeMap::new(), "{carrier:?}: baggage written"),
        Some(header) => {
            let text = std::str::from_utf8(header).expect("tracehop writes UTF-8");
            let members = w3c::strict_members(text).unwrap_or_else(|| panic!("{carrier:?}: not W3C baggage: {text}"));
            assert_eq!(members.len(), written.len(), "{carrier:?}: one member per entry: {text}");
            let as_written: BTreeMap<String, (String, String)> =
                members.into_iter().map(|(key, value, properties)| (key, (value, properties))).collect();
            assert_eq!(as_written, written, "{carrier:?}: the members are the entries: {text}");
        }
    }
    // What tracehop reads back: everything when the header is within W3C's limits (a platform must propagate all
    // of it then), and exactly what the oracle reads of it in any case.
    let read = w3c::entries(received.baggage());
    let expected = header.as_deref().map(w3c::baggage).unwrap_or_default();
    if header.as_ref().is_none_or(|header| header.len() <= w3c::MAX_BAGGAGE_LEN) {
        assert_eq!((&read, trims.baggage), (&written, None), "{carrier:?}: baggage within the limits");
    }
    assert_eq!(read, expected.entries, "{carrier:?}: baggage read");
    assert_eq!(trims.baggage, expected.trimmed, "{carrier:?}: baggage trim");

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
            expected.trimmed.map(|reason| Value::from(reason.as_str()))
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

    /// The `baggage` header's bytes as they crossed the wire.
    fn baggage_header(&self) -> Option<Vec<u8>> {
        let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = match self {
            Received::Kafka(message) => {
                rdkafka::Message::headers(message).map(wire::raw_kafka_headers).unwrap_or_default()
            }
            Received::Amqp(delivery) => delivery
                .properties
                .headers()
                .as_ref()
                .map(|table| {
                    wire::amqp_headers(table)
                        .into_iter()
                        .map(|(name, value)| (name.to_vec(), value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let mut baggage = headers.into_iter().filter(|(name, _)| name == b"baggage");
        let (_, value) = baggage.next()?;
        assert!(baggage.next().is_none(), "one baggage header");
        Some(value.expect("a baggage value"))
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
    fn tracehops_own_round_trip_keeps_what_w3c_lets_through(
        trace in 1..=u128::MAX,
        span in 1..=u64::MAX,
        sampled in any::<bool>(),
        members in tracestate_members(),
        baggage in baggage_entries(),
    ) {
        let parent = span_context(trace, span, sampled, &members);
        let baggage = baggage.into_iter().map(|(key, value, metadata)| KeyValueMetadata::new(key, value, metadata.as_str()));
        let context = Context::new().with_remote_span_context(parent).with_baggage(baggage);
        for carrier in [Carrier::Kafka, Carrier::Amqp] {
            round_trip(carrier, &context, &members);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Any baggage header.

const TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What one carrier read of a `baggage` header: the carrier's name, the entries (key to value and properties), and
/// why members were left out.
type BaggageOnCarrier = (&'static str, BTreeMap<String, (String, String)>, Option<TrimReason>);

/// The baggage tracehop reads from a `baggage` header beside a valid `traceparent`, on Kafka and on AMQP.
fn read_baggage(header: &[u8]) -> [BaggageOnCarrier; 2] {
    suite::spans();
    let kafka = kafka_message(
        "baggage",
        with_raw_header(
            with_raw_header(OwnedHeaders::new(), b"traceparent", Some(TRACEPARENT)),
            b"baggage",
            Some(header),
        ),
    );
    let mut table = FieldTable::default();
    table.insert("traceparent".into(), AMQPValue::LongString(LongString::from(TRACEPARENT)));
    table.insert("baggage".into(), AMQPValue::LongString(LongString::from(header.to_vec())));
    let amqp = delivery("baggage", BasicProperties::default().with_headers(table));
    let read = |carrier, extracted| match extracted {
        IncomingContext::Continued(context, trims) => (carrier, w3c::entries(context.baggage()), trims.baggage),
        IncomingContext::NewRoot(rejection) => panic!("{carrier}: a valid traceparent rejected: {rejection:?}"),
    };
    [read("kafka", tracehop::extract_context(&kafka)), read("amqp", tracehop::extract_context(&amqp))]
}

/// `count` members `k0=v0`, `k1=v1`, ...
fn numbered_members(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("k{index}=v{index}")).collect()
}

/// The entries of [`numbered_members`].
fn numbered_entries(count: usize) -> BTreeMap<String, (String, String)> {
    (0..count).map(|index| (format!("k{index}"), (format!("v{index}"), String::new()))).collect()
}

/// `entries` as a baggage's entries, without properties.
fn entries_of(entries: &[(&str, &str)]) -> BTreeMap<String, (String, String)> {
    entries.iter().map(|(key, value)| (key.to_string(), (value.to_string(), String::new()))).collect()
}

#[test]
fn a_baggage_header_of_exactly_8192_bytes_is_read_whole() {
    let header = format!("a=1,b={}", "x".repeat(8192 - "a=1,b=".len()));
    assert_eq!(header.len(), 8192);
    let expected = entries_of(&[("a", "1"), ("b", &"x".repeat(8186))]);
    for (carrier, entries, trimmed) in read_baggage(header.as_bytes()) {
        assert_eq!((entries, trimmed), (expected.clone(), None), "{carrier}");
    }
}

#[test]
fn a_baggage_header_one_byte_over_8192_loses_the_member_that_crosses_the_limit_whole() {
    let header = format!("a=1,b={}", "x".repeat(8193 - "a=1,b=".len()));
    for (carrier, entries, trimmed) in read_baggage(header.as_bytes()) {
        assert_eq!((entries, trimmed), (entries_of(&[("a", "1")]), Some(TrimReason::Oversized)), "{carrier}");
    }
}

#[test]
fn a_baggage_member_that_ends_exactly_at_byte_8192_of_a_longer_header_is_read() {
    let header = format!("a=1,b={},c=2", "x".repeat(8192 - "a=1,b=".len()));
    let expected = entries_of(&[("a", "1"), ("b", &"x".repeat(8186))]);
    for (carrier, entries, trimmed) in read_baggage(header.as_bytes()) {
        assert_eq!((entries, trimmed), (expected.clone(), Some(TrimReason::Oversized)), "{carrier}");
    }
}

#[test]
fn the_first_64_baggage_members_are_read_and_the_65th_is_dropped_as_too_many() {
    for (carrier, entries, trimmed) in read_baggage(numbered_members(65).join(",").as_bytes()) {
        assert_eq!((entries, trimmed), (numbered_entries(64), Some(TrimReason::TooManyMembers)), "{carrier}");
    }
}

#[test]
fn malformed_and_empty_baggage_members_do_not_count_toward_the_64() {
    let mut members = numbered_members(64);
    members.insert(10, "garbage".to_owned());
    members.insert(20, " ".to_owned());
    for (carrier, entries, trimmed) in read_baggage(members.join(",").as_bytes()) {
        assert_eq!((entries, trimmed), (numbered_entries(64), Some(TrimReason::MalformedMember)), "{carrier}");
    }
}

#[test]
fn the_baggage_oracle_reads_the_w3c_examples_as_the_specification_does() {
    let read = w3c::baggage(b"key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue");
    let expected = BTreeMap::from([
        ("key1".to_owned(), ("value1".to_owned(), "property1;property2".to_owned())),
        ("key2".to_owned(), ("value2".to_owned(), String::new())),
        ("key3".to_owned(), ("value3".to_owned(), "propertyKey=propertyValue".to_owned())),
    ]);
    assert_eq!(read, w3c::BaggageRead { entries: expected, trimmed: None });
    assert_eq!(
        w3c::baggage(b"userId=alice,serverNode=DF%2028,isProduction=false,k=%E2%9C%93").entries,
        BTreeMap::from([
            ("userId".to_owned(), ("alice".to_owned(), String::new())),
            ("serverNode".to_owned(), ("DF 28".to_owned(), String::new())),
            ("isProduction".to_owned(), ("false".to_owned(), String::new())),
            ("k".to_owned(), ("\u{2713}".to_owned(), String::new())),
        ])
    );
    assert_eq!(w3c::baggage(b"k=a b,k2=v").trimmed, Some(TrimReason::MalformedMember));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_baggage_header_loses_exactly_the_members_w3c_and_tracehops_limits_leave_out(header in baggage_header()) {
        let expected = w3c::baggage(&header);
        for (carrier, entries, trimmed) in read_baggage(&header) {
            prop_assert_eq!(&entries, &expected.entries, "{}", carrier);
            prop_assert_eq!(trimmed, expected.trimmed, "{}", carrier);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Arbitrary header sets.

/// A header name: the trace headers in any case, near misses, with a NUL (Kafka reads a name up to its first NUL,
/// AMQP reads it whole), and anything else, UTF-8 or not, NUL bytes included.
fn header_name() -> impl Strategy<Value = Vec<u8>> {
    let junk = prop::collection::vec(any::<u8>(), 0..4);
    prop_oneof![
        4 => Just(b"traceparent".to_vec()),
        1 => Just(b"TraceParent".to_vec()),
        1 => Just(b"traceparent ".to_vec()),
        1 => junk.clone().prop_map(|junk| [&b"traceparent\0"[..], &junk].concat()),
        1 => Just(b"\0traceparent".to_vec()),
        2 => Just(b"tracestate".to_vec()),
        2 => Just(b"baggage".to_vec()),
        1 => junk.prop_map(|junk| [&b"baggage\0"[..], &junk].concat()),
        2 => "[a-zA-Z-]{1,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..12),
    ]
}

/// A header value: valid and nearly valid `traceparent`s (one byte changed, or one rule broken: version `ff`,
/// ids of zeros, upper-case hex, bytes after version 00 or no `-` after a later version's fields), `baggage`
/// headers, other list headers, arbitrary bytes, or null.
fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    // Version 00, or a later version with more fields after a `-`.
    let tail = prop_oneof![Just(String::new()), "-[ -~]{0,8}"];
    let valid = (1..=u128::MAX, 1..=u64::MAX, any::<u8>(), tail).prop_map(|(trace, span, flags, tail)| {
        let version = if tail.is_empty() { "00" } else { "cc" };
        format!("{version}-{trace:032x}-{span:016x}-{flags:02x}{tail}").into_bytes()
    });
    let one_rule_broken = (
        prop::sample::select(&["00", "cc", "ff"][..]),
        prop_oneof![Just(0), 1..=u128::MAX],
        prop_oneof![Just(0), 1..=u64::MAX],
        any::<u8>(),
        prop::sample::select(&["", "-", "-x", "x"][..]),
        any::<bool>(),
    )
        .prop_map(|(version, trace, span, flags, tail, upper_case)| {
            let value = format!("{version}-{trace:032x}-{span:016x}-{flags:02x}{tail}");
            if upper_case { value.to_uppercase() } else { value }.into_bytes()
        });
    let mutated = (valid.clone(), 0..60usize, any::<u8>()).prop_map(|(mut value, at, byte)| {
        let at = at % value.len();
        value[at] = byte;
        value
    });
    let baggage = prop::collection::vec(baggage_piece(), 0..6).prop_map(|pieces| pieces.join(&b","[..]));
    prop_oneof![
        3 => valid.prop_map(Some),
        3 => mutated.prop_map(Some),
        2 => one_rule_broken.prop_map(Some),
        2 => baggage.prop_map(Some),
        1 => "[a-z0-9=,;% ]{0,40}".prop_map(|text| Some(text.into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(Some),
        1 => Just(None),
    ]
}

fn header_set() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    prop::collection::vec((header_name(), header_value()), 0..8)
}

/// Extracts `message`'s context, which must not panic, and checks it against what the oracle makes of the
/// headers as the consumer reads them.
fn check_extraction<M: ConsumedMessage>(message: &M, read: &[(&[u8], Option<&[u8]>)]) -> Result<(), TestCaseError> {
    let extracted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tracehop::extract_context(message)));
    let extracted = extracted.map_err(|_| TestCaseError::fail("extraction panicked"))?;
    wire::assert_extracted(&w3c::incoming(read), &extracted);
    Ok(())
}

/// The minimal input the header-set properties found: the fields end in `\xc2`, the first byte of a two-byte
/// character, and the next byte (`-`) does not complete it: not UTF-8 (tracehop once took it for a character cut
/// at byte 55 by a longer header, and reported `traceparent_invalid_hex`).
#[test]
fn a_traceparent_whose_fields_end_in_a_broken_character_is_rejected_as_not_utf8() {
    suite::spans();
    let value = b"cc-00000000000000000000000000000001-0000000000000001-0\xc2-";
    let headers = with_raw_header(OwnedHeaders::new(), b"traceparent", Some(value));
    let rejection = match tracehop::extract_context(&kafka_message("broken", headers)) {
        IncomingContext::NewRoot(rejection) => Some(rejection),
        IncomingContext::Continued(..) => None,
    };
    assert_eq!(rejection, Some(tracehop::ContextRejection::NotUtf8));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn kafka_extraction_of_any_header_set_continues_only_a_valid_traceparent_and_says_why_not(headers in header_set()) {
        suite::spans();
        let owned = headers.iter().fold(OwnedHeaders::new(), |owned, (name, value)| with_raw_header(owned, name, value.as_deref()));
        // librdkafka hands names back as C strings: a name is what precedes its first NUL.
        let read: Vec<(&[u8], Option<&[u8]>)> = headers.iter().map(|(name, value)| (wire::kafka_name(name), value.as_deref())).collect();
        check_extraction(&kafka_message("arbitrary", owned), &read)?;
    }

    #[test]
    fn amqp_extraction_of_any_header_set_continues_only_a_valid_traceparent_and_says_why_not(
        headers in header_set(),
        types in prop::collection::vec(0..4u8, 8),
    ) {
        suite::spans();
        // A field table holds one value per name (the last one written) and names that are UTF-8 strings, read
        // whole, NUL bytes and all.
        let mut table = FieldTable::default();
        for ((name, value), kind) in headers.iter().zip(types) {
            let Ok(name) = String::from_utf8(name.clone()) else { continue };
            let value = match (value, kind) {
                (None, _) => AMQPValue::Void,
                (Some(bytes), 0) => AMQPValue::ByteArray(ByteArray::from(bytes.clone())),
                (Some(_), 1) => AMQPValue::LongInt(7),
                (Some(bytes), _) => AMQPValue::LongString(LongString::from(bytes.clone())),
            };
            table.insert(name.into(), value);
        }
        let read = wire::amqp_headers(&table);
        let delivery = delivery("arbitrary", BasicProperties::default().with_headers(table.clone()));
        check_extraction(&delivery, &read)?;
    }
}
