//! The NATS side of the benches: a core NATS message that is the twin of a Kafka bench message (so both brokers
//! are measured on the same trace contexts, `tracestate` values and application headers), tracehop's consumer
//! and producer paths on it, and its headers read in place for OpenTelemetry's propagators.

use std::collections::HashMap;
use std::hint::black_box;

use async_nats::{HeaderMap, Message};
use opentelemetry::propagation::Extractor;
use rdkafka::message::{Headers, Message as _, OwnedMessage};
use tracehop::{Handler, MessageSpan};

/// The handlers of the NATS paths: the Kafka ones' names, but their own statics, so that nothing one broker's
/// case caches on its handler serves the other's. A `HeaderMap` does not know its subject: the producer's
/// handler names it, as `#[traced_producer(destination = "orders")]` does.
pub static NATS_CONSUMER: Handler = Handler::consumer("bench::on_order").group("inventory-service");
/// A JetStream handler naming no group: the message's consumer is its group.
pub static JETSTREAM_CONSUMER: Handler = Handler::consumer("bench::on_stored_order");
pub static NATS_PRODUCER: Handler = Handler::producer("bench::publish").destination("orders");

/// A core NATS message on subject `orders` with `message`'s body and headers (in its order; a `HeaderMap` keeps
/// no order between names), and its key as the `Nats-Msg-Id` NATS names a message by, which tracehop records as
/// the Kafka key's counterpart. No reply subject: a core message, not a JetStream delivery.
pub fn nats_twin(message: &OwnedMessage) -> Message {
    let mut headers = HeaderMap::new();
    if let Some(key) = message.key() {
        headers.insert(tracehop::nats::MESSAGE_ID_HEADER, text(key));
    }
    for header in message.headers().iter().flat_map(|headers| headers.iter()) {
        headers.append(header.key, text(header.value.unwrap_or_default()));
    }
    Message {
        subject: message.topic().into(),
        reply: None,
        payload: message.payload().unwrap_or_default().to_vec().into(),
        headers: Some(headers),
        status: None,
        description: None,
        length: 0,
    }
}

/// [`nats_twin`] as a JetStream pull consumer delivers it: its reply subject is the acknowledgement subject of its
/// first delivery, stored a second before the run.
pub fn jetstream_twin(message: &OwnedMessage) -> Message {
    let stored = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_nanos()
        - 1_000_000_000;
    let reply =
        format!("$JS.ACK.ORDERS.inventory-service.1.{}.{}.{stored}.0", message.offset() + 1, message.offset() + 1);
    Message { reply: Some(reply.into()), ..nats_twin(message) }
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("the bench messages' headers are text")
}

/// What `#[traced_consumer(group = "inventory-service")]` does for one core NATS message.
pub fn tracehop_nats_consumer(message: &Message) {
    MessageSpan::consumer(&NATS_CONSUMER, message).start().run(|| black_box(()))
}

/// What `#[traced_producer(destination = "orders")]` does for a function taking the message's `HeaderMap`
/// (holding its `Nats-Msg-Id`, as the Kafka record holds its key): describe, start, inject, run.
pub fn tracehop_jetstream_consumer(message: &Message) {
    MessageSpan::consumer(&JETSTREAM_CONSUMER, message).start().run(|| black_box(()))
}

pub fn tracehop_nats_producer() {
    let mut headers = HeaderMap::new();
    headers.insert(tracehop::nats::MESSAGE_ID_HEADER, "order-7");
    let span = MessageSpan::producer(&NATS_PRODUCER).describing(&headers).start();
    span.inject(&mut headers);
    span.run(|| {
        black_box(&headers);
    })
}

/// NATS headers read in place, for OpenTelemetry's propagators: the first value of a name, as async-nats's `get`
/// gives it.
pub struct NatsHeaders<'a>(pub &'a HeaderMap);

impl Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// A NATS message's headers as a map, as the usual guides hand them to OpenTelemetry's propagator.
pub fn nats_headers_as_map(message: &Message) -> HashMap<String, String> {
    message
        .headers
        .iter()
        .flat_map(|headers| headers.iter())
        .filter_map(|(name, values)| Some((name.to_string(), values.first()?.to_string())))
        .collect()
}
