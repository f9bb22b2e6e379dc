//! The Kafka tests run on the broker the test command meant: a bare `cargo test` on librdkafka's mock cluster, and
//! `scripts/test`'s tansu pass on tansu (it sets `TRACEHOP_KAFKA_EXPECTED=tansu`, and `scripts/tansu` the broker's
//! address in `TRACEHOP_KAFKA_BOOTSTRAP`). Without this, a pass that silently fell back to the mock cluster would
//! look like a pass on a second broker.

#[test]
fn the_kafka_tests_run_on_the_broker_the_test_command_started() {
    let broker = suite::Broker::start();
    let bootstrap = std::env::var("TRACEHOP_KAFKA_BOOTSTRAP").ok();
    match std::env::var("TRACEHOP_KAFKA_EXPECTED").as_deref() {
        Ok("tansu") => {
            let bootstrap = bootstrap.expect("TRACEHOP_KAFKA_BOOTSTRAP is set by scripts/tansu");
            assert!(!broker.is_mock(), "the tansu pass runs on tansu, not on librdkafka's mock cluster");
            assert_eq!(broker.bootstrap_servers(), bootstrap);
        }
        Ok(other) => {
            panic!("TRACEHOP_KAFKA_EXPECTED={other}: the suite knows `tansu`, or no value for the mock cluster")
        }
        Err(_) => assert_eq!(broker.is_mock(), bootstrap.is_none(), "an external broker exactly when one is named"),
    }
}
