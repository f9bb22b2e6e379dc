//! AMQP field-table extraction, and the consumer span built from it. The first byte of each value picks its
//! AMQP type, so every type a client can send is tried.
#![no_main]

use lapin::message::Delivery;
use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use libfuzzer_sys::fuzz_target;
use tracehop::{Handler, MessageSpan};

static HANDLER: Handler = Handler::consumer("fuzz::amqp_extract").group("fuzz");

fuzz_target!(|data: &[u8]| {
    wire::set_up();
    let mut table = FieldTable::default();
    for (name, value) in wire::headers(data) {
        let value = match value {
            None => AMQPValue::Void,
            Some([0, rest @ ..]) => AMQPValue::ByteArray(ByteArray::from(rest.to_vec())),
            Some([1, rest @ ..]) => AMQPValue::ShortString(ShortString::from(String::from_utf8_lossy(rest).into_owned())),
            Some([2, ..]) => AMQPValue::LongInt(7),
            Some([3, ..]) => AMQPValue::Boolean(true),
            Some(bytes) => AMQPValue::LongString(LongString::from(bytes.to_vec())),
        };
        table.insert(ShortString::from(String::from_utf8_lossy(name).into_owned()), value);
    }
    let mut delivery = Delivery::mock(1, "orders".into(), "created".into(), false, b"order".to_vec());
    delivery.properties = BasicProperties::default().with_headers(table);
    let _ = tracehop::extract_context(&delivery);
    MessageSpan::consumer(&HANDLER, &delivery).start().run(|| ());
});
