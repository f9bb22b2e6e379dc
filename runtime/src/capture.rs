//! Captured headers: message headers a user names, recorded on consumer spans as `messaging.header.<name>`.
//!
//! Only recorded spans read them, so an unsampled message costs nothing here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use opentelemetry::{Array, Key, KeyValue, StringValue, Value};

use crate::handler::Handler;
use crate::w3c::{BAGGAGE_HEADER, TRACEPARENT_HEADER, TRACESTATE_HEADER};

/// The prefix of a captured header's attribute: `messaging.header.x_tenant` for a header `X-Tenant`. The
/// messaging conventions (schema 1.42.0) define no attribute for headers; this is the name OpenTelemetry's Java
/// agent records them under (lower-cased, `-` written as `_`), so the two agree in one backend.
///
/// ```
/// assert_eq!(tracehop::CAPTURED_HEADER_PREFIX, "messaging.header.");
/// ```
pub const CAPTURED_HEADER_PREFIX: &str = "messaging.header.";

/// Words that mark a header as a likely secret (compared without regard to ASCII case, anywhere in the name).
const SECRET_WORDS: [&str; 13] = [
    "authorization",
    "auth-token",
    "cookie",
    "password",
    "passwd",
    "secret",
    "token",
    "api-key",
    "api_key",
    "apikey",
    "credential",
    "session",
    "private-key",
];

/// Whether `name` is a header tracehop captures only when a pattern names it exactly, never through a wildcard:
/// the trace headers (`traceparent`, `tracestate`, `baggage`, which the span already carries) and any header
/// whose name contains a word that suggests a secret (`authorization`, `cookie`, `password`, `passwd`, `secret`,
/// `token`, `api-key`, `apikey`, `credential`, `session`, `private-key`), in any case.
///
/// ```
/// assert!(tracehop::is_protected_header("Authorization"));
/// assert!(tracehop::is_protected_header("x-session-id"));
/// assert!(tracehop::is_protected_header("traceparent"));
/// assert!(!tracehop::is_protected_header("x-tenant"));
/// ```
pub fn is_protected_header(name: &str) -> bool {
    [TRACEPARENT_HEADER, TRACESTATE_HEADER, BAGGAGE_HEADER].iter().any(|trace| name.eq_ignore_ascii_case(trace))
        || SECRET_WORDS.iter().any(|word| contains_ignore_ascii_case(name, word))
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    haystack.as_bytes().windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Whether `name` matches `pattern`: `*` stands for any run of characters (none included), `?` for exactly one;
/// letters compare without regard to ASCII case, as header names are usually treated.
///
/// ```
/// assert!(tracehop::header_pattern_matches("x-*", "X-Tenant"));
/// assert!(tracehop::header_pattern_matches("x-region-??", "x-region-eu"));
/// assert!(!tracehop::header_pattern_matches("x-region-??", "x-region-eu1"));
/// ```
pub fn header_pattern_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    let (mut at_pattern, mut at_name) = (0, 0);
    // Where the last `*` was, and the name position it currently stands up to: on a mismatch the `*` takes one
    // more byte. Linear backtracking: no pattern makes this exponential.
    let mut star: Option<(usize, usize)> = None;
    while at_name < name.len() {
        match pattern.get(at_pattern) {
            Some(b'*') => {
                star = Some((at_pattern, at_name));
                at_pattern += 1;
            }
            Some(&byte) if byte == b'?' || byte.eq_ignore_ascii_case(&name[at_name]) => {
                at_pattern += 1;
                at_name += 1;
            }
            _ => match star {
                Some((star_at, taken)) => {
                    at_pattern = star_at + 1;
                    at_name = taken + 1;
                    star = Some((star_at, taken + 1));
                }
                None => return false,
            },
        }
    }
    pattern[at_pattern..].iter().all(|&byte| byte == b'*')
}

fn is_exact(pattern: &str) -> bool {
    !pattern.contains(['*', '?'])
}

/// The process-wide lists of [`set_captured_headers`].
#[derive(Default)]
struct ProcessCapture {
    include: Vec<String>,
    exclude: Vec<String>,
}

static PROCESS_CAPTURE: RwLock<ProcessCapture> =
    RwLock::new(ProcessCapture { include: Vec::new(), exclude: Vec::new() });
/// Whether [`PROCESS_CAPTURE`] names any header to capture: a recorded span of a handler that captures nothing
/// itself then takes no lock.
static PROCESS_CAPTURES_ANY: AtomicBool = AtomicBool::new(false);
/// Whether [`PROCESS_CAPTURE`] names any header to exclude: the handlers' own captures then read the lists too,
/// even when the process captures nothing itself.
static PROCESS_EXCLUDES_ANY: AtomicBool = AtomicBool::new(false);

