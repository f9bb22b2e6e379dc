//! README claims over Kafka that no other test pinned (or pinned only in part): header names past a NUL on
//! injection, the producer's record before its body runs, `TraceParent` as no context, `MessageSpan::in_batch_as`
//! and `in_batch` under a batch's policy, the default link cap, the metrics (unsampled messages and publishes,
//! batches, `ConsumerTracing`, traced producers, the sent-message count), `commit_message`'s offset, and the
//! captured headers (`set_captured_headers`, read only for recorded spans). `tests/README.md` maps every README
//! claim to its test.
//!
//! Spans are about the message, not the broker, so most tests hand in-memory messages to the handlers; the commit
//! and traced-producer tests need a broker, and run on the suite's (`suite::Broker`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Array, Context, Value};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;
use suite::{attribute, attributes, expected, spans_to, Broker};
use tracehop::{ConsumedMessage, Handler, MessageFacts, MessageSpan, MessagingSystem, SpanAttributes};

const TRACE_ID: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
const SPAN_ID: u64 = 0x00f067aa0ba902b7;
/// A producer's context, sampled.
const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// The same producer's context, not sampled (flags `00`).
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

fn strings(values: &[&str]) -> Value {
    Value::Array(Array::String(values.iter().map(|value| (*value).to_owned().into()).collect()))
}

/// A message as a consumer receives it from `topic`, at `offset`, with `headers` (name, value).
fn message(topic: &str, offset: i64, headers: &[(&str, &str)]) -> OwnedMessage {
    let headers =
        headers.iter().fold(OwnedHeaders::new(), |all, (key, value)| all.insert(Header { key, value: Some(*value) }));
    OwnedMessage::new(Some(b"{}".to_vec()), None, topic.to_owned(), Timestamp::NotAvailable, 0, offset, Some(headers))
}

/// The captured-header attributes of `span` (`messaging.header.*`), sorted.
fn captured(span: &SpanData) -> Vec<(String, Value)> {
    attributes(span).into_iter().filter(|(key, _)| key.starts_with(tracehop::CAPTURED_HEADER_PREFIX)).collect()
}

/// The tests that change the process-wide captured headers (`set_captured_headers`), one at a time.
fn process_capture() -> MutexGuard<'static, ()> {
    static PROCESS_CAPTURE: Mutex<()> = Mutex::new(());
    PROCESS_CAPTURE.lock().unwrap_or_else(PoisonError::into_inner)
}

#[tracehop::traced_consumer(group = "claims")]
fn handle(message: &OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_consumer(group = "claims", capture_headers("x-claims-tenant"))]
fn handle_capturing_the_tenant(message: &OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_producer]
fn forward(record: &mut FutureRecord<'_, str, str>) {
    let _ = record;
}

// ---- The introduction: the producer's record ----

/// What the body of a producer sees: the record's `traceparent`, and the ids of the span it runs in.
#[tracehop::traced_producer]
fn publish_and_look(record: FutureRecord<'_, str, str>) -> (Option<Vec<u8>>, TraceId, SpanId) {
    let traceparent = record.headers.as_ref().and_then(|headers| {
        suite::raw_headers(headers).into_iter().find(|(name, _)| name == b"traceparent").and_then(|(_, value)| value)
    });
    let context = Context::current();
    let span = context.span();
    (traceparent, span.span_context().trace_id(), span.span_context().span_id())
}

/// README: "PRODUCER span "send orders.created"; the record's headers carry its context before the body runs".
#[test]
fn a_producers_record_carries_the_producer_spans_context_when_the_body_starts() {
    suite::spans();
    let topic = suite::unique_topic("claims-before-body");

    let (traceparent, trace_id, span_id) = publish_and_look(FutureRecord::to(&topic).payload("{}"));

    let producer = suite::the_span(&spans_to(&topic), SpanKind::Producer);
    assert_eq!((trace_id, span_id), (producer.span_context.trace_id(), producer.span_context.span_id()));
    assert_eq!(traceparent, Some(format!("00-{trace_id}-{span_id}-01").into_bytes()));
}

// ---- "Whatever arrives on the wire": a Kafka header name ends at its first NUL byte ----

