//! Kafka transactions, traced: `begin_transaction` starts a span that ends on commit or abort with the outcome, the
//! PRODUCER spans of the transaction's sends are its children, and `send_offsets_to_transaction` is a settle span
//! inside it linked to the consumed messages' process spans (consume-transform-produce). On librdkafka's mock
//! cluster, and on tansu in `scripts/test`.

use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{global, Context, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset};
use suite::{attribute, finished, receive, Broker};
use tracehop::clients::kafka::{
    begin_transaction, CommitLedger, SendTraced, TracedFutureProducer, TracingProducerContext,
};
use tracehop::clients::ConsumerTracing;
use tracehop::Handler;

static LOOP: Handler = Handler::consumer("suite::transactions::poll_loop").group("transactions");

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

fn transactional(broker: &Broker, transactional_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "10000")
        .set("message.timeout.ms", "10000");
    config
}

/// A transactional `TracedFutureProducer`, its transactions initialised.
fn traced_future_producer(broker: &Broker, transactional_id: &str) -> TracedFutureProducer {
    let producer: FutureProducer = transactional(broker, transactional_id).create().expect("a transactional producer");
    producer.init_transactions(Duration::from_secs(30)).expect("the broker initialises the producer's transactions");
    TracedFutureProducer::new(producer)
}

fn the_span_named(name: &str) -> SpanData {
    let mut named = finished().into_iter().filter(|span| span.name == name);
    let span = named.next().unwrap_or_else(|| panic!("a span named {name}"));
    assert!(named.next().is_none(), "one span named {name}");
    span
}

fn children_of(parent: &SpanData) -> Vec<SpanData> {
    finished().into_iter().filter(|span| span.parent_span_id == parent.span_context.span_id()).collect()
}

/// A transaction begun under a request span, with two sends through a `TracedFutureProducer`, committed: one span
/// `transaction {transactional.id}`, INTERNAL, a child of the request span, with `tracehop.transaction.outcome =
/// committed`; the two PRODUCER spans `send {topic}` are its children in its trace; a consumer (reading committed
/// messages only, librdkafka's default) receives both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_transaction_is_one_span_with_its_sends_as_children() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("tx-commit");
    broker.create_topic(&topic, 1);
    let transactional_id = format!("id-{topic}");
    let producer = traced_future_producer(&broker, &transactional_id);
    let request = Context::current_with_span(global::tracer("suite").start("request"));

    let mut transaction = {
        let _request = request.clone().attach();
        begin_transaction(producer.inner()).expect("the transaction begins")
    };
    for key in ["a", "b"] {
        let record = FutureRecord::<str, str>::to(&topic).key(key).payload("{}");
        transaction.instrument(producer.send(record, Duration::from_secs(10))).await.expect("delivered");
    }
    transaction.commit(Duration::from_secs(30)).expect("the transaction commits");

    let span = the_span_named(&format!("transaction {transactional_id}"));
    assert_eq!(span.span_kind, SpanKind::Internal);
    assert_eq!(span.parent_span_id, request.span().span_context().span_id());
    assert_eq!(span.span_context.trace_id(), request.span().span_context().trace_id());
    assert_eq!(attribute(&span, "messaging.system"), Some(text("kafka")));
    assert_eq!(attribute(&span, "tracehop.kafka.transactional_id"), Some(text(&transactional_id)));
    assert_eq!(attribute(&span, "tracehop.transaction.outcome"), Some(text("committed")));
    assert_eq!(span.status, Status::Unset);
    let sends = children_of(&span);
    assert_eq!(sends.len(), 2, "the two sends: {sends:#?}");
    for send in &sends {
        assert_eq!(send.name, format!("send {topic}"));
        assert_eq!(send.span_kind, SpanKind::Producer);
        assert_eq!(send.span_context.trace_id(), span.span_context.trace_id());
    }
    let consumer = broker.consumer("transactions", &topic);
    let keys: Vec<Option<Vec<u8>>> = vec![
        rdkafka::Message::key(&receive(&consumer).await).map(<[u8]>::to_vec),
        rdkafka::Message::key(&receive(&consumer).await).map(<[u8]>::to_vec),
    ];
    assert_eq!(keys, vec![Some(b"a".to_vec()), Some(b"b".to_vec())]);
}

