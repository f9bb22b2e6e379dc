//! Where a span's parent and links come from, decided before sampling: the parent decides it.

use opentelemetry::trace::Link;
use opentelemetry::Context;

use crate::brokers::MessagingSystem;
use crate::carrier::IncomingContext;
use crate::handler::Handler;
use crate::settings::ParentPolicy;
use crate::w3c::{ContextRejection, Trims};

/// Where a span's parent and links come from, decided before sampling.
pub(super) enum Origin<'a> {
    /// One consumed message under a [`ParentPolicy`].
    Message { incoming: Option<IncomingContext>, policy: ParentPolicy },
    /// A publish, or a message of a batch handled in its own span: a child of the current context, linked to
    /// `link` when the message carried a context.
    Current { link: Option<IncomingContext> },
    /// A batch: a new root linked to each message's context, computed only when the span is recorded.
    Batch(Batch<'a>),
}

/// The messages of a batch span, as what the span needs of them. What takes a pass over every message is
/// computed only for a recorded span, by `facts`.
pub(super) struct Batch<'a> {
    pub(super) count: usize,
    pub(super) system: Option<MessagingSystem>,
    pub(super) facts: Box<dyn FnOnce(usize) -> BatchFacts<'a> + 'a>,
}

pub(super) struct BatchFacts<'a> {
    /// The destination, when every message has the same one.
    pub(super) destination: Option<&'a str>,
    pub(super) links: Vec<Link>,
    pub(super) dropped: usize,
}

/// The handler of the batch span current where [`MessageSpan::in_batch`](crate::MessageSpan::in_batch) is called.
pub(super) struct BatchHandler(pub(super) &'static Handler);

/// A span's parent, its links and what its incoming context lost, resolved from its [`Origin`].
pub(super) struct Parent<'a> {
    pub(super) context: Context,
    /// The one link of a single message's span: its producer's span.
    /// The context holding the producer's span, which is read only for a recorded span: a span context (and
    /// its tracestate) is not copied for a span that is dropped.
    pub(super) link: Option<Context>,
    pub(super) rejection: Option<ContextRejection>,
    pub(super) trims: Trims,
    pub(super) batch: Option<Batch<'a>>,
}

/// Resolves where a span's parent and links come from. Decided before sampling: the parent decides it.
pub(super) fn resolve_parent(origin: Origin<'_>) -> Parent<'_> {
    let parent = |context, link, rejection, trims| Parent { context, link, rejection, trims, batch: None };
    match origin {
        Origin::Message { incoming: Some(IncomingContext::Continued(context, trims)), policy } => {
            if policy == ParentPolicy::Continue {
                parent(context.clone(), Some(context), None, trims)
            } else {
                // Linked, never adopted: no trace id, sampling flag or baggage of the producer's crosses over.
                let trims = Trims { tracestate: trims.tracestate, baggage: None };
                parent(Context::new(), Some(context), None, trims)
            }
        }
        Origin::Message { incoming: Some(IncomingContext::NewRoot(rejection)), .. } => {
            parent(Context::new(), None, Some(rejection), Trims::default())
        }
        Origin::Message { incoming: None, .. } => parent(Context::new(), None, None, Trims::default()),
        Origin::Current { link: Some(IncomingContext::Continued(context, trims)) } => {
            let trims = Trims { tracestate: trims.tracestate, baggage: None };
            parent(Context::current(), Some(context), None, trims)
        }
        Origin::Current { link: Some(IncomingContext::NewRoot(rejection)) } => {
            parent(Context::current(), None, Some(rejection), Trims::default())
        }
        Origin::Current { link: None } => parent(Context::current(), None, None, Trims::default()),
        Origin::Batch(batch) => Parent { batch: Some(batch), ..parent(Context::new(), None, None, Trims::default()) },
    }
}
