//! `baggage`: application key-value pairs that travel with the trace, written so they come back exactly and
//! read so a malformed member costs only itself.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::OnceLock;

use opentelemetry::baggage::{BaggageExt, KeyValueMetadata};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::Context;

use super::{trim_ows, within_limit, TrimReason, Trimmed, BAGGAGE_HEADER};

/// The longest `baggage` header tracehop reads, in bytes (W3C Baggage, "Limits"): a longer one is read up to
/// its last whole member within this length ([`TrimReason::Oversized`]).
pub const MAX_BAGGAGE_LEN: usize = 8192;

/// The most list members a `baggage` header may carry (W3C Baggage, "Limits"). Members past it are dropped
/// ([`TrimReason::TooManyMembers`]).
pub const MAX_BAGGAGE_MEMBERS: usize = 64;

/// One list member: `key=value;property;...`, each part as it is on the wire (values still percent-encoded).
struct Member<'a> {
    text: &'a str,
    key: &'a str,
    value: &'a str,
    /// Everything after the first `;`, empty when there is none.
    properties: &'a str,
}

/// The member when it is well-formed; `Ok(None)` for an empty one, which is skipped.
///
/// Well-formed: a key that is a token (RFC 7230), an `=`, a value of printable ASCII without spaces whose
/// `%XX` escapes decode to UTF-8, and properties whose escapes do too. A `%` that does not start an escape is
/// kept as it is, as OpenTelemetry's own reader keeps it, so values written by clients that do not escape
/// `%` come back.
fn member(raw: &[u8]) -> Result<Option<Member<'_>>, ()> {
    let raw = trim_ows(raw);
    if raw.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(raw).map_err(|_| ())?;
    let (key_and_value, properties) = text.split_once(';').unwrap_or((text, ""));
    let (key, value) = key_and_value.split_once('=').ok_or(())?;
    let key = key.trim_matches([' ', '\t']);
    let value = value.trim_matches([' ', '\t']);
    let valid_key = !key.is_empty() && key.bytes().all(is_token_byte);
    let valid_value = value.bytes().all(|byte| byte.is_ascii_graphic()) && decode(value).is_some();
    let valid_properties = properties
        .split(';')
        .all(|property| property.bytes().all(|byte| matches!(byte, 0x20..=0x7e | b'\t')) && decode(property).is_some());
    if valid_key && valid_value && valid_properties {
        Ok(Some(Member { text, key, value, properties }))
    } else {
        Err(())
    }
}

/// Trims a `baggage` value to the members tracehop passes on, dropping whole members: a malformed one
/// ([`TrimReason::MalformedMember`], see the rules below), those past the 64th ([`TrimReason::TooManyMembers`])
/// and, in a header longer than [`MAX_BAGGAGE_LEN`], those that do not end within it
/// ([`TrimReason::Oversized`]; the rest of the header is not read). Empty members are skipped.
///
/// A member is well-formed when it has a token as key, an `=`, a value of printable ASCII without spaces whose
/// `%XX` escapes decode to UTF-8, and properties whose escapes do too. A `%` that starts no escape stands for
/// itself, as OpenTelemetry's baggage reader takes it. A header that passes whole is returned as it is,
/// without a copy.
///
/// ```
/// use tracehop::{trim_baggage, TrimReason};
///
/// let whole = trim_baggage(b"tenant=acme,region=eu%20west;ttl=30");
/// assert_eq!((whole.value(), whole.reason()), (Some("tenant=acme,region=eu%20west;ttl=30"), None));
///
/// let trimmed = trim_baggage(b"note=50%off,broken,tenant=acme");
/// assert_eq!(trimmed.value(), Some("note=50%off,tenant=acme"));
/// assert_eq!(trimmed.reason(), Some(TrimReason::MalformedMember));
/// ```
pub fn trim_baggage(value: &[u8]) -> Trimmed<'_> {
    let read = within_limit(value, MAX_BAGGAGE_LEN);
    let mut reason = (read.len() < value.len()).then_some(TrimReason::Oversized);
    let mut members = 0;
    for raw in read.split(|&byte| byte == b',') {
        match member(raw) {
            Ok(None) => {}
            Ok(Some(_)) if members == MAX_BAGGAGE_MEMBERS => {
                reason.get_or_insert(TrimReason::TooManyMembers);
                break;
            }
            Ok(Some(_)) => members += 1,
            Err(()) => {
                reason.get_or_insert(TrimReason::MalformedMember);
            }
        }
    }
    let Some(reason) = reason else {
        // Every member is well-formed, so the whole header is UTF-8.
        return std::str::from_utf8(value).map_or(Trimmed::dropped(TrimReason::MalformedMember), Trimmed::kept);
    };
    let mut kept = String::with_capacity(read.len());
    for member in members_of(read) {
        if !kept.is_empty() {
            kept.push(',');
        }
        kept.push_str(member.text);
    }
    Trimmed::rebuilt(kept, reason)
}

