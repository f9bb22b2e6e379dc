//! The options written inside `#[traced_consumer(...)]` and `#[traced_producer(...)]`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

use crate::brokers::{self, System};
use crate::errors::Errors;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Consumer,
    Producer,
}

impl Role {
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Role::Consumer => "traced_consumer",
            Role::Producer => "traced_producer",
        }
    }

    fn options(self) -> &'static [&'static str] {
        match self {
            Role::Consumer => &[
                "message",
                "system",
                "destination",
                "group",
                "name",
                "parent",
                "replay",
                "attributes",
                "capture_headers",
                "exclude_headers",
                "attempt_header",
                "crate",
            ],
            Role::Producer => &["record", "system", "destination", "routing_key", "name", "attributes", "crate"],
        }
    }
}

pub(crate) enum Destination {
    Fixed(LitStr),
    PerMessage(Expr),
}

pub(crate) struct UserAttribute {
    pub(crate) key: LitStr,
    pub(crate) value: Expr,
}

/// What each option takes, for the messages that say how to write it.
fn example(option: &str) -> &'static str {
    match option {
        "system" => "system = \"kafka\"",
        "destination" => "destination = \"orders\"",
        "group" => "group = \"inventory-service\"",
        "name" => "name = \"reserve stock\"",
        "routing_key" => "routing_key = \"order.created\"",
        "parent" => "parent = \"link\"",
        "message" => "message = delivery",
        "record" => "record = properties",
        "crate" => "crate = \"::my_tracehop\"",
        "capture_headers" => "capture_headers(\"x-tenant\", \"x-request-*\")",
        "exclude_headers" => "exclude_headers(\"x-internal-*\")",
        "attempt_header" => "attempt_header = \"x-retry-count\"",
        _ => "attributes(app.order.id = order.id)",
    }
}

#[derive(Default)]
pub(crate) struct Options {
    pub(crate) system: Option<(System, LitStr)>,
    pub(crate) destination: Option<Destination>,
    pub(crate) routing_key: Option<(Destination, Ident)>,
    pub(crate) group: Option<LitStr>,
    pub(crate) name: Option<LitStr>,
    pub(crate) attributes: Vec<UserAttribute>,
    pub(crate) parent: Option<(Parent, LitStr)>,
    pub(crate) replay: Option<Ident>,
    /// `capture_headers("x-tenant", "x-*")`: header names or patterns recorded as `messaging.header.<name>`.
    pub(crate) capture_headers: Vec<LitStr>,
    /// `exclude_headers("x-internal-*")`: header names or patterns never recorded.
    pub(crate) exclude_headers: Vec<LitStr>,
    /// `attempt_header = "x-retry-count"`: the header holding the message's attempt number.
    pub(crate) attempt_header: Option<LitStr>,
    /// `message = name` (consumers) or `record = name` (producers): the parameter tracehop reads or writes, for
    /// types it does not know by name.
    pub(crate) parameter: Option<Ident>,
    /// `crate = "path"`: where the `tracehop` crate is, for a dependency renamed in Cargo.toml.
    pub(crate) crate_path: Option<syn::Path>,
}

/// `parent = "continue" | "link" | "none"`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parent {
    Continue,
    Link,
    None,
}

/// Parses the attribute's tokens, recording every mistake in `errors` and going on past it.
pub(crate) fn parse(role: Role, tokens: TokenStream, errors: &mut Errors) -> Options {
    let mut options = Options::default();
    let parser = |input: ParseStream<'_>| parse_options(role, input, &mut options, errors);
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
    options
}

