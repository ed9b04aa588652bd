//! Proves the wiping: a global allocator that inspects every block when it is freed finds no
//! copy of the passphrase, the volume key, the keyslot (area) key or the ESSIV key after full
//! unlocks and decryptions of cryptsetup-made fixtures and the drop of everything they made.
//!
//! How: the test allocator forwards to the system allocator, but while armed it scans each
//! block being freed for secret patterns (every 16-byte window, at 4-byte steps, of each
//! secret, and short secrets whole). `realloc` is left to `GlobalAlloc`'s default, which
//! allocates, copies and frees, so a growing `Vec` that leaves a copy behind is caught too.
//! A positive control (a plain `Vec` holding the key, dropped) shows the detector works.
//!
//! Every freed block is also cleared (armed or not), so a block reused later never shows
//! stale bytes of an earlier, non-secret use.
//!
//! Limits: stack copies, and blocks still allocated when the test ends, are not seen (every
//! block the library frees is); register spills and the kernel page cache are out of reach.
//! This is one test function on purpose: the allocator is process-wide, so scenarios run one
//! after the other.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::panic
)]

use luks2::kdf::KdfParams;
use luks2::metadata::KeyslotKdf;
use luks2::unlock::{unlock, UnlockOptions};
use luks2::volume::{DataSegment, Decryptor};
use luks2::{Header, SecretBuf};
use sha2::Digest as _;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const MAX_PATTERNS: usize = 256;
const MAX_PATTERN_LEN: usize = 16;

/// Patterns, written only while the allocator is disarmed, read only while it is armed.
struct Patterns {
    bytes: UnsafeCell<[[u8; MAX_PATTERN_LEN]; MAX_PATTERNS]>,
    lens: UnsafeCell<[usize; MAX_PATTERNS]>,
    names: UnsafeCell<[usize; MAX_PATTERNS]>,
    count: AtomicUsize,
}

// SAFETY: the cells are written only by `set_patterns` while `ARMED` is false and no other
// test thread runs (one test function), and read only while `ARMED` is true.
unsafe impl Sync for Patterns {}

static PATTERNS: Patterns = Patterns {
    bytes: UnsafeCell::new([[0; MAX_PATTERN_LEN]; MAX_PATTERNS]),
    lens: UnsafeCell::new([0; MAX_PATTERNS]),
    names: UnsafeCell::new([0; MAX_PATTERNS]),
    count: AtomicUsize::new(0),
};
static ARMED: AtomicBool = AtomicBool::new(false);
/// Freed blocks holding a secret: count, and the first one's size and secret index.
static HITS: AtomicUsize = AtomicUsize::new(0);
static FIRST_HIT_SIZE: AtomicUsize = AtomicUsize::new(0);
static FIRST_HIT_SECRET: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Blocks scanned while armed (to show the scan ran).
static SCANNED: AtomicUsize = AtomicUsize::new(0);
/// The first 64 bytes of the first hit, for the report.
static FIRST_HIT_BYTES: [std::sync::atomic::AtomicU8; 64] =
    [const { std::sync::atomic::AtomicU8::new(0) }; 64];

struct Inspecting;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

unsafe impl GlobalAlloc for Inspecting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Zeroed: a block's spare capacity (e.g. the unused end of a `format!` string) must not
        // hold stale bytes that glibc itself left in reused memory (a line of `/proc/self/maps`
        // or a path containing "fixtures", which holds the fixture passphrase "fixture"). What
        // the code under test writes into the block is still all there when it is freed.
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Acquire) && layout.size() > 0 {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until System.dealloc.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            SCANNED.fetch_add(1, Ordering::Relaxed);
            let n = PATTERNS.count.load(Ordering::Acquire);
            // SAFETY: armed, so the patterns are not being written (see `Patterns`).
            let (bytes, lens, names) = unsafe {
                (
                    &*PATTERNS.bytes.get(),
                    &*PATTERNS.lens.get(),
                    &*PATTERNS.names.get(),
                )
            };
            for i in 0..n {
                if contains(block, &bytes[i][..lens[i]]) {
                    if HITS.fetch_add(1, Ordering::Relaxed) == 0 {
                        FIRST_HIT_SIZE.store(layout.size(), Ordering::Relaxed);
                        FIRST_HIT_SECRET.store(names[i], Ordering::Relaxed);
                        for (d, b) in FIRST_HIT_BYTES.iter().zip(block) {
                            d.store(*b, Ordering::Relaxed);
                        }
                    }
                    break;
                }
            }
        }
        // Always clear freed blocks, armed or not: a block handed out again later then holds
        // only what its new owner writes (its spare capacity is zero, not stale bytes of some
        // earlier, non-secret use such as a path containing "fixtures").
        // SAFETY: `ptr` is valid for `layout.size()` bytes until it is freed just below.
        unsafe { std::ptr::write_bytes(ptr, 0, layout.size()) };
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Inspecting = Inspecting;

