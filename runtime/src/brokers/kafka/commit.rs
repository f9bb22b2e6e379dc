//! Commits that account for their messages: a [`CommitLedger`] remembers which process (CONSUMER) span handled
//! which Kafka offset, and its commit calls make settle spans linked to the process spans whose offsets they
//! commit, emptying the ledger of them.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use opentelemetry::trace::{Span, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, Value};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

use super::carrier::record_partition;
use crate::attributes::SpanAttributes;
use crate::clients::TracedMessage;
use crate::conventions::{self as semconv, Operation};
use crate::handler::Handler;
use crate::metrics::Measurement;
use crate::settings::max_links_per_span;
use crate::span::{mark_failed, MessagingSpan, LINKS_DROPPED_ATTRIBUTE};
use crate::{MessagingSystem, Settlement};

/// How many handled offsets a [`CommitLedger::new`] remembers: 4,096 entries of 48 bytes (about 192 KiB), which
/// covers librdkafka's default auto-commit interval (5 s) at 800 messages a second.
pub const DEFAULT_LEDGER_CAPACITY: usize = 4096;

/// Attribute counting the process spans whose offsets a commit span covers but the [`CommitLedger`] had forgotten
/// (past its capacity, the oldest first), so they are not linked.
pub const LEDGER_EVICTED_ATTRIBUTE: &str = "tracehop.ledger.evicted";

/// The handler commit metrics are attributed to, as every settle call's.
static COMMIT: Handler = Handler::consumer("tracehop::settle");

/// A record, kept until a commit covers it, of which process (CONSUMER) span handled which Kafka offset: what a
/// traced commit needs to link to the process spans of the messages it commits.
///
/// Opt in by recording each message as you take it: [`CommitLedger::record`] (a [`TracedMessage`] from
/// [`ConsumerTracing`](crate::clients::ConsumerTracing)), [`CommitLedger::record_current`] (inside a
/// `#[traced_consumer]` handler, whose span is current) or [`CommitLedger::record_span`]. Then commit through the
/// ledger — [`commit_message`](CommitLedger::commit_message), [`commit`](CommitLedger::commit) of a
/// `TopicPartitionList`, [`commit_consumer_state`](CommitLedger::commit_consumer_state),
/// [`store_offset`](CommitLedger::store_offset) with auto-commit, or a transaction's
/// [`send_offsets_to_transaction`](CommitLedger::send_offsets_to_transaction) — and each call is a settle span
/// (kind CLIENT, `messaging.operation.type = settle`) linked to the process spans of the offsets it covers, each
/// link with the message's `messaging.destination.name`, `messaging.destination.partition.id` and
/// `messaging.kafka.offset`; those entries leave the ledger. Past [`max_links_per_span`](crate::max_links_per_span)
/// the rest are counted in `tracehop.links.dropped`.
///
/// The commit span is a child of the current context (inside a handler, its CONSUMER span). Where nothing is
/// current it is a child of the newest process span it commits, never a root of its own; where nothing is current
/// and the commit covers no recorded process span, the commit runs without a span.
///
/// Only sampled process spans are recorded (an unsampled one is exported nowhere: there is nothing to link to),
/// so an unsampled message costs one flag test. Recording a sampled one takes a mutex held for one push (no
/// allocation once the ledger has grown, except a topic's name the first time it is seen).
///
/// Memory is bounded: at most `capacity` entries ([`DEFAULT_LEDGER_CAPACITY`] unless
/// [`with_capacity`](CommitLedger::with_capacity)), 48 bytes each, plus one name per topic and one counter per
/// partition whose entries were evicted. When full, recording a further message evicts the oldest entry; the first
/// commit that covers every evicted offset of a partition counts them in `tracehop.ledger.evicted`. Entries of
/// partitions this consumer lost in a rebalance stay until evicted or dropped by [`CommitLedger::forget`]. A
/// commit that fails gives its entries back, for the commit that follows.
///
/// ```no_run
/// # fn example(consumer: &rdkafka::consumer::BaseConsumer) -> rdkafka::error::KafkaResult<()> {
/// use std::time::Duration;
/// use rdkafka::consumer::CommitMode;
/// use tracehop::clients::kafka::CommitLedger;
/// use tracehop::clients::ConsumerTracing;
/// use tracehop::Handler;
///
/// static ORDERS: Handler = Handler::consumer("inventory::poll_loop").group("inventory-service");
/// static LEDGER: CommitLedger = CommitLedger::new();
///
/// for _ in 0..100 {
///     if let Some(Ok(message)) = ConsumerTracing::new(&ORDERS).poll(consumer, Duration::from_millis(100)) {
///         LEDGER.record(&message);
///         message.process(|message| { /* handle it */ });
///     }
/// }
/// // One span, `commit orders`, linked to the process spans of the messages it commits.
/// LEDGER.commit_consumer_state(consumer, CommitMode::Sync)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CommitLedger {
    capacity: usize,
    state: Mutex<LedgerState>,
}

