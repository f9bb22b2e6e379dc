//! The README's examples, run as a user runs them. `orders` runs the guide's whole order pipeline, on the embedded
//! Kafka broker, (with `--amqp`) on RabbitMQ and (with `--nats`) on NATS; with `--spans-json` it also prints every
//! span as a line of JSON, from which these tests check the exact shape of its traces.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Builds example `name` (cargo rebuilds it when a source changed, so a stale binary is never run) and returns the
/// path cargo reports for it. Not a path guessed beside this test binary: under `--release` or `--target`, that
/// folder holds no build of the example, or an old one, when the suite was run with `--test examples`.
fn build_example(name: &str) -> PathBuf {
    let built = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--message-format=json-render-diagnostics", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|error| panic!("cannot run cargo to build example {name}: {error}"));
    assert!(built.status.success(), "cargo build --example {name} failed");
    // One JSON message a line; the example's own artifact names its executable.
    String::from_utf8_lossy(&built.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|message| {
            message["reason"] == "compiler-artifact"
                && message["target"]["name"] == name
                && message["target"]["kind"] == json!(["example"])
        })
        .and_then(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo build --example {name} reported no executable"))
}

/// How long one run of an example may take: seconds normally. One that hangs (a broker that never answers, a
/// flush that never returns) fails its test with what it printed, instead of stopping the suite.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs an example to its end and returns what it printed; fails the test when it fails or outlives
/// [`EXAMPLE_TIMEOUT`].
fn run(command: &mut Command) -> String {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the example starts");
    // Read while it runs: a full pipe would otherwise block the example.
    fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let stdout = read_all(child.stdout.take().expect("a piped stdout"));
    let stderr = read_all(child.stderr.take().expect("a piped stderr"));
    let deadline = Instant::now() + EXAMPLE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the example's status") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().expect("stdout read"), stderr.join().expect("stderr read"));
    let Some(status) = status else {
        panic!("the example did not finish within {EXAMPLE_TIMEOUT:?}; it printed:\n{stdout}\n{stderr}");
    };
    assert!(status.success(), "{stdout}\n{stderr}");
    stdout
}

/// One run of the order pipeline, and the names it uses on its broker.
struct Pipeline {
    stdout: String,
    spans: Vec<Value>,
    /// The topic (Kafka), exchange (RabbitMQ) or subject (NATS) of `OrderCreated`, and of `PaymentProcessed`.
    orders: &'static str,
    payments: &'static str,
    /// Where payment republishes a declined order for another attempt, and where it dead-letters it.
    retries: &'static str,
    dead_letters: &'static str,
    /// The consumer attribute that holds the order id: the Kafka key, or the AMQP or NATS message id.
    order_id_attribute: &'static str,
    /// The module of the handlers, the `target` of their `tracing` events.
    handlers: &'static str,
}

impl Pipeline {
    fn run(command: &mut Command) -> Self {
        // With no OTLP endpoint variable the example exports nothing; a developer's environment must not change that
        // here (the example reads both).
        let command = command
            .arg("--spans-json")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let stdout = run(command);
        let spans = stdout
            .lines()
            .filter(|line| line.starts_with('{'))
            .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
            .collect();
        Self {
            stdout,
            spans,
            orders: "",
            payments: "",
            retries: "",
            dead_letters: "",
            order_id_attribute: "",
            handlers: "",
        }
    }

    fn on_kafka() -> &'static Self {
        static RUN: OnceLock<Pipeline> = OnceLock::new();
        RUN.get_or_init(|| Self {
            orders: "orders.created",
            payments: "payments.processed",
            retries: "orders.retry",
            dead_letters: "orders.dead-letter",
            order_id_attribute: "messaging.kafka.message.key",
            handlers: "orders::kafka",
            ..Self::run(&mut Command::new(build_example("orders")))
        })
    }

    fn on_rabbitmq() -> Self {
        let url =
            std::env::var("AMQP_URL").expect("AMQP_URL is not set: ./scripts/test starts the broker this runs on");
        Self {
            orders: "orders",
            payments: "payments",
            retries: "orders.retry",
            dead_letters: "orders.dead-letter",
            order_id_attribute: "messaging.message.id",
            handlers: "orders::rabbitmq",
            ..Self::run(Command::new(build_example("orders")).args(["--amqp", &url]))
        }
    }

    fn on_nats() -> Self {
        let url =
            std::env::var("NATS_URL").expect("NATS_URL is not set: ./scripts/test starts the server this runs on");
        Self {
            orders: "orders.created",
            payments: "payments.processed",
            retries: "retries.orders.created",
            dead_letters: "dead-letters.orders.created",
            order_id_attribute: "messaging.message.id",
            handlers: "orders::nats",
            ..Self::run(Command::new(build_example("orders")).args(["--nats", &url]))
        }
    }

    /// The one span for which `matches` holds.
    fn span(&self, description: &str, matches: impl Fn(&Value) -> bool) -> &Value {
        let found: Vec<&Value> = self.spans.iter().filter(|span| matches(span)).collect();
        assert_eq!(found.len(), 1, "one span {description}:\n{}", self.stdout);
        found[0]
    }

    /// The span of `kind` named `name`, of consumer group `group` (or none), for order `order_id` (or any).
    fn span_of(&self, kind: &str, name: &str, group: Option<&str>, order_id: Option<&str>) -> &Value {
        let description = format!("{kind} {name:?} [{group:?}] for {order_id:?}");
        self.span(&description, |span| {
            span["kind"] == kind
                && span["name"] == name
                && span["attributes"]["messaging.consumer.group.name"].as_str() == group
                && order_id.is_none_or(|id| self.order_of(span) == Some(id))
        })
    }

    /// The order a span is about: its `app.order.id`, or its message's id.
    fn order_of<'a>(&self, span: &'a Value) -> Option<&'a str> {
        let attributes = &span["attributes"];
        attributes["app.order.id"].as_str().or(attributes[self.order_id_attribute].as_str())
    }

    /// The traces as trees, in the picture's order and words: one line a span (kind, name, consumer group and,
    /// when failed, "error"), children indented under their parent in start order.
    fn outline(&self) -> Vec<String> {
        let mut traces: Vec<&str> = Vec::new();
        for span in &self.spans {
            let trace = span["trace"].as_str().expect("a trace id");
            if !traces.contains(&trace) {
                traces.push(trace);
            }
        }
        let mut lines = Vec::new();
        for trace in traces {
            lines.push("trace".to_owned());
            let in_trace: Vec<&Value> = self.spans.iter().filter(|span| span["trace"] == trace).collect();
            let drawn = |parent: &Value| in_trace.iter().any(|span| span["span"] == *parent);
            let roots: Vec<&Value> = in_trace.iter().copied().filter(|span| !drawn(&span["parent"])).collect();
            for root in roots {
                outline_span(&mut lines, root, &in_trace, 1);
            }
        }
        lines
    }

    /// The picture's span lines, up to their span id, each followed by " error" when the line under it gives the
    /// span's error. A name too long for its line ends in `…` there.
    fn picture_outline(&self) -> Vec<String> {
        let picture = self
            .stdout
            .lines()
            .skip_while(|line| !line.starts_with("trace "))
            .take_while(|line| !line.starts_with('{'));
        let mut outline: Vec<String> = Vec::new();
        for line in picture {
            if line.starts_with("trace ") {
                outline.push("trace".to_owned());
            } else if line.trim_start().starts_with("error: ") {
                if let Some(span) = outline.last_mut() {
                    span.push_str(" error");
                }
            } else if [" Producer ", " Consumer ", " Internal ", " Client "].iter().any(|kind| line.contains(kind)) {
                let (head, _) = line.split_once(" span ").expect("`... span <id> ...`");
                outline.push(head.to_owned());
            }
        }
        outline
    }
}

