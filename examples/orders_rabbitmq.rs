//! The order pipeline over RabbitMQ: the order service publishes `OrderCreated` to the `orders` exchange, the
//! inventory service handles it from its queue, and the one trace both produced is printed.
//!
//! Run: `cargo run --example orders_rabbitmq -- amqp://guest:guest@127.0.0.1:5672/%2f` (or set `AMQP_URL`).

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use opentelemetry::global;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

const EXCHANGE: &str = "orders";
const ROUTING_KEY: &str = "order.created";

/// The order service: the PRODUCER span's context reaches the message's AMQP headers through `properties`.
#[tracehop::traced_producer(destination = EXCHANGE, routing_key = ROUTING_KEY, attributes(app.order.id = order_id))]
async fn publish_order_created(
    channel: &Channel,
    order_id: &str,
    order: &[u8],
    properties: BasicProperties,
) -> Result<(), lapin::Error> {
    channel
        .basic_publish(EXCHANGE.into(), ROUTING_KEY.into(), BasicPublishOptions::default(), order, properties)
        .await?
        .await?;
    Ok(())
}

/// The inventory service: a CONSUMER span continuing the order's trace.
#[tracehop::traced_consumer(group = "inventory-service")]
async fn reserve_inventory(delivery: &Delivery) -> Result<(), Box<dyn Error>> {
    println!("inventory-service reserved stock for {}", std::str::from_utf8(&delivery.data)?);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1).or_else(|| std::env::var("AMQP_URL").ok()) else {
        eprintln!(
            "error: give the RabbitMQ URL as the first argument or in AMQP_URL (amqp://guest:guest@127.0.0.1:5672/%2f)"
        );
        return ExitCode::from(2);
    };
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();

    let connection = match Connection::connect(&url, ConnectionProperties::default()).await {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!("error: cannot reach RabbitMQ at {url}: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = run(&connection).await {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let _ = provider.force_flush();
    match exporter.get_finished_spans() {
        Ok(spans) => print!("{}", tracehop::TracePicture::new().attributes(true).render(&spans)),
        Err(error) => eprintln!("error: no spans to print: {error}"),
    }
    ExitCode::SUCCESS
}

async fn run(connection: &Connection) -> Result<(), Box<dyn Error>> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions { exclusive: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        )
        .await?;
    let queue = queue.name().clone();
    channel
        .queue_bind(
            queue.clone(),
            EXCHANGE.into(),
            ROUTING_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let order = br#"{"id":"ord-1001","items":2}"#;
    let properties = BasicProperties::default().with_message_id("ord-1001".into());
    publish_order_created(&channel, "ord-1001", order, properties).await?;

    for _ in 0..250 {
        if let Some(message) = channel.basic_get(queue.clone(), BasicGetOptions::default()).await? {
            let delivery = message.delivery;
            let handled = reserve_inventory(&delivery).await;
            delivery.ack(BasicAckOptions::default()).await?;
            return handled;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("the order did not arrive within 5 seconds".into())
}
