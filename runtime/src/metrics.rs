//! The messaging metrics of the OpenTelemetry semantic conventions (schema 1.42.0), recorded through the
//! OpenTelemetry metrics API on the global meter provider (cargo feature `metrics`):
//!
//! | metric | kind, unit | recorded for |
//! |:-|:-|:-|
//! | `messaging.process.duration` | histogram, `s` | every traced handler of one message or of a batch |
//! | `messaging.client.operation.duration` | histogram, `s` | every traced publish (`send`) and settle span (`ack`, `nack`, `reject`, `commit`, `store_offset`) |
//! | `messaging.client.sent.messages` | counter, `{message}` | every traced publish: the records its context was written into, at least 1 |
//! | `messaging.client.consumed.messages` | counter, `{message}` | every message a [`ConsumerTracing`](crate::clients::ConsumerTracing) receives; a failed receive adds 0 under its `error.type` |
//! | `tracehop.message.age` | histogram, `s` | every consumed message with a timestamp: how long it waited (see [`AGE_ATTRIBUTE`](crate::AGE_ATTRIBUTE)) |
//! | `tracehop.consumer.context` | counter, `{message}` | every consumed message, by what became of its trace context ([`CONTEXT_METRIC`]) |
//!
//! Their attributes: `messaging.system`, `messaging.operation.name`, `messaging.operation.type` (client
//! operations), `messaging.consumer.group.name` (consumers with a group), `messaging.destination.name` (the topic
//! or exchange; left out when the destination is unknown) and `error.type` when the operation failed (the same
//! value as on the span). Partition ids are not recorded: they multiply the series for little gain. Histograms
//! carry the conventions' advised bucket boundaries ([`DURATION_BUCKETS`]).
//!
//! `tracehop.consumer.context` has no operation attributes; it adds [`CONTEXT_OUTCOME_ATTRIBUTE`] and, when the
//! context was not continued, [`CONTEXT_REJECTED_ATTRIBUTE`](crate::CONTEXT_REJECTED_ATTRIBUTE) (see
//! [`CONTEXT_METRIC`]).
//!
//! Metrics are recorded for every message, sampled or not. tracehop creates its instruments once, from the global
//! meter provider, and creates them again when it sees another provider installed (`global::set_meter_provider`):
//! a provider set after the first messages, or replaced in a test, receives every later measurement. Recording
//! allocates nothing once a destination has been seen on a thread.
//!
//! Without the feature (or with no meter provider installed, when OpenTelemetry's no-op one is global) nothing is
//! measured. The feature is off by default: with no meter provider it still costs about 1,250 instructions per
//! message (measured with `runtime/benches/per_message.rs`; the README's "Metrics" section has the numbers), and
//! allocates nothing.

/// The bucket boundaries, in seconds, of tracehop's duration histograms: the messaging conventions' advice for
/// `messaging.process.duration` and `messaging.client.operation.duration`.
///
/// ```
/// assert_eq!(tracehop::metrics::DURATION_BUCKETS.len(), 14);
/// ```
pub const DURATION_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// The name of the histogram of how long consumed messages waited before their handler started, in seconds (no
/// convention defines one).
///
/// ```
/// assert_eq!(tracehop::metrics::MESSAGE_AGE_METRIC, "tracehop.message.age");
/// ```
pub const MESSAGE_AGE_METRIC: &str = "tracehop.message.age";

/// The bucket boundaries, in seconds, of [`MESSAGE_AGE_METRIC`]: the duration buckets, then up to an hour, since a
/// message can wait in a queue far longer than a handler runs.
///
/// ```
/// assert_eq!(tracehop::metrics::AGE_BUCKETS.last(), Some(&3600.0));
/// ```
pub const AGE_BUCKETS: [f64; 20] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0,
    3600.0,
];

