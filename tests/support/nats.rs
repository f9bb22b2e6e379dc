//! NATS as a [`BrokerFixture`], on each of its two sides, the server being the one `scripts/nats` starts
//! (`NATS_URL`). Each shared body runs on the side where it is honest (`tests/shared_behaviour.rs`):
//!
//! - [`CoreNats`]: core NATS, a fresh subject per destination and a plain subscription per subscriber (each gets
//!   every message); async-nats's `Message`, published by a `#[traced_producer]` taking the `HeaderMap` or by
//!   `TracedClient`, read by the client adapter straight from the `Subscriber`. Core NATS keeps no message: it
//!   redelivers and settles nothing and dates nothing, but it does not deduplicate either, so the bodies that
//!   publish one id twice (the clients and the macros, the processing duration) run here, beside the ones either
//!   side can run (round trip, context fallback, a malformed context through the adapter, captured headers, a
//!   batch).
//! - [`JetStream`]: a fresh memory stream per destination storing its subject, and a durable pull consumer per
//!   subscriber (explicit acks, [`ACK_WAIT`]); `jetstream::Message`, published by the `#[traced_producer]` awaiting
//!   the stream's acknowledgement or by `TracedJetStream`, fetched one at a time, given to the client adapter by
//!   the consumer's `messages()`, settled by `tracehop::clients::nats::ack`. The bodies that need a redelivery or a
//!   settle run here, and the ones either side can run. JetStream deduplicates on `Nats-Msg-Id`: a body that
//!   publishes one id twice cannot run here.
//!
//! On both sides a message's id ([`Outgoing::id`]) is its `Nats-Msg-Id` header, recorded as
//! `messaging.message.id`. Neither side lets a publisher date a message (JetStream stamps it when it stores it),
//! so the age body is NATS's own (`tests/nats.rs`). NATS header values are text on one line: the context-fallback
//! cases that are not ([`carries`]) cannot cross NATS, and the NATS modules leave them out
//! ([`carried_fallback_cases`]).

use std::pin::pin;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, Consumer};
use async_nats::jetstream::context::PublishError as JetStreamPublishError;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::StorageType;
use async_nats::{Client, HeaderMap, Message, PublishError, Subscriber};
use futures_util::StreamExt;
use opentelemetry::{KeyValue, Value};
use tokio::sync::Mutex;
use tracehop::clients::nats::{TracedClient, TracedJetStream};
use tracehop::clients::ConsumerTracing;
use tracehop::nats::{CONSUMER_SEQUENCE_ATTRIBUTE, MESSAGE_ID_HEADER, STREAM_ATTRIBUTE, STREAM_SEQUENCE_ATTRIBUTE};
use tracehop::Handler;

use crate::behaviour::{fallback_cases, handle_body, Attributes, BrokerFixture, Case, Handled, OutOfStock, Outgoing};

/// How long a [`JetStream`] consumer waits for a message's acknowledgement before delivering it again: how long
/// a message a handler failed on takes to come back. Long enough that no body's unacknowledged message comes back
/// while the body still reads others.
pub const ACK_WAIT: Duration = Duration::from_secs(2);

/// How long a test waits for a message before failing.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the NATS server `scripts/nats` starts (its URL in `NATS_URL`), with the suite's span capture
/// installed. The NATS tests are `#[ignore]`d, so a bare `cargo test` reports them as ignored; `scripts/test` runs
/// them with `--include-ignored` beside its server, and then a missing or unreachable server fails them.
pub async fn connect() -> Client {
    crate::spans();
    let url = std::env::var("NATS_URL")
        .expect("NATS_URL is not set: the NATS tests run against the server ./scripts/nats starts");
    async_nats::connect(&url).await.unwrap_or_else(|error| panic!("NATS at {url} is unreachable: {error}"))
}

/// Whether NATS can carry `headers` as they are: a header value is text on one line. async-nats holds values as
/// strings, writes a line break as a space, and takes a header block that is not UTF-8 for a broken connection.
pub fn carries(headers: &[(&str, Vec<u8>)]) -> bool {
    headers.iter().all(|(_, value)| std::str::from_utf8(value).is_ok_and(|text| !text.contains(['\r', '\n'])))
}

