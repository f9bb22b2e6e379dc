//! Batches, fan-in and replay over the embedded Kafka broker: span links instead of parents, and the policy of
//! whose context to trust. A batch span's links to its messages' producers, on every broker:
//! `tests/shared_behaviour.rs`.

use std::time::Duration;

use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use suite::{attribute, receive, spans_to, Broker};
use tracehop::MessageSpan;

const FOREIGN_TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tracehop::traced_producer]
async fn publish(producer: &FutureProducer, record: FutureRecord<'_, str, str>) {
    producer.send(record, Duration::from_secs(10)).await.expect("the broker accepts the message");
}

async fn receive_all(consumer: &StreamConsumer, count: usize) -> Vec<OwnedMessage> {
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        messages.push(receive(consumer).await);
    }
    messages
}

fn link_identity(span: &SpanData) -> Vec<(TraceId, SpanId, Vec<KeyValue>)> {
    span.links
        .links
        .iter()
        .map(|link| (link.span_context.trace_id(), link.span_context.span_id(), link.attributes.clone()))
        .collect()
}

fn identity(message: &OwnedMessage) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.destination.name", message.topic().to_owned()),
        KeyValue::new("messaging.destination.partition.id", message.partition().to_string()),
        KeyValue::new("messaging.kafka.offset", message.offset()),
    ]
}

