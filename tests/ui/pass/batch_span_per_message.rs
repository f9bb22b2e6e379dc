#![deny(warnings)]

use rdkafka::message::{Message, OwnedMessage};
use tracehop::{Handler, MessageSpan};

// A batch span, and inside it one span per message, each a child of the batch span linked to its producer.
#[tracehop::traced_consumer(group = "inventory-service")]
pub fn on_orders(messages: &[OwnedMessage]) -> usize {
    static ON_ORDER: Handler = Handler::consumer("inventory::on_order").group("inventory-service");
    let mut handled = 0;
    for message in messages {
        MessageSpan::in_batch(&ON_ORDER, message).start().run(|| {
            handled += message.payload().map_or(0, <[u8]>::len);
        });
    }
    handled
}

#[tracehop::traced_consumer(group = "inventory")]
pub async fn on_deliveries(deliveries: Vec<lapin::message::Delivery>) -> Result<(), String> {
    static ON_DELIVERY: Handler = Handler::consumer("inventory::on_delivery").group("inventory");
    for delivery in &deliveries {
        MessageSpan::in_batch(&ON_DELIVERY, delivery).start().instrument(async { Ok::<(), String>(()) }).await?;
    }
    Ok(())
}

fn main() {}
