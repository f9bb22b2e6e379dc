//! The README's main example, run as a user runs it: one trace through the whole order pipeline.

use std::path::PathBuf;
use std::process::Command;

/// The example binary `cargo test` builds beside the test binaries.
fn example(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    profile_dir.join("examples").join(name)
}

#[test]
fn orders_example_prints_one_trace_through_the_pipeline() {
    let binary = example("orders");
    let output = Command::new(&binary).output().unwrap_or_else(|error| {
        panic!(
            "cannot run {}: {error}; `cargo test` builds the examples, `cargo test --test examples` alone does not",
            binary.display()
        )
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let traces: Vec<&str> = stdout.lines().filter(|line| line.starts_with("trace ")).collect();
    assert_eq!(traces.len(), 1, "one trace for the whole pipeline:\n{stdout}");
    let is_span =
        |line: &&str| ["Producer ", "Consumer ", "Internal "].iter().any(|kind| line.trim_start().starts_with(kind));
    let span_lines: Vec<&str> = stdout.lines().filter(is_span).collect();
    let names: Vec<&str> = span_lines.iter().map(|line| line.trim_start().split(" span ").next().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "Producer \"send orders.created\"",
            "Consumer \"process orders.created\" [inventory-service]",
            "Internal \"UPDATE inventory\"",
            "Consumer \"process orders.created\" [payment-service]",
            "Internal \"POST /payment-gateway/charge\"",
            "Producer \"send payments.processed\"",
            "Consumer \"process payments.processed\" [shipping-service]",
        ],
        "{stdout}"
    );
    let indents: Vec<usize> = span_lines.iter().map(|line| line.len() - line.trim_start().len()).collect();
    assert_eq!(indents, vec![2, 4, 6, 4, 6, 6, 8], "each hop is a child of the one before:\n{stdout}");
}
