//! rdkafka's clients, traced: [`TracedFutureProducer`] for a `FutureProducer`'s sends,
//! [`TracingProducerContext`] and [`SendTraced`] for a `BaseProducer`'s or `ThreadedProducer`'s, and
//! [`ConsumerTracing::poll`] for a `BaseConsumer` (a `StreamConsumer`'s stream goes through
//! [`ConsumerTracing::stream`]).

use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use crate::conventions as semconv;
use std::error::Error;

use rdkafka::client::{DefaultClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::config::{FromClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, ToBytes};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::Producer;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, DeliveryResult, FutureProducer, FutureRecord, Partitioner,
    ProducerContext, ThreadedProducer,
};
use rdkafka::statistics::Statistics;
use rdkafka::util::IntoOpaque;
use rdkafka::util::{AsyncRuntime, DefaultRuntime, Timeout};
use rdkafka::{ClientConfig, ClientContext, Message};

pub use super::commit::{CommitLedger, DEFAULT_LEDGER_CAPACITY, LEDGER_EVICTED_ATTRIBUTE};
pub use super::transaction::{
    begin_transaction, TracedTransaction, TRANSACTIONAL_ID_ATTRIBUTE, TRANSACTION_OUTCOME_ATTRIBUTE,
};
use crate::clients::{ConsumerTracing, TracedMessage};
use crate::attributes::SpanAttributes;
use super::carrier::record_partition;
use crate::carrier::MessageFacts;
use crate::handler::Handler;
use crate::settle::{Settle, Settlement};
use crate::span::MessageSpan;

#[doc(hidden)]
pub use super::lineage::__retry_headers;
pub use super::lineage::{dead_letter, retry};

/// The handler of a [`TracedFutureProducer`] made without one.
static SEND: Handler = Handler::producer("tracehop::clients::kafka::TracedFutureProducer::send");

/// rdkafka's [`FutureProducer`], each send traced as `#[traced_producer]` traces a publish function: a PRODUCER
/// span, a child of the current context, whose context is written into the record's headers (the record's
/// other headers kept), with the record's attributes.
///
/// The span lasts until the delivery report: then it records the delivered record's
/// `messaging.destination.partition.id` (unless the record named its partition, which is recorded from the
/// start) and `messaging.kafka.offset`; a failed delivery marks it failed (status Error with the error's
/// message, `error.type = rdkafka::error::KafkaError`, an `exception` event). Cheap to clone, like the producer:
/// share it across tasks.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use rdkafka::config::ClientConfig;
/// use rdkafka::producer::FutureRecord;
/// use tracehop::clients::kafka::TracedFutureProducer;
///
/// let producer: TracedFutureProducer = ClientConfig::new().set("bootstrap.servers", "localhost:9092").create()?;
/// let record = FutureRecord::to("orders").key("ord-1").payload("{}");
/// producer.send(record, Duration::from_secs(5)).await.map_err(|(error, _)| error)?;
/// # Ok(()) }
/// ```
pub struct TracedFutureProducer<C: ClientContext + 'static = DefaultClientContext, R = DefaultRuntime> {
    producer: FutureProducer<C, R>,
    handler: &'static Handler,
}

impl<C: ClientContext + 'static, R> Clone for TracedFutureProducer<C, R> {
    fn clone(&self) -> Self {
        Self { producer: self.producer.clone(), handler: self.handler }
    }
}

