//! Traced clients: the spans of `#[traced_consumer]` and `#[traced_producer]` for code that cannot carry an
//! attribute — a loop over a consumer's stream, a closure, a producer shared across tasks, a stream in a
//! `select!`.
//!
//! Everything lives here, under `tracehop::clients`:
//! - consumers: [`ConsumerTracing`] turns each message of a stream ([`TracedStream`]: rdkafka's
//!   `StreamConsumer::stream()`, lapin's `Consumer`, async-nats's `Subscriber` and a JetStream consumer's
//!   `messages()`, any stream of [`ConsumedMessage`]s, see [`Received`]) or of a poll
//!   (`ConsumerTracing::poll` for rdkafka's `BaseConsumer`) into a [`TracedMessage`]: the message with its
//!   CONSUMER span started, ready to run the handling code in ([`TracedMessage::process`],
//!   [`TracedMessage::process_async`], [`TracedMessage::enter`]);
//! - producers: `kafka::TracedFutureProducer`, and `kafka::TracingProducerContext` with `kafka::SendTraced` for
//!   a `BaseProducer` or `ThreadedProducer` (feature `kafka`), `rabbitmq::TracedChannel` (feature
//!   `rabbitmq`), and `nats::TracedClient` and `nats::TracedJetStream` (feature `nats`) send through the client
//!   and keep the PRODUCER span open until the broker acknowledges.
//!
//! They call the same runtime functions the macros' expansions call ([`MessageSpan::consumer`],
//! [`MessageSpan::producer`], [`MessageSpan::inject`], [`MessageSpan::run`], [`MessageSpan::instrument`]) with
//! the same [`Handler`] description, so a message gets the same spans either way: attributes, the fallback to a
//! new root for a missing or malformed context, the [`ParentPolicy`] and replay handling. tracehop never
//! acknowledges, commits or rejects a message on its own: the caller decides its fate. The settle helpers
//! (`kafka::commit_message`, `kafka::store_offset`, `rabbitmq::ack`, `rabbitmq::nack`, `rabbitmq::reject`,
//! `nats::ack`, `nats::nak`, `nats::term`, `nats::in_progress`, `nats::double_ack`, and
//! [`Settle`](crate::Settle) for any other call) make the call the caller asks for in a settle span.

// Empty when no broker feature is on.
#[allow(unused_imports)]
pub use crate::brokers::clients::*;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures_core::Stream;
use opentelemetry::trace::{Span, TraceContextExt};
use opentelemetry::ContextGuard;

use crate::brokers::MessagingSystem;
use crate::carrier::{extract_context, ConsumedMessage, IncomingContext};
use crate::conventions::{self as semconv, Operation};
use crate::handler::Handler;
use crate::settings::ParentPolicy;
use crate::span::HandlerOutcome;
use crate::span::{Instrumented, MessageSpan, MessagingSpan};

/// How a consumer loop traces the messages it takes: the [`Handler`] describing it (function name, consumer
/// group, [`ParentPolicy`], replay, destination, span name), and whether each message also gets a receive span.
///
/// Built once, like the handler itself; a `const fn` builder, so it fits in a `static` beside it.
///
/// ```no_run
/// # #[cfg(feature = "kafka")] async fn example(consumer: rdkafka::consumer::StreamConsumer) {
/// use futures_util::StreamExt;
/// use tracehop::clients::ConsumerTracing;
/// use tracehop::Handler;
///
/// static ORDERS: Handler = Handler::consumer("inventory::orders_loop").group("inventory-service");
///
/// let mut messages = ConsumerTracing::new(&ORDERS).stream(consumer.stream());
/// while let Some(Ok(message)) = messages.next().await {
///     message.process(|message| {
///         // handle the message inside its CONSUMER span
///         Ok::<(), std::io::Error>(())
///     });
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ConsumerTracing {
    handler: &'static Handler,
    receive_spans: bool,
}

