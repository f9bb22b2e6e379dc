//! Producer injection into a record that already carries arbitrary headers (forwarded from a consumed
//! message): the other headers kept byte for byte, one fresh set of trace headers, and what is written is
//! extracted as exactly the producer's context (`wire::check_kafka_inject`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wire::check_kafka_inject(data));
