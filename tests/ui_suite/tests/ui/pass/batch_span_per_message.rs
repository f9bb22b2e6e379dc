#![deny(warnings)]

use rdkafka::message::{Message, OwnedMessage};
use tracehop::{Handler, MessageSpan};

// A batch span, and inside it one span per message, each a child of the batch span linked to its producer.
#[tracehop::traced_consumer(group = "inventory-service")]
pub fn on_orders(messages: &[OwnedMessage]) -> usize {
    let mut handled = 0;
    for message in messages {
        MessageSpan::in_batch(message).start().run(|| {
            handled += message.payload().map_or(0, <[u8]>::len);
        });
    }
    handled
}

#[tracehop::traced_consumer(group = "inventory")]
pub async fn on_deliveries(deliveries: Vec<lapin::message::Delivery>) -> Result<(), String> {
    // A span per message under a handler of its own: replayed deliveries.
    static ON_DELIVERY: Handler = Handler::consumer("inventory::on_delivery").group("inventory").replay();
    for delivery in &deliveries {
        MessageSpan::in_batch_as(&ON_DELIVERY, delivery).start().instrument(async { Ok::<(), String>(()) }).await?;
    }
    Ok(())
}

fn main() {}
