#![deny(warnings)]

use std::future::Future;
use std::pin::Pin;

use rdkafka::message::{Message, OwnedMessage};

/// What `#[async_trait]` turns an `async fn` into: the span covers the boxed future until it completes.
#[tracehop::traced_consumer(group = "inventory")]
pub fn on_order<'a>(message: &'a OwnedMessage) -> Pin<Box<dyn Future<Output = Result<i64, String>> + Send + 'a>> {
    Box::pin(async move { Ok(message.offset()) })
}

fn main() {}
