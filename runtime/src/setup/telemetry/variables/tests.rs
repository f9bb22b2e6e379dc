use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

use super::*;

fn read(pairs: &[(&str, &str)]) -> Result<Variables, TelemetryError> {
    let map: HashMap<String, String> =
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
    Variables::read(&move |name: &str| map.get(name).cloned())
}

fn variables(pairs: &[(&str, &str)]) -> Variables {
    read(pairs).expect("the variables are valid")
}

fn error(pairs: &[(&str, &str)]) -> String {
    read(pairs).expect_err("a variable is invalid").to_string()
}

fn remote_parent(flags: TraceFlags) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
        SpanId::from(0x00f067aa0ba902b7),
        flags,
        true,
        TraceState::default(),
    ))
}

fn decision(sampler: &dyn ShouldSample, parent: Option<&Context>) -> SamplingDecision {
    sampler
        .should_sample(
            parent,
            TraceId::from(0xffff_ffff_ffff_ffff_ffff_ffff_ffff_fffe),
            "span",
            &SpanKind::Consumer,
            &[],
            &[],
        )
        .decision
}

fn sampler_of(pairs: &[(&str, &str)]) -> Box<dyn ShouldSample> {
    variables(pairs).sampler
}

const ROOT: Option<&Context> = None;

#[test]
fn nothing_set_means_the_specification_defaults() {
    let read = variables(&[]);
    assert!(!read.sdk_disabled);
    assert_eq!(read.service_name, None);
    assert_eq!(read.resource_attributes, Vec::<KeyValue>::new());
    assert_eq!(read.traces_exporter, TracesExporter::Otlp);
    assert_eq!(read.otlp, OtlpVariables::default());
    assert_eq!(read.otlp.traces_url(OtlpProtocol::Grpc), "http://localhost:4317");
    assert_eq!(read.otlp.traces_url(OtlpProtocol::HttpProtobuf), "http://localhost:4318/v1/traces");
    assert_eq!(read.otlp.traces_url(OtlpProtocol::HttpJson), "http://localhost:4318/v1/traces");
}

#[test]
fn empty_values_count_as_unset() {
    let read = variables(&[
        ("OTEL_SDK_DISABLED", ""),
        ("OTEL_TRACES_SAMPLER", " "),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", ""),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", ""),
    ]);
    assert!(!read.sdk_disabled);
    assert_eq!(read.otlp, OtlpVariables::default());
}

#[test]
fn the_default_sampler_is_parent_based_always_on() {
    let sampler = sampler_of(&[]);
    assert_eq!(decision(&*sampler, ROOT), SamplingDecision::RecordAndSample);
    assert_eq!(decision(&*sampler, Some(&remote_parent(TraceFlags::SAMPLED))), SamplingDecision::RecordAndSample);
    assert_eq!(decision(&*sampler, Some(&remote_parent(TraceFlags::default()))), SamplingDecision::Drop);
}

#[test]
fn always_on_samples_even_under_an_unsampled_parent() {
    let sampler = sampler_of(&[("OTEL_TRACES_SAMPLER", "always_on")]);
    assert_eq!(decision(&*sampler, ROOT), SamplingDecision::RecordAndSample);
    assert_eq!(decision(&*sampler, Some(&remote_parent(TraceFlags::default()))), SamplingDecision::RecordAndSample);
}

#[test]
fn always_off_drops_even_under_a_sampled_parent() {
    let sampler = sampler_of(&[("OTEL_TRACES_SAMPLER", "always_off")]);
    assert_eq!(decision(&*sampler, ROOT), SamplingDecision::Drop);
    assert_eq!(decision(&*sampler, Some(&remote_parent(TraceFlags::SAMPLED))), SamplingDecision::Drop);
}

#[test]
fn trace_id_ratio_zero_drops_a_root_span_and_one_samples_it() {
    let zero = sampler_of(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0")]);
    assert_eq!(decision(&*zero, ROOT), SamplingDecision::Drop);
    let one = sampler_of(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "1")]);
    assert_eq!(decision(&*one, ROOT), SamplingDecision::RecordAndSample);
}

