//! The macros over async-nats, against the real NATS server `scripts/nats` starts: a queue group sharing a
//! subject's messages, a handler named for a wildcard subject, a request answered by a traced handler, a header
//! with two `traceparent` values, a batch of JetStream messages taken by value, what a JetStream delivery says of
//! its consumer and its age. What every broker shares is in `tests/shared_behaviour.rs`, the traced clients in
//! `tests/nats_clients.rs`, settle spans and redeliveries in `tests/nats_conventions.rs`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use async_nats::jetstream::stream::StorageType;
use async_nats::{Client, HeaderMap, Message, PublishError};
use futures_util::StreamExt;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use suite::nats::{connect, id_of, next_delivery, processed, ScratchStream};
use suite::{attribute, attributes, expected, spans_to};
use tracehop::clients::nats::{TracedClient, TracedJetStream};
use tracehop::nats::MESSAGE_ID_HEADER;

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

/// Headers naming the message `id`.
fn with_id(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MESSAGE_ID_HEADER, id);
    headers
}

/// The ids of the span current where this is called.
fn current_ids() -> (TraceId, SpanId) {
    let context = opentelemetry::Context::current();
    let span = context.span();
    (span.span_context().trace_id(), span.span_context().span_id())
}

/// The next message of `subscriber`; fails the test after 10 seconds.
async fn next_message(subscriber: &mut async_nats::Subscriber) -> Message {
    tokio::time::timeout(Duration::from_secs(10), subscriber.next())
        .await
        .expect("a message within 10 seconds")
        .expect("the subscription goes on")
}

/// The PRODUCER span among `spans` whose message id is `id`.
fn producer_of<'a>(spans: &'a [SpanData], id: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|span| span.span_kind == SpanKind::Producer && attribute(span, "messaging.message.id") == Some(text(id)))
        .unwrap_or_else(|| panic!("the producer span of {id} in {spans:#?}"))
}

#[tracehop::traced_consumer(group = "billing")]
async fn bill(invoice: &Message) -> (TraceId, SpanId) {
    tokio::time::sleep(Duration::from_millis(1)).await;
    let _ = invoice;
    current_ids()
}

/// Two subscribers of one queue group share a subject's messages: the server hands each message to one of them,
/// and each handling is a child of its own publish, named for the subject, with the queue group as the consumer
/// group (core NATS tells a subscriber nothing of its group: the handler names it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn subscribers_of_one_queue_group_handle_each_message_once_under_the_group_s_name() {
    let client = connect().await;
    let subject = suite::unique_topic("invoices");
    let mut subscribers = Vec::new();
    for index in 0..2 {
        let subscriber = client.queue_subscribe(subject.clone(), "billing".to_owned()).await.expect("subscribed");
        subscribers.push(subscriber.map(move |message| (index, message)));
    }
    let mut both = futures_util::stream::select_all(subscribers);
    client.flush().await.expect("flushed");
    let traced = TracedClient::new(client.clone());
    // Twenty, so that a server that gave every message to one subscriber would be seen (a chance of 2 in 2^20 for
    // a fair one).
    let ids: Vec<String> = (0..20).map(|n| format!("inv-{n}")).collect();
    for id in &ids {
        traced.publish_with_headers(subject.clone(), with_id(id), "{}".into()).await.expect("published");
    }
    client.flush().await.expect("flushed");

    let mut handled: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    let mut seen = HashMap::new();
    while handled.iter().map(Vec::len).sum::<usize>() < ids.len() {
        let (index, message) = tokio::time::timeout(Duration::from_secs(10), both.next())
            .await
            .expect("every message within 10 seconds")
            .expect("the subscriptions go on");
        seen.insert(id_of(&message), bill(&message).await);
        handled[index].push(id_of(&message));
    }
    let more = tokio::time::timeout(Duration::from_millis(300), both.next()).await;
    assert!(more.is_err(), "no message is handed to both subscribers: {more:?}");
    assert!(handled.iter().all(|ids| !ids.is_empty()), "both subscribers had a share: {handled:?}");
    let all: HashSet<&String> = handled.iter().flatten().collect();
    assert_eq!(all, ids.iter().collect(), "each message once");

    let spans = spans_to(&subject);
    assert_eq!(spans.len(), 40, "{spans:#?}");
    for id in &ids {
        let producer = producer_of(&spans, id);
        let consumer = suite::finished_span(seen[id].1);
        suite::assert_child_of(&consumer, producer);
        assert_eq!(consumer.name, format!("process {subject}"));
        assert_eq!(
            attributes(&consumer),
            processed(
                "nats::bill",
                &subject,
                &[
                    ("messaging.consumer.group.name", text("billing")),
                    ("messaging.message.id", text(id)),
                    ("messaging.message.body.size", Value::I64(2)),
                ]
            )
        );
    }
}