fn outline_span(lines: &mut Vec<String>, span: &Value, in_trace: &[&Value], depth: usize) {
    let group = span["attributes"]["messaging.consumer.group.name"].as_str().map(|group| format!(" [{group}]"));
    let failed = if span["status"] == "error" { " error" } else { "" };
    lines.push(format!(
        "{:indent$}{} {}{}{failed}",
        "",
        span["kind"].as_str().expect("a kind"),
        span["name"],
        group.unwrap_or_default(),
        indent = depth * 2
    ));
    let mut children: Vec<&Value> = in_trace.iter().copied().filter(|child| child["parent"] == span["span"]).collect();
    children.sort_by_key(|child| child["start_ns"].as_u64());
    for child in children {
        outline_span(lines, child, in_trace, depth + 1);
    }
}

/// Whether the picture drew `expected` as `drawn`: the same, or with the name cut short by `…` to fit the line.
fn drawn_as(expected: &str, drawn: &str) -> bool {
    match drawn.split_once('…') {
        Some((head, tail)) => {
            expected.len() > drawn.len() - '…'.len_utf8() && expected.starts_with(head) && expected.ends_with(tail)
        }
        None => expected == drawn,
    }
}

fn ids(spans: &[&Value]) -> Vec<Value> {
    let mut ids: Vec<Value> = spans.iter().map(|span| json!({"trace": span["trace"], "span": span["span"]})).collect();
    ids.sort_by_key(|id| id.to_string());
    ids
}

