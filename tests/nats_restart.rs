//! A NATS server restarted between the publishes and the handlings: the messages a file-storage stream kept carry
//! their producers' contexts across the restart. It stops and starts the server `scripts/nats` starts, through the
//! control script it names in `TRACEHOP_NATSCTL`, so it is a file of its own: no other test runs while the server
//! is down.

use std::collections::HashSet;
use std::process::Command;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::{self, Message};
use async_nats::HeaderMap;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry::Value;
use suite::nats::{connect, id_of, next_delivery, ScratchStream};
use suite::{attribute, spans_to};
use tracehop::clients::nats::TracedJetStream;
use tracehop::nats::MESSAGE_ID_HEADER;

/// Runs the control script of the server with `command` (`stop`, `start`).
fn natsctl(command: &str) {
    let script = std::env::var("TRACEHOP_NATSCTL")
        .expect("TRACEHOP_NATSCTL is not set: this test restarts the server ./scripts/nats starts, through its script");
    let status = Command::new(&script).arg(command).status().unwrap_or_else(|error| panic!("{script}: {error}"));
    assert!(status.success(), "`{script} {command}` failed: {status}");
}

/// The server, stopped until [`Stopped::start`]; started again if the test fails first, so that the test files
/// after this one still have it.
struct Stopped {
    started: bool,
}

impl Stopped {
    fn stop() -> Self {
        natsctl("stop");
        Stopped { started: false }
    }

    fn start(mut self) {
        natsctl("start");
        self.started = true;
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.started {
            natsctl("start");
        }
    }
}

#[tracehop::traced_consumer(group = "inventory")]
async fn restock(order: &Message) -> (TraceId, SpanId) {
    let _ = order;
    let context = opentelemetry::Context::current();
    let span = context.span();
    (span.span_context().trace_id(), span.span_context().span_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn messages_kept_across_a_server_restart_continue_their_producers_traces() {
    let ids = ["kept-1", "kept-2", "kept-3"];
    let context = jetstream::new(connect().await);
    let stream = ScratchStream::create(&context, "restart", StorageType::File).await;
    let publisher = TracedJetStream::new(context.clone());
    for id in ids {
        let mut headers = HeaderMap::new();
        headers.insert(MESSAGE_ID_HEADER, id);
        publisher.publish_with_headers(stream.name().to_owned(), headers, "{}".into()).await.expect("stored");
    }

    Stopped::stop().start();

    // A client of the server as it is now; the first one reconnects on its own, in its own time.
    let reconnected = jetstream::new(connect().await);
    let mut kept = reconnected.get_stream(stream.name()).await.expect("the stream survived the restart");
    assert_eq!(kept.info().await.expect("the stream's state").state.messages, 3, "the file store kept them");
    let config = pull::Config { durable_name: Some("inventory".to_owned()), ..Default::default() };
    let consumer = kept.create_consumer(config).await.expect("a consumer");
    let mut handled = Vec::new();
    for _ in ids {
        let order = next_delivery(&consumer).await;
        handled.push((id_of(&order), restock(&order).await));
        order.double_ack().await.expect("acknowledged");
    }

    let spans = spans_to(stream.name());
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let mut traces = HashSet::new();
    for (sequence, (id, (trace_id, span_id))) in (1_i64..).zip(&handled) {
        assert_eq!(id, ids[sequence as usize - 1], "in the order published");
        let producer = spans
            .iter()
            .find(|span| {
                span.span_kind == SpanKind::Producer
                    && attribute(span, "messaging.message.id") == Some(Value::from(id.clone()))
            })
            .expect("its producer span");
        let consumer = suite::finished_span(*span_id);
        assert_eq!(consumer.span_context.trace_id(), *trace_id);
        suite::assert_child_of(&consumer, producer);
        assert_eq!(attribute(&consumer, "tracehop.nats.stream_sequence"), Some(Value::I64(sequence)));
        assert_eq!(attribute(&consumer, "tracehop.message.delivery_count"), Some(Value::I64(1)));
        traces.insert(*trace_id);
    }
    assert_eq!(traces.len(), 3, "each message its own producer's trace");
}