/// Names headers every consumer span records as `messaging.header.<name>` string arrays (see
/// [`CAPTURED_HEADER_PREFIX`]), beside each handler's own ([`Handler::capture_headers`]); and headers none of them
/// records, whatever any list says (`exclude` wins). Patterns as in [`header_pattern_matches`]; protected headers
/// ([`is_protected_header`]) are captured only when named exactly. Replaces the lists set before; an empty `include`
/// captures nothing process-wide, and the exclusions still hold for every handler's own list.
///
/// **Capturing all headers (`"*"`) may expose secrets**: producers put credentials and personal data in headers
/// under names no list can foresee, and every recorded span then carries them to your tracing backend.
///
/// ```
/// tracehop::set_captured_headers(&["x-tenant", "x-request-*"], &["x-request-body"]);
/// # tracehop::set_captured_headers(&[], &[]);
/// ```
pub fn set_captured_headers(include: &[&str], exclude: &[&str]) {
    let mut capture = PROCESS_CAPTURE.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    capture.include = include.iter().map(|pattern| (*pattern).to_owned()).collect();
    capture.exclude = exclude.iter().map(|pattern| (*pattern).to_owned()).collect();
    PROCESS_CAPTURES_ANY.store(!capture.include.is_empty(), Ordering::Relaxed);
    PROCESS_EXCLUDES_ANY.store(!capture.exclude.is_empty(), Ordering::Relaxed);
}

/// Whether header `name` is captured for `handler`, given the process-wide lists.
fn captured(handler: &Handler, process: Option<&ProcessCapture>, name: &str) -> bool {
    let process_include = process.map_or(&[][..], |process| process.include.as_slice());
    let process_exclude = process.map_or(&[][..], |process| process.exclude.as_slice());
    let excluded = handler.excluded_headers().iter().copied().chain(process_exclude.iter().map(String::as_str));
    if excluded.into_iter().any(|pattern| header_pattern_matches(pattern, name)) {
        return false;
    }
    let mut included = handler.captured_headers().iter().copied().chain(process_include.iter().map(String::as_str));
    if is_protected_header(name) {
        included.any(|pattern| is_exact(pattern) && pattern.eq_ignore_ascii_case(name))
    } else {
        included.any(|pattern| header_pattern_matches(pattern, name))
    }
}

/// The attribute key of captured header `name`: [`CAPTURED_HEADER_PREFIX`], then the name lower-cased with `-`
/// written as `_`.
fn attribute_key(name: &str) -> Key {
    let mut key = String::with_capacity(CAPTURED_HEADER_PREFIX.len() + name.len());
    key.push_str(CAPTURED_HEADER_PREFIX);
    key.extend(name.chars().map(|character| match character {
        '-' => '_',
        other => other.to_ascii_lowercase(),
    }));
    Key::from(key)
}

/// Whether [`set_captured_headers`] named any header to capture.
pub(crate) fn captures_process_wide() -> bool {
    PROCESS_CAPTURES_ANY.load(Ordering::Relaxed)
}

/// The captured headers of a message for `handler`, offered one by one to the visitor `each_header` is given:
/// one string-array attribute per captured name, its values in the order they arrived. Values that are not text
/// (a null Kafka value, an AMQP number) are left out; text that is not UTF-8 is recorded with replacement
/// characters. Only captured headers are copied.
#[cfg(test)]
pub(crate) fn captured_headers(
    handler: &Handler,
    each_header: impl FnOnce(&mut dyn FnMut(&str, Option<&[u8]>)),
) -> Vec<KeyValue> {
    let Some(mut capture) = HeaderCapture::for_handler(handler) else { return Vec::new() };
    each_header(&mut |name, value| capture.offer(name, value));
    capture.into_attributes()
}

/// The headers a recorded span captures, collected as the message's headers go by once (the pass that also
/// reads the attempt header): see [`set_captured_headers`] and [`Handler::capture_headers`].
pub(crate) struct HeaderCapture<'a> {
    handler: &'a Handler,
    process: Option<RwLockReadGuard<'static, ProcessCapture>>,
    found: Vec<(Key, Vec<StringValue>)>,
}

