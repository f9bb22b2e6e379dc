// The suite enables both broker features of tracehop, so a producer whose signature names no record cannot
// tell which broker it publishes to.
#[tracehop::traced_producer(destination = "orders")]
pub fn publish(payload: &[u8]) {
    let _ = (payload, tracehop::kafka::trace_headers());
}

fn main() {}
