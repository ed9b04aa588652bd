//! LUKS2 binary header reading: both copies, copy selection, secondary scan, and one broken
//! binary-header rule at a time (checksum fixed afterwards so that only the rule is tested).
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod header_support;

use header_support::*;
use luks2::error::Error;
use luks2::header::{CopyProblem, Header, HeaderCopy, HeaderError, Luks2Header};
use luks2::metadata::{JsonErrorKind, MetadataError, Priority, SegmentSize};
use std::io::Cursor;

fn read(img: &[u8]) -> Result<Header, Error> {
    luks2::read_header(&mut Cursor::new(img))
}

fn read2(img: &[u8]) -> Luks2Header {
    match read(img) {
        Ok(Header::Luks2(h)) => *h,
        other => panic!("expected a LUKS2 header, got {other:?}"),
    }
}

fn header_err(img: &[u8]) -> HeaderError {
    match read(img) {
        Err(Error::Header(e)) => e,
        other => panic!("expected a header error, got {other:?}"),
    }
}

const SECONDARY: usize = HDR_SIZE as usize;

#[test]
fn good_image_uses_primary() {
    let h = read2(&good_image());
    assert_eq!(h.used_copy, HeaderCopy::Primary);
    assert_eq!(h.other_copy, None);
    assert_eq!(h.other_copy_problem, None);
    assert_eq!(h.json_text, base_json());
    assert_eq!(h.binary.version, 2);
    assert_eq!(h.binary.hdr_size, HDR_SIZE);
    assert_eq!(h.binary.seqid, 1);
    assert_eq!(h.binary.uuid, UUID);
    assert_eq!(h.binary.checksum_alg, "sha256");
    assert_eq!(h.binary.hdr_offset, 0);
    assert_eq!(h.binary.salt, [0x11; 64]);
    let m = &h.metadata;
    assert_eq!(m.config.json_size, 12288);
    assert_eq!(m.config.keyslots_size, KEYSLOTS_SIZE);
    let ks = &m.keyslots[&0];
    assert_eq!(ks.type_name, "luks2");
    assert_eq!(ks.key_size, 64);
    assert_eq!(ks.priority, Priority::Normal);
    assert_eq!(ks.defect, None);
    let area = ks.area.as_ref().unwrap();
    assert_eq!((area.offset, area.size, area.key_size), (32768, 4096, 64));
    assert_eq!(area.encryption, "aes-xts-plain64");
    match ks.kdf.as_ref().unwrap() {
        luks2::metadata::KeyslotKdf::Pbkdf2 {
            hash,
            iterations,
            salt,
        } => {
            assert_eq!(hash, "sha256");
            assert_eq!(*iterations, 1000);
            assert_eq!(salt, &(0u8..32).collect::<Vec<_>>());
        }
        other => panic!("{other:?}"),
    }
    let af = ks.af.as_ref().unwrap();
    assert_eq!(
        (af.type_name.as_str(), af.stripes, af.hash.as_str()),
        ("luks1", 4000, "sha256")
    );
    let (sid, seg) = m.data_segment().unwrap();
    assert_eq!(sid, 0);
    assert_eq!(m.default_segment().unwrap().0, 0);
    assert_eq!(seg.offset, DATA_OFFSET);
    assert_eq!(seg.size, SegmentSize::Dynamic);
    assert_eq!(seg.sector_size, 512);
    assert_eq!(seg.encryption, "aes-xts-plain64");
    let (did, dg) = m.digest_for_keyslot(0).unwrap();
    assert_eq!(did, 0);
    assert_eq!(m.digest_for_segment(0).unwrap().0, 0);
    assert_eq!(dg.salt, (100u8..132).collect::<Vec<_>>());
    assert_eq!(dg.digest, (200u8..232).collect::<Vec<_>>());
    assert_eq!(dg.iterations, 1000);
    assert_eq!(dg.defect, None);
    assert_eq!(m.keyslot_order, vec![0]);
    assert!(m.digest_for_keyslot(1).is_none());
}

