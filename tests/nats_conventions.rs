//! JetStream's settle verbs and redeliveries against the real NATS server `scripts/nats` starts: a `nak` and the
//! redelivery it brings, a redelivery after the ack wait, `term`, `in_progress` and `double_ack` each a settle
//! span named for its verb, a `nak` with a delay, and a settle that fails. An ack inside a handler, which every
//! broker shares, is in `tests/shared_behaviour.rs`.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, Consumer};
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::{self, Message};
use async_nats::HeaderMap;
use futures_util::StreamExt;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use suite::nats::{connect, next_delivery, processed, ScratchStream};
use suite::{attribute, attributes, expected, spans_to};
use tracehop::clients::nats::{double_ack, in_progress, nak, term, TracedJetStream, ACK_ERROR_TYPE};
use tracehop::nats::MESSAGE_ID_HEADER;

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

/// A stream and a consumer of it waiting `ack_wait` for each acknowledgement, with `ids` published into it through
/// `TracedJetStream`, each the root of a trace of its own.
async fn stored(prefix: &str, ids: &[&str], ack_wait: Duration) -> (ScratchStream, Consumer<pull::Config>) {
    let context = jetstream::new(connect().await);
    let stream = ScratchStream::create(&context, prefix, StorageType::Memory).await;
    let publisher = TracedJetStream::new(context);
    for id in ids {
        let mut headers = HeaderMap::new();
        headers.insert(MESSAGE_ID_HEADER, *id);
        publisher.publish_with_headers(stream.name().to_owned(), headers, "{}".into()).await.expect("stored");
    }
    let consumer = stream.consumer("inventory", ack_wait).await;
    (stream, consumer)
}

/// The attributes of the settle span `operation` of message `id`, the `sequence`th of `stream`.
fn settled(operation: &str, stream: &str, id: &str, sequence: i64) -> Vec<(String, Value)> {
    expected(&[
        ("messaging.system", text("nats")),
        ("messaging.operation.type", text("settle")),
        ("messaging.operation.name", text(operation)),
        ("messaging.destination.name", text(stream)),
        ("messaging.message.id", text(id)),
        ("tracehop.nats.stream", text(stream)),
        ("tracehop.nats.stream_sequence", Value::I64(sequence)),
    ])
}

/// What the consumer span of the `delivery`th delivery of the stream's first message says of it, beyond the
/// handler and the message's id and size.
fn delivered(stream: &str, delivery: i64) -> Vec<(&'static str, Value)> {
    let mut want = vec![
        ("tracehop.nats.stream", text(stream)),
        ("tracehop.nats.stream_sequence", Value::I64(1)),
        ("tracehop.nats.consumer_sequence", Value::I64(delivery)),
        ("tracehop.message.delivery_count", Value::I64(delivery)),
    ];
    if delivery > 1 {
        want.push(("tracehop.message.redelivered", Value::Bool(true)));
    }
    want
}

/// The full attributes of a consumer span of `function`, for the stream's first message `id`, delivered the
/// `delivery`th time.
fn consumed(function: &str, stream: &str, id: &str, delivery: i64) -> Vec<(String, Value)> {
    let mut more = vec![
        ("messaging.consumer.group.name", text("inventory")),
        ("messaging.message.id", text(id)),
        ("messaging.message.body.size", Value::I64(2)),
    ];
    more.extend(delivered(stream, delivery));
    processed(function, stream, &more)
}

/// The one span among `spans` named `name`.
fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let mut found = spans.iter().filter(|span| span.name == name);
    let span = found.next().unwrap_or_else(|| panic!("a span {name} in {spans:#?}"));
    assert!(found.next().is_none(), "one span {name} in {spans:#?}");
    span
}

