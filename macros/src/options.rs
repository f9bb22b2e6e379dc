//! The options written inside `#[traced_consumer(...)]` and `#[traced_producer(...)]`.
//!
//! [`OPTIONS`] is the one table of them: for each, which attributes take it, what value it takes, how a user
//! writes it and which runtime builder method it becomes. Parsing, the hints in errors and the expansion all
//! read that table, so a further option is one row there (and its builder method on the runtime's `Handler`).

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

use crate::brokers::{self, System};
use crate::errors::{self, Errors};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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

    /// The options this attribute takes, in the table's order.
    pub(crate) fn options(self) -> impl Iterator<Item = &'static AttributeOption> {
        OPTIONS.iter().filter(move |option| option.roles.contains(&self))
    }
}

const CONSUMER: &[Role] = &[Role::Consumer];
const PRODUCER: &[Role] = &[Role::Producer];
const BOTH: &[Role] = &[Role::Consumer, Role::Producer];

/// A row of [`OPTIONS`]: everything the macros know of one option.
pub(crate) struct AttributeOption {
    /// As written: `name = ...`, `name(...)` or `name` alone.
    pub(crate) name: &'static str,
    /// The attributes that take it.
    pub(crate) roles: &'static [Role],
    /// What it takes, which decides how it is parsed, checked and expanded.
    pub(crate) value: ValueKind,
    /// As a user writes it, quoted by the errors that say how to write it.
    pub(crate) example: &'static str,
    /// The builder method it becomes: of the runtime's `Handler` for a value fixed at compile time, of the span
    /// being started (`MessageSpan`) for a value read from each message. `None` for options that steer the
    /// expansion instead of configuring the span (`message`, `record`, `crate`).
    pub(crate) method: Option<&'static str>,
    /// Why the other attribute does not take it, for the error when it is given there. `None` words that
    /// error as for an unknown option.
    pub(crate) only_because: Option<&'static str>,
}

/// What an option takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ValueKind {
    /// `= name`: the name of one of the function's parameters.
    Parameter,
    /// `= "kafka"`: a `system` of the brokers' table.
    Broker,
    /// `= "literal"`, fixed at compile time, or `= expression`, evaluated for each message.
    LiteralOrExpression,
    /// `= "literal"`.
    Literal,
    /// `= "literal"` naming one header, no wildcards.
    HeaderName,
    /// `= "continue" | "link" | "none"`: a `ParentPolicy` of the runtime.
    ParentPolicy,
    /// The name alone (or `= true`; `= false` is as if it were not written).
    Flag,
    /// `("literal", ...)`: header names or patterns, at least one.
    HeaderPatterns,
    /// `(key = expression, ...)`: span attributes whose values are evaluated for each message.
    Attributes,
    /// `= "path"`: where the `tracehop` crate is.
    CratePath,
}

