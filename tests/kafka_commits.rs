//! Kafka commits that account for their messages: a `CommitLedger` records which process span handled which
//! offset, and a commit through it is a settle span linked to the process spans of the offsets it commits — a child
//! of the current context, or of the newest of those process spans, never a root of its own. On librdkafka's mock
//! cluster, and on tansu in `scripts/test`.

use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{global, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use suite::{attribute, finished, receive, spans_to, Broker};
use tokio::sync::{Mutex, MutexGuard};
use tracehop::clients::kafka::CommitLedger;
use tracehop::clients::ConsumerTracing;
use tracehop::Handler;

static LOOP: Handler = Handler::consumer("suite::commits::poll_loop").group("commits");

/// The link cap is process-wide: the tests that count links run one at a time.
async fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    SERIAL.lock().await
}

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

/// A topic of one partition holding `count` messages without trace context (each process span a new trace).
async fn topic_with(broker: &Broker, prefix: &str, count: usize) -> String {
    let topic = suite::unique_topic(prefix);
    broker.create_topic(&topic, 1);
    for index in 0..count {
        broker.send_raw(&topic, &format!("k{index}"), b"ok", &[]).await;
    }
    topic
}

/// Takes `count` messages from `consumer`, each traced, recorded in `ledger` and processed; their process spans
/// in order.
async fn process(consumer: &StreamConsumer, ledger: &CommitLedger, count: usize) -> (Vec<OwnedMessage>, Vec<SpanId>) {
    let mut messages = Vec::new();
    let mut spans = Vec::new();
    for _ in 0..count {
        let traced = ConsumerTracing::new(&LOOP).trace(receive(consumer).await);
        ledger.record(&traced);
        spans.push(traced.span().context().span().span_context().span_id());
        messages.push(traced.process_with_outcome(|message| message, |_, _| ()));
    }
    (messages, spans)
}

fn the_span_named(name: &str) -> SpanData {
    let mut named = finished().into_iter().filter(|span| span.name == name);
    let span = named.next().unwrap_or_else(|| panic!("a span named {name}"));
    assert!(named.next().is_none(), "one span named {name}");
    span
}

fn finished_span(span_id: SpanId) -> SpanData {
    finished().into_iter().find(|span| span.span_context.span_id() == span_id).expect("the span has ended")
}

fn link_attributes(topic: &str, offset: i64) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.destination.name", topic.to_owned()),
        KeyValue::new("messaging.destination.partition.id", "0"),
        KeyValue::new("messaging.kafka.offset", offset),
    ]
}

fn linked(span: &SpanData) -> Vec<(SpanId, Vec<KeyValue>)> {
    span.links.links.iter().map(|link| (link.span_context.span_id(), link.attributes.clone())).collect()
}

fn committed_offset(consumer: &StreamConsumer, topic: &str) -> Offset {
    let committed = consumer.committed(Duration::from_secs(10)).expect("the group's committed offsets");
    committed.find_partition(topic, 0).map_or(Offset::Invalid, |partition| partition.offset())
}

/// A commit of the consumer's position after three processed messages, made where no span is current: one settle
/// span `commit {topic}`, a child of the newest process span (in its trace), linked to the three process spans
/// with their offsets; the ledger is empty after it and the group resumes after the third message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_of_three_processed_messages_links_their_three_process_spans() {
    let _serial = serial().await;
    suite::spans();
    let broker = Broker::start();
    let topic = topic_with(&broker, "commit-three", 3).await;
    let consumer = broker.consumer("commits", &topic);
    let ledger = CommitLedger::new();
    let (_, process_spans) = process(&consumer, &ledger, 3).await;
    assert_eq!(ledger.len(), 3);

    ledger.commit_consumer_state(&consumer, CommitMode::Sync).expect("the commit is accepted");

    let commit = the_span_named(&format!("commit {topic}"));
    let newest = finished_span(process_spans[2]);
    assert_eq!(commit.span_kind, SpanKind::Client);
    assert_eq!(commit.parent_span_id, process_spans[2], "a child of the newest process span, not a root");
    assert_eq!(commit.span_context.trace_id(), newest.span_context.trace_id());
    assert_eq!(
        linked(&commit),
        vec![
            (process_spans[0], link_attributes(&topic, 0)),
            (process_spans[1], link_attributes(&topic, 1)),
            (process_spans[2], link_attributes(&topic, 2)),
        ]
    );
    assert_eq!(attribute(&commit, "messaging.system"), Some(text("kafka")));
    assert_eq!(attribute(&commit, "messaging.operation.type"), Some(text("settle")));
    assert_eq!(attribute(&commit, "messaging.operation.name"), Some(text("commit")));
    assert_eq!(attribute(&commit, "messaging.destination.name"), Some(text(&topic)));
    assert_eq!(attribute(&commit, "messaging.destination.partition.id"), Some(text("0")));
    assert_eq!(attribute(&commit, "tracehop.links.dropped"), None);
    assert_eq!(attribute(&commit, "tracehop.ledger.evicted"), None);
    assert_eq!(commit.status, Status::Unset);
    assert!(ledger.is_empty(), "the commit took its entries out of the ledger");
    assert_eq!(committed_offset(&consumer, &topic), Offset::Offset(3));
}

