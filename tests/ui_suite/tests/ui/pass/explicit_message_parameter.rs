#![deny(warnings)]

use rdkafka::message::OwnedMessage;
use rdkafka::producer::BaseRecord;

/// An alias tracehop cannot recognise by name: `message = ...` names the parameter.
pub type OrderMessage = OwnedMessage;

#[tracehop::traced_consumer(message = order, group = "inventory")]
pub fn on_order(order: &OrderMessage, attempt: u32) -> u32 {
    let _ = order;
    attempt
}

pub type OrderRecord<'a> = BaseRecord<'a, str, str>;

#[tracehop::traced_producer(record = record)]
pub fn prepare(record: &mut OrderRecord<'_>) {
    record.partition = Some(0);
}

/// Another broker's message, implementing tracehop's traits.
pub struct Frame {
    pub topic: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl tracehop::MessageFacts for Frame {
    fn system(&self) -> tracehop::MessagingSystem {
        tracehop::MessagingSystem::Other("frames")
    }
    fn destination(&self) -> Option<&str> {
        Some(&self.topic)
    }
    fn record_attributes(&self, _attributes: &mut tracehop::SpanAttributes) {}
}

impl tracehop::ConsumedMessage for Frame {
    fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        self.headers.iter().map(|(key, value)| (key.as_str(), Some(value.as_slice())))
    }
}

#[tracehop::traced_consumer(message = frame)]
pub async fn on_frame(frame: Frame) -> usize {
    frame.headers.len()
}

#[tracehop::traced_consumer(message = frames)]
pub fn on_frames(frames: &[Frame]) -> usize {
    frames.len()
}

fn main() {}