#[tracehop::traced_consumer(destination = "orders.*")]
fn record_order(order: &Message) -> SpanId {
    let _ = order;
    current_ids().1
}

#[tracehop::traced_consumer(destination = "orders.>")]
fn audit_order(order: &Message) -> SpanId {
    let _ = order;
    current_ids().1
}

/// A handler written for a wildcard subscription (`orders.*`, `orders.>`) is named for its template, which it
/// records as `messaging.destination.template`, and records the message's own subject as
/// `messaging.destination.name`; its span continues the publish of that subject. (The test subscribes to its own
/// subject under the template, so that runs sharing a server never see each other's orders.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_handler_of_a_wildcard_subject_is_named_for_it_and_records_the_message_s_own_subject() {
    let client = connect().await;
    let subject = format!("orders.{}", suite::unique_topic("created"));
    let mut subscriber = client.subscribe(subject.clone()).await.expect("subscribed");
    client.flush().await.expect("flushed");
    let traced = TracedClient::new(client.clone());
    for id in ["o-1", "o-2"] {
        traced.publish_with_headers(subject.clone(), with_id(id), "{}".into()).await.expect("published");
    }
    let recorded = record_order(&next_message(&mut subscriber).await);
    let audited = audit_order(&next_message(&mut subscriber).await);

    let spans = spans_to(&subject);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    for (span_id, id, template, function) in
        [(recorded, "o-1", "orders.*", "nats::record_order"), (audited, "o-2", "orders.>", "nats::audit_order")]
    {
        let producer = producer_of(&spans, id);
        assert_eq!(producer.name, format!("send {subject}"));
        let consumer = suite::finished_span(span_id);
        suite::assert_child_of(&consumer, producer);
        assert_eq!(consumer.name, format!("process {template}"));
        assert_eq!(consumer.span_kind, SpanKind::Consumer);
        assert_eq!(
            attributes(&consumer),
            processed(
                function,
                &subject,
                &[
                    ("messaging.destination.template", text(template)),
                    ("messaging.message.id", text(id)),
                    ("messaging.message.body.size", Value::I64(2)),
                ]
            )
        );
    }
}

#[tracehop::traced_consumer(group = "pricing")]
async fn quote(client: &Client, request: &Message) -> Result<(), PublishError> {
    let reply = request.reply.clone().expect("a request says where to answer");
    send_reply(client, &reply, HeaderMap::new(), b"42".to_vec()).await
}

#[tracehop::traced_producer(destination = reply)]
async fn send_reply(client: &Client, reply: &str, headers: HeaderMap, payload: Vec<u8>) -> Result<(), PublishError> {
    client.publish_with_headers(reply.to_owned(), headers, payload.into()).await
}

