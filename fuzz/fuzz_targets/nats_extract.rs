//! NATS header-map extraction, and the consumer span built from it: several values of one header name, names
//! and values NATS accepts, and a reply subject (the `$reply` header of the input) read as a JetStream
//! acknowledgement subject exactly when ADR-15 says it is one (`wire::check_nats_extract`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wire::check_nats_extract(data));
