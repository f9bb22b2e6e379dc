//! The messaging conventions beyond spans, over Kafka (librdkafka's mock cluster): the four messaging metrics and
//! the message-age histogram, settle spans around commits and offset stores; and a check that every
//! semantic-convention name tracehop emits is one of the conventions crate's own. What every broker shares (a
//! handler's processing duration, a settle inside a handler, captured headers and the attempt, the message's age)
//! is shown on every broker by `tests/shared_behaviour.rs`.

use std::time::Duration;

use opentelemetry::trace::SpanKind;
use opentelemetry::Value;
use rdkafka::consumer::{CommitMode, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use suite::{
    attribute, expected, metric_points, receive, spans_to, Broker, MetricPoint, AGE_BOUNDARIES, DURATION_BOUNDARIES,
};
use tracehop::clients::ConsumerTracing;
use tracehop::Handler;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tracehop::traced_producer]
async fn publish(producer: &FutureProducer, record: FutureRecord<'_, str, str>) {
    producer.send(record, Duration::from_secs(10)).await.expect("the mock cluster accepts the message");
}

#[tracehop::traced_producer(system = "kafka", destination = "refused-topic")]
async fn publish_refused() -> Result<(), String> {
    tracehop::inject_current_context(&mut FutureRecord::<str, str>::to("refused-topic"));
    Err("the broker is down".to_owned())
}

/// Handles a message and commits it, failing on a payload of `fail` (after committing).
#[tracehop::traced_consumer(group = "conventions")]
fn handle_and_commit(message: &OwnedMessage, consumer: &StreamConsumer) -> Result<(), String> {
    tracehop::clients::kafka::commit_message(consumer, message, CommitMode::Sync).map_err(|error| error.to_string())?;
    match rdkafka::Message::payload(message) {
        Some(b"fail") => Err("refused".to_owned()),
        _ => Ok(()),
    }
}

#[tracehop::traced_consumer(
    group = "conventions",
    capture_headers("x-*", "Authorization"),
    exclude_headers("x-internal-*"),
    attempt_header = "x-retry-count"
)]
fn handle_with_headers(message: &OwnedMessage) {
    let _ = message;
}

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

fn histogram(name: &str, bounds: &[f64], count: u64, attributes: &[(&str, Value)]) -> MetricPoint {
    MetricPoint {
        name: name.to_owned(),
        unit: "s".to_owned(),
        kind: "histogram",
        attributes: expected(attributes),
        bounds: bounds.to_vec(),
        count,
    }
}

fn counter(name: &str, count: u64, attributes: &[(&str, Value)]) -> MetricPoint {
    MetricPoint {
        name: name.to_owned(),
        unit: "{message}".to_owned(),
        kind: "counter",
        attributes: expected(attributes),
        bounds: Vec::new(),
        count,
    }
}