/// A request through `TracedClient::request` answered by a `#[traced_consumer]` handler that replies through a
/// `#[traced_producer]`: one trace. The handler's CONSUMER span is a child of the request's PRODUCER span, which
/// lasts until the reply arrives; the reply's PRODUCER span, a child of the handler's, is named `send _INBOX` (every
/// reply inbox is one name) and records the inbox it went to; the reply carries its context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_request_and_its_traced_reply_are_one_trace() {
    let client = connect().await;
    let subject = suite::unique_topic("prices.quote");
    let mut requests = client.subscribe(subject.clone()).await.expect("subscribed");
    client.flush().await.expect("flushed");
    let responder = {
        let client = client.clone();
        tokio::spawn(async move {
            let request = requests.next().await.expect("a request");
            quote(&client, &request).await.expect("answered");
            request.reply.expect("a reply subject").to_string()
        })
    };

    let reply = TracedClient::new(client.clone()).request(subject.clone(), "{\"sku\":\"A-1\"}".into()).await;
    let reply = reply.expect("answered");
    let inbox = responder.await.expect("the responder ran");
    assert_eq!(reply.payload, "42");
    assert!(inbox.starts_with("_INBOX."), "{inbox}");

    let spans = spans_to(&subject);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let request = suite::the_span(&spans, SpanKind::Producer);
    let handling = suite::the_span(&spans, SpanKind::Consumer);
    let answer = suite::the_span(&spans_to(&inbox), SpanKind::Producer);

    assert_eq!(request.name, format!("send {subject}"));
    assert_eq!(request.parent_span_id, SpanId::INVALID);
    assert_eq!(request.status, Status::Unset);
    assert_eq!(
        attributes(&request),
        expected(&[
            ("code.function.name", text("tracehop::clients::nats::TracedClient::publish")),
            ("messaging.system", text("nats")),
            ("messaging.operation.type", text("send")),
            ("messaging.operation.name", text("send")),
            ("messaging.destination.name", text(&subject)),
            ("messaging.message.body.size", Value::I64(13)),
        ])
    );

    suite::assert_child_of(&handling, &request);
    assert_eq!(handling.name, format!("process {subject}"));
    assert_eq!(
        attributes(&handling),
        processed(
            "nats::quote",
            &subject,
            &[("messaging.consumer.group.name", text("pricing")), ("messaging.message.body.size", Value::I64(13)),]
        )
    );

    assert_eq!(answer.name, "send _INBOX");
    assert_eq!(answer.span_context.trace_id(), request.span_context.trace_id());
    assert_eq!(answer.parent_span_id, handling.span_context.span_id());
    assert!(!answer.parent_span_is_remote, "the handler's span is local to the reply");
    assert_eq!(
        attributes(&answer),
        expected(&[
            ("code.function.name", text("nats::send_reply")),
            ("messaging.system", text("nats")),
            ("messaging.operation.type", text("send")),
            ("messaging.operation.name", text("send")),
            ("messaging.destination.name", text(&inbox)),
        ])
    );
    let traceparent = format!("00-{}-{}-01", answer.span_context.trace_id(), answer.span_context.span_id());
    let carried = reply.headers.as_ref().and_then(|headers| headers.get("traceparent")).map(|value| value.as_str());
    assert_eq!(carried, Some(traceparent.as_str()), "the reply carries its span's context");
    assert!(request.start_time <= handling.start_time, "the request's span starts first");
    assert!(answer.end_time <= request.end_time, "the request's span lasts until the reply");
}

#[tracehop::traced_consumer]
fn read(message: &Message) -> SpanId {
    let _ = message;
    current_ids().1
}

