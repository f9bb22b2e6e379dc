//! The pipeline on NATS. The events are kept in one JetStream stream of the example's own, `ORDER_EVENTS`
//! (subjects `orders.created` and `payments.processed`; in memory, as they need not outlive the run), and each
//! service reads them through a durable consumer of its own, so each gets every event, kept for it until it acks
//! it:
//! - inventory: a consumer that pushes the orders to a core-NATS queue group of two members; the server gives each
//!   order to one member, so each is handled once. The handler takes the core `Message` the member receives,
//!   whose span still carries the stream, the sequences and the delivery count: tracehop reads them from its
//!   reply subject, JetStream's acknowledgement subject;
//! - payment and shipping: pull consumers of `orders.created` and `payments.processed`;
//! - analytics: a pull consumer of the whole stream, from which it fetches one batch;
//! - order history: a consumer created once the rest has run, delivering every order from the start of the stream
//!   (`DeliverPolicy::All`): the replay.
//!
//! Each handler returns its result and the loop that received the message acks it, or terminates it when the
//! handler failed: tracehop never settles a message.
//!
//! The fan-out, the payment hop, the batch and the replay run as on Kafka and RabbitMQ. Left out, and why: core
//! NATS alone for the events, since a subject keeps nothing (no batch of past events, no replay), which is why
//! they are in a stream; and a dead letter for the malformed order, which the other flavours point to (a Kafka
//! service's own topic, RabbitMQ's dead-letter exchange): JetStream has none, and `+TERM` only ends the
//! redeliveries.

use std::fmt::Display;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, push, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, AckKind, Context};
use async_nats::{Client, HeaderMap, Message};
use futures_util::{Stream, StreamExt as _};

use crate::services::{self, EventCounts, MalformedOrder, Order, PaymentFailed};

const STREAM: &str = "ORDER_EVENTS";
const ORDERS: &str = "orders.created";
const PAYMENTS: &str = "payments.processed";
/// Where the inventory service's consumer pushes the orders, and its queue group listens. Outside the stream's
/// subjects: the stream would otherwise store its own deliveries.
const INVENTORY_DELIVERIES: &str = "deliveries.inventory-service";
const INVENTORY: &str = "inventory-service";
/// The header a NATS publisher names a message by. The stream drops a message whose id it has seen as a
/// duplicate, so each id names one event: an order's is the order's id, its payment's that id and `.paid`.
const MESSAGE_ID: &str = tracehop::nats::MESSAGE_ID_HEADER;
const PAID: &str = ".paid";

/// The order service: the PRODUCER span's context reaches the message's headers, and the span lasts until the
/// stream has stored the order.
#[tracehop::traced_producer(destination = ORDERS, attributes(app.order.id = order_id))]
async fn publish_order_created(
    jetstream: &Context,
    order_id: &str,
    order: &str,
    headers: HeaderMap,
) -> Result<(), PublishError> {
    publish(jetstream, ORDERS, headers, order.to_owned()).await
}

/// The inventory service, whichever member of its queue group received the order.
#[tracehop::traced_consumer(group = "inventory-service")]
async fn reserve_inventory(message: &Message) -> Result<(), MalformedOrder> {
    let order = Order::parse(&message.payload)?;
    services::reserve_stock(&order).await;
    tracing::info!(app.order.id = %order.id, items = order.items, "reserved stock");
    Ok(())
}

#[tracehop::traced_consumer(group = "payment-service")]
async fn charge_payment(message: &jetstream::Message, jetstream: &Context) -> Result<(), PaymentFailed<PublishError>> {
    let order = Order::parse(&message.payload)?;
    services::charge_payment_gateway(&order).await;
    let mut headers = HeaderMap::new();
    headers.insert(MESSAGE_ID, format!("{}{PAID}", order.id));
    publish_payment_processed(jetstream, services::payment_processed(&order), headers)
        .await
        .map_err(PaymentFailed::NotPublished)
}

