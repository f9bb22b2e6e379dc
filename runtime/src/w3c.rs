//! Strict validation of the W3C `traceparent`, `tracestate` and `baggage` headers.
//!
//! OpenTelemetry's own propagator is lenient (it trims white space and accepts ids shorter than the
//! specification allows). A message broker carries headers written by every client in a system, so tracehop
//! checks them against the W3C Trace Context specification before any propagator sees them, and says which
//! rule a rejected header broke.

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::OnceLock;

use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

use crate::carrier::{TRACEPARENT_HEADER, TRACESTATE_HEADER};
use crate::ContextRejection;

/// Length of a version-`00` `traceparent`: `vv-<32 hex>-<16 hex>-ff`.
const TRACEPARENT_LEN: usize = 55;

/// The most list members a `tracestate` may carry (W3C Trace Context, "tracestate Header Field Values").
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The longest `tracestate` tracehop continues, in bytes. The W3C specification asks every vendor to propagate
/// at least 512 characters and lets it drop what is longer; tracehop treats a longer header as broken or
/// hostile rather than spending work on it.
pub const MAX_TRACESTATE_LEN: usize = 512;

/// Checks one `traceparent` value against the W3C Trace Context specification, level 1.
///
/// Version `00` must be exactly 55 characters. A later version (`01`–`fe`) may carry more fields after a `-`,
/// as the specification requires parsers to accept. Hex must be lower case, the ids must not be all zeros and
/// version `ff` is invalid.
///
/// ```
/// use tracehop::{validate_traceparent, ContextRejection};
///
/// assert_eq!(validate_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), Ok(()));
/// assert_eq!(
///     validate_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
///     Err(ContextRejection::UppercaseHex),
/// );
/// ```
pub fn validate_traceparent(value: &str) -> Result<(), ContextRejection> {
    let bytes = value.as_bytes();
    if bytes.len() < TRACEPARENT_LEN {
        return Err(ContextRejection::WrongLength);
    }
    let fields_end = [2, 35, 52];
    if fields_end.iter().any(|&dash| bytes[dash] != b'-') {
        return Err(ContextRejection::WrongLength);
    }
    let hex_fields = [&bytes[0..2], &bytes[3..35], &bytes[36..52], &bytes[53..55]];
    for field in hex_fields {
        for &byte in field {
            match byte {
                b'0'..=b'9' | b'a'..=b'f' => {}
                b'A'..=b'F' => return Err(ContextRejection::UppercaseHex),
                _ => return Err(ContextRejection::InvalidHex),
            }
        }
    }
    let version = &bytes[0..2];
    if version == b"ff" {
        return Err(ContextRejection::InvalidVersion);
    }
    if bytes.len() > TRACEPARENT_LEN && (version == b"00" || bytes[TRACEPARENT_LEN] != b'-') {
        return Err(ContextRejection::TrailingData);
    }
    if hex_fields[1].iter().all(|&byte| byte == b'0') {
        return Err(ContextRejection::ZeroTraceId);
    }
    if hex_fields[2].iter().all(|&byte| byte == b'0') {
        return Err(ContextRejection::ZeroSpanId);
    }
    Ok(())
}

/// The ids and sampling flag of a valid `traceparent`.
fn parse_traceparent(value: &str) -> Result<(TraceId, SpanId, TraceFlags), ContextRejection> {
    validate_traceparent(value)?;
    // Validated: ASCII, with the fields where the specification puts them.
    let trace_id = u128::from_str_radix(&value[3..35], 16).map_err(|_| ContextRejection::InvalidHex)?;
    let span_id = u64::from_str_radix(&value[36..52], 16).map_err(|_| ContextRejection::InvalidHex)?;
    let flags = u8::from_str_radix(&value[53..55], 16).map_err(|_| ContextRejection::InvalidHex)?;
    Ok((TraceId::from(trace_id), SpanId::from(span_id), TraceFlags::new(flags) & TraceFlags::SAMPLED))
}

/// The W3C Trace Context propagator (`traceparent`, `tracestate`), held to the same strict rules as the rest of
/// tracehop ([`validate_traceparent`], [`validate_tracestate_size`]) and built for the per-message path: it
/// parses without intermediate allocations and writes no empty `tracestate` header.
/// [`install_propagator`](crate::install_propagator) installs it with OpenTelemetry's baggage propagator.
///
/// ```
/// use opentelemetry::propagation::TextMapPropagator;
/// use opentelemetry::trace::TraceContextExt;
/// use std::collections::HashMap;
///
/// let headers = HashMap::from([(
///     "traceparent".to_owned(),
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
/// )]);
/// let context = tracehop::W3cTraceContext::new().extract(&headers);
/// assert!(context.span().span_context().is_sampled());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct W3cTraceContext {
    _private: (),
}

