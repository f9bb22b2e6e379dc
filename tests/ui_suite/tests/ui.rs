//! The trybuild UI suite: what `#[traced_consumer]` and `#[traced_producer]` accept (`tests/ui/pass`, each file
//! compiled under `#![deny(warnings)]`) and the errors a user sees for each mistake (`tests/ui/fail`, with the
//! expected compiler output beside each case in a `.stderr` file).
//!
//! After a deliberate change to a message, regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test -p tracehop-ui` and read every changed `.stderr` before committing it.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
