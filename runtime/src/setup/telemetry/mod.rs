//! `tracehop::init()`: the tracer provider and propagators of a service, configured by the standard `OTEL_*`
//! variables, in one call (feature `otlp`).

mod error;
mod exporter;
mod variables;

use std::fmt;
use std::time::Duration;

use opentelemetry::trace::noop::NoopTracerProvider;
use opentelemetry::{global, Key, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{SdkTracerProvider, ShouldSample, SpanProcessor, TracerProviderBuilder};
use opentelemetry_sdk::Resource;

pub use error::TelemetryError;
use exporter::{ExportTarget, GrpcRuntime};
use variables::{TracesExporter, Variables};

/// The wire protocol of the OTLP exporter, as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// `grpc`: OTLP over gRPC, to port 4317 by default.
    Grpc,
    /// `http/protobuf`: OTLP over HTTP with protobuf bodies, to port 4318 by default. The specification's default.
    HttpProtobuf,
    /// `http/json`: OTLP over HTTP with JSON bodies, to port 4318 by default.
    HttpJson,
}

impl fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
            Self::HttpJson => "http/json",
        })
    }
}

/// Sets up telemetry for a service from the standard OpenTelemetry variables: the W3C propagators, and a global
/// tracer provider that samples, describes the service and exports in batches over OTLP. Keep the returned
/// [`Telemetry`] alive until the end of `main`: dropping it sends the spans still waiting.
///
/// ```no_run
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let _telemetry = tracehop::init()?;
///     // consume and publish; traced handlers export through the provider just installed
///     Ok(())
/// }
/// ```
///
/// It reads (empty counts as unset; a signal-specific variable wins over its generic twin):
///
/// | Variable | Values | Default |
/// |---|---|---|
/// | `OTEL_SDK_DISABLED` | `true`: propagators only, no span recorded or exported | `false` |
/// | `OTEL_SERVICE_NAME` | the `service.name` resource attribute | `unknown_service:<executable>` |
/// | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,...`, values percent-encoded | none |
/// | `OTEL_TRACES_EXPORTER` | `otlp`, `none` | `otlp` |
/// | `OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`; any of them after `tracehop_links_`, inside a [`LinkSampler`](crate::LinkSampler) (`tracehop_links_parentbased_always_on`, `tracehop_links_parentbased_traceidratio`, ...) | `parentbased_always_on` |
/// | `OTEL_TRACES_SAMPLER_ARG` | the ratio of the ratio samplers, from 0 to 1 | `1` |
/// | `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` | `grpc`, `http/protobuf`, `http/json` | `http/protobuf` |
/// | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; HTTP appends `/v1/traces` | `http://localhost:4317` (gRPC), `http://localhost:4318` (HTTP) |
/// | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the URL, used as it is | |
/// | `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TRACES_HEADERS` | `name=value,...`, values percent-encoded | none |
/// | `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` | milliseconds per export | `10000` |
///
/// A value outside these is a [`TelemetryError`] naming the variable, and nothing is installed. The SDK reads a
/// few more variables itself, as it always does: the batch processor's `OTEL_BSP_*`, the span limits
/// `OTEL_SPAN_*_LIMIT` and the exporters' `OTEL_EXPORTER_OTLP_*COMPRESSION`.
///
/// The batch processor exports from a thread of its own, so export never blocks a handler. The gRPC exporter
/// also runs its connection on a small tokio runtime of its own, on one more thread: `init()` works the same
/// from a plain `main` and from `#[tokio::main]`. To override a variable in code, use [`Telemetry::builder`].
///
/// The provider draws trace ids with the SDK's random id generator, so `init()` also turns on
/// [`random_trace_ids`](crate::random_trace_ids): the traces tracehop starts carry W3C Trace Context Level 2's
/// random flag.
pub fn init() -> Result<Telemetry, TelemetryError> {
    Telemetry::builder().install()
}

/// The telemetry [`init`] set up. Dropping it flushes the spans still waiting and shuts the tracer provider down,
/// so nothing is lost when `main` returns; [`shutdown`](Self::shutdown) does the same and reports failure.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let telemetry = tracehop::init()?;
/// // ... serve ...
/// telemetry.shutdown()?; // or let it drop
/// # Ok(())
/// # }
/// ```
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    grpc_runtime: Option<GrpcRuntime>,
}

