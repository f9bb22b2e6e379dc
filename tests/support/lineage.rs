//! What every broker's retry chain must look like in its trace: one message published, handled and retried four
//! times, given up on at its fifth attempt and dead-lettered, then handled on the dead-letter destination. Found
//! by walking parents from the first PRODUCER span, so finding the chain at all asserts its order.

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;

use crate::{attribute, spans_of_trace};

/// The spans of one message's life, in order.
#[derive(Debug)]
pub struct Chain {
    /// The PRODUCER span that first created the message.
    pub producer: SpanData,
    /// The CONSUMER span of each attempt, the first first.
    pub attempts: Vec<SpanData>,
    /// The PRODUCER span of each retry: `retries[i]` republished the message `attempts[i]` failed on.
    pub retries: Vec<SpanData>,
    /// The settle span of the dead-letter publish.
    pub dead_letter: SpanData,
    /// The dead-letter consumer's CONSUMER span.
    pub dead_letter_consumer: SpanData,
}

/// The chain that starts at `producer`, from the finished spans of its trace: each attempt the CONSUMER child
/// of the span before it (the producer, then each retry), each retry the PRODUCER child of an attempt, the dead
/// letter the CLIENT child of the last attempt, the dead-letter consumer its CONSUMER child. Fails the test when
/// a link of the chain is missing or ambiguous.
pub fn chain(producer: &SpanData) -> Chain {
    let trace = spans_of_trace(producer.span_context.trace_id());
    let child = |parent: &SpanData, kind: SpanKind| -> Option<SpanData> {
        let mut children =
            trace.iter().filter(|span| span.parent_span_id == parent.span_context.span_id() && span.span_kind == kind);
        let found = children.next().cloned();
        assert!(children.next().is_none(), "one {kind:?} child of {}", parent.name);
        found
    };
    let mut attempts = vec![child(producer, SpanKind::Consumer).expect("the first attempt's CONSUMER span")];
    let mut retries = Vec::new();
    while let Some(retry) = child(attempts.last().expect("an attempt"), SpanKind::Producer) {
        attempts.push(child(&retry, SpanKind::Consumer).expect("the retry's CONSUMER span"));
        retries.push(retry);
    }
    let dead_letter = child(attempts.last().expect("an attempt"), SpanKind::Client).expect("the dead letter's span");
    let dead_letter_consumer = child(&dead_letter, SpanKind::Consumer).expect("the dead-letter consumer's span");
    Chain { producer: producer.clone(), attempts, retries, dead_letter, dead_letter_consumer }
}

/// What a broker's chain says besides its shape.
pub struct Expected<'a> {
    /// The name of each retry's PRODUCER span: `send {retry destination}`.
    pub retry_name: &'a str,
    /// The name of the dead letter's span: `dead_letter {destination of the last attempt}`.
    pub dead_letter_name: &'a str,
    /// The destination of the last attempt, the dead letter's origin.
    pub origin: &'a str,
    /// The dead-letter destination.
    pub dead_letter_destination: &'a str,
    /// The error type the message was given up on.
    pub error_type: &'a str,
    /// The origin's coordinates, as `tracehop.dead_letter.origin.*` attributes.
    pub coordinates: Vec<(&'a str, String)>,
}

fn ids(span: &SpanData) -> (TraceId, SpanId) {
    (span.span_context.trace_id(), span.span_context.span_id())
}

/// Each link of `span`: whom it points at, and its attributes.
fn links(span: &SpanData) -> Vec<((TraceId, SpanId), Vec<KeyValue>)> {
    span.links
        .links
        .iter()
        .map(|link| ((link.span_context.trace_id(), link.span_context.span_id()), link.attributes.clone()))
        .collect()
}

fn relation(relation: &'static str) -> Vec<KeyValue> {
    vec![KeyValue::new("tracehop.link.relation", relation)]
}

