use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(attributes(app.id = missing_variable))]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