/// NATS headers are multi-valued. A `traceparent` with two values is two `traceparent` headers, which the W3C rules
/// make ambiguous: the CONSUMER span is a new root that says so (`duplicate_traceparent`), of neither value's trace
/// and linked to neither. Two `tracestate` values beside one `traceparent` are one list, joined in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn two_traceparent_values_start_a_new_root_and_two_tracestate_values_are_joined() {
    let client = connect().await;
    let subject = suite::unique_topic("repeated");
    let mut subscriber = client.subscribe(subject.clone()).await.expect("subscribed");
    client.flush().await.expect("flushed");
    let (first, second) = ("4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c");
    let mut twice = with_id("twice");
    twice.append("traceparent", format!("00-{first}-00f067aa0ba902b7-01"));
    twice.append("traceparent", format!("00-{second}-b7ad6b7169203331-01"));
    let mut joined = with_id("joined");
    joined.insert("traceparent", format!("00-{second}-b7ad6b7169203331-01"));
    joined.append("tracestate", "congo=t61rcWkgMzE");
    joined.append("tracestate", "rojo=00f067aa0ba902b7");
    for headers in [twice, joined] {
        client.publish_with_headers(subject.clone(), headers, "{}".into()).await.expect("published");
    }
    let mut span_ids = Vec::new();
    for _ in 0..2 {
        span_ids.push(read(&next_message(&mut subscriber).await));
    }

    let rejected = suite::finished_span(span_ids[0]);
    assert_eq!(attribute(&rejected, "messaging.message.id"), Some(text("twice")));
    assert_eq!(rejected.name, format!("process {subject}"));
    assert_eq!(rejected.parent_span_id, SpanId::INVALID);
    assert!(rejected.links.links.is_empty());
    for written in [first, second] {
        assert_ne!(rejected.span_context.trace_id(), TraceId::from_hex(written).unwrap());
    }
    assert_eq!(attribute(&rejected, tracehop::CONTEXT_REJECTED_ATTRIBUTE), Some(text("duplicate_traceparent")));

    let continued = suite::finished_span(span_ids[1]);
    assert_eq!(attribute(&continued, "messaging.message.id"), Some(text("joined")));
    assert_eq!(continued.span_context.trace_id(), TraceId::from_hex(second).unwrap());
    assert_eq!(continued.parent_span_id, SpanId::from_hex("b7ad6b7169203331").unwrap());
    assert_eq!(continued.span_context.trace_state().header(), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    assert_eq!(attribute(&continued, tracehop::CONTEXT_REJECTED_ATTRIBUTE), None);
}

#[tracehop::traced_consumer(group = "inventory")]
fn reserve_all(orders: Vec<jetstream::Message>) -> Vec<String> {
    orders.iter().map(|order| id_of(order)).collect()
}

/// A `#[traced_consumer]` handler taking a batch of JetStream messages by value (`Vec<jetstream::Message>`): one
/// CONSUMER span, a root of its own, counting the messages and linked to each one's producer (each publish a trace
/// of its own), each link naming its message's id, stream and sequence; the handler gets the batch whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_batch_of_jetstream_messages_taken_by_value_is_one_span_linked_to_each_producer() {
    let context = jetstream::new(connect().await);
    let stream = ScratchStream::create(&context, "batch", StorageType::Memory).await;
    let publisher = TracedJetStream::new(context.clone());
    for id in ["a", "b", "c"] {
        publisher.publish_with_headers(stream.name().to_owned(), with_id(id), "{}".into()).await.expect("stored");
    }
    let consumer = stream.consumer("inventory", Duration::from_secs(30)).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(next_delivery(&consumer).await);
    }

    assert_eq!(reserve_all(orders), ["a", "b", "c"]);

    let spans = spans_to(stream.name());
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let batch = suite::the_span(&spans, SpanKind::Consumer);
    assert_eq!(batch.name, format!("process {}", stream.name()));
    assert_eq!(batch.parent_span_id, SpanId::INVALID, "a batch has no producer parent");
    let producers: Vec<&SpanData> = ["a", "b", "c"].iter().map(|id| producer_of(&spans, id)).collect();
    let traces: HashSet<TraceId> = producers.iter().map(|span| span.span_context.trace_id()).collect();
    assert_eq!(traces.len(), 3, "three traces");
    assert!(!traces.contains(&batch.span_context.trace_id()));
    assert_eq!(attribute(&batch, "messaging.batch.message_count"), Some(Value::I64(3)));
    assert_eq!(attribute(&batch, "messaging.consumer.group.name"), Some(text("inventory")));
    assert_eq!(attribute(&batch, "code.function.name"), Some(text("nats::reserve_all")));
    let links: Vec<(TraceId, SpanId, Vec<KeyValue>)> = batch
        .links
        .links
        .iter()
        .map(|link| (link.span_context.trace_id(), link.span_context.span_id(), link.attributes.clone()))
        .collect();
    let expected_links: Vec<(TraceId, SpanId, Vec<KeyValue>)> = producers
        .iter()
        .zip(1_i64..)
        .map(|(producer, sequence)| {
            let id = attribute(producer, "messaging.message.id").expect("an id").to_string();
            let identity = vec![
                KeyValue::new("messaging.message.id", id),
                KeyValue::new("tracehop.nats.stream", stream.name().to_owned()),
                KeyValue::new("tracehop.nats.stream_sequence", sequence),
            ];
            (producer.span_context.trace_id(), producer.span_context.span_id(), identity)
        })
        .collect();
    assert_eq!(links, expected_links);
}

