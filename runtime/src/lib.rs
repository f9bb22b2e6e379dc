//! # tracehop
//!
//! One OpenTelemetry trace across message brokers. Put `#[traced_producer]` on the function that publishes and
//! `#[traced_consumer]` on the handler that receives: the trace context rides in the message headers (W3C
//! `traceparent`, `tracestate` and, with its propagator installed, `baggage`), the producer gets a PRODUCER
//! span, the handler a CONSUMER span that continues the producer's trace (parent and link), both with the
//! OpenTelemetry messaging semantic-convention attributes (schema
//! [`1.42.0`](opentelemetry_semantic_conventions::SCHEMA_URL)).
//!
//! ```no_run
//! # #[cfg(feature = "kafka")] mod example {
//! use rdkafka::message::BorrowedMessage;
//! use rdkafka::producer::{FutureProducer, FutureRecord};
//! use std::time::Duration;
//!
//! #[tracehop::traced_producer]
//! async fn publish(producer: &FutureProducer, record: FutureRecord<'_, str, str>) {
//!     // `record` already carries the producer span's context in its headers
//!     let _ = producer.send(record, Duration::from_secs(5)).await;
//! }
//!
//! #[tracehop::traced_consumer(group = "inventory-service")]
//! async fn on_order(message: &BorrowedMessage<'_>) -> Result<(), std::io::Error> {
//!     // runs inside a CONSUMER span, a child of the producer's span
//!     Ok(())
//! }
//! # }
//! ```
//!
//! ## What the macros do
//! They expand to calls of this crate's public API, which code that cannot use an attribute calls directly:
//! [`MessageSpan::consumer`] extracts the context ([`extract_context`]) and starts the CONSUMER span,
//! [`MessageSpan::producer`] starts the PRODUCER span, [`MessageSpan::inject`] writes its context into the
//! record (or the body does, with [`inject_current_context`] or `kafka::trace_headers`),
//! [`MessageSpan::run`] and [`MessageSpan::instrument`] run the body with the span current and record its
//! outcome ([`HandlerOutcome`]).
//!
//! ## Missing or malformed context
//! Is not an error: the handler runs under a new root trace whose span records why in
//! `tracehop.context.rejected` (see [`ContextRejection`]). Only the `traceparent` decides: a `tracestate` that
//! cannot be parsed is discarded whole and one over 512 bytes truncated (W3C Trace Context Level 2), a `baggage`
//! that breaks the W3C rules or limits loses just the offending members, the trace continues, and the span records
//! why in `tracehop.context.tracestate.trimmed` or `tracehop.context.baggage.trimmed` (see [`TrimReason`]).
//! Nothing panics and nothing is logged per message above `debug`.
//!
//! ## Set-up
//! tracehop uses OpenTelemetry's global tracer provider and global propagator. Install a propagator once
//! ([`install_propagator`] installs the W3C ones) and a tracer provider, before the first message; with the
//! `otlp` feature, `let _telemetry = tracehop::init()?;` at the top of `main` does both.
//!
//! ## Attribute options
//! The one list of them; each becomes a call on the [`Handler`] (or, for a value read per message, on the
//! [`SpanStart`]) that code without the macros makes itself.
//!
//! | option | consumer | producer | example | becomes |
//! |:-|:-:|:-:|:-|:-|
//! | `message` | ✓ | | `message = delivery` | picks the message parameter, for a type tracehop does not know by name (an alias, another broker's [`ConsumedMessage`]) |
//! | `record` | | ✓ | `record = properties` | picks the record parameter, likewise ([`PublishedMessage`]) |
//! | `system` | ✓ | ✓ | `system = "kafka"` | [`Handler::system`]; inferred from the message or record type |
//! | `destination` | ✓ | ✓ | `destination = "orders"` or `= expr` | [`Handler::destination`], or [`SpanStart::destination`] per message |
//! | `group` | ✓ | | `group = "inventory-service"` | [`Handler::group`] |
//! | `routing_key` | | ✓ | `routing_key = "order.created"` or `= expr` | [`Handler::routing_key`], or [`SpanStart::routing_key`] per message |
//! | `name` | ✓ | ✓ | `name = "reserve stock"` | [`Handler::span_name`] |
//! | `parent` | ✓ | | `parent = "link"` (`"continue"`, `"none"`) | [`Handler::parent`] ([`ParentPolicy`]) |
//! | `replay` | ✓ | | `replay` | [`Handler::replay`] |
//! | `attributes` | ✓ | ✓ | `attributes(app.order.id = order.id)` | [`SpanStart::attributes`], computed only for recorded spans |
//! | `capture_headers` | ✓ | | `capture_headers("x-tenant", "x-request-*")` | [`Handler::capture_headers`] |
//! | `exclude_headers` | ✓ | | `exclude_headers("x-internal-*")` | [`Handler::exclude_headers`] |
//! | `attempt_header` | ✓ | | `attempt_header = "x-retry-count"` | [`Handler::attempt_header`] |
//! | `crate` | ✓ | ✓ | `crate = "::th"` | where tracehop is, when renamed in Cargo.toml |
//!
//! ## Batches
//! A consumer taking `&[M]`, `Vec<M>` or `&Vec<M>` of messages gets one span linked to every message
//! ([`MessageSpan::consumer_batch`]); [`MessageSpan::in_batch`] gives each message a span of its own inside it.
//! A producer publishing several records gives each a creation context with [`inject_creation_context`].
//!
//! ## Without an attribute
//! A loop over a consumer's stream, a closure, a producer shared across tasks: [`clients`] has traced
//! producers (`clients::kafka::TracedFutureProducer`, `clients::rabbitmq::TracedChannel`,
//! `clients::nats::TracedClient`, `clients::nats::TracedJetStream`) and consumers
//! ([`clients::ConsumerTracing`]) that give them the same spans, through the same functions.
//!
//! ## A message's whole life
//! A failing handler republishes its message for another attempt ([`Republish`]) or gives it up to a dead-letter
//! destination ([`DeadLetter`]) through its broker's client helpers (`clients::kafka::retry`,
//! `clients::rabbitmq::dead_letter`, ...): every attempt and the dead letter stay in the message's trace, linked to
//! what they came from. Kafka commits can link the process spans of the offsets they commit
//! (`clients::kafka::CommitLedger`), and a transaction is one span around its sends
//! (`clients::kafka::begin_transaction`). [`LinkSampler`] keeps the spans that start a trace of their own
//! (`parent = "link"`, replays, batches) when a producer they link to was sampled.
//!
//! ## Beyond spans
//! The messaging metrics ([`metrics`], feature `metrics`; `tracehop.consumer.context` counts where traces
//! break), exception log records (feature `logs`), settle spans around acknowledgements and commits
//! ([`Settle`], and the broker helpers in [`clients`]), captured headers ([`set_captured_headers`]), and on
//! consumer spans the message's redelivery, attempt and age ([`REDELIVERED_ATTRIBUTE`], [`ATTEMPT_ATTRIBUTE`],
//! [`AGE_ATTRIBUTE`], ...), and why and where RabbitMQ dead-lettered a dead letter, from its `x-death` header
//! ([`DEATH_REASON_ATTRIBUTE`], [`DEATH_QUEUE_ATTRIBUTE`], ...): its headers kept, it continues the producer's trace.
//!
//! ## Cargo features
//! - `kafka`: rdkafka's messages and records.
//! - `rabbitmq`: lapin's deliveries and publish properties.
//! - `nats`: async-nats's core and JetStream messages and the header maps publishes send (async-nats needs Rust
//!   1.89).
//! - `otlp`: `init`, one call in a service's `main` that installs the W3C propagators and a tracer provider
//!   configured by the standard `OTEL_*` variables (service name and resource, sampler, OTLP export over gRPC,
//!   HTTP/protobuf or HTTP/JSON), returning a `Telemetry` guard that flushes on drop; `Telemetry::builder`
//!   overrides the variables in code. Also `otlp::install`, the older HTTP-only set-up.
//! - `print`: `TracePicture` and `print_traces`, finished spans drawn as trees for a terminal or a test.
//! - `tracing`: `HandlerEventsLayer`, so `tracing` events written in a handler's body become events of its span.
//! - `metrics`: the messaging metrics on the global meter provider ([`metrics`]); off by default, since it costs
//!   instructions on every message even when no meter provider is installed (BENCHMARKS.md, the `+metrics` rows).
//! - `logs`: a failed processing, publish or settle is also the messaging conventions' exception event
//!   (`messaging.process.exception`, ...) as an OpenTelemetry log record, to the logger provider given to
//!   `logs::set_logger_provider`; costs nothing until a span fails.
#![warn(missing_docs)]

