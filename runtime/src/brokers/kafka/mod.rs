//! Kafka: its facts and settle verbs, always compiled; through rdkafka (feature `kafka`), its messages and records
//! as carriers (`carrier`, the public `tracehop::kafka`) and its traced clients (`client`, the public
//! `tracehop::clients::kafka`).

use super::Broker;
use crate::Settlement;

#[cfg(feature = "kafka")]
pub mod carrier;
#[cfg(feature = "kafka")]
pub mod client;
#[cfg(feature = "kafka")]
mod commit;
#[cfg(feature = "kafka")]
mod lineage;
#[cfg(feature = "kafka")]
mod transaction;

/// Apache Kafka, and the brokers that speak its protocol.
pub(crate) struct Kafka;

impl Broker for Kafka {
    const SYSTEM: &'static str = "kafka";
}

// Named like the variants of an enum, which is how they read at the call site: `Settlement::Commit`.
#[allow(non_upper_case_globals)]
impl Settlement {
    /// A Kafka offset commit past the message: `commit`.
    pub const Commit: Settlement = Settlement::new("commit");
    /// A Kafka offset stored for the next automatic commit: `store_offset`.
    pub const StoreOffset: Settlement = Settlement::new("store_offset");
    /// A consumer's offsets committed inside a producer's transaction (`send_offsets_to_transaction`):
    /// `send_offsets`.
    pub const SendOffsets: Settlement = Settlement::new("send_offsets");
}
