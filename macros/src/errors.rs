//! Collects every error of one macro invocation, so a user sees all their mistakes at once.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

#[derive(Default)]
pub(crate) struct Errors {
    collected: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.collected {
            Some(collected) => collected.combine(error),
            None => self.collected = Some(error),
        }
    }

    /// An error pointing at `tokens`.
    pub(crate) fn at(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.collected.is_none()
    }

    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.collected.map(|error| error.to_compile_error()).unwrap_or_default()
    }

    /// The messages collected, in order.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> Vec<String> {
        self.collected.iter().flatten().map(|error| error.to_string()).collect()
    }
}

/// `a, b or c` (with `conjunction` "or"): the items of a list as errors word it.
pub(crate) fn listed(items: &[String], conjunction: &str) -> String {
    match items.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
        None => String::new(),
    }
}
