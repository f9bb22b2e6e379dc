//! RabbitMQ as a [`BrokerFixture`]: the server `scripts/test` starts (`AMQP_URL`), a fresh direct exchange per
//! destination and one queue per subscriber, bound with [`ROUTING_KEY`], each read on a channel of its own (so each
//! subscriber numbers its deliveries from 1). The default exchange (`amq.default`) is RabbitMQ's own quirk, in
//! `tests/rabbitmq.rs`.

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use opentelemetry::{KeyValue, Value};
use tracehop::clients::rabbitmq::TracedChannel;
use tracehop::clients::ConsumerTracing;
use tracehop::Handler;

use crate::behaviour::{handle_body, Attributes, BrokerFixture, Handled, OutOfStock, Outgoing};

/// The routing key every message of the fixture is published with.
pub const ROUTING_KEY: &str = "order.created";

/// The correlation id every message of the fixture carries (`messaging.message.conversation_id`).
pub const CONVERSATION: &str = "c-9";

/// The RabbitMQ server of `AMQP_URL`, as the shared test bodies use it.
pub struct RabbitMq {
    /// The publishing channel, in confirm mode.
    channel: Channel,
}

impl RabbitMq {
    /// A connection to the server of `AMQP_URL`, with the suite's span capture installed.
    pub async fn connect() -> Self {
        crate::spans();
        let channel = crate::rabbitmq_channel().await;
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
        Self { channel }
    }
}

/// A fresh direct exchange, and for each subscriber a queue bound to it with a channel of its own.
pub struct Exchange {
    name: String,
    queues: Vec<String>,
    channels: Vec<Channel>,
    /// Each subscriber's lapin consumer, once [`BrokerFixture::handle_by_client`] has started it.
    consumers: Vec<tokio::sync::Mutex<Option<lapin::Consumer>>>,
}

#[tracehop::traced_producer(destination = exchange, routing_key = routing_key)]
async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<Confirmation, lapin::Error> {
    channel
        .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), payload, properties)
        .await?
        .await
}

#[tracehop::traced_consumer(group = "inventory")]
async fn handle(delivery: &Delivery, fail: bool) -> Result<Handled, String> {
    handle_body(id_of(delivery), delivery.data.clone(), fail).await
}