impl<C: ClientContext + 'static, R> TracedFutureProducer<C, R> {
    /// Traces the sends of `producer`, under a handler whose `code.function.name` is
    /// `tracehop::clients::kafka::TracedFutureProducer::send`.
    ///
    /// ```no_run
    /// # fn example() -> rdkafka::error::KafkaResult<()> {
    /// use rdkafka::config::ClientConfig;
    /// use rdkafka::producer::FutureProducer;
    /// use tracehop::clients::kafka::TracedFutureProducer;
    ///
    /// let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", "localhost:9092").create()?;
    /// let producer = TracedFutureProducer::new(producer);
    /// # Ok(()) }
    /// ```
    pub fn new(producer: FutureProducer<C, R>) -> Self {
        Self { producer, handler: &SEND }
    }

    /// Traces the sends under `handler` (a producer [`Handler`]): its function name, span name, fixed
    /// destination and attributes, as `#[traced_producer]` on that function would.
    ///
    /// ```no_run
    /// # fn example(producer: rdkafka::producer::FutureProducer) {
    /// use tracehop::clients::kafka::TracedFutureProducer;
    /// use tracehop::Handler;
    ///
    /// static PUBLISH_ORDER: Handler = Handler::producer("orders::publish");
    /// let producer = TracedFutureProducer::new(producer).with_handler(&PUBLISH_ORDER);
    /// # }
    /// ```
    pub fn with_handler(mut self, handler: &'static Handler) -> Self {
        self.handler = handler;
        self
    }

    /// The producer underneath, for what is not traced (`flush`, transactions, metadata).
    ///
    /// ```no_run
    /// # fn example(producer: tracehop::clients::kafka::TracedFutureProducer) {
    /// use std::time::Duration;
    /// use rdkafka::producer::Producer;
    /// let _ = producer.inner().flush(Duration::from_secs(5));
    /// # }
    /// ```
    pub fn inner(&self) -> &FutureProducer<C, R> {
        &self.producer
    }

    /// The producer underneath, giving up the tracing.
    ///
    /// ```no_run
    /// # fn example(producer: tracehop::clients::kafka::TracedFutureProducer) {
    /// let producer: rdkafka::producer::FutureProducer = producer.into_inner();
    /// # }
    /// ```
    pub fn into_inner(self) -> FutureProducer<C, R> {
        self.producer
    }
}

/// Creates the producer from a configuration, traced: `ClientConfig::create` makes a `TracedFutureProducer`
/// as it makes a `FutureProducer`.
///
/// ```no_run
/// # fn example() -> rdkafka::error::KafkaResult<()> {
/// use rdkafka::config::ClientConfig;
/// use tracehop::clients::kafka::TracedFutureProducer;
///
/// let producer: TracedFutureProducer = ClientConfig::new().set("bootstrap.servers", "localhost:9092").create()?;
/// # Ok(()) }
/// ```
impl<R: AsyncRuntime> FromClientConfig for TracedFutureProducer<DefaultClientContext, R> {
    fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        FutureProducer::from_config(config).map(Self::new)
    }
}

/// Creates the producer from a configuration and a client context, traced.
///
/// ```no_run
/// # fn example() -> rdkafka::error::KafkaResult<()> {
/// use rdkafka::client::DefaultClientContext;
/// use rdkafka::config::ClientConfig;
/// use tracehop::clients::kafka::TracedFutureProducer;
///
/// let producer: TracedFutureProducer = ClientConfig::new().create_with_context(DefaultClientContext)?;
/// # Ok(()) }
/// ```
impl<C: ClientContext + 'static, R: AsyncRuntime> FromClientConfigAndContext<C> for TracedFutureProducer<C, R> {
    fn from_config_and_context(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        FutureProducer::from_config_and_context(config, context).map(Self::new)
    }
}

impl<C: ClientContext + 'static, R: AsyncRuntime> TracedFutureProducer<C, R> {
    /// [`FutureProducer::send`] inside a PRODUCER span that lasts until the delivery report; the result is
    /// rdkafka's own, unchanged.
    ///
    /// ```no_run
    /// # async fn example(producer: tracehop::clients::kafka::TracedFutureProducer) {
    /// use std::time::Duration;
    /// use rdkafka::producer::FutureRecord;
    ///
    /// let record = FutureRecord::to("orders").key("ord-1").payload("{}");
    /// match producer.send(record, Duration::from_secs(5)).await {
    ///     Ok(delivery) => println!("delivered at offset {}", delivery.offset),
    ///     Err((error, _record)) => eprintln!("not delivered: {error}"),
    /// }
    /// # }
    /// ```
    pub async fn send<K, P, T>(&self, mut record: FutureRecord<'_, K, P>, queue_timeout: T) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
        T: Into<Timeout>,
    {
        let span = MessageSpan::producer(self.handler).describing(&record).start();
        span.inject(&mut record);
        let partition_named = record.partition.is_some();
        let send = self.producer.send(record, queue_timeout);
        span.instrument_with_outcome(send, |result, span| record_delivery(result, partition_named, span)).await
    }
}

/// Records a delivery report on the producer span: where the record went, or why it did not.
fn record_delivery(result: &OwnedDeliveryResult, partition_named: bool, span: &MessageSpan) {
    match result {
        Ok(delivery) => record_delivered(delivery.partition, delivery.offset, partition_named, span),
        Err((error, _)) => record_failed(error, span),
    }
}