/// The options of both attributes. The order is the order of the lists in errors and of the builder calls in
/// the expansion.
pub(crate) static OPTIONS: &[AttributeOption] = &[
    AttributeOption {
        name: "message",
        roles: CONSUMER,
        value: ValueKind::Parameter,
        example: "message = delivery",
        method: None,
        only_because: None,
    },
    AttributeOption {
        name: "record",
        roles: PRODUCER,
        value: ValueKind::Parameter,
        example: "record = properties",
        method: None,
        only_because: None,
    },
    AttributeOption {
        name: "system",
        roles: BOTH,
        value: ValueKind::Broker,
        example: "system = \"kafka\"",
        method: Some("system"),
        only_because: None,
    },
    AttributeOption {
        name: "destination",
        roles: BOTH,
        value: ValueKind::LiteralOrExpression,
        example: "destination = \"orders\"",
        method: Some("destination"),
        only_because: None,
    },
    AttributeOption {
        name: "group",
        roles: CONSUMER,
        value: ValueKind::Literal,
        example: "group = \"inventory-service\"",
        method: Some("group"),
        only_because: Some("a producer belongs to no consumer group"),
    },
    AttributeOption {
        name: "routing_key",
        roles: PRODUCER,
        value: ValueKind::LiteralOrExpression,
        example: "routing_key = \"order.created\"",
        method: Some("routing_key"),
        only_because: Some("a consumer takes it from the delivery"),
    },
    AttributeOption {
        name: "name",
        roles: BOTH,
        value: ValueKind::Literal,
        example: "name = \"reserve stock\"",
        method: Some("span_name"),
        only_because: None,
    },
    AttributeOption {
        name: "parent",
        roles: CONSUMER,
        value: ValueKind::ParentPolicy,
        example: "parent = \"link\"",
        method: Some("parent"),
        only_because: Some("it says how a handler treats the context it receives"),
    },
    AttributeOption {
        name: "replay",
        roles: CONSUMER,
        value: ValueKind::Flag,
        example: "replay",
        method: Some("replay"),
        only_because: Some("it says how a handler treats the context it receives"),
    },
    AttributeOption {
        name: "attributes",
        roles: BOTH,
        value: ValueKind::Attributes,
        example: "attributes(app.order.id = order.id)",
        method: Some("attributes"),
        only_because: None,
    },
    AttributeOption {
        name: "capture_headers",
        roles: CONSUMER,
        value: ValueKind::HeaderPatterns,
        example: "capture_headers(\"x-tenant\", \"x-request-*\")",
        method: Some("capture_headers"),
        only_because: Some("it reads the headers of a consumed message"),
    },
    AttributeOption {
        name: "exclude_headers",
        roles: CONSUMER,
        value: ValueKind::HeaderPatterns,
        example: "exclude_headers(\"x-internal-*\")",
        method: Some("exclude_headers"),
        only_because: Some("it reads the headers of a consumed message"),
    },
    AttributeOption {
        name: "attempt_header",
        roles: CONSUMER,
        value: ValueKind::HeaderName,
        example: "attempt_header = \"x-retry-count\"",
        method: Some("attempt_header"),
        only_because: Some("it reads the headers of a consumed message"),
    },
    AttributeOption {
        name: "crate",
        roles: BOTH,
        value: ValueKind::CratePath,
        example: "crate = \"::my_tracehop\"",
        method: None,
        only_because: None,
    },
];

impl AttributeOption {
    /// The row of `name`.
    pub(crate) fn named(name: &str) -> Option<&'static AttributeOption> {
        OPTIONS.iter().find(|option| option.name == name)
    }
}

/// The value of `destination` or `routing_key`.
pub(crate) enum Destination {
    Fixed(LitStr),
    PerMessage(Expr),
}

pub(crate) struct UserAttribute {
    pub(crate) key: LitStr,
    pub(crate) value: Expr,
}

/// `parent = "continue" | "link" | "none"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Parent {
    Continue,
    Link,
    None,
}

impl Parent {
    /// As written, the runtime's `ParentPolicy` variant, and what it means, for the error listing them.
    const POLICIES: [(&'static str, Parent, &'static str); 3] = [
        ("continue", Parent::Continue, "the producer's span is the parent"),
        ("link", Parent::Link, "a new trace linked to it"),
        ("none", Parent::None, "a new trace, the context ignored"),
    ];

    /// The variant of the runtime's `ParentPolicy`.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Parent::Continue => "Continue",
            Parent::Link => "Link",
            Parent::None => "None",
        }
    }
}

/// A checked value, of the shape its row's [`ValueKind`] says.
pub(crate) enum Value {
    Parameter(Ident),
    Broker(System, LitStr),
    Destination(Destination),
    Literal(LitStr),
    ParentPolicy(Parent, LitStr),
    Flag,
    HeaderPatterns(Vec<LitStr>),
    Attributes(Vec<UserAttribute>),
    CratePath(syn::Path),
}

/// An option as given: its row, the name as written (where errors about it point) and its checked value.
pub(crate) struct Given {
    pub(crate) option: &'static AttributeOption,
    pub(crate) key: Ident,
    pub(crate) value: Value,
}

/// The options given to one attribute, each checked and taken by that attribute.
#[derive(Default)]
pub(crate) struct Options {
    given: Vec<Given>,
}

impl Options {
    /// The value given to the option of that row.
    pub(crate) fn value(&self, option: &AttributeOption) -> Option<&Value> {
        self.given(option.name).map(|given| &given.value)
    }

