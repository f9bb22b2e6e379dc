//! The standard `OTEL_*` variables, read through a lookup and checked: every bad value is an error naming the
//! variable, never a silent default.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{Sampler, ShouldSample};

use super::{OtlpProtocol, TelemetryError};
use crate::LinkSampler;

pub(crate) const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
pub(crate) const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub(crate) const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
pub(crate) const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
pub(crate) const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
pub(crate) const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
pub(crate) const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub(crate) const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
pub(crate) const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
pub(crate) const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";

/// The default collector addresses of the OTLP specification.
const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// What the OTLP/HTTP specification appends to the generic endpoint (never to the traces-specific one).
const HTTP_TRACES_PATH: &str = "v1/traces";

const SAMPLERS: &str = "one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, \
                        parentbased_traceidratio, or one of them after tracehop_links_ (that sampler inside \
                        tracehop::LinkSampler), such as tracehop_links_parentbased_always_on";
/// Before a standard sampler's name, `OTEL_TRACES_SAMPLER` asks for that sampler inside a [`LinkSampler`].
const LINK_SAMPLER_PREFIX: &str = "tracehop_links_";
const RATIO: &str = "a number from 0 to 1, such as 0.25";
const ENDPOINT: &str = "an absolute http:// or https:// URL, such as http://collector:4317";
const TIMEOUT: &str = "a whole number of milliseconds greater than 0, such as 10000";

/// Where spans go, as `OTEL_TRACES_EXPORTER` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TracesExporter {
    Otlp,
    None,
}

/// Everything the variables say, checked.
#[derive(Debug)]
pub(crate) struct Variables {
    pub(crate) sdk_disabled: bool,
    pub(crate) service_name: Option<String>,
    pub(crate) resource_attributes: Vec<KeyValue>,
    pub(crate) traces_exporter: TracesExporter,
    pub(crate) sampler: Box<dyn ShouldSample>,
    pub(crate) otlp: OtlpVariables,
}

/// The OTLP exporter's variables, each signal-specific one already preferred over its generic one.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct OtlpVariables {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: a base URL, to which HTTP appends `/v1/traces`.
    pub(crate) endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the URL itself, for either protocol.
    pub(crate) traces_endpoint: Option<String>,
    pub(crate) protocol: Option<OtlpProtocol>,
    /// Names and percent-decoded values.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Option<Duration>,
}

impl OtlpVariables {
    /// The URL the exporter sends to with `protocol`, when no endpoint is given in code.
    pub(crate) fn traces_url(&self, protocol: OtlpProtocol) -> String {
        if let Some(url) = &self.traces_endpoint {
            return url.clone();
        }
        match protocol {
            OtlpProtocol::Grpc => self.endpoint.clone().unwrap_or_else(|| DEFAULT_GRPC_ENDPOINT.to_owned()),
            OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
                let base = self.endpoint.as_deref().unwrap_or(DEFAULT_HTTP_ENDPOINT);
                format!("{}/{HTTP_TRACES_PATH}", base.trim_end_matches('/'))
            }
        }
    }
}

impl Variables {
    /// Reads and checks every variable through `lookup` (`std::env::var` for [`init`](crate::init)).
    ///
    /// With `OTEL_SDK_DISABLED=true` nothing else is read: a service switched off is not held up by a variable
    /// it no longer uses. With `OTEL_TRACES_EXPORTER=none` the exporter's variables are not read either.
    pub(crate) fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let read = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let sdk_disabled = read(OTEL_SDK_DISABLED).map(|value| boolean(OTEL_SDK_DISABLED, &value)).transpose()?;
        let mut variables = Self {
            sdk_disabled: sdk_disabled.unwrap_or(false),
            service_name: None,
            resource_attributes: Vec::new(),
            traces_exporter: TracesExporter::Otlp,
            sampler: Box::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOn))),
            otlp: OtlpVariables::default(),
        };
        if variables.sdk_disabled {
            return Ok(variables);
        }
        variables.service_name = read(OTEL_SERVICE_NAME);
        if let Some(value) = read(OTEL_RESOURCE_ATTRIBUTES) {
            variables.resource_attributes = key_value_list(OTEL_RESOURCE_ATTRIBUTES, &value)?
                .into_iter()
                .map(|(key, value)| KeyValue::new(key, value))
                .collect();
        }
        if let Some(value) = read(OTEL_TRACES_EXPORTER) {
            variables.traces_exporter = traces_exporter(&value)?;
        }
        if let Some(value) = read(OTEL_TRACES_SAMPLER) {
            variables.sampler = sampler(&value, read(OTEL_TRACES_SAMPLER_ARG).as_deref())?;
        }
        if variables.traces_exporter == TracesExporter::Otlp {
            variables.otlp = otlp(&read)?;
        }
        Ok(variables)
    }
}

fn otlp(read: &dyn Fn(&str) -> Option<String>) -> Result<OtlpVariables, TelemetryError> {
    let endpoint = |name| read(name).map(|value| checked_endpoint(name, &value)).transpose();
    let protocol = |name| read(name).map(|value| protocol(name, &value)).transpose();
    let headers = |name| read(name).map(|value| headers(name, &value)).transpose();
    let timeout = |name| read(name).map(|value| timeout(name, &value)).transpose();
    // Every variable is checked, also a generic one its signal-specific twin overrides: a mistake in either is
    // reported when it is made, not when the other one is removed.
    let (generic_protocol, traces_protocol) =
        (protocol(OTEL_EXPORTER_OTLP_PROTOCOL)?, protocol(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL)?);
    let (generic_headers, traces_headers) =
        (headers(OTEL_EXPORTER_OTLP_HEADERS)?, headers(OTEL_EXPORTER_OTLP_TRACES_HEADERS)?);
    let (generic_timeout, traces_timeout) =
        (timeout(OTEL_EXPORTER_OTLP_TIMEOUT)?, timeout(OTEL_EXPORTER_OTLP_TRACES_TIMEOUT)?);
    Ok(OtlpVariables {
        endpoint: endpoint(OTEL_EXPORTER_OTLP_ENDPOINT)?,
        traces_endpoint: endpoint(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)?,
        protocol: traces_protocol.or(generic_protocol),
        headers: traces_headers.or(generic_headers).unwrap_or_default(),
        timeout: traces_timeout.or(generic_timeout),
    })
}

