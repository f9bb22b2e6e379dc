//! Exact per-message costs, for numbers that do not drift on a busy machine: allocations (a counting global
//! allocator) and, run under callgrind by `scripts/instructions`, instructions.
//!
//! `cargo bench -p tracehop --features kafka,rabbitmq,nats --bench per_message` prints allocations per message for
//! every case; with `-- --case NAME --iterations N` it runs one case N times and prints nothing (what callgrind
//! measures); `-- --list` names the cases.
//!
//! Cases: tracehop's consumer and producer paths, on Kafka and (`nats-`) on a core NATS message, the Kafka
//! message's twin, and a `HeaderMap`; the consumer path (`rabbitmq-`) on a lapin delivery, plain or
//! dead-lettered; the floors they are held to (the OpenTelemetry SDK's own span with a pre-built remote parent,
//! described with the same ten attributes and one link once the sampler has recorded it, and the same span with
//! its parent read from the message's headers; for producers, the SDK's span and a bare `traceparent` write); the
//! guides' hand-written glue (built up front, and described only once
//! sampled); the `tracing` + `tracing-opentelemetry` route; and extraction alone, tracehop's and OpenTelemetry's
//! propagators reading the headers in place.
//!
//! Every message of a case carries the same `tracestate`, which tracehop recognises from the last message; the
//! `-varied` cases give every message its own, the `-mixed` ones a realistic mix, and the `-none` ones carry no
//! `tracestate` at all ([`Tracestates`]).
//!
//! The `flat-` cases ([`FLAT_CASES`]) follow the consumer path's cost per message as batches, header counts,
//! `tracestate` sizes and the depth of a chain of hops grow: `-- --list-flat` names them with the messages an
//! iteration handles, `-- --flat` prints their allocations per message, and `scripts/flatness` counts their
//! instructions.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use opentelemetry::global;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::trace::{Sampler, ShouldSample};
use rdkafka::message::{Message, OwnedMessage};
use tracehop::{Handler, LinkSampler, MessageSpan, ParentPolicy};

mod support;
use support::lineage::*;
use support::nats::*;
use support::rabbitmq::*;
use support::*;

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

