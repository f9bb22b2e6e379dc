#![deny(warnings)]

use std::fmt::Debug;

use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};

// Generic parameters and a `where` clause, on the function and on the return type.
#[tracehop::traced_consumer]
pub fn on_order<S, T>(sink: &mut S, message: &OwnedMessage) -> T
where
    S: FnMut(&[u8]) + ?Sized,
    T: Default,
{
    if let Some(payload) = message.payload() {
        sink(payload);
    }
    T::default()
}

#[tracehop::traced_consumer]
pub async fn on_order_async<'m, E>(message: &BorrowedMessage<'m>, parse: fn(&[u8]) -> Result<u64, E>) -> Result<u64, E>
where
    E: Debug + Send,
{
    parse(message.payload().unwrap_or_default())
}

fn main() {}