/// Asserts everything a five-attempt chain ending in a dead letter says: one trace; each attempt's CONSUMER span
/// linked to the span it continues and (from the second on) to the attempt before, with its attempt number; each
/// retry's PRODUCER span linked to the first creation, with the attempt it publishes; the dead letter's settle
/// span and the dead-letter consumer's span linked to the failed processing, with the origin, its coordinates and
/// the error type.
pub fn assert_five_attempts_then_a_dead_letter(chain: &Chain, expected: &Expected<'_>) {
    let Chain { producer, attempts, retries, dead_letter, dead_letter_consumer } = chain;
    assert_eq!(attempts.len(), 5, "five attempts: {attempts:#?}");
    assert_eq!(retries.len(), 4, "four retries");
    let trace_id = producer.span_context.trace_id();
    for span in attempts.iter().chain(retries).chain([dead_letter, dead_letter_consumer]) {
        assert_eq!(span.span_context.trace_id(), trace_id, "{} is in the message's trace", span.name);
    }

    assert_eq!(links(&attempts[0]), vec![(ids(producer), vec![])], "the first attempt links its producer alone");
    assert_eq!(attribute(&attempts[0], "tracehop.message.attempt"), None, "an ordinary message has no attempt");
    for (index, attempt) in attempts.iter().enumerate().skip(1) {
        let number = i64::try_from(index).expect("a small index") + 1;
        assert_eq!(attempt.span_kind, SpanKind::Consumer);
        assert_eq!(
            links(attempt),
            vec![(ids(&retries[index - 1]), vec![]), (ids(&attempts[index - 1]), relation("previous_attempt"))],
            "attempt {number} links its retry's producer and the attempt before"
        );
        assert_eq!(attribute(attempt, "tracehop.message.attempt"), Some(Value::I64(number)), "attempt {number}");
        assert!(matches!(attempt.status, Status::Error { .. }), "attempt {number} failed");
    }
    for (index, retry) in retries.iter().enumerate() {
        let number = i64::try_from(index).expect("a small index") + 2;
        assert_eq!(retry.name, expected.retry_name);
        assert_eq!(retry.parent_span_id, attempts[index].span_context.span_id(), "a child of the failed attempt");
        assert_eq!(links(retry), vec![(ids(producer), relation("first_creation"))], "retry to attempt {number}");
        assert_eq!(attribute(retry, "tracehop.message.attempt"), Some(Value::I64(number)));
        assert_eq!(attribute(retry, "messaging.operation.type"), Some(Value::from("send")));
        assert_eq!(retry.status, Status::Unset, "the retry was published");
    }

    let last = &attempts[4];
    assert_eq!(dead_letter.name, expected.dead_letter_name);
    assert_eq!(dead_letter.span_kind, SpanKind::Client);
    assert_eq!(links(dead_letter), vec![(ids(last), relation("failed_process"))]);
    assert_eq!(dead_letter.status, Status::Unset, "the dead letter was published");
    let text = |value: &str| Some(Value::from(value.to_owned()));
    for (key, value) in [
        ("messaging.operation.type", text("settle")),
        ("messaging.operation.name", text("dead_letter")),
        ("messaging.destination.name", text(expected.origin)),
        ("tracehop.dead_letter.destination", text(expected.dead_letter_destination)),
        ("tracehop.dead_letter.origin.destination", text(expected.origin)),
        ("tracehop.dead_letter.error_type", text(expected.error_type)),
    ] {
        assert_eq!(attribute(dead_letter, key), value, "{key} of the dead letter");
    }
    assert_eq!(attribute(dead_letter, "error.type"), None, "a dead letter published without error is no failure");

    assert_eq!(
        links(dead_letter_consumer),
        vec![(ids(dead_letter), vec![]), (ids(last), relation("failed_process"))],
        "the dead-letter consumer links its producer (the dead letter) and the failed processing"
    );
    assert_eq!(attribute(dead_letter_consumer, "tracehop.dead_letter.origin.destination"), text(expected.origin));
    assert_eq!(attribute(dead_letter_consumer, "tracehop.dead_letter.error_type"), text(expected.error_type));
    assert_eq!(attribute(dead_letter_consumer, "tracehop.message.attempt"), None, "a dead letter is no attempt");
    for (key, value) in &expected.coordinates {
        assert_eq!(attribute(dead_letter, key), text(value), "{key} of the dead letter");
        assert_eq!(attribute(dead_letter_consumer, key), text(value), "{key} of the dead-letter consumer");
    }
}

/// Asserts what each consumed message of the chain carried on the wire, its headers as `(name, value)` in the
/// order the broker gave them: exactly one `traceparent`, the retry's (or the dead letter's); the attempt header
/// once, with its number, from the second attempt on; the first creation's `traceparent`; the header `kept`
/// (the message's own) once.
pub fn assert_wire(chain: &Chain, consumed: &[Vec<(String, String)>], kept: (&str, &str)) {
    assert_eq!(consumed.len(), 6, "five attempts and the dead letter");
    let traceparent_of =
        |span: &SpanData| format!("00-{:032x}-{:016x}-01", span.span_context.trace_id(), span.span_context.span_id());
    let all = |headers: &[(String, String)], name: &str| -> Vec<String> {
        headers.iter().filter(|(header, _)| header.eq_ignore_ascii_case(name)).map(|(_, value)| value.clone()).collect()
    };
    let first = traceparent_of(&chain.producer);
    for (index, headers) in consumed.iter().enumerate() {
        let publisher = match index {
            0 => &chain.producer,
            5 => &chain.dead_letter,
            _ => &chain.retries[index - 1],
        };
        assert_eq!(all(headers, "traceparent"), vec![traceparent_of(publisher)], "message {index}: {headers:?}");
        assert_eq!(all(headers, kept.0), vec![kept.1.to_owned()], "message {index} keeps its own header");
        let attempt = (1..5).contains(&index).then(|| (index + 1).to_string());
        assert_eq!(all(headers, "tracehop-attempt"), Vec::from_iter(attempt), "message {index}'s attempt");
        let first = (index > 0).then(|| first.clone());
        assert_eq!(all(headers, "tracehop-first-traceparent"), Vec::from_iter(first), "message {index}");
        let previous = (1..5).contains(&index).then(|| traceparent_of(&chain.attempts[index - 1]));
        assert_eq!(all(headers, "tracehop-previous-attempt"), Vec::from_iter(previous), "message {index}");
    }
    let dead_letter = &consumed[5];
    assert_eq!(all(dead_letter, "tracehop-dead-letter-failed-process"), vec![traceparent_of(&chain.attempts[4])]);
}
