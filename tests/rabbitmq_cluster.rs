//! A quorum queue replicated on a three-node RabbitMQ cluster (`scripts/rabbitmq-cluster`), its leader's node
//! stopped while two consumers on two nodes are mid-run: every message is still handled, and every handling, the
//! first or a redelivery, continues its producer's trace and says whether it is a redelivery and how many times
//! the queue delivered it before.
//!
//! The consumers are written as a user would write them: a prefetch, an acknowledgement after handling, and on a
//! connection or channel error a new connection to the next node of the list and a new `basic.consume`. tracehop
//! does none of that; it traces what the caller hands it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::PublisherConfirm;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use tokio::sync::{oneshot, watch};

/// How many messages the producer publishes.
const MESSAGES: usize = 3_000;
/// How many unacknowledged deliveries each consumer may hold.
const PREFETCH: u16 = 50;
/// After how many of its handlings each consumer pauses while the leader's node is stopped ([`Pause`]).
const HANDLED_BEFORE_THE_STOP: usize = 300;

/// The cluster `scripts/rabbitmq-cluster` started, from the environment it gives the test.
struct Cluster {
    /// Each node's AMQP URL, in node order.
    urls: Vec<String>,
    /// Each node's name (`name@host`), as `list_queues` prints it.
    nodes: Vec<String>,
    /// Each node's rabbitmqctl.
    ctls: Vec<String>,
}

impl Cluster {
    /// The cluster of the environment; fails the test when there is none: the test is ignored for a bare
    /// `cargo test`, and run with `--include-ignored` only where a cluster is up.
    fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: this test runs against the cluster ./scripts/rabbitmq-cluster starts")
            })
        };
        let words = |value: String| -> Vec<String> {
            value.split([' ', ',']).filter(|word| !word.is_empty()).map(str::to_owned).collect()
        };
        let urls = words(var("TRACEHOP_CLUSTER_AMQP_URLS"));
        let nodes = words(var("TRACEHOP_CLUSTER_NODES"));
        let ctls: Vec<String> = (1..=nodes.len()).map(|node| var(&format!("TRACEHOP_CLUSTER_CTL_{node}"))).collect();
        assert_eq!(urls.len(), 3, "three nodes' AMQP URLs in TRACEHOP_CLUSTER_AMQP_URLS: {urls:?}");
        assert_eq!(nodes.len(), 3, "three node names in TRACEHOP_CLUSTER_NODES: {nodes:?}");
        Self { urls, nodes, ctls }
    }

    /// Runs rabbitmqctl `args` on node `node` (0-based) and returns what it printed; fails the test if it fails.
    fn ctl(&self, node: usize, args: &[&str]) -> String {
        let output = Command::new(&self.ctls[node]).args(args).output().expect("rabbitmqctl runs");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} on {} failed: {}{}",
            self.nodes[node],
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("rabbitmqctl prints UTF-8")
    }

    /// The leader and the members of quorum queue `queue`, as node `via` (0-based) sees them: node indexes.
    fn leader_and_members(&self, via: usize, queue: &str) -> (usize, Vec<usize>) {
        let listing = self.ctl(via, &["list_queues", "name", "type", "leader", "members", "--formatter", "json"]);
        let queues: serde_json::Value = serde_json::from_str(&listing)
            .unwrap_or_else(|error| panic!("list_queues printed JSON ({error}): {listing}"));
        let entry = queues
            .as_array()
            .and_then(|queues| queues.iter().find(|entry| entry["name"] == queue))
            .unwrap_or_else(|| panic!("queue {queue} in list_queues: {listing}"));
        assert_eq!(entry["type"], "quorum", "{queue} is a quorum queue: {entry}");
        let index_of = |name: &serde_json::Value| {
            self.nodes
                .iter()
                .position(|node| name == node.as_str())
                .unwrap_or_else(|| panic!("{name} is one of the cluster's nodes {:?}", self.nodes))
        };
        let leader = index_of(&entry["leader"]);
        let mut members: Vec<usize> =
            entry["members"].as_array().expect("a quorum queue's members are a list").iter().map(index_of).collect();
        members.sort_unstable();
        (leader, members)
    }
}

/// Starts node `.1`'s RabbitMQ again when dropped, also when the test fails: the cluster is left whole.
struct StartAgain<'a>(&'a Cluster, usize);

