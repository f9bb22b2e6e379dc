//! What every broker does the same, run on each: the bodies are written once in `support/behaviour.rs`, generic
//! over a `BrokerFixture`; each broker's module here runs every one of them on its fixture (`support/kafka.rs`,
//! `support/rabbitmq.rs`, `support/nats.rs`). The Kafka tests run on the suite's Kafka broker (librdkafka's mock
//! cluster, and tansu in `scripts/test`'s tansu pass); the RabbitMQ and NATS ones are `#[ignore]`d like every test
//! that needs a server, and run with `--include-ignored` beside the servers `scripts/test` starts. NATS runs each
//! body on the side of NATS where it is honest, core NATS or JetStream, and some on both (`support/nats.rs` says
//! why). Each module is built with its broker's feature, so a build with one broker runs that broker's part. A
//! broker's own quirks stay in its own files.

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

    #[cfg(feature = "metrics")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_consumed_message_s_context_outcome_is_counted() {
        behaviour::consumer_context_outcomes_are_counted(&Kafka::start()).await;
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

    #[cfg(feature = "metrics")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs RabbitMQ: ./scripts/test runs it against a broker of its own"]
    async fn every_consumed_message_s_context_outcome_is_counted() {
        behaviour::consumer_context_outcomes_are_counted(&RabbitMq::connect().await).await;
    }
}

/// Core NATS and JetStream, each body on the side it is honest on (`support/nats.rs`): the redelivery and settle
/// bodies on JetStream; the two that publish one id twice on core NATS, as JetStream deduplicates on the id; the
/// others on both. The message's age is NATS's own (`tests/nats.rs`): no NATS publisher can date its message.
#[cfg(feature = "nats")]
mod nats {
    mod core {
        use suite::behaviour;
        use suite::nats::{carried_fallback_cases, CoreNats};

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn consumer_span_continues_the_producer_trace_across_the_broker() {
            behaviour::round_trip(&CoreNats::connect().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn a_missing_or_bad_context_starts_a_new_root_and_a_valid_one_continues() {
            behaviour::context_fallback_of(&CoreNats::connect().await, carried_fallback_cases()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn the_clients_and_the_macros_give_the_same_message_the_same_spans() {
            behaviour::clients_and_macros_agree(&CoreNats::connect().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn a_malformed_traceparent_through_the_client_adapter_gives_a_new_root() {
            behaviour::a_malformed_context_through_the_client_adapter_gives_a_new_root(&CoreNats::connect().await)
                .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn chosen_headers_and_the_attempt_are_recorded_and_protected_ones_are_not() {
            behaviour::chosen_headers_and_the_attempt_are_recorded_and_protected_ones_are_not(
                &CoreNats::connect().await,
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn a_batch_from_several_traces_is_one_span_linked_to_each_producer() {
            behaviour::a_batch_from_several_traces_is_one_span_linked_to_each_producer(&CoreNats::connect().await)
                .await;
        }

        #[cfg(feature = "metrics")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn a_handler_records_its_processing_duration_on_success_and_failure() {
            behaviour::process_duration_is_recorded_on_success_and_failure(&CoreNats::connect().await).await;
        }

        #[cfg(feature = "metrics")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn every_consumed_message_s_context_outcome_is_counted() {
            behaviour::consumer_context_outcomes_are_counted(&CoreNats::connect().await).await;
        }
    }

    mod jetstream {
        use suite::behaviour;
        use suite::nats::{carried_fallback_cases, JetStream};

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn consumer_span_continues_the_producer_trace_across_the_broker() {
            behaviour::round_trip(&JetStream::connect().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn a_missing_or_bad_context_starts_a_new_root_and_a_valid_one_continues() {
            behaviour::context_fallback_of(&JetStream::connect().await, carried_fallback_cases()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn a_settle_inside_a_handler_is_a_settle_span_child_of_the_consumer_span() {
            behaviour::settle_inside_a_handler(&JetStream::connect().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn a_failed_message_is_not_settled_and_its_redelivery_continues_the_trace() {
            behaviour::redelivery_after_a_failure_continues_the_trace(&JetStream::connect().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn a_malformed_traceparent_through_the_client_adapter_gives_a_new_root() {
            behaviour::a_malformed_context_through_the_client_adapter_gives_a_new_root(&JetStream::connect().await)
                .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn chosen_headers_and_the_attempt_are_recorded_and_protected_ones_are_not() {
            behaviour::chosen_headers_and_the_attempt_are_recorded_and_protected_ones_are_not(
                &JetStream::connect().await,
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn a_handlers_error_and_panic_are_recorded_and_reach_the_caller() {
            behaviour::a_handlers_error_and_panic_are_recorded_and_reach_the_caller(&JetStream::connect().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs NATS: ./scripts/test runs it against a server of its own"]
        async fn a_batch_from_several_traces_is_one_span_linked_to_each_producer() {
            behaviour::a_batch_from_several_traces_is_one_span_linked_to_each_producer(&JetStream::connect().await)
                .await;
        }
    }
}
