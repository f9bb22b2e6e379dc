//! What the services do with an event, whichever broker carried it. The traced handlers in `kafka.rs`,
//! `rabbitmq.rs` and `nats.rs` are thin: they read the message and call these, so the spans they get come from
//! tracehop, and the spans and events of the work itself from `tracing`.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use tracing::Instrument as _;

/// `OrderCreated`, as the order service writes it.
#[derive(Debug)]
pub struct Order {
    pub id: String,
    pub items: u64,
    /// Whether the customer's card is one the payment gateway declines, every time it is asked.
    pub card_declined: bool,
}

/// An `OrderCreated` body no service can act on. Retrying cannot help, so the caller settles such a message as
/// done (Kafka: commits past it; RabbitMQ: rejects it without requeueing; NATS: terminates it).
#[derive(Debug)]
pub enum MalformedOrder {
    NotJson(serde_json::Error),
    Missing(&'static str),
}

impl fmt::Display for MalformedOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson(error) => write!(f, "malformed order: {error}"),
            Self::Missing(field) => write!(f, "malformed order: no `{field}`"),
        }
    }
}

impl Error for MalformedOrder {}

impl Order {
    pub fn parse(body: &[u8]) -> Result<Self, MalformedOrder> {
        let order: serde_json::Value = serde_json::from_slice(body).map_err(MalformedOrder::NotJson)?;
        Ok(Self {
            id: order["id"].as_str().ok_or(MalformedOrder::Missing("id"))?.to_owned(),
            items: order["items"].as_u64().ok_or(MalformedOrder::Missing("items"))?,
            card_declined: order["card"] == "declined",
        })
    }
}

/// The orders the order service publishes: one the other services can handle, one a buggy client cut short, whose
/// handlers fail, and one whose card the payment gateway declines: payment retries it twice, then dead-letters it.
pub const SAMPLE_ORDERS: [(&str, &str); 3] = [
    ("ord-1001", r#"{"id":"ord-1001","items":2}"#),
    ("ord-1002", r#"{"id":"ord-1002","items":"#),
    ("ord-1003", r#"{"id":"ord-1003","items":1,"card":"declined"}"#),
];

/// How many times the payment service tries an order before it gives up and dead-letters it: the first delivery
/// and two retries.
pub const PAYMENT_ATTEMPTS: i64 = 3;

/// The inventory database. `#[tracing::instrument]` makes the call a span, which `tracing-opentelemetry` puts
/// under the handler's CONSUMER span because that span is OpenTelemetry's current one while the handler runs.
#[tracing::instrument(name = "UPDATE inventory", skip_all, fields(db.system.name = "postgresql", app.order.id = %order.id))]
pub async fn reserve_stock(order: &Order) {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

pub async fn charge_payment_gateway(order: &Order) -> Result<(), CardDeclined> {
    let charge = tracing::info_span!("POST /payment-gateway/charge", app.order.id = %order.id);
    tokio::time::sleep(Duration::from_millis(2)).instrument(charge).await;
    if order.card_declined {
        return Err(CardDeclined);
    }
    Ok(())
}

/// The error type the payment service dead-letters a declined order for.
pub const CARD_DECLINED: &str = "CardDeclined";

/// The payment gateway declined the card. Another try may succeed (a card topped up, a gateway that was wrong), so
/// the payment service retries, a few times, before it dead-letters the order for a person to look at.
#[derive(Debug)]
pub struct CardDeclined;

impl fmt::Display for CardDeclined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("card declined")
    }
}

impl Error for CardDeclined {}

/// Why the payment service did not process an order; `E` is the broker client's error.
#[derive(Debug)]
pub enum PaymentFailed<E> {
    Malformed(MalformedOrder),
    /// Declined, and republished for another attempt.
    Retried(CardDeclined),
    /// Declined on the last attempt, and dead-lettered.
    DeadLettered(CardDeclined),
    /// The broker refused a message the service published (a RabbitMQ publisher-confirm `nack`).
    Refused,
    NotPublished(E),
}

impl<E> From<MalformedOrder> for PaymentFailed<E> {
    fn from(malformed: MalformedOrder) -> Self {
        Self::Malformed(malformed)
    }
}

impl<E: fmt::Display> fmt::Display for PaymentFailed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(malformed) => malformed.fmt(f),
            Self::Retried(declined) => write!(f, "{declined}: retried"),
            Self::DeadLettered(declined) => write!(f, "{declined} on the last attempt: dead-lettered"),
            Self::Refused => f.write_str("the broker refused a message the payment service published"),
            Self::NotPublished(error) => write!(f, "not published: {error}"),
        }
    }
}

/// `PaymentProcessed`, as the payment service writes it.
pub fn payment_processed(order: &Order) -> String {
    format!(r#"{{"order":"{}","status":"paid"}}"#, order.id)
}

/// What the analytics service counts in one batch: events per kind, whatever their shape.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    pub orders: usize,
    pub payments: usize,
}
