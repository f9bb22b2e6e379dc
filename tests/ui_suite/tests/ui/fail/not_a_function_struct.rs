#[tracehop::traced_consumer]
pub struct OrderHandler {
    pub group: String,
}

fn main() {}
