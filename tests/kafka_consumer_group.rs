//! Many processes, one consumer group, and every message still in its producer's trace.
//!
//! Producer processes publish thousands of traced messages to a topic of several partitions; consumer processes of
//! one group handle them, each committing after handling; one consumer is killed (SIGKILL) mid-run and another
//! started, so partitions move between processes (the second producer starts once the fourth consumer has joined,
//! so that it has messages to handle). Every process exports its spans over OTLP/HTTP to one collector
//! on loopback, as a deployment would, and the test assembles the traces from what it received. The processes are
//! `kafka-group-worker` (`tests/processes/kafka_group_worker.rs`), a service written with tracehop's public API
//! only. The broker is the suite's (`suite::Broker`): librdkafka's mock cluster in this process, reached over
//! loopback by the workers, or tansu at `TRACEHOP_KAFKA_BOOTSTRAP`.
//!
//! Kafka marks no redelivery: a consumer reading a message again after a rebalance cannot tell, so no span says
//! so. What the test holds a duplicate to is where it can come from: of the processes that handled a message more
//! than once, one was killed, or lost the message's partition in a rebalance after handling it, before its commit
//! counted (and may have been given the partition back, and read the message again itself).
//!
//! The consumer killed is one that hangs in a handler (a stuck service, killed as a supervisor would kill it), and
//! it is killed once the collector has the spans of everything it handled: a process killed with SIGKILL loses the
//! spans its batch processor had not exported yet, which no instrumentation inside it can save. The span of the
//! handling cut short by the kill never ends, so it is never exported: that message's trace holds the handling by
//! the process that took the partition over.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as ProtoValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use rdkafka::producer::Producer as _;
use suite::HttpRequest;

const WORKER: &str = env!("CARGO_BIN_EXE_kafka-group-worker");
/// Messages published: the first producer publishes those below [`FIRST_PRODUCER`], the second, once the fourth
/// consumer has joined, the rest.
const MESSAGES: usize = 3_000;
const FIRST_PRODUCER: usize = 2_000;
const PARTITIONS: i32 = 6;
/// The first consumer hangs in the handler of its next message after handling this many, and is killed.
const HANG_AFTER: usize = 200;
/// How long the run may take to make progress before the test gives up and says where it stood.
const PATIENCE: Duration = Duration::from_secs(60);

/// One span as the collector received it, with the `service.instance.id` of the process that sent it.
#[derive(Clone, Debug)]
struct Received {
    instance: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    kind: i32,
    attributes: Vec<KeyValue>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&ProtoValue> {
        self.attributes.iter().find(|attribute| attribute.key == key)?.value.as_ref()?.value.as_ref()
    }

    fn text(&self, key: &str) -> Option<&str> {
        match self.attribute(key)? {
            ProtoValue::StringValue(value) => Some(value),
            _ => None,
        }
    }

    fn key(&self) -> Option<&str> {
        self.text("messaging.kafka.message.key")
    }

    fn describe(&self) -> String {
        format!("span {:?} ({}) from {} in trace {}", self.name, hex(&self.span_id), self.instance, hex(&self.trace_id))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Every span in one OTLP/HTTP protobuf export.
fn spans_of(request: &HttpRequest) -> Vec<Received> {
    assert_eq!(request.request_line, "POST /v1/traces HTTP/1.1", "the workers export traces over OTLP/HTTP");
    let export = ExportTraceServiceRequest::decode(request.body.as_slice()).expect("an OTLP protobuf body");
    let mut spans = Vec::new();
    for resource_spans in export.resource_spans {
        let instance = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.instance.id")
            .and_then(|attribute| match attribute.value.as_ref()?.value.as_ref()? {
                ProtoValue::StringValue(instance) => Some(instance.clone()),
                _ => None,
            })
            .expect("every worker names its instance (OTEL_RESOURCE_ATTRIBUTES)");
        for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            spans.push(Received {
                instance: instance.clone(),
                trace_id: span.trace_id,
                span_id: span.span_id,
                parent_span_id: span.parent_span_id,
                name: span.name,
                kind: span.kind,
                attributes: span.attributes,
            });
        }
    }
    spans
}

/// What a consumer process said it did, in its order.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// It handled (and committed asynchronously) the message with this key, at this partition and offset.
    Handled { key: String, partition: i32, offset: i64 },
    /// It was given these partitions in a rebalance.
    Assigned(Vec<i32>),
    /// It gave these partitions up in a rebalance (after committing its position on them).
    Revoked(Vec<i32>),
    /// It hangs in the handler of this message.
    Hanging { key: String },
    /// It stopped taking messages, committed and left the group.
    Stopped,
    /// It exported its last spans, and ends.
    Exported,
    /// Anything else: a commit that failed, say.
    Other(String),
}