#[tracehop::traced_consumer(group = "inventory")]
async fn settle_inside(delivery: &Delivery) -> Result<(), String> {
    let acked = tracehop::clients::rabbitmq::ack(delivery, BasicAckOptions::default()).await;
    match acked {
        Ok(true) => Ok(()),
        Ok(false) => Err("lapin did not acknowledge the delivery".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

#[tracehop::traced_consumer(
    group = "inventory",
    capture_headers("x-*", "Authorization"),
    exclude_headers("x-internal-*"),
    attempt_header = "x-retry-count"
)]
async fn handle_capturing(delivery: &Delivery) -> Result<Handled, String> {
    handle_body(id_of(delivery), delivery.data.clone(), false).await
}

#[tracehop::traced_consumer(group = "inventory")]
async fn handle_out_of_stock(delivery: &Delivery) -> Result<(), OutOfStock> {
    let _ = delivery;
    Err(OutOfStock)
}

#[tracehop::traced_consumer(group = "inventory")]
fn handle_panicking(delivery: &Delivery) {
    panic!("corrupt order {}", id_of(delivery))
}

#[tracehop::traced_consumer(group = "inventory")]
fn handle_batch(deliveries: &[Delivery]) -> usize {
    deliveries.len()
}

/// The handlers the clients use, described as the macros describe `publish` and `handle` above.
static PUBLISH: Handler = Handler::producer("suite::rabbitmq::publish");
static HANDLE_AS_MACRO: Handler = Handler::consumer("suite::rabbitmq::handle").group("inventory");
static RECEIVING: ConsumerTracing = ConsumerTracing::new(&HANDLE_AS_MACRO).with_receive_spans();

fn id_of(delivery: &Delivery) -> String {
    delivery.properties.message_id().as_ref().expect("every message of the fixture has an id").as_str().to_owned()
}

/// The properties of `message`: its id, the fixture's correlation id, and its headers (as long strings).
fn properties(message: &Outgoing<'_>) -> BasicProperties {
    let properties =
        BasicProperties::default().with_message_id(message.id.into()).with_correlation_id(CONVERSATION.into());
    if message.headers.is_empty() {
        return properties;
    }
    let mut headers = FieldTable::default();
    for (key, value) in message.headers {
        headers.insert((*key).into(), AMQPValue::LongString(LongString::from(value.to_vec())));
    }
    properties.with_headers(headers)
}

impl RabbitMq {
    /// Publishes `message` with exactly `properties`, bypassing tracehop, as a plain client would.
    async fn publish_plain(&self, exchange: &Exchange, message: &Outgoing<'_>, properties: BasicProperties) {
        self.channel
            .basic_publish(
                exchange.name.as_str().into(),
                ROUTING_KEY.into(),
                BasicPublishOptions::default(),
                message.payload,
                properties,
            )
            .await
            .expect("basic.publish")
            .await
            .expect("confirmed");
    }
}

impl BrokerFixture for RabbitMq {
    type Message = Delivery;
    type Destination = Exchange;

    const SYSTEM: &'static str = "rabbitmq";
    const ID_ATTRIBUTE: &'static str = "messaging.message.id";
    const PUBLISH_FUNCTION: &'static str = "suite::rabbitmq::publish";
    const HANDLE_FUNCTION: &'static str = "suite::rabbitmq::handle";
    const SETTLE_OPERATION: &'static str = "ack";
    const TIMESTAMPS_MESSAGES: bool = false;
    const ORDERS_HEADER_NAMES: bool = true;

    async fn destination(&self, prefix: &str, subscribers: usize) -> Exchange {
        let name = crate::unique_topic(prefix);
        let queues: Vec<String> = (0..subscribers).map(|index| format!("{name}.subscriber-{index}")).collect();
        let queue_names: Vec<&str> = queues.iter().map(String::as_str).collect();
        crate::declare_exchange(&self.channel, &name, ExchangeKind::Direct, &queue_names, ROUTING_KEY).await;
        let mut channels = Vec::new();
        for _ in 0..subscribers {
            channels.push(crate::rabbitmq_channel().await);
        }
        let consumers = (0..subscribers).map(|_| tokio::sync::Mutex::new(None)).collect();
        Exchange { name, queues, channels, consumers }
    }

    fn name(&self, exchange: &Exchange) -> String {
        exchange.name.clone()
    }

    async fn publish(&self, exchange: &Exchange, message: &Outgoing<'_>) {
        let confirmation =
            publish(&self.channel, &exchange.name, ROUTING_KEY, message.payload, properties(message)).await;
        assert_eq!(confirmation.expect("published"), Confirmation::Ack(None));
    }

    async fn publish_by_client(&self, exchange: &Exchange, message: &Outgoing<'_>) -> Vec<(&'static str, Value)> {
        let traced = TracedChannel::new(self.channel.clone()).with_handler(&PUBLISH);
        let confirmation = traced
            .basic_publish(
                &exchange.name,
                ROUTING_KEY,
                BasicPublishOptions::default(),
                message.payload,
                properties(message),
            )
            .await
            .expect("published");
        assert_eq!(confirmation, Confirmation::Ack(None));
        Vec::new() // a publisher confirm adds nothing to the span
    }

    async fn publish_raw(&self, exchange: &Exchange, message: &Outgoing<'_>) {
        self.publish_plain(exchange, message, properties(message)).await;
    }

    async fn publish_raw_at(&self, exchange: &Exchange, message: &Outgoing<'_>, at: std::time::SystemTime) -> i64 {
        let seconds = at.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
        self.publish_plain(exchange, message, properties(message).with_timestamp(seconds)).await;
        seconds as i64 * 1000
    }

    async fn receive(&self, exchange: &Exchange, subscriber: usize) -> Delivery {
        crate::next_delivery(&exchange.channels[subscriber], &exchange.queues[subscriber]).await
    }

    fn id_of(&self, received: &Delivery) -> String {
        id_of(received)
    }

    fn traceparent_of(&self, received: &Delivery) -> Option<Vec<u8>> {
        let headers = received.properties.headers().as_ref()?;
        match headers.inner().get("traceparent")? {
            AMQPValue::LongString(value) => Some(value.as_bytes().to_vec()),
            other => panic!("tracehop writes the traceparent as a long string, not {other:?}"),
        }
    }

    async fn handle(&self, received: &Delivery) -> Result<Handled, String> {
        handle(received, false).await
    }

    async fn handle_capturing(&self, received: &Delivery) -> Result<Handled, String> {
        handle_capturing(received).await
    }

    async fn handle_out_of_stock(&self, received: &Delivery) -> Result<(), OutOfStock> {
        handle_out_of_stock(received).await
    }

    fn handle_panicking(&self, received: &Delivery) {
        handle_panicking(received)
    }

    fn handle_batch(&self, received: &[Delivery]) -> usize {
        handle_batch(received)
    }

    fn link_attributes(&self, received: &Delivery) -> Vec<KeyValue> {
        vec![
            KeyValue::new("messaging.message.id", id_of(received)),
            KeyValue::new("messaging.rabbitmq.message.delivery_tag", received.delivery_tag as i64),
        ]
    }

    async fn handle_failing(&self, received: &Delivery) -> Result<Handled, String> {
        handle(received, true).await
    }

    async fn give_back(&self, exchange: &mut Exchange, received: &Delivery) {
        assert!(!received.redelivered, "a first delivery");
        // The caller settles nothing and goes away: RabbitMQ requeues what its channel left unacknowledged.
        let channel = std::mem::replace(&mut exchange.channels[0], crate::rabbitmq_channel().await);
        channel.close(200, "handler failed".into()).await.expect("channel.close");
    }

    fn assert_redelivery_of(&self, first: &Delivery, again: &Delivery) {
        assert_eq!(id_of(again), id_of(first), "the same message");
        assert_eq!(again.data, first.data, "the same message");
        assert!(again.redelivered, "flagged as redelivered");
    }

    fn redelivery_attributes(&self) -> Attributes {
        vec![(tracehop::REDELIVERED_ATTRIBUTE, Value::Bool(true))]
    }

    async fn handle_by_client(
        &self,
        exchange: &Exchange,
        subscriber: usize,
        receive_spans: bool,
    ) -> Result<Handled, String> {
        let mut consumer = exchange.consumers[subscriber].lock().await;
        if consumer.is_none() {
            let started = exchange.channels[subscriber]
                .basic_consume(
                    exchange.queues[subscriber].as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("basic.consume");
            *consumer = Some(started);
        }
        let consumer = consumer.as_mut().expect("started above");
        let tracing = if receive_spans { RECEIVING } else { ConsumerTracing::new(&HANDLE_AS_MACRO) };
        let mut deliveries = pin!(tracing.stream(consumer));
        let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .expect("a delivery within 10 seconds")
            .expect("the stream goes on")
            .expect("no AMQP error");
        delivery.process_async(|delivery| handle_body(id_of(&delivery), delivery.data, false)).await
    }

    async fn handle_and_settle(&self, _exchange: &Exchange, received: &Delivery) -> Result<(), String> {
        settle_inside(received).await
    }

    fn sent_attributes(&self, message: &Outgoing<'_>) -> Vec<(&'static str, Value)> {
        vec![
            ("messaging.rabbitmq.destination.routing_key", Value::from(ROUTING_KEY)),
            ("messaging.message.id", Value::from(message.id.to_owned())),
            ("messaging.message.conversation_id", Value::from(CONVERSATION)),
        ]
    }

    fn received_attributes(&self, message: &Outgoing<'_>, received: &Delivery) -> Vec<(&'static str, Value)> {
        vec![
            ("messaging.rabbitmq.destination.routing_key", Value::from(ROUTING_KEY)),
            ("messaging.rabbitmq.message.delivery_tag", Value::I64(received.delivery_tag as i64)),
            ("messaging.message.id", Value::from(message.id.to_owned())),
            ("messaging.message.conversation_id", Value::from(CONVERSATION)),
        ]
    }

    fn settle_attributes(&self, message: &Outgoing<'_>, received: &Delivery) -> Vec<(&'static str, Value)> {
        vec![
            ("messaging.message.id", Value::from(message.id.to_owned())),
            ("messaging.rabbitmq.message.delivery_tag", Value::I64(received.delivery_tag as i64)),
        ]
    }
}
