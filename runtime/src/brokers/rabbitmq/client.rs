//! lapin's clients, traced: [`TracedChannel`] for publishes (a `Consumer`'s deliveries go through
//! [`ConsumerTracing::stream`](crate::clients::ConsumerTracing::stream)).

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel};

use crate::handler::Handler;
use crate::settle::{Settle, Settlement};
use crate::span::MessageSpan;

pub use super::lineage::{dead_letter, retry};

/// The handler of a [`TracedChannel`] made without one.
static PUBLISH: Handler = Handler::producer("tracehop::clients::rabbitmq::TracedChannel::basic_publish");

/// `error.type` of a publish the broker negatively acknowledged (a publisher-confirm `basic.nack`).
///
/// ```
/// assert_eq!(tracehop::clients::rabbitmq::NACKED_ERROR_TYPE, "nack");
/// ```
pub const NACKED_ERROR_TYPE: &str = "nack";

/// `error.type` of a mandatory publish the broker returned as unroutable (`basic.return`).
///
/// ```
/// assert_eq!(tracehop::clients::rabbitmq::RETURNED_ERROR_TYPE, "returned");
/// ```
pub const RETURNED_ERROR_TYPE: &str = "returned";

/// lapin's [`Channel`], each publish traced as `#[traced_producer]` traces a publish function: a PRODUCER span,
/// a child of the current context, named for the exchange (`send amq.default` for the default exchange), with
/// the routing key and the properties' attributes, whose context is written into the properties' headers (the
/// other headers and properties kept).
///
/// The span lasts until the broker acknowledges: with publisher confirms enabled on the channel
/// (`confirm_select`), until the confirm arrives; without, until the frame is written. A publish that fails,
/// a `basic.nack` ([`NACKED_ERROR_TYPE`]) and a mandatory message returned as unroutable
/// ([`RETURNED_ERROR_TYPE`]) mark it failed (status Error, `error.type`, an `exception` event).
///
/// ```no_run
/// # async fn example(channel: lapin::Channel) -> lapin::Result<()> {
/// use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
/// use lapin::BasicProperties;
/// use tracehop::clients::rabbitmq::TracedChannel;
///
/// channel.confirm_select(ConfirmSelectOptions::default()).await?;
/// let channel = TracedChannel::new(channel);
/// let properties = BasicProperties::default().with_message_id("ord-1".into());
/// let confirmation = channel.basic_publish("orders", "order.created", BasicPublishOptions::default(), b"{}", properties).await?;
/// assert!(confirmation.is_ack());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TracedChannel {
    channel: Channel,
    handler: &'static Handler,
}

impl TracedChannel {
    /// Traces the publishes on `channel`, under a handler whose `code.function.name` is
    /// `tracehop::clients::rabbitmq::TracedChannel::basic_publish`.
    ///
    /// ```no_run
    /// # async fn example(connection: lapin::Connection) -> lapin::Result<()> {
    /// let channel = tracehop::clients::rabbitmq::TracedChannel::new(connection.create_channel().await?);
    /// # Ok(()) }
    /// ```
    pub fn new(channel: Channel) -> Self {
        Self { channel, handler: &PUBLISH }
    }

    /// Traces the publishes under `handler` (a producer [`Handler`]): its function name, span name, fixed
    /// destination and routing key, as `#[traced_producer]` on that function would.
    ///
    /// ```no_run
    /// # fn example(channel: lapin::Channel) {
    /// use tracehop::clients::rabbitmq::TracedChannel;
    /// use tracehop::Handler;
    ///
    /// static PUBLISH_ORDER: Handler = Handler::producer("orders::publish");
    /// let channel = TracedChannel::new(channel).with_handler(&PUBLISH_ORDER);
    /// # }
    /// ```
    pub fn with_handler(mut self, handler: &'static Handler) -> Self {
        self.handler = handler;
        self
    }

    /// The channel underneath, for what is not traced (declarations, consumes, acknowledgements).
    ///
    /// ```no_run
    /// # async fn example(channel: tracehop::clients::rabbitmq::TracedChannel) {
    /// let _open = channel.inner().status().connected();
    /// # }
    /// ```
    pub fn inner(&self) -> &Channel {
        &self.channel
    }

