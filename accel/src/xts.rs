//! AES-XTS (IEEE 1619, whole 16-byte blocks, no ciphertext stealing) with VAES and
//! VPCLMULQDQ: two blocks per `ymm` register, 16 blocks in flight, the tweaks of the next 16
//! blocks computed in SIMD lanes (multiplication by α^16: two byte shifts and one carry-less
//! multiply) while the rounds run, the last round key XORed with the tweak so the output XOR
//! costs nothing. A unit's first 16 tweaks are 8 independent multiplications of its first
//! two (not a chain of 15 doublings); the tweaks of up to 8 units are encrypted together; the
//! round keys are read from the [`Xts`] (kept there in both lanes), so a call copies no key
//! schedule; the data is prefetched 2 KiB ahead.
//!
//! Available for AES-128 and AES-256 (XTS keys of 32 and 64 bytes) on CPUs with AES-NI, VAES,
//! VPCLMULQDQ and AVX2 ([`Xts::new`] returns `None` otherwise, and callers use their portable
//! path). The key schedule is expanded here with AES-NI (`aeskeygenassist`, `aesimc`) and is
//! tested against the `aes` crate; round keys are wiped on drop.

use zeroize::Zeroize;

/// Most round keys (AES-256: 14 rounds + 1).
const MAX_KEYS: usize = 15;

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The data is not a whole number of 16-byte blocks, or not the given number of units.
    NotBlocks,
    /// An internal inconsistency (a key schedule of the wrong size); nothing was processed.
    Internal,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotBlocks => write!(f, "xts data must be a whole number of 16-byte blocks"),
            Error::Internal => write!(f, "internal error in the xts kernel (bad key schedule)"),
        }
    }
}

impl std::error::Error for Error {}

/// Direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Encrypt.
    Encrypt,
    /// Decrypt.
    Decrypt,
}

/// Whether [`Xts::new`] can return a cipher on this CPU.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("aes")
            && std::is_x86_feature_detected!("pclmulqdq")
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("vaes")
            && std::is_x86_feature_detected!("vpclmulqdq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One round key in both 128-bit lanes of a `ymm` register, aligned for a 256-bit load (the
/// VAES kernel reads it from here, once per call, not a broadcast copy made per call).
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Wide([u128; 2]);

/// The key schedules of an [`Xts`], on the heap, so that moving an `Xts` copies no key
/// material. Wiped on drop.
#[derive(Default)]
struct Schedules {
    /// Data key, encryption.
    enc: [u128; MAX_KEYS],
    /// Data key, decryption (`aesdec` order).
    dec: [u128; MAX_KEYS],
    /// Tweak key, encryption.
    tweak: [u128; MAX_KEYS],
    /// `enc` and `dec` in both lanes.
    wide_enc: [Wide; MAX_KEYS],
    wide_dec: [Wide; MAX_KEYS],
}

impl Drop for Schedules {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.dec.zeroize();
        self.tweak.zeroize();
        for w in self.wide_enc.iter_mut().chain(self.wide_dec.iter_mut()) {
            w.0.zeroize();
        }
    }
}

/// An XTS key: the data key's encryption and decryption schedules (also in both lanes of a
/// 256-bit register) and the tweak key's encryption schedule, each as little-endian `u128`
/// round keys. Wiped on drop.
///
/// Off x86-64 the type is uninhabited: no value can exist, so no call can leave data
/// unencrypted.
pub struct Xts {
    rounds: usize,
    keys: Box<Schedules>,
    #[cfg(not(target_arch = "x86_64"))]
    never: std::convert::Infallible,
}

impl std::fmt::Debug for Xts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Xts {{ rounds: {}, .. }}", self.rounds)
    }
}

impl Xts {
    /// Keys XTS with `key` = data key ‖ tweak key (32 bytes: AES-128, 64 bytes: AES-256).
    /// `None` for other sizes or when the CPU lacks the instructions ([`available`]).
    pub fn new(key: &[u8]) -> Option<Xts> {
        if !available() {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let half = key.len() / 2;
            let (k1, k2) = key.split_at(half);
            let rounds = match key.len() {
                32 => 10,
                64 => 14,
                _ => return None,
            };
            let mut x = Xts {
                rounds,
                keys: Box::default(),
            };
            let s = &mut *x.keys;
            // SAFETY: the AES-NI feature was detected by `available()` above.
            unsafe {
                imp::expand(k1, &mut s.enc)?;
                imp::expand(k2, &mut s.tweak)?;
                imp::invert(&s.enc, &mut s.dec, rounds);
            }
            for (w, k) in s.wide_enc.iter_mut().zip(s.enc.iter()) {
                *w = Wide([*k; 2]);
            }
            for (w, k) in s.wide_dec.iter_mut().zip(s.dec.iter()) {
                *w = Wide([*k; 2]);
            }
            Some(x)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = key;
            None
        }
    }

