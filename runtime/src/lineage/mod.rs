//! A message's life after its first failure, in its trace: a retry republished by a failing handler keeps its
//! lineage ([`Republish`], `retry.rs`), and a message given up on is dead-lettered in a span of its own
//! ([`DeadLetter`], `dead_letter.rs`). Written once for every broker through [`ConsumedMessage`] and the
//! broker's own publish call (each broker's `lineage.rs`, exposed in `tracehop::clients::<broker>`).
//!
//! What a republish carries besides the message's own headers and body, all in `tracehop-*` headers
//! ([`HEADER_PREFIX`]):
//!
//! | header | written by | value |
//! |:-|:-|:-|
//! | [`ATTEMPT_HEADER`] (or the handler's `attempt_header`) | retry | the attempt the republished message is: 2 for the first retry |
//! | [`FIRST_CONTEXT_HEADER`] | retry, dead letter | the `traceparent` the message was first created with, kept unchanged on later retries |
//! | [`PREVIOUS_ATTEMPT_HEADER`] | retry | the `traceparent` of the CONSUMER span whose attempt failed |
//! | [`FAILED_PROCESS_HEADER`] | dead letter | the `traceparent` of the CONSUMER span whose processing failed |
//! | [`DEAD_LETTER_ORIGIN_HEADER`] | dead letter | the destination the message was consumed from |
//! | [`DEAD_LETTER_ERROR_TYPE_HEADER`] | dead letter | the error type the caller gave up on |
//! | `tracehop-dead-letter-{coordinate}` ([`Coordinate`]) | dead letter | where in that destination: partition and offset, routing key and delivery tag, stream and sequence |
//!
//! A consumer span reads them back only when its message carries a `tracehop-*` header (noticed in the one pass
//! that reads its `traceparent`) and only when the span is recorded: it links the attempt before
//! ([`LINK_RELATION_ATTRIBUTE`] `previous_attempt`) or the failed processing (`failed_process`) and records the
//! attempt ([`ATTEMPT_ATTRIBUTE`]), the dead letter's origin and its error type.
//!
//! tracehop never settles the consumed message: the caller acknowledges, commits or rejects it after the
//! republish, as it decides.

// Without a broker feature nothing republishes: only the consumer side's reading is used.
#![cfg_attr(not(any(feature = "kafka", feature = "rabbitmq", feature = "nats")), allow(dead_code))]

pub(crate) mod dead_letter;
pub(crate) mod retry;

use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;

