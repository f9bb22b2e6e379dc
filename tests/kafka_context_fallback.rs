//! Missing or bad trace context is not an error. A foreign or broken producer publishes straight through
//! rdkafka (no tracehop) onto the embedded broker with crafted headers; a real consumer receives each message and
//! hands it to a #[traced_consumer] handler. Every malformed, missing or ambiguous `traceparent` must give a
//! CONSUMER span that starts a new root trace, records why in `tracehop.context.rejected`, runs the handler and
//! returns its value unchanged, without panicking and without logging above `debug`. A `tracestate` that cannot
//! be parsed is discarded whole, one too long truncated by whole members: the trace continues and the span
//! records why in `tracehop.context.tracestate.trimmed`. Valid controls (including the exact tracestate limits) must continue
//! the producer's trace with its tracestate whole, so each rejection assertion can fail.
//!
//! Joining a consumer group on the mock cluster takes seconds, so each test publishes the whole table onto one
//! topic and reads it with one consumer, matching every message to its case by key.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer};
use opentelemetry::{global, Context, Value};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use suite::{attribute, attributes, expected, spans_of_trace, spans_to, Broker, CapturedLogs};

/// What a handler saw and returns: the message it was given and the span it ran under.
#[derive(Debug, Clone, PartialEq)]
struct Handled {
    key: String,
    payload: Vec<u8>,
    trace_id: TraceId,
    span_id: SpanId,
}

fn handle<M: Message>(message: &M) -> Handled {
    let context = Context::current();
    let span = context.span();
    let current = span.span_context();
    Handled {
        key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
        payload: message.payload().unwrap_or_default().to_vec(),
        trace_id: current.trace_id(),
        span_id: current.span_id(),
    }
}

#[tracehop::traced_consumer(group = "fallback-owned-ref")]
async fn on_owned_ref(message: &OwnedMessage) -> Result<Handled, String> {
    tokio::task::yield_now().await;
    Ok(handle(message))
}

#[tracehop::traced_consumer(group = "fallback-borrowed")]
fn on_borrowed(message: &BorrowedMessage<'_>) -> Result<Handled, String> {
    Ok(handle(message))
}

#[tracehop::traced_consumer(group = "fallback-owned-value")]
async fn on_owned_value(message: OwnedMessage) -> Result<Handled, String> {
    tokio::task::yield_now().await;
    Ok(handle(&message))
}

