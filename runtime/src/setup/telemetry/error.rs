//! Why [`init`](crate::init) could not set telemetry up.

use std::fmt;

use super::OtlpProtocol;

/// Why [`init`](crate::init) or [`TelemetryBuilder::install`](crate::TelemetryBuilder::install) did not set
/// telemetry up. Nothing is installed when it is returned: no tracer provider, no propagator.
///
/// ```
/// # #[cfg(feature = "otlp")] {
/// let error = tracehop::Telemetry::builder()
///     .variables(|name| (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "thrift".to_owned()))
///     .install()
///     .unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     r#"OTEL_EXPORTER_OTLP_PROTOCOL="thrift" is not valid: expected one of grpc, http/protobuf, http/json"#
/// );
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A variable (or a value given to [`TelemetryBuilder`](crate::TelemetryBuilder)) holds a value tracehop cannot
    /// use.
    InvalidSetting {
        /// The variable, such as `OTEL_TRACES_SAMPLER_ARG`, or the builder method, such as
        /// `TelemetryBuilder::endpoint`.
        setting: String,
        /// The value as given.
        value: String,
        /// What the setting accepts.
        expected: String,
    },
    /// The OTLP exporter refused its configuration (for example an `https://` gRPC endpoint, which needs a TLS
    /// feature of `opentelemetry-otlp` that tracehop does not turn on).
    Exporter {
        /// The protocol of the exporter that failed.
        protocol: OtlpProtocol,
        /// The exporter's own error.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The thread that runs the gRPC exporter's connection could not be started.
    ExportThread(std::io::Error),
}

impl TelemetryError {
    pub(crate) fn invalid(setting: &str, value: &str, expected: impl Into<String>) -> Self {
        Self::InvalidSetting { setting: setting.to_owned(), value: value.to_owned(), expected: expected.into() }
    }
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSetting { setting, value, expected } => {
                write!(f, "{setting}={value:?} is not valid: expected {expected}")
            }
            Self::Exporter { protocol, source } => {
                write!(f, "the OTLP exporter ({protocol}) could not be built: {source}")
            }
            Self::ExportThread(error) => write!(f, "the gRPC exporter's thread could not be started: {error}"),
        }
    }
}

impl std::error::Error for TelemetryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidSetting { .. } => None,
            Self::Exporter { source, .. } => Some(source),
            Self::ExportThread(error) => Some(error),
        }
    }
}