/// The cases of [`fallback_cases`] NATS headers can carry ([`carries`]): all but the ones whose values are not
/// text, or break a line, which are named here so that none goes missing unseen.
pub fn carried_fallback_cases() -> Vec<Case> {
    let (carried, left_out): (Vec<Case>, Vec<Case>) =
        fallback_cases().into_iter().partition(|case| carries(&case.headers));
    let left_out: Vec<&str> = left_out.iter().map(|case| case.name).collect();
    assert_eq!(
        left_out,
        [
            "traceparent-not-utf8",
            "traceparent-binary-garbage",
            "traceparent-leading-line-break",
            "traceparent-trailing-line-break",
            "tracestate-member-not-utf8",
        ]
    );
    carried
}

/// The attributes of a NATS CONSUMER span of `function` for a message on `subject`: the five every one has, then
/// `more`, in the order [`expected`](crate::expected) compares them.
pub fn processed(function: &str, subject: &str, more: &[(&str, Value)]) -> Vec<(String, Value)> {
    let mut all = vec![
        ("code.function.name", text(function)),
        ("messaging.system", text("nats")),
        ("messaging.operation.type", text("process")),
        ("messaging.operation.name", text("process")),
        ("messaging.destination.name", text(subject)),
    ];
    all.extend(more.iter().cloned());
    crate::expected(&all)
}

/// `message`'s headers as NATS carries them: its own (each name's values in order) and its id as
/// [`MESSAGE_ID_HEADER`].
fn headers_of(message: &Outgoing<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MESSAGE_ID_HEADER, message.id);
    for (name, value) in message.headers {
        let value = std::str::from_utf8(value)
            .ok()
            .filter(|text| !text.contains(['\r', '\n']))
            .unwrap_or_else(|| panic!("a NATS header value is text on one line, not {value:?} (see `carries`)"));
        headers.append(*name, value);
    }
    headers
}

/// The id ([`Outgoing::id`]) a received message carries.
pub fn id_of(message: &Message) -> String {
    let headers = message.headers.as_ref().expect("every message of the fixture has headers");
    headers.get(MESSAGE_ID_HEADER).expect("every message of the fixture has an id").as_str().to_owned()
}

/// The one `traceparent` value a received message carries.
fn traceparent_of(message: &Message) -> Option<Vec<u8>> {
    let mut values = message.headers.as_ref()?.get_all("traceparent");
    let traceparent = values.next()?.as_str().as_bytes().to_vec();
    assert!(values.next().is_none(), "one traceparent value");
    Some(traceparent)
}

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

/// The `#[traced_consumer]` handlers of a fixture, for the `Message` type in scope where this is invoked (core
/// NATS's or JetStream's): the macros tell a message by its type's name, so each side has its own copies, named
/// for its module.
macro_rules! handlers {
    () => {
        #[tracehop::traced_consumer(group = "inventory")]
        pub(super) async fn handle(message: &Message, fail: bool) -> Result<Handled, String> {
            handle_body(id_of(message), message.payload.to_vec(), fail).await
        }

        #[tracehop::traced_consumer(
            group = "inventory",
            capture_headers("x-*", "Authorization"),
            exclude_headers("x-internal-*"),
            attempt_header = "x-retry-count"
        )]
        pub(super) async fn handle_capturing(message: &Message) -> Result<Handled, String> {
            handle_body(id_of(message), message.payload.to_vec(), false).await
        }

        #[tracehop::traced_consumer(group = "inventory")]
        pub(super) async fn handle_out_of_stock(message: &Message) -> Result<(), OutOfStock> {
            let _ = message;
            Err(OutOfStock)
        }

        #[tracehop::traced_consumer(group = "inventory")]
        pub(super) fn handle_panicking(message: &Message) {
            panic!("corrupt order {}", id_of(message))
        }

        #[tracehop::traced_consumer(group = "inventory")]
        pub(super) fn handle_batch(messages: &[Message]) -> usize {
            messages.len()
        }
    };
}

