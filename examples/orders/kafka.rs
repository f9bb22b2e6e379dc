//! The pipeline on Kafka: librdkafka's mock cluster, in this process. Each service is a consumer group; each
//! handler gets one message (or, for analytics, a batch) and returns its result, and the loop that received the
//! message settles it: tracehop never commits.

use std::error::Error;
use std::fmt::Display;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

use tracehop::clients::kafka as traced;
use tracehop::{DeadLetter, Republish};

use crate::services::{self, CardDeclined, EventCounts, MalformedOrder, Order, PaymentFailed};

const ORDERS: &str = "orders.created";
const PAYMENTS: &str = "payments.processed";
/// Where the payment service republishes an order whose card was declined, for another attempt; it reads this
/// topic beside `orders.created`.
const ORDER_RETRIES: &str = "orders.retry";
/// Where the payment service gives up on an order, for the support desk.
const ORDER_DEAD_LETTERS: &str = "orders.dead-letter";

/// The order service: the record carries the PRODUCER span's context in its headers.
#[tracehop::traced_producer(attributes(app.order.id = order_id))]
async fn publish_order_created(
    producer: &FutureProducer,
    order_id: &str,
    record: FutureRecord<'_, str, str>,
) -> Result<(), KafkaError> {
    producer.send(record, Duration::from_secs(5)).await.map_err(|(error, _)| error)?;
    Ok(())
}

/// The inventory service: a CONSUMER span continuing the order's trace.
#[tracehop::traced_consumer(group = "inventory-service")]
async fn reserve_inventory(message: &BorrowedMessage<'_>) -> Result<(), MalformedOrder> {
    let order = Order::parse(message.payload().unwrap_or_default())?;
    services::reserve_stock(&order).await;
    tracing::info!(app.order.id = %order.id, items = order.items, "reserved stock");
    Ok(())
}

/// The payment service: publishes `PaymentProcessed` from inside its CONSUMER span, so shipping continues the
/// same trace. A declined card is retried through `orders.retry`, then dead-lettered: from inside the
/// span too, so each retry is a child of the attempt that failed.
#[tracehop::traced_consumer(group = "payment-service")]
async fn charge_payment(
    message: &BorrowedMessage<'_>,
    producer: &FutureProducer,
) -> Result<(), PaymentFailed<KafkaError>> {
    let order = Order::parse(message.payload().unwrap_or_default())?;
    if let Err(declined) = services::charge_payment_gateway(&order).await {
        return Err(retry_or_dead_letter(message, producer, declined).await);
    }
    let payment = services::payment_processed(&order);
    publish_payment_processed(producer, FutureRecord::to(PAYMENTS).key(&order.id).payload(&payment))
        .await
        .map_err(PaymentFailed::NotPublished)
}

/// Another attempt, or, after the last, the dead-letter topic.
async fn retry_or_dead_letter(
    message: &BorrowedMessage<'_>,
    producer: &FutureProducer,
    declined: CardDeclined,
) -> PaymentFailed<KafkaError> {
    let (timeout, republish) = (Duration::from_secs(5), Republish::new());
    if republish.attempt_of(message) < services::PAYMENT_ATTEMPTS {
        match traced::retry(producer, message, ORDER_RETRIES, republish, timeout).await {
            Ok(_) => PaymentFailed::Retried(declined),
            Err((error, _)) => PaymentFailed::NotPublished(error),
        }
    } else {
        let dead_letter = DeadLetter::new(services::CARD_DECLINED);
        match traced::dead_letter(producer, message, ORDER_DEAD_LETTERS, dead_letter, timeout).await {
            Ok(_) => PaymentFailed::DeadLettered(declined),
            Err((error, _)) => PaymentFailed::NotPublished(error),
        }
    }
}

#[tracehop::traced_producer]
async fn publish_payment_processed(
    producer: &FutureProducer,
    record: FutureRecord<'_, String, String>,
) -> Result<(), KafkaError> {
    producer.send(record, Duration::from_secs(5)).await.map_err(|(error, _)| error)?;
    Ok(())
}

#[tracehop::traced_consumer(group = "shipping-service")]
fn book_shipment(message: &BorrowedMessage<'_>) {
    let order_id = String::from_utf8_lossy(message.key().unwrap_or_default());
    tracing::info!(app.order.id = %order_id, "booked shipment");
}

/// The support desk: reads the orders payment gave up on. Its span continues the order's trace and links the
/// attempt that failed last.
#[tracehop::traced_consumer(group = "support-desk")]
fn open_support_ticket(message: &BorrowedMessage<'_>) {
    let order_id = String::from_utf8_lossy(message.key().unwrap_or_default());
    tracing::warn!(app.order.id = %order_id, "opened a ticket for a payment given up on");
}

