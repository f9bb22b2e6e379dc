//! The order pipeline on the embedded broker: the order service publishes `OrderCreated`, the inventory
//! service handles it, and the one trace both produced is printed.
//!
//! Run: `cargo run --example orders` (no Kafka to install: librdkafka's mock cluster speaks the Kafka protocol
//! over loopback, inside this process).

#[path = "support/waterfall.rs"]
mod waterfall;

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

const TOPIC: &str = "orders.created";

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
    let order: &str = std::str::from_utf8(message.payload().unwrap_or_default())?;
    let _reservation = global::tracer("inventory-service").start("UPDATE inventory");
    tokio::time::sleep(Duration::from_millis(3)).await;
    println!("inventory-service reserved stock for {order}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();

    let broker = MockCluster::new(1)?;
    broker.create_topic(TOPIC, 1, 1)?;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", broker.bootstrap_servers()).create()?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", "inventory-service")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[TOPIC])?;

    let order = r#"{"id":"ord-1001","items":2}"#;
    publish_order_created(&producer, "ord-1001", FutureRecord::to(TOPIC).key("ord-1001").payload(order)).await?;
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
    reserve_inventory(&message).await?;

    provider.force_flush()?;
    waterfall::print_traces(&exporter.get_finished_spans()?);
    Ok(())
}
