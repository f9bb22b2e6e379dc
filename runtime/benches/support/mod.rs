//! What the benchmarks share: the messages, an exporter that drops spans, and every path tracehop is compared
//! with — the SDK floor, the guides' hand-written glue over OpenTelemetry's own propagators, and the `tracing` +
//! `tracing-opentelemetry` route — so each bench binary measures the same code.
// Each bench binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::hint::black_box;
use std::str::FromStr;
use std::sync::LazyLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, ShouldSample, SpanData, SpanExporter};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::FutureRecord;
use tracehop::{Handler, MessageSpan};

pub mod lineage;
// Only the benches that measure NATS need tracehop's `nats` feature (their `required-features`).
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;

pub static CONSUMER: Handler = Handler::consumer("bench::on_order").group("inventory-service");
pub static PRODUCER: Handler = Handler::producer("bench::publish");

pub const TRACE_ID: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
pub const SPAN_ID: u64 = 0x00f067aa0ba902b7;
pub const TRACESTATE: &str = "congo=t61rcWkgMzE";

/// An order message on partition 0 of `orders`, at offset 42, carrying `headers`.
pub fn order_message(headers: OwnedHeaders) -> OwnedMessage {
    OwnedMessage::new(
        Some(b"{\"id\":7}".to_vec()),
        Some(b"order-7".to_vec()),
        "orders".to_owned(),
        Timestamp::NotAvailable,
        0,
        42,
        Some(headers),
    )
}

/// The `traceparent` of the producer's span in trace `trace_id`.
pub fn traceparent(trace_id: u128, sampled: bool) -> String {
    traceparent_with_flags(trace_id, u8::from(sampled))
}

/// The `traceparent` of the producer's span in trace `trace_id`, with trace flags `flags`.
pub fn traceparent_with_flags(trace_id: u128, flags: u8) -> String {
    format!("00-{trace_id:032x}-{SPAN_ID:016x}-{flags:02x}")
}

/// The `tracestate` of [`Tracestates::Level2`]: [`TRACESTATE`]'s member and one whose key (a system id of 14
/// characters) W3C Trace Context allows and OpenTelemetry's `TraceState` refuses.
pub const LEVEL2_TRACESTATE: &str = "congo=t61rcWkgMzE,tenant@vvvvvvvvvvvvvv=1";

/// An order message with two application headers and the producer's `traceparent` and [`TRACESTATE`]: what the
/// issue's figures and every per-message case with a constant `tracestate` use.
pub fn traced_message(trace_id: u128, sampled: bool) -> OwnedMessage {
    traced_message_with(trace_id, sampled, Some(TRACESTATE))
}

/// [`traced_message`] carrying `tracestate` instead, or no `tracestate` header at all.
pub fn traced_message_with(trace_id: u128, sampled: bool, tracestate: Option<&str>) -> OwnedMessage {
    let traceparent = traceparent(trace_id, sampled);
    let headers = OwnedHeaders::new()
        .insert(Header { key: "content-type", value: Some("application/json") })
        .insert(Header { key: "x-request-id", value: Some("7f3c2a") })
        .insert(Header { key: "traceparent", value: Some(&traceparent) });
    order_message(match tracestate {
        Some(tracestate) => headers.insert(Header { key: "tracestate", value: Some(tracestate) }),
        None => headers,
    })
}

/// The remote parent a message of [`traced_message`] carries, built directly: what the SDK floor starts from.
pub fn remote_parent(trace_id: u128, sampled: bool) -> Context {
    remote_parent_with(trace_id, sampled, Some(TRACESTATE))
}

/// The remote parent a message of [`traced_message_with`] carries (an empty `TraceState` for no `tracestate`).
pub fn remote_parent_with(trace_id: u128, sampled: bool, tracestate: Option<&str>) -> Context {
    let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    let trace_state = match tracestate {
        Some(tracestate) => TraceState::from_str(tracestate).expect("a valid tracestate"),
        None => TraceState::default(),
    };
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(trace_id),
        SpanId::from(SPAN_ID),
        flags,
        true,
        trace_state,
    ))
}