/// README: "a header named `traceparent\0junk` is read (and replaced on injection) as `traceparent`".
#[test]
fn a_traceparent_header_named_past_a_nul_is_replaced_on_injection() {
    suite::spans();
    let topic = suite::unique_topic("claims-nul-inject");
    let stale = "00-11111111111111111111111111111111-2222222222222222-01";
    let headers = OwnedHeaders::new().insert(Header { key: "x-order", value: Some("7") });
    let headers = suite::with_raw_header(headers, b"traceparent\0junk", Some(stale.as_bytes()));
    let mut record = FutureRecord::<str, str>::to(&topic).payload("{}").headers(headers);

    forward(&mut record);

    let producer = suite::the_span(&spans_to(&topic), SpanKind::Producer);
    let written = format!("00-{}-{}-01", producer.span_context.trace_id(), producer.span_context.span_id());
    assert_eq!(
        suite::raw_headers(record.headers.as_ref().expect("the record's headers")),
        vec![(b"x-order".to_vec(), Some(b"7".to_vec())), (b"traceparent".to_vec(), Some(written.into_bytes()))],
        "the stale header is gone, not kept beside the new one"
    );
}

// ---- "Whatever arrives on the wire": header names ----

/// README: "Names are case-sensitive ... `TraceParent` is another header, so such a message has no context
/// (`missing`)".
#[test]
fn a_traceparent_header_named_in_another_case_is_no_context() {
    suite::spans();
    let topic = suite::unique_topic("claims-traceparent-case");

    handle(&message(&topic, 0, &[("TraceParent", SAMPLED)]));

    let span = suite::the_span(&spans_to(&topic), SpanKind::Consumer);
    assert_ne!(span.span_context.trace_id(), TraceId::from(TRACE_ID));
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert_eq!(span.links.links.len(), 0);
    assert_eq!(attribute(&span, "tracehop.context.rejected"), Some(text("missing")));
}

// ---- "Batches": `MessageSpan::in_batch_as` ----

static AUDIT_ONE: Handler = Handler::consumer("claims::audit_one").group("claims-audit");

#[tracehop::traced_consumer(group = "claims-billing")]
fn bill_and_audit_each(messages: &[OwnedMessage]) {
    for message in messages {
        MessageSpan::in_batch_as(&AUDIT_ONE, message).start().run(|| ());
    }
}

/// README: "`MessageSpan::in_batch_as(&HANDLER, message)` gives it a handler of its own": the message's span is
/// still a child of the batch span linked to its producer, under that handler's function and group.
#[test]
fn in_batch_as_gives_a_message_span_the_function_and_group_of_its_own_handler() {
    suite::spans();
    let topic = suite::unique_topic("claims-in-batch-as");

    bill_and_audit_each(&[message(&topic, 0, &[("traceparent", SAMPLED)])]);

    let (batch, own) = &batch_and_message_span(&topic);
    assert_eq!(own.name, format!("process {topic}"));
    assert_eq!(own.span_kind, SpanKind::Consumer);
    assert_eq!(own.parent_span_id, batch.span_context.span_id());
    assert_eq!(own.span_context.trace_id(), batch.span_context.trace_id());
    let links: Vec<(TraceId, SpanId)> =
        own.links.links.iter().map(|link| (link.span_context.trace_id(), link.span_context.span_id())).collect();
    assert_eq!(links, vec![(TraceId::from(TRACE_ID), SpanId::from(SPAN_ID))]);
    assert_eq!(
        attributes(own),
        expected(&[
            ("messaging.system", text("kafka")),
            ("messaging.operation.type", text("process")),
            ("messaging.operation.name", text("process")),
            ("messaging.destination.name", text(&topic)),
            ("messaging.consumer.group.name", text("claims-audit")),
            ("code.function.name", text("claims::audit_one")),
            ("messaging.destination.partition.id", text("0")),
            ("messaging.kafka.offset", Value::I64(0)),
            ("messaging.message.body.size", Value::I64(2)),
        ])
    );
    assert_eq!(attribute(batch, "messaging.consumer.group.name"), Some(text("claims-billing")));
}

