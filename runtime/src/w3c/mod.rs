//! The W3C trace headers, read strictly and written faithfully: `traceparent` and `tracestate` (W3C Trace
//! Context) and `baggage` (W3C Baggage).
//!
//! OpenTelemetry's own propagators are lenient about some things (white space, short ids) and strict about
//! others (one malformed `baggage` member costs the whole header; valid Level 2 `tracestate` keys cost the whole
//! `tracestate`). A message broker carries headers written by every client in a system, so tracehop reads them by
//! the specifications' rules instead (W3C Trace Context Level 2, W3C Baggage): a `traceparent` is valid or the
//! trace is not continued, a `tracestate` that cannot be parsed is discarded whole (as the W3C test suite
//! expects), and a `baggage` member that breaks the rules, or lies past the limits, costs only itself.
//!
//! Every message's headers are read once ([`TraceHeaders::scan`]); what each rule costs is bounded by the
//! specifications' limits, not by what a producer sends.

mod baggage;
mod traceparent;
mod tracestate;

use std::borrow::Cow;

pub use baggage::{trim_baggage, W3cBaggage, MAX_BAGGAGE_LEN, MAX_BAGGAGE_MEMBERS};
pub(crate) use traceparent::{scanned_lineage, WireOnly};
pub use traceparent::{validate_traceparent, W3cTraceContext};
pub use tracestate::{trim_tracestate, MAX_TRACESTATE_LEN, MAX_TRACESTATE_MEMBERS};

/// Header carrying the W3C trace parent.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// Header carrying the W3C trace state.
pub const TRACESTATE_HEADER: &str = "tracestate";
/// Header carrying the W3C baggage.
pub const BAGGAGE_HEADER: &str = "baggage";

/// Why an incoming message's trace context was not continued. Recorded on the span as
/// `tracehop.context.rejected` (see [`ContextRejection::as_str`]).
///
/// Only the `traceparent` decides whether a trace continues: a `tracestate` or `baggage` that breaks the
/// rules is trimmed instead ([`TrimReason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContextRejection {
    /// The message has no `traceparent` header and the installed propagator found no other context.
    Missing,
    /// More than one `traceparent` header: tracehop cannot tell which one is the producer's, so it continues
    /// neither.
    DuplicateTraceparent,
    /// The `traceparent` bytes are not UTF-8.
    NotUtf8,
    /// The `traceparent` value is not bytes: null (Kafka), or an AMQP value that is neither a string nor a byte
    /// array.
    UnreadableTraceparent,
    /// The `traceparent` is too short, or its fields are not where the specification puts them.
    WrongLength,
    /// A `traceparent` field holds a character that is not hexadecimal.
    InvalidHex,
    /// A `traceparent` field holds upper-case hexadecimal, which the specification forbids.
    UppercaseHex,
    /// Version `ff`, which the specification declares invalid.
    InvalidVersion,
    /// Bytes after the last field of a version-`00` `traceparent`.
    TrailingData,
    /// A trace id of all zeros.
    ZeroTraceId,
    /// A parent span id of all zeros.
    ZeroSpanId,
    /// The `traceparent` passed tracehop's checks but the installed propagator produced no valid context
    /// (for example because no W3C propagator is installed; see [`install_propagator`](crate::install_propagator)).
    PropagatorRejected,
}

impl ContextRejection {
    /// The stable, low-cardinality code recorded on the span.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::DuplicateTraceparent => "duplicate_traceparent",
            Self::NotUtf8 => "traceparent_not_utf8",
            Self::UnreadableTraceparent => "traceparent_unreadable",
            Self::WrongLength => "traceparent_wrong_length",
            Self::InvalidHex => "traceparent_invalid_hex",
            Self::UppercaseHex => "traceparent_uppercase_hex",
            Self::InvalidVersion => "traceparent_invalid_version",
            Self::TrailingData => "traceparent_trailing_data",
            Self::ZeroTraceId => "traceparent_zero_trace_id",
            Self::ZeroSpanId => "traceparent_zero_span_id",
            Self::PropagatorRejected => "propagator_rejected",
        }
    }
}

