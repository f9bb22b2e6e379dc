//! `tracehop::LinkSampler` end to end over the embedded Kafka broker, under a sampler that keeps no new trace
//! (parent-based, ratio 0): a CONSUMER span that starts a trace of its own (`parent = "link"`, a replay, a batch)
//! is exported when a producer it links to was sampled, and not otherwise; a span that continues its producer's
//! trace follows it. Installed on a provider of the user's own, through `Telemetry::builder().sampler(..)`, and
//! by `OTEL_TRACES_SAMPLER=tracehop_links_parentbased_traceidratio` through `init()`'s variables.
//!
//! The global tracer provider is process-wide: every test here installs one, so they run one at a time.

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{global, Context, KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use suite::{attribute, receive, Broker};
use tokio::sync::{Mutex, MutexGuard};
use tracehop::LinkSampler;

/// The trace of the producers that were sampled, and its `tracestate`.
const SAMPLED_TRACE: u128 = 0x5a3c_0000_0000_0000_0000_0000_0000_0001;
const SAMPLED_TRACESTATE: &str = "vendor=producer";
/// The trace of the producers that were not.
const UNSAMPLED_TRACE: u128 = 0x5a3c_0000_0000_0000_0000_0000_0000_0002;

/// Held for a whole test, across its `.await`s: an async lock, which a failed test does not poison.
async fn one_test_at_a_time() -> MutexGuard<'static, ()> {
    static GLOBAL_PROVIDER: Mutex<()> = Mutex::const_new(());
    GLOBAL_PROVIDER.lock().await
}

/// What the tests sample with: keep no new trace, follow a parent, keep a consumer trace linked to a kept one.
fn link_sampler() -> LinkSampler {
    LinkSampler::new(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.0))))
}

/// Installs a tracer provider of the user's own with `sampler`, exporting to the returned exporter as spans end.
fn install(sampler: LinkSampler) -> InMemorySpanExporter {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_sampler(sampler).with_simple_exporter(exporter.clone()).build();
    global::set_tracer_provider(provider);
    tracehop::install_propagator();
    exporter
}

fn finished(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    exporter.get_finished_spans().expect("the exporter is up")
}

#[tracehop::traced_producer]
fn publish(producer: &FutureProducer, record: FutureRecord<'_, str, str>) -> DeliveryFuture {
    producer.send_result(record).map_err(|(error, _)| error).expect("the producer queues the message")
}

/// Publishes a message to `topic` from a producer span in [`SAMPLED_TRACE`] (sampled, with
/// [`SAMPLED_TRACESTATE`]) or [`UNSAMPLED_TRACE`] (not sampled): the producer's sampler follows that remote parent.
async fn publish_in_trace(broker: &Broker, topic: &str, key: &str, sampled: bool) {
    let (trace, flags, tracestate) = match sampled {
        true => (SAMPLED_TRACE, TraceFlags::SAMPLED, SAMPLED_TRACESTATE),
        false => (UNSAMPLED_TRACE, TraceFlags::default(), ""),
    };
    let upstream = SpanContext::new(
        TraceId::from(trace),
        SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
        flags,
        true,
        tracestate.parse::<TraceState>().expect("a valid tracestate"),
    );
    let producer = broker.producer();
    let delivery = {
        let _upstream = Context::new().with_remote_span_context(upstream).attach();
        publish(&producer, FutureRecord::to(topic).key(key).payload("{}"))
    };
    delivery.await.expect("delivered").expect("the broker accepts the message");
}

