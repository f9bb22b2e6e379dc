//! W3C Trace Context, Level 1 and Level 2, on every carrier: every case is a real message through a broker (a
//! Kafka record with rdkafka headers, an AMQP message through RabbitMQ with its headers as long strings, a NATS
//! message with its multi-valued headers), handled
//! by a `#[traced_consumer]` that forwards it with each of tracehop's writers: a `#[traced_producer]`,
//! `tracehop::inject_creation_context` inside one, and the traced client (`TracedFutureProducer`,
//! `TracedChannel`, `TracedClient`). What the case expects is checked on all three forwarded messages, as the next hop reads them,
//! and on the consumer span.
//!
//! The cases mirror the official test suite (`test/test.py` of w3c/trace-context): its trace id
//! `12345678901234567890123456789012` and parent id `1234567890123456`, its headers, and its verdicts, except where
//! a message header is not an HTTP field: a Kafka or AMQP header name is matched exactly (`TraceParent` is another
//! header). Spaces and tabs around a value are dropped, as an HTTP parser drops them. Several headers of one name
//! exist on Kafka and NATS (a NATS header's several values): those cases do not run on RabbitMQ.
//!
//! Each table goes out as one batch of messages on one topic or queue, is handled in order, and the forwarded
//! messages are read back from a second one. `tracehop::set_random_trace_ids` is process-wide: a message is
//! handled with it on only while no other test of this file handles one ([`RANDOM_TRACE_IDS`]).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use suite::{attribute, Broker};
use tokio::sync::{RwLock, RwLockWriteGuard};
use tracehop::clients::kafka::TracedFutureProducer;
use tracehop::clients::nats::TracedClient;
use tracehop::clients::rabbitmq::TracedChannel;

/// The trace id and parent id of the W3C test suite's headers.
const TRACE_ID: &str = "12345678901234567890123456789012";
const PARENT_ID: &str = "1234567890123456";
/// Its valid `traceparent`s, sampled and not.
const SAMPLED: &str = "00-12345678901234567890123456789012-1234567890123456-01";
const NOT_SAMPLED: &str = "00-12345678901234567890123456789012-1234567890123456-00";

/// The ways tracehop writes a `traceparent`, each forwarding every handled message once: `#[traced_producer]`,
/// `tracehop::inject_creation_context` inside a `#[traced_producer]`, and the traced client.
const WRITERS: [&str; 3] = ["producer", "creation", "client"];

const TIMEOUT: Duration = Duration::from_secs(10);

// ---- The cases ----

/// What the next hop and the consumer span must show for one case.
#[derive(Debug)]
enum Expect {
    /// The incoming trace continues: every forwarded `traceparent` is version `00`, of `trace_id`, with a new
    /// parent id and `flags`; every forwarded `tracestate` is `tracestate` (none when `None`). A sampled consumer
    /// span is a child of `parent_id` and records `trimmed` as `tracehop.context.tracestate.trimmed`.
    Continued {
        trace_id: &'static str,
        parent_id: &'static str,
        flags: &'static str,
        tracestate: Option<String>,
        trimmed: Option<&'static str>,
    },
    /// A new trace: its id appears in no incoming header, every forwarded `traceparent` carries `flags` and no
    /// `tracestate` goes with it; the consumer span is a root recording `rejected` as `tracehop.context.rejected`.
    Restarted { rejected: &'static str, flags: &'static str },
}

/// The trace of `trace_id` continues from `parent_id` with `flags` on the way out, and no `tracestate`.
fn continued(trace_id: &'static str, parent_id: &'static str, flags: &'static str) -> Expect {
    Expect::Continued { trace_id, parent_id, flags, tracestate: None, trimmed: None }
}

/// The message's context is not continued, for the reason `rejected`; the new trace goes out with `flags`.
fn restarted(rejected: &'static str, flags: &'static str) -> Expect {
    Expect::Restarted { rejected, flags }
}

impl Expect {
    /// The same, forwarding `tracestate`.
    fn forwarding(self, forwarded: impl Into<String>) -> Self {
        match self {
            Self::Continued { trace_id, parent_id, flags, trimmed, .. } => {
                Self::Continued { trace_id, parent_id, flags, tracestate: Some(forwarded.into()), trimmed }
            }
            Self::Restarted { .. } => panic!("a restarted trace forwards no tracestate"),
        }
    }

    /// The same, the incoming `tracestate` trimmed for the reason `code`.
    fn trimmed(self, code: &'static str) -> Self {
        match self {
            Self::Continued { trace_id, parent_id, flags, tracestate, .. } => {
                Self::Continued { trace_id, parent_id, flags, tracestate, trimmed: Some(code) }
            }
            Self::Restarted { .. } => panic!("a restarted trace reads no tracestate"),
        }
    }

    fn flags(&self) -> &'static str {
        match self {
            Self::Continued { flags, .. } | Self::Restarted { flags, .. } => flags,
        }
    }
}

struct Case {
    /// Also the message's id on the broker (Kafka key, AMQP `message_id`), which matches it and what it was
    /// forwarded as to the case.
    name: &'static str,
    /// Exactly the headers the message carries, in order.
    headers: Vec<(&'static str, String)>,
    /// `tracehop::set_random_trace_ids` while the message is handled.
    random_trace_ids: bool,
    expect: Expect,
}

/// A valid sampled `traceparent` with white space around it, and a `tracestate`: continued, both forwarded.
fn white_space_around(name: &'static str, traceparent: &str) -> Case {
    case(
        name,
        &[("traceparent", traceparent), ("tracestate", "foo=1")],
        continued(TRACE_ID, PARENT_ID, "01").forwarding("foo=1"),
    )
}

fn case(name: &'static str, headers: &[(&'static str, &str)], expect: Expect) -> Case {
    let headers = headers.iter().map(|(header, value)| (*header, (*value).to_owned())).collect();
    Case { name, headers, random_trace_ids: false, expect }
}

impl Case {
    /// The same, handled with `tracehop::set_random_trace_ids(true)`.
    fn with_random_trace_ids(self) -> Self {
        Self { random_trace_ids: true, ..self }
    }

    /// Whether a header name appears more than once: a message only Kafka can carry.
    fn repeats_a_header_name(&self) -> bool {
        self.headers.iter().enumerate().any(|(i, (name, _))| self.headers[..i].iter().any(|(other, _)| other == name))
    }
}

/// `members` valid members of `member_len` characters each (`k00=vvv...`), comma-separated.
fn members(members: usize, member_len: usize) -> String {
    (0..members).map(|i| format!("k{i:02}={}", "v".repeat(member_len - 4))).collect::<Vec<_>>().join(",")
}

/// `bar01=01,...`: members `from` to `to` of the W3C test suite's member-count lists.
fn bars(from: usize, to: usize) -> String {
    (from..=to).map(|i| format!("bar{i:02}={i:02}")).collect::<Vec<_>>().join(",")
}