/// Takes the message back on its first delivery, acknowledges it on the next.
#[tracehop::traced_consumer(group = "inventory")]
async fn retry_once(order: &Message) -> Result<(), async_nats::Error> {
    if order.info()?.delivered == 1 {
        nak(order, None).await
    } else {
        tracehop::clients::nats::ack(order).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_nakked_message_comes_back_redelivered_and_both_handlings_continue_the_producer_s_trace() {
    let (stream, consumer) = stored("nak", &["n-1"], Duration::from_secs(30)).await;
    let name = stream.name();
    retry_once(&next_delivery(&consumer).await).await.expect("nakked");
    retry_once(&next_delivery(&consumer).await).await.expect("acknowledged");

    let spans = spans_to(name);
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let producer = suite::the_span(&spans, SpanKind::Producer);
    let handlings = suite::handlings_of(&spans, &producer);
    assert_eq!(handlings.len(), 2, "{spans:#?}");
    for (delivery, handling) in (1..).zip(&handlings) {
        suite::assert_child_of(handling, &producer);
        assert_eq!(handling.name, format!("process {name}"));
        assert_eq!(handling.status, Status::Unset);
        assert_eq!(attributes(handling), consumed("nats_conventions::retry_once", name, "n-1", delivery));
    }
    for (verb, handling) in [("nak", &handlings[0]), ("ack", &handlings[1])] {
        let settle = named(&spans, &format!("{verb} {name}"));
        assert_eq!(settle.span_kind, SpanKind::Client);
        assert_eq!(settle.parent_span_id, handling.span_context.span_id(), "{verb} inside its handling");
        assert_eq!(settle.span_context.trace_id(), producer.span_context.trace_id());
        assert_eq!(settle.status, Status::Unset);
        assert_eq!(attributes(settle), settled(verb, name, "n-1", 1));
    }
}

#[tracehop::traced_consumer(group = "inventory")]
async fn reserve(order: &Message) -> SpanId {
    let _ = order;
    opentelemetry::Context::current().span().span_context().span_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_message_left_unacknowledged_past_its_ack_wait_comes_back_continuing_the_producer_s_trace() {
    let ack_wait = Duration::from_secs(1);
    let (stream, consumer) = stored("ack-wait", &["w-1"], ack_wait).await;
    let name = stream.name();
    let first = next_delivery(&consumer).await;
    let first_at = Instant::now();
    let first_span = reserve(&first).await;
    // Neither acknowledged nor taken back: the handler's caller forgot it, or died.
    let again = next_delivery(&consumer).await;
    let waited = first_at.elapsed();
    let again_span = reserve(&again).await;
    again.ack().await.expect("acknowledged");

    assert!(waited >= ack_wait - Duration::from_millis(100), "delivered again after the ack wait, not {waited:?}");
    let spans = spans_to(name);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let producer = suite::the_span(&spans, SpanKind::Producer);
    for (delivery, span_id) in [(1, first_span), (2, again_span)] {
        let handling = suite::finished_span(span_id);
        suite::assert_child_of(&handling, &producer);
        assert_eq!(attributes(&handling), consumed("nats_conventions::reserve", name, "w-1", delivery));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_nak_with_a_delay_holds_the_message_back_that_long() {
    let (stream, consumer) = stored("nak-delay", &["l-1"], Duration::from_secs(30)).await;
    let first = next_delivery(&consumer).await;
    let nakked_at = Instant::now();
    nak(&first, Some(Duration::from_millis(500))).await.expect("nakked");
    let again = next_delivery(&consumer).await;
    let waited = nakked_at.elapsed();
    again.ack().await.expect("acknowledged");

    assert!(waited >= Duration::from_millis(400), "held back as asked, not {waited:?}");
    assert_eq!(again.info().expect("a JetStream delivery").delivered, 2);
    let spans = spans_to(stream.name());
    let settle = named(&spans, &format!("nak {}", stream.name()));
    assert_eq!(settle.parent_span_id, SpanId::INVALID, "a settle outside any handler is a root");
    assert_eq!(attributes(settle), settled("nak", stream.name(), "l-1", 1));
}

/// `term`, `in_progress` and `double_ack` outside any handler: each a CLIENT settle span of its own, named for its
/// verb (`double_ack` acknowledges: `ack`), and each doing what it says: a termed message never comes back, a
/// message in progress and then acknowledged neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn term_in_progress_and_double_ack_are_settle_spans_named_for_their_verbs() {
    let ack_wait = Duration::from_secs(1);
    let (stream, consumer) = stored("verbs", &["terminated", "slow", "confirmed"], ack_wait).await;
    let name = stream.name();
    let terminated = next_delivery(&consumer).await;
    term(&terminated).await.expect("terminated");
    let slow = next_delivery(&consumer).await;
    in_progress(&slow).await.expect("in progress");
    slow.ack().await.expect("acknowledged");
    let confirmed = next_delivery(&consumer).await;
    double_ack(&confirmed).await.expect("acknowledged and confirmed");

    tokio::time::sleep(ack_wait + Duration::from_millis(500)).await;
    let mut after = consumer.batch().max_messages(1).expires(Duration::from_millis(500)).messages().await.unwrap();
    assert!(after.next().await.is_none(), "nothing comes back");
    let state = consumer.get_info().await.expect("the consumer's state");
    assert_eq!((state.num_ack_pending, state.num_redelivered), (0, 0));

    let spans = spans_to(name);
    for (span_name, verb, id, sequence) in [
        (format!("term {name}"), "term", "terminated", 1),
        (format!("in_progress {name}"), "in_progress", "slow", 2),
        (format!("ack {name}"), "ack", "confirmed", 3),
    ] {
        let settle = named(&spans, &span_name);
        assert_eq!(settle.span_kind, SpanKind::Client);
        assert_eq!(settle.parent_span_id, SpanId::INVALID, "a settle outside any handler is a root");
        assert_eq!(settle.status, Status::Unset);
        assert_eq!(attributes(settle), settled(verb, name, id, sequence));
    }
}

/// A settle async-nats cannot make (a message with no acknowledgement subject, as a core message wrapped by hand
/// has) returns async-nats's error unchanged and records it on its span: status Error, `error.type` the one
/// async-nats's boxed errors are recorded under, an `exception` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_failed_settle_returns_async_nats_s_error_and_records_it_on_its_span() {
    let client = connect().await;
    let subject = suite::unique_topic("settle-failed");
    let mut subscriber = client.subscribe(subject.clone()).await.expect("subscribed");
    client.flush().await.expect("flushed");
    client.publish(subject.clone(), "{}".into()).await.expect("published");
    let core = tokio::time::timeout(Duration::from_secs(10), subscriber.next()).await.unwrap().unwrap();
    let message = Message { message: core, context: jetstream::new(client) };

    let error = tracehop::clients::nats::ack(&message).await.expect_err("nowhere to send the ack");

    let spans = spans_to(&subject);
    let settle = named(&spans, &format!("ack {subject}"));
    assert_eq!(settle.status, Status::error(error.to_string()));
    assert_eq!(attribute(settle, "error.type"), Some(text(ACK_ERROR_TYPE)));
    let events: Vec<_> =
        settle.events.events.iter().map(|event| (event.name.clone(), event.attributes.clone())).collect();
    assert_eq!(
        events,
        vec![(
            "exception".into(),
            vec![
                KeyValue::new("exception.type", ACK_ERROR_TYPE),
                KeyValue::new("exception.message", error.to_string())
            ]
        )]
    );
}
