//! Message headers as OpenTelemetry carriers: one mechanism for every broker.
//!
//! A broker takes part by implementing two small traits: [`ConsumedMessage`] (read headers, describe the
//! message) for what it delivers and [`PublishedMessage`] (write headers, describe the message) for what it
//! sends. Extraction, strict validation, injection and the spans are written once, on top of them.

use std::borrow::Cow;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{global, Context};

use crate::attributes::SpanAttributes;
use crate::brokers::MessagingSystem;
use crate::injections::count_injection;
use crate::w3c::{
    ContextRejection, TraceHeaders, Trimmed, Trims, BAGGAGE_HEADER, TRACEPARENT_HEADER, TRACESTATE_HEADER,
};

/// What a message says about itself on its span, whichever way it travels.
pub trait MessageFacts {
    /// The broker the message travels through.
    fn system(&self) -> MessagingSystem;

    /// The destination the message was sent to (a Kafka topic, an AMQP exchange), when the message knows it.
    fn destination(&self) -> Option<&str>;

    /// Adds the broker-specific semantic-convention attributes of this message (partition, offset, key, body
    /// size, ids). Called only for spans that are recorded, so it may allocate.
    fn record_attributes(&self, attributes: &mut SpanAttributes);

    /// Adds the attributes that tell this message apart in a batch span's link to it (partition and offset, or
    /// message id and delivery tag). None by default.
    fn record_identity(&self, _attributes: &mut SpanAttributes) {}

    /// The message's own time (its Kafka timestamp, its AMQP `timestamp` property) in milliseconds since the
    /// Unix epoch, when it carries one. None by default.
    fn timestamp_millis(&self) -> Option<i64> {
        None
    }

    /// The consumer group the message was delivered to, when the message itself says (a JetStream consumer's
    /// name); a handler's own `group` comes first. None by default.
    fn consumer_group(&self) -> Option<&str> {
        None
    }
}

crate::brokers::with_broker_notes! { reads,
    message = "`{Self}` is not a message tracehop can read the trace context from",
    label = "tracehop cannot read headers from this type",
    note = "by value or by reference; for another type, implement `tracehop::ConsumedMessage`";
/// A message tracehop can read the trace context from.
///
/// Implemented for rdkafka's `BorrowedMessage` and `OwnedMessage` (feature `kafka`), lapin's `Delivery`
/// (feature `rabbitmq`) and async-nats's `Message` and `jetstream::Message` (feature `nats`). To trace another
/// broker, implement this trait and [`MessageFacts`] for its message type; nothing else changes.
///
/// ```
/// use tracehop::{ConsumedMessage, MessageFacts, MessagingSystem, SpanAttributes};
///
/// struct Frame { topic: String, headers: Vec<(String, Vec<u8>)> }
///
/// impl MessageFacts for Frame {
///     fn system(&self) -> MessagingSystem { MessagingSystem::Other("frames") }
///     fn destination(&self) -> Option<&str> { Some(&self.topic) }
///     fn record_attributes(&self, _attributes: &mut SpanAttributes) {}
/// }
///
/// impl ConsumedMessage for Frame {
///     fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
///         self.headers.iter().map(|(key, value)| (key.as_str(), Some(value.as_slice())))
///     }
/// }
/// ```
pub trait ConsumedMessage: MessageFacts {
    /// Every header of the message in the order it arrived, with its value as raw bytes, or `None` for a value
    /// that is not bytes: a null Kafka value, an AMQP value that is not a string or byte array. A header whose
    /// name cannot be read as UTF-8 is left out: it can be no trace header.
    fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_;

    /// The headers tracehop reads a message's trace context from, once per message: at least every header
    /// named `traceparent`, `tracestate`, `baggage` or `tracehop-*` that [`headers`](Self::headers) yields, in
    /// the same order and with the same values; others may be left out. By default, [`headers`](Self::headers).
    /// A carrier whose header names arrive as bytes (Kafka's) compares them before any UTF-8 check.
    fn trace_headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        self.headers()
    }
}
}

crate::brokers::with_broker_notes! { writes,
    message = "`{Self}` is not an outgoing message tracehop can write the trace context into",
    label = "tracehop cannot write headers into this type",
    note = "for another type, implement `tracehop::PublishedMessage`";
/// A message about to be published, whose headers tracehop writes the trace context into.
///
/// Implemented for rdkafka's `FutureRecord` and `BaseRecord` (feature `kafka`), lapin's `BasicProperties`
/// (feature `rabbitmq`) and async-nats's `HeaderMap` (feature `nats`).
pub trait PublishedMessage: MessageFacts {
    /// Sets one header of the outgoing message, replacing any header of the same key: a record built from a
    /// consumed message's headers must not carry the old `traceparent` beside the new one.
    fn set_header(&mut self, key: &str, value: &str);
}
}

