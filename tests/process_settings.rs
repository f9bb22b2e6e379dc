//! The process-wide settings: the default parent policy and the link cap. In a test binary of their own, since
//! they change what every handler of the process does.

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry::Value;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use suite::{attribute, spans_to};
use tracehop::ParentPolicy;

fn message(topic: &str, offset: i64, trace: u128) -> OwnedMessage {
    let traceparent = format!("00-{trace:032x}-{:016x}-01", offset + 1);
    let headers = OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(&traceparent) });
    OwnedMessage::new(Some(b"{}".to_vec()), None, topic.to_owned(), Timestamp::NotAvailable, 0, offset, Some(headers))
}

#[tracehop::traced_consumer(group = "settings")]
fn handle(message: &OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_consumer(group = "settings", parent = "continue")]
fn handle_trusted(message: &OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_consumer(group = "settings")]
fn handle_batch(messages: &[OwnedMessage]) {
    let _ = messages;
}

#[test]
fn default_parent_policies_and_link_cap_apply_to_every_handler_that_sets_none() {
    suite::spans();
    assert_eq!(tracehop::default_parent_policy(), ParentPolicy::Continue);
    tracehop::set_default_parent_policy(ParentPolicy::Link);
    tracehop::set_max_links_per_span(2);

    handle(&message("settings-default", 0, 7));
    handle_trusted(&message("settings-own", 0, 8));
    handle_batch(&[message("settings-batch", 0, 1), message("settings-batch", 1, 2), message("settings-batch", 2, 3)]);

    let linked = &spans_to("settings-default")[0];
    assert_eq!(linked.parent_span_id, SpanId::INVALID, "the default policy now links instead of continuing");
    assert_ne!(linked.span_context.trace_id(), TraceId::from(7));
    assert_eq!(linked.links.links[0].span_context.trace_id(), TraceId::from(7));
    let own = &spans_to("settings-own")[0];
    assert_eq!(own.span_context.trace_id(), TraceId::from(8), "a handler's own policy wins");
    assert_eq!(own.parent_span_id, SpanId::from(1));
    let batch = spans_to("settings-batch").into_iter().find(|span| span.span_kind == SpanKind::Consumer).unwrap();
    assert_eq!(batch.links.links.len(), 2);
    assert_eq!(attribute(&batch, "tracehop.links.dropped"), Some(Value::I64(1)));

    // `None` as the default: the context is ignored entirely, but a handler's own policy still wins.
    tracehop::set_default_parent_policy(ParentPolicy::None);
    assert_eq!(tracehop::default_parent_policy(), ParentPolicy::None);
    handle(&message("settings-ignored", 0, 9));
    handle_trusted(&message("settings-still-own", 0, 10));
    handle_batch(&[message("settings-ignored-batch", 0, 11), message("settings-ignored-batch", 1, 12)]);

    let ignored = &spans_to("settings-ignored")[0];
    assert_eq!(ignored.parent_span_id, SpanId::INVALID);
    assert_ne!(ignored.span_context.trace_id(), TraceId::from(9));
    assert!(ignored.links.links.is_empty(), "no link either: the headers are not read");
    assert_eq!(attribute(ignored, "tracehop.context.rejected"), None);
    let own = &spans_to("settings-still-own")[0];
    assert_eq!(own.span_context.trace_id(), TraceId::from(10));
    let batch =
        spans_to("settings-ignored-batch").into_iter().find(|span| span.span_kind == SpanKind::Consumer).unwrap();
    assert!(batch.links.links.is_empty(), "a batch links to no ignored context");
    assert_eq!(attribute(&batch, "messaging.batch.message_count"), Some(Value::I64(2)));
}