/// How the `tracestate` of consecutive messages varies. tracehop remembers the last `tracestate` each thread
/// read, so a run where every message carries the same one measures its best case; `Varied` and `Mixed` measure
/// what a consumer pays when the producers' vendor data changes, and `None` what it pays for the `traceparent`
/// alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracestates {
    /// No message carries a `tracestate`, only its `traceparent`: what most OpenTelemetry SDKs send by default
    /// (a `tracestate` is written only when something put a member in it).
    None,
    /// Every message carries [`TRACESTATE`].
    Constant,
    /// Every message its own: the vendor member's value changes with each message (as a vendor that writes a
    /// per-span or per-trace value does), same length as [`TRACESTATE`].
    Varied,
    /// A realistic mix, in a fixed pseudo-random order: 70% of the messages carry [`TRACESTATE`], 20% one of
    /// [`FEW_TRACESTATES`] (other producers), 10% a value of their own. Of the 1,000 messages `per_message`
    /// counts, 48% repeat the `tracestate` of the message before and 33% that of the two before.
    Mixed,
    /// Every message carries Trace Context Level 2's random flag and [`LEVEL2_TRACESTATE`]: tracehop keeps what
    /// OpenTelemetry's span context cannot hold beside it, in the context. The floor's parent holds what
    /// `TraceState` can.
    Level2,
}

/// The other producers' `tracestate` values of [`Tracestates::Mixed`].
pub const FEW_TRACESTATES: [&str; 3] = ["congo=ucfJifl5GOE", "congo=lZWRzIHRoZQ", "congo=Qm9keSBvZgo"];

impl Tracestates {
    /// Every kind but [`Tracestates::Level2`], the constant one first.
    pub const ALL: [Tracestates; 4] =
        [Tracestates::Constant, Tracestates::Varied, Tracestates::Mixed, Tracestates::None];

    /// How benchmark names call it.
    pub fn name(self) -> &'static str {
        match self {
            Tracestates::None => "none",
            Tracestates::Constant => "constant",
            Tracestates::Varied => "varied",
            Tracestates::Mixed => "mixed",
            Tracestates::Level2 => "level2",
        }
    }

    /// The `tracestate` of message `index` of a run, if it has one: the same for the same index on every run.
    pub fn nth(self, index: usize) -> Option<String> {
        Some(match self {
            Tracestates::None => return None,
            Tracestates::Constant => TRACESTATE.to_owned(),
            Tracestates::Level2 => LEVEL2_TRACESTATE.to_owned(),
            Tracestates::Varied => unique_tracestate(index),
            Tracestates::Mixed => match scramble(index as u64 ^ 0x5bd1e995) % 10 {
                0..=6 => TRACESTATE.to_owned(),
                7 | 8 => FEW_TRACESTATES[(scramble(index as u64 ^ 0x1b873593) % 3) as usize].to_owned(),
                _ => unique_tracestate(index),
            },
        })
    }

    /// How many distinct messages a run cycles through: one where every message is the same; otherwise more
    /// than any per-message case runs (1,100), so no value of [`Tracestates::Varied`] comes back.
    pub fn pool(self) -> usize {
        match self {
            Tracestates::Constant | Tracestates::Level2 | Tracestates::None => 1,
            Tracestates::Varied | Tracestates::Mixed => 2048,
        }
    }

    /// [`Tracestates::pool`] messages of trace `trace_id`, each with its pre-built parent (for the floor),
    /// carrying this kind's `tracestate` values in order.
    pub fn messages(self, trace_id: u128, sampled: bool) -> Vec<(OwnedMessage, Context)> {
        if self == Tracestates::Level2 {
            let flags = 0x02 | u8::from(sampled);
            let message = order_message(
                OwnedHeaders::new()
                    .insert(Header { key: "content-type", value: Some("application/json") })
                    .insert(Header { key: "x-request-id", value: Some("7f3c2a") })
                    .insert(Header { key: "traceparent", value: Some(&traceparent_with_flags(trace_id, flags)) })
                    .insert(Header { key: "tracestate", value: Some(LEVEL2_TRACESTATE) }),
            );
            let parent = Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(trace_id),
                SpanId::from(SPAN_ID),
                TraceFlags::new(flags),
                true,
                TraceState::from_str(TRACESTATE).expect("a valid tracestate"),
            ));
            return vec![(message, parent)];
        }
        (0..self.pool())
            .map(|index| {
                let tracestate = self.nth(index);
                (
                    traced_message_with(trace_id, sampled, tracestate.as_deref()),
                    remote_parent_with(trace_id, sampled, tracestate.as_deref()),
                )
            })
            .collect()
    }
}

