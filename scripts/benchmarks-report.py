#!/usr/bin/env python3
"""Writes BENCHMARKS.md (to stdout) from the output of scripts/benchmarks: target/benchmarks/*.txt and criterion's
estimates under target/criterion. Every number in the page comes from those files; the prose around them is fixed.

Usage: scripts/benchmarks-report.py OUT_DIR CRITERION_DIR
"""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
criterion = pathlib.Path(sys.argv[2])


def read_pairs(name):
    pairs = {}
    path = out / name
    for line in path.read_text().splitlines() if path.exists() else []:
        key, _, value = line.partition(" ")
        pairs[key] = value
    return pairs


def medians():
    """Criterion's median estimate, in nanoseconds, of every benchmark, by its full id."""
    found = {}
    for bench in criterion.glob("**/new/benchmark.json"):
        full_id = json.loads(bench.read_text())["full_id"]
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        found[full_id] = estimates["median"]["point_estimate"]
    return found


def instructions():
    rows = {}
    path = out / "instructions.txt"
    for line in path.read_text().splitlines()[1:] if path.exists() else []:
        case, count, allocations = line.split()
        rows[case] = (int(count), float(allocations))
    return rows


def throughput():
    found = {}
    path = out / "throughput.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if len(parts) == 4 and parts[0] == "throughput":
            found[(parts[1], parts[2])] = float(parts[3])
    return found


def variant_of(case):
    """A per_message case's name split into its path and its `tracestate` variant ("", "-varied", "-mixed",
    "-level2")."""
    for variant in ("-varied", "-mixed", "-level2"):
        if case.endswith(variant):
            return case.removesuffix(variant), variant
    return case, ""


def ns(value):
    if value is None:
        return "–"
    if value >= 1_000_000:
        return f"{value / 1_000_000:,.2f} ms"
    if value >= 1_000:
        return f"{value / 1_000:,.2f} µs"
    return f"{value:,.0f} ns"


def ratio(a, b):
    return "–" if a is None or b in (None, 0) else f"{a / b:.2f}×"


def verdict(value, limit, at_most=True):
    if value is None:
        return "not measured"
    met = value <= limit if at_most else value >= limit
    return "**met**" if met else "**not met**"


machine = read_pairs("machine.txt")
times = medians()
counts = instructions()
rates = throughput()
lines = []
say = lines.append

say("# Benchmarks")
say("")
say("Written by `scripts/benchmarks` from the benchmarks' own output (regenerate: `scripts/benchmarks`, about thirteen")
say("minutes; `scripts/benchmarks --report` rewrites this page from the last run). Do not edit by hand.")
say("")
say(f"Machine: {machine.get('cpus', '?')} CPUs ({machine.get('cpu', '?')}), {machine.get('rustc', '?')}; "
    f"commit {machine.get('commit', '?')}, {machine.get('date', '?')}. Timings on shared two-core machines drift up "
    "to 2× within minutes, so every comparison below is between cases of one run, and the instruction counts "
    "(callgrind, exact run to run) are the figures the targets are judged on first.")
say("")
say("How to run each part:")
say("- instructions and allocations per message: `scripts/instructions` (callgrind over "
    "`cargo bench -p tracehop --features kafka,rabbitmq,nats --bench per_message -- --case NAME`; the bench alone prints "
    "allocations from a counting allocator);")
say("- the timing matrix: `cargo bench -p tracehop --features kafka,rabbitmq,nats --bench message_span` (criterion, "
    "medians);")
say("- throughput through a broker: `cargo bench -p tracehop --features kafka,rabbitmq --bench throughput` (RabbitMQ when "
    "`AMQP_URL` is set; `scripts/rabbitmq cargo bench ...` starts a node for it);")
say("- a message's cost while the collector is down: `cargo bench -p tracehop --features kafka,rabbitmq,otlp --bench outage`;")
say("- hostile headers: `cargo bench -p tracehop --features kafka --bench wire_limits`.")
say("")
say("The benches are built with the default features a service uses (`kafka`, `rabbitmq`, and `nats` where NATS is "
    "measured; `otlp` for the outage): with `--all-features` the `metrics` feature adds its cost to every path.")
say("")
say("The paths: **floor** is OpenTelemetry's own span with a pre-built remote parent, the same ten attributes and one "
    "link, built the cheapest way the SDK allows for the sampler's decision: described up front when sampled, left "
    "to the sampler first (`is_recording`) and given nothing when unsampled (for producers: its span and a bare "
    "`traceparent` write); **tracehop** is what `#[traced_consumer]` / "
    "`#[traced_producer]` expand to; **glue** is the usual guides' code (headers copied into a map, "
    "OpenTelemetry's own propagators, everything built before sampling); **glue-after-sampling** reads the headers "
    "in place and describes the span only once sampled; **tracing** is a `tracing` span with the same fields, "
    "parented through `tracing-opentelemetry`.")
