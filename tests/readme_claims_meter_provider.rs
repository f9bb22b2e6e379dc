//! README, "Metrics": "when another provider is installed later (`global::set_meter_provider`, as tests do)
//! tracehop notices on the next message and makes them again from it, so nothing recorded after the switch is
//! lost". In a test binary of its own: the global meter provider is the process's, and this test installs two.

use opentelemetry::global;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use rdkafka::message::OwnedMessage;
use rdkafka::message::Timestamp;

#[tracehop::traced_consumer(group = "claims")]
fn handle(message: &OwnedMessage) {
    let _ = message;
}

fn message(topic: &str, offset: i64) -> OwnedMessage {
    OwnedMessage::new(Some(b"{}".to_vec()), None, topic.to_owned(), Timestamp::NotAvailable, 0, offset, None)
}

/// A meter provider exporting to memory.
fn provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
    (provider, exporter)
}

/// How many `messaging.process.duration` measurements `provider` holds, over every data point.
fn processings(provider: &SdkMeterProvider, exporter: &InMemoryMetricExporter) -> u64 {
    provider.force_flush().expect("the meter provider flushes");
    let exported = exporter.get_finished_metrics().expect("the in-memory exporter is not shut down");
    let Some(latest) = exported.last() else { return 0 };
    latest
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .filter(|metric| metric.name() == "messaging.process.duration")
        .map(|metric| match metric.data() {
            AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                histogram.data_points().map(|point| point.count()).sum::<u64>()
            }
            other => panic!("messaging.process.duration is a histogram, not {other:?}"),
        })
        .sum()
}

#[test]
fn each_meter_provider_installed_receives_every_measurement_made_after_it() {
    suite::spans();
    let topic = suite::unique_topic("claims-meter-switch");
    // Before any provider: OpenTelemetry's no-op one takes the measurement.
    handle(&message(&topic, 0));
    let (first, first_exporter) = provider();
    global::set_meter_provider(first.clone());
    handle(&message(&topic, 1));
    handle(&message(&topic, 2));
    let (second, second_exporter) = provider();
    global::set_meter_provider(second.clone());
    handle(&message(&topic, 3));

    assert_eq!(processings(&first, &first_exporter), 2, "the two messages handled while it was installed");
    assert_eq!(processings(&second, &second_exporter), 1, "the message handled after the switch");
}
