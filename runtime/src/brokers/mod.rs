//! The brokers tracehop knows. Each has a module of its own (`kafka`, `rabbitmq`, behind the cargo feature of
//! the same name) holding everything about it: its message and record types, how their headers are read and
//! written, and their semantic-convention attributes. This module names them ([`MessagingSystem`]) and lets the
//! macros' expansions check, at compile time and in the user's words, that a broker's feature is on.
//!
//! A further broker is its module here, a [`MessagingSystem`] variant with its facts, a feature trait below, one
//! entry in the macros' broker table (`macros/src/brokers.rs`) and its cargo feature.

use crate::conventions as semconv;

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;

/// The broker a message travels through: the `messaging.system` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessagingSystem {
    /// Apache Kafka (and Kafka-protocol brokers).
    Kafka,
    /// RabbitMQ.
    RabbitMq,
    /// Another broker, named as the semantic conventions name it.
    Other(&'static str),
}

impl MessagingSystem {
    /// The `messaging.system` value from the OpenTelemetry semantic conventions.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::RabbitMq => "rabbitmq",
            Self::Other(name) => name,
        }
    }

    /// How `destination` reads in a span name. RabbitMQ's default exchange has the empty name, which the
    /// conventions record as is; span names call it `amq.default`, as RabbitMQ itself does.
    pub fn span_name_destination(self, destination: &str) -> &str {
        match (self, destination) {
            (Self::RabbitMq, "") => "amq.default",
            _ => destination,
        }
    }

    /// The attribute a producer's routing key is recorded under, for the brokers that route by one:
    /// `messaging.rabbitmq.destination.routing_key` for RabbitMQ. Kafka records carry their own key instead.
    pub fn routing_key_attribute(self) -> Option<&'static str> {
        match self {
            Self::RabbitMq => Some(semconv::MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY),
            Self::Kafka | Self::Other(_) => None,
        }
    }
}

/// The cargo features tracehop was built with, as the expansions check them; not a public API.
#[doc(hidden)]
pub struct Features;

/// Declares the trait an expansion names for a broker: implemented for [`Features`] only when the broker's
/// cargo feature is on, so that otherwise the compiler reports, at the user's token, which feature to enable.
macro_rules! feature_trait {
    ($trait:ident, $feature:literal, $system:ident, message = $message:literal, label = $label:literal, note = $note:literal) => {
        #[doc = concat!("Implemented when tracehop's `", $feature, "` feature is on.")]
        #[doc(hidden)]
        #[diagnostic::on_unimplemented(message = $message, label = $label, note = $note)]
        pub trait $trait {
            /// The broker.
            const SYSTEM: MessagingSystem;
        }

        #[cfg(feature = $feature)]
        impl $trait for Features {
            const SYSTEM: MessagingSystem = MessagingSystem::$system;
        }
    };
}

feature_trait!(
    KafkaEnabled,
    "kafka",
    Kafka,
    message = "this handler traces Kafka, but tracehop's `kafka` feature is off",
    label = "needs tracehop's `kafka` feature",
    note = "enable it in Cargo.toml: `tracehop = {{ version = \"...\", features = [\"kafka\"] }}`"
);

feature_trait!(
    RabbitMqEnabled,
    "rabbitmq",
    RabbitMq,
    message = "this handler traces RabbitMQ, but tracehop's `rabbitmq` feature is off",
    label = "needs tracehop's `rabbitmq` feature",
    note = "enable it in Cargo.toml: `tracehop = {{ version = \"...\", features = [\"rabbitmq\"] }}`"
);

/// Implemented when exactly one broker feature is on: the broker of a producer whose signature names none.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "tracehop cannot tell which broker this #[traced_producer] publishes to",
    label = "no record parameter says which broker this publishes to",
    note = "more than one (or no) broker feature of tracehop is on; write `system = \"kafka\"` or `system = \"rabbitmq\"` in the attribute"
)]
pub trait SoleBroker {
    /// The broker.
    const SYSTEM: MessagingSystem;
}

#[cfg(all(feature = "kafka", not(feature = "rabbitmq")))]
impl SoleBroker for Features {
    const SYSTEM: MessagingSystem = MessagingSystem::Kafka;
}

#[cfg(all(feature = "rabbitmq", not(feature = "kafka")))]
impl SoleBroker for Features {
    const SYSTEM: MessagingSystem = MessagingSystem::RabbitMq;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sampled producer's context with a `tracestate`, as a record's headers would carry it, with tracehop's
    /// propagators installed:
    /// attach it to write it with the broker helpers.
    pub(crate) fn producer_context() -> opentelemetry::Context {
        use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
        crate::install_propagator();
        let span_context = SpanContext::new(
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
            SpanId::from(0x00f067aa0ba902b7),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("congo", "t61rcWkgMzE")]).expect("a valid tracestate"),
        );
        opentelemetry::Context::new().with_remote_span_context(span_context)
    }

    #[test]
    fn each_broker_states_its_own_facts() {
        assert_eq!(
            [MessagingSystem::Kafka, MessagingSystem::RabbitMq, MessagingSystem::Other("frames")]
                .map(MessagingSystem::as_str),
            ["kafka", "rabbitmq", "frames"]
        );
        assert_eq!(MessagingSystem::RabbitMq.span_name_destination(""), "amq.default");
        assert_eq!(MessagingSystem::RabbitMq.span_name_destination("orders"), "orders");
        assert_eq!(MessagingSystem::Kafka.span_name_destination(""), "");
        assert_eq!(
            MessagingSystem::RabbitMq.routing_key_attribute(),
            Some("messaging.rabbitmq.destination.routing_key")
        );
        assert_eq!(MessagingSystem::Kafka.routing_key_attribute(), None);
        assert_eq!(MessagingSystem::Other("frames").routing_key_attribute(), None);
    }
}
