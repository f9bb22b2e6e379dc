//! The same pipeline over RabbitMQ: one exchange per event (`orders`, `payments`), one queue per service bound to
//! what it handles, and an `order-archive` queue that keeps every order for the replay. Each handler returns its
//! result and the loop that fetched the delivery acks or rejects it: tracehop never settles a message.

use std::error::Error;
use std::fmt::Display;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use tracehop::clients::rabbitmq as traced;
use tracehop::{DeadLetter, Republish};

use crate::services::{self, CardDeclined, EventCounts, MalformedOrder, Order, PaymentFailed};

const ORDERS: &str = "orders";
const ORDER_CREATED: &str = "order.created";
const PAYMENTS: &str = "payments";
const PAYMENT_PROCESSED: &str = "payment.processed";
/// Where the payment service republishes an order whose card was declined, for another attempt: its queue is bound
/// to it beside `orders`.
const ORDER_RETRIES: &str = "orders.retry";
/// Where the payment service gives up on an order, for the support desk.
const ORDER_DEAD_LETTERS: &str = "orders.dead-letter";

/// The order service: the PRODUCER span's context reaches the message's AMQP headers through `properties`.
#[tracehop::traced_producer(destination = ORDERS, routing_key = ORDER_CREATED, attributes(app.order.id = order_id))]
async fn publish_order_created(
    channel: &Channel,
    order_id: &str,
    order: &[u8],
    properties: BasicProperties,
) -> Result<(), lapin::Error> {
    publish(channel, ORDERS, ORDER_CREATED, order, properties).await
}

#[tracehop::traced_consumer(group = "inventory-service")]
async fn reserve_inventory(delivery: &Delivery) -> Result<(), MalformedOrder> {
    let order = Order::parse(&delivery.data)?;
    services::reserve_stock(&order).await;
    tracing::info!(app.order.id = %order.id, items = order.items, "reserved stock");
    Ok(())
}

/// The payment service. A declined card is retried through the `orders.retry` exchange, then dead-lettered, from
/// inside its span, so each retry is a child of the attempt that failed.
#[tracehop::traced_consumer(group = "payment-service")]
async fn charge_payment(delivery: &Delivery, channel: &Channel) -> Result<(), PaymentFailed<lapin::Error>> {
    let order = Order::parse(&delivery.data)?;
    if let Err(declined) = services::charge_payment_gateway(&order).await {
        return Err(retry_or_dead_letter(delivery, channel, declined).await);
    }
    let payment = services::payment_processed(&order);
    let properties = BasicProperties::default().with_message_id(order.id.as_str().into());
    publish_payment_processed(channel, payment.as_bytes(), properties).await.map_err(PaymentFailed::NotPublished)
}

/// Another attempt, or, after the last, the dead-letter exchange. The channel has publisher confirms on: a
/// republish the broker refused is an error, recorded on its span.
async fn retry_or_dead_letter(
    delivery: &Delivery,
    channel: &Channel,
    declined: CardDeclined,
) -> PaymentFailed<lapin::Error> {
    let republish = Republish::new();
    let (republished, outcome) = if republish.attempt_of(delivery) < services::PAYMENT_ATTEMPTS {
        let retried = traced::retry(channel, delivery, ORDER_RETRIES, ORDER_CREATED, republish).await;
        (retried, PaymentFailed::Retried(declined))
    } else {
        let dead_letter = DeadLetter::new(services::CARD_DECLINED);
        let published = traced::dead_letter(channel, delivery, ORDER_DEAD_LETTERS, ORDER_CREATED, dead_letter).await;
        (published, PaymentFailed::DeadLettered(declined))
    };
    match republished {
        Ok(confirmation) if confirmation.is_ack() => outcome,
        Ok(_) => PaymentFailed::Refused,
        Err(error) => PaymentFailed::NotPublished(error),
    }
}

#[tracehop::traced_producer(destination = PAYMENTS, routing_key = PAYMENT_PROCESSED)]
async fn publish_payment_processed(
    channel: &Channel,
    payment: &[u8],
    properties: BasicProperties,
) -> Result<(), lapin::Error> {
    publish(channel, PAYMENTS, PAYMENT_PROCESSED, payment, properties).await
}

#[tracehop::traced_consumer(group = "shipping-service")]
fn book_shipment(delivery: &Delivery) {
    let order_id = delivery.properties.message_id().as_ref().map(ShortString::as_str).unwrap_or_default();
    tracing::info!(app.order.id = %order_id, "booked shipment");
}

/// The support desk: reads the orders payment gave up on. Its span continues the order's trace and links the
/// attempt that failed last.
#[tracehop::traced_consumer(group = "support-desk")]
fn open_support_ticket(delivery: &Delivery) {
    let order_id = delivery.properties.message_id().as_ref().map(ShortString::as_str).unwrap_or_default();
    tracing::warn!(app.order.id = %order_id, "opened a ticket for a payment given up on");
}

/// The analytics service: one span for the whole batch, from both exchanges, linked to every message's producer.
#[tracehop::traced_consumer(group = "analytics-service")]
fn count_events(deliveries: &[Delivery]) -> EventCounts {
    let counts = EventCounts {
        orders: deliveries.iter().filter(|delivery| delivery.exchange.as_str() == ORDERS).count(),
        payments: deliveries.iter().filter(|delivery| delivery.exchange.as_str() == PAYMENTS).count(),
    };
    tracing::info!(orders = counts.orders, payments = counts.payments, "counted a batch");
    counts
}