#[test]
fn real_cryptsetup_header_loads() {
    let img = cryptsetup_luks2::image();
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Primary);
    assert_eq!(h.other_copy, None);
    assert_eq!(h.binary.seqid, 3);
    assert_eq!(h.binary.label, "tazpod-test");
    assert_eq!(h.binary.subsystem, "sub");
    assert_eq!(h.binary.uuid, "0b5c3e1a-8d2f-4c6b-9a7e-1f2d3c4b5a69");
    assert_eq!(h.json_text, cryptsetup_luks2::JSON);
    let m = &h.metadata;
    assert_eq!(m.config.keyslots_size, 1 << 20);
    assert_eq!(m.keyslots[&0].area.as_ref().unwrap().size, 258048);
    assert_eq!(m.segments[&0].sector_size, 4096);
    assert_eq!(m.segments[&0].offset, 2 << 20);
    // The secondary alone (primary wiped) is found and used.
    let mut img2 = img.clone();
    img2[..4096].fill(0);
    let h2 = read2(&img2);
    assert_eq!(h2.used_copy, HeaderCopy::Secondary);
    assert_eq!(h2.other_copy, Some(CopyProblem::BadMagic { offset: 0 }));
    assert_eq!(h2.metadata, h.metadata);
    assert_eq!(h2.binary.hdr_offset, 16384);
}

#[test]
fn broken_primary_checksum_falls_back_to_secondary() {
    let mut img = good_image();
    img[4096 + 10] ^= 1;
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Secondary);
    assert_eq!(
        h.other_copy,
        Some(CopyProblem::ChecksumMismatch {
            offset: 0,
            alg: "sha256".into()
        })
    );
    assert!(h.other_copy_problem.unwrap().contains("checksum"));
}

#[test]
fn broken_secondary_is_reported() {
    let mut img = good_image();
    img[SECONDARY + 5000] = b'x';
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Primary);
    assert_eq!(
        h.other_copy,
        Some(CopyProblem::ChecksumMismatch {
            offset: HDR_SIZE,
            alg: "sha256".into()
        })
    );
}

#[test]
fn higher_seqid_wins() {
    let spec = CopySpec::new(base_json());
    let newer = CopySpec {
        seqid: 7,
        ..spec.clone()
    };
    let mut img = vec![0u8; DEV_SIZE as usize];
    write_copy(&mut img, 0, false, &spec);
    write_copy(&mut img, HDR_SIZE, true, &newer);
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Secondary);
    assert_eq!(h.binary.seqid, 7);
    assert_eq!(
        h.other_copy,
        Some(CopyProblem::Stale {
            offset: 0,
            seqid: 1,
            used_seqid: 7
        })
    );

    let mut img = vec![0u8; DEV_SIZE as usize];
    write_copy(&mut img, 0, false, &newer);
    write_copy(&mut img, HDR_SIZE, true, &spec);
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Primary);
    assert_eq!(
        h.other_copy,
        Some(CopyProblem::Stale {
            offset: HDR_SIZE,
            seqid: 1,
            used_seqid: 7
        })
    );
}

#[test]
fn equal_seqid_uses_primary_without_comparing_contents() {
    let mut v = base_value();
    set(&mut v, "/keyslots/0/priority", serde_json::json!(2));
    let mut img = good_image();
    write_copy(&mut img, HDR_SIZE, true, &CopySpec::new(v.to_string()));
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Primary);
    assert_eq!(h.other_copy, None);
    assert_eq!(h.metadata.keyslots[&0].priority, Priority::Normal);
}

