//! Traced NATS clients (`tracehop::clients::nats`) against the real NATS server `scripts/nats` starts: a core
//! publish carrying its context beside the user's headers, a request's span lasting until its reply or failing
//! without one, a JetStream publish's span lasting until the stream's acknowledgement and recording it, and the
//! consumer adapter over a `Subscriber` and over a JetStream consumer's `messages()`. That wrapper and macro spans
//! are the same is shown on every broker by `tests/shared_behaviour.rs`.

use std::pin::pin;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::stream::StorageType;
use async_nats::HeaderMap;
use futures_util::StreamExt;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use suite::nats::{connect, id_of, processed, ScratchStream};
use suite::{attribute, attributes, expected, spans_to};
use tracehop::clients::nats::{TracedClient, TracedJetStream, DUPLICATE_ATTRIBUTE};
use tracehop::clients::ConsumerTracing;
use tracehop::nats::MESSAGE_ID_HEADER;
use tracehop::Handler;

const CLIENT_PUBLISH: &str = "tracehop::clients::nats::TracedClient::publish";
const JETSTREAM_PUBLISH: &str = "tracehop::clients::nats::TracedJetStream::publish";

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

/// Headers naming the message `id`.
fn with_id(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MESSAGE_ID_HEADER, id);
    headers
}

