//! Every corpus variant (one rule broken or bent at a time) gives exactly the expected result.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod header_support;

use header_support::{corpus, HDR_SIZE};
use luks2::metadata::Metadata;

#[test]
fn corpus_results_are_exact() {
    let mut failures = Vec::new();
    for case in corpus() {
        let mut area = vec![0u8; HDR_SIZE as usize - 4096];
        area[..case.json.len()].copy_from_slice(&case.json);
        let got = Metadata::parse_area(&area).map(|_| ());
        if got != case.expect {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn corpus_errors_display_their_location() {
    for case in corpus() {
        if let Err(e) = &case.expect {
            let text = e.to_string();
            assert!(
                !text.is_empty() && !text.ends_with('.'),
                "{}: {text}",
                case.name
            );
        }
    }
}