fn sorted_links(span: &Value) -> Vec<Value> {
    let mut links = span["links"].as_array().expect("links").clone();
    links.sort_by_key(|link| link.to_string());
    links
}

/// Seven traces: the good order through inventory, payment and shipping; the malformed order failing in both
/// services that read it; the declined order retried twice by payment, then dead-lettered and read by the support
/// desk; the analytics batch; and one replay per order.
fn check_traces_and_picture(pipeline: &Pipeline) {
    let (orders, payments) = (pipeline.orders, pipeline.payments);
    let (retries, dead_letters) = (pipeline.retries, pipeline.dead_letters);
    let expected = vec![
        "trace".to_owned(),
        format!("  Producer \"send {orders}\""),
        format!("    Consumer \"process {orders}\" [inventory-service]"),
        "      Internal \"UPDATE inventory\"".to_owned(),
        format!("    Consumer \"process {orders}\" [payment-service]"),
        "      Internal \"POST /payment-gateway/charge\"".to_owned(),
        format!("      Producer \"send {payments}\""),
        format!("        Consumer \"process {payments}\" [shipping-service]"),
        "trace".to_owned(),
        format!("  Producer \"send {orders}\""),
        format!("    Consumer \"process {orders}\" [inventory-service] error"),
        format!("    Consumer \"process {orders}\" [payment-service] error"),
        "trace".to_owned(),
        format!("  Producer \"send {orders}\""),
        format!("    Consumer \"process {orders}\" [inventory-service]"),
        "      Internal \"UPDATE inventory\"".to_owned(),
        format!("    Consumer \"process {orders}\" [payment-service] error"),
        "      Internal \"POST /payment-gateway/charge\"".to_owned(),
        format!("      Producer \"send {retries}\""),
        format!("        Consumer \"process {retries}\" [payment-service] error"),
        "          Internal \"POST /payment-gateway/charge\"".to_owned(),
        format!("          Producer \"send {retries}\""),
        format!("            Consumer \"process {retries}\" [payment-service] error"),
        "              Internal \"POST /payment-gateway/charge\"".to_owned(),
        format!("              Client \"dead_letter {retries}\""),
        format!("                Consumer \"process {dead_letters}\" [support-desk]"),
        "trace".to_owned(),
        "  Consumer \"process\" [analytics-service]".to_owned(),
        "trace".to_owned(),
        format!("  Consumer \"process {orders}\" [order-history]"),
        "trace".to_owned(),
        format!("  Consumer \"process {orders}\" [order-history]"),
        "trace".to_owned(),
        format!("  Consumer \"process {orders}\" [order-history]"),
    ];
    assert_eq!(pipeline.outline(), expected, "{}", pipeline.stdout);
    let picture = pipeline.picture_outline();
    assert!(
        picture.len() == expected.len() && expected.iter().zip(&picture).all(|(line, drawn)| drawn_as(line, drawn)),
        "the picture draws the same trees:\n{picture:#?}\n{}",
        pipeline.stdout
    );
}

