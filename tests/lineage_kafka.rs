//! Retries and dead letters on Kafka (`tracehop::clients::kafka::{retry, dead_letter}`), on the suite's broker: a
//! retry topic and a dead-letter topic, the message's whole life one trace.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::Value;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use suite::lineage::{assert_five_attempts_then_a_dead_letter, assert_wire, chain, Expected};
use suite::{attribute, finished, receive, spans_to, unique_topic, Broker};
use tracehop::clients::kafka;
use tracehop::{DeadLetter, Republish};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The span capture and, with the `metrics` feature, the meter provider, both installed before any test of the
/// process records anything: tracehop's instruments are made once.
fn setup() {
    suite::spans();
    #[cfg(feature = "metrics")]
    suite::metrics();
}

#[tracehop::traced_producer]
async fn publish(producer: &FutureProducer, record: FutureRecord<'_, str, str>) -> OwnedDeliveryResult {
    producer.send(record, TIMEOUT).await
}

/// A payment handler that fails: it retries the message, or gives it up to `dead_letters` once `give_up`.
#[tracehop::traced_consumer(group = "payments")]
async fn charge(
    message: &OwnedMessage,
    producer: &FutureProducer,
    retries: &str,
    dead_letters: Option<&str>,
) -> Result<(), String> {
    match dead_letters {
        None => kafka::retry(producer, message, retries, Republish::new(), TIMEOUT).await,
        Some(topic) => kafka::dead_letter(producer, message, topic, DeadLetter::new("CardDeclined"), TIMEOUT).await,
    }
    .map_err(|(error, _)| error.to_string())?;
    Err("card declined".to_owned())
}

#[tracehop::traced_consumer(group = "payments-dlq")]
fn inspect(message: &OwnedMessage) {
    let _ = message;
}

/// The headers of `message` as text, in order.
fn headers_of(message: &OwnedMessage) -> Vec<(String, String)> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    let value = header.value.map(|value| String::from_utf8_lossy(value).into_owned());
                    (header.key.to_owned(), value.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_attempts_and_a_dead_letter_read_as_one_trace_in_order() {
    setup();
    let broker = Broker::start();
    let (payments, retries, dead_letters) =
        (unique_topic("payments"), unique_topic("payments.retry"), unique_topic("payments.dlq"));
    for topic in [&payments, &retries, &dead_letters] {
        broker.create_topic(topic, 1);
    }
    let producer = broker.producer();
    let record = FutureRecord::to(&payments).key("pay-1").payload("{}").headers(
        rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header { key: "x-tenant", value: Some("acme") }),
    );
    publish(&producer, record).await.expect("the payment is published");

    let mut consumed = Vec::new();
    let first = receive(&broker.consumer("payments", &payments)).await;
    consumed.push(headers_of(&first));
    let _ = charge(&first, &producer, &retries, None).await;
    let retry_consumer = broker.consumer("payments", &retries);
    for attempt in 2..=5 {
        let message = receive(&retry_consumer).await;
        consumed.push(headers_of(&message));
        let give_up = (attempt == 5).then_some(dead_letters.as_str());
        assert_eq!(charge(&message, &producer, &retries, give_up).await, Err("card declined".to_owned()));
    }
    let dead_letter = receive(&broker.consumer("payments-dead-letters", &dead_letters)).await;
    consumed.push(headers_of(&dead_letter));
    inspect(&dead_letter);

    let producer_span = spans_to(&payments)
        .into_iter()
        .find(|span| span.span_kind == SpanKind::Producer)
        .expect("the payment's PRODUCER span");
    let chain = chain(&producer_span);
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
                ("tracehop.dead_letter.origin.partition", "0".to_owned()),
                ("tracehop.dead_letter.origin.offset", "3".to_owned()),
            ],
        },
    );
    assert_wire(&chain, &consumed, ("x-tenant", "acme"));
    assert_eq!(dead_letter.key(), Some(&b"pay-1"[..]), "the key is kept");
    assert_eq!(dead_letter.payload(), Some(&b"{}"[..]), "the body is kept");
    assert_eq!(attribute(&chain.dead_letter, "messaging.kafka.offset"), Some(Value::I64(3)));
    assert_eq!(attribute(&chain.dead_letter, "messaging.destination.partition.id"), Some(Value::from("0")));
}

