"""A NATS peer that is not tracehop: nats-py with OpenTelemetry Python's own W3C TraceContext propagator.

Usage (with the interpreter scripts/python-nats-venv prints, and NATS_URL set, as scripts/nats does):
  nats_peer.py publish SUBJECT  publishes one message to core NATS on SUBJECT from a PRODUCER span, its
                                context in the headers, and prints {"trace_id": ..., "span_id": ...,
                                "trace_flags": ...} of that span.
  nats_peer.py receive SUBJECT  subscribes to SUBJECT, prints `ready` once the server has the subscription, waits
                                up to 20 s for one message and prints {"trace_id": ..., "span_id": ...,
                                "trace_flags": ..., "headers": {name: value}} of the remote parent the propagator
                                extracts from its headers (the three null when it finds none).
Ids and flags are lowercase hex (32, 16 and 2 digits), one JSON line on stdout; errors go to stderr, exit status 1.

The point is a second implementation of the wire format: a Rust test publishes with tracehop and checks what this
peer extracts, or has this peer publish and checks that tracehop continues its trace.
"""

import asyncio
import json
import os
import sys

import nats
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

RECEIVE_TIMEOUT_S = 20


async def connect():
    url = os.environ["NATS_URL"]
    errors = []

    async def remember(error):
        errors.append(error)

    # One attempt, no reconnect: a test wants a missing server reported at once. nats-py 2.16 reads
    # max_reconnect_attempts=0 as "retry the first connect for ever", so 1, after a short wait.
    try:
        return await nats.connect(
            url,
            connect_timeout=5,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            error_cb=remember,
        )
    except nats.errors.NoServersError:
        sys.exit(f"nats_peer: cannot connect to {url}: {errors[-1] if errors else 'no reason given'}")


def ids(span_context):
    if not span_context.is_valid:
        return {"trace_id": None, "span_id": None, "trace_flags": None}
    return {
        "trace_id": trace.format_trace_id(span_context.trace_id),
        "span_id": trace.format_span_id(span_context.span_id),
        # OpenTelemetry Python sets W3C Level 2's random flag (0x02) with its random ids: "03" when sampled.
        "trace_flags": f"{span_context.trace_flags:02x}",
    }


async def publish(subject):
    # The SDK's provider, not the API's no-op one, so the span has real random ids and is sampled.
    tracer = TracerProvider(id_generator=RandomIdGenerator()).get_tracer("tracehop-interop")
    span = tracer.start_span(f"send {subject}", kind=trace.SpanKind.PRODUCER)
    headers = {}
    TraceContextTextMapPropagator().inject(headers, context=trace.set_span_in_context(span))
    connection = await connect()
    try:
        await connection.publish(subject, b"from the python peer", headers=headers)
        # Published means the server has it: core NATS drops what a client still buffers when it exits.
        await connection.flush()
    finally:
        span.end()
        await connection.close()
    print(json.dumps(ids(span.get_span_context())), flush=True)


async def receive(subject):
    connection = await connect()
    try:
        subscription = await connection.subscribe(subject)
        # The server has the subscription once the flush's PONG is back: a message published after `ready` reaches us.
        await connection.flush()
        print("ready", flush=True)
        try:
            message = await subscription.next_msg(timeout=RECEIVE_TIMEOUT_S)
        except asyncio.TimeoutError:
            sys.exit(f"nats_peer: no message on {subject} within {RECEIVE_TIMEOUT_S} s")
    finally:
        await connection.close()
    headers = dict(message.headers or {})
    parent = trace.get_current_span(TraceContextTextMapPropagator().extract(headers)).get_span_context()
    print(json.dumps({**ids(parent), "headers": headers}), flush=True)


def main():
    modes = {"publish": publish, "receive": receive}
    if len(sys.argv) != 3 or sys.argv[1] not in modes:
        sys.exit("usage: nats_peer.py publish|receive SUBJECT")
    if not os.environ.get("NATS_URL"):
        sys.exit("nats_peer: NATS_URL is not set (scripts/nats sets it)")
    asyncio.run(modes[sys.argv[1]](sys.argv[2]))


if __name__ == "__main__":
    main()
