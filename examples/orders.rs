//! The order pipeline on the embedded broker: the order service publishes `OrderCreated`, the inventory
//! service handles it, and the one trace both produced is printed.
//!
//! Run: `cargo run --example orders` (no Kafka to install: librdkafka's mock cluster speaks the Kafka protocol
//! over loopback, inside this process).

use std::error::Error;
use std::time::{Duration, SystemTime};

use opentelemetry::global;
use opentelemetry::trace::{SpanId, TraceId, Tracer};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
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
    print_traces(&exporter.get_finished_spans()?);
    Ok(())
}

/// Prints each trace as an indented tree: kind, name, duration and the attributes tracehop recorded.
fn print_traces(spans: &[SpanData]) {
    let mut traces: Vec<TraceId> = spans.iter().map(|span| span.span_context.trace_id()).collect();
    traces.dedup();
    for trace_id in traces {
        println!("\ntrace {trace_id}");
        let in_trace: Vec<&SpanData> = spans.iter().filter(|span| span.span_context.trace_id() == trace_id).collect();
        let roots = in_trace
            .iter()
            .filter(|span| !in_trace.iter().any(|parent| parent.span_context.span_id() == span.parent_span_id));
        for root in roots {
            print_span(root, &in_trace, 1);
        }
    }
}

fn print_span(span: &SpanData, in_trace: &[&SpanData], depth: usize) {
    let duration = span.end_time.duration_since(span.start_time).unwrap_or_default();
    let parent = if span.parent_span_id == SpanId::INVALID {
        "root".to_owned()
    } else {
        format!("parent {}", span.parent_span_id)
    };
    println!(
        "{:indent$}{:?} \"{}\" span {} ({parent}) {:.1} ms",
        "",
        span.span_kind,
        span.name,
        span.span_context.span_id(),
        duration.as_secs_f64() * 1e3,
        indent = depth * 2
    );
    for attribute in &span.attributes {
        println!("{:indent$}{} = {}", "", attribute.key, attribute.value, indent = depth * 2 + 4);
    }
    let mut children: Vec<&&SpanData> =
        in_trace.iter().filter(|child| child.parent_span_id == span.span_context.span_id()).collect();
    children.sort_by_key(|child| child.start_time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default());
    for child in children {
        print_span(child, in_trace, depth + 1);
    }
}
