//! NATS retry and dead-letter subjects: a consumed message republished with its body and headers through
//! async-nats's [`Client`] (core NATS) or [`jetstream::Context`] (a JetStream stream's subject), as
//! [`Republish`] and [`DeadLetter`] describe (part of `tracehop::clients::nats`).

use std::fmt::Display;

use async_nats::jetstream::context::PublishError as JetStreamPublishError;
use async_nats::jetstream::{self, publish::PublishAck};
use async_nats::{Client, HeaderMap, Message, PublishError};

use super::ack_subject::AckSubject;
use crate::lineage::{dead_letter::start_dead_letter, retry::start_retry, Coordinate, Coordinates, Republication};
use crate::{DeadLetter, Republish};

/// JetStream's own headers (`Nats-Msg-Id`, `Nats-Expected-*`, ...) are the publish's instructions to the
/// stream, not the message's: a republish copying `Nats-Msg-Id` would be dropped as a duplicate.
const NATS_HEADER_PREFIX: &str = "Nats-";

/// Republishes `message` on `subject` (core NATS) for another attempt ([`Republish`]: the attempt header
/// incremented, the trace headers replaced, a PRODUCER span that is a child of the failed CONSUMER span and
/// linked to the message's first creation), with its body and other headers. The result is async-nats's own, a
/// failure also recorded on the span.
///
/// ```no_run
/// # async fn example(client: &async_nats::Client, message: &async_nats::Message) -> Result<(), async_nats::PublishError> {
/// tracehop::clients::nats::retry(client, message, "payments.retry", tracehop::Republish::new()).await?;
/// # Ok(()) }
/// ```
pub async fn retry(client: &Client, message: &Message, subject: &str, republish: Republish<'_>) -> Result<(), PublishError> {
    let republication = start_retry(message, subject, None, &republish);
    publish_core(client, message, subject, republication).await
}

/// Publishes `message` on the dead-letter `subject` (core NATS) ([`DeadLetter`]: a settle span
/// `dead_letter {subject it came from}` linked to the failed CONSUMER span, the origin subject and error type on
/// the span and in `tracehop-dead-letter-*` headers), with its body and other headers.
///
/// ```no_run
/// # async fn example(client: &async_nats::Client, message: &async_nats::Message) -> Result<(), async_nats::PublishError> {
/// let dead_letter = tracehop::DeadLetter::new("CardDeclined");
/// tracehop::clients::nats::dead_letter(client, message, "payments.dead", dead_letter).await?;
/// # Ok(()) }
/// ```
pub async fn dead_letter(
    client: &Client,
    message: &Message,
    subject: &str,
    dead_letter: DeadLetter<'_>,
) -> Result<(), PublishError> {
    let republication = start_dead_letter(message, subject, &dead_letter, coordinates(message));
    publish_core(client, message, subject, republication).await
}

/// Republishes the JetStream `message` on `subject` (a stream's subject: a retry stream, or a retry subject of
/// the same stream) for another attempt, as [`retry`] does, and waits for the stream's acknowledgement. The
/// message is not acknowledged.
///
/// ```no_run
/// # async fn example(jetstream: &async_nats::jetstream::Context, message: &async_nats::jetstream::Message) -> Result<(), async_nats::Error> {
/// tracehop::clients::nats::retry_jetstream(jetstream, message, "payments.retry", tracehop::Republish::new()).await?;
/// message.ack().await?;
/// # Ok(()) }
/// ```
pub async fn retry_jetstream(
    jetstream: &jetstream::Context,
    message: &jetstream::Message,
    subject: &str,
    republish: Republish<'_>,
) -> Result<PublishAck, JetStreamPublishError> {
    let republication = start_retry(message, subject, None, &republish);
    publish_jetstream(jetstream, message, subject, republication).await
}

/// Publishes the JetStream `message` on the dead-letter `subject`, as [`dead_letter`] does, its stream and
/// sequence among the coordinates, and waits for the stream's acknowledgement. The message is not acknowledged.
///
/// ```no_run
/// # async fn example(jetstream: &async_nats::jetstream::Context, message: &async_nats::jetstream::Message) -> Result<(), async_nats::Error> {
/// let dead_letter = tracehop::DeadLetter::new("CardDeclined");
/// tracehop::clients::nats::dead_letter_jetstream(jetstream, message, "payments.dead", dead_letter).await?;
/// message.ack().await?;
/// # Ok(()) }
/// ```
pub async fn dead_letter_jetstream(
    jetstream: &jetstream::Context,
    message: &jetstream::Message,
    subject: &str,
    dead_letter: DeadLetter<'_>,
) -> Result<PublishAck, JetStreamPublishError> {
    let republication = start_dead_letter(message, subject, &dead_letter, coordinates(message));
    publish_jetstream(jetstream, message, subject, republication).await
}

/// A JetStream message's stream and sequence; a core message has none.
fn coordinates(message: &Message) -> Coordinates {
    let Some(ack) = message.reply.as_deref().and_then(AckSubject::parse) else { return Vec::new() };
    vec![(Coordinate::Stream, ack.stream.to_owned()), (Coordinate::Sequence, ack.stream_sequence.to_string())]
}

fn headers_for(message: &Message, republication: &Republication) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in message.headers.iter().flat_map(HeaderMap::iter) {
        let name: &str = name.as_ref();
        if name.starts_with(NATS_HEADER_PREFIX) || !republication.keeps(name) {
            continue;
        }
        for value in values {
            headers.append(name, value.as_str());
        }
    }
    for (name, value) in republication.headers() {
        headers.insert(name, value);
    }
    headers
}

async fn publish_core(
    client: &Client,
    message: &Message,
    subject: &str,
    republication: Republication,
) -> Result<(), PublishError> {
    let headers = headers_for(message, &republication);
    let publish = client.publish_with_headers(subject.to_owned(), headers, message.payload.clone());
    republication.run(publish, |result| failure::<PublishError>(result)).await
}

async fn publish_jetstream(
    jetstream: &jetstream::Context,
    message: &jetstream::Message,
    subject: &str,
    republication: Republication,
) -> Result<PublishAck, JetStreamPublishError> {
    let headers = headers_for(message, &republication);
    let publish = async {
        jetstream.publish_with_headers(subject.to_owned(), headers, message.payload.clone()).await?.await
    };
    republication.run(publish, |result| failure::<JetStreamPublishError>(result)).await
}

fn failure<E: Display>(result: &Result<impl Sized, E>) -> Option<(&'static str, &dyn Display)> {
    let error = result.as_ref().err()?;
    Some((std::any::type_name::<E>(), error))
}