use opentelemetry::trace::{Link, SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry::{Context, KeyValue, Value};

use crate::attributes::SpanAttributes;
use crate::carrier::{propagate, MessageFacts, PublishedMessage};
use crate::consumer_extras::{whole_number, HeaderSource, ATTEMPT_ATTRIBUTE};
use crate::handler::Handler;
use crate::metrics::Measurement;
use crate::w3c::{BAGGAGE_HEADER, TRACEPARENT_HEADER, TRACESTATE_HEADER};

pub use dead_letter::DeadLetter;
pub use retry::Republish;

/// What every header tracehop writes for a message's lineage begins with. Headers of a consumed message that
/// begin with it are not copied by a republish, which writes its own.
pub const HEADER_PREFIX: &str = "tracehop-";

/// The header holding which attempt a retried message is, when the handler names no `attempt_header` of its
/// own: a decimal number, 2 on the first retry (a message without it is attempt 1).
pub const ATTEMPT_HEADER: &str = "tracehop-attempt";

/// The header holding the `traceparent` a retried or dead-lettered message was first created with: set from the
/// consumed message's `traceparent` at its first retry, copied unchanged after. The retry's PRODUCER span links
/// to it.
pub const FIRST_CONTEXT_HEADER: &str = "tracehop-first-traceparent";

/// The header holding the `traceparent` of the CONSUMER span whose attempt failed and republished the message:
/// the next attempt's CONSUMER span links to it.
pub const PREVIOUS_ATTEMPT_HEADER: &str = "tracehop-previous-attempt";

/// The header holding the `traceparent` of the CONSUMER span whose processing failed and dead-lettered the
/// message: the dead-letter consumer's span links to it.
pub const FAILED_PROCESS_HEADER: &str = "tracehop-dead-letter-failed-process";

/// The header holding the destination a dead-lettered message was consumed from (a topic, an exchange, a
/// subject).
pub const DEAD_LETTER_ORIGIN_HEADER: &str = "tracehop-dead-letter-origin";

/// The header holding the error type a dead-lettered message was given up on, as the caller named it.
pub const DEAD_LETTER_ERROR_TYPE_HEADER: &str = "tracehop-dead-letter-error-type";

/// Attribute of a link tracehop adds for a message's lineage, saying what the linked span is to this one:
/// `first_creation` (on a retry's PRODUCER span: the span that first created the message), `previous_attempt`
/// (on a retried message's CONSUMER span: the consumer span whose attempt failed), `failed_process` (on a dead
/// letter's settle span and on the dead-letter consumer's span: the consumer span whose processing failed).
pub const LINK_RELATION_ATTRIBUTE: &str = "tracehop.link.relation";

/// Attribute of a dead-letter settle span naming the dead-letter destination the message is published to.
pub const DEAD_LETTER_DESTINATION_ATTRIBUTE: &str = "tracehop.dead_letter.destination";

/// Attribute naming the destination a dead-lettered message was consumed from: on the dead-letter settle span
/// and on the dead-letter consumer's span.
pub const DEAD_LETTER_ORIGIN_ATTRIBUTE: &str = "tracehop.dead_letter.origin.destination";

/// Attribute holding the error type a message was dead-lettered for: on the dead-letter settle span and on the
/// dead-letter consumer's span. Not `error.type`, which the conventions reserve for the span's own operation
/// failing: a dead letter published without error is no failed span.
pub const DEAD_LETTER_ERROR_TYPE_ATTRIBUTE: &str = "tracehop.dead_letter.error_type";

/// Where a dead-lettered message was in the destination it was consumed from, each coordinate a header on the
/// dead-lettered message and an attribute (`tracehop.dead_letter.origin.*`, as text) on the dead-letter settle
/// span and the dead-letter consumer's span. Each broker writes its own: Kafka the partition and offset,
/// RabbitMQ the routing key and delivery tag, JetStream the stream and sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Coordinate {
    /// A Kafka partition.
    Partition,
    /// A Kafka offset.
    Offset,
    /// A RabbitMQ routing key.
    RoutingKey,
    /// A RabbitMQ delivery tag (of the consumer's channel).
    DeliveryTag,
    /// A JetStream stream.
    Stream,
    /// A message's sequence in its JetStream stream.
    Sequence,
}

impl Coordinate {
    const ALL: [Coordinate; 6] = [
        Coordinate::Partition,
        Coordinate::Offset,
        Coordinate::RoutingKey,
        Coordinate::DeliveryTag,
        Coordinate::Stream,
        Coordinate::Sequence,
    ];

    /// The header carrying it on a dead-lettered message: `tracehop-dead-letter-partition`, ...
    pub const fn header(self) -> &'static str {
        match self {
            Coordinate::Partition => "tracehop-dead-letter-partition",
            Coordinate::Offset => "tracehop-dead-letter-offset",
            Coordinate::RoutingKey => "tracehop-dead-letter-routing-key",
            Coordinate::DeliveryTag => "tracehop-dead-letter-delivery-tag",
            Coordinate::Stream => "tracehop-dead-letter-stream",
            Coordinate::Sequence => "tracehop-dead-letter-sequence",
        }
    }

    /// The attribute recording it: `tracehop.dead_letter.origin.partition`, ...
    pub const fn attribute(self) -> &'static str {
        match self {
            Coordinate::Partition => "tracehop.dead_letter.origin.partition",
            Coordinate::Offset => "tracehop.dead_letter.origin.offset",
            Coordinate::RoutingKey => "tracehop.dead_letter.origin.routing_key",
            Coordinate::DeliveryTag => "tracehop.dead_letter.origin.delivery_tag",
            Coordinate::Stream => "tracehop.dead_letter.origin.stream",
            Coordinate::Sequence => "tracehop.dead_letter.origin.sequence",
        }
    }

    fn of_header(name: &str) -> Option<Coordinate> {
        Coordinate::ALL.into_iter().find(|coordinate| coordinate.header() == name)
    }
}

/// What a broker tells a dead letter about where its message was: its [`Coordinate`]s, as text.
pub(crate) type Coordinates = Vec<(Coordinate, String)>;

