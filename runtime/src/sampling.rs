//! A sampler that keeps the traces a consumer's links point at: [`LinkSampler`].
//!
//! Head sampling decides on a span's own trace id. A CONSUMER span that continues its producer's trace follows
//! the producer's decision, so both ends of the message are kept or dropped together. A CONSUMER span that starts
//! a trace of its own (`parent = "link"`, a replay, a batch) has nothing to follow: a ratio sampler keeps it or
//! not on its new trace id, so one time in (1 - ratio) the producer's trace is kept and the consumer's, which
//! links to it, is dropped, and the other way round. [`LinkSampler`] keeps such a span whenever one of the
//! producers it links to was sampled.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

static LINKS_BEFORE_SAMPLING: AtomicBool = AtomicBool::new(false);

/// Whether tracehop gives a span that starts a trace its links before the sampler decides: on once a
/// [`LinkSampler`] is made, or [`set_links_before_sampling`] says so.
///
/// A span with a sampled parent always has its links (and its name and attributes) in the span builder. A span
/// that starts a trace, with links to the messages it handles, otherwise starts without them, and they are
/// computed only if it is recorded: a batch span that is dropped reads no message's context. With this on, its
/// links are computed first and the sampler sees them; its name and attributes still only if it is recorded.
pub fn links_before_sampling() -> bool {
    LINKS_BEFORE_SAMPLING.load(Ordering::Relaxed)
}

/// Sets [`links_before_sampling`] for the whole process: `true` for a sampler of your own that reads the links
/// of spans that start a trace (a [`LinkSampler`] turns it on itself).
///
/// ```
/// tracehop::set_links_before_sampling(true);
/// assert!(tracehop::links_before_sampling());
/// # tracehop::set_links_before_sampling(false);
/// ```
pub fn set_links_before_sampling(before: bool) {
    LINKS_BEFORE_SAMPLING.store(before, Ordering::Relaxed);
}

/// A sampler that samples a CONSUMER span starting a trace of its own when any span it links to was sampled,
/// and otherwise asks the sampler it wraps.
///
/// With `parent = "link"` ([`ParentPolicy::Link`](crate::ParentPolicy::Link)), a replay handler or a batch
/// handler, a consumer span does not continue its producer's trace: it starts a new one, linked to the
/// producer's span (to each message's, for a batch). The sampler of the SDK decides on that new trace alone, so
/// under a ratio the linked producer's trace is kept while the consumer's is dropped, or the other way round, and
/// the link points at nothing. This sampler samples such a span when a link's span context is sampled: the
/// consumer's trace is kept whenever a trace it points at is.
///
/// | the span | decision |
/// |---|---|
/// | CONSUMER, no valid parent, a link sampled | record and sample |
/// | CONSUMER, no valid parent, no link sampled (or none) | the wrapped sampler's |
/// | a valid parent (sampled or not), or any other kind | the wrapped sampler's |
///
/// A span with a valid parent is left to the wrapped sampler (parent-based samplers follow the parent), so a
/// trace is never cut in the middle, and an unsampled trace continued by a consumer stays unsampled.
///
/// **`tracestate`.** A span sampled for its link keeps the `tracestate` the SDK's own samplers give a new trace:
/// the parent context's, empty for a root. The linked producer's `tracestate` stays on the link and does not
/// cross into the new trace: it describes the producer's trace (a vendor's entries, the sampling threshold of
/// OpenTelemetry's `ot` member, which is only true of that trace's id), and a `parent = "link"` consumer
/// adopts nothing of its producer's context by design.
///
/// Making one turns on [`links_before_sampling`], so tracehop passes the links of the spans that start a trace
/// to the SDK before it samples.
///
/// ```
/// use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
///
/// // Keep 10% of new traces, and every consumer trace linked to a kept producer.
/// let sampler = tracehop::LinkSampler::new(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.1))));
/// let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
/// opentelemetry::global::set_tracer_provider(provider);
/// ```
///
/// `tracehop::init()` installs it for `OTEL_TRACES_SAMPLER=tracehop_links_parentbased_always_on` (and
/// `tracehop_links_` before any other standard sampler's name, such as `tracehop_links_parentbased_traceidratio`).
#[derive(Clone, Debug)]
pub struct LinkSampler {
    inner: Box<dyn ShouldSample>,
}

impl LinkSampler {
    /// A link sampler that asks `inner` about every span it does not sample for its links.
    pub fn new(inner: impl Into<Box<dyn ShouldSample>>) -> Self {
        set_links_before_sampling(true);
        LinkSampler { inner: inner.into() }
    }
}

impl Default for LinkSampler {
    /// Over the SDK's default sampler: parent-based, always on for a new trace.
    fn default() -> Self {
        Self::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
    }
}

impl ShouldSample for LinkSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        if *span_kind == SpanKind::Consumer
            && !parent_context.is_some_and(|parent| parent.span().span_context().is_valid())
            && links.iter().any(|link| link.span_context.is_sampled())
        {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: parent_context
                    .map(|parent| parent.span().span_context().trace_state().clone())
                    .unwrap_or_default(),
            };
        }
        self.inner.should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

#[cfg(test)]
mod tests;