/// Every case: its name and what it does per message. `-sampled` cases run under an always-on (parent-based)
/// sampler with a sampled parent; `-unsampled` ones with an unsampled parent, or, for producers, a sampler that
/// drops them. Messages carry a constant `tracestate`, but in the `-varied` and `-mixed` cases
/// ([`Tracestates::Varied`], [`Tracestates::Mixed`]), which cycle through 2,048 messages, the `-none` ones
/// ([`Tracestates::None`]: a `traceparent` and no `tracestate`, what most SDKs send) and the `-level2` ones
/// ([`Tracestates::Level2`]: the random flag and a key OpenTelemetry's `TraceState` refuses).
///
/// The floor of each outcome is the SDK's cheapest span for it ([`sdk_floor`]), handed its parent built before the
/// run; `floor-deciding-first-sampled` and `floor-up-front-unsampled` are the other way of writing it, each dearer
/// for that outcome. `floor-parsing-*` is that floor paying for the message's context as every consumer must: the
/// parent built per message from the headers, the plainest way by hand ([`sdk_floor_parsing`]), so a per-message
/// `tracestate`'s parse is in it.
///
/// `rabbitmq-consumer-*` is the consumer path on a lapin delivery, the Kafka message's twin ([`rabbitmq_twin`]);
/// `rabbitmq-dead-letter-consumer-*` the same delivery as a dead-letter queue receives it ([`dead_letter_twin`]:
/// its `x-death` and `x-first-death-*` headers, which a recorded span reads).
///
/// `nats-consumer-*` and `nats-producer-*` are the same two paths on NATS ([`nats_twin`] of each message, and a
/// `HeaderMap` with its `Nats-Msg-Id`), held to the same floors. `nats-jetstream-consumer-*` is the consumer path on
/// the twin as JetStream delivers it (its reply subject an acknowledgement subject, which gives it a stream, its
/// sequences, a delivery count, an age and, for a handler naming none, its consumer as the group).
///
/// `linked-consumer-*` is the consumer path of a `parent = "link"` handler (a new trace linked to the producer's),
/// and `batch-consumer-*` the span of a batch of [`BATCH_SIZE`] messages (a new trace linked to each); both start
/// traces, so "unsampled" is a sampler that drops new traces (parent-based, always off), whatever the messages say.
/// `link-sampler-*` are the consumer, `linked-consumer` and `batch-consumer` paths under a [`LinkSampler`] over
/// that sampler, so a span that starts a trace is sampled as its producers were: their messages' producers are
/// sampled in the `-sampled` cases and not in the `-unsampled` ones.
/// `ledger-record-*` is what recording a message's process span in a `CommitLedger` adds to its consumer path (the
/// ledger's default capacity, not reached in a run).
/// `retry-*` is a retry republish's span and header work (`tracehop::clients::kafka::retry` up to the send) for
/// the message of `consumer-*`, from its CONSUMER span (sampled or not), to weigh beside `producer-*`, a plain
/// traced publish; `retried-consumer-*` is the consumer path on a message that came through a retry
/// ([`retried_message`]: its attempt and two lineage links read), beside `consumer-*`.
///
/// `consumer-metered-*` and `producer-metered-*` are the consumer and producer paths with an SDK meter provider
/// installed (a periodic reader that never fires during the run), so tracehop's metrics are recorded; they come
/// last, because the provider stays installed for the cases after them. Built without the `metrics` feature, they
/// measure what the same process costs when tracehop records no metrics.
const CASES: &[&str] = &[
    "consumer-sampled",
    "consumer-unsampled",
    "floor-sampled",
    "floor-unsampled",
    "floor-deciding-first-sampled",
    "floor-up-front-unsampled",
    "floor-parsing-sampled",
    "floor-parsing-unsampled",
    "glue-sampled",
    "glue-unsampled",
    "glue-after-sampling-sampled",
    "glue-after-sampling-unsampled",
    "tracing-sampled",
    "tracing-unsampled",
    "producer-sampled",
    "producer-unsampled",
    "producer-floor-sampled",
    "producer-floor-unsampled",
    "extraction-sampled",
    "upstream-extraction-sampled",
    "nats-consumer-sampled",
    "nats-consumer-unsampled",
    "nats-producer-sampled",
    "nats-producer-unsampled",
    "nats-jetstream-consumer-sampled",
    "nats-jetstream-consumer-unsampled",
    "rabbitmq-consumer-sampled",
    "rabbitmq-consumer-unsampled",
    "rabbitmq-dead-letter-consumer-sampled",
    "rabbitmq-dead-letter-consumer-unsampled",
    "retry-sampled",
    "retry-unsampled",
    "retried-consumer-sampled",
    "retried-consumer-unsampled",
    "consumer-sampled-varied",
    "consumer-unsampled-varied",
    "floor-sampled-varied",
    "floor-unsampled-varied",
    "floor-parsing-sampled-varied",
    "floor-parsing-unsampled-varied",
    "glue-after-sampling-sampled-varied",
    "glue-after-sampling-unsampled-varied",
    "extraction-sampled-varied",
    "upstream-extraction-sampled-varied",
    "consumer-sampled-mixed",
    "consumer-unsampled-mixed",
    "floor-sampled-mixed",
    "floor-unsampled-mixed",
    "floor-parsing-sampled-mixed",
    "floor-parsing-unsampled-mixed",
    "glue-after-sampling-sampled-mixed",
    "glue-after-sampling-unsampled-mixed",
    "extraction-sampled-mixed",
    "upstream-extraction-sampled-mixed",
    "consumer-sampled-none",
    "consumer-unsampled-none",
    "floor-sampled-none",
    "floor-unsampled-none",
    "floor-parsing-sampled-none",
    "floor-parsing-unsampled-none",
    "glue-after-sampling-sampled-none",
    "glue-after-sampling-unsampled-none",
    "extraction-sampled-none",
    "upstream-extraction-sampled-none",
    "consumer-sampled-level2",
    "consumer-unsampled-level2",
    "floor-sampled-level2",
    "floor-unsampled-level2",
    "glue-after-sampling-sampled-level2",
    "glue-after-sampling-unsampled-level2",
    "extraction-sampled-level2",
    "upstream-extraction-sampled-level2",
    "linked-consumer-sampled",
    "linked-consumer-unsampled",
    "batch-consumer-sampled",
    "batch-consumer-unsampled",
    "link-sampler-consumer-sampled",
    "link-sampler-consumer-unsampled",
    "link-sampler-linked-consumer-sampled",
    "link-sampler-linked-consumer-unsampled",
    "link-sampler-batch-consumer-sampled",
    "link-sampler-batch-consumer-unsampled",
    "ledger-record-sampled",
    "ledger-record-unsampled",
    "consumer-metered-sampled",
    "consumer-metered-unsampled",
    "producer-metered-sampled",
    "producer-metered-unsampled",
];

