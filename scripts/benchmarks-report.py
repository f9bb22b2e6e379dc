#!/usr/bin/env python3
"""Writes BENCHMARKS.md (to stdout) from the output of scripts/benchmarks: target/benchmarks/*.txt and criterion's
estimates under target/criterion. Every number in the page comes from those files; the prose around them is fixed.

Usage: scripts/benchmarks-report.py OUT_DIR CRITERION_DIR
"""
import json
import math
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


def flatness():
    """scripts/flatness's lines: per-message instructions and allocations of each `flat-` case."""
    rows = {}
    path = out / "flatness.txt"
    for line in path.read_text().splitlines()[1:] if path.exists() else []:
        case, count, allocations = line.split()
        rows[case] = (int(count), float(allocations))
    return rows


MIN_SHARE = 50


def scaling():
    """The scale bench's medians, {(broker, processes, "traced"|"untraced"): messages per second}, and its settings."""
    found, settings = {}, {}
    path = out / "scale.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if parts[2:3] == ["round"] and len(parts) > 10:
            # "scale BROKER round R processes P TRACED: RATE messages/s (N handled, S% while all were handling, ...)":
            # a run counts when its workers were all handling for at least half of its messages.
            share = float(parts[11].rstrip("%"))
            if share >= MIN_SHARE and parts[7] != "NaN":
                rounds = settings.setdefault("rounds_seen", {})
                rounds.setdefault((parts[1], int(parts[5]), parts[6].rstrip(":")), []).append(float(parts[7]))
            else:
                settings["left_out"] = settings.get("left_out", 0) + 1
        elif len(parts) == 5 and parts[0] == "scale" and parts[3] in ("traced", "untraced"):
            found[(parts[1], int(parts[2]), parts[3])] = float(parts[4])
        elif parts[:2] == ["scale", "messages"]:
            settings = dict(zip(parts[1::2], parts[2::2]))
        elif parts[:3] == ["scale", "kafka", "filled"]:
            settings["kafka_fill_rate"] = parts[6]
    # The medians of the runs that count, as the bench takes them.
    for key, rates in settings.get("rounds_seen", {}).items():
        found[key] = sorted(rates)[len(rates) // 2]
    for key in [key for key in found if key not in settings.get("rounds_seen", {})]:
        del found[key]
    return found, settings


def soak(name):
    """A soak's windows [(messages, resident bytes, messages per second)] and its other lines by first word."""
    windows, facts = [], {}
    path = out / name
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if parts[:2] == ["soak", "window"] and len(parts) == 5:
            windows.append((int(parts[2]), int(parts[3]), float(parts[4])))
        elif len(parts) > 2 and parts[0] == "soak":
            facts[parts[1]] = parts[2:]
    return windows, facts


def soak_svg(runs, path):
    """Throughput and resident memory against messages handled, for each soak in `runs` [(label, windows)], as an
    SVG drawn by hand (no plotting library is needed)."""
    width, height, left, right, top, bottom = 760, 400, 70, 70, 30, 90
    plot_w, plot_h = width - left - right, height - top - bottom
    x_max = max(messages for _, windows in runs for messages, _, _ in windows) or 1
    def nice(value):
        """The smallest of 1, 2, 2.5 and 5 times a power of ten at or above `value`: the axes' tops, so that their
        five steps are round numbers."""
        power = 10 ** math.floor(math.log10(value)) if value > 0 else 1
        return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)
    rate_max = nice(max(rate for _, windows in runs for _, _, rate in windows) * 1.05)
    memory_max = nice(max(resident / 2**20 for _, windows in runs for _, resident, _ in windows) * 1.05)
    x = lambda messages: left + plot_w * messages / x_max
    y = lambda value, top_value: top + plot_h * (1 - value / top_value)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">One traced consumer on tansu, '
           f'exporting over OTLP/HTTP</text>']
    for step in range(6):
        rate, mib, messages = rate_max * step / 5, memory_max * step / 5, x_max * step / 5
        svg.append(f'<line x1="{left}" y1="{y(rate, rate_max):.1f}" x2="{left + plot_w}" '
                   f'y2="{y(rate, rate_max):.1f}" stroke="#e8e8e8"/>')
        svg.append(f'<text x="{x(messages):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{messages:,.0f}</text>')
        svg.append(f'<text x="{left - 6}" y="{y(rate, rate_max) + 4:.1f}" text-anchor="end">{rate:,.0f}</text>')
        svg.append(f'<text x="{left + plot_w + 6}" y="{y(mib, memory_max) + 4:.1f}">{mib:.0f}</text>')
    svg.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>')
    svg.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 34}" text-anchor="middle">messages handled</text>')
    svg.append(f'<text x="16" y="{top + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {top + plot_h / 2})">messages/s (solid)</text>')
    svg.append(f'<text x="{width - 14}" y="{top + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(90 {width - 14} {top + plot_h / 2})">resident memory, MiB (dashed)</text>')
    colours = ["#1f77b4", "#d62728", "#2ca02c"]
    for index, (label, windows) in enumerate(runs):
        colour = colours[index % len(colours)]
        rates = [(messages, rate) for messages, _, rate in windows if messages > 0]
        memory = [(messages, resident / 2**20) for messages, resident, _ in windows]
        for points, top_value, dash in [(rates, rate_max, ""), (memory, memory_max, ' stroke-dasharray="6 4"')]:
            line = " ".join(f"{x(messages):.1f},{y(value, top_value):.1f}" for messages, value in points)
            svg.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        legend_y = top + plot_h + 54 + 16 * index
        svg.append(f'<line x1="{left}" y1="{legend_y - 4}" x2="{left + 30}" y2="{legend_y - 4}" stroke="{colour}" '
                   f'stroke-width="2"/>')
        svg.append(f'<text x="{left + 38}" y="{legend_y}">{label}</text>')
    svg.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(svg) + "\n")


