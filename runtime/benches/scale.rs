//! Cost as the work grows, through real brokers: how messages per second scale with consumer processes, traced
//! and untraced, and a soak of a million messages through one traced consumer exporting over OTLP.
//!
//! **Scaling** (`-- scaling`): one, two, three, four and six consumer processes (this binary, run again as workers)
//! share a Kafka topic of [`PARTITIONS`] partitions in one consumer group on the broker at `TRACEHOP_KAFKA_BOOTSTRAP`
//! (tansu, from `scripts/tansu`), and one to three compete for one RabbitMQ queue at `AMQP_URL` (a node from
//! `scripts/rabbitmq`; prefetch [`PREFETCH`], each delivery acknowledged). Traced workers run
//! `#[traced_consumer]` under always-on sampling with the batch span processor on an exporter that discards;
//! untraced ones call the same handler body bare. Every message carries its own producer's `traceparent`.
//! The topic is filled once and every run reads it from the start in a group of its own; the queue is filled
//! before each run. The workers start handling together: a Kafka worker keeps the partitions it is assigned paused
//! until every worker has its share of a settled group, a RabbitMQ worker consumes once every worker is connected.
//! Each worker writes the time it finished each message; a run's rate counts the messages handled while every
//! worker was handling (from the last worker's first message to the first worker's last), so
//! joining the group, a rebalance as the others join, and the tail where one worker is left alone are not in it.
//! Rounds alternate untraced and traced; the medians are printed as
//! `scale <broker> <processes> <untraced|traced> <messages per second>`.
//!
//! **Soak** (`-- soak`): [`SOAK_MESSAGES`] messages (`--messages N` for a quick run; `--pace N` to handle at most N
//! a second, as a service whose handlers do work would) are published to a topic on
//! the broker at `TRACEHOP_KAFKA_BOOTSTRAP`, then one traced consumer handles them all, its tracer provider made
//! by `tracehop::Telemetry` (the batch span processor, OTLP over HTTP/protobuf) exporting to a collector this
//! process runs on loopback, which answers every export with an empty success and counts the spans in it. Every
//! [`SOAK_WINDOW`] messages it prints `soak window <messages> <resident bytes> <messages per second>` (resident
//! memory from `/proc/self/statm`; the rate over that window); at the end `soak spans <made> <received>
//! <dropped>`: the spans the SDK ended (a counting span processor beside the exporter's), the spans the
//! collector received, and the difference, which is what the batch processor dropped (it counts drops only to
//! log them at shutdown).
//!
//! Run: `scripts/tansu scripts/rabbitmq cargo bench -p tracehop --features kafka,rabbitmq,otlp --bench scale --
//! scaling` (`--messages N` on Kafka, default 1,000,000, `--queued N` on RabbitMQ, default 100,000, `--rounds R`,
//! default 3), and `scripts/tansu cargo bench ... --bench scale -- soak`;
//! `scripts/benchmarks --scale` runs both.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use opentelemetry::global;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SpanData, SpanProcessor};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

mod support;
use support::rabbitmq::{handle_traced_delivery, handle_untraced_delivery};
use support::{handle_traced, handle_untraced, provider, traceparent, Processor, TRACESTATE};

/// The partitions of the scaling topic: a multiple of every process count, so that the workers of a run get equal
/// shares and finish together.
const PARTITIONS: i32 = 12;
/// Deliveries a RabbitMQ worker may hold unacknowledged: enough to keep it busy, few enough that the queue is
/// shared out between competing consumers instead of drained into the first one's buffer.
const PREFETCH: u16 = 200;
/// The consumer process counts of the scaling runs on Kafka: past three, to find where two cores stop the
/// scaling; six is one partition each.
const KAFKA_PROCESSES: &[usize] = &[1, 2, 3, 4, 6];
/// The consumer process counts on RabbitMQ, whose node is the limit from two on.
const RABBITMQ_PROCESSES: &[usize] = &[1, 2, 3];
/// The messages of the recorded soak.
const SOAK_MESSAGES: usize = 1_000_000;
/// The soak samples resident memory and the rate every this many messages.
const SOAK_WINDOW: usize = 50_000;
/// A worker stops once no message has come for this long after its first (or for a minute before it).
const IDLE: Duration = Duration::from_secs(4);