/// `commit_message` of the second of three messages commits offsets 0 and 1: its span links those two process
/// spans (with the message's partition and offset on the span), and the third stays in the ledger for the next
/// commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_message_links_the_process_spans_up_to_its_message_and_leaves_the_rest() {
    let _serial = serial().await;
    suite::spans();
    let broker = Broker::start();
    let topic = topic_with(&broker, "commit-message", 3).await;
    let consumer = broker.consumer("commits", &topic);
    let ledger = CommitLedger::new();
    let (messages, process_spans) = process(&consumer, &ledger, 3).await;

    ledger.commit_message(&consumer, &messages[1], CommitMode::Sync).expect("the commit is accepted");

    let commit = the_span_named(&format!("commit {topic}"));
    assert_eq!(commit.parent_span_id, process_spans[1]);
    assert_eq!(
        linked(&commit),
        vec![(process_spans[0], link_attributes(&topic, 0)), (process_spans[1], link_attributes(&topic, 1))]
    );
    assert_eq!(attribute(&commit, "messaging.kafka.offset"), Some(Value::I64(1)));
    assert_eq!(ledger.len(), 1, "the third message's offset is not committed yet");
    assert_eq!(committed_offset(&consumer, &topic), Offset::Offset(2));
}

#[tracehop::traced_consumer(group = "commits")]
fn handle_and_commit(message: &OwnedMessage, consumer: &StreamConsumer, ledger: &CommitLedger) -> Result<(), String> {
    ledger.record_current(message);
    ledger.commit_message(consumer, message, CommitMode::Sync).map_err(|error| error.to_string())
}

/// A commit inside a `#[traced_consumer]` handler is a child of the handler's CONSUMER span, in its trace, and
/// linked to it (the process span of the offset it commits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_a_handler_is_a_child_of_its_consumer_span() {
    let _serial = serial().await;
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("commit-handler");
    broker.create_topic(&topic, 1);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    broker.send_raw(&topic, "k", b"ok", &[("traceparent", traceparent.as_bytes())]).await;
    let consumer = broker.consumer("commits", &topic);
    let ledger = CommitLedger::new();

    handle_and_commit(&receive(&consumer).await, &consumer, &ledger).expect("the commit is accepted");

    let spans = spans_to(&topic);
    let (handler, commit) = (suite::the_span(&spans, SpanKind::Consumer), suite::the_span(&spans, SpanKind::Client));
    assert_eq!(commit.name, format!("commit {topic}"));
    assert_eq!(commit.parent_span_id, handler.span_context.span_id());
    assert_eq!(commit.span_context.trace_id(), handler.span_context.trace_id());
    assert_eq!(format!("{:032x}", commit.span_context.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(linked(&commit), vec![(handler.span_context.span_id(), link_attributes(&topic, 0))]);
    assert!(ledger.is_empty());
}

/// Past `max_links_per_span` a commit links the oldest process spans it commits and counts the rest in
/// `tracehop.links.dropped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_past_the_cap_are_counted_in_links_dropped() {
    let _serial = serial().await;
    suite::spans();
    let broker = Broker::start();
    let topic = topic_with(&broker, "commit-cap", 5).await;
    let consumer = broker.consumer("commits", &topic);
    let ledger = CommitLedger::new();
    let (messages, process_spans) = process(&consumer, &ledger, 5).await;

    tracehop::set_max_links_per_span(2);
    let committed = ledger.commit_message(&consumer, &messages[4], CommitMode::Sync);
    tracehop::set_max_links_per_span(tracehop::DEFAULT_MAX_LINKS_PER_SPAN);
    committed.expect("the commit is accepted");

    let commit = the_span_named(&format!("commit {topic}"));
    assert_eq!(
        linked(&commit),
        vec![(process_spans[0], link_attributes(&topic, 0)), (process_spans[1], link_attributes(&topic, 1))]
    );
    assert_eq!(attribute(&commit, "tracehop.links.dropped"), Some(Value::I64(3)));
    assert!(ledger.is_empty(), "the unlinked entries are committed all the same");
}

