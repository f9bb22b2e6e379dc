//! Settle spans: the CLIENT span of an acknowledgement, rejection or offset commit, as the messaging conventions
//! describe settlement. The caller still decides the message's fate; tracehop only records the call it makes.

use std::fmt::Display;
use std::future::Future;

use opentelemetry::trace::{Span, SpanContext, TraceContextExt};
use opentelemetry::Context;

use crate::attributes::SpanAttributes;
use crate::carrier::MessageFacts;
use crate::conventions::{self as semconv, Operation};
use crate::handler::Handler;
use crate::logs::Event;
use crate::metrics::Measurement;
use crate::span::MessagingSpan;

/// What a settle call does with a message: its `messaging.operation.name` (the operation type is `settle`).
/// [`Settlement::Ack`] is every broker's that acknowledges; each broker names its other verbs beside its other facts
/// (`Settlement::Nack`, `Reject` for RabbitMQ; `Settlement::Nak`, `Term`, `InProgress` for JetStream;
/// `Settlement::Commit`, `StoreOffset` for Kafka); [`Settlement::new`] names another broker's.
///
/// ```
/// use tracehop::Settlement;
/// assert_eq!(Settlement::Ack.operation_name(), "ack");
/// assert_eq!(Settlement::Commit.operation_name(), "commit");
/// assert_eq!(Settlement::new("term").operation_name(), "term");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Settlement {
    operation_name: &'static str,
}

// Named like the variants of an enum, which is how they read at the call site: `Settlement::Ack`.
#[allow(non_upper_case_globals)]
impl Settlement {
    /// An acknowledgement, the message done with (a RabbitMQ `basic.ack`, a JetStream `+ACK`): `ack`.
    pub const Ack: Settlement = Settlement::new("ack");
}

impl Settlement {
    /// The settlement whose `messaging.operation.name` is `operation_name`, a broker's verb as the conventions
    /// write it.
    pub const fn new(operation_name: &'static str) -> Self {
        Settlement { operation_name }
    }

    /// The `messaging.operation.name`: `ack`, `nack`, `reject`, `commit`, `store_offset`, ...
    pub const fn operation_name(self) -> &'static str {
        self.operation_name
    }
}

/// The handler settle metrics are attributed to: no group, function or fixed destination of its own.
static SETTLE: Handler = Handler::consumer("tracehop::settle");

/// The span of one settle call: kind CLIENT, named `{operation} {destination}` (`ack orders`), a child of the
/// current context (inside a handler, its CONSUMER span) and, with [`Settle::linked_to`], linked to the message's
/// consumer span; with `messaging.system`, `messaging.operation.type = settle`, `messaging.operation.name`
/// ([`Settlement::operation_name`]), the destination and the message's identity (partition and offset, or message
/// id and delivery tag). A failed call marks it failed (status Error, `error.type`, an `exception` event). With the
/// `metrics` feature, its duration goes to `messaging.client.operation.duration`; with the `logs` feature, a
/// failure is also the conventions' `messaging.settle.exception` log record (`tracehop::logs`).
///
/// The broker helpers (`tracehop::clients::kafka::commit_message`, `tracehop::clients::rabbitmq::ack`, ...) are
/// built on it; use it directly for another settle call.
///
/// ```no_run
/// # #[cfg(feature = "kafka")] fn example(consumer: &rdkafka::consumer::BaseConsumer, message: &rdkafka::message::BorrowedMessage<'_>) {
/// use rdkafka::consumer::{CommitMode, Consumer};
/// use tracehop::{Settle, Settlement};
///
/// let committed = Settle::new(Settlement::Commit, message).run(|| consumer.commit_message(message, CommitMode::Sync));
/// # }
/// ```
#[must_use = "a settle span is recorded only by `Settle::run` or `Settle::run_async`"]
pub struct Settle<'a> {
    settlement: Settlement,
    message: &'a dyn MessageFacts,
    consumer: Option<SpanContext>,
    error_type: Option<&'static str>,
}

impl<'a> Settle<'a> {
    /// Prepares the span of settling `message` by `settlement`.
    pub fn new<M: MessageFacts>(settlement: Settlement, message: &'a M) -> Self {
        Settle { settlement, message, consumer: None, error_type: None }
    }

    /// Links the span to the message's consumer span, the span of `consumer` (a
    /// [`MessageSpan::context`](crate::MessageSpan::context), kept after the span ended): for a settle made
    /// outside the handler, where that span is not current.
    pub fn linked_to(mut self, consumer: &Context) -> Self {
        let span_context = consumer.span().span_context().clone();
        self.consumer = span_context.is_valid().then_some(span_context);
        self
    }

    /// Runs the settle call `settle` in the span and records its result.
    pub fn run<T, E: Display>(self, settle: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let mut span = self.start();
        let result = {
            let _attached = span.context.clone().attach();
            settle()
        };
        span.finish(&result);
        result
    }

    /// Awaits the settle call `settle` in the span (current on every poll) and records its result.
    pub async fn run_async<T, E: Display>(self, settle: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        use opentelemetry::trace::FutureExt;
        let mut span = self.start();
        let result = settle.with_context(span.context.clone()).await;
        span.finish(&result);
        result
    }

    /// Records a failed call's `error.type` as `error_type` rather than the error's type name: for a client whose
    /// errors are boxed trait objects (async-nats's `Error`), whose type name says nothing.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn error_type(mut self, error_type: &'static str) -> Self {
        self.error_type = Some(error_type);
        self
    }

    fn start(self) -> SettleSpan {
        let Settle { settlement, message, consumer, error_type } = self;
        let operation = Operation::Settle(settlement.operation_name());
        let system = message.system();
        let destination = message.destination();
        let measurement = Measurement::begin(&SETTLE, operation, Some(system), destination, None);
        let current = Context::current();
        let (mut span, attributes) = MessagingSpan::new(operation, Some(system), destination).start(&current);
        if let Some(mut attributes) = attributes {
            if let Some(consumer) = consumer {
                span.add_link(consumer, Vec::new());
            }
            let mut identity = SpanAttributes::with_capacity(4);
            message.record_identity(&mut identity);
            let mut identity = identity.into_inner();
            // The destination is already described, and a broker's identity may repeat it.
            identity.retain(|attribute| attribute.key.as_str() != semconv::MESSAGING_DESTINATION_NAME);
            attributes.extend(identity);
            span.set_attributes(attributes.into_inner());
        }
        SettleSpan { context: current.with_span(span), measurement, error_type }
    }
}

/// A settle span while its call runs.
struct SettleSpan {
    context: Context,
    measurement: Measurement,
    error_type: Option<&'static str>,
}

impl SettleSpan {
    fn finish<T, E: Display>(&mut self, result: &Result<T, E>) {
        if let Err(error) = result {
            let error_type = self.error_type.unwrap_or_else(std::any::type_name::<E>);
            self.measurement.fail(error_type);
            crate::span::mark_failed(&self.context.span(), error_type, error);
            crate::logs::exception(Event::Settle, self.context.span().span_context(), error_type, error);
        }
        self.measurement.finish(0);
        self.context.span().end();
    }
}

impl Drop for SettleSpan {
    /// Ends the span when the settle call panicked (ending twice is a no-op).
    fn drop(&mut self) {
        self.context.span().end();
    }
}
