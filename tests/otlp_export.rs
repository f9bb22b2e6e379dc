//! Export over OTLP/HTTP (`tracehop::otlp::install`): spans reach a collector on loopback, and a collector that
//! is down costs spans, never the handler's result.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[tracehop::traced_producer(system = "kafka", destination = "orders.exported")]
fn publish_exported(order: u32) -> Result<u32, String> {
    let _headers_of_the_record = tracehop::kafka::trace_headers();
    Ok(order)
}

/// One HTTP request as a loopback collector received it: request line and body.
struct Received {
    request_line: String,
    content_type: String,
    body: Vec<u8>,
}

/// A one-request OTLP/HTTP collector on loopback: answers 200 and hands over what it received.
fn collector() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().expect("the exporter connects");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut content_length = 0;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.trim().parse().unwrap(),
                "content-type" => content_type = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = reader.into_inner();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        sender.send(Received { request_line: request_line.trim_end().to_owned(), content_type, body }).unwrap();
    });
    (endpoint, receiver)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn spans_reach_a_collector_and_a_collector_that_is_down_costs_no_result() {
    let (endpoint, received) = collector();
    let provider = tracehop::otlp::install("orders-service", &endpoint).expect("the exporter builds");
    assert_eq!(publish_exported(7), Ok(7));
    provider.force_flush().expect("the collector accepts the batch");
    let request = received.recv_timeout(Duration::from_secs(10)).expect("the collector received the export");
    assert_eq!(request.request_line, "POST /v1/traces HTTP/1.1");
    assert_eq!(request.content_type, "application/x-protobuf");
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
