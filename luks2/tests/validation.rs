//! cryptsetup's header-validation cases (fixtures/validation, rebuilt from its
//! tests/generators with cryptsetup 2.6.1 as the oracle): `read_header` must accept exactly the
//! images `cryptsetup luksDump` accepts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use serde_json::Value;
use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn accepts_exactly_what_cryptsetup_accepts() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/validation");
    let tmp = tempfile::tempdir().unwrap();
    // The images are sparse (about 218 MB apparent size, 1.5 MB on disk): GNU tar keeps them so.
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(dir.join("images.tar.gz"))
        .arg("-C")
        .arg(tmp.path())
        .status()
        .expect("tar runs");
    assert!(st.success(), "tar -xzf images.tar.gz failed");
    let rows: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert!(rows.len() >= 80);
    let mut wrong = Vec::new();
    for r in &rows {
        let image = r["image"].as_str().unwrap();
        let accept = r["cryptsetup_luksdump_exit"].as_i64() == Some(0);
        let mut f = File::open(tmp.path().join(image)).unwrap();
        let got = luks2::read_header(&mut f);
        if got.is_ok() != accept {
            wrong.push(format!(
                "{image}: cryptsetup {}, tazpod {} ({})",
                if accept { "accepts" } else { "rejects" },
                if got.is_ok() { "accepts" } else { "rejects" },
                got.err().map(|e| e.to_string()).unwrap_or_default()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} disagree:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n")
    );
}
