//! Helpers shared by tracehop's integration tests: the embedded Kafka broker (librdkafka's mock cluster, the
//! real Kafka protocol over loopback), span capture with the SDK's in-memory exporter, and log capture; and the
//! test bodies every broker shares ([`behaviour`]), with each broker's fixture for them ([`kafka`], [`rabbitmq`],
//! [`nats`]).

pub mod behaviour;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod lineage;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::{global, KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};

/// The in-memory exporter behind the global tracer provider of this test process, installed once with the W3C
/// propagators. Spans are exported as they end (simple processor), so a test reads them right after.
pub fn spans() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        global::set_tracer_provider(provider);
        tracehop::install_propagator();
        exporter
    })
}

/// Every finished span so far whose `messaging.destination.name` is `destination`.
pub fn spans_to(destination: &str) -> Vec<SpanData> {
    finished()
        .into_iter()
        .filter(|span| attribute(span, "messaging.destination.name") == Some(Value::from(destination.to_owned())))
        .collect()
}

/// Every finished span of `trace_id`.
pub fn spans_of_trace(trace_id: TraceId) -> Vec<SpanData> {
    finished().into_iter().filter(|span| span.span_context.trace_id() == trace_id).collect()
}

/// Every finished span so far.
pub fn finished() -> Vec<SpanData> {
    spans().get_finished_spans().expect("the in-memory exporter is not shut down")
}

/// The finished span `span_id`; fails the test when it has not ended.
pub fn finished_span(span_id: SpanId) -> SpanData {
    finished()
        .into_iter()
        .find(|span| span.span_context.span_id() == span_id)
        .unwrap_or_else(|| panic!("span {span_id} has not ended"))
}

/// The value of attribute `key` on `span`.
pub fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes.iter().find(|attribute| attribute.key.as_str() == key).map(|attribute| attribute.value.clone())
}