/// The name of the counter of consumed messages by what became of the trace context each carried: where traces
/// break, per `messaging.system`, `messaging.destination.name` and `messaging.consumer.group.name`, so the
/// topics and queues fed by producers that do not propagate a context show without reading a span.
///
/// Its attribute [`CONTEXT_OUTCOME_ATTRIBUTE`] is one of
/// - `continued`: the message's context is the consumer span's parent;
/// - `linked`: a valid context, linked and not adopted, by the handler's policy (`parent = "link"`, a replay
///   handler) or because the message was handled in a batch;
/// - `not_read`: the handler's policy is `parent = "none"`, so its headers were not read;
/// - `missing`: the message carried no context;
/// - `rejected`: it carried one tracehop did not continue.
///
/// With `missing` and `rejected` the counter also has
/// [`CONTEXT_REJECTED_ATTRIBUTE`](crate::CONTEXT_REJECTED_ATTRIBUTE), with the value the consumer span records
/// ([`ContextRejection::as_str`](crate::ContextRejection::as_str): `missing`, `traceparent_wrong_length`, ...).
///
/// Every message a traced consumer handles counts once, sampled or not: the message of a handler's own span when
/// its span starts, each message of a batch when the batch span is prepared (a batch links its messages, so a
/// valid context counts as `linked`; a valid `traceparent` counts so without asking the propagator, whose
/// answer the batch span needs only when recorded). A span started for one message inside a batch
/// ([`MessageSpan::in_batch`](crate::MessageSpan::in_batch)) counts nothing more: its batch counted it. A
/// producer counts nothing.
///
/// ```
/// assert_eq!(tracehop::metrics::CONTEXT_METRIC, "tracehop.consumer.context");
/// ```
pub const CONTEXT_METRIC: &str = "tracehop.consumer.context";

/// The attribute of [`CONTEXT_METRIC`] saying what became of a consumed message's trace context: `continued`,
/// `linked`, `not_read`, `missing` or `rejected`.
///
/// ```
/// assert_eq!(tracehop::metrics::CONTEXT_OUTCOME_ATTRIBUTE, "tracehop.context.outcome");
/// ```
pub const CONTEXT_OUTCOME_ATTRIBUTE: &str = "tracehop.context.outcome";

#[cfg(feature = "metrics")]
pub(crate) use recording::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use disabled::*;

#[cfg(feature = "metrics")]
mod recording {
    use std::sync::{Arc, OnceLock, RwLock, Weak};
    use std::time::{Instant, SystemTime};

    use opentelemetry::global;
    use opentelemetry::metrics::{Counter, Histogram, MeterProvider};
    use opentelemetry::{Key, KeyValue, StringValue, Value};

    use super::{AGE_BUCKETS, CONTEXT_METRIC, CONTEXT_OUTCOME_ATTRIBUTE, DURATION_BUCKETS, MESSAGE_AGE_METRIC};
    use crate::brokers::MessagingSystem;
    use crate::carrier::{extract_context, ConsumedMessage, IncomingContext, MessageFacts};
    use crate::conventions::{self as semconv, self as metric, Operation};
    use crate::handler::Handler;
    use crate::settings::ParentPolicy;
    use crate::w3c::{ContextRejection, TraceHeaders};
    use crate::CONTEXT_REJECTED_ATTRIBUTE;

    /// tracehop's instruments, made from one meter provider.
    struct Instruments {
        process_duration: Histogram<f64>,
        operation_duration: Histogram<f64>,
        sent_messages: Counter<u64>,
        consumed_messages: Counter<u64>,
        message_age: Histogram<f64>,
        contexts: Counter<u64>,
    }