#[test]
fn invalid_primary_metadata_uses_secondary() {
    let mut img = good_image();
    let bad = with(|v| del(v, "/config"));
    img[4096..4096 + 12288].fill(0);
    img[4096..4096 + bad.len()].copy_from_slice(bad.as_bytes());
    fix_checksum(&mut img, 0);
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Secondary);
    assert_eq!(
        h.other_copy,
        Some(CopyProblem::Metadata {
            offset: 0,
            error: Box::new(MetadataError::MissingField {
                at: luks2::metadata::Location::Root,
                field: "config"
            })
        })
    );
}

#[test]
fn trailing_bytes_in_json_area_make_a_copy_unusable() {
    let mut img = good_image();
    img[4096 + 12287] = 1;
    fix_checksum(&mut img, 0);
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Secondary);
    assert_eq!(
        h.other_copy,
        Some(CopyProblem::Metadata {
            offset: 0,
            error: Box::new(MetadataError::JsonTrailingBytes { offset: 12287 })
        })
    );
}

#[test]
fn no_terminating_nul_makes_a_copy_unusable() {
    // A JSON text that fills the area up to its last byte, padded with spaces.
    let mut text = base_json().into_bytes();
    text.resize(12288 - 1, b' ');
    text.push(b' ');
    let mut img = good_image();
    img[4096..4096 + 12288].copy_from_slice(&text);
    fix_checksum(&mut img, 0);
    let h = read2(&img);
    assert_eq!(
        h.other_copy,
        Some(CopyProblem::Metadata {
            offset: 0,
            error: Box::new(MetadataError::JsonNotTerminated { area_size: 12288 })
        })
    );
}

/// Changes the primary with `f`, fixes its checksum, and returns the problem reported for it.
fn primary_problem(f: impl FnOnce(&mut Vec<u8>)) -> CopyProblem {
    let mut img = good_image();
    f(&mut img);
    fix_checksum(&mut img, 0);
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Secondary);
    h.other_copy.unwrap()
}

/// Changes the secondary with `f`, fixes its checksum, and returns the problem reported for it.
fn secondary_problem(f: impl FnOnce(&mut Vec<u8>)) -> CopyProblem {
    let mut img = good_image();
    f(&mut img);
    fix_checksum(&mut img, SECONDARY);
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Primary);
    h.other_copy.unwrap()
}

#[test]
fn binary_header_rules_one_at_a_time() {
    assert_eq!(
        primary_problem(|i| put_u64(i, 256, 4096)),
        CopyProblem::WrongOffset {
            offset: 0,
            stored: 4096
        }
    );
    assert_eq!(
        primary_problem(|i| put_u64(i, 8, 8192)),
        CopyProblem::BadSize {
            offset: 0,
            hdr_size: 8192
        }
    );
    assert_eq!(
        secondary_problem(|i| put_u16(i, SECONDARY + 6, 1)),
        CopyProblem::UnsupportedVersion {
            offset: HDR_SIZE,
            version: 1
        }
    );
    assert_eq!(
        secondary_problem(|i| i[SECONDARY..SECONDARY + 6].copy_from_slice(b"LUKS\xba\xbe")),
        CopyProblem::BadMagic { offset: HDR_SIZE }
    );
    assert_eq!(
        secondary_problem(|i| put_u64(i, SECONDARY + 256, 0)),
        CopyProblem::WrongOffset {
            offset: HDR_SIZE,
            stored: 0
        }
    );
    // A secondary copy whose size is not its offset.
    assert_eq!(
        secondary_problem(|i| put_u64(i, SECONDARY + 8, 32768)),
        CopyProblem::SizeMismatch {
            offset: HDR_SIZE,
            hdr_size: 32768
        }
    );
    // An unknown checksum algorithm (nothing to fix: the name alone decides).
    let mut img = good_image();
    img[SECONDARY + 72..SECONDARY + 104].fill(0);
    img[SECONDARY + 72..SECONDARY + 77].copy_from_slice(b"crc32");
    assert_eq!(
        read2(&img).other_copy,
        Some(CopyProblem::UnknownChecksumAlg {
            offset: HDR_SIZE,
            name: "crc32".into()
        })
    );
    // A name filling all 32 bytes has no terminating NUL: refused.
    let mut img = good_image();
    img[SECONDARY + 72..SECONDARY + 104].fill(b'a');
    assert!(matches!(
        read2(&img).other_copy,
        Some(CopyProblem::UnknownChecksumAlg { .. })
    ));
}