/// The relations [`LINK_RELATION_ATTRIBUTE`] names.
const FIRST_CREATION: &str = "first_creation";
const PREVIOUS_ATTEMPT: &str = "previous_attempt";
const FAILED_PROCESS: &str = "failed_process";

/// Whether a consumed message's header is one of tracehop's lineage headers; asked in the header pass that
/// reads the `traceparent`.
#[inline]
pub(crate) fn is_lineage_header(name: &str) -> bool {
    name.starts_with(HEADER_PREFIX)
}

/// Reads a recorded consumer span's lineage from its message's headers, when the message carries any: the link to
/// the attempt before or to the failed processing, the attempt (unless the handler reads its own
/// `attempt_header`) and a dead letter's origin. Whether it does, the header scan that read the message's
/// `traceparent` noticed: an ordinary message costs no further pass. Only a message whose context was extracted
/// (a continued or linked one) is read: its lineage points into the trace it carries.
pub(crate) fn record_lineage(
    handler: &Handler,
    incoming: Option<&Context>,
    headers: Option<&dyn HeaderSource>,
    attributes: &mut SpanAttributes,
    links: &mut Vec<Link>,
) {
    let (Some(incoming), Some(headers)) = (incoming, headers) else { return };
    // Not known when another message's `traceparent` was scanned since (or another propagator's read): look.
    if crate::w3c::scanned_lineage(incoming.span().span_context()) == Some(false) {
        return;
    }
    let record_attempt = handler.configured_attempt_header().is_none();
    // Each lineage header is read once, at its first occurrence: a producer repeating one (Kafka headers may
    // repeat) adds no second link or attribute, so what a message can make a span carry stays bounded.
    let mut seen = 0_u16;
    headers.visit_headers(&mut |name, value| {
        let Some(value) = value else { return };
        let (bit, read) = match name {
            ATTEMPT_HEADER if record_attempt => (0, Read::Attempt),
            PREVIOUS_ATTEMPT_HEADER => (1, Read::Link(PREVIOUS_ATTEMPT)),
            FAILED_PROCESS_HEADER => (2, Read::Link(FAILED_PROCESS)),
            DEAD_LETTER_ORIGIN_HEADER => (3, Read::Text(DEAD_LETTER_ORIGIN_ATTRIBUTE)),
            DEAD_LETTER_ERROR_TYPE_HEADER => (4, Read::Text(DEAD_LETTER_ERROR_TYPE_ATTRIBUTE)),
            _ => match Coordinate::of_header(name) {
                Some(coordinate) => (5 + coordinate as u16, Read::Text(coordinate.attribute())),
                None => return,
            },
        };
        if seen & (1 << bit) != 0 {
            return;
        }
        seen |= 1 << bit;
        match read {
            Read::Attempt => attributes.add(ATTEMPT_ATTRIBUTE, whole_number(value)),
            Read::Link(relation) => push_link(links, value, relation),
            Read::Text(key) => add_text(attributes, key, value),
        }
    });
}

