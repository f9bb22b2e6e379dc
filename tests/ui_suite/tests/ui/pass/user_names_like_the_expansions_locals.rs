#![deny(warnings)]

use rdkafka::message::OwnedMessage;

// The expansion's own locals are hidden from the body (mixed-site hygiene): parameters that happen to share
// their names are the user's, untouched.
#[tracehop::traced_consumer(group = "orders")]
pub fn on_order(message: &OwnedMessage, __tracehop_span: u32, __tracehop_output: &str) -> u32 {
    let _ = (message, __tracehop_output);
    __tracehop_span + 1
}

fn main() {}
