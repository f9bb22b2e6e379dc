//! What a traced message costs, side by side in one run on the same messages: untraced, extraction alone, the
//! SDK floor, `#[traced_consumer]` (tracehop's runtime, as the macro expands), the guides' hand-written glue over
//! OpenTelemetry's own propagators (built up front, and a careful variant that describes the span only once it
//! is sampled), and the `tracing` + `tracing-opentelemetry` route. Each under an always-on sampler, an unsampled
//! parent and a 1% ratio sampler (messages cycle through traces their producers sampled at 1%), with the simple
//! and the batch span processor on an exporter that discards; every message carrying the same `tracestate`, and
//! again (simple processor) with a `tracestate` of its own per message, with a realistic mix of repeated and
//! unique ones, and with none ([`Tracestates`]: tracehop remembers the last one). In every cell, the floor also
//! runs building its parent from each message's headers (`floor-parsing`, [`sdk_floor_parsing`]), and
//! `#[traced_consumer]` on each message's core NATS twin ([`nats_twin`]: same trace, `tracestate` and headers),
//! as `tracehop-nats`. Then: extraction alone against the upstream propagators (a map and in place) with 0, 3 and
//! 20 application headers on Kafka, AMQP and NATS, and on Kafka with varied, mixed and no `tracestate` values; the
//! producer path (and on NATS, a `HeaderMap`) against a hand-written publish and the SDK floor with a bare header
//! write; batches of 100 and 10,000; and missing and malformed contexts.
//!
//! Run: `cargo bench -p tracehop --features kafka,rabbitmq,nats --bench message_span` (about ten minutes on two
//! cores); `scripts/benchmarks` runs it with the others and writes BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Link, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_sdk::trace::Sampler;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use tracehop::{extract_context, Handler, MessageSpan};

mod support;
use support::nats::*;
use support::*;

/// A sampler every per-message case runs under: its name, how to make it, and the messages (with their
/// pre-built parents, for the floor) each case cycles through.
type Sampling = (&'static str, fn() -> Sampler, Vec<(OwnedMessage, Context)>);

fn sampling(tracestates: Tracestates) -> Vec<Sampling> {
    let parent_based_on = || Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
    let parent_based_ratio = || Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.01)));
    vec![
        ("always-on", parent_based_on, tracestates.messages(TRACE_ID, true)),
        ("unsampled-parent", parent_based_on, tracestates.messages(TRACE_ID, false)),
        ("ratio-1%", parent_based_ratio, ratio_sampled_messages(10_000, 0.01, tracestates)),
    ]
}

/// The criterion group of one cell of the consumer matrix: `consumer/SAMPLER/PROCESSOR`, and
/// `.../tracestate-varied`, `.../tracestate-mixed` or `.../tracestate-none` when the messages' `tracestate` is not
/// constant.
fn consumer_group(sampler: &str, processor: Processor, tracestates: Tracestates) -> String {
    let group = format!("consumer/{sampler}/{processor:?}").to_lowercase();
    match tracestates {
        Tracestates::Constant => group,
        _ => format!("{group}/tracestate-{}", tracestates.name()),
    }
}

fn consumer(c: &mut Criterion) {
    for tracestates in Tracestates::ALL {
        // What a varied or missing `tracestate` changes is the consumer's extraction, not export: the simple
        // processor is enough to show it, and keeps the run in minutes.
        let processors: &[Processor] = if tracestates == Tracestates::Constant {
            &[Processor::Simple, Processor::Batch]
        } else {
            &[Processor::Simple]
        };
        for (sampler_name, sampler, messages) in sampling(tracestates) {
            for &processor in processors {
                consumer_cell(
                    c,
                    &consumer_group(sampler_name, processor, tracestates),
                    sampler(),
                    processor,
                    &messages,
                );
            }
        }
    }
}

