//! Across languages over NATS: a message published by Python (nats-py, its headers written by OpenTelemetry
//! Python's own W3C propagator) continues in a tracehop consumer, and a tracehop producer's context is what the
//! Python side extracts. The peer is `tests/interop/nats_peer.py`, run with the interpreter
//! `scripts/python-nats-venv` prints (made once per machine from PyPI). Against the server `scripts/test` starts
//! (`NATS_URL`); ignored by a bare `cargo test`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry::Context;

const TIMEOUT: Duration = Duration::from_secs(30);

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nats_url() -> String {
    std::env::var("NATS_URL").expect("NATS_URL is not set: the NATS tests run against the server ./scripts/test starts")
}

/// The interpreter of the Python peer, made by `scripts/python-nats-venv` on first use.
fn python() -> String {
    let output = Command::new(repository().join("scripts/python-nats-venv"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/python-nats-venv runs");
    assert!(output.status.success(), "scripts/python-nats-venv failed (its output is above)");
    String::from_utf8(output.stdout).expect("a UTF-8 path").trim().to_owned()
}

/// The Python peer in `mode` on `subject`, its stdout piped.
fn peer(mode: &str, subject: &str) -> std::process::Child {
    Command::new(python())
        .arg(repository().join("tests/interop/nats_peer.py"))
        .args([mode, subject])
        .env("NATS_URL", nats_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the Python peer starts")
}

/// The one JSON line the peer prints last.
fn json_line(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|error| panic!("the peer printed {line:?}: {error}"))
}

fn text<'a>(json: &'a serde_json::Value, key: &str) -> &'a str {
    json[key].as_str().unwrap_or_else(|| panic!("{key} in {json}"))
}

#[tracehop::traced_consumer(group = "interop")]
async fn on_python_order(message: &async_nats::Message) -> (TraceId, SpanId) {
    let context = Context::current();
    let span = context.span();
    (span.span_context().trace_id(), span.span_context().span_id())
}

#[tracehop::traced_producer(destination = subject)]
async fn publish_to_python(
    client: &async_nats::Client,
    subject: &str,
    headers: async_nats::HeaderMap,
) -> (TraceId, SpanId) {
    client.publish_with_headers(subject.to_owned(), headers, "{}".into()).await.expect("published");
    client.flush().await.expect("flushed");
    let context = Context::current();
    let span = context.span();
    (span.span_context().trace_id(), span.span_context().span_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_message_python_publishes_continues_in_a_tracehop_consumer() {
    suite::spans();
    let client = async_nats::connect(nats_url()).await.expect("connected");
    let subject = suite::unique_topic("interop.from-python");
    let mut subscriber = client.subscribe(subject.clone()).await.expect("subscribed");
    client.flush().await.expect("the subscription reached the server");

    let published = tokio::task::spawn_blocking(move || peer("publish", &subject).wait_with_output())
        .await
        .expect("the peer's task")
        .expect("the peer ran");
    assert!(published.status.success(), "the Python peer failed (its stderr is above)");
    let python_span = json_line(String::from_utf8_lossy(&published.stdout).trim());

    let message = tokio::time::timeout(TIMEOUT, subscriber.next()).await.expect("a message in time").expect("open");
    let (trace_id, span_id) = on_python_order(&message).await;
    assert_eq!(trace_id.to_string(), text(&python_span, "trace_id"), "the Python trace continues");
    let consumer = suite::finished_span(span_id);
    assert_eq!(consumer.span_kind, SpanKind::Consumer);
    assert_eq!(consumer.parent_span_id.to_string(), text(&python_span, "span_id"), "a child of Python's span");
    assert!(consumer.parent_span_is_remote);
    // OpenTelemetry Python writes the Level 2 random flag: sampled and random, both kept.
    assert_eq!(text(&python_span, "trace_flags"), "03");
    assert_eq!(consumer.span_context.trace_flags().to_u8(), 0x03);
    assert_eq!(consumer.name, format!("process {}", message.subject));
    assert_eq!(suite::attribute(&consumer, "messaging.system"), Some("nats".into()));
    assert_eq!(suite::attribute(&consumer, "tracehop.context.rejected"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn python_reads_the_context_a_tracehop_producer_writes() {
    suite::spans();
    let client = async_nats::connect(nats_url()).await.expect("connected");
    let subject = suite::unique_topic("interop.to-python");
    let mut receiver = peer("receive", &subject);
    let mut lines = BufReader::new(receiver.stdout.take().expect("piped"));
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        lines.read_line(&mut line).expect("the peer's first line");
        (line, lines)
    });
    let (line, mut lines) = ready.await.expect("the peer's task");
    assert_eq!(line.trim(), "ready", "the peer subscribed");

    let (trace_id, span_id) = publish_to_python(&client, &subject, async_nats::HeaderMap::new()).await;

    let extracted = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        lines.read_line(&mut line).expect("the peer's answer");
        line
    })
    .await
    .expect("the peer's task");
    assert!(receiver.wait().expect("the peer ends").success(), "the Python peer failed (its stderr is above)");
    let extracted = json_line(extracted.trim());
    assert_eq!(text(&extracted, "trace_id"), trace_id.to_string(), "Python reads tracehop's trace");
    assert_eq!(text(&extracted, "span_id"), span_id.to_string(), "the producer span is Python's parent");
    assert_eq!(text(&extracted, "trace_flags"), "01", "sampled; tracehop's own traces are not random by default");
    let producer = suite::finished_span(span_id);
    assert_eq!((producer.span_kind, producer.name.as_ref()), (SpanKind::Producer, format!("send {subject}").as_str()));
    assert_eq!(
        text(&extracted["headers"], "traceparent"),
        format!("00-{trace_id}-{span_id}-01"),
        "the header as tracehop wrote it"
    );
}
