//! Big and hostile JSON areas: a 4 MiB header full of keyslots validates in linear time,
//! wide or repetitive objects do not blow up, and random damage never panics.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod header_support;

use header_support::*;
use luks2::metadata::{JsonErrorKind, Metadata, MetadataError};
use proptest::prelude::*;
use std::fmt::Write as _;
use std::time::Instant;

const BIG: u64 = 4 << 20;

/// Metadata for a 4 MiB header holding `n` keyslots of an unknown type with 512-byte areas
/// (in reverse numeric order, so that sorting matters), a detached data segment, and the rest.
fn many_keyslots(n: u64, overlap_last: bool) -> Vec<u8> {
    let mut s = String::from("{\"keyslots\":{");
    for i in (0..n).rev() {
        let mut off = 2 * BIG + 512 * i;
        if overlap_last && i == 0 {
            off = 2 * BIG + 512 * (n - 1) - 256;
        }
        write!(
            s,
            "\"{i}\":{{\"type\":\"x\",\"key_size\":0,\"area\":{{\"type\":\"r\",\"offset\":\"{off}\",\"size\":\"512\"}}}},"
        )
        .unwrap();
    }
    s.pop();
    let ks_size = (512 * n).div_ceil(4096) * 4096;
    write!(
        s,
        "}},\"tokens\":{{}},\"segments\":{{\"0\":{{\"type\":\"crypt\",\"offset\":\"0\",\"size\":\"dynamic\",\"iv_tweak\":\"0\",\"encryption\":\"aes-xts-plain64\",\"sector_size\":512}}}},\"digests\":{{\"0\":{{\"type\":\"pbkdf2\",\"keyslots\":[],\"segments\":[\"0\"]}}}},\"config\":{{\"json_size\":\"{}\",\"keyslots_size\":\"{ks_size}\"}}}}",
        BIG - 4096
    )
    .unwrap();
    let mut area = s.into_bytes();
    assert!(area.len() < (BIG - 4096) as usize, "{}", area.len());
    area.resize((BIG - 4096) as usize, 0);
    area
}

#[test]
fn four_mib_of_keyslots_validates_quickly() {
    let area = many_keyslots(45_000, false);
    let t = Instant::now();
    let (m, _) = Metadata::parse_area(&area).unwrap();
    let took = t.elapsed();
    assert_eq!(m.keyslots.len(), 45_000);
    assert_eq!(m.keyslot_order.first(), Some(&44_999));
    // Quadratic checks would take minutes here; linear ones take well under this even in a
    // debug build on a busy machine.
    assert!(took.as_secs() < 20, "took {took:?}");
    let area = many_keyslots(45_000, true);
    assert!(matches!(
        Metadata::parse_area(&area),
        Err(MetadataError::AreasOverlap { .. })
    ));
}

/// A JSON area of `HDR_SIZE` holding `text`.
fn area_with(text: &str) -> Vec<u8> {
    assert!(text.len() < (BIG - 4096) as usize, "{}", text.len());
    let mut a = text.as_bytes().to_vec();
    a.resize((BIG - 4096) as usize, 0);
    a
}

fn with_token_payload(payload: &str) -> String {
    base_json()
        .replacen(
            "\"tokens\":{}",
            &format!("\"tokens\":{{\"0\":{{\"type\":\"t\",\"keyslots\":[],\"x\":{payload}}}}}"),
            1,
        )
        .replacen(
            "\"json_size\":\"12288\"",
            &format!("\"json_size\":\"{}\"", BIG - 4096),
            1,
        )
}

#[test]
fn wide_and_repetitive_objects() {
    // 200k distinct keys in one object.
    let mut wide = String::from("{");
    for i in 0..200_000 {
        write!(wide, "\"k{i}\":{i},").unwrap();
    }
    wide.pop();
    wide.push('}');
    // Area offsets and the data offset must fit the 4 MiB layout.
    let fix = |t: String| {
        t.replacen(
            "\"offset\":\"32768\"",
            &format!("\"offset\":\"{}\"", 2 * BIG),
            1,
        )
        .replacen("\"offset\":\"65536\"", "\"offset\":\"0\"", 1)
    };
    let t = Instant::now();
    let r = Metadata::parse_area(&area_with(&fix(with_token_payload(&wide))));
    assert!(r.is_ok(), "{r:?}");
    assert!(t.elapsed().as_secs() < 20);
    // The same key 300k times: one entry, the last value.
    let mut dup = String::from("{");
    for i in 0..300_000 {
        write!(dup, "\"a\":{i},").unwrap();
    }
    dup.pop();
    dup.push('}');
    let (m, _) = Metadata::parse_area(&area_with(&fix(with_token_payload(&dup)))).unwrap();
    assert!(m.tokens[&0].json.ends_with("\"x\":{\"a\":299999}}"));
    // A million empty arrays.
    let arrays = format!("[{}[]]", "[],".repeat(1_000_000));
    assert!(Metadata::parse_area(&area_with(&fix(with_token_payload(&arrays)))).is_ok());
}

#[test]
fn deep_nesting_is_refused_without_recursion() {
    let deep = "[".repeat(2_000_000);
    assert!(matches!(
        Metadata::parse_area(&area_with(&with_token_payload(&deep))),
        Err(MetadataError::JsonSyntax {
            kind: JsonErrorKind::TooDeep,
            ..
        })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random byte changes in the primary's JSON area, checksum fixed: never a panic, and the
    /// untouched secondary keeps the volume readable.
    #[test]
    fn damaged_json_never_panics(changes in prop::collection::vec((0usize..1200, any::<u8>()), 1..8)) {
        let mut img = good_image();
        for (pos, b) in changes {
            img[4096 + pos] = b;
        }
        fix_checksum(&mut img, 0);
        let r = luks2::read_header(&mut std::io::Cursor::new(&img));
        prop_assert!(r.is_ok());
    }

    /// Random binary header fields: never a panic.
    #[test]
    fn damaged_binary_header_never_panics(changes in prop::collection::vec((0usize..512, any::<u8>()), 1..8), both in any::<bool>()) {
        let mut img = good_image();
        for (pos, b) in changes {
            img[pos] = b;
            if both {
                img[HDR_SIZE as usize + pos] = b;
            }
        }
        let _ = luks2::read_header(&mut std::io::Cursor::new(&img));
    }

    /// Arbitrary bytes as a JSON area: never a panic.
    #[test]
    fn arbitrary_areas_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut area = bytes;
        area.resize(12288, 0);
        let _ = Metadata::parse_area(&area);
    }

    /// JSON-ish text from a small alphabet: never a panic.
    #[test]
    fn jsonish_areas_never_panic(text in "\\{[\\[\\]{}\",:0-9a-z\\\\/* .eE+-]{0,300}") {
        let mut area = text.into_bytes();
        area.resize(12288, 0);
        let _ = Metadata::parse_area(&area);
    }
}