impl ConsumerTracing {
    /// Traces messages as `#[traced_consumer]` traces the handler `handler` describes (a consumer
    /// [`Handler`]: `Handler::consumer(..).group(..)`).
    ///
    /// ```
    /// use tracehop::clients::ConsumerTracing;
    /// use tracehop::{Handler, ParentPolicy};
    ///
    /// static AUDIT: Handler = Handler::consumer("audit::loop").group("audit").parent(ParentPolicy::Link);
    /// static TRACING: ConsumerTracing = ConsumerTracing::new(&AUDIT);
    /// ```
    pub const fn new(handler: &'static Handler) -> Self {
        Self { handler, receive_spans: false }
    }

    /// Also gives each message a receive span (off by default): kind CLIENT, named `receive {destination}`,
    /// `messaging.operation.type` and `messaging.operation.name` `receive`, a child of the context current
    /// where the message is taken, linked to the producer's context (unless the policy is
    /// [`ParentPolicy::None`]), ended as soon as the message is handed over. The CONSUMER span is the same with
    /// or without it.
    ///
    /// ```
    /// use tracehop::clients::ConsumerTracing;
    /// use tracehop::Handler;
    ///
    /// static ORDERS: Handler = Handler::consumer("inventory::orders_loop").group("inventory-service");
    /// static TRACING: ConsumerTracing = ConsumerTracing::new(&ORDERS).with_receive_spans();
    /// ```
    pub const fn with_receive_spans(mut self) -> Self {
        self.receive_spans = true;
        self
    }

    /// The handler the CONSUMER spans belong to.
    ///
    /// ```
    /// use tracehop::clients::ConsumerTracing;
    /// use tracehop::Handler;
    ///
    /// static ORDERS: Handler = Handler::consumer("inventory::orders_loop");
    /// assert_eq!(ConsumerTracing::new(&ORDERS).handler().function(), "inventory::orders_loop");
    /// ```
    pub const fn handler(&self) -> &'static Handler {
        self.handler
    }

    /// Starts the CONSUMER span of one message taken by other means (a `recv()`, a `basic_get`): its receive
    /// span first, when enabled.
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] async fn example(consumer: rdkafka::consumer::StreamConsumer) {
    /// use tracehop::clients::ConsumerTracing;
    /// use tracehop::Handler;
    ///
    /// static ORDERS: Handler = Handler::consumer("inventory::on_order").group("inventory-service");
    ///
    /// if let Ok(message) = consumer.recv().await {
    ///     ConsumerTracing::new(&ORDERS).trace(message).process(|message| {
    ///         // handle the message
    ///     });
    /// }
    /// # }
    /// ```
    pub fn trace<M: ConsumedMessage>(&self, message: M) -> TracedMessage<M> {
        // Read once for both spans; under `ParentPolicy::None` not at all.
        let incoming = (self.handler.parent_policy() != ParentPolicy::None).then(|| extract_context(&message));
        if self.receive_spans {
            receive_span(self.handler, &message, incoming.as_ref());
        }
        crate::metrics::count_consumed(self.handler, &message);
        let span = MessageSpan::consumer_of_extracted(self.handler, &message, incoming).start();
        TracedMessage { message, span }
    }

    /// What a receive from `system` (when known) gave: its message traced, or its error passed on and counted
    /// as a failed receive.
    pub(crate) fn traced<M: ConsumedMessage, E>(
        &self,
        received: Result<M, E>,
        system: Option<MessagingSystem>,
    ) -> Result<TracedMessage<M>, E> {
        match received {
            Ok(message) => Ok(self.trace(message)),
            Err(error) => {
                crate::metrics::count_failed_receive(self.handler, system, std::any::type_name::<E>());
                Err(error)
            }
        }
    }

    /// Adapts a stream of messages (rdkafka's `StreamConsumer::stream()`, lapin's `Consumer`, a JetStream
    /// consumer's `messages()`, any stream of `Result<M, E>` with `M:` [`ConsumedMessage`], and async-nats's
    /// `Subscriber`, whose messages come bare: see [`Received`]) so each message comes with its CONSUMER span.
    /// Errors pass through untouched; with the `metrics` feature each counts as a failed receive (no message, under
    /// `error.type` = the error's type name).
    ///
    /// ```no_run
    /// # #[cfg(feature = "rabbitmq")] async fn example(consumer: lapin::Consumer) {
    /// use futures_util::StreamExt;
    /// use lapin::options::BasicAckOptions;
    /// use tracehop::clients::ConsumerTracing;
    /// use tracehop::Handler;
    ///
    /// static ORDERS: Handler = Handler::consumer("inventory::orders_loop").group("inventory-service");
    ///
    /// let mut deliveries = ConsumerTracing::new(&ORDERS).stream(consumer);
    /// while let Some(Ok(delivery)) = deliveries.next().await {
    ///     let _ = delivery
    ///         .process_async(|delivery| async move { delivery.ack(BasicAckOptions::default()).await })
    ///         .await;
    /// }
    /// # }
    /// ```
    pub fn stream<S>(&self, stream: S) -> TracedStream<S> {
        TracedStream { stream, tracing: *self, system: None }
    }
}

