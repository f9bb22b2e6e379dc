//! The order pipeline of the guide tracehop grew from, with every pattern it describes:
//! - the order service publishes `OrderCreated`; the inventory and payment services both handle it (fan-out:
//!   two consumer groups); payment publishes `PaymentProcessed`, which the shipping service handles: one trace;
//! - the analytics service consumes both topics in batches: one span per batch, a new trace linked to the
//!   producer of every message in it (fan-in);
//! - the order-history service replays the orders from the start of the log: each replayed event starts a new
//!   trace, linked to the one it was first published in;
//! - one order is malformed: the handlers that cannot read it return `Err`, and their spans have status Error;
//! - the work inside the handlers is traced with `tracing` (`#[tracing::instrument]`, `info_span!`, `info!`), on
//!   the same tracer provider through `tracing-opentelemetry`, and `tracehop::HandlerEventsLayer` makes an event
//!   written in a handler's body an event of its span.
//!
//! At the end it prints the traces it produced (`tracehop::TracePicture`).
//!
//! Run: `cargo run --example orders` (no Kafka to install: librdkafka's mock cluster speaks the Kafka protocol
//! over loopback, inside this process), `cargo run --example orders -- --amqp amqp://guest:guest@127.0.0.1:5672/%2f`
//! for the same flow over RabbitMQ, or `cargo run --example orders -- --nats nats://127.0.0.1:4222` over NATS
//! (a server with JetStream on: `nats-server -js`). `--spans-json` also prints one JSON object per span (what the
//! tests read).
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set (e.g. `http://127.0.0.1:4318`), the spans are also exported to that
//! OpenTelemetry Collector, configured by the standard `OTEL_*` variables (`examples/otel-collector-config.yaml`
//! sends them on to Jaeger and Grafana Tempo).

mod kafka;
mod nats;
mod rabbitmq;
mod services;

use std::process::ExitCode;

use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{global, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor, SpanData};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

const USAGE: &str = "usage: orders [--amqp amqp://guest:guest@127.0.0.1:5672/%2f | --nats nats://127.0.0.1:4222] \
                     [--spans-json]";

/// The broker the pipeline runs on: librdkafka's mock cluster, in this process, or the server at a URL.
enum Broker {
    EmbeddedKafka,
    RabbitMq(String),
    Nats(String),
}

struct Options {
    broker: Broker,
    spans_json: bool,
}

impl Options {
    fn from_args() -> Result<Self, String> {
        let mut options = Self { broker: Broker::EmbeddedKafka, spans_json: false };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let broker = match arg.as_str() {
                "--amqp" => Broker::RabbitMq(args.next().ok_or("--amqp needs the broker's URL")?),
                "--nats" => Broker::Nats(args.next().ok_or("--nats needs the server's URL")?),
                "--spans-json" => {
                    options.spans_json = true;
                    continue;
                }
                other => return Err(format!("unknown argument {other:?}")),
            };
            if !matches!(options.broker, Broker::EmbeddedKafka) {
                return Err("--amqp and --nats each name the broker to run on: give one".to_owned());
            }
            options.broker = broker;
        }
        Ok(options)
    }
}

/// Where the spans go: always to the in-memory exporter the picture is drawn from, and to a collector when the
/// environment names one.
struct Telemetry {
    /// `None` with `OTEL_SDK_DISABLED=true`: nothing is recorded.
    provider: Option<SdkTracerProvider>,
    /// Set when exporting over OTLP; dropping it sends the spans still waiting in its batch.
    otlp: Option<tracehop::Telemetry>,
}

