//! Export over OTLP/HTTP (`tracehop::otlp::install`): spans reach a collector on loopback, and a collector that
//! is down costs spans, never the handler's result.

use std::net::TcpListener;
use std::time::Duration;

#[tracehop::traced_producer(system = "kafka", destination = "orders.exported")]
fn publish_exported(order: u32) -> Result<u32, String> {
    let _headers_of_the_record = tracehop::kafka::trace_headers();
    Ok(order)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn spans_reach_a_collector_and_a_collector_that_is_down_costs_no_result() {
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

    // Nothing listens on this port any more: export fails, the handler does not. Whether the flush reports the
    // failure is the SDK's business (under load its flush can return `Ok` before the export is tried), so only
    // the handler's result and a flush and shutdown that return are asserted; `exporter_outage.rs` holds the
    // outage to thousands of messages.
    let closed = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let endpoint = format!("http://{}/v1/traces", closed.local_addr().unwrap());
    drop(closed);
    let provider = tracehop::otlp::install("orders-service", &endpoint).expect("the exporter builds");
    assert_eq!(publish_exported(8), Ok(8));
    let _ = provider.force_flush();
    let _ = provider.shutdown();
}