fn parse_options(role: Role, input: ParseStream<'_>, options: &mut Options, errors: &mut Errors) -> syn::Result<()> {
    let mut seen: Vec<String> = Vec::new();
    while !input.is_empty() {
        let key = input.call(Ident::parse_any)?;
        let name = key.to_string();
        if seen.contains(&name) {
            errors.at(&key, format!("`{name}` is given twice; keep one"));
        }
        seen.push(name.clone());
        if name == "attributes" {
            if !input.peek(syn::token::Paren) {
                return Err(
                    input.error(format!("`attributes` takes a list in parentheses: `{}`", example("attributes")))
                );
            }
            let content;
            syn::parenthesized!(content in input);
            let attributes = parse_user_attributes(&content, errors)?;
            if role.options().contains(&"attributes") {
                options.attributes.extend(attributes);
            }
        } else if name == "capture_headers" || name == "exclude_headers" {
            if !input.peek(syn::token::Paren) {
                return Err(input.error(format!("`{name}` takes a list in parentheses: `{}`", example(&name))));
            }
            let content;
            syn::parenthesized!(content in input);
            if content.is_empty() {
                errors.at(&key, format!("`{name}` needs at least one header name: `{}`", example(&name)));
            }
            let patterns = parse_header_patterns(&content, &name, errors)?;
            match (role, name.as_str()) {
                (Role::Consumer, "capture_headers") => options.capture_headers = patterns,
                (Role::Consumer, _) => options.exclude_headers = patterns,
                (Role::Producer, _) => unknown_option(role, &key, errors),
            }
        } else if name == "replay" && !input.peek(Token![=]) {
            match role {
                Role::Consumer => options.replay = Some(key.clone()),
                Role::Producer => unknown_option(role, &key, errors),
            }
        } else {
            if !input.peek(Token![=]) {
                let hint = if role.options().contains(&name.as_str()) {
                    format!("`{name}` needs a value: `{}`", example(&name))
                } else {
                    format!("expected `=` after `{name}`")
                };
                return Err(syn::Error::new(key.span(), hint));
            }
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            match name.as_str() {
                "system" => options.system = system(&value, errors),
                "destination" => options.destination = Some(destination(value)),
                "routing_key" if role == Role::Producer => {
                    options.routing_key = Some((destination(value), key.clone()))
                }
                "group" if role == Role::Consumer => options.group = string_literal(&value, "group", errors),
                "name" => options.name = string_literal(&value, "name", errors),
                "parent" if role == Role::Consumer => options.parent = parent(&value, errors),
                "message" if role == Role::Consumer => options.parameter = parameter_name(&value, "message", errors),
                "record" if role == Role::Producer => options.parameter = parameter_name(&value, "record", errors),
                "crate" => options.crate_path = crate_path(&value, errors),
                "attempt_header" if role == Role::Consumer => {
                    options.attempt_header = string_literal(&value, "attempt_header", errors)
                        .filter(|literal| header_name(literal, "attempt_header", false, errors))
                }
                "replay" if role == Role::Consumer => match &value {
                    Expr::Lit(ExprLit { lit: Lit::Bool(flag), .. }) => {
                        if flag.value {
                            options.replay = Some(key.clone());
                        }
                    }
                    other => errors.at(other, "`replay` is a flag: write `replay` (or `replay = true`)"),
                },
                _ => unknown_option(role, &key, errors),
            }
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(())
}

fn unknown_option(role: Role, key: &Ident, errors: &mut Errors) {
    let name = key.to_string();
    let known = role.options();
    let suggestion =
        known.iter().map(|option| (edit_distance(&name, option), option)).filter(|(distance, _)| *distance <= 2).min();
    let known_list = known.iter().map(|option| format!("`{option}`")).collect::<Vec<_>>().join(", ");
    let message = match suggestion {
        Some((_, option)) => format!("unknown option `{name}`: did you mean `{option}`?"),
        None if name == "routing_key" => format!(
            "`routing_key` is an option of #[traced_producer] only: a consumer takes it from the delivery; \
             #[{}] takes {known_list}",
            role.attribute()
        ),
        None if name == "parent" || name == "replay" => format!(
            "`{name}` is an option of #[traced_consumer] only: it says how a handler treats the context it \
             receives; #[{}] takes {known_list}",
            role.attribute()
        ),
        None if ["capture_headers", "exclude_headers", "attempt_header"].contains(&name.as_str()) => format!(
            "`{name}` is an option of #[traced_consumer] only: it reads the headers of a consumed message; \
             #[{}] takes {known_list}",
            role.attribute()
        ),
        None if name == "group" => format!(
            "`group` is an option of #[traced_consumer] only: a producer belongs to no consumer group; \
             #[{}] takes {known_list}",
            role.attribute()
        ),
        None => format!("unknown option `{name}`; #[{}] takes {known_list}", role.attribute()),
    };
    errors.at(key, message);
}

fn system(value: &Expr, errors: &mut Errors) -> Option<(System, LitStr)> {
    let literal = string_literal(value, "system", errors)?;
    let system = System::named(&literal.value());
    if system.is_none() {
        errors.at(
            &literal,
            format!("unknown messaging system `{}`; tracehop supports {}", literal.value(), brokers::system_names()),
        );
    }
    system.map(|system| (system, literal))
}

fn crate_path(value: &Expr, errors: &mut Errors) -> Option<syn::Path> {
    let literal = string_literal(value, "crate", errors)?;
    match literal.parse::<syn::Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.at(
                &literal,
                format!(
                    "`{}` is not a path; write where tracehop is, for example `{}`",
                    literal.value(),
                    example("crate")
                ),
            );
            None
        }
    }
}

