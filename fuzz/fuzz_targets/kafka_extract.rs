//! Kafka header extraction, and the consumer span built from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracehop::{Handler, MessageSpan};

// Every header through the capture patterns and secret-name checks, and an attempt header to parse.
static HANDLER: Handler =
    Handler::consumer("fuzz::kafka_extract").group("fuzz").capture_headers(&["*"]).attempt_header("x-attempt");

fuzz_target!(|data: &[u8]| {
    wire::set_up();
    let headers = wire::headers(data);
    let message = wire::kafka_message(wire::kafka_headers(&headers), 0);
    let _ = tracehop::extract_context(&message);
    MessageSpan::consumer(&HANDLER, &message).start().run(|| ());
});
