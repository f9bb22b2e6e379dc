//! Exact per-message costs, for numbers that do not drift on a busy machine: allocations (a counting global
//! allocator) and, run under callgrind by `scripts/instructions`, instructions.
//!
//! `cargo bench -p tracehop --features kafka --bench per_message` prints allocations per message for every case;
//! with `-- --case NAME --iterations N` it runs one case N times and prints nothing (what callgrind measures).
//!
//! Cases: tracehop's consumer and producer paths, and the floor they are held to — the OpenTelemetry SDK's own
//! span with a pre-built remote parent, the same ten attributes and one link — each under an always-on sampler
//! (`sampled`) and with an unsampled parent (`unsampled`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{global, Context};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use tracehop::{Handler, MessageSpan};

mod support;
use support::{order_message, sdk_floor, DiscardingExporter};

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

static CONSUMER: Handler = Handler::consumer("bench::on_order").group("inventory-service");
static PRODUCER: Handler = Handler::producer("bench::publish");

const TRACE_ID: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
const SPAN_ID: u64 = 0x00f067aa0ba902b7;

/// An order message with two application headers and the producer's `traceparent` and `tracestate`.
fn message(sampled: bool) -> OwnedMessage {
    let traceparent = format!("00-{TRACE_ID:032x}-{SPAN_ID:016x}-0{}", u8::from(sampled));
    order_message(
        OwnedHeaders::new()
            .insert(Header { key: "content-type", value: Some("application/json") })
            .insert(Header { key: "x-request-id", value: Some("7f3c2a") })
            .insert(Header { key: "traceparent", value: Some(&traceparent) })
            .insert(Header { key: "tracestate", value: Some("congo=t61rcWkgMzE") }),
    )
}

fn tracehop_consumer(message: &OwnedMessage) {
    MessageSpan::consumer(&CONSUMER, message).start().run(|| black_box(()))
}

fn tracehop_producer() {
    let mut record: FutureRecord<'_, str, str> = FutureRecord::to("orders").key("order-7").payload("{\"id\":7}");
    let span = MessageSpan::producer(&PRODUCER).describing(&record).start();
    span.inject(&mut record);
    span.run(|| {
        black_box(&record.headers);
    })
}

fn remote_parent(sampled: bool) -> Context {
    let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    let trace_state = TraceState::from_key_value([("congo", "t61rcWkgMzE")]).expect("a valid tracestate");
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(TRACE_ID),
        SpanId::from(SPAN_ID),
        flags,
        true,
        trace_state,
    ))
}

const CASES: [&str; 6] = [
    "consumer-sampled",
    "consumer-unsampled",
    "floor-sampled",
    "floor-unsampled",
    "producer-sampled",
    "producer-unsampled",
];

/// Runs `case` `iterations` times.
fn run(case: &str, iterations: usize) {
    let sampled = case.ends_with("-sampled");
    // Producers have no parent to follow: "unsampled" is a sampler that drops them.
    let sampler = if case.starts_with("producer") && !sampled {
        Sampler::AlwaysOff
    } else {
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
    };
    let provider = SdkTracerProvider::builder().with_sampler(sampler).with_simple_exporter(DiscardingExporter).build();
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();
    let message = message(sampled);
    let parent = remote_parent(sampled);
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "floor");
    for _ in 0..iterations {
        match case.split('-').next() {
            Some("consumer") => tracehop_consumer(black_box(&message)),
            Some("producer") => tracehop_producer(),
            Some("floor") => sdk_floor(&tracer, black_box(&parent)),
            _ => panic!("unknown case {case}; cases: {CASES:?}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| args.iter().position(|arg| arg == flag).and_then(|at| args.get(at + 1));
    if let Some(case) = value_of("--case") {
        let iterations = value_of("--iterations").and_then(|n| n.parse().ok()).unwrap_or(1000);
        run(case, iterations);
        return;
    }
    println!("allocations per message (a counting global allocator; 1,000 messages after 100 to warm up)");
    for case in CASES {
        run(case, 100);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        run(case, 1000);
        // `run` sets up a provider each time: measure the set-up alone and take it off.
        let total = ALLOCATIONS.load(Ordering::Relaxed) - before;
        let before_setup = ALLOCATIONS.load(Ordering::Relaxed);
        run(case, 0);
        let setup = ALLOCATIONS.load(Ordering::Relaxed) - before_setup;
        println!("{case:>20}: {:.1}", (total - setup) as f64 / 1000.0);
    }
}
