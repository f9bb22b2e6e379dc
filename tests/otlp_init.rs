//! `tracehop::init()` and `Telemetry::builder()`: spans reach an OTLP collector on loopback over gRPC,
//! HTTP/protobuf and HTTP/JSON, described by the configured service name and resource attributes, and dropping
//! the guard sends them; `OTEL_SDK_DISABLED=true` records and exports nothing yet passes the trace on.
//!
//! The global tracer provider is process-wide: every test here installs one, so they run one at a time.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use opentelemetry::trace::{Span as _, Status, TraceContextExt, Tracer as _};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as ProtoValue;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as ProtoSpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SimpleSpanProcessor};
use prost::Message as _;
use rdkafka::message::Headers as _;

fn one_test_at_a_time() -> MutexGuard<'static, ()> {
    static GLOBAL_PROVIDER: Mutex<()> = Mutex::new(());
    GLOBAL_PROVIDER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `OTEL_*` variables for `Telemetry::builder().variables(..)`, so no test touches the process environment.
fn variables(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'static {
    let map: HashMap<String, String> =
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
    move |name| map.get(name).cloned()
}

#[tracehop::traced_producer(system = "kafka", destination = "orders.init")]
fn publish_order(order: u32) -> rdkafka::message::OwnedHeaders {
    let _ = order;
    tracehop::kafka::trace_headers()
}

/// What a gRPC collector received: the request's metadata (as lower-case name → value) and message.
type GrpcExport = (HashMap<String, String>, ExportTraceServiceRequest);

struct GrpcCollector(Mutex<mpsc::Sender<GrpcExport>>);

#[tonic::async_trait]
impl TraceService for GrpcCollector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let metadata = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
            .collect();
        // Handed over before the answer, as the HTTP collector does.
        let _ = self.0.lock().unwrap().send((metadata, request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC collector (`TraceService`) on 127.0.0.1, on a runtime of its own thread. Returns its URL.
fn grpc_collector() -> (String, mpsc::Receiver<GrpcExport>) {
    let (sender, receiver) = mpsc::channel();
    let (url_sender, url_receiver) = mpsc::channel();
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
            url_sender.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            tonic::transport::Server::builder()
                .serve_with_incoming(
                    TraceServiceServer::new(GrpcCollector(Mutex::new(sender))),
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                )
                .await
                .expect("the collector serves");
        });
    });
    (url_receiver.recv().unwrap(), receiver)
}

fn string(value: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(ProtoValue::StringValue(value.to_owned())) })
}

/// The value of resource attribute `key` in an export.
fn resource_attribute(request: &ExportTraceServiceRequest, key: &str) -> Option<AnyValue> {
    let resource = request.resource_spans.first()?.resource.as_ref()?;
    resource.attributes.iter().find(|attribute| attribute.key == key)?.value.clone()
}

/// Every span name in an export.
fn span_names(request: &ExportTraceServiceRequest) -> Vec<String> {
    request
        .resource_spans
        .iter()
        .flat_map(|resource| &resource.scope_spans)
        .flat_map(|scope| &scope.spans)
        .map(|span| span.name.clone())
        .collect()
}

#[test]
fn http_protobuf_export_carries_the_span_and_the_resource_and_dropping_the_guard_sends_it() {
    let _serial = one_test_at_a_time();
    let (base_url, received) = suite::otlp_http_collector();
    let telemetry = tracehop::Telemetry::builder()
        .variables(variables(&[
            ("OTEL_SERVICE_NAME", "orders-service"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=order%20desk"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &base_url),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=blue%2Fgreen"),
        ]))
        .install()
        .expect("the variables are valid");
    let headers = publish_order(7);
    // The provider draws trace ids at random: the trace this producer starts carries Level 2's random flag.
    assert!(tracehop::random_trace_ids());
    let traceparent = headers.iter().find(|header| header.key == "traceparent").and_then(|header| header.value);
    assert_eq!(traceparent.map(|value| &value[53..]), Some(&b"03"[..]));
    drop(telemetry);

    let request = received.try_recv().expect("dropping the guard sent the span");
    assert_eq!(request.request_line, "POST /v1/traces HTTP/1.1");
    assert_eq!(request.headers.get("content-type").map(String::as_str), Some("application/x-protobuf"));
    assert_eq!(request.headers.get("x-tenant").map(String::as_str), Some("blue/green"));
    let export = ExportTraceServiceRequest::decode(request.body.as_slice()).expect("an OTLP protobuf body");
    assert_eq!(span_names(&export), ["send orders.init"]);
    let span = &export.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.kind, ProtoSpanKind::Producer as i32);
    assert_eq!(resource_attribute(&export, "service.name"), string("orders-service"));
    assert_eq!(resource_attribute(&export, "deployment.environment"), string("test"));
    assert_eq!(resource_attribute(&export, "team"), string("order desk"));
    assert_eq!(resource_attribute(&export, "telemetry.sdk.language"), string("rust"));
}

