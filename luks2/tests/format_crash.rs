//! Crash consistency: every header writer (format over an old header, add, change, remove,
//! configure) is interrupted after each of its writes and in the middle of each (torn prefixes
//! in 512-byte steps in header copies, 32 KiB in keyslot areas), and the image must open with
//! the old keyslots or with the new ones, never neither — with tazpod's reader and with
//! cryptsetup; `cryptsetup repair` of each state must lose no passphrase.
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

/// The states an interrupted `plan` can leave: after each whole write (a kill before or after
/// its fsync leaves the same bytes), and every torn prefix of each write (512-byte steps in a
/// header copy, 32 KiB steps in a keyslot area: a crash in the middle of the write).
fn states(image: &[u8], plan: &Plan) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for n in 0..=plan.writes.len() {
        let mut img = image.to_vec();
        plan.apply_first(n, &mut img);
        out.push((
            format!("after {n} of {} writes", plan.writes.len()),
            img.clone(),
        ));
        let Some(w) = plan.writes.get(n) else {
            continue;
        };
        let step = if w.what.contains("header") {
            512
        } else {
            32 * 1024
        };
        let off = w.offset as usize;
        let mut cut = step;
        while cut < w.data.len() {
            let mut torn = img.clone();
            if torn.len() < off + cut {
                torn.resize(off + cut, 0);
            }
            torn[off..off + cut].copy_from_slice(&w.data[..cut]);
            out.push((
                format!("write {n} ({}) torn after {cut} bytes", w.what),
                torn,
            ));
            cut += step;
        }
    }
    out
}

/// `cryptsetup repair` on a copy of `image` keeps every passphrase that opened it.
fn repair_keeps(image: &[u8], passes: &[&[u8]], before: &[bool], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("r.img");
    std::fs::write(&f, image).unwrap();
    let (code, out, err) = cs(&["repair", "-q", &f.display().to_string()], b"");
    assert_eq!(code, 0, "{what}: cryptsetup repair failed: {out}{err}");
    let after = std::fs::read(&f).unwrap();
    let got: Vec<bool> = passes.iter().map(|p| cs_accepts(&f, None, p)).collect();
    let ours: Vec<bool> = passes
        .iter()
        .map(|p| our_unlock(&after, p).is_some())
        .collect();
    for (i, b) in before.iter().enumerate() {
        assert!(
            !b || (got[i] && ours[i]),
            "{what}: cryptsetup repair lost passphrase {i} (cryptsetup {got:?}, tazpod {ours:?})"
        );
    }
}

/// Every state an interruption of `plan` can leave (see [`states`]) opens with the old
/// passphrases (`old`: which of `passes` open before) or with the new ones (`new`), never
/// neither, for tazpod and cryptsetup alike; `cryptsetup repair` loses none of them.
/// Returns the number of states tried.
fn every_interruption(
    image: &[u8],
    plan: &Plan,
    passes: &[&[u8]],
    old: &[bool],
    new: &[bool],
) -> usize {
    let cs = have_cryptsetup();
    assert_eq!(opens(image, passes, cs), old, "before the update");
    let all = states(image, plan);
    for (what, img) in &all {
        let got = opens(img, passes, cs);
        assert!(
            got == old || got == new,
            "{what}: opens {got:?}, neither old {old:?} nor new {new:?}"
        );
        if cs {
            repair_keeps(img, passes, &got, what);
        }
    }
    let mut img = image.to_vec();
    plan.apply_to(&mut img);
    assert_eq!(opens(&img, passes, cs), new, "the complete update");
    eprintln!("{} states tried", all.len());
    all.len()
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

/// `format` over an existing header: the new keyslot beside the old one, the copy not in use
/// first, the old keyslots wiped last.
#[test]
fn format_over_an_old_header_interrupted() {
    let (image, _) = base();
    let h = header(&image);
    let mut rng = TestRng::new(6);
    let vk2 = [0xa5u8; 64];
    let f = format::format_over(&params(), &vk2, B, &h, &mut |b: &mut [u8]| rng.fill(b))
        .unwrap()
        .expect("the same layout leaves room beside keyslot 0");
    let whats: Vec<&str> = f.plan.writes.iter().map(|w| w.what.as_str()).collect();
    assert_eq!(
        &whats[..3],
        ["keyslot 0 area", "secondary header", "primary header"]
    );
    let n = every_interruption(&image, &f.plan, &[A, B], &[true, false], &[false, true]);
    assert!(n > 50, "{n}");
    let mut img = image.clone();
    f.plan.apply_to(&mut img);
    let new = header(&img);
    assert!(new.binary.seqid > h.binary.seqid);
    assert_eq!(our_unlock(&img, B).unwrap(), vk2);
    // No byte of the old keyslot area is left.
    let old_area = h.metadata.keyslots[&0].area.as_ref().unwrap();
    let (o, l) = (old_area.offset as usize, old_area.size as usize);
    assert_ne!(img[o..o + l], image[o..o + l]);
}

/// The old header's primary copy is damaged and its secondary carries the volume: the primary
/// is written first, so the secondary keeps the old passphrase until the new header exists.
#[test]
fn format_over_a_header_read_from_its_secondary_interrupted() {
    let (mut image, _) = base();
    image[100] ^= 0xff; // in the primary's checksummed area: its checksum now fails
    let h = header(&image);
    assert_eq!(h.used_copy, luks2::header::HeaderCopy::Secondary);
    let mut rng = TestRng::new(7);
    let f = format::format_over(&params(), &[0x11u8; 64], B, &h, &mut |b: &mut [u8]| {
        rng.fill(b)
    })
    .unwrap()
    .unwrap();
    assert_eq!(f.plan.writes[1].what, "primary header");
    every_interruption(&image, &f.plan, &[A, B], &[true, false], &[false, true]);
}

/// With another metadata size the secondary copies lie apart and no safe order exists: the
/// caller is told (`None`) and formats plainly.
#[test]
fn format_over_another_metadata_size_is_declined() {
    let (image, _) = base();
    let h = header(&image);
    let mut p = params();
    p.layout = format::Layout::cryptsetup(Some(65536), Some(1024 * 1024), false).unwrap();
    let mut rng = TestRng::new(8);
    let r = format::format_over(&p, &[0x11u8; 64], B, &h, &mut |b: &mut [u8]| rng.fill(b));
    assert!(matches!(r, Ok(None)), "{r:?}");
}

/// A torn in-place update of a header whose primary is damaged: the primary is rewritten first.
#[test]
fn add_keyslot_to_a_header_read_from_its_secondary_interrupted() {
    let (mut image, vk) = base();
    image[100] ^= 0xff;
    let h = header(&image);
    let mut rng = TestRng::new(9);
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
    assert_eq!(plan.writes[1].what, "primary header");
    every_interruption(&image, &plan, &[A, B], &[true, false], &[true, true]);
}