    impl Instruments {
        fn new(provider: &(dyn MeterProvider + Send + Sync)) -> Self {
            let meter = provider.meter_with_scope(crate::span::instrumentation_scope());
            Instruments {
                process_duration: meter
                    .f64_histogram(metric::MESSAGING_PROCESS_DURATION)
                    .with_description("Duration of processing operation.")
                    .with_unit("s")
                    .with_boundaries(DURATION_BUCKETS.to_vec())
                    .build(),
                operation_duration: meter
                    .f64_histogram(metric::MESSAGING_CLIENT_OPERATION_DURATION)
                    .with_description("Duration of messaging operation initiated by a producer or consumer client.")
                    .with_unit("s")
                    .with_boundaries(DURATION_BUCKETS.to_vec())
                    .build(),
                sent_messages: meter
                    .u64_counter(metric::MESSAGING_CLIENT_SENT_MESSAGES)
                    .with_description("Number of messages producer attempted to send to the broker.")
                    .with_unit("{message}")
                    .build(),
                consumed_messages: meter
                    .u64_counter(metric::MESSAGING_CLIENT_CONSUMED_MESSAGES)
                    .with_description("Number of messages that were delivered to the application.")
                    .with_unit("{message}")
                    .build(),
                message_age: meter
                    .f64_histogram(MESSAGE_AGE_METRIC)
                    .with_description("How long a consumed message waited before its handler started.")
                    .with_unit("s")
                    .with_boundaries(AGE_BUCKETS.to_vec())
                    .build(),
                contexts: meter
                    .u64_counter(CONTEXT_METRIC)
                    .with_description("Consumed messages, by what became of the trace context each carried.")
                    .with_unit("{message}")
                    .build(),
            }
        }
    }

    type Provider = dyn MeterProvider + Send + Sync;

    /// The instruments and the provider they were made from. A `Weak`: tracehop must not keep a replaced provider
    /// alive (an SDK provider flushes and shuts down when its last handle goes), while the allocation it pins
    /// keeps the address from being reused by a later provider, so comparing addresses is sound.
    static INSTRUMENTS: RwLock<Option<(Weak<Provider>, Arc<Instruments>)>> = RwLock::new(None);

    /// Runs `measure` with the instruments of the global meter provider, made again when it changed.
    fn with_instruments(measure: impl FnOnce(&Instruments)) {
        let provider = global::meter_provider();
        let made_from = |weak: &Weak<Provider>| std::ptr::addr_eq(weak.as_ptr(), Arc::as_ptr(&provider));
        {
            let cached = INSTRUMENTS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((_, instruments)) = cached.as_ref().filter(|(weak, _)| made_from(weak)) {
                measure(instruments);
                return;
            }
        }
        let instruments = {
            let mut cached = INSTRUMENTS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            match cached.as_ref().filter(|(weak, _)| made_from(weak)) {
                Some((_, instruments)) => instruments.clone(),
                None => {
                    // OpenTelemetry's no-op provider logs (at debug) that it was asked for a meter, a hint for an
                    // application that forgot its provider; a service that installs none has chosen no metrics,
                    // and tracehop, on by default, must not add a line to its logs for that.
                    let quiet = tracing::subscriber::NoSubscriber::default();
                    let instruments =
                        tracing::subscriber::with_default(quiet, || Arc::new(Instruments::new(&*provider)));
                    *cached = Some((Arc::downgrade(&provider), instruments.clone()));
                    instruments
                }
            }
        };
        measure(&instruments);
    }

    /// Up to six attributes on the stack: a measurement's attributes cost no allocation.
    struct MetricAttributes {
        entries: [KeyValue; 6],
        len: usize,
    }

    impl MetricAttributes {
        fn new() -> Self {
            const EMPTY: fn() -> KeyValue = || KeyValue::new(Key::from_static_str(""), Value::Bool(false));
            MetricAttributes { entries: [EMPTY(), EMPTY(), EMPTY(), EMPTY(), EMPTY(), EMPTY()], len: 0 }
        }

        fn push(&mut self, key: &'static str, value: impl Into<StringValue>) {
            if let Some(entry) = self.entries.get_mut(self.len) {
                *entry = KeyValue::new(Key::from_static_str(key), Value::String(value.into()));
                self.len += 1;
            }
        }

        fn as_slice(&self) -> &[KeyValue] {
            &self.entries[..self.len]
        }
    }

    /// What a measurement's attributes are made of, fixed when it starts.
    #[derive(Debug)]
    struct Target {
        system: Option<MessagingSystem>,
        group: Option<&'static str>,
        destination: Option<StringValue>,
    }