#[tracehop::traced_consumer(group = "billing")]
fn bill_each(messages: Vec<OwnedMessage>) -> Vec<SpanId> {
    messages
        .iter()
        .map(|message| {
            MessageSpan::in_batch(message)
                .start()
                .run_with_outcome(|| Context::current().span().span_context().span_id(), |_, _| {})
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_message_spans_in_a_batch_are_children_of_the_batch_linked_to_their_producers() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("per-message");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("billing", &topic);
    let producer = broker.producer();
    for key in ["a", "b"] {
        publish(&producer, FutureRecord::to(&topic).key(key).payload("{}")).await;
    }
    // A third message from a plain client, without context.
    broker.send_raw(&topic, "c", b"{}", &[]).await;
    let messages = receive_all(&consumer, 3).await;

    let per_message = bill_each(messages);
    assert_eq!(per_message.len(), 3);

    let spans = spans_to(&topic);
    let producers: Vec<&SpanData> = spans.iter().filter(|span| span.span_kind == SpanKind::Producer).collect();
    let batch =
        spans.iter().find(|span| attribute(span, "messaging.batch.message_count").is_some()).expect("the batch span");
    for (index, span_id) in per_message.iter().enumerate() {
        let span = spans.iter().find(|span| span.span_context.span_id() == *span_id).expect("a per-message span");
        assert_eq!(span.span_kind, SpanKind::Consumer);
        assert_eq!(span.name, format!("process {topic}"));
        assert_eq!(span.parent_span_id, batch.span_context.span_id(), "a child of the batch span");
        assert_eq!(span.span_context.trace_id(), batch.span_context.trace_id());
        // The batch span's handler, found without a second static.
        assert_eq!(attribute(span, "code.function.name"), Some(Value::from("batches::bill_each")));
        assert_eq!(attribute(span, "messaging.consumer.group.name"), Some(Value::from("billing")));
        if let Some(producer) = producers.get(index) {
            assert_eq!(span.links.links.len(), 1);
            assert_eq!(span.links.links[0].span_context.span_id(), producer.span_context.span_id());
            assert_eq!(attribute(span, "tracehop.context.rejected"), None);
        } else {
            assert!(span.links.links.is_empty(), "the plain client's message links to nothing");
            assert_eq!(attribute(span, "tracehop.context.rejected"), Some(Value::from("missing")));
        }
    }
}

#[tracehop::traced_consumer(group = "audit", replay)]
async fn audit_replayed(message: &OwnedMessage) -> Option<String> {
    let _ = message;
    Context::current().baggage().get("tenant").map(ToString::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_event_starts_a_new_trace_linked_to_the_original_and_keeps_its_time() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("replay");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("audit", &topic);
    let original_time = 1_700_000_000_123_i64;
    let headers = OwnedHeaders::new()
        .insert(Header { key: "traceparent", value: Some(FOREIGN_TRACEPARENT) })
        .insert(Header { key: "baggage", value: Some("tenant=acme") });
    let record: FutureRecord<'_, str, str> =
        FutureRecord::to(&topic).key("old").payload("{}").timestamp(original_time).headers(headers);
    broker.producer().send(record, Duration::from_secs(10)).await.expect("sent");
    let message = receive(&consumer).await;
    assert_eq!(message.timestamp(), Timestamp::CreateTime(original_time));

    assert_eq!(audit_replayed(&message).await, None, "the original's baggage is not adopted");

    let span = spans_to(&topic).into_iter().find(|span| span.span_kind == SpanKind::Consumer).expect("the span");
    assert_ne!(span.span_context.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert_eq!(span.links.links.len(), 1);
    assert_eq!(
        span.links.links[0].span_context.trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
    assert_eq!(span.links.links[0].span_context.span_id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
    assert_eq!(attribute(&span, "tracehop.replay"), Some(Value::Bool(true)));
    assert_eq!(attribute(&span, "tracehop.replay.original_time_ms"), Some(Value::I64(original_time)));
    assert_eq!(attribute(&span, "tracehop.context.rejected"), None);
}

#[tracehop::traced_consumer(group = "partner", parent = "none")]
fn untrusted(message: &OwnedMessage) -> (TraceId, bool) {
    let _ = message;
    let context = Context::current();
    (context.span().span_context().trace_id(), context.baggage().get("tenant").is_some())
}

#[tracehop::traced_consumer(group = "partner", parent = "link")]
fn linked(message: &OwnedMessage) -> (TraceId, bool) {
    let _ = message;
    let context = Context::current();
    (context.span().span_context().trace_id(), context.baggage().get("tenant").is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_and_link_only_handlers_adopt_no_foreign_trace_sampling_or_baggage() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("partner");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("partner", &topic);
    // An unsampled foreign context: a handler that adopted it would record nothing.
    let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    for key in ["none", "link"] {
        broker.send_raw(&topic, key, b"{}", &[("traceparent", unsampled), ("baggage", b"tenant=acme")]).await;
    }
    let messages = receive_all(&consumer, 2).await;
    let foreign = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();

    let (none_trace, none_baggage) = untrusted(&messages[0]);
    let (link_trace, link_baggage) = linked(&messages[1]);
    assert_ne!(none_trace, foreign);
    assert_ne!(link_trace, foreign);
    assert!(!none_baggage && !link_baggage, "no foreign baggage");

    let spans = spans_to(&topic);
    let none =
        spans.iter().find(|span| span.span_context.trace_id() == none_trace).expect("exported: sampled as a root");
    let link =
        spans.iter().find(|span| span.span_context.trace_id() == link_trace).expect("exported: sampled as a root");
    assert_eq!(none.parent_span_id, SpanId::INVALID);
    assert!(none.links.links.is_empty(), "the context is ignored entirely");
    assert_eq!(link.parent_span_id, SpanId::INVALID);
    assert_eq!(link.links.links.len(), 1);
    assert_eq!(link.links.links[0].span_context.trace_id(), foreign);
    for span in [none, link] {
        assert_eq!(attribute(span, "tracehop.context.rejected"), None);
        assert_eq!(attribute(span, "messaging.consumer.group.name"), Some(Value::from("partner")));
    }
}

#[tracehop::traced_producer(system = "kafka", destination = topic)]
fn publish_each(producer: &BaseProducer, topic: &str, keys: &[&str]) {
    for key in keys {
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(topic).key(*key).payload("{}");
        tracehop::inject_creation_context(&mut record);
        producer.send(record).map_err(|(error, _)| error).expect("queued");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_published_together_each_carry_their_own_creation_context() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("publish-batch");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("shipping", &topic);
    let producer: BaseProducer =
        rdkafka::config::ClientConfig::new().set("bootstrap.servers", broker.bootstrap_servers()).create().unwrap();
    publish_each(&producer, &topic, &["a", "b"]);
    producer.flush(Duration::from_secs(10)).expect("delivered");

    #[tracehop::traced_consumer(group = "shipping")]
    fn ship(_message: &OwnedMessage) {}
    for message in receive_all(&consumer, 2).await {
        ship(&message);
    }

    let spans = spans_to(&topic);
    let send = spans.iter().find(|span| span.name == format!("send {topic}")).expect("the send span");
    let creates: Vec<&SpanData> = spans.iter().filter(|span| span.name == format!("create {topic}")).collect();
    let consumers: Vec<&SpanData> = spans.iter().filter(|span| span.span_kind == SpanKind::Consumer).collect();
    assert_eq!((creates.len(), consumers.len()), (2, 2));
    let linked: Vec<SpanId> = send.links.links.iter().map(|link| link.span_context.span_id()).collect();
    for create in &creates {
        assert_eq!(create.span_kind, SpanKind::Producer);
        assert_eq!(create.parent_span_id, send.span_context.span_id());
        assert_eq!(attribute(create, "messaging.operation.type"), Some(Value::from("create")));
        assert!(linked.contains(&create.span_context.span_id()), "the send span links to each creation span");
        let consumer = consumers
            .iter()
            .find(|consumer| consumer.parent_span_id == create.span_context.span_id())
            .expect("each record's consumer continues its own creation span");
        assert!(consumer.parent_span_is_remote, "the creation span is a remote parent");
        let key = attribute(create, "messaging.kafka.message.key");
        assert!(key.is_some(), "the creation span names its record's key");
        assert_eq!(attribute(consumer, "messaging.kafka.message.key"), key);
    }
    assert_eq!(attribute(send, tracehop::CONTEXT_INJECTED_ATTRIBUTE), None);
}

fn in_memory_message(topic: &str, offset: i64, traceparent: Option<String>) -> OwnedMessage {
    let headers =
        traceparent.map(|value| OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(&value) }));
    OwnedMessage::new(Some(b"{}".to_vec()), None, topic.to_owned(), Timestamp::NotAvailable, 0, offset, headers)
}

#[tracehop::traced_consumer(group = "bulk")]
fn bulk(messages: &[OwnedMessage]) -> usize {
    messages.len()
}

#[test]
fn link_cap_holds_for_ten_thousand_messages_in_one_batch() {
    suite::spans();
    // Built in memory: the cap is about the span, not the broker, and ten thousand round trips would only
    // slow the suite. Every other message has a valid context.
    let messages: Vec<OwnedMessage> = (0..10_000)
        .map(|offset| {
            let traceparent = (offset % 2 == 0).then(|| format!("00-{:032x}-{:016x}-01", offset + 1, offset + 1));
            in_memory_message("huge-batch", offset, traceparent)
        })
        .collect();

    assert_eq!(bulk(&messages), 10_000);

    let span = spans_to("huge-batch").into_iter().find(|span| span.span_kind == SpanKind::Consumer).expect("the span");
    let cap = tracehop::DEFAULT_MAX_LINKS_PER_SPAN;
    assert_eq!(span.links.links.len(), cap);
    assert_eq!(span.links.dropped_count, 0, "tracehop stays within the SDK's own limit");
    assert_eq!(attribute(&span, "tracehop.links.dropped"), Some(Value::I64(5_000 - cap as i64)));
    assert_eq!(attribute(&span, "messaging.batch.message_count"), Some(Value::I64(10_000)));
    let kept: Vec<(TraceId, SpanId, Vec<KeyValue>)> = messages
        .iter()
        .step_by(2)
        .take(cap)
        .map(|message| {
            let id = message.offset() as u64 + 1;
            (TraceId::from(u128::from(id)), SpanId::from(id), identity(message))
        })
        .collect();
    assert_eq!(link_identity(&span), kept, "the first {cap} valid contexts, in order, each with its identity");
}

#[tracehop::traced_consumer(group = "bulk", parent = "none")]
fn bulk_untrusted(messages: &[OwnedMessage]) -> usize {
    messages.len()
}

/// `parent = "none"` on a batch: a new trace linked to nothing, however valid the messages' contexts.
#[test]
fn an_untrusted_batch_links_to_no_message() {
    suite::spans();
    let messages: Vec<OwnedMessage> = (0..3)
        .map(|offset| {
            let traceparent = format!("00-{:032x}-{:016x}-01", offset + 100, offset + 100);
            in_memory_message("untrusted-batch", offset, Some(traceparent))
        })
        .collect();
    assert_eq!(bulk_untrusted(&messages), 3);
    let span =
        spans_to("untrusted-batch").into_iter().find(|span| span.span_kind == SpanKind::Consumer).expect("the span");
    assert!(span.links.links.is_empty(), "{:?}", span.links.links);
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert!((100..103).all(|id| span.span_context.trace_id() != TraceId::from(id)));
    assert_eq!(attribute(&span, "messaging.batch.message_count"), Some(Value::I64(3)));
    assert_eq!(attribute(&span, "tracehop.links.dropped"), None);
}
