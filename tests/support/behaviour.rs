//! What every broker does the same, written once: the [`BrokerFixture`] a broker's tests implement (publish,
//! receive, handle, settle, and what its spans say of a message), and the test bodies generic over it. Each body
//! asserts exact span names, kinds, parents, links, trace ids and attributes: the values every broker shares are
//! written here, the ones only a broker knows (its identifiers, offsets, delivery tags, routing keys) come from its
//! fixture. `tests/shared_behaviour.rs` runs every body on every broker; a broker's own quirks stay in its own
//! files (`tests/kafka_*.rs`, `tests/rabbitmq*.rs`, `tests/nats*.rs`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer};
use opentelemetry::{global, Context, Value};
use opentelemetry_sdk::trace::SpanData;

use crate::{attribute, attributes, expected, spans_of_trace, spans_to, Shape};

/// The consumer group the fixtures' handlers name (`#[traced_consumer(group = "inventory")]`).
pub const GROUP: &str = "inventory";

/// The name of the span a handler's body starts, across an await, under the consumer span.
pub const BODY_SPAN: &str = "handle order";

/// A `traceparent` a foreign producer wrote: trace `4bf92f3577b34da6a3ce929d0e0e4736`, span `00f067aa0ba902b7`.
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A span's attributes as a test expects them: `(key, value)` pairs, in any order ([`expected`] sorts them).
pub type Attributes = Vec<(&'static str, Value)>;

/// A message to publish: `id` is what identifies it on the broker (a Kafka record's key, an AMQP message id).
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// The Kafka key or the AMQP message id.
    pub id: &'a str,
    /// The body.
    pub payload: &'a [u8],
    /// Exactly these headers, for a plain publish ([`BrokerFixture::publish_raw`]); tracehop's publishes add the
    /// trace context to them.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// What a handler saw and returns: the message's id and body, and the span it ran under.
#[derive(Clone, Debug, PartialEq)]
pub struct Handled {
    /// The message's id ([`Outgoing::id`]).
    pub id: String,
    /// The message's body.
    pub payload: Vec<u8>,
    /// The trace of the span current in the handler.
    pub trace_id: TraceId,
    /// The span current in the handler.
    pub span_id: SpanId,
}

/// What a failing handler returns ([`BrokerFixture::handle_failing`]).
pub const FAILURE: &str = "the warehouse is unreachable";

/// The body of every fixture handler, the macro's and the client adapter's alike: waits across an await, starts a
/// [`BODY_SPAN`] span, and returns what it saw ([`Handled`]); or fails, with [`FAILURE`] when told to `fail`, or
/// with `refused` for a body of `fail`.
pub async fn handle_body(id: String, payload: Vec<u8>, fail: bool) -> Result<Handled, String> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let _child = global::tracer("suite").start(BODY_SPAN);
    if fail {
        return Err(FAILURE.to_owned());
    }
    if payload == b"fail" {
        return Err("refused".to_owned());
    }
    let context = Context::current();
    let span = context.span();
    let current = span.span_context();
    Ok(Handled { id, payload, trace_id: current.trace_id(), span_id: current.span_id() })
}

/// The error of the fixtures' failing handlers ([`BrokerFixture::handle_out_of_stock`]).
#[derive(Debug, PartialEq)]
pub struct OutOfStock;

impl std::fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("out of stock")
    }
}

/// A broker, as the shared test bodies use it. Each method is one thing a user of the broker does, through the
/// broker's client library and tracehop, or one thing only the broker knows about its spans.
#[allow(async_fn_in_trait)] // the bodies run on the test's own runtime: no `Send` bound is needed
pub trait BrokerFixture {
    /// What a consumer receives and hands to a handler.
    type Message;
    /// A fresh destination no other test uses, with its subscribers (each receives every message).
    type Destination;

    /// `messaging.system`.
    const SYSTEM: &'static str;
    /// The attribute holding a message's [`Outgoing::id`] on its spans.
    const ID_ATTRIBUTE: &'static str;
    /// `code.function.name` of the fixture's `#[traced_producer]` ([`BrokerFixture::publish`]); the traced
    /// client of [`BrokerFixture::publish_by_client`] uses a handler of that name.
    const PUBLISH_FUNCTION: &'static str;
    /// `code.function.name` of the fixture's `#[traced_consumer(group = GROUP)]` ([`BrokerFixture::handle`]); the
    /// client adapter of [`BrokerFixture::handle_by_client`] uses a handler of that name and group.
    const HANDLE_FUNCTION: &'static str;
    /// `messaging.operation.name` of the settle [`BrokerFixture::handle_and_settle`] makes (`commit`, `ack`).
    const SETTLE_OPERATION: &'static str;
    /// Whether a plain publish carries a timestamp, which gives a consumed message an age (`tracehop.message.age`).
    const TIMESTAMPS_MESSAGES: bool;
    /// Whether a message keeps its headers in an order across names (Kafka's arrival order, an AMQP table's byte
    /// order); NATS keeps them in a hash map, so values of names alike but for case are captured in no fixed order.
    const ORDERS_HEADER_NAMES: bool;