fn parameter_name(value: &Expr, option: &str, errors: &mut Errors) -> Option<Ident> {
    match value {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => match path.path.get_ident() {
            Some(ident) => Some(ident.clone()),
            None => {
                errors
                    .at(value, format!("`{option}` takes the name of a parameter, for example `{}`", example(option)));
                None
            }
        },
        other => {
            errors.at(other, format!("`{option}` takes the name of a parameter, for example `{}`", example(option)));
            None
        }
    }
}

fn parent(value: &Expr, errors: &mut Errors) -> Option<(Parent, LitStr)> {
    let literal = string_literal(value, "parent", errors)?;
    let parent = match literal.value().as_str() {
        "continue" => Parent::Continue,
        "link" => Parent::Link,
        "none" => Parent::None,
        other => {
            errors.at(
                &literal,
                format!("unknown parent policy `{other}`: use \"continue\" (the producer's span is the parent), \"link\" (a new trace linked to it) or \"none\" (a new trace, the context ignored)"),
            );
            return None;
        }
    };
    Some((parent, literal))
}

fn destination(value: Expr) -> Destination {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Str(literal), .. }) => Destination::Fixed(literal),
        expression => Destination::PerMessage(expression),
    }
}

fn string_literal(value: &Expr, option: &str, errors: &mut Errors) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Str(literal), .. }) => Some(literal.clone()),
        other => {
            errors.at(other, format!("`{option}` takes a string literal, for example `{}`", example(option)));
            None
        }
    }
}