def variant_of(case):
    """A per_message case's name split into its path and its `tracestate` variant ("", "-varied", "-mixed",
    "-none", "-level2")."""
    for variant in ("-varied", "-mixed", "-none", "-level2"):
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


def upstream_changes():
    """target/benchmarks/upstream.txt, if a run measured it: the per_message cases counted with a change upstream
    (OpenTelemetry patched in a scratch copy), as scripts/instructions prints them. A block of `#` lines names the
    changes; then each change's section, `[NAME]` followed by its lines. ([comment lines], {NAME: {case: (count,
    allocations)}}), or None when the file is missing."""
    path = out / "upstream.txt"
    if not path.exists():
        return None
    notes, sections, section = [], {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            notes.append(line.lstrip("#").strip())
        elif line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1].strip(), {})
        elif line and section is not None:
            parts = line.split()
            if parts[0] == "case" or len(parts) < 2 or not parts[1].isdigit():
                continue
            section[parts[0]] = (int(parts[1]), float(parts[2]) if len(parts) > 2 else None)
    return notes, sections


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
say("Written by `scripts/benchmarks` from the benchmarks' own output (regenerate: `scripts/benchmarks`, about sixteen")
say("minutes, and about eleven more for the last section, which `scripts/benchmarks --scale` runs alone;")
say("`scripts/benchmarks --report` rewrites this page from the last run). Do not edit by hand.")
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
say("- hostile headers: `cargo bench -p tracehop --features kafka --bench wire_limits`;")
say("- cost as the work grows: `scripts/flatness` (the `flat-` cases of `per_message`), and `cargo bench -p tracehop "
    "--features kafka,rabbitmq,otlp --bench scale -- scaling` and `-- soak` next to tansu (`scripts/tansu`) and a "
    "RabbitMQ node (`scripts/rabbitmq`); `scripts/benchmarks --scale` runs them all.")
say("")
say("The benches are built with the default features a service uses (`kafka`, `rabbitmq`, and `nats` where NATS is "
    "measured; `otlp` for the outage): with `--all-features` the `metrics` feature adds its cost to every path.")
say("")
say("The paths: **floor** is OpenTelemetry's own span with a pre-built remote parent, the same ten attributes and one "
    "link, built the cheapest way the SDK allows for the sampler's decision: described up front when sampled, left "
    "to the sampler first (`is_recording`) and given nothing when unsampled (for producers: its span and a bare "
    "`traceparent` write); **floor-parsing** is the same span with its parent built from the message's headers for "
    "each message, the plainest way by hand (one pass over the headers, the `traceparent` cut at its fixed "
    "positions and decoded by `TraceId::from_hex` and `SpanId::from_hex`, the `tracestate` parsed by "
    "`TraceState::from_str`, no propagator and no check beyond those types'): the floor paying, as every consumer "
    "must, for reading the message's context; **tracehop** is what `#[traced_consumer]` / "
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
    "parent holds what OpenTelemetry can. The `none` cases carry a `traceparent` and no `tracestate`, what most "
    "OpenTelemetry SDKs send by default.")
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

# A tracestate per message
KINDS = [("none", "-none", "no `tracestate`"), ("constant", "", "the same on every message"),
         ("varied", "-varied", "new on every message"), ("mixed", "-mixed", "the mix")]