#[tracehop::traced_consumer]
async fn restock(order: &jetstream::Message) -> SpanId {
    let _ = order;
    current_ids().1
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

/// A JetStream message's age is the time since its stream stored it, which no publisher sets: a message handled
/// 300 ms or more after it was stored says so, within the times the test measured around both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_jetstream_message_s_age_is_the_time_since_its_stream_stored_it() {
    let context = jetstream::new(connect().await);
    let stream = ScratchStream::create(&context, "age", StorageType::Memory).await;
    let consumer = stream.consumer("restock", Duration::from_secs(30)).await;
    let sent_from = now_millis();
    context.publish_with_headers(stream.name().to_owned(), with_id("old"), "{}".into()).await.unwrap().await.unwrap();
    let sent_by = now_millis();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let order = next_delivery(&consumer).await;
    let handled_from = now_millis();
    let span_id = restock(&order).await;
    let handled_by = now_millis();

    let Some(Value::I64(age)) = attribute(&suite::finished_span(span_id), tracehop::AGE_ATTRIBUTE) else {
        panic!("no age on the span of a JetStream message")
    };
    // The stream's clock is this machine's, read to the millisecond on both sides.
    assert!(age >= 300, "{age}");
    assert!((handled_from - sent_by - 1..=handled_by - sent_from + 1).contains(&age), "{age}");
}

/// A JetStream delivery names its consumer, which a handler naming no group records as
/// `messaging.consumer.group.name`, beside what the delivery says of its place in the stream (a core message says
/// none of it, and has no age).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_jetstream_delivery_names_its_consumer_as_the_group_of_a_handler_naming_none() {
    let client = connect().await;
    let context = jetstream::new(client.clone());
    let stream = ScratchStream::create(&context, "restock", StorageType::Memory).await;
    let consumer = stream.consumer("warehouse-7", Duration::from_secs(30)).await;
    context.publish_with_headers(stream.name().to_owned(), with_id("r-1"), "{}".into()).await.unwrap().await.unwrap();
    let stored = restock(&next_delivery(&consumer).await).await;
    // The same subject read as a core message, outside the stream.
    let mut subscriber = client.subscribe(stream.name().to_owned()).await.expect("subscribed");
    client.flush().await.expect("flushed");
    client.publish_with_headers(stream.name().to_owned(), with_id("r-2"), "{}".into()).await.expect("published");
    let plain = read(&next_message(&mut subscriber).await);

    let stored = suite::finished_span(stored);
    assert_eq!(
        attributes(&stored),
        processed(
            "nats::restock",
            stream.name(),
            &[
                ("messaging.consumer.group.name", text("warehouse-7")),
                ("messaging.message.id", text("r-1")),
                ("messaging.message.body.size", Value::I64(2)),
                ("tracehop.nats.stream", text(stream.name())),
                ("tracehop.nats.stream_sequence", Value::I64(1)),
                ("tracehop.nats.consumer_sequence", Value::I64(1)),
                ("tracehop.message.delivery_count", Value::I64(1)),
                ("tracehop.context.rejected", text("missing")),
            ]
        )
    );
    assert!(attribute(&stored, tracehop::AGE_ATTRIBUTE).is_some(), "the stream dated it");
    let plain = suite::finished_span(plain);
    assert_eq!(
        attributes(&plain),
        processed(
            "nats::read",
            stream.name(),
            &[
                ("messaging.message.id", text("r-2")),
                ("messaging.message.body.size", Value::I64(2)),
                ("tracehop.context.rejected", text("missing")),
            ]
        )
    );
    assert_eq!(attribute(&plain, tracehop::AGE_ATTRIBUTE), None, "a core message carries no time");
}
