//! The order pipeline without attributes: the clients of `tracehop::clients` give a loop over a consumer's
//! stream, a closure and a producer shared across tasks the same spans `#[traced_consumer]` and
//! `#[traced_producer]` give functions. The order service publishes from a spawned task through a shared
//! `TracedFutureProducer`; the inventory service handles each order from a `StreamConsumer` stream in a
//! `select!` and publishes `InventoryReserved` from inside the order's span; the shipping service polls a
//! `BaseConsumer`. One trace runs through all of it, and is printed at the end.
//!
//! Run: `cargo run --example clients` (no Kafka to install: librdkafka's mock cluster speaks the Kafka protocol
//! over loopback, inside this process).

use std::error::Error;
use std::time::Duration;

use futures_util::StreamExt;
use opentelemetry::global;
use opentelemetry::trace::Tracer;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureRecord;
use tracehop::clients::kafka::TracedFutureProducer;
use tracehop::clients::ConsumerTracing;
use tracehop::Handler;

const ORDERS: &str = "orders.created";
const RESERVATIONS: &str = "inventory.reserved";

/// What the inventory loop's spans say about it: its name in `code.function.name` and its consumer group.
static RESERVE_INVENTORY: Handler = Handler::consumer("inventory::orders_loop").group("inventory-service");
static SHIP_ORDER: Handler = Handler::consumer("shipping::poll_loop").group("shipping-service");
static SHIP: ConsumerTracing = ConsumerTracing::new(&SHIP_ORDER);

fn config(broker: &MockCluster<'_, impl rdkafka::ClientContext>, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    config
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();

    let broker = MockCluster::new(1)?;
    broker.create_topic(ORDERS, 1, 1)?;
    broker.create_topic(RESERVATIONS, 1, 1)?;
    let producer: TracedFutureProducer =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap_servers()).create()?;
    let inventory: StreamConsumer = config(&broker, "inventory-service").create()?;
    inventory.subscribe(&[ORDERS])?;
    let shipping: BaseConsumer = config(&broker, "shipping-service").create()?;
    shipping.subscribe(&[RESERVATIONS])?;

    // The order service: a task of its own, sharing the producer. Its PRODUCER span lasts until Kafka's
    // delivery report, and records the partition and offset the order landed at.
    let order_service = producer.clone();
    let published = tokio::spawn(async move {
        let order = r#"{"id":"ord-1001","items":2}"#;
        let record = FutureRecord::to(ORDERS).key("ord-1001").payload(order);
        order_service.send(record, Duration::from_secs(5)).await.map(|_| ()).map_err(|(error, _)| error)
    });
    published.await??;

    // The inventory service: a loop over the consumer's stream, in a `select!` beside a deadline.
    let mut orders = ConsumerTracing::new(&RESERVE_INVENTORY).stream(inventory.stream());
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    let (producer, inventory) = (&producer, &inventory);
    tokio::select! {
        Some(order) = orders.next() => {
            let reserved = order?.process_async(|order| async move {
                let _update = global::tracer("inventory-service").start("UPDATE inventory");
                let key = order.key().unwrap_or_default().to_vec();
                println!("inventory-service reserved stock for {}", String::from_utf8_lossy(&key));
                // Published from inside the order's CONSUMER span: the next hop stays in the trace.
                let record = FutureRecord::<[u8], str>::to(RESERVATIONS).key(&key).payload("reserved");
                producer.send(record, Duration::from_secs(5)).await.map_err(|(error, _)| error)?;
                // The caller decides the message's fate: here, commit it once handled.
                inventory.commit_message(&order, CommitMode::Sync)
            });
            reserved.await?;
        }
        _ = &mut deadline => return Err("no order within 30 seconds".into()),
    }

    // The shipping service: a poll loop over a `BaseConsumer`, entering the span by hand.
    for _ in 0..300 {
        let Some(polled) = SHIP.poll(&shipping, Duration::from_millis(100)) else { continue };
        let reservation = polled?;
        let _current = reservation.enter();
        let _label = global::tracer("shipping-service").start("print shipping label");
        println!(
            "shipping-service ships order {}",
            String::from_utf8_lossy(reservation.message().key().unwrap_or_default())
        );
        break;
    }

    provider.force_flush()?;
    print!("{}", tracehop::TracePicture::new().attributes(true).render(&exporter.get_finished_spans()?));
    Ok(())
}
