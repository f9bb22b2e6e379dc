//! What the fuzz targets share: how an input becomes message headers, the tracing set-up, what tracehop must
//! make of any input (the checks, each target's whole body), and the W3C oracles the checks compare with.
//!
//! `tests/fuzz_seeds.rs` includes this file and runs every seed under `fuzz/seeds` through the same checks, and
//! `tests/roundtrip_properties.rs` uses the oracles; so it depends only on crates the test suite has too.
//!
//! Input format, so seeds can be written by hand and libFuzzer's mutations stay meaningful: headers are
//! separated by byte 0x1E; in each, the first 0x1F separates the name from the value, and a header without
//! 0x1F has a null value (Kafka) or a value that is not bytes (AMQP). Names and values are any other bytes.

use std::cell::RefCell;
use std::sync::Once;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{global, Context, Value};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::FutureRecord;
use tracehop::{Handler, IncomingContext, MessageSpan};

/// Separates headers.
pub const HEADER_SEPARATOR: u8 = 0x1e;
/// Separates a header's name from its value.
pub const VALUE_SEPARATOR: u8 = 0x1f;
/// Separates the messages of a batch (`batch_links`).
pub const MESSAGE_SEPARATOR: u8 = 0x1d;

/// The most links a batch span may carry in `batch_links`.
pub const LINK_CAP: usize = 4;

// Every header through the capture patterns and secret-name checks, and an attempt header to parse.
static KAFKA_EXTRACT: Handler =
    Handler::consumer("fuzz::kafka_extract").group("fuzz").capture_headers(&["*"]).attempt_header("x-attempt");
static AMQP_EXTRACT: Handler =
    Handler::consumer("fuzz::amqp_extract").group("fuzz").capture_headers(&["*"]).attempt_header("x-attempt");
static BATCH_LINKS: Handler = Handler::consumer("fuzz::batch_links").group("fuzz");
// No group: a JetStream consumer's name, read from the reply subject, becomes the span's.
static NATS_EXTRACT: Handler =
    Handler::consumer("fuzz::nats_extract").capture_headers(&["*"]).attempt_header("x-attempt");

/// The header name that, in a `nats_extract` input, gives the message's reply subject instead of a header.
pub const REPLY_HEADER: &[u8] = b"$reply";

/// The headers an input describes.
pub fn headers(data: &[u8]) -> Vec<(&[u8], Option<&[u8]>)> {
    data.split(|&byte| byte == HEADER_SEPARATOR)
        .map(|header| match header.iter().position(|&byte| byte == VALUE_SEPARATOR) {
            Some(at) => (&header[..at], Some(&header[at + 1..])),
            None => (header, None),
        })
        .collect()
}

/// The headers as a Kafka header list, names added as raw bytes through librdkafka (a foreign producer can
/// send any bytes; rdkafka's safe API takes only `&str` names).
pub fn kafka_headers(headers: &[(&[u8], Option<&[u8]>)]) -> OwnedHeaders {
    let owned = OwnedHeaders::new_with_capacity(headers.len());
    let native =
        owned.as_borrowed() as *const rdkafka::message::BorrowedHeaders as *mut rdkafka::bindings::rd_kafka_headers_t;
    for (name, value) in headers {
        let (value, size) = value.map_or((std::ptr::null(), 0), |value| (value.as_ptr(), value.len() as isize));
        // SAFETY: `native` is the live, writable list `owned` owns; librdkafka copies name and value.
        unsafe {
            rdkafka::bindings::rd_kafka_header_add(
                native,
                name.as_ptr().cast(),
                name.len() as isize,
                value.cast(),
                size,
            );
        }
    }
    owned
}

/// Every header of `headers` as librdkafka hands it out (the name a C string, so up to its first NUL; `None`
/// for a null value), read through librdkafka itself: rdkafka's own reader panics on names that are not UTF-8.
pub fn raw_kafka_headers(headers: &OwnedHeaders) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    use rdkafka::message::Headers;
    let native = headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders
        as *const rdkafka::bindings::rd_kafka_headers_t;
    (0..headers.count())
        .map(|index| {
            let mut name = std::ptr::null();
            let mut value = std::ptr::null();
            let mut size = 0;
            // SAFETY: a live list and an index below its count.
            let error =
                unsafe { rdkafka::bindings::rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size) };
            assert_eq!(error, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
            // SAFETY: on success both point into the list, which outlives this call.
            let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes().to_vec();
            let value =
                (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec());
            (name, value)
        })
        .collect()
}

/// A header name as a Kafka consumer reads it: librdkafka hands names out as C strings, so up to the first NUL.
pub fn kafka_name(name: &[u8]) -> &[u8] {
    name.split(|&byte| byte == 0).next().unwrap_or_default()
}

/// A consumed Kafka message carrying `headers`.
pub fn kafka_message(headers: OwnedHeaders, offset: i64) -> OwnedMessage {
    OwnedMessage::new(
        Some(b"order".to_vec()),
        Some(b"key".to_vec()),
        "orders".to_owned(),
        Timestamp::NotAvailable,
        0,
        offset,
        Some(headers),
    )
}