/// A transaction whose send goes through a `BaseProducer` with a `TracingProducerContext`, aborted: the span ends
/// with `tracehop.transaction.outcome = aborted`, and the send's PRODUCER span is its child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_records_aborted_with_its_send_as_child() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("tx-abort");
    broker.create_topic(&topic, 1);
    let transactional_id = format!("id-{topic}");
    let producer: BaseProducer<TracingProducerContext> = transactional(&broker, &transactional_id)
        .create_with_context(TracingProducerContext::new(DefaultProducerContext))
        .expect("a transactional producer");
    producer.init_transactions(Duration::from_secs(30)).expect("the broker initialises the producer's transactions");

    let mut transaction = begin_transaction(&producer).expect("the transaction begins");
    transaction
        .run(|| {
            producer.send_traced(BaseRecord::<str, str>::to(&topic).key("a").payload("{}")).map_err(|(error, _)| error)
        })
        .expect("the record is queued");
    // Serves the delivery report, which ends the PRODUCER span.
    producer.flush(Duration::from_secs(10)).expect("the record is delivered");
    transaction.abort(Duration::from_secs(30)).expect("the transaction aborts");

    let span = the_span_named(&format!("transaction {transactional_id}"));
    assert_eq!(span.span_kind, SpanKind::Internal);
    assert_eq!(span.parent_span_id, SpanId::INVALID, "nothing was current: the transaction starts a trace");
    assert_eq!(attribute(&span, "tracehop.transaction.outcome"), Some(text("aborted")));
    assert_eq!(span.status, Status::Unset);
    let sends = children_of(&span);
    assert_eq!(sends.iter().map(|send| send.name.to_string()).collect::<Vec<_>>(), vec![format!("send {topic}")]);
    assert_eq!(sends[0].span_kind, SpanKind::Producer);
}

/// A `TracedTransaction` dropped with neither a commit nor an abort ends its span as `abandoned`; the transaction
/// itself is left open for the producer to end (tracehop does not abort it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_dropped_unfinished_is_recorded_as_abandoned() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("tx-abandoned");
    broker.create_topic(&topic, 1);
    let transactional_id = format!("id-{topic}");
    let producer = traced_future_producer(&broker, &transactional_id);

    drop(begin_transaction(producer.inner()).expect("the transaction begins"));

    let span = the_span_named(&format!("transaction {transactional_id}"));
    assert_eq!(attribute(&span, "tracehop.transaction.outcome"), Some(text("abandoned")));
    assert_eq!(span.status, Status::Unset);
    // Still open: the producer can abort it, and could not begin another before that.
    producer.inner().abort_transaction(Duration::from_secs(30)).expect("the open transaction aborts");
}

/// Consume-transform-produce: two consumed messages, recorded in a ledger, transformed and sent in a transaction,
/// whose `send_offsets_to_transaction` through the ledger is a settle span `send_offsets {topic}` (CLIENT, a
/// child of the transaction span) linked to the two process spans with their offsets; the transaction's commit
/// commits the consumer group's offsets (checked on tansu: the mock cluster does not store them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_offsets_is_a_child_of_the_transaction_linked_to_the_consumed_process_spans() {
    suite::spans();
    let broker = Broker::start();
    let (input, output) = (suite::unique_topic("tx-input"), suite::unique_topic("tx-output"));
    broker.create_topic(&input, 1);
    broker.create_topic(&output, 1);
    for key in ["a", "b"] {
        broker.send_raw(&input, key, b"{}", &[]).await;
    }
    let consumer = broker.consumer("transactions", &input);
    let transactional_id = format!("id-{input}");
    let producer = traced_future_producer(&broker, &transactional_id);
    let ledger = CommitLedger::new();
    let mut transaction = begin_transaction(producer.inner()).expect("the transaction begins");
    let mut process_spans = Vec::new();
    for _ in 0..2 {
        let message = ConsumerTracing::new(&LOOP).trace(receive(&consumer).await);
        ledger.record(&message);
        process_spans.push(message.span().context().span().span_context().span_id());
        let (message, span) = message.into_parts();
        let key = rdkafka::Message::key(&message).map(<[u8]>::to_vec).expect("a key");
        let record = FutureRecord::<[u8], str>::to(&output).key(&key).payload("transformed");
        // The send is a child of the process span, inside the transaction.
        span.instrument(async { producer.send(record, Duration::from_secs(10)).await.map_err(|(error, _)| error) })
            .await
            .expect("delivered");
    }

    let position = consumer.position().expect("the consumer's position");
    let metadata = consumer.group_metadata().expect("a consumer in a group");
    ledger
        .send_offsets_to_transaction(&transaction, &position, &metadata, Duration::from_secs(30))
        .expect("the offsets join the transaction");
    transaction.commit(Duration::from_secs(30)).expect("the transaction commits");

    let span = the_span_named(&format!("transaction {transactional_id}"));
    let send_offsets = the_span_named(&format!("send_offsets {input}"));
    assert_eq!(send_offsets.span_kind, SpanKind::Client);
    assert_eq!(send_offsets.parent_span_id, span.span_context.span_id());
    assert_eq!(send_offsets.span_context.trace_id(), span.span_context.trace_id());
    assert_eq!(attribute(&send_offsets, "messaging.operation.type"), Some(text("settle")));
    assert_eq!(attribute(&send_offsets, "messaging.operation.name"), Some(text("send_offsets")));
    assert_eq!(attribute(&send_offsets, "messaging.destination.name"), Some(text(&input)));
    let linked: Vec<(SpanId, Vec<KeyValue>)> =
        send_offsets.links.links.iter().map(|link| (link.span_context.span_id(), link.attributes.clone())).collect();
    let link_attributes = |offset: i64| {
        vec![
            KeyValue::new("messaging.destination.name", input.clone()),
            KeyValue::new("messaging.destination.partition.id", "0"),
            KeyValue::new("messaging.kafka.offset", offset),
        ]
    };
    assert_eq!(linked, vec![(process_spans[0], link_attributes(0)), (process_spans[1], link_attributes(1))]);
    assert!(ledger.is_empty());
    assert_eq!(attribute(&span, "tracehop.transaction.outcome"), Some(text("committed")));
    // librdkafka's mock cluster answers TxnOffsetCommit without storing the offsets; a real broker stores them.
    if !broker.is_mock() {
        let committed = consumer.committed(Duration::from_secs(10)).expect("the group's committed offsets");
        assert_eq!(committed.find_partition(&input, 0).map(|partition| partition.offset()), Some(Offset::Offset(2)));
    }
}