/// A reference to a message says what the message says.
macro_rules! facts_through_reference {
    ($($reference:ty),*) => {$(
        impl<M: MessageFacts + ?Sized> MessageFacts for $reference {
            fn system(&self) -> MessagingSystem {
                (**self).system()
            }
            fn destination(&self) -> Option<&str> {
                (**self).destination()
            }
            fn record_attributes(&self, attributes: &mut SpanAttributes) {
                (**self).record_attributes(attributes)
            }
            fn record_identity(&self, attributes: &mut SpanAttributes) {
                (**self).record_identity(attributes)
            }
            fn timestamp_millis(&self) -> Option<i64> {
                (**self).timestamp_millis()
            }
            fn consumer_group(&self) -> Option<&str> {
                (**self).consumer_group()
            }
        }
    )*};
}

facts_through_reference!(&M, &mut M);

impl<M: ConsumedMessage + ?Sized> ConsumedMessage for &M {
    fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        (**self).headers()
    }
    fn trace_headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        (**self).trace_headers()
    }
}

impl<M: PublishedMessage + ?Sized> PublishedMessage for &mut M {
    fn set_header(&mut self, key: &str, value: &str) {
        (**self).set_header(key, value)
    }
}

/// The trace context an incoming message carried, after validation.
#[derive(Clone, Debug)]
pub enum IncomingContext {
    /// A valid producer context (with the baggage, when a baggage propagator is installed): the consumer span
    /// continues its trace. The [`Trims`] say what of its `tracestate` and `baggage` was left out.
    Continued(Context, Trims),
    /// No usable context: the consumer span starts a new trace and records why.
    NewRoot(ContextRejection),
}

/// Reads the trace context of `message` with the globally installed propagator, after checking the W3C
/// headers strictly, in one pass over the headers.
///
/// Rules, in order: several `traceparent` headers are rejected as ambiguous
/// ([`ContextRejection::DuplicateTraceparent`]); a `traceparent` must be UTF-8 and pass
/// [`validate_traceparent`](crate::validate_traceparent); a `tracestate` ([`trim_tracestate`](crate::trim_tracestate)) and a `baggage`
/// ([`trim_baggage`](crate::trim_baggage)) lose only their malformed or excess members, and the trace continues. A message without
/// `traceparent` is still offered to the propagator, so a user-installed non-W3C propagator (B3, Jaeger)
/// keeps working. Header names match exactly (see [`TRACEPARENT_HEADER`](crate::TRACEPARENT_HEADER)). Never panics and never logs above
/// `debug`.
pub fn extract_context<M: ConsumedMessage + ?Sized>(message: &M) -> IncomingContext {
    let carrier = match HeaderExtractor::checked(message) {
        Ok(carrier) => carrier,
        Err(rejection) => {
            tracing::debug!(reason = rejection.as_str(), "tracehop: incoming trace context not continued");
            return IncomingContext::NewRoot(rejection);
        }
    };
    // From an empty context, not the current one: a message without context must not continue whatever span
    // (or baggage) happens to be current where the handler is called.
    let context =
        global::get_text_map_propagator(|propagator| propagator.extract_with_context(&Context::new(), &carrier));
    if context.span().span_context().is_valid() {
        if let Some(reason) = carrier.trims.tracestate {
            tracing::debug!(reason = reason.as_str(), "tracehop: incoming tracestate trimmed");
        }
        if let Some(reason) = carrier.trims.baggage {
            tracing::debug!(reason = reason.as_str(), "tracehop: incoming baggage trimmed");
        }
        IncomingContext::Continued(context, carrier.trims)
    } else {
        let rejection =
            if carrier.has_traceparent { ContextRejection::PropagatorRejected } else { ContextRejection::Missing };
        tracing::debug!(reason = rejection.as_str(), "tracehop: incoming trace context not continued");
        IncomingContext::NewRoot(rejection)
    }
}

/// Whether a message carries a context to continue, as cheaply as it can be told: a valid W3C `traceparent`
/// answers at once (no `Context` is built); without one, the propagator is asked, as [`extract_context`] does,
/// so other propagators' headers still count. A valid `traceparent` that a user's propagator ignores counts too.
pub(crate) fn carries_context<M: ConsumedMessage + ?Sized>(message: &M) -> bool {
    match TraceHeaders::scan(message.trace_headers()).has_valid_traceparent() {
        Ok(true) => true,
        Err(_) => false,
        Ok(false) => matches!(extract_context(message), IncomingContext::Continued(..)),
    }
}