fn sorted(mut points: Vec<MetricPoint>) -> Vec<MetricPoint> {
    points.sort_by_key(|point| format!("{:?}", point.attributes));
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_publishes_and_commits_record_the_messaging_metrics() {
    suite::spans();
    suite::metrics();
    let broker = Broker::start();
    let topic = suite::unique_topic("metrics");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("conventions", &topic);
    publish(&broker.producer(), FutureRecord::to(&topic).key("k").payload("ok")).await;
    publish(&broker.producer(), FutureRecord::to(&topic).key("k").payload("fail")).await;
    assert_eq!(handle_and_commit(&receive(&consumer).await, &consumer), Ok(()));
    assert_eq!(handle_and_commit(&receive(&consumer).await, &consumer), Err("refused".to_owned()));

    let handler = [
        ("messaging.system", text("kafka")),
        ("messaging.operation.name", text("process")),
        ("messaging.consumer.group.name", text("conventions")),
        ("messaging.destination.name", text(&topic)),
    ];
    let failed: Vec<_> = handler.iter().cloned().chain([("error.type", text("alloc::string::String"))]).collect();
    assert_eq!(
        sorted(metric_points("messaging.process.duration", &topic)),
        sorted(vec![
            histogram("messaging.process.duration", &DURATION_BOUNDARIES, 1, &handler),
            histogram("messaging.process.duration", &DURATION_BOUNDARIES, 1, &failed),
        ])
    );
    let send = [
        ("messaging.system", text("kafka")),
        ("messaging.operation.name", text("send")),
        ("messaging.operation.type", text("send")),
        ("messaging.destination.name", text(&topic)),
    ];
    let commit = [
        ("messaging.system", text("kafka")),
        ("messaging.operation.name", text("commit")),
        ("messaging.operation.type", text("settle")),
        ("messaging.destination.name", text(&topic)),
    ];
    assert_eq!(
        sorted(metric_points("messaging.client.operation.duration", &topic)),
        sorted(vec![
            histogram("messaging.client.operation.duration", &DURATION_BOUNDARIES, 2, &send),
            histogram("messaging.client.operation.duration", &DURATION_BOUNDARIES, 2, &commit),
        ])
    );
    assert_eq!(
        metric_points("messaging.client.sent.messages", &topic),
        vec![counter("messaging.client.sent.messages", 2, &send)]
    );
    assert_eq!(
        metric_points("tracehop.message.age", &topic),
        vec![histogram("tracehop.message.age", &AGE_BOUNDARIES, 2, &handler)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_records_its_error_type_on_the_send_metrics() {
    suite::spans();
    suite::metrics();
    assert_eq!(publish_refused().await, Err("the broker is down".to_owned()));
    let failed = [
        ("messaging.system", text("kafka")),
        ("messaging.operation.name", text("send")),
        ("messaging.operation.type", text("send")),
        ("messaging.destination.name", text("refused-topic")),
        ("error.type", text("alloc::string::String")),
    ];
    assert_eq!(
        metric_points("messaging.client.operation.duration", "refused-topic"),
        vec![histogram("messaging.client.operation.duration", &DURATION_BOUNDARIES, 1, &failed)]
    );
    assert_eq!(
        metric_points("messaging.client.sent.messages", "refused-topic"),
        vec![counter("messaging.client.sent.messages", 1, &failed)]
    );
}

static RECEIVER: Handler = Handler::consumer("conventions::receive_loop").group("receivers");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_consumer_counts_the_messages_it_receives() {
    suite::spans();
    suite::metrics();
    let broker = Broker::start();
    let topic = suite::unique_topic("consumed");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("receivers", &topic);
    broker.send_raw(&topic, "k", b"one", &[]).await;
    broker.send_raw(&topic, "k", b"two", &[]).await;
    for _ in 0..2 {
        ConsumerTracing::new(&RECEIVER).trace(receive(&consumer).await).process(|_| ());
    }
    assert_eq!(
        metric_points("messaging.client.consumed.messages", &topic),
        vec![counter(
            "messaging.client.consumed.messages",
            2,
            &[
                ("messaging.system", text("kafka")),
                ("messaging.operation.name", text("receive")),
                ("messaging.consumer.group.name", text("receivers")),
                ("messaging.destination.name", text(&topic)),
            ]
        )]
    );
}

static RECEIVER_OF_FAILURES: Handler =
    Handler::consumer("conventions::failing_loop").group("receivers").destination("conventions-failures");

/// A receive that fails counts no message, under its `error.type`, beside the messages received; the error
/// itself reaches the caller unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_receive_counts_no_message_under_its_error_type() {
    use futures_util::StreamExt;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    suite::spans();
    suite::metrics();
    let message = rdkafka::message::OwnedMessage::new(
        Some(b"one".to_vec()),
        None,
        "conventions-failures".to_owned(),
        rdkafka::message::Timestamp::NotAvailable,
        0,
        0,
        None,
    );
    let failure = KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition);
    let received = futures_util::stream::iter([Ok(message), Err(failure)]);
    let mut traced = ConsumerTracing::new(&RECEIVER_OF_FAILURES).stream(received);
    traced.next().await.expect("the message").expect("received").process(|_| ());
    let Some(Err(error)) = traced.next().await else { panic!("the receive's error comes through") };
    assert_eq!(error, KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition));

    let attributes = [
        ("messaging.system", text("kafka")),
        ("messaging.operation.name", text("receive")),
        ("messaging.consumer.group.name", text("receivers")),
        ("messaging.destination.name", text("conventions-failures")),
    ];
    let mut failed = attributes.to_vec();
    failed.push(("error.type", text("rdkafka::error::KafkaError")));
    let mut points = metric_points("messaging.client.consumed.messages", "conventions-failures");
    points.sort_by_key(|point| point.attributes.len());
    assert_eq!(
        points,
        vec![
            counter("messaging.client.consumed.messages", 1, &attributes),
            counter("messaging.client.consumed.messages", 0, &failed),
        ]
    );
}

/// A settle outside the handler: the handler's span has ended and no span is current, so `store_offset` stores
/// the offset untraced (its span would be a detached root, which is what made commit spans useless elsewhere);
/// a settle the caller links to the consumer span explicitly is traced, pointing at it. (A refused settle is
/// `a_refused_commit_is_returned_and_recorded_on_its_settle_span`; commits linked to every process span they
/// account for are `tests/kafka_commits.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_offset_outside_the_handler_makes_no_root_and_a_linked_settle_points_at_the_consumer_span() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("store-offset");
    broker.create_topic(&topic, 1);
    // Offsets stored by the caller, as `store_offset` needs.
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", format!("conventions.{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.offset.store", "false")
        .create()
        .expect("a consumer");
    rdkafka::consumer::Consumer::subscribe(&consumer, &[topic.as_str()]).expect("subscribe");
    broker.send_raw(&topic, "k", b"ok", &[]).await;
    let traced = ConsumerTracing::new(&RECEIVER).trace(receive(&consumer).await);
    let consumer_context = traced.span().context().clone();
    let message = traced.process_with_outcome(|message| message, |_, _| ());

    assert_eq!(tracehop::clients::kafka::store_offset(&consumer, &message).map_err(|error| error.to_string()), Ok(()));
    let spans = spans_to(&topic);
    let consumer_span = suite::the_span(&spans, SpanKind::Consumer);
    let kinds: Vec<SpanKind> = spans.iter().map(|span| span.span_kind.clone()).collect();
    assert_eq!(kinds, vec![SpanKind::Consumer], "no store_offset span: no span is current any more");

    // Linked explicitly, the settle span points at the consumer span it settles for.
    let settled = tracehop::Settle::new(tracehop::Settlement::Commit, &message)
        .linked_to(&consumer_context)
        .run(|| Ok::<(), std::convert::Infallible>(()));
    assert_eq!(settled, Ok(()));
    let linked = spans_to(&topic)
        .into_iter()
        .find(|span| span.span_kind == SpanKind::Client && span.name == format!("commit {topic}"))
        .expect("the linked settle span");
    assert_eq!(linked.links.links.len(), 1);
    assert_eq!(linked.links.links[0].span_context.span_id(), consumer_span.span_context.span_id());
    assert_eq!(linked.status, opentelemetry::trace::Status::Unset);
}

/// A commit the broker refuses: `commit_message` returns the broker's error to the handler unchanged, and the
/// settle span records it (status and `error.type`). Needs the mock cluster's error injection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_is_returned_and_recorded_on_its_settle_span() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    suite::spans();
    let broker = Broker::start_mock();
    let topic = suite::unique_topic("settle-refused");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("conventions", &topic);
    broker.send_raw(&topic, "k", b"ok", &[("traceparent", TRACEPARENT.as_bytes())]).await;
    let message = receive(&consumer).await;
    let Broker::Mock(cluster) = &broker else { unreachable!("start_mock starts the mock cluster") };
    let refusal = RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED;
    cluster.request_errors(RDKafkaApiKey::OffsetCommit, &[refusal; 8]);

    let handled = handle_and_commit(&message, &consumer);
    let error = handled.expect_err("the refused commit is the handler's error");
    let spans = spans_to(&topic);
    let (consumer_span, settle) =
        (suite::the_span(&spans, SpanKind::Consumer), suite::the_span(&spans, SpanKind::Client));
    assert_eq!(settle.name, format!("commit {topic}"));
    assert_eq!(settle.parent_span_id, consumer_span.span_context.span_id());
    assert_eq!(attribute(&settle, "error.type"), Some(text("rdkafka::error::KafkaError")));
    assert_eq!(settle.status, opentelemetry::trace::Status::error(error.clone()));
    assert!(error.contains("authoriz"), "the broker's refusal: {error}");
    assert_eq!(consumer_span.status, opentelemetry::trace::Status::error(error));
}