mod attributes;
mod brokers;
mod capture;
mod carrier;
pub mod clients;
mod consumer_extras;
mod conventions;
mod handler;
mod injections;
mod lineage;
#[cfg(feature = "logs")]
pub mod logs;
#[cfg(not(feature = "logs"))]
#[path = "logs_off.rs"]
mod logs;
pub mod metrics;
#[cfg(feature = "print")]
mod picture;
mod sampling;
mod settings;
mod settle;
mod setup;
mod span;
#[cfg(feature = "tracing")]
mod tracing_bridge;
mod w3c;

// Empty when no broker feature is on.
#[allow(unused_imports)]
pub use brokers::carriers::*;
#[cfg(feature = "otlp")]
pub use setup::otlp;

pub use __private::MessageParameter;
pub use attributes::{AttributeValue, DestinationName, SpanAttributes};
pub use brokers::rabbitmq::death::{
    DEATH_EXCHANGE_ATTRIBUTE, DEATH_QUEUE_ATTRIBUTE, DEATH_REASON_ATTRIBUTE, DEATH_ROUTING_KEYS_ATTRIBUTE,
    FIRST_DEATH_EXCHANGE_ATTRIBUTE, FIRST_DEATH_QUEUE_ATTRIBUTE, FIRST_DEATH_REASON_ATTRIBUTE,
};
pub use brokers::rabbitmq::DEATH_COUNT_ATTRIBUTE;
pub use brokers::MessagingSystem;
pub use capture::{header_pattern_matches, is_protected_header, set_captured_headers, CAPTURED_HEADER_PREFIX};
pub use carrier::{
    extract_context, inject_context, inject_current_context, ConsumedMessage, HeaderExtractor, HeaderInjector,
    IncomingContext, MessageFacts, PublishedMessage,
};
pub use consumer_extras::{AGE_ATTRIBUTE, ATTEMPT_ATTRIBUTE, DELIVERY_COUNT_ATTRIBUTE, REDELIVERED_ATTRIBUTE};
pub use handler::{Handler, Role};
pub use lineage::{
    Coordinate, DeadLetter, Republish, ATTEMPT_HEADER, DEAD_LETTER_DESTINATION_ATTRIBUTE,
    DEAD_LETTER_ERROR_TYPE_ATTRIBUTE, DEAD_LETTER_ERROR_TYPE_HEADER, DEAD_LETTER_ORIGIN_ATTRIBUTE,
    DEAD_LETTER_ORIGIN_HEADER, FAILED_PROCESS_HEADER, FIRST_CONTEXT_HEADER, HEADER_PREFIX as LINEAGE_HEADER_PREFIX,
    LINK_RELATION_ATTRIBUTE, PREVIOUS_ATTEMPT_HEADER,
};
#[cfg(feature = "print")]
pub use picture::{print as print_traces, TracePicture};
pub use sampling::{links_before_sampling, set_links_before_sampling, LinkSampler};
pub use settings::{
    default_parent_policy, max_links_per_span, random_trace_ids, set_default_parent_policy, set_max_links_per_span,
    set_random_trace_ids, ParentPolicy, DEFAULT_MAX_LINKS_PER_SPAN,
};
pub use settle::{Settle, Settlement};
pub use setup::install_propagator;
#[cfg(feature = "otlp")]
pub use setup::telemetry::{init, OtlpProtocol, Telemetry, TelemetryBuilder, TelemetryError};
pub use span::{
    inject_creation_context, HandlerOutcome, Instrumented, MessageSpan, SpanStart, BAGGAGE_TRIMMED_ATTRIBUTE,
    CONTEXT_INJECTED_ATTRIBUTE, CONTEXT_NOT_INJECTED_EVENT, CONTEXT_REJECTED_ATTRIBUTE, LINKS_DROPPED_ATTRIBUTE,
    REPLAY_ATTRIBUTE, REPLAY_ORIGINAL_TIME_ATTRIBUTE, TRACESTATE_TRIMMED_ATTRIBUTE,
};
/// Traces a message handler: a CONSUMER span that continues the producer's trace (parent and link), with the
/// messaging attributes of the message, current across every `.await` of the body, failed on `Err` or panic.
///
/// The handler takes one message (rdkafka's `BorrowedMessage`/`OwnedMessage`, lapin's `Delivery`, async-nats's
/// `Message` or `jetstream::Message`; by value or by reference) or a batch of them (`&[M]`, `Vec<M>`, `&Vec<M>`:
/// one span linked to every message). It may be sync or `async`, a free function or a method, generic, and return
/// anything; its result is passed through.
///
/// Its options are those with a ✓ under "consumer" in the [crate's option table](crate#attribute-options).
///
/// ```no_run
/// # #[cfg(feature = "kafka")] mod example {
/// use rdkafka::message::{BorrowedMessage, OwnedMessage};
///
/// #[tracehop::traced_consumer(group = "inventory-service", attributes(app.partition = message.partition()))]
/// async fn reserve(message: &BorrowedMessage<'_>) -> Result<(), std::io::Error> {
///     Ok(())
/// }
///
/// #[tracehop::traced_consumer(group = "audit", replay)]
/// fn audit(message: OwnedMessage) {}
///
/// #[tracehop::traced_consumer(group = "billing")]
/// fn bill(messages: &[OwnedMessage]) -> usize {
///     messages.len()
/// }
/// # use rdkafka::Message;
/// # }
/// ```
#[doc(inline)]
pub use tracehop_macros::traced_consumer;
#[cfg(feature = "tracing")]
pub use tracing_bridge::{HandlerEventsLayer, WithTraceIds};

