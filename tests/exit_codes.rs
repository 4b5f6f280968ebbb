//! The exit codes by whose fault an error is (`src/exit.rs`, compiled here on its own: the
//! binary has no unit tests, so the test build does not compile it a second time in test
//! mode).

#[allow(dead_code)]
#[path = "../src/exit.rs"]
mod exit;

use exit::{code, fault_of, UserError, EXTERNAL, INTERNAL, USER};

#[test]
fn codes_follow_the_fault_found_in_the_chain() {
    let e = anyhow::Error::from(stockflow_core::Error::transient("broker down"))
        .context("running the job");
    assert_eq!(fault_of(&e).map(code), Some(EXTERNAL));
    let e = anyhow::Error::from(stockflow_sinks::Error::OtherJob {
        database: "db".into(),
        owner: "a".into(),
        job: "b".into(),
    });
    assert_eq!(fault_of(&e).map(code), Some(USER));
    let e = anyhow::Error::from(stockflow_dataflow::Error::Internal("bug".into()));
    assert_eq!(fault_of(&e).map(code), Some(INTERNAL));
    let e = anyhow::Error::from(UserError("--processes > 1 needs --hostfile".into()));
    assert_eq!(fault_of(&e).map(code), Some(USER));
    assert_eq!(fault_of(&anyhow::anyhow!("who knows")), None);
}