/// shipping ← `PaymentProcessed` producer ← payment ← `OrderCreated` producer, the root: one trace.
fn check_shipping_parent_chain(pipeline: &Pipeline) {
    let order = pipeline.span_of("Producer", &format!("send {}", pipeline.orders), None, Some("ord-1001"));
    let payment = pipeline.span_of(
        "Consumer",
        &format!("process {}", pipeline.orders),
        Some("payment-service"),
        Some("ord-1001"),
    );
    let payment_processed = pipeline.span_of("Producer", &format!("send {}", pipeline.payments), None, None);
    let shipping =
        pipeline.span_of("Consumer", &format!("process {}", pipeline.payments), Some("shipping-service"), None);
    assert_eq!(shipping["parent"], payment_processed["span"], "{}", pipeline.stdout);
    assert_eq!(payment_processed["parent"], payment["span"]);
    assert_eq!(payment["parent"], order["span"]);
    assert_eq!(order["parent"], Value::Null);
    for span in [payment, payment_processed, shipping] {
        assert_eq!(span["trace"], order["trace"]);
    }
    assert_eq!(sorted_links(shipping), ids(&[payment_processed]), "and linked to the producer it continues");
}

/// The analytics span: a root of a trace of its own, with one link per message of the batch, to that message's
/// producer: the three orders and the one payment (not the retries, which it does not read).
fn check_batch(pipeline: &Pipeline) {
    let batch = pipeline.span_of("Consumer", "process", Some("analytics-service"), None);
    assert_eq!(batch["parent"], Value::Null, "{}", pipeline.stdout);
    let others = pipeline.spans.iter().filter(|span| span["span"] != batch["span"]);
    assert!(others.clone().all(|span| span["trace"] != batch["trace"]), "a trace of its own:\n{}", pipeline.stdout);
    assert_eq!(batch["attributes"]["messaging.batch.message_count"], 4);
    let events = [format!("send {}", pipeline.orders), format!("send {}", pipeline.payments)];
    let producers: Vec<&Value> = pipeline
        .spans
        .iter()
        .filter(|span| span["kind"] == "Producer" && events.iter().any(|name| span["name"] == name.as_str()))
        .collect();
    assert_eq!(producers.len(), 4);
    assert_eq!(sorted_links(batch), ids(&producers), "{}", pipeline.stdout);
}

/// Each replayed order: a new trace whose root is the order-history span, linked to the span that first
/// published that order, and marked as a replay.
fn check_replays(pipeline: &Pipeline) {
    for order_id in ["ord-1001", "ord-1002", "ord-1003"] {
        let name = format!("process {}", pipeline.orders);
        let replay = pipeline.span_of("Consumer", &name, Some("order-history"), Some(order_id));
        let original = pipeline.span_of("Producer", &format!("send {}", pipeline.orders), None, Some(order_id));
        assert_eq!(replay["parent"], Value::Null, "{}", pipeline.stdout);
        let others = pipeline.spans.iter().filter(|span| span["span"] != replay["span"]);
        assert!(others.clone().all(|span| span["trace"] != replay["trace"]), "a new trace:\n{}", pipeline.stdout);
        assert_eq!(sorted_links(replay), ids(&[original]), "{}", pipeline.stdout);
        assert_eq!(replay["attributes"]["tracehop.replay"], true);
        assert_eq!(replay["status"], "unset");
    }
}