/// Core NATS's handlers and publish.
mod on_core {
    use super::*;

    handlers!();

    #[tracehop::traced_producer(destination = subject)]
    pub(super) async fn publish(
        client: &Client,
        subject: &str,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> Result<(), PublishError> {
        client.publish_with_headers(subject.to_owned(), headers, payload.into()).await
    }

    /// The handlers the clients use, described as the macros describe `publish` and `handle` above.
    pub(super) static PUBLISH: Handler = Handler::producer("suite::nats::on_core::publish");
    pub(super) static HANDLE_AS_MACRO: Handler = Handler::consumer("suite::nats::on_core::handle").group("inventory");
}

/// JetStream's handlers and publish.
mod on_jetstream {
    use super::*;
    use async_nats::jetstream::Message;

    handlers!();

    #[tracehop::traced_consumer(group = "inventory")]
    pub(super) async fn settle_inside(message: &Message) -> Result<(), String> {
        tracehop::clients::nats::ack(message).await.map_err(|error| error.to_string())
    }

    #[tracehop::traced_producer(destination = subject)]
    pub(super) async fn publish(
        jetstream: &jetstream::Context,
        subject: &str,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> Result<PublishAck, JetStreamPublishError> {
        jetstream.publish_with_headers(subject.to_owned(), headers, payload.into()).await?.await
    }

    pub(super) static PUBLISH: Handler = Handler::producer("suite::nats::on_jetstream::publish");
    pub(super) static HANDLE_AS_MACRO: Handler =
        Handler::consumer("suite::nats::on_jetstream::handle").group("inventory");
}

/// Core NATS on the server of `NATS_URL`, as the shared test bodies use it.
pub struct CoreNats {
    client: Client,
}

impl CoreNats {
    /// A connection to the server of `NATS_URL` ([`connect`]).
    pub async fn connect() -> Self {
        Self { client: connect().await }
    }
}

/// A fresh subject and its subscriptions, each of which gets every message.
pub struct Subject {
    name: String,
    subscribers: Vec<Mutex<Subscriber>>,
}

impl Subject {
    async fn next(&self, subscriber: usize) -> Message {
        let mut subscription = self.subscribers[subscriber].lock().await;
        tokio::time::timeout(RECEIVE_TIMEOUT, subscription.next())
            .await
            .expect("a message within 30 seconds")
            .expect("the subscription goes on")
    }
}

impl BrokerFixture for CoreNats {
    type Message = Message;
    type Destination = Subject;

    const SYSTEM: &'static str = "nats";
    const ID_ATTRIBUTE: &'static str = "messaging.message.id";
    const PUBLISH_FUNCTION: &'static str = "suite::nats::on_core::publish";
    const HANDLE_FUNCTION: &'static str = "suite::nats::on_core::handle";
    /// Never settled: core NATS keeps no message to settle.
    const SETTLE_OPERATION: &'static str = "ack";
    const TIMESTAMPS_MESSAGES: bool = false;
    const ORDERS_HEADER_NAMES: bool = false;

    async fn destination(&self, prefix: &str, subscribers: usize) -> Subject {
        let name = crate::unique_topic(prefix);
        let mut subscriptions = Vec::new();
        for _ in 0..subscribers {
            subscriptions.push(Mutex::new(self.client.subscribe(name.clone()).await.expect("subscribed")));
        }
        // The server has the subscriptions before any publish: a message published before them reaches nobody.
        self.client.flush().await.expect("flushed");
        Subject { name, subscribers: subscriptions }
    }

    fn name(&self, subject: &Subject) -> String {
        subject.name.clone()
    }

    async fn publish(&self, subject: &Subject, message: &Outgoing<'_>) {
        let payload = message.payload.to_vec();
        on_core::publish(&self.client, &subject.name, headers_of(message), payload).await.expect("published");
    }