/// The attributes of `span`, sorted by key, as `(key, value)` pairs for exact comparison; all but the message's age
/// (`tracehop.message.age_ms`), which depends on the clock: tests of it read it with [`attribute`].
pub fn attributes(span: &SpanData) -> Vec<(String, Value)> {
    let mut pairs: Vec<(String, Value)> = span
        .attributes
        .iter()
        .filter(|attribute| attribute.key.as_str() != "tracehop.message.age_ms")
        .map(|KeyValue { key, value, .. }| (key.to_string(), value.clone()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// Sorted `(key, value)` pairs, for comparing with [`attributes`].
pub fn expected(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
    let mut pairs: Vec<(String, Value)> = pairs.iter().map(|(key, value)| (key.to_string(), value.clone())).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// A topic, exchange or queue name no other test uses, in this run or any other on the same broker: a per-run
/// nonce and a per-process counter, so a shared broker (`AMQP_URL`) never hands one run another run's message.
pub fn unique_topic(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static RUN: OnceLock<u64> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // The standard library seeds every `RandomState` from the OS's randomness.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    });
    format!("{prefix}-{run:016x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The Kafka broker a test runs on: librdkafka's mock cluster (the real Kafka protocol over loopback, in this
/// process), or, when `TRACEHOP_KAFKA_BOOTSTRAP` is set, the broker there — `scripts/test` runs the Kafka tests a
/// second time on tansu, an independent Kafka-protocol broker (`scripts/tansu`), so the same test bodies also
/// check librdkafka against a broker that is not librdkafka.
pub enum Broker {
    /// librdkafka's mock cluster.
    Mock(MockCluster<'static, DefaultProducerContext>),
    /// A broker running outside the test, at these `bootstrap.servers`.
    External(String),
}

impl Broker {
    /// The suite's broker: the one at `TRACEHOP_KAFKA_BOOTSTRAP`, or a new one-broker mock cluster.
    pub fn start() -> Self {
        match std::env::var("TRACEHOP_KAFKA_BOOTSTRAP") {
            Ok(bootstrap) if !bootstrap.is_empty() => Self::External(bootstrap),
            _ => Self::start_mock(),
        }
    }

    /// A one-broker mock cluster, whatever the suite runs on: for tests that use the mock's own controls
    /// (injected request errors).
    pub fn start_mock() -> Self {
        Self::Mock(MockCluster::new(1).expect("librdkafka's mock cluster starts"))
    }

    /// Whether this is librdkafka's mock cluster.
    pub fn is_mock(&self) -> bool {
        matches!(self, Self::Mock(_))
    }

    /// The `bootstrap.servers` of the broker.
    pub fn bootstrap_servers(&self) -> String {
        match self {
            Self::Mock(cluster) => cluster.bootstrap_servers(),
            Self::External(bootstrap) => bootstrap.clone(),
        }
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        match self {
            Self::Mock(cluster) => {
                cluster.create_topic(topic, partitions, 1).expect("the mock cluster creates the topic")
            }
            Self::External(bootstrap) => create_topic_on(bootstrap, topic, partitions),
        }
    }

    /// A producer connected to the cluster.
    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("message.timeout.ms", "10000")
            .create()
            .expect("a producer for the broker")
    }

    /// A consumer in `group`, subscribed to `topic`, reading from the earliest offset. On the broker the group is
    /// `group.topic`: tests that run at once on one broker (tansu) share no group, where a consumer joining another
    /// test's group would rebalance it and hand that test's uncommitted messages to it again.
    pub fn consumer(&self, group: &str, topic: &str) -> StreamConsumer {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("group.id", format!("{group}.{topic}"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("a consumer for the broker");
        consumer.subscribe(&[topic]).expect("subscribe");
        consumer
    }

    /// Sends one message with exactly `headers`, bypassing tracehop: how a foreign or broken producer publishes.
    pub async fn send_raw(&self, topic: &str, key: &str, payload: &[u8], headers: &[(&str, &[u8])]) {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header { key, value: Some(*value) });
        }
        let record = FutureRecord::to(topic).key(key).payload(payload).headers(owned);
        self.producer().send(record, Duration::from_secs(10)).await.expect("the broker accepts the message");
    }
}

/// Creates `topic` on the broker at `bootstrap` with the admin API, as a user's deployment would. Run on a thread
/// of its own: the admin client's future is driven by librdkafka, so it may be awaited from inside a test's
/// runtime without blocking that runtime's only thread on itself.
pub fn create_topic_on(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    std::thread::spawn(move || {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("an admin client");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let new_topic = NewTopic::new(&topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = runtime.block_on(admin.create_topics([&new_topic], &options)).expect("CreateTopics is answered");
        for result in results {
            result.unwrap_or_else(|(topic, error)| panic!("the broker at {bootstrap} creates topic {topic}: {error}"));
        }
    })
    .join()
    .expect("topic creation does not panic");
}

/// Receives the next message of `consumer` as an `OwnedMessage`, failing the test after 30 seconds.
pub async fn receive(consumer: &StreamConsumer) -> OwnedMessage {
    tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a message within 30 seconds")
        .expect("no Kafka error")
        .detach()
}

/// The CONSUMER spans among `spans` that are children of `producer`, in the order they ended: one per handling
/// of the message it published.
pub fn handlings_of(spans: &[SpanData], producer: &SpanData) -> Vec<SpanData> {
    spans
        .iter()
        .filter(|span| {
            span.span_kind == opentelemetry::trace::SpanKind::Consumer
                && span.parent_span_id == producer.span_context.span_id()
        })
        .cloned()
        .collect()
}

/// What a span is, relative to the span it continues (its origin: a consumer span's producer span, a producer
/// span's request span): everything but its own ids and times. Two ways of tracing the same message (a macro and
/// a client wrapper) must give spans of the same shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// The span's name.
    pub name: String,
    /// The span's kind.
    pub kind: opentelemetry::trace::SpanKind,
    /// Whether its parent is the origin, in the origin's trace.
    pub child_of_origin: bool,
    /// For each link, whether it points at the origin.
    pub links_to_origin: Vec<bool>,
    /// The span's status.
    pub status: opentelemetry::trace::Status,
    /// Its attributes, sorted ([`attributes`]).
    pub attributes: Vec<(String, Value)>,
}

/// The [`Shape`] of `span` relative to `origin`, the span it continues.
pub fn shape(span: &SpanData, origin: &SpanData) -> Shape {
    assert_ne!(span.span_context.span_id(), origin.span_context.span_id(), "a span is shaped against another");
    Shape {
        name: span.name.to_string(),
        kind: span.span_kind.clone(),
        child_of_origin: span.parent_span_id == origin.span_context.span_id()
            && span.span_context.trace_id() == origin.span_context.trace_id(),
        links_to_origin: span
            .links
            .links
            .iter()
            .map(|link| link.span_context.span_id() == origin.span_context.span_id())
            .collect(),
        status: span.status.clone(),
        attributes: attributes(span),
    }
}

/// The one span of `kind` among `spans`; fails the test when there is none or more than one.
pub fn the_span(spans: &[SpanData], kind: opentelemetry::trace::SpanKind) -> SpanData {
    let mut of_kind = spans.iter().filter(|span| span.span_kind == kind);
    let span = of_kind.next().unwrap_or_else(|| panic!("a {kind:?} span in {spans:#?}")).clone();
    assert!(of_kind.next().is_none(), "one {kind:?} span in {spans:#?}");
    span
}

/// Asserts that `consumer` continues `producer`'s trace as tracehop does by default: its child, with the
/// producer's span as a remote parent and as its one link.
pub fn assert_child_of(consumer: &SpanData, producer: &SpanData) {
    assert_eq!(consumer.span_context.trace_id(), producer.span_context.trace_id());
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    assert!(consumer.parent_span_is_remote, "the producer's span is a remote parent");
    let linked: Vec<SpanId> = consumer.links.links.iter().map(|link| link.span_context.span_id()).collect();
    assert_eq!(linked, vec![producer.span_context.span_id()]);
}

/// The producer span's ids, as a consumer should see them as parent.
pub fn ids(span: &SpanData) -> (TraceId, SpanId) {
    (span.span_context.trace_id(), span.span_context.span_id())
}

/// Log events captured while a closure runs: `(level, message)`.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl CapturedLogs {
    /// The captured events at `level` or more severe.
    pub fn at_least(&self, level: tracing::Level) -> Vec<String> {
        self.0.lock().unwrap().iter().filter(|(event, _)| *event <= level).map(|(_, message)| message.clone()).collect()
    }
}

thread_local! {
    /// Where the events of this thread go while [`capture_logs`] runs on it.
    static CAPTURING: std::cell::RefCell<Option<CapturedLogs>> = const { std::cell::RefCell::new(None) };
}

/// The process-wide subscriber behind [`capture_logs`]. It is global and interested in every callsite, always:
/// a thread-scoped subscriber lets `tracing` cache a callsite as uninteresting while another thread hits it
/// with no subscriber, and then loses the events a capture should see.
struct Capture;

impl tracing::Subscriber for Capture {
    fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::always()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        // `try_with`: events from thread-local destructors at thread exit have nowhere to go.
        let _ = CAPTURING.try_with(|capturing| {
            if let Some(logs) = capturing.borrow().as_ref() {
                let mut message = Message(String::new());
                event.record(&mut message);
                logs.0.lock().unwrap().push((*event.metadata().level(), message.0));
            }
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `body` on this thread with every `tracing` event it emits on this thread captured.
pub fn capture_logs<R>(body: impl FnOnce() -> R) -> (R, CapturedLogs) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(Capture).expect("no other global subscriber in the test process")
    });
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            CAPTURING.with(|capturing| capturing.borrow_mut().take());
        }
    }
    let logs = CapturedLogs::default();
    CAPTURING.with(|capturing| *capturing.borrow_mut() = Some(logs.clone()));
    let _stop = Stop;
    (body(), logs)
}

/// A channel on the RabbitMQ server `scripts/test` starts (its URL in `AMQP_URL`). The RabbitMQ tests are
/// `#[ignore]`d, so a bare `cargo test` reports them as ignored; `scripts/test` runs them with
/// `--include-ignored` beside its broker, and then a missing or unreachable broker fails them.
pub async fn rabbitmq_channel() -> lapin::Channel {
    let url = std::env::var("AMQP_URL")
        .expect("AMQP_URL is not set: the RabbitMQ tests run against the broker ./scripts/test starts");
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| panic!("RabbitMQ at {url} is unreachable: {error}"));
    connection.create_channel().await.expect("a channel")
}

/// Takes the next message of `queue`, waiting up to 10 seconds for one to arrive. Acknowledges nothing.
pub async fn next_delivery(channel: &lapin::Channel, queue: &str) -> lapin::message::Delivery {
    for _ in 0..500 {
        let got = channel.basic_get(queue.into(), lapin::options::BasicGetOptions::default()).await.expect("basic.get");
        if let Some(message) = got {
            return message.delivery;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no message on queue {queue} within 10 seconds");
}

/// Declares a non-durable exchange of `kind` named `exchange`, and `queues` bound to it with `routing_key`.
pub async fn declare_exchange(
    channel: &lapin::Channel,
    exchange: &str,
    kind: lapin::ExchangeKind,
    queues: &[&str],
    routing_key: &str,
) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
    use lapin::types::FieldTable;
    // Auto-deleted: gone with its last queue.
    let options = ExchangeDeclareOptions { auto_delete: true, ..ExchangeDeclareOptions::default() };
    channel.exchange_declare(exchange.into(), kind, options, FieldTable::default()).await.expect("exchange.declare");
    for queue in queues {
        declare_queue(channel, queue).await;
        channel
            .queue_bind(
                (*queue).into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue.bind");
    }
}

/// Declares a non-durable queue that cannot outlive the run: auto-deleted, and expired by the broker after two
/// minutes unused (`x-expires`), even if no consumer ever attached.
pub async fn declare_queue(channel: &lapin::Channel, queue: &str) {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(120_000));
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { auto_delete: true, ..QueueDeclareOptions::default() },
            arguments,
        )
        .await
        .expect("queue.declare");
}

/// `headers` with one more header, added through librdkafka itself: rdkafka's safe API takes only `&str` names
/// (and panics reading back any other), while a foreign producer can send any bytes. A `None` value is null.
pub fn with_raw_header(headers: OwnedHeaders, name: &[u8], value: Option<&[u8]>) -> OwnedHeaders {
    let native = native_headers(&headers).cast_mut();
    let (value, size) = value.map_or((std::ptr::null(), 0), |value| (value.as_ptr(), value.len() as isize));
    // SAFETY: `native` is the live, writable header list `headers` owns (held by value here); librdkafka
    // copies the name and the value.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_header_add(native, name.as_ptr().cast(), name.len() as isize, value.cast(), size)
    };
    assert_eq!(error, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    headers
}

/// Every header of `headers` as raw bytes (`None` for a null value), read through librdkafka.
pub fn raw_headers(headers: &OwnedHeaders) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    use rdkafka::message::Headers;
    let native = native_headers(headers);
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

/// librdkafka's header list behind `headers`: rdkafka's `BorrowedHeaders` is a zero-sized view whose address is
/// the `rd_kafka_headers_t` pointer.
fn native_headers(headers: &OwnedHeaders) -> *const rdkafka::bindings::rd_kafka_headers_t {
    headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders as *const rdkafka::bindings::rd_kafka_headers_t
}

/// The in-memory exporter behind the global meter provider of this test process, installed once. Read what it
/// holds with [`metric_points`], which flushes first.
pub fn metrics(
) -> &'static (opentelemetry_sdk::metrics::SdkMeterProvider, opentelemetry_sdk::metrics::InMemoryMetricExporter) {
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    static METRICS: OnceLock<(SdkMeterProvider, InMemoryMetricExporter)> = OnceLock::new();
    METRICS.get_or_init(|| {
        let exporter = InMemoryMetricExporter::default();
        let provider =
            SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
        global::set_meter_provider(provider.clone());
        (provider, exporter)
    })
}

/// The bucket boundaries, in seconds, the OpenTelemetry messaging conventions advise for the
/// `messaging.*.duration` histograms (`messaging.process.duration`, `messaging.client.operation.duration`).
pub const DURATION_BOUNDARIES: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// The bucket boundaries, in seconds, of `tracehop.message.age`: the duration boundaries, continued up to an hour
/// (README, "Metrics").
pub const AGE_BOUNDARIES: [f64; 20] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0,
    3600.0,
];

