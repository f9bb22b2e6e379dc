//! Export over OTLP/HTTP (feature `otlp`). For a service, prefer [`init`](crate::init): it reads the standard
//! `OTEL_*` variables, speaks gRPC too, and flushes on drop.

use opentelemetry::global;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// Installs a global tracer provider exporting in batches over OTLP/HTTP (protobuf) to `endpoint` (for example
/// `http://127.0.0.1:4318/v1/traces`), and the W3C propagators. Returns the provider: call
/// [`SdkTracerProvider::shutdown`] before the process exits so the last batch is sent.
///
/// The service name and endpoint come from the arguments only; [`init`](crate::init) reads them (and the sampler,
/// resource, protocol, headers and timeout) from the standard `OTEL_*` variables instead.
///
/// An exporter that cannot reach its collector loses spans, never messages: export runs on the batch
/// processor's own thread and its errors are reported by OpenTelemetry's internal log, not to handlers.
pub fn install(
    service_name: &'static str,
    endpoint: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    // Said explicitly: with HTTP/JSON also compiled in (for `init`), the exporter's own default would be JSON.
    let exporter =
        SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary).with_endpoint(endpoint).build()?;
    let provider = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service_name).build())
        .with_batch_exporter(exporter)
        .build();
    global::set_tracer_provider(provider.clone());
    crate::install_propagator();
    Ok(provider)
}
