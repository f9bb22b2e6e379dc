//! The brokers tracehop knows, each a folder of its own (`kafka/`, `rabbitmq/`, `nats/`) holding everything about
//! it: its facts, answered through [`Broker`] and compiled always (a span names its broker whether or not the broker's
//! feature is on); its message and record types, how their headers are read and written and their
//! semantic-convention attributes (`carrier.rs`, the public `tracehop::<broker>` module); its traced clients and
//! settle helpers (`client.rs`, the public `tracehop::clients::<broker>` module), both behind its cargo feature.
//!
//! Generic code asks a broker through [`MessagingSystem`], whose answers the one list below (`brokers! { ... }`)
//! generates, with the traits the macros' expansions check a broker's feature by. A further broker is its folder,
//! one row of that list, one row of the macros' broker table (`macros/src/brokers.rs`) and its cargo feature.

/// What generic code asks of a broker: its facts, and its answers to the questions brokers answer differently.
pub(crate) trait Broker {
    /// The `messaging.system` value from the OpenTelemetry semantic conventions.
    const SYSTEM: &'static str;

    /// The attribute a producer's routing key is recorded under, for the brokers that route by one.
    const ROUTING_KEY_ATTRIBUTE: Option<&'static str> = None;

    /// How `destination` reads in a span name.
    fn span_name_destination(destination: &str) -> &str {
        destination
    }

    /// Whether `destination`, as a handler names it, stands for many destinations (a wildcard subscription): then
    /// a span is named for it and records it as `messaging.destination.template`, and records the message's own
    /// destination as `messaging.destination.name`.
    fn is_destination_template(_destination: &str) -> bool {
        false
    }
}

/// The cargo features tracehop was built with, as the expansions check them; not a public API.
#[doc(hidden)]
pub struct Features;

/// Where an expansion starts a span, named through a broker's feature trait (`<Features as KafkaEnabled>::Spans`)
/// when it knows the broker: a type only when that feature is on, so that with it off the compiler reports that
/// alone, not also everything the expansion does with the span; not a public API. Its functions are in
/// `expansion.rs`.
#[doc(hidden)]
pub struct Spans;

/// How many broker features are on: [`SoleBroker`] is implemented for `BrokerCount<1>` only.
#[doc(hidden)]
pub struct BrokerCount<const ENABLED: usize>;

/// The broker features that are on, in the list's order; its length picks the `BrokerCount` of the build.
#[doc(hidden)]
pub type EnabledBrokers = BrokerCount<{ ENABLED.len() }>;

/// Implemented when exactly one broker feature is on: the broker of a producer whose signature names none.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "tracehop cannot tell which broker this #[traced_producer] publishes to",
    label = "no record parameter says which broker this publishes to",
    note = "more than one (or no) broker feature of tracehop is on; name the broker in the attribute, as in `system = \"kafka\"`"
)]
pub trait SoleBroker {
    /// The broker.
    const SYSTEM: MessagingSystem;
}

// Not offered as a fix: the count is the build's features, not something to write.
#[diagnostic::do_not_recommend]
impl SoleBroker for BrokerCount<1> {
    const SYSTEM: MessagingSystem = match ENABLED {
        [sole] => *sole,
        _ => MessagingSystem::Other(""),
    };
}

