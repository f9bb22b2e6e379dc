//! `tracestate`: vendor data that travels with the `traceparent`, trimmed member by member, never at the
//! cost of the trace.

use std::borrow::Cow;
use std::cell::RefCell;

use opentelemetry::trace::TraceState;

use super::{TrimReason, Trimmed};

/// What this thread's last messages said in `tracestate`, so repeats are not checked and parsed again.
/// Consecutive messages of a producer usually carry the same vendor data. A value that changes with every message
/// gains nothing: it is checked, copied here and parsed in full (BENCHMARKS.md, the `-varied` rows). Buffers are
/// reused: no allocation per message.
struct Recent {
    /// The last value the header scan passed on, already trimmed. The propagator reads the same value right
    /// after, through OpenTelemetry's `Extractor`, which cannot say it was checked. It is also the scan's memo:
    /// a value passed on is one trimming keeps whole, so the same bytes on the next message need no check and no
    /// copy besides this one.
    passed_on: String,
    /// Whether `passed_on` is also what the scan passed on before it: worth keeping its parse.
    repeated: bool,
    /// What OpenTelemetry made of `passed_on`, once it repeated ([`held`]'s answer, all of it or the members it
    /// holds): a clone costs a fraction of the parse, which checks every key and value again.
    parsed: Option<Result<TraceState, TraceState>>,
}

thread_local! {
    static RECENT: RefCell<Recent> =
        const { RefCell::new(Recent { passed_on: String::new(), repeated: false, parsed: None }) };
}

/// [`trim_tracestate`] for the header scan, answered by one comparison when `value` is the one this thread last
/// passed on; what it passes on is remembered ([`remember`]).
pub(super) fn trim_remembering(value: &[u8]) -> Trimmed<'_> {
    let repeated = RECENT.with_borrow_mut(|recent| {
        recent.repeated = recent.passed_on.as_bytes() == value;
        recent.repeated
    });
    if repeated {
        // What was passed on is a list of valid members within the limits, joined by commas (trimmed whole, or
        // rebuilt from the members kept): trimming keeps it whole. Its bytes are ASCII, so this cannot fail.
        if let Ok(value) = std::str::from_utf8(value) {
            return Trimmed::kept(value);
        }
    }
    let trimmed = trim_tracestate(value);
    match &trimmed.value {
        // Kept whole: these bytes, which were just found not to be the value passed on before.
        Some(Cow::Borrowed(whole)) => RECENT.with_borrow_mut(|recent| recent.pass_on(whole)),
        Some(Cow::Owned(rebuilt)) => remember(rebuilt),
        None => {}
    }
    trimmed
}

impl Recent {
    /// `value` is what the scan passes on now, and not what it passed on before.
    fn pass_on(&mut self, value: &str) {
        self.passed_on.clear();
        self.passed_on.push_str(value);
        self.repeated = false;
        self.parsed = None;
    }
}