/// Sets the patterns for the secrets (disarmed). Secret `k` of `secrets` is reported as `k`.
fn set_patterns(secrets: &[&[u8]]) {
    assert!(!ARMED.load(Ordering::Acquire));
    // SAFETY: disarmed and single-threaded (see `Patterns`).
    let (bytes, lens, names) = unsafe {
        (
            &mut *PATTERNS.bytes.get(),
            &mut *PATTERNS.lens.get(),
            &mut *PATTERNS.names.get(),
        )
    };
    let mut n = 0;
    for (k, s) in secrets.iter().enumerate() {
        assert!(s.len() >= 6, "secret {k} too short to search for");
        let mut push = |w: &[u8]| {
            bytes[n][..w.len()].copy_from_slice(w);
            lens[n] = w.len();
            names[n] = k;
            n += 1;
        };
        if s.len() <= MAX_PATTERN_LEN {
            push(s);
        } else {
            let mut i = 0;
            while i + MAX_PATTERN_LEN <= s.len() {
                push(&s[i..i + MAX_PATTERN_LEN]);
                i += 4;
            }
            push(&s[s.len() - MAX_PATTERN_LEN..]);
        }
    }
    PATTERNS.count.store(n, Ordering::Release);
}

/// Runs `f` armed; returns (hits, blocks scanned, first hit's size and secret index).
fn armed(f: impl FnOnce()) -> (usize, usize, usize, usize) {
    HITS.store(0, Ordering::SeqCst);
    SCANNED.store(0, Ordering::SeqCst);
    FIRST_HIT_SECRET.store(usize::MAX, Ordering::SeqCst);
    ARMED.store(true, Ordering::Release);
    f();
    ARMED.store(false, Ordering::Release);
    (
        HITS.load(Ordering::SeqCst),
        SCANNED.load(Ordering::SeqCst),
        FIRST_HIT_SIZE.load(Ordering::SeqCst),
        FIRST_HIT_SECRET.load(Ordering::SeqCst),
    )
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The area key keyslot 0 derives from `pass` (computed by the test, wiped on drop).
fn area_key(h: &Header, pass: &[u8]) -> SecretBuf {
    match h {
        Header::Luks2(h) => {
            let ks = &h.metadata.keyslots[&0];
            let area = ks.area.as_ref().unwrap();
            let (params, salt) = match ks.kdf.as_ref().unwrap() {
                KeyslotKdf::Pbkdf2 {
                    hash,
                    iterations,
                    salt,
                } => (KdfParams::pbkdf2(hash, *iterations).unwrap(), salt),
                KeyslotKdf::Argon2 {
                    variant,
                    time,
                    memory_kib,
                    cpus,
                    salt,
                } => (
                    KdfParams::Argon2 {
                        variant: *variant,
                        time: *time,
                        memory_kib: *memory_kib,
                        cpus: *cpus,
                    },
                    salt,
                ),
                other => panic!("{other:?}"),
            };
            let mut k = SecretBuf::zeroed(area.key_size as usize);
            params.derive(pass, salt, k.as_mut_bytes()).unwrap();
            k
        }
        Header::Luks1(h) => {
            let ks = &h.keyslots[0];
            let mut k = SecretBuf::zeroed(h.key_bytes as usize);
            KdfParams::pbkdf2(&h.hash_spec, ks.iterations)
                .unwrap()
                .derive(pass, &ks.salt, k.as_mut_bytes())
                .unwrap();
            k
        }
    }
}

/// Unlocks fixture `image` with `pass` and decrypts its first 4 KiB; returns how many
/// freed blocks held a secret.
fn scenario(image: &str, pass: SecretBuf, vk_hex: &str, failures: &mut Vec<String>) {
    let img = std::fs::read(fixtures().join("images").join(image)).unwrap();
    let header = luks2::read_header(&mut Cursor::new(&img)).unwrap();
    let vk = SecretBuf::from_vec(unhex(vk_hex));
    let ak = area_key(&header, pass.as_bytes());
    let essiv = SecretBuf::from_vec(sha2::Sha256::digest(vk.as_bytes()).to_vec());
    set_patterns(&[
        pass.as_bytes(),
        vk.as_bytes(),
        ak.as_bytes(),
        essiv.as_bytes(),
    ]);
    let names = ["passphrase", "volume key", "area key", "ESSIV key"];
    let (hits, scanned, size, which) = armed(|| {
        let mut cur = Cursor::new(&img);
        let u = unlock(
            &header,
            &mut cur,
            pass.as_bytes(),
            &UnlockOptions::default(),
        )
        .unwrap();
        assert_eq!(u.volume_key.as_bytes(), vk.as_bytes());
        let seg = DataSegment::of(&header).unwrap();
        let offset = seg.offset as usize;
        let dec = Decryptor::new(seg, &u.volume_key).unwrap();
        drop(u);
        let mut buf = SecretBuf::from_vec(img[offset..offset + 4096].to_vec());
        dec.decrypt_at(0, buf.as_mut_bytes()).unwrap();
        drop(buf);
        // The whole data area through the streaming copy, too.
        let mut sink = Vec::new();
        dec.copy(&mut Cursor::new(&img), img.len() as u64, &mut sink)
            .unwrap();
        drop(dec);
        // The plaintext is not one of the secrets searched for; zero it to keep the scan
        // about keys.
        sink.iter_mut().for_each(|b| *b = 0);
    });
    eprintln!("{image}: {scanned} freed blocks scanned, {hits} held a secret");
    if hits != 0 {
        let first: Vec<u8> = FIRST_HIT_BYTES
            .iter()
            .take(size)
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        failures.push(format!(
            "{image}: {hits} freed block(s) held a secret; first: {size} bytes, the {}: {:?}",
            names.get(which).unwrap_or(&"?"),
            String::from_utf8_lossy(&first)
        ));
    }
    assert!(scanned > 10, "{image}: the scan did not run");
}

#[test]
fn no_secret_survives_in_freed_memory() {
    let mut failures = Vec::new();

    // Positive control: a plain Vec holding a key is caught when dropped; a SecretBuf is not.
    let key: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    set_patterns(&[&key]);
    let (hits, ..) = armed(|| drop(std::hint::black_box(key.clone())));
    assert_eq!(hits, 1, "the detector misses a plain Vec copy");
    let (hits, ..) = armed(|| {
        let mut grown = SecretBuf::zeroed(0);
        drop(std::mem::replace(
            &mut grown,
            SecretBuf::from_vec(key.clone()),
        ));
        drop(grown);
    });
    assert_eq!(hits, 0, "a SecretBuf left its bytes behind");
    // Growing a Vec that holds a key leaves the old block behind: caught too.
    let (hits, ..) = armed(|| {
        let mut v = Vec::with_capacity(32);
        v.extend_from_slice(&key);
        v.extend_from_slice(&[0u8; 4096]);
        let mut s = SecretBuf::from_vec(v);
        s.truncate(0);
    });
    assert_eq!(hits, 1, "the detector misses a copy left by realloc");

    let fixture_pass = || SecretBuf::from_vec(b"fixture".to_vec());
    let keyfile = std::fs::read(fixtures().join("keys/keyfile.bin")).unwrap();
    let cases: Vec<(&str, SecretBuf, &str)> = vec![
        (
            "pbkdf2-sha256.img",
            fixture_pass(),
            "8d75f5643c4e18a0dd8825c89ab2f6d64cba37fa31d34c2819aae07c03d1ee28",
        ),
        (
            "argon2id-4threads.img",
            fixture_pass(),
            "eb60a02930e7c011ce74df28114d54e3dc90e46e4a114e95efbcaed7477eb515",
        ),
        (
            "cipher-aes-cbc-essiv.img",
            fixture_pass(),
            "4b085d1dffc702a2b55047704637b46f502a01a17d25a46401ab9d5157f3095c",
        ),
        (
            "cipher-aes-xts-512.img",
            fixture_pass(),
            "10a81d05fe419ee467da11d7e1c676c670c392b6863eb655228e5fc78895e9094afff2c8a891bb3a61ea7c70a61df9d60de62ce5f8e32e6c7e98c55e11aea004",
        ),
        (
            "keyfile.img",
            SecretBuf::from_vec(keyfile),
            "8b29c8fde46b93cbb6db0d8e47787e933687700eb15c4daf7c0ec63d0e0c9141",
        ),
        (
            "luks1-xts-sha256.img",
            fixture_pass(),
            "041d9c7c275a60d95f1ee1977fa03a690685cf4326418b800b86f78a09c1eeec",
        ),
    ];
    for (image, pass, vk) in cases {
        scenario(image, pass, vk, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