#[derive(Debug)]
struct LedgerState {
    // Interned: a record copies no name.
    topics: Vec<Arc<str>>,
    // Oldest first.
    handled: VecDeque<Handled>,
    evicted: Vec<Evicted>,
}

/// One handled offset and the process span that handled it.
#[derive(Clone, Copy, Debug)]
struct Handled {
    topic: u32,
    partition: i32,
    offset: i64,
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

/// The entries of one partition the ledger forgot: how many, and the highest offset among them.
#[derive(Clone, Copy, Debug)]
struct Evicted {
    topic: u32,
    partition: i32,
    count: usize,
    highest: i64,
}

/// One partition a commit covers: the offsets below `next` on it.
#[derive(Clone, Copy, Debug)]
struct Covered {
    topic: u32,
    partition: i32,
    next: i64,
}

/// What a commit takes out of the ledger: the process spans to link, and how many it forgot.
#[derive(Debug, Default)]
pub(super) struct Accounted {
    handled: Vec<(Arc<str>, Handled)>,
    evicted: usize,
    // The counters `evicted` sums, to give back after a failed commit.
    given_back_evicted: Vec<Evicted>,
}

impl Default for CommitLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl CommitLedger {
    /// An empty ledger of [`DEFAULT_LEDGER_CAPACITY`] entries; `const`, so it fits in a `static`.
    ///
    /// ```
    /// use tracehop::clients::kafka::CommitLedger;
    /// static LEDGER: CommitLedger = CommitLedger::new();
    /// assert!(LEDGER.is_empty());
    /// ```
    pub const fn new() -> Self {
        Self::with_capacity(DEFAULT_LEDGER_CAPACITY)
    }

    /// An empty ledger that remembers at most `capacity` handled offsets (0 remembers none: every commit then
    /// counts its recorded messages in `tracehop.ledger.evicted`).
    ///
    /// ```
    /// use tracehop::clients::kafka::CommitLedger;
    /// let ledger = CommitLedger::with_capacity(100_000);
    /// assert_eq!(ledger.capacity(), 100_000);
    /// ```
    pub const fn with_capacity(capacity: usize) -> Self {
        CommitLedger {
            capacity,
            state: Mutex::new(LedgerState { topics: Vec::new(), handled: VecDeque::new(), evicted: Vec::new() }),
        }
    }

    /// The most handled offsets this ledger remembers.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many handled offsets it remembers now: recorded, not yet committed, not evicted.
    ///
    /// ```
    /// assert_eq!(tracehop::clients::kafka::CommitLedger::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().handled.len()
    }

    /// Whether it remembers no handled offset.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records that `message`'s CONSUMER span handles its offset (nothing when that span is not sampled).
    ///
    /// ```no_run
    /// # fn example(message: tracehop::clients::TracedMessage<rdkafka::message::OwnedMessage>) {
    /// static LEDGER: tracehop::clients::kafka::CommitLedger = tracehop::clients::kafka::CommitLedger::new();
    /// LEDGER.record(&message);
    /// # }
    /// ```
    pub fn record<M: Message>(&self, message: &TracedMessage<M>) {
        self.record_span(message.message(), message.span().context())
    }