#[tracehop::traced_producer(destination = PAYMENTS)]
async fn publish_payment_processed(
    jetstream: &Context,
    payment: String,
    headers: HeaderMap,
) -> Result<(), PublishError> {
    publish(jetstream, PAYMENTS, headers, payment).await
}

#[tracehop::traced_consumer(group = "shipping-service")]
fn book_shipment(message: &jetstream::Message) {
    let order_id = message_id(message).strip_suffix(PAID).unwrap_or_default();
    tracing::info!(app.order.id = %order_id, "booked shipment");
}

/// The analytics service: one span for the whole batch, from both subjects, linked to every message's producer.
#[tracehop::traced_consumer(group = "analytics-service")]
fn count_events(messages: &[jetstream::Message]) -> EventCounts {
    let counts = EventCounts {
        orders: messages.iter().filter(|message| message.subject.as_str() == ORDERS).count(),
        payments: messages.iter().filter(|message| message.subject.as_str() == PAYMENTS).count(),
    };
    tracing::info!(orders = counts.orders, payments = counts.payments, "counted a batch");
    counts
}

/// The order-history service, rebuilt by replaying the orders from the start of the stream: each replayed event
/// gets a new trace linked to the original, not a late child of a trace that ended long ago.
#[tracehop::traced_consumer(group = "order-history", replay)]
fn record_order_history(message: &jetstream::Message, history: &mut Vec<String>) {
    history.push(message_id(message).to_owned());
}

pub async fn run(url: &str) -> Result<(), async_nats::Error> {
    let client = async_nats::connect(url).await.map_err(|error| format!("cannot reach NATS at {url}: {error}"))?;
    let jetstream = jetstream::new(client.clone());
    // Made afresh: a stream left by an interrupted run would hand its events to this run's consumers, and drop
    // this run's orders as duplicates of its own (same ids). None there is the usual case, and any other trouble
    // shows in the creation just after.
    let _ = jetstream.delete_stream(STREAM).await;
    let config = stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![ORDERS.to_owned(), PAYMENTS.to_owned()],
        storage: StorageType::Memory,
        ..Default::default()
    };
    let stream = jetstream.create_stream(config).await.map_err(|error| {
        format!("cannot create stream {STREAM} at {url} (JetStream on? `nats-server -js`): {error}")
    })?;
    let ran = pipeline(&client, &jetstream, &stream).await;
    // Its consumers go with it: a server shared with others is left as this run found it.
    let deleted = jetstream.delete_stream(STREAM).await;
    ran?;
    deleted?;
    client.drain().await?;
    Ok(())
}

