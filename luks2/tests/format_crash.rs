//! Crash consistency: every header update is interrupted after each of its writes (an
//! injected failure after write N, for every N), and the image must open with the old
//! keyslots or with the new ones, never neither — with tazpod's reader and with cryptsetup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod format_support;

use format_support::*;
use luks2::format::{self, Plan};
use luks2::kdf::Argon2Variant;
use luks2::metadata::Priority;
use std::io::Cursor;

const A: &[u8] = b"old passphrase";
const B: &[u8] = b"new passphrase";

fn base() -> (Vec<u8>, Vec<u8>) {
    let p = params();
    let mut rng = TestRng::new(99);
    let vk = [0x5au8; 64];
    let f = format::format(&p, &vk, A, &mut |b: &mut [u8]| rng.fill(b)).unwrap();
    let mut image = Vec::new();
    f.plan.apply_to(&mut image);
    image.resize((p.layout.data_offset + 65536) as usize, 0);
    (image, vk.to_vec())
}

fn header(image: &[u8]) -> luks2::header::Luks2Header {
    match luks2::read_header(&mut Cursor::new(image)).unwrap() {
        luks2::Header::Luks2(h) => *h,
        luks2::Header::Luks1(_) => panic!("luks1"),
    }
}

/// Which of `passes` open the image (ours), checked against cryptsetup when present.
fn opens(image: &[u8], passes: &[&[u8]], cs: bool) -> Vec<bool> {
    let ours: Vec<bool> = passes
        .iter()
        .map(|p| our_unlock(image, p).is_some())
        .collect();
    if cs {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.img");
        std::fs::write(&f, image).unwrap();
        let theirs: Vec<bool> = passes.iter().map(|p| cs_accepts(&f, None, p)).collect();
        assert_eq!(ours, theirs, "tazpod and cryptsetup disagree");
    }
    ours
}

/// Interrupts `plan` after each write; `old`/`new` are which passphrases open before/after.
fn every_interruption(image: &[u8], plan: &Plan, passes: &[&[u8]], old: &[bool], new: &[bool]) {
    let cs = have_cryptsetup();
    assert_eq!(opens(image, passes, cs), old, "before the update");
    for n in 0..=plan.writes.len() {
        let mut img = image.to_vec();
        plan.apply_first(n, &mut img);
        let got = opens(&img, passes, cs);
        assert!(
            got == old || got == new,
            "after write {n} of {}: opens {got:?}, neither old {old:?} nor new {new:?}",
            plan.writes.len()
        );
        if n == plan.writes.len() {
            assert_eq!(got, new, "the complete update");
        }
    }
}

#[test]
fn add_keyslot_interrupted() {
    let (image, vk) = base();
    let h = header(&image);
    let mut rng = TestRng::new(1);
    let (plan, _) = format::add_keyslot(
        &h,
        &vk,
        0,
        B,
        &spec(argon(Argon2Variant::Id), "aes-xts-plain64"),
        None,
        &mut |b: &mut [u8]| rng.fill(b),
    )
    .unwrap();
    every_interruption(&image, &plan, &[A, B], &[true, false], &[true, true]);
}

#[test]
fn remove_keyslot_interrupted() {
    let (mut image, vk) = base();
    let mut rng = TestRng::new(2);
    let h = header(&image);
    let (plan, _) = format::add_keyslot(
        &h,
        &vk,
        0,
        B,
        &spec(pbkdf2(), "aes-xts-plain64"),
        None,
        &mut |b: &mut [u8]| rng.fill(b),
    )
    .unwrap();
    plan.apply_to(&mut image);
    let h = header(&image);
    let plan = format::remove_keyslot(&h, 0, &mut |b: &mut [u8]| rng.fill(b)).unwrap();
    every_interruption(&image, &plan, &[A, B], &[true, true], &[false, true]);
}

#[test]
fn configure_interrupted() {
    let (image, _) = base();
    let mut rng = TestRng::new(3);
    let h = header(&image);
    let plan = format::configure(
        &h,
        Some("new-label"),
        Some((0, Priority::High)),
        &mut |b: &mut [u8]| rng.fill(b),
    )
    .unwrap();
    every_interruption(&image, &plan, &[A], &[true], &[true]);
    for n in 0..=plan.writes.len() {
        let mut img = image.clone();
        plan.apply_first(n, &mut img);
        let label = header(&img).binary.label;
        assert!(label.is_empty() || label == "new-label", "{n}: {label}");
    }
}

/// An interrupted write may also leave a torn copy: the copy being written is half old, half
/// new. Tear the header write at its middle: the other copy must carry the volume.
#[test]
fn torn_header_writes() {
    let (image, vk) = base();
    let h = header(&image);
    let mut rng = TestRng::new(4);
    let (plan, _) = format::add_keyslot(
        &h,
        &vk,
        0,
        B,
        &spec(pbkdf2(), "aes-xts-plain64"),
        None,
        &mut |b: &mut [u8]| rng.fill(b),
    )
    .unwrap();
    let cs = have_cryptsetup();
    for n in 0..plan.writes.len() {
        let mut img = image.clone();
        plan.apply_first(n, &mut img);
        let w = &plan.writes[n];
        let half = w.data.len() / 2;
        let off = w.offset as usize;
        img[off..off + half].copy_from_slice(&w.data[..half]);
        let got = opens(&img, &[A, B], cs);
        assert!(
            got == [true, false] || got == [true, true],
            "torn write {n}: {got:?}"
        );
    }
}

#[test]
fn change_keyslot_interrupted() {
    let (image, vk) = base();
    let h = header(&image);
    let mut rng = TestRng::new(5);
    let plan = format::change_keyslot(
        &h,
        &vk,
        0,
        B,
        &spec(pbkdf2(), "aes-xts-plain64"),
        &mut |b: &mut [u8]| rng.fill(b),
    )
    .unwrap();
    assert_eq!(plan.writes.len(), 4);
    every_interruption(&image, &plan, &[A, B], &[true, false], &[false, true]);
    let mut img = image.clone();
    plan.apply_to(&mut img);
    let h2 = header(&img);
    assert!(h2.metadata.keyslots.contains_key(&0) && h2.metadata.keyslots.len() == 1);
}