say("")
say("Consumed messages carry the same `tracestate` (`congo=t61rcWkgMzE`), which tracehop recognises from the "
    "thread's last message, but in the `varied` cases, where each message has its own, and the `mixed` ones: 70% "
    "carry that one, 20% one of three others and 10% their own, in a fixed shuffled order (48% of the messages "
    "repeat the one before). The `level2` cases carry what W3C Trace Context Level 2 allows and OpenTelemetry's "
    "span context cannot hold: the random flag (`-03`, `-02`) and a `tracestate` key with a 14-character system id "
    "(`congo=t61rcWkgMzE,tenant@vvvvvvvvvvvvvv=1`); tracehop keeps both beside the span context, and its floor's "
    "parent holds what OpenTelemetry can.")
say("")

# Instructions
say("## Instructions and allocations per message")
say("")
say("Built with the default features (`kafka`, `rabbitmq`, `nats`). The `+metrics` rows are the same paths built "
    "with the `metrics` feature: without a meter provider, and (`-metered-`) with the SDK's recording every message; "
    "floors are those of the build without metrics. Each case is held to the floor and the careful glue "
    "(`glue-after-sampling`) of its own sampling and `tracestate`; `floor-deciding-first-sampled` and "
    "`floor-up-front-unsampled` are the floor written the other way for that outcome. The `nats-` rows are the "
    "consumer and producer paths on NATS: a core message, the Kafka message's twin (the same trace, `tracestate` and "
    "headers, its key as `Nats-Msg-Id`), and a `HeaderMap` holding that id; they are held to the same floors, which "
    "describe the Kafka message (ten attributes, seven for the publish, where tracehop records eight and six on "
    "NATS). The `nats-jetstream-consumer-` rows are the consumer path on that twin as JetStream delivers it (an "
    "acknowledgement subject: stream, sequences, delivery count, age, its consumer as the group). The `rabbitmq-` "
    "rows are the consumer path on a delivery carrying the same headers, and `rabbitmq-dead-letter-consumer-` on one "
    "RabbitMQ dead-lettered (an `x-death` header, read for recorded spans only). `retry-` is a retry republish's "
    "span and header work (`clients::kafka::retry` up to librdkafka's send), from the consumer span of the "
    "`consumer-` message: beside `producer-`, a plain traced publish, it is the cost of keeping the message's "
    "lineage; `retried-consumer-` is the consumer path on a message that came through a retry (its attempt and two "
    "lineage links read). `linked-consumer-` is a `parent = \"link\"` handler's span and `batch-consumer-` a batch "
    "span over 8 messages (per batch): both start traces, so `-unsampled` is a sampler dropping new traces; the "
    "`link-sampler-` rows are the consumer, linked and batch paths under `LinkSampler` over that sampler, their "
    "producers sampled (`-sampled`) or not. `ledger-record-` is what recording a process span in a Kafka "
    "`CommitLedger` adds to a message.")
say("")
say("| case | instructions | allocations | instructions vs floor | vs glue-after-sampling |")
say("|---|---:|---:|---:|---:|")
for case, (count, allocations) in counts.items():
    path, variant = variant_of(case.removesuffix("+metrics"))
    sampling = "unsampled" if path.endswith("-unsampled") else "sampled"
    path = path.removeprefix("nats-")
    floor = counts.get(f"{'producer-floor' if path.startswith('producer') else 'floor'}-{sampling}{variant}")
    against = "–" if path.startswith(("extraction", "upstream")) else ratio(count, floor and floor[0])
    careful = counts.get(f"glue-after-sampling-{sampling}{variant}")
    against_careful = ratio(count, careful and careful[0]) if path.startswith("consumer") else "–"
    say(f"| {case} | {count:,} | {allocations:g} | {against} | {against_careful} |")
floors = {"sampled": counts.get("floor-sampled"), "unsampled": counts.get("floor-unsampled")}
producer_floors = {"sampled": counts.get("producer-floor-sampled"), "unsampled": counts.get("producer-floor-unsampled")}
say("")

# Consumer matrix
say("## One consumed message: medians by sampler and span processor")
say("")
say("The `varied` and `mixed` rows (simple processor only) repeat the constant-`tracestate` cells with each "
    "message's own `tracestate` and with the mix. **vs glue** is against the guides' glue (headers copied to a "
    "map, everything built before sampling), **vs careful glue** against `glue-after-sampling`.")
