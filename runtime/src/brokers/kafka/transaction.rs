//! rdkafka's transactional producer, traced: a span from `begin_transaction` to `commit_transaction` or
//! `abort_transaction`, current while the transaction's records are sent, with its `send_offsets_to_transaction`
//! as a settle span inside it.

use std::ffi::CStr;
use std::future::Future;
use std::marker::PhantomData;

use opentelemetry::context::{FutureExt, WithContext};
use opentelemetry::global;
use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, ContextGuard, KeyValue};
use rdkafka::bindings;
use rdkafka::client::Client;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{DefaultProducerContext, NoCustomPartitioner, Partitioner, Producer, ProducerContext};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::util::Timeout;
use rdkafka::ClientContext;

use super::commit::{traced_commit, Accounted, CommitLedger, CommitTarget};
use crate::conventions as semconv;
use crate::span::{instrumentation_scope, mark_failed};
use crate::{MessagingSystem, Settlement};

/// Attribute of a transaction span: the producer's `transactional.id`.
pub const TRANSACTIONAL_ID_ATTRIBUTE: &str = "tracehop.kafka.transactional_id";

/// Attribute of a transaction span: how it ended, `committed`, `aborted`, `failed` (its last commit or abort
/// failed, or `begin_transaction` did; the span then also has `error.type` and status Error) or `abandoned`
/// (the [`TracedTransaction`] was dropped with neither a commit nor an abort made).
pub const TRANSACTION_OUTCOME_ATTRIBUTE: &str = "tracehop.transaction.outcome";

/// Begins a transaction on `producer` ([`Producer::begin_transaction`], after `init_transactions`) in a span that
/// lasts until the returned [`TracedTransaction`] commits or aborts it.
///
/// The span is kind INTERNAL (the messaging conventions define no transaction operation; the broker calls
/// inside it are its children), named `transaction {transactional.id}` (`transaction` when the producer has
/// none), a child of the current context, with `messaging.system = kafka`, `tracehop.kafka.transactional_id` and,
/// when it ends, `tracehop.transaction.outcome`. A failed `begin_transaction` ends it at once as `failed`; the
/// error is returned unchanged.
///
/// ```no_run
/// # async fn example(producer: tracehop::clients::kafka::TracedFutureProducer) -> rdkafka::error::KafkaResult<()> {
/// use std::time::Duration;
/// use rdkafka::producer::{FutureRecord, Producer};
///
/// producer.inner().init_transactions(Duration::from_secs(10))?;
/// let mut transaction = tracehop::clients::kafka::begin_transaction(producer.inner())?;
/// // The PRODUCER spans of the sends are the transaction span's children.
/// transaction
///     .instrument(producer.send(FutureRecord::<str, str>::to("invoices").payload("{}"), Duration::from_secs(5)))
///     .await
///     .map_err(|(error, _)| error)?;
/// transaction.commit(Duration::from_secs(10))?;
/// # Ok(()) }
/// ```
pub fn begin_transaction<C, Part, P>(producer: &P) -> KafkaResult<TracedTransaction<'_, P, C, Part>>
where
    P: Producer<C, Part> + ?Sized,
    C: ProducerContext<Part>,
    Part: Partitioner,
{
    let parent = Context::current();
    let tracer = global::tracer_with_scope(instrumentation_scope());
    let mut span =
        tracer.span_builder("transaction").with_kind(SpanKind::Internal).start_with_context(&tracer, &parent);
    if span.is_recording() {
        let mut attributes = vec![KeyValue::new(semconv::MESSAGING_SYSTEM, MessagingSystem::Kafka.as_str())];
        if let Some(id) = transactional_id(producer.client()) {
            span.update_name(format!("transaction {id}"));
            attributes.push(KeyValue::new(TRANSACTIONAL_ID_ATTRIBUTE, id));
        }
        span.set_attributes(attributes);
    }
    let mut transaction = TracedTransaction {
        producer,
        context: parent.with_span(span),
        failed: false,
        ended: false,
        clients: PhantomData,
    };
    let begun = {
        let _current = transaction.context.clone().attach();
        producer.begin_transaction()
    };
    match begun {
        Ok(()) => Ok(transaction),
        Err(error) => {
            transaction.record_failure(&error);
            transaction.end("failed");
            Err(error)
        }
    }
}