/// The order-history service, rebuilt by replaying the archived orders: each replayed event gets a new trace
/// linked to the original, not a late child of a trace that ended long ago.
#[tracehop::traced_consumer(group = "order-history", replay)]
fn record_order_history(delivery: &Delivery, history: &mut Vec<String>) {
    let order_id = delivery.properties.message_id().as_ref().map(ShortString::as_str).unwrap_or_default();
    history.push(order_id.to_owned());
}

pub async fn run(url: &str) -> Result<(), Box<dyn Error>> {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|error| format!("cannot reach RabbitMQ at {url}: {error}"))?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    for exchange in [ORDERS, PAYMENTS, ORDER_RETRIES, ORDER_DEAD_LETTERS] {
        let options = ExchangeDeclareOptions::default();
        channel.exchange_declare(exchange.into(), ExchangeKind::Direct, options, FieldTable::default()).await?;
    }
    let inventory = queue(&channel, &[(ORDERS, ORDER_CREATED)]).await?;
    let payment = queue(&channel, &[(ORDERS, ORDER_CREATED), (ORDER_RETRIES, ORDER_CREATED)]).await?;
    let support = queue(&channel, &[(ORDER_DEAD_LETTERS, ORDER_CREATED)]).await?;
    let shipping = queue(&channel, &[(PAYMENTS, PAYMENT_PROCESSED)]).await?;
    let analytics = queue(&channel, &[(ORDERS, ORDER_CREATED), (PAYMENTS, PAYMENT_PROCESSED)]).await?;
    let order_archive = queue(&channel, &[(ORDERS, ORDER_CREATED)]).await?;

    for (order_id, order) in services::SAMPLE_ORDERS {
        let published_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let properties = BasicProperties::default().with_message_id(order_id.into()).with_timestamp(published_at);
        publish_order_created(&channel, order_id, order.as_bytes(), properties).await?;
    }
    for _ in services::SAMPLE_ORDERS {
        let delivery = fetch(&channel, &inventory).await?;
        settle("inventory-service", &delivery, reserve_inventory(&delivery).await).await?;
    }
    let (mut paid, mut dead_letters) = (0, 0);
    let mut deliveries = services::SAMPLE_ORDERS.len();
    while deliveries > 0 {
        let delivery = fetch(&channel, &payment).await?;
        let charged = charge_payment(&delivery, &channel).await;
        deliveries -= 1;
        match &charged {
            Ok(()) => paid += 1,
            Err(PaymentFailed::Retried(_)) => deliveries += 1,
            Err(PaymentFailed::DeadLettered(_)) => dead_letters += 1,
            Err(_) => {}
        }
        settle("payment-service", &delivery, charged).await?;
    }
    for _ in 0..dead_letters {
        let delivery = fetch(&channel, &support).await?;
        open_support_ticket(&delivery);
        settle("support-desk", &delivery, Ok::<(), &str>(())).await?;
    }
    for _ in 0..paid {
        let delivery = fetch(&channel, &shipping).await?;
        book_shipment(&delivery);
        settle("shipping-service", &delivery, Ok::<(), &str>(())).await?;
    }

    let mut batch = Vec::new();
    while batch.len() < services::SAMPLE_ORDERS.len() + paid {
        batch.push(fetch(&channel, &analytics).await?);
    }
    let counts = count_events(&batch);
    tracing::info!(orders = counts.orders, payments = counts.payments, "analytics-service stored a batch");
    for delivery in &batch {
        delivery.ack(BasicAckOptions::default()).await?;
    }

    let mut history = Vec::new();
    for _ in services::SAMPLE_ORDERS {
        let delivery = fetch(&channel, &order_archive).await?;
        record_order_history(&delivery, &mut history);
        settle("order-history", &delivery, Ok::<(), &str>(())).await?;
    }
    tracing::info!(orders = ?history, "order-history rebuilt");
    connection.close(0, "done".into()).await?;
    Ok(())
}

async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), lapin::Error> {
    let options = BasicPublishOptions::default();
    channel.basic_publish(exchange.into(), routing_key.into(), options, body, properties).await?.await?;
    Ok(())
}

/// The caller's part: a handled delivery is acked; one whose handler failed is rejected without requeueing (the
/// failures here are malformed orders, which no redelivery would mend, and declined ones already republished for
/// another attempt or dead-lettered).
async fn settle(service: &str, delivery: &Delivery, handled: Result<(), impl Display>) -> Result<(), lapin::Error> {
    match handled {
        Ok(()) => delivery.ack(BasicAckOptions::default()).await?,
        Err(error) => {
            tracing::warn!(service, exchange = delivery.exchange.as_str(), %error, "gave up on a message");
            delivery.reject(BasicRejectOptions { requeue: false }).await?
        }
    };
    Ok(())
}

/// A queue of this connection's own, bound to each `(exchange, routing key)`.
async fn queue(channel: &Channel, bindings: &[(&str, &str)]) -> Result<ShortString, lapin::Error> {
    let options = QueueDeclareOptions { exclusive: true, ..QueueDeclareOptions::default() };
    let queue = channel.queue_declare("".into(), options, FieldTable::default()).await?.name().clone();
    for (exchange, routing_key) in bindings {
        let options = QueueBindOptions::default();
        channel
            .queue_bind(queue.clone(), (*exchange).into(), (*routing_key).into(), options, FieldTable::default())
            .await?;
    }
    Ok(queue)
}

async fn fetch(channel: &Channel, queue: &ShortString) -> Result<Delivery, Box<dyn Error>> {
    for _ in 0..250 {
        if let Some(message) = channel.basic_get(queue.clone(), BasicGetOptions::default()).await? {
            return Ok(message.delivery);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("nothing arrived on queue {queue} within 5 seconds").into())
}