static LEDGER: tracehop::clients::kafka::CommitLedger = tracehop::clients::kafka::CommitLedger::new();

/// Runs `case` `iterations` times.
fn run(case: &str, iterations: usize) {
    let (path, tracestates) = match case.rsplit_once('-') {
        Some((path, "varied")) => (path, Tracestates::Varied),
        Some((path, "mixed")) => (path, Tracestates::Mixed),
        Some((path, "none")) => (path, Tracestates::None),
        Some((path, "level2")) => (path, Tracestates::Level2),
        _ => (case, Tracestates::Constant),
    };
    let sampled = path.ends_with("-sampled");
    let path = path.trim_end_matches("-sampled").trim_end_matches("-unsampled");
    let metered = path.ends_with("-metered");
    let path = path.trim_end_matches("-metered");
    if metered {
        install_meter_provider();
    }
    // Producers have no parent to follow: "unsampled" is a sampler that drops them; the same for the spans that
    // start traces of their own.
    let producer = path.starts_with("producer") || path == "nats-producer";
    let (honours_links, path) = match path.strip_prefix("link-sampler-") {
        Some(path) => (true, path),
        None => (false, path),
    };
    let starts_traces = matches!(path, "linked-consumer" | "batch-consumer");
    // Each case as a process of its own would have it: on only where a `LinkSampler` is made.
    tracehop::set_links_before_sampling(false);
    let sampler: Box<dyn ShouldSample> = match (honours_links, producer, starts_traces, sampled) {
        (true, ..) => Box::new(LinkSampler::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))),
        (_, true, _, false) => Box::new(Sampler::AlwaysOff),
        (_, _, true, false) => Box::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOff))),
        _ => Box::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOn))),
    };
    let provider = provider(sampler, Processor::Simple);
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();
    let messages = tracestates.messages(TRACE_ID, sampled);
    // Made in the set-up, which the measurements take off, and only for the case that reads them.
    let nats_messages: Vec<async_nats::Message> = match path {
        "nats-consumer" => messages.iter().map(|(message, _)| nats_twin(message)).collect(),
        "nats-jetstream-consumer" => messages.iter().map(|(message, _)| jetstream_twin(message)).collect(),
        _ => Vec::new(),
    };
    let deliveries: Vec<lapin::message::Delivery> = match path {
        "rabbitmq-consumer" => messages.iter().map(|(message, _)| rabbitmq_twin(message)).collect(),
        "rabbitmq-dead-letter-consumer" => messages.iter().map(|(message, _)| dead_letter_twin(message)).collect(),
        _ => Vec::new(),
    };
    let batch: Vec<OwnedMessage> = match path {
        "batch-consumer" => messages.iter().take(BATCH_SIZE).map(|(message, _)| message.clone()).collect(),
        _ => Vec::new(),
    };
    let retried_messages: Vec<rdkafka::message::OwnedMessage> = match path {
        "retried-consumer" => vec![retried_message(TRACE_ID, sampled)],
        _ => Vec::new(),
    };
    let tracer = provider.tracer("floor");
    // Only the `tracing` route has a subscriber: tracehop's own `tracing` call sites stay disabled elsewhere,
    // as in a service that does not use `tracing`.
    let _subscriber = (path == "tracing").then(|| tracing::subscriber::set_default(tracing_subscriber_for(&provider)));
    for index in 0..iterations {
        let (message, parent) = &messages[index % messages.len()];
        match path {
            "consumer" => tracehop_consumer(black_box(message)),
            "floor" => sdk_floor(&tracer, black_box(parent)),
            "floor-parsing" => sdk_floor_parsing(&tracer, black_box(message)),
            "floor-up-front" => sdk_floor_described_up_front(&tracer, black_box(parent)),
            "floor-deciding-first" => sdk_floor_deciding_first(&tracer, black_box(parent)),
            "glue" => hand_written(black_box(message)),
            "glue-after-sampling" => hand_written_after_sampling(black_box(message)),
            "tracing" => tracing_route(black_box(message)),
            "producer" => tracehop_producer(),
            "producer-floor" => sdk_producer_floor(&tracer),
            "nats-consumer" => tracehop_nats_consumer(black_box(&nats_messages[index % nats_messages.len()])),
            "nats-producer" => tracehop_nats_producer(),
            "linked-consumer" => {
                MessageSpan::consumer(&LINKED_CONSUMER, black_box(message)).start().run(|| black_box(()))
            }
            "batch-consumer" => {
                MessageSpan::consumer_batch(&BATCH_CONSUMER, black_box(&batch)).start().run(|| black_box(()))
            }
            "nats-jetstream-consumer" => {
                tracehop_jetstream_consumer(black_box(&nats_messages[index % nats_messages.len()]))
            }
            "rabbitmq-consumer" | "rabbitmq-dead-letter-consumer" => {
                tracehop_rabbitmq_consumer(black_box(&deliveries[index % deliveries.len()]))
            }
            "retry" => tracehop_retry(black_box(message), black_box(parent)),
            "retried-consumer" => tracehop_consumer(black_box(&retried_messages[0])),
            "extraction" => drop(black_box(tracehop::extract_context(black_box(message)))),
            "ledger-record" => LEDGER.record_span(black_box(message), black_box(parent)),
            "upstream-extraction" => {
                let headers = message.headers().expect("the message has headers");
                drop(black_box(UPSTREAM.extract(&KafkaHeaders(black_box(headers)))))
            }
            _ => panic!("unknown case {case}; cases: {CASES:?}"),
        }
    }
}

