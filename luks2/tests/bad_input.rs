//! The bad-input table: every hostile or broken input the hardening issue lists, each with the
//! exact error the library must answer, within a time bound (no hang) and without a panic.
//!
//! Images are built programmatically: either from scratch with `header_support` (correct
//! checksums), or from a cryptsetup-made fixture whose JSON is edited in both copies and whose
//! checksums are then recomputed (for rows that need a real keyslot).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::panic
)]

mod header_support;

use header_support::*;
use luks2::error::{AfError, Error};
use luks2::header::{CopyProblem, HeaderError};
use luks2::kdf::{KdfError, KdfLimits};
use luks2::luks1::Luks1Error;
use luks2::metadata::{JsonErrorKind, Location, Metadata, MetadataError};
use luks2::unlock::{unlock, UnlockError, UnlockOptions};
use luks2::volume::{DataSegment, VolumeError};
use serde_json::{json, Value};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every row must answer within this (debug build, busy machine).
const ROW_TIME_LIMIT: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/images")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `hdr_size` of the copy at `at`.
fn hdr_size_at(img: &[u8], at: usize) -> usize {
    u64::from_be_bytes(img[at + 8..at + 16].try_into().unwrap()) as usize
}

/// The JSON text of the primary copy.
fn json_of(img: &[u8]) -> Value {
    let hs = hdr_size_at(img, 0);
    let area = &img[4096..hs];
    let end = area.iter().position(|&b| b == 0).unwrap();
    serde_json::from_slice(&area[..end]).unwrap()
}

/// Replaces the JSON area of both copies with `text` (NUL-padded) and fixes both checksums.
fn put_json_bytes(img: &mut [u8], text: &[u8]) {
    let hs = hdr_size_at(img, 0);
    for at in [0, hs] {
        let area = &mut img[at + 4096..at + hs];
        assert!(text.len() <= area.len(), "JSON too large for the area");
        area.fill(0);
        area[..text.len()].copy_from_slice(text);
        fix_checksum(img, at);
    }
}

/// A fixture with its metadata (both copies) changed by `f`.
fn edited(name: &str, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut img = fixture(name);
    let mut v = json_of(&img);
    f(&mut v);
    put_json_bytes(&mut img, v.to_string().as_bytes());
    img
}

/// A fixture whose JSON text (both copies) is rewritten byte-wise by `f`.
fn edited_bytes(name: &str, f: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let mut img = fixture(name);
    let text = json_of(&img).to_string().into_bytes();
    put_json_bytes(&mut img, &f(text));
    img
}

