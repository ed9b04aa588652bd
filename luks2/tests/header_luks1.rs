//! LUKS1 header parsing and cryptsetup's load-time checks, one broken rule at a time, on a
//! header made by cryptsetup.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod header_support;

use header_support::cryptsetup_luks1;
use luks2::error::Error;
use luks2::header::{Header, HeaderError};
use luks2::luks1::{Luks1Error, Luks1Header, Luks1SlotState};

const DEV: usize = 2 << 20;

/// The cryptsetup-made header on a 2 MiB device, changed by `f`.
fn device(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut img = cryptsetup_luks1::header();
    img.resize(DEV, 0);
    f(&mut img);
    img
}

fn read(img: &[u8]) -> Result<Header, Error> {
    luks2::read_header(&mut std::io::Cursor::new(img))
}

fn luks1_err(img: &[u8]) -> HeaderError {
    match read(img) {
        Err(Error::Header(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Keyslot `i`'s field at `field_off` within its 48-byte record (active 0, iterations 4,
/// salt 8, offset 40, stripes 44).
fn put_slot(img: &mut [u8], i: usize, field_off: usize, v: u32) {
    let at = 208 + 48 * i + field_off;
    img[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn set_hash(img: &mut [u8], name: &str) {
    img[72..104].fill(0);
    img[72..72 + name.len()].copy_from_slice(name.as_bytes());
}

#[test]
fn real_header_loads() {
    let h = match read(&device(|_| {})).unwrap() {
        Header::Luks1(h) => *h,
        other => panic!("{other:?}"),
    };
    assert_eq!(h.cipher_name, "aes");
    assert_eq!(h.cipher_mode, "xts-plain64");
    assert_eq!(h.cipher_spec(), "aes-xts-plain64");
    assert_eq!(h.hash_spec, "sha256");
    assert_eq!(h.payload_offset, 4096);
    assert_eq!(h.key_bytes, 32);
    assert_eq!(h.mk_digest_iterations, 1000);
    assert_eq!(h.uuid, "5f0e2d1c-3b4a-4968-8776-a5b4c3d2e1f0");
    assert_eq!(h.mk_digest[..4], [0x35, 0x5b, 0xfe, 0xf9]);
    assert_eq!(h.keyslot_sectors(), 250);
    let offsets: Vec<u32> = h.keyslots.iter().map(|k| k.key_material_offset).collect();
    assert_eq!(offsets, vec![8, 264, 520, 776, 1032, 1288, 1544, 1800]);
    assert!(h.keyslots[0].active);
    assert_eq!(h.keyslots[0].state, Luks1SlotState::Active);
    assert_eq!(h.keyslots[0].iterations, 1000);
    assert_eq!(h.keyslots[0].salt[..2], [0xbd, 0x1e]);
    for k in &h.keyslots[1..] {
        assert!(!k.active);
        assert_eq!(k.state, Luks1SlotState::Inactive);
        assert_eq!(k.stripes, 4000);
    }
    assert_eq!(h.required_device_size(), Ok((1800 + 250) * 512));
}

#[test]
fn rules_one_at_a_time() {
    let e = |f: &dyn Fn(&mut Vec<u8>)| luks1_err(&device(|i| f(i)));
    assert_eq!(
        e(&|i| set_hash(i, "md5")),
        HeaderError::Luks1(Luks1Error::UnsupportedHash { hash: "md5".into() })
    );
    assert_eq!(
        e(&|i| set_hash(i, "sha257")),
        HeaderError::Luks1(Luks1Error::UnsupportedHash {
            hash: "sha257".into()
        })
    );
    assert_eq!(
        e(&|i| put_slot(i, 3, 44, 3999)),
        HeaderError::Luks1(Luks1Error::InvalidStripes {
            keyslot: 3,
            stripes: 3999
        })
    );
    assert_eq!(
        e(&|i| put_slot(i, 0, 40, 1)),
        HeaderError::Luks1(Luks1Error::KeyslotInHeader {
            keyslot: 0,
            offset: 1
        })
    );
    // offset × 512 wraps to 0 in cryptsetup's 32-bit arithmetic.
    assert_eq!(
        e(&|i| put_slot(i, 0, 40, 0x0080_0000)),
        HeaderError::Luks1(Luks1Error::KeyslotInHeader {
            keyslot: 0,
            offset: 0x0080_0000
        })
    );
    assert_eq!(
        e(&|i| put_slot(i, 7, 40, 4096)),
        HeaderError::Luks1(Luks1Error::KeyslotBeyondPayload {
            keyslot: 7,
            offset: 4096,
            payload_offset: 4096
        })
    );
    assert_eq!(
        e(&|i| put_slot(i, 7, 40, 3900)),
        HeaderError::Luks1(Luks1Error::KeyslotRunsIntoPayload {
            keyslot: 7,
            offset: 3900,
            sectors: 250,
            payload_offset: 4096
        })
    );
    assert_eq!(
        e(&|i| put_slot(i, 1, 40, 100)),
        HeaderError::Luks1(Luks1Error::KeyslotsOverlap {
            keyslot: 0,
            next: 1
        })
    );
    assert_eq!(
        e(&|i| i[108..112].copy_from_slice(&0u32.to_be_bytes())),
        HeaderError::Luks1(Luks1Error::ZeroKeyBytes)
    );
}

#[test]
fn leniencies() {
    // Unknown `active` values load (the slot is reported invalid).
    let h = match read(&device(|i| put_slot(i, 2, 0, 0x1234_5678))).unwrap() {
        Header::Luks1(h) => h,
        other => panic!("{other:?}"),
    };
    assert_eq!(h.keyslots[2].state, Luks1SlotState::Invalid(0x1234_5678));
    assert!(!h.keyslots[2].active);
    // Payload offset 0 (detached header) skips the payload checks.
    assert!(read(&device(|i| i[104..108].fill(0))).is_ok());
    // Hash names are case-insensitive (OpenSSL), and other hashes of >= 20 bytes are fine.
    assert!(read(&device(|i| set_hash(i, "SHA1"))).is_ok());
    assert!(read(&device(|i| set_hash(i, "ripemd160"))).is_ok());
}

#[test]
fn device_size() {
    let need = (1800 + 250) * 512;
    let img = device(|_| {});
    assert!(read(&img[..need]).is_ok());
    assert_eq!(
        luks1_err(&img[..need - 1]),
        HeaderError::DeviceTooSmall {
            size: need as u64 - 1,
            required: need as u64
        }
    );
    assert_eq!(
        luks1_err(&img[..591]),
        HeaderError::Luks1(Luks1Error::Truncated { size: 591 })
    );
}

#[test]
fn parse_direct() {
    let hdr = cryptsetup_luks1::header();
    assert!(Luks1Header::parse(&hdr).is_ok());
    assert_eq!(
        Luks1Header::parse(&hdr[..10]),
        Err(Luks1Error::Truncated { size: 10 })
    );
    let mut bad = hdr.clone();
    bad[0] = b'X';
    assert_eq!(Luks1Header::parse(&bad), Err(Luks1Error::BadMagic));
    let mut v2 = hdr;
    v2[7] = 2;
    assert_eq!(
        Luks1Header::parse(&v2),
        Err(Luks1Error::UnsupportedVersion { version: 2 })
    );
}