/// What every PRODUCER span of a traced client says of a publish to `subject`, beside `more`.
fn sent(function: &str, subject: &str, more: &[(&'static str, Value)]) -> Vec<(String, Value)> {
    let mut want = vec![
        ("code.function.name", text(function)),
        ("messaging.system", text("nats")),
        ("messaging.operation.type", text("send")),
        ("messaging.operation.name", text("send")),
        ("messaging.destination.name", text(subject)),
    ];
    want.extend_from_slice(more);
    expected(&want)
}

/// The `traceparent` tracehop writes for `span`.
fn traceparent_of(span: &SpanData) -> String {
    format!("00-{}-{}-01", span.span_context.trace_id(), span.span_context.span_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_traced_publish_carries_its_context_beside_the_users_headers_and_replaces_a_stale_one() {
    let client = connect().await;
    let subject = suite::unique_topic("client-publish");
    let mut subscriber = client.subscribe(subject.clone()).await.expect("subscribed");
    client.flush().await.expect("flushed");
    let mut headers = with_id("m-1");
    headers.insert("Tenant", "acme");
    // Headers copied from a message consumed earlier: their context is not this publish's.
    headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    headers.append("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");

    TracedClient::new(client.clone())
        .publish_with_headers(subject.clone(), headers, "{\"id\":1}".into())
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(10), subscriber.next()).await.unwrap().unwrap();

    let producer = suite::the_span(&spans_to(&subject), SpanKind::Producer);
    assert_eq!(producer.name, format!("send {subject}"));
    assert_eq!(producer.parent_span_id, SpanId::INVALID);
    assert_eq!(producer.status, Status::Unset);
    assert_eq!(
        attributes(&producer),
        sent(
            CLIENT_PUBLISH,
            &subject,
            &[("messaging.message.id", text("m-1")), ("messaging.message.body.size", Value::I64(8))]
        )
    );
    let headers = message.headers.as_ref().expect("headers");
    let values = |name: &str| headers.get_all(name).map(|value| value.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(values("traceparent"), [traceparent_of(&producer)], "one value, the publish's own");
    assert_eq!(values("Tenant"), ["acme"], "the user's header");
    assert_eq!(values(MESSAGE_ID_HEADER), ["m-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_request_s_span_lasts_until_its_reply() {
    let client = connect().await;
    let subject = suite::unique_topic("client-slow-reply");
    let mut requests = client.subscribe(subject.clone()).await.expect("subscribed");
    client.flush().await.expect("flushed");
    let responder = {
        let client = client.clone();
        tokio::spawn(async move {
            let request = requests.next().await.expect("a request");
            tokio::time::sleep(Duration::from_millis(200)).await;
            client.publish(request.reply.expect("a reply subject"), "ok".into()).await.expect("answered");
        })
    };

    let reply = TracedClient::new(client.clone()).request(subject.clone(), "?".into()).await.expect("answered");
    responder.await.expect("the responder ran");

    assert_eq!(reply.payload, "ok");
    let request = suite::the_span(&spans_to(&subject), SpanKind::Producer);
    let lasted = request.end_time.duration_since(request.start_time).expect("ends after it starts");
    assert!(lasted >= Duration::from_millis(200), "{lasted:?}");
    assert_eq!(request.status, Status::Unset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_request_nobody_answers_marks_its_span_failed() {
    let client = connect().await;
    let subject = suite::unique_topic("client-no-responders");

    let error = TracedClient::new(client).request(subject.clone(), "?".into()).await.expect_err("no responders");

    assert_eq!(error.kind(), async_nats::client::RequestErrorKind::NoResponders);
    let request = suite::the_span(&spans_to(&subject), SpanKind::Producer);
    assert_eq!(request.status, Status::error(error.to_string()));
    let error_type = "async_nats::error::Error<async_nats::client::RequestErrorKind>";
    assert_eq!(attribute(&request, "error.type"), Some(text(error_type)));
    let events: Vec<_> =
        request.events.events.iter().map(|event| (event.name.clone(), event.attributes.clone())).collect();
    assert_eq!(
        events,
        vec![(
            "exception".into(),
            vec![KeyValue::new("exception.type", error_type), KeyValue::new("exception.message", error.to_string())]
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_jetstream_publish_s_span_records_where_the_stream_stored_the_message() {
    let context = jetstream::new(connect().await);
    let stream = ScratchStream::create(&context, "client-stored", StorageType::Memory).await;
    let publisher = TracedJetStream::new(context.clone());

    for id in ["s-1", "s-2"] {
        let ack = publisher.publish_with_headers(stream.name().to_owned(), with_id(id), "{}".into()).await.unwrap();
        assert_eq!(ack.stream, stream.name());
    }

    let spans = spans_to(stream.name());
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for (sequence, id) in [(1, "s-1"), (2, "s-2")] {
        let producer = spans
            .iter()
            .find(|span| attribute(span, "messaging.message.id") == Some(text(id)))
            .expect("the producer span");
        assert_eq!(producer.name, format!("send {}", stream.name()));
        assert_eq!(producer.span_kind, SpanKind::Producer);
        assert_eq!(producer.status, Status::Unset);
        assert_eq!(
            attributes(producer),
            sent(
                JETSTREAM_PUBLISH,
                stream.name(),
                &[
                    ("messaging.message.id", text(id)),
                    ("messaging.message.body.size", Value::I64(2)),
                    ("tracehop.nats.stream", text(stream.name())),
                    ("tracehop.nats.stream_sequence", Value::I64(sequence)),
                ]
            )
        );
    }
}

/// JetStream stores a message once per `Nats-Msg-Id` (within its duplicate window): a second publish with the same
/// id is acknowledged with the first one's sequence, and its span says it was a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_jetstream_publish_the_stream_had_already_is_recorded_as_a_duplicate() {
    let context = jetstream::new(connect().await);
    let stream = ScratchStream::create(&context, "client-duplicate", StorageType::Memory).await;
    let publisher = TracedJetStream::new(context.clone());
    let first = publisher.publish_with_headers(stream.name().to_owned(), with_id("d-1"), "{}".into()).await.unwrap();
    let again = publisher.publish_with_headers(stream.name().to_owned(), with_id("d-1"), "{}".into()).await.unwrap();
    assert!(!first.duplicate && again.duplicate);

    let mut spans = spans_to(stream.name());
    spans.sort_by_key(|span| span.start_time);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let stored_once = [("tracehop.nats.stream", text(stream.name())), ("tracehop.nats.stream_sequence", Value::I64(1))];
    assert_eq!(attribute(&spans[0], DUPLICATE_ATTRIBUTE), None);
    assert_eq!(
        attributes(&spans[1]),
        sent(
            JETSTREAM_PUBLISH,
            stream.name(),
            &[
                ("messaging.message.id", text("d-1")),
                ("messaging.message.body.size", Value::I64(2)),
                stored_once[0].clone(),
                stored_once[1].clone(),
                (DUPLICATE_ATTRIBUTE, Value::Bool(true)),
            ]
        )
    );
    assert_eq!(spans[1].status, Status::Unset, "a duplicate is no failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_jetstream_publish_no_stream_takes_marks_its_span_failed() {
    let context = jetstream::new(connect().await);
    let subject = suite::unique_topic("client-no-stream");

    let error = TracedJetStream::new(context)
        .publish(subject.clone(), "{}".into())
        .await
        .expect_err("no stream stores the subject");

    let producer = suite::the_span(&spans_to(&subject), SpanKind::Producer);
    assert_eq!(producer.status, Status::error(error.to_string()));
    assert_eq!(
        attribute(&producer, "error.type"),
        Some(text("async_nats::error::Error<async_nats::jetstream::context::PublishErrorKind>"))
    );
    assert_eq!(attribute(&producer, "tracehop.nats.stream_sequence"), None);
}

static TALLY: Handler = Handler::consumer("nats_clients::tally_loop").group("tally");

/// A `Subscriber` through `ConsumerTracing::stream`: each message comes with its CONSUMER span, a child of its own
/// publish, current while the caller's future runs, and named as the handler says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_subscriber_through_the_consumer_adapter_continues_each_publish_s_trace() {
    let client = connect().await;
    let subject = suite::unique_topic("client-subscriber");
    let subscriber = client.subscribe(subject.clone()).await.expect("subscribed");
    client.flush().await.expect("flushed");
    let publisher = TracedClient::new(client.clone());
    for id in ["t-1", "t-2", "t-3"] {
        publisher.publish_with_headers(subject.clone(), with_id(id), "1".into()).await.expect("published");
    }

    let mut messages = pin!(ConsumerTracing::new(&TALLY).stream(subscriber));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next()).await.unwrap().unwrap();
        let handled = message
            .process_async(|message| async move {
                let current = opentelemetry::Context::current().span().span_context().span_id();
                Ok::<_, String>((id_of(&message), current))
            })
            .await;
        seen.push(handled.expect("handled"));
    }

    let spans = spans_to(&subject);
    assert_eq!(spans.len(), 6, "{spans:#?}");
    for (id, span_id) in &seen {
        let producer = spans
            .iter()
            .find(|span| {
                span.span_kind == SpanKind::Producer && attribute(span, "messaging.message.id") == Some(text(id))
            })
            .expect("its producer span");
        let consumer = suite::finished_span(*span_id);
        suite::assert_child_of(&consumer, producer);
        assert_eq!(consumer.name, format!("process {subject}"));
        assert_eq!(
            attributes(&consumer),
            processed(
                "nats_clients::tally_loop",
                &subject,
                &[
                    ("messaging.consumer.group.name", text("tally")),
                    ("messaging.message.id", text(id)),
                    ("messaging.message.body.size", Value::I64(1)),
                ]
            )
        );
    }
}

static RESTOCK: Handler = Handler::consumer("nats_clients::restock_loop");
static RESTOCK_RECEIVING: ConsumerTracing = ConsumerTracing::new(&RESTOCK).with_receive_spans();

/// A JetStream consumer's `messages()` through `ConsumerTracing::stream` with receive spans: the CLIENT span
/// `receive {subject}` linked to the publish, then the CONSUMER span, its child; both name the consumer as the
/// group when the handler names none, and say where the message sits in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_jetstream_consumer_s_messages_through_the_adapter_get_receive_and_process_spans() {
    let context = jetstream::new(connect().await);
    let stream = ScratchStream::create(&context, "client-messages", StorageType::Memory).await;
    TracedJetStream::new(context.clone())
        .publish_with_headers(stream.name().to_owned(), with_id("r-1"), "{}".into())
        .await
        .expect("stored");
    let consumer = stream.consumer("restocker", Duration::from_secs(30)).await;

    let mut messages = pin!(RESTOCK_RECEIVING.stream(consumer.messages().await.expect("the consumer's messages")));
    let message = tokio::time::timeout(Duration::from_secs(10), messages.next()).await.unwrap().unwrap().unwrap();
    let consumer_span = message.span().context().span().span_context().span_id();
    message
        .process_async(|message| async move { tracehop::clients::nats::ack(&message).await })
        .await
        .expect("acknowledged");

    let spans = spans_to(stream.name());
    let producer = suite::the_span(&spans, SpanKind::Producer);
    let processing = suite::finished_span(consumer_span);
    suite::assert_child_of(&processing, &producer);
    let where_stored = [
        ("messaging.message.id", text("r-1")),
        ("messaging.message.body.size", Value::I64(2)),
        ("tracehop.nats.stream", text(stream.name())),
        ("tracehop.nats.stream_sequence", Value::I64(1)),
        ("tracehop.nats.consumer_sequence", Value::I64(1)),
        ("tracehop.message.delivery_count", Value::I64(1)),
    ];
    let described = |operation: &str| {
        let mut want = vec![
            ("code.function.name", text("nats_clients::restock_loop")),
            ("messaging.system", text("nats")),
            ("messaging.operation.type", text(operation)),
            ("messaging.operation.name", text(operation)),
            ("messaging.destination.name", text(stream.name())),
            ("messaging.consumer.group.name", text("restocker")),
        ];
        want.extend_from_slice(&where_stored);
        expected(&want)
    };
    assert_eq!(attributes(&processing), described("process"));
    let receive = spans.iter().find(|span| span.name == format!("receive {}", stream.name())).expect("receive span");
    assert_eq!(receive.span_kind, SpanKind::Client);
    let linked: Vec<SpanId> = receive.links.links.iter().map(|link| link.span_context.span_id()).collect();
    assert_eq!(linked, [producer.span_context.span_id()]);
    assert_eq!(attributes(receive), described("receive"));
    let ack = spans.iter().find(|span| span.name == format!("ack {}", stream.name())).expect("the ack span");
    assert_eq!(ack.parent_span_id, processing.span_context.span_id(), "acknowledged inside the processing");
}