    /// Records that the span current here (a `#[traced_consumer]` handler's CONSUMER span, when called in its
    /// body) handles `message`'s offset.
    ///
    /// ```no_run
    /// use rdkafka::message::BorrowedMessage;
    /// use tracehop::clients::kafka::CommitLedger;
    ///
    /// static LEDGER: CommitLedger = CommitLedger::new();
    ///
    /// #[tracehop::traced_consumer(group = "inventory-service")]
    /// fn on_order(message: &BorrowedMessage<'_>) {
    ///     LEDGER.record_current(message);
    ///     // handle it
    /// }
    /// ```
    pub fn record_current<M: Message>(&self, message: &M) {
        self.record_span(message, &Context::current())
    }

    /// Records that the span of `process_span` (a [`MessageSpan::context`](crate::MessageSpan::context)) handles
    /// `message`'s offset (nothing when that span is not sampled).
    pub fn record_span<M: Message>(&self, message: &M, process_span: &Context) {
        let span = process_span.span();
        let span = span.span_context();
        if !span.is_sampled() {
            return;
        }
        let (trace_id, span_id, flags) = (span.trace_id(), span.span_id(), span.trace_flags());
        let mut state = self.lock();
        let topic = state.intern(message.topic());
        let handled = Handled { topic, partition: message.partition(), offset: message.offset(), trace_id, span_id, flags };
        if state.handled.len() >= self.capacity {
            let oldest = if self.capacity == 0 { Some(handled) } else { state.handled.pop_front() };
            if let Some(oldest) = oldest {
                state.evict(oldest);
            }
            if self.capacity == 0 {
                return;
            }
        }
        state.handled.push_back(handled);
    }

    /// Forgets the handled offsets of the partitions in `revoked` (partitions this consumer lost in a rebalance,
    /// whose offsets another consumer will commit): call it from a `ConsumerContext::pre_rebalance`.
    pub fn forget(&self, revoked: &TopicPartitionList) {
        let mut state = self.lock();
        let partitions: Vec<(u32, i32)> = revoked
            .elements()
            .iter()
            .filter_map(|element| Some((state.find(element.topic())?, element.partition())))
            .collect();
        let state = &mut *state;
        state.handled.retain(|handled| !partitions.contains(&(handled.topic, handled.partition)));
        state.evicted.retain(|evicted| !partitions.contains(&(evicted.topic, evicted.partition)));
    }

    /// [`Consumer::commit`] of the offset after `message` (where the group resumes), in a settle span named
    /// `commit {topic}` with the message's partition and offset, linked to the process spans of the offsets it
    /// commits on that partition (the message's and those before it). The error is returned unchanged and recorded
    /// on the span. With [`CommitMode::Async`] the span records the call, not the broker's answer.
    ///
    /// ```no_run
    /// # fn example(consumer: &rdkafka::consumer::BaseConsumer, message: &rdkafka::message::BorrowedMessage<'_>) -> rdkafka::error::KafkaResult<()> {
    /// use rdkafka::consumer::CommitMode;
    /// static LEDGER: tracehop::clients::kafka::CommitLedger = tracehop::clients::kafka::CommitLedger::new();
    /// LEDGER.commit_message(consumer, message, CommitMode::Sync)?;
    /// # Ok(()) }
    /// ```
    pub fn commit_message<X, C, M>(&self, consumer: &C, message: &M, mode: CommitMode) -> KafkaResult<()>
    where
        X: ConsumerContext,
        C: Consumer<X> + ?Sized,
        M: Message,
    {
        let offsets = offset_after(message)?;
        let target = CommitTarget::of_message(message);
        self.traced(Settlement::Commit, target, &offsets, None, || consumer.commit(&offsets, mode))
    }

