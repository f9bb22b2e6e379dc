//! The decision table of [`LinkSampler`]: which spans it samples for their links, and that it hands every other
//! one to the sampler it wraps, unchanged.

use std::str::FromStr;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};

use super::*;

const KINDS: [SpanKind; 5] =
    [SpanKind::Consumer, SpanKind::Producer, SpanKind::Client, SpanKind::Server, SpanKind::Internal];

fn span_context(trace: u128, flags: TraceFlags, remote: bool, tracestate: &str) -> SpanContext {
    let trace_state = TraceState::from_str(tracestate).expect("a valid tracestate");
    SpanContext::new(TraceId::from(trace), SpanId::from(7_u64), flags, remote, trace_state)
}

fn link(flags: TraceFlags) -> Link {
    Link::with_context(span_context(0xa1, flags, true, "producer=linked"))
}

fn sampled_link() -> Link {
    link(TraceFlags::SAMPLED)
}

fn unsampled_link() -> Link {
    link(TraceFlags::default())
}

fn parent(flags: TraceFlags, remote: bool) -> Context {
    // Despite its name, it holds the span context as it is: `remote` says whether the parent is remote.
    Context::new().with_remote_span_context(span_context(0xb2, flags, remote, "parent=own"))
}

/// A parent context holding a span whose context is not valid: not a parent to continue.
fn invalid_parent() -> Context {
    Context::new().with_remote_span_context(SpanContext::empty_context())
}

fn result(sampler: &dyn ShouldSample, parent: Option<&Context>, kind: SpanKind, links: &[Link]) -> SamplingResult {
    sampler.should_sample(parent, TraceId::from(0xc3_u128), "process orders", &kind, &[], links)
}

fn decision(sampler: &dyn ShouldSample, parent: Option<&Context>, kind: SpanKind, links: &[Link]) -> SamplingDecision {
    result(sampler, parent, kind, links).decision
}

/// Every parent that is not continued: none given, a context without a span, a span context that is not valid.
fn roots() -> [Option<Context>; 3] {
    [None, Some(Context::new()), Some(invalid_parent())]
}

#[test]
fn a_consumer_span_starting_a_trace_is_sampled_when_a_link_is_sampled() {
    let sampler = LinkSampler::new(Sampler::AlwaysOff);
    for root in roots() {
        for links in
            [vec![sampled_link()], vec![unsampled_link(), sampled_link()], vec![sampled_link(), unsampled_link()]]
        {
            assert_eq!(
                decision(&sampler, root.as_ref(), SpanKind::Consumer, &links),
                SamplingDecision::RecordAndSample,
                "root {root:?}, links {links:?}"
            );
        }
    }
}

#[test]
fn a_consumer_span_starting_a_trace_with_no_sampled_link_is_the_inner_samplers_to_decide() {
    for (inner, expected) in [
        (Sampler::AlwaysOff, SamplingDecision::Drop),
        (Sampler::TraceIdRatioBased(0.0), SamplingDecision::Drop),
        (Sampler::ParentBased(Box::new(Sampler::AlwaysOff)), SamplingDecision::Drop),
        (Sampler::AlwaysOn, SamplingDecision::RecordAndSample),
        (Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), SamplingDecision::RecordAndSample),
    ] {
        let sampler = LinkSampler::new(inner.clone());
        for root in roots() {
            for links in [vec![], vec![unsampled_link()], vec![unsampled_link(), unsampled_link()]] {
                let decided = decision(&sampler, root.as_ref(), SpanKind::Consumer, &links);
                assert_eq!(decided, decision(&inner, root.as_ref(), SpanKind::Consumer, &links), "{inner:?} {root:?}");
                // The SDK's `ParentBased` takes a span context that is not valid for an unsampled parent.
                if !root.as_ref().is_some_and(|root| root.has_active_span()) {
                    assert_eq!(decided, expected, "inner {inner:?}, root {root:?}, links {links:?}");
                }
            }
        }
    }
}