/// A short string as the AMQP wire carries one: at most 255 bytes (lapin panics building a longer one, so no
/// delivery can hold it).
pub fn short_string(bytes: &[u8]) -> ShortString {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    ShortString::from(text)
}

/// The AMQP field table an `amqp_extract` input describes: the first byte of each value picks its AMQP type, so
/// every type a client can send is tried. A name written twice keeps its last value, as in any field table.
pub fn amqp_table(data: &[u8]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers(data) {
        let value = match value {
            None => AMQPValue::Void,
            Some([0, rest @ ..]) => AMQPValue::ByteArray(ByteArray::from(rest.to_vec())),
            Some([1, rest @ ..]) => AMQPValue::ShortString(short_string(rest)),
            Some([2, ..]) => AMQPValue::LongInt(7),
            Some([3, ..]) => AMQPValue::Boolean(true),
            // `x-death` as RabbitMQ writes it (tables with a `count`), with counts from the input, any width.
            Some([4, rest @ ..]) => AMQPValue::FieldArray(
                rest.chunks(8)
                    .map(|count| {
                        let mut death = FieldTable::default();
                        let count = count.iter().fold(0_i64, |value, &byte| value << 8 | i64::from(byte));
                        death.insert("count".into(), AMQPValue::LongLongInt(count));
                        AMQPValue::FieldTable(death)
                    })
                    .collect::<Vec<_>>()
                    .into(),
            ),
            Some([5, rest @ ..]) => {
                AMQPValue::LongLongInt(rest.iter().fold(0_i64, |value, &byte| value << 8 | i64::from(byte)))
            }
            // `x-death` entries with every field RabbitMQ writes, each piece of the input one entry.
            Some([6, rest @ ..]) => AMQPValue::FieldArray(rest.chunks(4).map(amqp_death).collect::<Vec<_>>().into()),
            Some(bytes) => AMQPValue::LongString(LongString::from(bytes.to_vec())),
        };
        table.insert(short_string(name), value);
    }
    table
}

/// An `x-death` entry made of `piece`: its reason, queue, exchange and routing keys the piece as text (UTF-8 or
/// not); for a piece of odd length, the queue and the second routing key of another type.
fn amqp_death(piece: &[u8]) -> AMQPValue {
    let text = || AMQPValue::LongString(LongString::from(piece.to_vec()));
    let odd = piece.len() % 2 == 1;
    let mut death = FieldTable::default();
    death.insert("reason".into(), text());
    death.insert("queue".into(), if odd { AMQPValue::LongInt(7) } else { text() });
    death.insert("exchange".into(), text());
    let second_key = if odd { AMQPValue::Boolean(true) } else { text() };
    death.insert("routing-keys".into(), AMQPValue::FieldArray(vec![text(), second_key].into()));
    death.insert("count".into(), AMQPValue::LongLongInt(piece.len() as i64));
    AMQPValue::FieldTable(death)
}

/// The headers of an AMQP field table as tracehop documents reading them: a string or byte array is bytes, any
/// other value is not.
pub fn amqp_headers(table: &FieldTable) -> Vec<(&[u8], Option<&[u8]>)> {
    table
        .inner()
        .iter()
        .map(|(name, value)| {
            let bytes = match value {
                AMQPValue::LongString(text) => Some(text.as_bytes()),
                AMQPValue::ShortString(text) => Some(text.as_str().as_bytes()),
                AMQPValue::ByteArray(bytes) => Some(bytes.as_slice()),
                _ => None,
            };
            (name.as_str().as_bytes(), bytes)
        })
        .collect()
}

/// Installs tracehop's propagators and a tracer provider that records every span it samples (parent-based,
/// always on) into [`take_spans`], so the checks run the recorded path (attributes, links, trims) and see it.
pub fn set_up() {
    static SET_UP: Once = Once::new();
    SET_UP.call_once(|| {
        global::set_tracer_provider(SdkTracerProvider::builder().with_span_processor(SpanCapture).build());
        tracehop::install_propagator();
    });
}

thread_local! {
    /// The spans ended on this thread since the last [`take_spans`]: each check reads only its own, also when
    /// the seed tests run at once on several threads.
    static ENDED: RefCell<Vec<SpanData>> = const { RefCell::new(Vec::new()) };
}

/// Keeps every ended span for [`take_spans`], on the thread that ended it.
#[derive(Debug)]
struct SpanCapture;