    /// A fresh destination (its name starts with `prefix`) with `subscribers` subscribers.
    async fn destination(&self, prefix: &str, subscribers: usize) -> Self::Destination;
    /// The destination's name: `messaging.destination.name`, and the second word of its span names.
    fn name(&self, destination: &Self::Destination) -> String;
    /// Publishes `message` through the fixture's `#[traced_producer]`.
    async fn publish(&self, destination: &Self::Destination, message: &Outgoing<'_>);
    /// Publishes `message` through the broker's traced client (`tracehop::clients`); returns the attributes the
    /// broker's answer adds to the producer span (a Kafka delivery report's partition and offset).
    async fn publish_by_client(
        &self,
        destination: &Self::Destination,
        message: &Outgoing<'_>,
    ) -> Vec<(&'static str, Value)>;
    /// Publishes `message` with exactly its headers, bypassing tracehop: how a foreign or broken producer publishes.
    async fn publish_raw(&self, destination: &Self::Destination, message: &Outgoing<'_>);
    /// Publishes `message` as [`BrokerFixture::publish_raw`] does, with the timestamp `at`; returns that timestamp
    /// as the broker carries it, in milliseconds since the epoch (AMQP's counts whole seconds).
    async fn publish_raw_at(
        &self,
        destination: &Self::Destination,
        message: &Outgoing<'_>,
        at: std::time::SystemTime,
    ) -> i64;
    /// The next message `subscriber` receives, through the broker's client library.
    async fn receive(&self, destination: &Self::Destination, subscriber: usize) -> Self::Message;
    /// The id ([`Outgoing::id`]) of a received message.
    fn id_of(&self, received: &Self::Message) -> String;
    /// The `traceparent` header a received message carries, in the form tracehop writes it.
    fn traceparent_of(&self, received: &Self::Message) -> Option<Vec<u8>>;
    /// Runs [`handle_body`] on `received` in the fixture's `#[traced_consumer(group = GROUP)]` handler.
    async fn handle(&self, received: &Self::Message) -> Result<Handled, String>;
    /// Runs [`handle_body`] on `received` in a `#[traced_consumer(group = GROUP, capture_headers("x-*",
    /// "Authorization"), exclude_headers("x-internal-*"), attempt_header = "x-retry-count")]` handler.
    async fn handle_capturing(&self, received: &Self::Message) -> Result<Handled, String>;
    /// Runs a `#[traced_consumer(group = GROUP)]` async handler that returns `Err(OutOfStock)`, named as
    /// [`BrokerFixture::HANDLE_FUNCTION`] with `_out_of_stock` after it.
    async fn handle_out_of_stock(&self, received: &Self::Message) -> Result<(), OutOfStock>;
    /// Runs a `#[traced_consumer(group = GROUP)]` sync handler that panics with `corrupt order {id}`, named as
    /// [`BrokerFixture::HANDLE_FUNCTION`] with `_panicking` after it.
    fn handle_panicking(&self, received: &Self::Message);
    /// Runs a `#[traced_consumer(group = GROUP)]` handler of a batch (`&[Self::Message]`), named as
    /// [`BrokerFixture::HANDLE_FUNCTION`] with `_batch` after it; returns the batch's length.
    fn handle_batch(&self, received: &[Self::Message]) -> usize;
    /// The attributes of the link a batch span has to the producer of `received`.
    fn link_attributes(&self, received: &Self::Message) -> Vec<opentelemetry::KeyValue>;
    /// The same handler, told to fail ([`FAILURE`]).
    async fn handle_failing(&self, received: &Self::Message) -> Result<Handled, String>;
    /// Leaves `received`, which a handler failed on, unsettled, as the handler's caller does (tracehop settles
    /// nothing, and asserts so where the broker can tell), and goes away: the destination's first subscriber is
    /// then a new one that gets the message again.
    async fn give_back(&self, destination: &mut Self::Destination, received: &Self::Message);
    /// Asserts that `again` is `first`, delivered again.
    fn assert_redelivery_of(&self, first: &Self::Message, again: &Self::Message);
    /// What the consumer span of a message delivered again says of that, beyond the first delivery's attributes.
    fn redelivery_attributes(&self) -> Attributes;
    /// Receives the next message of `subscriber` through the broker's traced consumer adapter
    /// (`ConsumerTracing::stream`, with receive spans when `receive_spans`) and runs [`handle_body`] on it in its
    /// span.
    async fn handle_by_client(
        &self,
        destination: &Self::Destination,
        subscriber: usize,
        receive_spans: bool,
    ) -> Result<Handled, String>;
    /// Runs a `#[traced_consumer(group = GROUP)]` handler that settles `received` through tracehop's settle call
    /// ([`BrokerFixture::SETTLE_OPERATION`]) and returns that call's outcome.
    async fn handle_and_settle(&self, destination: &Self::Destination, received: &Self::Message) -> Result<(), String>;
    /// What a producer span says of `message` beyond the system, operation, destination and function.
    fn sent_attributes(&self, message: &Outgoing<'_>) -> Vec<(&'static str, Value)>;
    /// What a consumer span says of `message`, as `received`, beyond the system, operation, destination, function,
    /// group and body size.
    fn received_attributes(&self, message: &Outgoing<'_>, received: &Self::Message) -> Vec<(&'static str, Value)>;
    /// What a settle span says of `message`, as `received`, beyond the system, operation and destination.
    fn settle_attributes(&self, message: &Outgoing<'_>, received: &Self::Message) -> Vec<(&'static str, Value)>;
}

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

/// The attributes of a producer span of `fixture`'s `#[traced_producer]` for `message` on `destination`.
fn producer_attributes<B: BrokerFixture>(
    fixture: &B,
    destination: &str,
    message: &Outgoing<'_>,
) -> Vec<(&'static str, Value)> {
    let mut want = vec![
        ("code.function.name", text(B::PUBLISH_FUNCTION)),
        ("messaging.system", text(B::SYSTEM)),
        ("messaging.operation.type", text("send")),
        ("messaging.operation.name", text("send")),
        ("messaging.destination.name", text(destination)),
    ];
    want.extend(fixture.sent_attributes(message));
    want
}

/// The attributes of a consumer span of `fixture`'s handler for `message`, as `received` on `destination`.
fn consumer_attributes<B: BrokerFixture>(
    fixture: &B,
    destination: &str,
    message: &Outgoing<'_>,
    received: &B::Message,
) -> Vec<(&'static str, Value)> {
    let mut want = vec![
        ("code.function.name", text(B::HANDLE_FUNCTION)),
        ("messaging.system", text(B::SYSTEM)),
        ("messaging.operation.type", text("process")),
        ("messaging.operation.name", text("process")),
        ("messaging.destination.name", text(destination)),
        ("messaging.consumer.group.name", text(GROUP)),
        ("messaging.message.body.size", Value::I64(message.payload.len() as i64)),
    ];
    want.extend(fixture.received_attributes(message, received));
    want
}

// ---- Round trip ----

/// A `#[traced_producer]` publish and a `#[traced_consumer]` handling of the message are one trace: the PRODUCER
/// span `send {destination}`, the CONSUMER span `process {destination}` its child (a remote parent) and linked to
/// it, the message carrying the producer span's `traceparent`, the handler's value passed back unchanged, and
/// spans the handler's body starts across an await children of the consumer span.
pub async fn round_trip<B: BrokerFixture>(fixture: &B) {
    let destination = fixture.destination("orders", 1).await;
    let name = fixture.name(&destination);
    let order = Outgoing { id: "order-7", payload: b"{\"id\":7}", headers: &[] };
    fixture.publish(&destination, &order).await;
    let received = fixture.receive(&destination, 0).await;
    let handled = fixture.handle(&received).await;

    let spans = spans_to(&name);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let producer = crate::the_span(&spans, SpanKind::Producer);
    let consumer = crate::the_span(&spans, SpanKind::Consumer);
    assert_eq!(producer.name, format!("send {name}"));
    assert_eq!(consumer.name, format!("process {name}"));
    assert_eq!(consumer.span_context.trace_id(), producer.span_context.trace_id());
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    assert!(consumer.parent_span_is_remote, "the producer's span is a remote parent");
    assert_eq!(consumer.links.links.len(), 1);
    assert_eq!(consumer.links.links[0].span_context.span_id(), producer.span_context.span_id());
    assert_eq!(consumer.links.links[0].span_context.trace_id(), producer.span_context.trace_id());
    assert_eq!(consumer.status, Status::Unset);
    assert_eq!(producer.status, Status::Unset);

    let traceparent = format!("00-{}-{}-01", producer.span_context.trace_id(), producer.span_context.span_id());
    assert_eq!(fixture.traceparent_of(&received), Some(traceparent.into_bytes()), "the message carries the context");
    assert_eq!(
        handled,
        Ok(Handled {
            id: order.id.to_owned(),
            payload: order.payload.to_vec(),
            trace_id: consumer.span_context.trace_id(),
            span_id: consumer.span_context.span_id(),
        }),
        "the handler ran under the consumer span, and its value is passed through unchanged"
    );
    assert_eq!(attributes(&producer), expected(&producer_attributes(fixture, &name, &order)));
    assert_eq!(attributes(&consumer), expected(&consumer_attributes(fixture, &name, &order, &received)));

    let child = crate::finished()
        .into_iter()
        .find(|span| span.name == BODY_SPAN && span.span_context.trace_id() == consumer.span_context.trace_id())
        .expect("the body's span is exported in the same trace");
    assert_eq!(child.parent_span_id, consumer.span_context.span_id());
}

// ---- Context fallback ----

/// What the consumer span of a [`Case`] must show.
#[derive(Clone, Debug)]
pub enum Expect {
    /// A new root trace with `tracehop.context.rejected` set to this exact code.
    NewRoot(&'static str),
    /// The header's trace continued: parent and link are the header's span, whose `tracestate` the consumer
    /// span carries as `tracestate` says, trimmed for the reason `trimmed` names
    /// (`tracehop.context.tracestate.trimmed`).
    Continued { trace_id: TraceId, span_id: SpanId, tracestate: String, trimmed: Option<&'static str> },
}

/// The header's trace continued, its `tracestate` (if any) passed on whole.
pub fn continued(trace_id: TraceId, span_id: SpanId, tracestate: &str) -> Expect {
    Expect::Continued { trace_id, span_id, tracestate: tracestate.to_owned(), trimmed: None }
}

/// The header's trace continued, its `tracestate` trimmed to `kept` for the reason `code`.
pub fn trimmed(trace_id: TraceId, span_id: SpanId, kept: &str, code: &'static str) -> Expect {
    Expect::Continued { trace_id, span_id, tracestate: kept.to_owned(), trimmed: Some(code) }
}

/// One message of the context-fallback table: its headers, and what its consumer span must show.
pub struct Case {
    /// Also the message's id ([`Outgoing::id`]), which matches a received message and its span to the case.
    pub name: &'static str,
    /// The message's headers, exactly.
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// The trace ids the `traceparent` headers carry, when they carry usable ones; a new root must not reuse
    /// them.
    pub written_trace_ids: Vec<TraceId>,
    /// What the consumer span must show.
    pub expect: Expect,
}

impl Case {
    /// The case's body.
    pub fn payload(&self) -> Vec<u8> {
        format!("payload of {}", self.name).into_bytes()
    }
}

/// Fresh, valid, distinct ids for every call, so no two cases (in any test) write the same trace id.
pub fn fresh_ids() -> (String, String, TraceId, SpanId) {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let trace = format!("4bf92f3577b34da6a3ce929d{n:08x}");
    let span = format!("00f067aa{n:08x}");
    let trace_id = TraceId::from_hex(&trace).expect("a valid trace id");
    let span_id = SpanId::from_hex(&span).expect("a valid span id");
    (trace, span, trace_id, span_id)
}

/// A tracestate of `members` valid list members, `member_len` bytes each, comma-separated.
fn tracestate(members: usize, member_len: usize) -> String {
    (0..members).map(|i| format!("k{i:02}={}", "v".repeat(member_len - 4))).collect::<Vec<_>>().join(",")
}

/// A case whose message must start a new root with `tracehop.context.rejected = code`.
pub fn rejected(
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    written_trace_ids: Vec<TraceId>,
    code: &'static str,
) -> Case {
    Case { name, headers, written_trace_ids, expect: Expect::NewRoot(code) }
}

/// A header `key: value`.
pub fn header(key: &'static str, value: impl Into<Vec<u8>>) -> (&'static str, Vec<u8>) {
    (key, value.into())
}

/// The context-fallback table every broker's headers can carry: missing, malformed and ambiguous `traceparent`s
/// (each a new root with its rejection code), `tracestate`s discarded or trimmed (the trace continues), and valid
/// controls (continued, their tracestate whole up to the exact limits), so each rejection assertion can fail.
/// Repeated header names are Kafka's and NATS's (an AMQP header table holds a name once):
/// `tests/kafka_context_fallback.rs`, `tests/nats.rs`.
pub fn fallback_cases() -> Vec<Case> {
    let mut cases = Vec::new();

    // Missing.
    cases.push(rejected("no-headers", vec![], vec![], "missing"));
    cases.push(rejected("unrelated-headers-only", vec![header("content-type", "application/json")], vec![], "missing"));
    // W3C: a tracestate without a traceparent is not a context.
    cases.push(rejected(
        "tracestate-without-traceparent",
        vec![header("tracestate", "congo=t61rcWkgMzE")],
        vec![],
        "missing",
    ));

    // Not UTF-8.
    let (t, s, id, _) = fresh_ids();
    let mut bytes = format!("00-{t}-{s}-01").into_bytes();
    bytes[54] = 0xff;
    cases.push(rejected("traceparent-not-utf8", vec![header("traceparent", bytes)], vec![id], "traceparent_not_utf8"));
    cases.push(rejected(
        "traceparent-binary-garbage",
        vec![header("traceparent", vec![0x80, 0x00, 0xc3, 0x28, 0xfe, 0xff])],
        vec![],
        "traceparent_not_utf8",
    ));

    // Wrong length, or fields out of place.
    cases.push(rejected("traceparent-empty", vec![header("traceparent", "")], vec![], "traceparent_wrong_length"));
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-short-span-id",
        vec![header("traceparent", format!("00-{t}-{}-01", &s[..15]))],
        vec![id],
        "traceparent_wrong_length",
    ));
    let (t, s, _, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-misplaced-dash",
        vec![header("traceparent", format!("00-{}-{}{s}-01", &t[..31], &t[31..]))],
        vec![],
        "traceparent_wrong_length",
    ));
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        // Spaces and tabs around the value are not part of it (tests/w3c_conformance.rs); a line break is.
        "traceparent-leading-line-break",
        vec![header("traceparent", format!("\n00-{t}-{s}-01"))],
        vec![id],
        "traceparent_wrong_length",
    ));

