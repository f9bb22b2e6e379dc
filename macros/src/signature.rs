//! What the macros need to know about the annotated function: which parameter is the message (consumer) or
//! the record (producer), and whether the function can be traced at all.

use syn::{FnArg, Ident, Pat, PatIdent, PatType, Signature, Type};

use crate::brokers::{self, System};
use crate::errors::Errors;
use crate::options::Role;

/// The parameter holding the message (consumer) or record (producer).
pub(crate) struct MessageParameter {
    pub(crate) name: Ident,
    /// Known from the type's name; `None` for a parameter named with `message = ...`/`record = ...` whose type
    /// tracehop does not know by name (an alias, another broker's message).
    pub(crate) system: Option<System>,
    /// The type names its broker here; errors about `system` point at it.
    pub(crate) ty: Type,
    /// The binding is `mut` or the type is `&mut`: the expansion need not rebind it to write into it.
    pub(crate) writable: bool,
    /// The type is a reference: pass the binding itself, not a reference to it.
    pub(crate) by_reference: bool,
    /// A batch of messages (`&[M]`, `Vec<M>`, `&Vec<M>`) rather than one.
    pub(crate) batch: bool,
}

/// Rejects functions whose body cannot run inside a span.
pub(crate) fn check_traceable(role: Role, signature: &Signature, errors: &mut Errors) {
    if let Some(constness) = &signature.constness {
        errors.at(
            constness,
            format!(
                "#[{}] cannot go on a `const fn`: its span starts and ends at run time; remove `const`",
                role.attribute()
            ),
        );
    }
    if let Some(abi) = &signature.abi {
        errors.at(
            abi,
            format!(
                "#[{}] cannot go on an `extern` function: a panic recorded on its span would unwind across the foreign boundary; trace a Rust function it calls instead",
                role.attribute()
            ),
        );
    }
}

/// The parameter holding the message or record: the one `explicit` names (`message = name`, `record = name`),
/// else the one whose type tracehop knows by name.
pub(crate) fn message_parameter(
    role: Role,
    signature: &Signature,
    explicit: Option<&Ident>,
    errors: &mut Errors,
) -> Option<MessageParameter> {
    let records = role == Role::Producer;
    let (noun, verb) = match role {
        Role::Consumer => ("message", "read the trace context from it"),
        Role::Producer => ("record", "write the trace context into it"),
    };
    let mut found: Option<MessageParameter> = None;
    let mut rejected = false;
    for argument in &signature.inputs {
        let FnArg::Typed(PatType { pat, ty, .. }) = argument else { continue };
        let shape = match explicit {
            Some(explicit) => match &**pat {
                Pat::Ident(binding) if binding.ident == *explicit => {
                    recognise(ty, records).unwrap_or_else(|| shape_of(ty))
                }
                _ => continue,
            },
            None => match recognise(ty, records) {
                Some(shape) => shape,
                None => continue,
            },
        };
        if found.is_some() || rejected {
            let what = match role {
                Role::Consumer => "a second message parameter: a handler takes one message, or one batch of messages (`&[M]`, `Vec<M>`), not both; pass the others as a batch or handle them in the body".to_owned(),
                Role::Producer => {
                    let new_headers = shape
                        .system
                        .map_or("tracehop::inject_current_context(&mut record)", |system| system.broker().new_headers);
                    format!("a second record parameter: tracehop writes the context into one record it receives; build further records in the body with `{new_headers}`")
                }
            };
            errors.at(argument, what);
            continue;
        }
        let Pat::Ident(PatIdent { ident, mutability, by_ref: None, subpat: None, .. }) = &**pat else {
            errors.at(pat, format!("bind the {noun} to a plain name (like `{noun}`) so tracehop can {verb}"));
            rejected = true;
            continue;
        };
        if role == Role::Producer && shape.batch {
            errors.at(
                ty,
                "#[traced_producer] writes the context into one record; to publish several under one span, build them in the body and give each its own creation context with `tracehop::inject_creation_context(&mut record)`",
            );
            rejected = true;
            continue;
        }
        if role == Role::Producer && shape.by_reference && !shape.mutable_reference {
            errors.at(
                ty,
                "tracehop writes the trace context into the record's headers: take the record by value or as `&mut`",
            );
            rejected = true;
            continue;
        }
        found = Some(MessageParameter {
            name: ident.clone(),
            system: shape.system,
            ty: (**ty).clone(),
            writable: mutability.is_some() || shape.mutable_reference,
            by_reference: shape.by_reference,
            batch: shape.batch,
        });
    }
    if let (None, Some(explicit)) = (&found, explicit) {
        if !rejected {
            errors.at(explicit, format!("no parameter named `{explicit}`: name the parameter that holds the {noun}"));
        }
        return None;
    }
    if found.is_none() && !rejected && role == Role::Consumer {
        errors.at(
            &signature.ident,
            format!(
                "#[traced_consumer] needs a parameter holding the message: {} (by value or by reference), or a \
                 batch of them (`&[M]`, `Vec<M>`, `&Vec<M>`)",
                brokers::message_types()
            ),
        );
    }
    found
}

struct Shape {
    system: Option<System>,
    by_reference: bool,
    mutable_reference: bool,
    batch: bool,
}

/// The broker of `ty` when it is a message type (a record type, with `records`) of the brokers' table, and how
/// it is passed.
fn recognise(ty: &Type, records: bool) -> Option<Shape> {
    match ty {
        Type::Reference(reference) => recognise(&reference.elem, records).map(|shape| Shape {
            by_reference: true,
            mutable_reference: reference.mutability.is_some(),
            ..shape
        }),
        Type::Paren(inner) => recognise(&inner.elem, records),
        Type::Group(inner) => recognise(&inner.elem, records),
        Type::Slice(slice) => recognise(&slice.elem, records).filter(|shape| !shape.batch).map(|shape| Shape {
            batch: true,
            by_reference: false,
            mutable_reference: false,
            ..shape
        }),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last()?;
            if last.ident == "Vec" {
                let syn::PathArguments::AngleBracketed(arguments) = &last.arguments else { return None };
                let Some(syn::GenericArgument::Type(element)) = arguments.args.first() else { return None };
                return recognise(element, records).filter(|shape| !shape.batch).map(|shape| Shape {
                    batch: true,
                    by_reference: false,
                    mutable_reference: false,
                    ..shape
                });
            }
            System::of_type(&last.ident, records).map(|system| Shape {
                system: system.certain_of(&path.path).then_some(system),
                by_reference: false,
                mutable_reference: false,
                batch: false,
            })
        }
        _ => None,
    }
}

/// How a parameter of a type tracehop does not know by name is passed: by reference or not, one or a batch.
fn shape_of(ty: &Type) -> Shape {
    match ty {
        Type::Reference(reference) => {
            Shape { by_reference: true, mutable_reference: reference.mutability.is_some(), ..shape_of(&reference.elem) }
        }
        Type::Paren(inner) => shape_of(&inner.elem),
        Type::Group(inner) => shape_of(&inner.elem),
        Type::Slice(_) => Shape { system: None, by_reference: false, mutable_reference: false, batch: true },
        Type::Path(path) => Shape {
            system: None,
            by_reference: false,
            mutable_reference: false,
            batch: path.path.segments.last().is_some_and(|last| last.ident == "Vec"),
        },
        _ => Shape { system: None, by_reference: false, mutable_reference: false, batch: false },
    }
}
