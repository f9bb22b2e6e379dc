//! At-least-once stays the caller's, on Kafka: under manual commit, a handler that fails leaves its message
//! uncommitted (tracehop commits nothing), a new consumer of the group gets it again, and that handling
//! continues the same producer trace. Runs on the suite's Kafka broker: librdkafka's mock cluster, and tansu in
//! `scripts/test`'s second pass.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use suite::{receive, spans_to, Broker};

#[tracehop::traced_producer]
async fn publish_order(producer: &FutureProducer, record: FutureRecord<'_, str, str>) -> Result<(), String> {
    producer.send(record, Duration::from_secs(10)).await.map(|_| ()).map_err(|(error, _)| error.to_string())
}

#[tracehop::traced_consumer(group = "faults-manual-commit")]
fn handle_or_fail(message: &OwnedMessage, fail: bool) -> Result<(), String> {
    let _ = message;
    if fail {
        Err("the warehouse is unreachable".to_owned())
    } else {
        Ok(())
    }
}

/// A handler that fails leaves its message uncommitted (tracehop commits nothing); a new consumer of the group
/// gets it again, and the second handling continues the same producer trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_kafka_message_is_not_committed_and_its_redelivery_continues_the_trace() {
    suite::spans();
    let broker = Broker::start();
    let topic = suite::unique_topic("faults-commit");
    broker.create_topic(&topic, 1);
    let producer = broker.producer();
    publish_order(&producer, FutureRecord::to(&topic).key("order-9").payload("order")).await.expect("published");

    let group = suite::unique_topic("faults-commit-group");
    let first = broker.consumer(&group, &topic);
    let message = receive(&first).await;
    assert_eq!(handle_or_fail(&message, true), Err("the warehouse is unreachable".to_owned()));
    // The caller does not commit a failed message; tracehop has not either.
    let mut partition = TopicPartitionList::new();
    partition.add_partition(&topic, 0);
    let committed = first.committed_offsets(partition, Duration::from_secs(10)).expect("committed offsets");
    assert_eq!(committed.elements()[0].offset(), Offset::Invalid, "nothing committed for the failed message");
    drop(first);

    let second = broker.consumer(&group, &topic);
    let again = receive(&second).await;
    assert_eq!((again.partition(), again.offset()), (message.partition(), message.offset()), "the same message");
    assert_eq!(handle_or_fail(&again, false), Ok(()));
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(&topic, again.partition(), Offset::Offset(again.offset() + 1)).expect("an offset");
    second.commit(&offsets, CommitMode::Sync).expect("the caller commits");

    let spans = spans_to(&topic);
    let producer_span = spans.iter().find(|span| span.span_kind == SpanKind::Producer).expect("the producer span");
    let handlings = suite::handlings_of(&spans, producer_span);
    assert_eq!(handlings.len(), 2, "{spans:#?}");
    assert_eq!(handlings[0].status, Status::error("the warehouse is unreachable"));
    assert_eq!(handlings[1].status, Status::Unset);
    for handling in &handlings {
        assert_eq!(handling.span_context.trace_id(), producer_span.span_context.trace_id());
    }
}