/// A bijection on `u64` that spreads consecutive numbers (a fixed-seed mixer: the same on every run).
fn scramble(value: u64) -> u64 {
    let mut value = value.wrapping_mul(0x9e3779b97f4a7c15);
    value ^= value >> 29;
    value = value.wrapping_mul(0xbf58476d1ce4e5b9);
    value ^ (value >> 32)
}

/// `congo=` and 11 characters that are different for every `index`: as long as [`TRACESTATE`].
fn unique_tracestate(index: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut value = scramble(index as u64 ^ 0x2545f4914f6cdd1d);
    let mut tracestate = String::from("congo=");
    for _ in 0..11 {
        tracestate.push(char::from(ALPHABET[(value & 63) as usize]));
        value >>= 6;
    }
    tracestate
}

/// `count` messages of distinct traces whose producers sampled them with a `ratio` trace-id sampler (the same
/// rule the consumer's parent-based sampler then follows): cycling through them, about `ratio` of the
/// messages are sampled, as in production. Their `tracestate` values follow `tracestates`.
pub fn ratio_sampled_messages(count: usize, ratio: f64, tracestates: Tracestates) -> Vec<(OwnedMessage, Context)> {
    let producer_sampler = Sampler::TraceIdRatioBased(ratio);
    let mut seed: u128 = 0x9e3779b97f4a7c15f39cc0605cedc834;
    (0..count)
        .map(|index| {
            // A fixed-seed generator: the same traces, and so the same sampled share, on every run.
            seed = seed.wrapping_mul(0x2360ed051fc65da44385df649fccf645).wrapping_add(0x5851f42d4c957f2d);
            let trace_id = seed | 1;
            let decision = producer_sampler.should_sample(
                None,
                TraceId::from(trace_id),
                "send orders",
                &SpanKind::Producer,
                &[],
                &[],
            );
            let sampled = decision.decision == opentelemetry_sdk::trace::SamplingDecision::RecordAndSample;
            let tracestate = tracestates.nth(index);
            (
                traced_message_with(trace_id, sampled, tracestate.as_deref()),
                remote_parent_with(trace_id, sampled, tracestate.as_deref()),
            )
        })
        .collect()
}

/// Drops every span: export stays out of the measurement, which is tracehop plus the SDK's own span work.
#[derive(Debug)]
pub struct DiscardingExporter;

impl SpanExporter for DiscardingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        drop(black_box(batch));
        Ok(())
    }
}

/// How finished spans leave the SDK in a case.
#[derive(Clone, Copy, Debug)]
pub enum Processor {
    Simple,
    Batch,
}

/// A tracer provider with `sampler`, exporting through `processor` to [`DiscardingExporter`].
pub fn provider(sampler: impl Into<Box<dyn ShouldSample>>, processor: Processor) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_sampler(sampler);
    match processor {
        Processor::Simple => builder.with_simple_exporter(DiscardingExporter),
        Processor::Batch => builder.with_batch_exporter(DiscardingExporter),
    }
    .build()
}

/// What `#[traced_consumer(group = "inventory-service")]` does for one message.
pub fn tracehop_consumer(message: &OwnedMessage) {
    MessageSpan::consumer(&CONSUMER, message).start().run(|| black_box(()))
}

/// What `#[traced_producer]` does for a function taking its record: describe, start, inject, run.
pub fn tracehop_producer() {
    let mut record: FutureRecord<'_, str, str> = FutureRecord::to("orders").key("order-7").payload("{\"id\":7}");
    let span = MessageSpan::producer(&PRODUCER).describing(&record).start();
    span.inject(&mut record);
    span.run(|| {
        black_box(&record.headers);
    })
}

