#[tracehop::traced_consumer(message = payload)]
pub fn on_order(payload: &[u8]) {
    let _ = payload;
}

fn main() {}
