//! A handler for a broker whose cargo feature is off fails to compile with an error naming the feature.

#[test]
fn handlers_of_a_broker_whose_feature_is_off_do_not_compile() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