impl SpanProcessor for SpanCapture {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let _ = ENDED.try_with(|ended| ended.borrow_mut().push(span));
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// The spans this thread ended since the last call, in the order they ended.
pub fn take_spans() -> Vec<SpanData> {
    ENDED.with(|ended| std::mem::take(&mut *ended.borrow_mut()))
}

/// The producer's `traceparent` of [`producer_context`].
pub const PRODUCER_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A valid, sampled context with a `tracestate` and baggage, as a producer would write.
pub fn producer_context() -> Context {
    let trace_state = TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap_or_default();
    let span_context = SpanContext::new(
        TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
        SpanId::from(0x00f067aa0ba902b7),
        TraceFlags::SAMPLED,
        true,
        trace_state,
    );
    Context::new().with_remote_span_context(span_context).with_baggage([opentelemetry::KeyValue::new("tenant", "acme")])
}

// ---------------------------------------------------------------------------------------------------------------
// The checks: each fuzz target's body, and what `tests/fuzz_seeds.rs` runs every seed through.

/// `kafka_extract`: Kafka extraction gives exactly what the W3C oracles say of the headers as librdkafka hands
/// them out (names up to their first NUL), and the consumer span continues that context or says why not.
pub fn check_kafka_extract(data: &[u8]) {
    set_up();
    let headers = headers(data);
    let message = kafka_message(kafka_headers(&headers), 0);
    let read: Vec<(&[u8], Option<&[u8]>)> = headers.iter().map(|&(name, value)| (kafka_name(name), value)).collect();
    let expected = w3c::incoming(&read);
    take_spans();
    assert_extracted(&expected, &tracehop::extract_context(&message));
    MessageSpan::consumer(&KAFKA_EXTRACT, &message).start().run(|| ());
    assert_consumer_span(&expected, &take_spans());
}

/// `amqp_extract`: AMQP extraction of any field table (every value type) gives exactly what the W3C oracles say
/// of its string and byte-array headers, and the consumer span (redelivered, with an age) continues that context
/// or says why not.
pub fn check_amqp_extract(data: &[u8]) {
    set_up();
    let table = amqp_table(data);
    let expected = w3c::incoming(&amqp_headers(&table));
    // Redelivered, with a timestamp from the input's length: the redelivery and age paths run too.
    let mut delivery = Delivery::mock(1, "orders".into(), "created".into(), data.len() % 2 == 1, b"order".to_vec());
    delivery.properties = BasicProperties::default()
        .with_headers(table)
        .with_timestamp((data.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    take_spans();
    assert_extracted(&expected, &tracehop::extract_context(&delivery));
    MessageSpan::consumer(&AMQP_EXTRACT, &delivery).start().run(|| ());
    assert_consumer_span(&expected, &take_spans());
}

/// A NATS message of the headers an input describes: those a NATS header map can hold (UTF-8 names that
/// async-nats accepts, UTF-8 values without CR or LF), several values of one name in the order given, and the
/// value of a [`REPLY_HEADER`] as its reply subject.
pub fn nats_message(headers: &[(&[u8], Option<&[u8]>)]) -> async_nats::Message {
    let mut map = async_nats::HeaderMap::new();
    let mut reply = None;
    for (name, value) in headers {
        let (Ok(name), Some(Ok(value))) = (std::str::from_utf8(name), value.map(std::str::from_utf8)) else { continue };
        if name.as_bytes() == REPLY_HEADER {
            reply = Some(value.to_owned());
            continue;
        }
        let (Ok(name), Ok(value)) = (name.parse::<async_nats::HeaderName>(), value.parse::<async_nats::HeaderValue>())
        else {
            continue;
        };
        map.append(name, value);
    }
    async_nats::Message {
        subject: "orders.created".into(),
        reply: reply.map(Into::into),
        payload: "order".into(),
        headers: Some(map),
        status: None,
        description: None,
        length: 0,
    }
}

/// `nats_extract`: NATS extraction of any header map (several values of one name, any reply subject) gives
/// exactly what the W3C oracles say of its headers as NATS holds them, the consumer span continues that context
/// or says why not, and a reply subject is read as a JetStream acknowledgement subject exactly when ADR-15's
/// grammar says it is one ([`ack_subject`]), its facts recorded as they are written.
pub fn check_nats_extract(data: &[u8]) {
    set_up();
    let message = nats_message(&headers(data));
    let held: Vec<(&[u8], Option<&[u8]>)> = message
        .headers
        .iter()
        .flat_map(|map| map.iter())
        .flat_map(|(name, values)| {
            let name: &str = name.as_ref();
            values.iter().map(move |value| (name.as_bytes(), Some(value.as_str().as_bytes())))
        })
        .collect();
    let expected = w3c::incoming(&held);
    take_spans();
    assert_extracted(&expected, &tracehop::extract_context(&message));
    MessageSpan::consumer(&NATS_EXTRACT, &message).start().run(|| ());
    let spans = take_spans();
    assert_consumer_span(&expected, &spans);
    let Some(span) = spans.first() else { return };
    let acknowledgement = message.reply.as_deref().and_then(ack_subject);
    let recorded = [
        "tracehop.nats.stream",
        "messaging.consumer.group.name",
        "tracehop.message.delivery_count",
        "tracehop.nats.stream_sequence",
        "tracehop.nats.consumer_sequence",
        "tracehop.message.redelivered",
    ]
    .map(|key| attribute(span, key));
    let expected_facts = acknowledgement.map_or([None, None, None, None, None, None], |ack| {
        [
            Some(Value::from(ack.stream.to_owned())),
            Some(Value::from(ack.consumer.to_owned())),
            Some(Value::I64(ack.delivered)),
            Some(wide(ack.stream_sequence)),
            Some(wide(ack.consumer_sequence)),
            (ack.delivered > 1).then_some(Value::Bool(true)),
        ]
    });
    assert_eq!(recorded, expected_facts, "the acknowledgement subject's facts");
}

/// A `u64` as tracehop records it: an integer when it fits `i64`, else its decimal text.
fn wide(value: u64) -> Value {
    i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::I64)
}

/// A JetStream acknowledgement subject's facts, as ADR-15 writes them (the oracle of `nats_extract`).
#[derive(Debug)]
pub struct AckFacts<'a> {
    pub stream: &'a str,
    pub consumer: &'a str,
    pub delivered: i64,
    pub stream_sequence: u64,
    pub consumer_sequence: u64,
}

/// `$JS.ACK.` then either seven tokens (stream, consumer, delivered, stream sequence, consumer sequence, time in
/// nanoseconds, pending) or nine and more (domain and account hash first, anything after the ninth ignored),
/// every number a decimal that fits its type, stream and consumer not empty.
pub fn ack_subject(reply: &str) -> Option<AckFacts<'_>> {
    let tokens: Vec<&str> = reply.strip_prefix("$JS.ACK.")?.split('.').collect();
    let fields = match tokens.len() {
        7 => &tokens[..],
        9.. => &tokens[2..],
        _ => return None,
    };
    let (stream, consumer) = (fields[0], fields[1]);
    if stream.is_empty() || consumer.is_empty() {
        return None;
    }
    // The time must be a number for the subject to be read; the pending count is not read at all.
    let _published: i64 = fields[5].parse().ok()?;
    Some(AckFacts {
        stream,
        consumer,
        delivered: fields[2].parse().ok()?,
        stream_sequence: fields[3].parse().ok()?,
        consumer_sequence: fields[4].parse().ok()?,
    })
}