/// Message `index`'s own producer `traceparent` (sampled), so every handling continues a trace of its own.
fn message_traceparent(index: usize) -> String {
    traceparent(0x4bf92f3577b34da6a3ce929d0e000000 + index as u128, true)
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as u64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("an admin client");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime.block_on(admin.create_topics([&new_topic], &options)).expect("CreateTopics is answered");
    for result in results {
        result.unwrap_or_else(|(topic, error)| panic!("the broker at {bootstrap} creates topic {topic}: {error}"));
    }
}

/// Publishes `messages` traced messages to `topic`, spread evenly over `partitions`; messages per second.
fn fill_topic(bootstrap: &str, topic: &str, partitions: i32, messages: usize) -> f64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("queue.buffering.max.messages", "100000")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "600000")
        .create()
        .expect("a producer");
    let started = Instant::now();
    for index in 0..messages {
        let traceparent = message_traceparent(index);
        let headers = OwnedHeaders::new()
            .insert(Header { key: "content-type", value: Some("application/json") })
            .insert(Header { key: "traceparent", value: Some(&traceparent) })
            .insert(Header { key: "tracestate", value: Some(TRACESTATE) });
        let mut record = BaseRecord::to(topic)
            .key("order-7")
            .payload("{\"id\":7,\"items\":3}")
            .headers(headers)
            .partition(index as i32 % partitions);
        // A full local queue: wait for the broker to take some, then try the same record again.
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((error, returned)) => {
                    assert!(
                        matches!(error.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)),
                        "queueing message {index}: {error}"
                    );
                    record = returned;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(600)).expect("the broker takes every message");
    messages as f64 / started.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------------------------
// Scaling

/// A worker process's side: consumes until idle, then writes the times it finished each message to `out`.
fn worker(args: &[String]) {
    let [broker, traced, address, source, group, out] = args else {
        panic!("worker BROKER traced|untraced ADDRESS SOURCE GROUP OUT, got {args:?}")
    };
    let traced = traced == "traced";
    // The traced process as a service runs it: always-on sampling, the batch processor, export discarded.
    let provider = traced.then(|| {
        let provider = provider(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), Processor::Batch);
        global::set_tracer_provider(provider.clone());
        tracehop::install_propagator();
        provider
    });
    let finished = match broker.as_str() {
        "kafka" => kafka_worker(address, source, group, traced),
        "rabbitmq" => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(rabbitmq_worker(address, source, traced))
        }
        other => panic!("unknown broker {other}"),
    };
    if let Some(provider) = provider {
        let _ = provider.shutdown();
    }
    let bytes: Vec<u8> = finished.iter().flat_map(|time| time.to_le_bytes()).collect();
    std::fs::write(out, bytes).expect("the worker's times are written");
}

/// Holds the partitions a worker is assigned paused until the run starts, so that no worker handles a message
/// before every worker has joined the group and had its share assigned.
struct Gate {
    open: Arc<AtomicBool>,
}

impl ClientContext for Gate {}

impl ConsumerContext for Gate {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            if !self.open.load(Ordering::Acquire) {
                let _ = consumer.pause(partitions);
            }
        }
    }
}

/// A flag raised when the parent writes a line to this worker's stdin: the run's start.
fn start_signal() -> Arc<AtomicBool> {
    let start = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&start);
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_line(&mut String::new());
        raised.store(true, Ordering::Release);
    });
    start
}

fn kafka_worker(bootstrap: &str, topic: &str, group: &str, traced: bool) -> Vec<u64> {
    let start = start_signal();
    let consumer: BaseConsumer<Gate> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        // Offsets committed as a service commits them, so a rebalance hands on where a worker stopped.
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("session.timeout.ms", "10000")
        .create_with_context(Gate { open: Arc::clone(&start) })
        .expect("a consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let handle = if traced { handle_traced } else { handle_untraced };
    let mut finished = Vec::new();
    let (mut started, mut reported) = (None::<Instant>, None);
    let mut last = Instant::now();
    loop {
        if started.is_none() && start.load(Ordering::Acquire) {
            if let Ok(assignment) = consumer.assignment() {
                consumer.resume(&assignment).expect("the partitions resume");
            }
            started = Some(Instant::now());
            last = Instant::now();
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                handle(&message);
                finished.push(now_ns());
                last = Instant::now();
            }
            Some(Err(error)) => eprintln!("scale worker: {error}"),
            None if started.is_none() => {
                // Until the start, the parent watches the group settle through these lines.
                let assigned = consumer.assignment().map(|assignment| assignment.count()).unwrap_or(0);
                if reported != Some(assigned) {
                    println!("assigned {assigned}");
                    reported = Some(assigned);
                }
            }
            None => {
                let patience = if finished.is_empty() { Duration::from_secs(60) } else { IDLE };
                if last.elapsed() > patience {
                    break;
                }
            }
        }
    }
    finished
}

