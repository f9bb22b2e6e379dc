//! The trace picture: finished spans drawn as one tree per trace, for a terminal, a test's output or a log.
//!
//! ```text
//! trace 4bf92f3577b34da6a3ce929d0e0e4736
//!   Producer "send orders" span 2ee47534 (root)                                  |■■■■■■■■■■|   0.4 ms
//!     Consumer "process orders" [inventory] span c7324254                        |    ■■■■■■|   0.3 ms
//!         error: out of stock
//!         link -> span 2ee47534
//! ```
//!
//! Each line holds a span: its kind, name, consumer group, id (its first eight hex digits), whether it is a root
//! (or its parent, when that is not the span it is drawn under), a bar placing it on the trace's own time axis
//! and its duration. Children are indented under their parent, in start order; a failed span's error, its links
//! and (with [`TracePicture::attributes`]) its attributes follow on lines of their own. Every line fits 100
//! columns: a name too long for its line is shortened, never an id. Colour only on request
//! ([`TracePicture::colour`]; [`print`] asks for it when standard output is a terminal). Needs the `print` feature.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, Status, TraceId};
use opentelemetry_sdk::trace::SpanData;

/// How wide a picture is: a terminal's 100 columns.
const LINE_WIDTH: usize = 100;
/// How wide the time axis is, in characters.
const AXIS_WIDTH: usize = 10;
/// How wide a duration is: "999.9 ms", "9999.9 s".
const DURATION_WIDTH: usize = 8;
/// How wide the part before the axis is: shorter heads are padded so the bars line up; in longer ones the span's
/// name is shortened, never its id.
const HEAD_WIDTH: usize = LINE_WIDTH - " |".len() - AXIS_WIDTH - "| ".len() - DURATION_WIDTH;
/// How many hex digits of a span id the picture shows: like a short commit hash, enough to tell a trace's spans
/// apart and to match a link to its span.
const SHORT_ID: usize = 8;