/// What a lineage header becomes on the consumer span.
enum Read {
    /// `tracehop.message.attempt`.
    Attempt,
    /// A link to the `traceparent` it holds, with this `tracehop.link.relation`.
    Link(&'static str),
    /// A text attribute of this name.
    Text(&'static str),
}

fn add_text(attributes: &mut SpanAttributes, key: &'static str, value: &[u8]) {
    if let Ok(text) = std::str::from_utf8(value) {
        attributes.push(key, Value::from(text.to_owned()));
    }
}

fn push_link(links: &mut Vec<Link>, traceparent: &[u8], relation: &'static str) {
    if let Some(span_context) = span_context_of(traceparent) {
        links.push(Link::with_context(span_context).with_relation(relation));
    }
}

/// A link with its [`LINK_RELATION_ATTRIBUTE`].
trait WithRelation {
    fn with_relation(self, relation: &'static str) -> Self;
}

impl WithRelation for Link {
    fn with_relation(mut self, relation: &'static str) -> Self {
        self.attributes.push(KeyValue::new(LINK_RELATION_ATTRIBUTE, relation));
        self
    }
}

/// The remote span context a valid `traceparent` names.
fn span_context_of(traceparent: &[u8]) -> Option<SpanContext> {
    let text = std::str::from_utf8(traceparent).ok()?.trim();
    crate::w3c::validate_traceparent(text).ok()?;
    let mut fields = text.split('-').skip(1);
    let trace_id = u128::from_str_radix(fields.next()?, 16).ok()?;
    let span_id = u64::from_str_radix(fields.next()?, 16).ok()?;
    let flags = u8::from_str_radix(fields.next()?.get(..2)?, 16).ok()?;
    Some(SpanContext::new(
        trace_id.into(),
        span_id.into(),
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    ))
}

/// The `traceparent` of `span_context`, when it is valid; written digit by digit, as `format!` costs several
/// times as much on every retry.
fn traceparent_of(span_context: &SpanContext) -> Option<String> {
    fn push_hex(text: &mut String, value: u128, digits: u32) {
        for digit in (0..digits).rev() {
            text.push(char::from(b"0123456789abcdef"[((value >> (digit * 4)) & 0xf) as usize]));
        }
    }
    if !span_context.is_valid() {
        return None;
    }
    let mut text = String::with_capacity(55);
    text.push_str("00-");
    push_hex(&mut text, u128::from_be_bytes(span_context.trace_id().to_bytes()), 32);
    text.push('-');
    push_hex(&mut text, u128::from(u64::from_be_bytes(span_context.span_id().to_bytes())), 16);
    text.push('-');
    push_hex(&mut text, u128::from(span_context.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()), 2);
    Some(text)
}

/// A consumed message republished (to retry it, or to dead-letter it) while its span runs: the span's context,
/// the headers the republished message gets beyond the consumed message's own, and which of those it drops.
/// The broker's `lineage.rs` copies the consumed message's headers that [`Republication::keeps`], adds
/// [`Republication::headers`], publishes inside [`Republication::run`].
pub(crate) struct Republication {
    /// The context holding the republish's span.
    context: Context,
    /// The trace headers the propagator wrote for the span, then the lineage headers.
    headers: Vec<(Cow<'static, str>, String)>,
    /// The handler's own attempt header, which a retry rewrites.
    attempt_header: Option<&'static str>,
    /// Its metrics (feature `metrics`), as a publish's or a settle's.
    measurement: Measurement,
    /// What it counts as `messaging.client.sent.messages`: 1 for a retry, 0 for a dead letter (a settle).
    sent: u32,
}

impl Republication {
    fn new(context: Context, attempt_header: Option<&'static str>, measurement: Measurement, sent: u32) -> Self {
        let mut republication =
            Republication { context, headers: Vec::with_capacity(8), attempt_header, measurement, sent };
        let context = republication.context.clone();
        propagate(&context, &mut TraceHeaders(&mut republication.headers));
        republication
    }

    /// Whether the republished message keeps the consumed message's header `name`: not the trace headers (W3C's
    /// and whatever the installed propagator writes: replaced, never repeated), not tracehop's lineage headers
    /// and not the attempt header (rewritten).
    pub(crate) fn keeps(&self, name: &str) -> bool {
        !(matches!(name, TRACEPARENT_HEADER | TRACESTATE_HEADER | BAGGAGE_HEADER)
            || is_lineage_header(name)
            || self.attempt_header == Some(name)
            || self.headers.iter().any(|(written, _)| written.eq_ignore_ascii_case(name)))
    }

    /// The headers the republished message gets beyond the kept ones: its trace context and its lineage.
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers.iter().map(|(name, value)| (name.as_ref(), value.as_str()))
    }

    fn push(&mut self, name: &'static str, value: String) {
        self.headers.push((Cow::Borrowed(name), value));
    }

    /// Awaits the publish `publish` with the republish's span current and records the error `failure` finds in
    /// its result (its type and message) on the span; the result is returned as it came. The span ends when the
    /// republication is dropped: here, or wherever the publish stops (a dropped future, a panic).
    pub(crate) async fn run<T>(
        mut self,
        publish: impl Future<Output = T>,
        failure: impl FnOnce(&T) -> Option<(&'static str, &dyn Display)>,
    ) -> T {
        use opentelemetry::trace::FutureExt;
        let result = publish.with_context(self.context.clone()).await;
        if let Some((error_type, error)) = failure(&result) {
            self.measurement.fail(error_type);
            crate::span::mark_failed(&self.context.span(), error_type, error);
        }
        self.measurement.finish(self.sent);
        result
    }
}

impl Drop for Republication {
    fn drop(&mut self) {
        self.context.span().end();
    }
}

/// The trace headers the propagator writes for a republish, collected before the broker's record exists.
struct TraceHeaders<'a>(&'a mut Vec<(Cow<'static, str>, String)>);

impl MessageFacts for TraceHeaders<'_> {
    fn system(&self) -> crate::MessagingSystem {
        crate::MessagingSystem::Other("")
    }
    fn destination(&self) -> Option<&str> {
        None
    }
    fn record_attributes(&self, _attributes: &mut SpanAttributes) {}
}

impl PublishedMessage for TraceHeaders<'_> {
    fn set_header(&mut self, key: &str, value: &str) {
        let name = match key {
            TRACEPARENT_HEADER => Cow::Borrowed(TRACEPARENT_HEADER),
            TRACESTATE_HEADER => Cow::Borrowed(TRACESTATE_HEADER),
            BAGGAGE_HEADER => Cow::Borrowed(BAGGAGE_HEADER),
            other => Cow::Owned(other.to_owned()),
        };
        match self.0.iter_mut().find(|(written, _)| *written == name) {
            Some((_, written)) => value.clone_into(written),
            None => self.0.push((name, value.to_owned())),
        }
    }
}

/// The span context of the consumer span a republish comes from: the one given, else the current span's.
fn consumer_span_context(consumer: Option<&Context>) -> (Context, SpanContext) {
    let parent = consumer.cloned().unwrap_or_else(Context::current);
    let span_context = parent.span().span_context().clone();
    (parent, span_context)
}

/// What a republish reads of the consumed message's headers, in one pass: the attempt header's value, and the
/// candidates for its first `traceparent`.
struct Consumed<'h> {
    attempt: Option<&'h [u8]>,
    first: Option<&'h [u8]>,
    own: Option<&'h [u8]>,
}

impl<'h> Consumed<'h> {
    fn read(headers: impl Iterator<Item = (&'h str, Option<&'h [u8]>)>, attempt_header: &str) -> Self {
        let mut consumed = Consumed { attempt: None, first: None, own: None };
        for (name, value) in headers {
            let slot = match name {
                FIRST_CONTEXT_HEADER => &mut consumed.first,
                TRACEPARENT_HEADER => &mut consumed.own,
                _ if name == attempt_header => &mut consumed.attempt,
                _ => continue,
            };
            if slot.is_none() {
                *slot = value;
            }
        }
        consumed
    }

    /// The message's first `traceparent`: its [`FIRST_CONTEXT_HEADER`] when it was retried before, else its own
    /// `traceparent`, when valid. Checked, not decoded: only a recorded span links to it.
    fn first_traceparent(&self) -> Option<&'h str> {
        [self.first, self.own].into_iter().flatten().find_map(|value| {
            let text = std::str::from_utf8(value).ok()?.trim();
            crate::w3c::validate_traceparent(text).ok()?;
            Some(text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_names_a_remote_span_context_and_back() {
        let span_context = span_context_of(TRACEPARENT.as_bytes()).expect("a valid traceparent");
        assert!(span_context.is_remote());
        assert!(span_context.is_sampled());
        assert_eq!(traceparent_of(&span_context).as_deref(), Some(TRACEPARENT));
        assert_eq!(span_context_of(b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"), None);
        assert_eq!(span_context_of(b"garbage"), None);
        assert_eq!(traceparent_of(&SpanContext::empty_context()), None);
    }

    #[test]
    fn the_first_context_is_the_one_kept_before_the_messages_own() {
        let later = "00-11111111111111111111111111111111-2222222222222222-01";
        let headers =
            [(TRACEPARENT_HEADER, Some(later.as_bytes())), (FIRST_CONTEXT_HEADER, Some(TRACEPARENT.as_bytes()))];
        assert_eq!(Consumed::read(headers.into_iter(), ATTEMPT_HEADER).first_traceparent(), Some(TRACEPARENT));
        let own = [(TRACEPARENT_HEADER, Some(later.as_bytes()))];
        assert_eq!(Consumed::read(own.into_iter(), ATTEMPT_HEADER).first_traceparent(), Some(later));
        let broken = [(FIRST_CONTEXT_HEADER, Some(&b"broken"[..])), (TRACEPARENT_HEADER, Some(later.as_bytes()))];
        assert_eq!(Consumed::read(broken.into_iter(), ATTEMPT_HEADER).first_traceparent(), Some(later));
        let attempt = [("x-retry", Some(&b"3"[..])), (ATTEMPT_HEADER, Some(&b"9"[..]))];
        assert_eq!(Consumed::read(attempt.into_iter(), "x-retry").attempt, Some(&b"3"[..]));
    }

    /// A message of a made-up broker: its headers, in order.
    struct Frame(Vec<(&'static str, &'static [u8])>);

    impl MessageFacts for Frame {
        fn system(&self) -> crate::MessagingSystem {
            crate::MessagingSystem::Other("frames")
        }
        fn destination(&self) -> Option<&str> {
            None
        }
        fn record_attributes(&self, _attributes: &mut SpanAttributes) {}
    }

    impl crate::ConsumedMessage for Frame {
        fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
            self.0.iter().map(|(name, value)| (*name, Some(*value)))
        }
    }

    #[test]
    fn the_traceparent_scan_notices_a_lineage_header_for_the_span_start_that_follows() {
        crate::install_propagator();
        let ordinary = Frame(vec![("traceparent", TRACEPARENT.as_bytes()), ("x-tenant", &b"acme"[..])]);
        let crate::IncomingContext::Continued(context, _) = crate::extract_context(&ordinary) else { panic!() };
        assert_eq!(crate::w3c::scanned_lineage(context.span().span_context()), Some(false));

        let retried = Frame(vec![("tracehop-attempt", &b"2"[..]), ("traceparent", TRACEPARENT.as_bytes())]);
        let crate::IncomingContext::Continued(context, _) = crate::extract_context(&retried) else { panic!() };
        assert_eq!(crate::w3c::scanned_lineage(context.span().span_context()), Some(true));

        let other = span_context_of(b"00-11111111111111111111111111111111-2222222222222222-01").expect("valid");
        assert_eq!(crate::w3c::scanned_lineage(&other), None, "another message's: not known, so looked at");
    }

    #[test]
    fn a_repeated_lineage_header_is_read_once_at_its_first_occurrence() {
        static HANDLER: Handler = Handler::consumer("lineage::tests::repeated");
        crate::install_propagator();
        let previous = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01";
        let ignored = "00-0af7651916cd43dd8448eb211c80319c-1111111111111111-01";
        let repeated = Frame(vec![
            ("traceparent", TRACEPARENT.as_bytes()),
            (ATTEMPT_HEADER, &b"2"[..]),
            (ATTEMPT_HEADER, &b"7"[..]),
            (PREVIOUS_ATTEMPT_HEADER, previous.as_bytes()),
            (PREVIOUS_ATTEMPT_HEADER, ignored.as_bytes()),
            (PREVIOUS_ATTEMPT_HEADER, ignored.as_bytes()),
            (DEAD_LETTER_ORIGIN_HEADER, &b"payments"[..]),
            (DEAD_LETTER_ORIGIN_HEADER, &b"elsewhere"[..]),
            ("tracehop-dead-letter-offset", &b"3"[..]),
            ("tracehop-dead-letter-offset", &b"4"[..]),
        ]);
        let crate::IncomingContext::Continued(context, _) = crate::extract_context(&repeated) else { panic!() };
        let (mut attributes, mut links) = (SpanAttributes::with_capacity(4), Vec::new());
        record_lineage(&HANDLER, Some(&context), Some(&repeated), &mut attributes, &mut links);

        assert_eq!(
            attributes.into_inner(),
            vec![
                KeyValue::new(ATTEMPT_ATTRIBUTE, 2_i64),
                KeyValue::new(DEAD_LETTER_ORIGIN_ATTRIBUTE, "payments"),
                KeyValue::new("tracehop.dead_letter.origin.offset", "3"),
            ]
        );
        let linked: Vec<String> = links.iter().map(|link| link.span_context.span_id().to_string()).collect();
        assert_eq!(linked, vec!["00f067aa0ba902b7"]);
    }

    #[test]
    fn each_coordinate_has_a_header_and_an_attribute_of_its_own() {
        for coordinate in Coordinate::ALL {
            assert!(is_lineage_header(coordinate.header()));
            assert!(coordinate.attribute().starts_with("tracehop.dead_letter.origin."));
            assert_eq!(Coordinate::of_header(coordinate.header()), Some(coordinate));
        }
    }
}