impl std::fmt::Display for ContextRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an incoming `tracestate` or `baggage` header, or some of its members, were left out while the trace
/// continued.
/// Recorded on the consumer span as `tracehop.context.tracestate.trimmed` and
/// `tracehop.context.baggage.trimmed` (see [`TrimReason::as_str`]); when several rules dropped members, the
/// first one met while reading the header is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrimReason {
    /// The header is longer than the specification's limit ([`MAX_TRACESTATE_LEN`], [`MAX_BAGGAGE_LEN`]):
    /// whole members were dropped to fit, as the specifications' truncation rules say. A `tracestate` longer
    /// than any valid one (16,447 bytes) is not read at all.
    Oversized,
    /// More list members than the specification allows ([`MAX_TRACESTATE_MEMBERS`],
    /// [`MAX_BAGGAGE_MEMBERS`]): a `tracestate` is discarded whole, a `baggage` loses the ones past the limit.
    TooManyMembers,
    /// A member broke the header's syntax (a key or value with characters the specification does not allow,
    /// no `=`, bytes that are not UTF-8): a `tracestate` is discarded whole, a `baggage` loses that member alone.
    MalformedMember,
    /// The header's value is not bytes (a null Kafka value, an AMQP value that is not a string): dropped whole.
    Unreadable,
}

impl TrimReason {
    /// The stable, low-cardinality code recorded on the span.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::TooManyMembers => "too_many_members",
            Self::MalformedMember => "malformed_member",
            Self::Unreadable => "unreadable",
        }
    }
}

impl std::fmt::Display for TrimReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `tracestate` or `baggage` header as tracehop passes it on: the members that keep to the specification,
/// and why any were left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trimmed<'a> {
    value: Option<Cow<'a, str>>,
    reason: Option<TrimReason>,
}

impl<'a> Trimmed<'a> {
    fn kept(value: &'a str) -> Self {
        Self { value: Some(Cow::Borrowed(value)), reason: None }
    }

    fn dropped(reason: TrimReason) -> Self {
        Self { value: None, reason: Some(reason) }
    }

    fn rebuilt(value: String, reason: TrimReason) -> Self {
        Self { value: (!value.is_empty()).then_some(Cow::Owned(value)), reason: Some(reason) }
    }

    /// The header to pass on: the original when every member was kept (no copy), the kept members joined
    /// with `,` otherwise, `None` when none was kept.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// Why members were left out; `None` when the header passes whole.
    pub fn reason(&self) -> Option<TrimReason> {
        self.reason
    }

    /// The same, owning its value.
    fn into_owned(self) -> Trimmed<'static> {
        Trimmed { value: self.value.map(|value| Cow::Owned(value.into_owned())), reason: self.reason }
    }

    /// The header to pass on, owned or borrowed as [`Trimmed::value`] describes.
    pub fn into_value(self) -> Option<Cow<'a, str>> {
        self.value
    }
}

/// What trimming left out of an incoming context's `tracestate` and `baggage` headers; see [`TrimReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Trims {
    /// Why `tracestate` members were dropped, if any were.
    pub tracestate: Option<TrimReason>,
    /// Why `baggage` members were dropped, if any were.
    pub baggage: Option<TrimReason>,
}

/// The W3C headers of one message, found in one pass over its headers.
///
/// Names match exactly (`traceparent`, not `TraceParent`), as every OpenTelemetry messaging instrumentation
/// writes and reads them. Several `tracestate` headers are one list, joined in order as the specification says
/// (RFC 9110's rule for a field sent on several lines); of several `baggage` headers the first is read; several
/// `traceparent` headers make the context ambiguous ([`ContextRejection::DuplicateTraceparent`]), and the
/// scan stops at the second.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TraceHeaders<'a> {
    /// The first `traceparent`, its value `None` when it is not bytes.
    traceparent: Option<Option<&'a [u8]>>,
    duplicate_traceparent: bool,
    tracestate: Option<Option<&'a [u8]>>,
    /// More than one `tracestate` header: they are read again, together, if the trace continues.
    repeated_tracestate: bool,
    baggage: Option<Option<&'a [u8]>>,
    /// A header of a message's lineage (`tracehop-*`): its consumer span, when recorded, reads them.
    lineage: bool,
}