    /// The option named `name`, as given.
    pub(crate) fn given(&self, name: &str) -> Option<&Given> {
        debug_assert!(AttributeOption::named(name).is_some(), "`{name}` is no row of the options' table");
        self.given.iter().find(|given| given.option.name == name)
    }

    /// `system = "..."`: the broker and the literal that names it.
    pub(crate) fn system(&self) -> Option<(System, &LitStr)> {
        self.given.iter().find_map(|given| match &given.value {
            Value::Broker(system, literal) => Some((*system, literal)),
            _ => None,
        })
    }

    /// `message = name` (consumers) or `record = name` (producers): the parameter tracehop reads or writes, for
    /// types it does not know by name.
    pub(crate) fn parameter(&self) -> Option<&Ident> {
        self.given.iter().find_map(|given| match &given.value {
            Value::Parameter(parameter) => Some(parameter),
            _ => None,
        })
    }

    /// `parent = "..."`: the policy and the literal that names it.
    pub(crate) fn parent(&self) -> Option<(Parent, &LitStr)> {
        self.given.iter().find_map(|given| match &given.value {
            Value::ParentPolicy(parent, literal) => Some((*parent, literal)),
            _ => None,
        })
    }

    /// `crate = "path"`: where the `tracehop` crate is, for a dependency renamed in Cargo.toml.
    pub(crate) fn crate_path(&self) -> Option<&syn::Path> {
        self.given.iter().find_map(|given| match &given.value {
            Value::CratePath(path) => Some(path),
            _ => None,
        })
    }
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
        match AttributeOption::named(&name) {
            Some(option) if option.roles.contains(&role) => {
                if let Some(value) = parse_value(option, &key, true, input, errors)? {
                    options.given.push(Given { option, key, value });
                }
            }
            Some(option) => {
                // Its value is parsed to go on past it, but only the option itself is reported: what the value
                // should be does not matter where the option does not belong.
                parse_value(option, &key, false, input, &mut Errors::default())?;
                unknown_option(role, &key, errors);
            }
            None => {
                if !input.peek(Token![=]) {
                    return Err(syn::Error::new(key.span(), format!("expected `=` after `{name}`")));
                }
                input.parse::<Token![=]>()?;
                input.parse::<Expr>()?;
                unknown_option(role, &key, errors);
            }
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(())
}

/// Parses what follows the option's name, as its row's [`ValueKind`] says; `None` when the value is wrong
/// (reported in `errors`) or says to leave the option out (`replay = false`). `taken`: whether the attribute
/// takes the option, for the error when its value is missing.
fn parse_value(
    option: &AttributeOption,
    key: &Ident,
    taken: bool,
    input: ParseStream<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<Value>> {
    let name = option.name;
    match option.value {
        ValueKind::HeaderPatterns | ValueKind::Attributes => {
            if !input.peek(syn::token::Paren) {
                return Err(input.error(format!("`{name}` takes a list in parentheses: `{}`", option.example)));
            }
            let content;
            syn::parenthesized!(content in input);
            if option.value == ValueKind::Attributes {
                return parse_user_attributes(&content, option, errors)
                    .map(|attributes| Some(Value::Attributes(attributes)));
            }
            if content.is_empty() {
                errors.at(key, format!("`{name}` needs at least one header name: `{}`", option.example));
            }
            parse_header_patterns(&content, option, errors).map(|patterns| Some(Value::HeaderPatterns(patterns)))
        }
        ValueKind::Flag if !input.peek(Token![=]) => Ok(Some(Value::Flag)),
        _ => {
            if !input.peek(Token![=]) {
                let hint = if taken {
                    format!("`{name}` needs a value: `{}`", option.example)
                } else {
                    format!("expected `=` after `{name}`")
                };
                return Err(syn::Error::new(key.span(), hint));
            }
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            Ok(check_assigned(option, value, errors))
        }
    }
}

/// Checks the value of `name = value` against what the option takes.
fn check_assigned(option: &AttributeOption, value: Expr, errors: &mut Errors) -> Option<Value> {
    match option.value {
        ValueKind::Parameter => parameter_name(&value, option, errors).map(Value::Parameter),
        ValueKind::Broker => system(&value, option, errors).map(|(system, literal)| Value::Broker(system, literal)),
        ValueKind::LiteralOrExpression => Some(Value::Destination(destination(value))),
        ValueKind::Literal => string_literal(&value, option, errors).map(Value::Literal),
        ValueKind::HeaderName => string_literal(&value, option, errors)
            .filter(|literal| header_name(literal, option, false, errors))
            .map(Value::Literal),
        ValueKind::ParentPolicy => {
            parent(&value, option, errors).map(|(parent, literal)| Value::ParentPolicy(parent, literal))
        }
        ValueKind::Flag => match &value {
            Expr::Lit(ExprLit { lit: Lit::Bool(flag), .. }) => flag.value.then_some(Value::Flag),
            other => {
                errors.at(
                    other,
                    format!("`{}` is a flag: write `{}` (or `{} = true`)", option.name, option.example, option.name),
                );
                None
            }
        },
        ValueKind::CratePath => crate_path(&value, option, errors).map(Value::CratePath),
        ValueKind::HeaderPatterns | ValueKind::Attributes => unreachable!("lists are parsed in parentheses"),
    }
}

/// Reports an option the attribute does not take, with the nearest it does or, for an option of the other
/// attribute, why it is that one's only.
fn unknown_option(role: Role, key: &Ident, errors: &mut Errors) {
    let name = key.to_string();
    let suggestion = role
        .options()
        .map(|option| (edit_distance(&name, option.name), option.name))
        .filter(|(distance, _)| *distance <= 2)
        .min();
    let known_list = role.options().map(|option| format!("`{}`", option.name)).collect::<Vec<_>>().join(", ");
    let elsewhere =
        AttributeOption::named(&name).and_then(|option| option.only_because.map(|because| (option.roles, because)));
    let message = match (suggestion, elsewhere) {
        (Some((_, option)), _) => format!("unknown option `{name}`: did you mean `{option}`?"),
        (None, Some((roles, because))) => format!(
            "`{name}` is an option of {} only: {because}; #[{}] takes {known_list}",
            roles.iter().map(|role| format!("#[{}]", role.attribute())).collect::<Vec<_>>().join(" and "),
            role.attribute()
        ),
        (None, None) => format!("unknown option `{name}`; #[{}] takes {known_list}", role.attribute()),
    };
    errors.at(key, message);
}

fn system(value: &Expr, option: &AttributeOption, errors: &mut Errors) -> Option<(System, LitStr)> {
    let literal = string_literal(value, option, errors)?;
    let system = System::named(&literal.value());
    if system.is_none() {
        errors.at(
            &literal,
            format!("unknown messaging system `{}`; tracehop supports {}", literal.value(), brokers::system_names()),
        );
    }
    system.map(|system| (system, literal))
}

fn crate_path(value: &Expr, option: &AttributeOption, errors: &mut Errors) -> Option<syn::Path> {
    let literal = string_literal(value, option, errors)?;
    match literal.parse::<syn::Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.at(
                &literal,
                format!(
                    "`{}` is not a path; write where tracehop is, for example `{}`",
                    literal.value(),
                    option.example
                ),
            );
            None
        }
    }
}

