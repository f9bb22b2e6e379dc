//! The runtime API without the macros gives the same spans: what a user who cannot put an attribute on a
//! function calls, and what the expansions call.

use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::Value;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use suite::{attribute, receive, spans_to, Broker};
use tracehop::{Handler, IncomingContext, MessageSpan, MessagingSystem};

static PUBLISH: Handler = Handler::producer("runtime_api::publish");
static HANDLE: Handler = Handler::consumer("runtime_api::handle").group("no-macros").system(MessagingSystem::Kafka);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_span_without_macros_continues_the_trace() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("no-macros");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("no-macros", &topic);
    let producer = broker.producer();

    let mut record: FutureRecord<'_, str, str> = FutureRecord::to(&topic).key("k-1").payload("hello");
    let span = MessageSpan::producer(&PUBLISH).describing(&record).start();
    span.inject(&mut record);
    let delivery = span
        .instrument(async { producer.send(record, Duration::from_secs(10)).await.map_err(|(error, _)| error) })
        .await
        .expect("delivered");

    let message: OwnedMessage = receive(&consumer).await;
    assert!(matches!(tracehop::extract_context(&message), IncomingContext::Continued(_, _)));
    let length = MessageSpan::consumer(&HANDLE, &message)
        .attributes(&mut |attributes| attributes.add("app.handled_by", "hand"))
        .server("127.0.0.1", 9092)
        .start()
        .run(|| Ok::<_, std::io::Error>(message.payload().map_or(0, <[u8]>::len)))
        .expect("handled");
    assert_eq!(length, 5);

    let spans = spans_to(&topic);
    assert_eq!(spans.len(), 2);
    let producer_span = spans.iter().find(|span| span.span_kind == SpanKind::Producer).expect("producer span");
    let consumer_span = spans.iter().find(|span| span.span_kind == SpanKind::Consumer).expect("consumer span");
    assert_eq!(producer_span.name, format!("send {topic}"));
    assert_eq!(consumer_span.name, format!("process {topic}"));
    assert_eq!(consumer_span.span_context.trace_id(), producer_span.span_context.trace_id());
    assert_eq!(consumer_span.parent_span_id, producer_span.span_context.span_id());
    assert!(consumer_span.parent_span_is_remote, "the producer's span is a remote parent");
    assert_eq!(consumer_span.links.links[0].span_context.span_id(), producer_span.span_context.span_id());
    assert_eq!(attribute(consumer_span, "messaging.kafka.offset"), Some(Value::I64(delivery.offset)));
    assert_eq!(attribute(consumer_span, "messaging.consumer.group.name"), Some(Value::from("no-macros")));
    assert_eq!(attribute(consumer_span, "app.handled_by"), Some(Value::from("hand")));
    assert_eq!(attribute(consumer_span, "code.function.name"), Some(Value::from("runtime_api::handle")));
    assert_eq!(attribute(consumer_span, "server.address"), Some(Value::from("127.0.0.1")));
    assert_eq!(attribute(consumer_span, "server.port"), Some(Value::I64(9092)));
    assert_eq!(attribute(producer_span, "server.address"), None);
    assert_eq!(consumer_span.status, Status::Unset);
}