async fn pipeline(client: &Client, jetstream: &Context, stream: &stream::Stream) -> Result<(), async_nats::Error> {
    let config = push::Config {
        durable_name: Some(INVENTORY.to_owned()),
        deliver_subject: INVENTORY_DELIVERIES.to_owned(),
        deliver_group: Some(INVENTORY.to_owned()),
        filter_subject: ORDERS.to_owned(),
        ..Default::default()
    };
    stream.create_consumer(config).await?;
    // Two members, as two processes of the service would be; the server gives each delivery to one of them.
    let first = client.queue_subscribe(INVENTORY_DELIVERIES, INVENTORY.to_owned()).await?;
    let second = client.queue_subscribe(INVENTORY_DELIVERIES, INVENTORY.to_owned()).await?;
    let mut inventory = futures_util::stream::select(first.map(|order| (1, order)), second.map(|order| (2, order)));
    let payment = durable(stream, "payment-service", Some(ORDERS)).await?;
    let shipping = durable(stream, "shipping-service", Some(PAYMENTS)).await?;
    let analytics = durable(stream, "analytics-service", None).await?;

    for (order_id, order) in services::SAMPLE_ORDERS {
        let mut headers = HeaderMap::new();
        headers.insert(MESSAGE_ID, order_id);
        publish_order_created(jetstream, order_id, order, headers).await?;
    }
    for _ in services::SAMPLE_ORDERS {
        let (member, message) = next(&mut inventory, INVENTORY).await?;
        let handled = reserve_inventory(&message).await;
        tracing::info!(member, order = message_id(&message), "inventory-service member took the order");
        // The member received a core message; acking it is answering JetStream on its reply subject.
        let message = jetstream::Message { message, context: jetstream.clone() };
        settle(INVENTORY, &message, handled).await?;
    }
    let mut orders = payment.messages().await?;
    let mut paid = 0;
    for _ in services::SAMPLE_ORDERS {
        let message = next(&mut orders, "payment-service").await??;
        let charged = charge_payment(&message, jetstream).await;
        paid += usize::from(charged.is_ok());
        settle("payment-service", &message, charged).await?;
    }
    let mut payments = shipping.messages().await?;
    for _ in 0..paid {
        let message = next(&mut payments, "shipping-service").await??;
        book_shipment(&message);
        settle("shipping-service", &message, Ok::<(), &str>(())).await?;
    }

    // One pull request for the whole batch: every event published so far.
    let expected = services::SAMPLE_ORDERS.len() + paid;
    let mut events = analytics.batch().max_messages(expected).expires(Duration::from_secs(10)).messages().await?;
    let mut batch = Vec::new();
    while let Some(message) = events.next().await {
        batch.push(message?);
    }
    if batch.len() != expected {
        return Err(format!("analytics-service fetched {} events, not {expected}", batch.len()).into());
    }
    let counts = count_events(&batch);
    tracing::info!(orders = counts.orders, payments = counts.payments, "analytics-service stored a batch");
    for message in &batch {
        message.ack().await?;
    }

    // The replay: a consumer of its own, made now, reading the orders from the start of the stream.
    let config = pull::Config {
        durable_name: Some("order-history".to_owned()),
        filter_subject: ORDERS.to_owned(),
        deliver_policy: DeliverPolicy::All,
        ..Default::default()
    };
    let mut replayed = stream.create_consumer(config).await?.messages().await?;
    let mut history = Vec::new();
    for _ in services::SAMPLE_ORDERS {
        let message = next(&mut replayed, "order-history").await??;
        record_order_history(&message, &mut history);
        settle("order-history", &message, Ok::<(), &str>(())).await?;
    }
    tracing::info!(orders = ?history, "order-history rebuilt");
    Ok(())
}

async fn publish(
    jetstream: &Context,
    subject: &'static str,
    headers: HeaderMap,
    body: String,
) -> Result<(), PublishError> {
    jetstream.publish_with_headers(subject, headers, body.into()).await?.await?;
    Ok(())
}

/// The caller's part: a handled message is acked; one whose handler failed is terminated (`+TERM`), never to be
/// redelivered: the failures here are malformed orders, which no redelivery would mend.
async fn settle(
    service: &str,
    message: &jetstream::Message,
    handled: Result<(), impl Display>,
) -> Result<(), async_nats::Error> {
    match handled {
        Ok(()) => message.ack().await,
        Err(error) => {
            tracing::warn!(service, subject = message.subject.as_str(), %error, "gave up on a message");
            message.ack_with(AckKind::Term).await
        }
    }
}

/// A durable pull consumer of the stream named `name`, of the events on `subject` (every subject for `None`),
/// from the first.
async fn durable(
    stream: &stream::Stream,
    name: &str,
    subject: Option<&str>,
) -> Result<PullConsumer, async_nats::Error> {
    let config = pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subject: subject.unwrap_or_default().to_owned(),
        ..Default::default()
    };
    Ok(stream.create_consumer(config).await?)
}

/// The next of `messages`, or an error naming `service` when none comes in time.
async fn next<T>(messages: &mut (impl Stream<Item = T> + Unpin), service: &str) -> Result<T, async_nats::Error> {
    match tokio::time::timeout(Duration::from_secs(30), messages.next()).await {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(format!("{service}: its messages ended").into()),
        Err(_) => Err(format!("{service}: nothing arrived within 30 seconds").into()),
    }
}

/// The id the publisher gave the message, the order's.
fn message_id(message: &Message) -> &str {
    message.headers.as_ref().and_then(|headers| headers.get(MESSAGE_ID)).map_or("", |id| id.as_str())
}