    /// [`Consumer::commit`] of `offsets`, in a settle span linked to the process spans of the offsets it commits
    /// (on each partition with an `Offset::Offset(next)`, those below `next`). Named `commit {topic}` when the
    /// list has one topic (with its partition when it has one partition), `commit` when it has several (no
    /// `messaging.destination.name`, as the conventions describe a batch of several destinations).
    ///
    /// ```no_run
    /// # fn example(consumer: &rdkafka::consumer::BaseConsumer) -> rdkafka::error::KafkaResult<()> {
    /// use rdkafka::consumer::CommitMode;
    /// use rdkafka::{Offset, TopicPartitionList};
    /// static LEDGER: tracehop::clients::kafka::CommitLedger = tracehop::clients::kafka::CommitLedger::new();
    ///
    /// let mut offsets = TopicPartitionList::new();
    /// offsets.add_partition_offset("orders", 0, Offset::Offset(42))?;
    /// LEDGER.commit(consumer, &offsets, CommitMode::Sync)?;
    /// # Ok(()) }
    /// ```
    pub fn commit<X, C>(&self, consumer: &C, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()>
    where
        X: ConsumerContext,
        C: Consumer<X> + ?Sized,
    {
        self.traced(Settlement::Commit, CommitTarget::of_list(offsets), offsets, None, || consumer.commit(offsets, mode))
    }

    /// [`Consumer::commit_consumer_state`] (the consumer's current position), in a settle span as
    /// [`CommitLedger::commit`] makes for the position's offsets, which it reads first with
    /// [`Consumer::position`] (a local call). When the position cannot be read the commit still runs, unlinked.
    pub fn commit_consumer_state<X, C>(&self, consumer: &C, mode: CommitMode) -> KafkaResult<()>
    where
        X: ConsumerContext,
        C: Consumer<X> + ?Sized,
    {
        let position = consumer.position().unwrap_or_default();
        self.traced(Settlement::Commit, CommitTarget::of_list(&position), &position, None, || {
            consumer.commit_consumer_state(mode)
        })
    }

    /// [`Consumer::store_offset`] of `message` for the next automatic commit (`enable.auto.commit = true`,
    /// `enable.auto.offset.store = false`), in a settle span named `store_offset {topic}` linked to the process
    /// spans of the offsets it stores (the message's and those before it on its partition), which leave the ledger.
    ///
    /// The automatic commit that later sends the stored offsets to the broker gets no span, and no links: librdkafka
    /// makes it on its own timer, in its own thread, where no caller's context is current, so its span could only be
    /// a root of its own (the detached commit traces the OpenTelemetry Java agent removed). The stored offsets'
    /// process spans are linked here, by the traced call that hands them to that commit.
    pub fn store_offset<X, C, M>(&self, consumer: &C, message: &M) -> KafkaResult<()>
    where
        X: ConsumerContext,
        C: Consumer<X> + ?Sized,
        M: Message,
    {
        let offsets = offset_after(message)?;
        let target = CommitTarget::of_message(message);
        // `store_offset` stores the offset after the given one, as `store_offset_from_message` does.
        self.traced(Settlement::StoreOffset, target, &offsets, None, || {
            consumer.store_offset(message.topic(), message.partition(), message.offset())
        })
    }

    /// Runs `commit` of `offsets` in a settle span (see [`traced_commit`]) linked to the process spans of
    /// `offsets`, which leave the ledger; a failed call gives them back, for the commit that follows.
    pub(super) fn traced<T, E: std::fmt::Display>(
        &self,
        settlement: Settlement,
        target: CommitTarget<'_>,
        offsets: &TopicPartitionList,
        parent: Option<&Context>,
        commit: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let accounted = self.take(offsets);
        let result = traced_commit(settlement, target, &accounted, parent, commit);
        if result.is_err() {
            self.give_back(accounted);
        }
        result
    }

    /// Puts back what a failed commit took, before what was recorded since, within the capacity.
    fn give_back(&self, accounted: Accounted) {
        if accounted.handled.is_empty() && accounted.evicted == 0 {
            return;
        }
        let mut state = self.lock();
        for (_, handled) in accounted.handled.into_iter().rev() {
            state.handled.push_front(handled);
        }
        while state.handled.len() > self.capacity {
            if let Some(oldest) = state.handled.pop_front() {
                state.evict(oldest);
            }
        }
        for evicted in accounted.given_back_evicted {
            match state.evicted.iter_mut().find(|known| known.topic == evicted.topic && known.partition == evicted.partition) {
                Some(known) => {
                    known.count += evicted.count;
                    known.highest = known.highest.max(evicted.highest);
                }
                None => state.evicted.push(evicted),
            }
        }
    }

    /// The process spans of `offsets` (each partition's offsets below its `Offset::Offset`), out of the ledger.
    pub(super) fn take(&self, offsets: &TopicPartitionList) -> Accounted {
        let mut state = self.lock();
        if state.handled.is_empty() && state.evicted.is_empty() {
            return Accounted::default();
        }
        let covered: Vec<Covered> = offsets
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(next) => {
                    Some(Covered { topic: state.find(element.topic())?, partition: element.partition(), next })
                }
                _ => None,
            })
            .collect();
        let state = &mut *state;
        let mut accounted = Accounted::default();
        let LedgerState { topics, handled, evicted } = state;
        handled.retain(|entry| {
            let covers = covered.iter().any(|covered| covered.covers(entry));
            if covers {
                accounted.handled.push((topics[entry.topic as usize].clone(), *entry));
            }
            !covers
        });
        evicted.retain(|entry| {
            // Counted once none of them lies past the commit; until then, left for a later one.
            let covers = covered.iter().any(|covered| {
                covered.topic == entry.topic && covered.partition == entry.partition && entry.highest < covered.next
            });
            if covers {
                accounted.evicted += entry.count;
                accounted.given_back_evicted.push(*entry);
            }
            !covers
        });
        accounted
    }

    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        // A panic elsewhere leaves entries that are still true: keep using them.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LedgerState {
    fn find(&self, topic: &str) -> Option<u32> {
        self.topics.iter().position(|known| &**known == topic).map(|index| index as u32)
    }

    fn intern(&mut self, topic: &str) -> u32 {
        self.find(topic).unwrap_or_else(|| {
            self.topics.push(Arc::from(topic));
            (self.topics.len() - 1) as u32
        })
    }

    fn evict(&mut self, handled: Handled) {
        let known =
            self.evicted.iter_mut().find(|evicted| evicted.topic == handled.topic && evicted.partition == handled.partition);
        match known {
            Some(evicted) => {
                evicted.count += 1;
                evicted.highest = evicted.highest.max(handled.offset);
            }
            None => self.evicted.push(Evicted {
                topic: handled.topic,
                partition: handled.partition,
                count: 1,
                highest: handled.offset,
            }),
        }
    }
}

