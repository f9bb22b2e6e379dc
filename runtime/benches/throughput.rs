//! Messages per second consumed and handled through a broker, traced (`#[traced_consumer]`, always-on
//! sampling, the batch span processor on an exporter that discards) against untraced, with a trivial handler.
//! Kafka on librdkafka's mock cluster (in process, the real protocol over loopback); RabbitMQ on the server at
//! `AMQP_URL`, when set (`scripts/benchmarks` starts one with `scripts/rabbitmq`).
//!
//! Rounds alternate untraced and traced on the same broker, so machine drift hits both; each prints its rate,
//! and the last lines give each case's median and the traced/untraced ratio:
//! `throughput <broker> <untraced|traced> <messages per second>` and `throughput <broker> ratio <traced/untraced>`.
//!
//! Run: `cargo bench -p tracehop --features kafka,rabbitmq --bench throughput` (`-- --messages N --rounds R` to change the
//! defaults of 20,000 messages and 3 rounds of each).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use opentelemetry::global;
use opentelemetry_sdk::trace::Sampler;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

mod support;
use support::rabbitmq::{handle_traced_delivery, handle_untraced_delivery};
use support::{handle_traced, handle_untraced, provider, traceparent, Processor, TRACESTATE};

/// A message's trace headers: each message continues its own producer trace, as in production.
fn trace_headers(index: usize) -> (String, &'static str) {
    (traceparent(0x4bf92f3577b34da6a3ce929d0e0e0000 + index as u128, true), TRACESTATE)
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Fills `topic` of `cluster` with `messages` messages carrying trace headers and an order-sized payload.
fn fill_kafka(bootstrap: &str, topic: &str, messages: usize) -> Result<(), String> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|error| format!("a producer for the mock cluster: {error}"))?;
    for index in 0..messages {
        let (traceparent, tracestate) = trace_headers(index);
        let headers = OwnedHeaders::new()
            .insert(Header { key: "content-type", value: Some("application/json") })
            .insert(Header { key: "traceparent", value: Some(&traceparent) })
            .insert(Header { key: "tracestate", value: Some(tracestate) });
        let record = BaseRecord::to(topic).key("order-7").payload("{\"id\":7,\"items\":3}").headers(headers);
        producer.send(record).map_err(|(error, _)| format!("queueing message {index}: {error}"))?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).map_err(|error| format!("flushing the producer: {error}"))
}

/// Consumes every message of `topic` from the start in a fresh group, handing each to `handle`; messages per
/// second.
fn consume_kafka(bootstrap: &str, topic: &str, round: usize, messages: usize, handle: fn(&BorrowedMessage<'_>)) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("throughput-{round}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer for the mock cluster");
    consumer.subscribe(&[topic]).expect("subscribe");
    // The clock starts at the first message: joining the group is not handling.
    let first = loop {
        if let Some(result) = consumer.poll(Duration::from_secs(10)) {
            break result.expect("the first message");
        }
    };
    let started = Instant::now();
    handle(&first);
    drop(first);
    let mut handled = 1;
    while handled < messages {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(message)) => {
                handle(&message);
                handled += 1;
            }
            Some(Err(error)) => panic!("consuming: {error}"),
            None => panic!("no message within 10 s after {handled} of {messages}"),
        }
    }
    (messages - 1) as f64 / started.elapsed().as_secs_f64()
}

fn kafka(messages: usize, rounds: usize) {
    let cluster = MockCluster::new(1).expect("librdkafka's mock cluster starts");
    cluster.create_topic("throughput", 1, 1).expect("the topic");
    let bootstrap = cluster.bootstrap_servers();
    if let Err(error) = fill_kafka(&bootstrap, "throughput", messages) {
        panic!("filling the topic: {error}");
    }
    let (mut untraced, mut traced) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let rate = consume_kafka(&bootstrap, "throughput", 2 * round, messages, handle_untraced);
        println!("kafka round {round} untraced: {rate:.0} messages/s");
        untraced.push(rate);
        let rate = consume_kafka(&bootstrap, "throughput", 2 * round + 1, messages, handle_traced);
        println!("kafka round {round} traced: {rate:.0} messages/s");
        traced.push(rate);
    }
    report("kafka", untraced, traced);
}