/// Every constant `pub const NAME: &str = "value";` of a source file of the conventions crate.
/// The names the conventions crate defines in `file` (`attribute.rs`, `metric.rs`), read from the source this very
/// build compiled. The build already records where that source is: rustc's dep-info (`deps/NAME-HASH.d`, beside
/// this test binary) lists every file of every compiled crate. No `cargo metadata`, which would need every package
/// of the lockfile downloaded (for every platform), nor the network, nor a guess at where `CARGO_HOME` is.
fn convention_names(file: &str) -> Vec<String> {
    let lockfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).expect("Cargo.lock");
    let locked_version = lockfile
        .split("[[package]]")
        .find(|package| package.contains("name = \"opentelemetry-semantic-conventions\""))
        .and_then(|package| package.lines().find_map(|line| line.strip_prefix("version = \"")))
        .map(|version| version.trim_end_matches('"').to_owned())
        .expect("the conventions crate is in the lockfile");
    let deps = std::env::current_exe().expect("the test binary's path");
    let deps = deps.parent().expect("the test binary's folder");
    let wanted = format!("/src/{file}");
    let mut sources: Vec<std::path::PathBuf> = std::fs::read_dir(deps)
        .expect("the build's deps folder")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            name.starts_with("opentelemetry_semantic_conventions-") && name.ends_with(".d")
        })
        .flat_map(|dep_info| {
            let dep_info = std::fs::read_to_string(dep_info).expect("a dep-info file");
            // One `PATH:` line per source file, spaces escaped as `\ `.
            dep_info
                .lines()
                .filter_map(|line| line.strip_suffix(':'))
                .map(|path| path.replace("\\ ", " "))
                .filter(|path| path.ends_with(&wanted))
                .map(std::path::PathBuf::from)
                .collect::<Vec<_>>()
        })
        .collect();
    sources.sort();
    sources.dedup();
    // A target folder used before may also hold an older version's dep-info: take the locked one's.
    if sources.len() > 1 {
        let versioned = format!("opentelemetry-semantic-conventions-{locked_version}/");
        sources.retain(|path| path.to_string_lossy().contains(&versioned));
    }
    let [source] = sources.as_slice() else {
        panic!("expected the dep-info of one build of opentelemetry-semantic-conventions {locked_version} in {}, found the sources {sources:?}", deps.display())
    };
    let source = std::fs::read_to_string(source).expect("the conventions crate's source");
    source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|line| line.split_once(": &str = \"").map(|(_, value)| value.trim_end_matches("\";").to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_semantic_convention_name_emitted_is_one_of_the_conventions_crate() {
    suite::spans();
    suite::metrics();
    let attribute_names = convention_names("attribute.rs");
    let metric_names = convention_names("metric.rs");
    assert!(attribute_names.iter().any(|name| name == "messaging.operation.type"), "the crate's constants were read");

    // Every kind of span tracehop makes: producer, consumer with headers and attempt, settle, receive, batch.
    let broker = Broker::start();
    let topic = suite::unique_topic("names");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("conventions", &topic);
    publish(&broker.producer(), FutureRecord::to(&topic).key("k").payload("ok")).await;
    broker.send_raw(&topic, "k", b"{}", &[("x-tenant", b"acme"), ("x-retry-count", b"1")]).await;
    broker.send_raw(&topic, "k", b"{}", &[("traceparent", b"garbage")]).await;
    handle_and_commit(&receive(&consumer).await, &consumer).expect("handled");
    handle_with_headers(&receive(&consumer).await);
    let last = receive(&consumer).await;
    static RECEIVING: ConsumerTracing = ConsumerTracing::new(&RECEIVER).with_receive_spans();
    RECEIVING.trace(last.clone()).process(|_| ());
    #[tracehop::traced_consumer(group = "conventions")]
    fn batch(messages: &[OwnedMessage]) {
        for message in messages {
            tracehop::MessageSpan::in_batch(message).start().run(|| ());
        }
    }
    batch(&[last]);

    // This test's spans, and each kind it set out to make.
    let spans = spans_to(&topic);
    let text_of = |span: &opentelemetry_sdk::trace::SpanData, key| attribute(span, key).map(|value| value.to_string());
    let mut made: Vec<(String, String, Option<String>, Option<String>)> = spans
        .iter()
        .map(|span| {
            let kind = format!("{:?}", span.span_kind);
            let batch_size = text_of(span, "messaging.batch.message_count");
            (kind, span.name.to_string(), text_of(span, "messaging.operation.name"), batch_size)
        })
        .collect();
    made.sort();
    let span = |kind: &str, operation: &str, batch_size: Option<&str>| {
        let name = format!("{operation} {topic}");
        (kind.to_owned(), name, Some(operation.to_owned()), batch_size.map(str::to_owned))
    };
    let mut expected_spans = vec![
        span("Producer", "send", None),
        span("Consumer", "process", None), // handle_and_commit
        span("Client", "commit", None),
        span("Consumer", "process", None), // handle_with_headers
        span("Client", "receive", None),
        span("Consumer", "process", None),      // the traced consumer's
        span("Consumer", "process", Some("1")), // the batch
        span("Consumer", "process", None),      // its message's
    ];
    expected_spans.sort();
    assert_eq!(made, expected_spans);

    let is_convention = |key: &str| {
        key.starts_with("tracehop.")
            || key.starts_with("app.")
            || key.starts_with("messaging.header.")
            || attribute_names.iter().any(|name| name == key)
    };
    for span in &spans {
        for attribute in &span.attributes {
            assert!(
                is_convention(attribute.key.as_str()),
                "`{}` on span {} is no convention name",
                attribute.key,
                span.name
            );
        }
        for link in &span.links.links {
            for attribute in &link.attributes {
                assert!(is_convention(attribute.key.as_str()), "`{}` on a link of {}", attribute.key, span.name);
            }
        }
    }

    // This test's metrics: the names with a data point for its topic.
    let (provider, exporter) = suite::metrics();
    provider.force_flush().expect("flushed");
    let exported = exporter.get_finished_metrics().expect("metrics");
    let mut recorded: Vec<String> = exported
        .iter()
        .flat_map(|resource| resource.scope_metrics())
        .flat_map(|scope| scope.metrics())
        .map(|metric| metric.name().to_owned())
        .filter(|name| !metric_points(name, &topic).is_empty())
        .collect();
    recorded.sort();
    recorded.dedup();
    assert_eq!(
        recorded,
        [
            "messaging.client.consumed.messages",
            "messaging.client.operation.duration",
            "messaging.client.sent.messages",
            "messaging.process.duration",
            "tracehop.consumer.context",
            "tracehop.message.age",
        ]
    );
    for name in &recorded {
        assert!(
            name.starts_with("tracehop.") || metric_names.iter().any(|convention| convention == name),
            "metric `{name}` is no convention name"
        );
    }
}

/// The source of the runtime crate names no semantic convention by hand: outside tracehop's own namespace,
/// every name comes from the conventions crate's constants (its tests may spell names out, to pin them).
#[test]
fn the_runtime_spells_out_no_semantic_convention_name() {
    let prefixes = ["\"messaging.", "\"error.", "\"server.", "\"code.", "\"exception.", "\"network."];
    let mut offenders = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/runtime/src"))];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).expect("a directory").map(|entry| entry.expect("an entry").path()));
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("a source file");
        // Unit tests come last in a file; `tests.rs` files are tests throughout.
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        if path.file_name().is_some_and(|name| name == "tests.rs") {
            continue;
        }
        for (number, line) in code.lines().enumerate() {
            let line_code = line.split("//").next().unwrap_or_default();
            if prefixes.iter().any(|prefix| line_code.contains(prefix)) {
                offenders.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
            }
        }
    }
    // The captured-header prefix is an exception, documented at its constant: the conventions define none. So are
    // the messaging exception events, spelled in `conventions.rs`: the conventions crate has no event names.
    offenders.retain(|line| !line.contains("pub const CAPTURED_HEADER_PREFIX"));
    offenders.retain(|line| !line.contains("pub(crate) const MESSAGING_") || !line.contains("_EXCEPTION_EVENT"));
    assert_eq!(offenders, Vec::<String>::new());
}
