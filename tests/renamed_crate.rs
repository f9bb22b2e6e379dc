//! `crate = "..."` points the expansion at tracehop under another path, as a renamed dependency
//! (`th = { package = "tracehop" }`) needs. Here the path is a local re-export;
//! `tests/ui_suite/tests/ui/fail/crate_path_unknown.rs` shows the expansion really goes through it.

mod telemetry {
    pub use tracehop::*;
}

use opentelemetry::trace::SpanKind;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use suite::spans_to;

#[tracehop::traced_consumer(crate = "crate::telemetry", group = "renamed")]
fn handle(message: &OwnedMessage) -> i64 {
    rdkafka::Message::offset(message)
}

#[test]
fn expansion_reaches_the_runtime_under_its_renamed_path() {
    suite::spans();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let headers = OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(traceparent) });
    let message =
        OwnedMessage::new(None, None, "renamed-crate".to_owned(), Timestamp::NotAvailable, 0, 5, Some(headers));

    assert_eq!(handle(&message), 5);

    let spans = spans_to("renamed-crate");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].span_kind, SpanKind::Consumer);
    assert_eq!(spans[0].parent_span_id, opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7").unwrap());
    assert!(spans[0].parent_span_is_remote, "the producer's span is a remote parent");
}