say("")
say("| sampler / processor / tracestate | untraced | extraction | floor | tracehop | glue | glue-after-sampling | "
    "tracing | tracehop vs floor | vs glue | vs careful glue | vs tracing |")
say("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for suffix, processors in [("", ["simple", "batch"]), ("/tracestate-varied", ["simple"]),
                           ("/tracestate-mixed", ["simple"])]:
    for sampler in ["always-on", "unsampled-parent", "ratio-1%"]:
        for processor in processors:
            group = f"consumer/{sampler}/{processor}{suffix}"
            get = lambda name: times.get(f"{group}/{name}")
            cells = [ns(get(name)) for name in
                     ["untraced", "extraction", "floor", "tracehop", "glue", "glue-after-sampling", "tracing"]]
            tracestate = suffix.removeprefix("/tracestate-") or "constant"
            say(f"| {sampler} / {processor} / {tracestate} | " + " | ".join(cells) +
                f" | {ratio(get('tracehop'), get('floor'))} | {ratio(get('tracehop'), get('glue'))} | "
                f"{ratio(get('tracehop'), get('glue-after-sampling'))} | {ratio(get('tracehop'), get('tracing'))} |")
say("")
say("The same cells on NATS: `#[traced_consumer]` on each message's core NATS twin (the same trace, `tracestate` and "
    "headers, its key as `Nats-Msg-Id`), beside the Kafka message of the table above.")
say("")
say("| sampler / processor / tracestate | tracehop, Kafka | tracehop, NATS | NATS vs Kafka |")
say("|---|---:|---:|---:|")
for suffix, processors in [("", ["simple", "batch"]), ("/tracestate-varied", ["simple"]),
                           ("/tracestate-mixed", ["simple"])]:
    for sampler in ["always-on", "unsampled-parent", "ratio-1%"]:
        for processor in processors:
            group = f"consumer/{sampler}/{processor}{suffix}"
            get = lambda name: times.get(f"{group}/{name}")
            tracestate = suffix.removeprefix("/tracestate-") or "constant"
            say(f"| {sampler} / {processor} / {tracestate} | {ns(get('tracehop'))} | {ns(get('tracehop-nats'))} | "
                f"{ratio(get('tracehop-nats'), get('tracehop'))} |")
say("")

# Extraction
say("## Extraction alone")
say("")
say("The trace context of one message with N application headers besides `traceparent` and `tracestate` "
    "(W3C trace context and baggage propagators in every case; on NATS also its `Nats-Msg-Id`); on Kafka also with "
    "each message's own `tracestate` (`varied`) and the mix (`mixed`).")
say("")
say("| broker, headers, tracestate | tracehop | upstream, headers copied to a map | upstream, headers read in place | "
    "tracehop vs in place |")
say("|---|---:|---:|---:|---:|")
for broker in ["kafka", "amqp", "nats"]:
    for count in [0, 3, 20]:
        for suffix in ["", "-tracestate-varied", "-tracestate-mixed"] if broker == "kafka" else [""]:
            get = lambda name: times.get(f"extraction/{broker}/{name}{suffix}/{count}")
            tracestate = suffix.removeprefix("-tracestate-") or "constant"
            say(f"| {broker}, {count}, {tracestate} | {ns(get('tracehop'))} | {ns(get('upstream-map'))} | "
                f"{ns(get('upstream-in-place'))} | {ratio(get('tracehop'), get('upstream-in-place'))} |")
say("")

# Producer
say("## One published message")
say("")
say("| sampler | floor (span + bare header write) | tracehop | glue | tracehop vs floor | vs glue |")
say("|---|---:|---:|---:|---:|---:|")
for sampling in ["sampled", "unsampled"]:
    get = lambda name: times.get(f"producer/{sampling}/{name}")
    say(f"| {sampling} | {ns(get('floor'))} | {ns(get('tracehop'))} | {ns(get('glue'))} | "
        f"{ratio(get('tracehop'), get('floor'))} | {ratio(get('tracehop'), get('glue'))} |")
say("")
say("On NATS, `#[traced_producer]` on a function taking the message's `HeaderMap` (holding its `Nats-Msg-Id`), "
    "beside the Kafka record of the table above:")
say("")
say("| sampler | tracehop, Kafka | tracehop, NATS | NATS vs Kafka |")
say("|---|---:|---:|---:|")
for sampling in ["sampled", "unsampled"]:
    get = lambda name: times.get(f"producer/{sampling}/{name}")
    say(f"| {sampling} | {ns(get('tracehop'))} | {ns(get('tracehop-nats'))} | "
        f"{ratio(get('tracehop-nats'), get('tracehop'))} |")
