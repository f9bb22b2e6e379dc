//! What a traced message costs while the OTLP collector is down, beside what it costs when export works: the
//! batch span processor takes spans off the handler's path, so an outage must not make handling dearer.
//! Cases: an exporter that discards (export always succeeds), OTLP/HTTP to a port where nothing listens, and
//! OTLP/HTTP to a collector that accepts connections and never answers.
//!
//! Run: `cargo bench -p tracehop --features kafka,rabbitmq,otlp --bench outage`.

use std::hint::black_box;
use std::net::TcpListener;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::global;
use opentelemetry_sdk::trace::Sampler;
use tracehop::{OtlpProtocol, Telemetry};

mod support;
use support::{provider, traced_message, tracehop_consumer, Processor, TRACE_ID};

fn exporting_to(endpoint: &str) -> Telemetry {
    Telemetry::builder()
        .variables(|_| None)
        .service_name("outage-bench")
        .endpoint(endpoint)
        .protocol(OtlpProtocol::HttpProtobuf)
        .timeout(Duration::from_millis(500))
        .install()
        .expect("the exporter builds")
}

fn outage(c: &mut Criterion) {
    let message = traced_message(TRACE_ID, true);
    let mut group = c.benchmark_group("outage");

    let working = provider(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), Processor::Batch);
    global::set_tracer_provider(working.clone());
    tracehop::install_propagator();
    group.bench_function("export works", |b| b.iter(|| tracehop_consumer(black_box(&message))));
    let _ = working.shutdown();

    let closed = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let endpoint = format!("http://{}/v1/traces", closed.local_addr().expect("its address"));
    drop(closed);
    let telemetry = exporting_to(&endpoint);
    group.bench_function("nothing listens", |b| b.iter(|| tracehop_consumer(black_box(&message))));
    let _ = telemetry.shutdown();

    let silent = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let endpoint = format!("http://{}/v1/traces", silent.local_addr().expect("its address"));
    let telemetry = exporting_to(&endpoint);
    group.bench_function("collector never answers", |b| b.iter(|| tracehop_consumer(black_box(&message))));
    let _ = telemetry.shutdown();
    drop(silent);
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = outage
}
criterion_main!(benches);
