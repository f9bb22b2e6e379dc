//! A service as a user writes one with tracehop, run as its own process by `tests/kafka_consumer_group.rs`:
//! telemetry from the standard `OTEL_*` variables (`tracehop::init()`, OTLP over HTTP), a traced producer, and a
//! traced consumer in a consumer group that commits each message after handling it.
//!
//! ```text
//! kafka-group-worker produce BOOTSTRAP TOPIC FIRST..END [PROPERTY=VALUE ...]
//! kafka-group-worker consume BOOTSTRAP TOPIC GROUP [HANG_AFTER]
//! ```
//!
//! `produce` publishes the messages FIRST to END (exclusive), keyed and carrying their index, each from a
//! `#[traced_producer]` function of its own (so each is the root of a trace of its own), waits for every delivery,
//! shuts the tracer provider down (every span exported) and prints `published FIRST..END`. Each PROPERTY=VALUE is set
//! on the producer's librdkafka configuration.
//!
//! `consume` joins GROUP on TOPIC and handles each message inside its CONSUMER span (tracehop's
//! `ConsumerTracing` over the consumer's stream, the group named at run time), committing the offset after it from
//! inside that span (`tracehop::clients::kafka::commit_message`, asynchronous: the next message does not wait for
//! the broker). On stdout, one line per step, for the test to follow:
//! `assigned TOPIC/PARTITION ...`, `revoked TOPIC/PARTITION ...`, `handled KEY PARTITION OFFSET COUNT`,
//! `hanging KEY PARTITION OFFSET`, `stopped COUNT`, `commit failed: ERROR`, and `exported` once its last spans
//! are out. When partitions are revoked it first commits, synchronously, the position of every partition it had
//! (what it handled and committed asynchronously so far), so the consumer taking them over starts after the last
//! message handled here: tracehop commits nothing on its own. The broker may refuse that commit (a rebalance
//! already under way): the next owner then reads again what was handled here since the last commit that counted.
//! With HANG_AFTER, the message after the first HANG_AFTER hangs forever in its handler (its span never ends):
//! a stuck service, which the test then kills.
//!
//! It stops when its standard input closes: it stops taking messages, commits synchronously, leaves the group,
//! exports the spans still waiting and exits 0. Standard input, rather than SIGTERM: it needs nothing beyond the
//! standard library (no signal handling), and it closes when the test process ends however it ends, so no worker
//! outlives a failed test to linger in the broker's group.

use std::error::Error;
use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use tracehop::clients::ConsumerTracing;
use tracehop::Handler;

/// The function named in the CONSUMER spans' `code.function.name`.
const HANDLE_FUNCTION: &str = "kafka_group_worker::handle";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let telemetry = tracehop::init()?;
    match arguments.as_slice() {
        ["produce", bootstrap, topic, range, properties @ ..] => {
            let (first, end) = range.split_once("..").ok_or_else(|| format!("{range}: not FIRST..END"))?;
            produce(bootstrap, topic, first.parse()?..end.parse()?, properties).await?
        }
        ["consume", bootstrap, topic, group] => consume(bootstrap, topic, group, None).await?,
        ["consume", bootstrap, topic, group, hang_after] => {
            consume(bootstrap, topic, group, Some(hang_after.parse()?)).await?
        }
        _ => return Err(format!(
            "usage: {} produce BOOTSTRAP TOPIC FIRST..END [PROPERTY=VALUE ...] | consume BOOTSTRAP TOPIC GROUP [HANG_AFTER]",
            env!("CARGO_BIN_NAME")
        )
        .into()),
    }
    // Every span exported before the process says it is done.
    telemetry.shutdown()?;
    say(format_args!("exported"));
    Ok(())
}