/// The flatness cases: how the consumer path's cost per message moves as one dimension of the work grows, each
/// with the messages one iteration handles (`--list-flat` prints both; `scripts/flatness` divides by it). All run
/// sampled (an always-on, parent-based sampler, sampled parents), each message continuing its producer's trace.
///
/// - `flat-batch-N`: one batch span (`MessageSpan::consumer_batch`, a link per message up to
///   `max_links_per_span`) over N messages of N different traces; an iteration is one batch.
/// - `flat-headers-N`: the consumer span of a message carrying N application headers before its `traceparent` and
///   `tracestate`.
/// - `flat-tracestate-K`: a message whose `tracestate` has K members of 15 characters (32 of them are 511
///   characters, W3C's 512-character limit); `none` carries none. Constant from message to message, which
///   tracehop recognises; the `-varied` cases change the first member's value every message (a vendor writing per
///   span), cycling through 2,048 messages.
/// - `flat-hop-K`: hop K of a chain where every hop consumes a message and, inside its consumer span, publishes
///   the next with `#[traced_producer]`'s calls; the chain starts with a publish outside any span. An iteration is
///   one hop's consume and publish of the message that came through the K − 1 hops before it.
const FLAT_CASES: &[(&str, usize)] = &[
    ("flat-batch-1", 1),
    ("flat-batch-10", 10),
    ("flat-batch-100", 100),
    ("flat-batch-1000", 1_000),
    ("flat-batch-10000", 10_000),
    ("flat-headers-0", 1),
    ("flat-headers-10", 1),
    ("flat-headers-100", 1),
    ("flat-tracestate-none", 1),
    ("flat-tracestate-1", 1),
    ("flat-tracestate-8", 1),
    ("flat-tracestate-32", 1),
    ("flat-tracestate-1-varied", 1),
    ("flat-tracestate-8-varied", 1),
    ("flat-tracestate-32-varied", 1),
    ("flat-hop-1", 1),
    ("flat-hop-10", 1),
];