    impl Target {
        fn of(
            handler: &Handler,
            system: Option<MessagingSystem>,
            destination: Option<&str>,
            message: Option<&dyn MessageFacts>,
        ) -> Self {
            let system = system.or_else(|| message.map(MessageFacts::system)).or(handler.configured_system());
            let destination = match (destination, handler.configured_destination()) {
                (Some(destination), _) => Some(crate::attributes::recurring(destination)),
                (None, Some(fixed)) => Some(StringValue::from(fixed)),
                (None, None) => message.and_then(MessageFacts::destination).map(crate::attributes::recurring),
            };
            Target { system, group: handler.configured_group(), destination }
        }

        fn attributes(&self, operation_name: &'static str, operation_type: Option<&'static str>) -> MetricAttributes {
            let mut attributes = MetricAttributes::new();
            if let Some(system) = self.system {
                attributes.push(semconv::MESSAGING_SYSTEM, system.as_str());
            }
            attributes.push(semconv::MESSAGING_OPERATION_NAME, operation_name);
            if let Some(operation_type) = operation_type {
                attributes.push(semconv::MESSAGING_OPERATION_TYPE, operation_type);
            }
            if let Some(group) = self.group {
                attributes.push(semconv::MESSAGING_CONSUMER_GROUP_NAME, group);
            }
            if let Some(destination) = &self.destination {
                attributes.push(semconv::MESSAGING_DESTINATION_NAME, destination.clone());
            }
            attributes
        }

        /// The attributes of [`CONTEXT_METRIC`]: where the message was consumed, and its `outcome`.
        fn context_attributes(&self, outcome: ContextOutcome) -> MetricAttributes {
            let mut attributes = MetricAttributes::new();
            if let Some(system) = self.system {
                attributes.push(semconv::MESSAGING_SYSTEM, system.as_str());
            }
            if let Some(group) = self.group {
                attributes.push(semconv::MESSAGING_CONSUMER_GROUP_NAME, group);
            }
            if let Some(destination) = &self.destination {
                attributes.push(semconv::MESSAGING_DESTINATION_NAME, destination.clone());
            }
            attributes.push(CONTEXT_OUTCOME_ATTRIBUTE, outcome.as_str());
            if let ContextOutcome::NotContinued(rejection) = outcome {
                attributes.push(CONTEXT_REJECTED_ATTRIBUTE, rejection.as_str());
            }
            attributes
        }
    }