/// Every `traceparent` rule of Level 1: which headers are continued, and why the others restart the trace (and
/// leave their `tracestate` unread).
fn traceparent_cases() -> Vec<Case> {
    // Every restarted case also carries a valid tracestate, which must not go on.
    let restarted_with_tracestate = |name, traceparent: &str, rejected| {
        case(name, &[("traceparent", traceparent), ("tracestate", "foo=1")], restarted(rejected, "01"))
    };
    vec![
        // Valid: continued, with a new parent id and version 00 on the way out.
        case("version-00", &[("traceparent", SAMPLED)], continued(TRACE_ID, PARENT_ID, "01")),
        case("version-00-not-sampled", &[("traceparent", NOT_SAMPLED)], continued(TRACE_ID, PARENT_ID, "00")),
        case(
            "version-00-with-tracestate",
            &[("traceparent", NOT_SAMPLED), ("tracestate", "foo=1,bar=2")],
            continued(TRACE_ID, PARENT_ID, "00").forwarding("foo=1,bar=2"),
        ),
        case(
            "version-cc",
            &[("traceparent", "cc-12345678901234567890123456789012-1234567890123456-01")],
            continued(TRACE_ID, PARENT_ID, "01"),
        ),
        case(
            "version-cc-future-fields",
            &[("traceparent", "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like")],
            continued(TRACE_ID, PARENT_ID, "01"),
        ),
        case(
            "version-fe-future-fields",
            &[("traceparent", "fe-12345678901234567890123456789012-1234567890123456-01-x")],
            continued(TRACE_ID, PARENT_ID, "01"),
        ),
        // Versions.
        restarted_with_tracestate(
            "version-00-trailing-dot",
            "00-12345678901234567890123456789012-1234567890123456-01.",
            "traceparent_trailing_data",
        ),
        restarted_with_tracestate(
            "version-00-future-fields",
            "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            "traceparent_trailing_data",
        ),
        restarted_with_tracestate(
            "version-cc-no-dash-after-flags",
            "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
            "traceparent_trailing_data",
        ),
        restarted_with_tracestate(
            "version-ff",
            "ff-12345678901234567890123456789012-1234567890123456-01",
            "traceparent_invalid_version",
        ),
        restarted_with_tracestate(
            "version-illegal-first-character",
            ".0-12345678901234567890123456789012-1234567890123456-01",
            "traceparent_invalid_hex",
        ),
        restarted_with_tracestate(
            "version-illegal-second-character",
            "0.-12345678901234567890123456789012-1234567890123456-01",
            "traceparent_invalid_hex",
        ),
        restarted_with_tracestate(
            "version-upper-case",
            "CC-12345678901234567890123456789012-1234567890123456-01",
            "traceparent_uppercase_hex",
        ),
        restarted_with_tracestate(
            "version-3-digits",
            "000-12345678901234567890123456789012-1234567890123456-01",
            "traceparent_wrong_length",
        ),
        restarted_with_tracestate(
            "version-4-digits",
            "0000-12345678901234567890123456789012-1234567890123456-01",
            "traceparent_wrong_length",
        ),
        restarted_with_tracestate(
            "version-1-digit",
            "0-12345678901234567890123456789012-1234567890123456-01",
            "traceparent_wrong_length",
        ),
        // Trace ids.
        restarted_with_tracestate(
            "trace-id-zero",
            "00-00000000000000000000000000000000-1234567890123456-01",
            "traceparent_zero_trace_id",
        ),
        restarted_with_tracestate(
            "trace-id-illegal-first-character",
            "00-.2345678901234567890123456789012-1234567890123456-01",
            "traceparent_invalid_hex",
        ),
        restarted_with_tracestate(
            "trace-id-illegal-last-character",
            "00-1234567890123456789012345678901.-1234567890123456-01",
            "traceparent_invalid_hex",
        ),
        restarted_with_tracestate(
            "trace-id-upper-case",
            "00-ABCDEF78901234567890123456789012-1234567890123456-01",
            "traceparent_uppercase_hex",
        ),
        restarted_with_tracestate(
            "trace-id-33-digits",
            "00-123456789012345678901234567890123-1234567890123456-01",
            "traceparent_wrong_length",
        ),
        restarted_with_tracestate(
            "trace-id-31-digits",
            "00-1234567890123456789012345678901-1234567890123456-01",
            "traceparent_wrong_length",
        ),
        // Parent ids.
        restarted_with_tracestate(
            "parent-id-zero",
            "00-12345678901234567890123456789012-0000000000000000-01",
            "traceparent_zero_span_id",
        ),
        restarted_with_tracestate(
            "parent-id-illegal-first-character",
            "00-12345678901234567890123456789012-.234567890123456-01",
            "traceparent_invalid_hex",
        ),
        restarted_with_tracestate(
            "parent-id-illegal-last-character",
            "00-12345678901234567890123456789012-123456789012345.-01",
            "traceparent_invalid_hex",
        ),
        restarted_with_tracestate(
            "parent-id-upper-case",
            "00-12345678901234567890123456789012-ABCDEF7890123456-01",
            "traceparent_uppercase_hex",
        ),
        restarted_with_tracestate(
            "parent-id-17-digits",
            "00-12345678901234567890123456789012-12345678901234567-01",
            "traceparent_wrong_length",
        ),
        restarted_with_tracestate(
            "parent-id-15-digits",
            "00-12345678901234567890123456789012-123456789012345-01",
            "traceparent_wrong_length",
        ),
        // Flags.
        restarted_with_tracestate(
            "flags-illegal-first-character",
            "00-12345678901234567890123456789012-1234567890123456-.0",
            "traceparent_invalid_hex",
        ),
        restarted_with_tracestate(
            "flags-illegal-second-character",
            "00-12345678901234567890123456789012-1234567890123456-0.",
            "traceparent_invalid_hex",
        ),
        restarted_with_tracestate(
            "flags-upper-case",
            "00-12345678901234567890123456789012-1234567890123456-0A",
            "traceparent_uppercase_hex",
        ),
        restarted_with_tracestate(
            "flags-3-digits",
            "00-12345678901234567890123456789012-1234567890123456-001",
            "traceparent_trailing_data",
        ),
        restarted_with_tracestate(
            "flags-1-digit",
            "00-12345678901234567890123456789012-1234567890123456-1",
            "traceparent_wrong_length",
        ),
        // White space around the value: not part of it (an HTTP parser strips it; a broker does not, so tracehop
        // does), and the W3C suite expects these continued.
        white_space_around("leading-space", " 00-12345678901234567890123456789012-1234567890123456-01"),
        white_space_around("leading-tab", "\t00-12345678901234567890123456789012-1234567890123456-01"),
        white_space_around("trailing-space", "00-12345678901234567890123456789012-1234567890123456-01 "),
        white_space_around("trailing-tab", "00-12345678901234567890123456789012-1234567890123456-01\t"),
        white_space_around("white-space-around", "\t 00-12345678901234567890123456789012-1234567890123456-01 \t"),
        // White space inside the value is not white space around it.
        restarted_with_tracestate(
            "space-before-the-flags",
            "00-12345678901234567890123456789012-1234567890123456- 01",
            "traceparent_invalid_hex",
        ),
        restarted_with_tracestate("empty", "", "traceparent_wrong_length"),
        // Missing, duplicated, or under another name.
        case("no-headers", &[], restarted("missing", "01")),
        case("tracestate-without-traceparent", &[("tracestate", "foo=1")], restarted("missing", "01")),
        case(
            "duplicated",
            &[
                ("traceparent", "00-12345678901234567890123456789011-1234567890123456-01"),
                ("tracestate", "foo=1"),
                ("traceparent", "00-12345678901234567890123456789012-1234567890123456-01"),
            ],
            restarted("duplicate_traceparent", "01"),
        ),
        case("name-trace-parent", &[("trace-parent", SAMPLED), ("tracestate", "foo=1")], restarted("missing", "01")),
        case("name-trace.parent", &[("trace.parent", SAMPLED), ("tracestate", "foo=1")], restarted("missing", "01")),
        case("name-TraceParent", &[("TraceParent", SAMPLED), ("tracestate", "foo=1")], restarted("missing", "01")),
        case("name-TrAcEpArEnT", &[("TrAcEpArEnT", SAMPLED), ("tracestate", "foo=1")], restarted("missing", "01")),
        case("name-TRACEPARENT", &[("TRACEPARENT", SAMPLED), ("tracestate", "foo=1")], restarted("missing", "01")),
    ]
}

