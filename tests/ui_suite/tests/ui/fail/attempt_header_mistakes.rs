use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;

#[tracehop::traced_consumer(attempt_header = "x-retry-*")]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_consumer(attempt_header = 3)]
pub fn on_payment(message: &OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_producer(capture_headers("x-tenant"), attempt_header = "x-retry-count")]
pub fn prepare(record: &mut FutureRecord<'_, str, str>) {
    let _ = record;
}

fn main() {}
