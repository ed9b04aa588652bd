//! The writer's output against tazpod's reader and cryptsetup (the oracle): luksDump,
//! open --test-passphrase (right and wrong passphrase), luksDump --dump-volume-key, and
//! repair finding nothing to fix, over the option combinations of `format`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod format_support;

use format_support::*;
use luks2::format::{self, FormatParams, Layout};
use luks2::kdf::Argon2Variant;
use luks2::metadata::Priority;
use luks2::unlock::{unlock, UnlockOptions};
use std::io::Cursor;

const PASS: &[u8] = b"correct horse";

fn build(p: &FormatParams, seed: u64, key_len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut rng = TestRng::new(seed);
    let mut vk = vec![0u8; key_len];
    rng.fill(&mut vk).unwrap();
    let f = format::format(p, &vk, PASS, &mut |b: &mut [u8]| rng.fill(b)).unwrap();
    let mut image = Vec::new();
    f.plan.apply_to(&mut image);
    // A little data area after the header.
    let end = (p.layout.data_offset + 1024 * 1024).max(p.layout.header_end()) as usize;
    image.resize(end.max(image.len()), 0);
    (image, vk)
}

fn check(p: &FormatParams, name: &str) {
    check_key(p, name, 64);
}

fn check_key(p: &FormatParams, name: &str, key_len: usize) {
    let (image, vk) = build(p, 7, key_len);
    // Our reader.
    assert_eq!(
        our_unlock(&image, PASS).as_deref(),
        Some(vk.as_slice()),
        "{name}"
    );
    assert_eq!(our_unlock(&image, b"wrong"), None, "{name}");
    if !have_cryptsetup() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.img");
    std::fs::write(&file, &image).unwrap();
    let dump = cs_dump(&file);
    if !p.label.is_empty() {
        assert!(dump.contains(&p.label), "{name}: label missing in {dump}");
    }
    assert!(cs_accepts(&file, None, PASS), "{name}: cryptsetup refused");
    assert!(!cs_accepts(&file, None, b"wrong"), "{name}: wrong accepted");
    assert_eq!(cs_volume_key(&file, PASS), vk, "{name}: volume key");
    cs_repair_is_noop(&file);
}

#[test]
fn default_layout_matches_cryptsetup() {
    let l = Layout::cryptsetup(None, None, false).unwrap();
    assert_eq!(l.metadata_size, 16384);
    assert_eq!(l.keyslots_size, 16744448);
    assert_eq!(l.data_offset, 16 * 1024 * 1024);
    let l = Layout::cryptsetup(None, Some(1024 * 1024), false).unwrap();
    assert_eq!(l.data_offset, 2 * 1024 * 1024);
    let l = Layout::cryptsetup(Some(65536), None, true).unwrap();
    assert_eq!(l.data_offset, 0);
    assert_eq!(l.keyslots_size, 16 * 1024 * 1024 - 131072);
    assert!(Layout::cryptsetup(Some(12345), None, false).is_err());
    assert!(Layout::cryptsetup(None, Some(1000), false).is_err());
}

#[test]
fn json_is_cryptsetup_compact_order() {
    let mut p = params();
    p.uuid = Some("ff33626d-e2a9-4ba6-8484-4c1d17696edb".into());
    let mut rng = TestRng::new(1);
    let vk = [7u8; 64];
    let f = format::format(&p, &vk, PASS, &mut |b: &mut [u8]| rng.fill(b)).unwrap();
    let re = regex_like(&f.json);
    assert_eq!(
        re,
        "{\"keyslots\":{\"0\":{\"type\":\"luks2\",\"key_size\":64,\"af\":{\"type\":\"luks1\",\"stripes\":4000,\"hash\":\"sha256\"},\"area\":{\"type\":\"raw\",\"offset\":\"32768\",\"size\":\"258048\",\"encryption\":\"aes-xts-plain64\",\"key_size\":64},\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"S\"}}},\"tokens\":{},\"segments\":{\"0\":{\"type\":\"crypt\",\"offset\":\"2097152\",\"size\":\"dynamic\",\"iv_tweak\":\"0\",\"encryption\":\"aes-xts-plain64\",\"sector_size\":4096}},\"digests\":{\"0\":{\"type\":\"pbkdf2\",\"keyslots\":[\"0\"],\"segments\":[\"0\"],\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"S\",\"digest\":\"S\"}},\"config\":{\"json_size\":\"12288\",\"keyslots_size\":\"1048576\"}}"
    );
    assert_eq!(f.uuid, "ff33626d-e2a9-4ba6-8484-4c1d17696edb");
}

