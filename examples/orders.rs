//! The order pipeline on the embedded broker, as in the guide tracehop grew from: the order service publishes
//! `OrderCreated`; the inventory and payment services both handle it (fan-out: two consumer groups); payment
//! publishes `PaymentProcessed`, which the shipping service handles. One trace runs through all of it, and is
//! printed at the end.
//!
//! Run: `cargo run --example orders` (no Kafka to install: librdkafka's mock cluster speaks the Kafka protocol
//! over loopback, inside this process).

use std::error::Error;
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::trace::Tracer;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

const ORDERS: &str = "orders.created";
const PAYMENTS: &str = "payments.processed";

/// The order service: publishes an order; the record carries the PRODUCER span's context in its headers.
#[tracehop::traced_producer(attributes(app.order.id = order_id))]
async fn publish_order_created(
    producer: &FutureProducer,
    order_id: &str,
    record: FutureRecord<'_, str, str>,
) -> Result<(), Box<dyn Error>> {
    producer.send(record, Duration::from_secs(5)).await.map_err(|(error, _)| error)?;
    Ok(())
}

/// The inventory service: handles the order inside a CONSUMER span that continues the order's trace.
#[tracehop::traced_consumer(group = "inventory-service")]
async fn reserve_inventory(message: &BorrowedMessage<'_>) -> Result<(), Box<dyn Error>> {
    let order = std::str::from_utf8(message.payload().unwrap_or_default())?;
    let _reservation = global::tracer("inventory-service").start("UPDATE inventory");
    tokio::time::sleep(Duration::from_millis(3)).await;
    println!("inventory-service reserved stock for {order}");
    Ok(())
}

/// The payment service: charges the order, then publishes `PaymentProcessed` from inside its consumer span, so
/// the next hop stays in the same trace.
#[tracehop::traced_consumer(group = "payment-service")]
async fn charge_payment(message: &BorrowedMessage<'_>, producer: &FutureProducer) -> Result<(), Box<dyn Error>> {
    let order_id = std::str::from_utf8(message.key().unwrap_or_default())?;
    {
        let _charge = global::tracer("payment-service").start("POST /payment-gateway/charge");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let payment = format!(r#"{{"order":"{order_id}","status":"paid"}}"#);
    publish_payment_processed(producer, FutureRecord::to(PAYMENTS).key(order_id).payload(&payment)).await
}

#[tracehop::traced_producer]
async fn publish_payment_processed(
    producer: &FutureProducer,
    record: FutureRecord<'_, str, String>,
) -> Result<(), Box<dyn Error>> {
    producer.send(record, Duration::from_secs(5)).await.map_err(|(error, _)| error)?;
    Ok(())
}

/// The shipping service: ships what was paid for.
#[tracehop::traced_consumer(group = "shipping-service")]
fn ship(message: &BorrowedMessage<'_>) -> Result<(), Box<dyn Error>> {
    let payment = std::str::from_utf8(message.payload().unwrap_or_default())?;
    println!("shipping-service ships after {payment}");
    Ok(())
}

fn consumer(
    broker: &MockCluster<'_, impl rdkafka::ClientContext>,
    group: &str,
    topic: &str,
) -> Result<StreamConsumer, Box<dyn Error>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

async fn receive(consumer: &StreamConsumer) -> Result<BorrowedMessage<'_>, Box<dyn Error>> {
    Ok(tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();

    let broker = MockCluster::new(1)?;
    broker.create_topic(ORDERS, 1, 1)?;
    broker.create_topic(PAYMENTS, 1, 1)?;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", broker.bootstrap_servers()).create()?;
    let inventory = consumer(&broker, "inventory-service", ORDERS)?;
    let payment = consumer(&broker, "payment-service", ORDERS)?;
    let shipping = consumer(&broker, "shipping-service", PAYMENTS)?;

    let order = r#"{"id":"ord-1001","items":2}"#;
    publish_order_created(&producer, "ord-1001", FutureRecord::to(ORDERS).key("ord-1001").payload(order)).await?;
    reserve_inventory(&receive(&inventory).await?).await?;
    charge_payment(&receive(&payment).await?, &producer).await?;
    ship(&receive(&shipping).await?)?;

    provider.force_flush()?;
    print!("{}", tracehop::TracePicture::new().render(&exporter.get_finished_spans()?));
    Ok(())
}