/// An open transaction of a transactional producer and its span, made by [`begin_transaction`].
///
/// Run the transaction's sends with its span current — [`TracedTransaction::instrument`] for a future (a
/// [`TracedFutureProducer::send`](super::client::TracedFutureProducer::send)), [`TracedTransaction::run`] or
/// [`TracedTransaction::enter`] for sync code (a [`SendTraced::send_traced`](super::client::SendTraced)) — and
/// their PRODUCER spans are its children. [`TracedTransaction::send_offsets_to_transaction`] (or
/// [`CommitLedger::send_offsets_to_transaction`], linked to the consumed messages' process spans) records the
/// consumer offsets it commits.
///
/// [`TracedTransaction::commit`] and [`TracedTransaction::abort`] make the call and end the span as `committed` or
/// `aborted`. A call that fails returns its error unchanged and records it on the span (status Error,
/// `error.type`, an `exception` event), which stays open: librdkafka lets the caller retry a retriable commit, or
/// abort. Dropped with neither done, the span ends as `abandoned` (`failed` after a failed call): tracehop does
/// not abort the transaction; librdkafka keeps it open until the producer commits or aborts it, or the broker
/// aborts it after `transaction.timeout.ms`.
#[must_use = "the transaction's span ends, as abandoned, as soon as this is dropped"]
pub struct TracedTransaction<'p, P: ?Sized, C = DefaultProducerContext, Part = NoCustomPartitioner> {
    producer: &'p P,
    context: Context,
    failed: bool,
    ended: bool,
    clients: PhantomData<fn() -> (C, Part)>,
}

impl<P: ?Sized, C, Part> std::fmt::Debug for TracedTransaction<'_, P, C, Part> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TracedTransaction")
            .field("context", &self.context)
            .field("failed", &self.failed)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<'p, P, C, Part> TracedTransaction<'p, P, C, Part>
where
    P: Producer<C, Part> + ?Sized,
    C: ProducerContext<Part>,
    Part: Partitioner,
{
    /// The context holding the transaction's span.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Makes the transaction's span current until the returned guard is dropped.
    pub fn enter(&self) -> ContextGuard {
        self.context.clone().attach()
    }

    /// Runs `body` with the transaction's span current.
    pub fn run<R>(&self, body: impl FnOnce() -> R) -> R {
        let _current = self.enter();
        body()
    }

    /// `future` with the transaction's span current on every poll.
    pub fn instrument<F: Future>(&self, future: F) -> WithContext<F> {
        future.with_context(self.context.clone())
    }

    /// [`Producer::send_offsets_to_transaction`], in a settle span that is a child of the transaction's span:
    /// kind CLIENT, named `send_offsets {topic}` (`send_offsets` for several topics), `messaging.operation.type =
    /// settle`, `messaging.operation.name = send_offsets`. Its error is returned unchanged and recorded on that span.
    /// For links to the consumed messages' process spans, call [`CommitLedger::send_offsets_to_transaction`].
    pub fn send_offsets_to_transaction<T: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        group_metadata: &ConsumerGroupMetadata,
        timeout: T,
    ) -> KafkaResult<()> {
        self.send_offsets(None, offsets, group_metadata, timeout)
    }

    /// [`Producer::commit_transaction`]; on success the span ends as `committed`.
    pub fn commit<T: Into<Timeout>>(&mut self, timeout: T) -> KafkaResult<()> {
        let committed = self.run(|| self.producer.commit_transaction(timeout));
        self.settle(committed, "committed")
    }

    /// [`Producer::abort_transaction`]; on success the span ends as `aborted`.
    pub fn abort<T: Into<Timeout>>(&mut self, timeout: T) -> KafkaResult<()> {
        let aborted = self.run(|| self.producer.abort_transaction(timeout));
        self.settle(aborted, "aborted")
    }

    fn send_offsets<T: Into<Timeout>>(
        &self,
        ledger: Option<&CommitLedger>,
        offsets: &TopicPartitionList,
        group_metadata: &ConsumerGroupMetadata,
        timeout: T,
    ) -> KafkaResult<()> {
        let target = CommitTarget::of_list(offsets);
        let send = || self.producer.send_offsets_to_transaction(offsets, group_metadata, timeout);
        match ledger {
            Some(ledger) => ledger.traced(Settlement::SendOffsets, target, offsets, Some(&self.context), send),
            None => traced_commit(Settlement::SendOffsets, target, &Accounted::default(), Some(&self.context), send),
        }
    }

    fn settle(&mut self, result: KafkaResult<()>, outcome: &'static str) -> KafkaResult<()> {
        match &result {
            Ok(()) => self.end(outcome),
            Err(error) => self.record_failure(error),
        }
        result
    }
}

