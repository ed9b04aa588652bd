#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use super::*;
use aes::cipher::{consts::U16, BlockCipherDecrypt, BlockCipherEncrypt, BlockSizeUser, KeyInit};
use proptest::prelude::*;

/// Textbook XTS on the `aes` crate, one block at a time.
fn reference(key: &[u8], data: &mut [u8], iv: &[u8; 16], dir: Dir) {
    fn run<
        C: BlockCipherEncrypt + BlockCipherDecrypt + KeyInit + BlockSizeUser<BlockSize = U16>,
    >(
        k1: &[u8],
        k2: &[u8],
        data: &mut [u8],
        iv: &[u8; 16],
        dir: Dir,
    ) {
        let c1 = C::new_from_slice(k1).unwrap();
        let c2 = C::new_from_slice(k2).unwrap();
        let mut t = (*iv).into();
        c2.encrypt_block(&mut t);
        let mut t = u128::from_le_bytes(t.into());
        for b in data.chunks_exact_mut(16) {
            let mut x = (u128::from_le_bytes(b.try_into().unwrap()) ^ t)
                .to_le_bytes()
                .into();
            match dir {
                Dir::Encrypt => c1.encrypt_block(&mut x),
                Dir::Decrypt => c1.decrypt_block(&mut x),
            }
            let x: [u8; 16] = x.into();
            b.copy_from_slice(&(u128::from_le_bytes(x) ^ t).to_le_bytes());
            t = (t << 1) ^ ((t >> 127) * 0x87);
        }
    }
    let (k1, k2) = key.split_at(key.len() / 2);
    match key.len() {
        32 => run::<aes::Aes128>(k1, k2, data, iv, dir),
        64 => run::<aes::Aes256>(k1, k2, data, iv, dir),
        _ => panic!("key size"),
    }
}

fn skip() -> bool {
    if !available() {
        eprintln!("skipped: no VAES/VPCLMULQDQ on this CPU");
        return true;
    }
    false
}

/// IEEE 1619-2007 Annex B vector 1 (AES-128, zero keys, zero tweak, 32 zero bytes).
#[test]
fn ieee1619_vector1() {
    if skip() {
        return;
    }
    let x = Xts::new(&[0u8; 32]).unwrap();
    let mut d = [0u8; 32];
    x.crypt_unit(&mut d, &[0; 16], Dir::Encrypt).unwrap();
    assert_eq!(
        hex::encode(d),
        "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e"
    );
    x.crypt_unit(&mut d, &[0; 16], Dir::Decrypt).unwrap();
    assert_eq!(d, [0u8; 32]);
}

/// FIPS 197 Appendix C: the expanded schedules end in the known last round keys
/// (C.1: AES-128 key 000102..0f; C.3: AES-256 key 000102..1f).
#[test]
fn key_schedule_known_answers() {
    if skip() {
        return;
    }
    let k128: Vec<u8> = (0..16).chain(0..16).collect();
    let x = Xts::new(&k128).unwrap();
    let last = x.round_keys().last().unwrap().to_le_bytes();
    assert_eq!(hex::encode(last), "13111d7fe3944a17f307a78b4d2b30c5");
    let k256: Vec<u8> = (0..32).chain(0..32).collect();
    let x = Xts::new(&k256).unwrap();
    let last = x.round_keys().last().unwrap().to_le_bytes();
    assert_eq!(hex::encode(last), "24fc79ccbf0979e9371ac23c6d68de36");
}