/// `batch_links`: a batch span links exactly the first [`LINK_CAP`] messages whose context is valid (each link
/// that message's ids and offset), counts the other valid ones in `tracehop.links.dropped`, and every message's
/// own span links its context or says why it has none. Messages are separated by byte 0x1D.
pub fn check_batch_links(data: &[u8]) {
    set_up();
    tracehop::set_max_links_per_span(LINK_CAP);
    let batch: Vec<OwnedMessage> = data
        .split(|&byte| byte == MESSAGE_SEPARATOR)
        .enumerate()
        .map(|(offset, message)| kafka_message(kafka_headers(&headers(message)), offset as i64))
        .collect();
    let expected: Vec<w3c::Incoming> = data
        .split(|&byte| byte == MESSAGE_SEPARATOR)
        .map(|message| {
            let read: Vec<_> = headers(message).into_iter().map(|(name, value)| (kafka_name(name), value)).collect();
            w3c::incoming(&read)
        })
        .collect();
    let valid: Vec<(TraceId, SpanId, i64)> = expected
        .iter()
        .enumerate()
        .filter_map(|(offset, incoming)| {
            incoming.parent.as_ref().ok().map(|parent| (parent.trace_id, parent.span_id, offset as i64))
        })
        .collect();

    take_spans();
    MessageSpan::consumer_batch(&BATCH_LINKS, &batch).start().run(|| ());
    for message in &batch {
        MessageSpan::in_batch_as(&BATCH_LINKS, message).start().run(|| ());
    }
    let spans = take_spans();
    assert_eq!(spans.len(), 1 + batch.len(), "the batch span, then one span per message");

    let batch_span = &spans[0];
    let linked: Vec<(TraceId, SpanId, Option<Value>)> = batch_span
        .links
        .iter()
        .map(|link| {
            let offset = link.attributes.iter().find(|attribute| attribute.key.as_str() == "messaging.kafka.offset");
            (link.span_context.trace_id(), link.span_context.span_id(), offset.map(|attribute| attribute.value.clone()))
        })
        .collect();
    let first_valid: Vec<(TraceId, SpanId, Option<Value>)> = valid
        .iter()
        .take(LINK_CAP)
        .map(|&(trace_id, span_id, offset)| (trace_id, span_id, Some(Value::I64(offset))))
        .collect();
    assert_eq!(linked, first_valid, "the batch span links the first valid contexts, up to the cap");
    let dropped = valid.len().saturating_sub(LINK_CAP);
    assert_eq!(
        attribute(batch_span, "tracehop.links.dropped"),
        (dropped > 0).then_some(Value::I64(dropped as i64)),
        "the valid contexts past the cap are counted"
    );
    assert_eq!(attribute(batch_span, "messaging.batch.message_count"), Some(Value::I64(batch.len() as i64)));

    for (span, incoming) in spans[1..].iter().zip(&expected) {
        let linked: Vec<(TraceId, SpanId)> =
            span.links.iter().map(|link| (link.span_context.trace_id(), link.span_context.span_id())).collect();
        let expected_links: Vec<(TraceId, SpanId)> =
            incoming.parent.as_ref().map(|parent| (parent.trace_id, parent.span_id)).into_iter().collect();
        assert_eq!(linked, expected_links, "a message's span links its valid context");
        assert_eq!(
            attribute(span, "tracehop.context.rejected"),
            incoming.parent.as_ref().err().map(|rejection| Value::from(rejection.as_str())),
            "a message's span says why its context is not linked"
        );
    }
}