/// Every consumer path on `messages` in turn, under `sampler` and `processor`.
fn consumer_cell(
    c: &mut Criterion,
    group_name: &str,
    sampler: Sampler,
    processor: Processor,
    messages: &[(OwnedMessage, Context)],
) {
    let provider = provider(sampler, processor);
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();
    let floor_tracer = provider.tracer("floor");
    let nats_messages: Vec<async_nats::Message> = messages.iter().map(|(message, _)| nats_twin(message)).collect();
    let mut group = c.benchmark_group(group_name);
    let mut cycle = messages.iter().cycle();
    group.bench_function("untraced", |b| b.iter(|| black_box(cycle.next().unwrap().0.payload())));
    group.bench_function("extraction", |b| {
        b.iter(|| drop(black_box(extract_context(black_box(&cycle.next().unwrap().0)))))
    });
    group.bench_function("floor", |b| b.iter(|| sdk_floor(&floor_tracer, black_box(&cycle.next().unwrap().1))));
    group.bench_function("floor-parsing", |b| {
        b.iter(|| sdk_floor_parsing(&floor_tracer, black_box(&cycle.next().unwrap().0)))
    });
    group.bench_function("tracehop", |b| b.iter(|| tracehop_consumer(black_box(&cycle.next().unwrap().0))));
    let mut nats_cycle = nats_messages.iter().cycle();
    group.bench_function("tracehop-nats", |b| b.iter(|| tracehop_nats_consumer(black_box(nats_cycle.next().unwrap()))));
    group.bench_function("glue", |b| b.iter(|| hand_written(black_box(&cycle.next().unwrap().0))));
    group.bench_function("glue-after-sampling", |b| {
        b.iter(|| hand_written_after_sampling(black_box(&cycle.next().unwrap().0)))
    });
    tracing::subscriber::with_default(tracing_subscriber_for(&provider), || {
        group.bench_function("tracing", |b| b.iter(|| tracing_route(black_box(&cycle.next().unwrap().0))));
    });
    group.finish();
    let _ = provider.shutdown();
}

/// `count` application headers and the producer's `traceparent` and, when given, `tracestate`, as (name, value)
/// pairs.
fn header_pairs(count: usize, tracestate: Option<&str>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> =
        (0..count).map(|index| (format!("x-app-header-{index}"), format!("value-{index:04}"))).collect();
    // The trace headers come after the application's, as a relay that adds them last would send them.
    pairs.push(("traceparent".to_owned(), traceparent(TRACE_ID, true)));
    pairs.extend(tracestate.map(|tracestate| ("tracestate".to_owned(), tracestate.to_owned())));
    pairs
}

fn kafka_message_with(pairs: &[(String, String)]) -> OwnedMessage {
    order_message(pairs.iter().fold(OwnedHeaders::new_with_capacity(pairs.len()), |headers, (key, value)| {
        headers.insert(Header { key, value: Some(value) })
    }))
}

fn amqp_delivery_with(pairs: &[(String, String)]) -> Delivery {
    let mut table = FieldTable::default();
    for (key, value) in pairs {
        table.insert(ShortString::from(key.clone()), AMQPValue::LongString(LongString::from(value.clone())));
    }
    let mut delivery = Delivery::mock(1, "orders".into(), "created".into(), false, b"{\"id\":7}".to_vec());
    delivery.properties = BasicProperties::default().with_headers(table);
    delivery
}

/// AMQP headers read in place, for OpenTelemetry's propagators.
struct AmqpHeaders<'a>(&'a FieldTable);

impl Extractor for AmqpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().iter().find(|(name, _)| name.as_str() == key)?.1 {
            AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|key| key.as_str()).collect()
    }
}

fn amqp_headers_as_map(delivery: &Delivery) -> HashMap<String, String> {
    delivery
        .properties
        .headers()
        .iter()
        .flat_map(|table| table.inner())
        .filter_map(|(key, value)| match value {
            AMQPValue::LongString(value) => Some((key.to_string(), String::from_utf8(value.as_bytes().to_vec()).ok()?)),
            _ => None,
        })
        .collect()
}