impl Covered {
    fn covers(&self, handled: &Handled) -> bool {
        self.topic == handled.topic && self.partition == handled.partition && handled.offset < self.next
    }
}

impl Accounted {
    fn span_context(handled: &Handled) -> SpanContext {
        SpanContext::new(handled.trace_id, handled.span_id, handled.flags, false, TraceState::NONE)
    }

    /// The context of the newest process span accounted for: the parent of a commit made where nothing is current.
    fn newest(&self) -> Option<Context> {
        let (_, newest) = self.handled.last()?;
        Some(Context::new().with_remote_span_context(Self::span_context(newest)))
    }
}

/// The offset list that commits (or stores) `message`: its partition at the offset after it, where the group
/// resumes.
pub(super) fn offset_after<M: Message + ?Sized>(message: &M) -> KafkaResult<TopicPartitionList> {
    let mut offsets = TopicPartitionList::with_capacity(1);
    offsets.add_partition_offset(message.topic(), message.partition(), Offset::Offset(message.offset() + 1))?;
    Ok(offsets)
}

/// Where a commit goes, as its span describes it.
pub(super) struct CommitTarget<'a> {
    // Owned for a list: a `TopicPartitionListElem`'s topic borrows an element the list builds on each call.
    destination: Option<Cow<'a, str>>,
    partition: Option<i32>,
    offset: Option<i64>,
}

impl<'a> CommitTarget<'a> {
    fn of_message<M: Message>(message: &'a M) -> Self {
        CommitTarget {
            destination: Some(Cow::Borrowed(message.topic())),
            partition: Some(message.partition()),
            offset: Some(message.offset()),
        }
    }

    /// The list's topic when it has one, and its partition when it has one.
    pub(super) fn of_list(offsets: &TopicPartitionList) -> Self {
        let elements = offsets.elements();
        let destination = elements
            .first()
            .map(|first| first.topic())
            .filter(|first| elements.iter().all(|element| element.topic() == *first))
            .map(|topic| Cow::Owned(topic.to_owned()));
        let partition = match elements.as_slice() {
            [only] => Some(only.partition()),
            _ => None,
        };
        CommitTarget { destination, partition, offset: None }
    }
}

