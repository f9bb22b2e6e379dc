//! Retries and dead letters on RabbitMQ (`tracehop::clients::rabbitmq::{retry, dead_letter}`), against the real
//! server `scripts/test` starts: a retry exchange and queue, a dead-letter exchange and queue, the message's whole
//! life one trace.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::Value;
use suite::lineage::{assert_five_attempts_then_a_dead_letter, assert_wire, chain, Expected};
use suite::{attribute, declare_exchange, finished, next_delivery, spans_to, unique_topic};
use tracehop::clients::rabbitmq::{self, TracedChannel};
use tracehop::{DeadLetter, Republish};

const ROUTING_KEY: &str = "payment.requested";

async fn channel() -> Channel {
    suite::spans();
    let channel = suite::rabbitmq_channel().await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    channel
}

/// A payment handler that fails: it retries the delivery through `retries`, or gives it up to `dead_letters`.
#[tracehop::traced_consumer(group = "payments")]
async fn charge(
    delivery: &Delivery,
    channel: &Channel,
    retries: &str,
    dead_letters: Option<&str>,
) -> Result<(), String> {
    let published = match dead_letters {
        None => rabbitmq::retry(channel, delivery, retries, ROUTING_KEY, Republish::new()).await,
        Some(exchange) => {
            rabbitmq::dead_letter(channel, delivery, exchange, ROUTING_KEY, DeadLetter::new("CardDeclined")).await
        }
    };
    published.map_err(|error| error.to_string())?;
    Err("card declined".to_owned())
}

#[tracehop::traced_consumer(group = "payments-dead-letters")]
fn inspect(delivery: &Delivery) {
    let _ = delivery;
}