async fn rabbitmq_worker(url: &str, queue: &str, traced: bool) -> Vec<u64> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await.expect("RabbitMQ connects");
    let channel = connection.create_channel().await.expect("a channel");
    channel.basic_qos(PREFETCH, BasicQosOptions::default()).await.expect("basic.qos");
    // Consuming starts when every worker is connected: the first would otherwise take its share alone.
    println!("ready");
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await.expect("stdin").ok();
    let mut consumer = channel
        .basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("basic.consume");
    let handle = if traced { handle_traced_delivery } else { handle_untraced_delivery };
    let mut finished = Vec::new();
    loop {
        let patience = if finished.is_empty() { Duration::from_secs(60) } else { IDLE };
        match tokio::time::timeout(patience, consumer.next()).await {
            Ok(Some(Ok(delivery))) => {
                handle(&delivery);
                delivery.ack(BasicAckOptions::default()).await.expect("basic.ack");
                finished.push(now_ns());
            }
            Ok(Some(Err(error))) => panic!("consuming: {error}"),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = connection.close(200, "done".into()).await;
    finished
}

/// What one run measured.
struct Run {
    /// Messages per second while every worker was handling.
    rate: f64,
    /// Messages handled in all (duplicates a rebalance redelivered included).
    handled: usize,
    /// The share of them handled while every worker was handling.
    in_window: f64,
}

/// Starts `processes` workers, starts them all at once when they are ready (every Kafka worker assigned its
/// share of a settled group; every RabbitMQ worker connected), waits for them all to go idle and reads their times.
fn run_workers(processes: usize, worker_args: &[&str], scratch: &Path) -> Run {
    let exe = std::env::current_exe().expect("this bench's executable");
    let outs: Vec<PathBuf> = (0..processes).map(|index| scratch.join(format!("worker-{index}"))).collect();
    let mut children: Vec<Child> = outs
        .iter()
        .map(|out| {
            Command::new(&exe)
                .arg("worker")
                .args(worker_args)
                .arg(out)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("a worker process starts")
        })
        .collect();
    let (lines, said) = std::sync::mpsc::channel();
    for (index, child) in children.iter_mut().enumerate() {
        let stdout = child.stdout.take().expect("the worker's stdout");
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send((index, line));
            }
        });
    }
    let kafka = worker_args[0] == "kafka";
    let mut states: Vec<Option<String>> = vec![None; processes];
    let settled = |states: &[Option<String>]| {
        if kafka {
            let assigned: Vec<i32> = states
                .iter()
                .map(|state| {
                    state.as_deref().and_then(|line| line.strip_prefix("assigned ")?.parse().ok()).unwrap_or(0)
                })
                .collect();
            assigned.iter().all(|&count| count > 0) && assigned.iter().sum::<i32>() == PARTITIONS
        } else {
            states.iter().all(|state| state.as_deref() == Some("ready"))
        }
    };
    // Settled, and no worker has reported a change for a second: the group's rebalances are over.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match said.recv_timeout(Duration::from_secs(1)) {
            Ok((index, line)) => states[index] = Some(line),
            Err(_) if settled(&states) => break,
            Err(_) => assert!(Instant::now() < deadline, "the workers did not settle: {states:?}"),
        }
    }
    for child in &mut children {
        let mut stdin = child.stdin.take().expect("the worker's stdin");
        stdin.write_all(b"start\n").expect("the start reaches the worker");
    }
    for mut child in children {
        assert!(child.wait().expect("the worker ends").success(), "a worker failed");
    }
    let times: Vec<Vec<u64>> = outs
        .iter()
        .map(|out| {
            let bytes = std::fs::read(out).expect("the worker's times");
            let _ = std::fs::remove_file(out);
            bytes.chunks_exact(8).map(|chunk| u64::from_le_bytes(chunk.try_into().expect("8 bytes"))).collect()
        })
        .collect();
    assert!(times.iter().all(|times| !times.is_empty()), "a worker handled no message");
    let spawned = times.iter().map(|times| times[0]).min().expect("workers");
    let seconds = |time: u64| (time - spawned) as f64 / 1e9;
    let spans: Vec<String> = times
        .iter()
        .map(|times| {
            format!("{} from {:.2} s to {:.2} s", times.len(), seconds(times[0]), seconds(times[times.len() - 1]))
        })
        .collect();
    println!("scale workers: {}", spans.join("; "));
    let start = times.iter().map(|times| times[0]).max().expect("workers");
    let end = times.iter().map(|times| *times.last().expect("a time")).min().expect("workers");
    let handled: usize = times.iter().map(Vec::len).sum();
    let counted: usize =
        times.iter().map(|times| times.iter().filter(|&&time| time > start && time <= end).count()).sum();
    if end <= start || counted == 0 {
        // One worker finished before another began: nothing was measured with them all at work.
        return Run { rate: f64::NAN, handled, in_window: 0.0 };
    }
    Run { rate: counted as f64 / ((end - start) as f64 / 1e9), handled, in_window: counted as f64 / handled as f64 }
}