#[test]
fn http_json_export_reaches_the_traces_endpoint_as_it_is() {
    let _serial = one_test_at_a_time();
    let (base_url, received) = suite::otlp_http_collector();
    let telemetry = tracehop::Telemetry::builder()
        .variables(variables(&[
            ("OTEL_SERVICE_NAME", "json-service"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &format!("{base_url}/custom/path")),
        ]))
        .install()
        .expect("the variables are valid");
    publish_order(8);
    telemetry.shutdown().expect("the collector accepts the batch");

    let request = received.try_recv().expect("shutting down sent the span");
    assert_eq!(request.request_line, "POST /custom/path HTTP/1.1");
    assert_eq!(request.headers.get("content-type").map(String::as_str), Some("application/json"));
    let export: serde_json::Value = serde_json::from_slice(&request.body).expect("a JSON body");
    let resource_spans = &export["resourceSpans"][0];
    assert_eq!(resource_spans["scopeSpans"][0]["spans"][0]["name"], "send orders.init");
    let service_name = resource_spans["resource"]["attributes"]
        .as_array()
        .expect("resource attributes")
        .iter()
        .find(|attribute| attribute["key"] == "service.name")
        .map(|attribute| attribute["value"]["stringValue"].clone());
    assert_eq!(service_name, Some(serde_json::Value::from("json-service")));
}

#[test]
fn values_given_in_code_win_over_the_variables() {
    let _serial = one_test_at_a_time();
    let (base_url, received) = suite::otlp_http_collector();
    let telemetry = tracehop::Telemetry::builder()
        .variables(variables(&[
            ("OTEL_SERVICE_NAME", "from-variable"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=from-variable,region=eu"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=from-variable"),
            ("OTEL_TRACES_SAMPLER", "always_off"),
        ]))
        .service_name("from-code")
        .resource_attribute(KeyValue::new("team", "from-code"))
        .protocol(tracehop::OtlpProtocol::HttpProtobuf)
        .endpoint(format!("{base_url}/from/code"))
        .header("x-tenant", "from-code")
        .sampler(Sampler::AlwaysOn)
        .install()
        .expect("the values are valid");
    publish_order(9);
    drop(telemetry);

    let request = received.try_recv().expect("dropping the guard sent the span");
    assert_eq!(request.request_line, "POST /from/code HTTP/1.1");
    assert_eq!(request.headers.get("x-tenant").map(String::as_str), Some("from-code"));
    let export = ExportTraceServiceRequest::decode(request.body.as_slice()).expect("an OTLP protobuf body");
    assert_eq!(span_names(&export), ["send orders.init"]);
    assert_eq!(resource_attribute(&export, "service.name"), string("from-code"));
    assert_eq!(resource_attribute(&export, "team"), string("from-code"));
    assert_eq!(resource_attribute(&export, "region"), string("eu"));
}