/// The producer span context a message carries, read from its `traceparent` and `tracestate` as written.
fn producer_of(message: &OwnedMessage) -> (TraceId, SpanId, bool, String) {
    let header = |name: &str| {
        let headers = message.headers().expect("the message has headers");
        headers
            .iter()
            .find(|header| header.key == name)
            .and_then(|header| header.value)
            .map(|value| String::from_utf8(value.to_vec()).expect("UTF-8"))
    };
    let traceparent = header("traceparent").expect("a traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    let trace_id = TraceId::from_hex(parts[1]).expect("a trace id");
    let span_id = SpanId::from_hex(parts[2]).expect("a span id");
    (trace_id, span_id, parts[3] == "01", header("tracestate").unwrap_or_default())
}

/// The links of `span` as (trace id, span id, sampled, tracestate, attributes).
fn links(span: &SpanData) -> Vec<(TraceId, SpanId, bool, String, Vec<KeyValue>)> {
    span.links
        .iter()
        .map(|link| {
            let context = &link.span_context;
            (
                context.trace_id(),
                context.span_id(),
                context.is_sampled(),
                context.trace_state().header(),
                link.attributes.clone(),
            )
        })
        .collect()
}

/// The span context current in a handler's body: its own span's.
fn current() -> SpanContext {
    Context::current().span().span_context().clone()
}

#[tracehop::traced_consumer(group = "partner", parent = "link")]
fn handle_linked(message: &OwnedMessage) -> SpanContext {
    let _ = message;
    current()
}

#[tracehop::traced_consumer(group = "audit", replay)]
fn handle_replayed(message: &OwnedMessage) -> SpanContext {
    let _ = message;
    current()
}

#[tracehop::traced_consumer(group = "billing")]
fn bill(messages: &[OwnedMessage]) -> SpanContext {
    let _ = messages;
    current()
}

#[tracehop::traced_consumer(group = "inventory")]
fn handle_continued(message: &OwnedMessage) -> SpanContext {
    let _ = message;
    current()
}

/// Two messages on a fresh topic, the first from a sampled producer, the second from one that was not; received.
async fn one_sampled_and_one_not(broker: &Broker, prefix: &str, group: &str) -> (String, OwnedMessage, OwnedMessage) {
    let topic = suite::unique_topic(prefix);
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer(group, &topic);
    publish_in_trace(broker, &topic, "kept", true).await;
    publish_in_trace(broker, &topic, "dropped", false).await;
    let (kept, dropped) = (receive(&consumer).await, receive(&consumer).await);
    (topic, kept, dropped)
}

/// A consumer span that starts a trace (`handle`: `parent = "link"` or a replay) is exported when its producer
/// was sampled, linked to the producer's span, in a trace of its own that keeps none of the producer's
/// `tracestate`; and not when its producer was not sampled.
async fn a_linked_root_is_kept_as_its_producer(
    exporter: &InMemorySpanExporter,
    handle: fn(&OwnedMessage) -> SpanContext,
    group: &str,
) {
    let broker = Broker::start();
    let (topic, kept, dropped) = one_sampled_and_one_not(&broker, "link-sampler", group).await;
    let producers = finished(exporter);
    assert_eq!(producers.len(), 1, "only the sampled producer's span: {producers:#?}");
    let producer = &producers[0];
    assert_eq!(
        (producer.name.as_ref(), producer.span_kind.clone()),
        (format!("send {topic}").as_str(), SpanKind::Producer)
    );
    assert_eq!(producer.span_context.trace_id(), TraceId::from(SAMPLED_TRACE));
    assert_eq!(
        producer_of(&kept),
        (TraceId::from(SAMPLED_TRACE), producer.span_context.span_id(), true, SAMPLED_TRACESTATE.to_owned())
    );

    let consumer = handle(&kept);
    assert!(consumer.is_sampled(), "kept for its sampled producer, though the sampler keeps no new trace");
    assert_ne!(consumer.trace_id(), TraceId::from(SAMPLED_TRACE), "a trace of its own");
    assert_eq!(consumer.trace_state().header(), "", "the producer's tracestate does not cross into the new trace");
    let spans = finished(exporter);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let span = &spans[1];
    assert_eq!(span.name, format!("process {topic}"));
    assert_eq!(span.span_kind, SpanKind::Consumer);
    assert_eq!(span.span_context.trace_id(), consumer.trace_id());
    assert_eq!(span.span_context.span_id(), consumer.span_id());
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert_eq!(
        links(span),
        [(TraceId::from(SAMPLED_TRACE), producer.span_context.span_id(), true, SAMPLED_TRACESTATE.to_owned(), vec![])]
    );
    assert_eq!(attribute(span, "messaging.destination.name"), Some(Value::from(topic.clone())));
    assert_eq!(attribute(span, "messaging.consumer.group.name"), Some(Value::from(group.to_owned())));

    let (unsampled_trace, _, unsampled, _) = producer_of(&dropped);
    assert_eq!((unsampled_trace, unsampled), (TraceId::from(UNSAMPLED_TRACE), false));
    let consumer = handle(&dropped);
    assert!(!consumer.is_sampled(), "its producer was not sampled, and the sampler keeps no new trace");
    assert_ne!(consumer.trace_id(), TraceId::from(UNSAMPLED_TRACE));
    assert_eq!(finished(exporter).len(), 2, "nothing more exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_link_consumer_span_is_kept_when_its_producer_was_sampled_and_not_when_it_was_not() {
    let _serial = one_test_at_a_time().await;
    let exporter = install(link_sampler());
    a_linked_root_is_kept_as_its_producer(&exporter, handle_linked, "partner").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_message_span_is_kept_when_its_original_producer_was_sampled_and_not_when_it_was_not() {
    let _serial = one_test_at_a_time().await;
    let exporter = install(link_sampler());
    a_linked_root_is_kept_as_its_producer(&exporter, handle_replayed, "audit").await;
    let replayed = finished(&exporter).into_iter().find(|span| span.span_kind == SpanKind::Consumer).expect("kept");
    assert_eq!(attribute(&replayed, "tracehop.replay"), Some(Value::Bool(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_span_is_kept_when_any_linked_producer_was_sampled_and_not_when_none_was() {
    let _serial = one_test_at_a_time().await;
    let exporter = install(link_sampler());
    let broker = Broker::start();
    let topic = suite::unique_topic("link-sampler-batch");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("billing", &topic);
    publish_in_trace(&broker, &topic, "a", false).await;
    publish_in_trace(&broker, &topic, "b", true).await;
    broker.send_raw(&topic, "c", b"{}", &[]).await;
    publish_in_trace(&broker, &topic, "d", false).await;
    let mut messages = Vec::new();
    for _ in 0..4 {
        messages.push(receive(&consumer).await);
    }
    let producer = finished(&exporter).into_iter().next().expect("the sampled producer's span");
    assert_eq!(producer.span_context.trace_id(), TraceId::from(SAMPLED_TRACE));

    // The unsampled producer, the sampled one, the plain client: one link is sampled, so the batch is kept.
    let batch = bill(&messages[..3]);
    assert!(batch.is_sampled());
    let spans = finished(&exporter);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let span = &spans[1];
    assert_eq!((span.name.as_ref(), span.span_kind.clone()), (format!("process {topic}").as_str(), SpanKind::Consumer));
    assert_eq!(span.span_context.trace_id(), batch.trace_id());
    assert_ne!(batch.trace_id(), TraceId::from(SAMPLED_TRACE));
    assert_ne!(batch.trace_id(), TraceId::from(UNSAMPLED_TRACE));
    assert_eq!(batch.trace_state().header(), "");
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    let identity = |message: &OwnedMessage| {
        vec![
            KeyValue::new("messaging.destination.name", message.topic().to_owned()),
            KeyValue::new("messaging.destination.partition.id", message.partition().to_string()),
            KeyValue::new("messaging.kafka.offset", message.offset()),
        ]
    };
    let (unsampled_trace, unsampled_span, _, _) = producer_of(&messages[0]);
    assert_eq!(
        links(span),
        [
            (unsampled_trace, unsampled_span, false, String::new(), identity(&messages[0])),
            (
                TraceId::from(SAMPLED_TRACE),
                producer.span_context.span_id(),
                true,
                SAMPLED_TRACESTATE.to_owned(),
                identity(&messages[1])
            ),
        ],
        "the plain client's message has no context to link"
    );
    assert_eq!(attribute(span, "messaging.batch.message_count"), Some(Value::I64(3)));

    // The plain client and an unsampled producer: no link is sampled, so the batch is dropped.
    let batch = bill(&messages[2..]);
    assert!(!batch.is_sampled());
    assert_eq!(finished(&exporter).len(), 2, "nothing more exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_span_that_continues_its_producers_trace_follows_its_producer() {
    let _serial = one_test_at_a_time().await;
    let exporter = install(link_sampler());
    let broker = Broker::start();
    let (topic, kept, dropped) = one_sampled_and_one_not(&broker, "link-sampler-continued", "inventory").await;
    let producer = finished(&exporter).into_iter().next().expect("the sampled producer's span");

    let consumer = handle_continued(&kept);
    assert!(consumer.is_sampled());
    assert_eq!(consumer.trace_id(), TraceId::from(SAMPLED_TRACE), "the producer's trace continues");
    let spans = finished(&exporter);
    assert_eq!(spans.len(), 2);
    assert_eq!(
        (spans[1].name.as_ref(), spans[1].span_kind.clone()),
        (format!("process {topic}").as_str(), SpanKind::Consumer)
    );
    assert_eq!(spans[1].parent_span_id, producer.span_context.span_id());

    let consumer = handle_continued(&dropped);
    assert!(!consumer.is_sampled(), "an unsampled producer's trace continues unsampled");
    assert_eq!(consumer.trace_id(), TraceId::from(UNSAMPLED_TRACE));
    assert_eq!(finished(&exporter).len(), 2);
}

/// What the same sampler without [`LinkSampler`] does: the issue it solves, shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_link_sampler_a_parent_link_consumer_of_a_sampled_producer_is_dropped() {
    let _serial = one_test_at_a_time().await;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.0))))
        .with_simple_exporter(exporter.clone())
        .build();
    global::set_tracer_provider(provider);
    tracehop::install_propagator();
    let broker = Broker::start();
    let (_, kept, _) = one_sampled_and_one_not(&broker, "link-sampler-without", "partner").await;
    assert!(!handle_linked(&kept).is_sampled());
    let spans = finished(&exporter);
    assert_eq!(spans.len(), 1, "the producer's span only: {spans:#?}");
    assert_eq!(spans[0].span_kind, SpanKind::Producer);
}

#[cfg(feature = "otlp")]
mod installed_by_tracehop {
    use std::collections::HashMap;

    use opentelemetry_sdk::trace::SimpleSpanProcessor;

    use super::*;

    fn variables(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'static {
        let map: HashMap<String, String> =
            pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn otel_traces_sampler_tracehop_links_parentbased_traceidratio_selects_it_through_init() {
        let _serial = one_test_at_a_time().await;
        let exporter = InMemorySpanExporter::default();
        let _telemetry = tracehop::Telemetry::builder()
            .variables(variables(&[
                ("OTEL_TRACES_EXPORTER", "none"),
                ("OTEL_TRACES_SAMPLER", "tracehop_links_parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0"),
            ]))
            .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
            .install()
            .expect("the variables are valid");
        a_linked_root_is_kept_as_its_producer(&exporter, handle_linked, "partner").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn telemetry_builder_takes_a_link_sampler() {
        let _serial = one_test_at_a_time().await;
        let exporter = InMemorySpanExporter::default();
        let _telemetry = tracehop::Telemetry::builder()
            .variables(variables(&[("OTEL_TRACES_EXPORTER", "none"), ("OTEL_TRACES_SAMPLER", "always_on")]))
            .sampler(link_sampler())
            .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
            .install()
            .expect("the variables are valid");
        a_linked_root_is_kept_as_its_producer(&exporter, handle_replayed, "audit").await;
    }
}