/// `t` with the first `from` replaced by `to` (which must be there).
fn replace_once(t: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = t
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    [&t[..i], to, &t[i + from.len()..]].concat()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A from-scratch image (16 KiB copies, base metadata changed by `f`, 128 KiB device).
fn built(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    image(&CopySpec::new(with(f)), DEV_SIZE)
}

/// Size of the largest header: hostile JSON gets the biggest area.
const BIG: u64 = 4 << 20;

/// The base metadata laid out for a 4 MiB header (keyslot area after both copies, detached
/// data segment), changed by `f`.
fn big_json(f: impl FnOnce(&mut Value)) -> String {
    with(|v| {
        set(v, "/config/json_size", json!((BIG - 4096).to_string()));
        set(v, "/keyslots/0/area/offset", json!((2 * BIG).to_string()));
        set(v, "/segments/0/offset", json!("0"));
        f(v);
    })
}

/// What a row does with its input.
enum Op {
    /// `read_header`.
    Read(Vec<u8>),
    /// `read_header`, then `unlock` with this passphrase and these limits.
    Unlock(Vec<u8>, &'static [u8], KdfLimits),
    /// `read_header`, then the data segment on a device of the image's size.
    Segment(Vec<u8>),
    /// `Metadata::parse_area`.
    Area(Vec<u8>),
    /// `Metadata::parse` with this `hdr_size`.
    Text(Vec<u8>, u64),
}

fn run(op: Op) -> Result<(), Error> {
    match op {
        Op::Read(img) => luks2::read_header(&mut Cursor::new(&img)).map(drop),
        Op::Unlock(img, pass, limits) => {
            let mut cur = Cursor::new(&img);
            let h = luks2::read_header(&mut cur)?;
            let opts = UnlockOptions {
                keyslot: None,
                limits,
            };
            unlock(&h, &mut cur, pass, &opts).map(drop)
        }
        Op::Segment(img) => {
            let h = luks2::read_header(&mut Cursor::new(&img))?;
            DataSegment::of(&h)?.length_on(img.len() as u64).map(drop)
        }
        Op::Area(area) => Metadata::parse_area(&area).map(drop).map_err(Error::from),
        Op::Text(text, hdr_size) => match std::str::from_utf8(&text) {
            Ok(t) => Metadata::parse(t, hdr_size).map(drop).map_err(Error::from),
            // The &str API cannot even be handed non-UTF-8: go through the area.
            Err(_) => {
                let mut area = text.clone();
                area.resize((hdr_size - 4096) as usize, 0);
                Metadata::parse_area(&area).map(drop).map_err(Error::from)
            }
        },
    }
}

/// Runs `op` on a thread: a panic or a hang fails the row, with its name.
fn run_bounded(name: &str, op: Op) -> Result<(), Error> {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(run(op));
        })
        .unwrap();
    match rx.recv_timeout(ROW_TIME_LIMIT) {
        Ok(r) => {
            let took = start.elapsed();
            assert!(took < ROW_TIME_LIMIT, "{name}: took {took:?}");
            r
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name}: no answer within {ROW_TIME_LIMIT:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{name}: panicked"),
    }
}

const PASS: &[u8] = b"fixture";

fn hdr(e: HeaderError) -> Result<(), Error> {
    Err(Error::Header(e))
}

fn md(e: MetadataError) -> Result<(), Error> {
    Err(Error::Metadata(e))
}

/// Both copies of a from-scratch image fail with the same metadata error.
fn both_md(e: MetadataError) -> Result<(), Error> {
    hdr(HeaderError::NoUsableCopy {
        primary: CopyProblem::Metadata {
            offset: 0,
            error: Box::new(e.clone()),
        },
        secondary: CopyProblem::Metadata {
            offset: HDR_SIZE,
            error: Box::new(e),
        },
    })
}

fn unusable(reason: &str) -> Result<(), Error> {
    Err(Error::Unlock(UnlockError::NoUsableKeyslot(vec![(
        0,
        reason.to_string(),
    )])))
}

fn ks0(v: &mut Value) -> &mut Value {
    &mut v["keyslots"]["0"]
}

fn rows() -> Vec<(&'static str, Op, Result<(), Error>)> {
    let lim = KdfLimits::default;
    let good = good_image();
    let mut r: Vec<(&'static str, Op, Result<(), Error>)> = Vec::new();

    // --- files too short ----------------------------------------------------------------------
    r.push((
        "empty file",
        Op::Read(Vec::new()),
        hdr(HeaderError::NotLuks),
    ));
    r.push((
        "one byte",
        Op::Read(b"L".to_vec()),
        hdr(HeaderError::NotLuks),
    ));
    r.push((
        "binary header only (4 KiB)",
        Op::Read(good[..4096].to_vec()),
        hdr(HeaderError::NoUsableCopy {
            primary: CopyProblem::Truncated { offset: 0 },
            secondary: CopyProblem::NotFound,
        }),
    ));
    r.push((
        "cut inside the primary JSON area",
        Op::Read(good[..10_000].to_vec()),
        hdr(HeaderError::NoUsableCopy {
            primary: CopyProblem::Truncated { offset: 0 },
            secondary: CopyProblem::NotFound,
        }),
    ));
    r.push((
        "cut inside the secondary copy (primary alone is enough, but not for the areas)",
        Op::Read(good[..20_000].to_vec()),
        hdr(HeaderError::DeviceTooSmall {
            size: 20_000,
            required: DATA_OFFSET,
        }),
    ));
    r.push((
        "cut inside the keyslots area",
        Op::Read(good[..60_000].to_vec()),
        hdr(HeaderError::DeviceTooSmall {
            size: 60_000,
            required: DATA_OFFSET,
        }),
    ));
    r.push((
        "file shorter than the data offset (segment at 96 KiB, file 80 KiB)",
        Op::Segment({
            let mut img = built(|v| set(v, "/segments/0/offset", json!("98304")));
            img.truncate(81_920);
            img
        }),
        Err(Error::Volume(VolumeError::DeviceTooSmall {
            device_size: 81_920,
            data_offset: 98_304,
        })),
    ));
    r.push((
        "fixed-size segment running past the end of the file",
        Op::Segment(built(|v| set(v, "/segments/0/size", json!("1048576")))),
        Err(Error::Volume(VolumeError::DeviceTooSmall {
            device_size: DEV_SIZE,
            data_offset: DATA_OFFSET,
        })),
    ));
    r.push((
        "truncated LUKS1 header (300 bytes)",
        Op::Read(fixture("luks1-xts-sha256.img")[..300].to_vec()),
        hdr(HeaderError::Luks1(Luks1Error::Truncated { size: 300 })),
    ));
    r.push((
        "LUKS1 image cut before its last keyslot",
        Op::Read(fixture("luks1-xts-sha256.img")[..100_000].to_vec()),
        hdr(HeaderError::DeviceTooSmall {
            size: 100_000,
            required: 1_049_600,
        }),
    ));

    // --- JSON area framing ----------------------------------------------------------------------
    r.push((
        "zero-length JSON (area all NUL)",
        Op::Read(image(&CopySpec::new(Vec::new()), DEV_SIZE)),
        both_md(MetadataError::JsonAreaNotObject),
    ));
    r.push((
        "zero-length JSON text",
        Op::Text(Vec::new(), HDR_SIZE),
        md(MetadataError::JsonAreaNotObject),
    ));
    r.push((
        "empty JSON area",
        Op::Area(Vec::new()),
        md(MetadataError::BadHeaderSize { hdr_size: 4096 }),
    ));
    r.push((
        "JSON area without NUL (text padded with spaces to the end)",
        Op::Read({
            let mut t = base_json().into_bytes();
            t.resize((HDR_SIZE - 4096) as usize, b' ');
            image(&CopySpec::new(t), DEV_SIZE)
        }),
        both_md(MetadataError::JsonNotTerminated {
            area_size: HDR_SIZE - 4096,
        }),
    ));
    r.push((
        "JSON text exactly filling the area (no room for the NUL)",
        Op::Text(
            {
                let mut t = base_json().into_bytes();
                t.resize((HDR_SIZE - 4096) as usize, b' ');
                t
            },
            HDR_SIZE,
        ),
        md(MetadataError::JsonNotTerminated {
            area_size: HDR_SIZE - 4096,
        }),
    ));
    r.push((
        "bytes after the NUL",
        Op::Area({
            let mut t = base_json().into_bytes();
            t.resize((HDR_SIZE - 4096) as usize, 0);
            let n = t.len();
            t[n - 1] = b'x';
            t
        }),
        md(MetadataError::JsonTrailingBytes {
            offset: HDR_SIZE - 4096 - 1,
        }),
    ));

    // --- hdr_size -------------------------------------------------------------------------------
    let mut huge = good.clone();
    // The size is checked before the checksum: no checksum to fix.
    put_u64(&mut huge, 8, u64::MAX);
    put_u64(&mut huge, HDR_SIZE as usize + 8, u64::MAX);
    r.push((
        "hdr_size 2^64-1 in both copies",
        Op::Read(huge),
        hdr(HeaderError::NoUsableCopy {
            primary: CopyProblem::BadSize {
                offset: 0,
                hdr_size: u64::MAX,
            },
            secondary: CopyProblem::BadSize {
                offset: HDR_SIZE,
                hdr_size: u64::MAX,
            },
        }),
    ));
    let mut eight = good.clone();
    put_u64(&mut eight, 8, 8 << 20);
    r.push((
        "hdr_size 8 MiB in the primary (secondary used)",
        Op::Read(eight),
        Ok(()),
    ));
    r.push((
        "hdr_size 4 MiB on a 128 KiB file",
        Op::Read({
            let mut img = good.clone();
            put_u64(&mut img, 8, 4 << 20);
            img[HDR_SIZE as usize..].fill(0);
            img
        }),
        hdr(HeaderError::NoUsableCopy {
            primary: CopyProblem::Truncated { offset: 0 },
            secondary: CopyProblem::NotFound,
        }),
    ));
    r.push((
        "json_size disagreeing with hdr_size",
        Op::Read(built(|v| {
            set(v, "/config/json_size", json!("28672"));
            set(v, "/keyslots/0/area/offset", json!("65536"));
            set(v, "/segments/0/offset", json!("131072"));
        })),
        both_md(MetadataError::JsonSizeMismatch {
            config: 28672,
            header: HDR_SIZE - 4096,
        }),
    ));

    // --- hostile JSON shapes --------------------------------------------------------------------
    let big_area = |text: &[u8]| {
        let mut a = text.to_vec();
        a.resize((BIG - 4096) as usize, 0);
        a
    };
    r.push((
        "nesting 1 million deep",
        Op::Area(big_area(
            format!("{{\"a\":{}", "[".repeat(1_000_000)).as_bytes(),
        )),
        // json-c's depth limit: the root object and 31 arrays; the 32nd '[' is refused.
        md(MetadataError::JsonSyntax {
            offset: 5 + 31,
            kind: JsonErrorKind::TooDeep,
        }),
    ));
    r.push((
        "huge array (1.3 million elements) in a token",
        Op::Area(big_area(
            big_json(|v| set(v, "/tokens/0", json!({"type":"t","keyslots":[]})))
                .replacen(
                    "\"keyslots\":[]",
                    &format!("\"keyslots\":[],\"x\":[{}0]", "0,".repeat(1_300_000)),
                    1,
                )
                .as_bytes(),
        )),
        Ok(()),
    ));
    r.push((
        "digest listing keyslot 0 a million times",
        Op::Area(big_area(
            big_json(|v| set(v, "/digests/0/keyslots", Value::from(vec!["0"; 1_000_000])))
                .as_bytes(),
        )),
        Ok(()),
    ));
    r.push((
        "keyslot 0 and 200 000 more keyslots that are not objects",
        Op::Area(big_area(
            big_json(|v| {
                for i in 1..200_000 {
                    v["keyslots"][i.to_string()] = json!(1);
                }
            })
            .as_bytes(),
        )),
        md(MetadataError::NotAnObject {
            at: Location::Keyslot(1),
            found: luks2::metadata::JsonType::Int,
        }),
    ));
    r.push((
        "non-UTF-8 byte outside strings",
        Op::Text(
            base_json()
                .replacen("\"tokens\":{}", "\"tokens\":#{}", 1)
                .replace('#', "\u{1}")
                .into_bytes()
                .into_iter()
                .map(|b| if b == 1 { 0xff } else { b })
                .collect(),
            HDR_SIZE,
        ),
        md(MetadataError::JsonSyntax {
            offset: base_json().find("\"tokens\"").unwrap() as u64 + 9,
            kind: JsonErrorKind::Unexpected,
        }),
    ));
    r.push((
        "non-UTF-8 bytes in the keyslot cipher name",
        Op::Unlock(
            edited_bytes("pbkdf2-sha256.img", |t| {
                replace_once(t, b"\"encryption\":\"aes-xts-plain64\"", b"\"encryption\":\"aes-\xff\xfe-plain64\"")
            }),
            PASS,
            lim(),
        ),
        unusable("unsupported cipher mode \"\u{fffd}\u{fffd}\" in \"aes-\u{fffd}\u{fffd}-plain64\": only xts, lrw, cbc and ecb are implemented"),
    ));
    r.push((
        "non-UTF-8 bytes in a token (loads, as in cryptsetup)",
        Op::Read(edited_bytes("pbkdf2-sha256.img", |t| {
            replace_once(
                t,
                b"\"tokens\":{}",
                b"\"tokens\":{\"0\":{\"type\":\"\xc3\x28\",\"keyslots\":[]}}",
            )
        })),
        Ok(()),
    ));

    // --- 64-bit overflow, areas outside the file or overlapping --------------------------------
    r.push((
        "keyslot area offset + size overflows",
        Op::Read(built(|v| {
            set(v, "/keyslots/0/area/offset", json!("18446744073709547520"))
        })),
        both_md(MetadataError::AreaEndOverflow { keyslot: 0 }),
    ));
    r.push((
        // cryptsetup checks offset + size for overflow only with two or more segments; the
        // header loads and the data segment is refused against the device.
        "segment offset + size overflows",
        Op::Segment(built(|v| {
            set(v, "/segments/0/offset", json!("18446744073709551104"));
            set(v, "/segments/0/size", json!("4096"));
        })),
        Err(Error::Volume(VolumeError::DeviceTooSmall {
            device_size: DEV_SIZE,
            data_offset: 18_446_744_073_709_551_104,
        })),
    ));
    r.push((
        "two segments, the first one's end overflowing",
        Op::Read(built(|v| {
            set(v, "/segments/0/offset", json!("18446744073709551104"));
            set(v, "/segments/0/size", json!("4096"));
            let mut s1 = v["segments"]["0"].clone();
            s1["offset"] = json!("69632");
            s1["size"] = json!("dynamic");
            v["segments"]["1"] = s1;
            v["digests"]["0"]["segments"] = json!(["0", "1"]);
        })),
        both_md(MetadataError::SegmentEndOverflow { segment: 0 }),
    ));
    r.push((
        "segment offset past 2^64",
        Op::Read(built(|v| {
            set(v, "/segments/0/offset", json!("18446744073709551616"))
        })),
        both_md(MetadataError::NumberOutOfRange {
            at: Location::Segment(0),
            field: "offset",
            value: "18446744073709551616".into(),
        }),
    ));
    r.push((
        "keyslots_size 2^64-4096",
        Op::Read(built(|v| {
            set(v, "/config/keyslots_size", json!("18446744073709547520"))
        })),
        both_md(MetadataError::BadKeyslotsSize {
            size: 18_446_744_073_709_547_520,
        }),
    ));
    r.push((
        "keyslot area outside the keyslots area",
        Op::Read(built(|v| set(v, "/keyslots/0/area/offset", json!("65536")))),
        both_md(MetadataError::AreaBeyondKeyslotsArea {
            keyslot: 0,
            end: 69_632,
            limit: DATA_OFFSET,
        }),
    ));
    r.push((
        "keyslot area inside the metadata",
        Op::Read(built(|v| set(v, "/keyslots/0/area/offset", json!("4096")))),
        both_md(MetadataError::AreaInsideMetadata {
            keyslot: 0,
            offset: 4096,
            minimum: 2 * HDR_SIZE,
        }),
    ));
    r.push((
        "overlapping keyslot areas",
        Op::Read(built(|v| {
            let k = v["keyslots"]["0"].clone();
            v["keyslots"]["1"] = k;
            v["keyslots"]["1"]["area"]["offset"] = json!("34816");
            v["digests"]["0"]["keyslots"] = json!(["0", "1"]);
        })),
        both_md(MetadataError::AreasOverlap {
            first: 0,
            second: 1,
        }),
    ));
    r.push((
        "segment starting inside the keyslots area",
        Op::Read(built(|v| set(v, "/segments/0/offset", json!("49152")))),
        both_md(MetadataError::KeyslotsAreaTooLarge {
            keyslots_size: KEYSLOTS_SIZE,
            data_offset: 49_152,
            area_start: 2 * HDR_SIZE,
        }),
    ));

    // --- keyslot parameters (on a real cryptsetup keyslot) ----------------------------------
    r.push((
        "af.stripes 1000 (cryptsetup ignores it: still opens)",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                ks0(v)["af"]["stripes"] = json!(1000)
            }),
            PASS,
            lim(),
        ),
        Ok(()),
    ));
    r.push((
        "af.stripes 0 (still opens)",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| ks0(v)["af"]["stripes"] = json!(0)),
            PASS,
            lim(),
        ),
        Ok(()),
    ));
    r.push((
        "LUKS1 keyslot with 3999 stripes",
        Op::Read({
            let mut img = fixture("luks1-xts-sha256.img");
            img[208 + 44..208 + 48].copy_from_slice(&3999u32.to_be_bytes());
            img
        }),
        hdr(HeaderError::Luks1(Luks1Error::InvalidStripes {
            keyslot: 0,
            stripes: 3999,
        })),
    ));
    r.push((
        "key_size 0",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| ks0(v)["key_size"] = json!(0)),
            PASS,
            lim(),
        ),
        unusable("key_size is 0"),
    ));
    r.push((
        "key_size 2^31-1",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                ks0(v)["key_size"] = json!(i32::MAX)
            }),
            PASS,
            lim(),
        ),
        // cryptsetup: "Not enough available memory to open a keyslot" (exit 3).
        Err(Error::Unlock(UnlockError::KeyTooLarge {
            keyslot: 0,
            key_size: 2_147_483_647,
            limit_bytes: 4 << 30,
        })),
    ));
    r.push((
        "area key_size 0",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                ks0(v)["area"]["key_size"] = json!(0)
            }),
            PASS,
            lim(),
        ),
        unusable("cipher \"aes-xts-plain64\" cannot use a 0-byte key (expected 32, 48, 64)"),
    ));
    r.push((
        "area key_size 2^31-1",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                ks0(v)["area"]["key_size"] = json!(i32::MAX)
            }),
            PASS,
            lim(),
        ),
        unusable(
            "cipher \"aes-xts-plain64\" cannot use a 2147483647-byte key (expected 32, 48, 64)",
        ),
    ));
    r.push((
        "kdf salt of 16 bytes",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                ks0(v)["kdf"]["salt"] = json!("AAECAwQFBgcICQoLDA0ODw==")
            }),
            PASS,
            lim(),
        ),
        unusable("kdf.salt is 16 bytes, not 32"),
    ));
    r.push((
        "digest salt of 64 bytes",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                v["digests"]["0"]["salt"] = json!(b64(&[7u8; 64]))
            }),
            PASS,
            lim(),
        ),
        unusable("salt is 64 bytes, not 32"),
    ));
    r.push((
        "zero PBKDF2 iterations in the keyslot",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                ks0(v)["kdf"]["iterations"] = json!(0)
            }),
            PASS,
            lim(),
        ),
        unusable("invalid kdf parameter iterations = 0: must be at least 1"),
    ));
    r.push((
        "zero PBKDF2 iterations in the digest",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                v["digests"]["0"]["iterations"] = json!(0)
            }),
            PASS,
            lim(),
        ),
        unusable("digest 0: invalid kdf parameter iterations = 0: must be at least 1"),
    ));
    r.push((
        "PBKDF2 iterations 2^32 (wraps to 0 as in cryptsetup)",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                v["digests"]["0"]["iterations"] = json!(1u64 << 32)
            }),
            PASS,
            lim(),
        ),
        unusable("digest 0: invalid kdf parameter iterations = 0: must be at least 1"),
    ));
    r.push((
        "PBKDF2 iterations over the caller's limit",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |_| {}),
            PASS,
            KdfLimits {
                max_pbkdf2_iterations: 999,
                ..KdfLimits::default()
            },
        ),
        Err(Error::Unlock(UnlockError::KdfOverLimit {
            keyslot: 0,
            error: KdfError::IterationsOverLimit {
                iterations: 1000,
                limit: 999,
            },
        })),
    ));
    r.push((
        "Argon2 memory 0",
        Op::Unlock(
            edited("argon2id.img", |v| ks0(v)["kdf"]["memory"] = json!(0)),
            PASS,
            lim(),
        ),
        unusable("invalid kdf parameter memory = 0: argon2 needs at least 8 KiB per lane (cpus)"),
    ));
    r.push((
        "Argon2 memory 4 TiB",
        Op::Unlock(
            edited("argon2id.img", |v| {
                ks0(v)["kdf"]["memory"] = json!(4u64 << 30)
            }),
            PASS,
            lim(),
        ),
        Err(Error::Unlock(UnlockError::KdfOverLimit {
            keyslot: 0,
            // json_object_get_int clamps to INT32_MAX, as cryptsetup reads it.
            error: KdfError::MemoryOverLimit {
                required_kib: i32::MAX as u64,
                limit_kib: 4 << 20,
            },
        })),
    ));
    r.push((
        "Argon2 time 0",
        Op::Unlock(
            edited("argon2id.img", |v| ks0(v)["kdf"]["time"] = json!(0)),
            PASS,
            lim(),
        ),
        unusable("invalid kdf parameter time = 0: must be at least 1"),
    ));
    r.push((
        "Argon2 time 2^31-1",
        Op::Unlock(
            edited("argon2id.img", |v| ks0(v)["kdf"]["time"] = json!(i32::MAX)),
            PASS,
            lim(),
        ),
        Err(Error::Unlock(UnlockError::KdfOverLimit {
            keyslot: 0,
            error: KdfError::TimeOverLimit {
                time: i32::MAX as u32,
                limit: 1000,
            },
        })),
    ));
    r.push((
        "Argon2 cpus 0",
        Op::Unlock(
            edited("argon2id.img", |v| ks0(v)["kdf"]["cpus"] = json!(0)),
            PASS,
            lim(),
        ),
        unusable("invalid kdf parameter cpus = 0: must be at least 1"),
    ));
    r.push((
        "Argon2 cpus 2^24",
        Op::Unlock(
            edited("argon2id.img", |v| ks0(v)["kdf"]["cpus"] = json!(1 << 24)),
            PASS,
            lim(),
        ),
        unusable("invalid kdf parameter cpus = 16777216: argon2 allows at most 16777215 lanes"),
    ));
    r.push((
        "Argon2 salt of 4 bytes",
        Op::Unlock(
            edited("argon2id.img", |v| {
                ks0(v)["kdf"]["salt"] = json!("AAECAw==")
            }),
            PASS,
            lim(),
        ),
        unusable("kdf.salt is 4 bytes, not 32"),
    ));

    // --- unknown names --------------------------------------------------------------------------
    r.push((
        "unknown keyslot PBKDF2 hash",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                ks0(v)["kdf"]["hash"] = json!("md5")
            }),
            PASS,
            lim(),
        ),
        unusable("unsupported PBKDF2 hash 'md5'"),
    ));
    r.push((
        "unknown AF hash",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                ks0(v)["af"]["hash"] = json!("blake9")
            }),
            PASS,
            lim(),
        ),
        unusable("unsupported AF hash 'blake9'"),
    ));
    r.push((
        "unknown digest hash",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                v["digests"]["0"]["hash"] = json!("")
            }),
            PASS,
            lim(),
        ),
        unusable("unsupported digest hash ''"),
    ));
    r.push((
        "unknown keyslot cipher",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                ks0(v)["area"]["encryption"] = json!("rot13-ecb")
            }),
            PASS,
            lim(),
        ),
        unusable("unsupported cipher \"rot13-ecb\": only aes, serpent, twofish and camellia (xts, lrw, cbc, ecb) are implemented"),
    ));
    r.push((
        "unknown segment cipher",
        Op::Segment(edited("pbkdf2-sha256.img", |v| {
            v["segments"]["0"]["encryption"] = json!("blowfish-xts-plain64")
        })),
        Err(Error::Cipher(luks2::error::CipherError::UnsupportedCipher(
            "blowfish-xts-plain64".into(),
        ))),
    ));
    r.push((
        "unknown KDF type",
        Op::Unlock(
            edited("pbkdf2-sha256.img", |v| {
                ks0(v)["kdf"]["type"] = json!("scrypt")
            }),
            PASS,
            lim(),
        ),
        unusable("kdf type \"scrypt\" is not supported"),
    ));
    r.push((
        "unknown checksum algorithm in both binary headers",
        Op::Read({
            let mut img = good.clone();
            for at in [0usize, HDR_SIZE as usize] {
                img[at + 72..at + 104].fill(0);
                img[at + 72..at + 75].copy_from_slice(b"md5");
            }
            img
        }),
        hdr(HeaderError::NoUsableCopy {
            primary: CopyProblem::UnknownChecksumAlg {
                offset: 0,
                name: "md5".into(),
            },
            secondary: CopyProblem::UnknownChecksumAlg {
                offset: HDR_SIZE,
                name: "md5".into(),
            },
        }),
    ));
    r.push((
        "unknown LUKS1 hash",
        Op::Read({
            let mut img = fixture("luks1-xts-sha256.img");
            img[72..104].fill(0);
            img[72..75].copy_from_slice(b"md4");
            img
        }),
        hdr(HeaderError::Luks1(Luks1Error::UnsupportedHash {
            hash: "md4".into(),
        })),
    ));
    r.push((
        "LUKS version 3",
        Op::Read({
            let mut img = good.clone();
            put_u16(&mut img, 6, 3);
            img
        }),
        hdr(HeaderError::UnsupportedVersion { version: 3 }),
    ));
    r
}