impl Telemetry {
    /// A builder whose explicit values win over the variables [`init`] reads.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }

    /// The tracer provider installed as OpenTelemetry's global one; `None` with `OTEL_SDK_DISABLED=true`, which
    /// installs a no-op provider instead.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Exports the spans ended so far and waits for the collector's answer.
    pub fn force_flush(&self) -> OTelSdkResult {
        self.provider.as_ref().map_or(Ok(()), SdkTracerProvider::force_flush)
    }

    /// Exports the spans still waiting and shuts the tracer provider down; spans ended afterwards are not exported.
    pub fn shutdown(mut self) -> OTelSdkResult {
        self.provider.take().map_or(Ok(()), |provider| provider.shutdown())
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Nobody is left to report to; the SDK's internal log has the details.
            let _ = provider.shutdown();
        }
        // Only now: the provider's last export went out through this runtime.
        drop(self.grpc_runtime.take());
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry").field("provider", &self.provider).finish_non_exhaustive()
    }
}

type AddSpanProcessor = Box<dyn FnOnce(TracerProviderBuilder) -> TracerProviderBuilder>;
/// Where the `OTEL_*` variables are read from: the process environment unless code says otherwise.
type VariableLookup = Box<dyn Fn(&str) -> Option<String>>;

/// [`init`] with values given in code, which win over the variables; what is not given is read from them.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use opentelemetry_sdk::trace::Sampler;
/// use std::time::Duration;
///
/// let _telemetry = tracehop::Telemetry::builder()
///     .service_name("orders-service")
///     .protocol(tracehop::OtlpProtocol::Grpc)
///     .endpoint("http://collector:4317")
///     .header("api-key", "secret")
///     .timeout(Duration::from_secs(5))
///     .sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.1))))
///     .install()?;
/// # Ok(())
/// # }
/// ```
pub struct TelemetryBuilder {
    variables: VariableLookup,
    service_name: Option<String>,
    resource_attributes: Vec<KeyValue>,
    endpoint: Option<String>,
    protocol: Option<OtlpProtocol>,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    sampler: Option<Box<dyn ShouldSample>>,
    span_processors: Vec<AddSpanProcessor>,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        Self {
            // A value that is not Unicode becomes one with replacement characters, which no checked variable
            // accepts: an error naming it, rather than the variable silently ignored.
            variables: Box::new(|name| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())),
            service_name: None,
            resource_attributes: Vec::new(),
            endpoint: None,
            protocol: None,
            headers: Vec::new(),
            timeout: None,
            sampler: None,
            span_processors: Vec::new(),
        }
    }
}

impl TelemetryBuilder {
    /// Reads the `OTEL_*` variables through `lookup` instead of the process environment: from a configuration
    /// file, or a map in a test.
    ///
    /// ```
    /// let settings = std::collections::HashMap::from([("OTEL_SDK_DISABLED", "true")]);
    /// let telemetry = tracehop::Telemetry::builder()
    ///     .variables(move |name| settings.get(name).map(|value| value.to_string()))
    ///     .install()
    ///     .unwrap();
    /// assert!(telemetry.tracer_provider().is_none());
    /// ```
    pub fn variables(mut self, lookup: impl Fn(&str) -> Option<String> + 'static) -> Self {
        self.variables = Box::new(lookup);
        self
    }