/// `"pattern", ...`: the header names or patterns of `capture_headers(...)` or `exclude_headers(...)`.
fn parse_header_patterns(input: ParseStream<'_>, option: &str, errors: &mut Errors) -> syn::Result<Vec<LitStr>> {
    let mut patterns: Vec<LitStr> = Vec::new();
    while !input.is_empty() {
        let value: Expr = input.parse()?;
        if let Some(literal) = string_literal(&value, option, errors) {
            if header_name(&literal, option, true, errors) {
                if patterns.iter().any(|pattern| pattern.value().eq_ignore_ascii_case(&literal.value())) {
                    errors.at(&literal, format!("header `{}` is given twice; keep one", literal.value()));
                }
                patterns.push(literal);
            }
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(patterns)
}

/// Whether `literal` is a header name (a pattern, when `wildcards`), reporting it at the literal when not.
fn header_name(literal: &LitStr, option: &str, wildcards: bool, errors: &mut Errors) -> bool {
    let name = literal.value();
    if name.is_empty() {
        errors.at(literal, format!("a header name cannot be empty; for example `{}`", example(option)));
        return false;
    }
    let problem = {
        name.chars()
            .find(|&character| {
                !(character.is_ascii_graphic() && character != '"') || (!wildcards && matches!(character, '*' | '?'))
            })
            .map(|character| match character {
                '*' | '?' => format!("`{option}` names one header: `{character}` is no wildcard here"),
                other => format!("`{}` cannot be part of a header name", other.escape_default()),
            })
    };
    match problem {
        Some(problem) => {
            errors.at(literal, format!("`{name}` is not a header name: {problem}; for example `{}`", example(option)));
            false
        }
        None => true,
    }
}

/// `key = expr, ...` where a key is a dotted name (`app.order.id`) or a string literal, for keys whose segments
/// are not Rust identifiers (`"app.2fa.enabled"`).
fn parse_user_attributes(input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<Vec<UserAttribute>> {
    let mut attributes: Vec<UserAttribute> = Vec::new();
    while !input.is_empty() {
        // The key's tokens, so an error underlines all of `app.order.id`.
        let mut key_tokens = TokenStream::new();
        let key = if input.peek(LitStr) {
            let literal = input.parse::<LitStr>()?;
            key_tokens.extend(literal.to_token_stream());
            literal
        } else {
            let first = input.call(Ident::parse_any)?;
            let mut dotted = first.unraw().to_string();
            key_tokens.extend(first.to_token_stream());
            while input.peek(Token![.]) {
                let dot = input.parse::<Token![.]>()?;
                let segment = input.call(Ident::parse_any)?;
                dotted.push('.');
                dotted.push_str(&segment.unraw().to_string());
                key_tokens.extend(dot.to_token_stream());
                key_tokens.extend(segment.to_token_stream());
            }
            LitStr::new(&dotted, first.span())
        };
        if !input.peek(Token![=]) {
            return Err(input.error(format!(
                "expected `=` and a value after attribute `{}`, as in `{}`",
                key.value(),
                example("attributes")
            )));
        }
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        if let Err(problem) = check_attribute_key(&key.value()) {
            errors.at(&key_tokens, format!("`{}` is not a valid attribute name: {problem}", key.value()));
        } else if attributes.iter().any(|attribute| attribute.key.value() == key.value()) {
            errors.at(&key_tokens, format!("attribute `{}` is given twice; keep one", key.value()));
        }
        attributes.push(UserAttribute { key, value });
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(attributes)
}

/// OpenTelemetry attribute names: dot-separated lower-case segments of letters, digits and `_`.
fn check_attribute_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("it is empty");
    }
    for segment in key.split('.') {
        if segment.is_empty() {
            return Err("a dot-separated segment is empty");
        }
        if !segment.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_') {
            return Err("use lower-case letters, digits and `_`, in dot-separated segments (`app.order.id`)");
        }
    }
    Ok(())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("group", "group"), 0);
        assert_eq!(edit_distance("grup", "group"), 1);
        assert_eq!(edit_distance("groupp", "group"), 1);
        assert_eq!(edit_distance("gruop", "group"), 2);
        assert_eq!(edit_distance("", "name"), 4);
        assert_eq!(edit_distance("destination", ""), 11);
        assert_eq!(edit_distance("rooting_key", "routing_key"), 1);
    }

    #[test]
    fn attribute_keys_are_dot_separated_lower_case_segments() {
        for valid in ["app.order.id", "app", "app.order_2.id"] {
            assert_eq!(check_attribute_key(valid), Ok(()), "{valid}");
        }
        assert_eq!(check_attribute_key(""), Err("it is empty"));
        assert_eq!(check_attribute_key("app..id"), Err("a dot-separated segment is empty"));
        assert_eq!(check_attribute_key("app.order."), Err("a dot-separated segment is empty"));
        for invalid in ["App.order", "app.order-id", "app.ördér"] {
            assert!(check_attribute_key(invalid).unwrap_err().starts_with("use lower-case letters"), "{invalid}");
        }
    }
}