fn extraction(c: &mut Criterion) {
    tracehop::install_propagator();
    let mut group = c.benchmark_group("extraction");
    for count in [0, 3, 20] {
        let pairs = header_pairs(count, Some(TRACESTATE));
        let message = kafka_message_with(&pairs);
        let headers = message.headers().expect("the message has headers");
        group.bench_with_input(BenchmarkId::new("kafka/tracehop", count), &message, |b, message| {
            b.iter(|| drop(black_box(extract_context(black_box(message)))))
        });
        group.bench_with_input(BenchmarkId::new("kafka/upstream-map", count), &message, |b, message| {
            b.iter(|| drop(black_box(UPSTREAM.extract(&headers_as_map(black_box(message))))))
        });
        group.bench_with_input(BenchmarkId::new("kafka/upstream-in-place", count), &headers, |b, headers| {
            b.iter(|| drop(black_box(UPSTREAM.extract(&KafkaHeaders(black_box(*headers))))))
        });
        let delivery = amqp_delivery_with(&pairs);
        let table = delivery.properties.headers().clone().expect("the delivery has headers");
        group.bench_with_input(BenchmarkId::new("amqp/tracehop", count), &delivery, |b, delivery| {
            b.iter(|| drop(black_box(extract_context(black_box(delivery)))))
        });
        group.bench_with_input(BenchmarkId::new("amqp/upstream-map", count), &delivery, |b, delivery| {
            b.iter(|| drop(black_box(UPSTREAM.extract(&amqp_headers_as_map(black_box(delivery))))))
        });
        group.bench_with_input(BenchmarkId::new("amqp/upstream-in-place", count), &table, |b, table| {
            b.iter(|| drop(black_box(UPSTREAM.extract(&AmqpHeaders(black_box(table))))))
        });
        let nats = nats_twin(&message);
        let nats_headers = nats.headers.clone().expect("the message has headers");
        group.bench_with_input(BenchmarkId::new("nats/tracehop", count), &nats, |b, nats| {
            b.iter(|| drop(black_box(extract_context(black_box(nats)))))
        });
        group.bench_with_input(BenchmarkId::new("nats/upstream-map", count), &nats, |b, nats| {
            b.iter(|| drop(black_box(UPSTREAM.extract(&nats_headers_as_map(black_box(nats))))))
        });
        group.bench_with_input(BenchmarkId::new("nats/upstream-in-place", count), &nats_headers, |b, headers| {
            b.iter(|| drop(black_box(UPSTREAM.extract(&NatsHeaders(black_box(headers))))))
        });
        for tracestates in [Tracestates::Varied, Tracestates::Mixed, Tracestates::None] {
            let messages: Vec<OwnedMessage> = (0..tracestates.pool())
                .map(|index| kafka_message_with(&header_pairs(count, tracestates.nth(index).as_deref())))
                .collect();
            let name = tracestates.name();
            let mut cycle = messages.iter().cycle();
            group.bench_function(BenchmarkId::new(format!("kafka/tracehop-tracestate-{name}"), count), |b| {
                b.iter(|| drop(black_box(extract_context(black_box(cycle.next().unwrap())))))
            });
            group.bench_function(BenchmarkId::new(format!("kafka/upstream-in-place-tracestate-{name}"), count), |b| {
                b.iter(|| {
                    let headers = cycle.next().unwrap().headers().expect("the message has headers");
                    drop(black_box(UPSTREAM.extract(&KafkaHeaders(black_box(headers)))))
                })
            });
        }
    }
    group.finish();
}

fn producer(c: &mut Criterion) {
    for (name, sampler) in [("sampled", Sampler::AlwaysOn), ("unsampled", Sampler::AlwaysOff)] {
        let provider = provider(sampler, Processor::Simple);
        global::set_tracer_provider(provider.clone());
        tracehop::install_propagator();
        let floor_tracer = provider.tracer("floor");
        let mut group = c.benchmark_group(format!("producer/{name}"));
        group.bench_function("floor", |b| b.iter(|| sdk_producer_floor(&floor_tracer)));
        group.bench_function("tracehop", |b| b.iter(tracehop_producer));
        group.bench_function("tracehop-nats", |b| b.iter(tracehop_nats_producer));
        group.bench_function("glue", |b| b.iter(hand_written_producer));
        group.finish();
    }
}

