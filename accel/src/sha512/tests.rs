#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use super::*;
use proptest::prelude::*;

/// The block `m ‖ pad` as bytes, as `sha2` takes it.
fn padded(m: &[u64; 8]) -> [u8; 128] {
    let mut block = [0u8; 128];
    for (o, w) in block.chunks_mut(8).zip(m) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    block[64] = 0x80;
    block[120..].copy_from_slice(&MSG_BITS.to_be_bytes());
    block
}

/// The reference compression: the `sha2` crate's.
fn reference(state: &[u64; 8], m: &[u64; 8]) -> [u64; 8] {
    let mut s = *state;
    sha2::block_api::compress512(&mut s, &[padded(m)]);
    s
}

/// The reference loop of [`hmac_iterations`].
fn reference_iterations(
    inner: &[u64; 8],
    outer: &[u64; 8],
    u: &mut [u64; 8],
    acc: &mut [u64; 8],
    count: u32,
) {
    for _ in 0..count {
        let t = reference(inner, u);
        *u = reference(outer, &t);
        for (a, v) in acc.iter_mut().zip(u.iter()) {
            *a ^= v;
        }
    }
}

/// HMAC-SHA512 key states of a password of at most 128 bytes.
fn keyed(password: &[u8]) -> ([u64; 8], [u64; 8]) {
    const IV: [u64; 8] = [
        0x6a09_e667_f3bc_c908,
        0xbb67_ae85_84ca_a73b,
        0x3c6e_f372_fe94_f82b,
        0xa54f_f53a_5f1d_36f1,
        0x510e_527f_ade6_82d1,
        0x9b05_688c_2b3e_6c1f,
        0x1f83_d9ab_fb41_bd6b,
        0x5be0_cd19_137e_2179,
    ];
    let mut ipad = [0x36u8; 128];
    let mut opad = [0x5cu8; 128];
    for (i, p) in password.iter().enumerate() {
        ipad[i] ^= p;
        opad[i] ^= p;
    }
    let (mut inner, mut outer) = (IV, IV);
    sha2::block_api::compress512(&mut inner, &[ipad]);
    sha2::block_api::compress512(&mut outer, &[opad]);
    (inner, outer)
}

/// PBKDF2-HMAC-SHA512, first output block, through [`hmac_iterations`]: `U_1` from `sha2`'s
/// HMAC, the rest here.
fn pbkdf2_first_block(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 64] {
    use sha2::digest::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(password).unwrap();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let u1 = mac.finalize().into_bytes();
    let mut u = [0u64; 8];
    for (w, c) in u.iter_mut().zip(u1.chunks(8)) {
        *w = u64::from_be_bytes(c.try_into().unwrap());
    }
    let mut acc = u;
    let (inner, outer) = keyed(password);
    assert!(hmac_iterations(
        &inner,
        &outer,
        &mut u,
        &mut acc,
        iterations - 1
    ));
    let mut out = [0u8; 64];
    for (o, w) in out.chunks_mut(8).zip(acc) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

#[test]
fn unavailable_means_untouched() {
    if available() {
        return;
    }
    let (mut u, mut acc) = ([1u64; 8], [2u64; 8]);
    assert!(!hmac_iterations(&[0; 8], &[0; 8], &mut u, &mut acc, 3));
    assert_eq!((u, acc), ([1u64; 8], [2u64; 8]));
    assert!(compress_message(&[0; 8], &[0; 8]).is_none());
}

/// PBKDF2-HMAC-SHA512 vectors (the RFC 6070 inputs with SHA-512, as published by the
/// OpenSSL and Go test suites).
#[test]
fn pbkdf2_known_answers() {
    if !available() {
        return;
    }
    let cases: [(&[u8], &[u8], u32, &str); 4] = [
        (
            b"password",
            b"salt",
            1,
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252\
             c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce",
        ),
        (
            b"password",
            b"salt",
            2,
            "e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53c\
             f76cab2868a39b9f7840edce4fef5a82be67335c77a6068e04112754f27ccf4e",
        ),
        (
            b"password",
            b"salt",
            4096,
            "d197b1b33db0143e018b12f3d1d1479e6cdebdcc97c5c0f87f6902e072f457b5\
             143f30602641b3d55cd335988cb36b84376060ecd532e039b742a239434af2d5",
        ),
        (
            b"passwordPASSWORDpassword",
            b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
            4096,
            "8c0511f4c6e597c6ac6315d8f0362e225f3c501495ba23b868c005174dc4ee71\
             115b59f9e60cd9532fa33e0f75aefe30225c583a186cd82bd4daea9724a3d3b8",
        ),
    ];
    for (password, salt, iterations, want) in cases {
        let got = pbkdf2_first_block(password, salt, iterations);
        assert_eq!(hex::encode(got), want, "{iterations} iterations");
    }
}

#[test]
fn compress_matches_sha2_on_edge_words() {
    if !available() {
        return;
    }
    let words = [
        0u64,
        1,
        u64::MAX,
        0x8000_0000_0000_0000,
        0x0123_4567_89ab_cdef,
    ];
    for &sw in &words {
        for &mw in &words {
            let state = [sw; 8];
            let m = [mw; 8];
            assert_eq!(compress_message(&state, &m).unwrap(), reference(&state, &m));
        }
    }
}

proptest! {
    #[test]
    fn compress_matches_sha2(state in any::<[u64; 8]>(), m in any::<[u64; 8]>()) {
        if available() {
            prop_assert_eq!(compress_message(&state, &m).unwrap(), reference(&state, &m));
        }
    }

    #[test]
    fn iterations_match_reference(
        inner in any::<[u64; 8]>(),
        outer in any::<[u64; 8]>(),
        u in any::<[u64; 8]>(),
        count in 0u32..40,
    ) {
        if available() {
            let (mut u1, mut acc1) = (u, u);
            let (mut u2, mut acc2) = (u, u);
            prop_assert!(hmac_iterations(&inner, &outer, &mut u1, &mut acc1, count));
            reference_iterations(&inner, &outer, &mut u2, &mut acc2, count);
            prop_assert_eq!(u1, u2);
            prop_assert_eq!(acc1, acc2);
        }
    }
}

/// Nanoseconds per compression of this module and of `sha2` on the same chain, minimum of
/// several runs (CPU time of this thread is not available portably; run on an idle machine).
/// `cargo test --release -p luks2-accel -- --ignored --nocapture sha512_per_block`
#[test]
#[ignore]
fn sha512_per_block() {
    use std::time::Instant;
    if !available() {
        eprintln!("no AVX2/BMI2: nothing to time");
        return;
    }
    let (inner, outer) = keyed(b"password");
    let n = 200_000u32;
    let (mut best_here, mut best_crate) = (f64::MAX, f64::MAX);
    for _ in 0..15 {
        let (mut u, mut acc) = ([7u64; 8], [7u64; 8]);
        let t = Instant::now();
        hmac_iterations(&inner, &outer, &mut u, &mut acc, n);
        best_here = best_here.min(t.elapsed().as_secs_f64());
        let (mut u2, mut acc2) = ([7u64; 8], [7u64; 8]);
        let t = Instant::now();
        reference_iterations(&inner, &outer, &mut u2, &mut acc2, n);
        best_crate = best_crate.min(t.elapsed().as_secs_f64());
        assert_eq!(acc, acc2);
    }
    let per = |s: f64| s * 1e9 / f64::from(2 * n);
    eprintln!(
        "sha512 per compression: luks2-accel {:.1} ns, sha2 crate {:.1} ns (ratio {:.2})",
        per(best_here),
        per(best_crate),
        best_here / best_crate
    );
}