impl<'a> TraceHeaders<'a> {
    pub(crate) fn scan(headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) -> Self {
        let mut found = Self::default();
        for (name, value) in headers {
            let slot = match name {
                TRACEPARENT_HEADER => {
                    if found.traceparent.is_some() {
                        found.duplicate_traceparent = true;
                        break;
                    }
                    &mut found.traceparent
                }
                TRACESTATE_HEADER => {
                    found.repeated_tracestate |= found.tracestate.is_some();
                    &mut found.tracestate
                }
                BAGGAGE_HEADER => &mut found.baggage,
                _ => {
                    found.lineage |= crate::lineage::is_lineage_header(name);
                    continue;
                }
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        found
    }

    /// Whether the message carries a `traceparent` header at all.
    pub(crate) fn has_traceparent(&self) -> bool {
        self.traceparent.is_some()
    }

    /// The `traceparent` to continue (its version-00 fields: the first 55 characters), `None` when there is
    /// none, or why it cannot be continued.
    pub(crate) fn traceparent(&self) -> Result<Option<&'a str>, ContextRejection> {
        let traceparent = self.checked_traceparent()?;
        if let Some(traceparent) = &traceparent {
            traceparent::remember(traceparent, self.lineage);
        }
        Ok(traceparent.map(|traceparent| traceparent.fields))
    }

    /// Whether the message carries a `traceparent` to continue, checked as [`TraceHeaders::traceparent`] checks
    /// it, for a caller that only counts contexts: nothing is kept for a propagator.
    pub(crate) fn has_valid_traceparent(&self) -> Result<bool, ContextRejection> {
        self.checked_traceparent().map(|traceparent| traceparent.is_some())
    }

    fn checked_traceparent(&self) -> Result<Option<traceparent::Traceparent<'a>>, ContextRejection> {
        if self.duplicate_traceparent {
            return Err(ContextRejection::DuplicateTraceparent);
        }
        match self.traceparent {
            None => Ok(None),
            Some(None) => Err(ContextRejection::UnreadableTraceparent),
            Some(Some(value)) => traceparent::check(value).map(Some),
        }
    }

    /// The `tracestate` to pass on with a valid `traceparent`; `headers` gives the headers scanned again, read
    /// only when there are several `tracestate` headers to join.
    pub(crate) fn tracestate<I>(&self, headers: impl FnOnce() -> I) -> Option<Trimmed<'a>>
    where
        I: Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let first = self.tracestate?;
        if !self.repeated_tracestate {
            return Some(first.map_or(Trimmed::dropped(TrimReason::Unreadable), tracestate::trim_remembering));
        }
        let joined = joined_tracestate(headers());
        if let Some(value) = joined.value() {
            tracestate::remember(value);
        }
        Some(joined)
    }

    /// The `baggage` to pass on.
    pub(crate) fn baggage(&self) -> Option<Trimmed<'a>> {
        self.baggage.map(|value| value.map_or(Trimmed::dropped(TrimReason::Unreadable), trim_baggage))
    }
}

/// Several `tracestate` headers as the one list they make: their values joined with commas, in order, then
/// trimmed as one. One that is not bytes makes the list unreadable.
fn joined_tracestate<'a>(headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) -> Trimmed<'a> {
    let mut joined = Vec::new();
    for (_, value) in headers.filter(|&(name, _)| name == TRACESTATE_HEADER) {
        let Some(value) = value else { return Trimmed::dropped(TrimReason::Unreadable) };
        if !joined.is_empty() {
            joined.push(b',');
        }
        joined.extend_from_slice(value);
    }
    trim_tracestate(&joined).into_owned()
}

/// Removes W3C optional white space (spaces and horizontal tabs) around a list member.
fn trim_ows(member: &[u8]) -> &[u8] {
    let start = member.iter().position(|byte| !matches!(byte, b' ' | b'\t')).unwrap_or(member.len());
    let end = member.iter().rposition(|byte| !matches!(byte, b' ' | b'\t')).map_or(start, |last| last + 1);
    &member[start..end]
}

