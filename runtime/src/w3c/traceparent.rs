//! `traceparent`: the one header that decides whether a trace continues, and the propagator that reads and
//! writes it with `tracestate`.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::OnceLock;

use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

use super::{tracestate, ContextRejection, TRACEPARENT_HEADER, TRACESTATE_HEADER};

/// Length of a version-`00` `traceparent`, and of the fields every later version starts with:
/// `vv-<32 hex>-<16 hex>-ff`.
const TRACEPARENT_LEN: usize = 55;

/// Checks one `traceparent` value against the W3C Trace Context specification (levels 1 and 2 agree on it).
///
/// Spaces and tabs around the value are not part of it, as in HTTP. Version `00` must be exactly 55 characters.
/// A later version (`01`–`fe`) may carry more fields after a `-`, as the specification requires parsers to
/// accept. Hex must be lower case, the ids must not be all zeros and version `ff` is invalid.
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
    check(value.as_bytes()).map(|_| ())
}

/// A valid `traceparent`: its first 55 characters (all of a version-`00` header, and the fields a later version
/// shares with it, which is all a parser may read of one) and what they say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Traceparent<'a> {
    pub(super) fields: &'a str,
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

/// Checks a `traceparent` as it arrived. Reads at most its first 55 bytes and the one after them, however long
/// the header is; a valid one (every message that carries context) is decoded in the same single pass, and
/// only an invalid one takes the second pass that names the first rule it breaks.
pub(super) fn check(value: &[u8]) -> Result<Traceparent<'_>, ContextRejection> {
    if let Some(traceparent) = decode(value) {
        return Ok(traceparent);
    }
    // HTTP drops the white space around a field's value before a tracer sees it, and the W3C test suite expects
    // a `traceparent` with spaces or tabs around it to be continued; a broker hands the value over as it was
    // written, so tracehop drops that white space itself.
    let value = super::trim_ows(value);
    decode(value).ok_or_else(|| rejection(value))
}

/// Each byte's value as a lower-case hex digit, or [`NOT_HEX`]: one load per digit instead of range tests.
const HEX_DIGIT: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        table[b"0123456789abcdef"[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};
const NOT_HEX: u8 = 0xff;

/// Two lower-case hex digits (a version, the flags) as a number; `None` for any other byte.
fn hex_pair(pair: [u8; 2]) -> Option<u8> {
    let (high, low) = (HEX_DIGIT[usize::from(pair[0])], HEX_DIGIT[usize::from(pair[1])]);
    // Every valid digit is below 16, so one bit above them marks a byte that was not one.
    ((high | low) & 0xf0 == 0).then_some(high << 4 | low)
}

/// Eight lower-case hex digits as a number, checked and decoded together in one 64-bit word instead of one
/// digit at a time; `None` when any byte is not one.
fn hex_word(digits: [u8; 8]) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    // The first digit in the highest byte.
    let word = u64::from_be_bytes(digits);
    let low = word & !HIGH;
    // Each byte's low seven bits, compared in place: `x + (0x7f - m)` has its top bit set when x > m, and
    // `(0x7f + n) - x` when x < n. Neither carries into the next byte.
    let above = |m: u8| low + ONES * u64::from(0x7f - m);
    let below = |n: u8| ONES * u64::from(0x7f + n) - low;
    let digit = above(b'0' - 1) & below(b'9' + 1);
    let letter = above(b'a' - 1) & below(b'f' + 1);
    // Every byte a digit or a letter, and ASCII (a byte's top bit is not among the seven compared).
    if (digit | letter) & !word & HIGH != HIGH {
        return None;
    }
    // A digit is worth its low four bits, a letter nine more. Then neighbours are joined: pairs, fours, eights.
    let mut number = (word & (ONES * 0x0f)) + ((letter & HIGH) >> 7) * 9;
    number = (number | number >> 4) & 0x00ff_00ff_00ff_00ff;
    number = (number | number >> 8) & 0x0000_ffff_0000_ffff;
    number = (number | number >> 16) & 0x0000_0000_ffff_ffff;
    u32::try_from(number).ok()
}