/// The two spans of a one-message batch on `topic`: the batch span (it counts the batch's messages) and the
/// message's own.
fn batch_and_message_span(topic: &str) -> (SpanData, SpanData) {
    let spans = spans_to(topic);
    let [first, second] = <[SpanData; 2]>::try_from(spans).unwrap_or_else(|spans| panic!("two spans: {spans:#?}"));
    if attribute(&first, "messaging.batch.message_count").is_some() {
        (first, second)
    } else {
        assert!(attribute(&second, "messaging.batch.message_count").is_some(), "one of them is the batch span");
        (second, first)
    }
}

// ---- "Batches": a message's span under the batch handler's policy ----

#[tracehop::traced_consumer(group = "claims-untrusting", parent = "none")]
fn handle_each_untrusted(messages: &[OwnedMessage]) {
    for message in messages {
        MessageSpan::in_batch(message).start().run(|| ());
    }
}

/// README: `MessageSpan::in_batch(message)` gives one message its own span "under the batch handler's group and
/// policy": under `parent = "none"` the message's producer is not linked, and no rejection is recorded.
#[test]
fn in_batch_under_a_batch_handler_that_ignores_contexts_links_to_no_producer() {
    suite::spans();
    let topic = suite::unique_topic("claims-in-batch-none");

    handle_each_untrusted(&[message(&topic, 0, &[("traceparent", SAMPLED)])]);

    let (batch, own) = &batch_and_message_span(&topic);
    assert_eq!(own.parent_span_id, batch.span_context.span_id());
    assert_eq!(own.links.links.len(), 0);
    assert_eq!(attribute(own, "messaging.consumer.group.name"), Some(text("claims-untrusting")));
    assert_eq!(attribute(own, "tracehop.context.rejected"), None);
}

// ---- "Batches": the link cap ----

#[tracehop::traced_consumer(group = "claims-bulk")]
fn bulk(messages: &[OwnedMessage]) {
    let _ = messages;
}

/// README: "Links are capped per span (`tracehop::set_max_links_per_span`, 128 by default; the rest are counted
/// in `tracehop.links.dropped`)": 200 messages with a context each give 128 links and 72 counted.
#[test]
fn a_batch_span_links_128_messages_by_default_and_counts_the_rest() {
    suite::spans();
    let topic = suite::unique_topic("claims-link-cap");
    let traceparents: Vec<String> = (1..=200).map(|id| format!("00-{id:032x}-{id:016x}-01")).collect();
    let messages: Vec<OwnedMessage> = traceparents
        .iter()
        .enumerate()
        .map(|(offset, traceparent)| message(&topic, offset as i64, &[("traceparent", traceparent)]))
        .collect();

    bulk(&messages);

    let span = suite::the_span(&spans_to(&topic), SpanKind::Consumer);
    let linked: Vec<TraceId> = span.links.links.iter().map(|link| link.span_context.trace_id()).collect();
    assert_eq!(linked, (1..=128).map(TraceId::from).collect::<Vec<_>>(), "the first 128, in order");
    assert_eq!(attribute(&span, "tracehop.links.dropped"), Some(Value::I64(72)));
}

// ---- "Settle spans": `commit_message` ----

/// README: "`tracehop::clients::kafka::commit_message(&consumer, &message, CommitMode::Sync)` (commits the offset
/// after the message)": the group's committed offset is the message's offset + 1, where it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_message_commits_the_offset_after_the_message() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("claims-commit");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("claims", &topic);
    broker.send_raw(&topic, "a", b"first", &[]).await;
    broker.send_raw(&topic, "b", b"second", &[]).await;
    let _first = suite::receive(&consumer).await;
    let second = suite::receive(&consumer).await;
    assert_eq!(rdkafka::Message::offset(&second), 1);

    tracehop::clients::kafka::commit_message(&consumer, &second, CommitMode::Sync).expect("the commit is accepted");

    let committed = consumer.committed(Duration::from_secs(10)).expect("the group's committed offsets");
    assert_eq!(committed.find_partition(&topic, 0).map(|partition| partition.offset()), Some(Offset::Offset(2)));
}

// ---- "Captured headers": the process-wide lists ----