fn record_delivered(partition: i32, offset: i64, partition_named: bool, span: &MessageSpan) {
    let span = span.context().span();
    if !span.is_recording() {
        return;
    }
    let mut attributes = SpanAttributes::with_capacity(2);
    if !partition_named {
        record_partition(partition, &mut attributes);
    }
    attributes.add(semconv::MESSAGING_KAFKA_OFFSET, offset);
    span.set_attributes(attributes.into_inner());
}

fn record_failed(error: &KafkaError, span: &MessageSpan) {
    span.record_error(std::any::type_name::<KafkaError>(), error)
}

/// The handler of a [`TracingProducerContext`] made without one.
static SEND_TRACED: Handler = Handler::producer("tracehop::clients::kafka::SendTraced::send_traced");

/// A producer context for rdkafka's [`BaseProducer`] and [`ThreadedProducer`] that keeps each record sent with
/// [`SendTraced::send_traced`] in its PRODUCER span until the record's delivery report: then the span records
/// the partition and offset (or the delivery error, as [`TracedFutureProducer`] does) and ends, and the report
/// goes on to the wrapped context `C` with the record's own delivery opaque.
///
/// Everything else (logs, statistics, errors, OAuth tokens, a custom partitioner) is the wrapped context's.
///
/// ```no_run
/// # fn example() -> rdkafka::error::KafkaResult<()> {
/// use rdkafka::config::ClientConfig;
/// use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
/// use tracehop::clients::kafka::{SendTraced, TracingProducerContext};
///
/// let context = TracingProducerContext::new(DefaultProducerContext);
/// let producer: ThreadedProducer<_> =
///     ClientConfig::new().set("bootstrap.servers", "localhost:9092").create_with_context(context)?;
/// producer.send_traced(BaseRecord::<str, str>::to("orders").key("ord-1").payload("{}")).map_err(|(error, _)| error)?;
/// # Ok(()) }
/// ```
pub struct TracingProducerContext<C = DefaultProducerContext> {
    inner: C,
    handler: &'static Handler,
}

impl<C> TracingProducerContext<C> {
    /// Traces the records sent with [`SendTraced::send_traced`] under a handler whose `code.function.name` is
    /// `tracehop::clients::kafka::SendTraced::send_traced`, then hands each delivery report to `inner`.
    ///
    /// ```
    /// use rdkafka::producer::DefaultProducerContext;
    /// let context = tracehop::clients::kafka::TracingProducerContext::new(DefaultProducerContext);
    /// ```
    pub fn new(inner: C) -> Self {
        Self { inner, handler: &SEND_TRACED }
    }

    /// Traces the sends under `handler` (a producer [`Handler`]), as `#[traced_producer]` on that function would.
    ///
    /// ```
    /// use rdkafka::producer::DefaultProducerContext;
    /// use tracehop::clients::kafka::TracingProducerContext;
    /// use tracehop::Handler;
    ///
    /// static PUBLISH_ORDER: Handler = Handler::producer("orders::publish");
    /// let context = TracingProducerContext::new(DefaultProducerContext).with_handler(&PUBLISH_ORDER);
    /// ```
    pub fn with_handler(mut self, handler: &'static Handler) -> Self {
        self.handler = handler;
        self
    }

    /// The wrapped context.
    ///
    /// ```
    /// use rdkafka::producer::DefaultProducerContext;
    /// let context = tracehop::clients::kafka::TracingProducerContext::new(DefaultProducerContext);
    /// let _inner: &DefaultProducerContext = context.inner();
    /// ```
    pub fn inner(&self) -> &C {
        &self.inner
    }
}

impl<C: ClientContext> ClientContext for TracingProducerContext<C> {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = C::ENABLE_REFRESH_OAUTH_TOKEN;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message)
    }

    fn stats(&self, statistics: Statistics) {
        self.inner.stats(statistics)
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.inner.stats_raw(statistics)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason)
    }

    fn generate_oauth_token(&self, oauthbearer_config: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        self.inner.generate_oauth_token(oauthbearer_config)
    }
}