count_of = lambda case: counts.get(case, (None, None))[0]
allocations_of = lambda case: counts.get(case, (None, None))[1]
whole = lambda value: "–" if value is None else f"{value:,}"
allocated = lambda value: "–" if value is None else f"{value:g}"
less = lambda a, b: None if a is None or b is None else a - b
say("### A `tracestate` per message")
say("")
say("What a consumer pays as the `tracestate` changes: none (a `traceparent` alone), the same value on every message "
    "(which tracehop recognises from the thread's last message), a new value on every message (a vendor member "
    "written per span, or OpenTelemetry's probability sampling writing `ot=rv:…`), and the mix. Two floors: the "
    "SDK's span handed a parent built before the run (**floor**), and the same span building its parent from each "
    "message's headers by hand (**parsing floor**, `floor-parsing-*`), which pays for the `tracestate`'s parse as "
    "any consumer does. **hand-read context** is the parsing floor less the floor: what reading a message's context "
    "by hand costs, beside tracehop's extraction and OpenTelemetry's propagators reading the headers in place.")
say("")
say("| tracestate | extraction: tracehop | upstream in place | tracehop / upstream | hand-read context | "
    "allocations: tracehop / upstream |")
say("|---|---:|---:|---:|---:|---:|")
for name, variant, _ in KINDS:
    ours, theirs = count_of(f"extraction-sampled{variant}"), count_of(f"upstream-extraction-sampled{variant}")
    by_hand = less(count_of(f"floor-parsing-sampled{variant}"), count_of(f"floor-sampled{variant}"))
    say(f"| {name} | {whole(ours)} | {whole(theirs)} | {ratio(ours, theirs)} | {whole(by_hand)} | "
        f"{allocated(allocations_of(f'extraction-sampled{variant}'))} / "
        f"{allocated(allocations_of(f'upstream-extraction-sampled{variant}'))} |")
say("")
say("| tracestate, sampling | `#[traced_consumer]` | floor | parsing floor | vs floor | vs parsing floor | "
    "allocations: tracehop / floor / parsing floor |")
say("|---|---:|---:|---:|---:|---:|---:|")
for name, variant, _ in KINDS:
    for sampling in ["sampled", "unsampled"]:
        cases = [f"consumer-{sampling}{variant}", f"floor-{sampling}{variant}", f"floor-parsing-{sampling}{variant}"]
        ours, floor, parsing = (count_of(case) for case in cases)
        say(f"| {name}, {sampling} | {whole(ours)} | {whole(floor)} | {whole(parsing)} | {ratio(ours, floor)} | "
            f"{ratio(ours, parsing)} | " + " / ".join(allocated(allocations_of(case)) for case in cases) + " |")
say("")
quotient = lambda a, b: None if a is None or not b else a / b
tracestate_targets = [
    ("extraction ≤ 0.5× upstream in place", "extraction-sampled-varied", "upstream-extraction-sampled-varied", 0.5),
    ("`#[traced_consumer]` ≤ 1.4× the floor, sampled", "consumer-sampled-varied", "floor-sampled-varied", 1.4),
    ("`#[traced_consumer]` ≤ 1.4× the parsing floor, sampled", "consumer-sampled-varied",
     "floor-parsing-sampled-varied", 1.4),
    ("`#[traced_consumer]` ≤ 1.2× the floor, unsampled", "consumer-unsampled-varied", "floor-unsampled-varied", 1.2),
    ("`#[traced_consumer]` ≤ 1.2× the parsing floor, unsampled", "consumer-unsampled-varied",
     "floor-parsing-unsampled-varied", 1.2),
]
say("The targets for a `tracestate` new on every message (instructions). The issue's own floor rose with a "
    "per-message `tracestate`, as the parsing floor does; the floor with a pre-built parent does not, so the "
    "consumer is judged against both.")
say("")
say("| target, `tracestate` new on every message | measured | |")
say("|---|---:|---|")
for label, case, against, limit in tracestate_targets:
    measured = quotient(count_of(case), count_of(against))
    # Three decimals where two would show the limit itself, so "1.20" never reads as not met.
    digits = 3 if measured is not None and f"{measured:.2f}" == f"{limit:.2f}" else 2
    shown = "–" if measured is None else f"{measured:.{digits}f}"
    say(f"| {label} (`{case}` / `{against}`) | {shown} | {verdict(measured, limit)} |")