/// Trace-flags: the sampled bit (0x01) and Level 2's random bit (0x02) go on as they came, sampled or not, on
/// every writer; no other bit is ever written.
fn trace_flags_cases() -> Vec<Case> {
    let with_flags = |name, flags: &str, out| {
        let traceparent = format!("00-12345678901234567890123456789012-1234567890123456-{flags}");
        case(name, &[("traceparent", &traceparent)], continued(TRACE_ID, PARENT_ID, out))
    };
    vec![
        with_flags("flags-00", "00", "00"),
        with_flags("flags-01", "01", "01"),
        with_flags("flags-02-random-not-sampled", "02", "02"),
        with_flags("flags-03-random-sampled", "03", "03"),
        with_flags("flags-ff", "ff", "03"),
        with_flags("flags-fe", "fe", "02"),
        with_flags("flags-09", "09", "01"),
        with_flags("flags-04", "04", "00"),
        case(
            "flags-03-future-version",
            &[("traceparent", "cc-12345678901234567890123456789012-1234567890123456-03-what-the-future-will-be-like")],
            continued(TRACE_ID, PARENT_ID, "03"),
        ),
        case(
            "flags-03-with-tracestate",
            &[("traceparent", "00-12345678901234567890123456789012-1234567890123456-03"), ("tracestate", "foo=1")],
            continued(TRACE_ID, PARENT_ID, "03").forwarding("foo=1"),
        ),
        case(
            "flags-02-with-a-key-opentelemetry-refuses",
            &[
                ("traceparent", "00-12345678901234567890123456789012-1234567890123456-02"),
                ("tracestate", "foo@@bar=1,bar=2"),
            ],
            continued(TRACE_ID, PARENT_ID, "02").forwarding("foo@@bar=1,bar=2"),
        ),
    ]
}

