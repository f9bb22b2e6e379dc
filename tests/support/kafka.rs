//! Kafka as a [`BrokerFixture`]: the suite's broker ([`Broker`]: librdkafka's mock cluster, or tansu), a fresh
//! one-partition topic per destination and one consumer group per subscriber.

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use opentelemetry::{KeyValue, Value};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tracehop::clients::kafka::TracedFutureProducer;
use tracehop::clients::ConsumerTracing;
use tracehop::Handler;

use crate::behaviour::{handle_body, Attributes, BrokerFixture, Handled, OutOfStock, Outgoing};
use crate::{receive, Broker};

/// The suite's Kafka broker, as the shared test bodies use it.
pub struct Kafka {
    broker: Broker,
}

impl Kafka {
    /// The suite's broker ([`Broker::start`]), with the suite's span capture installed.
    pub fn start() -> Self {
        crate::spans();
        Self { broker: Broker::start() }
    }
}

/// A fresh one-partition topic, and a consumer per subscriber, each in a group of its own.
pub struct Topic {
    name: String,
    subscribers: Vec<StreamConsumer>,
}

#[tracehop::traced_producer]
async fn publish(producer: &FutureProducer, record: FutureRecord<'_, str, [u8]>) -> OwnedDeliveryResult {
    producer.send(record, Duration::from_secs(10)).await
}

#[tracehop::traced_consumer(group = "inventory")]
async fn handle(message: &OwnedMessage, fail: bool) -> Result<Handled, String> {
    handle_body(id_of(message), message.payload().unwrap_or_default().to_vec(), fail).await
}

#[tracehop::traced_consumer(group = "inventory")]
fn settle_inside(message: &OwnedMessage, consumer: &StreamConsumer) -> Result<(), String> {
    tracehop::clients::kafka::commit_message(consumer, message, CommitMode::Sync).map_err(|error| error.to_string())
}

#[tracehop::traced_consumer(
    group = "inventory",
    capture_headers("x-*", "Authorization"),
    exclude_headers("x-internal-*"),
    attempt_header = "x-retry-count"
)]
async fn handle_capturing(message: &OwnedMessage) -> Result<Handled, String> {
    handle_body(id_of(message), message.payload().unwrap_or_default().to_vec(), false).await
}

#[tracehop::traced_consumer(group = "inventory")]
async fn handle_out_of_stock(message: &OwnedMessage) -> Result<(), OutOfStock> {
    let _ = message;
    Err(OutOfStock)
}

#[tracehop::traced_consumer(group = "inventory")]
fn handle_panicking(message: &OwnedMessage) {
    panic!("corrupt order {}", id_of(message))
}

#[tracehop::traced_consumer(group = "inventory")]
fn handle_batch(messages: &[OwnedMessage]) -> usize {
    messages.len()
}

/// The handlers the clients use, described as the macros describe `publish` and `handle` above.
static PUBLISH: Handler = Handler::producer("suite::kafka::publish");
static HANDLE_AS_MACRO: Handler = Handler::consumer("suite::kafka::handle").group("inventory");
static RECEIVING: ConsumerTracing = ConsumerTracing::new(&HANDLE_AS_MACRO).with_receive_spans();

fn id_of<M: Message>(message: &M) -> String {
    String::from_utf8_lossy(message.key().expect("every message of the fixture has a key")).into_owned()
}

fn record<'a>(topic: &'a str, message: &Outgoing<'a>) -> FutureRecord<'a, str, [u8]> {
    FutureRecord::to(topic).key(message.id).payload(message.payload)
}

impl BrokerFixture for Kafka {
    type Message = OwnedMessage;
    type Destination = Topic;

    const SYSTEM: &'static str = "kafka";
    const ID_ATTRIBUTE: &'static str = "messaging.kafka.message.key";
    const PUBLISH_FUNCTION: &'static str = "suite::kafka::publish";
    const HANDLE_FUNCTION: &'static str = "suite::kafka::handle";
    const SETTLE_OPERATION: &'static str = "commit";
    const TIMESTAMPS_MESSAGES: bool = true;
    const ORDERS_HEADER_NAMES: bool = true;

    async fn destination(&self, prefix: &str, subscribers: usize) -> Topic {
        let name = crate::unique_topic(prefix);
        self.broker.create_topic(&name, 1);
        let subscribers =
            (0..subscribers).map(|index| self.broker.consumer(&format!("subscriber-{index}"), &name)).collect();
        Topic { name, subscribers }
    }

    fn name(&self, topic: &Topic) -> String {
        topic.name.clone()
    }

    async fn publish(&self, topic: &Topic, message: &Outgoing<'_>) {
        publish(&self.broker.producer(), record(&topic.name, message)).await.expect("the broker accepts the message");
    }

    async fn publish_by_client(&self, topic: &Topic, message: &Outgoing<'_>) -> Vec<(&'static str, Value)> {
        let producer = TracedFutureProducer::new(self.broker.producer()).with_handler(&PUBLISH);
        let delivery = producer
            .send(record(&topic.name, message), Duration::from_secs(10))
            .await
            .expect("the broker accepts the message");
        vec![
            ("messaging.destination.partition.id", Value::from(delivery.partition.to_string())),
            ("messaging.kafka.offset", Value::I64(delivery.offset)),
        ]
    }