/// `kafka_inject`: injection into a record that already carries any headers (forwarded from a consumed message)
/// replaces every trace header (names compared as C strings, up to their first NUL), keeps every other header
/// byte for byte and in order, and what it writes is extracted as exactly the producer's context.
pub fn check_kafka_inject(data: &[u8]) {
    set_up();
    let headers = headers(data);
    let mut record: FutureRecord<'_, str, str> =
        FutureRecord::to("orders").payload("order").headers(kafka_headers(&headers));
    tracehop::inject_context(&producer_context(), &mut record);
    let written = record.headers.expect("injection keeps the headers");

    let is_trace_header = |name: &[u8]| matches!(name, b"traceparent" | b"tracestate" | b"baggage");
    let mut expected: Vec<(Vec<u8>, Option<Vec<u8>>)> = headers
        .iter()
        .map(|&(name, value)| (kafka_name(name).to_vec(), value.map(<[u8]>::to_vec)))
        .filter(|(name, _)| !is_trace_header(name))
        .collect();
    for (name, value) in
        [("traceparent", PRODUCER_TRACEPARENT), ("tracestate", "congo=t61rcWkgMzE"), ("baggage", "tenant=acme")]
    {
        expected.push((name.as_bytes().to_vec(), Some(value.as_bytes().to_vec())));
    }
    assert_eq!(raw_kafka_headers(&written), expected, "the other headers kept, then one of each trace header");

    let message = kafka_message(written, 0);
    let IncomingContext::Continued(context, trims) = tracehop::extract_context(&message) else {
        panic!("tracehop's own context is not continued after injection");
    };
    let span = context.span();
    let got = span.span_context();
    let sent = producer_context();
    let sent_span = sent.span();
    let sent = sent_span.span_context();
    assert_eq!(
        (got.trace_id(), got.span_id(), got.is_sampled(), got.trace_state().header()),
        (sent.trace_id(), sent.span_id(), sent.is_sampled(), sent.trace_state().header())
    );
    assert_eq!(trims, tracehop::Trims::default(), "nothing of tracehop's own context is trimmed");
    assert_eq!(w3c::entries(context.baggage()), w3c::entries(producer_context().baggage()));
}

/// Checks what `extract_context` gave against what the oracles expect.
pub fn assert_extracted(expected: &w3c::Incoming, extracted: &IncomingContext) {
    match (&expected.parent, extracted) {
        (Ok(parent), IncomingContext::Continued(context, trims)) => {
            let span = context.span();
            let got = span.span_context();
            let flags = got.trace_flags().to_u8();
            let got_parent = w3c::Parent {
                trace_id: got.trace_id(),
                span_id: got.span_id(),
                sampled: got.is_sampled(),
                random: flags & 0x02 == 0x02,
            };
            assert_eq!(got_parent, *parent, "the traceparent's ids, sampled and random flags");
            assert_eq!(flags & !0x03, 0, "no flag but sampled and random is kept");
            assert!(got.is_remote(), "the producer's context is remote");
            assert_eq!(trims.baggage, expected.baggage.trimmed, "why baggage members were left out");
            assert_eq!(w3c::entries(context.baggage()), expected.baggage.entries, "the baggage read");
        }
        (Err(rejection), IncomingContext::NewRoot(got)) => assert_eq!(got, rejection, "the rejection's reason"),
        (expected, got) => panic!("expected {expected:?}, extracted {got:?}"),
    }
}

/// Checks the spans one consumer span start ended: a sampled continued context gives one child of the
/// producer's span with the baggage trim's reason, an unsampled one no recorded span (parent-based sampling),
/// a rejected one a new root that says why.
pub fn assert_consumer_span(expected: &w3c::Incoming, spans: &[SpanData]) {
    match &expected.parent {
        Ok(parent) if !parent.sampled => assert_eq!(spans.len(), 0, "an unsampled parent's child is not recorded"),
        Ok(parent) => {
            let [span] = spans else { panic!("one consumer span, got {}", spans.len()) };
            assert_eq!(
                (span.span_context.trace_id(), span.parent_span_id, span.parent_span_is_remote),
                (parent.trace_id, parent.span_id, true),
                "the consumer span is the remote producer span's child"
            );
            assert_eq!(attribute(span, "tracehop.context.rejected"), None);
            assert_eq!(
                attribute(span, "tracehop.context.baggage.trimmed"),
                expected.baggage.trimmed.map(|reason| Value::from(reason.as_str()))
            );
        }
        Err(rejection) => {
            let [span] = spans else { panic!("one consumer span, got {}", spans.len()) };
            assert_eq!(span.parent_span_id, SpanId::INVALID, "a new root");
            assert_eq!(attribute(span, "tracehop.context.rejected"), Some(Value::from(rejection.as_str())));
        }
    }
}