/// `tracestate`, by Level 2's grammar and limits: a valid list goes on (keys OpenTelemetry's `TraceState`
/// refuses included), one that cannot be parsed is discarded whole, a long one is truncated member by member;
/// several headers are one list.
fn tracestate_cases() -> Vec<Case> {
    let sampled = || continued(TRACE_ID, PARENT_ID, "01");
    let forwarded = |name, tracestate: &str| {
        case(name, &[("traceparent", SAMPLED), ("tracestate", tracestate)], sampled().forwarding(tracestate))
    };
    let discarded = |name, tracestate: &str, code| {
        case(name, &[("traceparent", SAMPLED), ("tracestate", tracestate)], sampled().trimmed(code))
    };
    let normalized = |name, tracestate: &str, out: &str| {
        case(name, &[("traceparent", SAMPLED), ("tracestate", tracestate)], sampled().forwarding(out))
    };
    // The W3C suite's long keys: 256 characters, 257, and 256 and 245 with a system id of 14 and of 1.
    let z256 = format!("{}=1", "z".repeat(256));
    let z257 = format!("{}=1", "z".repeat(257));
    let system_14 = format!("{}@{}=1", "t".repeat(241), "v".repeat(14));
    let system_1 = format!("{}@v=1", "t".repeat(242));
    let after_foo = |member: &str| format!("foo=1,{member}");
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let value: String = (0x20_u8..=0x7e).filter(|&byte| byte != b',' && byte != b'=').map(char::from).collect();
    let long_members = format!("a=1,big={},b=2,{},c=3", "x".repeat(200), members(20, 18));
    let long_members_from_the_end =
        format!("first={},a=1,second={},{}", "f".repeat(150), "s".repeat(150), members(12, 18));
    vec![
        // Valid lists go on as they came.
        forwarded("two-members", "foo=1,bar=2"),
        forwarded("key-ending-in-an-at-sign", "foo@=1,bar=2"),
        forwarded("key-with-two-at-signs", "foo@@bar=1,bar=2"),
        forwarded("key-with-two-vendors", "foo@bar@baz=1,bar=2"),
        forwarded("system-id-of-14-characters", "tenant@vvvvvvvvvvvvvv=1"),
        forwarded("system-id-of-15-characters", "foo=1,t@vvvvvvvvvvvvvvv=1"),
        forwarded("key-of-256-characters", &after_foo(&z256)),
        forwarded("key-of-256-characters-with-a-system-id-of-14", &after_foo(&system_14)),
        forwarded("key-of-245-characters-with-a-system-id-of-1", &after_foo(&system_1)),
        forwarded("every-allowed-character", &format!("{key}={value}")),
        forwarded("every-allowed-character-with-a-vendor", &format!("{key}@a-z0-9_-*/={value}")),
        forwarded("duplicated-keys-same-value", "foo=1,foo=1"),
        forwarded("duplicated-keys", "foo=1,foo=2"),
        forwarded("32-members", &bars(1, 32)),
        forwarded("512-characters", &members(27, 18)),
        case(
            "two-members-not-sampled",
            &[("traceparent", NOT_SAMPLED), ("tracestate", "foo=1,bar=2")],
            continued(TRACE_ID, PARENT_ID, "00").forwarding("foo=1,bar=2"),
        ),
        case(
            "key-with-two-at-signs-not-sampled",
            &[("traceparent", NOT_SAMPLED), ("tracestate", "foo@@bar=1,bar=2")],
            continued(TRACE_ID, PARENT_ID, "00").forwarding("foo@@bar=1,bar=2"),
        ),
        // White space around members and empty members are ignored.
        normalized("white-space-around-members", "foo=1 \t , \t bar=2, \t baz=3", "foo=1,bar=2,baz=3"),
        normalized("tabs-around-members", "foo=1\t \t,\t \tbar=2,\t \tbaz=3", "foo=1,bar=2,baz=3"),
        normalized("leading-space", " foo=1", "foo=1"),
        normalized("leading-tab", "\tfoo=1", "foo=1"),
        normalized("trailing-space", "foo=1 ", "foo=1"),
        normalized("trailing-tab", "foo=1\t", "foo=1"),
        normalized("white-space-on-both-sides", "\t foo=1 \t", "foo=1"),
        normalized("empty-member", "foo=1,,bar=2", "foo=1,bar=2"),
        normalized("empty-first-member", ",foo=1", "foo=1"),
        normalized("32-members-and-empty-ones", &format!("{}, ,\t,,", bars(1, 32)), &bars(1, 32)),
        // So does a list with a key OpenTelemetry refuses, which tracehop carries beside it.
        normalized("white-space-and-a-key-opentelemetry-refuses", "foo@@bar=1 , bar=2", "foo@@bar=1,bar=2"),
        // An empty list is accepted, and no empty tracestate is written.
        case("empty", &[("traceparent", SAMPLED), ("tracestate", "")], sampled()),
        case("only-empty-members", &[("traceparent", SAMPLED), ("tracestate", " , \t,")], sampled()),
        // A list that cannot be parsed is discarded whole; the trace continues.
        discarded("empty-value", "foo=,bar=3", "malformed_member"),
        discarded("key-starting-with-an-at-sign", "@foo=1,bar=2", "malformed_member"),
        discarded("key-starting-with-an-underscore", "foo=1,_bar=2", "malformed_member"),
        discarded("space-in-the-key", "foo =1", "malformed_member"),
        discarded("upper-case-key", "FOO=1", "malformed_member"),
        discarded("dot-in-the-key", "foo.bar=1", "malformed_member"),
        discarded("equals-sign-in-the-value", "foo=bar=baz", "malformed_member"),
        discarded("no-equals-sign", "foo=1,bar", "malformed_member"),
        discarded("key-of-257-characters", &after_foo(&z257), "malformed_member"),
        discarded("value-of-257-characters", &format!("foo=1,bar={}", "v".repeat(257)), "malformed_member"),
        discarded("tab-in-the-value", "foo=1,bar=a\tb", "malformed_member"),
        discarded("delete-in-the-value", "foo=1,bar=a\u{7f}", "malformed_member"),
        discarded("non-ascii-value", "foo=1,bar=caf\u{e9}", "malformed_member"),
        discarded("33-members", &bars(1, 33), "too_many_members"),
        case(
            "upper-case-key-not-sampled",
            &[("traceparent", NOT_SAMPLED), ("tracestate", "FOO=1")],
            continued(TRACE_ID, PARENT_ID, "00"),
        ),
        // Over 512 characters: members over 128 go first, from the end, then members from the end.
        case(
            "531-characters",
            &[("traceparent", SAMPLED), ("tracestate", &members(28, 18))],
            sampled().forwarding(members(27, 18)).trimmed("oversized"),
        ),
        case(
            "a-long-member-goes-first",
            &[("traceparent", SAMPLED), ("tracestate", &long_members)],
            sampled().forwarding(format!("a=1,b=2,{},c=3", members(20, 18))).trimmed("oversized"),
        ),
        case(
            "long-members-go-from-the-end",
            &[("traceparent", SAMPLED), ("tracestate", &long_members_from_the_end)],
            sampled().forwarding(format!("first={},a=1,{}", "f".repeat(150), members(12, 18))).trimmed("oversized"),
        ),
        // Only `tracestate` is the header's name.
        case("name-trace-state", &[("traceparent", SAMPLED), ("trace-state", "foo=1")], sampled()),
        case("name-trace.state", &[("traceparent", SAMPLED), ("trace.state", "foo=1")], sampled()),
        case("name-TraceState", &[("traceparent", SAMPLED), ("TraceState", "foo=1")], sampled()),
        case("name-TrAcEsTaTe", &[("traceparent", SAMPLED), ("TrAcEsTaTe", "foo=1")], sampled()),
        case("name-TRACESTATE", &[("traceparent", SAMPLED), ("TRACESTATE", "foo=1")], sampled()),
        // Several headers are one list, joined in order (Kafka only).
        case(
            "headers-joined-in-order",
            &[
                ("traceparent", SAMPLED),
                ("tracestate", "foo=1,bar=2"),
                ("tracestate", "rojo=1,congo=2"),
                ("tracestate", "baz=3"),
            ],
            sampled().forwarding("foo=1,bar=2,rojo=1,congo=2,baz=3"),
        ),
        case(
            "headers-empty-then-one",
            &[("traceparent", SAMPLED), ("tracestate", ""), ("tracestate", "foo=1")],
            sampled().forwarding("foo=1"),
        ),
        case(
            "headers-one-then-empty",
            &[("traceparent", SAMPLED), ("tracestate", "foo=1"), ("tracestate", "")],
            sampled().forwarding("foo=1"),
        ),
        case(
            "headers-same-key-same-value",
            &[("traceparent", SAMPLED), ("tracestate", "foo=1"), ("tracestate", "foo=1")],
            sampled().forwarding("foo=1,foo=1"),
        ),
        case(
            "headers-same-key",
            &[("traceparent", SAMPLED), ("tracestate", "foo=1"), ("tracestate", "foo=2")],
            sampled().forwarding("foo=1,foo=2"),
        ),
        case(
            "headers-of-32-members",
            &[
                ("traceparent", SAMPLED),
                ("tracestate", &bars(1, 10)),
                ("tracestate", &bars(11, 20)),
                ("tracestate", &bars(21, 30)),
                ("tracestate", &bars(31, 32)),
            ],
            sampled().forwarding(bars(1, 32)),
        ),
        case(
            "headers-of-33-members",
            &[
                ("traceparent", SAMPLED),
                ("tracestate", &bars(1, 10)),
                ("tracestate", &bars(11, 20)),
                ("tracestate", &bars(21, 30)),
                ("tracestate", &bars(31, 33)),
            ],
            sampled().trimmed("too_many_members"),
        ),
        case(
            "headers-key-of-256-characters",
            &[("traceparent", SAMPLED), ("tracestate", "foo=1"), ("tracestate", &z256)],
            sampled().forwarding(after_foo(&z256)),
        ),
        case(
            "headers-key-of-257-characters",
            &[("traceparent", SAMPLED), ("tracestate", "foo=1"), ("tracestate", &z257)],
            sampled().trimmed("malformed_member"),
        ),
        case(
            "headers-key-of-256-characters-with-a-system-id-of-14",
            &[("traceparent", SAMPLED), ("tracestate", "foo=1"), ("tracestate", &system_14)],
            sampled().forwarding(after_foo(&system_14)),
        ),
        case(
            "headers-key-of-245-characters-with-a-system-id-of-1",
            &[("traceparent", SAMPLED), ("tracestate", "foo=1"), ("tracestate", &system_1)],
            sampled().forwarding(after_foo(&system_1)),
        ),
        case(
            "headers-system-id-of-15-characters",
            &[("traceparent", SAMPLED), ("tracestate", "foo=1"), ("tracestate", "t@vvvvvvvvvvvvvvv=1")],
            sampled().forwarding("foo=1,t@vvvvvvvvvvvvvvv=1"),
        ),
        case(
            "headers-one-malformed",
            &[("traceparent", SAMPLED), ("tracestate", "foo=1"), ("tracestate", "FOO=2")],
            sampled().trimmed("malformed_member"),
        ),
    ]
}

/// Level 2's random flag on the traces tracehop starts: set when its trace ids are random
/// (`tracehop::set_random_trace_ids(true)`), not set otherwise; a continued trace keeps the message's flag
/// either way.
fn random_trace_ids_cases() -> Vec<Case> {
    let invalid = "ff-12345678901234567890123456789012-1234567890123456-01";
    vec![
        case("random-no-context", &[], restarted("missing", "03")).with_random_trace_ids(),
        case("random-invalid-traceparent", &[("traceparent", invalid)], restarted("traceparent_invalid_version", "03"))
            .with_random_trace_ids(),
        case("not-random-no-context", &[], restarted("missing", "01")),
        case(
            "not-random-invalid-traceparent",
            &[("traceparent", invalid)],
            restarted("traceparent_invalid_version", "01"),
        ),
        case("random-continued-01", &[("traceparent", SAMPLED)], continued(TRACE_ID, PARENT_ID, "01"))
            .with_random_trace_ids(),
        case("random-continued-00", &[("traceparent", NOT_SAMPLED)], continued(TRACE_ID, PARENT_ID, "00"))
            .with_random_trace_ids(),
        case(
            "random-continued-03",
            &[("traceparent", "00-12345678901234567890123456789012-1234567890123456-03")],
            continued(TRACE_ID, PARENT_ID, "03"),
        )
        .with_random_trace_ids(),
    ]
}

