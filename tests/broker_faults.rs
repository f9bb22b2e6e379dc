//! The faults production brings, and the trace through them: a Kafka broker (tansu, an independent
//! implementation) killed and restarted, a RabbitMQ node stopped and started mid-run, and handlers that fail
//! under manual commit and manual acknowledgement. Every message published is handled at least once, every
//! handling has its CONSUMER span, and a message that comes back continues its producer's trace. tracehop
//! commits, acknowledges and rejects nothing: the tests settle every message themselves.
//!
//! The tansu and RabbitMQ fault tests need `TRACEHOP_TANSU` (tansu's binary) and `AMQP_URL` with
//! `TRACEHOP_RABBITMQCTL` (`scripts/rabbitmq`); `scripts/test` provides both and runs them. The same for every
//! broker, a failed message given back and handled again (Kafka under manual commit on both of the suite's Kafka
//! brokers), is in `shared_behaviour.rs`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use suite::{receive, spans_to};

#[tracehop::traced_producer]
async fn publish_order(producer: &FutureProducer, record: FutureRecord<'_, str, str>) -> Result<(), String> {
    producer.send(record, Duration::from_secs(60)).await.map(|_| ()).map_err(|(error, _)| error.to_string())
}

#[tracehop::traced_consumer(group = "faults")]
fn handle_order(message: &OwnedMessage) -> Result<String, String> {
    Ok(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned())
}

/// Each producer span of `spans`, by the order id its record carried as key.
fn producer_spans_by_key(spans: &[SpanData]) -> BTreeMap<String, SpanData> {
    spans
        .iter()
        .filter(|span| span.span_kind == SpanKind::Producer)
        .map(|span| {
            let key = suite::attribute(span, "messaging.kafka.message.key")
                .or_else(|| suite::attribute(span, "messaging.rabbitmq.destination.routing_key"))
                .map(|value| value.as_str().into_owned())
                .unwrap_or_default();
            (key, span.clone())
        })
        .collect()
}

// ---- Kafka: tansu killed and restarted ----

/// A tansu broker this test owns, on a fixed loopback port so that a restart comes back where clients look, with
/// its storage in an SQLite file that outlives the process, as a broker's log outlives a crash.
struct Tansu {
    binary: String,
    port: u16,
    storage: std::path::PathBuf,
    process: Option<Child>,
}

