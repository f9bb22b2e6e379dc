//! A handler for a broker whose cargo feature is off fails to compile with an error naming the feature; a type of
//! the user's own that shares a broker's type name is not taken for that broker's.

#[test]
fn handlers_of_a_broker_whose_feature_is_off_do_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/pass/*.rs");
}
