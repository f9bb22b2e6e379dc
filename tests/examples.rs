//! The README's examples, run as a user runs them: one trace through the whole order pipeline, on the embedded
//! Kafka broker and on RabbitMQ.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Builds example `name` as the suite is built (cargo rebuilds it when a source changed, so a stale binary is
/// never run) and returns its path.
fn build_example(name: &str) -> PathBuf {
    let built = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap_or_else(|error| panic!("cannot run cargo to build example {name}: {error}"));
    assert!(built.success(), "cargo build --example {name} failed");
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    profile_dir.join("examples").join(name)
}

fn run(command: &mut Command) -> String {
    let Output { status, stdout, stderr } = command.output().expect("the example starts");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(status.success(), "{stdout}\n{}", String::from_utf8_lossy(&stderr));
    stdout
}

/// The span lines of a printed trace, as (indent, kind and name, span id, parent).
fn span_lines(stdout: &str) -> Vec<(usize, String, String, String)> {
    let is_span =
        |line: &&str| ["Producer ", "Consumer ", "Internal "].iter().any(|kind| line.trim_start().starts_with(kind));
    stdout
        .lines()
        .filter(is_span)
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            let (name, rest) = line.trim_start().split_once(" span ").expect("`... span <id> (...)`");
            let (id, rest) = rest.split_once(' ').expect("a span id, then its parent");
            let parent = rest.trim_start_matches('(').split(')').next().unwrap_or_default().to_owned();
            (indent, name.to_owned(), id.to_owned(), parent)
        })
        .collect()
}

#[test]
fn orders_example_prints_one_trace_through_the_pipeline() {
    let stdout = run(&mut Command::new(build_example("orders")));

    let traces: Vec<&str> = stdout.lines().filter(|line| line.starts_with("trace ")).collect();
    assert_eq!(traces.len(), 1, "one trace for the whole pipeline:\n{stdout}");
    let spans = span_lines(&stdout);
    let names: Vec<&str> = spans.iter().map(|(_, name, _, _)| name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "Producer \"send orders.created\"",
            "Consumer \"process orders.created\" [inventory-service]",
            "Internal \"UPDATE inventory\"",
            "Consumer \"process orders.created\" [payment-service]",
            "Internal \"POST /payment-gateway/charge\"",
            "Producer \"send payments.processed\"",
            "Consumer \"process payments.processed\" [shipping-service]",
        ],
        "{stdout}"
    );
    let indents: Vec<usize> = spans.iter().map(|(indent, _, _, _)| *indent).collect();
    assert_eq!(indents, vec![2, 4, 6, 4, 6, 6, 8], "each hop is a child of the one before:\n{stdout}");
    let parent_of = |index: usize| format!("parent {}", spans[index].2);
    let parents: Vec<&str> = spans.iter().map(|(_, _, _, parent)| parent.as_str()).collect();
    assert_eq!(
        parents,
        vec!["root", &parent_of(0), &parent_of(1), &parent_of(0), &parent_of(3), &parent_of(3), &parent_of(5)],
        "{stdout}"
    );
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
    let names: Vec<(usize, &str)> = spans.iter().map(|(indent, name, _, _)| (*indent, name.as_str())).collect();
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
    let parent_of = |index: usize| format!("parent {}", spans[index].2);
    let parents: Vec<&str> = spans.iter().map(|(_, _, _, parent)| parent.as_str()).collect();
    assert_eq!(
        parents,
        vec!["root", &parent_of(0), &parent_of(1), &parent_of(1), &parent_of(3), &parent_of(4)],
        "{stdout}"
    );
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

/// The RabbitMQ variant against the broker `scripts/test` starts: the order's PRODUCER span on the `orders`
/// exchange and the inventory service's CONSUMER span, its child and linked to it, in one trace.
#[test]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
fn orders_rabbitmq_example_prints_one_trace_from_producer_to_consumer() {
    let url = std::env::var("AMQP_URL").expect("AMQP_URL is not set: ./scripts/test starts the broker this runs on");
    let stdout = run(Command::new(build_example("orders_rabbitmq")).arg(url));

    assert!(stdout.starts_with("inventory-service reserved stock for {\"id\":\"ord-1001\",\"items\":2}\n"), "{stdout}");
    let traces: Vec<&str> = stdout.lines().filter(|line| line.starts_with("trace ")).collect();
    assert_eq!(traces.len(), 1, "one trace:\n{stdout}");
    let spans = span_lines(&stdout);
    let names: Vec<(usize, &str)> = spans.iter().map(|(indent, name, _, _)| (*indent, name.as_str())).collect();
    assert_eq!(
        names,
        vec![(2, "Producer \"send orders\""), (4, "Consumer \"process orders\" [inventory-service]")],
        "{stdout}"
    );
    let producer = &spans[0].2;
    assert_eq!(spans[0].3, "root");
    assert_eq!(spans[1].3, format!("parent {producer}"), "the consumer is the producer's child");
    let consumer_block = stdout.split("Consumer \"process orders\"").nth(1).expect("the consumer's lines");
    for line in [
        format!("link -> span {producer}"),
        "messaging.system = rabbitmq".to_owned(),
        "messaging.destination.name = orders".to_owned(),
        "messaging.rabbitmq.destination.routing_key = order.created".to_owned(),
        "messaging.message.id = ord-1001".to_owned(),
        "messaging.message.body.size = 27".to_owned(),
    ] {
        assert!(consumer_block.lines().any(|printed| printed.trim() == line), "consumer: {line}\n{stdout}");
    }
    let producer_block = stdout.split("Consumer \"process orders\"").next().expect("the producer's lines");
    for line in ["messaging.rabbitmq.destination.routing_key = order.created", "app.order.id = ord-1001"] {
        assert!(producer_block.lines().any(|printed| printed.trim() == line), "producer: {line}\n{stdout}");
    }
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
