//! The contract between the macros and the runtime: everything an expansion of `#[traced_consumer]` or
//! `#[traced_producer]` names, reached through `tracehop::__private` so a user's imports never change what an
//! expansion means. Beside re-exports of the public API, it holds what only expansions need: the dispatch of a
//! handler's parameter to one message's span or a batch's ([`MessageParameter`]), the choice of how a return
//! value is recorded (`outcome`), and two helpers that fix a body's types.

pub use crate::__record_outcome as record_outcome;
pub use crate::brokers::feature_traits::*;
pub use crate::brokers::{BrokerCount, EnabledBrokers, Features, SoleBroker, Spans};
pub use crate::{DestinationName, Handler, MessageSpan, MessagingSystem, ParentPolicy, SpanAttributes};
pub use core::{concat, module_path};

use crate::carrier::{ConsumedMessage, PublishedMessage};
use crate::span::SpanStart;

crate::brokers::with_broker_notes! { reads,
    message = "`{Self}` is neither a message tracehop can read the trace context from nor a batch of them",
    label = "not a message or a batch of messages",
    note = "by value or by reference, or a batch of them (`&[M]`, `Vec<M>`, `&Vec<M>`); for another type, implement `tracehop::ConsumedMessage`";
/// What a `#[traced_consumer]` handler takes: one message, or a batch of them (`[M]`, `Vec<M>`, reached through
/// any reference). The expansion starts the handler's span through it, so the compiler, not the macro, decides
/// which span a parameter gets, and a parameter that is neither is reported as such, at the parameter.
pub trait MessageParameter {
    /// Prepares the handler's CONSUMER span: [`MessageSpan::consumer`] for one message,
    /// [`MessageSpan::consumer_batch`] for a batch.
    fn consumer_span(&self, handler: &'static Handler) -> SpanStart<'_>;
}
}

#[diagnostic::do_not_recommend]
impl<M: ConsumedMessage> MessageParameter for M {
    fn consumer_span(&self, handler: &'static Handler) -> SpanStart<'_> {
        MessageSpan::consumer(handler, self)
    }
}

#[diagnostic::do_not_recommend]
impl<M: ConsumedMessage> MessageParameter for [M] {
    fn consumer_span(&self, handler: &'static Handler) -> SpanStart<'_> {
        MessageSpan::consumer_batch(handler, self)
    }
}

#[diagnostic::do_not_recommend]
impl<M: ConsumedMessage> MessageParameter for Vec<M> {
    fn consumer_span(&self, handler: &'static Handler) -> SpanStart<'_> {
        MessageSpan::consumer_batch(handler, self)
    }
}

/// Starts the CONSUMER span of a handler's message parameter `M` (one message, or a batch): implemented by
/// [`Spans`] for every [`MessageParameter`]. An expansion that knows the broker calls it on the feature trait's
/// `Spans`, which is no type when the feature is off: the implementation is then ambiguous, and the compiler
/// reports only the missing feature.
pub trait StartsConsumerSpan<M: ?Sized> {
    /// The span of `message`, handled by `handler`.
    fn consumer<'a>(message: &'a M, handler: &'static Handler) -> SpanStart<'a>;
}

impl<M: MessageParameter + ?Sized> StartsConsumerSpan<M> for Spans {
    #[inline]
    fn consumer<'a>(message: &'a M, handler: &'static Handler) -> SpanStart<'a> {
        message.consumer_span(handler)
    }
}

/// Starts the PRODUCER span describing a publish function's record `R` and writes the span's context into it:
/// implemented by [`Spans`] for every [`PublishedMessage`]. Reached through a broker's feature trait, as
/// [`StartsConsumerSpan`] is, so that a record of a broker whose feature is off is reported only as that.
pub trait StartsProducerSpan<R> {
    /// The span of publishing `record`, by `handler`.
    fn producer<'a>(handler: &'static Handler, record: &'a R) -> SpanStart<'a>;

    /// Writes `span`'s context into `record` ([`MessageSpan::inject`]).
    fn inject(span: &MessageSpan, record: &mut R);
}

impl<R: PublishedMessage> StartsProducerSpan<R> for Spans {
    #[inline]
    fn producer<'a>(handler: &'static Handler, record: &'a R) -> SpanStart<'a> {
        MessageSpan::producer(handler).describing(record)
    }

    #[inline]
    fn inject(span: &MessageSpan, record: &mut R) {
        span.inject(record)
    }
}

/// Runs `body`: a sync handler returning `impl Future` builds its future in a closure, so an early `return`
/// in its body is instrumented like the tail expression.
#[inline]
pub fn evaluate<T>(body: impl FnOnce() -> T) -> T {
    body()
}

/// Fixes the output type of the async block holding a handler's body to the handler's return type.
#[inline]
pub fn returning<R, F: core::future::Future<Output = R>>(future: F) -> F {
    future
}

/// Chooses, at the macro's expansion site where the return type is concrete, the most precise way to record
/// it: [`HandlerOutcome`](crate::HandlerOutcome) when implemented, else any `Result`'s `Err` without a message, else nothing. This
/// is "autoref specialization": method lookup tries `&&Outcome`, then `&Outcome`, then `Outcome`.
#[doc(hidden)]
pub mod outcome {
    use crate::{HandlerOutcome, MessageSpan};

    pub struct Outcome<'a, T>(pub &'a T);

    pub trait RecordKnownOutcome {
        fn record_outcome(&self, span: &MessageSpan);
    }

    impl<T: HandlerOutcome> RecordKnownOutcome for &&Outcome<'_, T> {
        fn record_outcome(&self, span: &MessageSpan) {
            self.0.record(span)
        }
    }

    pub trait RecordAnyResult {
        fn record_outcome(&self, span: &MessageSpan);
    }

    impl<T, E> RecordAnyResult for &Outcome<'_, Result<T, E>> {
        fn record_outcome(&self, span: &MessageSpan) {
            if self.0.is_err() {
                span.record_error(std::any::type_name::<E>(), &"the handler returned an error");
            }
        }
    }

    pub trait RecordNothing {
        fn record_outcome(&self, span: &MessageSpan);
    }

    impl<T> RecordNothing for Outcome<'_, T> {
        fn record_outcome(&self, _span: &MessageSpan) {}
    }

    /// Records `value` on `span` by the most precise rule its type allows.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __record_outcome {
        ($value:expr, $span:expr) => {{
            #[allow(unused_imports)]
            use $crate::__private::outcome::{RecordAnyResult as _, RecordKnownOutcome as _, RecordNothing as _};
            (&&&$crate::__private::outcome::Outcome($value)).record_outcome($span)
        }};
    }
}