#[test]
fn a_span_with_a_valid_parent_is_the_inner_samplers_to_decide_whatever_its_links() {
    let sampler = LinkSampler::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
    for remote in [true, false] {
        let unsampled = parent(TraceFlags::default(), remote);
        let sampled = parent(TraceFlags::SAMPLED, remote);
        for kind in KINDS {
            for links in [vec![], vec![sampled_link()], vec![unsampled_link()]] {
                assert_eq!(decision(&sampler, Some(&unsampled), kind.clone(), &links), SamplingDecision::Drop);
                assert_eq!(decision(&sampler, Some(&sampled), kind.clone(), &links), SamplingDecision::RecordAndSample);
            }
        }
    }
}

#[test]
fn a_span_of_another_kind_is_the_inner_samplers_to_decide_even_with_a_sampled_link() {
    let sampler = LinkSampler::new(Sampler::AlwaysOff);
    for kind in KINDS.into_iter().filter(|kind| *kind != SpanKind::Consumer) {
        for root in roots() {
            assert_eq!(decision(&sampler, root.as_ref(), kind.clone(), &[sampled_link()]), SamplingDecision::Drop);
        }
    }
}

#[test]
fn a_span_sampled_for_its_link_keeps_its_own_traces_tracestate_not_the_links() {
    let sampler = LinkSampler::new(Sampler::AlwaysOff);
    for root in roots() {
        let sampled = result(&sampler, root.as_ref(), SpanKind::Consumer, &[sampled_link()]);
        assert_eq!(sampled.trace_state, TraceState::default(), "root {root:?}");
        assert!(sampled.attributes.is_empty());
    }
}

/// An inner sampler whose answer is told apart from any other: what it says must come back as it is.
#[derive(Clone, Debug)]
struct Recognisable;

impl ShouldSample for Recognisable {
    fn should_sample(
        &self,
        _parent: Option<&Context>,
        _trace_id: TraceId,
        name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        SamplingResult {
            decision: SamplingDecision::RecordOnly,
            attributes: vec![
                KeyValue::new("asked.name", name.to_owned()),
                KeyValue::new("asked.links", links.len() as i64),
            ],
            trace_state: TraceState::from_str("inner=answer").expect("a valid tracestate"),
        }
    }
}

#[test]
fn the_inner_samplers_answer_is_returned_unchanged_with_what_it_was_asked() {
    let sampler = LinkSampler::new(Recognisable);
    let continued = parent(TraceFlags::SAMPLED, true);
    for (parent, kind, links) in [
        (None, SpanKind::Consumer, vec![unsampled_link()]),
        (Some(&continued), SpanKind::Consumer, vec![sampled_link(), unsampled_link()]),
        (None, SpanKind::Producer, vec![sampled_link()]),
    ] {
        let answer = result(&sampler, parent, kind, &links);
        assert_eq!(answer.decision, SamplingDecision::RecordOnly);
        assert_eq!(
            answer.attributes,
            [KeyValue::new("asked.name", "process orders"), KeyValue::new("asked.links", links.len() as i64)]
        );
        assert_eq!(answer.trace_state.header(), "inner=answer");
    }
}

#[test]
fn by_default_it_wraps_the_sdks_default_parent_based_always_on() {
    let sampler = LinkSampler::default();
    assert_eq!(decision(&sampler, None, SpanKind::Internal, &[]), SamplingDecision::RecordAndSample);
    assert_eq!(decision(&sampler, None, SpanKind::Consumer, &[unsampled_link()]), SamplingDecision::RecordAndSample);
    let unsampled = parent(TraceFlags::default(), true);
    assert_eq!(decision(&sampler, Some(&unsampled), SpanKind::Consumer, &[sampled_link()]), SamplingDecision::Drop);
}

#[test]
fn making_one_turns_links_before_sampling_on() {
    let _sampler = LinkSampler::new(Sampler::AlwaysOff);
    assert!(links_before_sampling());
}