/// README: "`tracehop::set_captured_headers(&[...], &[...])` for every consumer of the process": a handler that
/// names no header records the process's, and one that names its own records both.
#[test]
fn set_captured_headers_records_the_named_headers_on_every_consumer_span() {
    let _serial = process_capture();
    suite::spans();
    let (plain, capturing) = (suite::unique_topic("claims-capture-plain"), suite::unique_topic("claims-capture-own"));
    let headers = [
        ("x-claims-region", "eu-west"),
        ("x-claims-request-id", "r-17"),
        ("x-claims-request-body", "{\"card\":\"4111\"}"),
        ("x-claims-tenant", "acme"),
    ];

    tracehop::set_captured_headers(&["x-claims-region", "x-claims-request-*"], &["x-claims-request-body"]);
    handle(&message(&plain, 0, &headers));
    handle_capturing_the_tenant(&message(&capturing, 0, &headers));
    tracehop::set_captured_headers(&[], &[]);

    let process_wide = [
        ("messaging.header.x_claims_region", strings(&["eu-west"])),
        ("messaging.header.x_claims_request_id", strings(&["r-17"])),
    ];
    assert_eq!(captured(&spans_to(&plain)[0]), expected(&process_wide));
    let mut both = process_wide.to_vec();
    both.push(("messaging.header.x_claims_tenant", strings(&["acme"])));
    assert_eq!(captured(&spans_to(&capturing)[0]), expected(&both));
}

/// README: "Exclusions (`exclude_headers(...)`, the second list of `set_captured_headers`) always win": a header
/// the process excludes is not recorded by a handler that names it exactly, when the process also captures others.
#[test]
fn a_process_wide_exclusion_wins_over_a_handlers_exact_name() {
    let _serial = process_capture();
    suite::spans();
    let topic = suite::unique_topic("claims-capture-excluded");

    tracehop::set_captured_headers(&["x-claims-region"], &["x-claims-tenant"]);
    handle_capturing_the_tenant(&message(&topic, 0, &[("x-claims-tenant", "acme"), ("x-claims-region", "eu")]));
    tracehop::set_captured_headers(&[], &[]);

    assert_eq!(captured(&spans_to(&topic)[0]), expected(&[("messaging.header.x_claims_region", strings(&["eu"]))]));
}

/// README: "Exclusions (..., the second list of `set_captured_headers`) always win", also when the process names
/// no header of its own to capture: `set_captured_headers(&[], &["x-claims-tenant"])` keeps that header off every
/// span, whatever a handler names.
#[test]
fn a_process_wide_exclusion_alone_wins_over_a_handlers_exact_name() {
    let _serial = process_capture();
    suite::spans();
    let topic = suite::unique_topic("claims-capture-excluded-alone");

    tracehop::set_captured_headers(&[], &["x-claims-tenant"]);
    handle_capturing_the_tenant(&message(&topic, 0, &[("x-claims-tenant", "acme")]));
    tracehop::set_captured_headers(&[], &[]);

    assert_eq!(captured(&spans_to(&topic)[0]), Vec::new());
}

// ---- "Captured headers": read only for recorded spans ----

/// A message of a broker of the test's own, counting how many times its headers are gone over.
struct CountedFrame {
    topic: String,
    headers: Vec<(&'static str, &'static str)>,
    passes: AtomicUsize,
}

impl CountedFrame {
    fn new(topic: &str, headers: &[(&'static str, &'static str)]) -> Self {
        CountedFrame { topic: topic.to_owned(), headers: headers.to_vec(), passes: AtomicUsize::new(0) }
    }
}

impl MessageFacts for CountedFrame {
    fn system(&self) -> MessagingSystem {
        MessagingSystem::Other("frames")
    }
    fn destination(&self) -> Option<&str> {
        Some(&self.topic)
    }
    fn record_attributes(&self, _attributes: &mut SpanAttributes) {}
}

impl ConsumedMessage for CountedFrame {
    fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        self.passes.fetch_add(1, Ordering::SeqCst);
        self.headers.iter().map(|(name, value)| (*name, Some(value.as_bytes())))
    }
}

static CAPTURING_FRAMES: Handler = Handler::consumer("claims::capturing_frames").capture_headers(&["x-tenant"]);

