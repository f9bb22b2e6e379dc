//! A retry republish: the consumed message again, to a retry destination, one attempt later, in a PRODUCER span
//! that is a child of the failed CONSUMER span and linked to the message's first creation.

use opentelemetry::trace::{Span, TraceContextExt};
use opentelemetry::{Context, KeyValue};

use super::{
    consumer_span_context, span_context_of, traceparent_of, Consumed, Republication, ATTEMPT_HEADER,
    FIRST_CONTEXT_HEADER, FIRST_CREATION, LINK_RELATION_ATTRIBUTE, PREVIOUS_ATTEMPT_HEADER,
};
use crate::carrier::ConsumedMessage;
use crate::consumer_extras::{whole_number, ATTEMPT_ATTRIBUTE};
use crate::conventions::Operation;
use crate::handler::Handler;
use crate::metrics::Measurement;
use crate::span::MessagingSpan;

/// How a retry is republished: from which consumer span, and under which attempt header. Given to each broker's
/// `retry` (`tracehop::clients::kafka::retry`, `tracehop::clients::rabbitmq::retry`,
/// `tracehop::clients::nats::retry`, `tracehop::clients::nats::retry_jetstream`), which republishes the consumed
/// message with its own body and headers, and:
///
/// - the attempt number one more than the consumed message's, in the attempt header: the handler's own
///   ([`Republish::attempt_header`], the name given to its `attempt_header` option) or else
///   [`ATTEMPT_HEADER`](super::ATTEMPT_HEADER) (a message without it is attempt 1, so the first retry is 2);
/// - the trace headers replaced, never repeated: the consumed message's `traceparent`, `tracestate`, `baggage`
///   (and whatever else the installed propagator writes) are left out and the retry's own written;
/// - the message's first `traceparent` ([`FIRST_CONTEXT_HEADER`](super::FIRST_CONTEXT_HEADER)), kept unchanged
///   from the first retry on, and the failed consumer span's ([`PREVIOUS_ATTEMPT_HEADER`](super::PREVIOUS_ATTEMPT_HEADER)).
///
/// The republish runs in a PRODUCER span named `send {retry destination}`, a child of the failed CONSUMER span
/// (the current span, or the one given with [`Republish::consumer_span`]), linked to the first creation
/// ([`LINK_RELATION_ATTRIBUTE`](super::LINK_RELATION_ATTRIBUTE) `first_creation`), with the messaging attributes
/// and `tracehop.message.attempt`. The retry's CONSUMER span, traced as any other, is that span's child, so the
/// attempts of one message read as one trace, each a descendant of the one before; it records
/// `tracehop.message.attempt` and links the attempt before. A failed publish is recorded on the span (status
/// Error, `error.type`, an `exception` event) and its error returned unchanged. The consumed message is not
/// settled: acknowledge or commit it after the retry is published, as you decide.
///
/// ```no_run
/// # #[cfg(feature = "kafka")] mod example {
/// use std::time::Duration;
/// use rdkafka::message::BorrowedMessage;
/// use rdkafka::producer::FutureProducer;
/// use tracehop::clients::kafka;
/// use tracehop::Republish;
///
/// #[tracehop::traced_consumer(group = "payments")]
/// async fn charge(producer: &FutureProducer, message: &BorrowedMessage<'_>) -> Result<(), String> {
///     let failure = "card declined".to_owned(); // the handler's work failed
///     kafka::retry(producer, message, "payments.retry", Republish::new(), Duration::from_secs(5))
///         .await
///         .map_err(|(error, _)| error.to_string())?;
///     Err(failure)
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Republish<'a> {
    consumer: Option<&'a Context>,
    attempt_header: Option<&'static str>,
}

impl<'a> Republish<'a> {
    /// A retry of the message whose CONSUMER span is current, its attempt in
    /// [`ATTEMPT_HEADER`](super::ATTEMPT_HEADER).
    pub const fn new() -> Self {
        Republish { consumer: None, attempt_header: None }
    }

