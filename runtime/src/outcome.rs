//! How a handler's return value becomes the span's outcome.

use std::fmt::Display;

use crate::span::MessageSpan;

/// A handler result tracehop knows how to record on the handler's span.
///
/// `()` records nothing; `Result<T, E>` with `E: Display` records an `Err` as status Error with the error's
/// `Display`, `error.type` (the error's type name) and an `exception` event. Implement it for your own
/// return types to record their failures. The macros also accept return types that do not implement it:
/// any other `Result` records its `Err` without a message, anything else records nothing.
///
/// ```
/// use tracehop::{HandlerOutcome, MessageSpan};
///
/// enum Ack { Done, Rejected(&'static str) }
///
/// impl HandlerOutcome for Ack {
///     fn record(&self, span: &MessageSpan) {
///         if let Ack::Rejected(reason) = self {
///             span.record_error("Ack::Rejected", reason);
///         }
///     }
/// }
/// ```
pub trait HandlerOutcome {
    /// Records this outcome on `span`.
    fn record(&self, span: &MessageSpan);
}

impl HandlerOutcome for () {
    fn record(&self, _span: &MessageSpan) {}
}

impl<T, E: Display> HandlerOutcome for Result<T, E> {
    fn record(&self, span: &MessageSpan) {
        if let Err(error) = self {
            span.record_error(std::any::type_name::<E>(), error);
        }
    }
}

/// Chooses, at the macro's expansion site where the return type is concrete, the most precise way to record
/// it: [`HandlerOutcome`] when implemented, else any `Result`'s `Err` without a message, else nothing. This
/// is "autoref specialization": method lookup tries `&&Outcome`, then `&Outcome`, then `Outcome`.
#[doc(hidden)]
pub mod select {
    use super::*;

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