    // Bad hex.
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-non-hex-span-id",
        vec![header("traceparent", format!("00-{t}-{}g-01", &s[..15]))],
        vec![id],
        "traceparent_invalid_hex",
    ));
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-non-hex-flags",
        vec![header("traceparent", format!("00-{t}-{s}-0x"))],
        vec![id],
        "traceparent_invalid_hex",
    ));

    // Upper-case hex.
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-uppercase-trace-id",
        vec![header("traceparent", format!("00-{}-{s}-01", t.to_uppercase()))],
        vec![id],
        "traceparent_uppercase_hex",
    ));
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-uppercase-span-id",
        vec![header("traceparent", format!("00-{t}-{}-01", s.to_uppercase()))],
        vec![id],
        "traceparent_uppercase_hex",
    ));

    // Version ff.
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-version-ff",
        vec![header("traceparent", format!("ff-{t}-{s}-01"))],
        vec![id],
        "traceparent_invalid_version",
    ));

    // Trailing garbage.
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-v00-extra-field",
        vec![header("traceparent", format!("00-{t}-{s}-01-00"))],
        vec![id],
        "traceparent_trailing_data",
    ));
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-trailing-line-break",
        vec![header("traceparent", format!("00-{t}-{s}-01\n"))],
        vec![id],
        "traceparent_trailing_data",
    ));
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-trailing-nul",
        vec![header("traceparent", format!("00-{t}-{s}-01\0"))],
        vec![id],
        "traceparent_trailing_data",
    ));
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-future-version-no-dash",
        vec![header("traceparent", format!("cc-{t}-{s}-01x"))],
        vec![id],
        "traceparent_trailing_data",
    ));

    // All-zero ids.
    let (_, s, _, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-zero-trace-id",
        vec![header("traceparent", format!("00-{}-{s}-01", "0".repeat(32)))],
        vec![],
        "traceparent_zero_trace_id",
    ));
    let (t, _, id, _) = fresh_ids();
    cases.push(rejected(
        "traceparent-zero-span-id",
        vec![header("traceparent", format!("00-{t}-{}-01", "0".repeat(16)))],
        vec![id],
        "traceparent_zero_span_id",
    ));

    // A tracestate list that cannot be parsed is discarded whole, and one too long is truncated by whole members;
    // neither ever costs the trace (W3C: failure to parse `tracestate` MUST NOT affect the `traceparent`).
    let (t, s, trace_id, span_id) = fresh_ids();
    cases.push(Case {
        name: "tracestate-33-members",
        headers: vec![header("traceparent", format!("00-{t}-{s}-01")), header("tracestate", tracestate(33, 5))],
        written_trace_ids: vec![trace_id],
        expect: trimmed(trace_id, span_id, "", "too_many_members"),
    });
    let (t, s, trace_id, span_id) = fresh_ids();
    let long = format!("{}v", tracestate(27, 18));
    assert_eq!(long.len(), 513);
    cases.push(Case {
        name: "tracestate-513-bytes",
        headers: vec![header("traceparent", format!("00-{t}-{s}-01")), header("tracestate", long)],
        written_trace_ids: vec![trace_id],
        expect: trimmed(trace_id, span_id, &tracestate(26, 18), "oversized"),
    });
    let (t, s, trace_id, span_id) = fresh_ids();
    cases.push(Case {
        name: "tracestate-member-not-utf8",
        headers: vec![
            header("traceparent", format!("00-{t}-{s}-01")),
            header("tracestate", b"congo=\xfft61rcWkgMzE,rojo=00f067aa0ba902b7".to_vec()),
        ],
        written_trace_ids: vec![trace_id],
        expect: trimmed(trace_id, span_id, "", "malformed_member"),
    });
    let (t, s, trace_id, span_id) = fresh_ids();
    cases.push(Case {
        name: "tracestate-only-member-malformed",
        headers: vec![header("traceparent", format!("00-{t}-{s}-01")), header("tracestate", "Congo=t61rcWkgMzE")],
        written_trace_ids: vec![trace_id],
        expect: trimmed(trace_id, span_id, "", "malformed_member"),
    });

    // Controls: valid contexts are continued, their tracestate whole up to the exact limits.
    let (t, s, trace_id, span_id) = fresh_ids();
    cases.push(Case {
        name: "control-valid-with-tracestate",
        headers: vec![
            header("traceparent", format!("00-{t}-{s}-01")),
            header("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ],
        written_trace_ids: vec![trace_id],
        expect: continued(trace_id, span_id, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
    });
    let (t, s, trace_id, span_id) = fresh_ids();
    cases.push(Case {
        name: "control-tracestate-32-members",
        headers: vec![header("traceparent", format!("00-{t}-{s}-01")), header("tracestate", tracestate(32, 5))],
        written_trace_ids: vec![trace_id],
        expect: continued(trace_id, span_id, &tracestate(32, 5)),
    });
    let (t, s, trace_id, span_id) = fresh_ids();
    let longest = tracestate(27, 18);
    assert_eq!(longest.len(), 512);
    cases.push(Case {
        name: "control-tracestate-512-bytes",
        headers: vec![header("traceparent", format!("00-{t}-{s}-01")), header("tracestate", longest.clone())],
        written_trace_ids: vec![trace_id],
        expect: continued(trace_id, span_id, &longest),
    });

    let (t, s, trace_id, span_id) = fresh_ids();
    cases.push(Case {
        name: "control-future-version-with-extra-fields",
        headers: vec![header("traceparent", format!("cc-{t}-{s}-01-what-the-future-holds"))],
        written_trace_ids: vec![trace_id],
        expect: continued(trace_id, span_id, ""),
    });

    let names: HashSet<_> = cases.iter().map(|case| case.name).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    cases
}

/// Asserts everything the consumer span of `case` (the one on `destination` whose `id_attribute` is the case's
/// name) and the handler's result must show, `want` being the span's attributes before the context's own
/// (`tracehop.context.*`); returns the span.
pub fn check_case(
    case: &Case,
    destination: &str,
    id_attribute: &str,
    handled: Result<Handled, String>,
    mut want: Vec<(&'static str, Value)>,
) -> SpanData {
    let name = case.name;
    let mut spans: Vec<SpanData> = spans_to(destination)
        .into_iter()
        .filter(|span| attribute(span, id_attribute) == Some(Value::from(name)))
        .collect();
    assert_eq!(spans.len(), 1, "{name}: exactly one span for the message: {spans:#?}");
    let span = spans.remove(0);

    assert_eq!(span.span_kind, SpanKind::Consumer, "{name}: span kind");
    assert_eq!(span.name, format!("process {destination}"), "{name}: span name");
    assert_eq!(span.status, Status::Unset, "{name}: status");
    assert_eq!(
        handled,
        Ok(Handled {
            id: name.to_owned(),
            payload: case.payload(),
            trace_id: span.span_context.trace_id(),
            span_id: span.span_context.span_id(),
        }),
        "{name}: the handler ran, under the consumer span, and its value came back unchanged"
    );

    match case.expect {
        Expect::NewRoot(code) => {
            assert_eq!(span.parent_span_id, SpanId::INVALID, "{name}: a new root has no parent");
            assert!(!span.parent_span_is_remote, "{name}: no remote parent");
            assert!(span.links.links.is_empty(), "{name}: a new root links to nothing: {:?}", span.links.links);
            assert!(span.span_context.is_valid(), "{name}: a valid new trace");
            for &written in &case.written_trace_ids {
                assert_ne!(span.span_context.trace_id(), written, "{name}: the header's trace is not continued");
                let continued = spans_of_trace(written);
                assert!(continued.is_empty(), "{name}: no span joined the header's trace: {continued:#?}");
            }
            assert_eq!(
                attribute(&span, "tracehop.context.rejected"),
                Some(Value::from(code)),
                "{name}: the rejection code"
            );
            want.push(("tracehop.context.rejected", Value::from(code)));
        }
        Expect::Continued { trace_id, span_id, ref tracestate, trimmed } => {
            assert_eq!(span.span_context.trace_id(), trace_id, "{name}: continues the header's trace");
            assert_eq!(span.parent_span_id, span_id, "{name}: parent is the header's span");
            assert!(span.parent_span_is_remote, "{name}: remote parent");
            assert_eq!(span.links.links.len(), 1, "{name}: one link");
            assert_eq!(span.links.links[0].span_context.trace_id(), trace_id, "{name}: link trace id");
            assert_eq!(span.links.links[0].span_context.span_id(), span_id, "{name}: link span id");
            assert_eq!(
                attribute(&span, "tracehop.context.rejected"),
                None,
                "{name}: a continued context records no rejection"
            );
            assert_eq!(&span.span_context.trace_state().header(), tracestate, "{name}: the tracestate passed on");
            assert_eq!(span.links.links[0].span_context.trace_state().header(), *tracestate, "{name}: link tracestate");
            if let Some(code) = trimmed {
                want.push(("tracehop.context.tracestate.trimmed", Value::from(code)));
            }
        }
    }
    assert_eq!(attributes(&span), expected(&want), "{name}: the span's attributes");
    span
}

/// Checks every handled case ([`check_case`]; each result is a case, the handler's result and the span's
/// attributes before the context's own), that `destination` has one span per message and that every new root is
/// its own trace (no two rejected messages share one).
pub fn verify_cases(
    destination: &str,
    id_attribute: &str,
    cases: &[Case],
    results: Vec<(&Case, Result<Handled, String>, Attributes)>,
) {
    assert_eq!(results.len(), cases.len(), "every case was handled");
    let mut new_roots = HashSet::new();
    for (case, handled, want) in results {
        let span = check_case(case, destination, id_attribute, handled, want);
        if let Expect::NewRoot(_) = &case.expect {
            assert!(
                new_roots.insert(span.span_context.trace_id()),
                "{}: its new root trace id is shared with another message",
                case.name
            );
        }
    }
    let spans = spans_to(destination);
    assert_eq!(spans.len(), cases.len(), "one span per message, nothing else: {spans:#?}");
}

/// Missing or bad trace context is not an error. A foreign or broken producer publishes every case of
/// [`fallback_cases`] with exactly its headers; the fixture's `#[traced_consumer]` handles each. Every malformed,
/// missing or ambiguous `traceparent` gives a CONSUMER span that starts a new root trace, records why in
/// `tracehop.context.rejected`, runs the handler and returns its value unchanged; a bad `tracestate` costs only
/// itself; the valid controls continue the producer's trace with their tracestate whole.
pub async fn context_fallback<B: BrokerFixture>(fixture: &B) {
    context_fallback_of(fixture, fallback_cases()).await;
}

/// [`context_fallback`] with `cases`: the ones of [`fallback_cases`] a broker's headers can carry.
pub async fn context_fallback_of<B: BrokerFixture>(fixture: &B, cases: Vec<Case>) {
    let destination = fixture.destination("fallback", 1).await;
    let name = fixture.name(&destination);
    for case in &cases {
        let headers: Vec<(&str, &[u8])> = case.headers.iter().map(|(key, value)| (*key, value.as_slice())).collect();
        let payload = case.payload();
        fixture.publish_raw(&destination, &Outgoing { id: case.name, payload: &payload, headers: &headers }).await;
    }

    let mut seen = HashSet::new();
    let mut results = Vec::new();
    for _ in 0..cases.len() {
        let received = fixture.receive(&destination, 0).await;
        let id = fixture.id_of(&received);
        let case = cases.iter().find(|case| case.name == id).unwrap_or_else(|| panic!("an unknown message {id:?}"));
        assert!(seen.insert(case.name), "{id}: received twice");
        let handled = fixture.handle(&received).await;
        let payload = case.payload();
        let message = Outgoing { id: case.name, payload: &payload, headers: &[] };
        results.push((case, handled, consumer_attributes(fixture, &name, &message, &received)));
    }
    verify_cases(&name, B::ID_ATTRIBUTE, &cases, results);
}

// ---- Clients and macros ----

/// The same message, traced by the macros and by the broker's traced clients, gives the same spans. Both publish
/// it under one request span; one subscriber handles each copy with the `#[traced_consumer]` handler, the other
/// with the client adapter. Both producer spans continue the request and say the same of the message (the
/// client's also what the broker answered); each publish's two handlings have the same shape, children of it
/// and linked to it, named as the macro names its handler.
pub async fn clients_and_macros_agree<B: BrokerFixture>(fixture: &B) {
    let destination = fixture.destination("same", 2).await;
    let name = fixture.name(&destination);
    let order = Outgoing { id: "ord-1", payload: b"{}", headers: &[] };

    let request = global::tracer("api").start("POST /orders");
    let request = Context::current_with_span(request);
    let delivered = {
        let _current = request.clone().attach();
        fixture.publish(&destination, &order).await;
        fixture.publish_by_client(&destination, &order).await
    };
    request.span().end();

    for _ in 0..2 {
        let by_macro = fixture.handle(&fixture.receive(&destination, 0).await).await;
        assert_eq!(by_macro.map(|handled| handled.id), Ok(order.id.to_owned()), "handled by the macro");
        let by_client = fixture.handle_by_client(&destination, 1, false).await;
        assert_eq!(by_client.map(|handled| handled.id), Ok(order.id.to_owned()), "handled by the client");
    }

    let spans = spans_to(&name);
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let request_span = crate::finished_span(request.span().span_context().span_id());
    let producer_shape = |attributes: Vec<(&'static str, Value)>| Shape {
        name: format!("send {name}"),
        kind: SpanKind::Producer,
        child_of_origin: true,
        links_to_origin: Vec::new(),
        status: Status::Unset,
        attributes: expected(&attributes),
    };
    let by_macro = producer_shape(producer_attributes(fixture, &name, &order));
    let by_client = producer_shape([producer_attributes(fixture, &name, &order), delivered].concat());
    let producers: Vec<&SpanData> = spans.iter().filter(|span| span.span_kind == SpanKind::Producer).collect();
    let mut shapes: Vec<Shape> = producers.iter().map(|span| crate::shape(span, &request_span)).collect();
    shapes.sort_by_key(|shape| shape.attributes.len());
    assert_eq!(shapes, vec![by_macro, by_client], "the macro's producer span, then the client's");

    for producer in producers {
        let consumers = crate::handlings_of(&spans, producer);
        assert_eq!(consumers.len(), 2, "the macro's and the adapter's: {consumers:#?}");
        let (first, second) = (crate::shape(&consumers[0], producer), crate::shape(&consumers[1], producer));
        assert_eq!(first, second);
        assert_eq!(first.name, format!("process {name}"));
        assert_eq!(first.kind, SpanKind::Consumer);
        assert!(first.child_of_origin && first.links_to_origin == vec![true], "{first:#?}");
        for consumer in &consumers {
            assert_eq!(
                attribute(consumer, "code.function.name"),
                Some(text(B::HANDLE_FUNCTION)),
                "both named as the macro names its handler"
            );
        }
    }
}

// ---- Settle spans ----

/// A settle inside a handler (a Kafka commit, an AMQP ack) is a CLIENT span `{operation} {destination}`, a child
/// of the consumer span in its trace, `messaging.operation.type = settle`, and its outcome is the call's.
pub async fn settle_inside_a_handler<B: BrokerFixture>(fixture: &B) {
    let destination = fixture.destination("settle", 1).await;
    let name = fixture.name(&destination);
    let message = Outgoing { id: "settled", payload: b"ok", headers: &[("traceparent", TRACEPARENT.as_bytes())] };
    fixture.publish_raw(&destination, &message).await;
    let received = fixture.receive(&destination, 0).await;
    assert_eq!(fixture.handle_and_settle(&destination, &received).await, Ok(()));

    let spans = spans_to(&name);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let (consumer, settle) = (crate::the_span(&spans, SpanKind::Consumer), crate::the_span(&spans, SpanKind::Client));
    assert_eq!(settle.name, format!("{} {name}", B::SETTLE_OPERATION));
    assert_eq!(settle.parent_span_id, consumer.span_context.span_id());
    assert_eq!(settle.span_context.trace_id(), consumer.span_context.trace_id());
    assert_eq!(consumer.span_context.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
    let mut want = vec![
        ("messaging.system", text(B::SYSTEM)),
        ("messaging.operation.type", text("settle")),
        ("messaging.operation.name", text(B::SETTLE_OPERATION)),
        ("messaging.destination.name", text(&name)),
    ];
    want.extend(fixture.settle_attributes(&message, &received));
    assert_eq!(attributes(&settle), expected(&want));
    assert_eq!(settle.status, Status::Unset);
    assert_eq!(consumer.status, Status::Unset);
}

// ---- Metrics ----

/// A handler's processing duration is recorded once per message, on success and on failure (with the error's
/// type); a message's age only when it carries a timestamp.
pub async fn process_duration_is_recorded_on_success_and_failure<B: BrokerFixture>(fixture: &B) {
    use crate::{metric_points, MetricPoint, AGE_BOUNDARIES, DURATION_BOUNDARIES};
    crate::metrics();
    let destination = fixture.destination("metrics", 1).await;
    let name = fixture.name(&destination);
    for payload in [&b"ok"[..], b"fail"] {
        fixture.publish_raw(&destination, &Outgoing { id: "m", payload, headers: &[] }).await;
    }
    let first = fixture.handle(&fixture.receive(&destination, 0).await).await;
    assert_eq!(first.map(|handled| handled.payload), Ok(b"ok".to_vec()));
    let second = fixture.handle(&fixture.receive(&destination, 0).await).await;
    assert_eq!(second, Err("refused".to_owned()));

    let succeeded = [
        ("messaging.system", text(B::SYSTEM)),
        ("messaging.operation.name", text("process")),
        ("messaging.consumer.group.name", text(GROUP)),
        ("messaging.destination.name", text(&name)),
    ];
    let failed: Vec<_> = succeeded.iter().cloned().chain([("error.type", text("alloc::string::String"))]).collect();
    let histogram = |metric: &str, bounds: &[f64], count: u64, attributes: &[(&str, Value)]| MetricPoint {
        name: metric.to_owned(),
        unit: "s".to_owned(),
        kind: "histogram",
        attributes: expected(attributes),
        bounds: bounds.to_vec(),
        count,
    };
    let mut points = metric_points("messaging.process.duration", &name);
    points.sort_by_key(|point| point.attributes.len());
    assert_eq!(
        points,
        vec![
            histogram("messaging.process.duration", &DURATION_BOUNDARIES, 1, &succeeded),
            histogram("messaging.process.duration", &DURATION_BOUNDARIES, 1, &failed),
        ]
    );
    let ages = if B::TIMESTAMPS_MESSAGES {
        vec![histogram("tracehop.message.age", &AGE_BOUNDARIES, 2, &succeeded)]
    } else {
        Vec::new() // the messages carried no timestamp
    };
    assert_eq!(metric_points("tracehop.message.age", &name), ages);
}

/// Every consumed message counts once in `tracehop.consumer.context`, by what became of its context, sampled or
/// not: `continued` (a sampled and an unsampled producer, and a message of the traced consumer adapter), `linked`
/// (by a `parent = "link"` handler, and each message of a batch with a valid context), `not_read`
/// (`parent = "none"`), `missing`, and `rejected` with the reason the span records, per system, group and
/// destination. The spans of a batch's messages (`MessageSpan::in_batch`) and producers count nothing.
pub async fn consumer_context_outcomes_are_counted<B: BrokerFixture>(fixture: &B)
where
    B::Message: tracehop::ConsumedMessage,
{
    use crate::{metric_points, MetricPoint};
    use tracehop::{Handler, MessageSpan, ParentPolicy};
    static LINKING: Handler = Handler::consumer("suite::behaviour::linking").group(GROUP).parent(ParentPolicy::Link);
    static NOT_READING: Handler =
        Handler::consumer("suite::behaviour::not_reading").group(GROUP).parent(ParentPolicy::None);
    static BATCHING: Handler = Handler::consumer("suite::behaviour::batching").group(GROUP);
    crate::metrics();
    let destination = fixture.destination("contexts", 1).await;
    let name = fixture.name(&destination);
    let unsampled: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let uppercase: &[u8] = b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";
    for id in ["continued", "linked", "not-read"] {
        fixture.publish(&destination, &Outgoing { id, payload: b"{}", headers: &[] }).await;
    }
    let raw = [
        Outgoing { id: "unsampled", payload: b"{}", headers: &[("traceparent", unsampled)] },
        Outgoing { id: "missing", payload: b"{}", headers: &[] },
        Outgoing { id: "short-1", payload: b"{}", headers: &[("traceparent", b"00-XYZ")] },
        Outgoing { id: "short-2", payload: b"{}", headers: &[("traceparent", b"00-XYZ")] },
        Outgoing { id: "uppercase", payload: b"{}", headers: &[("traceparent", uppercase)] },
    ];
    for message in &raw {
        fixture.publish_raw(&destination, message).await;
    }
    for _ in 0..8 {
        let received = fixture.receive(&destination, 0).await;
        match fixture.id_of(&received).as_str() {
            "linked" => MessageSpan::consumer(&LINKING, &received).start().run(|| ()),
            "not-read" => MessageSpan::consumer(&NOT_READING, &received).start().run(|| ()),
            _ => assert!(fixture.handle(&received).await.is_ok()),
        }
    }
    // A batch: two valid contexts (linked), one missing, one rejected; the spans of its messages count nothing more.
    for id in ["batch-1", "batch-2"] {
        fixture.publish(&destination, &Outgoing { id, payload: b"{}", headers: &[] }).await;
    }
    fixture.publish_raw(&destination, &Outgoing { id: "batch-missing", payload: b"{}", headers: &[] }).await;
    let short = Outgoing { id: "batch-short", payload: b"{}", headers: &[("traceparent", b"00-XYZ")] };
    fixture.publish_raw(&destination, &short).await;
    let mut batch = Vec::new();
    for _ in 0..4 {
        batch.push(fixture.receive(&destination, 0).await);
    }
    MessageSpan::consumer_batch(&BATCHING, &batch).start().run(|| {
        for message in &batch {
            MessageSpan::in_batch(message).start().run(|| ());
        }
    });
    // Through the broker's traced consumer adapter (`ConsumerTracing`): continued (last: on RabbitMQ it consumes
    // the queue).
    fixture.publish(&destination, &Outgoing { id: "by-client", payload: b"{}", headers: &[] }).await;
    assert!(fixture.handle_by_client(&destination, 0, false).await.is_ok());

    let counter = |count: u64, outcome: &str, rejected: Option<&str>| {
        let mut attributes = vec![
            ("messaging.system", text(B::SYSTEM)),
            ("messaging.consumer.group.name", text(GROUP)),
            ("messaging.destination.name", text(&name)),
            ("tracehop.context.outcome", text(outcome)),
        ];
        attributes.extend(rejected.map(|reason| ("tracehop.context.rejected", text(reason))));
        MetricPoint {
            name: "tracehop.consumer.context".to_owned(),
            unit: "{message}".to_owned(),
            kind: "counter",
            attributes: expected(&attributes),
            bounds: Vec::new(),
            count,
        }
    };
    let mut points = metric_points("tracehop.consumer.context", &name);
    points.sort_by(|a, b| format!("{:?}", a.attributes).cmp(&format!("{:?}", b.attributes)));
    let mut want = vec![
        counter(3, "continued", None),
        counter(3, "linked", None),
        counter(1, "not_read", None),
        counter(2, "missing", Some("missing")),
        counter(3, "rejected", Some("traceparent_wrong_length")),
        counter(1, "rejected", Some("traceparent_uppercase_hex")),
    ];
    want.sort_by(|a, b| format!("{:?}", a.attributes).cmp(&format!("{:?}", b.attributes)));
    assert_eq!(points, want);
}

// ---- Redelivery ----

/// At-least-once stays the caller's: a handler that fails leaves its message unsettled (tracehop settles nothing);
/// the caller goes away, a new subscriber gets the message again, and the second handling continues the same
/// producer trace. Both handlings are children of the producer span and linked to it; the first failed (status and
/// `error.type`), the second says what the broker tells of a redelivery.
pub async fn redelivery_after_a_failure_continues_the_trace<B: BrokerFixture>(fixture: &B) {
    let mut destination = fixture.destination("redelivery", 1).await;
    let name = fixture.name(&destination);
    let order = Outgoing { id: "order-9", payload: b"order", headers: &[] };
    fixture.publish(&destination, &order).await;

    let first = fixture.receive(&destination, 0).await;
    assert_eq!(fixture.handle_failing(&first).await, Err(FAILURE.to_owned()));
    fixture.give_back(&mut destination, &first).await;
    let again = fixture.receive(&destination, 0).await;
    fixture.assert_redelivery_of(&first, &again);
    let handled = fixture.handle(&again).await;
    assert_eq!(handled.map(|handled| (handled.id, handled.payload)), Ok((order.id.to_owned(), order.payload.to_vec())));

    let spans = spans_to(&name);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let producer = crate::the_span(&spans, SpanKind::Producer);
    let handlings = crate::handlings_of(&spans, &producer);
    assert_eq!(handlings.len(), 2, "{spans:#?}");
    for handling in &handlings {
        crate::assert_child_of(handling, &producer);
        assert_eq!(handling.name, format!("process {name}"));
    }
    assert_eq!(handlings[0].status, Status::error(FAILURE));
    assert_eq!(handlings[1].status, Status::Unset);
    let mut failed = consumer_attributes(fixture, &name, &order, &first);
    failed.push(("error.type", text("alloc::string::String")));
    assert_eq!(attributes(&handlings[0]), expected(&failed));
    let mut redelivered = consumer_attributes(fixture, &name, &order, &again);
    redelivered.extend(fixture.redelivery_attributes());
    assert_eq!(attributes(&handlings[1]), expected(&redelivered));
}

// ---- The client adapter and a bad context ----

/// A malformed `traceparent` through the broker's consumer adapter, with receive spans: the CONSUMER span is a new
/// root that says why, linked to nothing, and the CLIENT span `receive {destination}` has no context to link to.
pub async fn a_malformed_context_through_the_client_adapter_gives_a_new_root<B: BrokerFixture>(fixture: &B) {
    let destination = fixture.destination("client-malformed", 1).await;
    let name = fixture.name(&destination);
    let malformed = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0";
    fixture
        .publish_raw(&destination, &Outgoing { id: "k", payload: b"p", headers: &[("traceparent", malformed)] })
        .await;
    let handled = fixture.handle_by_client(&destination, 0, true).await.expect("the handler ran");

    let spans = spans_to(&name);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let consumer = crate::the_span(&spans, SpanKind::Consumer);
    assert_eq!((handled.trace_id, handled.span_id), crate::ids(&consumer), "the body ran under the consumer span");
    assert_eq!(consumer.name, format!("process {name}"));
    assert_eq!(consumer.parent_span_id, SpanId::INVALID);
    assert_ne!(consumer.span_context.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
    assert!(consumer.links.links.is_empty());
    assert_eq!(attribute(&consumer, "tracehop.context.rejected"), Some(text("traceparent_wrong_length")));
    assert_eq!(attribute(&consumer, "code.function.name"), Some(text(B::HANDLE_FUNCTION)));
    let receive = crate::the_span(&spans, SpanKind::Client);
    assert_eq!(receive.name, format!("receive {name}"));
    assert!(receive.links.links.is_empty(), "no valid context to link to");
    assert_eq!(attribute(&receive, "messaging.operation.type"), Some(text("receive")));
}

// ---- The message's age ----

/// A consumer span's `tracehop.message.age_ms` is the time since the message's timestamp, to the broker's
/// resolution, and 0 for a timestamp in the future (the producer's clock ahead).
pub async fn a_message_s_age_is_the_time_since_its_timestamp_and_never_negative<B: BrokerFixture>(fixture: &B) {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let millis = |at: SystemTime| at.duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64;
    let destination = fixture.destination("age", 1).await;
    let name = fixture.name(&destination);
    let old = Outgoing { id: "old", payload: b"old", headers: &[] };
    let sent_at = fixture.publish_raw_at(&destination, &old, SystemTime::now() - Duration::from_secs(60)).await;
    let future = Outgoing { id: "future", payload: b"future", headers: &[] };
    fixture.publish_raw_at(&destination, &future, SystemTime::now() + Duration::from_secs(3600)).await;
    let before = millis(SystemTime::now());
    for _ in 0..2 {
        fixture.handle(&fixture.receive(&destination, 0).await).await.expect("handled");
    }
    let after = millis(SystemTime::now());

    let spans = spans_to(&name);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let age_of = |id: &str| {
        let span = spans.iter().find(|span| attribute(span, B::ID_ATTRIBUTE) == Some(text(id))).expect("its span");
        match attribute(span, "tracehop.message.age_ms") {
            Some(Value::I64(age)) => age,
            other => panic!("no age on {id}: {other:?}"),
        }
    };
    let old_age = age_of("old");
    assert!((before - sent_at..=after - sent_at).contains(&old_age), "{old_age}");
    assert_eq!(age_of("future"), 0, "a timestamp in the future reads as no wait");
}

// ---- Captured headers ----

/// A handler's `capture_headers` records the headers it names as `messaging.header.<name>` string arrays (names
/// lower-cased, `-` as `_`, the values of names alike in any case together), and its `attempt_header` as
/// `tracehop.message.attempt`; its `exclude_headers` win, and a protected header (`x-api-key`, the trace context)
/// is recorded only when a pattern names it exactly (`Authorization`).
pub async fn chosen_headers_and_the_attempt_are_recorded_and_protected_ones_are_not<B: BrokerFixture>(fixture: &B) {
    let destination = fixture.destination("headers", 1).await;
    let name = fixture.name(&destination);
    // In the byte order of their names, the order an AMQP header table keeps: every broker hands them over alike.
    let headers: [(&str, &[u8]); 8] = [
        ("Authorization", b"Bearer s3cret"),
        ("X-Tenant", b"globex"),
        ("content-type", b"application/json"),
        ("traceparent", TRACEPARENT.as_bytes()),
        ("x-api-key", b"k-123"),
        ("x-internal-route", b"blue"),
        ("x-retry-count", b"3"),
        ("x-tenant", b"acme"),
    ];
    let message = Outgoing { id: "headers", payload: b"{}", headers: &headers };
    fixture.publish_raw(&destination, &message).await;
    fixture.handle_capturing(&fixture.receive(&destination, 0).await).await.expect("handled");

    let span = crate::the_span(&spans_to(&name), SpanKind::Consumer);
    let mut captured: Vec<_> =
        attributes(&span).into_iter().filter(|(key, _)| key.starts_with("messaging.header.")).collect();
    // Without an order across names, one of their own: the order the expectation below lists (reverse byte order).
    if !B::ORDERS_HEADER_NAMES {
        for (_, value) in &mut captured {
            if let Value::Array(opentelemetry::Array::String(values)) = value {
                values.sort_by(|a, b| a.as_str().cmp(b.as_str()).reverse());
            }
        }
    }
    let strings = |values: &[&str]| {
        Value::Array(opentelemetry::Array::String(values.iter().map(|v| (*v).to_owned().into()).collect()))
    };
    assert_eq!(
        captured,
        expected(&[
            ("messaging.header.x_tenant", strings(&["globex", "acme"])),
            ("messaging.header.x_retry_count", strings(&["3"])),
            ("messaging.header.authorization", strings(&["Bearer s3cret"])),
        ])
    );
    assert_eq!(attribute(&span, "tracehop.message.attempt"), Some(Value::I64(3)));
}

// ---- A handler's error and panic ----

/// A handler's `Err` marks its span failed (status, `error.type`, an `exception` event) and comes back to the
/// caller unchanged; a panic marks it failed too and goes on unwinding. tracehop settles nothing: the caller gives
/// the message back, and both handlings are children of the producer span, linked to it.
pub async fn a_handlers_error_and_panic_are_recorded_and_reach_the_caller<B: BrokerFixture>(fixture: &B) {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let mut destination = fixture.destination("failing", 1).await;
    let name = fixture.name(&destination);
    let order = Outgoing { id: "order-13", payload: b"{}", headers: &[] };
    fixture.publish(&destination, &order).await;

    let first = fixture.receive(&destination, 0).await;
    assert_eq!(fixture.handle_out_of_stock(&first).await, Err(OutOfStock));
    fixture.give_back(&mut destination, &first).await;
    let again = fixture.receive(&destination, 0).await;
    fixture.assert_redelivery_of(&first, &again);
    let panic = catch_unwind(AssertUnwindSafe(|| fixture.handle_panicking(&again))).expect_err("the panic goes on");
    assert_eq!(panic.downcast_ref::<String>(), Some(&format!("corrupt order {}", order.id)));

    let spans = spans_to(&name);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let producer = crate::the_span(&spans, SpanKind::Producer);
    let handlings = crate::handlings_of(&spans, &producer);
    assert_eq!(handlings.len(), 2, "{spans:#?}");
    let (failed, panicked) = (&handlings[0], &handlings[1]);
    for handling in [failed, panicked] {
        crate::assert_child_of(handling, &producer);
    }
    let function = |handler: &str| Some(text(&format!("{}_{handler}", B::HANDLE_FUNCTION)));
    assert_eq!(attribute(failed, "code.function.name"), function("out_of_stock"));
    assert_eq!(attribute(panicked, "code.function.name"), function("panicking"));
    assert_eq!(failed.status, Status::error("out of stock"));
    assert_eq!(attribute(failed, "error.type"), Some(text("suite::behaviour::OutOfStock")));
    let events: Vec<_> =
        failed.events.events.iter().map(|event| (event.name.clone(), event.attributes.clone())).collect();
    assert_eq!(
        events,
        vec![(
            "exception".into(),
            vec![
                opentelemetry::KeyValue::new("exception.type", "suite::behaviour::OutOfStock"),
                opentelemetry::KeyValue::new("exception.message", "out of stock"),
            ]
        )]
    );
    assert_eq!(panicked.status, Status::error(format!("panicked: corrupt order {}", order.id)));
    assert_eq!(attribute(panicked, "error.type"), Some(text("panic")));
}

// ---- Batches ----

/// A batch handler's span is one CONSUMER span `process {destination}`, a root of its own, counting the batch's
/// messages and linked to each message's producer (each publish a trace of its own, and a foreign context), each
/// link saying which message it is; a message with no context, or a malformed one, is counted and not linked.
pub async fn a_batch_from_several_traces_is_one_span_linked_to_each_producer<B: BrokerFixture>(fixture: &B) {
    let destination = fixture.destination("fan-in", 1).await;
    let name = fixture.name(&destination);
    for id in ["a", "b", "c"] {
        // No span is current: each publish is the root of a trace of its own.
        fixture.publish(&destination, &Outgoing { id, payload: b"{}", headers: &[] }).await;
    }
    fixture.publish_raw(&destination, &Outgoing { id: "missing", payload: b"{}", headers: &[] }).await;
    let malformed = Outgoing { id: "malformed", payload: b"{}", headers: &[("traceparent", b"00-XYZ")] };
    fixture.publish_raw(&destination, &malformed).await;
    let foreign = Outgoing { id: "foreign", payload: b"{}", headers: &[("traceparent", TRACEPARENT.as_bytes())] };
    fixture.publish_raw(&destination, &foreign).await;
    let mut received = Vec::new();
    for _ in 0..6 {
        received.push(fixture.receive(&destination, 0).await);
    }
    let ids: Vec<String> = received.iter().map(|message| fixture.id_of(message)).collect();
    assert_eq!(ids, ["a", "b", "c", "missing", "malformed", "foreign"], "received in the order published");

    assert_eq!(fixture.handle_batch(&received), 6);

    let spans = spans_to(&name);
    assert_eq!(spans.len(), 4, "three producer spans and the batch's: {spans:#?}");
    let producers: Vec<&SpanData> = spans.iter().filter(|span| span.span_kind == SpanKind::Producer).collect();
    let traces: HashSet<TraceId> = producers.iter().map(|span| span.span_context.trace_id()).collect();
    assert_eq!(traces.len(), 3, "three different traces");
    let batch = crate::the_span(&spans, SpanKind::Consumer);
    assert_eq!(batch.name, format!("process {name}"));
    assert_eq!(batch.parent_span_id, SpanId::INVALID, "a batch span has no producer parent");
    assert!(!traces.contains(&batch.span_context.trace_id()));
    assert_eq!(attribute(&batch, "code.function.name"), Some(text(&format!("{}_batch", B::HANDLE_FUNCTION))));
    assert_eq!(attribute(&batch, "messaging.batch.message_count"), Some(Value::I64(6)));
    assert_eq!(attribute(&batch, "messaging.destination.name"), Some(text(&name)));
    assert_eq!(attribute(&batch, "messaging.consumer.group.name"), Some(text(GROUP)));
    assert_eq!(attribute(&batch, "tracehop.links.dropped"), None);

    let links: Vec<(TraceId, SpanId, Vec<opentelemetry::KeyValue>)> = batch
        .links
        .links
        .iter()
        .map(|link| (link.span_context.trace_id(), link.span_context.span_id(), link.attributes.clone()))
        .collect();
    let mut expected_links: Vec<(TraceId, SpanId, Vec<opentelemetry::KeyValue>)> = received[..3]
        .iter()
        .map(|message| {
            let id = fixture.id_of(message);
            let producer = producers
                .iter()
                .find(|span| attribute(span, B::ID_ATTRIBUTE) == Some(text(&id)))
                .expect("the message's producer span");
            (producer.span_context.trace_id(), producer.span_context.span_id(), fixture.link_attributes(message))
        })
        .collect();
    expected_links.push((
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        fixture.link_attributes(&received[5]),
    ));
    assert_eq!(links, expected_links);
}
