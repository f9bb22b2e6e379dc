//! rdkafka's clients, traced: [`TracedFutureProducer`] for sends, and [`ConsumerTracing::poll`] for a
//! `BaseConsumer` (a `StreamConsumer`'s stream goes through [`ConsumerTracing::stream`]).

use opentelemetry::trace::TraceContextExt;
use opentelemetry_semantic_conventions::attribute as semconv;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{FromClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, ToBytes};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::{AsyncRuntime, DefaultRuntime, Timeout};
use rdkafka::{ClientConfig, ClientContext};

use super::{ConsumerTracing, TracedMessage};
use crate::attributes::SpanAttributes;
use crate::brokers::kafka::record_partition;
use crate::handler::Handler;
use crate::span::MessageSpan;

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
        Ok(delivery) => {
            let span = span.context().span();
            if !span.is_recording() {
                return;
            }
            let mut attributes = SpanAttributes::with_capacity(2);
            if !partition_named {
                record_partition(delivery.partition, &mut attributes);
            }
            attributes.add(semconv::MESSAGING_KAFKA_OFFSET, delivery.offset);
            span.set_attributes(attributes.into_inner());
        }
        Err((error, _)) => span.record_error(std::any::type_name::<KafkaError>(), error),
    }
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
        consumer.poll(timeout).map(|polled| polled.map(|message| self.trace(message)))
    }
}
