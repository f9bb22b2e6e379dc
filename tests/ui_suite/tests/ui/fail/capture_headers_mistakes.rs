use rdkafka::message::OwnedMessage;

#[tracehop::traced_consumer(capture_headers("x-tenant", x_region, "", "x tenant", "X-Tenant"), exclude_headers())]
pub fn on_order(message: &OwnedMessage) {
    let _ = message;
}

#[tracehop::traced_consumer(capture_headers = "x-tenant")]
pub fn on_payment(message: &OwnedMessage) {
    let _ = message;
}

fn main() {}