    async fn publish_raw(&self, topic: &Topic, message: &Outgoing<'_>) {
        self.broker.send_raw(&topic.name, message.id, message.payload, message.headers).await;
    }

    async fn publish_raw_at(&self, topic: &Topic, message: &Outgoing<'_>, at: std::time::SystemTime) -> i64 {
        let millis = at.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64;
        let record = record(&topic.name, message).timestamp(millis);
        self.broker.producer().send(record, Duration::from_secs(10)).await.expect("the broker accepts the message");
        millis
    }

    async fn receive(&self, topic: &Topic, subscriber: usize) -> OwnedMessage {
        receive(&topic.subscribers[subscriber]).await
    }

    fn id_of(&self, received: &OwnedMessage) -> String {
        id_of(received)
    }

    fn traceparent_of(&self, received: &OwnedMessage) -> Option<Vec<u8>> {
        let headers = received.headers()?;
        let mut traceparents = headers.iter().filter(|header| header.key == "traceparent");
        let traceparent = traceparents.next()?.value.map(<[u8]>::to_vec);
        assert!(traceparents.next().is_none(), "one traceparent header");
        traceparent
    }

    async fn handle(&self, received: &OwnedMessage) -> Result<Handled, String> {
        handle(received, false).await
    }

    async fn handle_capturing(&self, received: &OwnedMessage) -> Result<Handled, String> {
        handle_capturing(received).await
    }

    async fn handle_out_of_stock(&self, received: &OwnedMessage) -> Result<(), OutOfStock> {
        handle_out_of_stock(received).await
    }

    fn handle_panicking(&self, received: &OwnedMessage) {
        handle_panicking(received)
    }

    fn handle_batch(&self, received: &[OwnedMessage]) -> usize {
        handle_batch(received)
    }

    fn link_attributes(&self, received: &OwnedMessage) -> Vec<KeyValue> {
        vec![
            KeyValue::new("messaging.destination.name", received.topic().to_owned()),
            KeyValue::new("messaging.destination.partition.id", received.partition().to_string()),
            KeyValue::new("messaging.kafka.offset", received.offset()),
        ]
    }

    async fn handle_failing(&self, received: &OwnedMessage) -> Result<Handled, String> {
        handle(received, true).await
    }

    async fn give_back(&self, topic: &mut Topic, received: &OwnedMessage) {
        // The caller does not commit a failed message; tracehop has not either.
        let mut partition = TopicPartitionList::new();
        partition.add_partition(&topic.name, received.partition());
        let committed =
            topic.subscribers[0].committed_offsets(partition, Duration::from_secs(10)).expect("committed offsets");
        assert_eq!(committed.elements()[0].offset(), Offset::Invalid, "nothing committed for the failed message");
        // A new consumer of the same group, after the first is gone.
        drop(topic.subscribers.remove(0));
        topic.subscribers.insert(0, self.broker.consumer("subscriber-0", &topic.name));
    }

    fn assert_redelivery_of(&self, first: &OwnedMessage, again: &OwnedMessage) {
        assert_eq!((again.partition(), again.offset()), (first.partition(), first.offset()), "the same message");
    }

    fn redelivery_attributes(&self) -> Attributes {
        Vec::new() // a Kafka consumer cannot tell a message it reads again
    }

    async fn handle_by_client(&self, topic: &Topic, subscriber: usize, receive_spans: bool) -> Result<Handled, String> {
        let tracing = if receive_spans { RECEIVING } else { ConsumerTracing::new(&HANDLE_AS_MACRO) };
        let mut messages = pin!(tracing.stream(topic.subscribers[subscriber].stream()));
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .expect("a message within 30 seconds")
            .expect("the stream goes on")
            .expect("no Kafka error");
        message
            .process_async(|message| {
                handle_body(id_of(&message), message.payload().unwrap_or_default().to_vec(), false)
            })
            .await
    }

    async fn handle_and_settle(&self, topic: &Topic, received: &OwnedMessage) -> Result<(), String> {
        settle_inside(received, &topic.subscribers[0])
    }

    fn sent_attributes(&self, message: &Outgoing<'_>) -> Vec<(&'static str, Value)> {
        vec![
            ("messaging.kafka.message.key", Value::from(message.id.to_owned())),
            ("messaging.message.body.size", Value::I64(message.payload.len() as i64)),
        ]
    }

    fn received_attributes(&self, message: &Outgoing<'_>, received: &OwnedMessage) -> Vec<(&'static str, Value)> {
        assert_eq!(received.partition(), 0, "the fixture's topics have one partition");
        vec![
            ("messaging.destination.partition.id", Value::from("0")),
            ("messaging.kafka.offset", Value::I64(received.offset())),
            ("messaging.kafka.message.key", Value::from(message.id.to_owned())),
        ]
    }

    fn settle_attributes(&self, _message: &Outgoing<'_>, received: &OwnedMessage) -> Vec<(&'static str, Value)> {
        vec![
            ("messaging.destination.partition.id", Value::from("0")),
            ("messaging.kafka.offset", Value::I64(received.offset())),
        ]
    }
}