#[test]
fn a_ratio_sampler_without_an_argument_samples_everything() {
    let sampler = sampler_of(&[("OTEL_TRACES_SAMPLER", "traceidratio")]);
    assert_eq!(decision(&*sampler, ROOT), SamplingDecision::RecordAndSample);
}

#[test]
fn parent_based_always_off_follows_a_sampled_remote_parent_and_drops_a_root() {
    let sampler = sampler_of(&[("OTEL_TRACES_SAMPLER", "parentbased_always_off")]);
    assert_eq!(decision(&*sampler, ROOT), SamplingDecision::Drop);
    assert_eq!(decision(&*sampler, Some(&remote_parent(TraceFlags::SAMPLED))), SamplingDecision::RecordAndSample);
}

#[test]
fn parent_based_ratio_zero_follows_a_sampled_remote_parent_and_drops_a_root() {
    let sampler =
        sampler_of(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.0")]);
    assert_eq!(decision(&*sampler, ROOT), SamplingDecision::Drop);
    assert_eq!(decision(&*sampler, Some(&remote_parent(TraceFlags::SAMPLED))), SamplingDecision::RecordAndSample);
    assert_eq!(decision(&*sampler, Some(&remote_parent(TraceFlags::default()))), SamplingDecision::Drop);
}

#[test]
fn parent_based_always_on_follows_an_unsampled_remote_parent() {
    let sampler = sampler_of(&[("OTEL_TRACES_SAMPLER", "PARENTBASED_ALWAYS_ON")]);
    assert_eq!(decision(&*sampler, ROOT), SamplingDecision::RecordAndSample);
    assert_eq!(decision(&*sampler, Some(&remote_parent(TraceFlags::default()))), SamplingDecision::Drop);
}

#[test]
fn a_sampler_argument_is_ignored_by_samplers_without_a_ratio() {
    let sampler = sampler_of(&[("OTEL_TRACES_SAMPLER", "always_on"), ("OTEL_TRACES_SAMPLER_ARG", "lots")]);
    assert_eq!(decision(&*sampler, ROOT), SamplingDecision::RecordAndSample);
}

#[test]
fn an_unknown_sampler_names_the_variable_and_the_samplers() {
    assert_eq!(
        error(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]),
        "OTEL_TRACES_SAMPLER=\"jaeger_remote\" is not valid: expected one of always_on, always_off, traceidratio, \
         parentbased_always_on, parentbased_always_off, parentbased_traceidratio, or one of them after \
         tracehop_links_ (that sampler inside tracehop::LinkSampler), such as tracehop_links_parentbased_always_on"
    );
}

#[test]
fn a_sampler_argument_that_is_not_a_number_is_an_error() {
    assert_eq!(
        error(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "half")]),
        "OTEL_TRACES_SAMPLER_ARG=\"half\" is not valid: expected a number from 0 to 1, such as 0.25"
    );
}

#[test]
fn a_sampler_argument_outside_zero_to_one_is_an_error() {
    for argument in ["1.5", "-0.1", "NaN", "inf"] {
        assert_eq!(
            error(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", argument)]),
            format!("OTEL_TRACES_SAMPLER_ARG=\"{argument}\" is not valid: expected a number from 0 to 1, such as 0.25")
        );
    }
}

#[test]
fn an_unknown_protocol_names_the_variable_and_the_protocols() {
    for variable in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
        assert_eq!(
            error(&[(variable, "http/thrift")]),
            format!("{variable}=\"http/thrift\" is not valid: expected one of grpc, http/protobuf, http/json")
        );
    }
}