    /// What became of a consumed message's trace context: the value of [`CONTEXT_OUTCOME_ATTRIBUTE`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum ContextOutcome {
        Continued,
        Linked,
        NotRead,
        /// `missing` for [`ContextRejection::Missing`], `rejected` for any other reason.
        NotContinued(ContextRejection),
    }

    impl ContextOutcome {
        /// The outcome of a message handled in a span of its own, under `policy`: `incoming` is `None` when the
        /// policy did not read the headers.
        fn of(incoming: Option<&IncomingContext>, policy: ParentPolicy) -> Self {
            match incoming {
                None => ContextOutcome::NotRead,
                Some(IncomingContext::Continued(..)) if policy == ParentPolicy::Continue => ContextOutcome::Continued,
                Some(IncomingContext::Continued(..)) => ContextOutcome::Linked,
                Some(IncomingContext::NewRoot(rejection)) => ContextOutcome::NotContinued(*rejection),
            }
        }

        /// The outcome of a message of a batch, which links the contexts it reads. A valid W3C `traceparent`
        /// answers at once, with no `Context` built; only a message without one goes to the propagator.
        fn of_batch_member<M: ConsumedMessage + ?Sized>(message: &M, policy: ParentPolicy) -> Self {
            if policy == ParentPolicy::None {
                return ContextOutcome::NotRead;
            }
            match TraceHeaders::scan(message.headers()).has_valid_traceparent() {
                Ok(true) => ContextOutcome::Linked,
                Err(rejection) => ContextOutcome::NotContinued(rejection),
                Ok(false) => match extract_context(message) {
                    IncomingContext::Continued(..) => ContextOutcome::Linked,
                    IncomingContext::NewRoot(rejection) => ContextOutcome::NotContinued(rejection),
                },
            }
        }

        const fn as_str(self) -> &'static str {
            match self {
                ContextOutcome::Continued => "continued",
                ContextOutcome::Linked => "linked",
                ContextOutcome::NotRead => "not_read",
                ContextOutcome::NotContinued(ContextRejection::Missing) => "missing",
                ContextOutcome::NotContinued(_) => "rejected",
            }
        }
    }

    /// Counts the messages of a batch in [`CONTEXT_METRIC`], each by its own outcome and destination. Messages
    /// in a row with the same destination and outcome (most batches: one topic, one kind of producer) are
    /// added at once.
    pub(crate) fn count_batch_contexts<M: ConsumedMessage>(handler: &Handler, messages: &[M]) {
        let policy = handler.parent_policy();
        let add = |instruments: &Instruments, first: &M, outcome: ContextOutcome, count: u64| {
            let target = Target::of(handler, None, None, Some(first));
            instruments.contexts.add(count, target.context_attributes(outcome).as_slice());
        };
        with_instruments(|instruments| {
            let mut run: Option<(&M, ContextOutcome, u64)> = None;
            for message in messages {
                let outcome = ContextOutcome::of_batch_member(message, policy);
                match &mut run {
                    Some((first, same, count)) if *same == outcome && first.destination() == message.destination() => {
                        *count += 1;
                    }
                    _ => {
                        if let Some((first, outcome, count)) = run.replace((message, outcome, 1)) {
                            add(instruments, first, outcome, count);
                        }
                    }
                }
            }
            if let Some((first, outcome, count)) = run {
                add(instruments, first, outcome, count);
            }
        });
    }

    /// One operation being measured: started with the span, recorded when it ends.
    #[derive(Debug)]
    pub(crate) struct Measurement {
        started: Option<(Instant, Operation, Target)>,
        error_type: OnceLock<&'static str>,
        /// What became of the consumed message's context, counted when the span ends.
        context: Option<ContextOutcome>,
    }

    impl Measurement {
        /// Nothing to measure: a message's span inside a batch (the batch's span is measured).
        pub(crate) const fn none() -> Self {
            Measurement { started: None, error_type: OnceLock::new(), context: None }
        }

        /// Starts measuring a handler's span (`Operation::Process` for a consumer, `Send` for a producer), and
        /// records the age of the message it handles, if any.
        pub(crate) fn begin(
            handler: &Handler,
            operation: Operation,
            system: Option<MessagingSystem>,
            destination: Option<&str>,
            message: Option<&dyn MessageFacts>,
        ) -> Self {
            let target = Target::of(handler, system, destination, message);
            if let (Operation::Process, Some(message)) = (operation, message) {
                let age = crate::consumer_extras::age_millis(message.timestamp_millis(), SystemTime::now());
                if let Some(age) = age {
                    let attributes = target.attributes(operation.name(), None);
                    with_instruments(|instruments| {
                        instruments.message_age.record(age as f64 / 1000.0, attributes.as_slice())
                    });
                }
            }
            Measurement {
                started: Some((Instant::now(), operation, target)),
                error_type: OnceLock::new(),
                context: None,
            }
        }

        /// Counts the consumed message of this handler's span in [`CONTEXT_METRIC`]: `incoming` is its extracted
        /// context (`None` when `policy` did not read it).
        /// Counted when the span ends, with its other metrics: one look-up of the instruments for both.
        pub(crate) fn count_context(&mut self, incoming: Option<&IncomingContext>, policy: ParentPolicy) {
            self.context = Some(ContextOutcome::of(incoming, policy));
        }

        /// Marks the operation failed with `error_type` (the first one recorded wins, as the span's status).
        pub(crate) fn fail(&self, error_type: &'static str) {
            let _ = self.error_type.set(error_type);
        }

        /// Records the operation's duration (and, for a publish, `sent` messages).
        pub(crate) fn finish(&mut self, sent: u32) {
            let Some((started, operation, target)) = self.started.take() else { return };
            let seconds = started.elapsed().as_secs_f64();
            // `messaging.process.duration` has no operation type: its name says it.
            let operation_type = (operation != Operation::Process).then(|| operation.type_name());
            let mut attributes = target.attributes(operation.name(), operation_type);
            if let Some(error_type) = self.error_type.get() {
                attributes.push(semconv::ERROR_TYPE, *error_type);
            }
            let context = self.context.map(|outcome| target.context_attributes(outcome));
            with_instruments(|instruments| match operation {
                Operation::Process => {
                    instruments.process_duration.record(seconds, attributes.as_slice());
                    if let Some(context) = &context {
                        instruments.contexts.add(1, context.as_slice());
                    }
                }
                Operation::Send => {
                    instruments.operation_duration.record(seconds, attributes.as_slice());
                    instruments.sent_messages.add(u64::from(sent.max(1)), attributes.as_slice());
                }
                Operation::Create | Operation::Receive | Operation::Settle(_) => {
                    instruments.operation_duration.record(seconds, attributes.as_slice())
                }
            });
        }
    }

    /// Counts one message a traced consumer received: `messaging.client.consumed.messages`.
    pub(crate) fn count_consumed(handler: &Handler, message: &dyn MessageFacts) {
        let target = Target::of(handler, None, None, Some(message));
        let attributes = target.attributes(Operation::Receive.name(), None);
        with_instruments(|instruments| instruments.consumed_messages.add(1, attributes.as_slice()));
    }

    /// A receive that failed: `messaging.client.consumed.messages` gets no message, under the failure's
    /// `error.type` (which the conventions require exactly when the operation failed), so failed receives show
    /// beside the messages received.
    pub(crate) fn count_failed_receive(handler: &Handler, system: Option<MessagingSystem>, error_type: &'static str) {
        let target = Target::of(handler, system, None, None);
        let mut attributes = target.attributes(Operation::Receive.name(), None);
        attributes.push(semconv::ERROR_TYPE, error_type);
        with_instruments(|instruments| instruments.consumed_messages.add(0, attributes.as_slice()));
    }
}

