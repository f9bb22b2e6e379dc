//! Prints finished spans as one indented tree per trace, for the examples.

use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::SpanData;

/// Prints each trace as an indented tree: kind, name, duration and the attributes tracehop recorded.
pub fn print_traces(spans: &[SpanData]) {
    let mut traces: Vec<TraceId> = spans.iter().map(|span| span.span_context.trace_id()).collect();
    traces.dedup();
    for trace_id in traces {
        println!("\ntrace {trace_id}");
        let in_trace: Vec<&SpanData> = spans.iter().filter(|span| span.span_context.trace_id() == trace_id).collect();
        let roots = in_trace
            .iter()
            .filter(|span| !in_trace.iter().any(|parent| parent.span_context.span_id() == span.parent_span_id));
        for root in roots {
            print_span(root, &in_trace, 1);
        }
    }
}

fn print_span(span: &SpanData, in_trace: &[&SpanData], depth: usize) {
    let duration = span.end_time.duration_since(span.start_time).unwrap_or_default();
    let parent = if span.parent_span_id == SpanId::INVALID {
        "root".to_owned()
    } else {
        format!("parent {}", span.parent_span_id)
    };
    let group = span
        .attributes
        .iter()
        .find(|attribute| attribute.key.as_str() == "messaging.consumer.group.name")
        .map(|group| format!(" [{}]", group.value))
        .unwrap_or_default();
    println!(
        "{:indent$}{:?} \"{}\"{group} span {} ({parent}) {:.1} ms",
        "",
        span.span_kind,
        span.name,
        span.span_context.span_id(),
        duration.as_secs_f64() * 1e3,
        indent = depth * 2
    );
    for link in &span.links.links {
        println!("{:indent$}link -> span {}", "", link.span_context.span_id(), indent = depth * 2 + 4);
    }
    for attribute in &span.attributes {
        println!("{:indent$}{} = {}", "", attribute.key, attribute.value, indent = depth * 2 + 4);
    }
    let mut children: Vec<&&SpanData> =
        in_trace.iter().filter(|child| child.parent_span_id == span.span_context.span_id()).collect();
    children.sort_by_key(|child| child.start_time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default());
    for child in children {
        print_span(child, in_trace, depth + 1);
    }
}
