//! RabbitMQ: its facts, settle verbs and the attributes of its redeliveries, always compiled; through lapin
//! (feature `rabbitmq`), its deliveries and properties as carriers (`carrier`, the public `tracehop::rabbitmq`) and
//! its traced channel and settle helpers (`client`, the public `tracehop::clients::rabbitmq`).

use super::Broker;
use crate::conventions as semconv;
use crate::Settlement;

#[cfg(feature = "rabbitmq")]
pub mod carrier;
#[cfg(feature = "rabbitmq")]
pub mod client;
pub(crate) mod death;
#[cfg(feature = "rabbitmq")]
mod lineage;

/// RabbitMQ.
pub(crate) struct RabbitMq;

impl Broker for RabbitMq {
    const SYSTEM: &'static str = "rabbitmq";
    const ROUTING_KEY_ATTRIBUTE: Option<&'static str> = Some(semconv::MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY);

    /// The default exchange has the empty name, which the conventions record as is; span names call it
    /// `amq.default`, as RabbitMQ itself does.
    fn span_name_destination(destination: &str) -> &str {
        if destination.is_empty() {
            "amq.default"
        } else {
            destination
        }
    }
}

// Named like the variants of an enum, which is how they read at the call site: `Settlement::Ack`.
#[allow(non_upper_case_globals)]
impl Settlement {
    /// A RabbitMQ `basic.nack`, the message failed (requeued or dead-lettered, as the call says): `nack`.
    pub const Nack: Settlement = Settlement::new("nack");
    /// A RabbitMQ `basic.reject`: `reject`.
    pub const Reject: Settlement = Settlement::new("reject");
}

/// Attribute holding how many times a RabbitMQ message was dead-lettered: the sum of the `count` fields of its
/// `x-death` header, over every queue and reason it lists. Absent without a readable `x-death` header.
pub const DEATH_COUNT_ATTRIBUTE: &str = "tracehop.message.death_count";
