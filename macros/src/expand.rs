//! Turns the parsed function into the traced one: glue into tracehop's public API, through
//! `::tracehop::__private`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Item, ItemFn, ReturnType, Type};

use crate::brokers::System;
use crate::errors::Errors;
use crate::options::{self, Destination, Options, Role, Value, ValueKind, OPTIONS};
use crate::signature::{self, MessageParameter};
use crate::validate;

pub(crate) fn traced(role: Role, attribute: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = options::parse(role, attribute, &mut errors);
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            not_a_function(role, &item, &mut errors);
            return with_errors(errors, item);
        }
    };
    signature::check_traceable(role, &function.sig, &mut errors);
    let message = signature::message_parameter(role, &function.sig, options.parameter(), &mut errors);
    validate::options_against_signature(role, &options, message.as_ref(), &mut errors);
    if !errors.is_empty() {
        return with_errors(errors, item);
    }
    instrument(role, &options, message.as_ref(), function)
}

/// Names what the attribute was put on instead of a function, at that item's own tokens.
fn not_a_function(role: Role, item: &TokenStream, errors: &mut Errors) {
    let found = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Struct(item)) => Some(("a struct", item.struct_token.to_token_stream(), item.ident.to_token_stream())),
        Ok(Item::Enum(item)) => Some(("an enum", item.enum_token.to_token_stream(), item.ident.to_token_stream())),
        Ok(Item::Impl(item)) => {
            Some(("an impl block", item.impl_token.to_token_stream(), item.self_ty.to_token_stream()))
        }
        Ok(Item::Const(item)) => Some(("a const", item.const_token.to_token_stream(), item.ident.to_token_stream())),
        Ok(Item::Static(item)) => Some(("a static", item.static_token.to_token_stream(), item.ident.to_token_stream())),
        Ok(Item::Trait(item)) => Some(("a trait", item.trait_token.to_token_stream(), item.ident.to_token_stream())),
        Ok(Item::Mod(item)) => Some(("a module", item.mod_token.to_token_stream(), item.ident.to_token_stream())),
        Ok(Item::Type(item)) => Some(("a type alias", item.type_token.to_token_stream(), item.ident.to_token_stream())),
        _ => None,
    };
    let advice = match role {
        Role::Consumer => "put it on the function that handles each message",
        Role::Producer => "put it on the function that publishes",
    };
    match found {
        Some((kind, keyword, name)) => errors
            .at(quote!(#keyword #name), format!("#[{}] goes on a function, not on {kind}: {advice}", role.attribute())),
        None => errors.push(syn::Error::new(
            proc_macro2::Span::call_site(),
            format!("#[{}] goes on a function (a free function or a method): {advice}", role.attribute()),
        )),
    }
}

/// The errors next to the user's item, unchanged, so one mistake does not bury them under follow-on errors.
fn with_errors(errors: Errors, item: TokenStream) -> TokenStream {
    let errors = errors.into_compile_errors();
    quote! { #errors #item }
}

fn instrument(role: Role, options: &Options, message: Option<&MessageParameter>, function: ItemFn) -> TokenStream {
    let ItemFn { attrs, vis, sig, block } = function;
    let private = match options.crate_path() {
        Some(path) => quote!(#path::__private),
        None => quote!(::tracehop::__private),
    };
    let function_name = sig.ident.to_string();

    let handler_kind = match role {
        Role::Consumer => quote!(consumer),
        Role::Producer => quote!(producer),
    };
    let mut handler = quote! {
        #private::Handler::#handler_kind(#private::concat!(#private::module_path!(), "::", #function_name))
    };
    // With the broker known, the span starts (and a producer's record is written) through its feature trait: when
    // that feature is off the compiler then reports only that, not also that the message is not one it can read.
    let broker_spans = known_broker(options, message).map(|(span, system)| {
        let feature_trait = format_ident!("{}", system.broker().feature_trait, span = span);
        quote_spanned!(span=> <#private::Features as #private::#feature_trait>::Spans)
    });
    let mut start = match (role, message) {
        (Role::Consumer, Some(message)) => {
            let name = &message.name;
            let borrowed = if message.by_reference { quote!(#name) } else { quote!(&#name) };
            // One message or a batch: the runtime's `MessageParameter` decides, and a type that is neither is
            // reported at the parameter's type.
            match &broker_spans {
                Some(spans) => quote_spanned!(message.ty.span()=>
                    <#spans as #private::StartsConsumerSpan<_>>::consumer(#borrowed, &__TRACEHOP_HANDLER)
                ),
                None => quote_spanned!(message.ty.span()=>
                    #private::MessageParameter::consumer_span(#borrowed, &__TRACEHOP_HANDLER)
                ),
            }
        }
        (Role::Consumer, None) => {
            unreachable!("a consumer without a message parameter was reported as an error")
        }
        (Role::Producer, Some(record)) => {
            let name = &record.name;
            let described = if record.by_reference { quote!(&*#name) } else { quote!(&#name) };
            match &broker_spans {
                Some(spans) => quote!(
                    <#spans as #private::StartsProducerSpan<_>>::producer(&__TRACEHOP_HANDLER, #described)
                ),
                None => quote!(#private::MessageSpan::producer(&__TRACEHOP_HANDLER).describing(#described)),
            }
        }
        (Role::Producer, None) => quote!(#private::MessageSpan::producer(&__TRACEHOP_HANDLER)),
    };

    // Each option becomes its row's builder method: on the static `Handler` for a value fixed at compile time,
    // on the span being started for a value read from each message.
    for option in OPTIONS {
        let Some(method) = option.method else { continue };
        let method = format_ident!("{method}");
        if option.value == ValueKind::Broker {
            // Known from the message's type when not given, so it is named even without `system = ...`.
            if let Some(system) = system_check(role, &private, options, message, &sig) {
                handler.extend(quote!(.#method(#system)));
            }
            continue;
        }
        match options.value(option) {
            None | Some(Value::Parameter(_) | Value::Broker(..) | Value::CratePath(_)) => {}
            Some(Value::Destination(Destination::Fixed(literal)) | Value::Literal(literal)) => {
                handler.extend(quote!(.#method(#literal)));
            }
            Some(Value::Destination(Destination::PerMessage(expression))) => {
                let name =
                    quote_spanned!(expression.span()=> #private::DestinationName::destination_name(&(#expression)));
                start.extend(quote!(.#method(#name)));
            }
            Some(Value::ParentPolicy(parent, literal)) => {
                let policy = format_ident!("{}", parent.variant(), span = literal.span());
                handler.extend(quote!(.#method(#private::ParentPolicy::#policy)));
            }
            Some(Value::Flag) => handler.extend(quote!(.#method())),
            Some(Value::HeaderPatterns(patterns)) => handler.extend(quote!(.#method(&[#(#patterns),*]))),
            Some(Value::Attributes(attributes)) => {
                let sink = format_ident!("__tracehop_attributes", span = proc_macro2::Span::mixed_site());
                let additions = attributes.iter().map(|attribute| {
                    let key = &attribute.key;
                    let value = &attribute.value;
                    quote_spanned!(value.span()=> #sink.add(#key, &(#value));)
                });
                start.extend(quote!(.#method(&mut |#sink: &mut #private::SpanAttributes| { #(#additions)* })));
            }
        }
    }

    // The expansion's own locals, hidden from the user's code (mixed-site hygiene): the body can neither see
    // nor shadow them.
    let span_local = format_ident!("__tracehop_span", span = proc_macro2::Span::mixed_site());
    let output_local = format_ident!("__tracehop_output", span = proc_macro2::Span::mixed_site());

    // A by-value record bound without `mut` is rebound so the span can write into it.
    let (rebind, inject) = match (role, message) {
        (Role::Producer, Some(record)) => {
            let name = &record.name;
            let rebind =
                if record.writable || record.by_reference { None } else { Some(quote!(let mut #name = #name;)) };
            let writable = if record.by_reference { quote!(&mut *#name) } else { quote!(&mut #name) };
            let inject = match &broker_spans {
                Some(spans) => quote!(<#spans as #private::StartsProducerSpan<_>>::inject(&#span_local, #writable);),
                None => quote!(#span_local.inject(#writable);),
            };
            (rebind, Some(inject))
        }
        _ => (None, None),
    };

    let output = match &sig.output {
        ReturnType::Default => Some(quote!(())),
        ReturnType::Type(_, ty) if mentions_impl_trait(ty) => None,
        ReturnType::Type(_, ty) => Some(ty.to_token_stream()),
    };
    let record = quote!(|#output_local, #span_local| #private::record_outcome!(#output_local, #span_local));
    let run = if sig.asyncness.is_some() {
        // Naming the output type where the async block is made lets `?` and `return` in the body infer as they
        // do in the user's `async fn`.
        let future = match &output {
            Some(output) => quote!(#private::returning::<#output, _>(async move #block)),
            None => quote!(async move #block),
        };
        quote!(#span_local.instrument_with_outcome(#future, #record).await)
    } else if let Some((future_output, boxed)) = future_output(&sig.output) {
        // A sync function returning a future (`impl Future`, or the `Pin<Box<dyn Future>>` of `#[async_trait]`):
        // the span covers the future, from this call until it completes, and records the future's output. The
        // body runs in a closure so an early `return` is instrumented too.
        let instrumented = quote! {
            #span_local.instrument_with_outcome(
                #private::evaluate(move || #block),
                |#output_local: &#future_output, #span_local| #private::record_outcome!(#output_local, #span_local),
            )
        };
        if boxed {
            quote!(::std::boxed::Box::pin(#instrumented))
        } else {
            instrumented
        }
    } else {
        let annotation = output.as_ref().map(|output| quote!(-> #output));
        quote!(#span_local.run_with_outcome(move || #annotation #block, #record))
    };

    quote! {
        #(#attrs)*
        #vis #sig {
            static __TRACEHOP_HANDLER: #private::Handler = #handler;
            #rebind
            let #span_local = #start.start();
            #inject
            #run
        }
    }
}

/// The broker of the span, as `<Features as KafkaEnabled>::SYSTEM`: named by `system = "..."`, else known from
/// the message's type, else, for a producer that builds its record in the body, the only broker enabled.
///
/// The broker's feature trait is implemented only when its cargo feature is on: otherwise the compiler
/// reports, at the token that named the broker, which feature to enable.
fn system_check(
    role: Role,
    private: &TokenStream,
    options: &Options,
    message: Option<&MessageParameter>,
    sig: &syn::Signature,
) -> Option<TokenStream> {
    if let Some((span, system)) = known_broker(options, message) {
        let feature_trait = format_ident!("{}", system.broker().feature_trait, span = span);
        Some(quote_spanned!(span=> <#private::Features as #private::#feature_trait>::SYSTEM))
    } else if role == Role::Producer && message.is_none() {
        let span = sig.ident.span();
        Some(quote_spanned!(span=> <#private::EnabledBrokers as #private::SoleBroker>::SYSTEM))
    } else {
        None
    }
}

/// The broker named by `system = "..."` (at its literal), else known from the message's type (at the attribute).
fn known_broker(options: &Options, message: Option<&MessageParameter>) -> Option<(proc_macro2::Span, System)> {
    options
        .system()
        .map(|(system, literal)| (literal.span(), system))
        .or_else(|| message.and_then(|message| message.system).map(|system| (proc_macro2::Span::call_site(), system)))
}

/// `(X, false)` when `output` is `-> impl Future<Output = X>`, `(X, true)` when it is
/// `-> Pin<Box<dyn Future<Output = X>>>` (with any further bounds).
fn future_output(output: &ReturnType) -> Option<(Type, bool)> {
    let ReturnType::Type(_, ty) = output else { return None };
    match &**ty {
        Type::ImplTrait(bounds) => future_bound_output(&bounds.bounds).map(|output| (output, false)),
        Type::Path(pin) => {
            let pin = pin.path.segments.last().filter(|segment| segment.ident == "Pin")?;
            let boxed = single_type_argument(&pin.arguments)?;
            let Type::Path(boxed) = boxed else { return None };
            let boxed = boxed.path.segments.last().filter(|segment| segment.ident == "Box")?;
            let Type::TraitObject(future) = single_type_argument(&boxed.arguments)? else { return None };
            future_bound_output(&future.bounds).map(|output| (output, true))
        }
        _ => None,
    }
}

fn single_type_argument(arguments: &syn::PathArguments) -> Option<&Type> {
    let syn::PathArguments::AngleBracketed(arguments) = arguments else { return None };
    match arguments.args.first()? {
        syn::GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}

fn future_bound_output(bounds: &syn::punctuated::Punctuated<syn::TypeParamBound, syn::Token![+]>) -> Option<Type> {
    bounds.iter().find_map(|bound| {
        let syn::TypeParamBound::Trait(bound) = bound else { return None };
        let segment = bound.path.segments.last()?;
        if segment.ident != "Future" {
            return None;
        }
        let syn::PathArguments::AngleBracketed(arguments) = &segment.arguments else { return None };
        arguments.args.iter().find_map(|argument| match argument {
            syn::GenericArgument::AssocType(output) if output.ident == "Output" => Some(output.ty.clone()),
            _ => None,
        })
    })
}

fn mentions_impl_trait(ty: &Type) -> bool {
    struct FindImplTrait(bool);
    impl<'ast> syn::visit::Visit<'ast> for FindImplTrait {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = FindImplTrait(false);
    syn::visit::visit_type(&mut finder, ty);
    finder.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(signature: &str) -> ReturnType {
        syn::parse_str::<syn::Signature>(signature).expect("a signature").output
    }

    fn future_output_of(signature: &str) -> Option<(String, bool)> {
        future_output(&output(signature)).map(|(ty, boxed)| (ty.to_token_stream().to_string(), boxed))
    }

    #[test]
    fn finds_the_output_of_impl_future_and_pinned_boxed_futures() {
        assert_eq!(future_output_of("fn f() -> impl Future<Output = u8>"), Some(("u8".to_owned(), false)));
        assert_eq!(
            future_output_of("fn f() -> impl Future<Output = Result<(), E>> + Send"),
            Some(("Result < () , E >".to_owned(), false))
        );
        assert_eq!(
            future_output_of("fn f() -> Pin<Box<dyn Future<Output = u8> + Send + 'static>>"),
            Some(("u8".to_owned(), true))
        );
        assert_eq!(
            future_output_of("fn f() -> std::pin::Pin<std::boxed::Box<dyn std::future::Future<Output = ()>>>"),
            Some(("()".to_owned(), true))
        );
    }

    #[test]
    fn other_return_types_are_no_futures() {
        for signature in [
            "fn f()",
            "fn f() -> u8",
            "fn f() -> impl Iterator<Item = u8>",
            "fn f() -> Box<dyn Future<Output = u8>>",
            "fn f() -> Pin<Box<u8>>",
            "fn f() -> impl Future",
        ] {
            assert_eq!(future_output_of(signature), None, "{signature}");
        }
    }

    #[test]
    fn impl_trait_is_found_anywhere_in_a_type() {
        let ty = |text: &str| syn::parse_str::<Type>(text).expect("a type");
        assert!(mentions_impl_trait(&ty("impl Future<Output = u8>")));
        assert!(mentions_impl_trait(&ty("Result<impl Iterator<Item = u8>, E>")));
        assert!(!mentions_impl_trait(&ty("Result<Box<dyn Iterator<Item = u8>>, E>")));
    }
}