/// The well-formed members of a header already cut to [`MAX_BAGGAGE_LEN`], up to [`MAX_BAGGAGE_MEMBERS`].
fn members_of(read: &[u8]) -> impl Iterator<Item = Member<'_>> {
    read.split(|&byte| byte == b',').filter_map(|raw| member(raw).ok().flatten()).take(MAX_BAGGAGE_MEMBERS)
}

/// RFC 7230 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// `text` with its `%XX` escapes decoded, or `None` when the decoded bytes are not UTF-8. A `%` that starts
/// no escape stands for itself. Allocates only when there is an escape.
fn decode(text: &str) -> Option<Cow<'_, str>> {
    let bytes = text.as_bytes();
    let Some(first) = bytes.iter().position(|&byte| byte == b'%') else {
        return Some(Cow::Borrowed(text));
    };
    let mut decoded = Vec::with_capacity(bytes.len());
    decoded.extend_from_slice(&bytes[..first]);
    let mut index = first;
    while index < bytes.len() {
        let escaped = match bytes.get(index..index + 3) {
            Some([b'%', high, low]) => hex_value(*high).zip(hex_value(*low)).map(|(high, low)| high << 4 | low),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok().map(Cow::Owned)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Appends `text` percent-encoded: every byte that is not a W3C `baggage-octet`, and `%` and `=` too, so
/// that any reader (OpenTelemetry's splits values at `=`) decodes exactly `text`. With `keep_equals`, `=`
/// stays as it is (it separates a property's key from its value).
fn encode_into(out: &mut String, text: &str, keep_equals: bool) {
    for byte in text.bytes() {
        let baggage_octet = matches!(byte, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e);
        let plain = baggage_octet && byte != b'%' && (byte != b'=' || keep_equals);
        if plain {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// The W3C Baggage propagator, written so that what it writes comes back exactly and what it reads costs a
/// malformed member only itself.
///
/// OpenTelemetry's own baggage propagator writes `%` and `\` unescaped (so `50%off` or `100%25` do not come
/// back as written) and drops a whole header, with a warning, for one malformed member or one byte over the
/// limit. This one escapes every byte a reader could take for something else and keeps every well-formed
/// member ([`trim_baggage`]), without logging. Its headers are read correctly by OpenTelemetry's propagator
/// and every other W3C reader. [`install_propagator`](crate::install_propagator) installs it.
///
/// ```
/// use opentelemetry::baggage::BaggageExt;
/// use opentelemetry::propagation::TextMapPropagator;
/// use opentelemetry::{Context, KeyValue};
/// use std::collections::HashMap;
///
/// let propagator = tracehop::W3cBaggage::new();
/// let context = Context::new().with_baggage([KeyValue::new("note", "50%off, today")]);
/// let mut headers = HashMap::new();
/// propagator.inject_context(&context, &mut headers);
/// assert_eq!(headers["baggage"], "note=50%25off%2C%20today");
/// let extracted = propagator.extract(&headers);
/// assert_eq!(extracted.baggage().get("note").map(|value| value.as_str()), Some("50%off, today"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct W3cBaggage {
    _private: (),
}

impl W3cBaggage {
    /// The propagator.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl TextMapPropagator for W3cBaggage {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let baggage = cx.baggage();
        if baggage.is_empty() {
            return;
        }
        let mut header = String::new();
        for (key, (value, metadata)) in baggage {
            if !header.is_empty() {
                header.push(',');
            }
            // Keys are tokens: OpenTelemetry's `Baggage` accepts no other.
            header.push_str(key.as_str());
            header.push('=');
            encode_into(&mut header, value.as_str(), false);
            let metadata = metadata.as_str();
            if !metadata.is_empty() {
                for property in metadata.split(';') {
                    header.push(';');
                    encode_into(&mut header, property, true);
                }
            }
        }
        injector.set(BAGGAGE_HEADER, header);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some(header) = extractor.get(BAGGAGE_HEADER) else {
            return cx.clone();
        };
        let entries: Vec<KeyValueMetadata> = members_of(within_limit(header.as_bytes(), MAX_BAGGAGE_LEN))
            .filter_map(|member| {
                let value = decode(member.value)?.into_owned();
                let mut metadata = String::new();
                if !member.properties.is_empty() {
                    for (index, property) in member.properties.split(';').enumerate() {
                        if index > 0 {
                            metadata.push(';');
                        }
                        metadata.push_str(&decode(property.trim_matches([' ', '\t']))?);
                    }
                }
                Some(KeyValueMetadata::new(member.key.to_owned(), value, metadata.as_str()))
            })
            .collect();
        if entries.is_empty() {
            return cx.clone();
        }
        cx.with_baggage(entries)
    }

    fn fields(&self) -> FieldIter<'_> {
        static FIELDS: OnceLock<[String; 1]> = OnceLock::new();
        FieldIter::new(FIELDS.get_or_init(|| [BAGGAGE_HEADER.to_owned()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::baggage::Baggage;
    use std::collections::{BTreeMap, HashMap};

    /// A baggage's entries, comparable: key to (value, metadata).
    fn entries(baggage: &Baggage) -> BTreeMap<String, (String, String)> {
        baggage
            .iter()
            .map(|(key, (value, metadata))| (key.to_string(), (value.to_string(), metadata.as_str().to_owned())))
            .collect()
    }

    fn trimmed(value: &[u8]) -> (Option<String>, Option<TrimReason>) {
        let trimmed = trim_baggage(value);
        (trimmed.value().map(str::to_owned), trimmed.reason())
    }

    #[test]
    fn the_w3c_examples_pass_whole() {
        for valid in [
            "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
            "k=%E2%9C%93",
            "k=",
            "note=50%off",
            "path=C:\\temp",
        ] {
            assert_eq!(trimmed(valid.as_bytes()), (Some(valid.to_owned()), None), "{valid:?}");
        }
    }

    #[test]
    fn a_malformed_member_costs_only_itself() {
        for malformed in ["garbage", "=value", "k=%FF", "k=a b", "k\u{e9}=v", "k=v;p=%C3"] {
            let header = format!("tenant=acme,{malformed},region=eu");
            assert_eq!(
                trimmed(header.as_bytes()),
                (Some("tenant=acme,region=eu".to_owned()), Some(TrimReason::MalformedMember)),
                "{malformed:?}"
            );
        }
        assert_eq!(trimmed(b"tenant=acme,k=\xff"), (Some("tenant=acme".to_owned()), Some(TrimReason::MalformedMember)));
        assert_eq!(trimmed(b"garbage"), (None, Some(TrimReason::MalformedMember)));
    }

    #[test]
    fn members_past_the_64th_are_dropped() {
        let too_many = vec!["k=v"; MAX_BAGGAGE_MEMBERS + 1].join(",");
        let kept = vec!["k=v"; MAX_BAGGAGE_MEMBERS].join(",");
        assert_eq!(trimmed(too_many.as_bytes()), (Some(kept), Some(TrimReason::TooManyMembers)));
    }

    #[test]
    fn an_oversized_header_keeps_the_members_within_the_limit() {
        let first = format!("a={}", "x".repeat(4000));
        let second = format!("b={}", "y".repeat(4000));
        let header = format!("{first},{second},c={}", "z".repeat(1 << 20));
        assert_eq!(trimmed(header.as_bytes()), (Some(format!("{first},{second}")), Some(TrimReason::Oversized)));
        let one_huge = format!("a={}", "x".repeat(MAX_BAGGAGE_LEN));
        assert_eq!(trimmed(one_huge.as_bytes()), (None, Some(TrimReason::Oversized)));
    }

    #[test]
    fn what_it_writes_comes_back_exactly() {
        let propagator = W3cBaggage::new();
        let values = ["50%off", "100%25", "C:\\temp", "a=b", "x, y; z", " padded ", "\"quoted\"", "é✓", ""];
        let baggage: Baggage = values
            .iter()
            .enumerate()
            .map(|(index, value)| {
                KeyValueMetadata::new(format!("k{index}"), *value, if index % 2 == 0 { "p;q=1" } else { "" })
            })
            .collect();
        let mut headers = HashMap::new();
        propagator.inject_context(
            &Context::new().with_baggage(
                entries(&baggage)
                    .into_iter()
                    .map(|(key, (value, metadata))| KeyValueMetadata::new(key, value, metadata.as_str())),
            ),
            &mut headers,
        );
        assert_eq!(trim_baggage(headers["baggage"].as_bytes()).reason(), None, "{}", headers["baggage"]);
        let extracted = propagator.extract(&headers);
        assert_eq!(entries(extracted.baggage()), entries(&baggage), "{}", headers["baggage"]);
    }

    #[test]
    fn what_it_writes_is_read_by_opentelemetrys_own_propagator() {
        let pairs = [opentelemetry::KeyValue::new("note", "50%off = a, b; c")];
        let mut headers = HashMap::new();
        W3cBaggage::new().inject_context(&Context::new().with_baggage(pairs.clone()), &mut headers);
        let extracted = opentelemetry_sdk::propagation::BaggagePropagator::new().extract(&headers);
        assert_eq!(entries(extracted.baggage()), entries(&pairs.into_iter().collect()));
    }

    #[test]
    fn reads_what_opentelemetrys_own_propagator_writes() {
        let pairs = [opentelemetry::KeyValue::new("tenant", "acme"), opentelemetry::KeyValue::new("note", "50%off")];
        let mut headers = HashMap::new();
        opentelemetry_sdk::propagation::BaggagePropagator::new()
            .inject_context(&Context::new().with_baggage(pairs.clone()), &mut headers);
        assert_eq!(
            entries(W3cBaggage::new().extract(&headers).baggage()),
            entries(&pairs.into_iter().collect()),
            "{}",
            headers["baggage"]
        );
    }

    #[test]
    fn escapes_decode_in_either_case_and_a_lone_percent_stands_for_itself() {
        assert_eq!(decode("ab%41cd").as_deref(), Some("abAcd"));
        assert_eq!(decode("%2f%2F%3d").as_deref(), Some("//="));
        assert_eq!(decode("%e2%9c%93").as_deref(), Some("✓"));
        assert_eq!(decode("50%off%").as_deref(), Some("50%off%"));
        assert_eq!(decode("%4").as_deref(), Some("%4"));
        assert_eq!(decode("%ff"), None);
        assert!(matches!(decode("plain"), Some(Cow::Borrowed("plain"))));
    }

    #[test]
    fn values_escape_what_a_reader_could_misread_and_properties_keep_their_equals_sign() {
        let mut value = String::new();
        encode_into(&mut value, "a=b 50% \\x,y;z\"é", false);
        assert_eq!(value, "a%3Db%2050%25%20%5Cx%2Cy%3Bz%22%C3%A9");
        let mut property = String::new();
        encode_into(&mut property, "ttl=30 s%", true);
        assert_eq!(property, "ttl=30%20s%25");
    }
}
