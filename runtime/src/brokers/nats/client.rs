//! async-nats's clients, traced: [`TracedClient`] for core publishes and requests, [`TracedJetStream`] for
//! JetStream publishes and their acks, and the JetStream settle helpers ([`ack`], [`double_ack`], [`nak`],
//! [`term`], [`in_progress`]). A `Subscriber`'s messages and a JetStream consumer's `messages()` go through
//! [`ConsumerTracing::stream`](crate::clients::ConsumerTracing::stream).

use std::time::Duration;

use async_nats::jetstream::context::PublishError as JetStreamPublishError;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, AckKind};
use async_nats::ToSubject;
use async_nats::{Client, HeaderMap, Message, PublishError, RequestError};
use bytes::Bytes;
use opentelemetry::trace::TraceContextExt;

use super::carrier::{STREAM_ATTRIBUTE, STREAM_SEQUENCE_ATTRIBUTE};
use crate::attributes::SpanAttributes;
use crate::brokers::MessagingSystem;
use crate::clients::{ConsumerTracing, Received, TracedMessage};
use crate::conventions as semconv;
use crate::handler::Handler;
use crate::settle::{Settle, Settlement};
use crate::span::MessageSpan;

pub use super::lineage::{dead_letter, dead_letter_jetstream, retry, retry_jetstream};

/// The handler of a [`TracedClient`] made without one.
static PUBLISH: Handler = Handler::producer("tracehop::clients::nats::TracedClient::publish");

/// The handler of a [`TracedJetStream`] made without one.
static PUBLISH_TO_STREAM: Handler = Handler::producer("tracehop::clients::nats::TracedJetStream::publish");

/// `error.type` of a failed JetStream acknowledgement, whose error async-nats boxes without a type of its own.
///
/// ```
/// assert_eq!(tracehop::clients::nats::ACK_ERROR_TYPE, "async_nats::Error");
/// ```
pub const ACK_ERROR_TYPE: &str = "async_nats::Error";

/// Attribute set to `true` on the PRODUCER span of a JetStream publish the stream acknowledged as a duplicate of
/// an earlier message with the same `Nats-Msg-Id` (so not stored again).
pub const DUPLICATE_ATTRIBUTE: &str = "tracehop.nats.duplicate";

/// A subscriber's messages come bare, not in a `Result`: each is traced.
impl Received for Message {
    type Traced = TracedMessage<Message>;

    fn traced(self, tracing: &ConsumerTracing, system: &mut Option<MessagingSystem>) -> Self::Traced {
        *system = Some(MessagingSystem::Nats);
        tracing.trace(self)
    }
}

/// async-nats's [`Client`], each publish and request traced as `#[traced_producer]` traces a publish function:
/// a PRODUCER span, a child of the current context, named `send {subject}` (every reply inbox reads `_INBOX`),
/// with the subject, the message id (`Nats-Msg-Id`) and the body size, whose context is written into the
/// message's headers (the other headers kept).
///
/// A publish's span lasts until async-nats has queued the message (core NATS acknowledges nothing); a request's
/// until its reply arrives, so the responder's spans are inside it, and a request without responders or
/// without a reply in time marks it failed (status Error, `error.type`, an `exception` event). Cheap to clone,
/// like the client: share it across tasks.
///
/// ```no_run
/// # async fn example() -> Result<(), async_nats::Error> {
/// use tracehop::clients::nats::TracedClient;
///
/// let client = TracedClient::new(async_nats::connect("nats://127.0.0.1:4222").await?);
/// client.publish("orders.created", "{}".into()).await?;
/// let reply = client.request("prices.quote", "{\"sku\":\"A-1\"}".into()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TracedClient {
    client: Client,
    handler: &'static Handler,
}

impl TracedClient {
    /// Traces the publishes and requests of `client`, under a handler whose `code.function.name` is
    /// `tracehop::clients::nats::TracedClient::publish`.
    pub fn new(client: Client) -> Self {
        Self { client, handler: &PUBLISH }
    }

    /// Traces them under `handler` (a producer [`Handler`]): its function name, span name and fixed destination,
    /// as `#[traced_producer]` on that function would.
    ///
    /// ```no_run
    /// # fn example(client: async_nats::Client) {
    /// use tracehop::clients::nats::TracedClient;
    /// use tracehop::Handler;
    ///
    /// static PUBLISH_ORDER: Handler = Handler::producer("orders::publish");
    /// let client = TracedClient::new(client).with_handler(&PUBLISH_ORDER);
    /// # }
    /// ```
    pub fn with_handler(mut self, handler: &'static Handler) -> Self {
        self.handler = handler;
        self
    }

    /// The client underneath, for what is not traced (subscriptions, `flush`, JetStream contexts).
    pub fn inner(&self) -> &Client {
        &self.client
    }

