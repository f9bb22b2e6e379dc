use lapin::BasicProperties;

#[tracehop::traced_producer(destination = "orders")]
pub fn publish(properties: BasicProperties) {
    let _ = properties;
}

fn main() {}