/// What the consumer span of a case must show.
#[derive(Clone, Debug)]
enum Expect {
    /// A new root trace with `tracehop.context.rejected` set to this exact code.
    NewRoot(&'static str),
    /// The header's trace continued: parent and link are the header's span, whose `tracestate` the consumer
    /// span carries as `tracestate` says, trimmed for the reason `trimmed` names
    /// (`tracehop.context.tracestate.trimmed`).
    Continued { trace_id: TraceId, span_id: SpanId, tracestate: String, trimmed: Option<&'static str> },
}

/// The header's trace continued, its `tracestate` (if any) passed on whole.
fn continued(trace_id: TraceId, span_id: SpanId, tracestate: &str) -> Expect {
    Expect::Continued { trace_id, span_id, tracestate: tracestate.to_owned(), trimmed: None }
}

/// The header's trace continued, its `tracestate` trimmed to `kept` for the reason `code`.
fn trimmed(trace_id: TraceId, span_id: SpanId, kept: &str, code: &'static str) -> Expect {
    Expect::Continued { trace_id, span_id, tracestate: kept.to_owned(), trimmed: Some(code) }
}

struct Case {
    /// Also the message key, which matches a received message and its span to the case.
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    /// The trace ids the `traceparent` headers carry, when they carry usable ones; a new root must not reuse
    /// them.
    written_trace_ids: Vec<TraceId>,
    expect: Expect,
}

impl Case {
    fn payload(&self) -> Vec<u8> {
        format!("payload of {}", self.name).into_bytes()
    }
}

/// Fresh, valid, distinct ids for every call, so no two cases (in any test) write the same trace id.
fn fresh_ids() -> (String, String, TraceId, SpanId) {
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

fn rejected(
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    written_trace_ids: Vec<TraceId>,
    code: &'static str,
) -> Case {
    Case { name, headers, written_trace_ids, expect: Expect::NewRoot(code) }
}

fn header(key: &'static str, value: impl Into<Vec<u8>>) -> (&'static str, Vec<u8>) {
    (key, value.into())
}

fn cases() -> Vec<Case> {
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

    // Duplicate traceparent headers, even identical valid ones.
    let (t, s, id, _) = fresh_ids();
    let valid = format!("00-{t}-{s}-01");
    cases.push(rejected(
        "duplicate-identical-valid",
        vec![header("traceparent", valid.clone()), header("traceparent", valid)],
        vec![id],
        "duplicate_traceparent",
    ));
    let (t1, s1, id1, _) = fresh_ids();
    let (t2, s2, id2, _) = fresh_ids();
    cases.push(rejected(
        "duplicate-different-valid",
        vec![
            header("traceparent", format!("00-{t1}-{s1}-01")),
            header("tracestate", "congo=t61rcWkgMzE"),
            header("traceparent", format!("00-{t2}-{s2}-01")),
        ],
        vec![id1, id2],
        "duplicate_traceparent",
    ));
    let (t, s, id, _) = fresh_ids();
    cases.push(rejected(
        "duplicate-valid-then-empty",
        vec![header("traceparent", format!("00-{t}-{s}-01")), header("traceparent", "")],
        vec![id],
        "duplicate_traceparent",
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

/// Publishes every case, in order, with exactly its headers, bypassing tracehop.
async fn publish(broker: &Broker, topic: &str, cases: &[Case]) {
    for case in cases {
        let headers: Vec<(&str, &[u8])> = case.headers.iter().map(|(key, value)| (*key, value.as_slice())).collect();
        broker.send_raw(topic, case.name, &case.payload(), &headers).await;
    }
}

/// The case a received message belongs to, by key; each case is matched once.
fn case_of<'a, M: Message>(cases: &'a [Case], seen: &mut HashSet<&'static str>, message: &M) -> &'a Case {
    let key = String::from_utf8_lossy(message.key().expect("every case has a key")).into_owned();
    let case =
        cases.iter().find(|case| case.name == key).unwrap_or_else(|| panic!("a message with an unknown key {key:?}"));
    assert!(seen.insert(case.name), "{}: received twice", case.name);
    assert_eq!(message.partition(), 0, "{}: one partition", case.name);
    case
}

/// The one finished span of `case` on `topic`.
fn span_of(case: &Case, topic: &str) -> SpanData {
    let mut spans: Vec<SpanData> = spans_to(topic)
        .into_iter()
        .filter(|span| attribute(span, "messaging.kafka.message.key") == Some(Value::from(case.name)))
        .collect();
    assert_eq!(spans.len(), 1, "{}: exactly one span for the message: {spans:#?}", case.name);
    spans.remove(0)
}

/// Asserts everything the consumer span of `case` and the handler's result must show; returns the span.
fn check(
    case: &Case,
    topic: &str,
    group: &str,
    function: &str,
    offset: i64,
    handled: Result<Handled, String>,
) -> SpanData {
    let name = case.name;
    let span = span_of(case, topic);
    let payload = case.payload();

    assert_eq!(span.span_kind, SpanKind::Consumer, "{name}: span kind");
    assert_eq!(span.name, format!("process {topic}"), "{name}: span name");
    assert_eq!(span.status, Status::Unset, "{name}: status");
    assert_eq!(
        handled,
        Ok(Handled {
            key: name.to_owned(),
            payload: payload.clone(),
            trace_id: span.span_context.trace_id(),
            span_id: span.span_context.span_id(),
        }),
        "{name}: the handler ran, under the consumer span, and its value came back unchanged"
    );

    let mut want = vec![
        ("code.function.name", Value::from(function.to_owned())),
        ("messaging.system", Value::from("kafka")),
        ("messaging.operation.type", Value::from("process")),
        ("messaging.operation.name", Value::from("process")),
        ("messaging.destination.name", Value::from(topic.to_owned())),
        ("messaging.destination.partition.id", Value::from("0")),
        ("messaging.kafka.offset", Value::I64(offset)),
        ("messaging.kafka.message.key", Value::from(name)),
        ("messaging.consumer.group.name", Value::from(group.to_owned())),
        ("messaging.message.body.size", Value::I64(payload.len() as i64)),
    ];

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

/// Checks every handled message ([`check`]), that the topic has one span per message and that every new root
/// is its own trace (no two rejected messages share one).
fn verify(
    topic: &str,
    group: &str,
    function: &str,
    cases: &[Case],
    results: Vec<(&Case, i64, Result<Handled, String>)>,
) {
    assert_eq!(results.len(), cases.len(), "every case was handled");
    let mut new_roots = HashSet::new();
    for (case, offset, handled) in results {
        let span = check(case, topic, group, function, offset, handled);
        if let Expect::NewRoot(_) = &case.expect {
            assert!(
                new_roots.insert(span.span_context.trace_id()),
                "{}: its new root trace id is shared with another message",
                case.name
            );
        }
    }
    let spans = spans_to(topic);
    assert_eq!(spans.len(), cases.len(), "one span per message, nothing else: {spans:#?}");
}

async fn next_borrowed(consumer: &StreamConsumer) -> BorrowedMessage<'_> {
    tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a message within 30 seconds")
        .expect("no Kafka error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handler_on_owned_message_ref_starts_a_new_root_for_every_bad_context() {
    suite::spans();
    let group = "fallback-owned-ref";
    let broker = Broker::start();
    let topic = suite::unique_topic("fallback-owned-ref");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer(group, &topic);
    let cases = cases();
    publish(&broker, &topic, &cases).await;

    let mut seen = HashSet::new();
    let mut results = Vec::new();
    for _ in 0..cases.len() {
        let message = suite::receive(&consumer).await;
        let case = case_of(&cases, &mut seen, &message);
        let handled = on_owned_ref(&message).await;
        results.push((case, message.offset(), handled));
    }

    verify(&topic, group, "kafka_context_fallback::on_owned_ref", &cases, results);
}

/// Receives every case with `consumer.recv()` (a `BorrowedMessage`) and calls the sync `handler` on it with the
/// logs captured, and, when given, `ambient` current around the call.
async fn consume_borrowed<'a>(
    consumer: &StreamConsumer,
    cases: &'a [Case],
    handler: fn(&BorrowedMessage<'_>) -> Result<Handled, String>,
    ambient: Option<&Context>,
) -> Vec<(&'a Case, i64, Result<Handled, String>, CapturedLogs)> {
    let mut seen = HashSet::new();
    let mut results = Vec::new();
    for _ in 0..cases.len() {
        let message = next_borrowed(consumer).await;
        let case = case_of(cases, &mut seen, &message);
        let (handled, logs) = catch_unwind(AssertUnwindSafe(|| {
            suite::capture_logs(|| {
                let _ambient = ambient.cloned().map(Context::attach);
                handler(&message)
            })
        }))
        .unwrap_or_else(|_| panic!("{}: the handler call panicked", case.name));
        results.push((case, message.offset(), handled, logs));
    }
    results
}

/// Nothing above `debug` (so nothing at `warn` or above) for any case; a `debug` event for every rejection and
/// none for a continued context.
fn check_logs(results: &[(&Case, i64, Result<Handled, String>, CapturedLogs)]) {
    for (case, _, _, logs) in results {
        let name = case.name;
        let above_debug = logs.at_least(tracing::Level::INFO);
        assert!(above_debug.is_empty(), "{name}: nothing is logged above debug: {above_debug:?}");
        let warnings = logs.at_least(tracing::Level::WARN);
        assert!(warnings.is_empty(), "{name}: nothing is logged at warn or above: {warnings:?}");
        let debug = logs.at_least(tracing::Level::DEBUG);
        let mentions_rejection = debug.iter().any(|message| message.contains("incoming trace context not continued"));
        match &case.expect {
            Expect::NewRoot(_) => {
                assert!(mentions_rejection, "{name}: a debug event says the context was not continued: {debug:?}")
            }
            Expect::Continued { .. } => {
                assert!(!mentions_rejection, "{name}: a continued context logs no rejection: {debug:?}")
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_handler_on_borrowed_message_starts_a_new_root_and_logs_only_at_debug() {
    suite::spans();
    let group = "fallback-borrowed";
    let broker = Broker::start();
    let topic = suite::unique_topic("fallback-borrowed");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer(group, &topic);
    let cases = cases();
    publish(&broker, &topic, &cases).await;

    let results = consume_borrowed(&consumer, &cases, on_borrowed, None).await;

    check_logs(&results);
    let handled = results.into_iter().map(|(case, offset, handled, _)| (case, offset, handled)).collect();
    verify(&topic, group, "kafka_context_fallback::on_borrowed", &cases, handled);
}

#[tracehop::traced_consumer(group = "fallback-in-poll-loop")]
fn on_borrowed_in_poll_loop(message: &BorrowedMessage<'_>) -> Result<Handled, String> {
    Ok(handle(message))
}

/// The same table, handled while the consumer's own poll-loop span is current (a traced service loop): a new
/// root must still be a root, not a child of (and linked to) the span that happens to be current. (Extraction
/// starting from `Context::current()` instead of an empty context would continue the poll-loop span for the
/// cases without a `traceparent`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_root_is_a_root_even_with_a_span_current_at_the_call() {
    suite::spans();
    let group = "fallback-in-poll-loop";
    let broker = Broker::start();
    let topic = suite::unique_topic("fallback-in-poll-loop");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer(group, &topic);
    let cases = cases();
    publish(&broker, &topic, &cases).await;

    let poll_loop = Context::current_with_span(global::tracer("kafka_context_fallback").start("poll loop"));
    let results = consume_borrowed(&consumer, &cases, on_borrowed_in_poll_loop, Some(&poll_loop)).await;

    let handled = results.iter().map(|(case, offset, handled, _)| (*case, *offset, handled.clone())).collect();
    verify(&topic, group, "kafka_context_fallback::on_borrowed_in_poll_loop", &cases, handled);
    check_logs(&results);
}

#[tracehop::traced_consumer(group = "fallback-header-name")]
fn on_any_header(message: &OwnedMessage) -> Result<Handled, String> {
    Ok(handle(message))
}

/// A header whose *name* is not UTF-8 (Kafka header names are bytes on the wire; a non-Rust producer can send
/// one), on a message without a `traceparent`: the handler should run under a new root with `missing`.
/// (rdkafka's own `Headers::iter` unwraps the name's UTF-8 conversion and would panic here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_name_that_is_not_utf8_does_not_panic() {
    suite::spans();
    let group = "fallback-header-name";
    let broker = Broker::start();
    let topic = suite::unique_topic("fallback-header-name");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer(group, &topic);
    let case = rejected("header-name-not-utf8", vec![], vec![], "missing");

    let headers = suite::with_raw_header(OwnedHeaders::new(), b"x-\xff\xfe-name", Some(b"value"));
    let payload = case.payload();
    let record = FutureRecord::to(&topic).key(case.name).payload(&payload).headers(headers);
    broker.producer().send(record, Duration::from_secs(10)).await.expect("the broker accepts the message");

    let message = suite::receive(&consumer).await;
    let offset = message.offset();
    let handled = catch_unwind(AssertUnwindSafe(|| on_any_header(&message)))
        .unwrap_or_else(|_| panic!("{}: the handler call panicked", case.name));
    verify(
        &topic,
        group,
        "kafka_context_fallback::on_any_header",
        std::slice::from_ref(&case),
        vec![(&case, offset, handled)],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handler_on_owned_message_by_value_starts_a_new_root_for_every_bad_context() {
    suite::spans();
    let group = "fallback-owned-value";
    let broker = Broker::start();
    let topic = suite::unique_topic("fallback-owned-value");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer(group, &topic);
    let cases = cases();
    publish(&broker, &topic, &cases).await;

    let mut seen = HashSet::new();
    let mut results = Vec::new();
    for _ in 0..cases.len() {
        let message = suite::receive(&consumer).await;
        let case = case_of(&cases, &mut seen, &message);
        let offset = message.offset();
        let handled = on_owned_value(message).await;
        results.push((case, offset, handled));
    }

    verify(&topic, group, "kafka_context_fallback::on_owned_value", &cases, results);
}

#[tracehop::traced_consumer(group = "fallback-baggage")]
fn baggage_seen_by(_message: &BorrowedMessage<'_>) -> Vec<String> {
    use opentelemetry::baggage::BaggageExt;
    let context = Context::current();
    let mut seen: Vec<String> = context.baggage().iter().map(|(key, (value, _))| format!("{key}={value}")).collect();
    seen.sort();
    seen
}

/// A `baggage` with malformed members beside a valid `traceparent`: the trace continues, every well-formed
/// member arrives (a `%` that starts no escape included, as OpenTelemetry's own writer leaves it), the span
/// names why members were dropped, and nothing is logged above debug (the suite enables OpenTelemetry's
/// internal logs, whose baggage reader would warn about every malformed header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_baggage_members_are_left_out_alone_and_the_trace_continues_without_a_warning() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("fallback-baggage");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("fallback-baggage", &topic);
    let traceparent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// Message key, baggage header, the members the handler sees, `tracehop.context.baggage.trimmed`.
    type BaggageCase = (&'static str, &'static [u8], &'static [&'static str], Option<&'static str>);
    let cases: [BaggageCase; 4] = [
        ("malformed", b"garbage,tenant=acme,k=%FF", &["tenant=acme"], Some("malformed_member")),
        ("all-malformed", b"garbage,k=%FF", &[], Some("malformed_member")),
        ("unescaped-percent", b"note=50%off,tenant=acme", &["note=50%off", "tenant=acme"], None),
        ("valid", b"tenant=acme", &["tenant=acme"], None),
    ];
    for (key, baggage, _, _) in cases {
        broker.send_raw(&topic, key, b"m", &[("traceparent", traceparent), ("baggage", baggage)]).await;
    }

    // Positive control: the capture does see OpenTelemetry's own warning about a malformed baggage (its internal
    // logs are on in this suite), so the absence of warnings below can fail.
    let (_, control) = suite::capture_logs(|| {
        use opentelemetry::propagation::TextMapPropagator;
        let headers = std::collections::HashMap::from([("baggage".to_owned(), "garbage".to_owned())]);
        opentelemetry_sdk::propagation::BaggagePropagator::new().extract(&headers)
    });
    assert_eq!(control.at_least(tracing::Level::WARN).len(), 1, "the capture sees OpenTelemetry's warnings");

    for (key, _, expected_baggage, _) in cases {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a message within 30 seconds")
            .expect("no Kafka error");
        assert_eq!(message.key(), Some(key.as_bytes()));
        let (seen, logs) = suite::capture_logs(|| baggage_seen_by(&message));
        assert_eq!(seen, expected_baggage, "{key}");
        assert_eq!(logs.at_least(tracing::Level::INFO), Vec::<String>::new(), "{key}");
    }

    let spans = spans_to(&topic);
    assert_eq!(spans.len(), cases.len());
    for (key, _, _, trimmed) in cases {
        let span = spans
            .iter()
            .find(|span| attribute(span, "messaging.kafka.message.key") == Some(Value::from(key)))
            .expect("a span per message");
        assert_eq!(span.span_context.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        assert_eq!(span.parent_span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert!(span.parent_span_is_remote, "the producer's span is a remote parent");
        assert_eq!(attribute(span, "tracehop.context.rejected"), None);
        assert_eq!(attribute(span, "tracehop.context.baggage.trimmed"), trimmed.map(Value::from), "{key}");
    }
}

/// Kafka header values may be null. A null `traceparent` is unreadable: a new root that says so. A null
/// `tracestate` beside a valid `traceparent` costs only itself: the trace continues and the span says the
/// tracestate was `unreadable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_trace_header_values_are_unreadable() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("fallback-null");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("fallback-null", &topic);
    let (t, s, trace_id, span_id) = fresh_ids();
    let valid = format!("00-{t}-{s}-01");
    let null = None::<&[u8]>;
    let producer = broker.producer();
    for (key, headers) in [
        ("null-traceparent", OwnedHeaders::new().insert(Header { key: "traceparent", value: null })),
        (
            "null-tracestate",
            OwnedHeaders::new()
                .insert(Header { key: "traceparent", value: Some(valid.as_bytes()) })
                .insert(Header { key: "tracestate", value: null }),
        ),
    ] {
        let record = FutureRecord::to(&topic).key(key).payload("{}").headers(headers);
        producer.send(record, Duration::from_secs(10)).await.expect("the broker accepts the message");
    }

    for _ in 0..2 {
        let message = suite::receive(&consumer).await;
        on_owned_ref(&message).await.expect("the handler ran");
    }
    let spans = spans_to(&topic);
    let span_of = |key: &str| {
        spans
            .iter()
            .find(|span| attribute(span, "messaging.kafka.message.key") == Some(Value::from(key.to_owned())))
            .unwrap_or_else(|| panic!("a span for {key}"))
    };
    let unreadable = span_of("null-traceparent");
    assert_eq!(attribute(unreadable, "tracehop.context.rejected"), Some(Value::from("traceparent_unreadable")));
    assert_eq!(unreadable.parent_span_id, SpanId::INVALID);
    let trimmed = span_of("null-tracestate");
    assert_eq!(attribute(trimmed, "tracehop.context.rejected"), None);
    assert_eq!(attribute(trimmed, "tracehop.context.tracestate.trimmed"), Some(Value::from("unreadable")));
    assert_eq!(trimmed.span_context.trace_id(), trace_id);
    assert_eq!(trimmed.parent_span_id, span_id);
    assert!(trimmed.parent_span_is_remote);
}
