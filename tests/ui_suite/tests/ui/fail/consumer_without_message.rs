#[tracehop::traced_consumer(group = "inventory-service")]
pub fn on_order(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