/// The headers of `delivery`, string values as text, others as lapin prints them.
fn headers_of(delivery: &Delivery) -> Vec<(String, String)> {
    let Some(headers) = delivery.properties.headers() else { return Vec::new() };
    headers
        .inner()
        .iter()
        .map(|(name, value)| {
            let value = match value {
                AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
                other => format!("{other:?}"),
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

async fn take(channel: &Channel, queue: &str) -> Delivery {
    let delivery = next_delivery(channel, queue).await;
    channel.basic_ack(delivery.delivery_tag, BasicAckOptions::default()).await.expect("basic.ack");
    delivery
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn five_attempts_and_a_dead_letter_read_as_one_trace_in_order() {
    let channel = channel().await;
    let (payments, retries, dead_letters) =
        (unique_topic("payments"), unique_topic("payments.retry"), unique_topic("payments.dlx"));
    let queues = [format!("{payments}.q"), format!("{retries}.q"), format!("{dead_letters}.q")];
    for (exchange, queue) in [&payments, &retries, &dead_letters].into_iter().zip(&queues) {
        declare_exchange(&channel, exchange, ExchangeKind::Direct, &[queue], ROUTING_KEY).await;
    }
    let mut headers = FieldTable::default();
    headers.insert("x-tenant".into(), AMQPValue::LongString(LongString::from("acme")));
    let properties = BasicProperties::default().with_headers(headers).with_message_id("pay-1".into());
    TracedChannel::new(channel.clone())
        .basic_publish(&payments, ROUTING_KEY, BasicPublishOptions::default(), b"{}", properties)
        .await
        .expect("the payment is published");

    let mut consumed = Vec::new();
    let first = take(&channel, &queues[0]).await;
    consumed.push(headers_of(&first));
    let _ = charge(&first, &channel, &retries, None).await;
    let mut last_tag = 0;
    for attempt in 2..=5 {
        let delivery = take(&channel, &queues[1]).await;
        consumed.push(headers_of(&delivery));
        last_tag = delivery.delivery_tag;
        let give_up = (attempt == 5).then_some(dead_letters.as_str());
        assert_eq!(charge(&delivery, &channel, &retries, give_up).await, Err("card declined".to_owned()));
    }
    let dead_letter = take(&channel, &queues[2]).await;
    consumed.push(headers_of(&dead_letter));
    inspect(&dead_letter);

    let producer = spans_to(&payments)
        .into_iter()
        .find(|span| span.span_kind == SpanKind::Producer)
        .expect("the payment's PRODUCER span");
    let chain = chain(&producer);
    let retry_name = format!("send {retries}");
    let dead_letter_name = format!("dead_letter {retries}");
    assert_five_attempts_then_a_dead_letter(
        &chain,
        &Expected {
            retry_name: &retry_name,
            dead_letter_name: &dead_letter_name,
            origin: &retries,
            dead_letter_destination: &dead_letters,
            error_type: "CardDeclined",
            coordinates: vec![
                ("tracehop.dead_letter.origin.routing_key", ROUTING_KEY.to_owned()),
                ("tracehop.dead_letter.origin.delivery_tag", last_tag.to_string()),
            ],
        },
    );
    assert_wire(&chain, &consumed, ("x-tenant", "acme"));
    for retry in &chain.retries {
        assert_eq!(attribute(retry, "messaging.rabbitmq.destination.routing_key"), Some(Value::from(ROUTING_KEY)));
    }
    assert_eq!(
        attribute(&chain.dead_letter, "messaging.rabbitmq.message.delivery_tag"),
        Some(Value::I64(i64::try_from(last_tag).expect("a small tag")))
    );
    assert_eq!(dead_letter.data, b"{}", "the body is kept");
    assert_eq!(dead_letter.properties.message_id().as_ref().map(|id| id.as_str()), Some("pay-1"), "and properties");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_retry_the_broker_refuses_returns_its_error_and_fails_its_span() {
    let channel = channel().await;
    let payments = unique_topic("payments");
    let queue = format!("{payments}.q");
    declare_exchange(&channel, &payments, ExchangeKind::Direct, &[&queue], ROUTING_KEY).await;
    TracedChannel::new(channel.clone())
        .basic_publish(&payments, ROUTING_KEY, BasicPublishOptions::default(), b"{}", BasicProperties::default())
        .await
        .expect("the payment is published");
    let delivery = take(&channel, &queue).await;

    let missing = unique_topic("no-such-exchange");
    let doomed = channel_for_failure().await;
    let result = charge(&delivery, &doomed, &missing, None).await;
    let error = result.expect_err("the retry exchange does not exist");
    assert!(error.contains("NOT_FOUND"), "lapin's own error is returned: {error}");

    let retry = finished()
        .into_iter()
        .find(|span| span.name == format!("send {missing}").as_str())
        .expect("the retry's PRODUCER span");
    assert_eq!(attribute(&retry, "error.type"), Some(Value::from("lapin::error::Error")));
    assert!(matches!(retry.status, Status::Error { .. }), "{:?}", retry.status);
    assert_eq!(retry.events.events.iter().map(|event| event.name.as_ref()).collect::<Vec<_>>(), ["exception"]);
}

/// A channel of its own in confirm mode, for a publish the broker answers by closing it.
async fn channel_for_failure() -> Channel {
    let channel = suite::rabbitmq_channel().await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    channel
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_dead_letter_keeps_headers_of_every_amqp_type_and_replaces_the_trace_headers() {
    let channel = channel().await;
    let (payments, dead_letters) = (unique_topic("payments"), unique_topic("payments.dlx"));
    let queues = [format!("{payments}.q"), format!("{dead_letters}.q")];
    declare_exchange(&channel, &payments, ExchangeKind::Direct, &[&queues[0]], ROUTING_KEY).await;
    declare_exchange(&channel, &dead_letters, ExchangeKind::Direct, &[&queues[1]], ROUTING_KEY).await;
    let mut headers = FieldTable::default();
    headers.insert("x-priority-score".into(), AMQPValue::LongInt(7));
    headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(LongString::from("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
    );
    channel
        .basic_publish(
            payments.as_str().into(),
            ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("basic.publish")
        .await
        .expect("confirmed");
    let delivery = take(&channel, &queues[0]).await;
    let consumed = delivery.properties.headers().clone().expect("headers");
    assert_eq!(consumed.inner().get("x-delivery-count"), Some(&AMQPValue::LongLongInt(2)), "a classic queue keeps it");
    let _ = charge(&delivery, &channel, "unused", Some(&dead_letters)).await;
    let dead_letter = take(&channel, &queues[1]).await;

    let settle = finished()
        .into_iter()
        .find(|span| span.name == format!("dead_letter {payments}").as_str())
        .expect("the dead letter's span");
    let traceparent = format!("00-{:032x}-{:016x}-01", settle.span_context.trace_id(), settle.span_context.span_id());
    let headers = dead_letter.properties.headers().clone().expect("headers");
    let headers = headers.inner();
    assert_eq!(headers.get("x-priority-score"), Some(&AMQPValue::LongInt(7)), "an integer header stays an integer");
    assert_eq!(headers.get("x-delivery-count"), None, "the broker's count of the consumed delivery is not passed on");
    assert_eq!(headers.get("traceparent"), Some(&AMQPValue::LongString(LongString::from(traceparent))));
    assert_eq!(
        headers.get("tracehop-first-traceparent"),
        Some(&AMQPValue::LongString(LongString::from("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")))
    );
    assert_eq!(
        headers.get("tracehop-dead-letter-origin"),
        Some(&AMQPValue::LongString(LongString::from(payments.as_str())))
    );
    assert_eq!(
        headers.get("tracehop-dead-letter-error-type"),
        Some(&AMQPValue::LongString(LongString::from("CardDeclined")))
    );
    assert_eq!(format!("{:032x}", settle.span_context.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
}
