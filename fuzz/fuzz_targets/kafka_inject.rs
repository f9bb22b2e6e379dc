//! Producer injection into a record that already carries arbitrary headers (forwarded from a consumed
//! message): no panic, the other headers kept byte for byte, exactly one fresh `traceparent`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdkafka::message::Headers;
use rdkafka::producer::FutureRecord;

fuzz_target!(|data: &[u8]| {
    wire::set_up();
    let headers = wire::headers(data);
    let mut record: FutureRecord<'_, str, str> =
        FutureRecord::to("orders").payload("order").headers(wire::kafka_headers(&headers));
    tracehop::inject_context(&wire::producer_context(), &mut record);
    let written = record.headers.expect("injection keeps the headers");
    let message = wire::kafka_message(written, 0);
    let read: Vec<(&str, Option<&[u8]>)> = tracehop::ConsumedMessage::headers(&message).collect();
    let traceparents: Vec<_> = read.iter().filter(|(name, _)| *name == "traceparent").collect();
    assert_eq!(traceparents.len(), 1, "one traceparent after injection: {read:?}");
    assert_eq!(traceparents[0].1, Some(&b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..]));
    // librdkafka compares names as C strings: a name equal to a trace header up to its first NUL is replaced.
    let replaced = |name: &[u8]| {
        let name = name.split(|&byte| byte == 0).next().unwrap_or_default();
        name == b"traceparent" || name == b"tracestate" || name == b"baggage"
    };
    let kept = headers.iter().filter(|(name, _)| !replaced(name)).count();
    assert_eq!(
        rdkafka::Message::headers(&message).map_or(0, |headers| headers.count()),
        kept + 3,
        "every other header is kept"
    );
});