/// README: "Headers are read only for recorded spans" (captured headers), and "the trace headers are found in one
/// pass over the headers": an unsampled message's headers are gone over once, for its context; a recorded one's
/// a second time, for what its span captures.
#[test]
fn captured_headers_are_read_only_for_recorded_spans() {
    suite::spans();
    let topic = suite::unique_topic("claims-capture-recorded-only");
    let unsampled = CountedFrame::new(&topic, &[("traceparent", UNSAMPLED), ("x-tenant", "acme")]);
    let recorded = CountedFrame::new(&topic, &[("traceparent", SAMPLED), ("x-tenant", "globex")]);

    MessageSpan::consumer(&CAPTURING_FRAMES, &unsampled).start().run(|| ());
    MessageSpan::consumer(&CAPTURING_FRAMES, &recorded).start().run(|| ());

    assert_eq!(unsampled.passes.load(Ordering::SeqCst), 1, "one pass, for the trace context");
    assert_eq!(recorded.passes.load(Ordering::SeqCst), 2, "one pass for the context, one for the capture");
    let spans = spans_to(&topic);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(captured(&spans[0]), expected(&[("messaging.header.x_tenant", strings(&["globex"]))]));
}

/// The metrics claims, with the `metrics` feature (without it, tracehop measures nothing).
#[cfg(feature = "metrics")]
mod metrics {
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
    use suite::{metric_points, MetricPoint};
    use tracehop::metrics::DURATION_BUCKETS;

    use super::*;

    // ---- "Metrics": every message, sampled or not ----

    fn process_duration(topic: &str, count: u64) -> MetricPoint {
        MetricPoint {
            name: "messaging.process.duration".to_owned(),
            unit: "s".to_owned(),
            kind: "histogram",
            attributes: expected(&[
                ("messaging.system", text("kafka")),
                ("messaging.operation.name", text("process")),
                ("messaging.consumer.group.name", text("claims")),
                ("messaging.destination.name", text(topic)),
            ]),
            bounds: DURATION_BUCKETS.to_vec(),
            count,
        }
    }

    /// README: "Metrics cover every message, sampled or not": a message whose producer was not sampled has no span,
    /// and its handling is measured all the same.
    #[test]
    fn an_unsampled_message_is_measured_as_a_sampled_one_is() {
        suite::spans();
        suite::metrics();
        let topic = suite::unique_topic("claims-unsampled-process");

        handle(&message(&topic, 0, &[("traceparent", UNSAMPLED)]));
        handle(&message(&topic, 1, &[("traceparent", SAMPLED)]));

        assert_eq!(spans_to(&topic).len(), 1, "only the sampled message's span is recorded");
        assert_eq!(metric_points("messaging.process.duration", &topic), vec![process_duration(&topic, 2)]);
    }

    /// README: "Metrics cover every message, sampled or not", for publishes: a publish under an unsampled parent
    /// has no span, and is counted and timed all the same.
    #[test]
    fn an_unsampled_publish_is_measured_as_a_sampled_one_is() {
        suite::spans();
        suite::metrics();
        let topic = suite::unique_topic("claims-unsampled-send");
        let unsampled = SpanContext::new(
            TraceId::from(TRACE_ID),
            SpanId::from(SPAN_ID),
            TraceFlags::default(),
            true,
            TraceState::default(),
        );

        {
            let _parent = Context::new().with_remote_span_context(unsampled).attach();
            forward(&mut FutureRecord::to(&topic).payload("{}"));
        }
        forward(&mut FutureRecord::to(&topic).payload("{}"));

        assert_eq!(spans_to(&topic).len(), 1, "only the sampled publish's span is recorded");
        let send = expected(&[
            ("messaging.system", text("kafka")),
            ("messaging.operation.name", text("send")),
            ("messaging.operation.type", text("send")),
            ("messaging.destination.name", text(&topic)),
        ]);
        assert_eq!(
            metric_points("messaging.client.operation.duration", &topic),
            vec![MetricPoint {
                name: "messaging.client.operation.duration".to_owned(),
                unit: "s".to_owned(),
                kind: "histogram",
                attributes: send.clone(),
                bounds: DURATION_BUCKETS.to_vec(),
                count: 2,
            }]
        );
        assert_eq!(
            metric_points("messaging.client.sent.messages", &topic),
            vec![MetricPoint {
                name: "messaging.client.sent.messages".to_owned(),
                unit: "{message}".to_owned(),
                kind: "counter",
                attributes: send,
                bounds: Vec::new(),
                count: 2,
            }]
        );
    }