// ---- The process-wide setting ----

/// Held shared while a message is handled with `tracehop::set_random_trace_ids(false)` (the process's default),
/// and exclusively while one is handled with it on: the setting is the process's, and each test of this file
/// runs on a thread of its own.
static RANDOM_TRACE_IDS: RwLock<()> = RwLock::const_new(());

/// `tracehop::set_random_trace_ids(true)` until dropped, with no other message of this file handled meanwhile.
struct RandomTraceIds {
    _exclusive: RwLockWriteGuard<'static, ()>,
}

impl Drop for RandomTraceIds {
    fn drop(&mut self) {
        tracehop::set_random_trace_ids(false);
    }
}

/// Runs `body` with `tracehop::set_random_trace_ids(random)`.
async fn with_random_trace_ids<T>(random: bool, body: impl Future<Output = T>) -> T {
    if random {
        let _on = RandomTraceIds { _exclusive: RANDOM_TRACE_IDS.write().await };
        tracehop::set_random_trace_ids(true);
        body.await
    } else {
        let _off = RANDOM_TRACE_IDS.read().await;
        body.await
    }
}

// ---- The carriers ----

/// What a handler saw: the message's id, its own span, and the span of the `#[traced_producer]` it forwarded with.
#[derive(Debug)]
struct Handled {
    id: String,
    trace_id: TraceId,
    span_id: SpanId,
    producer_span_id: SpanId,
}

impl Handled {
    /// The current span's ids, as the handler sees them.
    fn current(id: String) -> Self {
        let context = Context::current();
        let span = context.span();
        let span_context = span.span_context();
        Self {
            id,
            trace_id: span_context.trace_id(),
            span_id: span_context.span_id(),
            producer_span_id: SpanId::INVALID,
        }
    }
}

/// A forwarded message as the next hop reads it: its id (`{case}/{writer}`) and its trace headers' values.
#[derive(Debug)]
struct Forwarded {
    id: String,
    traceparents: Vec<String>,
    tracestates: Vec<String>,
}

/// One broker: where a case's message goes in, how it is handled, and where what it is forwarded as comes out.
trait Carrier {
    /// Its name in failure messages.
    const NAME: &'static str;
    /// Whether one message can carry a header name more than once: a Kafka record can, an AMQP field table
    /// cannot.
    const REPEATS_HEADER_NAMES: bool;
    type Message;