/// A ledger past its capacity forgets the oldest entries; the commit that covers them counts them in
/// `tracehop.ledger.evicted` and links the ones it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_past_its_capacity_counts_what_it_forgot_on_the_commit() {
    let _serial = serial().await;
    suite::spans();
    let broker = Broker::start();
    let topic = topic_with(&broker, "commit-evicted", 3).await;
    let consumer = broker.consumer("commits", &topic);
    let ledger = CommitLedger::with_capacity(2);
    let (messages, process_spans) = process(&consumer, &ledger, 3).await;
    assert_eq!(ledger.len(), 2);

    ledger.commit_message(&consumer, &messages[2], CommitMode::Sync).expect("the commit is accepted");

    let commit = the_span_named(&format!("commit {topic}"));
    assert_eq!(
        linked(&commit),
        vec![(process_spans[1], link_attributes(&topic, 1)), (process_spans[2], link_attributes(&topic, 2))]
    );
    assert_eq!(attribute(&commit, "tracehop.ledger.evicted"), Some(Value::I64(1)));
    assert_eq!(attribute(&commit, "tracehop.links.dropped"), None);
}

/// A commit of offsets on two topics is one span named `commit`, without `messaging.destination.name` (as the
/// conventions describe an operation on several destinations), a child of the current span, linked to the process
/// spans of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_across_two_topics_is_named_commit_and_links_both() {
    let _serial = serial().await;
    suite::spans();
    let broker = Broker::start();
    let (first, second) = (topic_with(&broker, "commit-first", 1).await, topic_with(&broker, "commit-second", 1).await);
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", format!("commits.{first}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[first.as_str(), second.as_str()]).expect("subscribe");
    let ledger = CommitLedger::new();
    let (messages, process_spans) = process(&consumer, &ledger, 2).await;
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(&first, 0, Offset::Offset(1)).expect("a partition");
    offsets.add_partition_offset(&second, 0, Offset::Offset(1)).expect("a partition");

    let tracer = global::tracer("suite");
    let request = tracer.in_span("shutdown", |context| {
        ledger.commit(&consumer, &offsets, CommitMode::Sync).expect("the commit is accepted");
        context.span().span_context().span_id()
    });

    let commit = finished()
        .into_iter()
        .find(|span| span.name == "commit" && span.parent_span_id == request)
        .expect("a span named `commit` under the request span");
    assert_eq!(commit.span_kind, SpanKind::Client);
    assert_eq!(attribute(&commit, "messaging.destination.name"), None);
    assert_eq!(attribute(&commit, "messaging.destination.partition.id"), None);
    assert_eq!(attribute(&commit, "messaging.operation.name"), Some(text("commit")));
    // In the order the messages were processed, whichever topic came first.
    let expected: Vec<(SpanId, Vec<KeyValue>)> = messages
        .iter()
        .zip(&process_spans)
        .map(|(message, span)| (*span, link_attributes(message.topic(), 0)))
        .collect();
    assert_eq!(linked(&commit), expected);
    assert_eq!(committed_offset(&consumer, &first), Offset::Offset(1));
    assert_eq!(committed_offset(&consumer, &second), Offset::Offset(1));
}

