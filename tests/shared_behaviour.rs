//! What every broker does the same, run on each: the bodies are written once in `support/behaviour.rs`, generic
//! over a `BrokerFixture`; each broker's module here runs every one of them on its fixture (`support/kafka.rs`,
//! `support/rabbitmq.rs`). The Kafka tests run on the suite's Kafka broker (librdkafka's mock cluster, and tansu in
//! `scripts/test`'s tansu pass); the RabbitMQ ones are `#[ignore]`d like every RabbitMQ test, and run with
//! `--include-ignored` beside the server `scripts/test` starts. Each module is built with its broker's feature, so
//! a build with one broker runs that broker's half. A broker's own quirks stay in its own files.

#[cfg(feature = "kafka")]
mod kafka {
    use suite::behaviour;
    use suite::kafka::Kafka;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn consumer_span_continues_the_producer_trace_across_the_broker() {
        behaviour::round_trip(&Kafka::start()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_or_bad_context_starts_a_new_root_and_a_valid_one_continues() {
        behaviour::context_fallback(&Kafka::start()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_clients_and_the_macros_give_the_same_message_the_same_spans() {
        behaviour::clients_and_macros_agree(&Kafka::start()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_settle_inside_a_handler_is_a_settle_span_child_of_the_consumer_span() {
        behaviour::settle_inside_a_handler(&Kafka::start()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_message_is_not_settled_and_its_redelivery_continues_the_trace() {
        behaviour::redelivery_after_a_failure_continues_the_trace(&Kafka::start()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_malformed_traceparent_through_the_client_adapter_gives_a_new_root() {
        behaviour::a_malformed_context_through_the_client_adapter_gives_a_new_root(&Kafka::start()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_s_age_is_the_time_since_its_timestamp_and_never_negative() {
        behaviour::a_message_s_age_is_the_time_since_its_timestamp_and_never_negative(&Kafka::start()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chosen_headers_and_the_attempt_are_recorded_and_protected_ones_are_not() {
        behaviour::chosen_headers_and_the_attempt_are_recorded_and_protected_ones_are_not(&Kafka::start()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handlers_error_and_panic_are_recorded_and_reach_the_caller() {
        behaviour::a_handlers_error_and_panic_are_recorded_and_reach_the_caller(&Kafka::start()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_from_several_traces_is_one_span_linked_to_each_producer() {
        behaviour::a_batch_from_several_traces_is_one_span_linked_to_each_producer(&Kafka::start()).await;
    }

    #[cfg(feature = "metrics")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handler_records_its_processing_duration_on_success_and_failure() {
        behaviour::process_duration_is_recorded_on_success_and_failure(&Kafka::start()).await;
    }
}

#[cfg(feature = "rabbitmq")]
mod rabbitmq {
    use suite::behaviour;
    use suite::rabbitmq::RabbitMq;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn consumer_span_continues_the_producer_trace_across_the_broker() {
        behaviour::round_trip(&RabbitMq::connect().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn a_missing_or_bad_context_starts_a_new_root_and_a_valid_one_continues() {
        behaviour::context_fallback(&RabbitMq::connect().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn the_clients_and_the_macros_give_the_same_message_the_same_spans() {
        behaviour::clients_and_macros_agree(&RabbitMq::connect().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn a_settle_inside_a_handler_is_a_settle_span_child_of_the_consumer_span() {
        behaviour::settle_inside_a_handler(&RabbitMq::connect().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn a_failed_message_is_not_settled_and_its_redelivery_continues_the_trace() {
        behaviour::redelivery_after_a_failure_continues_the_trace(&RabbitMq::connect().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn a_malformed_traceparent_through_the_client_adapter_gives_a_new_root() {
        behaviour::a_malformed_context_through_the_client_adapter_gives_a_new_root(&RabbitMq::connect().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn a_message_s_age_is_the_time_since_its_timestamp_and_never_negative() {
        behaviour::a_message_s_age_is_the_time_since_its_timestamp_and_never_negative(&RabbitMq::connect().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn chosen_headers_and_the_attempt_are_recorded_and_protected_ones_are_not() {
        behaviour::chosen_headers_and_the_attempt_are_recorded_and_protected_ones_are_not(&RabbitMq::connect().await)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn a_handlers_error_and_panic_are_recorded_and_reach_the_caller() {
        behaviour::a_handlers_error_and_panic_are_recorded_and_reach_the_caller(&RabbitMq::connect().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn a_batch_from_several_traces_is_one_span_linked_to_each_producer() {
        behaviour::a_batch_from_several_traces_is_one_span_linked_to_each_producer(&RabbitMq::connect().await).await;
    }

    #[cfg(feature = "metrics")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn a_handler_records_its_processing_duration_on_success_and_failure() {
        behaviour::process_duration_is_recorded_on_success_and_failure(&RabbitMq::connect().await).await;
    }
}