fn scaling(args: &[String]) {
    let value_of = |flag: &str| {
        args.iter().position(|arg| arg == flag).and_then(|at| args.get(at + 1)).and_then(|value| value.parse().ok())
    };
    let messages: usize = value_of("--messages").unwrap_or(1_000_000);
    // A RabbitMQ queue is filled again before every run, at the pace of publisher confirms: fewer messages.
    let queued: usize = value_of("--queued").unwrap_or(100_000);
    let rounds: usize = value_of("--rounds").unwrap_or(3);
    let scratch = std::env::temp_dir().join(format!("tracehop-scale-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("a scratch directory");
    println!("scale messages {messages} queued {queued} rounds {rounds} partitions {PARTITIONS} prefetch {PREFETCH}");
    match std::env::var("TRACEHOP_KAFKA_BOOTSTRAP") {
        Ok(bootstrap) => {
            let topic = format!("scale-{}", std::process::id());
            create_topic(&bootstrap, &topic, PARTITIONS);
            let rate = fill_topic(&bootstrap, &topic, PARTITIONS, messages);
            println!("scale kafka filled {messages} messages at {rate:.0} messages/s");
            measure("kafka", KAFKA_PROCESSES, rounds, |processes, traced, run| {
                let group = format!("{topic}-{processes}-{traced}-{run}");
                run_workers(processes, &["kafka", traced, &bootstrap, &topic, &group], &scratch)
            });
        }
        Err(_) => println!("scale kafka: not measured, TRACEHOP_KAFKA_BOOTSTRAP is not set (scripts/tansu sets it)"),
    }
    match std::env::var("AMQP_URL") {
        Ok(url) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            let queue = format!("scale-{}", std::process::id());
            let channel = runtime.block_on(queue_channel(&url, &queue));
            measure("rabbitmq", RABBITMQ_PROCESSES, rounds, |processes, traced, _| {
                runtime.block_on(fill_queue(&channel, &queue, queued));
                run_workers(processes, &["rabbitmq", traced, &url, &queue, "-"], &scratch)
            });
            runtime.block_on(async {
                let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
            });
        }
        Err(_) => println!("scale rabbitmq: not measured, AMQP_URL is not set (scripts/rabbitmq sets it)"),
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Runs every process count untraced and traced, `rounds` times, alternating; prints each run and the medians.
fn measure(broker: &str, counts: &[usize], rounds: usize, mut run: impl FnMut(usize, &str, usize) -> Run) {
    let mut rates = std::collections::BTreeMap::<(usize, &str), Vec<f64>>::new();
    let mut number = 0;
    for round in 0..rounds {
        for &processes in counts {
            for traced in ["untraced", "traced"] {
                let started = Instant::now();
                let result = run(processes, traced, number);
                number += 1;
                println!(
                    "scale {broker} round {round} processes {processes} {traced}: {:.0} messages/s ({} handled, \
                     {:.0}% while all were handling, {:.1} s)",
                    result.rate,
                    result.handled,
                    100.0 * result.in_window,
                    started.elapsed().as_secs_f64()
                );
                // A run counts when its workers were all handling for at least half its messages: a worker
                // sometimes starts a second after the others, and a shorter window is too short to measure.
                if result.rate.is_finite() && result.in_window >= 0.5 {
                    rates.entry((processes, traced)).or_default().push(result.rate);
                }
            }
        }
    }
    for &processes in counts {
        for traced in ["untraced", "traced"] {
            match rates.get(&(processes, traced)) {
                Some(rates) => println!("scale {broker} {processes} {traced} {:.0}", median(rates.clone())),
                None => println!("scale {broker} {processes} {traced}: no run had every worker handling at once"),
            }
        }
    }
}

async fn queue_channel(url: &str, queue: &str) -> lapin::Channel {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| panic!("RabbitMQ at {url} is unreachable: {error}"));
    let channel = connection.create_channel().await.expect("a channel");
    channel.confirm_select(Default::default()).await.expect("publisher confirms");
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("queue.declare");
    // The connection lives as long as the channel is used: leaked on purpose, it closes with the process.
    std::mem::forget(connection);
    channel
}

async fn fill_queue(channel: &lapin::Channel, queue: &str, messages: usize) {
    let mut confirms = Vec::with_capacity(messages);
    for index in 0..messages {
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString(LongString::from(message_traceparent(index))));
        headers.insert("tracestate".into(), AMQPValue::LongString(LongString::from(TRACESTATE)));
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

// ---------------------------------------------------------------------------------------------------------------
// Soak

/// Counts the spans the SDK ends: what the exporter's batch processor was handed.
#[derive(Debug)]
struct EndedSpans(Arc<AtomicU64>);

impl SpanProcessor for EndedSpans {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}
    fn on_end(&self, _span: SpanData) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// An OTLP/HTTP collector on loopback: answers every request with an empty success and adds the spans of each
/// export to `spans` (and one to `requests`). Its base URL.
fn collector(spans: Arc<AtomicU64>, requests: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (spans, requests) = (spans.clone(), requests.clone());
            std::thread::spawn(move || serve(stream, &spans, &requests));
        }
    });
    url
}