    /// `TracedClient` also knows the body's size, which a `#[traced_producer]` handed only the `HeaderMap` does not.
    async fn publish_by_client(&self, subject: &Subject, message: &Outgoing<'_>) -> Vec<(&'static str, Value)> {
        let client = TracedClient::new(self.client.clone()).with_handler(&on_core::PUBLISH);
        let payload = message.payload.to_vec();
        client
            .publish_with_headers(subject.name.clone(), headers_of(message), payload.into())
            .await
            .expect("published");
        vec![("messaging.message.body.size", Value::I64(message.payload.len() as i64))]
    }

    async fn publish_raw(&self, subject: &Subject, message: &Outgoing<'_>) {
        let payload = message.payload.to_vec();
        self.client
            .publish_with_headers(subject.name.clone(), headers_of(message), payload.into())
            .await
            .expect("published");
    }

    async fn publish_raw_at(&self, _: &Subject, _: &Outgoing<'_>, _: std::time::SystemTime) -> i64 {
        unreachable!("a core NATS message carries no timestamp: the age body is NATS's own, in tests/nats.rs")
    }

    async fn receive(&self, subject: &Subject, subscriber: usize) -> Message {
        subject.next(subscriber).await
    }

    fn id_of(&self, received: &Message) -> String {
        id_of(received)
    }

    fn traceparent_of(&self, received: &Message) -> Option<Vec<u8>> {
        traceparent_of(received)
    }

    async fn handle(&self, received: &Message) -> Result<Handled, String> {
        on_core::handle(received, false).await
    }

    async fn handle_capturing(&self, received: &Message) -> Result<Handled, String> {
        on_core::handle_capturing(received).await
    }

    async fn handle_out_of_stock(&self, received: &Message) -> Result<(), OutOfStock> {
        on_core::handle_out_of_stock(received).await
    }

    fn handle_panicking(&self, received: &Message) {
        on_core::handle_panicking(received)
    }

    fn handle_batch(&self, received: &[Message]) -> usize {
        on_core::handle_batch(received)
    }

    fn link_attributes(&self, received: &Message) -> Vec<KeyValue> {
        vec![KeyValue::new("messaging.message.id", id_of(received))]
    }

    async fn handle_failing(&self, received: &Message) -> Result<Handled, String> {
        on_core::handle(received, true).await
    }

    async fn give_back(&self, _: &mut Subject, _: &Message) {
        unreachable!("core NATS keeps no message to deliver again: the redelivery bodies run on JetStream")
    }

    fn assert_redelivery_of(&self, _: &Message, _: &Message) {
        unreachable!("core NATS delivers a message once: the redelivery bodies run on JetStream")
    }

    fn redelivery_attributes(&self) -> Attributes {
        unreachable!("core NATS delivers a message once: the redelivery bodies run on JetStream")
    }

    async fn handle_by_client(
        &self,
        subject: &Subject,
        subscriber: usize,
        receive_spans: bool,
    ) -> Result<Handled, String> {
        let tracing = if receive_spans {
            ConsumerTracing::new(&on_core::HANDLE_AS_MACRO).with_receive_spans()
        } else {
            ConsumerTracing::new(&on_core::HANDLE_AS_MACRO)
        };
        let mut subscription = subject.subscribers[subscriber].lock().await;
        let mut messages = pin!(tracing.stream(&mut *subscription));
        let message = tokio::time::timeout(RECEIVE_TIMEOUT, messages.next())
            .await
            .expect("a message within 30 seconds")
            .expect("the subscription goes on");
        message.process_async(|message| handle_body(id_of(&message), message.payload.to_vec(), false)).await
    }

    async fn handle_and_settle(&self, _: &Subject, _: &Message) -> Result<(), String> {
        unreachable!("core NATS keeps no message to settle: the settle body runs on JetStream")
    }

    fn sent_attributes(&self, message: &Outgoing<'_>) -> Vec<(&'static str, Value)> {
        vec![("messaging.message.id", text(message.id))]
    }

    fn received_attributes(&self, message: &Outgoing<'_>, _: &Message) -> Vec<(&'static str, Value)> {
        vec![("messaging.message.id", text(message.id))]
    }

