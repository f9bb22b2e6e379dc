#![deny(warnings)]

use std::future::Future;

use rdkafka::message::{Message, OwnedMessage};

/// A sync function returning a future: the span covers the future until it completes.
#[tracehop::traced_consumer(group = "inventory")]
pub fn on_order(message: &OwnedMessage) -> impl Future<Output = Result<usize, String>> + Send + '_ {
    async move { Ok(message.payload().map_or(0, <[u8]>::len)) }
}

/// `impl Trait` in argument position.
#[tracehop::traced_consumer]
pub fn on_order_with(message: &OwnedMessage, mut sink: impl FnMut(&[u8])) {
    sink(message.payload().unwrap_or_default());
}

/// Early returns inside the closure are fine.
#[tracehop::traced_consumer]
pub fn on_order_early(message: &OwnedMessage) -> impl Future<Output = i64> + '_ {
    if message.offset() < 0 {
        return Box::pin(async { -1_i64 }) as std::pin::Pin<Box<dyn Future<Output = i64> + '_>>;
    }
    Box::pin(async move { message.offset() })
}

fn main() {}