    /// The client underneath, giving up the tracing.
    pub fn into_inner(self) -> Client {
        self.client
    }

    /// [`Client::publish`] inside a PRODUCER span, the context in new headers; the result is async-nats's own.
    pub async fn publish<S: ToSubject>(&self, subject: S, payload: Bytes) -> Result<(), PublishError> {
        self.publish_with_headers(subject, HeaderMap::new(), payload).await
    }

    /// [`Client::publish_with_headers`] inside a PRODUCER span, the context written into `headers`.
    ///
    /// ```no_run
    /// # async fn example(client: tracehop::clients::nats::TracedClient) -> Result<(), async_nats::Error> {
    /// let mut headers = async_nats::HeaderMap::new();
    /// headers.insert("Nats-Msg-Id", "ord-1");
    /// client.publish_with_headers("orders.created", headers, "{}".into()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_with_headers<S: ToSubject>(
        &self,
        subject: S,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        let subject = subject.to_subject();
        let span = start_producer(self.handler, &subject, &mut headers, payload.len());
        let publish = self.client.publish_with_headers(subject, headers, payload);
        span.instrument_with_outcome(publish, |result, span| {
            if let Err(error) = result {
                span.record_error(std::any::type_name::<PublishError>(), error);
            }
        })
        .await
    }

    /// [`Client::request`] inside a PRODUCER span that lasts until the reply, the context in new headers; the
    /// reply (or the error) is async-nats's own.
    pub async fn request<S: ToSubject>(&self, subject: S, payload: Bytes) -> Result<Message, RequestError> {
        self.request_with_headers(subject, HeaderMap::new(), payload).await
    }

    /// [`Client::request_with_headers`] inside a PRODUCER span that lasts until the reply, the context written
    /// into `headers`.
    pub async fn request_with_headers<S: ToSubject>(
        &self,
        subject: S,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Message, RequestError> {
        let subject = subject.to_subject();
        let span = start_producer(self.handler, &subject, &mut headers, payload.len());
        let request = self.client.request_with_headers(subject, headers, payload);
        span.instrument_with_outcome(request, |result, span| {
            if let Err(error) = result {
                span.record_error(std::any::type_name::<RequestError>(), error);
            }
        })
        .await
    }
}

/// Starts the PRODUCER span of one publish to `subject` and writes its context into `headers`.
fn start_producer(handler: &'static Handler, subject: &str, headers: &mut HeaderMap, body_size: usize) -> MessageSpan {
    let mut body = |attributes: &mut SpanAttributes| attributes.add(semconv::MESSAGING_MESSAGE_BODY_SIZE, body_size);
    let span = MessageSpan::producer(handler).describing(&*headers).destination(subject).attributes(&mut body).start();
    span.inject(headers);
    span
}

/// A JetStream [`Context`](jetstream::Context), each publish traced as [`TracedClient`] traces one, its PRODUCER
/// span lasting until the stream acknowledges the message: then it records the stream
/// ([`STREAM_ATTRIBUTE`](crate::nats::STREAM_ATTRIBUTE)), the message's sequence in it
/// ([`STREAM_SEQUENCE_ATTRIBUTE`](crate::nats::STREAM_SEQUENCE_ATTRIBUTE)) and, when the stream had it already,
/// [`DUPLICATE_ATTRIBUTE`]. A publish no stream takes, or whose acknowledgement does not come in time, marks it
/// failed.
///
/// ```no_run
/// # async fn example(client: async_nats::Client) -> Result<(), async_nats::Error> {
/// use tracehop::clients::nats::TracedJetStream;
///
/// let jetstream = TracedJetStream::new(async_nats::jetstream::new(client));
/// let ack = jetstream.publish("orders.created", "{}".into()).await?;
/// println!("stored as {} in {}", ack.sequence, ack.stream);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TracedJetStream {
    context: jetstream::Context,
    handler: &'static Handler,
}

impl TracedJetStream {
    /// Traces the publishes of `context`, under a handler whose `code.function.name` is
    /// `tracehop::clients::nats::TracedJetStream::publish`.
    pub fn new(context: jetstream::Context) -> Self {
        Self { context, handler: &PUBLISH_TO_STREAM }
    }

    /// Traces them under `handler` (a producer [`Handler`]), as `#[traced_producer]` on that function would.
    pub fn with_handler(mut self, handler: &'static Handler) -> Self {
        self.handler = handler;
        self
    }

    /// The context underneath, for what is not traced (streams, consumers, key-value stores).
    pub fn inner(&self) -> &jetstream::Context {
        &self.context
    }

    /// The context underneath, giving up the tracing.
    pub fn into_inner(self) -> jetstream::Context {
        self.context
    }

