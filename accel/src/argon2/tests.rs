#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use super::*;
use proptest::prelude::*;

fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Portable];
    if accelerated() {
        v.push(Backend::Avx2);
    } else {
        eprintln!("no AVX2 on this CPU: only the portable backend is tested");
    }
    v
}

fn crate_hash(
    p: &Params,
    password: &[u8],
    salt: &[u8],
    secret: &[u8],
    ad: &[u8],
    len: usize,
) -> Vec<u8> {
    let alg = match p.variant {
        Variant::I => argon2::Algorithm::Argon2i,
        Variant::Id => argon2::Algorithm::Argon2id,
    };
    let mut b = argon2::ParamsBuilder::new();
    b.m_cost(p.memory_kib)
        .t_cost(p.time)
        .p_cost(p.lanes)
        .output_len(len);
    if !ad.is_empty() {
        b.data(argon2::AssociatedData::new(ad).unwrap());
    }
    let params = b.build().unwrap();
    let ctx = if secret.is_empty() {
        argon2::Argon2::new(alg, argon2::Version::V0x13, params)
    } else {
        argon2::Argon2::new_with_secret(secret, alg, argon2::Version::V0x13, params).unwrap()
    };
    let mut out = vec![0u8; len];
    ctx.hash_password_into(password, salt, &mut out).unwrap();
    out
}

/// RFC 9106 §5.2 (Argon2i) and §5.3 (Argon2id).
#[test]
fn rfc9106_vectors() {
    for (variant, want) in [
        (
            Variant::I,
            "c814d9d1dc7f37aa13f0d77f2494bda1c8de6b016dd388d29952a4c4672b6ce8",
        ),
        (
            Variant::Id,
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659",
        ),
    ] {
        let p = Params {
            variant,
            time: 3,
            memory_kib: 32,
            lanes: 4,
        };
        for b in backends() {
            let mut out = [0u8; 32];
            hash_with(&p, b, &[1; 32], &[2; 16], &[3; 8], &[4; 12], &mut out).unwrap();
            assert_eq!(hex::encode(out), want, "{variant:?} {b:?}");
        }
    }
}

/// The reference implementation (argon2-cffi) as a LUKS2 keyslot runs it (the rows of
/// luks2/tests/kat.rs, including m = 65 with p = 2 and the minimum m = 8p).
#[test]
fn reference_vectors() {
    let salt: Vec<u8> = (0..32u32).map(|i| (i * 5 % 251) as u8).collect();
    let rows = [
        (Variant::Id, 2, 256, 1, 32, "5d29d9513a3db78c59f872f2868017e8fe022b269ca692c29a3fedf904346f5c"),
        (Variant::I, 3, 1024, 4, 64, "07d9b895a625642aed99bd9d73b32a964e2baffc20cc5cfeffc33cb059bcfdbf408976099a1639d7e3b18db3b8b9f90b86820fb45bbe358928dc2e1bdd7ad36f"),
        (Variant::Id, 1, 65, 2, 32, "20be667636ea6e96d6507c7adc979c36c848d2915d82ce6ff6ca49c08a1ce692"),
        (Variant::I, 4, 32, 4, 64, "b74473d5d3814dd7f9fde99e0facc9f1bad1900d70c5c39cf709903031cc64dc7cd6b77bd8479d2854ac49ee5e61e117e9bf0f0e35567f58d8221541ecfaad1c"),
    ];
    for (variant, time, memory_kib, lanes, len, want) in rows {
        let p = Params {
            variant,
            time,
            memory_kib,
            lanes,
        };
        for b in backends() {
            let mut out = vec![0u8; len];
            hash_with(&p, b, b"tazpod passphrase", &salt, &[], &[], &mut out).unwrap();
            // The salt pattern must be the one kat.rs uses; the crate confirms it.
            assert_eq!(
                out,
                crate_hash(&p, b"tazpod passphrase", &salt, &[], &[], len)
            );
            assert_eq!(hex::encode(&out), want, "{p:?} {b:?}");
        }
    }
}