/// The value of attribute `key` on `span`.
pub fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes.iter().find(|attribute| attribute.key.as_str() == key).map(|attribute| attribute.value.clone())
}

// ---------------------------------------------------------------------------------------------------------------
// The oracles.

/// What a consumer must make of the W3C headers, written from W3C Trace Context (level 1) and W3C Baggage, not
/// from tracehop's code. Where tracehop documents a choice the specifications leave open (the reason it gives for
/// a rejection, and the order of those reasons; which baggage members it keeps past the limits; the leniencies
/// named below), the oracle follows that documentation, computing the answer from the input alone.
pub mod w3c {
    use std::collections::BTreeMap;

    use opentelemetry::baggage::Baggage;
    use opentelemetry::trace::{SpanId, TraceId};
    use tracehop::{ContextRejection, TrimReason};

    /// The W3C Baggage limit on a header's length, in bytes.
    pub const MAX_BAGGAGE_LEN: usize = 8192;
    /// The W3C Baggage limit on a header's list members.
    pub const MAX_BAGGAGE_MEMBERS: usize = 64;
    /// A version-00 `traceparent`'s length, and that of the fields every later version starts with.
    const TRACEPARENT_LEN: usize = 55;

    /// The context a valid `traceparent` carries.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Parent {
        /// Its trace id.
        pub trace_id: TraceId,
        /// Its parent (span) id.
        pub span_id: SpanId,
        /// The `sampled` bit of its flags.
        pub sampled: bool,
        /// The `random` bit of its flags (Trace Context Level 2).
        pub random: bool,
    }

    /// What a consumer reads of a message's `baggage` header.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct BaggageRead {
        /// Key to (decoded value, decoded properties joined by `;`), as OpenTelemetry's `Baggage` holds them.
        pub entries: BTreeMap<String, (String, String)>,
        /// Why members were left out, if any were.
        pub trimmed: Option<TrimReason>,
    }

    /// What extraction must give for a message.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Incoming {
        /// The context to continue, or the reason there is none.
        pub parent: Result<Parent, ContextRejection>,
        /// What the message's first `baggage` header gives.
        pub baggage: BaggageRead,
    }

    /// What extraction must give for a message whose headers, as the consumer reads them (a Kafka name up to
    /// its first NUL; one value per name in an AMQP table), are `headers`: exactly one `traceparent` (names
    /// match exactly) that is valid, or a reason; the first `baggage` header.
    pub fn incoming(headers: &[(&[u8], Option<&[u8]>)]) -> Incoming {
        let traceparents: Vec<Option<&[u8]>> =
            headers.iter().filter(|(name, _)| *name == b"traceparent").map(|&(_, value)| value).collect();
        let parent = match traceparents[..] {
            [] => Err(ContextRejection::Missing),
            [None] => Err(ContextRejection::UnreadableTraceparent),
            [Some(value)] => traceparent(value),
            _ => Err(ContextRejection::DuplicateTraceparent),
        };
        let baggage = match headers.iter().find(|(name, _)| *name == b"baggage") {
            None => BaggageRead::default(),
            Some((_, None)) => BaggageRead { entries: BTreeMap::new(), trimmed: Some(TrimReason::Unreadable) },
            Some((_, Some(value))) => baggage(value),
        };
        Incoming { parent, baggage }
    }

    /// W3C Trace Context, "traceparent Header Field": `version "-" trace-id "-" parent-id "-" trace-flags`, each
    /// lower-case hex (`HEXDIGLC`) of 2, 32, 16 and 2 digits; version `ff` is invalid; ids of all zeros are
    /// invalid; version `00` is exactly that long, a later version may go on after a `-` ("Versioning of
    /// traceparent"). The reason for an invalid one is tracehop's (`ContextRejection`), the first rule broken
    /// in the order tracehop documents: UTF-8, where the fields are, their digits, the version, what follows
    /// them, the ids. Only the fields are judged (README, "a traceparent is judged by its first 56 bytes"), once
    /// the spaces and tabs around the value are dropped (HTTP's optional white space, which the W3C test suite
    /// expects a tracer to ignore).
    pub fn traceparent(value: &[u8]) -> Result<Parent, ContextRejection> {
        let is_ows = |byte: &u8| matches!(byte, b' ' | b'\t');
        let start = value.iter().position(|byte| !is_ows(byte)).unwrap_or(value.len());
        let end = value.iter().rposition(|byte| !is_ows(byte)).map_or(start, |last| last + 1);
        let value = &value[start..end];
        let broken_utf8_at = std::str::from_utf8(value).err().map(|error| error.valid_up_to());
        if broken_utf8_at.is_some_and(|at| at < TRACEPARENT_LEN) {
            return Err(ContextRejection::NotUtf8);
        }
        if value.len() < TRACEPARENT_LEN || [2, 35, 52].iter().any(|&dash| value[dash] != b'-') {
            return Err(ContextRejection::WrongLength);
        }
        let fields = [&value[0..2], &value[3..35], &value[36..52], &value[53..55]];
        for &digit in fields.iter().flat_map(|field| field.iter()) {
            match digit {
                b'0'..=b'9' | b'a'..=b'f' => {}
                b'A'..=b'F' => return Err(ContextRejection::UppercaseHex),
                _ => return Err(ContextRejection::InvalidHex),
            }
        }
        let hex =
            |field: &[u8]| u128::from_str_radix(std::str::from_utf8(field).expect("hex digits"), 16).expect("hex");
        let (version, trace_id, span_id, flags) = (hex(fields[0]), hex(fields[1]), hex(fields[2]), hex(fields[3]));
        if version == 0xff {
            return Err(ContextRejection::InvalidVersion);
        }
        if value.len() > TRACEPARENT_LEN && (version == 0 || value[TRACEPARENT_LEN] != b'-') {
            return Err(ContextRejection::TrailingData);
        }
        if trace_id == 0 {
            return Err(ContextRejection::ZeroTraceId);
        }
        if span_id == 0 {
            return Err(ContextRejection::ZeroSpanId);
        }
        Ok(Parent {
            trace_id: TraceId::from(trace_id),
            span_id: SpanId::from(span_id as u64),
            sampled: flags & 0x01 == 0x01,
            random: flags & 0x02 == 0x02,
        })
    }

    /// W3C Baggage, read by a consumer that keeps to the limits as tracehop documents (`trim_baggage`): the
    /// header's list members in order; an empty one is skipped, a malformed one dropped alone
    /// (`malformed_member`); the first 64 well-formed ones kept, the rest dropped (`too_many_members`); of a
    /// header over 8,192 bytes only the members that end within them are read (`oversized`), never a part of
    /// one. The reason is the first rule met: an oversized header is known to be so before any member is read.
    /// A key written twice keeps its last value, as OpenTelemetry's `Baggage` does.
    pub fn baggage(header: &[u8]) -> BaggageRead {
        let mut read = BaggageRead::default();
        if header.len() > MAX_BAGGAGE_LEN {
            read.trimmed = Some(TrimReason::Oversized);
        }
        let mut kept = 0;
        let mut end = 0;
        for piece in header.split(|&byte| byte == b',') {
            end += piece.len();
            if end > MAX_BAGGAGE_LEN {
                break;
            }
            end += 1;
            match list_member(piece) {
                Member::Empty => {}
                Member::Malformed => {
                    read.trimmed.get_or_insert(TrimReason::MalformedMember);
                }
                Member::WellFormed { .. } if kept == MAX_BAGGAGE_MEMBERS => {
                    read.trimmed.get_or_insert(TrimReason::TooManyMembers);
                    break;
                }
                Member::WellFormed { key, value, properties } => {
                    kept += 1;
                    read.entries.insert(key, (value, properties));
                }
            }
        }
        read
    }

    /// One list member of a `baggage` header, judged.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Member {
        /// Nothing but optional white space: skipped.
        Empty,
        /// Breaks the rules: dropped.
        Malformed,
        /// Kept: its key, decoded value and decoded properties (each without its optional white space, joined by
        /// `;`, and trimmed as OpenTelemetry's `BaggageMetadata` trims them).
        WellFormed { key: String, value: String, properties: String },
    }

    /// `list-member = key OWS "=" OWS value *( OWS ";" OWS property )` (the list's OWS around it removed), with
    /// `key = token` (RFC 7230) and `value = *baggage-octet`, percent-encoded beyond them. The grammar is ASCII,
    /// so a member with any other byte is malformed. tracehop's documented leniencies, followed here: a value
    /// may hold any printable ASCII but space (also `"` and `\`); a `%` that starts no `%XX` escape stands for
    /// itself; properties are checked only for what they may hold (printable ASCII and OWS) and their escapes,
    /// not for the shape of a property. Its strictness: escapes must decode to UTF-8 (W3C would put U+FFFD).
    pub fn list_member(raw: &[u8]) -> Member {
        let member = trim_ows(raw);
        if member.is_empty() {
            return Member::Empty;
        }
        if !member.is_ascii() {
            return Member::Malformed;
        }
        let (key_and_value, properties) = match member.iter().position(|&byte| byte == b';') {
            Some(at) => (&member[..at], Some(&member[at + 1..])),
            None => (member, None),
        };
        let Some(equals) = key_and_value.iter().position(|&byte| byte == b'=') else { return Member::Malformed };
        let key = trim_ows(&key_and_value[..equals]);
        let value = trim_ows(&key_and_value[equals + 1..]);
        if key.is_empty() || !key.iter().all(|&byte| is_tchar(byte)) {
            return Member::Malformed;
        }
        if !value.iter().all(|&byte| is_baggage_octet(byte) || byte == b'"' || byte == b'\\') {
            return Member::Malformed;
        }
        let Some(value) = percent_decoded(value) else { return Member::Malformed };
        let mut decoded_properties = Vec::new();
        for property in properties.into_iter().flat_map(|properties| properties.split(|&byte| byte == b';')) {
            if !property.iter().all(|&byte| matches!(byte, b' ' | b'\t' | 0x21..=0x7e)) {
                return Member::Malformed;
            }
            let Some(property) = percent_decoded(trim_ows(property)) else { return Member::Malformed };
            decoded_properties.push(property);
        }
        let properties = decoded_properties.join(";").trim().to_owned();
        Member::WellFormed { key: String::from_utf8(key.to_vec()).expect("a token is ASCII"), value, properties }
    }

    /// The members of a `baggage` header tracehop wrote, when every one keeps to the W3C grammar strictly
    /// (values and properties of `baggage-octet`s, every `%` starting an escape as RFC 3986 requires, properties
    /// `key [OWS "=" OWS value]`): (key, decoded value, decoded properties) in the header's order. `None` when a
    /// member breaks the grammar.
    pub fn strict_members(header: &str) -> Option<Vec<(String, String, String)>> {
        let strict_value = |text: &[u8]| {
            let escapes_whole = text
                .iter()
                .enumerate()
                .filter(|(_, &byte)| byte == b'%')
                .all(|(at, _)| text.get(at + 1..at + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)));
            text.iter().all(|&byte| is_baggage_octet(byte)) && escapes_whole
        };
        let mut members = Vec::new();
        for raw in header.split(',') {
            let mut parts = raw.split(';');
            let (key, value) = parts.next()?.split_once('=')?;
            let (key, value) = (trim_ows(key.as_bytes()), trim_ows(value.as_bytes()));
            if key.is_empty() || !key.iter().all(|&byte| is_tchar(byte)) || !strict_value(value) {
                return None;
            }
            let mut properties = Vec::new();
            for property in parts {
                let property = trim_ows(property.as_bytes());
                let (property_key, property_value) = match property.iter().position(|&byte| byte == b'=') {
                    Some(at) => (trim_ows(&property[..at]), Some(trim_ows(&property[at + 1..]))),
                    None => (property, None),
                };
                if property_key.is_empty() || !property_key.iter().all(|&byte| is_tchar(byte)) {
                    return None;
                }
                match property_value {
                    None => properties.push(String::from_utf8(property_key.to_vec()).ok()?),
                    Some(property_value) if strict_value(property_value) => properties.push(format!(
                        "{}={}",
                        std::str::from_utf8(property_key).ok()?,
                        percent_decoded(property_value)?
                    )),
                    Some(_) => return None,
                }
            }
            members.push((
                String::from_utf8(key.to_vec()).ok()?,
                percent_decoded(value)?,
                properties.join(";").trim().to_owned(),
            ));
        }
        Some(members)
    }

    /// A baggage's entries, comparable: key to (value, properties).
    pub fn entries(baggage: &Baggage) -> BTreeMap<String, (String, String)> {
        baggage
            .iter()
            .map(|(key, (value, metadata))| (key.to_string(), (value.to_string(), metadata.as_str().to_owned())))
            .collect()
    }

    /// `baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E`.
    pub fn is_baggage_octet(byte: u8) -> bool {
        matches!(byte, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
    }

    /// RFC 7230 `tchar`.
    pub fn is_tchar(byte: u8) -> bool {
        byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
    }

    /// RFC 3986 percent-decoding (`%` and two hex digits of either case) into UTF-8, `None` when the bytes are
    /// not UTF-8; a `%` that starts no escape stands for itself, as tracehop documents.
    pub fn percent_decoded(text: &[u8]) -> Option<String> {
        let mut bytes = Vec::with_capacity(text.len());
        let mut rest = text;
        while let Some((&first, tail)) = rest.split_first() {
            match tail.get(..2) {
                Some(&[high, low]) if first == b'%' && high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                    let digits = [high, low];
                    let digits = std::str::from_utf8(&digits).expect("hex digits are ASCII");
                    bytes.push(u8::from_str_radix(digits, 16).expect("two hex digits"));
                    rest = &tail[2..];
                }
                _ => {
                    bytes.push(first);
                    rest = tail;
                }
            }
        }
        String::from_utf8(bytes).ok()
    }

    /// Without the optional white space (`OWS = *( SP / HTAB )`) at either end.
    fn trim_ows(text: &[u8]) -> &[u8] {
        let ows = |byte: &u8| matches!(byte, b' ' | b'\t');
        let start = text.iter().position(|byte| !ows(byte)).unwrap_or(text.len());
        let end = text.iter().rposition(|byte| !ows(byte)).map_or(start, |last| last + 1);
        &text[start..end]
    }
}