/// Traces a publish function: a PRODUCER span, a child of the current context, whose context reaches the
/// published message's headers.
///
/// Either the function takes the record (rdkafka's `FutureRecord`/`BaseRecord`, lapin's `BasicProperties`,
/// async-nats's `HeaderMap`; by value or `&mut`) and the expansion writes the context into it before the body
/// runs, or the body builds the headers with `kafka::trace_headers`/`rabbitmq::trace_properties`/
/// `nats::trace_headers` (or [`inject_current_context`],
/// [`inject_creation_context`]). A span that ends with nothing injected is marked and warned about once.
///
/// Its options are those with a ✓ under "producer" in the [crate's option table](crate#attribute-options);
/// `system` is needed when the signature names no record and more than one broker feature is on.
///
/// ```no_run
/// # #[cfg(feature = "kafka")] mod example {
/// use std::time::Duration;
/// use rdkafka::producer::{FutureProducer, FutureRecord};
///
/// #[tracehop::traced_producer(attributes(app.order.id = order_id))]
/// async fn publish(producer: &FutureProducer, order_id: u64, record: FutureRecord<'_, str, str>) {
///     let _ = producer.send(record, Duration::from_secs(5)).await;
/// }
/// # }
/// ```
#[doc(inline)]
pub use tracehop_macros::traced_producer;
pub use w3c::{
    trim_baggage, trim_tracestate, validate_traceparent, ContextRejection, TrimReason, Trimmed, Trims, W3cBaggage,
    W3cTraceContext, BAGGAGE_HEADER, MAX_BAGGAGE_LEN, MAX_BAGGAGE_MEMBERS, MAX_TRACESTATE_LEN, MAX_TRACESTATE_MEMBERS,
    TRACEPARENT_HEADER, TRACESTATE_HEADER,
};

/// The README's code blocks, compiled and run as doc tests in the builds that have the features they use.
#[cfg(all(doctest, feature = "kafka", feature = "rabbitmq", feature = "otlp", feature = "tracing"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// What `#[traced_consumer]` and `#[traced_producer]` expand to; not a public API.
#[doc(hidden)]
#[path = "expansion.rs"]
pub mod __private;