/// Runs `commit` in a settle span of `settlement` on `target`, linked to the `accounted` process spans; a child of
/// `parent` (else of the current context, else of the newest accounted process span). With no parent at all, the
/// call runs without a span.
pub(super) fn traced_commit<T, E: std::fmt::Display>(
    settlement: Settlement,
    target: CommitTarget<'_>,
    accounted: &Accounted,
    parent: Option<&Context>,
    commit: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let current;
    let parent = match parent {
        Some(parent) => parent,
        None => {
            current = Some(Context::current()).filter(|current| current.has_active_span()).or_else(|| accounted.newest());
            match &current {
                Some(current) => current,
                None => return commit(),
            }
        }
    };
    let destination = target.destination.as_deref();
    let operation = Operation::Settle(settlement.operation_name());
    let system = MessagingSystem::Kafka;
    let mut measurement = Measurement::begin(&COMMIT, operation, Some(system), destination, None);
    let (mut span, attributes) = MessagingSpan::new(operation, Some(system), destination).start(parent);
    if let Some(mut attributes) = attributes {
        if let Some(partition) = target.partition {
            record_partition(partition, &mut attributes);
        }
        if let Some(offset) = target.offset {
            attributes.add(semconv::MESSAGING_KAFKA_OFFSET, offset);
        }
        let cap = max_links_per_span();
        let dropped = accounted.handled.len().saturating_sub(cap);
        for (topic, handled) in accounted.handled.iter().take(cap) {
            let mut identity = SpanAttributes::with_capacity(3);
            identity.add(semconv::MESSAGING_DESTINATION_NAME, Value::from(topic.clone()));
            record_partition(handled.partition, &mut identity);
            identity.add(semconv::MESSAGING_KAFKA_OFFSET, handled.offset);
            span.add_link(Accounted::span_context(handled), identity.into_inner());
        }
        if dropped > 0 {
            attributes.add(LINKS_DROPPED_ATTRIBUTE, dropped);
        }
        if accounted.evicted > 0 {
            attributes.add(LEDGER_EVICTED_ATTRIBUTE, accounted.evicted);
        }
        span.set_attributes(attributes.into_inner());
    }
    let context = parent.with_span(span);
    let ended = EndOnDrop(&context);
    let result = {
        let _attached = context.clone().attach();
        commit()
    };
    if let Err(error) = &result {
        let error_type = std::any::type_name::<E>();
        measurement.fail(error_type);
        mark_failed(&context.span(), error_type, error);
    }
    measurement.finish(0);
    drop(ended);
    result
}