/// Starts and ends the receive span of `message` (see [`ConsumerTracing::with_receive_spans`]).
fn receive_span<M: ConsumedMessage>(handler: &'static Handler, message: &M, incoming: Option<&IncomingContext>) {
    let destination = handler.configured_destination().or_else(|| message.destination());
    let messaging = MessagingSpan::new(Operation::Receive, Some(message.system()), destination);
    let (mut span, attributes) = messaging.start(&opentelemetry::Context::current());
    if let Some(mut attributes) = attributes {
        if let Some(IncomingContext::Continued(context, _)) = incoming {
            span.add_link(context.span().span_context().clone(), Vec::new());
        }
        // The group as the message's process span records it: the handler's, else the one the message names.
        match handler.configured_group() {
            Some(group) => attributes.add_static(semconv::MESSAGING_CONSUMER_GROUP_NAME, group),
            None => attributes.add(semconv::MESSAGING_CONSUMER_GROUP_NAME, message.consumer_group()),
        }
        attributes.add_static(semconv::CODE_FUNCTION_NAME, handler.function());
        message.record_attributes(&mut attributes);
        span.set_attributes(attributes.into_inner());
    }
    span.end();
}

/// One item of a consumer's stream, which [`TracedStream`] yields traced: a `Result` of a message (rdkafka's
/// `StreamConsumer::stream()`, lapin's `Consumer`, a JetStream consumer's `messages()`) becomes a `Result` of a
/// [`TracedMessage`], its error passed on; a bare message (an async-nats `Subscriber`'s) becomes a
/// [`TracedMessage`].
pub trait Received {
    /// The item with its message traced.
    type Traced;

    /// Traces the item's message as `tracing` says, noting in `system` the broker of the messages so far (a
    /// failed receive is counted under it).
    fn traced(self, tracing: &ConsumerTracing, system: &mut Option<MessagingSystem>) -> Self::Traced;
}

impl<M: ConsumedMessage, E> Received for Result<M, E> {
    type Traced = Result<TracedMessage<M>, E>;

    fn traced(self, tracing: &ConsumerTracing, system: &mut Option<MessagingSystem>) -> Self::Traced {
        if let Ok(message) = &self {
            *system = Some(message.system());
        }
        tracing.traced(self, *system)
    }
}

pin_project_lite::pin_project! {
    /// A stream of messages, each with its CONSUMER span; made by [`ConsumerTracing::stream`].
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] async fn example(consumer: rdkafka::consumer::StreamConsumer) {
    /// use futures_util::StreamExt;
    /// use tracehop::clients::{ConsumerTracing, TracedStream};
    /// use tracehop::Handler;
    ///
    /// static ORDERS: Handler = Handler::consumer("inventory::orders_loop");
    ///
    /// let messages: TracedStream<_> = ConsumerTracing::new(&ORDERS).stream(consumer.stream());
    /// let mut messages = std::pin::pin!(messages);
    /// let _first = messages.next().await;
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct TracedStream<S> {
        #[pin]
        stream: S,
        tracing: ConsumerTracing,
        // The broker of the messages so far: a failed receive is counted under it.
        system: Option<MessagingSystem>,
    }
}

