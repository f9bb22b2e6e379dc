//! AMQP field-table extraction, and the consumer span built from it. The first byte of each value picks its
//! AMQP type, so every type a client can send is tried.
#![no_main]

use lapin::message::Delivery;
use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use libfuzzer_sys::fuzz_target;
use tracehop::{Handler, MessageSpan};

// Every header through the capture patterns and secret-name checks, and an attempt header to parse.
static HANDLER: Handler =
    Handler::consumer("fuzz::amqp_extract").group("fuzz").capture_headers(&["*"]).attempt_header("x-attempt");

/// A short string as the AMQP wire carries one: at most 255 bytes (lapin panics building a longer one, so no
/// delivery can hold it).
fn short_string(bytes: &[u8]) -> ShortString {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    ShortString::from(text)
}

fuzz_target!(|data: &[u8]| {
    wire::set_up();
    let mut table = FieldTable::default();
    for (name, value) in wire::headers(data) {
        let value = match value {
            None => AMQPValue::Void,
            Some([0, rest @ ..]) => AMQPValue::ByteArray(ByteArray::from(rest.to_vec())),
            Some([1, rest @ ..]) => AMQPValue::ShortString(short_string(rest)),
            Some([2, ..]) => AMQPValue::LongInt(7),
            Some([3, ..]) => AMQPValue::Boolean(true),
            // `x-death` as RabbitMQ writes it (tables with a `count`), with counts from the input, any width.
            Some([4, rest @ ..]) => AMQPValue::FieldArray(
                rest.chunks(8)
                    .map(|count| {
                        let mut death = FieldTable::default();
                        let count = count.iter().fold(0_i64, |value, &byte| value << 8 | i64::from(byte));
                        death.insert("count".into(), AMQPValue::LongLongInt(count));
                        AMQPValue::FieldTable(death)
                    })
                    .collect::<Vec<_>>()
                    .into(),
            ),
            Some([5, rest @ ..]) => {
                AMQPValue::LongLongInt(rest.iter().fold(0_i64, |value, &byte| value << 8 | i64::from(byte)))
            }
            Some(bytes) => AMQPValue::LongString(LongString::from(bytes.to_vec())),
        };
        table.insert(short_string(name), value);
    }
    // Redelivered, with a timestamp from the input's length: the redelivery and age paths run too.
    let mut delivery = Delivery::mock(1, "orders".into(), "created".into(), data.len() % 2 == 1, b"order".to_vec());
    delivery.properties = BasicProperties::default()
        .with_headers(table)
        .with_timestamp((data.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let _ = tracehop::extract_context(&delivery);
    MessageSpan::consumer(&HANDLER, &delivery).start().run(|| ());
});
