//! The trace picture: finished spans drawn as one tree per trace, for a terminal, a test's output or a log.
//!
//! ```text
//! trace 4bf92f3577b34da6a3ce929d0e0e4736
//!   Producer "send orders" span 2ee4753455b53ac6 (root)            |■■■■■■■■■■■■■■■■| 0.4 ms
//!     Consumer "process orders" span c7324254b797bc47 (parent 2ee4753455b53ac6) |       ■■■■■■■■■| 0.3 ms
//!         link -> span 2ee4753455b53ac6
//! ```
//!
//! Each line holds a span: its kind, name, consumer group, id and parent, a bar placing it on the trace's own time
//! axis, its duration and, when it failed, its status. Children are indented under their parent, in start order;
//! links and (with [`TracePicture::attributes`]) attributes follow on lines of their own. Colour only on request
//! ([`TracePicture::colour`]; [`print`] asks for it when standard output is a terminal). Needs the `print` feature.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, Status, TraceId};
use opentelemetry_sdk::trace::SpanData;

/// How wide the time axis is, in characters.
const AXIS_WIDTH: usize = 16;
/// How wide the part before the axis is: shorter heads are padded so the bars line up; longer ones push their
/// bar right rather than lose their ids.
const HEAD_WIDTH: usize = 76;

/// Draws finished spans (from the SDK's in-memory exporter, say) as trees: one line a span — its kind, name,
/// consumer group, id and parent, a bar placing it on the trace's own time axis, its duration and, when it
/// failed, its status — children indented under their parent in start order, links and (optionally) attributes
/// on lines of their own.
///
/// ```
/// # fn spans() -> Vec<opentelemetry_sdk::trace::SpanData> { Vec::new() }
/// let picture = tracehop::TracePicture::new().attributes(true).render(&spans());
/// print!("{picture}");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TracePicture {
    attributes: bool,
    colour: bool,
}

impl TracePicture {
    /// A picture without attributes and without colour.
    pub const fn new() -> Self {
        Self { attributes: false, colour: false }
    }

    /// Also draws every span's attributes, one per line, under it.
    pub const fn attributes(mut self, attributes: bool) -> Self {
        self.attributes = attributes;
        self
    }

    /// Colours kinds, bars and failures with ANSI escapes, for a terminal.
    pub const fn colour(mut self, colour: bool) -> Self {
        self.colour = colour;
        self
    }

    /// The picture of `spans`: one tree per trace, traces in the order their first span appears.
    pub fn render(&self, spans: &[SpanData]) -> String {
        let mut out = String::new();
        let mut traces: Vec<TraceId> = Vec::new();
        for span in spans {
            if !traces.contains(&span.span_context.trace_id()) {
                traces.push(span.span_context.trace_id());
            }
        }
        for trace_id in traces {
            let in_trace: Vec<&SpanData> =
                spans.iter().filter(|span| span.span_context.trace_id() == trace_id).collect();
            let start = in_trace.iter().map(|span| span.start_time).min().unwrap_or(SystemTime::UNIX_EPOCH);
            let end = in_trace.iter().map(|span| span.end_time).max().unwrap_or(start);
            let axis = Axis { start, length: end.duration_since(start).unwrap_or_default() };
            let _ = writeln!(out, "\ntrace {trace_id}");
            let mut roots: Vec<&SpanData> = in_trace
                .iter()
                .copied()
                .filter(|span| !in_trace.iter().any(|parent| parent.span_context.span_id() == span.parent_span_id))
                .collect();
            roots.sort_by_key(|span| span.start_time);
            for root in roots {
                self.draw(&mut out, root, &in_trace, &axis, 1);
            }
        }
        out
    }

    fn draw(&self, out: &mut String, span: &SpanData, in_trace: &[&SpanData], axis: &Axis, depth: usize) {
        let indent = depth * 2;
        let parent = if span.parent_span_id == SpanId::INVALID {
            "root".to_owned()
        } else {
            format!("parent {}", span.parent_span_id)
        };
        let group = span
            .attributes
            .iter()
            .find(|attribute| {
                attribute.key.as_str() == opentelemetry_semantic_conventions::attribute::MESSAGING_CONSUMER_GROUP_NAME
            })
            .map(|group| format!(" [{}]", group.value))
            .unwrap_or_default();
        let kind = format!("{:?}", span.span_kind);
        let head = format!("{kind} \"{}\"{group} span {} ({parent})", span.name, span.span_context.span_id());
        let duration = span.end_time.duration_since(span.start_time).unwrap_or_default();
        let bar = axis.bar(span.start_time, span.end_time);
        let status = match &span.status {
            Status::Error { description } => format!(" error: {description}"),
            _ => String::new(),
        };
        let (bar, status) = if self.colour {
            (
                format!("\x1b[36m{bar}\x1b[0m"),
                if status.is_empty() { status } else { format!("\x1b[31m{status}\x1b[0m") },
            )
        } else {
            (bar, status)
        };
        let pad = HEAD_WIDTH.saturating_sub(indent + head.chars().count());
        let _ = writeln!(
            out,
            "{:indent$}{head}{:pad$} |{bar}| {:.1} ms{status}",
            "",
            "",
            duration.as_secs_f64() * 1e3,
            indent = indent,
            pad = pad
        );
        for link in &span.links.links {
            let _ = writeln!(out, "{:indent$}link -> span {}", "", link.span_context.span_id(), indent = indent + 4);
        }
        if self.attributes {
            for attribute in &span.attributes {
                let _ = writeln!(out, "{:indent$}{} = {}", "", attribute.key, attribute.value, indent = indent + 4);
            }
        }
        let mut children: Vec<&SpanData> =
            in_trace.iter().copied().filter(|child| child.parent_span_id == span.span_context.span_id()).collect();
        children.sort_by_key(|child| child.start_time);
        for child in children {
            self.draw(out, child, in_trace, axis, depth + 1);
        }
    }
}