    /// The channel underneath, giving up the tracing.
    ///
    /// ```no_run
    /// # fn example(channel: tracehop::clients::rabbitmq::TracedChannel) {
    /// let channel: lapin::Channel = channel.into_inner();
    /// # }
    /// ```
    pub fn into_inner(self) -> Channel {
        self.channel
    }

    /// [`Channel::basic_publish`] and the wait for its [`PublisherConfirm`](lapin::PublisherConfirm),
    /// inside a PRODUCER span; the confirmation (or the error) is lapin's own, unchanged.
    ///
    /// ```no_run
    /// # async fn example(channel: tracehop::clients::rabbitmq::TracedChannel) -> lapin::Result<()> {
    /// use lapin::options::BasicPublishOptions;
    /// use lapin::BasicProperties;
    ///
    /// channel.basic_publish("", "orders-queue", BasicPublishOptions::default(), b"{}", BasicProperties::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn basic_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        options: BasicPublishOptions,
        payload: &[u8],
        mut properties: BasicProperties,
    ) -> lapin::Result<Confirmation> {
        let span = MessageSpan::producer(self.handler)
            .describing(&properties)
            .destination(exchange)
            .routing_key(routing_key)
            .start();
        span.inject(&mut properties);
        let publish = async move {
            self.channel.basic_publish(exchange.into(), routing_key.into(), options, payload, properties).await?.await
        };
        span.instrument_with_outcome(publish, record_confirmation).await
    }
}

/// Records the broker's answer to a publish on the producer span.
fn record_confirmation(result: &lapin::Result<Confirmation>, span: &MessageSpan) {
    match result {
        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {}
        Ok(Confirmation::Ack(Some(_))) => {
            span.record_error(RETURNED_ERROR_TYPE, &"the broker returned the message as unroutable")
        }
        Ok(Confirmation::Nack(_)) => span.record_error(NACKED_ERROR_TYPE, &"the broker refused the message (nack)"),
        Err(error) => span.record_error(std::any::type_name::<lapin::Error>(), error),
    }
}

/// Acknowledges `delivery` (`basic.ack`) in a settle span ([`Settle`]: kind CLIENT, `messaging.operation.type =
/// settle`, `messaging.operation.name = ack`, a child of the current context). The call and its result are lapin's
/// own; an error is also recorded on the span.
///
/// ```no_run
/// # async fn example(delivery: lapin::message::Delivery) -> lapin::Result<()> {
/// use lapin::options::BasicAckOptions;
///
/// tracehop::clients::rabbitmq::ack(&delivery, BasicAckOptions::default()).await?;
/// # Ok(()) }
/// ```
pub async fn ack(delivery: &Delivery, options: BasicAckOptions) -> lapin::Result<bool> {
    Settle::new(Settlement::Ack, delivery).run_async(delivery.acker.ack(options)).await
}

/// Negatively acknowledges `delivery` (`basic.nack`, requeued or not as `options` say) in a settle span named
/// `nack`, as [`ack`] does.
///
/// ```no_run
/// # async fn example(delivery: lapin::message::Delivery) -> lapin::Result<()> {
/// use lapin::options::BasicNackOptions;
///
/// tracehop::clients::rabbitmq::nack(&delivery, BasicNackOptions { requeue: true, ..Default::default() }).await?;
/// # Ok(()) }
/// ```
pub async fn nack(delivery: &Delivery, options: BasicNackOptions) -> lapin::Result<bool> {
    Settle::new(Settlement::Nack, delivery).run_async(delivery.acker.nack(options)).await
}

/// Rejects `delivery` (`basic.reject`) in a settle span named `reject`, as [`ack`] does.
///
/// ```no_run
/// # async fn example(delivery: lapin::message::Delivery) -> lapin::Result<()> {
/// use lapin::options::BasicRejectOptions;
///
/// tracehop::clients::rabbitmq::reject(&delivery, BasicRejectOptions { requeue: false }).await?;
/// # Ok(()) }
/// ```
pub async fn reject(delivery: &Delivery, options: BasicRejectOptions) -> lapin::Result<bool> {
    Settle::new(Settlement::Reject, delivery).run_async(delivery.acker.reject(options)).await
}