say("")

# Batches and contexts
say("## Batches and contexts")
say("")
say("The batch glue reads every message's headers in place; the context rows compare with both glues.")
say("")
say("| case | tracehop | glue | glue-after-sampling | tracehop vs glue | vs glue-after-sampling |")
say("|---|---:|---:|---:|---:|---:|")
for size in [100, 10000]:
    get = lambda name: times.get(f"batch/{name}/{size}")
    say(f"| batch of {size:,} (one span, up to 128 links) | {ns(get('tracehop'))} | {ns(get('glue'))} | | "
        f"{ratio(get('tracehop'), get('glue'))} | |")
for context in ["missing", "malformed"]:
    get = lambda name: times.get(f"context/{name}/{context}")
    say(f"| {context} context (new root) | {ns(get('tracehop'))} | {ns(get('glue'))} | "
        f"{ns(get('glue-after-sampling'))} | {ratio(get('tracehop'), get('glue'))} | "
        f"{ratio(get('tracehop'), get('glue-after-sampling'))} |")
say(f"| floor: a new root span | {ns(times.get('context/floor/new-root'))} | | | | |")
say("")

# Outage
say("## While the collector is down")
say("")
say("`#[traced_consumer]` with the batch span processor, exporting to an exporter that discards, over OTLP/HTTP to "
    "a port where nothing listens, and to a collector that accepts connections and never answers "
    "(`cargo bench --bench outage`; `tests/exporter_outage.rs` shows 20,000 messages handled in bounded memory).")
say("")
say("| export | median per message | vs working export |")
say("|---|---:|---:|")
working = times.get("outage/export works")
for case in ["export works", "nothing listens", "collector never answers"]:
    say(f"| {case} | {ns(times.get(f'outage/{case}'))} | {ratio(times.get(f'outage/{case}'), working)} |")
say("")

# Throughput
say("## Throughput through a broker")
say("")
say("A trivial handler, always-on sampling, the batch span processor on an exporter that discards; rounds "
    "alternate untraced and traced, medians of five.")
say("")
say("| broker | untraced messages/s | traced messages/s | traced / untraced |")
say("|---|---:|---:|---:|")
for broker, label in [("kafka", "Kafka, librdkafka's mock cluster"), ("rabbitmq", "RabbitMQ, a local node")]:
    untraced, traced = rates.get((broker, "untraced")), rates.get((broker, "traced"))
    if untraced is None:
        say(f"| {label} | not measured | | |")
    else:
        say(f"| {label} | {untraced:,.0f} | {traced:,.0f} | {traced / untraced:.2f} |")
say("")

# Targets
say("## The targets")
say("")
consumer_s, consumer_u = counts.get("consumer-sampled"), counts.get("consumer-unsampled")
producer_s = counts.get("producer-sampled")
extraction, upstream = counts.get("extraction-sampled"), counts.get("upstream-extraction-sampled")
value = lambda pair: pair and pair[0]
q = lambda a, b: a / b if a is not None and b else None
targets = [
    ("`#[traced_consumer]` ≤ 1.2× the floor, sampled (instructions)", q(value(consumer_s), value(floors["sampled"])), 1.2, True),
    ("`#[traced_consumer]` ≤ 1.2× the floor, unsampled (instructions)",
     q(value(consumer_u), value(floors["unsampled"])), 1.2, True),
    *[(f"`#[traced_consumer]` ≤ 1.2× the floor, {sampling}, {variant[1:]} `tracestate` (instructions)",
       q(value(counts.get(f"consumer-{sampling}{variant}")), value(counts.get(f"floor-{sampling}{variant}"))), 1.2, True)
      for variant in ["-varied", "-mixed"] for sampling in ["sampled", "unsampled"]],
    ("`#[traced_consumer]` ≤ 1.2× the floor, sampled (median, simple processor)",
     q(times.get("consumer/always-on/simple/tracehop"), times.get("consumer/always-on/simple/floor")), 1.2, True),
    ("producer ≤ 1.2× the floor + a bare header write, sampled (instructions)",
     q(value(producer_s), value(producer_floors["sampled"])), 1.2, True),
    ("extraction ≤ 0.5× the upstream propagators reading in place (instructions)", q(value(extraction), value(upstream)), 0.5, True),
    *[(f"extraction ≤ 0.5× upstream in place, {variant[1:]} `tracestate` (instructions)",
       q(value(counts.get(f"extraction-sampled{variant}")), value(counts.get(f"upstream-extraction-sampled{variant}"))),
       0.5, True) for variant in ["-varied", "-mixed"]],
    ("extraction ≤ 0.5× upstream in place, Kafka, 3 headers (median)",
     q(times.get("extraction/kafka/tracehop/3"), times.get("extraction/kafka/upstream-in-place/3")), 0.5, True),
    ("1% sampler: traced ≤ 1.1× untraced + extraction (median, batch processor)",
     q(times.get("consumer/ratio-1%/batch/tracehop"),
       (times.get("consumer/ratio-1%/batch/untraced") or 0) + (times.get("consumer/ratio-1%/batch/extraction") or 0)
       or None), 1.1, True),
    ("allocations ≤ the floor's + extraction's, sampled",
     q(counts.get("consumer-sampled", (0, 0))[1],
       (counts.get("floor-sampled", (0, 0))[1] + counts.get("extraction-sampled", (0, 0))[1]) or None), 1.0, True),
    ("broker throughput traced ≥ 95% of untraced, Kafka", q(rates.get(("kafka", "traced")), rates.get(("kafka", "untraced"))), 0.95, False),
    ("broker throughput traced ≥ 95% of untraced, RabbitMQ",
     q(rates.get(("rabbitmq", "traced")), rates.get(("rabbitmq", "untraced"))), 0.95, False),
]
say("| target | measured | |")
say("|---|---:|---|")
for name, measured, limit, at_most in targets:
    shown = "–" if measured is None else f"{measured:.2f}"
    say(f"| {name} | {shown} | {verdict(measured, limit, at_most)} |")