/// What a [`TracingProducerContext`] carries with a record to its delivery report: its span, and the record's
/// own delivery opaque for the wrapped context. Made by [`SendTraced::send_traced`]; it appears only in the
/// context's `DeliveryOpaque` type.
///
/// ```
/// use rdkafka::producer::{DefaultProducerContext, ProducerContext};
/// use tracehop::clients::kafka::{TracedDelivery, TracingProducerContext};
///
/// fn opaque_of<C: ProducerContext<DeliveryOpaque = Box<TracedDelivery<()>>>>(_: &C) {}
/// opaque_of(&TracingProducerContext::new(DefaultProducerContext));
/// ```
pub struct TracedDelivery<D> {
    span: MessageSpan,
    partition_named: bool,
    opaque: D,
}

impl<C, Part> ProducerContext<Part> for TracingProducerContext<C>
where
    C: ProducerContext<Part>,
    Part: Partitioner,
{
    // Boxed: a delivery opaque travels through librdkafka as one pointer.
    type DeliveryOpaque = Box<TracedDelivery<C::DeliveryOpaque>>;

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, delivery_opaque: Self::DeliveryOpaque) {
        let TracedDelivery { span, partition_named, opaque } = *delivery_opaque;
        match delivery_result {
            Ok(message) => record_delivered(message.partition(), message.offset(), partition_named, &span),
            Err((error, _)) => record_failed(error, &span),
        }
        drop(span);
        self.inner.delivery(delivery_result, opaque)
    }

    fn get_custom_partitioner(&self) -> Option<&Part> {
        self.inner.get_custom_partitioner()
    }
}

/// Sends a record through a [`BaseProducer`] or [`ThreadedProducer`] made with a [`TracingProducerContext`], in
/// a PRODUCER span that lasts until the record's delivery report (see [`TracingProducerContext`]). The record
/// carries the delivery opaque of the wrapped context; an enqueue error is recorded on the span and returns the
/// record as given.
///
/// ```no_run
/// # fn example(producer: &rdkafka::producer::BaseProducer<tracehop::clients::kafka::TracingProducerContext>) {
/// use std::time::Duration;
/// use rdkafka::producer::{BaseRecord, Producer};
/// use tracehop::clients::kafka::SendTraced;
///
/// let _ = producer.send_traced(BaseRecord::<str, str>::to("orders").payload("{}"));
/// let _ = producer.flush(Duration::from_secs(5)); // serves the delivery report, which ends the span
/// # }
/// ```
pub trait SendTraced<D: IntoOpaque> {
    /// Sends `record` in a PRODUCER span, its context written into the record's headers.
    #[allow(clippy::result_large_err)] // rdkafka's own `send` returns the record by value too
    fn send_traced<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, D>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, D>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized;
}

// rdkafka's own `send` returns the refused record by value: so do these.
#[allow(clippy::result_large_err)]
impl<C, Part> SendTraced<C::DeliveryOpaque> for BaseProducer<TracingProducerContext<C>, Part>
where
    C: ProducerContext<Part>,
    Part: Partitioner,
{
    fn send_traced<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, C::DeliveryOpaque>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        send_in_span(self.context().handler, record, |traced| self.send(traced))
    }
}

#[allow(clippy::result_large_err)]
impl<C, Part> SendTraced<C::DeliveryOpaque> for ThreadedProducer<TracingProducerContext<C>, Part>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + Send + Sync + 'static,
{
    fn send_traced<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, C::DeliveryOpaque>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        send_in_span(self.context().handler, record, |traced| self.send(traced))
    }
}

/// A record whose delivery opaque carries its PRODUCER span.
type TracedRecord<'a, K, P, D> = BaseRecord<'a, K, P, Box<TracedDelivery<D>>>;

