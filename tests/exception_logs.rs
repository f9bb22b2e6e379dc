//! The messaging conventions' exception events as OpenTelemetry log records (feature `logs`): a failed processing
//! (a handler's error or panic), a failed publish and a failed settle each emit exactly one record, named for its
//! operation, with the conventions' severity, `exception.type` and `exception.message`, and the trace and span
//! ids of the span that failed; a success emits none. On the suite's Kafka broker (librdkafka's mock cluster).

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::logs::{AnyValue, Severity};
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry::Key;
use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLoggerProvider};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;
use suite::behaviour::{BrokerFixture, Outgoing, FAILURE};
use suite::kafka::Kafka;
use suite::{spans_to, the_span, Broker};
use tracehop::clients::kafka::TracedFutureProducer;

/// The in-memory exporter behind the logger provider tracehop was given, installed once for this test process,
/// beside the suite's span capture.
fn logs() -> &'static InMemoryLogExporter {
    suite::spans();
    static LOGS: OnceLock<(SdkLoggerProvider, InMemoryLogExporter)> = OnceLock::new();
    &LOGS
        .get_or_init(|| {
            let exporter = InMemoryLogExporter::default();
            let provider = SdkLoggerProvider::builder().with_simple_exporter(exporter.clone()).build();
            tracehop::logs::set_logger_provider(&provider);
            (provider, exporter)
        })
        .1
}

/// What a test asserts of one log record.
#[derive(Debug, PartialEq)]
struct Record {
    event_name: Option<&'static str>,
    severity: Option<Severity>,
    severity_text: Option<&'static str>,
    attributes: Vec<(Key, AnyValue)>,
    span_id: Option<opentelemetry::trace::SpanId>,
    sampled: Option<bool>,
}

/// Every record emitted so far in trace `trace_id`.
fn records_of_trace(trace_id: TraceId) -> Vec<Record> {
    let emitted = logs().get_emitted_logs().expect("the in-memory exporter is not shut down");
    emitted
        .iter()
        .filter(|log| log.record.trace_context().map(|context| context.trace_id) == Some(trace_id))
        .map(|log| {
            let record = &log.record;
            let context = record.trace_context();
            Record {
                event_name: record.event_name(),
                severity: record.severity_number(),
                severity_text: record.severity_text(),
                attributes: record.attributes_iter().cloned().collect(),
                span_id: context.map(|context| context.span_id),
                sampled: context.and_then(|context| context.trace_flags).map(|flags| flags.is_sampled()),
            }
        })
        .collect()
}

/// The record tracehop emits for `span`.
fn expected(span: &SpanData, event: &'static str, severity: Severity, error_type: &str, message: &str) -> Record {
    Record {
        event_name: Some(event),
        severity: Some(severity),
        severity_text: Some(if severity == Severity::Error { "ERROR" } else { "WARN" }),
        attributes: vec![
            (Key::from("exception.type"), AnyValue::from(error_type.to_owned())),
            (Key::from("exception.message"), AnyValue::from(message.to_owned())),
        ],
        span_id: Some(span.span_context.span_id()),
        sampled: Some(true),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_s_error_is_a_process_exception_record_of_its_span_and_a_success_is_none() {
    logs();
    let kafka = Kafka::start();
    let destination = kafka.destination("process-exception", 1).await;
    let name = kafka.name(&destination);
    for id in ["fails", "succeeds"] {
        kafka.publish(&destination, &Outgoing { id, payload: b"{}", headers: &[] }).await;
    }
    let failing = kafka.receive(&destination, 0).await;
    assert_eq!(kafka.handle_failing(&failing).await, Err(FAILURE.to_owned()));
    assert!(kafka.handle(&kafka.receive(&destination, 0).await).await.is_ok());

    let spans = spans_to(&name);
    let consumers: Vec<&SpanData> = spans.iter().filter(|span| span.span_kind == SpanKind::Consumer).collect();
    assert_eq!(consumers.len(), 2, "{spans:#?}");
    let (failed, succeeded) = match consumers[0].status {
        opentelemetry::trace::Status::Error { .. } => (consumers[0], consumers[1]),
        _ => (consumers[1], consumers[0]),
    };
    assert_eq!(
        records_of_trace(failed.span_context.trace_id()),
        vec![expected(failed, "messaging.process.exception", Severity::Error, "alloc::string::String", FAILURE)]
    );
    assert_eq!(records_of_trace(succeeded.span_context.trace_id()), Vec::new(), "a success logs nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_s_panic_is_a_process_exception_record_of_type_panic() {
    logs();
    let kafka = Kafka::start();
    let destination = kafka.destination("process-panic", 1).await;
    let name = kafka.name(&destination);
    kafka.publish(&destination, &Outgoing { id: "order-7", payload: b"{}", headers: &[] }).await;
    let received = kafka.receive(&destination, 0).await;
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kafka.handle_panicking(&received)));
    assert!(panicked.is_err(), "the panic reaches the caller");

    let consumer = the_span(&spans_to(&name), SpanKind::Consumer);
    assert_eq!(
        records_of_trace(consumer.span_context.trace_id()),
        vec![expected(
            &consumer,
            "messaging.process.exception",
            Severity::Error,
            "panic",
            "panicked: corrupt order order-7"
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_is_a_send_exception_record_of_its_producer_span() {
    logs();
    let broker = Broker::start();
    let topic = suite::unique_topic("send-exception");
    broker.create_topic(&topic, 1);
    // A record larger than the producer's `message.max.bytes`: librdkafka refuses it before it leaves.
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("message.max.bytes", "1000")
        .create()
        .expect("a producer for the broker");
    let producer = TracedFutureProducer::new(producer);
    let payload = vec![b'x'; 2000];
    let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&topic).key("big").payload(&payload);
    let (error, _) = producer.send(record, Duration::from_secs(10)).await.expect_err("the record is too large");

    let producer_span = the_span(&spans_to(&topic), SpanKind::Producer);
    assert_eq!(
        records_of_trace(producer_span.span_context.trace_id()),
        vec![expected(
            &producer_span,
            "messaging.send.exception",
            Severity::Warn,
            "rdkafka::error::KafkaError",
            &error.to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_settle_is_a_settle_exception_record_of_its_settle_span() {
    logs();
    let kafka = Kafka::start();
    let destination = kafka.destination("settle-exception", 1).await;
    let name = kafka.name(&destination);
    kafka.publish(&destination, &Outgoing { id: "order-8", payload: b"{}", headers: &[] }).await;
    let received = kafka.receive(&destination, 0).await;
    // `store_offset` needs `enable.auto.offset.store = false`; this consumer keeps librdkafka's default, so the
    // call fails.
    let consumer = Broker::start().consumer("settle-exception", &name);
    // Inside a span, as in a handler: with none current the helper makes no settle span (it would be a root).
    let tracer = opentelemetry::global::tracer("exception-logs");
    let error = opentelemetry::trace::Tracer::in_span(&tracer, "handle", |_| {
        tracehop::clients::kafka::store_offset(&consumer, &received)
    })
    .expect_err("the offset store is automatic");

    let settle = the_span(&spans_to(&name), SpanKind::Client);
    assert_eq!(settle.name, format!("store_offset {name}"));
    assert_eq!(
        records_of_trace(settle.span_context.trace_id()),
        vec![expected(
            &settle,
            "messaging.settle.exception",
            Severity::Warn,
            "rdkafka::error::KafkaError",
            &error.to_string()
        )]
    );
}