impl<'a> HeaderCapture<'a> {
    /// The capture of `handler`'s span; none when neither it nor the process captures a header.
    pub(crate) fn for_handler(handler: &'a Handler) -> Option<Self> {
        let process_captures = captures_process_wide();
        if handler.captured_headers().is_empty() && !process_captures {
            return None;
        }
        let process_lists = process_captures || PROCESS_EXCLUDES_ANY.load(Ordering::Relaxed);
        let process = process_lists.then(|| PROCESS_CAPTURE.read().unwrap_or_else(|poisoned| poisoned.into_inner()));
        Some(HeaderCapture { handler, process, found: Vec::new() })
    }

    /// Keeps header `name`'s text when it is captured. Values that are not text (a null Kafka value, an AMQP
    /// number) are left out; text that is not UTF-8 is kept with replacement characters.
    pub(crate) fn offer(&mut self, name: &str, value: Option<&[u8]>) {
        let Some(value) = value else { return };
        if !captured(self.handler, self.process.as_deref(), name) {
            return;
        }
        let key = attribute_key(name);
        let value = StringValue::from(String::from_utf8_lossy(value).into_owned());
        match self.found.iter_mut().find(|(seen, _)| *seen == key) {
            Some((_, values)) => values.push(value),
            None => self.found.push((key, vec![value])),
        }
    }

    /// One string-array attribute per captured name, its values in the order they arrived.
    pub(crate) fn into_attributes(self) -> Vec<KeyValue> {
        self.found.into_iter().map(|(key, values)| KeyValue::new(key, Value::Array(Array::String(values)))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_stars_question_marks_and_any_ascii_case() {
        for (pattern, name) in [
            ("x-tenant", "X-Tenant"),
            ("x-*", "x-"),
            ("x-*", "x-anything-at-all"),
            ("*", ""),
            ("*-id", "x-request-id"),
            ("x-*-id", "x-a-b-id"),
            ("x-?", "x-1"),
            ("**a", "a"),
        ] {
            assert!(header_pattern_matches(pattern, name), "{pattern} should match {name}");
        }
        for (pattern, name) in [("x-tenant", "x-tenants"), ("x-?", "x-"), ("x-*-id", "x-id"), ("a", ""), ("", "a")] {
            assert!(!header_pattern_matches(pattern, name), "{pattern} should not match {name}");
        }
    }

    #[test]
    fn trace_and_secret_like_headers_are_protected() {
        for name in ["traceparent", "TraceState", "baggage", "authorization", "Cookie", "x-api-key", "X-Auth-Token"] {
            assert!(is_protected_header(name), "{name}");
        }
        for name in ["x-tenant", "content-type", "x-retry-count"] {
            assert!(!is_protected_header(name), "{name}");
        }
    }

    static WILDCARD: Handler =
        Handler::consumer("capture::wildcard").capture_headers(&["*"]).exclude_headers(&["x-internal-*"]);
    static EXACT: Handler = Handler::consumer("capture::exact").capture_headers(&["Authorization", "x-tenant"]);

    #[test]
    fn a_wildcard_skips_protected_and_excluded_headers_and_an_exact_name_takes_them() {
        for (name, expected) in
            [("x-tenant", true), ("authorization", false), ("traceparent", false), ("x-internal-route", false)]
        {
            assert_eq!(captured(&WILDCARD, None, name), expected, "{name}");
        }
        assert!(captured(&EXACT, None, "authorization"));
        assert!(!captured(&EXACT, None, "x-region"));
        let process = ProcessCapture { include: vec!["x-region".to_owned()], exclude: vec!["x-tenant".to_owned()] };
        assert!(captured(&EXACT, Some(&process), "x-region"));
        assert!(!captured(&EXACT, Some(&process), "x-tenant"), "an exclusion wins over an exact name");
    }

    #[test]
    fn captured_values_are_grouped_by_name_as_string_arrays() {
        let headers = [
            ("X-Tenant", Some(&b"acme"[..])),
            ("x-tenant", Some(&b"globex"[..])),
            ("x-null", None),
            ("x-bytes", Some(&[0xff][..])),
            ("authorization", Some(&b"Bearer s3cret"[..])),
        ];
        let offer =
            |visit: &mut dyn FnMut(&str, Option<&[u8]>)| headers.iter().for_each(|(name, value)| visit(name, *value));
        assert_eq!(
            captured_headers(&WILDCARD, offer),
            vec![
                KeyValue::new(
                    "messaging.header.x_tenant",
                    Value::Array(Array::String(vec!["acme".into(), "globex".into()]))
                ),
                KeyValue::new("messaging.header.x_bytes", Value::Array(Array::String(vec!["\u{fffd}".into()]))),
            ]
        );
        static NOTHING: Handler = Handler::consumer("capture::nothing");
        assert!(captured_headers(&NOTHING, offer).is_empty());
    }
}
