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
pub(super) fn thread_cpu() -> f64 {
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
