//! What hostile or oversized headers cost, beside a normal message in the same run: each must cost at most a
//! few times a normal message (tracehop reads the trace headers in one pass and checks lengths before
//! content).
//!
//! Run: `cargo bench -p tracehop --features kafka --bench wire_limits`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::global;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use tracehop::{Handler, MessageSpan};

mod support;
use support::{order_message, DiscardingExporter};

static CONSUMER: Handler = Handler::consumer("bench::on_order").group("inventory-service");

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn message(headers: &[(String, String)]) -> OwnedMessage {
    order_message(headers.iter().fold(OwnedHeaders::new_with_capacity(headers.len()), |owned, (key, value)| {
        owned.insert(Header { key, value: Some(value) })
    }))
}

fn header(key: &str, value: impl Into<String>) -> (String, String) {
    (key.to_owned(), value.into())
}

fn limits(c: &mut Criterion) {
    global::set_tracer_provider(SdkTracerProvider::builder().with_simple_exporter(DiscardingExporter).build());
    tracehop::install_propagator();
    let traceparent = || header("traceparent", TRACEPARENT);
    let cases = [
        (
            "normal message",
            vec![traceparent(), header("tracestate", "congo=t61rcWkgMzE"), header("baggage", "tenant=acme")],
        ),
        // The most a tracestate may carry: what the 5,000-member one is trimmed to, so the two cost alike.
        (
            "tracestate of 32 members (the W3C limit)",
            vec![traceparent(), header("tracestate", (0..32).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(","))],
        ),
        (
            "tracestate of 5,000 members",
            vec![
                traceparent(),
                header("tracestate", (0..5_000).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",")),
            ],
        ),
        (
            "tracestate of 1 MiB",
            vec![traceparent(), header("tracestate", format!("congo=t61rcWkgMzE,big={}", "x".repeat(1 << 20)))],
        ),
        (
            "baggage of 1 MiB",
            vec![traceparent(), header("baggage", format!("tenant=acme,big={}", "x".repeat(1 << 20)))],
        ),
        ("10,000 headers", (0..10_000).map(|i| header(&format!("x-header-{i}"), "v")).chain([traceparent()]).collect()),
        ("traceparent repeated 1,000 times", (0..1_000).map(|_| traceparent()).collect()),
        ("traceparent of 100 KB", vec![header("traceparent", format!("{TRACEPARENT}-{}", "f".repeat(100_000)))]),
    ];
    let mut group = c.benchmark_group("wire limits");
    for (name, headers) in cases {
        let message = message(&headers);
        group.bench_function(name, |b| {
            b.iter(|| MessageSpan::consumer(&CONSUMER, black_box(&message)).start().run(|| black_box(())))
        });
    }
    group.finish();
}

criterion_group!(benches, limits);
criterion_main!(benches);