#[test]
fn version_field_at_offset_zero_selects_the_format() {
    // Version 3 with the LUKS magic: refused outright, as cryptsetup does.
    let mut img = good_image();
    put_u16(&mut img, 6, 3);
    assert_eq!(
        header_err(&img),
        HeaderError::UnsupportedVersion { version: 3 }
    );
    // Version 0 takes the LUKS2 path: the primary is unusable, the secondary is used.
    let mut img = good_image();
    put_u16(&mut img, 6, 0);
    fix_checksum(&mut img, 0);
    let h = read2(&img);
    assert_eq!(
        h.other_copy,
        Some(CopyProblem::UnsupportedVersion {
            offset: 0,
            version: 0
        })
    );
}

#[test]
fn secondary_is_scanned_at_allowed_offsets() {
    // A 64 KiB header whose primary is wiped: the secondary is found at 64 KiB.
    let v = with(|v| {
        set(v, "/config/json_size", serde_json::json!("61440"));
        set(v, "/keyslots/0/area/offset", serde_json::json!("131072"));
        set(v, "/segments/0/offset", serde_json::json!("196608"));
    });
    let spec = CopySpec {
        hdr_size: 65536,
        ..CopySpec::new(v)
    };
    let mut img = image(&spec, 262144);
    img[..4096].fill(0);
    let h = read2(&img);
    assert_eq!(h.used_copy, HeaderCopy::Secondary);
    assert_eq!(h.binary.hdr_offset, 65536);
    assert_eq!(h.metadata.config.json_size, 61440);
}

#[test]
fn scan_stops_at_first_checksummed_copy() {
    // Primary wiped; a valid-checksum secondary with broken metadata at 16 KiB hides a good one
    // at 32 KiB, as in cryptsetup.
    let bad = with(|v| del(v, "/tokens"));
    let mut img = good_image();
    img[..4096].fill(0);
    write_copy(&mut img, HDR_SIZE, true, &CopySpec::new(bad));
    let e = header_err(&img);
    assert_eq!(
        e,
        HeaderError::NoUsableCopy {
            primary: CopyProblem::BadMagic { offset: 0 },
            secondary: CopyProblem::Metadata {
                offset: HDR_SIZE,
                error: Box::new(MetadataError::MissingField {
                    at: luks2::metadata::Location::Root,
                    field: "tokens"
                })
            }
        }
    );
    assert!(e.to_string().contains("primary"));
}

