//! The messaging conventions beyond spans, against the real RabbitMQ server `scripts/test` starts: settle spans
//! around ack, nack and reject, a redelivery after a nack, a quorum queue's delivery count, a dead-lettered
//! message's death count, captured headers and an old message's age. A handler's metrics, an ack inside a handler
//! and a timestamp in the future, which every broker shares, are in `tests/shared_behaviour.rs`.

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ChannelState};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::trace::SpanData;
use suite::{attribute, attributes, expected, next_delivery};

#[tracehop::traced_consumer(group = "inventory", capture_headers("x-tenant"))]
async fn reserve(delivery: &Delivery) -> Result<usize, String> {
    match delivery.data.as_slice() {
        b"fail" => Err("out of stock".to_owned()),
        data => Ok(data.len()),
    }
}

/// Settles inside the handler: acknowledges a payload of `ok`, requeues anything else.
#[tracehop::traced_consumer(group = "inventory")]
async fn settle_inside(delivery: &Delivery) -> lapin::Result<bool> {
    if delivery.data == b"ok" {
        tracehop::clients::rabbitmq::ack(delivery, BasicAckOptions::default()).await
    } else {
        tracehop::clients::rabbitmq::nack(delivery, BasicNackOptions { requeue: true, ..Default::default() }).await
    }
}

async fn channel() -> Channel {
    suite::spans();
    suite::metrics();
    let channel = suite::rabbitmq_channel().await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    channel
}

/// Publishes `payload` to the default exchange, routed to `queue`, as a plain client would.
async fn publish_plain(channel: &Channel, queue: &str, payload: &[u8], properties: BasicProperties) {
    channel
        .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), payload, properties)
        .await
        .expect("basic.publish")
        .await
        .expect("confirmed");
}

