use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer]
pub extern "C" fn on_order(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
