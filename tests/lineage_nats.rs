//! Retries and dead letters on NATS (`tracehop::clients::nats::{retry, dead_letter, retry_jetstream,
//! dead_letter_jetstream}`), against the server `scripts/nats` starts: JetStream retry and dead-letter streams,
//! and a core NATS retry subject, the message's whole life one trace.

use std::time::Duration;

use async_nats::jetstream::{self, stream::StorageType};
use async_nats::{HeaderMap, Message};
use futures_util::StreamExt;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::Value;
use suite::lineage::{assert_five_attempts_then_a_dead_letter, assert_wire, chain, Expected};
use suite::nats::{connect, next_delivery, ScratchStream};
use suite::{attribute, finished, spans_to};
use tracehop::clients::nats::{self, TracedClient, TracedJetStream};
use tracehop::{DeadLetter, Republish};

/// A payment handler that fails: it retries the message on `retries`, or gives it up to `dead_letters`.
#[tracehop::traced_consumer(group = "payments")]
async fn charge(
    message: &jetstream::Message,
    context: &jetstream::Context,
    retries: &str,
    dead_letters: Option<&str>,
) -> Result<(), String> {
    match dead_letters {
        None => nats::retry_jetstream(context, message, retries, Republish::new()).await,
        Some(subject) => nats::dead_letter_jetstream(context, message, subject, DeadLetter::new("CardDeclined")).await,
    }
    .map_err(|error| error.to_string())?;
    Err("card declined".to_owned())
}

#[tracehop::traced_consumer(group = "payments-dead-letters")]
fn inspect(message: &jetstream::Message) {
    let _ = message;
}

/// The headers of `message` as `(name, value)`, one pair per value.
fn headers_of(message: &Message) -> Vec<(String, String)> {
    let Some(headers) = &message.headers else { return Vec::new() };
    headers
        .iter()
        .flat_map(|(name, values)| {
            let name: &str = name.as_ref();
            values.iter().map(move |value| (name.to_owned(), value.as_str().to_owned()))
        })
        .collect()
}

async fn take(consumer: &jetstream::consumer::Consumer<jetstream::consumer::pull::Config>) -> jetstream::Message {
    let message = next_delivery(consumer).await;
    message.ack().await.expect("ack");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn five_jetstream_attempts_and_a_dead_letter_read_as_one_trace_in_order() {
    let context = jetstream::new(connect().await);
    let payments = ScratchStream::create(&context, "payments", StorageType::Memory).await;
    let retries = ScratchStream::create(&context, "payments-retry", StorageType::Memory).await;
    let dead_letters = ScratchStream::create(&context, "payments-dead", StorageType::Memory).await;
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", "acme");
    // Copied, JetStream would store the first retry alone: the others would be duplicates of it.
    headers.insert("Nats-Msg-Id", "pay-1");
    TracedJetStream::new(context.clone())
        .publish_with_headers(payments.name().to_owned(), headers, "{}".into())
        .await
        .expect("the payment is stored");

    let mut consumed = Vec::new();
    let first = take(&payments.consumer("payments", Duration::from_secs(30)).await).await;
    consumed.push(headers_of(&first));
    let _ = charge(&first, &context, retries.name(), None).await;
    let retry_consumer = retries.consumer("payments", Duration::from_secs(30)).await;
    for attempt in 2..=5 {
        let message = take(&retry_consumer).await;
        consumed.push(headers_of(&message));
        let give_up = (attempt == 5).then_some(dead_letters.name());
        assert_eq!(charge(&message, &context, retries.name(), give_up).await, Err("card declined".to_owned()));
    }
    let dead_letter = take(&dead_letters.consumer("payments-dead-letters", Duration::from_secs(30)).await).await;
    consumed.push(headers_of(&dead_letter));
    inspect(&dead_letter);

    let producer = spans_to(payments.name())
        .into_iter()
        .find(|span| span.span_kind == SpanKind::Producer)
        .expect("the payment's PRODUCER span");
    let chain = chain(&producer);
    let retry_name = format!("send {}", retries.name());
    let dead_letter_name = format!("dead_letter {}", retries.name());
    assert_five_attempts_then_a_dead_letter(
        &chain,
        &Expected {
            retry_name: &retry_name,
            dead_letter_name: &dead_letter_name,
            origin: retries.name(),
            dead_letter_destination: dead_letters.name(),
            error_type: "CardDeclined",
            coordinates: vec![
                ("tracehop.dead_letter.origin.stream", retries.name().to_owned()),
                ("tracehop.dead_letter.origin.sequence", "4".to_owned()),
            ],
        },
    );
    assert_wire(&chain, &consumed, ("x-tenant", "acme"));
    for headers in &consumed[1..] {
        assert!(!headers.iter().any(|(name, _)| name == "Nats-Msg-Id"), "JetStream's own headers are not copied");
    }
    assert_eq!(dead_letter.payload.as_ref(), b"{}", "the body is kept");
}

#[tracehop::traced_consumer(group = "payments")]
async fn charge_core(message: &Message, client: &async_nats::Client, retries: &str) -> Result<(), String> {
    nats::retry(client, message, retries, Republish::new()).await.map_err(|error| error.to_string())?;
    Err("card declined".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
async fn a_core_nats_retry_continues_the_trace_and_links_the_attempt_before() {
    let client = connect().await;
    let (payments, retries) = (suite::unique_topic("payments"), suite::unique_topic("payments-retry"));
    let mut first_subscription = client.subscribe(payments.clone()).await.expect("subscribe");
    let mut retry_subscription = client.subscribe(retries.clone()).await.expect("subscribe");
    client.flush().await.expect("flush");
    TracedClient::new(client.clone()).publish(payments.clone(), "{}".into()).await.expect("published");

    let within = Duration::from_secs(10);
    let first = tokio::time::timeout(within, first_subscription.next()).await.expect("in time").expect("a message");
    let _ = charge_core(&first, &client, &retries).await;
    let retried = tokio::time::timeout(within, retry_subscription.next()).await.expect("in time").expect("a message");
    let _ = charge_core(&retried, &client, &retries).await;

    let attempts: Vec<_> = finished()
        .into_iter()
        .filter(|span| span.span_kind == SpanKind::Consumer && span.name.ends_with(payments.as_str()))
        .chain(spans_to(&retries).into_iter().filter(|span| span.span_kind == SpanKind::Consumer))
        .collect();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    let retry = finished()
        .into_iter()
        .find(|span| {
            span.name == format!("send {retries}").as_str() && span.parent_span_id == attempts[0].span_context.span_id()
        })
        .expect("the first retry's PRODUCER span, a child of attempt 1");
    assert_eq!(attempts[1].parent_span_id, retry.span_context.span_id());
    assert_eq!(attempts[1].span_context.trace_id(), attempts[0].span_context.trace_id());
    let linked: Vec<_> = attempts[1].links.links.iter().map(|link| link.span_context.span_id()).collect();
    assert_eq!(linked, [retry.span_context.span_id(), attempts[0].span_context.span_id()]);
    assert_eq!(attribute(&attempts[1], "tracehop.message.attempt"), Some(Value::I64(2)));
    assert_eq!(retry.status, Status::Unset);
}