fn parameter_name(value: &Expr, option: &AttributeOption, errors: &mut Errors) -> Option<Ident> {
    let ident = match value {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => path.path.get_ident(),
        _ => None,
    };
    if ident.is_none() {
        errors.at(value, format!("`{}` takes the name of a parameter, for example `{}`", option.name, option.example));
    }
    ident.cloned()
}

fn parent(value: &Expr, option: &AttributeOption, errors: &mut Errors) -> Option<(Parent, LitStr)> {
    let literal = string_literal(value, option, errors)?;
    let written = literal.value();
    match Parent::POLICIES.iter().find(|(name, _, _)| *name == written) {
        Some((_, parent, _)) => Some((*parent, literal)),
        None => {
            let choices: Vec<String> =
                Parent::POLICIES.iter().map(|(name, _, meaning)| format!("\"{name}\" ({meaning})")).collect();
            errors.at(&literal, format!("unknown parent policy `{written}`: use {}", errors::listed(&choices, "or")));
            None
        }
    }
}

fn destination(value: Expr) -> Destination {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Str(literal), .. }) => Destination::Fixed(literal),
        expression => Destination::PerMessage(expression),
    }
}

fn string_literal(value: &Expr, option: &AttributeOption, errors: &mut Errors) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Str(literal), .. }) => Some(literal.clone()),
        other => {
            errors.at(other, format!("`{}` takes a string literal, for example `{}`", option.name, option.example));
            None
        }
    }
}