/// The ten attributes tracehop records for a message of [`order_message`].
fn consumer_attributes(message: &OwnedMessage) -> [KeyValue; 10] {
    [
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.operation.name", "process"),
        KeyValue::new("messaging.destination.name", message.topic().to_owned()),
        KeyValue::new("messaging.consumer.group.name", "inventory-service"),
        KeyValue::new("code.function.name", "bench::on_order"),
        KeyValue::new("messaging.destination.partition.id", message.partition().to_string()),
        KeyValue::new("messaging.kafka.offset", message.offset()),
        KeyValue::new("messaging.kafka.message.key", "order-7"),
        KeyValue::new("messaging.message.body.size", 8_i64),
    ]
}

/// The floor tracehop is held to: OpenTelemetry's own span with the parent already extracted, the same ten
/// attributes tracehop records for [`order_message`] and one link to the producer, built the cheapest way the
/// SDK allows for the sampler's decision. Every consumer bench runs a parent-based sampler, so the parent's flag
/// is that decision: a sampled span is described up front ([`sdk_floor_described_up_front`], the builder moves
/// attributes and link into it), an unsampled one is left to the sampler first ([`sdk_floor_deciding_first`],
/// nothing built for it). No single path costs as little in both cases, so the floor is lower than any code an
/// SDK user writes.
pub fn sdk_floor<T>(tracer: &T, parent: &Context)
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    if parent.span().span_context().is_sampled() {
        sdk_floor_described_up_front(tracer, parent)
    } else {
        sdk_floor_deciding_first(tracer, parent)
    }
}

/// The remote parent of `message` built from its headers the plainest way a hand-written consumer would: one
/// pass over the headers for `traceparent` and `tracestate`, the `traceparent` cut at the fixed positions of
/// version `00` and its ids decoded by OpenTelemetry's own `TraceId::from_hex` and `SpanId::from_hex`, the
/// `tracestate` parsed by `TraceState::from_str` (an invalid one dropped, as W3C asks), and the span context put in
/// a new `Context`. No check beyond what those types make, and no propagator: the least that reading the context
/// of a message costs, which [`sdk_floor_parsing`] adds to the floor.
pub fn parsed_remote_parent(message: &OwnedMessage) -> Context {
    let (mut traceparent, mut tracestate) = (None, None);
    for header in message.headers().into_iter().flat_map(|headers| headers.iter()) {
        match header.key {
            "traceparent" => traceparent = header.value.and_then(|value| std::str::from_utf8(value).ok()),
            "tracestate" => tracestate = header.value.and_then(|value| std::str::from_utf8(value).ok()),
            _ => {}
        }
    }
    let Some(traceparent) = traceparent.filter(|traceparent| traceparent.len() == 55) else {
        return Context::new();
    };
    let (Some(trace_id), Some(span_id), Some(flags)) =
        (traceparent.get(3..35), traceparent.get(36..52), traceparent.get(53..55))
    else {
        return Context::new();
    };
    let (Ok(trace_id), Ok(span_id), Ok(flags)) =
        (TraceId::from_hex(trace_id), SpanId::from_hex(span_id), u8::from_str_radix(flags, 16))
    else {
        return Context::new();
    };
    let trace_state = tracestate.and_then(|tracestate| TraceState::from_str(tracestate).ok()).unwrap_or_default();
    Context::new().with_remote_span_context(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        trace_state,
    ))
}

/// The SDK floor ([`sdk_floor`]) paying for the message's context: its parent built from the message's headers by
/// [`parsed_remote_parent`], as every consumer must, where [`sdk_floor`] is handed one built before the run. The
/// floor a per-message `tracestate` raises (its parse and the parent's `TraceState` dropped with the message).
pub fn sdk_floor_parsing<T>(tracer: &T, message: &OwnedMessage)
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    sdk_floor(tracer, &parsed_remote_parent(message))
}

/// The SDK floor's span described up front: attributes and link built before the sampler decides, and moved
/// into the span when it records.
pub fn sdk_floor_described_up_front<T>(tracer: &T, parent: &Context)
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    let producer = parent.span().span_context().clone();
    let span = tracer
        .span_builder("process orders")
        .with_kind(SpanKind::Consumer)
        .with_links(vec![Link::with_context(producer)])
        .with_attributes(floor_attributes())
        .start_with_context(tracer, parent);
    end_floor_span(parent.with_span(span));
}

