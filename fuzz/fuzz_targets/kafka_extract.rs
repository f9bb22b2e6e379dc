//! Kafka header extraction, and the consumer span built from it: what tracehop reads must be exactly what the
//! W3C oracles read, and the span must continue it or say why not (`wire::check_kafka_extract`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wire::check_kafka_extract(data));