/// The malformed order's handlers returned `Err`, and so did payment's for each attempt at the declined order:
/// their spans, and only theirs, have status Error, with the error's text.
fn check_malformed_order(pipeline: &Pipeline) {
    let mut failed: Vec<(&Value, &Value, &Value)> = pipeline
        .spans
        .iter()
        .filter(|span| span["status"] != "unset")
        .map(|span| {
            (&span["attributes"]["messaging.consumer.group.name"], &span["status"], &span["status_description"])
        })
        .collect();
    failed.sort_by_key(|failure| format!("{failure:?}"));
    let malformed = json!("malformed order: EOF while parsing a value at line 1 column 25");
    let (retried, dead_lettered) =
        (json!("card declined: retried"), json!("card declined on the last attempt: dead-lettered"));
    let (inventory, payment, error) = (json!("inventory-service"), json!("payment-service"), json!("error"));
    assert_eq!(
        failed,
        vec![
            (&inventory, &error, &malformed),
            (&payment, &error, &dead_lettered),
            (&payment, &error, &retried),
            (&payment, &error, &retried),
            (&payment, &error, &malformed),
        ],
        "{}",
        pipeline.stdout
    );
    for group in ["inventory-service", "payment-service"] {
        let name = format!("process {}", pipeline.orders);
        let span = pipeline.span_of("Consumer", &name, Some(group), Some("ord-1002"));
        assert_eq!(span["status_description"], "malformed order: EOF while parsing a value at line 1 column 25");
    }
}

/// `#[tracing::instrument]` and `info_span!` in a handler are children of its span; an event written in its
/// body is an event of its span, with its fields.
fn check_tracing_inside_handlers(pipeline: &Pipeline) {
    let orders = format!("process {}", pipeline.orders);
    let inventory = pipeline.span_of("Consumer", &orders, Some("inventory-service"), Some("ord-1001"));
    let database = pipeline.span_of("Internal", "UPDATE inventory", None, Some("ord-1001"));
    assert_eq!(database["parent"], inventory["span"], "{}", pipeline.stdout);
    assert_eq!(database["trace"], inventory["trace"]);
    let payment = pipeline.span_of("Consumer", &orders, Some("payment-service"), Some("ord-1001"));
    let gateway = pipeline.span_of("Internal", "POST /payment-gateway/charge", None, Some("ord-1001"));
    assert_eq!(gateway["parent"], payment["span"]);
    assert_eq!(
        inventory["events"],
        json!([{
            "name": "reserved stock",
            "attributes": {"app.order.id": "ord-1001", "items": 2, "level": "INFO", "target": pipeline.handlers},
        }]),
        "{}",
        pipeline.stdout
    );
}