/// What a test asserts of one data point of a metric.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    /// The metric's name.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// `"histogram"` or `"counter"` (a monotonic sum), or what else it is.
    pub kind: &'static str,
    /// The point's attributes, sorted by key.
    pub attributes: Vec<(String, Value)>,
    /// A histogram's bucket boundaries; empty for a counter.
    pub bounds: Vec<f64>,
    /// A histogram's count of measurements; a counter's value.
    pub count: u64,
}

/// Every data point of metric `name` whose `messaging.destination.name` is `destination`, as of now (a flush, then
/// the latest export: cumulative, so it holds every measurement so far).
pub fn metric_points(name: &str, destination: &str) -> Vec<MetricPoint> {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    let (provider, exporter) = metrics();
    provider.force_flush().expect("the meter provider flushes");
    let exported = exporter.get_finished_metrics().expect("the in-memory exporter is not shut down");
    let Some(latest) = exported.last() else { return Vec::new() };
    let destination = Value::from(destination.to_owned());
    let mut points = Vec::new();
    let sorted = |attributes: Vec<(String, Value)>| {
        let mut attributes = attributes;
        attributes.sort_by(|a, b| a.0.cmp(&b.0));
        attributes
    };
    let pairs = |attributes: &mut dyn Iterator<Item = &KeyValue>| {
        sorted(attributes.map(|KeyValue { key, value, .. }| (key.to_string(), value.clone())).collect())
    };
    for metric in latest.scope_metrics().flat_map(|scope| scope.metrics()).filter(|metric| metric.name() == name) {
        let point = |kind, attributes: Vec<(String, Value)>, bounds: Vec<f64>, count| MetricPoint {
            name: metric.name().to_owned(),
            unit: metric.unit().to_owned(),
            kind,
            attributes,
            bounds,
            count,
        };
        match metric.data() {
            AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                for data in histogram.data_points() {
                    points.push(point(
                        "histogram",
                        pairs(&mut data.attributes()),
                        data.bounds().collect(),
                        data.count(),
                    ));
                }
            }
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                let kind = if sum.is_monotonic() { "counter" } else { "up-down counter" };
                for data in sum.data_points() {
                    points.push(point(kind, pairs(&mut data.attributes()), Vec::new(), data.value()));
                }
            }
            other => panic!("metric {name} has unexpected data {other:?}"),
        }
    }
    points.retain(|point| {
        point.attributes.iter().any(|(key, value)| key == "messaging.destination.name" && *value == destination)
    });
    points
}

