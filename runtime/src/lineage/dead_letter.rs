//! A dead-letter publish: the consumed message, given up on, to a dead-letter destination, in a settle span
//! linked to the failed processing, carrying where it came from and why.

use opentelemetry::trace::{Span, TraceContextExt};
use opentelemetry::{Context, KeyValue};

use super::{
    consumer_span_context, traceparent_of, Consumed, Coordinates, Republication, ATTEMPT_HEADER,
    DEAD_LETTER_DESTINATION_ATTRIBUTE, DEAD_LETTER_ERROR_TYPE_ATTRIBUTE, DEAD_LETTER_ERROR_TYPE_HEADER,
    DEAD_LETTER_ORIGIN_ATTRIBUTE, DEAD_LETTER_ORIGIN_HEADER, FAILED_PROCESS, FAILED_PROCESS_HEADER,
    FIRST_CONTEXT_HEADER, LINK_RELATION_ATTRIBUTE,
};
use crate::attributes::SpanAttributes;
use crate::carrier::ConsumedMessage;
use crate::conventions::{self as semconv, Operation};
use crate::handler::Handler;
use crate::metrics::Measurement;
use crate::settle::Settlement;
use crate::span::MessagingSpan;

// Named like the variants of an enum, which is how they read at the call site: `Settlement::DeadLetter`.
#[allow(non_upper_case_globals)]
impl Settlement {
    /// A message given up on and published to a dead-letter destination by its consumer: `dead_letter`.
    pub const DeadLetter: Settlement = Settlement::new("dead_letter");
}

/// Why a message is dead-lettered, and from which consumer span. Given to each broker's `dead_letter`
/// (`tracehop::clients::kafka::dead_letter`, `tracehop::clients::rabbitmq::dead_letter`,
/// `tracehop::clients::nats::dead_letter`, `tracehop::clients::nats::dead_letter_jetstream`), which publishes the
/// consumed message with its own body and headers (its trace headers replaced) to the dead-letter destination,
/// adding:
///
/// - the destination it was consumed from ([`DEAD_LETTER_ORIGIN_HEADER`](super::DEAD_LETTER_ORIGIN_HEADER)) and
///   where in it ([`Coordinate`](super::Coordinate)): partition and offset, routing key and delivery tag, stream
///   and sequence;
/// - the error type ([`DEAD_LETTER_ERROR_TYPE_HEADER`](super::DEAD_LETTER_ERROR_TYPE_HEADER));
/// - the failed CONSUMER span's `traceparent` ([`FAILED_PROCESS_HEADER`](super::FAILED_PROCESS_HEADER)) and the
///   message's first ([`FIRST_CONTEXT_HEADER`](super::FIRST_CONTEXT_HEADER)).
///
/// The publish runs in a settle span (kind CLIENT, `messaging.operation.type = settle`,
/// `messaging.operation.name = dead_letter`) named `dead_letter {origin}`, a child of the failed CONSUMER span
/// (the current span, or the one given with [`DeadLetter::failed_process`]) and linked to it
/// ([`LINK_RELATION_ATTRIBUTE`](super::LINK_RELATION_ATTRIBUTE) `failed_process`), recording the origin, its
/// coordinates, the error type and the dead-letter destination
/// ([`DEAD_LETTER_DESTINATION_ATTRIBUTE`](super::DEAD_LETTER_DESTINATION_ATTRIBUTE)). The dead-letter consumer's
/// span, traced as any other, continues that trace, links the failed processing and records the origin and the
/// error type. A failed publish is recorded on the span and its error returned unchanged. The consumed message
/// is not settled: acknowledge or commit it once the dead letter is published.
///
/// ```no_run
/// # #[cfg(feature = "rabbitmq")] mod example {
/// use lapin::message::Delivery;
/// use lapin::Channel;
/// use tracehop::clients::rabbitmq;
/// use tracehop::DeadLetter;
///
/// #[tracehop::traced_consumer(group = "payments")]
/// async fn charge(channel: &Channel, delivery: &Delivery) -> Result<(), lapin::Error> {
///     rabbitmq::dead_letter(channel, delivery, "payments.dlx", "payments", DeadLetter::new("CardDeclined")).await?;
///     rabbitmq::ack(delivery, Default::default()).await?;
///     Ok(())
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct DeadLetter<'a> {
    error_type: &'a str,
    failed_process: Option<&'a Context>,
}