fn boolean(name: &str, value: &str) -> Result<bool, TelemetryError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(TelemetryError::invalid(name, value, "true or false")),
    }
}

fn traces_exporter(value: &str) -> Result<TracesExporter, TelemetryError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "otlp" => Ok(TracesExporter::Otlp),
        "none" => Ok(TracesExporter::None),
        _ => Err(TelemetryError::invalid(OTEL_TRACES_EXPORTER, value, "otlp or none")),
    }
}

pub(crate) fn protocol(name: &str, value: &str) -> Result<OtlpProtocol, TelemetryError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "http/json" => Ok(OtlpProtocol::HttpJson),
        _ => Err(TelemetryError::invalid(name, value, "one of grpc, http/protobuf, http/json")),
    }
}

/// The sampler `OTEL_TRACES_SAMPLER` names: one of the specification's, or `tracehop_links_` and one of them for
/// that sampler inside a [`LinkSampler`].
fn sampler(value: &str, argument: Option<&str>) -> Result<Box<dyn ShouldSample>, TelemetryError> {
    let name = value.trim().to_ascii_lowercase();
    let (name, honours_links) = match name.strip_prefix(LINK_SAMPLER_PREFIX) {
        Some(standard) => (standard, true),
        None => (name.as_str(), false),
    };
    let Some(sampler) = standard_sampler(name, argument)? else {
        return Err(TelemetryError::invalid(OTEL_TRACES_SAMPLER, value, SAMPLERS));
    };
    Ok(if honours_links { Box::new(LinkSampler::new(sampler)) } else { Box::new(sampler) })
}

/// The specification's sampler of that name, if it is one; `argument` is read only by the ratio samplers, as the
/// specification says, and defaults to 1 when they have none.
fn standard_sampler(name: &str, argument: Option<&str>) -> Result<Option<Sampler>, TelemetryError> {
    let ratio = || argument.map(ratio).transpose().map(|ratio| ratio.unwrap_or(1.0));
    Ok(Some(match name {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?))),
        _ => return Ok(None),
    }))
}

fn ratio(value: &str) -> Result<f64, TelemetryError> {
    match value.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(TelemetryError::invalid(OTEL_TRACES_SAMPLER_ARG, value, RATIO)),
    }
}

/// `value` if it is a URL an exporter can send to; `setting` names where it came from.
pub(crate) fn checked_endpoint(setting: &str, value: &str) -> Result<String, TelemetryError> {
    let url = value.trim();
    let usable = url.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some_and(|host| !host.is_empty())
    });
    if usable {
        Ok(url.to_owned())
    } else {
        Err(TelemetryError::invalid(setting, value, ENDPOINT))
    }
}

fn timeout(name: &str, value: &str) -> Result<Duration, TelemetryError> {
    match value.trim().parse::<u64>() {
        Ok(milliseconds) if milliseconds > 0 => Ok(Duration::from_millis(milliseconds)),
        _ => Err(TelemetryError::invalid(name, value, TIMEOUT)),
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: a `key=value` list whose keys are HTTP header names and whose values, once
/// percent-decoded, are header values.
pub(crate) fn headers(name: &str, value: &str) -> Result<Vec<(String, String)>, TelemetryError> {
    const EXPECTED: &str = "comma-separated name=value pairs of HTTP header names and percent-encoded values, \
                            such as api-key=secret,tenant=blue";
    let pairs = key_value_list(name, value).map_err(|_| TelemetryError::invalid(name, value, EXPECTED))?;
    for (key, decoded) in &pairs {
        if http::HeaderName::from_bytes(key.as_bytes()).is_err() || http::HeaderValue::from_str(decoded).is_err() {
            return Err(TelemetryError::invalid(name, value, EXPECTED));
        }
    }
    Ok(pairs)
}

/// The `key1=value1,key2=value2` syntax of `OTEL_RESOURCE_ATTRIBUTES` and the header variables: keys trimmed,
/// values trimmed and percent-decoded, empty members (a trailing comma) skipped.
fn key_value_list(name: &str, value: &str) -> Result<Vec<(String, String)>, TelemetryError> {
    const EXPECTED: &str = "comma-separated key=value pairs with percent-encoded values, such as \
                            deployment.environment=prod,team=orders";
    let mut pairs = Vec::new();
    for member in value.split(',').map(str::trim).filter(|member| !member.is_empty()) {
        let decoded = member
            .split_once('=')
            .filter(|(key, _)| !key.trim().is_empty())
            .and_then(|(key, value)| Some((key.trim().to_owned(), percent_decoded(value.trim())?)));
        match decoded {
            Some(pair) => pairs.push(pair),
            None => return Err(TelemetryError::invalid(name, value, EXPECTED)),
        }
    }
    Ok(pairs)
}

/// `value` with each `%XX` replaced by its byte; `None` for a `%` not followed by two hex digits or bytes that
/// are not UTF-8.
fn percent_decoded(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3).filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
            decoded.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests;