impl W3cTraceContext {
    /// The propagator.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl TextMapPropagator for W3cTraceContext {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return;
        }
        let mut traceparent = String::with_capacity(55);
        let flags = (span_context.trace_flags() & TraceFlags::SAMPLED).to_u8();
        let _ = write!(traceparent, "00-{}-{}-{flags:02x}", span_context.trace_id(), span_context.span_id());
        injector.set(TRACEPARENT_HEADER, traceparent);
        let trace_state = span_context.trace_state().header();
        if !trace_state.is_empty() {
            injector.set(TRACESTATE_HEADER, trace_state);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some(Ok((trace_id, span_id, flags))) = extractor.get(TRACEPARENT_HEADER).map(parse_traceparent) else {
            return cx.clone();
        };
        let trace_state = extractor
            .get(TRACESTATE_HEADER)
            .filter(|value| validate_tracestate_size(value).is_ok())
            .and_then(|value| TraceState::from_str(value).ok())
            .unwrap_or_default();
        cx.with_remote_span_context(SpanContext::new(trace_id, span_id, flags, true, trace_state))
    }

    fn fields(&self) -> FieldIter<'_> {
        static FIELDS: OnceLock<[String; 2]> = OnceLock::new();
        FieldIter::new(FIELDS.get_or_init(|| [TRACEPARENT_HEADER.to_owned(), TRACESTATE_HEADER.to_owned()]))
    }
}

/// Checks the size of a `tracestate` value: at most [`MAX_TRACESTATE_LEN`] bytes and
/// [`MAX_TRACESTATE_MEMBERS`] list members.
///
/// ```
/// use tracehop::{validate_tracestate_size, ContextRejection};
///
/// assert_eq!(validate_tracestate_size("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"), Ok(()));
/// assert_eq!(validate_tracestate_size(&"a=b,".repeat(200)), Err(ContextRejection::OversizedTracestate));
/// ```
pub fn validate_tracestate_size(value: &str) -> Result<(), ContextRejection> {
    let members = value.split(',').filter(|member| !member.trim().is_empty()).count();
    if value.len() > MAX_TRACESTATE_LEN || members > MAX_TRACESTATE_MEMBERS {
        return Err(ContextRejection::OversizedTracestate);
    }
    Ok(())
}

/// The longest `baggage` header tracehop passes on, in bytes (W3C Baggage, "Limits").
pub const MAX_BAGGAGE_LEN: usize = 8192;

/// The most list members a `baggage` header may carry (W3C Baggage, "Limits").
pub const MAX_BAGGAGE_MEMBERS: usize = 64;

/// Checks a `baggage` value against the W3C Baggage format: at most [`MAX_BAGGAGE_LEN`] bytes and
/// [`MAX_BAGGAGE_MEMBERS`] members, each `key=value` with optional `;property` parts, a non-empty token as key
/// and a value of baggage octets and `%XX` escapes that decode to UTF-8.
///
/// tracehop hands the propagator only a `baggage` header that passes: OpenTelemetry's baggage propagator logs a
/// warning for every malformed one, which a hostile producer could turn into a warning per message.
///
/// ```
/// assert!(tracehop::validate_baggage("tenant=acme,region=eu%20west;ttl=30").is_ok());
/// assert!(tracehop::validate_baggage("tenant").is_err());
/// ```
pub fn validate_baggage(value: &str) -> Result<(), BaggageRejection> {
    if value.len() > MAX_BAGGAGE_LEN {
        return Err(BaggageRejection::Oversized);
    }
    let mut members = 0;
    for member in value.split(',') {
        members += 1;
        if members > MAX_BAGGAGE_MEMBERS {
            return Err(BaggageRejection::Oversized);
        }
        let key_and_value = member.split(';').next().unwrap_or_default();
        let Some((key, value)) = key_and_value.split_once('=') else {
            return Err(BaggageRejection::Malformed);
        };
        let key = key.trim_matches([' ', '\t']);
        if key.is_empty() || !key.bytes().all(is_token_byte) {
            return Err(BaggageRejection::Malformed);
        }
        if !decodes_to_utf8(value.trim_matches([' ', '\t'])) {
            return Err(BaggageRejection::Malformed);
        }
    }
    Ok(())
}

/// Why a `baggage` header was not passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BaggageRejection {
    /// Longer than [`MAX_BAGGAGE_LEN`] or with more than [`MAX_BAGGAGE_MEMBERS`] members.
    Oversized,
    /// Not a list of `key=value` members as the W3C Baggage format defines.
    Malformed,
}

impl BaggageRejection {
    /// The stable code logged at `debug`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "baggage_oversized",
            Self::Malformed => "baggage_malformed",
        }
    }
}