    fn settle_attributes(&self, _: &Outgoing<'_>, _: &Message) -> Vec<(&'static str, Value)> {
        unreachable!("core NATS keeps no message to settle: the settle body runs on JetStream")
    }
}

/// JetStream on the server of `NATS_URL`, as the shared test bodies use it.
pub struct JetStream {
    context: jetstream::Context,
}

impl JetStream {
    /// A connection to the server of `NATS_URL` ([`connect`]), and its JetStream context.
    pub async fn connect() -> Self {
        Self { context: jetstream::new(connect().await) }
    }
}

/// A fresh stream storing one subject of the same name, deleted when the test is done with it, so that a server
/// that outlives the run keeps none of the run's streams.
pub struct ScratchStream {
    name: String,
    context: jetstream::Context,
    stream: jetstream::stream::Stream,
}

impl ScratchStream {
    /// A stream named `prefix` and a nonce ([`crate::unique_topic`]), storing the subject of its name in `storage`.
    pub async fn create(context: &jetstream::Context, prefix: &str, storage: StorageType) -> Self {
        let name = crate::unique_topic(prefix);
        let config = jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![name.clone()],
            storage,
            ..Default::default()
        };
        let stream = context.create_stream(config).await.expect("the stream is created");
        Self { name, context: context.clone(), stream }
    }

    /// The stream's name, also the subject it stores.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A durable pull consumer of every message of the stream, named `name`, waiting `ack_wait` for each
    /// acknowledgement.
    pub async fn consumer(&self, name: &str, ack_wait: Duration) -> Consumer<pull::Config> {
        let config = pull::Config { durable_name: Some(name.to_owned()), ack_wait, ..Default::default() };
        self.stream.create_consumer(config).await.expect("the consumer is created")
    }
}

impl Drop for ScratchStream {
    fn drop(&mut self) {
        use tokio::runtime::{Handle, RuntimeFlavor};
        // Only on the tests' multi-threaded runtimes, the one place a drop may wait for the server.
        let Ok(runtime) = Handle::try_current() else { return };
        if runtime.runtime_flavor() != RuntimeFlavor::MultiThread {
            return;
        }
        let (context, name) = (self.context.clone(), std::mem::take(&mut self.name));
        tokio::task::block_in_place(move || {
            runtime.block_on(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), context.delete_stream(&name)).await;
            })
        });
    }
}

/// The next message `consumer` delivers, in one pull request for one message that waits up to 30 seconds (then
/// the test fails). One request, not a request a second: a request expiring as the server redelivers a message
/// (the ack wait out at that moment) can take the message with it, and the consumer counts a delivery nobody saw.
pub async fn next_delivery(consumer: &Consumer<pull::Config>) -> jetstream::Message {
    let mut batch = consumer.batch().max_messages(1).expires(RECEIVE_TIMEOUT).messages().await.expect("a pull request");
    batch.next().await.expect("a message within 30 seconds").expect("no JetStream error")
}

/// A subject a [`ScratchStream`] stores, and a durable consumer per subscriber, each of which gets every message.
pub struct StoredSubject {
    stream: ScratchStream,
    consumers: Vec<Consumer<pull::Config>>,
    /// Each subscriber's `messages()`, once [`BrokerFixture::handle_by_client`] has started it.
    adapted: Vec<Mutex<Option<pull::Stream>>>,
}

/// What a JetStream delivery's acknowledgement subject says, as async-nats reads it (tracehop reads it itself).
fn delivery_of(message: &jetstream::Message) -> async_nats::jetstream::message::Info<'_> {
    message.info().expect("a JetStream delivery")
}

impl BrokerFixture for JetStream {
    type Message = jetstream::Message;
    type Destination = StoredSubject;

    const SYSTEM: &'static str = "nats";
    const ID_ATTRIBUTE: &'static str = "messaging.message.id";
    const PUBLISH_FUNCTION: &'static str = "suite::nats::on_jetstream::publish";
    const HANDLE_FUNCTION: &'static str = "suite::nats::on_jetstream::handle";
    const SETTLE_OPERATION: &'static str = "ack";
    const TIMESTAMPS_MESSAGES: bool = true;
    const ORDERS_HEADER_NAMES: bool = false;