/// A `tracestate` of `members` members of 15 characters (`vendorNN=` and six), the first one's value `first`.
fn tracestate_of(members: usize, first: &str) -> String {
    (0..members)
        .map(|member| format!("vendor{member:02}={}", if member == 0 { first } else { "t61rcW" }))
        .collect::<Vec<_>>()
        .join(",")
}

/// Six characters different for each `index` below 2,048: the varied first member's value.
fn six_characters(index: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..6).map(|digit| char::from(ALPHABET[(index >> (6 * digit)) & 63])).collect()
}

/// An order message of trace `trace_id` with `others` application headers, then its `traceparent` and, when
/// given, `tracestate`.
fn message_with(trace_id: u128, others: usize, tracestate: Option<&str>) -> OwnedMessage {
    use rdkafka::message::{Header, OwnedHeaders};
    let mut headers = OwnedHeaders::new_with_capacity(others + 2);
    for index in 0..others {
        let (key, value) = (format!("x-app-{index}"), format!("value-{index}"));
        headers = headers.insert(Header { key: &key, value: Some(&value) });
    }
    let traceparent = traceparent(trace_id, true);
    headers = headers.insert(Header { key: "traceparent", value: Some(&traceparent) });
    if let Some(tracestate) = tracestate {
        headers = headers.insert(Header { key: "tracestate", value: Some(tracestate) });
    }
    order_message(headers)
}

/// One hop of the chain: consumes `message` and, inside its span, publishes the next message; that message.
fn hop(message: &OwnedMessage) -> OwnedMessage {
    let mut next = None;
    MessageSpan::consumer(&CONSUMER, message).start().run(|| next = Some(publish_next()));
    next.expect("the hop published")
}

/// What `#[traced_producer]` does for a function taking its record, then the record as the next consumer gets it.
fn publish_next() -> OwnedMessage {
    let mut record: rdkafka::producer::FutureRecord<'_, str, str> =
        rdkafka::producer::FutureRecord::to("orders").key("order-7").payload("{\"id\":7}");
    let span = MessageSpan::producer(&PRODUCER).describing(&record).start();
    span.inject(&mut record);
    span.run(|| {
        black_box(&record.headers);
    });
    order_message(record.headers.unwrap_or_default())
}