fn serve(stream: TcpStream, spans: &AtomicU64, requests: &AtomicU64) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        spans.fetch_add(count_spans(&body), Ordering::Relaxed);
        requests.fetch_add(1, Ordering::Relaxed);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if reader.get_mut().write_all(answer).is_err() {
            return;
        }
    }
}

/// The fields of one protobuf message: (field number, the bytes of a length-delimited field), other wire types
/// skipped.
fn length_delimited_fields(mut bytes: &[u8]) -> Vec<(u64, &[u8])> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut fields = Vec::new();
    while let Some(key) = varint(&mut bytes) {
        let skip = match key & 7 {
            0 => varint(&mut bytes).map(|_| 0),
            1 => Some(8),
            2 => {
                let Some(length) = varint(&mut bytes).map(|length| length as usize) else { break };
                let Some(field) = bytes.get(..length) else { break };
                fields.push((key >> 3, field));
                Some(length)
            }
            5 => Some(4),
            _ => None,
        };
        let Some(skip) = skip.filter(|&skip| skip <= bytes.len()) else { break };
        bytes = &bytes[skip..];
    }
    fields
}

/// The spans in an OTLP `ExportTraceServiceRequest`: its `resource_spans` (1), their `scope_spans` (2), their
/// `spans` (2).
fn count_spans(request: &[u8]) -> u64 {
    let mut count = 0;
    for (_, resource_spans) in length_delimited_fields(request).into_iter().filter(|(field, _)| *field == 1) {
        for (_, scope_spans) in length_delimited_fields(resource_spans).into_iter().filter(|(field, _)| *field == 2) {
            count += length_delimited_fields(scope_spans).iter().filter(|(field, _)| *field == 2).count() as u64;
        }
    }
    count
}

/// This process's resident memory, in bytes (`/proc/self/statm`'s second field, in pages of 4 KiB).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|pages| pages.parse().ok()).expect("resident pages");
    pages * 4096
}

