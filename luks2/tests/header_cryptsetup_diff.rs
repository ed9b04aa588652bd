//! Differential check against the host's cryptsetup: every corpus image loads with
//! `cryptsetup luksDump` exactly when the corpus says it does, and `read_header` agrees except
//! for the documented stricter id rule. Needs cryptsetup (tests/run-all.sh installs
//! `cryptsetup-bin`); where it cannot be had, each test says SKIPPING and passes.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod header_support;

use header_support::{corpus, image, CopySpec, DEV_SIZE};
use std::process::Command;

/// Whether cryptsetup runs here; if not, says loudly that `test` is skipped.
fn have_cryptsetup(test: &str) -> bool {
    let ok = Command::new("cryptsetup")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("!!!!!! cryptsetup is not installed: SKIPPING {test} !!!!!!");
    }
    ok
}

fn cryptsetup_loads(img: &[u8], tag: &str) -> bool {
    let path = std::env::temp_dir().join(format!("luks2-diff-{}-{tag}.img", std::process::id()));
    std::fs::write(&path, img).unwrap();
    let out = Command::new("cryptsetup")
        .arg("luksDump")
        .arg(&path)
        .output()
        .expect("cryptsetup runs");
    std::fs::remove_file(&path).unwrap();
    out.status.success()
}

