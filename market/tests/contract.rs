//! The written input contract (docs/input.md) against the decoders.

/// Every reason code of the decoders is documented in docs/input.md, and only those.
#[test]
fn every_reason_code_is_in_the_contract() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/input.md"))
        .unwrap_or_default();
    for code in stockflow_market::Error::CODES {
        assert!(
            doc.contains(&format!("| `{code}` |")),
            "{code} is not in docs/input.md"
        );
    }
    let documented = doc
        .lines()
        .filter(|l| l.starts_with("| `") && l.matches('|').count() == 3)
        .count();
    assert_eq!(documented, stockflow_market::Error::CODES.len());
}