/// The declined order, in its own trace: each retry's PRODUCER span a child of the attempt that failed and linked
/// to the order's first creation; each retried attempt a child of its retry, linked to it and to the attempt
/// before, counting its attempt; the dead letter a settle span under the last attempt, linked to it, naming where
/// the order came from and why it was given up on; and the support desk's span under the dead letter, linked to
/// the failed processing.
fn check_retries_and_dead_letter(pipeline: &Pipeline) {
    let (orders, retries, dead_letters) = (pipeline.orders, pipeline.retries, pipeline.dead_letters);
    let order = pipeline.span_of("Producer", &format!("send {orders}"), None, Some("ord-1003"));
    let first = pipeline.span_of("Consumer", &format!("process {orders}"), Some("payment-service"), Some("ord-1003"));
    let started = |kind: &str, name: String| {
        let mut spans: Vec<&Value> =
            pipeline.spans.iter().filter(|span| span["kind"] == kind && span["name"] == name.as_str()).collect();
        spans.sort_by_key(|span| span["start_ns"].as_u64());
        spans
    };
    let republished = started("Producer", format!("send {retries}"));
    let attempts = started("Consumer", format!("process {retries}"));
    assert_eq!((republished.len(), attempts.len()), (2, 2), "two retries:\n{}", pipeline.stdout);
    let dead_letter = pipeline.span(&format!("dead_letter {retries}"), |span| {
        span["kind"] == "Client" && span["name"] == format!("dead_letter {retries}").as_str()
    });
    let ticket = pipeline.span_of("Consumer", &format!("process {dead_letters}"), Some("support-desk"), None);

    let chain = [order, first, republished[0], attempts[0], republished[1], attempts[1], dead_letter, ticket];
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1]["parent"], pair[0]["span"],
            "{} under {}:\n{}",
            pair[1]["name"], pair[0]["name"], pipeline.stdout
        );
        assert_eq!(pair[1]["trace"], order["trace"]);
    }
    assert_eq!(sorted_links(republished[0]), ids(&[order]), "a retry links the order's first creation");
    assert_eq!(sorted_links(republished[1]), ids(&[order]));
    assert_eq!(sorted_links(attempts[0]), ids(&[republished[0], first]), "and its consumer the attempt before");
    assert_eq!(sorted_links(attempts[1]), ids(&[republished[1], attempts[0]]));
    assert_eq!(sorted_links(dead_letter), ids(&[attempts[1]]), "the dead letter links the failed processing");
    assert_eq!(sorted_links(ticket), ids(&[dead_letter, attempts[1]]), "and so does the support desk's span");

    assert_eq!(first["attributes"]["tracehop.message.attempt"], Value::Null);
    assert_eq!(attempts[0]["attributes"]["tracehop.message.attempt"], 2);
    assert_eq!(attempts[1]["attributes"]["tracehop.message.attempt"], 3);
    let dead_letter = &dead_letter["attributes"];
    assert_eq!(dead_letter["messaging.operation.type"], "settle");
    assert_eq!(dead_letter["messaging.operation.name"], "dead_letter");
    assert_eq!(dead_letter["messaging.destination.name"], retries);
    assert_eq!(dead_letter["tracehop.dead_letter.destination"], dead_letters);
    assert_eq!(dead_letter["tracehop.dead_letter.origin.destination"], retries);
    assert_eq!(dead_letter["tracehop.dead_letter.error_type"], "CardDeclined");
    assert_eq!(ticket["attributes"]["tracehop.dead_letter.origin.destination"], retries);
    assert_eq!(ticket["attributes"]["tracehop.dead_letter.error_type"], "CardDeclined");
    assert_eq!(ticket["status"], "unset");
}

#[test]
fn orders_example_draws_seven_traces_fan_out_payment_hop_failed_order_retries_batch_and_replays() {
    check_traces_and_picture(Pipeline::on_kafka());
}

/// The span lines of a printed picture, as (indent, kind and name, span id).
fn span_lines(stdout: &str) -> Vec<(usize, String, String)> {
    let is_span =
        |line: &&str| ["Producer ", "Consumer ", "Internal "].iter().any(|kind| line.trim_start().starts_with(kind));
    stdout
        .lines()
        .filter(is_span)
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            let (name, rest) = line.trim_start().split_once(" span ").expect("`... span <id> ...`");
            let id = rest.split(' ').next().unwrap_or_default().to_owned();
            (indent, name.to_owned(), id)
        })
        .collect()
}