impl<P: ?Sized, C, Part> TracedTransaction<'_, P, C, Part> {
    fn record_failure(&mut self, error: &KafkaError) {
        self.failed = true;
        if !self.ended {
            mark_failed(&self.context.span(), std::any::type_name::<KafkaError>(), error);
        }
    }

    fn end(&mut self, outcome: &'static str) {
        if self.ended {
            return;
        }
        self.ended = true;
        let span = self.context.span();
        span.set_attribute(KeyValue::new(TRANSACTION_OUTCOME_ATTRIBUTE, outcome));
        span.end();
    }
}

impl<P: ?Sized, C, Part> Drop for TracedTransaction<'_, P, C, Part> {
    /// Ends the span as `abandoned` (`failed` after a failed call) when neither a commit nor an abort succeeded.
    fn drop(&mut self) {
        if !self.ended && std::thread::panicking() {
            mark_failed(&self.context.span(), "panic", &"panicked in the transaction");
            self.failed = true;
        }
        self.end(if self.failed { "failed" } else { "abandoned" });
    }
}

impl CommitLedger {
    /// [`TracedTransaction::send_offsets_to_transaction`], its span linked to the process spans of the consumed
    /// offsets it commits (on each partition with an `Offset::Offset(next)`, those below `next`), which leave the
    /// ledger: consume-transform-produce in one trace.
    ///
    /// ```no_run
    /// # fn example(
    /// #     consumer: &rdkafka::consumer::BaseConsumer,
    /// #     producer: &rdkafka::producer::BaseProducer,
    /// # ) -> rdkafka::error::KafkaResult<()> {
    /// use std::time::Duration;
    /// use rdkafka::consumer::Consumer;
    /// use tracehop::clients::kafka::{begin_transaction, CommitLedger};
    ///
    /// static LEDGER: CommitLedger = CommitLedger::new();
    ///
    /// let mut transaction = begin_transaction(producer)?;
    /// // ... consume (recording each message in LEDGER), transform, send inside the transaction ...
    /// let metadata = consumer.group_metadata().expect("a consumer in a group");
    /// LEDGER.send_offsets_to_transaction(&transaction, &consumer.position()?, &metadata, Duration::from_secs(10))?;
    /// transaction.commit(Duration::from_secs(10))?;
    /// # Ok(()) }
    /// ```
    pub fn send_offsets_to_transaction<P, C, Part, T>(
        &self,
        transaction: &TracedTransaction<'_, P, C, Part>,
        offsets: &TopicPartitionList,
        group_metadata: &ConsumerGroupMetadata,
        timeout: T,
    ) -> KafkaResult<()>
    where
        P: Producer<C, Part> + ?Sized,
        C: ProducerContext<Part>,
        Part: Partitioner,
        T: Into<Timeout>,
    {
        transaction.send_offsets(Some(self), offsets, group_metadata, timeout)
    }
}

/// The producer's `transactional.id`, read from its configuration.
fn transactional_id<C: ClientContext>(client: &Client<C>) -> Option<String> {
    const NAME: &CStr = c"transactional.id";
    // SAFETY: `client` owns a live librdkafka handle; its configuration lives as long as the handle and is not
    // written after creation. `rd_kafka_conf_get` writes at most `size` bytes into `value`.
    let configuration = unsafe { bindings::rd_kafka_conf(client.native_ptr()) };
    let mut size = 0;
    let found = unsafe { bindings::rd_kafka_conf_get(configuration, NAME.as_ptr(), std::ptr::null_mut(), &mut size) };
    if found != bindings::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK || size <= 1 {
        return None;
    }
    let mut value = vec![0u8; size];
    let read =
        unsafe { bindings::rd_kafka_conf_get(configuration, NAME.as_ptr(), value.as_mut_ptr().cast(), &mut size) };
    if read != bindings::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
        return None;
    }
    CStr::from_bytes_until_nul(&value).ok()?.to_str().ok().map(str::to_owned)
}