/// A new header starts at the seqid cryptsetup's luksFormat leaves (its "Epoch"), in both copies.
#[test]
fn format_seqid_is_cryptsetups() {
    let (image, _) = build(&params(), 3, 64);
    let h = header(&image);
    assert_eq!(h.binary.seqid, format::FORMAT_SEQID);
    assert_eq!(format::FORMAT_SEQID, 3);
    if !have_cryptsetup() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.img");
    std::fs::write(&ours, &image).unwrap();
    let theirs = dir.path().join("theirs.img");
    std::fs::File::create(&theirs)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let t = theirs.display().to_string();
    let (code, _, err) = cs(
        &[
            "luksFormat",
            "-q",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--luks2-keyslots-size",
            "1m",
            "--key-file",
            "-",
            &t,
        ],
        PASS,
    );
    assert_eq!(code, 0, "{err}");
    let epoch = |d: String| {
        d.lines()
            .find_map(|l| l.strip_prefix("Epoch:").map(|v| v.trim().to_string()))
            .unwrap()
    };
    assert_eq!(epoch(cs_dump(&ours)), epoch(cs_dump(&theirs)));
    // Both copies carry it.
    let second = usize::try_from(h.binary.hdr_size).unwrap();
    assert_eq!(image[second + 16..second + 24], 3u64.to_be_bytes());
}

/// Replaces base64 values of salt/digest with S.
fn regex_like(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest
        .find("\"salt\":\"")
        .or_else(|| rest.find("\"digest\":\""))
    {
        let j = rest[i..].find(":\"").unwrap() + i + 2;
        out.push_str(&rest[..j]);
        out.push('S');
        let k = rest[j..].find('"').unwrap() + j;
        rest = &rest[k..];
    }
    out.push_str(rest);
    out
}

#[test]
fn uuid_v4_form() {
    let u = format::uuid_v4([0xff; 16]);
    assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
}

#[test]
fn kdf_variants() {
    for (name, kdf) in [
        ("pbkdf2", pbkdf2()),
        ("argon2i", argon(Argon2Variant::I)),
        ("argon2id", argon(Argon2Variant::Id)),
    ] {
        let mut p = params();
        p.keyslot = spec(kdf, "aes-xts-plain64");
        check(&p, name);
    }
}

#[test]
fn sector_and_key_sizes() {
    for sector in [512u32, 4096] {
        for k in [32usize, 64] {
            let mut p = params();
            p.sector_size = sector;
            check_key(&p, &format!("sector {sector} key {k} bytes"), k);
        }
    }
}

#[test]
fn metadata_sizes_and_label() {
    for (md, ks) in [
        (16384u64, 1024 * 1024u64),
        (65536, 2 * 1024 * 1024),
        (4 * 1024 * 1024, 1024 * 1024),
    ] {
        let mut p = params();
        p.layout = Layout::cryptsetup(Some(md), Some(ks), false).unwrap();
        p.label = "vault-label".into();
        check(&p, &format!("metadata {md} keyslots {ks}"));
    }
}

#[test]
fn default_keyslots_area() {
    let mut p = params();
    p.layout = Layout::cryptsetup(None, None, false).unwrap();
    check(&p, "default 16 MiB layout");
}

#[test]
fn detached_header() {
    let mut p = params();
    p.layout = Layout::cryptsetup(None, Some(1024 * 1024), true).unwrap();
    let mut rng = TestRng::new(3);
    let vk = [9u8; 64];
    let f = format::format(&p, &vk, PASS, &mut |b: &mut [u8]| rng.fill(b)).unwrap();
    let mut hdr = Vec::new();
    f.plan.apply_to(&mut hdr);
    assert_eq!(our_unlock(&hdr, PASS).as_deref(), Some(&vk[..]));
    if !have_cryptsetup() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("hdr.img");
    let d = dir.path().join("data.img");
    std::fs::write(&h, &hdr).unwrap();
    std::fs::write(&d, vec![0u8; 1024 * 1024]).unwrap();
    cs_dump(&h);
    assert!(cs_accepts(&d, Some(&h), PASS));
    assert!(!cs_accepts(&d, Some(&h), b"nope"));
    cs_repair_is_noop(&h);
}

#[test]
fn add_remove_config_roundtrip() {
    let p = params();
    let (mut image, vk) = build(&p, 11, 64);
    let h = header(&image);
    let mut rng = TestRng::new(12);
    let (plan, id) = format::add_keyslot(
        &h,
        &vk,
        0,
        b"second",
        &spec(argon(Argon2Variant::Id), "aes-xts-plain64"),
        None,
        &mut |b: &mut [u8]| rng.fill(b),
    )
    .unwrap();
    assert_eq!(id, 1);
    assert_eq!(plan.writes.len(), 3);
    plan.apply_to(&mut image);
    assert_eq!(our_unlock(&image, b"second").as_deref(), Some(&vk[..]));
    assert_eq!(our_unlock(&image, PASS).as_deref(), Some(&vk[..]));

    let h = header(&image);
    let plan = format::configure(
        &h,
        Some("relabelled"),
        Some((1, Priority::High)),
        &mut |b: &mut [u8]| rng.fill(b),
    )
    .unwrap();
    plan.apply_to(&mut image);
    let h = header(&image);
    assert_eq!(h.binary.label, "relabelled");
    assert_eq!(h.metadata.keyslots[&1].priority, Priority::High);

    let plan = format::remove_keyslot(&h, 0, &mut |b: &mut [u8]| rng.fill(b)).unwrap();
    plan.apply_to(&mut image);
    assert_eq!(our_unlock(&image, PASS), None);
    assert_eq!(our_unlock(&image, b"second").as_deref(), Some(&vk[..]));
    if !have_cryptsetup() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.img");
    std::fs::write(&file, &image).unwrap();
    let dump = cs_dump(&file);
    assert!(
        dump.contains("relabelled") && dump.contains("Priority:   preferred"),
        "{dump}"
    );
    assert!(cs_accepts(&file, None, b"second"));
    assert!(!cs_accepts(&file, None, PASS));
    cs_repair_is_noop(&file);
}