static BATCH: Handler = Handler::consumer("bench::on_orders").group("analytics");

/// A batch span by hand: every message's context extracted in place with OpenTelemetry's propagators, and a
/// link to each, up to tracehop's default cap, on a span with the batch's attributes.
fn hand_written_batch(messages: &[OwnedMessage]) {
    let links: Vec<Link> = messages
        .iter()
        .filter_map(|message| {
            let context = UPSTREAM.extract(&KafkaHeaders(message.headers()?));
            let span_context = context.span().span_context().clone();
            span_context.is_valid().then(|| {
                Link::new(
                    span_context,
                    vec![
                        KeyValue::new("messaging.destination.partition.id", message.partition().to_string()),
                        KeyValue::new("messaging.kafka.offset", message.offset()),
                    ],
                    0,
                )
            })
        })
        .take(tracehop::DEFAULT_MAX_LINKS_PER_SPAN)
        .collect();
    let tracer = global::tracer("analytics");
    let span = tracer
        .span_builder("process orders")
        .with_kind(SpanKind::Consumer)
        .with_links(links)
        .with_attributes([
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.destination.name", "orders"),
            KeyValue::new("messaging.consumer.group.name", "analytics"),
            KeyValue::new("code.function.name", "bench::on_orders"),
            KeyValue::new("messaging.batch.message_count", messages.len() as i64),
        ])
        .start_with_context(&tracer, &Context::new());
    let context = Context::new().with_span(span);
    let _attached = context.clone().attach();
    black_box(messages.len());
    context.span().end();
}

fn batches(c: &mut Criterion) {
    let provider = provider(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), Processor::Simple);
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();
    let mut group = c.benchmark_group("batch");
    for size in [100, 10_000] {
        let messages: Vec<OwnedMessage> =
            ratio_sampled_messages(size, 1.0, Tracestates::Constant).into_iter().map(|(m, _)| m).collect();
        group.bench_with_input(BenchmarkId::new("tracehop", size), &messages, |b, messages| {
            b.iter(|| {
                MessageSpan::consumer_batch(&BATCH, black_box(messages)).start().run(|| {
                    black_box(messages.len());
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("glue", size), &messages, |b, messages| {
            b.iter(|| hand_written_batch(black_box(messages)))
        });
    }
    group.finish();
}

fn contexts(c: &mut Criterion) {
    let provider = provider(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), Processor::Simple);
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();
    let missing = order_message(OwnedHeaders::new().insert(Header { key: "content-type", value: Some("json") }));
    let malformed =
        order_message(OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        }));
    let mut group = c.benchmark_group("context");
    for (name, message) in [("missing", &missing), ("malformed", &malformed)] {
        group.bench_with_input(BenchmarkId::new("tracehop", name), message, |b, message| {
            b.iter(|| tracehop_consumer(black_box(message)))
        });
        group.bench_with_input(BenchmarkId::new("glue", name), message, |b, message| {
            b.iter(|| hand_written(black_box(message)))
        });
        group.bench_with_input(BenchmarkId::new("glue-after-sampling", name), message, |b, message| {
            b.iter(|| hand_written_after_sampling(black_box(message)))
        });
    }
    let floor_tracer = provider.tracer("floor");
    // A new root is sampled by the always-on root sampler: the floor describes it up front.
    group.bench_function("floor/new-root", |b| {
        b.iter(|| sdk_floor_described_up_front(&floor_tracer, black_box(&Context::new())))
    });
    group.finish();
}

fn quick() -> Criterion {
    // Many cases side by side: short windows keep the whole run in minutes, and each case's median is still
    // taken over thousands of iterations.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = quick();
    targets = consumer, extraction, producer, batches, contexts
}
criterion_main!(benches);
