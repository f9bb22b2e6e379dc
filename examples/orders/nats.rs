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
//!   (`DeliverPolicy::All`): the replay;
//! - payment retries an order whose card was declined through a second stream, `ORDER_RETRIES` (subjects
//!   `retries.orders.created` and `dead-letters.orders.created`), read by a consumer of its own, then dead-letters
//!   it there for the support desk's consumer.
//!
//! Each handler returns its result and the loop that received the message acks it, or terminates it when the
//! handler failed: tracehop never settles a message.
//!
//! The fan-out, the payment hop, the retries and the dead letter, the batch and the replay run as on Kafka and
//! RabbitMQ. Left out, and why: core NATS alone for the events, since a subject keeps nothing (no batch of past
//! events, no replay), which is why they are in a stream.

use std::fmt::Display;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, push, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, AckKind, Context};
use async_nats::{Client, HeaderMap, Message};
use futures_util::{Stream, StreamExt as _};

use tracehop::clients::nats as traced;
use tracehop::{DeadLetter, Republish};

use crate::services::{self, CardDeclined, EventCounts, MalformedOrder, Order, PaymentFailed};

const STREAM: &str = "ORDER_EVENTS";
const ORDERS: &str = "orders.created";
const PAYMENTS: &str = "payments.processed";
/// The stream of the orders payment retries or gives up on: a stream of its own, so that the consumers of
/// `ORDER_EVENTS` (analytics reads all of it) see only the events.
const RETRY_STREAM: &str = "ORDER_RETRIES";
const ORDER_RETRIES: &str = "retries.orders.created";
const ORDER_DEAD_LETTERS: &str = "dead-letters.orders.created";
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

/// The payment service, for an order or a retry of one. A declined card is retried, then dead-lettered, from
/// inside its span, so each retry is a child of the attempt that failed.
#[tracehop::traced_consumer(group = "payment-service")]
async fn charge_payment(message: &jetstream::Message, jetstream: &Context) -> Result<(), PaymentFailed<PublishError>> {
    let order = Order::parse(&message.payload)?;
    if let Err(declined) = services::charge_payment_gateway(&order).await {
        return Err(retry_or_dead_letter(message, jetstream, declined).await);
    }
    let mut headers = HeaderMap::new();
    headers.insert(MESSAGE_ID, format!("{}{PAID}", order.id));
    publish_payment_processed(jetstream, services::payment_processed(&order), headers)
        .await
        .map_err(PaymentFailed::NotPublished)
}

/// Another attempt, or, after the last, the dead-letter subject; each waits for the stream to store it.
async fn retry_or_dead_letter(
    message: &jetstream::Message,
    jetstream: &Context,
    declined: CardDeclined,
) -> PaymentFailed<PublishError> {
    let republish = Republish::new();
    if republish.attempt_of(message) < services::PAYMENT_ATTEMPTS {
        match traced::retry_jetstream(jetstream, message, ORDER_RETRIES, republish).await {
            Ok(_) => PaymentFailed::Retried(declined),
            Err(error) => PaymentFailed::NotPublished(error),
        }
    } else {
        let dead_letter = DeadLetter::new(services::CARD_DECLINED);
        match traced::dead_letter_jetstream(jetstream, message, ORDER_DEAD_LETTERS, dead_letter).await {
            Ok(_) => PaymentFailed::DeadLettered(declined),
            Err(error) => PaymentFailed::NotPublished(error),
        }
    }
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

/// The support desk: reads the orders payment gave up on. Its span continues the order's trace and links the
/// attempt that failed last.
#[tracehop::traced_consumer(group = "support-desk")]
fn open_support_ticket(message: &jetstream::Message) {
    tracing::warn!(app.order.id = %message_id(message), "opened a ticket for a payment given up on");
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
    let mut streams = Vec::new();
    for (name, subjects) in [(STREAM, [ORDERS, PAYMENTS]), (RETRY_STREAM, [ORDER_RETRIES, ORDER_DEAD_LETTERS])] {
        let _ = jetstream.delete_stream(name).await;
        let config = stream::Config {
            name: name.to_owned(),
            subjects: subjects.map(str::to_owned).to_vec(),
            storage: StorageType::Memory,
            ..Default::default()
        };
        streams.push(jetstream.create_stream(config).await.map_err(|error| {
            format!("cannot create stream {name} at {url} (JetStream on? `nats-server -js`): {error}")
        })?);
    }
    let ran = pipeline(&client, &jetstream, &streams[0], &streams[1]).await;
    // Their consumers go with them: a server shared with others is left as this run found it.
    let deleted = (jetstream.delete_stream(STREAM).await, jetstream.delete_stream(RETRY_STREAM).await);
    ran?;
    deleted.0?;
    deleted.1?;
    client.drain().await?;
    Ok(())
}

async fn pipeline(
    client: &Client,
    jetstream: &Context,
    stream: &stream::Stream,
    retry_stream: &stream::Stream,
) -> Result<(), async_nats::Error> {
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
    let payment_retries = durable(retry_stream, "payment-service-retries", Some(ORDER_RETRIES)).await?;
    let support = durable(retry_stream, "support-desk", Some(ORDER_DEAD_LETTERS)).await?;
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
    let mut retries = payment_retries.messages().await?;
    let (mut paid, mut retried, mut dead_letters) = (0, 0, 0);
    for attempt in 0.. {
        let message = if attempt < services::SAMPLE_ORDERS.len() {
            next(&mut orders, "payment-service").await??
        } else if retried > 0 {
            retried -= 1;
            next(&mut retries, "payment-service").await??
        } else {
            break;
        };
        let charged = charge_payment(&message, jetstream).await;
        match &charged {
            Ok(()) => paid += 1,
            Err(PaymentFailed::Retried(_)) => retried += 1,
            Err(PaymentFailed::DeadLettered(_)) => dead_letters += 1,
            Err(_) => {}
        }
        settle("payment-service", &message, charged).await?;
    }
    let mut given_up = support.messages().await?;
    for _ in 0..dead_letters {
        let message = next(&mut given_up, "support-desk").await??;
        open_support_ticket(&message);
        settle("support-desk", &message, Ok::<(), &str>(())).await?;
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
/// redelivered: the failures here are malformed orders, which no redelivery would mend, and declined ones already
/// republished for another attempt or dead-lettered.
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