impl<'a> DeadLetter<'a> {
    /// A dead letter of the message whose CONSUMER span is current, given up on for `error_type` (a short,
    /// low-cardinality name, as for `error.type`: `CardDeclined`, `timeout`).
    pub const fn new(error_type: &'a str) -> Self {
        DeadLetter { error_type, failed_process: None }
    }

    /// A dead letter made outside the handler, where its span is not current: `consumer` holds the failed
    /// CONSUMER span ([`MessageSpan::context`](crate::MessageSpan::context), kept after the span ended).
    pub const fn failed_process(mut self, consumer: &'a Context) -> Self {
        self.failed_process = Some(consumer);
        self
    }
}

/// The handler dead-letter metrics are attributed to (feature `metrics`), as settle metrics are.
static DEAD_LETTER: Handler = Handler::consumer("tracehop::dead_letter");

/// Starts the settle span of dead-lettering `message` to `destination` and prepares the dead letter's headers;
/// `coordinates` are the broker's, of where the message was.
pub(crate) fn start_dead_letter<M: ConsumedMessage + ?Sized>(
    message: &M,
    destination: &str,
    dead_letter: &DeadLetter<'_>,
    coordinates: Coordinates,
) -> Republication {
    let (parent, failed) = consumer_span_context(dead_letter.failed_process);
    let origin = message.destination();
    let system = message.system();
    let operation = Operation::Settle(Settlement::DeadLetter.operation_name());
    let measurement = Measurement::begin(&DEAD_LETTER, operation, Some(system), origin, None);
    let (mut span, attributes) = MessagingSpan::new(operation, Some(system), origin).start(&parent);
    if let Some(mut attributes) = attributes {
        if failed.is_valid() {
            span.add_link(failed.clone(), vec![KeyValue::new(LINK_RELATION_ATTRIBUTE, FAILED_PROCESS)]);
        }
        let mut identity = SpanAttributes::with_capacity(4);
        message.record_identity(&mut identity);
        let mut identity = identity.into_inner();
        // The origin is already described as the destination, and a broker's identity may repeat it.
        identity.retain(|attribute| attribute.key.as_str() != semconv::MESSAGING_DESTINATION_NAME);
        attributes.extend(identity);
        attributes.add(DEAD_LETTER_DESTINATION_ATTRIBUTE, destination);
        attributes.add(DEAD_LETTER_ORIGIN_ATTRIBUTE, origin);
        attributes.add(DEAD_LETTER_ERROR_TYPE_ATTRIBUTE, dead_letter.error_type);
        for (coordinate, value) in &coordinates {
            attributes.add(coordinate.attribute(), value.as_str());
        }
        span.set_attributes(attributes.into_inner());
    }

    let first = Consumed::read(message.headers(), ATTEMPT_HEADER).first_traceparent();
    let mut republication = Republication::new(parent.with_span(span), None, measurement, 0);
    if let Some(first) = first {
        republication.push(FIRST_CONTEXT_HEADER, first.to_owned());
    }
    if let Some(failed) = traceparent_of(&failed) {
        republication.push(FAILED_PROCESS_HEADER, failed);
    }
    if let Some(origin) = origin {
        republication.push(DEAD_LETTER_ORIGIN_HEADER, origin.to_owned());
    }
    republication.push(DEAD_LETTER_ERROR_TYPE_HEADER, dead_letter.error_type.to_owned());
    for (coordinate, value) in coordinates {
        republication.push(coordinate.header(), value);
    }
    republication
}
