//! The batch span's link builder: every message of a batch extracted and linked, past the link cap. Messages
//! are separated by byte 0x1D; each holds headers in the shared format. The links must be the first valid
//! contexts up to the cap, the rest counted (`wire::check_batch_links`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wire::check_batch_links(data));