#[test]
fn corpus_matches_cryptsetup() {
    if !have_cryptsetup("corpus_matches_cryptsetup") {
        return;
    }
    let mut failures = Vec::new();
    for (i, case) in corpus().into_iter().enumerate() {
        let img = image(&CopySpec::new(case.json.clone()), DEV_SIZE);
        let theirs = cryptsetup_loads(&img, &i.to_string());
        let ours = luks2::read_header(&mut std::io::Cursor::new(&img)).is_ok();
        if theirs != case.cryptsetup_loads {
            failures.push(format!("{}: cryptsetup loads = {theirs}", case.name));
        }
        if ours != case.expect.is_ok() {
            failures.push(format!("{}: read_header ok = {ours}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Binary-header variants: (name, image).
fn binary_variants() -> Vec<(&'static str, Vec<u8>)> {
    use header_support::*;
    use serde_json::json;
    let hs = HDR_SIZE as usize;
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![("good", good_image())];
    let mut img = good_image();
    img[4096 + 10] ^= 1;
    v.push(("primary checksum broken", img));
    let mut img = good_image();
    img[..4096].fill(0);
    v.push(("primary wiped", img));
    let mut img = good_image();
    img[4096 + 10] ^= 1;
    img[hs + 4096 + 10] ^= 1;
    v.push(("both checksums broken", img));
    let mut img = good_image();
    put_u16(&mut img, 6, 3);
    v.push(("primary version 3", img));
    let mut img = good_image();
    put_u16(&mut img, 6, 0);
    fix_checksum(&mut img, 0);
    v.push(("primary version 0", img));
    let mut img = good_image();
    put_u64(&mut img, 8, 8192);
    fix_checksum(&mut img, 0);
    v.push(("primary hdr_size 8192", img));
    let mut img = good_image();
    put_u64(&mut img, hs + 8, 32768);
    fix_checksum(&mut img, hs);
    img[..4096].fill(0);
    v.push(("secondary size mismatch, primary wiped", img));
    let img = good_image();
    v.push((
        "one byte too small",
        img[..(2 * HDR_SIZE + KEYSLOTS_SIZE) as usize - 1].to_vec(),
    ));
    v.push((
        "exactly large enough",
        img[..(2 * HDR_SIZE + KEYSLOTS_SIZE) as usize].to_vec(),
    ));
    v.push(("only 100 bytes", img[..100].to_vec()));
    for alg in ["sha1", "sha512", "whirlpool", "SHA256"] {
        let spec = CopySpec {
            alg,
            ..CopySpec::new(base_json())
        };
        v.push((alg, image(&spec, DEV_SIZE)));
    }
    let mut img = image(
        &CopySpec {
            alg: "sha1",
            ..CopySpec::new(base_json())
        },
        DEV_SIZE,
    );
    img[448 + 20] = 0xff;
    img[hs + 448 + 20] = 0xff;
    v.push(("bytes after a sha1 checksum", img));
    let mut img = good_image();
    for at in [72, hs + 72] {
        img[at..at + 32].fill(0);
        img[at..at + 5].copy_from_slice(b"crc32");
    }
    v.push(("unknown checksum algorithm", img));
    // 64 KiB header, primary wiped: found by scanning.
    let j = with(|v| {
        set(v, "/config/json_size", json!("61440"));
        set(v, "/keyslots/0/area/offset", json!("131072"));
        set(v, "/segments/0/offset", json!("196608"));
    });
    let mut img = image(
        &CopySpec {
            hdr_size: 65536,
            ..CopySpec::new(j)
        },
        262144,
    );
    img[..4096].fill(0);
    v.push(("64 KiB secondary found by scan", img));
    // Scan stops at a checksummed secondary with broken metadata.
    let mut img = good_image();
    img[..4096].fill(0);
    write_copy(
        &mut img,
        HDR_SIZE,
        true,
        &CopySpec::new(with(|v| del(v, "/tokens"))),
    );
    let good32 = with(|v| {
        set(v, "/config/json_size", json!("28672"));
        set(v, "/keyslots/0/area/offset", json!("65536"));
        set(v, "/segments/0/offset", json!("131072"));
    });
    let spec32 = CopySpec {
        hdr_size: 32768,
        ..CopySpec::new(good32.clone())
    };
    img.resize(262144, 0);
    write_copy(&mut img, 32768, true, &spec32);
    v.push(("scan stops at first checksummed copy", img));
    // A checksummed primary with bad metadata points at 16 KiB; the good copy is at 32 KiB.
    let mut img = vec![0u8; 262144];
    write_copy(
        &mut img,
        0,
        false,
        &CopySpec::new(with(|v| del(v, "/tokens"))),
    );
    write_copy(&mut img, 32768, true, &spec32);
    v.push(("secondary read where the primary says", img));
    // Secondary newer than primary, both valid.
    let mut img = good_image();
    write_copy(
        &mut img,
        HDR_SIZE,
        true,
        &CopySpec {
            seqid: 9,
            ..CopySpec::new(base_json())
        },
    );
    v.push(("newer secondary", img));
    v
}

#[test]
fn binary_variants_match_cryptsetup() {
    if !have_cryptsetup("binary_variants_match_cryptsetup") {
        return;
    }
    let mut failures = Vec::new();
    for (i, (name, img)) in binary_variants().into_iter().enumerate() {
        let ours = luks2::read_header(&mut std::io::Cursor::new(&img)).is_ok();
        let theirs = cryptsetup_loads(&img, &format!("bin{i}"));
        if ours != theirs {
            failures.push(format!("{name}: ours {ours}, cryptsetup {theirs}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn luks1_variants_match_cryptsetup() {
    if !have_cryptsetup("luks1_variants_match_cryptsetup") {
        return;
    }
    let base = || {
        let mut img = header_support::cryptsetup_luks1::header();
        img.resize(2 << 20, 0);
        img
    };
    let slot = |img: &mut Vec<u8>, i: usize, off: usize, v: u32| {
        let at = 208 + 48 * i + off;
        img[at..at + 4].copy_from_slice(&v.to_be_bytes());
    };
    let hash = |img: &mut Vec<u8>, name: &str| {
        img[72..104].fill(0);
        img[72..72 + name.len()].copy_from_slice(name.as_bytes());
    };
    let mut v: Vec<(&str, Vec<u8>)> = vec![("good", base())];
    let mut i = base();
    hash(&mut i, "md5");
    v.push(("md5", i));
    let mut i = base();
    hash(&mut i, "SHA1");
    v.push(("SHA1", i));
    let mut i = base();
    slot(&mut i, 3, 44, 3999);
    v.push(("stripes", i));
    let mut i = base();
    slot(&mut i, 0, 40, 0x0080_0000);
    v.push(("offset wraps", i));
    let mut i = base();
    slot(&mut i, 7, 40, 3900);
    v.push(("runs into payload", i));
    let mut i = base();
    slot(&mut i, 1, 40, 100);
    v.push(("overlap", i));
    let mut i = base();
    i[108..112].fill(0);
    v.push(("key bytes 0", i));
    let mut i = base();
    slot(&mut i, 2, 0, 0x1234_5678);
    v.push(("invalid active", i));
    let mut i = base();
    i[104..108].fill(0);
    v.push(("payload 0", i));
    let i = base();
    v.push(("too small", i[..(2050 * 512) - 1].to_vec()));
    v.push(("just large enough", i[..2050 * 512].to_vec()));
    let mut failures = Vec::new();
    for (n, (name, img)) in v.into_iter().enumerate() {
        let ours = luks2::read_header(&mut std::io::Cursor::new(&img)).is_ok();
        let theirs = cryptsetup_loads(&img, &format!("l1-{n}"));
        if ours != theirs {
            failures.push(format!("{name}: ours {ours}, cryptsetup {theirs}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Random JSON-ish token payloads (numbers, literals, strings, escapes, comments, nesting):
/// `read_header` accepts exactly the images cryptsetup accepts.
#[test]
fn random_json_syntax_matches_cryptsetup() {
    if !have_cryptsetup("random_json_syntax_matches_cryptsetup") {
        return;
    }
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let strategies = [
        "[-+0-9.eE]{1,8}",
        "[-a-zA-Z]{1,10}",
        "[\"'a\\\\/bnrtfu0-9dDcC]{1,14}",
        "[\\[\\]{}\",:'0-9 /*\n]{1,14}",
        "\"(\\\\u[0-9a-fA-F]{4}|[a-z\\\\]){0,6}\"",
    ];
    let mut runner = TestRunner::deterministic();
    let base = header_support::base_json();
    let mut failures = Vec::new();
    let mut accepted = 0;
    for (s, pattern) in strategies.iter().enumerate() {
        let strat = proptest::string::string_regex(pattern).unwrap();
        for n in 0..120 {
            let payload = strat.new_tree(&mut runner).unwrap().current();
            let text = base.replacen(
                "\"tokens\":{}",
                &format!("\"tokens\":{{\"0\":{{\"type\":\"t\",\"keyslots\":[],\"x\":{payload}}}}}"),
                1,
            );
            let img = header_support::image(
                &header_support::CopySpec::new(text.into_bytes()),
                header_support::DEV_SIZE,
            );
            let ours = luks2::read_header(&mut std::io::Cursor::new(&img)).is_ok();
            let theirs = cryptsetup_loads(&img, &format!("fz{s}-{n}"));
            accepted += usize::from(theirs);
            if ours != theirs {
                failures.push(format!("{payload:?}: ours {ours}, cryptsetup {theirs}"));
            }
        }
    }
    eprintln!(
        "cryptsetup accepted {accepted} of {} payloads",
        120 * strategies.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Random structural mutations (1 to 3 fields set to values from a pool of edge cases):
/// `read_header` accepts exactly the images cryptsetup accepts (apart from ids that are not
/// canonical, which the pool avoids).
#[test]
fn random_field_mutations_match_cryptsetup() {
    if !have_cryptsetup("random_field_mutations_match_cryptsetup") {
        return;
    }
    use proptest::test_runner::TestRunner;
    use rand_like::pick;
    use serde_json::json;
    let paths = [
        "/keyslots/0/type",
        "/keyslots/0/key_size",
        "/keyslots/0/priority",
        "/keyslots/0/af/type",
        "/keyslots/0/af/stripes",
        "/keyslots/0/af/hash",
        "/keyslots/0/area/type",
        "/keyslots/0/area/offset",
        "/keyslots/0/area/size",
        "/keyslots/0/area/encryption",
        "/keyslots/0/area/key_size",
        "/keyslots/0/kdf/type",
        "/keyslots/0/kdf/hash",
        "/keyslots/0/kdf/iterations",
        "/keyslots/0/kdf/salt",
        "/keyslots/0/kdf/time",
        "/keyslots/0/kdf/memory",
        "/keyslots/0/kdf/cpus",
        "/keyslots/1",
        "/tokens/0",
        "/tokens/1",
        "/segments/0/type",
        "/segments/0/offset",
        "/segments/0/size",
        "/segments/0/iv_tweak",
        "/segments/0/encryption",
        "/segments/0/sector_size",
        "/segments/0/flags",
        "/segments/0/integrity",
        "/segments/1",
        "/digests/0/type",
        "/digests/0/keyslots",
        "/digests/0/segments",
        "/digests/0/hash",
        "/digests/0/salt",
        "/digests/1",
        "/config/json_size",
        "/config/keyslots_size",
        "/config/flags",
        "/config/requirements",
    ];
    let values = [
        json!(0),
        json!(1),
        json!(2),
        json!(512),
        json!(1536),
        json!(4096),
        json!(-1),
        json!(4294967296u64),
        json!(1.5),
        json!(true),
        json!(null),
        json!([]),
        json!({}),
        json!(""),
        json!("0"),
        json!("512"),
        json!("4096"),
        json!("32768"),
        json!("36864"),
        json!("61440"),
        json!("65536"),
        json!("12288"),
        json!("+12288"),
        json!(" 512"),
        json!("dynamic"),
        json!("abc"),
        json!("18446744073709551615"),
        json!("luks1"),
        json!("luks2"),
        json!("raw"),
        json!("crypt"),
        json!("linear"),
        json!("pbkdf2"),
        json!("argon2id"),
        json!("sha256"),
        json!(["0"]),
        json!(["1"]),
        json!([0]),
        json!(["backup-final"]),
        json!(["in-reencryption"]),
        json!({"mandatory":["online-reencrypt"]}),
        json!({"mandatory":["x"]}),
        json!({"type":"t","keyslots":["0"]}),
        json!({"type":"t","keyslots":[]}),
        json!({"type":"crypt","offset":"69632","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}),
        json!({"type":"x","key_size":1,"area":{"type":"raw","offset":"40960","size":"4096"}}),
        json!({"type":"pbkdf2","keyslots":["0"],"segments":["0"]}),
        json!({"type":"hmac(sha256)","journal_encryption":"none","journal_integrity":"none"}),
    ];
    let mut rng = TestRunner::deterministic();
    let mut failures = Vec::new();
    let mut accepted = 0;
    let total = 800;
    for n in 0..total {
        let mut v = header_support::base_value();
        let count = 1 + pick(&mut rng, 3);
        let mut desc = Vec::new();
        for _ in 0..count {
            let p = paths[pick(&mut rng, paths.len())];
            let val = values[pick(&mut rng, values.len())].clone();
            desc.push(format!("{p}={val}"));
            let (parent, _) = p.rsplit_once('/').unwrap();
            if v.pointer(parent).is_some_and(serde_json::Value::is_object) {
                header_support::set(&mut v, p, val);
            }
        }
        let img = header_support::image(
            &header_support::CopySpec::new(v.to_string().into_bytes()),
            header_support::DEV_SIZE,
        );
        let ours = luks2::read_header(&mut std::io::Cursor::new(&img));
        let theirs = cryptsetup_loads(&img, &format!("fm{n}"));
        accepted += usize::from(theirs);
        if ours.is_ok() != theirs {
            failures.push(format!(
                "{desc:?}: ours {:?}, cryptsetup {theirs}",
                ours.err()
            ));
        }
    }
    eprintln!("cryptsetup accepted {accepted} of {total} mutations");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

mod rand_like {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    /// A uniform index below `n`.
    pub fn pick(runner: &mut TestRunner, n: usize) -> usize {
        (0..n).new_tree(runner).unwrap().current()
    }
}
