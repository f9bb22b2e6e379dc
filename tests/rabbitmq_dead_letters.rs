//! RabbitMQ's own dead-lettering, against the real RabbitMQ server `scripts/test` starts: for each reason the
//! broker dead-letters for (`expired`, `rejected`, `maxlen`, `delivery_limit`), the dead letter's consumer span
//! records the reason, the queue the message died in and the exchange and routing keys it had been published with
//! (from `x-death`), and — since RabbitMQ keeps a dead letter's headers — continues the original producer's trace:
//! its parent is the producer's span. A message that dies twice also records its first death.
//!
//! Every test publishes to an exchange of its own whose queue dead-letters to a fanout exchange of its own
//! (`<exchange>.dlx`), bound to the dead-letter queue (`<exchange>.dead`).

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt};
use opentelemetry::{Array, StringValue, Value};
use opentelemetry_sdk::trace::SpanData;
use suite::{assert_child_of, attributes, declare_queue, expected, finished_span, next_delivery};

/// The routing key every test publishes with.
const ROUTING_KEY: &str = "order.created";

#[tracehop::traced_producer(system = "rabbitmq", destination = exchange, routing_key = ROUTING_KEY)]
async fn publish(channel: &Channel, exchange: &str, id: &str) -> Result<SpanId, lapin::Error> {
    let properties = tracehop::rabbitmq::trace_properties().with_message_id(id.into());
    channel
        .basic_publish(exchange.into(), ROUTING_KEY.into(), BasicPublishOptions::default(), b"order", properties)
        .await?
        .await?;
    Ok(current_span_id())
}

/// Rejects the delivery without requeue, which dead-letters it.
#[tracehop::traced_consumer(group = "payments")]
async fn refuse(delivery: &Delivery) -> Result<SpanId, String> {
    tracehop::clients::rabbitmq::reject(delivery, BasicRejectOptions { requeue: false })
        .await
        .map_err(|error| error.to_string())?;
    Err("card declined".to_owned())
}

/// Gives the delivery back to its queue (a nack with requeue), as a handler that keeps failing does.
#[tracehop::traced_consumer(group = "payments")]
async fn retry_later(delivery: &Delivery) -> Result<SpanId, String> {
    tracehop::clients::rabbitmq::nack(delivery, BasicNackOptions { requeue: true, ..Default::default() })
        .await
        .map_err(|error| error.to_string())?;
    Err("payment service unavailable".to_owned())
}

/// The handler of the dead-letter queue.
#[tracehop::traced_consumer(group = "dead-letters")]
async fn inspect(delivery: &Delivery) -> SpanId {
    let _ = delivery;
    current_span_id()
}

fn current_span_id() -> SpanId {
    opentelemetry::Context::current().span().span_context().span_id()
}

async fn channel() -> Channel {
    suite::spans();
    let channel = suite::rabbitmq_channel().await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    channel
}

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

fn strings(values: &[&str]) -> Value {
    Value::Array(Array::String(values.iter().map(|value| StringValue::from(value.to_string())).collect()))
}

/// Where a test's messages go: the exchange it publishes to, the queue bound to it that dead-letters, and the
/// dead-letter exchange and queue.
struct DeadLettering {
    exchange: String,
    queue: String,
    dead_letter_exchange: String,
    dead_letters: String,
}

/// The kind of queue a test dead-letters from.
enum QueueType {
    Classic,
    Quorum,
}

/// Declares an auto-deleted exchange of `kind`.
async fn declare_exchange(channel: &Channel, exchange: &str, kind: ExchangeKind) {
    let options = ExchangeDeclareOptions { auto_delete: true, ..ExchangeDeclareOptions::default() };
    channel.exchange_declare(exchange.into(), kind, options, FieldTable::default()).await.expect("exchange.declare");
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, routing_key: &str) {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.bind");
}

/// Declares `queue` with `arguments` and a dead-letter exchange, expired by the broker two minutes after its last
/// use. A quorum queue must be durable and cannot be auto-deleted.
async fn declare_dead_lettering_queue(
    channel: &Channel,
    queue: &str,
    queue_type: QueueType,
    dead_letter_exchange: &str,
    mut arguments: FieldTable,
) {
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(dead_letter_exchange.into()));
    arguments.insert("x-expires".into(), AMQPValue::LongInt(120_000));
    let options = match queue_type {
        QueueType::Classic => QueueDeclareOptions { auto_delete: true, ..Default::default() },
        QueueType::Quorum => {
            arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
            QueueDeclareOptions { durable: true, ..Default::default() }
        }
    };
    channel.queue_declare(queue.into(), options, arguments).await.expect("queue.declare");
}