/// Runs flatness case `case` `iterations` times (an iteration handles the messages [`FLAT_CASES`] gives it).
fn run_flat(case: &str, iterations: usize) {
    tracehop::set_links_before_sampling(false);
    let provider = provider(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), Processor::Simple);
    global::set_tracer_provider(provider.clone());
    tracehop::install_propagator();
    let (dimension, size) =
        case.strip_prefix("flat-").and_then(|rest| rest.split_once('-')).expect("flat-DIMENSION-SIZE");
    match dimension {
        "batch" => {
            let size: usize = size.parse().expect("a batch size");
            let batch: Vec<OwnedMessage> =
                (0..size).map(|index| message_with(TRACE_ID + index as u128, 2, Some(TRACESTATE))).collect();
            for _ in 0..iterations {
                MessageSpan::consumer_batch(&BATCH_CONSUMER, black_box(&batch)).start().run(|| black_box(()));
            }
        }
        "headers" => {
            let message = message_with(TRACE_ID, size.parse().expect("a header count"), Some(TRACESTATE));
            for _ in 0..iterations {
                tracehop_consumer(black_box(&message));
            }
        }
        "tracestate" => {
            let (members, varied) = match size.strip_suffix("-varied") {
                Some(members) => (members, true),
                None => (size, false),
            };
            let messages: Vec<OwnedMessage> = match (members, varied) {
                ("none", _) => vec![message_with(TRACE_ID, 2, None)],
                (members, false) => {
                    vec![message_with(TRACE_ID, 2, Some(&tracestate_of(members.parse().expect("members"), "t61rcW")))]
                }
                (members, true) => {
                    let members = members.parse().expect("members");
                    (0..2048)
                        .map(|index| message_with(TRACE_ID, 2, Some(&tracestate_of(members, &six_characters(index)))))
                        .collect()
                }
            };
            for index in 0..iterations {
                tracehop_consumer(black_box(&messages[index % messages.len()]));
            }
        }
        "hop" => {
            let hops: usize = size.parse().expect("a hop number");
            let mut message = publish_next();
            for _ in 1..hops {
                message = hop(&message);
            }
            for _ in 0..iterations {
                drop(black_box(hop(black_box(&message))));
            }
        }
        _ => panic!("unknown case {case}; cases: {FLAT_CASES:?}"),
    }
}

/// The messages of one `batch-consumer` span.
const BATCH_SIZE: usize = 8;

/// `#[traced_consumer(group = "inventory-service", parent = "link")]`.
static LINKED_CONSUMER: Handler =
    Handler::consumer("bench::on_order").group("inventory-service").parent(ParentPolicy::Link);

/// `#[traced_consumer(group = "inventory-service")]` on a function taking `&[OwnedMessage]`.
static BATCH_CONSUMER: Handler = Handler::consumer("bench::on_orders").group("inventory-service");

/// An SDK meter provider on the global, once: what a service exporting metrics has.
fn install_meter_provider() {
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let reader = PeriodicReader::builder(InMemoryMetricExporter::default())
            .with_interval(std::time::Duration::from_secs(3600))
            .build();
        global::set_meter_provider(SdkMeterProvider::builder().with_reader(reader).build());
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| args.iter().position(|arg| arg == flag).and_then(|at| args.get(at + 1));
    if args.iter().any(|arg| arg == "--list") {
        CASES.iter().for_each(|case| println!("{case}"));
        return;
    }
    if args.iter().any(|arg| arg == "--list-flat") {
        FLAT_CASES.iter().for_each(|(case, messages)| println!("{case} {messages}"));
        return;
    }
    if let Some(case) = value_of("--case") {
        let iterations = value_of("--iterations").and_then(|n| n.parse().ok()).unwrap_or(1000);
        match case.starts_with("flat-") {
            true => run_flat(case, iterations),
            false => run(case, iterations),
        }
        return;
    }
    if args.iter().any(|arg| arg == "--flat") {
        println!("allocations per message (a counting global allocator; at least 1,000 messages after 100)");
        for (case, messages) in FLAT_CASES {
            let iterations = 1000_usize.div_ceil(*messages);
            run_flat(case, 100_usize.div_ceil(*messages));
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            run_flat(case, iterations);
            let total = ALLOCATIONS.load(Ordering::Relaxed) - before;
            let before_setup = ALLOCATIONS.load(Ordering::Relaxed);
            run_flat(case, 0);
            let setup = ALLOCATIONS.load(Ordering::Relaxed) - before_setup;
            println!("{case:>36}: {:.2}", (total - setup) as f64 / (iterations * messages) as f64);
        }
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
        println!("{case:>36}: {:.1}", (total - setup) as f64 / 1000.0);
    }
}