/// The analytics service: one span for the whole batch, from both topics, linked to every message's producer.
#[tracehop::traced_consumer(group = "analytics-service")]
fn count_events(messages: &[OwnedMessage]) -> EventCounts {
    let counts = EventCounts {
        orders: messages.iter().filter(|message| message.topic() == ORDERS).count(),
        payments: messages.iter().filter(|message| message.topic() == PAYMENTS).count(),
    };
    tracing::info!(orders = counts.orders, payments = counts.payments, "counted a batch");
    counts
}

/// The order-history service, rebuilt by replaying the orders from the start of the topic: each replayed event
/// gets a new trace linked to the original, not a late child of a trace that ended long ago.
#[tracehop::traced_consumer(group = "order-history", replay)]
fn record_order_history(message: &BorrowedMessage<'_>, history: &mut Vec<String>) {
    history.push(String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned());
}

pub async fn run() -> Result<(), Box<dyn Error>> {
    let broker = MockCluster::new(1)?;
    broker.create_topic(ORDERS, 1, 1)?;
    broker.create_topic(PAYMENTS, 1, 1)?;
    broker.create_topic(ORDER_RETRIES, 1, 1)?;
    broker.create_topic(ORDER_DEAD_LETTERS, 1, 1)?;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", broker.bootstrap_servers()).create()?;
    let inventory = subscribe(&broker, "inventory-service", &[ORDERS])?;
    let payment = subscribe(&broker, "payment-service", &[ORDERS, ORDER_RETRIES])?;
    let shipping = subscribe(&broker, "shipping-service", &[PAYMENTS])?;
    let support = subscribe(&broker, "support-desk", &[ORDER_DEAD_LETTERS])?;
    let analytics = subscribe(&broker, "analytics-service", &[ORDERS, PAYMENTS])?;
    // The order-history service reads later, from the start of the topic; it subscribes now only so that its
    // group has joined by then, instead of making the example wait for it.
    let history_reader = subscribe(&broker, "order-history", &[ORDERS])?;

    for (order_id, order) in services::SAMPLE_ORDERS {
        publish_order_created(&producer, order_id, FutureRecord::to(ORDERS).key(order_id).payload(order)).await?;
    }
    for _ in services::SAMPLE_ORDERS {
        let message = receive(&inventory).await?;
        settle("inventory-service", &inventory, &message, reserve_inventory(&message).await)?;
    }
    let (mut paid, mut dead_letters) = (0, 0);
    let mut deliveries = services::SAMPLE_ORDERS.len();
    while deliveries > 0 {
        let message = receive(&payment).await?;
        let charged = charge_payment(&message, &producer).await;
        deliveries -= 1;
        match &charged {
            Ok(()) => paid += 1,
            Err(PaymentFailed::Retried(_)) => deliveries += 1,
            Err(PaymentFailed::DeadLettered(_)) => dead_letters += 1,
            Err(_) => {}
        }
        // A retried or dead-lettered order is committed too: its next attempt is its republished copy.
        settle("payment-service", &payment, &message, charged)?;
    }
    for _ in 0..dead_letters {
        let message = receive(&support).await?;
        open_support_ticket(&message);
        settle("support-desk", &support, &message, Ok::<(), &str>(()))?;
    }
    for _ in 0..paid {
        let message = receive(&shipping).await?;
        book_shipment(&message);
        settle("shipping-service", &shipping, &message, Ok::<(), &str>(()))?;
    }

    let mut batch = Vec::new();
    while batch.len() < services::SAMPLE_ORDERS.len() + paid {
        batch.push(receive(&analytics).await?.detach());
    }
    let counts = count_events(&batch);
    tracing::info!(orders = counts.orders, payments = counts.payments, "analytics-service stored a batch");
    analytics.commit_consumer_state(CommitMode::Async)?;

    // The replay: a group of its own, reading the topic from its earliest offset.
    let mut history = Vec::new();
    for _ in services::SAMPLE_ORDERS {
        let message = receive(&history_reader).await?;
        record_order_history(&message, &mut history);
        settle("order-history", &history_reader, &message, Ok::<(), &str>(()))?;
    }
    tracing::info!(orders = ?history, "order-history rebuilt");
    Ok(())
}

/// The caller's part: a handled message is committed. So is one whose handler failed, in this example: a malformed
/// order no retry would mend, or a declined one already republished for another attempt or dead-lettered.
fn settle(
    service: &str,
    consumer: &StreamConsumer,
    message: &BorrowedMessage<'_>,
    handled: Result<(), impl Display>,
) -> Result<(), KafkaError> {
    if let Err(error) = handled {
        tracing::warn!(service, topic = message.topic(), offset = message.offset(), %error, "gave up on a message");
    }
    consumer.commit_message(message, CommitMode::Async)
}

fn subscribe(
    broker: &MockCluster<'_, impl rdkafka::ClientContext>,
    group: &str,
    topics: &[&str],
) -> Result<StreamConsumer, KafkaError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(topics)?;
    Ok(consumer)
}

async fn receive(consumer: &StreamConsumer) -> Result<BorrowedMessage<'_>, Box<dyn Error>> {
    Ok(tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??)
}
