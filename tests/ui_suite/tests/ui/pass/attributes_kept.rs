#![deny(warnings)]
#![deny(missing_docs)]
//! Doc comments and lint attributes on a traced function stay on it: without its documentation
//! `missing_docs` would fail this file, and without its `#[allow]` the unused variable would.

use rdkafka::message::{BorrowedMessage, OwnedMessage};
use rdkafka::producer::FutureRecord;

/// Handles an order.
#[allow(unused_variables)]
#[tracehop::traced_consumer]
pub fn on_order(message: &OwnedMessage) {
    let unused = 1;
}

/// Handles an order, asynchronously.
#[allow(unused_variables)]
#[tracehop::traced_consumer(group = "inventory-service")]
pub async fn on_order_async(message: &BorrowedMessage<'_>) {
    let unused = 1;
}

/// The attribute may come before or after the others.
#[tracehop::traced_producer]
#[allow(unused_variables)]
#[inline]
pub fn prepare(record: &mut FutureRecord<'_, str, str>) {
    let unused = 1;
}

fn main() {}