#[tracehop::traced_consumer(group = "payments", attempt_header = "x-retry-count")]
async fn charge_counting(message: &OwnedMessage, producer: &FutureProducer, retries: &str) -> Result<(), String> {
    kafka::retry(producer, message, retries, Republish::new().attempt_header("x-retry-count"), TIMEOUT)
        .await
        .map_err(|(error, _)| error.to_string())?;
    Err("card declined".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_own_attempt_header_is_the_one_incremented() {
    setup();
    let broker = Broker::start();
    let (payments, retries) = (unique_topic("payments"), unique_topic("payments.retry"));
    broker.create_topic(&payments, 1);
    broker.create_topic(&retries, 1);
    let producer = broker.producer();
    broker.send_raw(&payments, "pay-2", b"{}", &[("x-retry-count", b"3")]).await;

    let first = receive(&broker.consumer("payments", &payments)).await;
    let counting = Republish::new().attempt_header("x-retry-count");
    assert_eq!((counting.attempt_of(&first), Republish::new().attempt_of(&first)), (3, 1));
    let _ = charge_counting(&first, &producer, &retries).await;
    let retried = receive(&broker.consumer("payments", &retries)).await;
    assert_eq!(counting.attempt_of(&retried), 4);
    let headers = headers_of(&retried);
    let counts: Vec<&str> =
        headers.iter().filter(|(name, _)| name == "x-retry-count").map(|(_, value)| value.as_str()).collect();
    assert_eq!(counts, ["4"], "the handler's own header, incremented once: {headers:?}");
    assert!(!headers.iter().any(|(name, _)| name == "tracehop-attempt"), "no second attempt header: {headers:?}");
    let _ = charge_counting(&retried, &producer, &retries).await;

    let consumers: Vec<_> =
        spans_to(&retries).into_iter().filter(|span| span.span_kind == SpanKind::Consumer).collect();
    assert_eq!(consumers.len(), 1);
    assert_eq!(attribute(&consumers[0], "tracehop.message.attempt"), Some(Value::I64(4)));
    let retry_spans: Vec<_> = finished()
        .into_iter()
        .filter(|span| span.name == format!("send {retries}").as_str())
        .map(|span| attribute(&span, "tracehop.message.attempt"))
        .collect();
    assert_eq!(retry_spans.len(), 2);
    assert!(retry_spans.contains(&Some(Value::I64(4))) && retry_spans.contains(&Some(Value::I64(5))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_replaces_the_trace_headers_and_keeps_the_others() {
    setup();
    let broker = Broker::start();
    let (payments, retries) = (unique_topic("payments"), unique_topic("payments.retry"));
    broker.create_topic(&payments, 1);
    broker.create_topic(&retries, 1);
    let producer = broker.producer();
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    broker
        .send_raw(
            &payments,
            "pay-3",
            b"{}",
            &[
                ("traceparent", incoming.as_bytes()),
                ("tracestate", b"congo=t61rcWkgMzE"),
                ("x-tenant", b"acme"),
                ("x-tenant", b"beta"),
            ],
        )
        .await;

    let first = receive(&broker.consumer("payments", &payments)).await;
    let _ = charge(&first, &producer, &retries, None).await;
    let retried = receive(&broker.consumer("payments", &retries)).await;
    let headers = headers_of(&retried);
    let retry = finished()
        .into_iter()
        .find(|span| span.name == format!("send {retries}").as_str())
        .expect("the retry's PRODUCER span");
    let traceparent = format!("00-{:032x}-{:016x}-01", retry.span_context.trace_id(), retry.span_context.span_id());
    let consumer =
        spans_to(&payments).into_iter().find(|span| span.span_kind == SpanKind::Consumer).expect("attempt 1");
    let failed = format!("00-{:032x}-{:016x}-01", consumer.span_context.trace_id(), consumer.span_context.span_id());
    let expected: Vec<(String, String)> = [
        ("x-tenant", "acme"),
        ("x-tenant", "beta"),
        ("traceparent", traceparent.as_str()),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("tracehop-attempt", "2"),
        ("tracehop-first-traceparent", incoming),
        ("tracehop-previous-attempt", failed.as_str()),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .into();
    assert_eq!(headers, expected, "one traceparent and one tracestate, the repeated header of the message kept");
    assert_eq!(format!("{:032x}", retry.span_context.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(retry.status, Status::Unset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_outside_the_handler_is_a_child_of_the_consumer_span_it_is_given() {
    use tracehop::{Handler, MessageSpan};
    static HANDLE: Handler = Handler::consumer("lineage_kafka::outside").group("payments");
    setup();
    let broker = Broker::start();
    let (payments, retries) = (unique_topic("payments"), unique_topic("payments.retry"));
    broker.create_topic(&payments, 1);
    broker.create_topic(&retries, 1);
    let producer = broker.producer();
    broker.send_raw(&payments, "pay-4", b"{}", &[]).await;

    let first = receive(&broker.consumer("payments", &payments)).await;
    let span = MessageSpan::consumer(&HANDLE, &first).start();
    let consumer = span.context().clone();
    drop(span);
    kafka::retry(&producer, &first, &retries, Republish::new().consumer_span(&consumer), TIMEOUT)
        .await
        .expect("the retry is published");

    let attempt = spans_to(&payments).into_iter().find(|span| span.span_kind == SpanKind::Consumer).expect("attempt 1");
    let retry = finished()
        .into_iter()
        .find(|span| span.name == format!("send {retries}").as_str())
        .expect("the retry's PRODUCER span");
    assert_eq!(retry.parent_span_id, attempt.span_context.span_id());
    assert_eq!(retry.span_context.trace_id(), attempt.span_context.trace_id());
    assert!(retry.links.links.is_empty(), "a message without context has no first creation to link");
    let retried = receive(&broker.consumer("payments", &retries)).await;
    assert!(!headers_of(&retried).iter().any(|(name, _)| name == "tracehop-first-traceparent"));
}

/// The README's picture of a payment retried twice and then dead-lettered, drawn from its real spans: one tree,
/// each attempt under the retry that published it, the dead letter and its consumer under the last attempt.
#[cfg(feature = "print")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_retried_twice_then_dead_lettered_draws_as_one_tree() {
    setup();
    // A cluster of its own, so the picture shows the topics' plain names.
    let broker = Broker::start_mock();
    for topic in ["payments", "payments.retry", "payments.dlq"] {
        broker.create_topic(topic, 1);
    }
    let producer = broker.producer();
    publish(&producer, FutureRecord::to("payments").key("pay-7").payload("{}")).await.expect("published");
    let first = receive(&broker.consumer("payments", "payments")).await;
    let _ = charge(&first, &producer, "payments.retry", None).await;
    let retry_consumer = broker.consumer("payments", "payments.retry");
    for attempt in 2..=3 {
        let message = receive(&retry_consumer).await;
        let give_up = (attempt == 3).then_some("payments.dlq");
        let _ = charge(&message, &producer, "payments.retry", give_up).await;
    }
    inspect(&receive(&broker.consumer("payments-dead-letters", "payments.dlq")).await);

    let producer_span = spans_to("payments")
        .into_iter()
        .find(|span| span.span_kind == SpanKind::Producer && span.name == "send payments")
        .expect("the payment's PRODUCER span");
    let trace = suite::spans_of_trace(producer_span.span_context.trace_id());
    let picture = tracehop::TracePicture::new().render(&trace);
    println!("{picture}");
    // Each line's kind and name, indented as drawn; ids and times change from run to run.
    let outline: Vec<String> = picture
        .lines()
        .filter(|line| line.trim_start().starts_with(['P', 'C']))
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            let head = line.trim_start().split(" span ").next().expect("a head");
            format!("{}{head}", " ".repeat(indent))
        })
        .collect();
    assert_eq!(
        outline,
        [
            "  Producer \"send payments\"",
            "    Consumer \"process payments\" [payments]",
            "      Producer \"send payments.retry\"",
            "        Consumer \"process payments.retry\" [payments]",
            "          Producer \"send payments.retry\"",
            "            Consumer \"process payments.retry\" [payments]",
            "              Client \"dead_letter payments.retry\"",
            "                Consumer \"process payments.dlq\" [payments-dlq]",
        ],
        "{picture}"
    );
    // The first attempt its producer; each retry the first creation; each later attempt its retry and the attempt
    // before; the dead letter the failed processing; its consumer the dead letter and the failed processing.
    assert_eq!(picture.matches("link -> span").count(), 1 + 2 + 2 * 2 + 1 + 2, "{picture}");
}

#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_counts_as_a_sent_message_and_a_dead_letter_as_a_settle() {
    use suite::metric_points;
    setup();
    let broker = Broker::start();
    let (payments, retries, dead_letters) =
        (unique_topic("payments"), unique_topic("payments.retry"), unique_topic("payments.dlq"));
    for topic in [&payments, &retries, &dead_letters] {
        broker.create_topic(topic, 1);
    }
    let producer = broker.producer();
    broker.send_raw(&payments, "pay-5", b"{}", &[]).await;
    let first = receive(&broker.consumer("payments", &payments)).await;
    let _ = charge(&first, &producer, &retries, None).await;
    let retried = receive(&broker.consumer("payments", &retries)).await;
    let _ = charge(&retried, &producer, &retries, Some(&dead_letters)).await;

    let operation = |point: &suite::MetricPoint| {
        point.attributes.iter().find(|(key, _)| key == "messaging.operation.name").map(|(_, value)| value.clone())
    };
    let sent = metric_points("messaging.client.sent.messages", &retries);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!((operation(&sent[0]), sent[0].count), (Some(Value::from("send")), 1));
    let settled: Vec<_> = metric_points("messaging.client.operation.duration", &retries)
        .into_iter()
        .filter(|point| operation(point) == Some(Value::from("dead_letter")))
        .collect();
    assert_eq!(settled.len(), 1, "one dead letter from the retry topic");
    assert_eq!(settled[0].count, 1);
    assert!(metric_points("messaging.client.sent.messages", &dead_letters).is_empty(), "a settle sends nothing");
}