/// Prints the picture of `spans` to standard output, in colour when that is a terminal.
pub fn print(spans: &[SpanData]) {
    let picture = TracePicture::new().colour(std::io::stdout().is_terminal()).render(spans);
    print!("{picture}");
}

/// A trace's time axis.
struct Axis {
    start: SystemTime,
    length: Duration,
}

impl Axis {
    /// `AXIS_WIDTH` characters, marking from `start` to `end` (at least one mark).
    fn bar(&self, start: SystemTime, end: SystemTime) -> String {
        let position = |time: SystemTime| {
            let offset = time.duration_since(self.start).unwrap_or_default().as_secs_f64();
            let length = self.length.as_secs_f64();
            if length > 0.0 {
                ((offset / length) * AXIS_WIDTH as f64).round() as usize
            } else {
                0
            }
        };
        let from = position(start).min(AXIS_WIDTH - 1);
        let to = position(end).clamp(from + 1, AXIS_WIDTH);
        (0..AXIS_WIDTH).map(|column| if (from..to).contains(&column) { '■' } else { ' ' }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_place_spans_on_the_traces_own_axis() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let axis = Axis { start, length: Duration::from_millis(16) };
        assert_eq!(axis.bar(start, start + Duration::from_millis(16)), "■".repeat(16));
        assert_eq!(axis.bar(start, start + Duration::from_millis(4)), format!("{}{}", "■".repeat(4), " ".repeat(12)));
        assert_eq!(
            axis.bar(start + Duration::from_millis(12), start + Duration::from_millis(16)),
            format!("{}{}", " ".repeat(12), "■".repeat(4))
        );
        assert_eq!(
            axis.bar(start + Duration::from_millis(16), start + Duration::from_millis(16)),
            format!("{}■", " ".repeat(15))
        );
    }

    fn span(id: u64, parent: u64, name: &'static str, from_ms: u64, to_ms: u64) -> SpanData {
        use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceState};
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(7),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: if parent == 0 { SpanKind::Producer } else { SpanKind::Consumer },
            name: name.into(),
            start_time: epoch + Duration::from_millis(from_ms),
            end_time: epoch + Duration::from_millis(to_ms),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn a_trace_is_drawn_as_a_tree_on_its_own_time_axis() {
        let producer = span(1, 0, "send orders", 0, 8);
        let mut consumer = span(2, 1, "process orders", 8, 16);
        consumer.attributes.push(opentelemetry::KeyValue::new("messaging.consumer.group.name", "inventory"));
        consumer.status = Status::error("out of stock");
        consumer.links.links.push(opentelemetry::trace::Link::with_context(producer.span_context.clone()));
        let picture = TracePicture::new().attributes(true).render(&[consumer, producer]);
        let head = |text: &str, indent: usize| {
            format!("{}{text}{}", " ".repeat(indent), " ".repeat(HEAD_WIDTH.saturating_sub(indent + text.len())))
        };
        let expected = format!(
            "\ntrace 00000000000000000000000000000007\n{} |{}{}| 8.0 ms\n{} |{}{}| 8.0 ms error: out of stock\n{}\n{}\n",
            head("Producer \"send orders\" span 0000000000000001 (root)", 2),
            "■".repeat(8),
            " ".repeat(8),
            head("Consumer \"process orders\" [inventory] span 0000000000000002 (parent 0000000000000001)", 4),
            " ".repeat(8),
            "■".repeat(8),
            "        link -> span 0000000000000001",
            "        messaging.consumer.group.name = inventory",
        );
        assert_eq!(picture, expected);
        let coloured = TracePicture::new().colour(true).render(&[span(1, 0, "send orders", 0, 8)]);
        assert!(coloured.contains("\x1b[36m"), "{coloured}");
    }
}