/// The clients example: the same pipeline without attributes, one trace from the order's send through the
/// stream-adapter consumer, its send from inside its span, and the polled consumer; each producer span records
/// where Kafka's delivery report put the record.
#[test]
fn clients_example_prints_one_trace_through_the_pipeline() {
    let stdout = run(&mut Command::new(build_example("clients")));

    assert!(
        stdout.starts_with("inventory-service reserved stock for ord-1001\nshipping-service ships order ord-1001\n"),
        "{stdout}"
    );
    let traces: Vec<&str> = stdout.lines().filter(|line| line.starts_with("trace ")).collect();
    assert_eq!(traces.len(), 1, "one trace for the whole pipeline:\n{stdout}");
    let spans = span_lines(&stdout);
    let names: Vec<(usize, &str)> = spans.iter().map(|(indent, name, _)| (*indent, name.as_str())).collect();
    assert_eq!(
        names,
        vec![
            (2, "Producer \"send orders.created\""),
            (4, "Consumer \"process orders.created\" [inventory-service]"),
            (6, "Internal \"UPDATE inventory\""),
            (6, "Producer \"send inventory.reserved\""),
            (8, "Consumer \"process inventory.reserved\" [shipping-service]"),
            (10, "Internal \"print shipping label\""),
        ],
        "{stdout}"
    );
    // The picture draws a child under its parent, one level deeper.
    let parents: Vec<Option<usize>> =
        (0..spans.len()).map(|index| (0..index).rev().find(|&above| spans[above].0 < spans[index].0)).collect();
    assert_eq!(parents, vec![None, Some(0), Some(1), Some(1), Some(3), Some(4)], "{stdout}");
    assert!(stdout.contains(&format!("span {} (root)", spans[0].2)), "{stdout}");
    for (span, function) in [
        ("Producer \"send orders.created\"", "tracehop::clients::kafka::TracedFutureProducer::send"),
        ("Consumer \"process orders.created\"", "inventory::orders_loop"),
        ("Producer \"send inventory.reserved\"", "tracehop::clients::kafka::TracedFutureProducer::send"),
        ("Consumer \"process inventory.reserved\"", "shipping::poll_loop"),
    ] {
        let block: Vec<&str> = stdout
            .split(span)
            .nth(1)
            .expect("the span's lines")
            .lines()
            .skip(1)
            .take_while(|line| span_lines(line).is_empty())
            .map(str::trim)
            .collect();
        for line in [
            format!("code.function.name = {function}"),
            "messaging.destination.partition.id = 0".to_owned(),
            "messaging.kafka.offset = 0".to_owned(),
        ] {
            assert!(block.contains(&line.as_str()), "{span}: {line}\n{stdout}");
        }
    }
}

#[test]
fn orders_example_shipping_span_descends_from_the_order_through_payment() {
    check_shipping_parent_chain(Pipeline::on_kafka());
}

#[test]
fn orders_example_batch_span_is_a_root_linked_to_every_messages_producer() {
    check_batch(Pipeline::on_kafka());
}

#[test]
fn orders_example_replay_spans_start_new_traces_linked_to_the_original_producers() {
    check_replays(Pipeline::on_kafka());
}

#[test]
fn orders_example_malformed_order_fails_the_spans_of_the_handlers_that_read_it() {
    check_malformed_order(Pipeline::on_kafka());
}

#[test]
fn orders_example_declined_payment_is_retried_twice_then_dead_lettered_in_one_trace() {
    check_retries_and_dead_letter(Pipeline::on_kafka());
}

#[test]
fn orders_example_tracing_spans_and_events_land_in_the_handlers_span() {
    check_tracing_inside_handlers(Pipeline::on_kafka());
}

/// Every check the Kafka flavour's tests make one by one, on a pipeline run over another broker.
fn check_every_pattern(pipeline: &Pipeline) {
    check_traces_and_picture(pipeline);
    check_shipping_parent_chain(pipeline);
    check_batch(pipeline);
    check_replays(pipeline);
    check_malformed_order(pipeline);
    check_retries_and_dead_letter(pipeline);
    check_tracing_inside_handlers(pipeline);
}