fn step(line: &str) -> Step {
    let words: Vec<&str> = line.split(' ').collect();
    let partition_of = |name: &&str| name.rsplit_once('/').and_then(|(_, partition)| partition.parse().ok());
    match words.as_slice() {
        ["handled", key, partition, offset, _count] => Step::Handled {
            key: (*key).to_owned(),
            partition: partition.parse().expect("a partition"),
            offset: offset.parse().expect("an offset"),
        },
        ["assigned", partitions @ ..] => Step::Assigned(partitions.iter().filter_map(partition_of).collect()),
        ["revoked", partitions @ ..] => Step::Revoked(partitions.iter().filter_map(partition_of).collect()),
        ["hanging", key, ..] => Step::Hanging { key: (*key).to_owned() },
        ["stopped", ..] => Step::Stopped,
        ["exported"] => Step::Exported,
        _ => Step::Other(line.to_owned()),
    }
}

/// A line a worker printed, after the name of the worker.
type Line = (String, String);

/// The worker processes, the lines they print and the spans the collector received.
struct Run {
    topic: String,
    group: String,
    bootstrap: String,
    endpoint: String,
    collector: Receiver<HttpRequest>,
    lines: (Sender<Line>, Receiver<Line>),
    processes: BTreeMap<String, (Child, Option<ChildStdin>)>,
    steps: BTreeMap<String, Vec<Step>>,
    handled: BTreeSet<String>,
    spans: Vec<Received>,
    started: Instant,
}