#[tracehop::traced_producer]
async fn forward(producer: &rdkafka::producer::FutureProducer, record: FutureRecord<'_, str, str>) {
    producer.send(record, Duration::from_secs(10)).await.expect("the broker accepts the message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_old_headers_replaces_the_stale_traceparent() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("forward");
    broker.create_topic(&topic, 1);
    let consumer = broker.consumer("forward", &topic);
    let stale = "00-11111111111111111111111111111111-2222222222222222-01";
    let headers = OwnedHeaders::new()
        .insert(Header { key: "traceparent", value: Some(stale) })
        .insert(Header { key: "tenant", value: Some("acme") });
    forward(&broker.producer(), FutureRecord::to(&topic).payload("again").headers(headers)).await;

    let message = receive(&consumer).await;
    let headers = message.headers().expect("headers");
    let traceparents: Vec<&[u8]> =
        headers.iter().filter(|header| header.key == "traceparent").filter_map(|header| header.value).collect();
    assert_eq!(traceparents.len(), 1, "exactly one traceparent reaches the consumer");
    assert_ne!(traceparents[0], stale.as_bytes());
    assert!(headers.iter().any(|header| header.key == "tenant" && header.value == Some(b"acme".as_slice())));

    MessageSpan::consumer(&HANDLE, &message).start().run(|| ());
    let spans = spans_to(&topic);
    let producer_span = spans.iter().find(|span| span.span_kind == SpanKind::Producer).expect("producer span");
    let consumer_span = spans.iter().find(|span| span.span_kind == SpanKind::Consumer).expect("consumer span");
    assert_eq!(consumer_span.parent_span_id, producer_span.span_context.span_id());
    assert!(consumer_span.parent_span_is_remote, "the producer's span is a remote parent");
    assert_ne!(consumer_span.parent_span_id, SpanId::from_hex("2222222222222222").unwrap());
}

/// A third broker's message: implementing tracehop's two small traits is all it takes, for the runtime API and
/// for the macros (`message = ...`, `record = ...`).
#[derive(Default)]
struct Frame {
    channel: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl tracehop::MessageFacts for Frame {
    fn system(&self) -> MessagingSystem {
        MessagingSystem::Other("frames")
    }
    fn destination(&self) -> Option<&str> {
        Some(&self.channel)
    }
    fn record_attributes(&self, attributes: &mut tracehop::SpanAttributes) {
        attributes.add("messaging.message.body.size", 0_i64);
    }
}

impl tracehop::ConsumedMessage for Frame {
    fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        self.headers.iter().map(|(key, value)| (key.as_str(), Some(value.as_slice())))
    }
}

impl tracehop::PublishedMessage for Frame {
    fn set_header(&mut self, key: &str, value: &str) {
        self.headers.retain(|(existing, _)| existing != key);
        self.headers.push((key.to_owned(), value.as_bytes().to_vec()));
    }
}

#[tracehop::traced_producer(record = frame)]
fn send_frame(frame: &mut Frame) {
    let _ = frame;
}

#[tracehop::traced_consumer(message = frame, group = "frames")]
fn receive_frame(frame: &Frame) {
    let _ = frame;
}

#[test]
fn a_third_broker_takes_two_small_trait_impls() {
    suite::spans();
    let mut frame = Frame { channel: suite::unique_topic("frames"), ..Frame::default() };
    send_frame(&mut frame);
    assert!(frame.headers.iter().any(|(key, _)| key == "traceparent"));
    receive_frame(&frame);

    let spans = spans_to(&frame.channel);
    let producer = spans.iter().find(|span| span.span_kind == SpanKind::Producer).expect("producer span");
    let consumer = spans.iter().find(|span| span.span_kind == SpanKind::Consumer).expect("consumer span");
    assert_eq!(producer.name, format!("send {}", frame.channel));
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    assert!(consumer.parent_span_is_remote, "the producer's span is a remote parent");
    assert_eq!(consumer.span_context.trace_id(), producer.span_context.trace_id());
    assert_eq!(attribute(consumer, "messaging.system"), Some(Value::from("frames")));
    assert_eq!(attribute(producer, "messaging.system"), Some(Value::from("frames")));
    assert_eq!(attribute(consumer, "messaging.consumer.group.name"), Some(Value::from("frames")));
}

/// A span not run through `run` or `instrument` still ends on every exit: dropped while a panic unwinds past it,
/// it says the handler panicked; dropped on a normal exit, it says nothing of the kind.
#[test]
fn a_span_dropped_by_a_panic_records_the_panic_and_one_dropped_normally_does_not() {
    suite::spans();
    let unwound = Frame { channel: suite::unique_topic("unwound"), ..Frame::default() };
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _span = MessageSpan::consumer(&HANDLE, &unwound).start();
        panic!("the handler failed half-way");
    }));
    assert!(panicked.is_err());
    let returned = Frame { channel: suite::unique_topic("returned"), ..Frame::default() };
    drop(MessageSpan::consumer(&HANDLE, &returned).start());

    let [unwound_span] = &spans_to(&unwound.channel)[..] else { panic!("one span for the unwound handler") };
    assert_eq!(unwound_span.status, Status::error("the handler panicked"));
    assert_eq!(attribute(unwound_span, "error.type"), Some(Value::from("panic")));
    let [returned_span] = &spans_to(&returned.channel)[..] else { panic!("one span for the returning handler") };
    assert_eq!(returned_span.status, Status::Unset);
    assert_eq!(attribute(returned_span, "error.type"), None);
}
