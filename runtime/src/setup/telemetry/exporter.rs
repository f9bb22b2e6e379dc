//! The OTLP span exporter for one protocol, and the runtime the gRPC one needs.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::{OtlpProtocol, TelemetryError};

/// Where and how the exporter sends, every value already checked.
pub(crate) struct ExportTarget<'a> {
    pub(crate) protocol: OtlpProtocol,
    pub(crate) url: &'a str,
    /// Names and decoded values.
    pub(crate) headers: &'a [(String, String)],
    pub(crate) timeout: Option<Duration>,
}

/// Builds the exporter; for gRPC also the runtime its connection runs on, which must outlive it.
pub(crate) fn span_exporter(target: ExportTarget<'_>) -> Result<(SpanExporter, Option<GrpcRuntime>), TelemetryError> {
    let failed = |source| TelemetryError::Exporter { protocol: target.protocol, source };
    match target.protocol {
        OtlpProtocol::Grpc => {
            let runtime = GrpcRuntime::start()?;
            // tonic spawns its connection's tasks on the runtime current while the channel is built.
            let _entered = runtime.handle.enter();
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(target.url)
                .with_metadata(tonic::metadata::MetadataMap::from_headers(header_map(target.headers)));
            if let Some(timeout) = target.timeout {
                builder = builder.with_timeout(timeout);
            }
            Ok((builder.build().map_err(failed)?, Some(runtime)))
        }
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            let encoding =
                if target.protocol == OtlpProtocol::HttpJson { Protocol::HttpJson } else { Protocol::HttpBinary };
            // The HTTP builder percent-decodes the values it is given: a `%` of a decoded value is encoded again
            // so it arrives as written.
            let headers: HashMap<String, String> =
                target.headers.iter().map(|(name, value)| (name.clone(), value.replace('%', "%25"))).collect();
            let mut builder = SpanExporter::builder()
                .with_http()
                .with_protocol(encoding)
                .with_endpoint(target.url)
                .with_headers(headers);
            if let Some(timeout) = target.timeout {
                builder = builder.with_timeout(timeout);
            }
            Ok((builder.build().map_err(failed)?, None))
        }
    }
}

fn header_map(headers: &[(String, String)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        // Checked when they were read; a pair that still fails is left out rather than panicking.
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
        {
            map.insert(name, value);
        }
    }
    map
}

/// A current-thread tokio runtime on a thread of its own, for the gRPC exporter's connection.
///
/// The batch processor exports from its own thread, blocking on the exporter's future, while tonic's connection
/// needs a tokio runtime to make progress. Owning one makes `init()` work the same from a plain `main`, from
/// `#[tokio::main]` and from a current-thread runtime, where a shutdown at the end of `main` would otherwise wait
/// for the very thread it blocks.
#[derive(Debug)]
pub(crate) struct GrpcRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GrpcRuntime {
    fn start() -> Result<Self, TelemetryError> {
        let (handle_sender, handle_receiver) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        // The runtime is built and dropped on its own thread: dropping one inside the caller's async context
        // would panic.
        let thread = std::thread::Builder::new()
            .name("tracehop-otlp-grpc".to_owned())
            .spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => {
                    let _ = handle_sender.send(Ok(runtime.handle().clone()));
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                }
                Err(error) => {
                    let _ = handle_sender.send(Err(error));
                }
            })
            .map_err(TelemetryError::ExportThread)?;
        let handle = handle_receiver
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the runtime thread ended before starting its runtime")))
            .map_err(TelemetryError::ExportThread)?;
        Ok(Self { handle, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for GrpcRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