say("")
def instr(case):
    return counts.get(case, (None, None))[0]


def allocs(case):
    return counts.get(case, (None, None))[1]


def times_of(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}×"


def number(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def minus(a, b):
    return None if a is None or b is None else a - b


def rest(variant, sampling):
    """The consumer's instructions with extraction taken out."""
    return minus(instr(f"consumer-{sampling}{variant}"), instr(f"extraction-sampled{variant}"))


kafka_untraced, kafka_traced = rates.get(("kafka", "untraced")), rates.get(("kafka", "traced"))
computed = {
    "consumer_rest_sampled": times_of(rest("", "sampled"), instr("floor-sampled")),
    "consumer_rest_sampled_varied": times_of(rest("-varied", "sampled"), instr("floor-sampled-varied")),
    "consumer_rest_unsampled": times_of(rest("", "unsampled"), instr("floor-unsampled")),
    "consumer_rest_unsampled_instructions": number(rest("", "unsampled")),
    **{f"consumer_vs_floor_{sampling}{variant.replace('-', '_')}":
       times_of(instr(f"consumer-{sampling}{variant}"), instr(f"floor-{sampling}{variant}"))
       for variant in ["", "-varied", "-mixed"] for sampling in ["sampled", "unsampled"]},
    "extraction_vs_upstream": times_of(instr("extraction-sampled"), instr("upstream-extraction-sampled")),
    "extraction_vs_upstream_varied": times_of(instr("extraction-sampled-varied"),
                                              instr("upstream-extraction-sampled-varied")),
    "extraction_vs_upstream_mixed": times_of(instr("extraction-sampled-mixed"),
                                             instr("upstream-extraction-sampled-mixed")),
    "extraction_varied": number(instr("extraction-sampled-varied")),
    "memo_saving": number(minus(instr("extraction-sampled-varied"), instr("extraction-sampled"))),
    "floor_unsampled": number(instr("floor-unsampled")),
    "floor_up_front_unsampled": number(instr("floor-up-front-unsampled")),
    "floor_unsampled_vs_extraction": times_of(instr("floor-unsampled"), instr("extraction-sampled")),
    "extraction": number(instr("extraction-sampled")),
    "consumer_allocations": number(allocs("consumer-sampled")),
    "floor_plus_extraction_allocations": number(
        allocs("floor-sampled") + allocs("extraction-sampled") if counts else None),
    "batch_per_message_us": number(
        times["batch/tracehop/10000"] / 10_000 / 1_000 if "batch/tracehop/10000" in times else None, 2),
    "kafka_untraced_us": number(1e6 / kafka_untraced if kafka_untraced else None, 2),
    "kafka_added_us": number(1e6 / kafka_traced - 1e6 / kafka_untraced if kafka_untraced else None, 2),
}
analysis = (pathlib.Path(__file__).parent / "benchmarks-analysis.md").read_text().rstrip()
for name, value in computed.items():
    analysis = analysis.replace(f"⟨{name}⟩", f"⟨{value}⟩")
say(analysis)
print("\n".join(lines))
