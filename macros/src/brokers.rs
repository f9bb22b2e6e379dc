//! The one table of the brokers the macros know: how `system = "..."` names each, how errors name it, its client
//! crate and the type names that identify its messages and records, whether it routes by a key, and the runtime
//! trait through which an expansion checks that its cargo feature is on. A further broker is one entry here:
//! the lists of brokers and types in errors are made from the table.

use crate::errors;

/// What the macros know of one broker.
pub(crate) struct Broker {
    /// As written in `system = "..."`.
    pub(crate) system: &'static str,
    /// As errors name it.
    pub(crate) name: &'static str,
    /// The client crate whose types are in `messages` and `records`, as errors name it.
    pub(crate) client: &'static str,
    /// The last path segment of the message types a consumer reads.
    pub(crate) messages: &'static [&'static str],
    /// The last path segment of the record types a producer writes the context into.
    pub(crate) records: &'static [&'static str],
    /// For a broker whose type names are common words (`Message`, `HeaderMap`): the path segments that make a
    /// type the broker's beyond doubt (`async_nats::Message`, `jetstream::Message`). A bare name is still taken
    /// for a message or record, but its broker is left to the runtime, which asks the type: a user's own
    /// `Message` must not be checked against NATS's feature. Empty when the names are the broker's alone.
    pub(crate) qualifiers: &'static [&'static str],
    /// Whether a producer publishes with a routing key (`routing_key = ...`).
    pub(crate) routes_by_key: bool,
    /// The runtime call that makes a further record's headers with the current context, for errors.
    pub(crate) new_headers: &'static str,
    /// The trait of `tracehop::__private` implemented when the broker's cargo feature is on.
    pub(crate) feature_trait: &'static str,
}

pub(crate) static BROKERS: [Broker; 3] = [
    Broker {
        system: "kafka",
        name: "Kafka",
        client: "rdkafka",
        messages: &["BorrowedMessage", "OwnedMessage"],
        records: &["FutureRecord", "BaseRecord"],
        qualifiers: &[],
        routes_by_key: false,
        new_headers: "tracehop::kafka::trace_headers()",
        feature_trait: "KafkaEnabled",
    },
    Broker {
        system: "rabbitmq",
        name: "RabbitMQ",
        client: "lapin",
        messages: &["Delivery"],
        records: &["BasicProperties", "AMQPProperties"],
        qualifiers: &[],
        routes_by_key: true,
        new_headers: "tracehop::rabbitmq::trace_properties()",
        feature_trait: "RabbitMqEnabled",
    },
    Broker {
        system: "nats",
        name: "NATS",
        client: "async-nats",
        // Core NATS's `async_nats::Message` and JetStream's `async_nats::jetstream::Message`.
        messages: &["Message"],
        records: &["HeaderMap"],
        qualifiers: &["async_nats", "jetstream"],
        routes_by_key: false,
        new_headers: "tracehop::nats::trace_headers()",
        feature_trait: "NatsEnabled",
    },
];

/// A broker of the table.
#[derive(Clone, Copy)]
pub(crate) struct System(&'static Broker);

impl System {
    /// The broker `system = "<name>"` names.
    pub(crate) fn named(name: &str) -> Option<Self> {
        BROKERS.iter().find(|broker| broker.system == name).map(System)
    }

    /// The broker whose message (or, for a producer, record) type ends in `type_name`.
    pub(crate) fn of_type(type_name: &syn::Ident, records: bool) -> Option<Self> {
        BROKERS
            .iter()
            .find(|broker| {
                let names = if records { broker.records } else { broker.messages };
                names.iter().any(|name| type_name == name)
            })
            .map(System)
    }

    /// Whether a type named `path` is this broker's beyond doubt: its names are the broker's alone, or the path
    /// names the broker's crate or module before the type's name.
    pub(crate) fn certain_of(self, path: &syn::Path) -> bool {
        let qualifiers = self.0.qualifiers;
        let before_name = path.segments.iter().rev().skip(1);
        qualifiers.is_empty() || before_name.into_iter().any(|segment| qualifiers.iter().any(|q| segment.ident == q))
    }

    pub(crate) fn broker(self) -> &'static Broker {
        self.0
    }

    pub(crate) fn name(self) -> &'static str {
        self.0.name
    }
}

