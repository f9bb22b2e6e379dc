//! AMQP field-table extraction, and the consumer span built from it. The first byte of each value picks its
//! AMQP type, so every type a client can send is tried; what tracehop reads of the string and byte-array
//! headers must be exactly what the W3C oracles read (`wire::check_amqp_extract`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wire::check_amqp_extract(data));