    async fn destination(&self, prefix: &str, subscribers: usize) -> StoredSubject {
        let stream = ScratchStream::create(&self.context, prefix, StorageType::Memory).await;
        let mut consumers = Vec::new();
        for index in 0..subscribers {
            consumers.push(stream.consumer(&format!("subscriber-{index}"), ACK_WAIT).await);
        }
        let adapted = (0..subscribers).map(|_| Mutex::new(None)).collect();
        StoredSubject { stream, consumers, adapted }
    }

    fn name(&self, subject: &StoredSubject) -> String {
        subject.stream.name().to_owned()
    }

    async fn publish(&self, subject: &StoredSubject, message: &Outgoing<'_>) {
        let payload = message.payload.to_vec();
        let ack = on_jetstream::publish(&self.context, subject.stream.name(), headers_of(message), payload)
            .await
            .expect("stored");
        assert!(!ack.duplicate, "every message of a body is new to its stream");
    }

    /// `TracedJetStream` also knows the body's size, which a `#[traced_producer]` handed only the `HeaderMap` does
    /// not, and records the stream's answer: where it stored the message.
    async fn publish_by_client(&self, subject: &StoredSubject, message: &Outgoing<'_>) -> Vec<(&'static str, Value)> {
        let jetstream = TracedJetStream::new(self.context.clone()).with_handler(&on_jetstream::PUBLISH);
        let payload = message.payload.to_vec();
        let ack = jetstream
            .publish_with_headers(subject.stream.name().to_owned(), headers_of(message), payload.into())
            .await
            .expect("stored");
        vec![
            ("messaging.message.body.size", Value::I64(message.payload.len() as i64)),
            (STREAM_ATTRIBUTE, text(&ack.stream)),
            (STREAM_SEQUENCE_ATTRIBUTE, Value::I64(ack.sequence as i64)),
        ]
    }

    async fn publish_raw(&self, subject: &StoredSubject, message: &Outgoing<'_>) {
        let payload = message.payload.to_vec();
        let ack = self
            .context
            .publish_with_headers(subject.stream.name().to_owned(), headers_of(message), payload.into())
            .await
            .expect("published")
            .await
            .expect("stored");
        assert!(!ack.duplicate, "every message of a body is new to its stream");
    }

    async fn publish_raw_at(&self, _: &StoredSubject, _: &Outgoing<'_>, _: std::time::SystemTime) -> i64 {
        unreachable!("JetStream dates a message when it stores it, not as its publisher says: tests/nats.rs")
    }

    async fn receive(&self, subject: &StoredSubject, subscriber: usize) -> jetstream::Message {
        next_delivery(&subject.consumers[subscriber]).await
    }

    fn id_of(&self, received: &jetstream::Message) -> String {
        id_of(received)
    }

    fn traceparent_of(&self, received: &jetstream::Message) -> Option<Vec<u8>> {
        traceparent_of(received)
    }

    /// Acknowledged when handled (untraced, through async-nats): a JetStream consumer's loop acknowledges what it
    /// handled, and only what a handler failed on comes back.
    async fn handle(&self, received: &jetstream::Message) -> Result<Handled, String> {
        let handled = on_jetstream::handle(received, false).await;
        if handled.is_ok() {
            received.ack().await.expect("acknowledged");
        }
        handled
    }

    async fn handle_capturing(&self, received: &jetstream::Message) -> Result<Handled, String> {
        let handled = on_jetstream::handle_capturing(received).await;
        if handled.is_ok() {
            received.ack().await.expect("acknowledged");
        }
        handled
    }

    async fn handle_out_of_stock(&self, received: &jetstream::Message) -> Result<(), OutOfStock> {
        on_jetstream::handle_out_of_stock(received).await
    }

    fn handle_panicking(&self, received: &jetstream::Message) {
        on_jetstream::handle_panicking(received)
    }

    fn handle_batch(&self, received: &[jetstream::Message]) -> usize {
        on_jetstream::handle_batch(received)
    }

    fn link_attributes(&self, received: &jetstream::Message) -> Vec<KeyValue> {
        let delivery = delivery_of(received);
        vec![
            KeyValue::new("messaging.message.id", id_of(received)),
            KeyValue::new(STREAM_ATTRIBUTE, delivery.stream.to_owned()),
            KeyValue::new(STREAM_SEQUENCE_ATTRIBUTE, delivery.stream_sequence as i64),
        ]
    }