#[test]
fn parameter_errors() {
    let ok = Params {
        variant: Variant::Id,
        time: 1,
        memory_kib: 8,
        lanes: 1,
    };
    let mut out = [0u8; 32];
    assert!(hash(&ok, b"pw", b"saltsalt", &mut out).is_ok());
    let cases = [
        (Params { time: 0, ..ok }, &b"saltsalt"[..], 32, "time"),
        (Params { lanes: 0, ..ok }, &b"saltsalt"[..], 32, "lanes"),
        (
            Params {
                lanes: MAX_LANES + 1,
                memory_kib: u32::MAX,
                ..ok
            },
            &b"saltsalt"[..],
            32,
            "lanes",
        ),
        (
            Params {
                memory_kib: 15,
                lanes: 2,
                ..ok
            },
            &b"saltsalt"[..],
            32,
            "memory",
        ),
        (ok, &b"salt"[..], 32, "salt"),
        (ok, &b"saltsalt"[..], 3, "output"),
    ];
    for (p, salt, len, name) in cases {
        let mut out = vec![0u8; len];
        match hash(&p, b"pw", salt, &mut out) {
            Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name, "{p:?}"),
            other => panic!("{p:?}: {other:?}"),
        }
    }
}

/// A memory the allocator cannot give is an error, not an abort (4 TiB − 1 KiB; skipped under
/// "always overcommit", where the reservation would succeed).
#[test]
fn huge_memory_is_an_error() {
    let policy = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if policy.trim() != "0" && policy.trim() != "2" {
        eprintln!("skipped: overcommit policy {policy:?}");
        return;
    }
    let p = Params {
        variant: Variant::Id,
        time: 1,
        memory_kib: u32::MAX,
        lanes: 1,
    };
    let mut out = [0u8; 32];
    assert_eq!(
        hash(&p, b"pw", b"saltsalt", &mut out),
        Err(Error::OutOfMemory)
    );
}

#[test]
fn avx2_backend_refused_without_avx2() {
    let p = Params {
        variant: Variant::Id,
        time: 1,
        memory_kib: 8,
        lanes: 1,
    };
    let mut out = [0u8; 32];
    let r = hash_with(&p, Backend::Avx2, b"pw", b"saltsalt", &[], &[], &mut out);
    assert_eq!(r.is_ok(), accelerated());
}