/// Declares the brokers: the [`MessagingSystem`] variants and their answers, each broker's public modules, the
/// feature trait each expansion names, [`ENABLED`], and the per-broker notes of the compiler's errors about
/// messages and records (`with_broker_notes!`). One row per broker: its variant and documentation, its folder and
/// its [`Broker`], its cargo feature, the feature trait with the words the compiler says when that feature is off,
/// and which of its types tracehop reads and writes.
macro_rules! brokers {
    ($d:tt $(
        $(#[doc = $doc:literal])*
        $variant:ident => $folder:ident :: $broker:ident, feature $feature:literal,
        $enabled:ident { message = $message:literal, label = $label:literal, note = $note:literal },
        reads $reads:literal, writes $writes:literal
    );* $(;)?) => {
        $(pub(crate) mod $folder;)*

        /// The broker a message travels through: the `messaging.system` attribute.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum MessagingSystem {
            $($(#[doc = $doc])* $variant,)*
            /// Another broker, named as the semantic conventions name it.
            Other(&'static str),
        }

        impl MessagingSystem {
            /// The `messaging.system` value from the OpenTelemetry semantic conventions.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => <$folder::$broker as Broker>::SYSTEM,)*
                    Self::Other(name) => name,
                }
            }

            /// How `destination` reads in a span name: as is, but RabbitMQ's default exchange, whose empty name
            /// the conventions record as is and span names call `amq.default`, as RabbitMQ itself does.
            pub fn span_name_destination(self, destination: &str) -> &str {
                match self {
                    $(Self::$variant => <$folder::$broker as Broker>::span_name_destination(destination),)*
                    Self::Other(_) => destination,
                }
            }

            /// Whether `destination`, as a handler names it, stands for many destinations: a NATS subject with a
            /// wildcard token (`orders.*`, `orders.>`). A span is then named for it and records it as
            /// `messaging.destination.template`, beside the message's own subject.
            pub fn is_destination_template(self, destination: &str) -> bool {
                match self {
                    $(Self::$variant => <$folder::$broker as Broker>::is_destination_template(destination),)*
                    Self::Other(_) => false,
                }
            }

            /// The attribute a producer's routing key is recorded under, for the brokers that route by one
            /// (`messaging.rabbitmq.destination.routing_key` for RabbitMQ).
            pub fn routing_key_attribute(self) -> Option<&'static str> {
                match self {
                    $(Self::$variant => <$folder::$broker as Broker>::ROUTING_KEY_ATTRIBUTE,)*
                    Self::Other(_) => None,
                }
            }
        }

        /// Each broker's public module of carriers, `tracehop::<broker>`, for the brokers whose feature is on.
        pub mod carriers {
            $(#[cfg(feature = $feature)] pub use super::$folder::carrier as $folder;)*
        }

        /// Each broker's public module of traced clients, `tracehop::clients::<broker>`, for the brokers whose
        /// feature is on.
        pub mod clients {
            $(#[cfg(feature = $feature)] pub use super::$folder::client as $folder;)*
        }

        /// The brokers' feature traits, for the expansions to name through `tracehop::__private`.
        pub mod feature_traits {
            pub use super::{$($enabled),*};
        }

        /// The brokers whose cargo feature is on.
        const ENABLED: &[MessagingSystem] = &[$(#[cfg(feature = $feature)] MessagingSystem::$variant,)*];

        /// Puts `#[diagnostic::on_unimplemented]` with the given message, label and note on a trait, and before
        /// that note one per broker saying which of its types tracehop `reads` (consumed messages) or `writes`
        /// (published records).
        macro_rules! with_broker_notes {
            (reads, $d($d rest:tt)*) => { $d crate::brokers::with_broker_notes!(@notes [$($reads),*] $d($d rest)*); };
            (writes, $d($d rest:tt)*) => { $d crate::brokers::with_broker_notes!(@notes [$($writes),*] $d($d rest)*); };
            (@notes [$d($d broker:literal),*]
                message = $d message:literal, label = $d label:literal, note = $d note:literal; $d item:item) => {
                #[diagnostic::on_unimplemented(
                    message = $d message, label = $d label, $d(note = $d broker,)* note = $d note
                )]
                $d item
            };
        }
        pub(crate) use with_broker_notes;

        $(
            #[doc = concat!("Implemented when tracehop's `", $feature, "` feature is on; not a public API.")]
            #[doc(hidden)]
            #[diagnostic::on_unimplemented(message = $message, label = $label, note = $note)]
            pub trait $enabled {
                /// The broker.
                const SYSTEM: MessagingSystem;
                /// [`Spans`].
                type Spans;
            }

            #[cfg(feature = $feature)]
            impl $enabled for Features {
                const SYSTEM: MessagingSystem = MessagingSystem::$variant;
                type Spans = Spans;
            }
        )*
    };
}

// `$` first: the list also defines a macro, whose own variables it spells `$d`.
brokers! { $
    /// Apache Kafka (and Kafka-protocol brokers).
    Kafka => kafka::Kafka, feature "kafka", KafkaEnabled {
        message = "this handler traces Kafka, but tracehop's `kafka` feature is off",
        label = "needs tracehop's `kafka` feature",
        note = "enable it in Cargo.toml: `tracehop = {{ version = \"...\", features = [\"kafka\"] }}`"
    },
    reads "tracehop reads rdkafka's `BorrowedMessage` and `OwnedMessage` (feature `kafka`)",
    writes "tracehop writes into rdkafka's `FutureRecord` and `BaseRecord` (feature `kafka`)";
    /// RabbitMQ.
    RabbitMq => rabbitmq::RabbitMq, feature "rabbitmq", RabbitMqEnabled {
        message = "this handler traces RabbitMQ, but tracehop's `rabbitmq` feature is off",
        label = "needs tracehop's `rabbitmq` feature",
        note = "enable it in Cargo.toml: `tracehop = {{ version = \"...\", features = [\"rabbitmq\"] }}`"
    },
    reads "tracehop reads lapin's `Delivery` (feature `rabbitmq`)",
    writes "tracehop writes into lapin's `BasicProperties` (feature `rabbitmq`)";
    /// NATS, core and JetStream.
    Nats => nats::Nats, feature "nats", NatsEnabled {
        message = "this handler traces NATS, but tracehop's `nats` feature is off",
        label = "needs tracehop's `nats` feature",
        note = "enable it in Cargo.toml: `tracehop = {{ version = \"...\", features = [\"nats\"] }}`"
    },
    reads "tracehop reads async-nats's `Message` and `jetstream::Message` (feature `nats`)",
    writes "tracehop writes into async-nats's `HeaderMap` (feature `nats`)";
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
            [
                MessagingSystem::Kafka,
                MessagingSystem::RabbitMq,
                MessagingSystem::Nats,
                MessagingSystem::Other("frames")
            ]
            .map(MessagingSystem::as_str),
            ["kafka", "rabbitmq", "nats", "frames"]
        );
        assert_eq!(MessagingSystem::Nats.span_name_destination("_INBOX.a.b"), "_INBOX");
        assert!(MessagingSystem::Nats.is_destination_template("orders.*"));
        assert!(!MessagingSystem::Kafka.is_destination_template("orders.*"), "a Kafka topic name is a name");
        assert!(!MessagingSystem::Other("frames").is_destination_template("orders.>"));
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

    #[test]
    fn the_enabled_brokers_are_those_whose_feature_is_on() {
        let expected: Vec<MessagingSystem> = [
            cfg!(feature = "kafka").then_some(MessagingSystem::Kafka),
            cfg!(feature = "rabbitmq").then_some(MessagingSystem::RabbitMq),
            cfg!(feature = "nats").then_some(MessagingSystem::Nats),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(ENABLED, expected.as_slice());
    }
}