    async fn handle_failing(&self, received: &jetstream::Message) -> Result<Handled, String> {
        on_jetstream::handle(received, true).await
    }

    async fn give_back(&self, subject: &mut StoredSubject, received: &jetstream::Message) {
        assert_eq!(delivery_of(received).delivered, 1, "a first delivery");
        let consumer = subject.consumers[0].get_info().await.expect("the consumer's state");
        assert_eq!(consumer.num_ack_pending, 1, "the failed message is still unacknowledged");
        // The caller settles nothing and goes away: JetStream delivers the message again once its ack_wait is out.
        subject.adapted[0].lock().await.take();
    }

    fn assert_redelivery_of(&self, first: &jetstream::Message, again: &jetstream::Message) {
        assert_eq!(id_of(again), id_of(first), "the same message");
        assert_eq!(again.payload, first.payload, "the same message");
        let (first, again) = (delivery_of(first), delivery_of(again));
        assert_eq!(again.stream_sequence, first.stream_sequence, "the same message in the stream");
        assert_eq!(again.delivered, 2, "delivered a second time");
    }

    fn redelivery_attributes(&self) -> Attributes {
        vec![(tracehop::REDELIVERED_ATTRIBUTE, Value::Bool(true))]
    }

    async fn handle_by_client(
        &self,
        subject: &StoredSubject,
        subscriber: usize,
        receive_spans: bool,
    ) -> Result<Handled, String> {
        let mut adapted = subject.adapted[subscriber].lock().await;
        if adapted.is_none() {
            *adapted = Some(subject.consumers[subscriber].messages().await.expect("the consumer's messages"));
        }
        let consumer_messages = adapted.as_mut().expect("started above");
        let tracing = if receive_spans {
            ConsumerTracing::new(&on_jetstream::HANDLE_AS_MACRO).with_receive_spans()
        } else {
            ConsumerTracing::new(&on_jetstream::HANDLE_AS_MACRO)
        };
        let mut messages = pin!(tracing.stream(consumer_messages));
        let message = tokio::time::timeout(RECEIVE_TIMEOUT, messages.next())
            .await
            .expect("a message within 30 seconds")
            .expect("the stream goes on")
            .expect("no JetStream error");
        message
            .process_async(|message| async move {
                let handled = handle_body(id_of(&message), message.payload.to_vec(), false).await;
                message.ack().await.expect("acknowledged");
                handled
            })
            .await
    }

    async fn handle_and_settle(&self, _: &StoredSubject, received: &jetstream::Message) -> Result<(), String> {
        on_jetstream::settle_inside(received).await
    }

    fn sent_attributes(&self, message: &Outgoing<'_>) -> Vec<(&'static str, Value)> {
        vec![("messaging.message.id", text(message.id))]
    }

    fn received_attributes(&self, message: &Outgoing<'_>, received: &jetstream::Message) -> Vec<(&'static str, Value)> {
        let delivery = delivery_of(received);
        vec![
            ("messaging.message.id", text(message.id)),
            (STREAM_ATTRIBUTE, text(delivery.stream)),
            (STREAM_SEQUENCE_ATTRIBUTE, Value::I64(delivery.stream_sequence as i64)),
            (CONSUMER_SEQUENCE_ATTRIBUTE, Value::I64(delivery.consumer_sequence as i64)),
            (tracehop::DELIVERY_COUNT_ATTRIBUTE, Value::I64(delivery.delivered)),
        ]
    }

    fn settle_attributes(&self, message: &Outgoing<'_>, received: &jetstream::Message) -> Vec<(&'static str, Value)> {
        let delivery = delivery_of(received);
        vec![
            ("messaging.message.id", text(message.id)),
            (STREAM_ATTRIBUTE, text(delivery.stream)),
            (STREAM_SEQUENCE_ATTRIBUTE, Value::I64(delivery.stream_sequence as i64)),
        ]
    }
}