// A current-thread runtime, as `#[tokio::test]` and `#[tokio::main(flavor = "current_thread")]` have: the guard,
// dropped on the runtime's only thread, still gets the batch out, because the gRPC exporter has its own runtime.
#[tokio::test(flavor = "current_thread")]
async fn grpc_export_from_an_async_main_carries_the_span_and_the_resource() {
    let _serial = one_test_at_a_time();
    let (url, received) = grpc_collector();
    let telemetry = tracehop::Telemetry::builder()
        .variables(variables(&[
            ("OTEL_SERVICE_NAME", "payments-service"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=blue"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
        ]))
        .install()
        .expect("the variables are valid");
    publish_order(10);
    drop(telemetry);

    let (metadata, export) = received.try_recv().expect("dropping the guard sent the span");
    assert_eq!(metadata.get("x-tenant").map(String::as_str), Some("blue"));
    assert_eq!(span_names(&export), ["send orders.init"]);
    assert_eq!(resource_attribute(&export, "service.name"), string("payments-service"));
    assert_eq!(resource_attribute(&export, "deployment.environment"), string("staging"));
}

#[test]
fn grpc_export_from_a_plain_main_reaches_the_collector_on_flush() {
    let _serial = one_test_at_a_time();
    let (url, received) = grpc_collector();
    let telemetry = tracehop::Telemetry::builder()
        .variables(variables(&[
            ("OTEL_SERVICE_NAME", "shipping-service"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &url),
        ]))
        .install()
        .expect("the variables are valid");
    publish_order(11);
    telemetry.force_flush().expect("the collector accepts the batch");

    let (_, export) = received.try_recv().expect("the flush sent the span");
    assert_eq!(span_names(&export), ["send orders.init"]);
    assert_eq!(resource_attribute(&export, "service.name"), string("shipping-service"));
    telemetry.shutdown().expect("shut down");
}

#[test]
fn sdk_disabled_records_and_exports_nothing_but_passes_the_incoming_context_on() {
    let _serial = one_test_at_a_time();
    let (base_url, received) = suite::otlp_http_collector();
    let telemetry = tracehop::Telemetry::builder()
        .variables(variables(&[("OTEL_SDK_DISABLED", "true"), ("OTEL_EXPORTER_OTLP_ENDPOINT", &base_url)]))
        .install()
        .expect("the variables are valid");
    assert!(telemetry.tracer_provider().is_none());

    let incoming_traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let incoming = HashMap::from([("traceparent".to_owned(), incoming_traceparent.to_owned())]);
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&incoming));
    let headers = {
        let _attached = parent.attach();
        let span = global::tracer("test").start_with_context("unrecorded", &Context::current());
        assert!(!span.is_recording(), "the no-op tracer records nothing");
        publish_order(12)
    };
    let traceparent = headers.iter().find(|header| header.key == "traceparent").and_then(|header| header.value);
    assert_eq!(traceparent, Some(incoming_traceparent.as_bytes()), "the producer passes the incoming context on");

    drop(telemetry);
    assert!(received.try_recv().is_err(), "nothing is exported");
}

#[test]
fn traces_exporter_none_keeps_the_sampler_and_a_span_processor_of_your_own() {
    let _serial = one_test_at_a_time();
    let spans = InMemorySpanExporter::default();
    let telemetry = tracehop::Telemetry::builder()
        .variables(variables(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ]))
        .with_span_processor(SimpleSpanProcessor::new(spans.clone()))
        .install()
        .expect("the variables are valid");
    publish_order(13);
    assert_eq!(spans.get_finished_spans().unwrap().len(), 0, "ratio 0 drops the root span");

    let sampled_parent = {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
            SpanId::from(0x00f067aa0ba902b7),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ))
    };
    {
        let _attached = sampled_parent.clone().attach();
        publish_order(14);
    }
    // `traceidratio` is not parent-based: the sampled parent does not save the span either.
    assert_eq!(spans.get_finished_spans().unwrap().len(), 0);
    drop(telemetry);

    let spans = InMemorySpanExporter::default();
    let telemetry = tracehop::Telemetry::builder()
        .variables(variables(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ]))
        .with_span_processor(SimpleSpanProcessor::new(spans.clone()))
        .install()
        .expect("the variables are valid");
    {
        let _attached = sampled_parent.attach();
        publish_order(15);
    }
    let finished = spans.get_finished_spans().unwrap();
    assert_eq!(finished.len(), 1, "parent-based sampling follows the sampled remote parent");
    assert_eq!(finished[0].name, "send orders.init");
    assert_eq!(finished[0].status, Status::Unset);
    assert_eq!(finished[0].parent_span_id, opentelemetry::trace::SpanId::from(0x00f067aa0ba902b7));
    drop(telemetry);
}

#[test]
fn a_bad_variable_is_an_error_naming_it_and_installs_nothing() {
    let _serial = one_test_at_a_time();
    let spans = InMemorySpanExporter::default();
    let error = tracehop::Telemetry::builder()
        .variables(variables(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "ten seconds")]))
        .with_span_processor(SimpleSpanProcessor::new(spans.clone()))
        .install()
        .expect_err("the timeout is not a number");
    assert_eq!(
        error.to_string(),
        r#"OTEL_EXPORTER_OTLP_TIMEOUT="ten seconds" is not valid: expected a whole number of milliseconds greater than 0, such as 10000"#
    );
    publish_order(16);
    assert_eq!(spans.get_finished_spans().unwrap().len(), 0, "the processor was never installed");
}

#[test]
fn a_bad_endpoint_given_in_code_is_an_error_naming_the_method() {
    let _serial = one_test_at_a_time();
    let error = tracehop::Telemetry::builder()
        .variables(variables(&[]))
        .endpoint("collector:4317")
        .install()
        .expect_err("the endpoint has no scheme");
    assert_eq!(
        error.to_string(),
        r#"TelemetryBuilder::endpoint="collector:4317" is not valid: expected an absolute http:// or https:// URL, such as http://collector:4317"#
    );
}