    /// [`jetstream::Context::publish`] and the wait for its acknowledgement, inside a PRODUCER span, the context
    /// in new headers; the acknowledgement (or the error) is async-nats's own.
    pub async fn publish<S: ToSubject>(&self, subject: S, payload: Bytes) -> Result<PublishAck, JetStreamPublishError> {
        self.publish_with_headers(subject, HeaderMap::new(), payload).await
    }

    /// [`jetstream::Context::publish_with_headers`] and the wait for its acknowledgement, inside a PRODUCER span,
    /// the context written into `headers`.
    ///
    /// ```no_run
    /// # async fn example(jetstream: tracehop::clients::nats::TracedJetStream) -> Result<(), async_nats::Error> {
    /// let mut headers = async_nats::HeaderMap::new();
    /// headers.insert("Nats-Msg-Id", "ord-1"); // JetStream stores it once, however often it is sent
    /// jetstream.publish_with_headers("orders.created", headers, "{}".into()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_with_headers<S: ToSubject>(
        &self,
        subject: S,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PublishAck, JetStreamPublishError> {
        let subject = subject.to_subject();
        let span = start_producer(self.handler, &subject, &mut headers, payload.len());
        let publish = async move { self.context.publish_with_headers(subject, headers, payload).await?.await };
        span.instrument_with_outcome(publish, record_ack).await
    }
}

/// Records the stream's answer to a publish on the producer span.
fn record_ack(result: &Result<PublishAck, JetStreamPublishError>, span: &MessageSpan) {
    match result {
        Ok(ack) => {
            let span = span.context().span();
            if !span.is_recording() {
                return;
            }
            let mut attributes = SpanAttributes::with_capacity(3);
            attributes.add(STREAM_ATTRIBUTE, ack.stream.as_str());
            attributes.add(STREAM_SEQUENCE_ATTRIBUTE, ack.sequence);
            if ack.duplicate {
                attributes.add(DUPLICATE_ATTRIBUTE, true);
            }
            span.set_attributes(attributes.into_inner());
        }
        Err(error) => span.record_error(std::any::type_name::<JetStreamPublishError>(), error),
    }
}

/// Settles `message` by `kind` in a settle span named for `settlement`.
async fn settle(message: &jetstream::Message, settlement: Settlement, kind: AckKind) -> Result<(), async_nats::Error> {
    Settle::new(settlement, message).error_type(ACK_ERROR_TYPE).run_async(message.ack_with(kind)).await
}

/// Acknowledges `message` (`+ACK`) in a settle span ([`Settle`]: kind CLIENT, `messaging.operation.type = settle`,
/// `messaging.operation.name = ack`, a child of the current context, with the message's stream and sequence). The
/// call and its result are async-nats's own; an error is also recorded on the span.
///
/// ```no_run
/// # async fn example(message: async_nats::jetstream::Message) -> Result<(), async_nats::Error> {
/// tracehop::clients::nats::ack(&message).await?;
/// # Ok(()) }
/// ```
pub async fn ack(message: &jetstream::Message) -> Result<(), async_nats::Error> {
    settle(message, Settlement::Ack, AckKind::Ack).await
}

/// Acknowledges `message` and waits for the server to confirm it (`double_ack`), in a settle span named `ack`, as
/// [`ack`] does.
pub async fn double_ack(message: &jetstream::Message) -> Result<(), async_nats::Error> {
    Settle::new(Settlement::Ack, message).error_type(ACK_ERROR_TYPE).run_async(message.double_ack()).await
}

/// Negatively acknowledges `message` (`-NAK`): JetStream redelivers it, after `delay` when one is given. In a
/// settle span named `nak`, as [`ack`] does.
///
/// ```no_run
/// # async fn example(message: async_nats::jetstream::Message) -> Result<(), async_nats::Error> {
/// use std::time::Duration;
/// tracehop::clients::nats::nak(&message, Some(Duration::from_secs(5))).await?;
/// # Ok(()) }
/// ```
pub async fn nak(message: &jetstream::Message, delay: Option<Duration>) -> Result<(), async_nats::Error> {
    settle(message, Settlement::Nak, AckKind::Nak(delay)).await
}

/// Terminates `message` (`+TERM`): JetStream never redelivers it. In a settle span named `term`, as [`ack`] does.
pub async fn term(message: &jetstream::Message) -> Result<(), async_nats::Error> {
    settle(message, Settlement::Term, AckKind::Term).await
}

/// Tells JetStream the handler is still at work on `message` (`+WPI`), which restarts its acknowledgement timer.
/// In a settle span named `in_progress`, as [`ack`] does.
pub async fn in_progress(message: &jetstream::Message) -> Result<(), async_nats::Error> {
    settle(message, Settlement::InProgress, AckKind::Progress).await
}