/// With auto-commit, `store_offset` is the traced call that accounts for the messages: its span, a child of the
/// newest process span, links the process spans of the offsets it stores. The automatic commit that follows makes
/// no span at all: no root trace appears for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_commit_store_offset_links_the_stored_messages_and_the_commit_makes_no_root() {
    let _serial = serial().await;
    suite::spans();
    let broker = Broker::start();
    let topic = topic_with(&broker, "commit-auto", 2).await;
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", format!("commits.{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "100")
        .set("enable.auto.offset.store", "false")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[topic.as_str()]).expect("subscribe");
    let ledger = CommitLedger::new();
    let (messages, process_spans) = process(&consumer, &ledger, 2).await;

    ledger.store_offset(&consumer, &messages[1]).expect("the offset is stored");
    // The automatic commit lands (librdkafka's timer, every 100 ms).
    for _ in 0..300 {
        if committed_offset(&consumer, &topic) == Offset::Offset(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(committed_offset(&consumer, &topic), Offset::Offset(2), "the automatic commit happened");

    let store = the_span_named(&format!("store_offset {topic}"));
    assert_eq!(store.span_kind, SpanKind::Client);
    assert_eq!(store.parent_span_id, process_spans[1]);
    assert_eq!(attribute(&store, "messaging.operation.name"), Some(text("store_offset")));
    assert_eq!(
        linked(&store),
        vec![(process_spans[0], link_attributes(&topic, 0)), (process_spans[1], link_attributes(&topic, 1))]
    );
    assert!(ledger.is_empty());
    let settles: Vec<String> = spans_to(&topic)
        .into_iter()
        .filter(|span| span.span_kind == SpanKind::Client)
        .map(|span| span.name.to_string())
        .collect();
    assert_eq!(settles, vec![format!("store_offset {topic}")], "the automatic commit has no span");
}

/// A commit made where nothing is current and that covers no recorded process span makes no span (it would be a
/// detached root); the commit itself is made all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_nothing_current_and_nothing_recorded_makes_no_span() {
    let _serial = serial().await;
    suite::spans();
    let broker = Broker::start();
    let topic = topic_with(&broker, "commit-unrecorded", 1).await;
    let consumer = broker.consumer("commits", &topic);
    let message = receive(&consumer).await;

    CommitLedger::new().commit_message(&consumer, &message, CommitMode::Sync).expect("the commit is accepted");

    assert_eq!(committed_offset(&consumer, &topic), Offset::Offset(1));
    assert!(spans_to(&topic).iter().all(|span| span.span_kind != SpanKind::Client), "no commit span");
}

/// A commit the broker refuses returns its error unchanged; the span records it (status Error with the error's
/// message, `error.type`), and the ledger keeps the entries for the commit that follows, which links them.
/// Needs the mock cluster's error injection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_records_its_error_and_keeps_the_entries_for_the_next() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let _serial = serial().await;
    suite::spans();
    let broker = Broker::start_mock();
    let topic = topic_with(&broker, "commit-refused", 1).await;
    let consumer = broker.consumer("commits", &topic);
    let ledger = CommitLedger::new();
    let (messages, process_spans) = process(&consumer, &ledger, 1).await;
    let Broker::Mock(cluster) = &broker else { unreachable!("start_mock starts the mock cluster") };
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 8],
    );

    let error = ledger.commit_message(&consumer, &messages[0], CommitMode::Sync).expect_err("the broker refuses");

    let refused = the_span_named(&format!("commit {topic}"));
    assert_eq!(refused.parent_span_id, process_spans[0]);
    assert_eq!(attribute(&refused, "error.type"), Some(text("rdkafka::error::KafkaError")));
    assert_eq!(refused.status, Status::error(error.to_string()));
    assert!(error.to_string().contains("authoriz"), "the broker's refusal: {error}");
    assert_eq!(ledger.len(), 1, "the refused commit gave its entry back");

    cluster.clear_request_errors(RDKafkaApiKey::OffsetCommit);
    ledger.commit_message(&consumer, &messages[0], CommitMode::Sync).expect("the commit is accepted");
    let commits: Vec<SpanData> = finished()
        .into_iter()
        .filter(|span| span.name == format!("commit {topic}") && span.status == Status::Unset)
        .collect();
    assert_eq!(commits.len(), 1);
    assert_eq!(linked(&commits[0]), vec![(process_spans[0], link_attributes(&topic, 0))]);
    assert!(ledger.is_empty());
}