/// `"pattern", ...`: the header names or patterns of `capture_headers(...)` or `exclude_headers(...)`.
fn parse_header_patterns(
    input: ParseStream<'_>,
    option: &AttributeOption,
    errors: &mut Errors,
) -> syn::Result<Vec<LitStr>> {
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
fn header_name(literal: &LitStr, option: &AttributeOption, wildcards: bool, errors: &mut Errors) -> bool {
    let name = literal.value();
    if name.is_empty() {
        errors.at(literal, format!("a header name cannot be empty; for example `{}`", option.example));
        return false;
    }
    let problem = {
        name.chars()
            .find(|&character| {
                !(character.is_ascii_graphic() && character != '"') || (!wildcards && matches!(character, '*' | '?'))
            })
            .map(|character| match character {
                '*' | '?' => format!("`{}` names one header: `{character}` is no wildcard here", option.name),
                other => format!("`{}` cannot be part of a header name", other.escape_default()),
            })
    };
    match problem {
        Some(problem) => {
            errors.at(literal, format!("`{name}` is not a header name: {problem}; for example `{}`", option.example));
            false
        }
        None => true,
    }
}

/// `key = expr, ...` where a key is a dotted name (`app.order.id`) or a string literal, for keys whose segments
/// are not Rust identifiers (`"app.2fa.enabled"`).
fn parse_user_attributes(
    input: ParseStream<'_>,
    option: &AttributeOption,
    errors: &mut Errors,
) -> syn::Result<Vec<UserAttribute>> {
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
                option.example
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

    /// Parses `written` as the tokens inside `#[<role's attribute>(...)]`: the options and the error messages.
    fn parsed(role: Role, written: &str) -> (Options, Vec<String>) {
        let mut errors = Errors::default();
        let options = parse(role, written.parse().expect("tokens"), &mut errors);
        (options, errors.messages())
    }

    fn other(role: Role) -> Role {
        match role {
            Role::Consumer => Role::Producer,
            Role::Producer => Role::Consumer,
        }
    }

    #[test]
    fn every_example_parses_for_each_attribute_that_takes_its_option() {
        for option in OPTIONS {
            assert!(!option.roles.is_empty(), "`{}` is taken by no attribute", option.name);
            for &role in option.roles {
                let (options, errors) = parsed(role, option.example);
                assert_eq!(errors, Vec::<String>::new(), "{} in #[{}]", option.example, role.attribute());
                let given = options.given(option.name).expect("the option, as given");
                assert_eq!(given.key, option.name, "{}", option.example);
            }
        }
    }

    #[test]
    fn an_option_is_refused_by_the_attribute_that_does_not_take_it() {
        for option in OPTIONS.iter().filter(|option| option.roles.len() == 1) {
            let role = other(option.roles[0]);
            let (options, errors) = parsed(role, option.example);
            assert!(options.given.is_empty(), "{} in #[{}]", option.example, role.attribute());
            let expected = match option.only_because {
                Some(because) => format!(
                    "`{}` is an option of #[{}] only: {because}; #[{}] takes ",
                    option.name,
                    option.roles[0].attribute(),
                    role.attribute()
                ),
                None => format!("unknown option `{}`; #[{}] takes ", option.name, role.attribute()),
            };
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with(&expected), "{} in #[{}]: {}", option.example, role.attribute(), errors[0]);
        }
    }

    #[test]
    fn the_value_of_a_refused_option_is_not_checked_too() {
        let (_, errors) = parsed(Role::Producer, "capture_headers(\"\", x_tenant), group = 5");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("`capture_headers` is an option of #[traced_consumer] only"), "{}", errors[0]);
        assert!(errors[1].starts_with("`group` is an option of #[traced_consumer] only"), "{}", errors[1]);
    }

    #[test]
    fn the_lists_of_options_in_errors_are_the_tables_rows_in_order() {
        let (_, errors) = parsed(Role::Consumer, "colour = \"red\"");
        assert_eq!(
            errors,
            ["unknown option `colour`; #[traced_consumer] takes `message`, `system`, `destination`, `group`, `name`, \
              `parent`, `replay`, `attributes`, `capture_headers`, `exclude_headers`, `attempt_header`, `crate`"]
        );
        let (_, errors) = parsed(Role::Producer, "colour = \"red\"");
        assert_eq!(
            errors,
            ["unknown option `colour`; #[traced_producer] takes `record`, `system`, `destination`, `routing_key`, \
              `name`, `attributes`, `crate`"]
        );
        for role in [Role::Consumer, Role::Producer] {
            let names: Vec<&str> =
                OPTIONS.iter().filter(|option| option.roles.contains(&role)).map(|o| o.name).collect();
            assert_eq!(role.options().map(|option| option.name).collect::<Vec<_>>(), names);
        }
    }

    #[test]
    fn a_near_miss_is_answered_with_the_nearest_option_of_the_attribute() {
        let (_, errors) = parsed(Role::Consumer, "destinaton = \"orders\"");
        assert_eq!(errors, ["unknown option `destinaton`: did you mean `destination`?"]);
        let (_, errors) = parsed(Role::Producer, "rooting_key = \"order.created\"");
        assert_eq!(errors, ["unknown option `rooting_key`: did you mean `routing_key`?"]);
    }

    #[test]
    fn an_option_without_its_value_is_answered_with_its_example() {
        for option in OPTIONS.iter().filter(|option| option.value != ValueKind::Flag) {
            let role = option.roles[0];
            let (_, errors) = parsed(role, option.name);
            let expected = match option.value {
                ValueKind::HeaderPatterns | ValueKind::Attributes => {
                    format!("`{}` takes a list in parentheses: `{}`", option.name, option.example)
                }
                _ => format!("`{}` needs a value: `{}`", option.name, option.example),
            };
            // A missing list is reported at the end of the input, which syn words first.
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].ends_with(&expected), "{}", errors[0]);
        }
    }

    #[test]
    fn a_flag_is_its_name_alone_or_a_bool() {
        for (written, given) in [("replay", true), ("replay = true", true), ("replay = false", false)] {
            let (options, errors) = parsed(Role::Consumer, written);
            assert!(errors.is_empty(), "{written}: {errors:?}");
            assert_eq!(options.given("replay").is_some(), given, "{written}");
        }
        let (_, errors) = parsed(Role::Consumer, "replay = 1");
        assert_eq!(errors, ["`replay` is a flag: write `replay` (or `replay = true`)"]);
    }

    #[test]
    fn the_rows_are_one_of_a_kind_and_their_examples_name_them() {
        for (index, option) in OPTIONS.iter().enumerate() {
            assert!(OPTIONS[..index].iter().all(|earlier| earlier.name != option.name), "`{}` twice", option.name);
            assert!(option.example.starts_with(option.name), "{}", option.example);
            if option.only_because.is_some() {
                assert_eq!(option.roles.len(), 1, "`{}` says why one attribute only takes it", option.name);
            }
            let steers_the_expansion = matches!(option.value, ValueKind::Parameter | ValueKind::CratePath);
            assert_eq!(option.method.is_none(), steers_the_expansion, "`{}`", option.name);
        }
        for looked_up in ["routing_key", "replay"] {
            assert!(AttributeOption::named(looked_up).is_some(), "`{looked_up}` is looked up by name");
        }
    }

    #[test]
    fn an_unknown_parent_policy_is_answered_with_the_policies() {
        let (_, errors) = parsed(Role::Consumer, "parent = \"sideways\"");
        assert_eq!(
            errors,
            ["unknown parent policy `sideways`: use \"continue\" (the producer's span is the parent), \"link\" (a new \
              trace linked to it) or \"none\" (a new trace, the context ignored)"]
        );
    }

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