impl Run {
    /// Starts the worker `instance` with `arguments`, exporting to the collector as `service.instance.id =
    /// instance`, and reads its stdout on a thread of its own.
    fn start(&mut self, instance: &str, arguments: &[&str]) {
        let mut command = Command::new(WORKER);
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("OTEL_")) {
            command.env_remove(name);
        }
        let mut child = command
            .args(arguments)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &self.endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_SERVICE_NAME", "kafka-group-worker")
            .env("OTEL_RESOURCE_ATTRIBUTES", format!("service.instance.id={instance}"))
            // Exported within a tenth of a second of ending, and none dropped for a full queue: the producer ends
            // thousands of spans at once.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_BSP_MAX_QUEUE_SIZE", "65536")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("{WORKER} starts: {error}"));
        let stdout = child.stdout.take().expect("its stdout");
        let (lines, name) = (self.lines.0.clone(), instance.to_owned());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if lines.send((name.clone(), line)).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        self.processes.insert(instance.to_owned(), (child, stdin));
        self.steps.insert(instance.to_owned(), Vec::new());
    }

    /// Starts a producer publishing the messages `indexes`.
    fn start_producer(&mut self, instance: &str, broker: &suite::Broker, indexes: std::ops::Range<usize>) {
        let (bootstrap, topic, range) = (self.bootstrap.clone(), self.topic.clone(), format!("{indexes:?}"));
        let mut arguments = vec!["produce", &bootstrap, &topic, &range];
        if !broker.is_mock() {
            // One message per record batch on tansu: tansu 0.6 answers a fetch from an offset inside a record
            // batch with the batches after it, so a consumer resuming at a committed offset inside a batch (where
            // the killed consumer stopped) would never see the rest of that batch. The mock cluster gets
            // librdkafka's batches, and resumes inside them.
            arguments.push("batch.num.messages=1");
        }
        self.start(instance, &arguments);
    }

    fn start_consumer(&mut self, instance: &str, hang_after: Option<usize>) {
        let (bootstrap, topic, group) = (self.bootstrap.clone(), self.topic.clone(), self.group.clone());
        let hang_after = hang_after.map(|count| count.to_string());
        let mut arguments = vec!["consume", &bootstrap, &topic, &group];
        arguments.extend(hang_after.as_deref());
        self.start(instance, &arguments);
    }

    /// Reads what the processes said and the collector received until `done` holds, failing after [`PATIENCE`]
    /// without progress with `what` and where the run stood.
    fn wait_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let mut deadline = Instant::now() + PATIENCE;
        while !done(self) {
            self.spans.extend(self.collector.try_iter().flat_map(|request| spans_of(&request)));
            match self.lines.1.recv_timeout(Duration::from_millis(50)) {
                Ok((instance, line)) => {
                    let step = step(&line);
                    if let Step::Handled { key, .. } = &step {
                        self.handled.insert(key.clone());
                    }
                    self.steps.get_mut(&instance).expect("a process this run started").push(step);
                    deadline = Instant::now() + PATIENCE;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the run holds a sender"),
            }
            for (instance, (child, _)) in &mut self.processes {
                if let Some(status) = child.try_wait().expect("the process's status") {
                    assert!(status.success(), "{instance} ended early, with {status}, while waiting until {what}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "no progress in {PATIENCE:?} while waiting until {what}: {} of {MESSAGES} messages handled (not \
                 {:?}), {} spans received; what each process handled and where it stands: {:?}",
                self.handled.len(),
                (0..MESSAGES)
                    .map(|index| index.to_string())
                    .filter(|key| !self.handled.contains(key))
                    .take(20)
                    .collect::<Vec<_>>(),
                self.spans.len(),
                self.steps
                    .keys()
                    .map(|instance| (instance, self.handled_by(instance).len(), self.assignment(instance)))
                    .collect::<Vec<_>>(),
            );
        }
    }

    /// Closes `instance`'s stdin (its signal to stop: commit, leave the group, export) and waits for it to say it
    /// stopped and exported, and to exit.
    fn stop(&mut self, instance: &str) {
        let (_, stdin) = self.processes.get_mut(instance).expect("a process this run started");
        drop(stdin.take());
        self.wait_until(&format!("{instance} stops"), |run| {
            let steps = &run.steps[instance];
            steps.contains(&Step::Stopped) && steps.last() == Some(&Step::Exported)
        });
        let (child, _) = self.processes.get_mut(instance).expect("a process this run started");
        let status = child.wait().expect("the process's status");
        assert!(status.success(), "{instance} stops cleanly when asked to, but ended with {status}");
    }

    /// The partitions `instance` has now, as far as it has said: none while it is rebalancing.
    fn assignment(&self, instance: &str) -> Option<&[i32]> {
        match self.steps[instance].iter().rev().find(|step| matches!(step, Step::Assigned(_) | Step::Revoked(_)))? {
            Step::Assigned(partitions) => Some(partitions),
            _ => None,
        }
    }

    /// Whether `instances` hold every partition between them, each at least one and none twice, as far as they
    /// have said.
    fn share_every_partition(&self, instances: &[&str]) -> bool {
        let assigned: Vec<&[i32]> = instances.iter().filter_map(|instance| self.assignment(instance)).collect();
        let partitions: BTreeSet<i32> = assigned.iter().flat_map(|partitions| partitions.iter().copied()).collect();
        assigned.len() == instances.len()
            && assigned.iter().all(|partitions| !partitions.is_empty())
            && partitions.len() == PARTITIONS as usize
            && assigned.iter().map(|partitions| partitions.len()).sum::<usize>() == PARTITIONS as usize
    }

    fn handled_by(&self, instance: &str) -> Vec<String> {
        self.steps[instance]
            .iter()
            .filter_map(|step| match step {
                Step::Handled { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // A failed test leaves no worker behind.
        for (child, _) in self.processes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn every_message_stays_in_its_producers_trace_across_consumer_processes_a_kill_and_rebalances() {
    let broker = suite::Broker::start();
    let topic = suite::unique_topic("group-orders");
    broker.create_topic(&topic, PARTITIONS);
    let (endpoint, collector) = suite::otlp_http_collector();
    let mut run = Run {
        group: format!("workers.{topic}"),
        topic: topic.clone(),
        bootstrap: broker.bootstrap_servers(),
        endpoint,
        collector,
        lines: mpsc::channel(),
        processes: BTreeMap::new(),
        steps: BTreeMap::new(),
        handled: BTreeSet::new(),
        spans: Vec::new(),
        started: Instant::now(),
    };

    run.start_consumer("consumer-1", Some(HANG_AFTER));
    run.start_consumer("consumer-2", None);
    run.start_consumer("consumer-3", None);
    // Publishing starts once the group has settled, every partition with one of the three: else the first to
    // join could take every message before the others have any partition.
    run.wait_until("the three consumers share the partitions", |run| {
        run.share_every_partition(&["consumer-1", "consumer-2", "consumer-3"])
    });
    run.start_producer("producer-1", &broker, 0..FIRST_PRODUCER);

    // The first consumer hangs; once the collector has the span of everything it handled, it is killed.
    run.wait_until("consumer-1 hangs in a handler", |run| {
        run.steps["consumer-1"].iter().any(|step| matches!(step, Step::Hanging { .. }))
    });
    let hung = run.steps["consumer-1"]
        .iter()
        .find_map(|step| match step {
            Step::Hanging { key } => Some(key.clone()),
            _ => None,
        })
        .expect("the message it hangs on");
    let handled_by_killed: BTreeSet<String> = run.handled_by("consumer-1").into_iter().collect();
    assert_eq!(handled_by_killed.len(), HANG_AFTER, "consumer-1 handles {HANG_AFTER} messages before it hangs");
    run.wait_until("the collector has consumer-1's spans", |run| {
        let exported: BTreeSet<&str> = run
            .spans
            .iter()
            .filter(|span| span.instance == "consumer-1" && span.kind == SpanKind::Consumer as i32)
            .filter_map(Received::key)
            .collect();
        handled_by_killed.iter().all(|key| exported.contains(key.as_str()))
    });
    let (mut killed, _) = run.processes.remove("consumer-1").expect("consumer-1");
    killed.kill().expect("SIGKILL reaches consumer-1");
    killed.wait().expect("consumer-1 is gone");
    let killed_at = run.handled.len();
    // The fourth consumer joins once the broker has dropped the killed one from the group (its session timed out).
    // Joining at once works on librdkafka's mock cluster, but tansu 0.6 then can leave a partition to nobody: the
    // killed member, still known when the rebalance starts, gets its share of the assignment, and is then dropped
    // from the forming group without another rebalance (`Inner<O, Forming>::missed_heartbeat`, whose answer its
    // caller ignores), so no message of that partition is handled again. Nor does tansu rebalance when it drops a
    // member of a formed group: the fourth consumer's join is what hands the killed one's partitions on there.
    // The mock cluster rebalances when the session ends, but lists no group's members; tansu lists them.
    let observer = broker.producer();
    run.wait_until("the broker has dropped consumer-1 from the group", |run| {
        let groups = observer.client().fetch_group_list(Some(&run.group), Duration::from_secs(5));
        run.share_every_partition(&["consumer-2", "consumer-3"])
            || groups.is_ok_and(|groups| matches!(groups.groups(), [group] if group.members().len() == 2))
    });
    run.start_consumer("consumer-4", None);
    // The rest once the fourth has partitions: it handles some of them, and so do the others.
    run.wait_until("consumer-2, consumer-3 and consumer-4 share the partitions", |run| {
        run.share_every_partition(&["consumer-2", "consumer-3", "consumer-4"])
    });
    run.start_producer("producer-2", &broker, FIRST_PRODUCER..MESSAGES);

    run.wait_until("every message is handled", |run| run.handled.len() == MESSAGES);
    let handled_in = run.started.elapsed();
    assert!(!run.handled_by("consumer-4").is_empty(), "consumer-4, started mid-run, handles messages too");
    for instance in ["consumer-2", "consumer-3", "consumer-4"] {
        run.stop(instance);
    }
    for instance in ["producer-1", "producer-2"] {
        let (producer, _) = run.processes.get_mut(instance).expect("a producer");
        let status = producer.wait().expect("the producer's status");
        assert!(status.success(), "{instance} publishes its messages and exits cleanly, but ended with {status}");
    }
    // Every process has exited after its last export was answered, and the collector hands a request over before
    // answering it: everything sent is here.
    let requests: Vec<HttpRequest> = run.collector.try_iter().collect();
    run.spans.extend(requests.iter().flat_map(spans_of));
    let spans = std::mem::take(&mut run.spans);
    eprintln!(
        "{MESSAGES} messages handled in {handled_in:?} ({} spans); consumer-1 killed after {killed_at} were handled",
        spans.len()
    );

    assert_traces(&run, &spans, &hung);
}

/// What the collector received, held to what the processes said they did.
fn assert_traces(run: &Run, spans: &[Received], hung: &str) {
    let topic = &run.topic;
    let by_id: HashMap<&[u8], &Received> = spans.iter().map(|span| (span.span_id.as_slice(), span)).collect();
    assert_eq!(by_id.len(), spans.len(), "no span id arrives twice");

    // Every published message: exactly one PRODUCER span, from the producer, the root of a trace of its own.
    let mut producers: BTreeMap<&str, &Received> = BTreeMap::new();
    for span in spans.iter().filter(|span| span.kind == SpanKind::Producer as i32) {
        assert_eq!(span.name, format!("send {topic}"), "{}: the PRODUCER span's name", span.describe());
        assert!(span.parent_span_id.is_empty(), "{}: each publish starts a trace of its own", span.describe());
        let key =
            span.key().unwrap_or_else(|| panic!("{}: the PRODUCER span names its message's key", span.describe()));
        let index: usize = key.parse().expect("a message's index");
        let publisher = if index < FIRST_PRODUCER { "producer-1" } else { "producer-2" };
        assert_eq!(span.instance, publisher, "{}: who published message {key}", span.describe());
        assert!(producers.insert(key, span).is_none(), "message {key} has one PRODUCER span");
    }
    let published: BTreeSet<String> = (0..MESSAGES).map(|index| index.to_string()).collect();
    let missing: Vec<&String> = published.iter().filter(|key| !producers.contains_key(key.as_str())).collect();
    assert!(missing.is_empty(), "every published message has its PRODUCER span; these have none: {missing:?}");

    // Where each process said it handled each message.
    let mut said: HashMap<(&str, &str), Vec<(i32, i64)>> = HashMap::new();
    for (instance, steps) in &run.steps {
        for step in steps {
            if let Step::Handled { key, partition, offset } = step {
                said.entry((instance.as_str(), key.as_str())).or_default().push((*partition, *offset));
            }
        }
    }

    // Every CONSUMER span continues its message's PRODUCER span, and says where the message was.
    let mut handlings: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for span in spans.iter().filter(|span| span.kind == SpanKind::Consumer as i32) {
        let key =
            span.key().unwrap_or_else(|| panic!("{}: the CONSUMER span names its message's key", span.describe()));
        let producer = producers[key];
        assert_eq!(
            (span.trace_id.as_slice(), span.parent_span_id.as_slice()),
            (producer.trace_id.as_slice(), producer.span_id.as_slice()),
            "{}: the handling of message {key} continues its PRODUCER span {}",
            span.describe(),
            producer.describe(),
        );
        let where_said = said.get(&(span.instance.as_str(), key)).map(Vec::as_slice).unwrap_or_default();
        let Some((partition, offset)) = where_said.first() else {
            panic!("{}: {} never said it handled message {key}", span.describe(), span.instance)
        };
        let want = [
            ("code.function.name", ProtoValue::StringValue("kafka_group_worker::handle".into())),
            ("messaging.system", ProtoValue::StringValue("kafka".into())),
            ("messaging.operation.type", ProtoValue::StringValue("process".into())),
            ("messaging.operation.name", ProtoValue::StringValue("process".into())),
            ("messaging.destination.name", ProtoValue::StringValue(topic.clone())),
            ("messaging.consumer.group.name", ProtoValue::StringValue(run.group.clone())),
            ("messaging.destination.partition.id", ProtoValue::StringValue(partition.to_string())),
            ("messaging.kafka.offset", ProtoValue::IntValue(*offset)),
            ("messaging.kafka.message.key", ProtoValue::StringValue(key.to_owned())),
            ("messaging.message.body.size", ProtoValue::IntValue(key.len() as i64)),
        ];
        assert_eq!(span.name, format!("process {topic}"), "{}: the CONSUMER span's name", span.describe());
        for (name, value) in want {
            assert_eq!(span.attribute(name), Some(&value), "{}: {name} of message {key}", span.describe());
        }
        handlings.entry(key).or_default().push(span);
    }
    for ((instance, key), places) in &said {
        assert!(
            places.iter().all(|place| *place == places[0]),
            "{instance} read message {key} at one place: {places:?}"
        );
        let spans =
            handlings.get(key).map_or(0, |spans| spans.iter().filter(|span| span.instance == *instance).count());
        assert_eq!(spans, places.len(), "{instance} said it handled message {key} at {places:?}, each in a span");
    }
    let unhandled: Vec<&String> = published.iter().filter(|key| !handlings.contains_key(key.as_str())).collect();
    assert!(unhandled.is_empty(), "every message has at least one CONSUMER span; these have none: {unhandled:?}");

    // Each handling committed its message from inside its span.
    let mut commits: HashMap<&[u8], usize> = HashMap::new();
    for span in spans.iter().filter(|span| span.kind == SpanKind::Client as i32) {
        let handling = by_id
            .get(span.parent_span_id.as_slice())
            .filter(|parent| parent.kind == SpanKind::Consumer as i32)
            .unwrap_or_else(|| panic!("{}: a commit is made inside a handling's CONSUMER span", span.describe()));
        assert_eq!(span.name, format!("commit {topic}"), "{}: the commit span's name", span.describe());
        assert_eq!(span.trace_id, handling.trace_id, "{}: the commit is in its handling's trace", span.describe());
        assert_eq!(span.attribute("messaging.kafka.offset"), handling.attribute("messaging.kafka.offset"));
        *commits.entry(handling.span_id.as_slice()).or_default() += 1;
    }
    for span in spans.iter().filter(|span| span.kind == SpanKind::Consumer as i32) {
        assert_eq!(commits.get(span.span_id.as_slice()), Some(&1), "{}: one commit per handling", span.describe());
    }

    // No span has a parent that never arrived (the PRODUCER spans are roots), and no trace mixes two messages.
    let mut traces: HashMap<&[u8], BTreeSet<&str>> = HashMap::new();
    for span in spans {
        assert!(
            span.parent_span_id.is_empty() || by_id.contains_key(span.parent_span_id.as_slice()),
            "{}: its parent {} never arrived",
            span.describe(),
            hex(&span.parent_span_id)
        );
        assert!(
            [SpanKind::Producer, SpanKind::Consumer, SpanKind::Client].iter().any(|kind| *kind as i32 == span.kind),
            "{}: only publishes, handlings and commits are traced here",
            span.describe()
        );
        let key = span.key().or_else(|| by_id[span.parent_span_id.as_slice()].key()).expect("a message's span");
        traces.entry(span.trace_id.as_slice()).or_default().insert(key);
    }
    for (trace, keys) in &traces {
        assert_eq!(keys.len(), 1, "trace {} holds the spans of one message, not of {keys:?}", hex(trace));
    }
    assert_eq!(traces.len(), MESSAGES, "one trace per message");

    // Duplicates: only where a process was killed or lost the message's partition after handling it (the same
    // process may then be given the partition back, and read the message again).
    let (mut duplicates, mut after_the_kill) = (0, 0);
    for (key, handled) in &handlings {
        if handled.len() == 1 {
            continue;
        }
        duplicates += handled.len() - 1;
        let instances: BTreeSet<&str> = handled.iter().map(|span| span.instance.as_str()).collect();
        let killed = instances.contains("consumer-1");
        let explained =
            killed || instances.iter().any(|instance| lost_partition_after_handling(&run.steps[*instance], key));
        if killed {
            after_the_kill += handled.len() - 1;
        }
        assert!(
            explained,
            "message {key} was handled {} times, by {instances:?}, none of which was killed or lost its partition in a \
             rebalance after handling it: a duplicate nothing explains",
            handled.len()
        );
    }
    // The handling cut short by the kill never ended, so its span is nowhere; another process handled it.
    let hung_handlers: Vec<&str> = handlings[hung].iter().map(|span| span.instance.as_str()).collect();
    assert!(!hung_handlers.contains(&"consumer-1"), "the span of the handling the kill cut short never ended");
    let failed_commits: Vec<&String> = run
        .steps
        .values()
        .flatten()
        .filter_map(|step| match step {
            Step::Other(line) => Some(line),
            _ => None,
        })
        .filter(|line| line.starts_with("commit failed"))
        .collect();
    eprintln!(
        "{duplicates} duplicate handlings ({after_the_kill} of messages consumer-1 had handled); the message \
         consumer-1 hung on was handled by {hung_handlers:?}; commits refused: {failed_commits:?}"
    );
}

/// Whether a process handled message `key` and later gave its partition up in a rebalance.
fn lost_partition_after_handling(steps: &[Step], key: &str) -> bool {
    let Some(at) = steps.iter().position(|step| matches!(step, Step::Handled { key: handled, .. } if handled == key))
    else {
        return false;
    };
    let Step::Handled { partition, .. } = &steps[at] else { unreachable!("found as handled") };
    steps[at..].iter().any(|step| matches!(step, Step::Revoked(partitions) if partitions.contains(partition)))
}