/// A fresh direct exchange `<prefix>-…` with one queue bound by [`ROUTING_KEY`], of `queue_type` and with
/// `arguments`, that dead-letters to a fanout exchange `<exchange>.dlx` bound to the queue `<exchange>.dead`.
async fn dead_lettering(
    channel: &Channel,
    prefix: &str,
    queue_type: QueueType,
    arguments: FieldTable,
) -> DeadLettering {
    let exchange = suite::unique_topic(prefix);
    let queue = format!("{exchange}.work");
    let dead_letter_exchange = format!("{exchange}.dlx");
    let dead_letters = format!("{exchange}.dead");
    declare_exchange(channel, &dead_letter_exchange, ExchangeKind::Fanout).await;
    declare_queue(channel, &dead_letters).await;
    bind(channel, &dead_letters, &dead_letter_exchange, "").await;
    declare_exchange(channel, &exchange, ExchangeKind::Direct).await;
    declare_dead_lettering_queue(channel, &queue, queue_type, &dead_letter_exchange, arguments).await;
    bind(channel, &queue, &exchange, ROUTING_KEY).await;
    DeadLettering { exchange, queue, dead_letter_exchange, dead_letters }
}

fn arguments(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut arguments = FieldTable::default();
    for (key, value) in pairs {
        arguments.insert((*key).into(), value.clone());
    }
    arguments
}

/// Handles the dead letter of `queues` with [`inspect`], acknowledges it, and returns it with its consumer span.
async fn inspect_dead_letter(channel: &Channel, queues: &DeadLettering) -> (Delivery, SpanData) {
    let dead = next_delivery(channel, &queues.dead_letters).await;
    let span_id = inspect(&dead).await;
    dead.ack(BasicAckOptions::default()).await.expect("acked");
    (dead, finished_span(span_id))
}

/// The attributes every dead letter's consumer span has, whatever the reason: the delivery's own (from the
/// dead-letter exchange, with the routing key the message was published with), then `deaths`.
fn dead_letter_attributes(
    queues: &DeadLettering,
    id: &str,
    dead: &Delivery,
    deaths: &[(&str, Value)],
) -> Vec<(String, Value)> {
    let mut pairs = vec![
        ("messaging.system", text("rabbitmq")),
        ("messaging.operation.type", text("process")),
        ("messaging.operation.name", text("process")),
        ("messaging.destination.name", text(&queues.dead_letter_exchange)),
        ("messaging.consumer.group.name", text("dead-letters")),
        ("code.function.name", text("rabbitmq_dead_letters::inspect")),
        ("messaging.rabbitmq.destination.routing_key", text(ROUTING_KEY)),
        ("messaging.rabbitmq.message.delivery_tag", Value::I64(dead.delivery_tag as i64)),
        ("messaging.message.id", text(id)),
        ("messaging.message.body.size", Value::I64(5)),
    ];
    pairs.extend(deaths.iter().cloned());
    expected(&pairs)
}

/// The death attributes of a message that died once in `queue` for `reason`, published to `exchange`.
fn one_death(reason: &str, queue: &str, exchange: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("tracehop.message.death_count", Value::I64(1)),
        ("tracehop.rabbitmq.death.reason", text(reason)),
        ("tracehop.rabbitmq.death.queue", text(queue)),
        ("tracehop.rabbitmq.death.exchange", text(exchange)),
        ("tracehop.rabbitmq.death.routing_keys", strings(&[ROUTING_KEY])),
    ]
}