#[test]
fn bad_input_table() {
    let rows = rows();
    let n = rows.len();
    let mut failures = Vec::new();
    for (name, op, expect) in rows {
        let got = run_bounded(name, op);
        if got != expect {
            failures.push(format!("{name}:\n   got {got:?}\n  want {expect:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} rows differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{n} bad-input rows pass");
}

/// A wrong passphrase on a real fixture is WrongPassphrase, never a corrupt-header error.
#[test]
fn wrong_passphrase_is_its_own_error() {
    let got = run_bounded(
        "wrong passphrase",
        Op::Unlock(
            fixture("pbkdf2-sha256.img"),
            b"not it",
            KdfLimits::default(),
        ),
    );
    assert_eq!(got, Err(Error::Unlock(UnlockError::WrongPassphrase)));
}

/// AF merge refuses zero stripes and short input with typed errors (it is public API).
#[test]
fn af_merge_refuses_bad_sizes() {
    let h = luks2::hash::HashAlg::from_name("sha256").unwrap();
    let mut out = [0u8; 32];
    assert_eq!(
        luks2::af::merge(h, &[0u8; 64], 32, 0, &mut out),
        Err(AfError::StripesZero)
    );
    assert_eq!(
        luks2::af::merge(h, &[0u8; 64], 32, 4000, &mut out),
        Err(AfError::SourceTooShort {
            needed: 128_000,
            got: 64
        })
    );
    assert!(matches!(
        luks2::af::merge(h, &[], usize::MAX, 4000, &mut []),
        Err(AfError::OutputSize { .. })
    ));
}