    // ---- "Metrics": what is measured ----

    #[tracehop::traced_consumer(group = "claims-batch")]
    fn handle_batch_and_each(messages: &[OwnedMessage]) {
        for message in messages {
            MessageSpan::in_batch(message).start().run(|| ());
        }
    }

    /// The `messaging.process.duration` data points of consumer group `group`, whatever their destination: their
    /// attributes and their counts.
    fn processings_of_group(group: &str) -> Vec<(Vec<(String, Value)>, u64)> {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        let (provider, exporter) = suite::metrics();
        provider.force_flush().expect("the meter provider flushes");
        let exported = exporter.get_finished_metrics().expect("the in-memory exporter is not shut down");
        let Some(latest) = exported.last() else { return Vec::new() };
        let mut points = Vec::new();
        for metric in latest.scope_metrics().flat_map(|scope| scope.metrics()) {
            if metric.name() != "messaging.process.duration" {
                continue;
            }
            let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
                panic!("messaging.process.duration is a histogram")
            };
            for point in histogram.data_points() {
                let mut pairs: Vec<(String, Value)> =
                    point.attributes().map(|pair| (pair.key.to_string(), pair.value.clone())).collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                if pairs.iter().any(|(key, value)| key == "messaging.consumer.group.name" && *value == text(group)) {
                    points.push((pairs, point.count()));
                }
            }
        }
        points
    }

    /// README: `messaging.process.duration` is recorded for "every `#[traced_consumer]` handler (one message or a
    /// batch)", and "A message's span inside a batch (`MessageSpan::in_batch`) records no `process.duration` of its
    /// own: the batch's covers it": three messages in one batch, each in a span of its own, are one measurement.
    #[test]
    fn a_batch_handler_records_one_processing_and_its_message_spans_none() {
        suite::spans();
        suite::metrics();
        let topic = suite::unique_topic("claims-batch-metrics");

        handle_batch_and_each(&[message(&topic, 0, &[]), message(&topic, 1, &[]), message(&topic, 2, &[])]);

        assert_eq!(spans_to(&topic).len(), 4, "the batch span and three message spans");
        let counts: Vec<u64> = processings_of_group("claims-batch").into_iter().map(|(_, count)| count).collect();
        assert_eq!(counts, vec![1]);
    }

    #[tracehop::traced_consumer(group = "claims-batch-named")]
    fn handle_batch(messages: &[OwnedMessage]) {
        let _ = messages;
    }

    /// README, "Metrics": `messaging.destination.name` is on the metrics "when known: a batch's
    /// `messaging.process.duration` names none, even when its span does" (the span learns it from its messages only
    /// when it is recorded; the metric is taken for unsampled batches too).
    #[test]
    fn a_batchs_processing_duration_names_no_destination_though_its_span_does() {
        suite::spans();
        suite::metrics();
        let topic = suite::unique_topic("claims-batch-destination");

        handle_batch(&[message(&topic, 0, &[]), message(&topic, 1, &[])]);

        assert_eq!(attribute(&spans_to(&topic)[0], "messaging.destination.name"), Some(text(&topic)));
        assert_eq!(metric_points("messaging.process.duration", &topic), Vec::<MetricPoint>::new());
        // The batch did record its processing, under its group (no other test uses it), without a destination.
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        let (provider, exporter) = suite::metrics();
        provider.force_flush().expect("the meter provider flushes");
        let exported = exporter.get_finished_metrics().expect("the in-memory exporter is not shut down");
        let latest = exported.last().expect("an export");
        let mut batch_points = Vec::new();
        for metric in latest.scope_metrics().flat_map(|scope| scope.metrics()) {
            if metric.name() != "messaging.process.duration" {
                continue;
            }
            let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else { continue };
            for point in histogram.data_points() {
                let keys: Vec<(String, Value)> =
                    point.attributes().map(|pair| (pair.key.to_string(), pair.value.clone())).collect();
                if keys.contains(&("messaging.consumer.group.name".to_owned(), text("claims-batch-named"))) {
                    batch_points.push((keys.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>(), point.count()));
                }
            }
        }
        assert_eq!(batch_points.len(), 1, "one series for the batch handler: {batch_points:?}");
        let (keys, count) = &batch_points[0];
        assert_eq!(*count, 1, "the batch's one processing is measured");
        assert!(!keys.iter().any(|key| key == "messaging.destination.name"), "{keys:?}");
    }

    static CLAIMS_LOOP: Handler = Handler::consumer("claims::receive_loop").group("claims");

    /// README: `messaging.process.duration` is recorded for every "`ConsumerTracing` message".
    #[test]
    fn a_consumer_tracing_message_records_its_processing_duration() {
        suite::spans();
        suite::metrics();
        let topic = suite::unique_topic("claims-loop-metrics");

        tracehop::clients::ConsumerTracing::new(&CLAIMS_LOOP).trace(message(&topic, 0, &[])).process(|_| ());

        assert_eq!(metric_points("messaging.process.duration", &topic), vec![process_duration(&topic, 1)]);
    }

    fn sent_messages(topic: &str, count: u64) -> MetricPoint {
        MetricPoint {
            name: "messaging.client.sent.messages".to_owned(),
            unit: "{message}".to_owned(),
            kind: "counter",
            attributes: expected(&[
                ("messaging.system", text("kafka")),
                ("messaging.operation.name", text("send")),
                ("messaging.operation.type", text("send")),
                ("messaging.destination.name", text(topic)),
            ]),
            bounds: Vec::new(),
            count,
        }
    }

    #[tracehop::traced_producer(system = "kafka", destination = topic)]
    fn publish_records(topic: &str, records: usize) {
        for _ in 0..records {
            tracehop::inject_current_context(&mut FutureRecord::<str, str>::to(topic).payload("{}"));
        }
    }

    /// README: `messaging.client.sent.messages` counts "every publish: the records it wrote its context into".
    #[test]
    fn a_publish_counts_every_record_it_wrote_its_context_into() {
        suite::spans();
        suite::metrics();
        let topic = suite::unique_topic("claims-sent-three");

        publish_records(&topic, 3);

        assert_eq!(metric_points("messaging.client.sent.messages", &topic), vec![sent_messages(&topic, 3)]);
    }

    /// README: `messaging.client.sent.messages` counts every publish's records, "at least 1": a publish that wrote its
    /// context into no record still counts one message.
    #[test]
    fn a_publish_that_wrote_its_context_into_no_record_counts_one_message() {
        suite::spans();
        suite::metrics();
        let topic = suite::unique_topic("claims-sent-none");

        let ((), _quiet) = suite::capture_logs(|| publish_records(&topic, 0));

        assert_eq!(metric_points("messaging.client.sent.messages", &topic), vec![sent_messages(&topic, 1)]);
    }

    /// README: `messaging.client.operation.duration` and `messaging.client.sent.messages` are recorded for "every
    /// publish (`#[traced_producer]`, the traced producers)": a `TracedFutureProducer` send is measured as one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_traced_future_producer_send_records_the_publish_metrics() {
        suite::spans();
        suite::metrics();
        let broker = Broker::start();
        let topic = suite::unique_topic("claims-traced-send-metrics");
        broker.create_topic(&topic, 1);
        let producer = tracehop::clients::kafka::TracedFutureProducer::new(broker.producer());

        producer.send(FutureRecord::<str, str>::to(&topic).payload("{}"), Duration::from_secs(10)).await.expect("sent");

        let send = sent_messages(&topic, 1);
        assert_eq!(
            metric_points("messaging.client.operation.duration", &topic),
            vec![MetricPoint {
                name: "messaging.client.operation.duration".to_owned(),
                unit: "s".to_owned(),
                kind: "histogram",
                attributes: send.attributes.clone(),
                bounds: DURATION_BUCKETS.to_vec(),
                count: 1,
            }]
        );
        assert_eq!(metric_points("messaging.client.sent.messages", &topic), vec![send]);
    }
}
