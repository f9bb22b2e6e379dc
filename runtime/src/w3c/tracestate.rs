//! `tracestate`: vendor data that travels with the `traceparent`, trimmed member by member, never at the
//! cost of the trace.

use std::cell::RefCell;
use std::str::FromStr;

use opentelemetry::trace::TraceState;

use super::{trim_ows, within_limit, TrimReason, Trimmed};

/// What this thread's last messages said in `tracestate`, so repeats are not checked and parsed again.
/// Consecutive messages of a producer usually carry the same vendor data. A value that changes with every message
/// gains nothing: it is checked, copied here and parsed in full (BENCHMARKS.md, the `-varied` rows). Buffers are
/// reused: no allocation per message.
struct Recent {
    /// The last raw value a header scan found whole (nothing to trim).
    whole: Vec<u8>,
    /// The last value the header scan passed on, already trimmed. The propagator reads the same value right
    /// after, through OpenTelemetry's `Extractor`, which cannot say it was checked.
    passed_on: String,
    /// Whether `passed_on` is also what the scan passed on before it: worth keeping its parse.
    repeated: bool,
    /// What OpenTelemetry made of `passed_on`, once it repeated: a clone costs a fraction of the parse, which
    /// checks every key and value again.
    parsed: Option<TraceState>,
}

thread_local! {
    static RECENT: RefCell<Recent> = const {
        RefCell::new(Recent { whole: Vec::new(), passed_on: String::new(), repeated: false, parsed: None })
    };
}

/// [`trim_tracestate`] for the header scan, answered by one comparison when `value` is the one this thread last
/// found whole.
pub(super) fn trim_remembering(value: &[u8]) -> Trimmed<'_> {
    if RECENT.with_borrow(|recent| !recent.whole.is_empty() && recent.whole == value) {
        // It passed whole before: every byte is ASCII, so this check cannot fail.
        if let Ok(value) = std::str::from_utf8(value) {
            return Trimmed::kept(value);
        }
    }
    let trimmed = trim_tracestate(value);
    if trimmed.reason().is_none() {
        RECENT.with_borrow_mut(|recent| {
            recent.whole.clear();
            recent.whole.extend_from_slice(value);
        });
    }
    trimmed
}

/// Keeps the trimmed tracestate the header scan passes on, so the propagator neither trims nor (when it repeats)
/// parses it again.
pub(super) fn remember(value: &str) {
    RECENT.with_borrow_mut(|recent| {
        recent.repeated = recent.passed_on == value;
        if !recent.repeated {
            recent.passed_on.clear();
            recent.passed_on.push_str(value);
            recent.parsed = None;
        }
    });
}

/// `value` trimmed as [`trim_tracestate`] does, without a second pass when the header scan already trimmed it.
pub(super) fn trimmed_once(value: &str) -> Trimmed<'_> {
    if RECENT.with_borrow(|recent| recent.passed_on == value) {
        Trimmed::kept(value)
    } else {
        trim_tracestate(value.as_bytes())
    }
}

/// OpenTelemetry's `TraceState` of a trimmed `tracestate` (one [`trim_tracestate`] kept, so the parse does not
/// fail): the parse kept for the value the scan passed on, when it repeated; otherwise a parse of its own.
pub(super) fn parsed(trimmed: &str) -> TraceState {
    let parse = || TraceState::from_str(trimmed).unwrap_or_default();
    RECENT.with_borrow_mut(|recent| {
        if recent.repeated && recent.passed_on == trimmed {
            recent.parsed.get_or_insert_with(parse).clone()
        } else {
            parse()
        }
    })
}

/// The most list members a `tracestate` may carry (W3C Trace Context, "tracestate Header Field Values").
/// Members past it are dropped ([`TrimReason::TooManyMembers`]).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The longest `tracestate` tracehop passes on whole, in bytes: the 512 characters the W3C specification asks
/// every vendor to propagate. A longer one is truncated by the specification's rule ([`trim_tracestate`]).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// Members longer than this are the first to go when a `tracestate` is truncated (W3C Trace Context,
/// "Mutating the tracestate Field").
const LONG_MEMBER_LEN: usize = 128;

/// The longest key and the longest value the specification allows.
const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 256;

/// The longest `tracestate` that can be valid: 32 members of the longest key and value, and the commas between
/// them. A longer header is read only this far.
const READ_LIMIT: usize = MAX_TRACESTATE_MEMBERS * (MAX_KEY_LEN + 1 + MAX_VALUE_LEN) + MAX_TRACESTATE_MEMBERS - 1;