impl Tansu {
    fn start() -> Self {
        let binary = std::env::var("TRACEHOP_TANSU")
            .expect("TRACEHOP_TANSU is not set: ./scripts/test runs the broker fault tests with tansu installed");
        // A port the OS reports free is free only until someone else binds it: when the broker cannot listen on it
        // (it exits, or another process answers there), it starts again on another.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|socket| socket.local_addr()).expect("a port").port();
            let storage = std::env::temp_dir().join(format!("tracehop-tansu-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&storage).expect("a storage folder");
            let mut tansu = Tansu { binary: binary.clone(), port, storage, process: None };
            if tansu.try_restart().is_ok() {
                return tansu;
            }
        }
        panic!("tansu ({binary}) did not listen on any of three free loopback ports");
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker again on its storage and port, and waits until it accepts connections.
    fn restart(&mut self) {
        if let Err(why) = self.try_restart() {
            panic!("tansu restarted on 127.0.0.1:{}: {why}", self.port);
        }
    }

    /// Starts the broker on its storage and port; an error says why it is not listening there.
    fn try_restart(&mut self) -> Result<(), String> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // tansu reads the database path of an `sqlite://` URL relative to its working directory.
        let child = Command::new(&self.binary)
            .current_dir(&self.storage)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("tansu ({}) starts: {error}", self.binary));
        let process = self.process.insert(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Exited: it could not bind the port (or failed otherwise); a listener there then is someone else's.
            if let Ok(Some(status)) = process.try_wait() {
                self.process = None;
                return Err(format!("it exited ({status})"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err("not listening within 30 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker outright (SIGKILL): no shutdown, connections cut.
    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.storage);
    }
}

fn producer_for(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Long enough to ride out the restart: librdkafka keeps the records and retries.
        .set("message.timeout.ms", "60000")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .expect("a producer")
}

fn consumer_for(bootstrap: &str, group: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// tansu killed outright with messages published and not yet consumed, more published while it is down, then
/// restarted: every message is handled at least once, and every handling continues its producer's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu: ./scripts/test runs it with tansu installed"]
async fn a_kafka_broker_killed_and_restarted_costs_no_message_and_no_trace() {
    suite::spans();
    let mut tansu = Tansu::start();
    let topic = suite::unique_topic("faults-tansu");
    suite::create_topic_on(&tansu.bootstrap(), &topic, 1);
    let producer = producer_for(&tansu.bootstrap());
    let group = suite::unique_topic("faults-tansu-group");

    let keys: Vec<String> = (0..30).map(|index| format!("order-{index}")).collect();
    let (before, during) = keys.split_at(20);
    for key in before {
        publish_order(&producer, FutureRecord::to(&topic).key(key.as_str()).payload("order")).await.expect("published");
    }
    // Half of what was published is handled and committed; the rest waits in the broker's log.
    let consumer = consumer_for(&tansu.bootstrap(), &group, &topic);
    let mut handled = handle_some(&consumer, &before[..10]).await;
    drop(consumer);

    tansu.kill();
    // Published while the broker is down: librdkafka holds the records until it is back.
    let sends: Vec<_> = during
        .iter()
        .map(|key| {
            let (producer, topic, key) = (producer.clone(), topic.clone(), key.clone());
            tokio::spawn(async move {
                publish_order(&producer, FutureRecord::to(&topic).key(key.as_str()).payload("order")).await
            })
        })
        .collect();
    // Restarted once librdkafka holds every one of them (none can be delivered while the broker is down), so the
    // broker really comes back to records queued during its absence.
    let deadline = Instant::now() + Duration::from_secs(30);
    while producer.in_flight_count() < during.len() as i32 {
        assert!(Instant::now() < deadline, "librdkafka queues the {} records sent while tansu is down", during.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tansu.restart();
    for send in sends {
        send.await.expect("the send task").expect("the record is delivered once the broker is back");
    }
    let consumer = consumer_for(&tansu.bootstrap(), &group, &topic);
    let rest: Vec<String> = before[10..].iter().chain(during).cloned().collect();
    for (key, count) in handle_some(&consumer, &rest).await {
        *handled.entry(key).or_default() += count;
    }

    let spans = spans_to(&topic);
    let producers = producer_spans_by_key(&spans);
    for key in &keys {
        let count = handled.get(key).copied().unwrap_or_default();
        assert!(count >= 1, "{key} handled at least once: {handled:?}");
        let producer = &producers[key];
        let handlings = suite::handlings_of(&spans, producer);
        assert_eq!(handlings.len(), count, "{key}: one CONSUMER span per handling");
        for handling in handlings {
            assert_eq!(handling.span_context.trace_id(), producer.span_context.trace_id(), "{key} continues its trace");
            assert_eq!(handling.status, Status::Unset);
        }
    }
}

/// Consumes until every key of `expected` was handled once, committing each after its handler (manual commit).
async fn handle_some(consumer: &StreamConsumer, expected: &[String]) -> BTreeMap<String, usize> {
    let mut handled: BTreeMap<String, usize> = BTreeMap::new();
    while expected.iter().any(|key| !handled.contains_key(key)) {
        let message = receive(consumer).await;
        handle_order(&message).expect("the handler succeeds");
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        *handled.entry(key).or_default() += 1;
        commit_after(consumer, &message);
    }
    handled
}

/// What a caller commits once `message` is handled: the offset after it.
fn commit_after(consumer: &StreamConsumer, message: &OwnedMessage) {
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(message.topic(), message.partition(), Offset::Offset(message.offset() + 1))
        .expect("an offset");
    consumer.commit(&offsets, CommitMode::Sync).expect("the caller commits");
}

// ---- RabbitMQ: the node stopped and started, and a failed message left unacknowledged ----

#[tracehop::traced_producer(destination = exchange, routing_key = "order", attributes(app.order = order))]
async fn publish_to(channel: &Channel, exchange: &str, order: &str, properties: BasicProperties) -> Result<(), String> {
    let publish = channel
        .basic_publish(exchange.into(), "order".into(), BasicPublishOptions::default(), order.as_bytes(), properties)
        .await
        .map_err(|error| error.to_string())?;
    publish.await.map(|_| ()).map_err(|error| error.to_string())
}

#[tracehop::traced_consumer(group = "faults")]
fn handle_delivery(delivery: &Delivery, fail: bool) -> Result<String, String> {
    if fail {
        return Err("the warehouse is unreachable".to_owned());
    }
    Ok(String::from_utf8_lossy(&delivery.data).into_owned())
}

async fn connect() -> Connection {
    let url = std::env::var("AMQP_URL").expect("AMQP_URL is not set: ./scripts/test runs the RabbitMQ tests");
    // Right after a restart the listener may still be opening: try for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Connection::connect(&url, ConnectionProperties::default()).await {
            Ok(connection) => return connection,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("RabbitMQ at {url} is unreachable: {error}"),
        }
    }
}

/// The RabbitMQ tests of this file take turns: one stops the node, which would cut the other's connection.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rabbitmqctl(command: &str) {
    let ctl = std::env::var("TRACEHOP_RABBITMQCTL")
        .expect("TRACEHOP_RABBITMQCTL is not set: ./scripts/test runs the fault tests beside its own RabbitMQ node");
    let status = Command::new(&ctl).arg(command).stdout(Stdio::null()).status().expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {command}");
}

/// A durable direct exchange and a durable queue bound to it with routing key `order`: what survives a stop.
async fn declare_durable(channel: &Channel, exchange: &str, queue: &str) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(exchange.into(), lapin::ExchangeKind::Direct, durable, FieldTable::default())
        .await
        .expect("exchange.declare");
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(queue.into(), durable, FieldTable::default()).await.expect("queue.declare");
    channel
        .queue_bind(queue.into(), exchange.into(), "order".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .expect("queue.bind");
}

/// Takes the next message of `queue`, or `None` once it is empty.
async fn next_or_none(channel: &Channel, queue: &str) -> Option<Delivery> {
    channel
        .basic_get(queue.into(), lapin::options::BasicGetOptions::default())
        .await
        .expect("basic.get")
        .map(|message| message.delivery)
}

/// The producer spans of `orders` (by their `app.order`) and every CONSUMER span of their traces.
fn spans_of_orders(orders: &[String]) -> (BTreeMap<String, SpanData>, Vec<SpanData>) {
    let spans = suite::finished();
    let producers: BTreeMap<String, SpanData> = spans
        .iter()
        .filter(|span| span.span_kind == SpanKind::Producer)
        .filter_map(|span| {
            let order = suite::attribute(span, "app.order")?.as_str().into_owned();
            orders.contains(&order).then(|| (order, span.clone()))
        })
        .collect();
    (producers, spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_rabbitmq_node_stopped_and_started_costs_no_message_and_no_trace() {
    let _turn = ONE_AT_A_TIME.lock().await;
    suite::spans();
    let exchange = suite::unique_topic("faults-exchange");
    let queue = suite::unique_topic("faults-queue");
    let orders: Vec<String> = (0..20).map(|index| format!("{queue}-order-{index}")).collect();
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("a channel");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("publisher confirms");
    declare_durable(&channel, &exchange, &queue).await;
    let persistent = BasicProperties::default().with_delivery_mode(2);
    for order in &orders {
        publish_to(&channel, &exchange, order, persistent.clone()).await.expect("published and confirmed");
    }

    let mut handled: Vec<(String, bool)> = Vec::new();
    for _ in 0..10 {
        let delivery = next_or_none(&channel, &queue).await.expect("a message");
        handled.push((handle_delivery(&delivery, false).expect("handled"), delivery.redelivered));
        delivery.acker.ack(BasicAckOptions::default()).await.expect("the caller acknowledges");
    }
    // Handled, then the node goes away before the caller acknowledges it.
    let unacknowledged = next_or_none(&channel, &queue).await.expect("a message");
    handled.push((handle_delivery(&unacknowledged, false).expect("handled"), unacknowledged.redelivered));
    let unacknowledged_order = handled.last().expect("one").0.clone();

    rabbitmqctl("stop_app");
    let deadline = Instant::now() + Duration::from_secs(10);
    while connection.status().connected() {
        assert!(Instant::now() < deadline, "the stopped node closes the consumer's connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rabbitmqctl("start_app");
    drop(connection);

    let connection = connect().await;
    let channel = connection.create_channel().await.expect("a channel after the restart");
    while let Some(delivery) = next_or_none(&channel, &queue).await {
        handled.push((handle_delivery(&delivery, false).expect("handled"), delivery.redelivered));
        delivery.acker.ack(BasicAckOptions::default()).await.expect("the caller acknowledges");
    }
    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.expect("queue.delete");
    let _ = channel.exchange_delete(exchange.as_str().into(), Default::default()).await;

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (order, _) in &handled {
        *counts.entry(order).or_default() += 1;
    }
    for order in &orders {
        let expected = if *order == unacknowledged_order { 2 } else { 1 };
        assert_eq!(counts.get(order.as_str()), Some(&expected), "{order}: handled at least once, {handled:?}");
    }
    let redelivered: Vec<&str> =
        handled.iter().filter(|(_, redelivered)| *redelivered).map(|(order, _)| order.as_str()).collect();
    assert_eq!(redelivered, [unacknowledged_order.as_str()], "the unacknowledged message came back, flagged");

    let (producers, spans) = spans_of_orders(&orders);
    assert_eq!(producers.len(), 20);
    for (order, producer) in &producers {
        let handlings = suite::handlings_of(&spans, producer);
        assert_eq!(handlings.len(), counts[order.as_str()], "{order}: one CONSUMER span per handling");
        for handling in &handlings {
            assert_eq!(handling.span_context.trace_id(), producer.span_context.trace_id(), "{order}");
            assert_eq!(handling.status, Status::Unset);
        }
        // The trace shows the redelivery: only the second handling of the unacknowledged message says so.
        let redelivered: Vec<Option<opentelemetry::Value>> =
            handlings.iter().map(|handling| suite::attribute(handling, tracehop::REDELIVERED_ATTRIBUTE)).collect();
        let expected = if *order == unacknowledged_order { vec![None, Some(true.into())] } else { vec![None] };
        assert_eq!(redelivered, expected, "{order}");
    }
}

/// A handler that fails leaves its delivery unacknowledged (tracehop acknowledges nothing): when the caller's
/// channel closes, the broker gives the message to the next consumer, flagged as redelivered, and that
/// handling continues the same producer trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_failed_rabbitmq_message_is_not_acknowledged_and_its_redelivery_continues_the_trace() {
    let _turn = ONE_AT_A_TIME.lock().await;
    suite::spans();
    let exchange = suite::unique_topic("faults-ack-exchange");
    let queue = suite::unique_topic("faults-ack-queue");
    let order = format!("{queue}-order");
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("a channel");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("publisher confirms");
    declare_durable(&channel, &exchange, &queue).await;
    publish_to(&channel, &exchange, &order, BasicProperties::default()).await.expect("published and confirmed");

    let failing = connection.create_channel().await.expect("a channel");
    let delivery = next_or_none(&failing, &queue).await.expect("the message");
    assert!(!delivery.redelivered);
    assert_eq!(handle_delivery(&delivery, true), Err("the warehouse is unreachable".to_owned()));
    // The caller settles nothing and goes away.
    failing.close(200, "handler failed".into()).await.expect("channel.close");

    let again = next_or_none(&channel, &queue).await.expect("the message is back: nobody acknowledged it");
    assert!(again.redelivered, "flagged as redelivered");
    assert_eq!(handle_delivery(&again, false), Ok(order.clone()));
    again.acker.ack(BasicAckOptions::default()).await.expect("the caller acknowledges");
    assert!(next_or_none(&channel, &queue).await.is_none(), "acknowledged once, gone");
    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.expect("queue.delete");
    let _ = channel.exchange_delete(exchange.as_str().into(), Default::default()).await;

    let (producers, spans) = spans_of_orders(std::slice::from_ref(&order));
    let producer = &producers[&order];
    let handlings = suite::handlings_of(&spans, producer);
    assert_eq!(handlings.len(), 2, "{spans:#?}");
    assert_eq!(handlings[0].status, Status::error("the warehouse is unreachable"));
    assert_eq!(handlings[1].status, Status::Unset);
    for handling in &handlings {
        assert_eq!(handling.span_context.trace_id(), producer.span_context.trace_id());
        assert!(handling.parent_span_is_remote);
    }
    assert_eq!(suite::attribute(&handlings[0], tracehop::REDELIVERED_ATTRIBUTE), None);
    assert_eq!(suite::attribute(&handlings[1], tracehop::REDELIVERED_ATTRIBUTE), Some(true.into()));
}