/// Reads a message's headers for an OpenTelemetry propagator. The W3C headers are found in one pass when the
/// extractor is made and served as tracehop passes them on: a `traceparent` only when valid (its 55
/// characters of fields), a `tracestate` and a `baggage` trimmed of their malformed or excess members
/// ([`trim_tracestate`](crate::trim_tracestate), [`trim_baggage`](crate::trim_baggage)). Any other key is looked up among the headers: its first header,
/// when its value is UTF-8.
pub struct HeaderExtractor<'a, M: ?Sized> {
    message: &'a M,
    has_traceparent: bool,
    traceparent: Option<&'a str>,
    tracestate: Option<Cow<'a, str>>,
    baggage: Option<Cow<'a, str>>,
    trims: Trims,
}

impl<'a, M: ConsumedMessage + ?Sized> HeaderExtractor<'a, M> {
    /// An extractor reading `message`'s headers. A `traceparent` that breaks the W3C rules is not served.
    pub fn new(message: &'a M) -> Self {
        let headers = TraceHeaders::scan(message.trace_headers());
        let traceparent = headers.traceparent().ok().flatten();
        Self::serving(message, &headers, traceparent)
    }

    /// The extractor, or why the message's `traceparent` cannot be continued.
    fn checked(message: &'a M) -> Result<Self, ContextRejection> {
        let headers = TraceHeaders::scan(message.trace_headers());
        let traceparent = headers.traceparent()?;
        Ok(Self::serving(message, &headers, traceparent))
    }

    fn serving(message: &'a M, headers: &TraceHeaders<'a>, traceparent: Option<&'a str>) -> Self {
        // W3C: a `tracestate` means nothing without a valid `traceparent`, and is not read.
        let tracestate = traceparent.and_then(|_| headers.tracestate(|| message.trace_headers()));
        let baggage = headers.baggage();
        let trims = Trims {
            tracestate: tracestate.as_ref().and_then(Trimmed::reason),
            baggage: baggage.as_ref().and_then(Trimmed::reason),
        };
        Self {
            message,
            has_traceparent: headers.has_traceparent(),
            traceparent,
            tracestate: tracestate.and_then(Trimmed::into_value),
            baggage: baggage.and_then(Trimmed::into_value),
            trims,
        }
    }
}

impl<M: ConsumedMessage + ?Sized> Extractor for HeaderExtractor<'_, M> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT_HEADER => self.traceparent,
            TRACESTATE_HEADER => self.tracestate.as_deref(),
            BAGGAGE_HEADER => self.baggage.as_deref(),
            _ => {
                let (_, value) = self.message.headers().find(|(header, _)| *header == key)?;
                std::str::from_utf8(value?).ok()
            }
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.message.headers().map(|(key, _)| key).collect()
    }
}

/// Writes an OpenTelemetry propagator's fields into an outgoing message's headers.
pub struct HeaderInjector<'a, M: ?Sized> {
    message: &'a mut M,
    written: u32,
}

impl<'a, M: PublishedMessage + ?Sized> HeaderInjector<'a, M> {
    /// An injector writing into `message`.
    pub fn new(message: &'a mut M) -> Self {
        Self { message, written: 0 }
    }
}

impl<M: PublishedMessage + ?Sized> Injector for HeaderInjector<'_, M> {
    fn set(&mut self, key: &str, value: String) {
        self.message.set_header(key, &value);
        self.written += 1;
    }
}

/// Writes the trace context of `context` into `message`'s headers with the globally installed propagator.
///
/// Producer spans started by `#[traced_producer]` or [`MessageSpan::producer`](crate::MessageSpan::producer)
/// notice this call when it happens while they are current; one that ends with no injection is reported.
pub fn inject_context<M: PublishedMessage + ?Sized>(context: &Context, message: &mut M) {
    if propagate(context, message) {
        count_injection();
    }
}

/// Writes `context` into `message` without counting it for the current producer scope; true when the
/// propagator wrote at least one header.
pub(crate) fn propagate<M: PublishedMessage + ?Sized>(context: &Context, message: &mut M) -> bool {
    let mut injector = HeaderInjector { message, written: 0 };
    global::get_text_map_propagator(|propagator| propagator.inject_context(context, &mut injector));
    injector.written > 0
}