fn block_from(seed: &[u64]) -> Block {
    let mut b = Block::ZERO;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for (i, w) in b.0.iter_mut().enumerate() {
        x ^= seed[i % seed.len()].wrapping_add(i as u64);
        x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(23);
        *w = x;
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Every backend against the `argon2` crate on random small parameters: both variants,
    /// 1–3 passes, 1–4 lanes, memory from the minimum 8p up to 8p + 300 KiB (so also sizes that
    /// are not a multiple of 4p), random password, salt and tag lengths (also over 64 bytes,
    /// the long form of H').
    #[test]
    fn differential_vs_crate(
        id in any::<bool>(),
        time in 1u32..=3,
        lanes in 1u32..=4,
        extra in 0u32..300,
        password in proptest::collection::vec(any::<u8>(), 0..80),
        salt in proptest::collection::vec(any::<u8>(), 8..40),
        len in 4usize..150,
    ) {
        let p = Params {
            variant: if id { Variant::Id } else { Variant::I },
            time,
            memory_kib: 8 * lanes + extra,
            lanes,
        };
        let want = crate_hash(&p, &password, &salt, &[], &[], len);
        for b in backends() {
            let mut out = vec![0u8; len];
            hash_with(&p, b, &password, &salt, &[], &[], &mut out).unwrap();
            prop_assert_eq!(&out, &want, "{:?} {:?}", p, b);
        }
    }

    /// The AVX2 compression function against the portable one on random blocks.
    #[test]
    fn avx2_block_vs_portable(
        a in proptest::collection::vec(any::<u64>(), 1..8),
        b in proptest::collection::vec(any::<u64>(), 1..8),
        c in proptest::collection::vec(any::<u64>(), 1..8),
        with_xor in any::<bool>(),
    ) {
        #[cfg(target_arch = "x86_64")]
        if accelerated() {
            let (prev, refb, next0) = (block_from(&a), block_from(&b), block_from(&c));
            let mut want = next0;
            portable::fill_block(&prev, &refb, &mut want, with_xor);
            let mut got = next0;
            avx2::fill_block_test(&prev, &refb, &mut got, with_xor);
            prop_assert_eq!(&got.0[..], &want.0[..]);
        }
        let _ = (a, b, c, with_xor);
    }
}

/// Larger memories with several lanes (segments of many address blocks).
#[test]
fn differential_larger() {
    for (variant, time, memory_kib, lanes) in [
        (Variant::Id, 2, 4096, 2),
        (Variant::I, 1, 3000, 3),
        (Variant::Id, 1, 2048, 1),
        (Variant::Id, 3, 1030, 4),
    ] {
        let p = Params {
            variant,
            time,
            memory_kib,
            lanes,
        };
        let want = crate_hash(&p, b"password", b"somesaltsomesalt", &[], &[], 64);
        for b in backends() {
            let mut out = vec![0u8; 64];
            hash_with(&p, b, b"password", b"somesaltsomesalt", &[], &[], &mut out).unwrap();
            assert_eq!(out, want, "{p:?} {b:?}");
        }
    }
}

/// H' against the crate's use of it: tags of every length 4–300 through the whole hash.
#[test]
fn tag_lengths() {
    let p = Params {
        variant: Variant::Id,
        time: 1,
        memory_kib: 16,
        lanes: 2,
    };
    for len in (4..=130).chain([192, 255, 256, 300]) {
        let mut out = vec![0u8; len];
        hash(&p, b"pw", b"saltsalt", &mut out).unwrap();
        assert_eq!(
            out,
            crate_hash(&p, b"pw", b"saltsalt", &[], &[], len),
            "{len}"
        );
    }
}

/// Timing at cryptsetup's default cost (1 GiB, t = 4, p = 2), against the crate; release mode:
/// `cargo test --release -p luks2-accel -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing() {
    let p = Params {
        variant: Variant::Id,
        time: 4,
        memory_kib: 1 << 20,
        lanes: 2,
    };
    let mut out = [0u8; 64];
    let only_auto = std::env::var_os("TIMING_AUTO_ONLY").is_some();
    for b in if only_auto {
        vec![Backend::Auto]
    } else {
        backends()
    } {
        let t = std::time::Instant::now();
        hash_with(&p, b, b"pw", b"saltsaltsaltsalt", &[], &[], &mut out).unwrap();
        eprintln!("{b:?}: {:.3} s", t.elapsed().as_secs_f64());
    }
}

/// This thread's CPU time in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Per-block cost (thread CPU time) with a cache-resident memory (256 KiB, 2000 passes, one
/// lane, so all on this thread), against the crate:
/// `cargo test --release -p luks2-accel -- --ignored --nocapture per_block`.
#[test]
#[ignore]
fn per_block() {
    let p = Params {
        variant: Variant::Id,
        time: 2000,
        memory_kib: 256,
        lanes: 1,
    };
    let blocks = 256.0 * 2000.0;
    let mut out = [0u8; 32];
    for _ in 0..2 {
        for b in backends() {
            let t = thread_cpu();
            hash_with(&p, b, b"pw", b"saltsaltsaltsalt", &[], &[], &mut out).unwrap();
            eprintln!("{b:?}: {:.0} ns/block", (thread_cpu() - t) * 1e9 / blocks);
        }
        let t = thread_cpu();
        let _ = crate_hash(&p, b"pw", b"saltsaltsaltsalt", &[], &[], 32);
        eprintln!(
            "argon2 crate: {:.0} ns/block",
            (thread_cpu() - t) * 1e9 / blocks
        );
    }
}