/// The SDK floor's span as an SDK user who checks `is_recording` first writes it: started bare, and given its
/// attributes and link only once the sampler has recorded it. Unsampled, it costs the decision alone; sampled,
/// more than [`sdk_floor_described_up_front`] (the attributes pushed one by one).
pub fn sdk_floor_deciding_first<T>(tracer: &T, parent: &Context)
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    use opentelemetry::trace::Span;
    let mut span =
        tracer.span_builder("process orders").with_kind(SpanKind::Consumer).start_with_context(tracer, parent);
    if span.is_recording() {
        span.add_link(parent.span().span_context().clone(), Vec::new());
        span.set_attributes(floor_attributes());
    }
    end_floor_span(parent.with_span(span));
}

/// The ten attributes of [`consumer_attributes`], from static strings: the floor knows the message.
fn floor_attributes() -> [KeyValue; 10] {
    [
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.operation.name", "process"),
        KeyValue::new("messaging.destination.name", "orders"),
        KeyValue::new("messaging.consumer.group.name", "inventory-service"),
        KeyValue::new("code.function.name", "bench::on_order"),
        KeyValue::new("messaging.destination.partition.id", "0"),
        KeyValue::new("messaging.kafka.offset", 42_i64),
        KeyValue::new("messaging.kafka.message.key", "order-7"),
        KeyValue::new("messaging.message.body.size", 8_i64),
    ]
}

/// The floor's handler: the span current while it runs, ended after.
fn end_floor_span(context: Context) {
    let attached = context.clone().attach();
    black_box(());
    drop(attached);
    context.span().end();
}

/// The seven attributes tracehop records for the benches' published record.
fn producer_attributes() -> [KeyValue; 7] {
    [
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "send"),
        KeyValue::new("messaging.operation.name", "send"),
        KeyValue::new("messaging.destination.name", "orders"),
        KeyValue::new("code.function.name", "bench::publish"),
        KeyValue::new("messaging.kafka.message.key", "order-7"),
        KeyValue::new("messaging.message.body.size", 8_i64),
    ]
}

/// The producer's floor: OpenTelemetry's own PRODUCER span with the attributes tracehop records for the record,
/// and its `traceparent` written into the record's headers directly, with no propagator.
pub fn sdk_producer_floor<T>(tracer: &T)
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    let record: FutureRecord<'_, str, str> = FutureRecord::to("orders").key("order-7").payload("{\"id\":7}");
    let span = tracer
        .span_builder("send orders")
        .with_kind(SpanKind::Producer)
        .with_attributes(producer_attributes())
        .start(tracer);
    let context = Context::current_with_span(span);
    let span_context = context.span().span_context().clone();
    let traceparent =
        format!("00-{}-{}-{:02x}", span_context.trace_id(), span_context.span_id(), span_context.trace_flags().to_u8());
    let record = record.headers(OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(&traceparent) }));
    let attached = context.clone().attach();
    black_box(&record.headers);
    drop(attached);
    context.span().end();
}

/// OpenTelemetry's own W3C propagators, as a service that does not use tracehop installs them.
pub static UPSTREAM: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![Box::new(TraceContextPropagator::new()), Box::new(BaggagePropagator::new())])
});

