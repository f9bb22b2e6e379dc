//! Procedural macros of [tracehop](https://docs.rs/tracehop): `#[traced_consumer]` and `#[traced_producer]`.
//!
//! Depend on `tracehop`, which re-exports them and holds everything they expand to. This crate knows syntax
//! only: it parses the attribute and the function (`options`, `signature`), validates them together
//! (`validate`), collecting every mistake at the token that is wrong (`errors`), and expands into calls of
//! tracehop's public API (`expand`).

mod brokers;
mod errors;
mod expand;
mod options;
mod signature;
mod validate;

use proc_macro::TokenStream;

use crate::options::Role;

/// Traces a message handler: a CONSUMER span that continues the producer's trace.
///
/// See the `tracehop` crate for the options and what the span records.
#[proc_macro_attribute]
pub fn traced_consumer(attribute: TokenStream, item: TokenStream) -> TokenStream {
    expand::traced(Role::Consumer, attribute.into(), item.into()).into()
}

/// Traces a publish function: a PRODUCER span whose context reaches the published record's headers.
///
/// See the `tracehop` crate for the options and how the context reaches the record.
#[proc_macro_attribute]
pub fn traced_producer(attribute: TokenStream, item: TokenStream) -> TokenStream {
    expand::traced(Role::Producer, attribute.into(), item.into()).into()
}