    /// Sends a message with id `id` and exactly `headers`, bypassing tracehop, as a foreign producer does.
    async fn publish(&self, id: &str, headers: &[(&'static str, String)]);
    /// The next incoming message.
    async fn receive(&self) -> Self::Message;
    fn id(message: &Self::Message) -> String;
    /// Handles `message` with a `#[traced_consumer]` that forwards it with every writer ([`Carrier::forward`]).
    async fn handle(&self, message: &Self::Message) -> Handled;
    /// Forwards `id` once with every writer in [`WRITERS`], as `{id}/{writer}`, under the current context;
    /// returns the `#[traced_producer]`'s span id.
    async fn forward(&self, id: &str) -> SpanId;
    /// The next forwarded message.
    async fn receive_forwarded(&self) -> Forwarded;
}

/// Kafka: cases arrive on one topic of the suite's broker and are forwarded to another.
struct Kafka {
    incoming: String,
    forwarded: String,
    producer: FutureProducer,
    client: TracedFutureProducer,
    incoming_consumer: StreamConsumer,
    forwarded_consumer: StreamConsumer,
    /// Last: the clients above go before a mock cluster does.
    _broker: Broker,
}

impl Kafka {
    fn start(table: &str) -> Self {
        suite::spans();
        let broker = Broker::start();
        let incoming = suite::unique_topic(&format!("w3c-{table}"));
        let forwarded = suite::unique_topic(&format!("w3c-{table}-forwarded"));
        broker.create_topic(&incoming, 1);
        broker.create_topic(&forwarded, 1);
        Self {
            producer: broker.producer(),
            client: TracedFutureProducer::new(broker.producer()),
            incoming_consumer: reader(&broker, &incoming),
            forwarded_consumer: reader(&broker, &forwarded),
            incoming,
            forwarded,
            _broker: broker,
        }
    }
}

/// A consumer of `topic`'s one partition from its first record. Assigned, not subscribed: joining a consumer
/// group takes the mock cluster seconds, and nothing here commits.
fn reader(broker: &Broker, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", format!("w3c-reader.{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer for the broker");
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition_offset(topic, 0, Offset::Beginning).expect("partition 0 from the start");
    consumer.assign(&partitions).expect("the partition is assigned");
    consumer
}

#[tracehop::traced_consumer(group = "w3c-conformance")]
async fn relay_kafka(message: &OwnedMessage, kafka: &Kafka) -> Handled {
    let mut handled = Handled::current(Kafka::id(message));
    handled.producer_span_id = kafka.forward(&handled.id).await;
    handled
}

#[tracehop::traced_producer]
async fn send_kafka(producer: &FutureProducer, record: FutureRecord<'_, str, str>) -> SpanId {
    let span_id = Context::current().span().span_context().span_id();
    producer.send(record, TIMEOUT).await.map_err(|(error, _)| error).expect("the broker accepts the record");
    span_id
}

#[tracehop::traced_producer(system = "kafka", destination = topic)]
async fn send_created_kafka(producer: &FutureProducer, topic: &str, key: &str) {
    let mut record = FutureRecord::to(topic).key(key).payload("");
    tracehop::inject_creation_context(&mut record);
    producer.send(record, TIMEOUT).await.map_err(|(error, _)| error).expect("the broker accepts the record");
}

impl Carrier for Kafka {
    const NAME: &'static str = "kafka";
    const REPEATS_HEADER_NAMES: bool = true;
    type Message = OwnedMessage;

    async fn publish(&self, id: &str, headers: &[(&'static str, String)]) {
        let headers = headers.iter().fold(OwnedHeaders::new(), |headers, (name, value)| {
            headers.insert(Header { key: name, value: Some(value.as_bytes()) })
        });
        let record = FutureRecord::to(&self.incoming).key(id).payload("").headers(headers);
        self.producer.send(record, TIMEOUT).await.map_err(|(error, _)| error).expect("the broker accepts the record");
    }

    async fn receive(&self) -> OwnedMessage {
        suite::receive(&self.incoming_consumer).await
    }

    fn id(message: &OwnedMessage) -> String {
        String::from_utf8(message.key().expect("a key").to_vec()).expect("a UTF-8 key")
    }

    async fn handle(&self, message: &OwnedMessage) -> Handled {
        relay_kafka(message, self).await
    }

    async fn forward(&self, id: &str) -> SpanId {
        let key = format!("{id}/producer");
        let record = FutureRecord::to(&self.forwarded).key(key.as_str()).payload("");
        let producer_span_id = send_kafka(&self.producer, record).await;
        send_created_kafka(&self.producer, &self.forwarded, &format!("{id}/creation")).await;
        let key = format!("{id}/client");
        let record = FutureRecord::to(&self.forwarded).key(key.as_str()).payload("");
        self.client.send(record, TIMEOUT).await.map_err(|(error, _)| error).expect("the broker accepts the record");
        producer_span_id
    }

    async fn receive_forwarded(&self) -> Forwarded {
        let message = suite::receive(&self.forwarded_consumer).await;
        let headers = suite::raw_headers(message.headers().expect("tracehop wrote headers"));
        let values = |name: &[u8]| -> Vec<String> {
            headers
                .iter()
                .filter(|(header, _)| header == name)
                .map(|(_, value)| String::from_utf8(value.clone().expect("a value")).expect("UTF-8"))
                .collect()
        };
        Forwarded { id: Self::id(&message), traceparents: values(b"traceparent"), tracestates: values(b"tracestate") }
    }
}

/// RabbitMQ: cases arrive on one queue (through the default exchange) and are forwarded to another.
struct Amqp {
    incoming: String,
    forwarded: String,
    channel: Channel,
    client: TracedChannel,
    /// The next hop's own channel.
    reader: Channel,
}

impl Amqp {
    async fn start(table: &str) -> Self {
        suite::spans();
        let channel = suite::rabbitmq_channel().await;
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
        let reader = suite::rabbitmq_channel().await;
        let incoming = suite::unique_topic(&format!("w3c-{table}"));
        let forwarded = suite::unique_topic(&format!("w3c-{table}-forwarded"));
        suite::declare_queue(&channel, &incoming).await;
        suite::declare_queue(&channel, &forwarded).await;
        Self { client: TracedChannel::new(channel.clone()), incoming, forwarded, channel, reader }
    }

    async fn publish_to(&self, queue: &str, payload: &[u8], properties: BasicProperties) {
        self.channel
            .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), payload, properties)
            .await
            .expect("basic.publish")
            .await
            .expect("confirmed");
    }
}

fn message_id(delivery: &Delivery) -> String {
    delivery.properties.message_id().as_ref().expect("a message id").as_str().to_owned()
}

#[tracehop::traced_consumer(group = "w3c-conformance")]
async fn relay_amqp(delivery: &Delivery, amqp: &Amqp) -> Handled {
    let mut handled = Handled::current(message_id(delivery));
    handled.producer_span_id = amqp.forward(&handled.id).await;
    handled
}

#[tracehop::traced_producer(destination = "", routing_key = queue)]
async fn publish_amqp(amqp: &Amqp, queue: &str, properties: BasicProperties) -> SpanId {
    let span_id = Context::current().span().span_context().span_id();
    amqp.publish_to(queue, b"", properties).await;
    span_id
}

#[tracehop::traced_producer(system = "rabbitmq", destination = "", routing_key = queue)]
async fn publish_created_amqp(amqp: &Amqp, queue: &str, id: String) {
    let mut properties = BasicProperties::default().with_message_id(id.into());
    tracehop::inject_creation_context(&mut properties);
    amqp.publish_to(queue, b"", properties).await;
}

impl Carrier for Amqp {
    const NAME: &'static str = "amqp";
    const REPEATS_HEADER_NAMES: bool = false;
    type Message = Delivery;

    async fn publish(&self, id: &str, headers: &[(&'static str, String)]) {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert((*name).into(), AMQPValue::LongString(LongString::from(value.as_str())));
        }
        let properties = BasicProperties::default().with_message_id(id.into()).with_headers(table);
        self.publish_to(&self.incoming, b"", properties).await;
    }

    async fn receive(&self) -> Delivery {
        suite::next_delivery(&self.channel, &self.incoming).await
    }

    fn id(delivery: &Delivery) -> String {
        message_id(delivery)
    }

    async fn handle(&self, delivery: &Delivery) -> Handled {
        let handled = relay_amqp(delivery, self).await;
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        handled
    }

    async fn forward(&self, id: &str) -> SpanId {
        let properties = |writer: &str| BasicProperties::default().with_message_id(format!("{id}/{writer}").into());
        let producer_span_id = publish_amqp(self, &self.forwarded, properties("producer")).await;
        publish_created_amqp(self, &self.forwarded, format!("{id}/creation")).await;
        self.client
            .basic_publish("", &self.forwarded, BasicPublishOptions::default(), b"", properties("client"))
            .await
            .expect("confirmed");
        producer_span_id
    }

    async fn receive_forwarded(&self) -> Forwarded {
        let delivery = suite::next_delivery(&self.reader, &self.forwarded).await;
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        let headers = delivery.properties.headers().clone().expect("tracehop wrote headers");
        let value = |name: &str| -> Vec<String> {
            match headers.inner().get(name) {
                None => vec![],
                Some(AMQPValue::LongString(value)) => {
                    vec![String::from_utf8(value.as_bytes().to_vec()).expect("UTF-8")]
                }
                Some(other) => panic!("{name} written as a long string, not {other:?}"),
            }
        };
        Forwarded { id: message_id(&delivery), traceparents: value("traceparent"), tracestates: value("tracestate") }
    }
}

/// NATS: cases arrive on one subject of the server `scripts/test` starts and are forwarded to another, each read
/// through a subscription made before anything is published (core NATS keeps nothing for later subscribers).
struct Nats {
    incoming: String,
    forwarded: String,
    client: async_nats::Client,
    traced: TracedClient,
    incoming_messages: tokio::sync::Mutex<async_nats::Subscriber>,
    forwarded_messages: tokio::sync::Mutex<async_nats::Subscriber>,
}

impl Nats {
    async fn start(table: &str) -> Self {
        suite::spans();
        let url = std::env::var("NATS_URL")
            .expect("NATS_URL is not set: the NATS tests run against the server ./scripts/test starts");
        let client = async_nats::connect(&url).await.unwrap_or_else(|error| panic!("NATS at {url}: {error}"));
        let incoming = suite::unique_topic(&format!("w3c-{table}"));
        let forwarded = suite::unique_topic(&format!("w3c-{table}-forwarded"));
        let incoming_messages = client.subscribe(incoming.clone()).await.expect("a subscription");
        let forwarded_messages = client.subscribe(forwarded.clone()).await.expect("a subscription");
        // The subscriptions reach the server before the first publish.
        client.flush().await.expect("flushed");
        Self {
            traced: TracedClient::new(client.clone()),
            client,
            incoming,
            forwarded,
            incoming_messages: tokio::sync::Mutex::new(incoming_messages),
            forwarded_messages: tokio::sync::Mutex::new(forwarded_messages),
        }
    }

    fn headers_named(id: String) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(tracehop::nats::MESSAGE_ID_HEADER, id.as_str());
        headers
    }
}

async fn next_nats(messages: &tokio::sync::Mutex<async_nats::Subscriber>) -> async_nats::Message {
    use futures_util::StreamExt;
    let mut messages = messages.lock().await;
    tokio::time::timeout(TIMEOUT, messages.next())
        .await
        .expect("a message within the timeout")
        .expect("the subscription is open")
}

#[tracehop::traced_consumer(group = "w3c-conformance")]
async fn relay_nats(message: &async_nats::Message, nats: &Nats) -> Handled {
    let mut handled = Handled::current(Nats::id(message));
    handled.producer_span_id = nats.forward(&handled.id).await;
    handled
}

#[tracehop::traced_producer(destination = subject)]
async fn publish_nats(nats: &Nats, subject: &str, headers: async_nats::HeaderMap) -> SpanId {
    let span_id = Context::current().span().span_context().span_id();
    nats.client.publish_with_headers(subject.to_owned(), headers, "".into()).await.expect("published");
    span_id
}

#[tracehop::traced_producer(system = "nats", destination = subject)]
async fn publish_created_nats(nats: &Nats, subject: &str, id: String) {
    let mut headers = Nats::headers_named(id);
    tracehop::inject_creation_context(&mut headers);
    nats.client.publish_with_headers(subject.to_owned(), headers, "".into()).await.expect("published");
}

impl Carrier for Nats {
    const NAME: &'static str = "nats";
    const REPEATS_HEADER_NAMES: bool = true;
    type Message = async_nats::Message;

    async fn publish(&self, id: &str, headers: &[(&'static str, String)]) {
        let mut map = Self::headers_named(id.to_owned());
        for (name, value) in headers {
            map.append(*name, value.as_str());
        }
        self.client.publish_with_headers(self.incoming.clone(), map, "".into()).await.expect("published");
    }

    async fn receive(&self) -> async_nats::Message {
        next_nats(&self.incoming_messages).await
    }

    fn id(message: &async_nats::Message) -> String {
        let headers = message.headers.as_ref().expect("headers");
        headers.get(tracehop::nats::MESSAGE_ID_HEADER).expect("a message id").as_str().to_owned()
    }

    async fn handle(&self, message: &async_nats::Message) -> Handled {
        relay_nats(message, self).await
    }

    async fn forward(&self, id: &str) -> SpanId {
        let producer_span_id = publish_nats(self, &self.forwarded, Self::headers_named(format!("{id}/producer"))).await;
        publish_created_nats(self, &self.forwarded, format!("{id}/creation")).await;
        let headers = Self::headers_named(format!("{id}/client"));
        self.traced.publish_with_headers(self.forwarded.clone(), headers, "".into()).await.expect("published");
        producer_span_id
    }

    async fn receive_forwarded(&self) -> Forwarded {
        let message = next_nats(&self.forwarded_messages).await;
        let headers = message.headers.as_ref().expect("tracehop wrote headers");
        let values =
            |name: &str| -> Vec<String> { headers.get_all(name).map(|value| value.as_str().to_owned()).collect() };
        Forwarded { id: Self::id(&message), traceparents: values("traceparent"), tracestates: values("tracestate") }
    }
}

// ---- The run and the checks ----

/// Sends every case of `cases` that `C` can carry, handles each (forwarding it with every writer) and checks
/// what the next hop reads and the consumer span. Returns how many cases ran.
async fn conforms<C: Carrier>(carrier: &C, cases: &[Case]) -> usize {
    let cases: Vec<&Case> =
        cases.iter().filter(|case| C::REPEATS_HEADER_NAMES || !case.repeats_a_header_name()).collect();
    let mut names: Vec<&str> = cases.iter().map(|case| case.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    for case in &cases {
        carrier.publish(case.name, &case.headers).await;
    }

    let handling = async {
        let mut handled = HashMap::new();
        for _ in 0..cases.len() {
            let message = carrier.receive().await;
            let id = C::id(&message);
            let case = cases.iter().find(|case| case.name == id).unwrap_or_else(|| panic!("a case named {id}"));
            let seen = with_random_trace_ids(case.random_trace_ids, carrier.handle(&message)).await;
            assert_eq!(seen.id, id);
            assert!(handled.insert(id, seen).is_none(), "each case is handled once");
        }
        handled
    };
    let reading = async {
        let mut forwarded = HashMap::new();
        for _ in 0..cases.len() * WRITERS.len() {
            let message = carrier.receive_forwarded().await;
            assert!(forwarded.insert(message.id.clone(), message).is_none(), "each message is forwarded once");
        }
        forwarded
    };
    let (handled, forwarded) = tokio::join!(handling, reading);

    let spans: HashMap<SpanId, SpanData> =
        suite::finished().into_iter().map(|span| (span.span_context.span_id(), span)).collect();
    for case in &cases {
        check(C::NAME, case, &handled[case.name], &forwarded, &spans);
    }
    cases.len()
}

/// A written `traceparent`'s fields: version, trace id, parent id, flags.
fn fields(traceparent: &str) -> [&str; 4] {
    assert_eq!(traceparent.len(), 55, "{traceparent:?} is a version-00 traceparent");
    let fields: Vec<&str> = traceparent.split('-').collect();
    fields.try_into().unwrap_or_else(|_| panic!("{traceparent:?} has four fields"))
}

fn check(
    carrier: &str,
    case: &Case,
    handled: &Handled,
    forwarded: &HashMap<String, Forwarded>,
    spans: &HashMap<SpanId, SpanData>,
) {
    let name = format!("{carrier} {}", case.name);
    let new_trace_id = handled.trace_id.to_string();
    let (trace_id, tracestate) = match &case.expect {
        Expect::Continued { trace_id, tracestate, .. } => (*trace_id, tracestate.as_deref()),
        Expect::Restarted { .. } => {
            let reused = case.headers.iter().any(|(_, value)| value.contains(&new_trace_id));
            assert!(!reused, "{name}: the new trace {new_trace_id} is not one a header carries");
            (new_trace_id.as_str(), None)
        }
    };
    assert_eq!(handled.trace_id.to_string(), trace_id, "{name}: the handler's trace");
    let sampled = matches!(case.expect.flags(), "01" | "03");

    for writer in WRITERS {
        let written = &forwarded[&format!("{}/{writer}", case.name)];
        let name = format!("{name}, written by the {writer}");
        assert_eq!(written.traceparents.len(), 1, "{name}: one traceparent");
        let [version, written_trace_id, parent_id, flags] = fields(&written.traceparents[0]);
        assert_eq!(version, "00", "{name}");
        assert_eq!(written_trace_id, trace_id, "{name}");
        assert_eq!(flags, case.expect.flags(), "{name}: trace-flags");
        assert_ne!(parent_id, "0000000000000000", "{name}");
        assert_ne!(parent_id, handled.span_id.to_string(), "{name}: a span of its own, not the consumer's");
        if let Expect::Continued { parent_id: incoming, .. } = case.expect {
            assert_ne!(parent_id, incoming, "{name}: a new parent id");
        }
        if writer == "producer" {
            assert_eq!(parent_id, handled.producer_span_id.to_string(), "{name}: the producer span is the parent");
        }
        // The parent is the writer's own span: a `send` span, or the `create` span of a record.
        match spans.get(&SpanId::from_hex(parent_id).unwrap()) {
            None => assert!(!sampled, "{name}: the sampled parent span is exported"),
            Some(parent) => {
                assert!(sampled, "{name}: an unsampled parent span is not exported");
                assert_eq!(parent.span_kind, SpanKind::Producer, "{name}");
                assert_eq!(parent.span_context.trace_id().to_string(), trace_id, "{name}");
                let operation = if writer == "creation" { "create" } else { "send" };
                assert_eq!(attribute(parent, "messaging.operation.type"), Some(Value::from(operation)), "{name}");
            }
        }
        let expected: Vec<&str> = tracestate.into_iter().collect();
        assert_eq!(written.tracestates, expected, "{name}: tracestate");
    }

    let Some(span) = spans.get(&handled.span_id) else {
        assert!(!sampled, "{name}: the sampled consumer span is exported");
        return;
    };
    assert!(sampled, "{name}: an unsampled consumer span is not exported");
    assert_eq!(span.span_kind, SpanKind::Consumer, "{name}");
    let rejected = attribute(span, "tracehop.context.rejected");
    let trimmed = attribute(span, "tracehop.context.tracestate.trimmed");
    match &case.expect {
        Expect::Continued { parent_id, trimmed: expected_trimmed, .. } => {
            assert_eq!(span.parent_span_id, SpanId::from_hex(parent_id).unwrap(), "{name}: the message's parent");
            assert!(span.parent_span_is_remote, "{name}: a remote parent");
            assert_eq!(rejected, None, "{name}");
            assert_eq!(trimmed, expected_trimmed.map(Value::from), "{name}: tracestate trimmed");
        }
        Expect::Restarted { rejected: code, .. } => {
            assert_eq!(span.parent_span_id, SpanId::INVALID, "{name}: a root");
            assert_eq!(rejected, Some(Value::from(*code)), "{name}: rejected");
            assert_eq!(trimmed, None, "{name}: the tracestate is not read");
        }
    }
}

/// A producer outside any trace starts one: with random trace ids its `traceparent` carries the random flag, and
/// without them it does not, on every writer.
async fn writes_outside_any_trace<C: Carrier>(carrier: &C) {
    let random = with_random_trace_ids(true, carrier.forward("outside-any-trace-random")).await;
    let not_random = with_random_trace_ids(false, carrier.forward("outside-any-trace-not-random")).await;
    let mut forwarded = HashMap::new();
    for _ in 0..2 * WRITERS.len() {
        let message = carrier.receive_forwarded().await;
        assert!(forwarded.insert(message.id.clone(), message).is_none(), "each message is forwarded once");
    }
    let spans: HashMap<SpanId, SpanData> =
        suite::finished().into_iter().map(|span| (span.span_context.span_id(), span)).collect();
    for (id, producer_span_id, expected_flags) in
        [("outside-any-trace-random", random, "03"), ("outside-any-trace-not-random", not_random, "01")]
    {
        for writer in WRITERS {
            let name = format!("{} {id}, written by the {writer}", C::NAME);
            let written = &forwarded[&format!("{id}/{writer}")];
            assert_eq!(written.traceparents.len(), 1, "{name}: one traceparent");
            let [version, trace_id, parent_id, flags] = fields(&written.traceparents[0]);
            assert_eq!(version, "00", "{name}");
            assert_ne!(trace_id, "00000000000000000000000000000000", "{name}");
            assert_eq!(flags, expected_flags, "{name}: trace-flags");
            if writer == "producer" {
                assert_eq!(parent_id, producer_span_id.to_string(), "{name}: the producer span is the parent");
            }
            // The writer's span starts the trace: a root `send` span, or the `create` span of one.
            let parent = &spans[&SpanId::from_hex(parent_id).unwrap()];
            assert_eq!(parent.span_context.trace_id().to_string(), trace_id, "{name}");
            let root = if writer == "creation" { &spans[&parent.parent_span_id] } else { parent };
            assert_eq!(root.parent_span_id, SpanId::INVALID, "{name}: the trace's root");
            assert_eq!(attribute(root, "messaging.operation.type"), Some(Value::from("send")), "{name}");
            assert_eq!(written.tracestates, Vec::<String>::new(), "{name}: no tracestate");
        }
    }
}

// ---- Kafka ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_traceparent_is_continued_only_when_valid_and_an_invalid_one_restarts_the_trace() {
    let cases = traceparent_cases();
    assert_eq!(conforms(&Kafka::start("traceparent"), &cases).await, cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_trace_flags_keep_the_sampled_and_random_bits_and_write_no_other() {
    let cases = trace_flags_cases();
    assert_eq!(conforms(&Kafka::start("flags"), &cases).await, cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_tracestate_is_forwarded_whole_discarded_whole_or_truncated_by_members() {
    let cases = tracestate_cases();
    assert_eq!(conforms(&Kafka::start("tracestate"), &cases).await, cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_traces_tracehop_starts_carry_the_random_flag_only_with_random_trace_ids() {
    let kafka = Kafka::start("random");
    let cases = random_trace_ids_cases();
    assert_eq!(conforms(&kafka, &cases).await, cases.len());
    writes_outside_any_trace(&kafka).await;
}

// ---- RabbitMQ ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn amqp_traceparent_is_continued_only_when_valid_and_an_invalid_one_restarts_the_trace() {
    let cases = traceparent_cases();
    let kafka_only = cases.iter().filter(|case| case.repeats_a_header_name()).count();
    assert_eq!(kafka_only, 1, "the duplicated traceparent");
    assert_eq!(conforms(&Amqp::start("traceparent").await, &cases).await, cases.len() - kafka_only);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn amqp_trace_flags_keep_the_sampled_and_random_bits_and_write_no_other() {
    let cases = trace_flags_cases();
    assert_eq!(conforms(&Amqp::start("flags").await, &cases).await, cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn amqp_tracestate_is_forwarded_whole_discarded_whole_or_truncated_by_members() {
    let cases = tracestate_cases();
    let kafka_only = cases.iter().filter(|case| case.repeats_a_header_name()).count();
    assert_eq!(kafka_only, 13, "the cases of several tracestate headers");
    assert_eq!(conforms(&Amqp::start("tracestate").await, &cases).await, cases.len() - kafka_only);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn amqp_traces_tracehop_starts_carry_the_random_flag_only_with_random_trace_ids() {
    let amqp = Amqp::start("random").await;
    let cases = random_trace_ids_cases();
    assert_eq!(conforms(&amqp, &cases).await, cases.len());
    writes_outside_any_trace(&amqp).await;
}

// ---- NATS ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn nats_traceparent_is_continued_only_when_valid_and_an_invalid_one_restarts_the_trace() {
    let cases = traceparent_cases();
    assert_eq!(conforms(&Nats::start("traceparent").await, &cases).await, cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn nats_trace_flags_keep_the_sampled_and_random_bits_and_write_no_other() {
    let cases = trace_flags_cases();
    assert_eq!(conforms(&Nats::start("flags").await, &cases).await, cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn nats_tracestate_is_forwarded_whole_discarded_whole_or_truncated_by_members() {
    let cases = tracestate_cases();
    assert_eq!(conforms(&Nats::start("tracestate").await, &cases).await, cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn nats_traces_tracehop_starts_carry_the_random_flag_only_with_random_trace_ids() {
    let nats = Nats::start("random").await;
    let cases = random_trace_ids_cases();
    assert_eq!(conforms(&nats, &cases).await, cases.len());
    writes_outside_any_trace(&nats).await;
}

// ---- Outside any handler ----

/// `tracehop::inject_creation_context` with no span current starts a trace of its own (its `create` span is the
/// root): with random trace ids the `traceparent` it writes carries the random flag, without them it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_context_outside_any_trace_carries_the_random_flag_only_with_random_trace_ids() {
    use rdkafka::message::Headers;
    suite::spans();
    for (random, expected_flags) in [(true, "03"), (false, "01")] {
        let traceparent = with_random_trace_ids(random, async {
            let mut record: FutureRecord<'_, str, str> = FutureRecord::to("outside-any-handler").payload("{}");
            tracehop::inject_creation_context(&mut record);
            let headers = record.headers.expect("a header was written");
            let header = headers.iter().find(|header| header.key == "traceparent").expect("a traceparent");
            String::from_utf8(header.value.expect("a value").to_vec()).expect("UTF-8")
        })
        .await;
        let [version, _, parent_id, flags] = fields(&traceparent);
        assert_eq!((version, flags), ("00", expected_flags), "random trace ids: {random}");
        let create = suite::finished_span(SpanId::from_hex(parent_id).unwrap());
        assert_eq!((create.name.as_ref(), create.parent_span_id), ("create outside-any-handler", SpanId::INVALID));
    }
}