/// RFC 7230 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// W3C `baggage-octet`s and `%XX` escapes whose decoded bytes are UTF-8.
fn decodes_to_utf8(value: &str) -> bool {
    let bytes = value.as_bytes();
    let mut decoded: Vec<u8> = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let Some(escape) = bytes.get(index + 1..index + 3) else { return false };
            let Some(decoded_byte) = std::str::from_utf8(escape).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok())
            else {
                return false;
            };
            if decoded.is_empty() {
                decoded.extend_from_slice(&bytes[..index]);
            }
            decoded.push(decoded_byte);
            index += 3;
            continue;
        }
        let baggage_octet = matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
        if !baggage_octet {
            return false;
        }
        if !decoded.is_empty() {
            decoded.push(byte);
        }
        index += 1;
    }
    decoded.is_empty() || std::str::from_utf8(&decoded).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_ids_and_only_the_sampled_flag() {
        let (trace_id, span_id, flags) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap();
        assert_eq!(trace_id, TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        assert_eq!(span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert_eq!(flags, TraceFlags::SAMPLED);
    }

    #[test]
    fn round_trips_a_context_without_an_empty_tracestate() {
        use std::collections::HashMap;
        let propagator = W3cTraceContext::new();
        let span_context = SpanContext::new(
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
            SpanId::from(0x00f067aa0ba902b7),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let mut headers: HashMap<String, String> = HashMap::new();
        propagator.inject_context(&Context::new().with_remote_span_context(span_context.clone()), &mut headers);
        assert_eq!(
            headers,
            HashMap::from([(
                "traceparent".to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()
            )])
        );
        headers.insert("tracestate".to_owned(), "congo=t61rcWkgMzE".to_owned());
        let extracted = propagator.extract(&headers);
        let extracted = extracted.span().span_context().clone();
        assert_eq!(extracted.trace_id(), span_context.trace_id());
        assert_eq!(extracted.span_id(), span_context.span_id());
        assert!(extracted.is_remote() && extracted.is_sampled());
        assert_eq!(extracted.trace_state().get("congo"), Some("t61rcWkgMzE"));
    }

    #[test]
    fn extracts_nothing_from_a_malformed_header() {
        use std::collections::HashMap;
        let headers = HashMap::from([(
            "traceparent".to_owned(),
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".to_owned(),
        )]);
        assert!(!W3cTraceContext::new().extract(&headers).span().span_context().is_valid());
    }

    #[test]
    fn accepts_a_valid_version_00_header() {
        assert_eq!(validate_traceparent(VALID), Ok(()));
    }

    #[test]
    fn accepts_a_future_version_with_extra_fields() {
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert_eq!(validate_traceparent(future), Ok(()));
    }

    #[test]
    fn rejects_each_broken_rule_with_its_own_reason() {
        let cases = [
            ("", ContextRejection::WrongLength),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", ContextRejection::WrongLength),
            ("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", ContextRejection::WrongLength),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01", ContextRejection::InvalidHex),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", ContextRejection::UppercaseHex),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ContextRejection::InvalidVersion),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", ContextRejection::ZeroTraceId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ContextRejection::ZeroSpanId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00", ContextRejection::TrailingData),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ", ContextRejection::TrailingData),
            ("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", ContextRejection::TrailingData),
            (" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ContextRejection::WrongLength),
        ];
        for (header, reason) in cases {
            assert_eq!(validate_traceparent(header), Err(reason), "{header:?}");
        }
    }

    #[test]
    fn multi_byte_characters_do_not_panic() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é";
        assert_eq!(validate_traceparent(header), Err(ContextRejection::InvalidHex));
        let header = "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(validate_traceparent(header), Err(ContextRejection::WrongLength));
    }

    #[test]
    fn baggage_accepts_the_w3c_examples() {
        for valid in [
            "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
            "k=%E2%9C%93",
            "k=",
        ] {
            assert_eq!(validate_baggage(valid), Ok(()), "{valid:?}");
        }
    }

    #[test]
    fn baggage_rejects_what_the_propagator_would_warn_about() {
        for (malformed, reason) in [
            ("garbage", BaggageRejection::Malformed),
            ("=value", BaggageRejection::Malformed),
            ("k=v,", BaggageRejection::Malformed),
            ("k=%FF", BaggageRejection::Malformed),
            ("k=%4", BaggageRejection::Malformed),
            ("k=a b", BaggageRejection::Malformed),
            ("k\u{e9}=v", BaggageRejection::Malformed),
        ] {
            assert_eq!(validate_baggage(malformed), Err(reason), "{malformed:?}");
        }
        let too_many = vec!["k=v"; MAX_BAGGAGE_MEMBERS + 1].join(",");
        assert_eq!(validate_baggage(&too_many), Err(BaggageRejection::Oversized));
        let too_long = format!("k={}", "v".repeat(MAX_BAGGAGE_LEN));
        assert_eq!(validate_baggage(&too_long), Err(BaggageRejection::Oversized));
    }

    #[test]
    fn tracestate_limits_are_the_w3c_ones() {
        let thirty_two = vec!["k=v"; 32].join(",");
        assert_eq!(validate_tracestate_size(&thirty_two), Ok(()));
        let thirty_three = vec!["k=v"; 33].join(",");
        assert_eq!(validate_tracestate_size(&thirty_three), Err(ContextRejection::OversizedTracestate));
        let long = format!("k={}", "v".repeat(MAX_TRACESTATE_LEN));
        assert_eq!(validate_tracestate_size(&long), Err(ContextRejection::OversizedTracestate));
    }
}
