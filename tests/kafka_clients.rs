//! Traced Kafka clients (`tracehop::clients`) on the embedded broker: a `FutureProducer` wrapper whose span lasts
//! until the delivery report, a `StreamConsumer` stream adapter and a `BaseConsumer` poll, each message with
//! the CONSUMER span `#[traced_consumer]` would give it. That wrapper and macro spans are the same is shown on
//! every broker by `tests/shared_behaviour.rs`.

use std::pin::pin;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{global, Value};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use suite::{attribute, attributes, expected, spans_to, Broker};
use tracehop::clients::kafka::TracedFutureProducer;
use tracehop::clients::{ConsumerTracing, TracedMessage};
use tracehop::{Handler, ParentPolicy};

const SEND_FUNCTION: &str = "tracehop::clients::kafka::TracedFutureProducer::send";

static ON_ORDER: Handler = Handler::consumer("kafka_clients::orders_loop").group("billing");

/// Takes the next message of a traced stream, failing the test after 30 seconds.
async fn next_traced<'c>(
    messages: &mut (impl futures_util::Stream<Item = rdkafka::error::KafkaResult<TracedMessage<BorrowedMessage<'c>>>>
              + Unpin),
) -> TracedMessage<BorrowedMessage<'c>> {
    tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .expect("a message within 30 seconds")
        .expect("the stream goes on")
        .expect("no Kafka error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_future_producer_span_records_the_partition_and_offset_of_the_delivery_report() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("client-send");
    broker.create_topic(&topic, 3);
    let producer = TracedFutureProducer::new(broker.producer());

    let headers = OwnedHeaders::new().insert(Header { key: "tenant", value: Some("acme") });
    let record = FutureRecord::to(&topic).key("ord-7").payload("{\"id\":7}").headers(headers).partition(2);
    let first = producer.send(record, Duration::from_secs(10)).await.expect("delivered");
    let record = FutureRecord::to(&topic).key("ord-7").payload("{\"id\":7}").partition(2);
    let second = producer.send(record, Duration::from_secs(10)).await.expect("delivered");
    assert_eq!((first.partition, first.offset, second.offset), (2, 0, 1));
    let unpinned = producer.send(FutureRecord::to(&topic).key("ord-8").payload("{}"), Duration::from_secs(10));
    let unpinned = unpinned.await.expect("delivered");

    let spans = spans_to(&topic);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let second_span = spans
        .iter()
        .find(|span| attribute(span, "messaging.kafka.offset") == Some(Value::I64(1)))
        .expect("the second send's span");
    assert_eq!(second_span.name, format!("send {topic}"));
    assert_eq!(second_span.span_kind, SpanKind::Producer);
    assert_eq!(second_span.parent_span_id, SpanId::INVALID, "no span was current: a new root");
    assert_eq!(second_span.status, Status::Unset);
    assert_eq!(
        attributes(second_span),
        expected(&[
            ("code.function.name", Value::from(SEND_FUNCTION)),
            ("messaging.system", Value::from("kafka")),
            ("messaging.operation.type", Value::from("send")),
            ("messaging.operation.name", Value::from("send")),
            ("messaging.destination.name", Value::from(topic.clone())),
            ("messaging.destination.partition.id", Value::from("2")),
            ("messaging.kafka.message.key", Value::from("ord-7")),
            ("messaging.message.body.size", Value::I64(8)),
            ("messaging.kafka.offset", Value::I64(1)),
        ])
    );
    // A record that names no partition gets the one Kafka chose, from the delivery report.
    let unpinned_span = spans
        .iter()
        .find(|span| attribute(span, "messaging.kafka.message.key") == Some(Value::from("ord-8")))
        .expect("the third send's span");
    assert_eq!(
        attribute(unpinned_span, "messaging.destination.partition.id"),
        Some(Value::from(unpinned.partition.to_string()))
    );
    assert_eq!(attribute(unpinned_span, "messaging.kafka.offset"), Some(Value::I64(unpinned.offset)));
    assert_eq!(
        unpinned_span.attributes.iter().filter(|kv| kv.key.as_str() == "messaging.destination.partition.id").count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sent_record_carries_the_producer_span_context_beside_the_users_headers() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("client-headers");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("headers", &topic);
    let producer = TracedFutureProducer::new(broker.producer());
    let headers = OwnedHeaders::new()
        .insert(Header { key: "tenant", value: Some("acme") })
        .insert(Header { key: "traceparent", value: Some("00-11111111111111111111111111111111-2222222222222222-01") });
    producer
        .send(FutureRecord::to(&topic).key("k").payload("p").headers(headers), Duration::from_secs(10))
        .await
        .expect("delivered");

    let message = suite::receive(&consumer).await;
    let producer_span = suite::the_span(&spans_to(&topic), SpanKind::Producer);
    let received: Vec<(String, Option<Vec<u8>>)> = message
        .headers()
        .expect("headers")
        .iter()
        .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
        .collect();
    let traceparent =
        format!("00-{}-{}-01", producer_span.span_context.trace_id(), producer_span.span_context.span_id());
    assert_eq!(
        received,
        vec![("tenant".to_owned(), Some(b"acme".to_vec())), ("traceparent".to_owned(), Some(traceparent.into_bytes())),],
        "the user's header kept, the stale traceparent replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_is_recorded_as_an_error_on_the_producer_span() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("client-too-large");
    broker.create_topic(&topic, 1);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("message.max.bytes", "1000")
        .create()
        .expect("a producer");
    let producer = TracedFutureProducer::new(producer);
    let payload = "x".repeat(2000);

    let (error, _record) = producer
        .send(FutureRecord::<str, str>::to(&topic).payload(&payload), Duration::from_secs(10))
        .await
        .expect_err("too large to send");

    let span = suite::the_span(&spans_to(&topic), SpanKind::Producer);
    assert_eq!(span.status, Status::error(error.to_string()));
    assert_eq!(attribute(&span, "error.type"), Some(Value::from("rdkafka::error::KafkaError")));
    assert_eq!(attribute(&span, "messaging.kafka.offset"), None, "nothing was delivered");
    assert_eq!(span.events.events.len(), 1);
    assert_eq!(span.events.events[0].name, "exception");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_refusal_in_the_delivery_report_is_recorded_as_an_error_on_the_producer_span() {
    suite::spans();
    let cluster = MockCluster::new(1).expect("a mock cluster");
    let topic = suite::unique_topic("client-refused");
    cluster.create_topic(&topic, 1, 1).expect("topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("message.timeout.ms", "10000")
        .create()
        .expect("a producer");
    // Non-retriable: the broker's refusal comes back in the delivery report.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED]);
    let producer = TracedFutureProducer::new(producer);

    let result: OwnedDeliveryResult =
        producer.send(FutureRecord::to(&topic).key("k").payload("p"), Duration::from_secs(10)).await;
    let (error, _) = result.expect_err("the broker refuses the produce request");

    let span = suite::the_span(&spans_to(&topic), SpanKind::Producer);
    assert_eq!(span.status, Status::error(error.to_string()));
    assert!(error.to_string().contains("authorization"), "{error}");
    assert_eq!(attribute(&span, "error.type"), Some(Value::from("rdkafka::error::KafkaError")));
}

/// The span ends when the delivery report comes, not when the record is queued: a broker that answers only after
/// a round trip of 400 ms keeps the span open that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_span_ends_when_the_delivery_report_arrives() {
    suite::spans();
    let broker = Broker::start_mock();
    let topic = suite::unique_topic("client-slow-report");
    broker.create_topic(&topic, 1);
    let Broker::Mock(cluster) = &broker else { unreachable!("start_mock starts the mock cluster") };
    let round_trip = Duration::from_millis(400);
    cluster.broker_round_trip_time(-1, round_trip).expect("every broker of the mock answers late");
    let producer = TracedFutureProducer::new(broker.producer());

    let sent_at = SystemTime::now();
    producer.send(FutureRecord::to(&topic).key("k").payload("p"), Duration::from_secs(10)).await.expect("delivered");
    let reported_at = SystemTime::now();

    let span = suite::the_span(&spans_to(&topic), SpanKind::Producer);
    assert!(sent_at <= span.start_time, "the span starts with the send");
    let open_for = span.end_time.duration_since(span.start_time).expect("it ends after it starts");
    assert!(open_for >= round_trip, "open until the broker's answer, {round_trip:?} later: {open_for:?}");
    assert!(span.end_time <= reported_at, "ended by the time the send returns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_adapter_gives_each_message_a_consumer_span_continuing_the_producers_trace() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("client-stream");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("billing", &topic);
    let producer = TracedFutureProducer::new(broker.producer());
    producer.send(FutureRecord::to(&topic).key("ord-1").payload("{}"), Duration::from_secs(10)).await.expect("sent");

    let mut messages = pin!(ConsumerTracing::new(&ON_ORDER).stream(consumer.stream()));
    let message = next_traced(&mut messages).await;
    let (offset, seen) = message
        .process(|message| {
            let context = opentelemetry::Context::current();
            Ok::<_, std::convert::Infallible>((message.offset(), context.span().span_context().span_id()))
        })
        .expect("infallible");

    let spans = spans_to(&topic);
    assert_eq!(spans.len(), 2, "no receive span unless asked for: {spans:#?}");
    let producer_span = suite::the_span(&spans, SpanKind::Producer);
    let consumer_span = suite::the_span(&spans, SpanKind::Consumer);
    suite::assert_child_of(&consumer_span, &producer_span);
    assert_eq!(seen, consumer_span.span_context.span_id(), "the closure ran with the span current");
    assert_eq!(consumer_span.name, format!("process {topic}"));
    assert_eq!(consumer_span.status, Status::Unset);
    assert_eq!(
        attributes(&consumer_span),
        expected(&[
            ("code.function.name", Value::from("kafka_clients::orders_loop")),
            ("messaging.system", Value::from("kafka")),
            ("messaging.operation.type", Value::from("process")),
            ("messaging.operation.name", Value::from("process")),
            ("messaging.destination.name", Value::from(topic.clone())),
            ("messaging.consumer.group.name", Value::from("billing")),
            ("messaging.destination.partition.id", Value::from("0")),
            ("messaging.kafka.offset", Value::I64(offset)),
            ("messaging.kafka.message.key", Value::from("ord-1")),
            ("messaging.message.body.size", Value::I64(2)),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_spans_are_an_option_linked_to_the_producer() {
    suite::spans();
    static RECEIVING: ConsumerTracing = ConsumerTracing::new(&ON_ORDER).with_receive_spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("client-receive");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("billing", &topic);
    let producer = TracedFutureProducer::new(broker.producer());
    producer.send(FutureRecord::to(&topic).key("k").payload("p"), Duration::from_secs(10)).await.expect("sent");

    let poller = global::tracer("billing").start("poll loop");
    let poller_context = opentelemetry::Context::current_with_span(poller);
    let message = {
        let _current = poller_context.clone().attach();
        let mut messages = pin!(RECEIVING.stream(consumer.stream()));
        next_traced(&mut messages).await.into_parts().0.detach()
    };
    poller_context.span().end();

    let spans = spans_to(&topic);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let producer_span = suite::the_span(&spans, SpanKind::Producer);
    let consumer_span = suite::the_span(&spans, SpanKind::Consumer);
    let receive = suite::the_span(&spans, SpanKind::Client);
    suite::assert_child_of(&consumer_span, &producer_span);
    assert_eq!(receive.name, format!("receive {topic}"));
    assert_eq!(receive.parent_span_id, poller_context.span().span_context().span_id(), "where it was taken");
    assert_eq!(receive.span_context.trace_id(), poller_context.span().span_context().trace_id());
    let linked: Vec<SpanId> = receive.links.links.iter().map(|link| link.span_context.span_id()).collect();
    assert_eq!(linked, vec![producer_span.span_context.span_id()]);
    assert_eq!(
        attributes(&receive),
        expected(&[
            ("code.function.name", Value::from("kafka_clients::orders_loop")),
            ("messaging.system", Value::from("kafka")),
            ("messaging.operation.type", Value::from("receive")),
            ("messaging.operation.name", Value::from("receive")),
            ("messaging.destination.name", Value::from(topic.clone())),
            ("messaging.consumer.group.name", Value::from("billing")),
            ("messaging.destination.partition.id", Value::from("0")),
            ("messaging.kafka.offset", Value::I64(message.offset())),
            ("messaging.kafka.message.key", Value::from("k")),
            ("messaging.message.body.size", Value::I64(1)),
        ])
    );
    assert!(receive.end_time <= consumer_span.end_time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_consumer_poll_traces_the_message_and_process_async_records_its_error() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("client-poll");
    broker.create_topic(&topic, 1);
    let producer = TracedFutureProducer::new(broker.producer());
    producer.send(FutureRecord::to(&topic).key("k").payload("p"), Duration::from_secs(10)).await.expect("sent");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", format!("billing.{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");

    let tracing = ConsumerTracing::new(&ON_ORDER);
    let message = (0..300)
        .find_map(|_| tracing.poll(&consumer, Duration::from_millis(100)))
        .expect("a message within 30 seconds")
        .expect("no Kafka error");
    let result = message
        .process_async(|message| async move {
            tokio::task::yield_now().await;
            Err::<(), _>(format!("cannot bill offset {}", message.offset()))
        })
        .await;
    assert_eq!(result, Err("cannot bill offset 0".to_owned()));

    let spans = spans_to(&topic);
    let consumer_span = suite::the_span(&spans, SpanKind::Consumer);
    suite::assert_child_of(&consumer_span, &suite::the_span(&spans, SpanKind::Producer));
    assert_eq!(consumer_span.status, Status::error("cannot bill offset 0"));
    assert_eq!(attribute(&consumer_span, "error.type"), Some(Value::from("alloc::string::String")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_entered_by_hand_is_current_until_its_guard_drops_and_ends_with_the_message() {
    suite::spans();
    static REPLAYED: Handler = Handler::consumer("kafka_clients::replay_loop").group("audit").replay();
    let broker = Broker::start();
    let topic = suite::unique_topic("client-enter");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("audit", &topic);
    let producer = TracedFutureProducer::new(broker.producer());
    producer.send(FutureRecord::to(&topic).key("k").payload("p"), Duration::from_secs(10)).await.expect("sent");

    let message: OwnedMessage = suite::receive(&consumer).await;
    let traced = ConsumerTracing::new(&REPLAYED).trace(message);
    {
        let _current = traced.enter();
        let _child = global::tracer("audit").start("write audit row");
    }
    let timestamp = traced.message().timestamp().to_millis().expect("a create time");
    assert!(suite::spans_to(&topic).iter().all(|span| span.span_kind != SpanKind::Consumer), "not ended yet");
    drop(traced);

    let spans = spans_to(&topic);
    let producer_span = suite::the_span(&spans, SpanKind::Producer);
    let consumer_span = suite::the_span(&spans, SpanKind::Consumer);
    // A replay handler: a new trace, linked to the original.
    assert_ne!(consumer_span.span_context.trace_id(), producer_span.span_context.trace_id());
    assert_eq!(consumer_span.parent_span_id, SpanId::INVALID);
    assert_eq!(consumer_span.links.links[0].span_context.span_id(), producer_span.span_context.span_id());
    assert_eq!(attribute(&consumer_span, "tracehop.replay"), Some(Value::Bool(true)));
    assert_eq!(attribute(&consumer_span, "tracehop.replay.original_time_ms"), Some(Value::I64(timestamp)));
    let child = suite::spans_of_trace(consumer_span.span_context.trace_id())
        .into_iter()
        .find(|span| span.name == "write audit row")
        .expect("the child span");
    assert_eq!(child.parent_span_id, consumer_span.span_context.span_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_policy_none_ignores_the_incoming_context() {
    suite::spans();
    static UNTRUSTED: Handler = Handler::consumer("kafka_clients::untrusted").parent(ParentPolicy::None);
    let broker = Broker::start();
    let topic = suite::unique_topic("client-untrusted");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("untrusted", &topic);
    let producer = TracedFutureProducer::new(broker.producer());
    producer.send(FutureRecord::to(&topic).key("k").payload("p"), Duration::from_secs(10)).await.expect("sent");

    let mut messages = pin!(ConsumerTracing::new(&UNTRUSTED).with_receive_spans().stream(consumer.stream()));
    next_traced(&mut messages).await.process(|_| ());

    let spans = spans_to(&topic);
    let producer_span = suite::the_span(&spans, SpanKind::Producer);
    for kind in [SpanKind::Consumer, SpanKind::Client] {
        let span = suite::the_span(&spans, kind.clone());
        assert_ne!(span.span_context.trace_id(), producer_span.span_context.trace_id(), "{kind:?}");
        assert!(span.links.links.is_empty(), "{kind:?}");
    }
}

// BaseProducer and ThreadedProducer, through the tracing producer context.

/// A producer context of the user's own: it remembers each delivery report's opaque and outcome.
#[derive(Clone, Default)]
struct Deliveries(std::sync::Arc<std::sync::Mutex<Vec<(usize, bool)>>>);

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery_result: &rdkafka::producer::DeliveryResult<'_>, delivery_opaque: usize) {
        self.0.lock().unwrap().push((delivery_opaque, delivery_result.is_ok()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threaded_producer_keeps_the_span_until_the_delivery_report_and_passes_it_on() {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    use tracehop::clients::kafka::{SendTraced, TracingProducerContext};
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("client-threaded");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("threaded", &topic);
    let deliveries = Deliveries::default();
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create_with_context(TracingProducerContext::new(deliveries.clone()))
        .expect("a producer");

    let headers = OwnedHeaders::new().insert(Header { key: "tenant", value: Some("acme") });
    let record = BaseRecord::<str, str, usize>::with_opaque_to(&topic, 7).key("ord-3").payload("{}").headers(headers);
    producer.send_traced(record).map_err(|(error, _)| error).expect("queued");
    producer.flush(Duration::from_secs(10)).expect("flushed");

    assert_eq!(*deliveries.0.lock().unwrap(), vec![(7, true)], "the user's context got its report and opaque");
    let producer_span = suite::the_span(&spans_to(&topic), SpanKind::Producer);
    assert_eq!(
        attributes(&producer_span),
        expected(&[
            ("code.function.name", Value::from("tracehop::clients::kafka::SendTraced::send_traced")),
            ("messaging.system", Value::from("kafka")),
            ("messaging.operation.type", Value::from("send")),
            ("messaging.operation.name", Value::from("send")),
            ("messaging.destination.name", Value::from(topic.clone())),
            ("messaging.kafka.message.key", Value::from("ord-3")),
            ("messaging.message.body.size", Value::I64(2)),
            ("messaging.destination.partition.id", Value::from("0")),
            ("messaging.kafka.offset", Value::I64(0)),
        ])
    );
    let message = suite::receive(&consumer).await;
    let mut stream = pin!(ConsumerTracing::new(&ON_ORDER).stream(futures_util::stream::iter([Ok::<_, ()>(message)])));
    let traced = stream.next().await.expect("one message").expect("no error");
    let tenant = traced.message().headers().and_then(|headers| headers.iter().find(|header| header.key == "tenant"));
    assert_eq!(tenant.and_then(|header| header.value), Some(&b"acme"[..]), "the user's header kept");
    traced.process(|_| ());
    suite::assert_child_of(&suite::the_span(&spans_to(&topic), SpanKind::Consumer), &producer_span);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_producer_that_cannot_queue_a_record_records_the_error_and_returns_the_record_as_given() {
    use rdkafka::producer::{BaseProducer, BaseRecord};
    use tracehop::clients::kafka::{SendTraced, TracingProducerContext};
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("client-base-too-large");
    broker.create_topic(&topic, 1);
    let deliveries = Deliveries::default();
    let producer: BaseProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("message.max.bytes", "1000")
        .create_with_context(TracingProducerContext::new(deliveries.clone()))
        .expect("a producer");
    let payload = "x".repeat(2000);

    let (error, record) = producer
        .send_traced(BaseRecord::<str, str, usize>::with_opaque_to(&topic, 9).payload(&payload))
        .expect_err("too large to queue");

    assert_eq!((record.delivery_opaque, record.payload.map(str::len)), (9, Some(2000)));
    assert!(deliveries.0.lock().unwrap().is_empty(), "never queued: no delivery report");
    let span = suite::the_span(&spans_to(&topic), SpanKind::Producer);
    assert_eq!(span.status, Status::error(error.to_string()));
    assert_eq!(attribute(&span, "error.type"), Some(Value::from("rdkafka::error::KafkaError")));
}
