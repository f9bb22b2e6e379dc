//! README claims about AMQP deliveries that need no broker: what a consumer span captures of a delivery's headers.
//! Deliveries are made in memory (`Delivery::mock`), as lapin hands them to a consumer. `tests/README.md` maps
//! each README claim to its test.

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use opentelemetry::{Array, Value};
use suite::{attributes, expected, spans_to};

#[tracehop::traced_consumer(group = "claims", capture_headers("x-claims-*"))]
fn handle(delivery: &Delivery) {
    let _ = delivery;
}

/// README, "Captured headers": "Values that are not text (AMQP numbers, null Kafka values) are left out": of
/// the headers a pattern captures, only the string and byte-array ones are recorded.
#[test]
fn captured_amqp_headers_that_are_not_text_are_left_out() {
    suite::spans();
    let exchange = suite::unique_topic("claims-capture-amqp");
    let mut headers = FieldTable::default();
    headers.insert("x-claims-tenant".into(), AMQPValue::LongString(LongString::from("acme")));
    headers.insert("x-claims-region".into(), AMQPValue::ShortString("eu".into()));
    headers.insert("x-claims-retries".into(), AMQPValue::LongInt(3));
    headers.insert("x-claims-urgent".into(), AMQPValue::Boolean(true));
    let mut delivery = Delivery::mock(1, exchange.as_str().into(), "orders".into(), false, b"{}".to_vec());
    delivery.properties = BasicProperties::default().with_headers(headers);

    handle(&delivery);

    let span = &spans_to(&exchange)[0];
    let captured: Vec<(String, Value)> =
        attributes(span).into_iter().filter(|(key, _)| key.starts_with(tracehop::CAPTURED_HEADER_PREFIX)).collect();
    let text = |value: &str| Value::Array(Array::String(vec![value.to_owned().into()]));
    assert_eq!(
        captured,
        expected(&[
            ("messaging.header.x_claims_tenant", text("acme")),
            ("messaging.header.x_claims_region", text("eu"))
        ])
    );
}
