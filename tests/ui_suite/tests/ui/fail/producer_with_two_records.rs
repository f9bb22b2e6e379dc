use lapin::BasicProperties;

#[tracehop::traced_producer(destination = "orders")]
pub fn publish(first: BasicProperties, second: BasicProperties) {
    let _ = (first, second);
}

fn main() {}