#[cfg(not(feature = "metrics"))]
mod disabled {
    use crate::brokers::MessagingSystem;
    use crate::carrier::{ConsumedMessage, IncomingContext, MessageFacts};
    use crate::conventions::Operation;
    use crate::handler::Handler;
    use crate::settings::ParentPolicy;

    /// Without the `metrics` feature a measurement is nothing, and none of its inputs is computed.
    #[derive(Debug)]
    pub(crate) struct Measurement;

    impl Measurement {
        pub(crate) const fn none() -> Self {
            Measurement
        }

        #[inline(always)]
        pub(crate) fn begin(
            _handler: &Handler,
            _operation: Operation,
            _system: Option<MessagingSystem>,
            _destination: Option<&str>,
            _message: Option<&dyn MessageFacts>,
        ) -> Self {
            Measurement
        }

        #[inline(always)]
        pub(crate) fn count_context(&mut self, _incoming: Option<&IncomingContext>, _policy: ParentPolicy) {}

        #[inline(always)]
        pub(crate) fn fail(&self, _error_type: &'static str) {}

        #[inline(always)]
        pub(crate) fn finish(&mut self, _sent: u32) {}
    }

    #[inline(always)]
    pub(crate) fn count_consumed(_handler: &Handler, _message: &dyn MessageFacts) {}

    #[inline(always)]
    pub(crate) fn count_batch_contexts<M: ConsumedMessage>(_handler: &Handler, _messages: &[M]) {}

    pub(crate) fn count_failed_receive(
        _handler: &Handler,
        _system: Option<MessagingSystem>,
        _error_type: &'static str,
    ) {
    }
}