impl<S> TracedStream<S> {
    /// The stream underneath.
    ///
    /// ```no_run
    /// # #[cfg(feature = "rabbitmq")] fn example(consumer: lapin::Consumer) {
    /// use tracehop::clients::ConsumerTracing;
    /// use tracehop::Handler;
    ///
    /// static ORDERS: Handler = Handler::consumer("inventory::orders_loop");
    /// let deliveries = ConsumerTracing::new(&ORDERS).stream(consumer);
    /// let _tag = deliveries.get_ref().tag();
    /// # }
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream underneath, giving up the tracing.
    ///
    /// ```no_run
    /// # #[cfg(feature = "rabbitmq")] fn example(consumer: lapin::Consumer) {
    /// use tracehop::clients::ConsumerTracing;
    /// use tracehop::Handler;
    ///
    /// static ORDERS: Handler = Handler::consumer("inventory::orders_loop");
    /// let consumer: lapin::Consumer = ConsumerTracing::new(&ORDERS).stream(consumer).into_inner();
    /// # }
    /// ```
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S> Stream for TracedStream<S>
where
    S: Stream,
    S::Item: Received,
{
    type Item = <S::Item as Received>::Traced;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let (tracing, system) = (*this.tracing, this.system);
        this.stream.poll_next(cx).map(|item| item.map(|received| received.traced(&tracing, system)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

/// A consumed message and its CONSUMER span, started and not yet current: run the handling code in it with
/// [`TracedMessage::process`] or [`TracedMessage::process_async`], or make it current by hand with
/// [`TracedMessage::enter`]. The span ends when the processing ends, or when this is dropped.
///
/// The message is the caller's to acknowledge, commit or reject: tracehop does none of it.
///
/// ```no_run
/// # #[cfg(feature = "kafka")] fn example(consumer: &rdkafka::consumer::BaseConsumer) {
/// use std::time::Duration;
/// use rdkafka::consumer::{CommitMode, Consumer};
/// use tracehop::clients::ConsumerTracing;
/// use tracehop::Handler;
///
/// static ORDERS: Handler = Handler::consumer("inventory::poll_loop").group("inventory-service");
///
/// if let Some(Ok(message)) = ConsumerTracing::new(&ORDERS).poll(consumer, Duration::from_secs(1)) {
///     let handled = message.process(|message| {
///         // handle it; then commit it, or not, as you decide
///         consumer.commit_message(&message, CommitMode::Async)
///     });
/// }
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the message's span ends as soon as this is dropped"]
pub struct TracedMessage<M> {
    message: M,
    span: MessageSpan,
}

impl<M> TracedMessage<M> {
    /// The message.
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] fn example(message: tracehop::clients::TracedMessage<rdkafka::message::OwnedMessage>) {
    /// use rdkafka::Message;
    /// let _offset = message.message().offset();
    /// # }
    /// ```
    pub fn message(&self) -> &M {
        &self.message
    }

    /// The message's CONSUMER span: its context, and [`MessageSpan::record_error`] for code that enters it by
    /// hand.
    ///
    /// ```no_run
    /// # fn example<M>(message: tracehop::clients::TracedMessage<M>) {
    /// use opentelemetry::trace::TraceContextExt;
    /// let _trace_id = message.span().context().span().span_context().trace_id();
    /// # }
    /// ```
    pub fn span(&self) -> &MessageSpan {
        &self.span
    }

    /// Runs `body` on the message with its span current, records `body`'s outcome ([`HandlerOutcome`]: an
    /// `Err` marks the span failed) and ends the span, as a sync `#[traced_consumer]` handler does. A panic in
    /// `body` is recorded and goes on unwinding. Return the message from `body` to settle it afterwards.
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] fn example(message: tracehop::clients::TracedMessage<rdkafka::message::OwnedMessage>) {
    /// use rdkafka::Message;
    ///
    /// let parsed = message.process(|message| std::str::from_utf8(message.payload().unwrap_or_default()).map(str::len));
    /// # }
    /// ```
    pub fn process<R: HandlerOutcome>(self, body: impl FnOnce(M) -> R) -> R {
        let TracedMessage { message, span } = self;
        span.run(move || body(message))
    }

    /// [`TracedMessage::process`] with the outcome recorded by `record` instead of [`HandlerOutcome`], for a
    /// `body` whose result does not implement it (as [`MessageSpan::run_with_outcome`]).
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] fn example(message: tracehop::clients::TracedMessage<rdkafka::message::OwnedMessage>) {
    /// use rdkafka::Message;
    ///
    /// let offset = message.process_with_outcome(|message| message.offset(), |offset, span| {
    ///     if *offset < 0 {
    ///         span.record_error("no_offset", &"the message has no offset");
    ///     }
    /// });
    /// # }
    /// ```
    pub fn process_with_outcome<R>(self, body: impl FnOnce(M) -> R, record: impl FnOnce(&R, &MessageSpan)) -> R {
        let TracedMessage { message, span } = self;
        span.run_with_outcome(move || body(message), record)
    }

    /// Runs the future `body` makes from the message with the span current on every poll, records its output
    /// ([`HandlerOutcome`]) and ends the span when it completes, as an `async` `#[traced_consumer]` handler
    /// does. For a future that borrows the message, take the parts with [`TracedMessage::into_parts`] and use
    /// [`MessageSpan::instrument`].
    ///
    /// ```no_run
    /// # #[cfg(feature = "rabbitmq")] async fn example(delivery: tracehop::clients::TracedMessage<lapin::message::Delivery>) {
    /// use lapin::options::BasicAckOptions;
    ///
    /// let acked = delivery
    ///     .process_async(|delivery| async move {
    ///         // handle it, then settle it
    ///         delivery.ack(BasicAckOptions::default()).await
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub fn process_async<F>(self, body: impl FnOnce(M) -> F) -> Instrumented<F, fn(&F::Output, &MessageSpan)>
    where
        F: Future,
        F::Output: HandlerOutcome,
    {
        let TracedMessage { message, span } = self;
        // What the closure does before its future's first poll runs in the span too.
        let future = {
            let _current = span.context().clone().attach();
            body(message)
        };
        span.instrument(future)
    }

    /// Makes the span current until the returned guard is dropped, for handling code that is neither a closure
    /// nor a future. The span ends when this `TracedMessage` is dropped; record a failure on it first with
    /// [`MessageSpan::record_error`].
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] fn example(message: tracehop::clients::TracedMessage<rdkafka::message::OwnedMessage>) {
    /// {
    ///     let _current = message.enter();
    ///     // spans started here are children of the message's CONSUMER span
    /// }
    /// drop(message); // ends the span
    /// # }
    /// ```
    pub fn enter(&self) -> ContextGuard {
        self.span.context().clone().attach()
    }

    /// The message and its span, apart.
    ///
    /// ```no_run
    /// # #[cfg(feature = "kafka")] async fn example(message: tracehop::clients::TracedMessage<rdkafka::message::OwnedMessage>) {
    /// use rdkafka::Message;
    ///
    /// let (message, span) = message.into_parts();
    /// let size = span.instrument(async { Ok::<_, std::io::Error>(message.payload().map_or(0, <[u8]>::len)) }).await;
    /// # }
    /// ```
    pub fn into_parts(self) -> (M, MessageSpan) {
        (self.message, self.span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn traced_messages_and_streams_are_send_and_sync_when_their_parts_are() {
        assert_send_sync::<TracedMessage<Vec<u8>>>();
        assert_send_sync::<TracedStream<std::iter::Empty<()>>>();
        assert_send_sync::<ConsumerTracing>();
    }
}
