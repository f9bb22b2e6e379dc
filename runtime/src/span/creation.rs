//! Creation spans: one context per record when a producer publishes several under one span.

use opentelemetry::trace::{Span, TraceContextExt};
use opentelemetry::Context;

use super::{marked_random_if_started, MessagingSpan};
use crate::carrier::{inject_context, PublishedMessage};
use crate::conventions::Operation;

/// Gives `record` a creation context of its own, for a producer that publishes several records under one
/// PRODUCER span: a short `create {destination}` span (kind PRODUCER, `messaging.operation.type = create`), a
/// child of the current span, is written into the record's headers and linked from the current span, as the
/// messaging conventions describe batch publishing. Each record's consumers then continue their own record's
/// creation span instead of all sharing the publish span. Counts as an injection of the current producer span.
///
/// ```no_run
/// # #[cfg(feature = "kafka")] {
/// use rdkafka::producer::{BaseProducer, BaseRecord};
///
/// #[tracehop::traced_producer(system = "kafka", destination = "orders")]
/// fn publish_all(producer: &BaseProducer, orders: &[String]) {
///     for order in orders {
///         let mut record: BaseRecord<'_, str, str> = BaseRecord::to("orders").payload(order.as_str());
///         tracehop::inject_creation_context(&mut record);
///         let _ = producer.send(record);
///     }
/// }
/// # }
/// ```
pub fn inject_creation_context<M: PublishedMessage + ?Sized>(record: &mut M) {
    let current = Context::current();
    let messaging = MessagingSpan::new(Operation::Create, Some(record.system()), record.destination());
    let (mut create, attributes) = messaging.start(&current);
    if let Some(mut attributes) = attributes {
        record.record_attributes(&mut attributes);
        create.set_attributes(attributes.into_inner());
    }
    let creation = create.span_context().clone();
    let starts_a_trace = !current.span().span_context().is_valid();
    let creation_context = marked_random_if_started(current.with_span(create), starts_a_trace);
    inject_context(&creation_context, record);
    creation_context.span().end();
    current.span().add_link(creation, Vec::new());
}
