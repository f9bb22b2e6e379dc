//! Checks that need both the options and the signature: each mistake reported at its token, none stopping the
//! others.

use crate::brokers;
use crate::errors::Errors;
use crate::options::{Options, Parent, Role};
use crate::signature::MessageParameter;

pub(crate) fn options_against_signature(
    role: Role,
    options: &Options,
    message: Option<&MessageParameter>,
    errors: &mut Errors,
) {
    let known_system = options.system().map(|(system, _)| system).or(message.and_then(|message| message.system));
    if let (Some(routing_key), Some(system)) = (options.given("routing_key"), known_system) {
        if !system.broker().routes_by_key {
            errors.at(
                &routing_key.key,
                format!(
                    "`routing_key` is for brokers that route by a key, such as {}; this producer publishes to {}, whose record carries its own key",
                    brokers::names_routing_by_key(),
                    system.name()
                ),
            );
        }
    }
    if let Some(batch) = message.filter(|message| message.batch) {
        if let Some((Parent::Continue, literal)) = options.parent() {
            errors.at(
                literal,
                "a batch span never continues a producer's trace: it links to every message's; remove `parent`, or write `parent = \"none\"` to ignore the messages' contexts",
            );
        }
        if let Some(replay) = options.given("replay") {
            errors.at(
                &replay.key,
                "`replay` marks the span of one replayed message; this handler takes a batch: remove `replay`, and to mark each message's span, pass a `Handler::consumer(..).replay()` to `MessageSpan::in_batch_as` in the body",
            );
            errors.at(&batch.ty, "this parameter is a batch of messages");
        }
    }
    if let (Some((system, literal)), Some(message)) = (options.system(), message) {
        let message_system = message.system.unwrap_or(system);
        if system != message_system {
            errors.at(
                literal,
                format!(
                    "`system = \"{}\"` contradicts the {} parameter's type, which is a {} type; remove `system` (tracehop takes it from the type)",
                    literal.value(),
                    match role {
                        Role::Consumer => "message",
                        Role::Producer => "record",
                    },
                    message_system.name(),
                ),
            );
            errors.at(&message.ty, format!("this is a {} type", message_system.name()));
        }
    }
}