fn header(image: &[u8]) -> luks2::header::Luks2Header {
    match luks2::read_header(&mut Cursor::new(image)).unwrap() {
        luks2::Header::Luks2(h) => *h,
        luks2::Header::Luks1(_) => panic!("luks1"),
    }
}

#[test]
fn add_keyslot_fills_gaps_and_refuses_used_ids() {
    let p = params();
    let (mut image, vk) = build(&p, 21, 64);
    let mut rng = TestRng::new(22);
    let s = spec(pbkdf2(), "aes-xts-plain64");
    let h = header(&image);
    let err = format::add_keyslot(&h, &vk, 0, b"x", &s, Some(0), &mut |b: &mut [u8]| {
        rng.fill(b)
    })
    .unwrap_err();
    assert!(matches!(err, format::FormatError::Keyslot { id: 0, .. }));
    // 1 MiB keyslots area: 4 keyslots of 258048 bytes fit (32 KiB headers not included).
    let mut n = 1;
    loop {
        let h = header(&image);
        match format::add_keyslot(&h, &vk, 0, b"x", &s, None, &mut |b: &mut [u8]| rng.fill(b)) {
            Ok((plan, _)) => {
                plan.apply_to(&mut image);
                n += 1;
            }
            Err(e) => {
                assert!(matches!(e, format::FormatError::NoSpace { .. }), "{e}");
                break;
            }
        }
    }
    assert_eq!(n, 4);
    let h = luks2::read_header(&mut Cursor::new(&image)).unwrap();
    let u = unlock(
        &h,
        &mut Cursor::new(&image),
        b"x",
        &UnlockOptions::default(),
    )
    .unwrap();
    assert_eq!(u.volume_key.as_bytes(), &vk[..]);
}

/// A rewrite starts from the JSON as json-c reads it: a token with a comment, escapes, a
/// double kept as written, `NaN` and a repeated key survives adding a keyslot (serialized as
/// json-c serializes it), and the header still loads here and in cryptsetup.
#[test]
fn add_keyslot_keeps_json_only_json_c_reads() {
    let p = params();
    let (mut image, vk) = build(&p, 31, 64);
    let h = header(&image);
    let token = r#""tokens":{"0":{"type":"luks2-keyring","keyslots":["0"],"key_description":"a\/b\u0041","x":1.50, /* c */ "x":2.50e0,"n":NaN}}"#;
    assert!(h.json_text.contains(r#""tokens":{}"#));
    let text = h.json_text.replace(r#""tokens":{}"#, token);
    let b = &h.binary;
    let fields = format::HeaderFields {
        metadata_size: b.hdr_size,
        seqid: b.seqid + 1,
        label: &b.label,
        subsystem: &b.subsystem,
        uuid: &b.uuid,
        salts: [[1; 64], [2; 64]],
    };
    let (primary, secondary) = format::header_copies(&text, &fields).unwrap();
    image[..primary.len()].copy_from_slice(&primary);
    let hs = b.hdr_size as usize;
    image[hs..hs + secondary.len()].copy_from_slice(&secondary);

    let h = header(&image);
    assert_eq!(
        h.metadata.tokens[&0].key_description.as_deref(),
        Some("a/bA")
    );
    let mut rng = TestRng::new(32);
    let s = spec(pbkdf2(), "aes-xts-plain64");
    let (plan, id) = format::add_keyslot(&h, &vk, 0, b"second", &s, None, &mut |b: &mut [u8]| {
        rng.fill(b)
    })
    .unwrap();
    plan.apply_to(&mut image);
    let h = header(&image);
    assert_eq!(
        h.metadata.tokens[&0].key_description.as_deref(),
        Some("a/bA")
    );
    assert!(
        h.json_text.contains(r#""key_description":"a/bA","keyslots":["0"],"n":NaN,"type":"luks2-keyring","x":2.50e0}"#),
        "{}",
        h.json_text
    );
    assert_eq!(our_unlock(&image, b"second").as_deref(), Some(&vk[..]));
    assert_eq!(id, 1);
    if have_cryptsetup() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.img");
        std::fs::write(&file, &image).unwrap();
        assert!(cs_dump(&file).contains("\tKey description: a/bA\n"));
        assert!(cs_accepts(&file, None, b"second"));
    }
}
