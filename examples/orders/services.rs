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
        })
    }
}

/// The orders the order service publishes: one the other services can handle, and one a buggy client cut short,
/// whose handlers fail.
pub const SAMPLE_ORDERS: [(&str, &str); 2] =
    [("ord-1001", r#"{"id":"ord-1001","items":2}"#), ("ord-1002", r#"{"id":"ord-1002","items":"#)];

/// The inventory database. `#[tracing::instrument]` makes the call a span, which `tracing-opentelemetry` puts
/// under the handler's CONSUMER span because that span is OpenTelemetry's current one while the handler runs.
#[tracing::instrument(name = "UPDATE inventory", skip_all, fields(db.system.name = "postgresql", app.order.id = %order.id))]
pub async fn reserve_stock(order: &Order) {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

pub async fn charge_payment_gateway(order: &Order) {
    let charge = tracing::info_span!("POST /payment-gateway/charge", app.order.id = %order.id);
    tokio::time::sleep(Duration::from_millis(2)).instrument(charge).await;
}

/// Why the payment service did not process an order; `E` is the broker client's error.
#[derive(Debug)]
pub enum PaymentFailed<E> {
    Malformed(MalformedOrder),
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
            Self::NotPublished(error) => write!(f, "PaymentProcessed not published: {error}"),
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
