//! Export over OTLP/HTTP (`tracehop::otlp::install`): spans reach a collector on loopback, and a collector that
//! is down costs spans, reported by the flush, never the handler's result.

use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkError;

/// `install` sets the process's global tracer provider: one exporter at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[tracehop::traced_producer(system = "kafka", destination = "orders.exported")]
fn publish_exported(order: u32) -> Result<u32, String> {
    let _headers_of_the_record = tracehop::kafka::trace_headers();
    Ok(order)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn spans_reach_a_collector_over_otlp_http() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (base_url, received) = suite::otlp_http_collector();
    let endpoint = format!("{base_url}/v1/traces");
    let provider = tracehop::otlp::install("orders-service", &endpoint).expect("the exporter builds");
    assert_eq!(publish_exported(7), Ok(7));
    provider.force_flush().expect("the collector accepts the batch");
    let request = received.recv_timeout(Duration::from_secs(10)).expect("the collector received the export");
    assert_eq!(request.request_line, "POST /v1/traces HTTP/1.1");
    assert_eq!(request.headers.get("content-type").map(String::as_str), Some("application/x-protobuf"));
    assert!(contains(&request.body, b"send orders.exported"), "the span name is in the export");
    assert!(contains(&request.body, b"orders-service"), "the service name is in the export");
    assert!(contains(&request.body, b"messaging.destination.name"));
    provider.shutdown().expect("shut down");
}

/// Nothing listens on the collector's port: the handler's result is untouched, the flush that exports its span
/// reports the refused connection (not the processor's 5-second flush timeout, which a hanging export would
/// give), and the provider still shuts down.
#[test]
fn a_collector_that_is_down_fails_the_export_and_never_the_handler() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // The batch processor exports on the flush alone, never on its timer first (which would leave the flush
    // nothing to export): its scheduled delay, read when the provider is built, far longer than the test.
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "600000");
    let closed = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let endpoint = format!("http://{}/v1/traces", closed.local_addr().expect("its address"));
    drop(closed);
    let provider = tracehop::otlp::install("orders-service", &endpoint).expect("the exporter builds");

    assert_eq!(publish_exported(8), Ok(8));
    let flushed = provider.force_flush();

    let Err(OTelSdkError::InternalFailure(reported)) = &flushed else {
        panic!("the flush reports the failed export: {flushed:?}")
    };
    assert!(reported.contains("HTTP export failed: network error"), "the refused connection: {reported}");
    provider.shutdown().expect("shut down");
}