/// Writes the current trace context into `message`'s headers; see [`inject_context`].
///
/// ```no_run
/// # #[cfg(feature = "kafka")] {
/// use rdkafka::producer::FutureRecord;
///
/// let mut record: FutureRecord<'_, str, str> = FutureRecord::to("orders").payload("{}");
/// tracehop::inject_current_context(&mut record);
/// # }
/// ```
pub fn inject_current_context<M: PublishedMessage + ?Sized>(message: &mut M) {
    inject_context(&Context::current(), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceId;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// A message of a made-up broker: its headers, in order.
    struct Frame(Vec<(&'static str, Option<&'static [u8]>)>);

    impl MessageFacts for Frame {
        fn system(&self) -> MessagingSystem {
            MessagingSystem::Other("frames")
        }
        fn destination(&self) -> Option<&str> {
            None
        }
        fn record_attributes(&self, _attributes: &mut SpanAttributes) {}
    }

    impl ConsumedMessage for Frame {
        fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
            self.0.iter().copied()
        }
    }

    /// A record of the made-up broker: what was written into it, in order.
    #[derive(Default)]
    struct Outgoing(Vec<(String, String)>);

    impl MessageFacts for Outgoing {
        fn system(&self) -> MessagingSystem {
            MessagingSystem::Other("frames")
        }
        fn destination(&self) -> Option<&str> {
            None
        }
        fn record_attributes(&self, _attributes: &mut SpanAttributes) {}
    }

    impl PublishedMessage for Outgoing {
        fn set_header(&mut self, key: &str, value: &str) {
            self.0.retain(|(existing, _)| existing != key);
            self.0.push((key.to_owned(), value.to_owned()));
        }
    }

    #[test]
    fn a_message_read_through_a_reference_is_read_whole() {
        crate::install_propagator();
        let frame = Frame(vec![("traceparent", Some(TRACEPARENT.as_bytes()))]);
        let IncomingContext::Continued(context, trims) = extract_context(&&frame) else {
            panic!("the context of a message behind a reference is continued");
        };
        assert_eq!(context.span().span_context().trace_id(), TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736));
        assert_eq!(trims, Trims::default());
        assert_eq!(frame.timestamp_millis(), None, "no timestamp unless the broker has one");
    }

    #[test]
    fn a_message_carries_a_context_exactly_when_its_traceparent_is_valid() {
        crate::install_propagator();
        assert!(carries_context(&Frame(vec![("traceparent", Some(TRACEPARENT.as_bytes()))])));
        let zero_trace_id = b"00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert!(!carries_context(&Frame(vec![("traceparent", Some(&zero_trace_id[..]))])), "an invalid one");
        assert!(!carries_context(&Frame(vec![("x-request-id", Some(b"7f3c"))])), "none, and no other header counts");
        assert!(!carries_context(&Frame(vec![])), "no headers at all");
    }

    #[test]
    fn the_extractor_serves_the_checked_trace_headers_and_looks_up_the_others() {
        let frame = Frame(vec![
            ("x-request-id", Some(b"7f3c")),
            ("traceparent", Some(TRACEPARENT.as_bytes())),
            ("tracestate", Some(b"congo=t61rcWkgMzE,Bad=1")),
            ("baggage", Some(b"tenant=acme,broken")),
            ("x-request-id", Some(b"second")),
            ("x-binary", Some(b"\xff")),
            ("x-null", None),
        ]);
        let extractor = HeaderExtractor::new(&frame);
        assert_eq!(extractor.get("traceparent"), Some(TRACEPARENT));
        assert_eq!(extractor.get("tracestate"), None, "discarded whole for its malformed member");
        assert_eq!(extractor.get("baggage"), Some("tenant=acme"), "trimmed of its malformed member");
        assert_eq!(extractor.get("x-request-id"), Some("7f3c"), "the first header of a key");
        assert_eq!(extractor.get("x-binary"), None, "not UTF-8");
        assert_eq!(extractor.get("x-null"), None);
        assert_eq!(extractor.get("absent"), None);
        assert_eq!(
            extractor.keys(),
            vec!["x-request-id", "traceparent", "tracestate", "baggage", "x-request-id", "x-binary", "x-null"]
        );
        let invalid = Frame(vec![("traceparent", Some(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"))]);
        assert_eq!(HeaderExtractor::new(&invalid).get("traceparent"), None, "an invalid traceparent is not served");
    }

    #[test]
    fn injection_writes_the_context_through_references_and_says_whether_it_wrote() {
        let context = crate::brokers::tests::producer_context();
        let mut record = Outgoing::default();
        assert!(propagate(&context, &mut &mut record));
        assert_eq!(
            record.0,
            vec![
                ("traceparent".to_owned(), TRACEPARENT.to_owned()),
                ("tracestate".to_owned(), "congo=t61rcWkgMzE".to_owned())
            ]
        );
        let mut untouched = Outgoing::default();
        assert!(!propagate(&Context::new(), &mut untouched), "no valid span: nothing to write");
        assert!(untouched.0.is_empty());
    }

    #[test]
    fn the_current_context_is_injected_on_request() {
        let _attached = crate::brokers::tests::producer_context().attach();
        let mut record = Outgoing::default();
        inject_current_context(&mut record);
        assert_eq!(record.0[0], ("traceparent".to_owned(), TRACEPARENT.to_owned()));
        let mut counted = Outgoing::default();
        inject_context(&Context::current(), &mut counted);
        assert_eq!(counted.0, record.0);
    }
}