impl PartialEq for System {
    fn eq(&self, other: &Self) -> bool {
        self.0.system == other.0.system
    }
}

impl Eq for System {}

/// `"kafka" and "rabbitmq"`, for errors listing the brokers.
pub(crate) fn system_names() -> String {
    let names: Vec<String> = BROKERS.iter().map(|broker| format!("\"{}\"", broker.system)).collect();
    errors::listed(&names, "and")
}

/// `rdkafka's `BorrowedMessage` or `OwnedMessage`, or lapin's `Delivery``: the message types a consumer can
/// take, for the error when it takes none.
pub(crate) fn message_types() -> String {
    let per_broker: Vec<String> = BROKERS
        .iter()
        .map(|broker| {
            let types: Vec<String> = broker.messages.iter().map(|name| format!("`{name}`")).collect();
            format!("{}'s {}", broker.client, errors::listed(&types, "or"))
        })
        .collect();
    per_broker.join(", or ")
}

/// `RabbitMQ`: the brokers that route by a key, for the error about a routing key given to another.
pub(crate) fn names_routing_by_key() -> String {
    let names: Vec<String> =
        BROKERS.iter().filter(|broker| broker.routes_by_key).map(|broker| broker.name.to_owned()).collect();
    errors::listed(&names, "or")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_are_found_by_system_name_and_by_type_name() {
        assert_eq!(System::named("kafka").map(System::name), Some("Kafka"));
        assert_eq!(System::named("rabbitmq").map(System::name), Some("RabbitMQ"));
        assert_eq!(System::named("nats").map(System::name), Some("NATS"));
        assert!(System::named("pulsar").is_none());
        let ident = |name: &str| syn::Ident::new(name, proc_macro2::Span::call_site());
        assert_eq!(System::of_type(&ident("OwnedMessage"), false).map(System::name), Some("Kafka"));
        assert_eq!(System::of_type(&ident("Delivery"), false).map(System::name), Some("RabbitMQ"));
        assert_eq!(System::of_type(&ident("BasicProperties"), true).map(System::name), Some("RabbitMQ"));
        assert_eq!(System::of_type(&ident("Message"), false).map(System::name), Some("NATS"));
        assert_eq!(System::of_type(&ident("HeaderMap"), true).map(System::name), Some("NATS"));
        assert!(System::of_type(&ident("Delivery"), true).is_none(), "a delivery is no record");
    }

    #[test]
    fn a_common_type_name_is_a_brokers_only_when_its_path_says_so() {
        let path = |text: &str| syn::parse_str::<syn::Path>(text).expect("a path");
        let nats = System::named("nats").expect("nats");
        assert!(nats.certain_of(&path("async_nats::Message")));
        assert!(nats.certain_of(&path("async_nats::jetstream::Message")));
        assert!(nats.certain_of(&path("jetstream::Message")));
        assert!(!nats.certain_of(&path("Message")), "a user's own `Message` is not NATS's");
        assert!(!nats.certain_of(&path("frames::Message")));
        let kafka = System::named("kafka").expect("kafka");
        assert!(kafka.certain_of(&path("OwnedMessage")), "Kafka's names are its own");
    }

    #[test]
    fn errors_list_the_brokers_of_the_table() {
        assert_eq!(system_names(), "\"kafka\", \"rabbitmq\" and \"nats\"");
        assert_eq!(
            message_types(),
            "rdkafka's `BorrowedMessage` or `OwnedMessage`, or lapin's `Delivery`, or async-nats's `Message`"
        );
        assert_eq!(names_routing_by_key(), "RabbitMQ");
    }
}
