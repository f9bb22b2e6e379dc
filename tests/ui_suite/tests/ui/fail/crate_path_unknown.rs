use rdkafka::message::OwnedMessage;

// The expansion goes through the path `crate` names, not `::tracehop`.
#[tracehop::traced_consumer(crate = "::no_such_crate")]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_consumer(crate = "not a path")]
pub fn on_order_again(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
