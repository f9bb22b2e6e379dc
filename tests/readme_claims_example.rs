//! README, "Seeing the traces in Jaeger or Grafana Tempo": "With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the example
//! also exports its spans over OTLP, set up by `tracehop::Telemetry::builder()` from the standard `OTEL_*`
//! variables (HTTP/protobuf unless `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`; service name `order-pipeline` unless
//! `OTEL_SERVICE_NAME` says otherwise); without it, nothing leaves the process." The order pipeline runs as a user
//! runs it, its spans going to collectors on loopback that these tests start. `tests/README.md` maps each README
//! claim to its test.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as ProtoValue;
use prost::Message as _;
use serde_json::{json, Value};

/// Builds the `orders` example once and returns the executable cargo reports for it (as `tests/examples.rs`
/// does: never a path guessed beside this test binary).
fn orders_example() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let built = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--message-format=json-render-diagnostics", "--example", "orders"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(built.status.success(), "cargo build --example orders failed");
        String::from_utf8_lossy(&built.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|message| {
                message["reason"] == "compiler-artifact"
                    && message["target"]["name"] == "orders"
                    && message["target"]["kind"] == json!(["example"])
            })
            .and_then(|message| message["executable"].as_str().map(PathBuf::from))
            .expect("cargo build --example orders reported its executable")
    })
}

/// One run of the example with `--spans-json` and exactly the `OTEL_*` variables `variables`: its exit, its
/// output, and the ids (trace, span) of the spans it printed.
struct Run {
    output: Output,
    printed: BTreeSet<(String, String)>,
}

fn run_orders(variables: &[(&str, &str)]) -> Run {
    let mut command = Command::new(orders_example());
    command.arg("--spans-json");
    // The developer's own OpenTelemetry set-up must not steer the example here.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
    command.envs(variables.iter().copied());
    let output = command.output().expect("the example starts");
    let printed = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            let span: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
            (span["trace"].as_str().unwrap().to_owned(), span["span"].as_str().unwrap().to_owned())
        })
        .collect();
    Run { output, printed }
}

impl Run {
    fn assert_succeeded(&self) {
        assert!(
            self.output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        );
        assert!(self.printed.len() > 10, "the pipeline printed its spans: {:?}", self.printed);
    }
}

/// Every export the OTLP/HTTP collector received (the example has ended: every request is already in), checked to
/// be `POST /v1/traces` with a protobuf body, decoded.
fn http_exports(received: &mpsc::Receiver<suite::HttpRequest>) -> Vec<ExportTraceServiceRequest> {
    let requests: Vec<suite::HttpRequest> = received.try_iter().collect();
    assert!(!requests.is_empty(), "the collector received the spans");
    requests
        .iter()
        .map(|request| {
            assert_eq!(request.request_line, "POST /v1/traces HTTP/1.1");
            assert_eq!(request.headers.get("content-type").map(String::as_str), Some("application/x-protobuf"));
            ExportTraceServiceRequest::decode(request.body.as_slice()).expect("an OTLP protobuf body")
        })
        .collect()
}

/// The `service.name` of every resource in `exports`.
fn service_names(exports: &[ExportTraceServiceRequest]) -> BTreeSet<String> {
    exports
        .iter()
        .flat_map(|export| &export.resource_spans)
        .filter_map(|resource| resource.resource.as_ref())
        .flat_map(|resource| &resource.attributes)
        .filter(|attribute| attribute.key == "service.name")
        .map(|attribute| match attribute.value.as_ref().and_then(|value| value.value.as_ref()) {
            Some(ProtoValue::StringValue(name)) => name.clone(),
            other => panic!("service.name is a string, not {other:?}"),
        })
        .collect()
}

/// The ids (trace, span) of every span in `exports`, as lower-case hex.
fn exported_ids(exports: &[ExportTraceServiceRequest]) -> BTreeSet<(String, String)> {
    let hex = |bytes: &[u8]| bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>();
    exports
        .iter()
        .flat_map(|export| &export.resource_spans)
        .flat_map(|resource| &resource.scope_spans)
        .flat_map(|scope| &scope.spans)
        .map(|span| (hex(&span.trace_id), hex(&span.span_id)))
        .collect()
}