/// A `begin_transaction` that fails (the producer's transactions were never initialised) returns librdkafka's
/// error unchanged, and its span ends at once as `failed`, with `error.type` and status Error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_begin_returns_its_error_and_ends_the_span_as_failed() {
    suite::spans();
    let broker = Broker::start();
    let transactional_id = format!("id-{}", suite::unique_topic("tx-uninitialised"));
    let producer: FutureProducer =
        transactional(&broker, &transactional_id).create().expect("a transactional producer");

    let error = begin_transaction(&producer).expect_err("no init_transactions: the transaction cannot begin");

    let span = the_span_named(&format!("transaction {transactional_id}"));
    assert_eq!(attribute(&span, "tracehop.transaction.outcome"), Some(text("failed")));
    assert_eq!(attribute(&span, "error.type"), Some(text("rdkafka::error::KafkaError")));
    assert_eq!(span.status, Status::error(error.to_string()));
}

/// A commit that fails returns its error unchanged and records it on the still open span; the abort that follows
/// ends it as `aborted`, the failure kept (status Error with the commit's error, `error.type`). The commit fails as
/// librdkafka fails a transaction one of whose records was refused (the mock cluster's injected refusal of the
/// Produce request): the transaction can then only be aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_recorded_and_the_abort_that_follows_ends_the_span() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    suite::spans();
    let broker = Broker::start_mock();
    let topic = suite::unique_topic("tx-commit-refused");
    broker.create_topic(&topic, 1);
    let transactional_id = format!("id-{topic}");
    let producer = traced_future_producer(&broker, &transactional_id);
    let mut transaction = begin_transaction(producer.inner()).expect("the transaction begins");
    let Broker::Mock(cluster) = &broker else { unreachable!("start_mock starts the mock cluster") };
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED]);
    let record = FutureRecord::<str, str>::to(&topic).key("a").payload("{}");
    let refused = transaction.instrument(producer.send(record, Duration::from_secs(10))).await;
    assert!(refused.is_err(), "the broker refuses the record");

    let error = transaction.commit(Duration::from_secs(30)).expect_err("a transaction with a refused record fails");
    transaction.abort(Duration::from_secs(30)).expect("the failed transaction aborts");

    let span = the_span_named(&format!("transaction {transactional_id}"));
    assert_eq!(attribute(&span, "tracehop.transaction.outcome"), Some(text("aborted")));
    assert_eq!(attribute(&span, "error.type"), Some(text("rdkafka::error::KafkaError")));
    assert_eq!(span.status, Status::error(error.to_string()));
}