/// Ends a span on every exit, a panicking call's too (ending twice is a no-op).
struct EndOnDrop<'a>(&'a Context);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.span().end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedMessage, Timestamp};

    fn message(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(None, None, topic.to_owned(), Timestamp::NotAvailable, partition, offset, None)
    }

    fn span(id: u64, flags: TraceFlags) -> Context {
        let span = SpanContext::new(TraceId::from(u128::from(id)), SpanId::from(id), flags, false, TraceState::NONE);
        Context::new().with_remote_span_context(span)
    }

    fn offsets(entries: &[(&str, i32, i64)]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (topic, partition, next) in entries {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next)).expect("a partition");
        }
        list
    }

    fn taken(accounted: &Accounted) -> Vec<(String, i32, i64, SpanId)> {
        accounted
            .handled
            .iter()
            .map(|(topic, handled)| (topic.to_string(), handled.partition, handled.offset, handled.span_id))
            .collect()
    }

    #[test]
    fn an_entry_is_48_bytes_as_the_capacity_documents() {
        assert_eq!(std::mem::size_of::<Handled>(), 48);
    }

    #[test]
    fn a_commit_takes_the_offsets_below_its_own_on_its_partitions_only() {
        let ledger = CommitLedger::new();
        for (index, (topic, partition, offset)) in
            [("orders", 0, 0), ("orders", 1, 0), ("orders", 0, 1), ("audit", 0, 0), ("orders", 0, 2)].into_iter().enumerate()
        {
            ledger.record_span(&message(topic, partition, offset), &span(index as u64 + 1, TraceFlags::SAMPLED));
        }

        let accounted = ledger.take(&offsets(&[("orders", 0, 2)]));

        assert_eq!(
            taken(&accounted),
            vec![("orders".to_owned(), 0, 0, SpanId::from(1)), ("orders".to_owned(), 0, 1, SpanId::from(3))]
        );
        assert_eq!(ledger.len(), 3, "orders/1, audit/0 and orders/0 at offset 2 stay");
    }

    #[test]
    fn unsampled_process_spans_are_not_recorded() {
        let ledger = CommitLedger::new();
        ledger.record_span(&message("orders", 0, 0), &span(1, TraceFlags::default()));
        ledger.record_span(&message("orders", 0, 1), &Context::new());
        assert!(ledger.is_empty());
    }

    #[test]
    fn past_its_capacity_the_ledger_evicts_the_oldest_and_counts_them_once_covered() {
        let ledger = CommitLedger::with_capacity(2);
        for offset in 0..4 {
            ledger.record_span(&message("orders", 0, offset), &span(offset as u64 + 1, TraceFlags::SAMPLED));
        }
        assert_eq!(ledger.len(), 2);

        // Offsets 0 and 1 were evicted; a commit up to 1 does not cover offset 1: the count waits.
        let partial = ledger.take(&offsets(&[("orders", 0, 1)]));
        assert_eq!((taken(&partial), partial.evicted), (vec![], 0));
        let accounted = ledger.take(&offsets(&[("orders", 0, 4)]));
        assert_eq!(accounted.evicted, 2);
        assert_eq!(
            taken(&accounted),
            vec![("orders".to_owned(), 0, 2, SpanId::from(3)), ("orders".to_owned(), 0, 3, SpanId::from(4))]
        );
        assert!(ledger.is_empty());
    }

    #[test]
    fn a_ledger_of_no_capacity_only_counts() {
        let ledger = CommitLedger::with_capacity(0);
        ledger.record_span(&message("orders", 0, 0), &span(1, TraceFlags::SAMPLED));
        let accounted = ledger.take(&offsets(&[("orders", 0, 1)]));
        assert_eq!((taken(&accounted), accounted.evicted), (vec![], 1));
    }

    #[test]
    fn a_failed_commit_gives_its_entries_back_before_the_newer_ones() {
        let ledger = CommitLedger::with_capacity(3);
        for offset in 0..3 {
            ledger.record_span(&message("orders", 0, offset), &span(offset as u64 + 1, TraceFlags::SAMPLED));
        }
        let refused: Result<(), &str> =
            ledger.traced(Settlement::Commit, CommitTarget::of_list(&offsets(&[])), &offsets(&[("orders", 0, 2)]), None, || {
                Err("refused")
            });
        assert_eq!(refused, Err("refused"));
        ledger.record_span(&message("orders", 0, 3), &span(4, TraceFlags::SAMPLED));

        // Full at three: the oldest given back (offset 0) is the one evicted.
        let accounted = ledger.take(&offsets(&[("orders", 0, 4)]));
        assert_eq!(accounted.evicted, 1);
        let offsets_taken: Vec<i64> = taken(&accounted).into_iter().map(|(_, _, offset, _)| offset).collect();
        assert_eq!(offsets_taken, vec![1, 2, 3]);
    }

    #[test]
    fn forget_drops_the_revoked_partitions_entries() {
        let ledger = CommitLedger::new();
        ledger.record_span(&message("orders", 0, 0), &span(1, TraceFlags::SAMPLED));
        ledger.record_span(&message("orders", 1, 0), &span(2, TraceFlags::SAMPLED));
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("orders", 1);

        ledger.forget(&revoked);

        let accounted = ledger.take(&offsets(&[("orders", 0, 1), ("orders", 1, 1)]));
        assert_eq!(taken(&accounted), vec![("orders".to_owned(), 0, 0, SpanId::from(1))]);
    }

    #[test]
    fn a_list_names_its_topic_only_when_it_has_one() {
        let one = offsets(&[("orders", 0, 1), ("orders", 1, 1)]);
        let target = CommitTarget::of_list(&one);
        assert_eq!((target.destination.as_deref(), target.partition), (Some("orders"), None));
        let two = offsets(&[("orders", 0, 1), ("audit", 0, 1)]);
        assert_eq!(CommitTarget::of_list(&two).destination, None);
        let single = offsets(&[("orders", 3, 1)]);
        assert_eq!(CommitTarget::of_list(&single).partition, Some(3));
    }
}