    /// The `service.name` resource attribute, over `OTEL_SERVICE_NAME`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// A resource attribute, over the same key in `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn resource_attribute(mut self, attribute: KeyValue) -> Self {
        self.resource_attributes.push(attribute);
        self
    }

    /// The collector's URL, used as it is for either protocol (include `/v1/traces` for HTTP), over
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The wire protocol, over `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` and `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// A header (gRPC metadata) sent with every export, over the same name in the header variables. The value is
    /// sent as it is, not percent-decoded.
    ///
    /// The exporters of `opentelemetry-otlp` also read `OTEL_EXPORTER_OTLP_HEADERS` from the process environment
    /// themselves, and there a name set in both keeps the variable's value.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// How long one export may take, over `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` and `OTEL_EXPORTER_OTLP_TIMEOUT`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The sampler, over `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (which are then not read).
    pub fn sampler(mut self, sampler: impl ShouldSample + 'static) -> Self {
        self.sampler = Some(Box::new(sampler));
        self
    }

    /// A span processor of your own, beside the exporter's batch processor (also with `OTEL_TRACES_EXPORTER=none`;
    /// not with `OTEL_SDK_DISABLED=true`, where nothing is recorded).
    pub fn with_span_processor(mut self, processor: impl SpanProcessor + 'static) -> Self {
        self.span_processors.push(Box::new(move |builder| builder.with_span_processor(processor)));
        self
    }

    /// Checks every value, then installs the W3C propagators and the global tracer provider. On error nothing is
    /// installed.
    pub fn install(self) -> Result<Telemetry, TelemetryError> {
        let variables = Variables::read(&*self.variables)?;
        if variables.sdk_disabled {
            // The no-op tracer hands the incoming context on unchanged: producers still inject it, so the trace
            // continues through this service, unrecorded.
            global::set_tracer_provider(NoopTracerProvider::new());
            crate::install_propagator();
            return Ok(Telemetry { provider: None, grpc_runtime: None });
        }
        let headers = self.merged_headers(&variables)?;
        let endpoint = self
            .endpoint
            .as_deref()
            .map(|url| variables::checked_endpoint("TelemetryBuilder::endpoint", url))
            .transpose()?;
        let resource = self.resource(&variables);
        let sampler = self.sampler.unwrap_or(variables.sampler);
        let mut provider = SdkTracerProvider::builder().with_resource(resource).with_sampler(sampler);
        let mut grpc_runtime = None;
        if variables.traces_exporter == TracesExporter::Otlp {
            let protocol = self.protocol.or(variables.otlp.protocol).unwrap_or(OtlpProtocol::HttpProtobuf);
            let url = endpoint.unwrap_or_else(|| variables.otlp.traces_url(protocol));
            let (exporter, runtime) = exporter::span_exporter(ExportTarget {
                protocol,
                url: &url,
                headers: &headers,
                timeout: self.timeout.or(variables.otlp.timeout),
            })?;
            provider = provider.with_batch_exporter(exporter);
            grpc_runtime = runtime;
        }
        for add_span_processor in self.span_processors {
            provider = add_span_processor(provider);
        }
        let provider = provider.build();
        global::set_tracer_provider(provider.clone());
        crate::install_propagator();
        // The provider draws trace ids with the SDK's random id generator.
        crate::set_random_trace_ids(true);
        Ok(Telemetry { provider: Some(provider), grpc_runtime })
    }

    /// The variables' headers, with those given in code replacing the same names.
    fn merged_headers(&self, variables: &Variables) -> Result<Vec<(String, String)>, TelemetryError> {
        let mut headers = variables.otlp.headers.clone();
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(TelemetryError::invalid("TelemetryBuilder::header", name, "an HTTP header name"));
            }
            if http::HeaderValue::from_str(value).is_err() {
                return Err(TelemetryError::invalid("TelemetryBuilder::header", value, "an HTTP header value"));
            }
            headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value.clone()));
        }
        Ok(headers)
    }

    /// The SDK's own attributes (`telemetry.sdk.*`), then `OTEL_RESOURCE_ATTRIBUTES`, then the attributes given in
    /// code, then `service.name` from the first of: code, `OTEL_SERVICE_NAME`, the attributes, the executable.
    fn resource(&self, variables: &Variables) -> Resource {
        let service_name_in = |attributes: &[KeyValue]| {
            attributes
                .iter()
                .rev()
                .find(|attribute| attribute.key == Key::from_static_str("service.name"))
                .map(|attribute| attribute.value.clone())
        };
        let service_name = self
            .service_name
            .clone()
            .map(Value::from)
            .or_else(|| service_name_in(&self.resource_attributes))
            .or_else(|| variables.service_name.clone().map(Value::from))
            .or_else(|| service_name_in(&variables.resource_attributes))
            .unwrap_or_else(unknown_service);
        Resource::builder_empty()
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_attributes(variables.resource_attributes.iter().cloned())
            .with_attributes(self.resource_attributes.iter().cloned())
            .with_service_name(service_name)
            .build()
    }
}

/// The specification's `service.name` when none is given: `unknown_service:` and the executable's name.
fn unknown_service() -> Value {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_name().and_then(|name| name.to_str()).map(|name| format!("unknown_service:{name}")))
        .unwrap_or_else(|| "unknown_service".to_owned())
        .into()
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &self.headers.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("sampler", &self.sampler)
            .field("span_processors", &self.span_processors.len())
            .finish_non_exhaustive()
    }
}
