use rdkafka::message::OwnedMessage;

pub struct OrderHandler;

#[tracehop::traced_consumer]
impl OrderHandler {
    pub fn on_order(&self, message: &OwnedMessage) {
        let _ = message;
    }
}

fn main() {}
