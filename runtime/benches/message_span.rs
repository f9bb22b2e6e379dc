//! The per-message cost of tracehop's consumer and producer paths, sampled and unsampled.
//!
//! Run: `cargo bench -p tracehop --features kafka --bench message_span`.

use std::hint::black_box;

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Link, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{global, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use tracehop::{extract_context, Handler, MessageSpan};

mod support;
use support::{order_message, sdk_floor, DiscardingExporter};

static CONSUMER: Handler = Handler::consumer("bench::on_order").group("inventory-service");
static PRODUCER: Handler = Handler::producer("bench::publish");

fn message(traceparent: &str) -> OwnedMessage {
    order_message(
        OwnedHeaders::new()
            .insert(Header { key: "traceparent", value: Some(traceparent) })
            .insert(Header { key: "tracestate", value: Some("congo=t61rcWkgMzE") }),
    )
}

fn install(sampler: Sampler) {
    let provider = SdkTracerProvider::builder().with_sampler(sampler).with_simple_exporter(DiscardingExporter).build();
    global::set_tracer_provider(provider);
    tracehop::install_propagator();
}

fn consumer(c: &mut Criterion) {
    let sampled = message("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let unsampled = message("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    let malformed = message("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01");
    install(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let mut group = c.benchmark_group("consumer");
    group.bench_function("extract_context", |b| b.iter(|| black_box(extract_context(black_box(&sampled)))));
    group.bench_function("span, sampled parent", |b| {
        b.iter(|| MessageSpan::consumer(&CONSUMER, black_box(&sampled)).start().run(|| black_box(())))
    });
    group.bench_function("span, unsampled parent", |b| {
        b.iter(|| MessageSpan::consumer(&CONSUMER, black_box(&unsampled)).start().run(|| black_box(())))
    });
    group.bench_function("span, malformed context (new root)", |b| {
        b.iter(|| MessageSpan::consumer(&CONSUMER, black_box(&malformed)).start().run(|| black_box(())))
    });
    group.bench_function("hand-written glue, sampled parent", |b| b.iter(|| hand_written(black_box(&sampled))));
    group.bench_function("hand-written glue, unsampled parent", |b| b.iter(|| hand_written(black_box(&unsampled))));
    let tracer = global::tracer("floor");
    let sampled_parent = TraceContextPropagator::new().extract(&headers_of(&sampled));
    let unsampled_parent = TraceContextPropagator::new().extract(&headers_of(&unsampled));
    group.bench_function("SDK floor, sampled parent", |b| b.iter(|| sdk_floor(&tracer, black_box(&sampled_parent))));
    group
        .bench_function("SDK floor, unsampled parent", |b| b.iter(|| sdk_floor(&tracer, black_box(&unsampled_parent))));
    group.finish();
}

/// A message's headers as a map, for OpenTelemetry's propagator.
fn headers_of(message: &OwnedMessage) -> HashMap<String, String> {
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

/// The glue the usual guides write in every consumer: headers copied into a map, OpenTelemetry's own W3C
/// propagator (not tracehop's), a span with the same ten attributes and link as tracehop's, built up front.
fn hand_written(message: &OwnedMessage) {
    let parent = TraceContextPropagator::new().extract(&headers_of(message));
    let producer = parent.span().span_context().clone();
    let tracer = global::tracer("inventory-service");
    let span = tracer
        .span_builder(format!("process {}", message.topic()))
        .with_kind(SpanKind::Consumer)
        .with_links(vec![Link::with_context(producer)])
        .with_attributes([
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
        ])
        .start_with_context(&tracer, &parent);
    let context = parent.with_span(span);
    let _attached = context.clone().attach();
    black_box(());
    context.span().end();
}

/// What `#[traced_producer]` does for a function taking its record: describe, start, inject, run.
fn publish_once() {
    let mut record: FutureRecord<'_, str, str> = FutureRecord::to("orders").key("order-7").payload("{}");
    let span = MessageSpan::producer(&PRODUCER).describing(&record).start();
    span.inject(&mut record);
    span.run(|| {
        black_box(&record.headers);
    })
}

fn producer(c: &mut Criterion) {
    install(Sampler::AlwaysOn);
    let mut group = c.benchmark_group("producer");
    group.bench_function("span and injection, sampled", |b| b.iter(publish_once));
    install(Sampler::AlwaysOff);
    group.bench_function("span and injection, unsampled", |b| b.iter(publish_once));
    group.finish();
}

criterion_group!(benches, consumer, producer);
criterion_main!(benches);