fn text(value: &str) -> Value {
    Value::from(value.to_owned())
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// The spans whose routing key is `queue` (deliveries through the default exchange carry the queue's name).
fn spans_routed_to(queue: &str) -> Vec<SpanData> {
    suite::finished()
        .into_iter()
        .filter(|span| attribute(span, "messaging.rabbitmq.destination.routing_key") == Some(text(queue)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_nacked_message_comes_back_redelivered_and_each_settle_is_a_span() {
    let channel = channel().await;
    let queue = suite::unique_topic("redelivery");
    suite::declare_queue(&channel, &queue).await;
    publish_plain(&channel, &queue, b"retry", BasicProperties::default().with_message_id("m-1".into())).await;

    let first = next_delivery(&channel, &queue).await;
    assert!(settle_inside(&first).await.expect("nacked"));
    let again = next_delivery(&channel, &queue).await;
    assert!(again.redelivered);
    // Acknowledged outside a handler: the settle span is a root of its own.
    assert!(tracehop::clients::rabbitmq::ack(&again, BasicAckOptions::default()).await.expect("acked"));
    assert_eq!(reserve(&again).await, Ok(5));

    let spans = spans_routed_to(&queue);
    let consumers: Vec<_> = spans.iter().filter(|span| span.span_kind == SpanKind::Consumer).collect();
    assert_eq!(consumers.len(), 2, "{spans:#?}");
    let first_span =
        consumers.iter().find(|span| attribute(span, "tracehop.message.redelivered").is_none()).expect("first");
    let redelivered =
        consumers.iter().find(|span| attribute(span, "tracehop.message.redelivered").is_some()).expect("redelivered");
    assert_eq!(attribute(redelivered, "tracehop.message.redelivered"), Some(Value::Bool(true)));
    assert_eq!(attribute(redelivered, "tracehop.message.delivery_count"), None, "a classic queue does not count");

    let nack = suite::finished()
        .into_iter()
        .find(|span| span.span_kind == SpanKind::Client && span.parent_span_id == first_span.span_context.span_id())
        .expect("the nack span, a child of the first consumer span");
    assert_eq!(nack.name, "nack amq.default");
    assert_eq!(
        attributes(&nack),
        expected(&[
            ("messaging.system", text("rabbitmq")),
            ("messaging.operation.type", text("settle")),
            ("messaging.operation.name", text("nack")),
            ("messaging.destination.name", text("")),
            ("messaging.message.id", text("m-1")),
            ("messaging.rabbitmq.message.delivery_tag", Value::I64(first.delivery_tag as i64)),
        ])
    );
    assert_eq!(nack.status, Status::Unset);
    let ack = suite::finished()
        .into_iter()
        .find(|span| {
            span.name == "ack amq.default"
                && attribute(span, "messaging.rabbitmq.message.delivery_tag")
                    == Some(Value::I64(again.delivery_tag as i64))
                && attribute(span, "messaging.message.id") == Some(text("m-1"))
        })
        .expect("the ack span");
    assert_eq!(ack.span_kind, SpanKind::Client);
    assert_eq!(attribute(&ack, "messaging.operation.type"), Some(text("settle")));
}

/// A settle call that fails: its error is returned unchanged and recorded on the settle span. lapin 4 answers a
/// settle it cannot make (a delivery settled already, a channel closed since) with `Ok(false)`, never an error
/// one can provoke on demand; so the call here is one failing with lapin's error for a closing channel, run in the
/// `Settle` that `tracehop::clients::rabbitmq::{ack, nack, reject}` run lapin's call in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_failed_settle_returns_lapins_error_and_records_it_on_its_settle_span() {
    let channel = channel().await;
    let queue = suite::unique_topic("settle-failed");
    suite::declare_queue(&channel, &queue).await;
    publish_plain(&channel, &queue, b"late", BasicProperties::default().with_message_id(queue.as_str().into())).await;
    let delivery = next_delivery(&channel, &queue).await;
    let closing = || lapin::Error::from(lapin::ErrorKind::InvalidChannelState(ChannelState::Closing, "basic.reject"));

    let settled = tracehop::Settle::new(tracehop::Settlement::Reject, &delivery)
        .run_async(async { Err::<bool, _>(closing()) })
        .await;

    assert_eq!(settled, Err(closing()));
    let reject = suite::finished()
        .into_iter()
        .find(|span| attribute(span, "messaging.message.id") == Some(text(&queue)))
        .expect("the reject span");
    assert_eq!(reject.name, "reject amq.default");
    assert_eq!(reject.span_kind, SpanKind::Client);
    assert_eq!(reject.status, Status::error(closing().to_string()));
    assert_eq!(attribute(&reject, "error.type"), Some(text("lapin::error::Error")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_quorum_queue_s_delivery_count_is_recorded_on_the_redelivery() {
    let channel = channel().await;
    let queue = suite::unique_topic("quorum");
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments.insert("x-expires".into(), AMQPValue::LongInt(120_000));
    channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, arguments)
        .await
        .expect("queue.declare of a quorum queue");
    publish_plain(&channel, &queue, b"retry", BasicProperties::default()).await;

    let first = next_delivery(&channel, &queue).await;
    tracehop::clients::rabbitmq::nack(&first, BasicNackOptions { requeue: true, ..Default::default() })
        .await
        .expect("nacked");
    let again = next_delivery(&channel, &queue).await;
    assert_eq!(reserve(&again).await, Ok(5));
    again.ack(BasicAckOptions::default()).await.expect("acked");

    let consumer = spans_routed_to(&queue)
        .into_iter()
        .find(|span| span.span_kind == SpanKind::Consumer)
        .expect("the consumer span");
    assert_eq!(attribute(&consumer, "tracehop.message.redelivered"), Some(Value::Bool(true)));
    assert_eq!(attribute(&consumer, "tracehop.message.delivery_count"), Some(Value::I64(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
async fn a_dead_lettered_message_s_death_count_headers_and_age_are_recorded() {
    let channel = channel().await;
    let queue = suite::unique_topic("work");
    let dead_letters = format!("{queue}.dead");
    suite::declare_queue(&channel, &dead_letters).await;
    let mut arguments = FieldTable::default();
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(dead_letters.as_str().into()));
    arguments.insert("x-expires".into(), AMQPValue::LongInt(120_000));
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { auto_delete: true, ..Default::default() },
            arguments,
        )
        .await
        .expect("queue.declare");
    let mut headers = FieldTable::default();
    headers.insert("x-tenant".into(), AMQPValue::LongString(LongString::from("acme")));
    headers.insert("authorization".into(), AMQPValue::LongString(LongString::from("Bearer s3cret")));
    let sent_at = now_seconds() - 30;
    let properties = BasicProperties::default().with_headers(headers).with_timestamp(sent_at);
    publish_plain(&channel, &queue, b"poison", properties).await;

    let first = next_delivery(&channel, &queue).await;
    tracehop::clients::rabbitmq::reject(&first, BasicRejectOptions { requeue: false }).await.expect("rejected");
    let dead = next_delivery(&channel, &dead_letters).await;
    let before = now_seconds();
    assert_eq!(reserve(&dead).await, Ok(6));
    let after = now_seconds() + 1;
    dead.ack(BasicAckOptions::default()).await.expect("acked");

    let consumer = spans_routed_to(&dead_letters)
        .into_iter()
        .find(|span| span.span_kind == SpanKind::Consumer)
        .expect("the consumer span of the dead letter");
    assert_eq!(attribute(&consumer, "tracehop.message.death_count"), Some(Value::I64(1)));
    assert_eq!(attribute(&consumer, "tracehop.message.redelivered"), None, "dead-lettering is no redelivery");
    assert_eq!(
        attribute(&consumer, "messaging.header.x_tenant"),
        Some(Value::Array(Array::String(vec!["acme".to_owned().into()])))
    );
    assert_eq!(attribute(&consumer, "messaging.header.authorization"), None);
    let Some(Value::I64(age)) = attribute(&consumer, "tracehop.message.age_ms") else {
        panic!("no age on {consumer:#?}")
    };
    // The AMQP timestamp counts whole seconds.
    assert!(((before - sent_at) as i64 * 1000 - 1000..=(after - sent_at) as i64 * 1000).contains(&age), "{age}");

    let rejected = suite::finished()
        .into_iter()
        .find(|span| {
            span.name == "reject amq.default"
                && attribute(span, "messaging.rabbitmq.message.delivery_tag")
                    == Some(Value::I64(first.delivery_tag as i64))
                && span.status == Status::Unset
        })
        .expect("the reject span");
    assert_eq!(attribute(&rejected, "messaging.operation.name"), Some(text("reject")));
}