    /// A retry made outside the handler, where its span is not current: `consumer` holds the failed CONSUMER
    /// span ([`MessageSpan::context`](crate::MessageSpan::context), kept after the span ended).
    pub const fn consumer_span(mut self, consumer: &'a Context) -> Self {
        self.consumer = Some(consumer);
        self
    }

    /// The header the attempt is counted in, for a handler that names its own (its `attempt_header` option,
    /// [`Handler::attempt_header`](crate::Handler::attempt_header)): give the same name, so its spans read the
    /// attempt where the retry writes it.
    pub const fn attempt_header(mut self, header: &'static str) -> Self {
        self.attempt_header = Some(header);
        self
    }

    /// Which attempt the consumed `message` is, as this republish counts: the whole number in its attempt header
    /// (decimal text, or a 4- or 8-byte big-endian integer), 1 without one. Its retry is the next.
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] mod example {
    /// use std::time::Duration;
    /// use rdkafka::message::BorrowedMessage;
    /// use rdkafka::producer::FutureProducer;
    /// use tracehop::clients::kafka;
    /// use tracehop::{DeadLetter, Republish};
    ///
    /// async fn retry_or_give_up(producer: &FutureProducer, message: &BorrowedMessage<'_>) {
    ///     let republish = Republish::new();
    ///     let timeout = Duration::from_secs(5);
    ///     let published = if republish.attempt_of(message) < 3 {
    ///         kafka::retry(producer, message, "payments.retry", republish, timeout).await
    ///     } else {
    ///         kafka::dead_letter(producer, message, "payments.dlq", DeadLetter::new("CardDeclined"), timeout).await
    ///     };
    /// }
    /// # }
    /// ```
    pub fn attempt_of<M: ConsumedMessage + ?Sized>(&self, message: &M) -> i64 {
        let header = self.attempt_header.unwrap_or(ATTEMPT_HEADER);
        Consumed::read(message.headers(), header).attempt.and_then(whole_number).unwrap_or(1)
    }
}

/// The handler retry metrics are attributed to (feature `metrics`).
static RETRY: Handler = Handler::producer("tracehop::retry");

/// Starts the PRODUCER span of retrying `message` to `destination` (with `routing_key`, for the brokers that
/// route by one) and prepares the retry's headers.
pub(crate) fn start_retry<M: ConsumedMessage + ?Sized>(
    message: &M,
    destination: &str,
    routing_key: Option<&str>,
    republish: &Republish<'_>,
) -> Republication {
    let (parent, failed) = consumer_span_context(republish.consumer);
    let attempt_header = republish.attempt_header.unwrap_or(ATTEMPT_HEADER);
    let consumed = Consumed::read(message.headers(), attempt_header);
    // The same count as `Republish::attempt_of`, from the same pass that finds the first creation.
    let attempt = consumed.attempt.and_then(whole_number).unwrap_or(1).saturating_add(1);
    let first = consumed.first_traceparent();

    let system = message.system();
    let measurement = Measurement::begin(&RETRY, Operation::Send, Some(system), Some(destination), None);
    let (mut span, attributes) = MessagingSpan::new(Operation::Send, Some(system), Some(destination)).start(&parent);
    if let Some(mut attributes) = attributes {
        if let Some(first) = first.and_then(|first| span_context_of(first.as_bytes())) {
            span.add_link(first, vec![KeyValue::new(LINK_RELATION_ATTRIBUTE, FIRST_CREATION)]);
        }
        attributes.add(ATTEMPT_ATTRIBUTE, attempt);
        let routing_key = routing_key.filter(|key| !key.is_empty());
        if let (Some(attribute), Some(routing_key)) = (system.routing_key_attribute(), routing_key) {
            attributes.add(attribute, routing_key);
        }
        span.set_attributes(attributes.into_inner());
    }

    let mut republication = Republication::new(parent.with_span(span), republish.attempt_header, measurement, 1);
    republication.headers.push((attempt_header.into(), attempt.to_string()));
    if let Some(first) = first {
        republication.push(FIRST_CONTEXT_HEADER, first.to_owned());
    }
    if let Some(failed) = traceparent_of(&failed) {
        republication.push(PREVIOUS_ATTEMPT_HEADER, failed);
    }
    republication
}