/// The same flow over the broker `scripts/test` starts, checked the same way.
#[test]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
fn orders_example_over_rabbitmq_traces_the_same_pipeline() {
    let pipeline = Pipeline::on_rabbitmq();
    check_every_pattern(&pipeline);
    let consumer = pipeline.span_of("Consumer", "process orders", Some("inventory-service"), Some("ord-1001"));
    let attributes = &consumer["attributes"];
    assert_eq!(attributes["messaging.system"], "rabbitmq");
    assert_eq!(attributes["messaging.destination.name"], "orders");
    assert_eq!(attributes["messaging.rabbitmq.destination.routing_key"], "order.created");
    assert_eq!(attributes["messaging.message.body.size"], 27);
}

/// The same flow over NATS: the orders and payments in a JetStream stream, inventory a queue group of two members
/// behind a durable consumer, the others durable pull consumers, the replay a consumer made afterwards.
#[test]
#[ignore = "needs a NATS server with JetStream: ./scripts/test runs it against one of its own"]
fn orders_example_over_nats_traces_the_same_pipeline() {
    let pipeline = Pipeline::on_nats();
    check_every_pattern(&pipeline);
    // A queue member's core message says what JetStream's acknowledgement subject says: stream, sequence, delivery.
    let inventory = pipeline.span_of("Consumer", "process orders.created", Some("inventory-service"), Some("ord-1001"));
    let attributes = &inventory["attributes"];
    assert_eq!(attributes["messaging.system"], "nats");
    assert_eq!(attributes["messaging.destination.name"], "orders.created");
    assert_eq!(attributes["messaging.message.id"], "ord-1001");
    assert_eq!(attributes["messaging.message.body.size"], 27);
    assert_eq!(attributes["tracehop.nats.stream"], "ORDER_EVENTS");
    assert_eq!(attributes["tracehop.nats.stream_sequence"], 1);
    assert_eq!(attributes["tracehop.message.delivery_count"], 1);
    // The payment went to the stream after the three orders; the replay read the second order again, as sequence 2.
    let shipping = pipeline.span_of("Consumer", "process payments.processed", Some("shipping-service"), None);
    assert_eq!(shipping["attributes"]["tracehop.nats.stream_sequence"], 4);
    let replay = pipeline.span_of("Consumer", "process orders.created", Some("order-history"), Some("ord-1002"));
    assert_eq!(replay["attributes"]["tracehop.nats.stream_sequence"], 2);
    let members = pipeline.stdout.lines().filter(|line| line.contains("inventory-service member took the order"));
    assert_eq!(members.count(), 3, "one member took each order:\n{}", pipeline.stdout);
}

/// The log-correlation example: the lines written inside the handler start with the handler span's ids, the
/// line written outside it does not, and the same events are on the span.
#[test]
fn log_correlation_example_prints_the_handler_spans_ids_on_its_log_lines() {
    let stdout = run(&mut Command::new(build_example("log_correlation")));
    let span_line = stdout.lines().find(|line| line.starts_with("span Consumer")).expect("the consumer span");
    assert!(
        span_line.starts_with("span Consumer \"process orders.created\" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 ")
    );
    assert!(span_line.ends_with(" events=2"), "{span_line}");
    let ids = span_line.split(" trace_id=").nth(1).expect("ids").trim_end_matches(" events=2");
    let prefix = format!("trace_id={ids}");
    let logged: Vec<&str> = stdout.lines().filter(|line| !line.starts_with("span ")).collect();
    assert_eq!(logged.len(), 3, "{stdout}");
    assert!(!logged[0].contains("trace_id="), "outside the handler: {}", logged[0]);
    assert!(logged[0].ends_with("inventory service started"), "{}", logged[0]);
    for line in &logged[1..] {
        assert!(line.starts_with(&prefix), "inside the handler, the handler span's ids: {line}\n{stdout}");
    }
    assert!(logged[1].contains("reserving stock") && logged[1].contains("order_id=1001"), "{}", logged[1]);
    assert!(logged[2].contains("WARN") && logged[2].contains("low stock"), "{}", logged[2]);
}