/// Keeps the trimmed tracestate the header scan passes on from several headers joined (one header's, the scan's
/// [`trim_remembering`] keeps), so the propagator neither trims nor (when it repeats) parses it again.
pub(super) fn remember(value: &str) {
    RECENT.with_borrow_mut(|recent| {
        recent.repeated = recent.passed_on == value;
        if !recent.repeated {
            recent.pass_on(value);
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

/// OpenTelemetry's `TraceState` of a `tracestate` [`trim_tracestate`] passed on: `Ok` with all of it (the
/// parse kept for the value the scan passed on, when it repeated), or `Err` with the members `TraceState` can
/// hold when some key is one it refuses ([`opentelemetry_holds_key`]).
pub(super) fn held(trimmed: &str) -> Result<TraceState, TraceState> {
    RECENT.with_borrow_mut(|recent| {
        let repeated = recent.repeated && recent.passed_on == trimmed;
        if let (true, Some(parsed)) = (repeated, &recent.parsed) {
            return parsed.clone();
        }
        // Built from the members already found valid: no intermediate list of owned pairs, as `from_str` makes.
        // It refuses no value tracehop passes on, and only a few keys with an `@` (Level 2's): then, and only
        // then, it is built again without them. Looking for those keys first would cost every list a pass.
        let parsed = TraceState::from_key_value(entries(trimmed)).map_err(|_| {
            let held = entries(trimmed).filter(|(key, _)| opentelemetry_holds_key(key));
            TraceState::from_key_value(held).unwrap_or_default()
        });
        if repeated {
            recent.parsed = Some(parsed.clone());
        }
        parsed
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
/// them. A longer header is not read.
const READ_LIMIT: usize = MAX_TRACESTATE_MEMBERS * (MAX_KEY_LEN + 1 + MAX_VALUE_LEN) + MAX_TRACESTATE_MEMBERS - 1;

/// Reads a `tracestate` value as W3C Trace Context Level 2 says, and trims it to what a vendor propagates:
///
/// - a list that cannot be parsed is discarded whole, and the `traceparent` still continues: a member that
///   breaks the syntax (key or value characters, lengths, no `=`, bytes that are not UTF-8:
///   [`TrimReason::MalformedMember`]), more than 32 members ([`TrimReason::TooManyMembers`]), or a header longer
///   than any valid one, 16,447 bytes ([`TrimReason::Oversized`]); empty and white-space-only members are
///   allowed and skipped;
/// - when the members are longer than [`MAX_TRACESTATE_LEN`] joined, members over 128 characters are dropped
///   first, from the end, then members from the end, until they fit ([`TrimReason::Oversized`]).
///
/// Keys follow Level 2's grammar, which admits every Level 1 key: a lower-case letter or digit, then up to 255
/// of `a-z 0-9 _ - * / @` (so `tenant@system` with a system id of up to 14 characters, and `foo@`,
/// `foo@@bar`). Values: up to 256 printable ASCII characters but `,` and `=`, not ending in a space. A header
/// that passes whole is returned as it is, without a copy.
///
/// ```
/// use tracehop::{trim_tracestate, TrimReason};
///
/// let whole = trim_tracestate(b"congo=t61rcWkgMzE,tenant@vvvvvvvvvvvvvv=1");
/// assert_eq!((whole.value(), whole.reason()), (Some("congo=t61rcWkgMzE,tenant@vvvvvvvvvvvvvv=1"), None));
///
/// let discarded = trim_tracestate(b"congo=t61rcWkgMzE,Bad Key=1,rojo=00f067aa0ba902b7");
/// assert_eq!((discarded.value(), discarded.reason()), (None, Some(TrimReason::MalformedMember)));
/// ```
pub fn trim_tracestate(value: &[u8]) -> Trimmed<'_> {
    if value.len() > READ_LIMIT {
        return Trimmed::dropped(TrimReason::Oversized);
    }
    let mut members = 0;
    // The length of the members joined with commas, plus one.
    let mut joined_len = 0;
    let mut rest = value;
    loop {
        // Empty and white-space-only members go with the separators around them.
        let start = rest.iter().position(|&byte| !matches!(byte, b' ' | b'\t' | b',')).unwrap_or(rest.len());
        rest = &rest[start..];
        if rest.is_empty() {
            break;
        }
        members += 1;
        if members > MAX_TRACESTATE_MEMBERS {
            return Trimmed::dropped(TrimReason::TooManyMembers);
        }
        let Some(member) = valid_member(rest) else { return Trimmed::dropped(TrimReason::MalformedMember) };
        joined_len += member.len + 1;
        rest = &rest[member.read..];
    }
    // Only ASCII bytes have a class, so this cannot fail; it is the one UTF-8 pass.
    let Ok(value) = std::str::from_utf8(value) else { return Trimmed::dropped(TrimReason::MalformedMember) };
    if joined_len <= MAX_TRACESTATE_LEN + 1 {
        return Trimmed::kept(value);
    }
    let mut kept: Vec<&str> = text_members(value).collect();
    let mut joined_len = joined_len - 1;
    while joined_len > MAX_TRACESTATE_LEN {
        let drop_at = kept.iter().rposition(|member| member.len() > LONG_MEMBER_LEN).unwrap_or(kept.len() - 1);
        let dropped = kept.remove(drop_at);
        joined_len = joined_len.saturating_sub(dropped.len() + 1);
    }
    Trimmed::rebuilt(kept.join(","), TrimReason::Oversized)
}

/// What a byte may be in a list member, as bits ([`KEY_FIRST`], [`KEY_OTHER`], [`VALUE`]): one load per byte
/// instead of a chain of range tests. A byte that is not ASCII has no class.
static CLASSES: [u8; 256] = {
    let mut classes = [0; 256];
    let mut index = 0;
    while index < classes.len() {
        let byte = index as u8;
        let alphanumeric = byte.is_ascii_lowercase() || byte.is_ascii_digit();
        if alphanumeric {
            classes[index] |= KEY_FIRST;
        }
        if alphanumeric || matches!(byte, b'_' | b'-' | b'*' | b'/' | b'@') {
            classes[index] |= KEY_OTHER;
        }
        if matches!(byte, 0x20..=0x7e) && byte != b',' && byte != b'=' {
            classes[index] |= VALUE;
        }
        index += 1;
    }
    classes
};

/// A key's first character. Keys follow Level 2's `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`, `keychar =
/// lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`: every Level 1 key (`simple-key`, and `tenant-id "@"
/// system-id` with a system id of 1 to 14 characters) is one.
const KEY_FIRST: u8 = 1;
/// A key's `keychar`, after its first character.
const KEY_OTHER: u8 = 2;
/// A value's characters: printable ASCII but `,` and `=`. A value also does not end in a space.
const VALUE: u8 = 4;

fn has_class(byte: u8, class: u8) -> bool {
    CLASSES[usize::from(byte)] & class != 0
}

/// A valid list member at the start of a `tracestate`'s remaining bytes.
struct Member {
    /// Its length: `key=value`, without the white space around it.
    len: usize,
    /// The bytes it takes with the white space after it and its comma, if one follows.
    read: usize,
}

/// The `key=value` member `list` starts with (its first byte is the key's), when it is valid: its key and value
/// checked in one pass, one table load per byte.
fn valid_member(list: &[u8]) -> Option<Member> {
    let (&first, after_first) = list.split_first()?;
    if !has_class(first, KEY_FIRST) {
        return None;
    }
    let key_len = 1 + after_first.iter().position(|&byte| !has_class(byte, KEY_OTHER)).unwrap_or(after_first.len());
    if key_len > MAX_KEY_LEN || list.get(key_len) != Some(&b'=') {
        return None;
    }
    let value = &list[key_len + 1..];
    // Spaces at the end of the value's characters are the white space after the member.
    let run = value.iter().position(|&byte| !has_class(byte, VALUE)).unwrap_or(value.len());
    let value_len = value[..run].iter().rposition(|&byte| byte != b' ').map_or(0, |last| last + 1);
    if value_len == 0 || value_len > MAX_VALUE_LEN {
        return None;
    }
    let after = &value[run..];
    let white_space = after.iter().position(|&byte| !matches!(byte, b' ' | b'\t')).unwrap_or(after.len());
    let comma = match after.get(white_space) {
        None => 0,
        Some(b',') => 1,
        Some(_) => return None,
    };
    Some(Member { len: key_len + 1 + value_len, read: key_len + 1 + run + white_space + comma })
}

/// Whether OpenTelemetry's `TraceState` accepts a key that [`trim_tracestate`] accepts. It holds Level 1 keys, and
/// of those not a system id of 14 characters (it allows 13); of Level 2's, none with a second `@`. A key it
/// refuses makes its parser drop the whole header, so tracehop carries such keys itself
/// ([`super::traceparent`]'s `WireOnly`).
pub(super) fn opentelemetry_holds_key(key: &str) -> bool {
    match key.split_once('@') {
        None => true,
        Some((_, system)) => {
            system.len() <= 13
                && !system.contains('@')
                && system.bytes().next().is_none_or(|first| first.is_ascii_lowercase() || first.is_ascii_digit())
        }
    }
}

/// [`list_members`] of a `tracestate` that is text.
fn text_members(value: &str) -> impl Iterator<Item = &str> {
    // Byte by byte: a valid list is ASCII, and its members are a few bytes long, too short for `memchr` to pay.
    let mut rest = Some(value);
    std::iter::from_fn(move || loop {
        let list = rest?;
        let (member, after) = match list.bytes().position(|byte| byte == b',') {
            Some(comma) => (&list[..comma], Some(&list[comma + 1..])),
            None => (list, None),
        };
        rest = after;
        let member = trim_ows_text(member);
        if !member.is_empty() {
            return Some(member);
        }
    })
}

/// [`trim_ows`] of text.
fn trim_ows_text(text: &str) -> &str {
    let start = text.bytes().position(|byte| !matches!(byte, b' ' | b'\t')).unwrap_or(text.len());
    let end = text.bytes().rposition(|byte| !matches!(byte, b' ' | b'\t')).map_or(start, |last| last + 1);
    &text[start..end]
}

/// A valid `tracestate` as OpenTelemetry writes one: its members joined by commas, without white space.
pub(super) fn without_white_space(value: &str) -> String {
    let ows = |byte: u8| matches!(byte, b' ' | b'\t');
    let bytes = value.as_bytes();
    let at_an_end = |byte: Option<&u8>| byte.is_some_and(|&byte| byte == b',' || ows(byte));
    let beside_a_comma = bytes.windows(2).any(|pair| match pair {
        [b',', next] => *next == b',' || ows(*next),
        [before, b','] => ows(*before),
        _ => false,
    });
    if !(at_an_end(bytes.first()) || at_an_end(bytes.last()) || beside_a_comma) {
        // Nothing but the members and the commas between them.
        return value.to_owned();
    }
    text_members(value).collect::<Vec<_>>().join(",")
}

/// The members of a valid `tracestate` (one [`trim_tracestate`] passed on) as `(key, value)`, read in one pass:
/// each key up to its `=`, each value up to the comma, without the white space after it.
pub(super) fn entries(value: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = value;
    std::iter::from_fn(move || {
        let start = rest.bytes().position(|byte| !matches!(byte, b' ' | b'\t' | b','))?;
        let member = &rest[start..];
        let separator = member.bytes().position(|byte| byte == b'=')?;
        let (key, after) = (&member[..separator], &member[separator + 1..]);
        let end = after.bytes().position(|byte| byte == b',').unwrap_or(after.len());
        rest = &after[end..];
        // A value may start with a space, but it does not end in one.
        let value = &after[..end];
        let value_len = value.bytes().rposition(|byte| !matches!(byte, b' ' | b'\t')).map_or(0, |last| last + 1);
        Some((key, &value[..value_len]))
    })
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
            assert_eq!(header(&held(value).unwrap()), value);
            assert_eq!(RECENT.with_borrow(|recent| recent.parsed.is_some()), repeated, "kept only once repeated");
        }
        // A value the scan did not pass on is parsed afresh, never answered with the kept one.
        assert_eq!(header(&held("c=3").unwrap()), "c=3");
        assert_eq!(trimmed_once("c=3").value(), Some("c=3"));
    }

    #[test]
    fn the_header_scans_memo_answers_only_for_the_value_passed_on_last() {
        // A value the scan would refuse, remembered only to tell the memo's answers from trimming's.
        remember("B=1");
        assert_eq!(trim_remembering(b"B=1"), Trimmed::kept("B=1"), "the value passed on last: the memo's answer");
        assert_eq!(trim_remembering(b"B=2").reason(), Some(TrimReason::MalformedMember), "any other: trimmed");
        remember("a=1");
        assert_eq!(trim_remembering(b"B=1").reason(), Some(TrimReason::MalformedMember), "only the last one");
        assert_eq!(trim_remembering(b"a=1"), Trimmed::kept("a=1"));
        // What it passes on, it remembers, and says when that repeats.
        let passed_on = || RECENT.with_borrow(|recent| (recent.passed_on.clone(), recent.repeated));
        assert_eq!(passed_on(), ("a=1".to_owned(), true));
        assert_eq!(trim_remembering(b"c=3"), Trimmed::kept("c=3"));
        assert_eq!(passed_on(), ("c=3".to_owned(), false));
        assert_eq!(trim_remembering(b"c=3"), Trimmed::kept("c=3"));
        assert_eq!(passed_on(), ("c=3".to_owned(), true));
        let oversized = format!("{}v", tracestate(27, 18));
        for repeated in [false, true] {
            let trimmed = trim_remembering(oversized.as_bytes());
            assert_eq!(passed_on(), (trimmed.value().unwrap().to_owned(), repeated), "the members kept, rebuilt");
        }
    }

    #[test]
    fn what_the_scan_passes_on_trims_to_itself_so_the_memo_answers_as_trimming_would() {
        let oversized = format!(" {}v ,\t", tracestate(27, 18));
        for header in [oversized.as_str(), " a=1 ,\t,b=2\t", "a=1,b=2"] {
            let first = trim_remembering(header.as_bytes());
            let passed_on = first.value().expect("members kept").to_owned();
            remember(&passed_on);
            // The header itself, when it is not what was passed on, is trimmed again.
            assert_eq!(trim_remembering(header.as_bytes()), first, "{header:?}");
            assert_eq!(trim_tracestate(passed_on.as_bytes()), Trimmed::kept(&passed_on), "{header:?}");
            assert_eq!(trim_remembering(passed_on.as_bytes()), Trimmed::kept(&passed_on), "{header:?}");
        }
    }

    #[test]
    fn every_byte_is_in_exactly_the_classes_the_grammar_gives_it() {
        for byte in 0..=u8::MAX {
            let key_first = matches!(byte, b'a'..=b'z' | b'0'..=b'9');
            let key_other = matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@');
            let value = matches!(byte, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
            let classes = (has_class(byte, KEY_FIRST), has_class(byte, KEY_OTHER), has_class(byte, VALUE));
            assert_eq!(classes, (key_first, key_other, value), "byte {byte:#04x}");
            // And as a list reads it, in each place of a member.
            let whole = |member: &[u8]| trim_tracestate(member).reason().is_none();
            assert_eq!(whole(&[byte, b'=', b'1']), key_first, "{byte:#04x} first in a key");
            assert_eq!(whole(&[b'k', byte, b'=', b'1']), key_other, "{byte:#04x} in a key");
            assert_eq!(whole(&[b'k', b'=', byte]), value && byte != b' ', "{byte:#04x} a whole value");
            // A tab or comma after a value is white space or a separator, not part of it.
            assert_eq!(
                whole(&[b'k', b'=', b'1', byte]),
                value || matches!(byte, b'\t' | b','),
                "{byte:#04x} ending a value"
            );
        }
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
    fn a_list_of_more_than_32_members_is_discarded_whole() {
        assert_eq!(trimmed(tracestate(33, 5).as_bytes()), (None, Some(TrimReason::TooManyMembers)));
        // Empty and white-space-only members are allowed, and are not members that count.
        let padded = format!("{}, ,\t,,", tracestate(32, 5));
        assert_eq!(trimmed(padded.as_bytes()), (Some(padded.clone()), None));
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
    fn a_list_with_a_malformed_member_is_discarded_whole() {
        for header in [
            &b"a=1,B=2,c=3"[..],
            b"a=1,b,c=3",
            b"foo=,bar=3",
            b"a=1,b=x\xff,c=3",
            b"a=1,b=x=y,c=3",
            b"@foo=1,bar=2",
            b"a=1,_b=2",
            b"foo =1",
            b"foo.bar=1",
            b"a=1,b=ends in a space \x01",
            b"B=1",
        ] {
            assert_eq!(trimmed(header), (None, Some(TrimReason::MalformedMember)), "{header:?}");
        }
        let long_key = format!("foo=1,{}=1", "z".repeat(257));
        assert_eq!(trimmed(long_key.as_bytes()), (None, Some(TrimReason::MalformedMember)));
        let long_value = format!("foo=1,k={}", "v".repeat(257));
        assert_eq!(trimmed(long_value.as_bytes()), (None, Some(TrimReason::MalformedMember)));
    }

    #[test]
    fn level_2_keys_are_kept_with_every_level_1_key() {
        for header in [
            "foo@=1,bar=2",
            "foo@@bar=1,bar=2",
            "foo@bar@baz=1,bar=2",
            "tenant@vvvvvvvvvvvvvv=1",
            "0tenant@_system=1",
            "1digit-first=1",
        ] {
            assert_eq!(trimmed(header.as_bytes()), (Some(header.to_owned()), None), "{header}");
        }
        let longest = format!("t@{}", "v".repeat(254));
        assert_eq!(longest.len(), 256);
        let header = format!("{longest}=1");
        assert_eq!(trimmed(header.as_bytes()), (Some(header.clone()), None));
    }

    #[test]
    fn opentelemetry_holds_the_keys_its_parser_accepts_and_no_other() {
        let keys = [
            "foo",
            "t@abcdefghijklm",
            "t@abcdefghijklmn",
            "foo@",
            "foo@@bar",
            "foo@bar@baz",
            "0tenant@_system",
            "tenant@0sys",
            "a*b/c-d_e",
        ];
        for key in keys {
            let member = format!("{key}=1");
            assert_eq!(trimmed(member.as_bytes()), (Some(member.clone()), None), "{key}");
            let opentelemetry_accepts = TraceState::from_key_value([(key, "1")]).is_ok();
            assert_eq!(opentelemetry_holds_key(key), opentelemetry_accepts, "{key}");
        }
        assert!(!opentelemetry_holds_key("t@abcdefghijklmn"), "the 14-character system id it refuses");
    }

    #[test]
    fn entries_are_the_members_keys_and_values_without_the_white_space_around_them() {
        fn entries_of(value: &str) -> Vec<(&str, &str)> {
            entries(value).collect()
        }
        assert_eq!(entries_of("a=1,b@@c=2"), vec![("a", "1"), ("b@@c", "2")]);
        assert_eq!(entries_of(" \t a=1 \t, ,,b= x y \t,"), vec![("a", "1"), ("b", " x y")]);
        assert_eq!(entries_of("k=1"), vec![("k", "1")]);
        assert_eq!(entries_of(""), vec![]);
        assert_eq!(entries_of(" ,\t,"), vec![]);
    }

    #[test]
    fn opentelemetry_holds_every_value_tracehop_passes_on() {
        // So only a key can make it refuse a list ([`held`]).
        for byte in (0..=u8::MAX).filter(|&byte| has_class(byte, VALUE)) {
            let value = format!("a{}b", char::from(byte));
            assert_eq!(trimmed(format!("k={value}").as_bytes()).1, None, "{value:?}");
            assert!(TraceState::from_key_value([("k", value.as_str())]).is_ok(), "{value:?}");
        }
        assert!(TraceState::from_key_value([("k", "v".repeat(MAX_VALUE_LEN))]).is_ok());
    }

    #[test]
    fn a_list_is_written_without_white_space_or_empty_members() {
        for (value, written) in [
            ("a=1,b@@c=2", "a=1,b@@c=2"),
            ("k=a value with spaces", "k=a value with spaces"),
            (" a=1 ,\tb@@c=2", "a=1,b@@c=2"),
            ("a=1,,b=2,", "a=1,b=2"),
            ("", ""),
            // White space or an empty member in one place only, each place once.
            (" a=1", "a=1"),
            ("a=1\t", "a=1"),
            (",a=1", "a=1"),
            ("a=1,", "a=1"),
            ("a=1, b=2", "a=1,b=2"),
            ("a=1 ,b=2", "a=1,b=2"),
            ("a=1\t,b=2", "a=1,b=2"),
            ("a=1,,b=2", "a=1,b=2"),
            (",a=1,", "a=1"),
        ] {
            assert_eq!(without_white_space(value), written, "{value:?}");
        }
    }

    #[test]
    fn only_members_opentelemetry_refuses_are_left_out_of_its_trace_state() {
        let header = "congo=1,foo@@bar=2,rojo=3,tenant@vvvvvvvvvvvvvv=4";
        let held_only = held(header).expect_err("two keys OpenTelemetry refuses");
        assert_eq!(held_only.header(), "congo=1,rojo=3");
        assert_eq!(held("congo=1,mail@x=2").map(|state| state.header()), Ok("congo=1,mail@x=2".to_owned()));
    }

    #[test]
    fn a_repeated_list_with_keys_opentelemetry_refuses_is_answered_with_the_members_it_holds() {
        let header = "congo=1,tenant@vvvvvvvvvvvvvv=4";
        for repeated in [false, true, true] {
            remember(header);
            assert_eq!(RECENT.with_borrow(|recent| recent.repeated), repeated);
            assert_eq!(held(header).map_err(|held| held.header()), Err("congo=1".to_owned()));
            assert_eq!(RECENT.with_borrow(|recent| recent.parsed.is_some()), repeated, "kept only once repeated");
        }
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
    fn a_header_longer_than_any_valid_one_is_not_read() {
        let huge = format!("a=1,{}", "x".repeat(1 << 20));
        assert_eq!(trimmed(huge.as_bytes()), (None, Some(TrimReason::Oversized)));
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
    fn the_read_limit_is_exactly_the_longest_valid_header() {
        assert_eq!(READ_LIMIT, 16_447);
        let longest = |i: usize| format!("k{i:02}{}={}", "k".repeat(253), "v".repeat(256));
        let members = (0..31).map(longest).collect::<Vec<_>>().join(",");
        // White space around a member is allowed, however long.
        let at_limit = format!("a=1,{}{members}", " ".repeat(READ_LIMIT - 4 - members.len()));
        assert_eq!(at_limit.len(), READ_LIMIT);
        // Valid, and oversized: its long members go first, from the end.
        assert_eq!(trimmed(at_limit.as_bytes()), (Some("a=1".to_owned()), Some(TrimReason::Oversized)));
        let past_limit = format!("{at_limit} ");
        assert_eq!(trimmed(past_limit.as_bytes()), (None, Some(TrimReason::Oversized)));
    }

    #[test]
    fn what_the_scan_passed_on_is_not_trimmed_again_and_anything_else_is() {
        remember("congo=t61rcWkgMzE");
        assert_eq!(trimmed_once("congo=t61rcWkgMzE"), Trimmed::kept("congo=t61rcWkgMzE"));
        assert_eq!(trimmed_once("congo=t61rcWkgMzE,B=1").value(), None);
        assert_eq!(trimmed_once("congo=t61rcWkgMzE,B=1").reason(), Some(TrimReason::MalformedMember));
    }
}
