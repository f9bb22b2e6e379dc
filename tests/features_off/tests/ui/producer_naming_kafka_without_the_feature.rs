#[tracehop::traced_producer(system = "kafka", destination = "orders")]
pub fn publish(payload: &[u8]) {
    let _ = payload;
}

fn main() {}
