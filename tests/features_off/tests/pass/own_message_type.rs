//! A type of the user's own named `Message`, the name async-nats gives its messages too, is the user's: with the
//! `nats` feature off it compiles, traced as the broker it says it belongs to.

use tracehop::{ConsumedMessage, MessageFacts, MessagingSystem, SpanAttributes};

pub struct Message {
    topic: String,
}

impl MessageFacts for Message {
    fn system(&self) -> MessagingSystem {
        MessagingSystem::Other("frames")
    }
    fn destination(&self) -> Option<&str> {
        Some(&self.topic)
    }
    fn record_attributes(&self, _attributes: &mut SpanAttributes) {}
}

impl ConsumedMessage for Message {
    fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        std::iter::empty()
    }
}

#[tracehop::traced_consumer(group = "frames")]
pub fn on_frame(message: &Message) -> usize {
    message.topic.len()
}

fn main() {
    let _ = on_frame(&Message { topic: "frames".to_owned() });
}