/// One line on stdout, flushed at once: the test reads it while the process runs.
fn say(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    // A test that stopped listening is no reason to stop working.
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

#[tracehop::traced_producer]
async fn publish(producer: &FutureProducer, record: FutureRecord<'_, str, str>) -> Result<(), KafkaError> {
    producer.send(record, Duration::from_secs(30)).await.map(|_| ()).map_err(|(error, _)| error)
}

async fn produce(
    bootstrap: &str,
    topic: &str,
    indexes: std::ops::Range<usize>,
    properties: &[&str],
) -> Result<(), Box<dyn Error>> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for property in properties {
        let (name, value) = property.split_once('=').ok_or_else(|| format!("{property}: not PROPERTY=VALUE"))?;
        config.set(name, value);
    }
    let producer: FutureProducer = config.create()?;
    // All at once, each in a task of its own: no publish is the child of another, and librdkafka batches them.
    let publishes: Vec<_> = indexes
        .clone()
        .map(|index| {
            let (producer, topic) = (producer.clone(), topic.to_owned());
            tokio::spawn(async move {
                let key = index.to_string();
                publish(&producer, FutureRecord::to(&topic).key(key.as_str()).payload(key.as_str())).await
            })
        })
        .collect();
    for published in publishes {
        published.await??;
    }
    producer.flush(Duration::from_secs(30))?;
    say(format_args!("published {indexes:?}"));
    Ok(())
}

/// Says which partitions come and go, and commits what was handled before partitions go to another consumer.
struct Rebalances;

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Before the partitions go: the positions of what this consumer handled, so that the next owner
            // resumes after it. An asynchronous commit still in flight could otherwise land after the group
            // moved on, and be refused.
            commit_position(consumer);
            say(format_args!("revoked {}", partition_names(partitions)));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            say(format_args!("assigned {}", partition_names(partitions)));
        }
    }
}

/// Commits the consumer's position on every partition it has, synchronously; nothing handled since the last
/// commit is not an error.
fn commit_position<C: ConsumerContext>(consumer: &impl Consumer<C>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => say(format_args!("commit failed: {error}")),
    }
}

fn partition_names(partitions: &TopicPartitionList) -> String {
    let names: Vec<String> =
        partitions.elements().iter().map(|element| format!("{}/{}", element.topic(), element.partition())).collect();
    names.join(" ")
}

async fn consume(bootstrap: &str, topic: &str, group: &str, hang_after: Option<usize>) -> Result<(), Box<dyn Error>> {
    // The group is named at run time, so the handler is built once here and kept for the life of the process.
    let group: &'static str = Box::leak(group.to_owned().into_boxed_str());
    let handler: &'static Handler = Box::leak(Box::new(Handler::consumer(HANDLE_FUNCTION).group(group)));
    let consumer: StreamConsumer<Rebalances> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // A killed member is noticed after this long, and its partitions handed on.
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create_with_context(Rebalances)?;
    consumer.subscribe(&[topic])?;
    let stop = stdin_closed();
    tokio::pin!(stop);

    let mut messages = ConsumerTracing::new(handler).stream(consumer.stream());
    let mut handled = 0_usize;
    loop {
        let message = tokio::select! {
            _ = &mut stop => break,
            message = messages.next() => message,
        };
        let Some(message) = message else { break };
        // A service logs a failed receive and goes on: librdkafka retries on its own.
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                say(format_args!("receive failed: {error}"));
                continue;
            }
        };
        let hang = hang_after == Some(handled);
        let consumer = &consumer;
        let Ok((key, partition, offset, committed)) = message.process(|message| {
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            let (partition, offset) = (message.partition(), message.offset());
            if hang {
                say(format_args!("hanging {key} {partition} {offset}"));
                loop {
                    std::thread::park();
                }
            }
            // Handled: now its offset may be committed, from inside its span (which records a failure).
            let committed = tracehop::clients::kafka::commit_message(consumer, &message, CommitMode::Async);
            // The handling itself succeeded, whatever the commit answered.
            Ok::<_, std::convert::Infallible>((key, partition, offset, committed))
        });
        handled += 1;
        say(format_args!("handled {key} {partition} {offset} {handled}"));
        if let Err(error) = committed {
            // The next commit on the partition covers this one.
            say(format_args!("commit failed: {error}"));
        }
    }
    drop(messages);
    commit_position(&consumer);
    consumer.unsubscribe();
    say(format_args!("stopped {handled}"));
    Ok(())
}

/// Completes when standard input reaches its end (the test closed it, or ended).
async fn stdin_closed() {
    let (closed, on_close) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed.send(());
    });
    let _ = on_close.await;
}