/// Asserts that the dead letter's consumer span continues the trace of the producer span `producer`: RabbitMQ kept
/// the message's trace headers when it dead-lettered it.
fn assert_continues_the_producer_s_trace(consumer: &SpanData, producer: SpanId, queues: &DeadLettering) {
    let producer = finished_span(producer);
    assert_eq!(producer.span_kind, SpanKind::Producer);
    assert_eq!(producer.name, format!("send {}", queues.exchange));
    assert_eq!(consumer.span_kind, SpanKind::Consumer);
    assert_eq!(consumer.name, format!("process {}", queues.dead_letter_exchange));
    assert_child_of(consumer, &producer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_message_expired_by_the_queue_s_ttl_is_dead_lettered_as_expired_in_its_producer_s_trace() {
    let channel = channel().await;
    let ttl = arguments(&[("x-message-ttl", AMQPValue::LongInt(50))]);
    let queues = dead_lettering(&channel, "ttl", QueueType::Classic, ttl).await;
    let producer = publish(&channel, &queues.exchange, "m-expired").await.expect("published");

    // Nobody consumes the queue: the message expires there.
    let (dead, consumer) = inspect_dead_letter(&channel, &queues).await;

    assert_eq!(
        attributes(&consumer),
        dead_letter_attributes(&queues, "m-expired", &dead, &one_death("expired", &queues.queue, &queues.exchange))
    );
    assert_continues_the_producer_s_trace(&consumer, producer, &queues);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_message_rejected_without_requeue_is_dead_lettered_as_rejected_in_its_producer_s_trace() {
    let channel = channel().await;
    let queues = dead_lettering(&channel, "rejected", QueueType::Classic, FieldTable::default()).await;
    let producer = publish(&channel, &queues.exchange, "m-rejected").await.expect("published");

    let delivery = next_delivery(&channel, &queues.queue).await;
    assert_eq!(refuse(&delivery).await, Err("card declined".to_owned()));
    let (dead, consumer) = inspect_dead_letter(&channel, &queues).await;

    assert_eq!(
        attributes(&consumer),
        dead_letter_attributes(&queues, "m-rejected", &dead, &one_death("rejected", &queues.queue, &queues.exchange))
    );
    assert_continues_the_producer_s_trace(&consumer, producer, &queues);
    // The failed processing is the dead letter's sibling, not its parent: RabbitMQ republished the message as it
    // was published.
    let failed = suite::finished()
        .into_iter()
        .find(|span| span.name == format!("process {}", queues.exchange))
        .expect("the failed processing's span");
    assert_eq!(failed.status, Status::error("card declined"));
    assert_eq!(failed.parent_span_id, consumer.parent_span_id);
    assert_eq!(failed.span_context.trace_id(), consumer.span_context.trace_id());
    assert_eq!(suite::attribute(&failed, "tracehop.rabbitmq.death.reason"), None, "it had not died yet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn the_oldest_message_of_a_full_queue_is_dead_lettered_as_maxlen_in_its_own_producer_s_trace() {
    let channel = channel().await;
    let one_message = arguments(&[("x-max-length", AMQPValue::LongInt(1))]);
    let queues = dead_lettering(&channel, "maxlen", QueueType::Classic, one_message).await;
    let oldest = publish(&channel, &queues.exchange, "m-oldest").await.expect("published");
    let newest = publish(&channel, &queues.exchange, "m-newest").await.expect("published");

    // The second message pushed the first out of the head of the queue (the default `drop-head` overflow).
    let (dead, consumer) = inspect_dead_letter(&channel, &queues).await;
    let kept = next_delivery(&channel, &queues.queue).await;
    kept.ack(BasicAckOptions::default()).await.expect("acked");

    assert_eq!(kept.properties.message_id().as_ref().map(|id| id.as_str()), Some("m-newest"));
    assert_eq!(
        attributes(&consumer),
        dead_letter_attributes(&queues, "m-oldest", &dead, &one_death("maxlen", &queues.queue, &queues.exchange))
    );
    assert_continues_the_producer_s_trace(&consumer, oldest, &queues);
    assert_ne!(consumer.parent_span_id, newest);
}

/// The next delivery of either queue, and whether it came from the second; waits up to 10 seconds.
async fn next_of_either(channel: &Channel, first: &str, second: &str) -> (Delivery, bool) {
    for _ in 0..500 {
        for (queue, is_second) in [(first, false), (second, true)] {
            let got = channel.basic_get(queue.into(), BasicGetOptions::default()).await.expect("basic.get");
            if let Some(message) = got {
                return (message.delivery, is_second);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no message on {first} or {second} within 10 seconds");
}

/// A quorum queue's `x-delivery-limit`: RabbitMQ dead-letters a message returned more often than the limit. Quorum
/// queues have counted deliveries since RabbitMQ 3.8; Debian 12's 3.10.8 dead-letters with reason `delivery_limit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_message_returned_more_often_than_a_quorum_queue_s_limit_is_dead_lettered_as_delivery_limit() {
    let channel = channel().await;
    let limit = arguments(&[("x-delivery-limit", AMQPValue::LongInt(2))]);
    let queues = dead_lettering(&channel, "delivery-limit", QueueType::Quorum, limit).await;
    let producer = publish(&channel, &queues.exchange, "m-poison").await.expect("published");

    let mut attempts = Vec::new();
    let dead = loop {
        let (delivery, dead_lettered) = next_of_either(&channel, &queues.queue, &queues.dead_letters).await;
        if dead_lettered {
            break delivery;
        }
        attempts.push(retry_later(&delivery).await);
        assert!(attempts.len() <= 10, "never dead-lettered: {attempts:?}");
    };
    let span_id = inspect(&dead).await;
    dead.ack(BasicAckOptions::default()).await.expect("acked");
    let consumer = finished_span(span_id);

    assert_eq!(attempts.len(), 3, "the first delivery and the two the limit allows");
    assert_eq!(
        attributes(&consumer),
        dead_letter_attributes(
            &queues,
            "m-poison",
            &dead,
            &one_death("delivery_limit", &queues.queue, &queues.exchange)
        )
    );
    assert_continues_the_producer_s_trace(&consumer, producer, &queues);
}

/// A message rejected from its queue into a parking queue with a TTL, where it expires into the dead-letter queue:
/// its last death is `expired` in the parking queue, its first `rejected` in the work queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_message_that_died_twice_records_its_last_death_and_its_first() {
    let channel = channel().await;
    let final_queues = dead_lettering(&channel, "twice", QueueType::Classic, FieldTable::default()).await;
    // The work queue dead-letters to a parking exchange instead of `<exchange>.dlx`.
    let parking_exchange = format!("{}.parking-dlx", final_queues.exchange);
    let parking = format!("{}.parking", final_queues.exchange);
    declare_exchange(&channel, &parking_exchange, ExchangeKind::Fanout).await;
    let ttl = arguments(&[("x-message-ttl", AMQPValue::LongInt(50))]);
    declare_dead_lettering_queue(&channel, &parking, QueueType::Classic, &final_queues.dead_letter_exchange, ttl).await;
    bind(&channel, &parking, &parking_exchange, "").await;
    let work = format!("{}.work-parked", final_queues.exchange);
    declare_dead_lettering_queue(&channel, &work, QueueType::Classic, &parking_exchange, FieldTable::default()).await;
    bind(&channel, &work, &final_queues.exchange, ROUTING_KEY).await;
    let producer = publish(&channel, &final_queues.exchange, "m-twice").await.expect("published");

    // Both `<exchange>.work` and the work queue here got the message: the first is left alone.
    let delivery = next_delivery(&channel, &work).await;
    assert_eq!(refuse(&delivery).await, Err("card declined".to_owned()));
    let (dead, consumer) = inspect_dead_letter(&channel, &final_queues).await;

    assert_eq!(
        attributes(&consumer),
        dead_letter_attributes(
            &final_queues,
            "m-twice",
            &dead,
            &[
                ("tracehop.message.death_count", Value::I64(2)),
                ("tracehop.rabbitmq.death.reason", text("expired")),
                ("tracehop.rabbitmq.death.queue", text(&parking)),
                ("tracehop.rabbitmq.death.exchange", text(&parking_exchange)),
                ("tracehop.rabbitmq.death.routing_keys", strings(&[ROUTING_KEY])),
                ("tracehop.rabbitmq.first_death.reason", text("rejected")),
                ("tracehop.rabbitmq.first_death.queue", text(&work)),
                ("tracehop.rabbitmq.first_death.exchange", text(&final_queues.exchange)),
            ]
        )
    );
    assert_continues_the_producer_s_trace(&consumer, producer, &final_queues);
}

/// The attribute names are the crate's public constants.
#[test]
fn the_death_attributes_are_named_by_public_constants() {
    assert_eq!(
        [
            tracehop::DEATH_COUNT_ATTRIBUTE,
            tracehop::DEATH_REASON_ATTRIBUTE,
            tracehop::DEATH_QUEUE_ATTRIBUTE,
            tracehop::DEATH_EXCHANGE_ATTRIBUTE,
            tracehop::DEATH_ROUTING_KEYS_ATTRIBUTE,
            tracehop::FIRST_DEATH_REASON_ATTRIBUTE,
            tracehop::FIRST_DEATH_QUEUE_ATTRIBUTE,
            tracehop::FIRST_DEATH_EXCHANGE_ATTRIBUTE,
        ],
        [
            "tracehop.message.death_count",
            "tracehop.rabbitmq.death.reason",
            "tracehop.rabbitmq.death.queue",
            "tracehop.rabbitmq.death.exchange",
            "tracehop.rabbitmq.death.routing_keys",
            "tracehop.rabbitmq.first_death.reason",
            "tracehop.rabbitmq.first_death.queue",
            "tracehop.rabbitmq.first_death.exchange",
        ]
    );
}