/// Lower-case hex digits, eight at a time (a trace id's 32, a span id's 16), as a number; `None` for any other
/// byte.
fn hex_words(digits: &[u8]) -> Option<u128> {
    digits
        .chunks_exact(8)
        .try_fold(0_u128, |number, eight| Some(number << 32 | u128::from(hex_word(<[u8; 8]>::try_from(eight).ok()?)?)))
}

/// The valid `traceparent` in `value`, or `None` when some rule is broken.
fn decode(value: &[u8]) -> Option<Traceparent<'_>> {
    let fields = value.get(..TRACEPARENT_LEN)?;
    if fields[2] != b'-' || fields[35] != b'-' || fields[52] != b'-' {
        return None;
    }
    let version = hex_pair([fields[0], fields[1]])?;
    let trace_id = hex_words(&fields[3..35])?;
    let span_id = u64::try_from(hex_words(&fields[36..52])?).ok()?;
    let flags = hex_pair([fields[53], fields[54]])?;
    let trailing_ok = match value.get(TRACEPARENT_LEN) {
        None => true,
        Some(&next) => version != 0 && next == b'-',
    };
    if version == 0xff || !trailing_ok || trace_id == 0 || span_id == 0 {
        return None;
    }
    // SAFETY: every byte of `fields` was just checked to be a dash or a lower-case hex digit: ASCII, so UTF-8.
    let fields = unsafe { std::str::from_utf8_unchecked(fields) };
    Some(Traceparent { fields, trace_id, span_id, flags })
}

/// Which rule an invalid `traceparent` breaks first, in the order the specification reads it.
fn rejection(value: &[u8]) -> ContextRejection {
    if value.len() < TRACEPARENT_LEN {
        return if std::str::from_utf8(value).is_ok() {
            ContextRejection::WrongLength
        } else {
            ContextRejection::NotUtf8
        };
    }
    // Only the fields are judged: bytes there that are not UTF-8, or a character that starts there and that the
    // bytes after do not complete. A character the longer header does complete is UTF-8, and its bytes fail the
    // hex check below. Three bytes past the fields complete any character that starts in them.
    let with_a_cut_character = &value[..value.len().min(TRACEPARENT_LEN + 3)];
    if std::str::from_utf8(with_a_cut_character).is_err_and(|error| error.valid_up_to() < TRACEPARENT_LEN) {
        return ContextRejection::NotUtf8;
    }
    let dashes = [2, 35, 52];
    if dashes.iter().any(|&dash| value[dash] != b'-') {
        return ContextRejection::WrongLength;
    }
    let hex_fields = [&value[0..2], &value[3..35], &value[36..52], &value[53..55]];
    for field in hex_fields {
        for &byte in field {
            match byte {
                b'0'..=b'9' | b'a'..=b'f' => {}
                b'A'..=b'F' => return ContextRejection::UppercaseHex,
                _ => return ContextRejection::InvalidHex,
            }
        }
    }
    let version = &value[0..2];
    if version == b"ff" {
        return ContextRejection::InvalidVersion;
    }
    if value.len() > TRACEPARENT_LEN && (version == b"00" || value[TRACEPARENT_LEN] != b'-') {
        return ContextRejection::TrailingData;
    }
    if hex_fields[1].iter().all(|&byte| byte == b'0') {
        return ContextRejection::ZeroTraceId;
    }
    ContextRejection::ZeroSpanId
}

/// A `traceparent` decoded by the header scan, kept for the propagator that reads it next.
#[derive(Clone, Copy)]
struct Scanned {
    fields: [u8; TRACEPARENT_LEN],
    trace_id: u128,
    span_id: u64,
    flags: u8,
    /// Whether the message also carried a header of its lineage (`tracehop-*`): the consumer span of its
    /// context, if recorded, reads them.
    lineage: bool,
}