previous_path = out / "instructions-previous.txt"
if previous_path.exists():
    previous_lines = previous_path.read_text().splitlines()
    previous_commit = previous_lines[0].removeprefix("commit ").strip() if previous_lines else "?"
    previous = {parts[0]: int(parts[1]) for parts in (line.split() for line in previous_lines[1:])
                if len(parts) >= 2 and parts[1].isdigit()}
    # tracehop's own paths with the constant `tracestate`; the floors, glue and peers are not tracehop's to worsen.
    constant_rows = [case for case in counts if case in previous
                     and not case.startswith(("floor", "producer-floor", "glue", "tracing", "upstream"))
                     and not case.endswith(("-varied", "-mixed", "-none", "-level2"))]
    # Rebuilding moves a count by a few dozen instructions (code layout): worse means by more than that.
    worse = [case for case in constant_rows if counts[case][0] - previous[case] > max(30, previous[case] // 100)]
    listed = ", ".join(f"`{case}` {previous[case]:,} → {counts[case][0]:,}" for case in worse)
    say(f"| no row with a constant `tracestate` worse than at {previous_commit} ({len(constant_rows)} rows, "
        f"by more than 1% or 30 instructions) | {len(worse)} worse{': ' + listed if worse else ''} | "
        f"{'**met**' if not worse else '**not met**'} |")
else:
    say("| no row with a constant `tracestate` worse | | not measured: no earlier run's counts "
        "(`target/benchmarks/instructions-previous.txt`) |")
say("")
changes = upstream_changes()
VARIED_ROWS = ["extraction-sampled-varied", "consumer-sampled-varied", "consumer-unsampled-varied"]
say("#### With changes upstream")
say("")
if changes is None:
    say("The upstream figures were not measured in this run (no `target/benchmarks/upstream.txt`).")
else:
    notes, sections = changes
    say("The same cases counted with OpenTelemetry patched in a scratch copy (never in the project), from "
        "`target/benchmarks/upstream.txt`; the changes add up in the order listed, and each one's saving is against "
        "the unchanged tree counted in the same run (`baseline`); and its ratios take the denominators from the same section when it counts them, the "
        "tables above otherwise.")
    if any(notes):
        say("")
        for note in notes:
            if note:
                say(f"- {note}")
    say("")
    say("| change | " + " | ".join(f"`{case}` (saving)" for case in VARIED_ROWS) +
        " | extraction / upstream | sampled vs floor / parsing floor | unsampled vs floor / parsing floor |")
    say("|---|" + "---:|" * (len(VARIED_ROWS) + 3))
    baseline = sections.get("baseline", {})
    for change, measured in sections.items():
        with_change = lambda case: measured.get(case, (None, None))[0]
        denominator = lambda case: with_change(case) if with_change(case) is not None else count_of(case)
        cells = []
        for case in VARIED_ROWS:
            figure_with = with_change(case)
            unchanged = baseline.get(case, (None, None))[0] if baseline else count_of(case)
            saving = None if change == "baseline" else less(unchanged, figure_with)
            cells.append("–" if figure_with is None else f"{figure_with:,} ({'–' if saving is None else f'{saving:,}'})")
        ratios = [ratio(with_change("extraction-sampled-varied"), denominator("upstream-extraction-sampled-varied"))]
        for sampling in ["sampled", "unsampled"]:
            ours = with_change(f"consumer-{sampling}-varied")
            ratios.append(f"{ratio(ours, denominator(f'floor-{sampling}-varied'))} / "
                          f"{ratio(ours, denominator(f'floor-parsing-{sampling}-varied'))}")
        say(f"| {change} | " + " | ".join(cells + ratios) + " |")
say("")

# Consumer matrix
say("## One consumed message: medians by sampler and span processor")
say("")
MATRIX_ROWS = [("", ["simple", "batch"]), ("/tracestate-varied", ["simple"]), ("/tracestate-mixed", ["simple"]),
               ("/tracestate-none", ["simple"])]
say("The `varied`, `mixed` and `none` rows (simple processor only) repeat the constant-`tracestate` cells with each "
    "message's own `tracestate`, with the mix and with no `tracestate`. **floor-parsing** is the floor building its "
    "parent from each message's headers. **vs glue** is against the guides' glue (headers copied to a map, "
    "everything built before sampling), **vs careful glue** against `glue-after-sampling`.")
say("")
say("| sampler / processor / tracestate | untraced | extraction | floor | floor-parsing | tracehop | glue | "
    "glue-after-sampling | tracing | tracehop vs floor | vs floor-parsing | vs glue | vs careful glue | vs tracing |")
say("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for suffix, processors in MATRIX_ROWS:
    for sampler in ["always-on", "unsampled-parent", "ratio-1%"]:
        for processor in processors:
            group = f"consumer/{sampler}/{processor}{suffix}"
            get = lambda name: times.get(f"{group}/{name}")
            cells = [ns(get(name)) for name in ["untraced", "extraction", "floor", "floor-parsing", "tracehop",
                                                "glue", "glue-after-sampling", "tracing"]]
            tracestate = suffix.removeprefix("/tracestate-") or "constant"
            say(f"| {sampler} / {processor} / {tracestate} | " + " | ".join(cells) +
                f" | {ratio(get('tracehop'), get('floor'))} | {ratio(get('tracehop'), get('floor-parsing'))} | "
                f"{ratio(get('tracehop'), get('glue'))} | {ratio(get('tracehop'), get('glue-after-sampling'))} | "
                f"{ratio(get('tracehop'), get('tracing'))} |")
say("")
say("The same cells on NATS: `#[traced_consumer]` on each message's core NATS twin (the same trace, `tracestate` and "
    "headers, its key as `Nats-Msg-Id`), beside the Kafka message of the table above.")
say("")
say("| sampler / processor / tracestate | tracehop, Kafka | tracehop, NATS | NATS vs Kafka |")
say("|---|---:|---:|---:|")
for suffix, processors in MATRIX_ROWS:
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
    "each message's own `tracestate` (`varied`), the mix (`mixed`) and no `tracestate` (`none`).")
say("")
say("| broker, headers, tracestate | tracehop | upstream, headers copied to a map | upstream, headers read in place | "
    "tracehop vs in place |")
say("|---|---:|---:|---:|---:|")
for broker in ["kafka", "amqp", "nats"]:
    for count in [0, 3, 20]:
        for suffix in (["", "-tracestate-varied", "-tracestate-mixed", "-tracestate-none"] if broker == "kafka"
                       else [""]):
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

# Cost as the work grows
scale_rates, scale_settings = scaling()
flat = flatness()
soaks = [("defaults, flat out", soak("soak.txt")),
         ("queue 65,536, flat out", soak("soak-large-queue.txt")),
         ("defaults, 50,000/s", soak("soak-paced.txt"))]
soaks = [(label, found) for label, found in soaks if found[0]]
FLAT_BOUND = 1.25
SOAK_WARM_UP = 200_000
SOAK_RSS_BOUND_MIB = 16
say("## Cost as the work grows")
say("")
say("Measured by `scripts/benchmarks --scale`, which runs only these parts (the sections above come from the last "
    "full run). On two shared cores the producer, the broker and every consumer process take turns on the same CPUs, "
    "so the scaling rows show how far two cores let consumption spread over processes, not how far tracehop would.")
say("")
run = read_pairs("scale-run.txt")
if run:
    say(f"Run {run.get('date', '?')}, commit {run.get('commit', '?')}: flatness {run.get('flatness', '?')} s, "
        f"consumer processes {run.get('scaling', '?')} s, soaks {run.get('soak', '?')} s; load average at the end "
        f"{run.get('load', '?')} (over 1, 5 and 15 minutes; the benchmark's own processes count in it).")
    say("")
say("### Consumer processes")
say("")
say(f"`cargo bench -p tracehop --features kafka,rabbitmq,otlp --bench scale -- scaling`: one to six consumer "
    f"processes in one consumer group on a Kafka topic of {scale_settings.get('partitions', '?')} partitions on tansu "
    f"(tansu 0.6 as `scripts/test` installs it: unoptimised, opt-level 0, memory storage), and one to three competing for one RabbitMQ queue on a local node (prefetch "
    f"{scale_settings.get('prefetch', '?')}, every delivery acknowledged). {int(scale_settings.get('messages', 0)):,} "
    f"messages on Kafka (the topic filled once, each run reading it in a group of its own) and "
    f"{int(scale_settings.get('queued', 0)):,} on RabbitMQ (the queue filled again before each run), each carrying its own producer's `traceparent`; traced processes run `#[traced_consumer]` under "
    f"always-on sampling with the batch span processor (exporter discarding), untraced ones the same body bare. "
    f"A run's rate counts the messages handled while every process was handling (joining the group and the last "
    f"process's tail left out); medians of {scale_settings.get('rounds', '?')} rounds alternating untraced and traced, "
    f"counting only the runs whose processes were all handling for at least {MIN_SHARE}% of the messages (a process "
    f"sometimes starts up to a second after the others, which leaves too short a window to measure; "
    f"{scale_settings.get('left_out', 0)} runs of this table were left out).")
say("")
say("| broker | processes | untraced messages/s (rounds' range) | traced messages/s (range) | traced / untraced | "
    "untraced vs one process | traced vs one process |")
say("|---|---:|---:|---:|---:|---:|---:|")
for broker, label in [("kafka", "Kafka (tansu)"), ("rabbitmq", "RabbitMQ")]:
    for processes in sorted({count for (name, count, _) in scale_rates if name == broker}) or [1]:
        untraced = scale_rates.get((broker, processes, "untraced"))
        traced = scale_rates.get((broker, processes, "traced"))
        if untraced is None:
            say(f"| {label} | {processes} | not measured | | | | |")
            continue
        one_untraced = scale_rates.get((broker, 1, "untraced"))
        one_traced = scale_rates.get((broker, 1, "traced"))
        seen = scale_settings.get("rounds_seen", {})
        spread = lambda kind: (lambda rates: f" ({min(rates):,.0f}–{max(rates):,.0f})" if rates else "")(
            seen.get((broker, processes, kind), []))
        say(f"| {label} | {processes} | {untraced:,.0f}{spread('untraced')} | {traced:,.0f}{spread('traced')} | "
            f"{traced / untraced:.2f} | "
            f"{ratio(untraced, one_untraced)} | {ratio(traced, one_traced)} |")
say("")
kafka_one = scale_rates.get(("kafka", 1, "untraced"))
kafka_one_traced = scale_rates.get(("kafka", 1, "traced"))
kafka_counts = sorted({count for (name, count, _) in scale_rates if name == "kafka"})
rabbit_best = max((rate for (broker, _, _), rate in scale_rates.items() if broker == "rabbitmq"), default=None)
if kafka_one and kafka_one_traced and len(kafka_counts) > 1:
    scaled = "; ".join(f"{count}: {scale_rates[('kafka', count, 'traced')] / kafka_one_traced:.1f}× traced, "
                       f"{scale_rates[('kafka', count, 'untraced')] / kafka_one:.1f}× untraced"
                       for count in kafka_counts[1:])
    say(f"On Kafka one process handles about {kafka_one:,.0f} messages a second untraced and "
        f"{kafka_one_traced:,.0f} traced: a process's handling thread waits on its fetches from the broker, with "
        f"time to spare for the spans (tracing costs a few microseconds a message, as the tables above show), so "
        f"traced and untraced run at about one rate and each process adds its own fetches. Against one process: "
        f"{scaled}.")
    most = kafka_counts[-1]
    at_most = scale_rates[("kafka", most, "traced")] / scale_rates[("kafka", most, "untraced")]
    if at_most < 0.9:
        say(f"With {most} processes the two cores (shared with tansu and the batch processors' threads) are busy, "
            f"and the traced rate falls to {at_most:.2f} of the untraced: there the CPU the spans take shows in the "
            f"rate, which is how far two cores let tracing scale for free here. With fewer processes the cores "
            f"had time to spare and tracing did not change the rate.")
    else:
        say(f"Up to {most} processes the two cores had time to spare: traced runs kept {at_most:.2f} of the "
            f"untraced rate.")
    say("")
if rabbit_best:
    rabbit_counts = sorted({count for (name, count, _) in scale_rates if name == "rabbitmq"})
    ratios = ", ".join(f"{scale_rates[('rabbitmq', count, 'traced')] / scale_rates[('rabbitmq', count, 'untraced')]:.2f}"
                       f" with {count}" for count in rabbit_counts)
    say(f"On RabbitMQ the node is the limit (the best median {rabbit_best:,.0f} messages a second here): it "
        f"acknowledges every delivery and shares the two cores with the consumers, so a second process adds what "
        f"the node can still serve and a third adds nothing. Traced / untraced: {ratios}: once the node and the "
        f"consumers fill the two cores, the CPU the spans take comes out of what the node can serve.")
    say("")
say("### Flat as the work grows")
say("")
say("`scripts/flatness`: the `flat-` cases of `per_message`, per message (instructions by callgrind, allocations by a "
    "counting allocator), sampled. A batch is one span over N messages of N traces, linked to each up to "
    "`max_links_per_span` (128); the header cases carry N application headers besides `traceparent` and "
    "`tracestate`; the `tracestate` cases K members of 15 characters (32 make 511 characters, W3C's limit), the "
    "same on every message or (`varied`) the first member new on every message; the hop cases are hop 1 and hop 10 "
    "of a chain where each hop consumes and, inside its span, publishes the next message. **vs smallest** is "
    "against the first row of its dimension.")
say("")
say("| case | instructions | allocations | vs smallest |")
say("|---|---:|---:|---:|")
smallest = {}
for case, (count, allocations) in flat.items():
    dimension = case.split("-")[1] + ("-varied" if case.endswith("-varied") else "")
    first = smallest.setdefault(dimension, count)
    say(f"| {case} | {count:,} | {allocations:g} | {ratio(count, first)} |")
say("")
flat_value = lambda case: flat.get(case, (None, None))[0]
flat_targets = [
    ("a batch's cost per message, 10,000 messages vs 1", "flat-batch-10000", "flat-batch-1"),
    ("100 other headers vs none", "flat-headers-100", "flat-headers-0"),
    ("a 32-member `tracestate` vs one member (the same on every message)", "flat-tracestate-32", "flat-tracestate-1"),
    ("a 32-member `tracestate` vs one member (new every message)", "flat-tracestate-32-varied",
     "flat-tracestate-1-varied"),
    ("hop 10 of a chain vs hop 1", "flat-hop-10", "flat-hop-1"),
]
say(f"Flat means the largest case's instructions per message within {FLAT_BOUND}× the smallest's:")
say("")
say("| dimension | largest / smallest | |")
say("|---|---:|---|")
for name, large, small in flat_targets:
    large, small = flat_value(large), flat_value(small)
    measured = large / small if large is not None and small else None
    shown = "–" if measured is None else f"{measured:.2f}"
    say(f"| {name} | {shown} | {verdict(measured, FLAT_BOUND)} |")
say("")
figure = lambda value, digits=0: "–" if value is None else f"{value:,.{digits}f}"
per_header = (flat_value("flat-headers-100") - flat_value("flat-headers-0")) / 100 \
    if flat_value("flat-headers-100") is not None and flat_value("flat-headers-0") is not None else None
member_pair = [flat.get(case) for case in ("flat-tracestate-32", "flat-tracestate-1")]
per_member = [(a - b) / 31 for a, b in zip(*member_pair)] if all(member_pair) else None
varied_pair = [flat.get(case) for case in ("flat-tracestate-32-varied", "flat-tracestate-1-varied")]
per_member_varied = [(a - b) / 31 for a, b in zip(*varied_pair)] if all(varied_pair) else None
say("Where the cost grows (`callgrind_annotate --inclusive=yes` on `per_message --case flat-headers-100` and "
    "`--case flat-tracestate-32` against their smallest cases):")
header_allocations = [flat.get(case, (None, None))[1] for case in ("flat-headers-100", "flat-headers-0")]
more_allocations = None if None in header_allocations else header_allocations[0] - header_allocations[1]
say(f"- *Headers*: about {figure(per_header)} instructions per other header, and {figure(more_allocations, 1)} "
    "allocations more with 100 of them. Each "
    "message's headers are read once, in one pass (`w3c::TraceHeaders::scan`, through "
    "`brokers::kafka::carrier::trace_headers_of`), which has to see every header to find the trace headers "
    "wherever they are, a repeated `traceparent`, and the lineage headers of a retry. Per header about 27 "
    "instructions are librdkafka's `rd_kafka_header_get_all`; the rest find the end of the name (`strlen`) and "
    "tell it from the trace and lineage names by its first byte and length, as bytes: a name that is not one of "
    "them is not checked for UTF-8 or read further. The pass stays linear in the headers, as any reader's must.")
say(f"- *`tracestate` members*: about {figure(per_member and per_member[0])} instructions and "
    f"{figure(per_member and per_member[1])} allocations per member per message when the value repeats "
    f"({figure(per_member_varied and per_member_varied[0])} and {figure(per_member_varied and per_member_varied[1], 1)} "
    "when it changes every message, which adds its parse). OpenTelemetry's `TraceState` is a `VecDeque` of owned "
    "key and value strings, and a consumer span copies it whole five times: the SDK's parent-based sampler "
    "returns a copy (`Sampler::should_sample`), the context holding the span another "
    "(`SynchronizedSpan::from`), the exported span data a third (`Span::ensure_ended_and_exported`); tracehop's "
    "link to the producer copies the parent's span context (`span::describer::describe`), and its `tracestate` "
    "memory hands out a copy of the value it parsed before (`w3c::tracestate::held`). With 32 members those copies "
    "(`VecDeque::clone`) and their frees are about nine tenths of the message's instructions. The three SDK "
    "copies are in every OpenTelemetry consumer; an `Arc`-shared `TraceState` upstream would make all five a "
    "reference count (`arc-tracestate` under \"With changes upstream\"). The link's copy is kept on purpose: a link "
    "without the producer's `tracestate` would save it, but export less than the producer sent.")
say("- *Batches* cost less per message as they grow: a batch span is one span, with a link per message up to 128 "
    "and past that a `traceparent` check and a count per message. *Hops*: the tenth hop of a chain costs what the "
    "first does; nothing accumulates on the wire from hop to hop.")
say("")
say("### A million messages")
say("")
say("`cargo bench -p tracehop --features kafka,rabbitmq,otlp --bench scale -- soak` on tansu: the messages are "
    "published first (by a process of their own), then one consumer process handles them all with "
    "`#[traced_consumer]`, its tracer provider made by `tracehop::Telemetry` (always-on sampling, the batch span "
    "processor with the SDK's defaults, OTLP over HTTP/protobuf) exporting to a collector on loopback in the same "
    "process, which answers every export with an empty success and counts the spans in it. Resident memory is "
    "`/proc/self/statm`'s, sampled every 50,000 messages; the rate is over the 50,000 messages before it.")
say("")
if soaks:
    soak_svg([(label, windows) for label, (windows, _) in soaks],
             pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "soak.svg")
    say("It runs three times: as fast as the consumer goes, with the batch processor's defaults (queue 2,048, "
        "batches of 512: *defaults, flat out*) and with a queue and batches sized for the rate "
        "(`OTEL_BSP_MAX_QUEUE_SIZE=65536 OTEL_BSP_MAX_EXPORT_BATCH_SIZE=8192`, which the SDK reads: *queue 65,536, "
        "flat out*); and with the defaults at a steady 50,000 messages a second (`--pace 50000`: *defaults, "
        "50,000/s*), as a service whose handlers do some work runs. Resident memory includes librdkafka's queue of prefetched messages (up "
        "to `queued.max.messages.kbytes`, 64 MiB by default), which fills further when the consumer is slower than "
        "the broker, and the collector's decoding in the same process.")
    say("")
    say("![Throughput and resident memory against messages handled](benchmarks/soak.svg)")
    say("")
    say("| messages handled | " + " | ".join(f"{label}: resident | messages/s" for label, _ in soaks) + " |")
    say("|---:|" + "---:|---:|" * len(soaks))
    rows = {}
    for index, (_, (windows, _)) in enumerate(soaks):
        for messages, resident, rate in windows:
            rows.setdefault(messages, [("", "")] * len(soaks))[index] = (
                f"{resident / 2**20:.1f} MiB", "–" if messages == 0 else f"{rate:,.0f}")
    for messages, cells in sorted(rows.items()):
        say(f"| {messages:,} | " + " | ".join(f"{memory} | {rate}" for memory, rate in cells) + " |")
    say("")
    say("| measure | " + " | ".join(label for label, _ in soaks) + " |")
    say("|---|" + "---:|" * len(soaks))
    summary = {}
    for label, (windows, facts) in soaks:
        warm = [resident for messages, resident, _ in windows if messages >= SOAK_WARM_UP]
        growth = (max(warm) - warm[0]) / 2**20 if warm else None
        made, received, dropped = (int(value) for value in facts.get("spans", ["0", "0", "0"]))
        handled = facts.get("handled")
        rates_after = [rate for messages, _, rate in windows if messages >= SOAK_WARM_UP]
        summary.setdefault("handled", []).append(
            f"{int(handled[0]):,} in {handled[2]} s ({int(handled[4].strip('(')):,}/s)" if handled else "–")
        summary.setdefault("resident", []).append(
            f"{windows[0][1] / 2**20:.1f} → {max(resident for _, resident, _ in windows) / 2**20:.1f} MiB")
        summary.setdefault("growth", []).append(
            "–" if growth is None else f"{growth:.1f} MiB, {verdict(growth, SOAK_RSS_BOUND_MIB)}")
        summary.setdefault("rates", []).append(
            f"{min(rates_after):,.0f} / {max(rates_after):,.0f}" if rates_after else "–")
        summary.setdefault("spans", []).append(f"{made:,} / {received:,} / **{dropped:,}** "
                                               f"({100 * dropped / made if made else 0:.1f}%)")
        summary.setdefault("exports", []).append(f"{int(facts.get('exports', ['0'])[0]):,}")
        summary.setdefault("export_rate", []).append(
            f"{received / float(handled[2]):,.0f}" if handled and float(handled[2]) else "–")
    for key, name in [("handled", "messages handled"),
                      ("resident", "resident memory, at the start → highest"),
                      ("growth", f"growth after {SOAK_WARM_UP:,} messages (highest − at {SOAK_WARM_UP:,}), bound "
                                 f"{SOAK_RSS_BOUND_MIB} MiB"),
                      ("rates", f"messages/s after {SOAK_WARM_UP:,}, slowest / fastest window"),
                      ("spans", "spans ended / received by the collector / dropped"),
                      ("exports", "exports (HTTP requests)"),
                      ("export_rate", "spans received per second of handling")]:
        say(f"| {name} | " + " | ".join(summary[key]) + " |")
    say("")
    say("The batch processor never blocks a handler: when its queue is full it drops the span, and the SDK says so "
        "only in a log record at the first drop and one with the count at shutdown (`BatchSpanProcessor."
        "SpanDroppingStarted`, `BatchSpanProcessor.SpansDropped`, compiled in with the SDK's `internal-logs` "
        "feature); the drops above are the spans ended less the spans the collector received. Flat out, one "
        "consumer makes spans faster than one OTLP/HTTP exporter sends them here (one export at a time, the "
        "collector decoding on the same two cores), so the processor drops whatever its queue's size; a bigger "
        "queue holds more spans in memory and fewer, bigger exports carry a little more. At a pace the exporter "
        "keeps up with, nothing is dropped and memory stays flat.")
else:
    say("Not measured.")
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
    **{f"consumer_vs_parsing_floor_{sampling}{variant.replace('-', '_')}":
       times_of(instr(f"consumer-{sampling}{variant}"), instr(f"floor-parsing-{sampling}{variant}"))
       for variant in ["", "-varied", "-mixed", "-none"] for sampling in ["sampled", "unsampled"]},
    **{f"hand_read_context{variant.replace('-', '_')}":
       number(minus(instr(f"floor-parsing-sampled{variant}"), instr(f"floor-sampled{variant}")))
       for variant in ["", "-varied", "-none"]},
    "extraction_vs_upstream_none": times_of(instr("extraction-sampled-none"), instr("upstream-extraction-sampled-none")),
    "extraction_none": number(instr("extraction-sampled-none")),
    "floor_sampled_none": number(instr("floor-sampled-none")),
    "floor_unsampled_none": number(instr("floor-unsampled-none")),
    "floor_tracestate_copies": number(minus(instr("floor-sampled"), instr("floor-sampled-none"))),
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