/// Trims a `tracestate` value to what the W3C specification lets a vendor propagate, dropping whole members:
///
/// - a member that breaks the syntax (key and value characters, lengths, no `=`, bytes that are not UTF-8)
///   is dropped alone ([`TrimReason::MalformedMember`]); empty members are skipped;
/// - members past the 32nd are dropped ([`TrimReason::TooManyMembers`]);
/// - when the members left are longer than [`MAX_TRACESTATE_LEN`] joined, members over 128 characters are
///   dropped first, from the end, then members from the end, until they fit ([`TrimReason::Oversized`]); a
///   header longer than any valid one (16,447 bytes) is read only up to there.
///
/// Keys are held to the rules OpenTelemetry's `TraceState` applies (a multi-tenant key's system id at most 13
/// characters), values to the specification's (printable ASCII but `,` and `=`, not ending in a space), so
/// every member kept parses there. A header that passes whole is returned as it is, without a copy.
///
/// ```
/// use tracehop::{trim_tracestate, TrimReason};
///
/// let whole = trim_tracestate(b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
/// assert_eq!((whole.value(), whole.reason()), (Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"), None));
///
/// let trimmed = trim_tracestate(b"congo=t61rcWkgMzE,Bad Key=1,rojo=00f067aa0ba902b7");
/// assert_eq!(trimmed.value(), Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
/// assert_eq!(trimmed.reason(), Some(TrimReason::MalformedMember));
/// ```
pub fn trim_tracestate(value: &[u8]) -> Trimmed<'_> {
    let read = within_limit(value, READ_LIMIT);
    let mut reason = (read.len() < value.len()).then_some(TrimReason::Oversized);
    let mut members = 0;
    // The length of the kept members joined with commas, plus one.
    let mut joined_len = 0;
    for member in read.split(|&byte| byte == b',').map(trim_ows).filter(|member| !member.is_empty()) {
        members += 1;
        if members > MAX_TRACESTATE_MEMBERS {
            reason.get_or_insert(TrimReason::TooManyMembers);
            break;
        }
        if member_text(member).is_some() {
            joined_len += member.len() + 1;
        } else {
            reason.get_or_insert(TrimReason::MalformedMember);
        }
    }
    if reason.is_none() && joined_len <= MAX_TRACESTATE_LEN + 1 {
        // Every member is valid, so every byte is ASCII: the whole header passes as it came.
        if let Ok(value) = std::str::from_utf8(value) {
            return Trimmed::kept(value);
        }
    }
    let mut kept: Vec<&str> = read
        .split(|&byte| byte == b',')
        .map(trim_ows)
        .filter(|member| !member.is_empty())
        .take(MAX_TRACESTATE_MEMBERS)
        .filter_map(member_text)
        .collect();
    let mut joined_len = kept.iter().map(|member| member.len() + 1).sum::<usize>().saturating_sub(1);
    if joined_len > MAX_TRACESTATE_LEN {
        reason.get_or_insert(TrimReason::Oversized);
        while joined_len > MAX_TRACESTATE_LEN {
            let drop_at = kept.iter().rposition(|member| member.len() > LONG_MEMBER_LEN).unwrap_or(kept.len() - 1);
            let dropped = kept.remove(drop_at);
            joined_len = joined_len.saturating_sub(dropped.len() + 1);
        }
    }
    Trimmed::rebuilt(kept.join(","), reason.unwrap_or(TrimReason::MalformedMember))
}

/// The member as text when it is a valid `key=value` list member.
fn member_text(member: &[u8]) -> Option<&str> {
    let separator = member.iter().position(|&byte| byte == b'=')?;
    let (key, value) = (&member[..separator], &member[separator + 1..]);
    if !(valid_key(key) && valid_value(value)) {
        return None;
    }
    // Valid keys and values are ASCII.
    std::str::from_utf8(member).ok()
}

/// `simple-key` or `tenant@system`: lower-case letters, digits, `_ - * /`, starting with a letter or digit;
/// a system id of 1 to 13 characters, as OpenTelemetry's `TraceState` accepts.
fn valid_key(key: &[u8]) -> bool {
    let key_byte = |byte: u8| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    let starts_well =
        |part: &[u8]| part.first().is_some_and(|&byte| byte.is_ascii_lowercase() || byte.is_ascii_digit());
    if key.len() > MAX_KEY_LEN {
        return false;
    }
    let (tenant, system) = match key.iter().position(|&byte| byte == b'@') {
        Some(at) => (&key[..at], Some(&key[at + 1..])),
        None => (key, None),
    };
    let part_ok = |part: &[u8]| starts_well(part) && part.iter().all(|&byte| key_byte(byte));
    part_ok(tenant) && system.is_none_or(|system| system.len() <= 13 && part_ok(system))
}