#[test]
fn secondary_read_where_a_checksummed_primary_says() {
    // Primary checksum right but metadata invalid, hdr_size 16 KiB; a good secondary exists
    // only at 32 KiB. cryptsetup looks at 16 KiB only, and so do we.
    let bad = with(|v| del(v, "/tokens"));
    let mut img = vec![0u8; 262144];
    write_copy(&mut img, 0, false, &CopySpec::new(bad));
    let good32 = with(|v| {
        set(v, "/config/json_size", serde_json::json!("28672"));
        set(v, "/keyslots/0/area/offset", serde_json::json!("65536"));
        set(v, "/segments/0/offset", serde_json::json!("131072"));
    });
    write_copy(
        &mut img,
        32768,
        true,
        &CopySpec {
            hdr_size: 32768,
            ..CopySpec::new(good32)
        },
    );
    match header_err(&img) {
        HeaderError::NoUsableCopy { secondary, .. } => {
            assert_eq!(secondary, CopyProblem::BadMagic { offset: HDR_SIZE })
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn not_luks() {
    assert_eq!(header_err(&[]), HeaderError::NotLuks);
    assert_eq!(header_err(&[0u8; 100]), HeaderError::NotLuks);
    assert_eq!(header_err(&vec![0u8; 1 << 20]), HeaderError::NotLuks);
    assert!(HeaderError::NotLuks
        .to_string()
        .contains("not a LUKS device"));
}

#[test]
fn short_sources_never_panic() {
    let img = good_image();
    for len in [
        0, 5, 6, 8, 100, 4095, 4096, 4097, 16383, 16384, 20000, 32767, 32768, 65535,
    ] {
        let r = read(&img[..len]);
        assert!(r.is_err(), "len {len}");
    }
    // With the LUKS magic but too short: both copies cut off.
    assert_eq!(
        header_err(&img[..100]),
        HeaderError::NoUsableCopy {
            primary: CopyProblem::Truncated { offset: 0 },
            secondary: CopyProblem::NotFound
        }
    );
}

#[test]
fn device_must_hold_metadata_and_keyslots() {
    let img = good_image();
    let required = 2 * HDR_SIZE + KEYSLOTS_SIZE;
    assert!(read(&img[..required as usize]).is_ok());
    assert_eq!(
        header_err(&img[..required as usize - 1]),
        HeaderError::DeviceTooSmall {
            size: required - 1,
            required
        }
    );
}

#[test]
fn other_checksum_algorithms() {
    for alg in ["sha1", "sha512", "whirlpool"] {
        let spec = CopySpec {
            alg,
            ..CopySpec::new(base_json())
        };
        let h = read2(&image(&spec, DEV_SIZE));
        assert_eq!(h.binary.checksum_alg, alg);
        assert_eq!(h.other_copy, None, "{alg}");
    }
    // Only the hash length is compared: bytes after it in the csum field are ignored.
    let spec = CopySpec {
        alg: "sha1",
        ..CopySpec::new(base_json())
    };
    let mut img = image(&spec, DEV_SIZE);
    img[448 + 20] = 0xff;
    assert_eq!(read2(&img).other_copy, None);
}

#[test]
fn label_and_subsystem_are_c_strings() {
    let spec = CopySpec {
        label: "my volume",
        ..CopySpec::new(base_json())
    };
    let mut img = image(&spec, DEV_SIZE);
    img[24 + 47] = b'Z'; // the last byte is never part of the label
    img[208..208 + 48].fill(b'q');
    fix_checksum(&mut img, 0);
    let h = read2(&img);
    assert_eq!(h.binary.label, "my volume");
    assert_eq!(h.binary.subsystem, "q".repeat(47));
}

#[test]
fn syntax_error_offsets_are_reported() {
    let text = base_json().replacen("\"tokens\":{}", "\"tokens\":{\"0\":\"x\u{0}\"}", 1);
    let mut img = good_image();
    img[4096..4096 + text.len()].copy_from_slice(text.as_bytes());
    fix_checksum(&mut img, 0);
    match read2(&img).other_copy.unwrap() {
        CopyProblem::Metadata { error, .. } => assert!(matches!(
            *error,
            MetadataError::JsonSyntax {
                kind: JsonErrorKind::UnexpectedNul,
                ..
            }
        )),
        other => panic!("{other:?}"),
    }
}

/// A reader that fails with a real I/O error.
struct Failing;

impl std::io::Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk on fire"))
    }
}

impl std::io::Seek for Failing {
    fn seek(&mut self, p: std::io::SeekFrom) -> std::io::Result<u64> {
        Ok(match p {
            std::io::SeekFrom::End(_) => 1 << 20,
            std::io::SeekFrom::Start(n) => n,
            std::io::SeekFrom::Current(_) => 0,
        })
    }
}

#[test]
fn io_errors_are_not_masked() {
    match luks2::read_header(&mut Failing) {
        Err(Error::Io(e)) => {
            assert_eq!(e.offset, 0);
            assert!(e.to_string().contains("disk on fire"));
        }
        other => panic!("{other:?}"),
    }
}
