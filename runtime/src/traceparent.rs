//! Strict validation of the W3C `traceparent` and `tracestate` headers.
//!
//! OpenTelemetry's own propagator is lenient (it trims white space and accepts ids shorter than the
//! specification allows). A message broker carries headers written by every client in a system, so tracehop
//! checks them against the W3C Trace Context specification before any propagator sees them, and says which
//! rule a rejected header broke.

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

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

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
    fn tracestate_limits_are_the_w3c_ones() {
        let thirty_two = vec!["k=v"; 32].join(",");
        assert_eq!(validate_tracestate_size(&thirty_two), Ok(()));
        let thirty_three = vec!["k=v"; 33].join(",");
        assert_eq!(validate_tracestate_size(&thirty_three), Err(ContextRejection::OversizedTracestate));
        let long = format!("k={}", "v".repeat(MAX_TRACESTATE_LEN));
        assert_eq!(validate_tracestate_size(&long), Err(ContextRejection::OversizedTracestate));
    }
}