/// One HTTP request as a loopback collector received it: its request line, its headers (names lower-cased) and
/// its body.
pub struct HttpRequest {
    /// `POST /v1/traces HTTP/1.1`, say.
    pub request_line: String,
    /// The request's headers, names lower-cased.
    pub headers: std::collections::HashMap<String, String>,
    /// The request's body, as sent.
    pub body: Vec<u8>,
}

/// An OTLP/HTTP collector on 127.0.0.1: takes any number of requests, on any number of connections (kept alive
/// as exporters keep them), hands each over in the order it arrived, then answers 200 with an empty export
/// response (an empty protobuf message, or `{}` for JSON). Returns its base URL (`http://127.0.0.1:<port>`).
pub fn otlp_http_collector() -> (String, std::sync::mpsc::Receiver<HttpRequest>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let base_url = format!("http://{}", listener.local_addr().expect("its address"));
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let sender = sender.clone();
            std::thread::spawn(move || serve_otlp_http(stream, &sender));
        }
    });
    (base_url, receiver)
}

/// Answers the OTLP/HTTP requests of one connection until the client closes it (or goes quiet for 60 s).
fn serve_otlp_http(stream: std::net::TcpStream, sender: &std::sync::mpsc::Sender<HttpRequest>) {
    use std::io::{BufRead, BufReader, Read, Write};
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("a read timeout");
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = std::collections::HashMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
        }
        let content_length = headers.get("content-length").map_or(0, |length| length.parse().expect("a length"));
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).expect("the body");
        // An export response with no partial success: an empty message in either encoding.
        let (answer, answer_type): (&[u8], &str) = match headers.get("content-type").map(String::as_str) {
            Some("application/json") => (b"{}", "application/json"),
            _ => (b"", "application/x-protobuf"),
        };
        // Handed over before the answer: once the exporter has its answer, the request is already waiting here.
        let _ = sender.send(HttpRequest { request_line: request_line.trim_end().to_owned(), headers, body });
        let stream = reader.get_mut();
        let head =
            format!("HTTP/1.1 200 OK\r\ncontent-type: {answer_type}\r\ncontent-length: {}\r\n\r\n", answer.len());
        if stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(answer)).is_err() {
            return;
        }
    }
}