thread_local! {
    /// The last `traceparent` the header scan decoded on this thread. The propagator is handed the same 55
    /// bytes right after, through OpenTelemetry's `Extractor`, which cannot carry what the scan found; keyed by
    /// the bytes themselves, so any other header is decoded afresh.
    static SCANNED: Cell<Option<Scanned>> = const { Cell::new(None) };
}

/// Keeps what the header scan decoded, so the propagator does not decode it again.
pub(super) fn remember(traceparent: &Traceparent<'_>, lineage: bool) {
    let Ok(fields) = <[u8; TRACEPARENT_LEN]>::try_from(traceparent.fields.as_bytes()) else { return };
    let Traceparent { trace_id, span_id, flags, .. } = *traceparent;
    SCANNED.set(Some(Scanned { fields, trace_id, span_id, flags, lineage }));
}

/// Whether the message whose `traceparent` names `span_context` carried a header of its lineage, as the header
/// scan that decoded it last on this thread found; `None` when the last one decoded was another's (or none was),
/// and the caller must look. What a consumer span's start asks, without a pass over the headers or a value in
/// the context, for every recorded message.
pub(crate) fn scanned_lineage(span_context: &SpanContext) -> Option<bool> {
    let scanned = SCANNED.get()?;
    let same = span_context.trace_id() == TraceId::from(scanned.trace_id)
        && span_context.span_id() == SpanId::from(scanned.span_id);
    same.then_some(scanned.lineage)
}

/// Trace-flags bit 1, Level 2's "random": at least the right-most 7 bytes of the trace id were drawn at random.
const RANDOM_FLAG: u8 = 0x02;

/// The trace flags tracehop reads and writes: sampled and random. The others are reserved, and the
/// specification has vendors write them as zero.
const KNOWN_FLAGS: u8 = 0x03;

/// The ids and the sampled and random flags of a valid `traceparent`.
fn parse_traceparent(value: &str) -> Result<(TraceId, SpanId, TraceFlags), ContextRejection> {
    let scanned = SCANNED.get().filter(|scanned| scanned.fields.as_slice() == value.as_bytes());
    let (trace_id, span_id, flags) = match scanned {
        Some(Scanned { trace_id, span_id, flags, .. }) => (trace_id, span_id, flags),
        None => {
            let Traceparent { trace_id, span_id, flags, .. } = check(value.as_bytes())?;
            (trace_id, span_id, flags)
        }
    };
    Ok((TraceId::from(trace_id), SpanId::from(span_id), TraceFlags::new(flags & KNOWN_FLAGS)))
}

/// What a W3C trace context says that OpenTelemetry's span contexts cannot carry to the spans of its trace, kept
/// in the `Context` beside them and read back when tracehop writes a `traceparent` of that trace:
///
/// - the random flag: the SDK keeps a parent's flags on a span it records, but gives a span it drops none;
/// - `tracestate` keys OpenTelemetry's `TraceState` refuses (Level 2's `@` placements, a 14-character system id):
///   its parser would drop the whole header for one of them.
///
/// Only a context that needs it carries one (an incoming `traceparent` with the random flag, a `tracestate`
/// with such a key, a trace tracehop started with a random trace id), and it speaks for its own trace id only:
/// a span linked to the message starts a trace of its own and ignores it.
#[derive(Debug)]
pub(crate) struct WireOnly {
    trace_id: TraceId,
    random: bool,
    tracestate: Option<UnheldTraceState>,
}

impl WireOnly {
    /// For a trace started here whose trace id is random ([`crate::set_random_trace_ids`]).
    pub(crate) fn random_root(trace_id: TraceId) -> Self {
        Self { trace_id, random: true, tracestate: None }
    }
}

/// A `tracestate` with keys OpenTelemetry's `TraceState` cannot hold.
#[derive(Debug)]
struct UnheldTraceState {
    /// The whole header, as tracehop passes it on.
    header: String,
    /// The members `TraceState` holds: the state of the trace's span contexts until a sampler changes it.
    held: TraceState,
}

