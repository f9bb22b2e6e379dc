//! The one table of the brokers the macros know: how `system = "..."` names each, how errors name it, the type
//! names that identify its messages and records, whether it routes by a key, and the runtime trait through
//! which an expansion checks that its cargo feature is on. A further broker is one entry here.

/// What the macros know of one broker.
pub(crate) struct Broker {
    /// As written in `system = "..."`.
    pub(crate) system: &'static str,
    /// As errors name it.
    pub(crate) name: &'static str,
    /// The last path segment of the message types a consumer reads.
    pub(crate) messages: &'static [&'static str],
    /// The last path segment of the record types a producer writes the context into.
    pub(crate) records: &'static [&'static str],
    /// Whether a producer publishes with a routing key (`routing_key = ...`).
    pub(crate) routes_by_key: bool,
    /// The trait of `tracehop::__private` implemented when the broker's cargo feature is on.
    pub(crate) feature_trait: &'static str,
}

pub(crate) static BROKERS: [Broker; 2] = [
    Broker {
        system: "kafka",
        name: "Kafka",
        messages: &["BorrowedMessage", "OwnedMessage"],
        records: &["FutureRecord", "BaseRecord"],
        routes_by_key: false,
        feature_trait: "KafkaEnabled",
    },
    Broker {
        system: "rabbitmq",
        name: "RabbitMQ",
        messages: &["Delivery"],
        records: &["BasicProperties", "AMQPProperties"],
        routes_by_key: true,
        feature_trait: "RabbitMqEnabled",
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
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_are_found_by_system_name_and_by_type_name() {
        assert_eq!(System::named("kafka").map(System::name), Some("Kafka"));
        assert_eq!(System::named("rabbitmq").map(System::name), Some("RabbitMQ"));
        assert!(System::named("nats").is_none());
        let ident = |name: &str| syn::Ident::new(name, proc_macro2::Span::call_site());
        assert_eq!(System::of_type(&ident("OwnedMessage"), false).map(System::name), Some("Kafka"));
        assert_eq!(System::of_type(&ident("Delivery"), false).map(System::name), Some("RabbitMQ"));
        assert_eq!(System::of_type(&ident("BasicProperties"), true).map(System::name), Some("RabbitMQ"));
        assert!(System::of_type(&ident("Delivery"), true).is_none(), "a delivery is no record");
        assert_eq!(system_names(), "\"kafka\" and \"rabbitmq\"");
    }
}