fn report(broker: &str, untraced: Vec<f64>, traced: Vec<f64>) {
    let (untraced, traced) = (median(untraced), median(traced));
    println!("throughput {broker} untraced {untraced:.0}");
    println!("throughput {broker} traced {traced:.0}");
    println!("throughput {broker} ratio {:.3}", traced / untraced);
}

async fn fill_queue(channel: &lapin::Channel, queue: &str, messages: usize) {
    let mut confirms = Vec::with_capacity(messages);
    for index in 0..messages {
        let (traceparent, tracestate) = trace_headers(index);
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString(LongString::from(traceparent)));
        headers.insert("tracestate".into(), AMQPValue::LongString(LongString::from(tracestate)));
        let properties = BasicProperties::default().with_headers(headers);
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                b"{\"id\":7,\"items\":3}",
                properties,
            )
            .await
            .expect("basic.publish");
        confirms.push(confirm);
    }
    for confirm in confirms {
        confirm.await.expect("the broker took the message");
    }
}

/// Consumes `messages` messages of `queue` (automatic acknowledgement: the broker's round trip per message is
/// not what is measured), handing each to `handle`; messages per second.
async fn consume_queue(channel: &lapin::Channel, queue: &str, messages: usize, handle: fn(&Delivery)) -> f64 {
    let options = BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() };
    let mut consumer =
        channel.basic_consume(queue.into(), "".into(), options, FieldTable::default()).await.expect("basic.consume");
    let first = consumer.next().await.expect("a delivery").expect("the first delivery");
    let started = Instant::now();
    handle(&first);
    for handled in 1..messages {
        match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await {
            Ok(Some(Ok(delivery))) => handle(&delivery),
            Ok(Some(Err(error))) => panic!("consuming: {error}"),
            Ok(None) | Err(_) => panic!("no delivery within 10 s after {handled} of {messages}"),
        }
    }
    let rate = (messages - 1) as f64 / started.elapsed().as_secs_f64();
    channel.basic_cancel(consumer.tag(), lapin::options::BasicCancelOptions::default()).await.expect("basic.cancel");
    rate
}

async fn rabbitmq(url: &str, messages: usize, rounds: usize) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| panic!("RabbitMQ at {url} is unreachable: {error}"));
    let channel = connection.create_channel().await.expect("a channel");
    channel.confirm_select(Default::default()).await.expect("publisher confirms");
    let queue = format!("throughput-{}", std::process::id());
    // Exclusive, not auto-deleted: it outlives each round's consumer and goes with the connection.
    let options = QueueDeclareOptions { exclusive: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(queue.as_str().into(), options, FieldTable::default()).await.expect("queue.declare");
    let (mut untraced, mut traced) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        fill_queue(&channel, &queue, messages).await;
        let rate = consume_queue(&channel, &queue, messages, handle_untraced_delivery).await;
        println!("rabbitmq round {round} untraced: {rate:.0} messages/s");
        untraced.push(rate);
        fill_queue(&channel, &queue, messages).await;
        let rate = consume_queue(&channel, &queue, messages, handle_traced_delivery).await;
        println!("rabbitmq round {round} traced: {rate:.0} messages/s");
        traced.push(rate);
    }
    report("rabbitmq", untraced, traced);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| {
        args.iter().position(|arg| arg == flag).and_then(|at| args.get(at + 1)).and_then(|value| value.parse().ok())
    };
    let messages: usize = value_of("--messages").unwrap_or(20_000);
    let rounds: usize = value_of("--rounds").unwrap_or(3);
    let provider = provider(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), Processor::Batch);
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();

    kafka(messages, rounds);
    match std::env::var("AMQP_URL") {
        Ok(url) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(rabbitmq(&url, messages / 2, rounds));
        }
        Err(_) => println!("rabbitmq: not measured, AMQP_URL is not set (scripts/benchmarks starts a broker)"),
    }
    let _ = provider.shutdown();
}
