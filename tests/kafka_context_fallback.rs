//! Missing or bad trace context is not an error. A foreign or broken producer publishes straight through
//! rdkafka (no tracehop) onto the embedded broker with crafted headers; a real consumer receives each message and
//! hands it to a #[traced_consumer] handler. Every malformed, missing or ambiguous `traceparent` must give a
//! CONSUMER span that starts a new root trace, records why in `tracehop.context.rejected`, runs the handler and
//! returns its value unchanged, without panicking and without logging above `debug`. A `tracestate` that cannot
//! be parsed is discarded whole, one too long truncated by whole members: the trace continues and the span
//! records why in `tracehop.context.tracestate.trimmed`. Valid controls (including the exact tracestate limits) must continue
//! the producer's trace with its tracestate whole, so each rejection assertion can fail.
//!
//! The table every broker shares (`suite::behaviour::fallback_cases`) runs on every broker through an async
//! handler on a reference in `tests/shared_behaviour.rs`; here it runs, with the repeated `traceparent` headers
//! only Kafka carries, through Kafka's other handler shapes (a sync handler on a `BorrowedMessage`, an async one on
//! an `OwnedMessage` by value, one under a current span), with the logs checked; and Kafka's own cases: header
//! names that are not UTF-8, null header values, malformed baggage.
//!
//! Joining a consumer group on the mock cluster takes seconds, so each test publishes the whole table onto one
//! topic and reads it with one consumer, matching every message to its case by key.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, Tracer};
use opentelemetry::{global, Context, Value};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use suite::behaviour::{fallback_cases, fresh_ids, header, rejected, verify_cases, Attributes, Case, Expect, Handled};
use suite::{attribute, spans_to, Broker, CapturedLogs};

/// What the handler saw: the message it was given (its key as the id) and the span it ran under.
fn handle<M: Message>(message: &M) -> Handled {
    let context = Context::current();
    let span = context.span();
    let current = span.span_context();
    Handled {
        id: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
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

/// Repeated `traceparent` headers, which only Kafka's header list can carry (an AMQP header table holds a name
/// once): ambiguous, even when identical and valid, so a new root.
fn repeated_traceparent_cases() -> Vec<Case> {
    let mut cases = Vec::new();
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
    cases
}

/// Kafka's whole table: the one every broker shares (`suite::behaviour::fallback_cases`, run on every broker by
/// `tests/shared_behaviour.rs`) and the repeated headers only Kafka carries.
fn cases() -> Vec<Case> {
    let mut cases = fallback_cases();
    cases.extend(repeated_traceparent_cases());
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

/// The attributes the consumer span of `case` must have before the context's own, handled by `function` in
/// `group` at `offset`.
fn kafka_attributes(case: &Case, topic: &str, group: &str, function: &str, offset: i64) -> Attributes {
    vec![
        ("code.function.name", Value::from(function.to_owned())),
        ("messaging.system", Value::from("kafka")),
        ("messaging.operation.type", Value::from("process")),
        ("messaging.operation.name", Value::from("process")),
        ("messaging.destination.name", Value::from(topic.to_owned())),
        ("messaging.destination.partition.id", Value::from("0")),
        ("messaging.kafka.offset", Value::I64(offset)),
        ("messaging.kafka.message.key", Value::from(case.name)),
        ("messaging.consumer.group.name", Value::from(group.to_owned())),
        ("messaging.message.body.size", Value::I64(case.payload().len() as i64)),
    ]
}

/// Checks every handled message (`suite::behaviour::check_case`), that the topic has one span per message and
/// that every new root is its own trace (no two rejected messages share one).
fn verify(
    topic: &str,
    group: &str,
    function: &str,
    cases: &[Case],
    results: Vec<(&Case, i64, Result<Handled, String>)>,
) {
    let results = results
        .into_iter()
        .map(|(case, offset, handled)| (case, handled, kafka_attributes(case, topic, group, function, offset)))
        .collect();
    verify_cases(topic, "messaging.kafka.message.key", cases, results);
}

async fn next_borrowed(consumer: &StreamConsumer) -> BorrowedMessage<'_> {
    tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a message within 30 seconds")
        .expect("no Kafka error")
}

/// Repeated `traceparent` headers through an async handler on `&OwnedMessage` (the table every broker shares runs
/// through the same handler shape in `tests/shared_behaviour.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handler_on_owned_message_ref_starts_a_new_root_for_repeated_traceparents() {
    suite::spans();
    let group = "fallback-owned-ref";
    let broker = Broker::start();
    let topic = suite::unique_topic("fallback-owned-ref");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer(group, &topic);
    let cases = repeated_traceparent_cases();
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