    /// Encrypts or decrypts one XTS data unit (`data`, a whole number of 16-byte blocks) whose
    /// tweak is the encryption of `iv` under the tweak key.
    pub fn crypt_unit(&self, data: &mut [u8], iv: &[u8; 16], dir: Dir) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len();
        self.crypt_units(data, len, std::slice::from_ref(iv), dir)
    }

    /// Encrypts or decrypts consecutive data units of `unit_len` bytes (a whole number of
    /// 16-byte blocks); unit `i` has the IV `ivs[i]`, and `data` holds exactly `ivs.len()`
    /// units. The tweaks of several units are computed together.
    pub fn crypt_units(
        &self,
        data: &mut [u8],
        unit_len: usize,
        ivs: &[[u8; 16]],
        dir: Dir,
    ) -> Result<(), Error> {
        if unit_len == 0
            || !unit_len.is_multiple_of(16)
            || unit_len.checked_mul(ivs.len()) != Some(data.len())
        {
            return Err(Error::NotBlocks);
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: an `Xts` exists only if `available()` held when it was made, and CPU
            // features do not disappear; the lengths were checked above.
            unsafe { imp::units(self, data, unit_len, ivs, dir) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            // No `Xts` exists off x86-64 (`new` returns `None`); the data is never left as is.
            let _ = dir;
            match self.never {}
        }
    }

    /// The expanded data-key encryption schedule (for tests).
    #[cfg(test)]
    fn round_keys(&self) -> &[u128] {
        self.keys.enc.get(..=self.rounds).unwrap_or_default()
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::*;
    use std::arch::x86_64::*;

    #[inline(always)]
    fn to_m128(t: u128) -> __m128i {
        let lo = u64::try_from(t & u128::from(u64::MAX)).unwrap_or_default();
        let hi = u64::try_from(t >> 64).unwrap_or_default();
        // SAFETY: SSE2 is part of x86-64.
        unsafe { _mm_set_epi64x(hi as i64, lo as i64) }
    }

    #[inline(always)]
    fn from_m128(x: __m128i) -> u128 {
        // Through registers, not a byte buffer on the stack (round keys and tweaks pass here).
        // SAFETY: SSE2 is part of x86-64.
        let (lo, hi) = unsafe {
            (
                _mm_cvtsi128_si64(x),
                _mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x)),
            )
        };
        (u128::from(hi as u64) << 64) | u128::from(lo as u64)
    }

    /// Types for which all-zero bytes are a valid value (SIMD registers and arrays of them).
    pub(super) trait Zeroable: Sized {}
    impl Zeroable for __m128i {}
    impl Zeroable for __m256i {}
    impl<T: Zeroable, const N: usize> Zeroable for [T; N] {}

    /// Overwrites `x` with zeros by a volatile write, which the compiler keeps although the
    /// value is dead (secrets: round keys, tweaks, key words).
    #[inline(always)]
    pub(super) fn wipe<T: Zeroable>(x: &mut T) {
        // SAFETY: `x` is a valid, aligned, writable `T`, and all-zero bytes are a valid `T`
        // (`Zeroable`: SIMD integer vectors and arrays of them, no padding, no invariants).
        unsafe { std::ptr::write_volatile(x, std::mem::zeroed()) };
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }

    /// One step of the key expansion: `k ^ (k << 32) ^ (k << 64) ^ (k << 96) ^ t`.
    #[inline]
    #[target_feature(enable = "aes")]
    fn mix(k: __m128i, t: __m128i) -> __m128i {
        let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        _mm_xor_si128(k, t)
    }

    /// Expands a 16- or 32-byte AES key into `out[0..=rounds]` (FIPS 197 §5.2).
    ///
    /// # Safety
    /// AES-NI is available.
    #[target_feature(enable = "aes")]
    pub(super) unsafe fn expand(key: &[u8], out: &mut [u128; MAX_KEYS]) -> Option<()> {
        // Loaded straight into a register (no copy of the key bytes on the stack).
        let word = |b: &[u8]| -> Option<__m128i> {
            if b.len() != 16 {
                return None;
            }
            // SAFETY: `b` is 16 readable bytes; SSE2 is part of x86-64.
            Some(unsafe { _mm_loadu_si128(b.as_ptr().cast::<__m128i>()) })
        };
        macro_rules! assist {
            ($k:expr, $rcon:literal, $sel:literal) => {
                _mm_shuffle_epi32::<$sel>(_mm_aeskeygenassist_si128::<$rcon>($k))
            };
        }
        match key.len() {
            16 => {
                let mut k = word(key)?;
                let mut rk = [k; 11];
                k = mix(k, assist!(k, 0x01, 0xff));
                rk[1] = k;
                k = mix(k, assist!(k, 0x02, 0xff));
                rk[2] = k;
                k = mix(k, assist!(k, 0x04, 0xff));
                rk[3] = k;
                k = mix(k, assist!(k, 0x08, 0xff));
                rk[4] = k;
                k = mix(k, assist!(k, 0x10, 0xff));
                rk[5] = k;
                k = mix(k, assist!(k, 0x20, 0xff));
                rk[6] = k;
                k = mix(k, assist!(k, 0x40, 0xff));
                rk[7] = k;
                k = mix(k, assist!(k, 0x80, 0xff));
                rk[8] = k;
                k = mix(k, assist!(k, 0x1b, 0xff));
                rk[9] = k;
                k = mix(k, assist!(k, 0x36, 0xff));
                rk[10] = k;
                for (o, r) in out.iter_mut().zip(rk.iter()) {
                    *o = from_m128(*r);
                }
                wipe(&mut rk);
                wipe(&mut k);
            }
            32 => {
                let mut a = word(key.get(..16)?)?;
                let mut b = word(key.get(16..)?)?;
                let mut rk = [a; 15];
                rk[1] = b;
                macro_rules! two {
                    ($i:literal, $rcon:literal) => {
                        a = mix(a, assist!(b, $rcon, 0xff));
                        rk[$i] = a;
                        b = mix(b, assist!(a, 0x00, 0xaa));
                        rk[$i + 1] = b;
                    };
                }
                two!(2, 0x01);
                two!(4, 0x02);
                two!(6, 0x04);
                two!(8, 0x08);
                two!(10, 0x10);
                two!(12, 0x20);
                a = mix(a, assist!(b, 0x40, 0xff));
                rk[14] = a;
                for (o, r) in out.iter_mut().zip(rk.iter()) {
                    *o = from_m128(*r);
                }
                wipe(&mut rk);
                wipe(&mut a);
                wipe(&mut b);
            }
            _ => return None,
        }
        Some(())
    }

    /// The decryption schedule for `aesdec` (the equivalent inverse cipher, FIPS 197 §5.3.5):
    /// the encryption keys in reverse order, the inner ones through InvMixColumns.
    ///
    /// # Safety
    /// AES-NI is available.
    #[target_feature(enable = "aes")]
    pub(super) unsafe fn invert(enc: &[u128; MAX_KEYS], dec: &mut [u128; MAX_KEYS], rounds: usize) {
        let used = enc.get(..=rounds).unwrap_or_default();
        for (i, (d, e)) in dec.iter_mut().zip(used.iter().rev()).enumerate() {
            *d = if i == 0 || i == rounds {
                *e
            } else {
                from_m128(_mm_aesimc_si128(to_m128(*e)))
            };
        }
    }

    /// Multiplies both 128-bit tweaks in `t` by α^(8·`BYTES`) (IEEE 1619 §5.2, applied
    /// 8·`BYTES` times), for `BYTES` = 16 − `TOP` of 1..=7: each 128-bit lane shifts left by
    /// `BYTES` bytes, and the `TOP`.. bytes shifted out (at most 56 bits) are reduced by
    /// x^128 = x^7 + x^2 + x + 1, one carry-less multiply by 0x87 (low qword of `poly`). Four
    /// instructions, none crossing lanes.
    ///
    /// # Safety
    /// AVX2 and VPCLMULQDQ are available.
    #[inline(always)]
    pub(super) unsafe fn mul_alpha_bytes<const BYTES: i32, const TOP: i32>(
        t: __m256i,
        poly: __m256i,
    ) -> __m256i {
        // SAFETY: the caller guarantees the CPU features; no memory is accessed.
        unsafe {
            // The lane's top `BYTES` bytes moved to its bottom.
            let top = _mm256_srli_si256::<TOP>(t);
            let red = _mm256_clmulepi64_epi128::<0x00>(top, poly);
            _mm256_xor_si256(_mm256_slli_si256::<BYTES>(t), red)
        }
    }

    /// Multiplies both 128-bit tweaks in `t` by α^k for a bit count `k` in 1..=63 (given as
    /// shift-count registers `k` and `64 − k`): both qwords shift left by `k`, the `k` bits
    /// leaving the low qword move into the high one, and those leaving the high qword are
    /// reduced by a carry-less multiply by 0x87.
    ///
    /// # Safety
    /// AVX2 and VPCLMULQDQ are available.
    #[inline(always)]
    pub(super) unsafe fn mul_alpha_bits(
        t: __m256i,
        k: __m128i,
        rest: __m128i,
        poly: __m256i,
    ) -> __m256i {
        // SAFETY: the caller guarantees the CPU features; no memory is accessed.
        unsafe {
            let top = _mm256_srl_epi64(t, rest);
            let shifted = _mm256_xor_si256(_mm256_sll_epi64(t, k), _mm256_slli_si256::<8>(top));
            // High qword of `top` (the lane's top `k` bits) times the low qword of `poly`.
            let red = _mm256_clmulepi64_epi128::<0x01>(top, poly);
            _mm256_xor_si256(shifted, red)
        }
    }

    /// `t · α` in plain integer arithmetic.
    #[inline(always)]
    pub(super) fn mul_alpha(t: u128) -> u128 {
        (t << 1) ^ ((t >> 127) * 0x87)
    }

    /// The tweaks of 16 consecutive blocks from the first one, `t`: register `j` holds blocks
    /// 2j (low lane) and 2j + 1, register 0 times α^2j, each computed from register 0 (one
    /// multiplication's latency, not a chain of 15 doublings).
    ///
    /// # Safety
    /// AVX2 and VPCLMULQDQ are available.
    #[inline(always)]
    pub(super) unsafe fn first_tweaks(t: u128) -> [__m256i; 8] {
        // SAFETY: the caller guarantees the CPU features; no memory is accessed.
        unsafe {
            let poly = _mm256_set_epi64x(0, 0x87, 0, 0x87);
            let mut r = [_mm256_setzero_si256(); 8];
            let base = _mm256_set_m128i(to_m128(mul_alpha(t)), to_m128(t));
            // Register j: k = 2j bits, 0 ≤ k < 16.
            for (r, k) in r.iter_mut().zip((0i32..).step_by(2)) {
                *r = if k == 0 {
                    base
                } else {
                    mul_alpha_bits(base, _mm_cvtsi32_si128(k), _mm_cvtsi32_si128(64 - k), poly)
                };
            }
            r
        }
    }

    /// How far ahead of the data being processed to prefetch, in bytes.
    const PREFETCH: usize = 2048;

    /// One direction's round keys for the kernel: the first and last in registers (128- and
    /// 256-bit), the middle ones where [`Xts`] keeps them (read as memory operands or loaded
    /// once per round). The register copies are wiped when this is dropped.
    struct Keys<'a> {
        y0: __m256i,
        ylast: __m256i,
        x0: __m128i,
        xlast: __m128i,
        /// Rounds 1 .. rounds−1 in both lanes.
        ymid: &'a [Wide],
        /// The same as `u128`s.
        xmid: &'a [u128],
    }

    impl Drop for Keys<'_> {
        fn drop(&mut self) {
            wipe(&mut self.y0);
            wipe(&mut self.ylast);
            wipe(&mut self.x0);
            wipe(&mut self.xlast);
        }
    }

    /// The 256-bit value of a [`Wide`] round key.
    ///
    /// # Safety
    /// AVX is available.
    #[inline(always)]
    unsafe fn load_wide(w: &Wide) -> __m256i {
        // SAFETY: `w` is 32 readable bytes aligned to 32 (`repr(align(32))`); the caller
        // guarantees AVX.
        unsafe { _mm256_load_si256(std::ptr::from_ref(w).cast::<__m256i>()) }
    }

    /// Units whose tweaks are computed together (independent AES chains, pipelined).
    const TWEAK_BATCH: usize = 8;

    /// The tweaks of `M` units: their IVs `ivs` (up to `M`) encrypted under the tweak key
    /// (`t0`, `tmid`, `tlast`), the `M` AES chains interleaved round by round, in registers.
    ///
    /// # Safety
    /// AES-NI is available.
    #[inline(always)]
    unsafe fn encrypt_tweaks<const M: usize>(
        ivs: &[[u8; 16]],
        t0: u128,
        tmid: &[u128],
        tlast: u128,
        out: &mut [u128; TWEAK_BATCH],
    ) {
        // SAFETY: the caller guarantees AES-NI; no memory is accessed but through references.
        unsafe {
            let mut t = [_mm_setzero_si128(); M];
            for (t, iv) in t.iter_mut().zip(ivs.iter()) {
                *t = to_m128(u128::from_le_bytes(*iv) ^ t0);
            }
            for k in tmid {
                let k = to_m128(*k);
                for t in t.iter_mut() {
                    *t = _mm_aesenc_si128(*t, k);
                }
            }
            let last = to_m128(tlast);
            for (o, t) in out.iter_mut().zip(t.iter()) {
                *o = from_m128(_mm_aesenclast_si128(*t, last));
            }
            wipe(&mut t);
        }
    }

    /// Consecutive data units of `unit_len` bytes, unit `i` with IV `ivs[i]`.
    ///
    /// # Safety
    /// AES-NI, PCLMULQDQ, AVX2, VAES and VPCLMULQDQ are available; `unit_len % 16 == 0`,
    /// `unit_len > 0` and `data.len() == unit_len · ivs.len()`.
    #[target_feature(enable = "aes,avx2,vaes,vpclmulqdq")]
    pub(super) unsafe fn units(
        x: &Xts,
        data: &mut [u8],
        unit_len: usize,
        ivs: &[[u8; 16]],
        dir: Dir,
    ) -> Result<(), Error> {
        let rounds = x.rounds;
        let s = &*x.keys;
        let (wide, narrow) = match dir {
            Dir::Encrypt => (&s.wide_enc, &s.enc),
            Dir::Decrypt => (&s.wide_dec, &s.dec),
        };
        // First, middle and last round keys of each schedule.
        fn split(k: &[u128], rounds: usize) -> Option<(u128, &[u128], u128)> {
            let (first, rest) = k.get(..=rounds)?.split_first()?;
            let (last, mid) = rest.split_last()?;
            Some((*first, mid, *last))
        }
        let (Some((n0, nmid, nlast)), Some((t0, tmid, tlast)), Some(ymid)) = (
            split(narrow, rounds),
            split(&s.tweak, rounds),
            wide.get(1..rounds),
        ) else {
            return Err(Error::Internal);
        };
        let (Some(w0), Some(wlast)) = (wide.first(), wide.get(rounds)) else {
            return Err(Error::Internal);
        };
        // SAFETY: AVX2 is enabled in this function.
        let keys = unsafe {
            Keys {
                y0: load_wide(w0),
                ylast: load_wide(wlast),
                x0: to_m128(n0),
                xlast: to_m128(nlast),
                ymid,
                xmid: nmid,
            }
        };
        let mut tweaks = [0u128; TWEAK_BATCH];
        for (chunk, civs) in data
            .chunks_mut(unit_len.saturating_mul(TWEAK_BATCH))
            .zip(ivs.chunks(TWEAK_BATCH))
        {
            // One chain when there is one unit (a 4 KiB chunk of 4 KiB sectors), else 8.
            // SAFETY: AES-NI is enabled in this function.
            unsafe {
                if civs.len() == 1 {
                    encrypt_tweaks::<1>(civs, t0, tmid, tlast, &mut tweaks);
                } else {
                    encrypt_tweaks::<TWEAK_BATCH>(civs, t0, tmid, tlast, &mut tweaks);
                }
            }
            for (u, tw) in chunk.chunks_exact_mut(unit_len).zip(tweaks.iter()) {
                // SAFETY: AVX2 etc. are enabled in this function; `u` is whole blocks.
                unsafe { unit(&keys, u, *tw, dir) };
            }
        }
        tweaks.zeroize();
        Ok(())
    }

    /// `N` registers (2·`N` blocks) of `data` with their tweaks `tws`, which are then
    /// advanced by 2·`N` blocks (α^(2N) = α^(8·`BYTES`); `TOP` = 16 − `BYTES`). All `N` AES
    /// chains run round by round: `N` = 8 is what the AES units need (latency 4 × 2 per cycle
    /// on Zen 3) and leaves registers for a round key and the XORs; 12 (24 blocks) and 16
    /// (32 blocks, round-state spills) were measured slower.
    ///
    /// # Safety
    /// AES-NI, AVX2, VAES and VPCLMULQDQ are available; `data.len() == 32 · N`.
    #[inline(always)]
    unsafe fn group<const N: usize, const BYTES: i32, const TOP: i32>(
        keys: &Keys<'_>,
        ymid: &[Wide],
        data: &mut [u8],
        tws: &mut [__m256i; N],
        poly: __m256i,
        dir: Dir,
    ) {
        // SAFETY: the caller guarantees the CPU features; memory accesses are commented below.
        unsafe {
            let (y0, ylast) = (keys.y0, keys.ylast);
            let p = data.as_mut_ptr().cast::<__m256i>();
            let ahead = data.as_ptr().wrapping_add(PREFETCH);
            for line in 0..N / 2 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast::<i8>());
            }
            let mut v = [_mm256_setzero_si256(); N];
            for (j, (v, t)) in v.iter_mut().zip(tws.iter()).enumerate() {
                // `data` is 32·N bytes = N registers; j < N.
                let d = _mm256_loadu_si256(p.add(j));
                *v = _mm256_xor_si256(d, _mm256_xor_si256(*t, y0));
            }
            match dir {
                Dir::Encrypt => {
                    for k in ymid {
                        let k = load_wide(k);
                        for v in v.iter_mut() {
                            *v = _mm256_aesenc_epi128(*v, k);
                        }
                    }
                    for (v, t) in v.iter_mut().zip(tws.iter()) {
                        *v = _mm256_aesenclast_epi128(*v, _mm256_xor_si256(ylast, *t));
                    }
                }
                Dir::Decrypt => {
                    for k in ymid {
                        let k = load_wide(k);
                        for v in v.iter_mut() {
                            *v = _mm256_aesdec_epi128(*v, k);
                        }
                    }
                    for (v, t) in v.iter_mut().zip(tws.iter()) {
                        *v = _mm256_aesdeclast_epi128(*v, _mm256_xor_si256(ylast, *t));
                    }
                }
            }
            for (j, (v, t)) in v.iter().zip(tws.iter_mut()).enumerate() {
                // As for the loads.
                _mm256_storeu_si256(p.add(j), *v);
                *t = mul_alpha_bytes::<BYTES, TOP>(*t, poly);
            }
        }
    }

    /// One data unit whose (encrypted) tweak is `tw`.
    ///
    /// # Safety
    /// AES-NI, PCLMULQDQ, AVX2, VAES and VPCLMULQDQ are available; `data.len() % 16 == 0`.
    #[inline(always)]
    unsafe fn unit(keys: &Keys<'_>, data: &mut [u8], tw: u128, dir: Dir) {
        // SAFETY: the caller guarantees the CPU features; memory accesses are commented below.
        unsafe {
            let mut tw = tw;
            let (ymid, xmid) = (keys.ymid, keys.xmid);
            let poly = _mm256_set_epi64x(0, 0x87, 0, 0x87);

            // Groups of 16 blocks, then single blocks.
            let (groups, tail) = data.split_at_mut(data.len() / 256 * 256);
            if !groups.is_empty() {
                let mut tws = first_tweaks(tw);
                for g in groups.chunks_exact_mut(256) {
                    group::<8, 2, 14>(keys, ymid, g, &mut tws, poly, dir);
                }
                // The next block's tweak: the low lane of register 0.
                tw = from_m128(_mm256_castsi256_si128(tws[0]));
                wipe(&mut tws);
            }
            let (k0, klast) = (keys.x0, keys.xlast);
            let mut t = _mm_setzero_si128();
            for b in tail.chunks_exact_mut(16) {
                let p = b.as_mut_ptr().cast::<__m128i>();
                t = to_m128(tw);
                // `b` is one 16-byte block.
                let mut v = _mm_xor_si128(_mm_loadu_si128(p), _mm_xor_si128(t, k0));
                match dir {
                    Dir::Encrypt => {
                        for k in xmid {
                            v = _mm_aesenc_si128(v, to_m128(*k));
                        }
                        v = _mm_aesenclast_si128(v, _mm_xor_si128(klast, t));
                    }
                    Dir::Decrypt => {
                        for k in xmid {
                            v = _mm_aesdec_si128(v, to_m128(*k));
                        }
                        v = _mm_aesdeclast_si128(v, _mm_xor_si128(klast, t));
                    }
                }
                _mm_storeu_si128(p, v);
                tw = mul_alpha(tw);
            }
            wipe(&mut t);
            tw.zeroize();
        }
    }
}

#[cfg(test)]
mod tests;
