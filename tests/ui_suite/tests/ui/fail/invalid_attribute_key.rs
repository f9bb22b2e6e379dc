use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(attributes(App.Order = 1))]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
