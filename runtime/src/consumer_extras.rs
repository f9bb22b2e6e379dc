//! What a consumer span records about a delivery beyond the messaging conventions: how long the message waited
//! ([`AGE_ATTRIBUTE`]), which attempt this is ([`ATTEMPT_ATTRIBUTE`]) and the headers the user chose to capture.
//! Computed only for recorded spans.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::attributes::SpanAttributes;
use crate::capture::HeaderCapture;
use crate::carrier::{ConsumedMessage, MessageFacts};
use crate::handler::Handler;

/// Attribute holding how long a message waited before its handler started, in milliseconds: the time since its
/// own timestamp (the Kafka message timestamp, the AMQP `timestamp` property, which counts whole seconds), and 0
/// when the producer's clock is ahead of the consumer's. Absent when the message carries no timestamp.
pub const AGE_ATTRIBUTE: &str = "tracehop.message.age_ms";

/// Attribute set to `true` on the consumer span of a message its broker delivers again: a RabbitMQ delivery marked
/// `redelivered` (delivered before and not acknowledged: a nack or reject with requeue, a consumer that went away),
/// a JetStream message delivered more than once. Absent for a first delivery.
pub const REDELIVERED_ATTRIBUTE: &str = "tracehop.message.redelivered";

/// Attribute holding the delivery count a broker keeps, as that broker counts: for RabbitMQ the `x-delivery-count`
/// header of a quorum queue, how many earlier deliveries were returned (absent when the header is: classic queues
/// do not set it); for JetStream how many times the message was delivered, this delivery included (1 for the
/// first).
pub const DELIVERY_COUNT_ATTRIBUTE: &str = "tracehop.message.delivery_count";

/// Attribute holding the value of the header a handler names with [`Handler::attempt_header`] (a retry counter),
/// when it is a whole number.
pub const ATTEMPT_ATTRIBUTE: &str = "tracehop.message.attempt";

/// A consumed message's headers, behind a reference a span start can hold without knowing the message's type.
pub(crate) trait HeaderSource {
    /// Calls `visit` with every header, as [`ConsumedMessage::headers`] yields them.
    fn visit_headers(&self, visit: &mut dyn FnMut(&str, Option<&[u8]>));
}

impl<M: ConsumedMessage + ?Sized> HeaderSource for M {
    fn visit_headers(&self, visit: &mut dyn FnMut(&str, Option<&[u8]>)) {
        for (name, value) in self.headers() {
            visit(name, value);
        }
    }
}

/// Records the message's age, its attempt and its captured headers on a recorded consumer span.
pub(crate) fn record_delivery(
    handler: &Handler,
    message: &dyn MessageFacts,
    headers: Option<&dyn HeaderSource>,
    attributes: &mut SpanAttributes,
) {
    attributes.add(AGE_ATTRIBUTE, age_millis(message.timestamp_millis(), SystemTime::now()));
    let Some(headers) = headers else { return };
    let attempt_header = handler.configured_attempt_header();
    let mut capture = HeaderCapture::for_handler(handler);
    if attempt_header.is_none() && capture.is_none() {
        return;
    }
    // One pass over the headers for both.
    let mut attempt = None;
    headers.visit_headers(&mut |name, value| {
        if attempt.is_none() && attempt_header == Some(name) {
            attempt = value.and_then(whole_number);
        }
        if let Some(capture) = &mut capture {
            capture.offer(name, value);
        }
    });
    if attempt_header.is_some() {
        attributes.add(ATTEMPT_ATTRIBUTE, attempt);
    }
    if let Some(capture) = capture {
        attributes.extend(capture.into_attributes());
    }
}

/// Milliseconds from `timestamp_millis` to `now`, 0 when the timestamp is in the future (clock skew between
/// producer and consumer); `None` without a timestamp, or with one before the Unix epoch (no producer sets one).
pub(crate) fn age_millis(timestamp_millis: Option<i64>, now: SystemTime) -> Option<i64> {
    let timestamp = timestamp_millis.filter(|timestamp| *timestamp >= 0)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_millis();
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    Some(now.saturating_sub(timestamp).max(0))
}

/// A header value as a whole number: decimal text (surrounding spaces allowed), else a 4- or 8-byte big-endian
/// integer as Kafka clients' integer serializers write them.
pub(crate) fn whole_number(value: &[u8]) -> Option<i64> {
    if let Some(number) = std::str::from_utf8(value).ok().and_then(|text| text.trim().parse::<i64>().ok()) {
        return Some(number);
    }
    match value.len() {
        4 => value.try_into().ok().map(i32::from_be_bytes).map(i64::from),
        8 => value.try_into().ok().map(i64::from_be_bytes),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn age_is_the_time_since_the_timestamp_clamped_at_zero() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_010_000);
        assert_eq!(age_millis(Some(1_700_000_000_000), now), Some(10_000));
        assert_eq!(age_millis(Some(1_700_000_020_000), now), Some(0), "a producer clock ahead reads as no wait");
        assert_eq!(age_millis(None, now), None);
        assert_eq!(age_millis(Some(-1), now), None);
        assert_eq!(age_millis(Some(i64::MAX), now), Some(0));
        assert_eq!(age_millis(Some(0), UNIX_EPOCH - Duration::from_secs(1)), None);
    }

    #[test]
    fn attempts_are_read_from_text_or_big_endian_integers() {
        assert_eq!(whole_number(b"3"), Some(3));
        assert_eq!(whole_number(b" 12 "), Some(12));
        assert_eq!(whole_number(&7_i32.to_be_bytes()), Some(7));
        assert_eq!(whole_number(&9_i64.to_be_bytes()), Some(9));
        assert_eq!(whole_number(b"three"), None);
        assert_eq!(whole_number(b""), None);
        assert_eq!(whole_number(&[1, 2, 3]), None);
    }
}
