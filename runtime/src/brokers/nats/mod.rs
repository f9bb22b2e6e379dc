//! NATS, core and JetStream: its facts, settle verbs and the reading of JetStream's acknowledgement subjects,
//! always compiled; through async-nats (feature `nats`), its messages and header maps as carriers (`carrier`, the
//! public `tracehop::nats`) and its traced clients and settle helpers (`client`, the public
//! `tracehop::clients::nats`).

#[cfg(feature = "nats")]
mod ack_subject;

#[cfg(feature = "nats")]
pub(crate) use ack_subject::AckSubject;

use super::Broker;
use crate::Settlement;

#[cfg(feature = "nats")]
pub mod carrier;
#[cfg(feature = "nats")]
pub mod client;
#[cfg(feature = "nats")]
mod lineage;

/// NATS.
pub(crate) struct Nats;

/// The prefix of the subjects a requester receives its replies on (`_INBOX.<unique>`).
const INBOX_PREFIX: &str = "_INBOX.";

impl Broker for Nats {
    // As the OpenTelemetry Java agent and the draft NATS conventions (semantic-conventions #2297) name it.
    const SYSTEM: &'static str = "nats";

    /// A reply inbox is unique per request: span names, which must stay few, call every one `_INBOX`.
    fn span_name_destination(destination: &str) -> &str {
        if destination.starts_with(INBOX_PREFIX) {
            "_INBOX"
        } else {
            destination
        }
    }

    /// A subject with a wildcard token (`orders.*`, `orders.>`) names many subjects: a subscription's template.
    fn is_destination_template(destination: &str) -> bool {
        destination.split('.').any(|token| token == "*" || token == ">")
    }
}

// Named like the variants of an enum, which is how they read at the call site: `Settlement::Nak`.
#[allow(non_upper_case_globals)]
impl Settlement {
    /// A JetStream `-NAK`, the message to be redelivered (after a delay, when one is given): `nak`.
    pub const Nak: Settlement = Settlement::new("nak");
    /// A JetStream `+TERM`, the message never to be redelivered: `term`.
    pub const Term: Settlement = Settlement::new("term");
    /// A JetStream `+WPI`, more time asked for the message before its redelivery: `in_progress`.
    pub const InProgress: Settlement = Settlement::new("in_progress");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inboxes_read_as_one_name_and_wildcards_as_templates() {
        assert_eq!(Nats::span_name_destination("_INBOX.abc.def"), "_INBOX");
        assert_eq!(Nats::span_name_destination("orders.created"), "orders.created");
        assert_eq!(Nats::span_name_destination("_INBOXES"), "_INBOXES");
        assert!(Nats::is_destination_template("orders.*"));
        assert!(Nats::is_destination_template("orders.>"));
        assert!(Nats::is_destination_template("*.created"));
        assert!(!Nats::is_destination_template("orders.created"));
        assert!(!Nats::is_destination_template("orders*.created"), "a `*` inside a token is a literal");
    }
}
