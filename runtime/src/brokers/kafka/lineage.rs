//! Kafka retry topics and dead-letter topics: a consumed message republished with its key, body and headers
//! through rdkafka's [`FutureProducer`], as [`Republish`] and [`DeadLetter`] describe (part of
//! `tracehop::clients::kafka`).

use std::fmt::Display;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::{AsyncRuntime, Timeout};
use rdkafka::ClientContext;

use crate::carrier::ConsumedMessage;
use crate::lineage::{dead_letter::start_dead_letter, retry::start_retry, Coordinate, Republication};
use crate::{DeadLetter, Republish};

/// Republishes `message` to the retry topic `topic` for another attempt ([`Republish`]: the attempt header
/// incremented, the trace headers replaced, a PRODUCER span that is a child of the failed CONSUMER span and
/// linked to the message's first creation), with its key, body and other headers; the delivery report is
/// rdkafka's own, a failure also recorded on the span. The consumed message is not committed.
///
/// ```no_run
/// # async fn example(producer: &rdkafka::producer::FutureProducer, message: &rdkafka::message::BorrowedMessage<'_>) {
/// use std::time::Duration;
/// use tracehop::Republish;
///
/// // inside the failing handler: its CONSUMER span is current
/// if let Err((error, _)) =
///     tracehop::clients::kafka::retry(producer, message, "payments.retry", Republish::new(), Duration::from_secs(5)).await
/// {
///     eprintln!("the retry was not published: {error}"); // do not commit the message then
/// }
/// # }
/// ```
pub async fn retry<M, C, R>(
    producer: &FutureProducer<C, R>,
    message: &M,
    topic: &str,
    republish: Republish<'_>,
    queue_timeout: impl Into<Timeout>,
) -> OwnedDeliveryResult
where
    M: Message + ConsumedMessage,
    C: ClientContext + 'static,
    R: AsyncRuntime,
{
    let republication = start_retry(message, topic, None, &republish);
    republish_to(producer, message, topic, republication, queue_timeout).await
}

/// Publishes `message` to the dead-letter topic `topic` ([`DeadLetter`]: a settle span `dead_letter {topic}`
/// linked to the failed CONSUMER span, the origin topic, partition, offset and error type on the span and in
/// `tracehop-dead-letter-*` headers), with its key, body and other headers; the delivery report is rdkafka's own,
/// a failure also recorded on the span. The consumed message is not committed.
///
/// ```no_run
/// # async fn example(producer: &rdkafka::producer::FutureProducer, message: &rdkafka::message::BorrowedMessage<'_>) {
/// use std::time::Duration;
/// use tracehop::DeadLetter;
///
/// let dead_letter = DeadLetter::new("CardDeclined");
/// let _ = tracehop::clients::kafka::dead_letter(producer, message, "payments.dlq", dead_letter, Duration::from_secs(5)).await;
/// # }
/// ```
pub async fn dead_letter<M, C, R>(
    producer: &FutureProducer<C, R>,
    message: &M,
    topic: &str,
    dead_letter: DeadLetter<'_>,
    queue_timeout: impl Into<Timeout>,
) -> OwnedDeliveryResult
where
    M: Message + ConsumedMessage,
    C: ClientContext + 'static,
    R: AsyncRuntime,
{
    let coordinates =
        vec![(Coordinate::Partition, message.partition().to_string()), (Coordinate::Offset, message.offset().to_string())];
    let republication = start_dead_letter(message, topic, &dead_letter, coordinates);
    republish_to(producer, message, topic, republication, queue_timeout).await
}

async fn republish_to<M, C, R>(
    producer: &FutureProducer<C, R>,
    message: &M,
    topic: &str,
    republication: Republication,
    queue_timeout: impl Into<Timeout>,
) -> OwnedDeliveryResult
where
    M: Message + ConsumedMessage,
    C: ClientContext + 'static,
    R: AsyncRuntime,
{
    let headers = headers_for(message, &republication);
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    let send = producer.send(record, queue_timeout);
    republication.run(send, failure).await
}

fn failure(result: &OwnedDeliveryResult) -> Option<(&'static str, &dyn Display)> {
    let (error, _) = result.as_ref().err()?;
    Some((std::any::type_name::<KafkaError>(), error))
}

/// The headers of `message` republished: its own that `republication` keeps, then the republication's.
fn headers_for<M: ConsumedMessage>(message: &M, republication: &Republication) -> OwnedHeaders {
    // Kafka headers may repeat: the consumed trace headers are left out, not overwritten.
    let mut headers = OwnedHeaders::new_with_capacity(8);
    for (key, value) in message.headers().filter(|(key, _)| republication.keeps(key)) {
        headers = headers.insert(Header { key, value });
    }
    for (key, value) in republication.headers() {
        headers = headers.insert(Header { key, value: Some(value) });
    }
    headers
}

/// What [`retry`] does before it sends: the retry's PRODUCER span (ended on return) and headers, for the
/// per-message benchmark to weigh beside a plain traced publish. Not a public API.
#[doc(hidden)]
pub fn __retry_headers<M: ConsumedMessage>(message: &M, topic: &str, republish: Republish<'_>) -> OwnedHeaders {
    let republication = start_retry(message, topic, None, &republish);
    headers_for(message, &republication)
}