#[test]
fn refuses_partial_blocks_and_other_key_sizes() {
    if skip() {
        return;
    }
    assert!(Xts::new(&[0u8; 48]).is_none());
    assert!(Xts::new(&[0u8; 16]).is_none());
    let x = Xts::new(&[1u8; 64]).unwrap();
    let mut d = [0u8; 17];
    assert_eq!(
        x.crypt_unit(&mut d, &[0; 16], Dir::Decrypt),
        Err(Error::NotBlocks)
    );
    let mut e: [u8; 0] = [];
    assert_eq!(x.crypt_unit(&mut e, &[0; 16], Dir::Decrypt), Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Against textbook XTS on the `aes` crate: random keys (both sizes), IVs (also with the
    /// top bit set, so the tweak doubling carries), lengths from 0 to 600 blocks (whole groups
    /// of 16 and tails), both directions; and decrypt ∘ encrypt = identity.
    #[test]
    fn differential_vs_aes_crate(
        big in any::<bool>(),
        key in proptest::collection::vec(any::<u8>(), 64),
        iv in any::<[u8; 16]>(),
        data in proptest::collection::vec(any::<u8>(), 0..600).prop_map(|v| {
            let mut d = Vec::new();
            for b in v { d.extend_from_slice(&[b; 16]); }
            d
        }),
        salt in any::<u64>(),
    ) {
        if !available() {
            return Ok(());
        }
        let key = if big { &key[..] } else { &key[..32] };
        let mut data = data;
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= (salt.rotate_left(i as u32 % 64) as u8).wrapping_add(i as u8);
        }
        let x = Xts::new(key).unwrap();
        for dir in [Dir::Encrypt, Dir::Decrypt] {
            let mut want = data.clone();
            reference(key, &mut want, &iv, dir);
            let mut got = data.clone();
            x.crypt_unit(&mut got, &iv, dir).unwrap();
            prop_assert_eq!(&got, &want, "{:?} {} bytes", dir, data.len());
        }
        let mut round = data.clone();
        x.crypt_unit(&mut round, &iv, Dir::Encrypt).unwrap();
        x.crypt_unit(&mut round, &iv, Dir::Decrypt).unwrap();
        prop_assert_eq!(round, data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    /// Several units in one call (tweaks computed in batches of 8) equal unit-by-unit textbook
    /// XTS: 1–20 units of 1–80 blocks, both key sizes and directions.
    #[test]
    fn units_equal_unit_by_unit(
        big in any::<bool>(),
        key in proptest::collection::vec(any::<u8>(), 64),
        blocks in 1usize..80,
        ivs in proptest::collection::vec(any::<[u8; 16]>(), 1..20),
        seed in any::<u8>(),
    ) {
        if !available() {
            return Ok(());
        }
        let key = if big { &key[..] } else { &key[..32] };
        let unit = blocks * 16;
        let data: Vec<u8> = (0..unit * ivs.len()).map(|i| (i as u8).wrapping_mul(seed | 1)).collect();
        let x = Xts::new(key).unwrap();
        for dir in [Dir::Encrypt, Dir::Decrypt] {
            let mut want = data.clone();
            for (u, iv) in want.chunks_exact_mut(unit).zip(ivs.iter()) {
                reference(key, u, iv, dir);
            }
            let mut got = data.clone();
            x.crypt_units(&mut got, unit, &ivs, dir).unwrap();
            prop_assert_eq!(&got, &want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Units of every size from 16 to 4096 bytes (1–256 blocks: whole groups of 16, odd
    /// counts, single blocks) and 1–17 units per call (one tweak chain, batches of 8, a partial
    /// last batch) equal textbook XTS unit by unit, both key sizes and directions.
    #[test]
    fn units_of_16_to_4096_bytes(
        big in any::<bool>(),
        key in proptest::collection::vec(any::<u8>(), 64),
        blocks in 1usize..=256,
        ivs in proptest::collection::vec(any::<[u8; 16]>(), 1..=17),
        seed in any::<u64>(),
    ) {
        if !available() {
            return Ok(());
        }
        let key = if big { &key[..] } else { &key[..32] };
        let unit = blocks * 16;
        let data: Vec<u8> = (0..unit * ivs.len())
            .map(|i| (seed.rotate_left(i as u32 % 64) as u8) ^ (i as u8))
            .collect();
        let x = Xts::new(key).unwrap();
        for dir in [Dir::Encrypt, Dir::Decrypt] {
            let mut want = data.clone();
            for (u, iv) in want.chunks_exact_mut(unit).zip(ivs.iter()) {
                reference(key, u, iv, dir);
            }
            let mut got = data.clone();
            x.crypt_units(&mut got, unit, &ivs, dir).unwrap();
            prop_assert_eq!(&got, &want, "{:?}, {} units of {} bytes", dir, ivs.len(), unit);
        }
    }
}

/// The vector tweak arithmetic against repeated scalar doubling (`mul_alpha`).
#[cfg(target_arch = "x86_64")]
mod tweak_math {
    use super::super::imp::{first_tweaks, mul_alpha, mul_alpha_bits, mul_alpha_bytes};
    use proptest::prelude::*;
    use std::arch::x86_64::*;

    fn lanes(v: __m256i) -> [u128; 2] {
        // SAFETY: `__m256i` is 32 plain bytes; on x86-64 the low lane comes first.
        unsafe { std::mem::transmute::<__m256i, [u128; 2]>(v) }
    }

    fn pair(a: u128, b: u128) -> __m256i {
        // SAFETY: as for `lanes`, the other way.
        unsafe { std::mem::transmute::<[u128; 2], __m256i>([a, b]) }
    }

    fn doubled(mut t: u128, n: usize) -> u128 {
        for _ in 0..n {
            t = mul_alpha(t);
        }
        t
    }

    fn features() -> bool {
        super::available()
    }

    /// Tweaks with the top bits set (every reduction path), besides random ones.
    fn tweak() -> impl Strategy<Value = u128> {
        prop_oneof![
            any::<u128>(),
            any::<u128>().prop_map(|t| t | (u128::MAX << 64)),
            Just(u128::MAX),
            Just(1u128 << 127),
            Just(1u128),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        /// `first_tweaks`: register j = (t·α^2j, t·α^(2j+1)).
        #[test]
        fn first_tweaks_are_doublings(t in tweak()) {
            if !features() {
                return Ok(());
            }
            // SAFETY: `features()` checked AVX2 and VPCLMULQDQ.
            let r = unsafe { first_tweaks(t) };
            for (j, reg) in r.iter().enumerate() {
                prop_assert_eq!(lanes(*reg), [doubled(t, 2 * j), doubled(t, 2 * j + 1)], "register {}", j);
            }
        }

        /// Multiplication by α^16 (the group step) and α^8, α^24, α^56 by byte shifts, in both
        /// lanes independently.
        #[test]
        fn byte_steps_are_doublings(a in tweak(), b in tweak()) {
            if !features() {
                return Ok(());
            }
            // SAFETY: `features()` checked AVX2 and VPCLMULQDQ.
            unsafe {
                let poly = _mm256_set_epi64x(0, 0x87, 0, 0x87);
                let v = pair(a, b);
                prop_assert_eq!(lanes(mul_alpha_bytes::<2, 14>(v, poly)), [doubled(a, 16), doubled(b, 16)]);
                prop_assert_eq!(lanes(mul_alpha_bytes::<1, 15>(v, poly)), [doubled(a, 8), doubled(b, 8)]);
                prop_assert_eq!(lanes(mul_alpha_bytes::<3, 13>(v, poly)), [doubled(a, 24), doubled(b, 24)]);
                prop_assert_eq!(lanes(mul_alpha_bytes::<7, 9>(v, poly)), [doubled(a, 56), doubled(b, 56)]);
            }
        }

        /// Multiplication by α^k by bit shifts, every k in 1..=63.
        #[test]
        fn bit_steps_are_doublings(a in tweak(), b in tweak()) {
            if !features() {
                return Ok(());
            }
            for k in 1..64i32 {
                // SAFETY: `features()` checked AVX2 and VPCLMULQDQ.
                let got = unsafe {
                    let poly = _mm256_set_epi64x(0, 0x87, 0, 0x87);
                    mul_alpha_bits(pair(a, b), _mm_cvtsi32_si128(k), _mm_cvtsi32_si128(64 - k), poly)
                };
                prop_assert_eq!(lanes(got), [doubled(a, k as usize), doubled(b, k as usize)], "k = {}", k);
            }
        }
    }
}

#[test]
fn units_length_errors() {
    if skip() {
        return;
    }
    let x = Xts::new(&[3u8; 32]).unwrap();
    let mut d = [0u8; 64];
    assert_eq!(
        x.crypt_units(&mut d, 32, &[[0; 16]; 2], Dir::Decrypt),
        Ok(())
    );
    assert_eq!(
        x.crypt_units(&mut d, 32, &[[0; 16]; 3], Dir::Decrypt),
        Err(Error::NotBlocks)
    );
    assert_eq!(
        x.crypt_units(&mut d, 0, &[], Dir::Decrypt),
        Err(Error::NotBlocks)
    );
    assert_eq!(
        x.crypt_units(&mut d, 24, &[[0; 16]; 2], Dir::Decrypt),
        Err(Error::NotBlocks)
    );
    assert_eq!(x.crypt_units(&mut [], 16, &[], Dir::Decrypt), Ok(()));
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

/// Throughput of 4 KiB units per CPU-second, release mode:
/// `cargo test --release -p luks2-accel -- --ignored --nocapture xts_throughput`.
#[test]
#[ignore]
fn xts_throughput() {
    if skip() {
        return;
    }
    // 16 MiB (from memory) and 16 KiB (in L1, like `openssl speed -bytes 16384`).
    for (len, reps) in [(16usize << 20, 16), (16 << 10, 16 << 10)] {
        for klen in [32usize, 64] {
            let x = Xts::new(&vec![7u8; klen]).unwrap();
            let mut data = vec![1u8; len];
            for dir in [Dir::Decrypt, Dir::Encrypt] {
                let t = thread_cpu();
                for _ in 0..reps {
                    for (i, u) in data.chunks_exact_mut(4096).enumerate() {
                        let mut iv = [0u8; 16];
                        iv[..8].copy_from_slice(&(i as u64).to_le_bytes());
                        x.crypt_unit(u, &iv, dir).unwrap();
                    }
                }
                let s = thread_cpu() - t;
                eprintln!(
                    "AES-{} XTS {dir:?} {} KiB: {:.2} GB/s",
                    klen * 4,
                    len >> 10,
                    reps as f64 * data.len() as f64 / s / 1e9
                );
            }
        }
    }
}

/// The kernel against OpenSSL's AES-XTS in the same process, alternating, so that both see
/// the same machine state (the `kat` throughput test and `openssl speed` run one after the
/// other, and on a shared machine their ratio moves with the load). OpenSSL decrypts one
/// 16 KiB unit per call from L1, as `openssl speed -evp aes-…-xts -decrypt -bytes 16384`
/// does; the kernel decrypts 4 KiB units, 4 per call as `luks2` passes them, from a buffer of
/// `XTS_BYTES` bytes (default 16 KiB; 67108864 for what the `kat` test streams). Both outputs
/// are checked equal first. Needs `libcrypto.so.3` (skipped without it):
/// `cargo test --release -p luks2-accel -- --ignored --nocapture xts_vs_openssl`.
#[test]
#[ignore]
fn xts_vs_openssl() {
    use std::ffi::{c_int, c_void, CStr};
    type New = unsafe extern "C" fn() -> *mut c_void;
    type Free = unsafe extern "C" fn(*mut c_void);
    type Cipher = unsafe extern "C" fn() -> *const c_void;
    type Init = unsafe extern "C" fn(
        *mut c_void,
        *const c_void,
        *const c_void,
        *const u8,
        *const u8,
    ) -> c_int;
    type Update = unsafe extern "C" fn(*mut c_void, *mut u8, *mut c_int, *const u8, c_int) -> c_int;
    if skip() {
        return;
    }
    // SAFETY: dlopen with a NUL-terminated name; the handle is checked and never closed.
    let lib = unsafe { libc::dlopen(c"libcrypto.so.3".as_ptr(), libc::RTLD_NOW) };
    if lib.is_null() {
        eprintln!("skipped: no libcrypto.so.3");
        return;
    }
    let sym = |name: &CStr| {
        // SAFETY: `lib` is a valid handle and `name` NUL-terminated.
        let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
        assert!(!p.is_null(), "{name:?} not in libcrypto");
        p
    };
    // SAFETY: these are OpenSSL 3's EVP functions, whose C signatures the types above copy.
    let (new, free, init, update, aes128, aes256) = unsafe {
        (
            std::mem::transmute::<*mut c_void, New>(sym(c"EVP_CIPHER_CTX_new")),
            std::mem::transmute::<*mut c_void, Free>(sym(c"EVP_CIPHER_CTX_free")),
            std::mem::transmute::<*mut c_void, Init>(sym(c"EVP_DecryptInit_ex")),
            std::mem::transmute::<*mut c_void, Update>(sym(c"EVP_DecryptUpdate")),
            std::mem::transmute::<*mut c_void, Cipher>(sym(c"EVP_aes_128_xts")),
            std::mem::transmute::<*mut c_void, Cipher>(sym(c"EVP_aes_256_xts")),
        )
    };
    let bytes: usize = std::env::var("XTS_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16 << 10)
        .max(16 << 10)
        / 16384
        * 16384;
    const UNIT: usize = 16384;
    let rounds = 15;
    for (klen, cipher) in [(32usize, aes128), (64, aes256)] {
        // OpenSSL refuses equal key halves.
        let key: Vec<u8> = (0..klen)
            .map(|i| (i as u8).wrapping_mul(29) ^ 0x5c)
            .collect();
        let x = Xts::new(&key).unwrap();
        // SAFETY: a fresh context, keyed with `klen` bytes of key and a 16-byte IV.
        let ctx = unsafe { new() };
        assert!(!ctx.is_null());
        let iv = [0u8; 16];
        // SAFETY: as above; the cipher function takes no arguments.
        let ok = unsafe { init(ctx, cipher(), std::ptr::null(), key.as_ptr(), iv.as_ptr()) };
        assert_eq!(ok, 1);
        let input: Vec<u8> = (0..UNIT).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut out = vec![0u8; UNIT];
        let mut n: c_int = 0;
        // SAFETY: `out` and `input` hold `UNIT` bytes; XTS writes as many as it reads.
        let run = |out: &mut [u8], n: &mut c_int| unsafe {
            update(ctx, out.as_mut_ptr(), n, input.as_ptr(), UNIT as c_int)
        };
        assert_eq!(run(&mut out, &mut n), 1);
        let mut mine = input.clone();
        x.crypt_unit(&mut mine, &iv, Dir::Decrypt).unwrap();
        assert_eq!(mine, out, "AES-{} XTS differs from OpenSSL", klen * 4);

        let mut data = vec![0x3cu8; bytes];
        let calls = (64usize << 20) / bytes.max(1);
        let reps = (bytes * calls / UNIT).max(1);
        let ivs: Vec<[u8; 16]> = (0..4u8).map(|i| [i; 16]).collect();
        let (mut best_t, mut best_o) = (f64::MAX, f64::MAX);
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            let t = thread_cpu();
            for _ in 0..calls.max(1) {
                for c in data.chunks_exact_mut(UNIT) {
                    x.crypt_units(c, 4096, &ivs, Dir::Decrypt).unwrap();
                }
            }
            let st = thread_cpu() - t;
            let t = thread_cpu();
            for _ in 0..reps {
                run(&mut out, &mut n);
            }
            let so = thread_cpu() - t;
            let (gt, go) = (
                (bytes * calls.max(1)) as f64 / st / 1e9,
                (reps * UNIT) as f64 / so / 1e9,
            );
            best_t = best_t.min(st / (bytes * calls.max(1)) as f64);
            best_o = best_o.min(so / (reps * UNIT) as f64);
            ratios.push(gt / go);
        }
        // SAFETY: `ctx` came from `EVP_CIPHER_CTX_new` and is not used after this.
        unsafe { free(ctx) };
        ratios.sort_by(f64::total_cmp);
        eprintln!(
            "AES-{} XTS decrypt, {} KiB: tazpod best {:.2} GB/s, OpenSSL best {:.2} GB/s; \
             paired ratio min {:.2} median {:.2} max {:.2}",
            klen * 4,
            bytes >> 10,
            1.0 / best_t / 1e9,
            1.0 / best_o / 1e9,
            ratios[0],
            ratios[ratios.len() / 2],
            ratios[ratios.len() - 1]
        );
    }
}

/// The 256-bit schedules the kernel reads hold each round key in both lanes.
#[test]
fn wide_schedules_match() {
    if skip() {
        return;
    }
    for klen in [32usize, 64] {
        let key: Vec<u8> = (0..klen as u8).map(|b| b.wrapping_mul(37)).collect();
        let x = Xts::new(&key).unwrap();
        let s = &*x.keys;
        for i in 0..=x.rounds {
            assert_eq!(s.wide_enc[i].0, [s.enc[i]; 2]);
            assert_eq!(s.wide_dec[i].0, [s.dec[i]; 2]);
        }
        assert_eq!(std::mem::align_of::<Wide>(), 32);
    }
}

/// Off x86-64 there is no `Xts`, so nothing can pass the data through unchanged.
#[cfg(not(target_arch = "x86_64"))]
#[test]
fn no_xts_off_x86_64() {
    assert!(Xts::new(&[0; 64]).is_none());
}