#[test]
fn with_an_otlp_endpoint_the_example_exports_every_span_over_http_protobuf_as_order_pipeline() {
    let (url, received) = suite::otlp_http_collector();

    let run = run_orders(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &url)]);

    run.assert_succeeded();
    let exports = http_exports(&received);
    assert_eq!(exported_ids(&exports), run.printed, "every span the picture holds, and no other");
    assert_eq!(service_names(&exports), BTreeSet::from(["order-pipeline".to_owned()]));
}

#[test]
fn otel_service_name_names_the_examples_exported_service() {
    let (url, received) = suite::otlp_http_collector();

    let run = run_orders(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &url), ("OTEL_SERVICE_NAME", "claims-shop")]);

    run.assert_succeeded();
    assert_eq!(service_names(&http_exports(&received)), BTreeSet::from(["claims-shop".to_owned()]));
}

/// "Without it, nothing leaves the process": the example does not fall back to the OTLP default endpoints
/// (`localhost:4318` for HTTP, `localhost:4317` for gRPC), where these tests listen while it runs.
#[test]
fn without_an_otlp_endpoint_the_example_connects_to_no_collector() {
    let defaults: Vec<TcpListener> = ["127.0.0.1:4318", "127.0.0.1:4317", "[::1]:4318", "[::1]:4317"]
        .iter()
        .filter_map(|address| match TcpListener::bind(address) {
            Ok(listener) => Some(listener),
            // A host without IPv6 loopback: `localhost` cannot reach it there either.
            Err(error) if address.starts_with('[') && error.kind() == std::io::ErrorKind::AddrNotAvailable => None,
            Err(error) => panic!("cannot listen on the OTLP default {address}: {error}"),
        })
        .collect();
    assert!(defaults.len() >= 2, "listening on 127.0.0.1:4318 and :4317");

    let run = run_orders(&[]);

    run.assert_succeeded();
    for listener in &defaults {
        listener.set_nonblocking(true).unwrap();
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
            "the example connected to {:?}: {accepted:?}",
            listener.local_addr()
        );
    }
}

/// An OTLP/gRPC collector (`TraceService`) on 127.0.0.1, on a runtime of its own thread, handing over every
/// export it receives. Returns its URL.
fn grpc_collector() -> (String, mpsc::Receiver<ExportTraceServiceRequest>) {
    struct Collector(Mutex<mpsc::Sender<ExportTraceServiceRequest>>);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let _ = self.0.lock().unwrap().send(request.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    let (sender, receiver) = mpsc::channel();
    let (url_sender, url_receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
            url_sender.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            tonic::transport::Server::builder()
                .serve_with_incoming(
                    TraceServiceServer::new(Collector(Mutex::new(sender))),
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                )
                .await
                .expect("the collector serves");
        });
    });
    (url_receiver.recv().unwrap(), receiver)
}

#[test]
fn with_otlp_protocol_grpc_the_example_exports_every_span_over_grpc() {
    let (url, received) = grpc_collector();

    let run = run_orders(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &url), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);

    run.assert_succeeded();
    let exports: Vec<ExportTraceServiceRequest> = received.try_iter().collect();
    assert_eq!(exported_ids(&exports), run.printed, "every span the picture holds, and no other");
    assert_eq!(service_names(&exports), BTreeSet::from(["order-pipeline".to_owned()]));
}

/// "an unreachable collector shows as an `ExportError` at the end of the example's output", after the picture.
#[test]
fn with_an_unreachable_collector_the_example_ends_its_output_with_an_export_error() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);

    let run = run_orders(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &url)]);

    run.assert_succeeded();
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    let last = stdout.lines().rfind(|line| !line.is_empty()).expect("some output");
    assert!(last.starts_with("ERROR name=\"BatchSpanProcessor.ExportError\" "), "{stdout}");
    assert!(stdout.contains("\ntrace "), "the picture is drawn before it: {stdout}");
}
