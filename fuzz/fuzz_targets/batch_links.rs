//! The batch span's link builder: every message of a batch extracted and linked, past the link cap. Messages
//! are separated by byte 0x1D; each holds headers in the shared format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracehop::{Handler, MessageSpan};

static HANDLER: Handler = Handler::consumer("fuzz::batch_links").group("fuzz");

fuzz_target!(|data: &[u8]| {
    wire::set_up();
    tracehop::set_max_links_per_span(4);
    let batch: Vec<_> = data
        .split(|&byte| byte == 0x1d)
        .enumerate()
        .map(|(offset, message)| wire::kafka_message(wire::kafka_headers(&wire::headers(message)), offset as i64))
        .collect();
    MessageSpan::consumer_batch(&HANDLER, &batch).start().run(|| ());
    for message in &batch {
        MessageSpan::in_batch_as(&HANDLER, message).start().run(|| ());
    }
});
