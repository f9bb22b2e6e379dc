//! RabbitMQ retry and dead-letter exchanges: a delivery republished with its body, properties and headers
//! through lapin's [`Channel`], as [`Republish`] and [`DeadLetter`] describe (part of
//! `tracehop::clients::rabbitmq`).

use std::fmt::Display;

use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Confirmation};

use crate::lineage::{dead_letter::start_dead_letter, retry::start_retry, Coordinate, Republication};
use crate::{DeadLetter, Republish};

/// Republishes `delivery` to the retry (or delay) `exchange` with `routing_key`, for another attempt
/// ([`Republish`]: the attempt header incremented, the trace headers replaced, a PRODUCER span that is a child
/// of the failed CONSUMER span and linked to the message's first creation), with its body, properties and other
/// headers (of any AMQP type; not `x-delivery-count`, the broker's count of the consumed delivery), and waits for
/// the publisher confirmation when the channel is in confirm mode.
/// The result is lapin's own; a failed publish, a `nack` or an unroutable return is also recorded on the span.
/// The delivery is not acknowledged.
///
/// ```no_run
/// # async fn example(channel: &lapin::Channel, delivery: &lapin::message::Delivery) -> lapin::Result<()> {
/// use tracehop::Republish;
///
/// // inside the failing handler: its CONSUMER span is current
/// tracehop::clients::rabbitmq::retry(channel, delivery, "payments.retry", "payments", Republish::new()).await?;
/// tracehop::clients::rabbitmq::ack(delivery, Default::default()).await?;
/// # Ok(()) }
/// ```
pub async fn retry(
    channel: &Channel,
    delivery: &Delivery,
    exchange: &str,
    routing_key: &str,
    republish: Republish<'_>,
) -> lapin::Result<Confirmation> {
    let republication = start_retry(delivery, exchange, Some(routing_key), &republish);
    republish_to(channel, delivery, exchange, routing_key, republication).await
}

/// Publishes `delivery` to the dead-letter `exchange` with `routing_key` ([`DeadLetter`]: a settle span
/// `dead_letter {exchange it came from}` linked to the failed CONSUMER span, the origin exchange, routing key,
/// delivery tag and error type on the span and in `tracehop-dead-letter-*` headers), with its body, properties
/// and other headers. The result is lapin's own, a failure also recorded on the span. The delivery is not
/// acknowledged.
///
/// ```no_run
/// # async fn example(channel: &lapin::Channel, delivery: &lapin::message::Delivery) -> lapin::Result<()> {
/// use tracehop::DeadLetter;
///
/// let dead_letter = DeadLetter::new("CardDeclined");
/// tracehop::clients::rabbitmq::dead_letter(channel, delivery, "payments.dlx", "payments", dead_letter).await?;
/// tracehop::clients::rabbitmq::ack(delivery, Default::default()).await?;
/// # Ok(()) }
/// ```
pub async fn dead_letter(
    channel: &Channel,
    delivery: &Delivery,
    exchange: &str,
    routing_key: &str,
    dead_letter: DeadLetter<'_>,
) -> lapin::Result<Confirmation> {
    let coordinates = vec![
        (Coordinate::RoutingKey, delivery.routing_key.as_str().to_owned()),
        (Coordinate::DeliveryTag, delivery.delivery_tag.to_string()),
    ];
    let republication = start_dead_letter(delivery, exchange, &dead_letter, coordinates);
    republish_to(channel, delivery, exchange, routing_key, republication).await
}

/// The broker's count of deliveries of the consumed message (a quorum queue's): a republished message is a new
/// one, and a classic queue would pass the stale count on for its consumer's span to read as the new one's.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

async fn republish_to(
    channel: &Channel,
    delivery: &Delivery,
    exchange: &str,
    routing_key: &str,
    republication: Republication,
) -> lapin::Result<Confirmation> {
    let mut headers = FieldTable::default();
    if let Some(consumed) = delivery.properties.headers() {
        for (key, value) in consumed.inner() {
            if key.as_str() != DELIVERY_COUNT_HEADER && republication.keeps(key.as_str()) {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    for (key, value) in republication.headers() {
        headers.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    }
    let properties = delivery.properties.clone().with_headers(headers);
    let publish = async move {
        channel
            .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), &delivery.data, properties)
            .await?
            .await
    };
    republication.run(publish, failure).await
}

fn failure(result: &lapin::Result<Confirmation>) -> Option<(&'static str, &dyn Display)> {
    match result {
        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => None,
        Ok(Confirmation::Ack(Some(_))) => {
            Some((super::client::RETURNED_ERROR_TYPE, &"the broker returned the message as unroutable"))
        }
        Ok(Confirmation::Nack(_)) => Some((super::client::NACKED_ERROR_TYPE, &"the broker refused the message (nack)")),
        Err(error) => Some((std::any::type_name::<lapin::Error>(), error)),
    }
}