impl Telemetry {
    fn install(picture: InMemorySpanExporter) -> Result<Self, tracehop::TelemetryError> {
        let telemetry = if collector_configured() {
            let mut builder = tracehop::Telemetry::builder().with_span_processor(SimpleSpanProcessor::new(picture));
            if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
                builder = builder.service_name("order-pipeline");
            }
            let otlp = builder.install()?;
            Self { provider: otlp.tracer_provider().cloned(), otlp: Some(otlp) }
        } else {
            let provider = SdkTracerProvider::builder().with_simple_exporter(picture).build();
            global::set_tracer_provider(provider.clone());
            tracehop::install_propagator();
            Self { provider: Some(provider), otlp: None }
        };
        let bridge = telemetry
            .provider
            .as_ref()
            .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("order-pipeline")));
        // This example's own spans and events, and the warnings of tracehop and of OpenTelemetry's SDK and exporter
        // (a collector that cannot be reached): the broker clients' internals would crowd the picture.
        let ours = Targets::new()
            .with_target("orders", LevelFilter::INFO)
            .with_target("tracehop", LevelFilter::WARN)
            .with_target("opentelemetry", LevelFilter::WARN);
        let subscriber = tracing_subscriber::registry()
            .with(ours)
            .with(tracing_subscriber::fmt::layer().without_time().with_target(false).with_ansi(false))
            .with(bridge)
            .with(tracehop::HandlerEventsLayer::new());
        tracing::subscriber::set_global_default(subscriber).expect("the example's one subscriber");
        Ok(telemetry)
    }

    /// Sends what the OTLP exporter still holds, and says whether the collector took it.
    fn finish(self) -> Result<(), String> {
        match self.otlp {
            Some(otlp) => otlp.shutdown().map_err(|error| format!("exporting to the collector: {error}")),
            None => Ok(()),
        }
    }
}

/// Whether a collector is named. `tracehop::init()` would otherwise export to `localhost:4318`, the
/// specification's default, and a run with no collector there would end in export errors.
fn collector_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|variable| std::env::var_os(variable).is_some_and(|value| !value.is_empty()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match Options::from_args() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let picture = InMemorySpanExporter::default();
    let telemetry = match Telemetry::install(picture.clone()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };

    let ran = match &options.broker {
        Broker::EmbeddedKafka => kafka::run().await,
        Broker::RabbitMq(url) => rabbitmq::run(url).await,
        // `nats::run` fails with async-nats's own error type (`Send + Sync`), made the others' here.
        Broker::Nats(url) => nats::run(url).await.map_err(|error| error as Box<dyn std::error::Error>),
    };
    if let Err(error) = ran {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }

    let spans = picture.get_finished_spans().unwrap_or_default();
    print!("{}", tracehop::TracePicture::new().render(&spans));
    if options.spans_json {
        println!();
        for span in &spans {
            println!("{}", span_json(span));
        }
    }
    if let Err(error) = telemetry.finish() {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// One span as a line of JSON: what `tests/examples.rs` reads to check the shape of the traces exactly.
fn span_json(span: &SpanData) -> serde_json::Value {
    let context = &span.span_context;
    let key_values = |attributes: &[opentelemetry::KeyValue]| -> serde_json::Map<String, serde_json::Value> {
        attributes.iter().map(|attribute| (attribute.key.to_string(), json_value(&attribute.value))).collect()
    };
    let (status, description) = match &span.status {
        Status::Unset => ("unset", None),
        Status::Ok => ("ok", None),
        Status::Error { description } => ("error", Some(description.to_string())),
    };
    let start = span.start_time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    serde_json::json!({
        "trace": context.trace_id().to_string(),
        "span": context.span_id().to_string(),
        "parent": (span.parent_span_id != opentelemetry::trace::SpanId::INVALID)
            .then(|| span.parent_span_id.to_string()),
        "kind": format!("{:?}", span.span_kind),
        "name": span.name,
        "start_ns": start.as_nanos() as u64,
        "status": status,
        "status_description": description,
        "links": span.links.links.iter().map(|link| serde_json::json!({
            "trace": link.span_context.trace_id().to_string(),
            "span": link.span_context.span_id().to_string(),
        })).collect::<Vec<_>>(),
        "events": span.events.events.iter().map(|event| serde_json::json!({
            "name": event.name,
            "attributes": key_values(&event.attributes),
        })).collect::<Vec<_>>(),
        "attributes": key_values(&span.attributes),
    })
}

fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Bool(value) => (*value).into(),
        Value::I64(value) => (*value).into(),
        Value::F64(value) => (*value).into(),
        other => other.to_string().into(),
    }
}