impl UnheldTraceState {
    /// The header for a span whose `TraceState` is `state`: the whole incoming one while the span's state is
    /// what was held of it; otherwise the span's members, with the ones `TraceState` could not hold back where
    /// they were. As the specification has vendors mutate it: members changed or added move to the front,
    /// the others keep their order, and the list keeps to 32 members and the size rule.
    fn for_state(&self, state: &TraceState) -> String {
        if *state == self.held {
            return self.header.clone();
        }
        let incoming: Vec<(&str, &str)> = tracestate::entries(&self.header).collect();
        let changed = state.into_iter().filter(|member| !incoming.contains(member));
        let unchanged = incoming
            .iter()
            .copied()
            .filter(|&(key, value)| !tracestate::opentelemetry_holds_key(key) || state.get(key) == Some(value));
        let members: Vec<String> = changed
            .chain(unchanged)
            .take(super::MAX_TRACESTATE_MEMBERS)
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let joined = members.join(",");
        tracestate::trim_tracestate(joined.as_bytes()).value().map(str::to_owned).unwrap_or_default()
    }
}

/// The W3C Trace Context propagator (`traceparent`, `tracestate`), held to the same strict rules as the rest of
/// tracehop ([`validate_traceparent`], [`trim_tracestate`](crate::trim_tracestate)) and built for the
/// per-message path: it parses without intermediate allocations and writes no empty `tracestate` header.
/// [`install_propagator`](crate::install_propagator) installs it with [`W3cBaggage`](crate::W3cBaggage).
///
/// It follows W3C Trace Context Level 2. A `tracestate` that breaks the rules never costs the trace: one that
/// cannot be parsed is discarded whole, one over [`MAX_TRACESTATE_LEN`](crate::MAX_TRACESTATE_LEN) bytes is
/// truncated by W3C's rule, and the `traceparent` is continued. What OpenTelemetry's span context cannot hold (the
/// random flag of a span the SDK drops, `tracestate` keys its `TraceState` refuses) is kept beside it in the
/// `Context` and written back on every `traceparent` of the same trace.
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
        let wire_only = cx.get::<WireOnly>().filter(|wire_only| wire_only.trace_id == span_context.trace_id());
        let mut flags = span_context.trace_flags().to_u8() & KNOWN_FLAGS;
        if wire_only.is_some_and(|wire_only| wire_only.random) {
            flags |= RANDOM_FLAG;
        }
        let mut traceparent = String::with_capacity(TRACEPARENT_LEN);
        let _ = write!(traceparent, "00-{}-{}-{flags:02x}", span_context.trace_id(), span_context.span_id());
        injector.set(TRACEPARENT_HEADER, traceparent);
        let trace_state = match wire_only.and_then(|wire_only| wire_only.tracestate.as_ref()) {
            Some(unheld) => unheld.for_state(span_context.trace_state()),
            None => span_context.trace_state().header(),
        };
        if !trace_state.is_empty() {
            injector.set(TRACESTATE_HEADER, trace_state);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some(Ok((trace_id, span_id, flags))) = extractor.get(TRACEPARENT_HEADER).map(parse_traceparent) else {
            return cx.clone();
        };
        let trimmed = extractor.get(TRACESTATE_HEADER).map(tracestate::trimmed_once);
        let (trace_state, unheld) = match trimmed.as_ref().and_then(|trimmed| trimmed.value()) {
            None => (TraceState::default(), None),
            Some(value) => match tracestate::held(value) {
                Ok(whole) => (whole, None),
                Err(held) => {
                    let header = tracestate::without_white_space(value);
                    (held.clone(), Some(UnheldTraceState { header, held }))
                }
            },
        };
        let random = flags.to_u8() & RANDOM_FLAG != 0;
        let context = cx.with_remote_span_context(SpanContext::new(trace_id, span_id, flags, true, trace_state));
        if random || unheld.is_some() {
            context.with_value(WireOnly { trace_id, random, tracestate: unheld })
        } else {
            context
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        static FIELDS: OnceLock<[String; 2]> = OnceLock::new();
        FieldIter::new(FIELDS.get_or_init(|| [TRACEPARENT_HEADER.to_owned(), TRACESTATE_HEADER.to_owned()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceState;

    /// The lower-case hex digits of `digits` as a number, one at a time, as the specification reads them.
    fn lower_hex(digits: &[u8]) -> Option<u128> {
        digits.iter().try_fold(0_u128, |number, &digit| match digit {
            b'0'..=b'9' => Some(number << 4 | u128::from(digit - b'0')),
            b'a'..=b'f' => Some(number << 4 | u128::from(digit - b'a' + 10)),
            _ => None,
        })
    }

    #[test]
    fn only_lower_case_hex_digits_are_digits() {
        for byte in 0..=u8::MAX {
            let expected = match byte {
                b'0'..=b'9' => Some(byte - b'0'),
                b'a'..=b'f' => Some(byte - b'a' + 10),
                _ => None,
            };
            assert_eq!(hex_pair([b'0', byte]), expected, "byte {byte:#04x}");
            assert_eq!(hex_pair([byte, b'0']), expected.map(|digit| digit << 4), "byte {byte:#04x} first");
        }
        assert_eq!(hex_words(b"4bf92f3577b34da6a3ce929d0e0e4736"), Some(0x4bf92f3577b34da6a3ce929d0e0e4736));
        assert_eq!(hex_words(b"00f067aa0ba902b7"), Some(0x00f067aa0ba902b7));
    }

    #[test]
    fn eight_digits_at_once_read_as_one_digit_at_a_time() {
        // Every byte in every place of a word, and every pair of bytes in the first and last places and in two
        // neighbouring ones: a byte's check or value never leaks into its neighbours.
        let mut words = Vec::new();
        for byte in 0..=u8::MAX {
            for place in 0..8 {
                let mut word = *b"0f9a6e3b";
                word[place] = byte;
                words.push(word);
            }
            for other in 0..=u8::MAX {
                for (first, second) in [(0, 7), (3, 4)] {
                    let mut word = *b"ffffffff";
                    (word[first], word[second]) = (byte, other);
                    words.push(word);
                }
            }
        }
        for word in words {
            assert_eq!(hex_word(word).map(u128::from), lower_hex(&word), "{word:?}");
        }
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn spaces_and_tabs_around_the_value_are_not_part_of_it() {
        for value in [
            " \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \t",
        ] {
            assert_eq!(check(value.as_bytes()).map(|traceparent| traceparent.fields), Ok(VALID), "{value:?}");
        }
    }

    #[test]
    fn parses_the_ids_and_only_the_sampled_and_random_flags() {
        let (trace_id, span_id, flags) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap();
        assert_eq!(trace_id, TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        assert_eq!(span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert_eq!(flags, TraceFlags::new(0x03));
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
        assert_eq!(headers, HashMap::from([("traceparent".to_owned(), VALID.to_owned())]));
        headers.insert("tracestate".to_owned(), "congo=t61rcWkgMzE".to_owned());
        let extracted = propagator.extract(&headers);
        let extracted = extracted.span().span_context().clone();
        assert_eq!(extracted.trace_id(), span_context.trace_id());
        assert_eq!(extracted.span_id(), span_context.span_id());
        assert!(extracted.is_remote() && extracted.is_sampled());
        assert_eq!(extracted.trace_state().get("congo"), Some("t61rcWkgMzE"));
    }

    fn extract(traceparent: &str, tracestate: &str) -> Context {
        let headers = std::collections::HashMap::from([
            ("traceparent".to_owned(), traceparent.to_owned()),
            ("tracestate".to_owned(), tracestate.to_owned()),
        ]);
        W3cTraceContext::new().extract(&headers)
    }

    fn inject(context: &Context) -> std::collections::HashMap<String, String> {
        let mut headers = std::collections::HashMap::new();
        W3cTraceContext::new().inject_context(context, &mut headers);
        headers
    }

    /// `context` with a span of its trace as the SDK makes one: a new span id, and `flags`.
    fn child(context: &Context, flags: TraceFlags, trace_state: TraceState) -> Context {
        let parent = context.span().span_context().clone();
        let span_context = SpanContext::new(parent.trace_id(), SpanId::from(0x1111), flags, false, trace_state);
        context.with_remote_span_context(span_context)
    }

    #[test]
    fn a_malformed_tracestate_member_costs_the_whole_list_and_not_the_trace() {
        let extracted = extract(VALID, "congo=t61rcWkgMzE,Bad Key=x,rojo=00f067aa0ba902b7");
        assert!(extracted.span().span_context().is_valid());
        assert_eq!(extracted.span().span_context().trace_state(), &TraceState::default());
        assert_eq!(inject(&extracted).get("tracestate"), None);
    }

    #[test]
    fn keys_opentelemetry_refuses_travel_on_to_every_span_of_the_trace() {
        let header = "congo=1,foo@@bar=2,rojo=3,tenant@vvvvvvvvvvvvvv=4";
        let extracted = extract(VALID, header);
        assert_eq!(extracted.span().span_context().trace_state().header(), "congo=1,rojo=3");
        let state = extracted.span().span_context().trace_state().clone();
        assert_eq!(inject(&child(&extracted, TraceFlags::SAMPLED, state.clone()))["tracestate"], header);
        // A sampler that changes a member: it moves to the front, the others keep their places.
        let changed = state.insert("rojo", "9").unwrap();
        assert_eq!(
            inject(&child(&extracted, TraceFlags::SAMPLED, changed))["tracestate"],
            "rojo=9,congo=1,foo@@bar=2,tenant@vvvvvvvvvvvvvv=4"
        );
        // A span of another trace (linked, not continued) writes only its own state.
        let other =
            SpanContext::new(TraceId::from(7), SpanId::from(8), TraceFlags::SAMPLED, false, TraceState::default());
        assert_eq!(inject(&extracted.with_remote_span_context(other)).get("tracestate"), None);
    }

    #[test]
    fn the_random_flag_is_kept_for_every_span_of_its_trace_and_no_other() {
        let random = format!("{}03", &VALID[..53]);
        let extracted = extract(&random, "");
        assert_eq!(inject(&extracted)["traceparent"], random);
        // A recorded child keeps its parent's flags; a dropped one has none, and the flag still goes out.
        let recorded = inject(&child(&extracted, TraceFlags::new(0x03), TraceState::default()));
        assert_eq!(&recorded["traceparent"][53..], "03");
        let dropped = inject(&child(&extracted, TraceFlags::default(), TraceState::default()));
        assert_eq!(&dropped["traceparent"][36..], "0000000000001111-02");
        let other =
            SpanContext::new(TraceId::from(7), SpanId::from(8), TraceFlags::SAMPLED, false, TraceState::default());
        assert_eq!(&inject(&extracted.with_remote_span_context(other))["traceparent"][53..], "01");
        // Without the flag on the way in, none on the way out.
        let plain = extract(&format!("{}00", &VALID[..53]), "");
        assert_eq!(&inject(&child(&plain, TraceFlags::default(), TraceState::default()))["traceparent"][53..], "00");
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
    fn accepts_a_future_version_with_extra_fields_and_reads_only_the_shared_ones() {
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert_eq!(validate_traceparent(future), Ok(()));
        assert_eq!(check(future.as_bytes()).map(|parsed| parsed.fields), Ok(&future[..55]));
        let mut not_utf8_later = future.as_bytes().to_vec();
        not_utf8_later.push(0xff);
        assert_eq!(
            check(&not_utf8_later).map(|parsed| parsed.fields),
            Ok(&future[..55]),
            "bytes past the shared fields are not read"
        );
    }

    #[test]
    fn a_long_header_is_judged_by_its_first_56_bytes() {
        let long = format!("{VALID}{}", "-x".repeat(50_000));
        assert_eq!(check(long.as_bytes()), Err(ContextRejection::TrailingData));
        let mut not_utf8 = VALID.as_bytes().to_vec();
        not_utf8.extend(std::iter::repeat_n(0xff, 100_000));
        assert_eq!(check(&not_utf8), Err(ContextRejection::TrailingData));
        assert_eq!(check(&vec![b'x'; 100_000]), Err(ContextRejection::WrongLength));
    }

    #[test]
    fn rejects_each_broken_rule_with_its_own_reason() {
        let cases: [(&[u8], ContextRejection); 16] = [
            (b"", ContextRejection::WrongLength),
            (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", ContextRejection::WrongLength),
            (b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", ContextRejection::WrongLength),
            (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01", ContextRejection::InvalidHex),
            (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", ContextRejection::UppercaseHex),
            (b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ContextRejection::InvalidVersion),
            (b"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ContextRejection::ZeroTraceId),
            (b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ContextRejection::ZeroSpanId),
            (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00", ContextRejection::TrailingData),
            (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 .", ContextRejection::TrailingData),
            (b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", ContextRejection::TrailingData),
            (b"\n00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ContextRejection::WrongLength),
            (b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 x", ContextRejection::TrailingData),
            (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\xff", ContextRejection::NotUtf8),
            (b"\x80\x00\xc3\x28\xfe\xff", ContextRejection::NotUtf8),
            (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\xc3\xa9", ContextRejection::InvalidHex),
        ];
        for (header, reason) in cases {
            assert_eq!(check(header).map(|parsed| parsed.fields), Err(reason), "{:?}", String::from_utf8_lossy(header));
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
    fn a_character_cut_at_byte_55_is_broken_utf8_only_when_nothing_follows() {
        let mut cut = VALID.as_bytes()[..54].to_vec();
        cut.push(0xc3);
        assert_eq!(check(&cut), Err(ContextRejection::NotUtf8), "55 bytes ending mid-character");
        let mut broken_then_more = VALID.as_bytes().to_vec();
        broken_then_more[10] = 0xff;
        broken_then_more.extend_from_slice(b"-more");
        assert_eq!(check(&broken_then_more), Err(ContextRejection::NotUtf8), "a broken byte within the fields");
        let mut not_completed = cut.clone();
        not_completed.extend_from_slice(b"-more");
        assert_eq!(check(&not_completed), Err(ContextRejection::NotUtf8), "a longer header that does not complete it");
        let mut completed = cut;
        completed.extend_from_slice(&[0xa9, b'-']);
        assert_eq!(check(&completed), Err(ContextRejection::InvalidHex), "é, completed past byte 55: UTF-8, not hex");
    }

    #[test]
    fn injection_writes_only_the_sampled_and_random_flags() {
        use std::collections::HashMap;
        for (flags, written) in
            [(TraceFlags::default(), "00"), (TraceFlags::new(0xff), "03"), (TraceFlags::new(0x06), "02")]
        {
            let span_context = SpanContext::new(
                TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
                SpanId::from(0x00f067aa0ba902b7),
                flags,
                false,
                TraceState::default(),
            );
            let mut headers: HashMap<String, String> = HashMap::new();
            W3cTraceContext::new().inject_context(&Context::new().with_remote_span_context(span_context), &mut headers);
            assert_eq!(headers["traceparent"], format!("{}{written}", &VALID[..53]), "{flags:?}");
        }
    }

    #[test]
    fn what_the_scan_decoded_is_reused_only_for_the_same_bytes() {
        let scanned = check(VALID.as_bytes()).unwrap();
        remember(&scanned, false);
        assert_eq!(
            parse_traceparent(VALID),
            Ok((
                TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
                SpanId::from(0x00f067aa0ba902b7),
                TraceFlags::SAMPLED
            ))
        );
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        assert_eq!(
            parse_traceparent(other),
            Ok((
                TraceId::from(0x0af7651916cd43dd8448eb211c80319c),
                SpanId::from(0xb7ad6b7169203331),
                TraceFlags::default()
            ))
        );
        let invalid = "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-00";
        assert_eq!(parse_traceparent(invalid), Err(ContextRejection::ZeroSpanId));
    }
}