/// A message's headers as a map, as the usual guides hand them to OpenTelemetry's propagator.
pub fn headers_as_map(message: &OwnedMessage) -> HashMap<String, String> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .filter_map(|header| Some((header.key.to_owned(), String::from_utf8(header.value?.to_vec()).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// rdkafka headers read in place: the most careful upstream extraction, no copy.
pub struct KafkaHeaders<'a, H: Headers>(pub &'a H);

impl<H: Headers> Extractor for KafkaHeaders<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        let header = self.0.iter().find(|header| header.key == key)?;
        std::str::from_utf8(header.value?).ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}

/// The glue the usual guides write in every consumer: headers copied into a map, OpenTelemetry's own
/// propagators, a span with the same ten attributes and link as tracehop's, all built before sampling.
pub fn hand_written(message: &OwnedMessage) {
    let parent = UPSTREAM.extract(&headers_as_map(message));
    let producer = parent.span().span_context().clone();
    let tracer = opentelemetry::global::tracer("inventory-service");
    let span = tracer
        .span_builder(format!("process {}", message.topic()))
        .with_kind(SpanKind::Consumer)
        .with_links(vec![Link::with_context(producer)])
        .with_attributes(consumer_attributes(message))
        .start_with_context(&tracer, &parent);
    let context = parent.with_span(span);
    let _attached = context.clone().attach();
    black_box(());
    context.span().end();
}

/// Careful hand-written glue: headers read in place, and the span described only once the sampler has
/// recorded it (the fair unsampled path a careful author would write by hand).
pub fn hand_written_after_sampling(message: &OwnedMessage) {
    use opentelemetry::trace::Span;
    let parent = match message.headers() {
        Some(headers) => UPSTREAM.extract(&KafkaHeaders(headers)),
        None => Context::new(),
    };
    let tracer = opentelemetry::global::tracer("inventory-service");
    let mut span = tracer.span_builder("process").with_kind(SpanKind::Consumer).start_with_context(&tracer, &parent);
    if span.is_recording() {
        span.update_name(format!("process {}", message.topic()));
        span.add_link(parent.span().span_context().clone(), Vec::new());
        span.set_attributes(consumer_attributes(message));
    }
    let context = parent.with_span(span);
    let _attached = context.clone().attach();
    black_box(());
    context.span().end();
}

/// The `tracing` route: a `tracing` span with the same fields, its parent set from OpenTelemetry's own
/// propagators through `tracing-opentelemetry`, linked to the producer. Needs a subscriber with
/// `tracing_opentelemetry`'s layer (see [`tracing_subscriber_for`]).
pub fn tracing_route(message: &OwnedMessage) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let parent = match message.headers() {
        Some(headers) => UPSTREAM.extract(&KafkaHeaders(headers)),
        None => Context::new(),
    };
    let producer = parent.span().span_context().clone();
    let span = tracing::info_span!(
        "process orders",
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = message.topic(),
        messaging.consumer.group.name = "inventory-service",
        code.function.name = "bench::on_order",
        messaging.destination.partition.id = message.partition(),
        messaging.kafka.offset = message.offset(),
        messaging.kafka.message.key = "order-7",
        messaging.message.body.size = 8_i64,
    );
    let _ = span.set_parent(parent);
    span.add_link(producer);
    let _entered = span.enter();
    black_box(());
}

/// A subscriber that sends `tracing` spans to `provider` through `tracing-opentelemetry`.
pub fn tracing_subscriber_for(provider: &SdkTracerProvider) -> impl tracing::Subscriber + Send + Sync {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tracing")))
}

/// A publish by hand: OpenTelemetry's own span and propagators, the context written through a map.
pub fn hand_written_producer() {
    struct MapInjector<'a>(&'a mut HashMap<String, String>);
    impl Injector for MapInjector<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), value);
        }
    }
    let tracer = opentelemetry::global::tracer("orders");
    let span = tracer
        .span_builder("send orders")
        .with_kind(SpanKind::Producer)
        .with_attributes(producer_attributes())
        .start(&tracer);
    let context = Context::current_with_span(span);
    let mut map = HashMap::new();
    UPSTREAM.inject_context(&context, &mut MapInjector(&mut map));
    let headers = map
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(value) }));
    let record: FutureRecord<'_, str, str> =
        FutureRecord::to("orders").key("order-7").payload("{\"id\":7}").headers(headers);
    let attached = context.clone().attach();
    black_box(&record.headers);
    drop(attached);
    context.span().end();
}

/// The handler the broker benches (`throughput`, `scale`) consume with, traced: as little work as a handler can do,
/// so that what is measured is the broker and tracehop.
#[tracehop::traced_consumer(group = "bench")]
pub fn handle_traced(message: &rdkafka::message::BorrowedMessage<'_>) {
    black_box(message.payload());
}

/// [`handle_traced`] without tracehop: the untraced side of the same comparison.
pub fn handle_untraced(message: &rdkafka::message::BorrowedMessage<'_>) {
    black_box(message.payload());
}