/// 1 to 256 printable ASCII characters but `,` and `=`, not ending in a space.
fn valid_value(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_VALUE_LEN
        && value.last() != Some(&b' ')
        && value.iter().all(|&byte| matches!(byte, 0x20..=0x7e) && byte != b',' && byte != b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_tracestate_is_parsed_once_and_every_value_reads_as_itself() {
        let header = |state: &TraceState| state.header();
        for (value, repeated) in [("a=1", false), ("a=1", true), ("a=1", true), ("b=2,a=1", false), ("a=1", false)] {
            remember(value);
            assert_eq!(RECENT.with_borrow(|recent| recent.repeated), repeated, "{value}");
            assert_eq!(header(&parsed(value)), value);
            assert_eq!(RECENT.with_borrow(|recent| recent.parsed.is_some()), repeated, "kept only once repeated");
        }
        // A value the scan did not pass on is parsed afresh, never answered with the kept one.
        assert_eq!(header(&parsed("c=3")), "c=3");
        assert_eq!(trimmed_once("c=3").value(), Some("c=3"));
    }

    #[test]
    fn the_header_scans_memo_answers_only_for_the_value_it_remembers() {
        assert_eq!(trim_remembering(b"a=1"), Trimmed::kept("a=1"));
        assert_eq!(trim_remembering(b"a=1"), Trimmed::kept("a=1"), "the repeat, answered by the memo");
        let other = trim_remembering(b"a=1,B=2");
        assert_eq!(
            (other.value(), other.reason()),
            (Some("a=1"), Some(TrimReason::MalformedMember)),
            "any other value"
        );
        assert_eq!(trim_remembering(b"a=1"), Trimmed::kept("a=1"), "a malformed value is never remembered");
    }

    /// `members` members of `member_len` bytes each, comma-separated.
    fn tracestate(members: usize, member_len: usize) -> String {
        (0..members).map(|i| format!("k{i:02}={}", "v".repeat(member_len - 4))).collect::<Vec<_>>().join(",")
    }

    fn trimmed(value: &[u8]) -> (Option<String>, Option<TrimReason>) {
        let trimmed = trim_tracestate(value);
        (trimmed.value().map(str::to_owned), trimmed.reason())
    }

    #[test]
    fn the_limits_pass_whole_without_a_copy() {
        for whole in [tracestate(32, 5), tracestate(27, 18)] {
            let trimmed = trim_tracestate(whole.as_bytes());
            assert!(matches!(trimmed.value, Some(std::borrow::Cow::Borrowed(_))), "{whole}");
            assert_eq!(trimmed.reason(), None);
        }
        assert_eq!(tracestate(27, 18).len(), 512);
    }

    #[test]
    fn members_past_the_32nd_are_dropped() {
        assert_eq!(trimmed(tracestate(33, 5).as_bytes()), (Some(tracestate(32, 5)), Some(TrimReason::TooManyMembers)));
    }

    #[test]
    fn an_oversized_header_loses_members_from_the_end() {
        let long = format!("{}v", tracestate(27, 18));
        assert_eq!(long.len(), 513);
        assert_eq!(trimmed(long.as_bytes()), (Some(tracestate(26, 18)), Some(TrimReason::Oversized)));
    }

    #[test]
    fn an_oversized_header_loses_its_long_members_first() {
        let long_member = format!("big={}", "x".repeat(200));
        let header = format!("a=1,{long_member},b=2,{},c=3", tracestate(20, 18).replace("k", "z"));
        let (value, reason) = trimmed(header.as_bytes());
        assert_eq!(value, Some(format!("a=1,b=2,{},c=3", tracestate(20, 18).replace("k", "z"))));
        assert_eq!(reason, Some(TrimReason::Oversized));
    }

    #[test]
    fn a_malformed_member_costs_only_itself() {
        for (header, kept) in [
            (&b"a=1,B=2,c=3"[..], "a=1,c=3"),
            (b"a=1,b,c=3", "a=1,c=3"),
            (b"a=1,b=,c=3", "a=1,c=3"),
            (b"a=1,b=x\xff,c=3", "a=1,c=3"),
            (b"a=1,b=x=y,c=3", "a=1,c=3"),
            (b"a=1,@b=2,c=3", "a=1,c=3"),
            (b"a=1,t@=2,c=3", "a=1,c=3"),
            (b"a=1,t@abcdefghijklmn=2,c=3", "a=1,c=3"),
        ] {
            assert_eq!(trimmed(header), (Some(kept.to_owned()), Some(TrimReason::MalformedMember)), "{header:?}");
        }
        assert_eq!(trimmed(b"B=1"), (None, Some(TrimReason::MalformedMember)));
    }

    #[test]
    fn keys_and_values_the_specification_allows_are_kept() {
        // The longest key alone, and the longest value alone (a member of both would pass 512 bytes).
        let key = format!("a{}", "b".repeat(255));
        let value = "v".repeat(256);
        for header in [
            "t61rcwkgmze@congo=x".to_owned(),
            "0tenant@sys_-*/123456=x".to_owned(),
            "k=a value with spaces".to_owned(),
            "k= leading space".to_owned(),
            format!("{key}=v"),
            format!("k={value}"),
            " \t a=1 , ,b=2\t".to_owned(),
        ] {
            assert_eq!(trimmed(header.as_bytes()), (Some(header.clone()), None), "{header:?}");
        }
    }

    #[test]
    fn an_oversized_header_is_read_only_up_to_the_longest_valid_one() {
        let huge = format!("a=1,{}", "x".repeat(1 << 20));
        assert_eq!(trimmed(huge.as_bytes()), (Some("a=1".to_owned()), Some(TrimReason::Oversized)));
        let many = "k=v,".repeat(5000);
        assert_eq!(trimmed(many.as_bytes()), (Some(vec!["k=v"; 32].join(",")), Some(TrimReason::Oversized)));
    }

    #[test]
    fn truncation_stops_as_soon_as_the_members_fit() {
        // 28 members of 18 bytes: 531 joined; dropping the last leaves exactly 512.
        let header = tracestate(28, 18);
        assert_eq!(trimmed(header.as_bytes()), (Some(tracestate(27, 18)), Some(TrimReason::Oversized)));
    }

    #[test]
    fn a_member_of_exactly_128_characters_is_not_a_long_one() {
        let edge = format!("edge={}", "e".repeat(123));
        assert_eq!(edge.len(), 128);
        // 128 + 1 + 21 members of 18 + their commas = 528: over, so the last short member goes, not `edge`.
        let header = format!("{edge},{}", tracestate(21, 18));
        let (value, reason) = trimmed(header.as_bytes());
        assert_eq!(value, Some(format!("{edge},{}", tracestate(20, 18))));
        assert_eq!(reason, Some(TrimReason::Oversized));
    }

    #[test]
    fn members_that_fill_exactly_512_bytes_are_not_oversized_beside_a_malformed_one() {
        let header = format!("{},B=1", tracestate(27, 18));
        assert_eq!(trimmed(header.as_bytes()), (Some(tracestate(27, 18)), Some(TrimReason::MalformedMember)));
    }

    #[test]
    fn the_read_limit_is_exactly_the_longest_valid_header() {
        assert_eq!(READ_LIMIT, 16_447);
        // A malformed member (its value is too long), then a valid one that ends exactly at the limit: read.
        let filler = |len: usize| format!("f={}", "v".repeat(len - 2));
        let at_limit = format!("{},a=1", filler(READ_LIMIT - 4));
        assert_eq!(at_limit.len(), READ_LIMIT);
        assert_eq!(trimmed(at_limit.as_bytes()), (Some("a=1".to_owned()), Some(TrimReason::MalformedMember)));
        // One byte more and the valid member ends past the limit: not read.
        let past_limit = format!("{},a=1", filler(READ_LIMIT - 3));
        assert_eq!(trimmed(past_limit.as_bytes()), (None, Some(TrimReason::Oversized)));
    }

    #[test]
    fn what_the_scan_passed_on_is_not_trimmed_again_and_anything_else_is() {
        remember("congo=t61rcWkgMzE");
        assert_eq!(trimmed_once("congo=t61rcWkgMzE"), Trimmed::kept("congo=t61rcWkgMzE"));
        assert_eq!(trimmed_once("congo=t61rcWkgMzE,B=1").value(), Some("congo=t61rcWkgMzE"));
        assert_eq!(trimmed_once("congo=t61rcWkgMzE,B=1").reason(), Some(TrimReason::MalformedMember));
    }
}