#[test]
fn protocols_are_read_case_insensitively() {
    assert_eq!(variables(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC")]).otlp.protocol, Some(OtlpProtocol::Grpc));
    assert_eq!(variables(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).otlp.protocol, Some(OtlpProtocol::HttpJson));
}

#[test]
fn an_unparsable_endpoint_names_the_variable() {
    for (variable, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://exa mple:4317"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/v1/traces"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces"),
    ] {
        assert_eq!(
            error(&[(variable, value)]),
            format!(
                "{variable}={value:?} is not valid: expected an absolute http:// or https:// URL, such as \
                 http://collector:4317"
            )
        );
    }
}

#[test]
fn bad_header_syntax_names_the_variable() {
    for (variable, value) in [
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "=secret"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api key=secret"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=%zz"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=line%0Abreak"),
    ] {
        assert_eq!(
            error(&[(variable, value)]),
            format!(
                "{variable}={value:?} is not valid: expected comma-separated name=value pairs of HTTP header names \
                 and percent-encoded values, such as api-key=secret,tenant=blue"
            )
        );
    }
}

#[test]
fn a_bad_timeout_names_the_variable() {
    for (variable, value) in [
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "-5"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2.5"),
    ] {
        assert_eq!(
            error(&[(variable, value)]),
            format!(
                "{variable}={value:?} is not valid: expected a whole number of milliseconds greater than 0, such as \
                 10000"
            )
        );
    }
}

#[test]
fn a_bad_sdk_disabled_names_the_variable() {
    assert_eq!(
        error(&[("OTEL_SDK_DISABLED", "yes")]),
        "OTEL_SDK_DISABLED=\"yes\" is not valid: expected true or false"
    );
}

#[test]
fn an_unknown_traces_exporter_names_the_variable() {
    for value in ["zipkin", "otlp,console"] {
        assert_eq!(
            error(&[("OTEL_TRACES_EXPORTER", value)]),
            format!("OTEL_TRACES_EXPORTER={value:?} is not valid: expected otlp or none")
        );
    }
}

#[test]
fn bad_resource_attributes_name_the_variable() {
    assert_eq!(
        error(&[("OTEL_RESOURCE_ATTRIBUTES", "team=orders,region")]),
        "OTEL_RESOURCE_ATTRIBUTES=\"team=orders,region\" is not valid: expected comma-separated key=value pairs \
         with percent-encoded values, such as deployment.environment=prod,team=orders"
    );
}

#[test]
fn resource_attributes_are_trimmed_and_percent_decoded() {
    let read = variables(&[("OTEL_RESOURCE_ATTRIBUTES", " team = orders , note=a%2Cb%20c ,")]);
    assert_eq!(read.resource_attributes, vec![KeyValue::new("team", "orders"), KeyValue::new("note", "a,b c")]);
}

#[test]
fn sdk_disabled_reads_nothing_else() {
    let read = variables(&[
        ("OTEL_SDK_DISABLED", "TRUE"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
    ]);
    assert!(read.sdk_disabled);
}

#[test]
fn traces_exporter_none_reads_no_exporter_variable() {
    let read = variables(&[("OTEL_TRACES_EXPORTER", "none"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")]);
    assert_eq!(read.traces_exporter, TracesExporter::None);
    assert_eq!(read.otlp, OtlpVariables::default());
}

#[test]
fn signal_specific_variables_win_over_generic_ones() {
    let read = variables(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=generic,tenant=blue"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=traces"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
    ]);
    assert_eq!(
        read.otlp,
        OtlpVariables {
            endpoint: Some("http://generic:4317".to_owned()),
            traces_endpoint: Some("http://traces:4317".to_owned()),
            protocol: Some(OtlpProtocol::Grpc),
            headers: vec![("api-key".to_owned(), "traces".to_owned())],
            timeout: Some(Duration::from_millis(2500)),
        }
    );
    assert_eq!(read.otlp.traces_url(OtlpProtocol::Grpc), "http://traces:4317");
}

#[test]
fn generic_variables_apply_when_no_signal_specific_one_is_set() {
    let read = variables(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=generic%3D1,tenant=blue"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
    ]);
    assert_eq!(read.otlp.protocol, Some(OtlpProtocol::Grpc));
    assert_eq!(
        read.otlp.headers,
        vec![("api-key".to_owned(), "generic=1".to_owned()), ("tenant".to_owned(), "blue".to_owned())]
    );
    assert_eq!(read.otlp.timeout, Some(Duration::from_millis(1000)));
}

#[test]
fn a_generic_variable_is_checked_even_when_a_signal_specific_one_overrides_it() {
    assert_eq!(
        error(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp")]),
        "OTEL_EXPORTER_OTLP_PROTOCOL=\"udp\" is not valid: expected one of grpc, http/protobuf, http/json"
    );
}

#[test]
fn the_generic_endpoint_gets_the_traces_path_over_http_only() {
    let read = variables(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]);
    assert_eq!(read.otlp.traces_url(OtlpProtocol::HttpProtobuf), "http://collector:4318/v1/traces");
    assert_eq!(read.otlp.traces_url(OtlpProtocol::Grpc), "http://collector:4318");
    let with_path = variables(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://gateway/otlp/")]);
    assert_eq!(with_path.otlp.traces_url(OtlpProtocol::HttpJson), "https://gateway/otlp/v1/traces");
}

#[test]
fn the_traces_endpoint_is_used_as_it_is_over_http() {
    let read = variables(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/custom"),
    ]);
    assert_eq!(read.otlp.traces_url(OtlpProtocol::HttpProtobuf), "http://traces:4318/custom");
}

#[test]
fn service_name_is_read() {
    assert_eq!(variables(&[("OTEL_SERVICE_NAME", "orders")]).service_name.as_deref(), Some("orders"));
}

/// What `sampler` decides for a CONSUMER span that starts a trace, linked to a producer's span that was sampled
/// or not.
fn decision_of_linked_root(sampler: &dyn ShouldSample, producer_sampled: bool) -> SamplingDecision {
    let flags = if producer_sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    let producer = remote_parent(flags).span().span_context().clone();
    sampler
        .should_sample(
            None,
            TraceId::from(0xffff_ffff_ffff_ffff_ffff_ffff_ffff_fffe),
            "process orders",
            &SpanKind::Consumer,
            &[],
            &[opentelemetry::trace::Link::with_context(producer)],
        )
        .decision
}

#[test]
fn tracehop_links_before_a_standard_name_samples_a_linked_root_as_its_producer_and_the_rest_as_that_sampler() {
    let sampler = sampler_of(&[("OTEL_TRACES_SAMPLER", "tracehop_links_parentbased_always_on")]);
    assert_eq!(decision_of_linked_root(&*sampler, true), SamplingDecision::RecordAndSample);
    assert_eq!(decision_of_linked_root(&*sampler, false), SamplingDecision::RecordAndSample, "always on");
    assert_eq!(decision(&*sampler, Some(&remote_parent(TraceFlags::default()))), SamplingDecision::Drop);

    let sampler = sampler_of(&[
        ("OTEL_TRACES_SAMPLER", "Tracehop_Links_ParentBased_TraceIdRatio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0"),
    ]);
    assert_eq!(decision_of_linked_root(&*sampler, true), SamplingDecision::RecordAndSample);
    assert_eq!(decision_of_linked_root(&*sampler, false), SamplingDecision::Drop, "ratio 0");
    assert_eq!(decision(&*sampler, ROOT), SamplingDecision::Drop);
    assert_eq!(decision(&*sampler, Some(&remote_parent(TraceFlags::SAMPLED))), SamplingDecision::RecordAndSample);

    let sampler = sampler_of(&[("OTEL_TRACES_SAMPLER", "tracehop_links_always_off")]);
    assert_eq!(decision_of_linked_root(&*sampler, true), SamplingDecision::RecordAndSample);
    assert_eq!(decision_of_linked_root(&*sampler, false), SamplingDecision::Drop);
}

#[test]
fn the_standard_samplers_do_not_follow_links() {
    let sampler = sampler_of(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0")]);
    assert_eq!(decision_of_linked_root(&*sampler, true), SamplingDecision::Drop);
}

#[test]
fn tracehop_links_before_anything_but_a_standard_name_is_an_unknown_sampler() {
    for value in
        ["tracehop_links_", "tracehop_links", "tracehop_links_jaeger_remote", "tracehop_links_tracehop_links_always_on"]
    {
        let message = error(&[("OTEL_TRACES_SAMPLER", value)]);
        assert!(
            message.starts_with(&format!("OTEL_TRACES_SAMPLER={value:?} is not valid: expected one of always_on,")),
            "{message}"
        );
        assert!(message.ends_with("such as tracehop_links_parentbased_always_on"), "{message}");
    }
}

#[test]
fn a_link_samplers_ratio_is_checked_as_the_standard_ones_are() {
    assert_eq!(
        error(&[("OTEL_TRACES_SAMPLER", "tracehop_links_parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")]),
        "OTEL_TRACES_SAMPLER_ARG=\"2\" is not valid: expected a number from 0 to 1, such as 0.25"
    );
}