impl Drop for StartAgain<'_> {
    fn drop(&mut self) {
        let _ = Command::new(&self.0.ctls[self.1]).arg("start_app").output();
    }
}

/// Connects to the first node of `urls`, starting at `first`, that accepts a connection, and returns its index.
/// What a user's client does after losing its node: try the next one.
async fn connect_to_any(urls: &[String], first: usize) -> (Connection, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut index = first;
    loop {
        match Connection::connect(&urls[index], ConnectionProperties::default()).await {
            Ok(connection) => return (connection, index),
            Err(error) => {
                assert!(Instant::now() < deadline, "no node of {urls:?} accepted a connection within 60 s: {error}");
                index = (index + 1) % urls.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tracehop::traced_producer(system = "rabbitmq", destination = "", routing_key = queue)]
async fn publish(
    channel: &Channel,
    queue: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<PublisherConfirm, lapin::Error> {
    channel.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), payload, properties).await
}

/// One handling of one message: what the consumer saw, and the CONSUMER span tracehop made for it.
#[derive(Clone, Debug)]
struct Handling {
    /// The message's index, from its payload.
    index: usize,
    /// The consumer that handled it (0 on the leader's node, 1 on another).
    consumer: usize,
    /// The node the consumer was connected to (0-based).
    node: usize,
    /// The delivery's `redelivered` flag, as lapin read it.
    redelivered: bool,
    /// The delivery's `x-delivery-count` header, as lapin read it.
    delivery_count: Option<i64>,
    /// The CONSUMER span of the handling.
    span: SpanId,
    /// When the handling ended.
    at: Instant,
}

#[tracehop::traced_consumer(group = "cluster")]
async fn handle(delivery: &Delivery) -> (usize, SpanId) {
    let index = std::str::from_utf8(&delivery.data)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("a payload is a message index: {:?}", delivery.data));
    (index, opentelemetry::Context::current().span().span_context().span_id())
}

/// The test's record of every handling, in order, and whether every message has been handled.
struct Run {
    handled: Mutex<Handled>,
    all_handled: watch::Sender<bool>,
}

#[derive(Default)]
struct Handled {
    handlings: Vec<Handling>,
    seen: BTreeSet<usize>,
    /// Each `basic.consume` that succeeded, in order: the consumer and its node.
    consumes: Vec<(usize, usize)>,
}

impl Run {
    fn record(&self, handling: Handling) {
        let mut handled = self.handled.lock().expect("not poisoned");
        handled.seen.insert(handling.index);
        handled.handlings.push(handling);
        if handled.seen.len() == MESSAGES {
            self.all_handled.send_replace(true);
        }
    }

    fn consuming(&self, consumer: usize, node: usize) {
        self.handled.lock().expect("not poisoned").consumes.push((consumer, node));
    }

    fn handlings(&self) -> Vec<Handling> {
        self.handled.lock().expect("not poisoned").handlings.clone()
    }
}

/// Where a consumer pauses mid-run, after its `HANDLED_BEFORE_THE_STOP`th handling, until the leader's node is
/// down (`stopped`), so that most messages are handled after the fail-over. The consumer on the leader's node
/// also asks for the stop (`stop`, with the index of the message it has just handled) and leaves that delivery
/// unacknowledged; the other acknowledges its delivery once the node is down.
struct Pause {
    stop: Option<oneshot::Sender<usize>>,
    stopped: watch::Receiver<bool>,
}

/// A consumer as a user writes one: it connects to `urls[first]`, consumes `queue` with a prefetch and
/// acknowledges each delivery after handling it; when its connection or channel fails or its consumer is
/// cancelled, it connects to the next node that answers and consumes again. Returns once every message is handled.
async fn consume(
    consumer: usize,
    urls: Vec<String>,
    first: usize,
    queue: String,
    run: Arc<Run>,
    mut pause: Option<Pause>,
) {
    let mut all_handled = run.all_handled.subscribe();
    let mut next_node = first;
    let mut handled = 0;
    'connect: loop {
        let (connection, node) = connect_to_any(&urls, next_node).await;
        next_node = (node + 1) % urls.len();
        let Ok(channel) = connection.create_channel().await else { continue };
        if channel.basic_qos(PREFETCH, BasicQosOptions::default()).await.is_err() {
            continue;
        }
        let Ok(mut deliveries) = channel
            .basic_consume(
                queue.as_str().into(),
                format!("consumer-{consumer}").into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        else {
            continue;
        };
        run.consuming(consumer, node);
        loop {
            let next = tokio::select! {
                next = deliveries.next() => next,
                // The test's end, once this consumer is connected again if it lost its node.
                _ = all_handled.wait_for(|done| *done), if connection.status().connected() => break 'connect,
            };
            // The stream ends when the broker cancels the consumer, and fails with the channel or connection.
            let Some(Ok(delivery)) = next else { continue 'connect };
            let (index, span) = handle(&delivery).await;
            let delivery_count = delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|headers| headers.inner().get("x-delivery-count").cloned())
                .map(|count| match count {
                    AMQPValue::LongLongInt(count) => count,
                    AMQPValue::LongInt(count) => i64::from(count),
                    other => panic!("x-delivery-count is an integer: {other:?}"),
                });
            let redelivered = delivery.redelivered;
            run.record(Handling { index, consumer, node, redelivered, delivery_count, span, at: Instant::now() });
            handled += 1;
            if handled == HANDLED_BEFORE_THE_STOP {
                if let Some(Pause { stop, mut stopped }) = pause.take() {
                    let held = stop.map(|stop| stop.send(index).expect("the test waits for the stop"));
                    stopped.wait_for(|stopped| *stopped).await.expect("the test stops the node");
                    if held.is_some() {
                        // Unacknowledged: its node went away before the acknowledgement.
                        continue;
                    }
                }
            }
            // `Ok(false)`: lapin did not send it, the channel is gone (a delivery it had buffered before).
            if !matches!(delivery.ack(BasicAckOptions::default()).await, Ok(true)) {
                continue 'connect;
            }
        }
    }
}

/// The spans the in-memory exporter holds, by span id.
fn finished_by_id() -> HashMap<SpanId, SpanData> {
    suite::finished().into_iter().map(|span| (span.span_context.span_id(), span)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a RabbitMQ cluster: ./scripts/rabbitmq-cluster runs it against one of its own"]
async fn a_quorum_queue_s_leader_node_stopped_mid_run_costs_no_message_and_no_trace() {
    suite::spans();
    let cluster = Cluster::from_env();
    let queue = suite::unique_topic("cluster-orders");

    // Declared on node 1, which becomes its leader; replicated on all three.
    let (connection, _) = connect_to_any(&cluster.urls[..1], 0).await;
    let channel = connection.create_channel().await.expect("a channel");
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments.insert("x-quorum-initial-group-size".into(), AMQPValue::LongInt(3));
    arguments.insert("x-expires".into(), AMQPValue::LongInt(300_000));
    channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, arguments)
        .await
        .expect("queue.declare of a quorum queue");
    let (leader, members) = cluster.leader_and_members(0, &queue);
    assert_eq!(members, [0, 1, 2], "{queue} is replicated on every node");
    connection.close(200, "declared".into()).await.expect("connection.close");

    // Published through a node that is not the leader's, with confirms, all before the consumers start.
    let other = (leader + 1) % 3;
    let (connection, _) = connect_to_any(&cluster.urls[other..=other], 0).await;
    let channel = connection.create_channel().await.expect("a channel");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    let mut confirms = Vec::with_capacity(MESSAGES);
    for index in 0..MESSAGES {
        let properties = BasicProperties::default().with_message_id(format!("{queue}-{index}").into());
        confirms.push(publish(&channel, &queue, index.to_string().as_bytes(), properties).await.expect("published"));
    }
    for (index, confirm) in confirms.into_iter().enumerate() {
        let confirmation = confirm.await.expect("a confirmation");
        assert!(confirmation.is_ack(), "message {index} confirmed: {confirmation:?}");
    }
    connection.close(200, "published".into()).await.expect("connection.close");

    // One consumer on the leader's node, one on another; both pause at their 300th handling, the first one holding
    // that delivery unacknowledged, while the leader's node stops.
    let (all_handled, _) = watch::channel(false);
    let run = Arc::new(Run { handled: Mutex::default(), all_handled });
    let (stop, stop_requested) = oneshot::channel();
    let (stopped, node_stopped) = watch::channel(false);
    let pause = Pause { stop: Some(stop), stopped: node_stopped.clone() };
    let on_leader = tokio::spawn(consume(0, cluster.urls.clone(), leader, queue.clone(), run.clone(), Some(pause)));
    let pause = Pause { stop: None, stopped: node_stopped };
    let on_other = tokio::spawn(consume(1, cluster.urls.clone(), other, queue.clone(), run.clone(), Some(pause)));

    let held = stop_requested.await.expect("the consumer on the leader's node reaches its stop");
    let handled_before_the_stop = run.handlings().len();
    let stopping = Instant::now();
    let start_again = StartAgain(&cluster, leader);
    tokio::task::spawn_blocking({
        let ctl = cluster.ctls[leader].clone();
        move || {
            let status = Command::new(ctl).arg("stop_app").stdout(std::process::Stdio::null()).status();
            assert!(status.expect("rabbitmqctl runs").success(), "rabbitmqctl stop_app on the leader's node");
        }
    })
    .await
    .expect("stop_app");
    let stopped_at = Instant::now();
    stopped.send_replace(true);

    let all_handled_in = Duration::from_secs(120);
    let both = async { (on_leader.await, on_other.await) };
    let (leader_result, other_result) = tokio::time::timeout(all_handled_in, both).await.unwrap_or_else(|_| {
        let handled = run.handled.lock().expect("not poisoned");
        let missing: Vec<usize> = (0..MESSAGES).filter(|index| !handled.seen.contains(index)).collect();
        panic!(
            "not every message was handled within {all_handled_in:?} after the stop: {} missing, the first {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        )
    });
    leader_result.expect("the consumer on the leader's node");
    other_result.expect("the consumer on the other node");
    let (new_leader, _) = cluster.leader_and_members(other, &queue);
    assert_ne!(new_leader, leader, "a new leader took over from the stopped node");

    let handlings = run.handlings();
    let spans = finished_by_id();
    let producers: BTreeMap<String, SpanData> = spans
        .values()
        .filter(|span| span.span_kind == SpanKind::Producer)
        .filter_map(|span| match suite::attribute(span, "messaging.message.id") {
            Some(Value::String(id)) if id.as_str().starts_with(&format!("{queue}-")) => {
                Some((id.as_str().to_owned(), span.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(producers.len(), MESSAGES, "one PRODUCER span per published message");

    let mut by_index: BTreeMap<usize, Vec<&Handling>> = BTreeMap::new();
    for handling in &handlings {
        by_index.entry(handling.index).or_default().push(handling);
    }
    let missing: Vec<usize> = (0..MESSAGES).filter(|index| !by_index.contains_key(index)).collect();
    assert!(missing.is_empty(), "every message is handled at least once; never handled: {missing:?}");

    for (index, handlings) in by_index.iter_mut() {
        // In the order the queue delivered them, which its count says: a delivery a client had buffered when its
        // node stopped can be handled after its redelivery was handled elsewhere.
        handlings.sort_by_key(|handling| handling.delivery_count.unwrap_or(0));
        let producer = &producers[&format!("{queue}-{index}")];
        for (nth, handling) in handlings.iter().enumerate() {
            let what = format!("message {index}, delivery {} of {handlings:?}", nth + 1);
            let span = spans.get(&handling.span).unwrap_or_else(|| panic!("{what}: its CONSUMER span ended"));
            assert_eq!(span.name, "process amq.default", "{what}: the CONSUMER span's name");
            assert_eq!(span.span_kind, SpanKind::Consumer, "{what}: the span's kind");
            assert_eq!(span.status, Status::Unset, "{what}: the span's status");
            assert_eq!(
                span.span_context.trace_id(),
                producer.span_context.trace_id(),
                "{what}: continues its producer's trace"
            );
            assert_eq!(span.parent_span_id, producer.span_context.span_id(), "{what}: the PRODUCER span is its parent");
            assert!(span.parent_span_is_remote, "{what}: the PRODUCER span is a remote parent");
            // What tracehop recorded is what the broker said about this delivery.
            assert_eq!(
                suite::attribute(span, tracehop::REDELIVERED_ATTRIBUTE),
                handling.redelivered.then_some(Value::Bool(true)),
                "{what}: tracehop.message.redelivered as the delivery's flag says"
            );
            assert_eq!(
                suite::attribute(span, tracehop::DELIVERY_COUNT_ATTRIBUTE),
                handling.delivery_count.map(Value::I64),
                "{what}: tracehop.message.delivery_count as the delivery's x-delivery-count says"
            );
            // And what the broker said is right: only the stop makes redeliveries; each is flagged and counted,
            // a message handled before comes back as a redelivery, and no delivery is handled twice.
            if handling.redelivered {
                assert!(handling.at > stopping, "{what}: redelivered only once the leader's node stops");
                assert!(handling.delivery_count >= Some(1), "{what}: a redelivery's x-delivery-count");
            } else {
                assert_eq!(handling.delivery_count, None, "{what}: a first delivery has no x-delivery-count");
            }
            if nth > 0 {
                assert!(handling.redelivered, "{what}: a message handled before is redelivered");
                let count = handling.delivery_count.unwrap_or(0);
                assert!(count >= nth as i64, "{what}: delivered at least {nth} times before, x-delivery-count {count}");
                assert!(
                    handlings[nth - 1].delivery_count < handling.delivery_count,
                    "{what}: each handling is another delivery"
                );
            }
        }
    }

    // The delivery held unacknowledged when its node stopped came back, to a consumer on a live node.
    let held_handlings = &by_index[&held];
    assert!(
        held_handlings.len() >= 2,
        "message {held}, unacknowledged at the stop, is handled again: {held_handlings:?}"
    );
    assert_eq!((held_handlings[0].consumer, held_handlings[0].node), (0, leader), "message {held}: {held_handlings:?}");
    assert!(held_handlings[1].redelivered, "message {held}'s next handling is a redelivery: {held_handlings:?}");
    assert_ne!(held_handlings[1].node, leader, "message {held} comes back on a live node: {held_handlings:?}");
    let consumes = run.handled.lock().expect("not poisoned").consumes.clone();
    // The figures the README quotes.
    let redelivered = handlings.iter().filter(|handling| handling.redelivered).count();
    let twice = by_index.values().filter(|handlings| handlings.len() > 1).count();
    let after: Vec<&Handling> = handlings.iter().filter(|handling| handling.at > stopped_at).collect();
    let by_consumer_after = |consumer| after.iter().filter(|handling| handling.consumer == consumer).count();
    let mut delivery_counts: BTreeMap<i64, usize> = BTreeMap::new();
    for count in handlings.iter().filter_map(|handling| handling.delivery_count) {
        *delivery_counts.entry(count).or_default() += 1;
    }
    eprintln!(
        "rabbitmq_cluster: {MESSAGES} messages, {} handlings ({handled_before_the_stop} before the stop began, \
         {} after the node was down: {} by consumer 1, {} by consumer 0 reconnected), {redelivered} redelivered \
         (handlings by x-delivery-count: {delivery_counts:?}), {twice} handled more than once; leader node {} -> {}; \
         stop_app took {:?}; after it, the first handling came {:?} and the last {:?} later; consumes (consumer, \
         node): {consumes:?}",
        handlings.len(),
        after.len(),
        by_consumer_after(1),
        by_consumer_after(0),
        leader + 1,
        new_leader + 1,
        stopped_at - stopping,
        after.first().map(|handling| handling.at - stopped_at),
        after.last().map(|handling| handling.at - stopped_at),
    );
    assert!(
        by_consumer_after(1) > 0,
        "the consumer on the other node handles messages after the leader's node stopped"
    );
    // Both consumed on the node they were given; the one on the stopped node again on another.
    assert_eq!(consumes.iter().filter(|(consumer, _)| *consumer == 0).map(|(_, node)| *node).next(), Some(leader));
    assert_eq!(consumes.iter().filter(|(consumer, _)| *consumer == 1).map(|(_, node)| *node).next(), Some(other));
    let reconnected: Vec<usize> =
        consumes.iter().filter(|(consumer, _)| *consumer == 0).skip(1).map(|(_, node)| *node).collect();
    assert!(
        !reconnected.is_empty() && !reconnected.contains(&leader),
        "the consumer on the stopped node consumes again on another: {consumes:?}"
    );

    // The stopped node comes back as a member of the queue.
    drop(start_again);
    let (_, members) = cluster.leader_and_members(leader, &queue);
    assert_eq!(members, [0, 1, 2], "{queue} is replicated on every node again");
}