/// Draws finished spans (from the SDK's in-memory exporter, say) as trees: one line a span — its kind, name,
/// consumer group, id, "root" or (when it is not the span drawn above) its parent, a bar placing it on the trace's
/// own time axis, its duration and, when it failed, its status — children indented under their parent in start
/// order, links and (optionally) attributes on lines of their own.
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
        // Below depth 1 the indentation already shows the parent; naming it too would push deep lines past the
        // width of a terminal.
        let parent = if depth > 1 {
            String::new()
        } else if span.parent_span_id == SpanId::INVALID {
            " (root)".to_owned()
        } else {
            format!(" (parent {})", short_id(span.parent_span_id))
        };
        let group = span
            .attributes
            .iter()
            .find(|attribute| attribute.key.as_str() == crate::conventions::MESSAGING_CONSUMER_GROUP_NAME)
            .map(|group| format!(" [{}]", group.value))
            .unwrap_or_default();
        let kind = format!("{:?}", span.span_kind);
        let id = short_id(span.span_context.span_id());
        let around_name = indent + kind.len() + " \"".len() + "\"".len() + group.len() + " span ".len() + id.len();
        let name = shortened(&span.name, HEAD_WIDTH.saturating_sub(around_name + parent.len()));
        let head = format!("{kind} \"{name}\"{group} span {id}{parent}");
        let duration = span.end_time.duration_since(span.start_time).unwrap_or_default();
        let bar = axis.bar(span.start_time, span.end_time);
        let bar = if self.colour { format!("\x1b[36m{bar}\x1b[0m") } else { bar };
        let pad = HEAD_WIDTH.saturating_sub(indent + head.chars().count());
        let _ = writeln!(
            out,
            "{:indent$}{head}{:pad$} |{bar}| {:>width$}",
            "",
            "",
            shown_duration(duration),
            indent = indent,
            pad = pad,
            width = DURATION_WIDTH
        );
        if let Status::Error { description } = &span.status {
            let line = format!("error: {description}");
            let line = shortened(&line, LINE_WIDTH.saturating_sub(indent + 4));
            let line = if self.colour { format!("\x1b[31m{line}\x1b[0m") } else { line };
            let _ = writeln!(out, "{:indent$}{line}", "", indent = indent + 4);
        }
        for link in &span.links.links {
            let _ = writeln!(
                out,
                "{:indent$}link -> span {}",
                "",
                short_id(link.span_context.span_id()),
                indent = indent + 4
            );
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

/// The first [`SHORT_ID`] hex digits of `id`.
fn short_id(id: SpanId) -> String {
    let mut hex = id.to_string();
    hex.truncate(SHORT_ID);
    hex
}

/// `text` cut to `width` characters, its end replaced by "…" when it is cut.
fn shortened(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A duration in at most [`DURATION_WIDTH`] characters: milliseconds below ten seconds, seconds above.
fn shown_duration(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1e3;
    if millis < 10_000.0 {
        format!("{millis:.1} ms")
    } else {
        format!("{:.1} s", duration.as_secs_f64())
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
        let axis = Axis { start, length: Duration::from_millis(AXIS_WIDTH as u64) };
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(axis.bar(start, at(10)), "■".repeat(10));
        assert_eq!(axis.bar(start, at(4)), format!("{}{}", "■".repeat(4), " ".repeat(6)));
        assert_eq!(axis.bar(at(7), at(10)), format!("{}{}", " ".repeat(7), "■".repeat(3)));
        assert_eq!(axis.bar(at(10), at(10)), format!("{}■", " ".repeat(9)));
    }

    fn span(id: u64, parent: u64, name: &'static str, from_ms: u64, to_ms: u64) -> SpanData {
        use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceState};
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(7),
                // Distinct in their first hex digits, which the picture shows.
                SpanId::from(id << 32),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent << 32),
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
            "\ntrace 00000000000000000000000000000007\n{} |{}{}|   8.0 ms\n{} |{}{}|   8.0 ms\n{}\n{}\n{}\n",
            head("Producer \"send orders\" span 00000001 (root)", 2),
            "■".repeat(5),
            " ".repeat(5),
            head("Consumer \"process orders\" [inventory] span 00000002", 4),
            " ".repeat(5),
            "■".repeat(5),
            "        error: out of stock",
            "        link -> span 00000001",
            "        messaging.consumer.group.name = inventory",
        );
        assert_eq!(picture, expected);
        let coloured = TracePicture::new().colour(true).render(&[span(1, 0, "send orders", 0, 8)]);
        assert!(coloured.contains("\x1b[36m"), "{coloured}");
    }

    #[test]
    fn a_span_whose_parent_is_not_in_the_picture_names_it() {
        // A consumer continuing a producer of another process: its parent was exported elsewhere.
        let consumer = span(2, 1, "process orders", 0, 8);
        let picture = TracePicture::new().render(&[consumer]);
        let head = "Consumer \"process orders\" span 00000002 (parent 00000001)";
        let line = picture.lines().nth(2).expect("the consumer's line");
        assert!(line.starts_with(&format!("  {head} ")), "{picture}");
    }

    #[test]
    fn a_deep_tree_with_long_names_fits_a_hundred_columns_and_keeps_its_ids() {
        let mut spans = vec![span(1, 0, "send orders.created", 0, 2)];
        for depth in 2..=6 {
            let mut child = span(depth, depth - 1, "process payments.processed.eu", 2, 12_000);
            child.attributes.push(opentelemetry::KeyValue::new("messaging.consumer.group.name", "shipping-service"));
            spans.push(child);
        }
        spans[5].status = Status::error("x".repeat(300));
        let picture = TracePicture::new().render(&spans);
        for line in picture.lines() {
            assert!(line.chars().count() <= LINE_WIDTH, "{} columns: {line}", line.chars().count());
        }
        for depth in 1..=6_u64 {
            assert!(picture.contains(&format!("span {:08x}", depth)), "span {depth}'s id:\n{picture}");
        }
        assert!(picture.contains("\"process payments.processed.eu\" [shipping-service]"));
        assert!(picture.contains("…\" [shipping-service] span 00000006"), "shortened name, whole id:\n{picture}");
        assert!(picture.contains("12.0 s\n"), "{picture}");
        assert!(picture.contains("error: xxx"), "{picture}");
    }
}
