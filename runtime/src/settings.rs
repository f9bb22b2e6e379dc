//! Process-wide settings, read on every message without a lock.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// The default of [`max_links_per_span`]: OpenTelemetry's SDK default span limit on links.
pub const DEFAULT_MAX_LINKS_PER_SPAN: usize = 128;

static MAX_LINKS_PER_SPAN: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_LINKS_PER_SPAN);
static DEFAULT_PARENT_POLICY: AtomicU8 = AtomicU8::new(ParentPolicy::Continue.encoded());
static RANDOM_TRACE_IDS: AtomicBool = AtomicBool::new(false);

/// The most links tracehop adds to one batch span; the valid contexts past it are counted in
/// `tracehop.links.dropped` instead. Keeps a batch of ten thousand messages from making a span of ten thousand
/// links.
pub fn max_links_per_span() -> usize {
    MAX_LINKS_PER_SPAN.load(Ordering::Relaxed)
}

/// Sets [`max_links_per_span`] for the whole process.
///
/// ```
/// tracehop::set_max_links_per_span(32);
/// assert_eq!(tracehop::max_links_per_span(), 32);
/// # tracehop::set_max_links_per_span(tracehop::DEFAULT_MAX_LINKS_PER_SPAN);
/// ```
pub fn set_max_links_per_span(max_links: usize) {
    MAX_LINKS_PER_SPAN.store(max_links, Ordering::Relaxed);
}

/// The [`ParentPolicy`] of handlers that set none: [`ParentPolicy::Continue`] unless changed.
pub fn default_parent_policy() -> ParentPolicy {
    ParentPolicy::from_u8(DEFAULT_PARENT_POLICY.load(Ordering::Relaxed))
}

/// Sets the [`ParentPolicy`] of every handler that sets none, for the whole process: for a service at a trust
/// boundary, [`ParentPolicy::Link`] keeps every foreign trace id, sampling flag and baggage out.
pub fn set_default_parent_policy(policy: ParentPolicy) {
    DEFAULT_PARENT_POLICY.store(policy.encoded(), Ordering::Relaxed);
}

/// Whether the trace ids this process makes are random, so the `traceparent` tracehop writes for a trace it
/// starts (a producer outside any trace, a consumer whose message has no context to continue) sets W3C Trace
/// Context Level 2's random flag (`-03`, `-02`). `tracehop::init()` turns it on: the tracer provider it builds
/// draws trace ids with the OpenTelemetry SDK's random id generator. Off otherwise, since tracehop cannot see
/// which id generator a provider you build uses.
///
/// OpenTelemetry's SDK has no notion of the flag: the spans it records and exports keep flags `01` whatever this
/// says; only the headers tracehop writes carry it. A trace continued from a message keeps that message's flag
/// either way.
pub fn random_trace_ids() -> bool {
    RANDOM_TRACE_IDS.load(Ordering::Relaxed)
}

/// Sets [`random_trace_ids`] for the whole process: `true` when your tracer provider's id generator draws trace
/// ids at random (the SDK's default `RandomIdGenerator` does), `false` for one that does not.
///
/// ```
/// tracehop::set_random_trace_ids(true);
/// assert!(tracehop::random_trace_ids());
/// # tracehop::set_random_trace_ids(false);
/// ```
pub fn set_random_trace_ids(random: bool) {
    RANDOM_TRACE_IDS.store(random, Ordering::Relaxed);
}

/// What a consumer does with the trace context a message carries: how far it trusts the producer.
///
/// Set per handler (`parent = "link"` in the macros, [`Handler::parent`](crate::Handler::parent)) or for the whole process
/// ([`set_default_parent_policy`]); a handler's own policy wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParentPolicy {
    /// Continue the producer's trace: its span is the parent (and a link), its baggage is current. The default.
    Continue,
    /// Start a new trace linked to the producer's span, adopting nothing of it (no trace id, sampling flag or
    /// baggage): for replayed events and messages from outside the trust boundary.
    Link,
    /// Start a new trace and ignore the incoming context entirely; its headers are not even read.
    None,
}

impl ParentPolicy {
    pub(crate) const fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Link,
            2 => Self::None,
            _ => Self::Continue,
        }
    }

    pub(crate) const fn encoded(self) -> u8 {
        match self {
            Self::Continue => 0,
            Self::Link => 1,
            Self::None => 2,
        }
    }
}