/// The part of an oversized list header that is read: whole members within the first `limit` bytes. Reading
/// stops there so an oversized header costs no more than one at the limit.
fn within_limit(value: &[u8], limit: usize) -> &[u8] {
    if value.len() <= limit {
        return value;
    }
    // A member that ends exactly at the limit is whole when the next byte is the separator.
    let end = value[..=limit].iter().rposition(|&byte| byte == b',').unwrap_or(0);
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan<'a>(headers: &'a [(&'a str, Option<&'a [u8]>)]) -> TraceHeaders<'a> {
        TraceHeaders::scan(headers.iter().copied())
    }

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn names_match_exactly() {
        let headers = [("TraceParent", Some(VALID)), ("Baggage", Some(&b"k=v"[..]))];
        let found = scan(&headers);
        assert_eq!(found.traceparent(), Ok(None));
        assert_eq!(found.baggage(), None);
    }

    #[test]
    fn every_tracestate_is_read_as_one_list_and_the_first_baggage() {
        let headers = [
            ("tracestate", Some(&b"a=1"[..])),
            ("baggage", Some(&b"k=1"[..])),
            ("traceparent", Some(VALID)),
            ("tracestate", Some(&b"b=2"[..])),
            ("baggage", Some(&b"k=2"[..])),
        ];
        let found = scan(&headers);
        assert_eq!(found.traceparent(), Ok(Some(std::str::from_utf8(VALID).unwrap())));
        assert_eq!(found.tracestate(|| headers.iter().copied()).unwrap().value(), Some("a=1,b=2"));
        assert_eq!(found.baggage().unwrap().value(), Some("k=1"));
    }

    #[test]
    fn a_second_traceparent_stops_the_scan_and_rejects_the_context() {
        let headers = [("traceparent", Some(VALID)), ("traceparent", None), ("tracestate", Some(&b"a=1"[..]))];
        let found = scan(&headers);
        assert_eq!(found.traceparent(), Err(ContextRejection::DuplicateTraceparent));
        assert!(found.tracestate.is_none(), "nothing after the second traceparent is read");
    }

    #[test]
    fn values_that_are_not_bytes_are_unreadable() {
        let headers = [("traceparent", None), ("tracestate", None), ("baggage", None)];
        let found = scan(&headers);
        assert_eq!(found.traceparent(), Err(ContextRejection::UnreadableTraceparent));
        assert_eq!(found.tracestate(|| headers.iter().copied()), Some(Trimmed::dropped(TrimReason::Unreadable)));
        assert_eq!(found.baggage(), Some(Trimmed::dropped(TrimReason::Unreadable)));
    }

    #[test]
    fn every_reason_has_its_own_stable_code_and_displays_as_it() {
        let rejections = [
            (ContextRejection::Missing, "missing"),
            (ContextRejection::DuplicateTraceparent, "duplicate_traceparent"),
            (ContextRejection::NotUtf8, "traceparent_not_utf8"),
            (ContextRejection::UnreadableTraceparent, "traceparent_unreadable"),
            (ContextRejection::WrongLength, "traceparent_wrong_length"),
            (ContextRejection::InvalidHex, "traceparent_invalid_hex"),
            (ContextRejection::UppercaseHex, "traceparent_uppercase_hex"),
            (ContextRejection::InvalidVersion, "traceparent_invalid_version"),
            (ContextRejection::TrailingData, "traceparent_trailing_data"),
            (ContextRejection::ZeroTraceId, "traceparent_zero_trace_id"),
            (ContextRejection::ZeroSpanId, "traceparent_zero_span_id"),
            (ContextRejection::PropagatorRejected, "propagator_rejected"),
        ];
        for (rejection, code) in rejections {
            assert_eq!((rejection.as_str(), rejection.to_string()), (code, code.to_owned()));
        }
        let trims = [
            (TrimReason::Oversized, "oversized"),
            (TrimReason::TooManyMembers, "too_many_members"),
            (TrimReason::MalformedMember, "malformed_member"),
            (TrimReason::Unreadable, "unreadable"),
        ];
        for (reason, code) in trims {
            assert_eq!((reason.as_str(), reason.to_string()), (code, code.to_owned()));
        }
    }

    #[test]
    fn a_trimmed_header_gives_up_its_value() {
        assert_eq!(Trimmed::kept("a=1").into_value(), Some(Cow::Borrowed("a=1")));
        assert_eq!(
            Trimmed::rebuilt("b=2".to_owned(), TrimReason::Oversized).into_value(),
            Some(Cow::Owned("b=2".to_owned()))
        );
        assert_eq!(Trimmed::rebuilt(String::new(), TrimReason::Oversized).into_value(), None);
        assert_eq!(Trimmed::dropped(TrimReason::Unreadable).into_value(), None);
    }

    #[test]
    fn a_traceparent_header_is_noticed_whatever_its_value() {
        assert!(scan(&[("traceparent", None)]).has_traceparent());
        assert!(scan(&[("traceparent", Some(&b"garbage"[..]))]).has_traceparent());
        assert!(!scan(&[("tracestate", Some(&b"a=1"[..]))]).has_traceparent());
    }

    #[test]
    fn optional_white_space_is_spaces_and_tabs() {
        assert_eq!(trim_ows(b" \t a=b \t"), b"a=b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"\na=b"), b"\na=b");
    }

    #[test]
    fn an_oversized_list_is_read_up_to_its_last_whole_member_within_the_limit() {
        assert_eq!(within_limit(b"a=1,b=2", 7), b"a=1,b=2");
        assert_eq!(within_limit(b"a=1,b=2,c=3", 7), b"a=1,b=2");
        assert_eq!(within_limit(b"a=1,b=22,c=3", 7), b"a=1");
        assert_eq!(within_limit(b"a=1111111", 7), b"");
    }
}