/// The BLAKE2b hashers wipe themselves on drop: blake2's `zeroize` feature is on (they hold
/// H0, the password and short tags). `Blake2b512` is `{ core: CtOutWrapper<Blake2bVarCore>,
/// buffer: Buffer<Blake2bVarCore> }` (digest's `buffer_ct_variable!`), both checked here.
#[test]
fn blake2_hashers_wipe_on_drop() {
    use blake2::digest::block_api::{Buffer, CtOutWrapper};
    use blake2::digest::consts::U64;
    fn wipes<T: zeroize::ZeroizeOnDrop>() {}
    wipes::<blake2::Blake2bVarCore>();
    wipes::<CtOutWrapper<blake2::Blake2bVarCore, U64>>();
    wipes::<Buffer<blake2::Blake2bVarCore>>();
}

fn instance(variant: Variant, time: u32, memory_kib: u32, lanes: u32) -> Instance {
    let p = Params {
        variant,
        time,
        memory_kib,
        lanes,
    };
    Instance::new(&p, b"saltsalt", 32).unwrap()
}

/// Every reference the algorithm picks passes `check_reference` (no false alarm), over
/// every block of small instances and many pseudo-random words.
#[test]
fn references_pass_the_check() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for (lanes, mem) in [(1, 8), (2, 16), (3, 48), (4, 256), (1, 64)] {
        let inst = instance(Variant::Id, 3, mem, lanes);
        for pass in 0..3 {
            for slice in 0..SLICES {
                for lane in 0..lanes {
                    let first = if pass == 0 && slice == 0 { 2 } else { 0 };
                    for i in first..inst.seg_len {
                        for _ in 0..200 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            for rand in [x, 0, u64::MAX, x & 0xFFFF_FFFF, x << 32] {
                                let (l, c) = inst.reference(pass, slice, lane, i, rand);
                                assert_eq!(
                                    inst.check_reference(pass, slice, lane, i, l, c),
                                    Ok(()),
                                    "pass {pass} slice {slice} lane {lane} i {i} ref {l}/{c}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// References that would race with another lane thread, or read the block being written or
/// its predecessor, are refused.
#[test]
fn bad_references_are_errors() {
    // 2 lanes of 16 blocks: segments of 4.
    let inst = instance(Variant::Id, 2, 32, 2);
    let bad = |pass, slice, lane, i, l, c| {
        assert_eq!(
            inst.check_reference(pass, slice, lane, i, l, c),
            Err(Error::Internal),
            "pass {pass} slice {slice} lane {lane} i {i} ref {l}/{c}"
        );
    };
    // Another lane's current segment (slice 1: columns 4..8), any pass.
    for c in 4..8 {
        bad(0, 1, 0, 1, 1, c);
        bad(1, 1, 0, 1, 1, c);
    }
    // First pass: another lane's later (not yet written) columns.
    for c in 8..16 {
        bad(0, 1, 0, 1, 1, c);
    }
    // Same lane: the current block (column 5) and its predecessor (4).
    bad(1, 1, 0, 1, 0, 5);
    bad(1, 1, 0, 1, 0, 4);
    // Column 0 of a later pass: its predecessor is the lane's last block.
    bad(1, 0, 0, 0, 0, 0);
    bad(1, 0, 0, 0, 0, 15);
    // Outside the memory.
    bad(1, 1, 0, 1, 2, 0);
    bad(1, 1, 0, 1, 0, 16);
    // Fine: the other lane's finished segments, this lane's earlier blocks.
    let ok = |pass, slice, lane, i, l, c| {
        assert_eq!(inst.check_reference(pass, slice, lane, i, l, c), Ok(()));
    };
    ok(0, 1, 0, 1, 1, 3);
    ok(1, 1, 0, 1, 1, 12);
    ok(1, 1, 0, 2, 0, 4);
    ok(1, 0, 0, 0, 0, 14);
}