#[allow(clippy::result_large_err)]
fn send_in_span<'a, K, P, D>(
    handler: &'static Handler,
    mut record: BaseRecord<'a, K, P, D>,
    send: impl FnOnce(TracedRecord<'a, K, P, D>) -> Result<(), (KafkaError, TracedRecord<'a, K, P, D>)>,
) -> Result<(), (KafkaError, BaseRecord<'a, K, P, D>)>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    D: IntoOpaque,
{
    let span = MessageSpan::producer(handler).describing(&record).start();
    span.inject(&mut record);
    let partition_named = record.partition.is_some();
    let BaseRecord { topic, partition, payload, key, timestamp, headers, delivery_opaque } = record;
    let opaque = Box::new(TracedDelivery { span, partition_named, opaque: delivery_opaque });
    let traced = BaseRecord { topic, partition, payload, key, timestamp, headers, delivery_opaque: opaque };
    send(traced).map_err(|(error, refused)| {
        let BaseRecord { topic, partition, payload, key, timestamp, headers, delivery_opaque } = refused;
        let TracedDelivery { span, opaque, .. } = *delivery_opaque;
        record_failed(&error, &span);
        (error, BaseRecord { topic, partition, payload, key, timestamp, headers, delivery_opaque: opaque })
    })
}

impl ConsumerTracing {
    /// [`BaseConsumer::poll`], the message it returns (if any) with its CONSUMER span; errors pass through.
    ///
    /// ```no_run
    /// # fn example(consumer: &rdkafka::consumer::BaseConsumer) {
    /// use std::time::Duration;
    /// use tracehop::clients::ConsumerTracing;
    /// use tracehop::Handler;
    ///
    /// static ORDERS: Handler = Handler::consumer("inventory::poll_loop").group("inventory-service");
    ///
    /// while let Some(polled) = ConsumerTracing::new(&ORDERS).poll(consumer, Duration::from_millis(100)) {
    ///     if let Ok(message) = polled {
    ///         message.process(|message| {
    ///             // handle the message inside its CONSUMER span
    ///         });
    ///     }
    /// }
    /// # }
    /// ```
    pub fn poll<'c, C: ConsumerContext>(
        &self,
        consumer: &'c BaseConsumer<C>,
        timeout: impl Into<Timeout>,
    ) -> Option<KafkaResult<TracedMessage<BorrowedMessage<'c>>>> {
        consumer.poll(timeout).map(|polled| self.traced(polled, Some(crate::MessagingSystem::Kafka)))
    }
}

/// Commits the offset after `message` (so the group resumes past it), in a settle span
/// ([`Settle`]: kind CLIENT, `messaging.operation.type = settle`, `messaging.operation.name =
/// commit`, a child of the current context). The commit is the one you ask for, with your `mode`; its error is
/// returned unchanged and recorded on the span.
///
/// With no span current (outside a handler) the commit runs untraced: its span would be the root of a trace of
/// its own, detached from the messages it commits. To trace commits made there, linked to the process spans they
/// account for, commit through a [`CommitLedger`].
///
/// ```no_run
/// # fn example(consumer: &rdkafka::consumer::BaseConsumer, message: &rdkafka::message::BorrowedMessage<'_>) -> rdkafka::error::KafkaResult<()> {
/// use rdkafka::consumer::CommitMode;
///
/// tracehop::clients::kafka::commit_message(consumer, message, CommitMode::Sync)?;
/// # Ok(()) }
/// ```
pub fn commit_message<X, C, M>(consumer: &C, message: &M, mode: CommitMode) -> KafkaResult<()>
where
    X: ConsumerContext,
    C: Consumer<X> + ?Sized,
    M: Message + MessageFacts,
{
    let commit = || {
        let offsets = super::commit::offset_after(message)?;
        consumer.commit(&offsets, mode)
    };
    if !Context::map_current(Context::has_active_span) {
        return commit();
    }
    Settle::new(Settlement::Commit, message).run(commit)
}

/// Stores `message`'s offset for the next automatic commit (`enable.auto.offset.store = false`), in a settle span
/// as [`commit_message`] does, named `store_offset`; untraced, as there, when no span is current.
///
/// ```no_run
/// # fn example(consumer: &rdkafka::consumer::BaseConsumer, message: &rdkafka::message::BorrowedMessage<'_>) -> rdkafka::error::KafkaResult<()> {
/// tracehop::clients::kafka::store_offset(consumer, message)?;
/// # Ok(()) }
/// ```
pub fn store_offset<X, C, M>(consumer: &C, message: &M) -> KafkaResult<()>
where
    X: ConsumerContext,
    C: Consumer<X> + ?Sized,
    M: Message + MessageFacts,
{
    // `store_offset` stores the offset after the given one, as `store_offset_from_message` does.
    let store = || consumer.store_offset(message.topic(), message.partition(), message.offset());
    if !Context::map_current(Context::has_active_span) {
        return store();
    }
    Settle::new(Settlement::StoreOffset, message).run(store)
}
