//! An OTLP collector that is down costs spans, never messages, and never unbounded memory: thousands of messages
//! through a traced consumer exporting over OTLP (`tracehop::Telemetry`, the batch span processor) to a port where
//! nothing listens, and to a collector that accepts connections and never answers, are all handled with their
//! results passed through, and the memory the process holds stops growing once the processor's queue is full.
//! (What a message costs during an outage is measured by `cargo bench --bench outage`.)
//!
//! Its own test binary: it installs the global tracer provider and counts every allocation of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpListener;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::Message;
use tracehop::{OtlpProtocol, Telemetry};

/// Counts the bytes the process holds, so the test can tell a bounded queue from a leak.
struct LiveBytes;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LiveBytes = LiveBytes;

/// The global provider is the process's: one outage at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[tracehop::traced_consumer(group = "outage")]
fn handle(message: &OwnedMessage) -> Result<i64, String> {
    Ok(message.offset())
}

fn message(offset: i64) -> OwnedMessage {
    let traceparent = format!("00-4bf92f3577b34da6a3ce929d0e0e{offset:04x}-00f067aa0ba902b7-01");
    OwnedMessage::new(
        Some(b"{\"id\":7}".to_vec()),
        Some(b"order-7".to_vec()),
        "orders".to_owned(),
        Timestamp::NotAvailable,
        0,
        offset,
        Some(OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(&traceparent) })),
    )
}

/// Handles `count` messages from `first` on, checking each handler's result came back unchanged.
fn handle_messages(first: i64, count: i64) {
    for offset in first..first + count {
        assert_eq!(handle(&message(offset)), Ok(offset), "message {offset} handled, its result passed through");
    }
}

/// Handles 20,000 messages exporting to `endpoint`; the bytes held after 4,000 (the batch queue of 2,048 spans is
/// full by then) and after 20,000 differ by less than a span queue's worth.
fn messages_are_handled_and_memory_is_bounded(endpoint: &str) {
    let telemetry = Telemetry::builder()
        .variables(|_| None)
        .service_name("outage")
        .endpoint(endpoint)
        .protocol(OtlpProtocol::HttpProtobuf)
        .timeout(Duration::from_millis(500))
        .install()
        .expect("the exporter builds: an unreachable collector is not an error at start-up");
    handle_messages(0, 4_000);
    let after_the_queue_filled = LIVE.load(Ordering::Relaxed);
    handle_messages(4_000, 16_000);
    let after_all = LIVE.load(Ordering::Relaxed);
    let growth = after_all - after_the_queue_filled;
    eprintln!("{endpoint}: {growth} bytes more held after 16,000 more messages");
    // 16,000 more spans held would be several megabytes; a bounded queue holds at most 2,048 of them.
    assert!(growth < 1_000_000, "memory grew by {growth} bytes over 16,000 messages during the outage");
    // Export failed or timed out: shutting down reports it or not, but returns, and loses no handler result.
    let _ = telemetry.shutdown();
}

#[test]
fn with_nothing_listening_every_message_is_handled_in_bounded_memory() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let closed = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let endpoint = format!("http://{}/v1/traces", closed.local_addr().expect("its address"));
    drop(closed);
    messages_are_handled_and_memory_is_bounded(&endpoint);
}

#[test]
fn with_a_collector_that_never_answers_every_message_is_handled_in_bounded_memory() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Accepts connections (the kernel completes them from the backlog) and never reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let endpoint = format!("http://{}/v1/traces", silent.local_addr().expect("its address"));
    messages_are_handled_and_memory_is_bounded(&endpoint);
    drop(silent);
}