fn soak(args: &[String]) {
    let value_of = |flag: &str| {
        args.iter().position(|arg| arg == flag).and_then(|at| args.get(at + 1)).and_then(|value| value.parse().ok())
    };
    let messages: usize = value_of("--messages").unwrap_or(SOAK_MESSAGES);
    // A steady pace, in messages per second, as a service whose handlers do work runs; unset, as fast as it goes.
    let pace = value_of("--pace").map(|pace: usize| pace as f64);
    let bootstrap = std::env::var("TRACEHOP_KAFKA_BOOTSTRAP")
        .expect("the soak needs a broker at TRACEHOP_KAFKA_BOOTSTRAP (scripts/tansu sets it)");
    let topic = format!("soak-{}", std::process::id());
    create_topic(&bootstrap, &topic, 1);
    let fill_started = Instant::now();
    // Published by a process of its own, so that the producer's memory is not in the consumer's figure.
    let exe = std::env::current_exe().expect("this bench's executable");
    let status = Command::new(exe)
        .args(["fill", &bootstrap, &topic, &messages.to_string()])
        .status()
        .expect("the producer process starts");
    assert!(status.success(), "the producer process failed");
    println!("soak filled {messages} messages in {:.1} s", fill_started.elapsed().as_secs_f64());

    // The batch processor reads its settings from these variables; unset, its defaults.
    let setting = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    println!(
        "soak settings queue {} batch {} delay-ms {}",
        setting("OTEL_BSP_MAX_QUEUE_SIZE", "2048"),
        setting("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
        setting("OTEL_BSP_SCHEDULE_DELAY", "5000")
    );
    println!("soak pace {}", pace.map_or("unpaced".to_owned(), |pace| format!("{pace:.0}")));
    let (received, requests, ended) = (Arc::default(), Arc::default(), Arc::new(AtomicU64::new(0)));
    let url = collector(Arc::clone(&received), Arc::clone(&requests));
    let telemetry = tracehop::Telemetry::builder()
        .service_name("tracehop-soak")
        .endpoint(format!("{url}/v1/traces"))
        .protocol(tracehop::OtlpProtocol::HttpProtobuf)
        .sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_span_processor(EndedSpans(Arc::clone(&ended)))
        .install()
        .expect("the telemetry installs");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("{topic}-consumer"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[topic.as_str()]).expect("subscribe");
    println!("soak window 0 {} 0", resident_bytes());
    let started = Instant::now();
    let mut window_started = Instant::now();
    // The pace counts from the first message: joining the group is not handling.
    let mut first = Instant::now();
    let mut handled = 0;
    let mut last = Instant::now();
    while handled < messages {
        // `poll` also returns `None` early, once it has served a rebalance or another event.
        match consumer.poll(Duration::from_secs(1)) {
            Some(Ok(message)) => {
                last = Instant::now();
                if handled == 0 {
                    window_started = Instant::now();
                    first = Instant::now();
                }
                handle_traced(&message);
                handled += 1;
                if let Some(pace) = pace.filter(|_| handled % 1_000 == 0) {
                    let due = Duration::from_secs_f64(handled as f64 / pace);
                    std::thread::sleep(due.saturating_sub(first.elapsed()));
                }
                if handled % SOAK_WINDOW == 0 {
                    let rate = SOAK_WINDOW as f64 / window_started.elapsed().as_secs_f64();
                    println!("soak window {handled} {} {rate:.0}", resident_bytes());
                    window_started = Instant::now();
                }
            }
            Some(Err(error)) => panic!("consuming: {error}"),
            None => {
                assert!(last.elapsed() < Duration::from_secs(60), "no message for 60 s after {handled} of {messages}")
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("soak handled {handled} in {elapsed:.1} s ({:.0} messages/s)", handled as f64 / elapsed);
    drop(consumer);
    telemetry.shutdown().expect("the telemetry shuts down");
    let made = ended.load(Ordering::Relaxed);
    // The last export is answered before shutdown returns; its count lands a moment later at most.
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::Relaxed) < made && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = received.load(Ordering::Relaxed);
    println!("soak exports {}", requests.load(Ordering::Relaxed));
    println!("soak spans {made} {got} {}", made.saturating_sub(got));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("worker") => worker(&args[1..]),
        Some("fill") => {
            let [bootstrap, topic, messages] = &args[1..] else { panic!("fill BOOTSTRAP TOPIC MESSAGES") };
            let rate = fill_topic(bootstrap, topic, 1, messages.parse().expect("a count"));
            println!("soak filled at {rate:.0} messages/s");
        }
        Some("scaling") => scaling(&args[1..]),
        Some("soak") => soak(&args[1..]),
        _ => eprintln!("usage: scale scaling [--messages N] [--rounds R] | scale soak [--messages N]"),
    }
}
