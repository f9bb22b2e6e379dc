//! What the macros need to know about the annotated function: which parameter is the message (consumer) or
//! the record (producer).

use syn::{FnArg, Ident, Pat, PatIdent, PatType, Signature, Type};

use crate::errors::Errors;
use crate::options::{Role, System};

/// Message types a consumer can read, by the last segment of their path, with their broker.
const CONSUMED: &[(&str, System)] =
    &[("BorrowedMessage", System::Kafka), ("OwnedMessage", System::Kafka), ("Delivery", System::RabbitMq)];

/// Record types a producer can write the context into.
const PUBLISHED: &[(&str, System)] = &[("FutureRecord", System::Kafka), ("BaseRecord", System::Kafka)];

const CONSUMED_LIST: &str = "rdkafka's `BorrowedMessage` or `OwnedMessage` (by value or by reference)";

/// The parameter holding the message (consumer) or record (producer).
pub(crate) struct MessageParameter {
    pub(crate) name: Ident,
    pub(crate) system: System,
    /// The binding is `mut`, or the type is `&mut`, so the expansion need not rebind it to write into it.
    pub(crate) writable: bool,
    /// The type is a reference: pass the binding itself, not a reference to it.
    pub(crate) by_reference: bool,
}

pub(crate) fn message_parameter(role: Role, signature: &Signature, errors: &mut Errors) -> Option<MessageParameter> {
    let known = match role {
        Role::Consumer => CONSUMED,
        Role::Producer => PUBLISHED,
    };
    let mut found: Option<MessageParameter> = None;
    for argument in &signature.inputs {
        let FnArg::Typed(PatType { pat, ty, .. }) = argument else {
            continue;
        };
        let Some((system, by_reference, mutable_reference)) = recognise(ty, known) else {
            continue;
        };
        let Pat::Ident(PatIdent { ident, mutability, by_ref: None, subpat: None, .. }) = &**pat else {
            errors.at(pat, "bind the message to a plain name (like `message`) so tracehop can read it");
            continue;
        };
        if found.is_some() {
            let what = match role {
                Role::Consumer => "a second message parameter: a handler takes one message",
                Role::Producer => "a second record parameter: a traced producer publishes one record it receives; build further records in the body with `tracehop::kafka::trace_headers()`",
            };
            errors.at(argument, what);
            continue;
        }
        found = Some(MessageParameter {
            name: ident.clone(),
            system,
            writable: mutability.is_some() || mutable_reference,
            by_reference,
        });
    }
    if found.is_none() && role == Role::Consumer {
        errors
            .at(&signature.ident, format!("#[traced_consumer] needs a parameter holding the message: {CONSUMED_LIST}"));
    }
    found
}

/// The broker of `ty` when it is one of `known`, whether it is a reference, and whether a mutable one.
fn recognise(ty: &Type, known: &[(&str, System)]) -> Option<(System, bool, bool)> {
    match ty {
        Type::Reference(reference) => {
            recognise(&reference.elem, known).map(|(system, _, _)| (system, true, reference.mutability.is_some()))
        }
        Type::Paren(inner) => recognise(&inner.elem, known),
        Type::Group(inner) => recognise(&inner.elem, known),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last()?;
            known.iter().find(|(name, _)| last.ident == name).map(|(_, system)| (*system, false, false))
        }
        _ => None,
    }
}
