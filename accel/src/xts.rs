//! AES-XTS (IEEE 1619, whole 16-byte blocks, no ciphertext stealing) with VAES and
//! VPCLMULQDQ: two blocks per `ymm` register, 16 blocks in flight, the tweaks of the next 16
//! blocks computed in SIMD lanes (multiplication by α^16 with one carry-less multiply) while
//! the rounds run, the last round key XORed with the tweak so the output XOR costs nothing.
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

/// An XTS key: the data key's encryption and decryption schedules and the tweak key's
/// encryption schedule, each as little-endian `u128` round keys. Wiped on drop.
///
/// Off x86-64 the type is uninhabited: no value can exist, so no call can leave data
/// unencrypted.
pub struct Xts {
    rounds: usize,
    enc: [u128; MAX_KEYS],
    dec: [u128; MAX_KEYS],
    tweak: [u128; MAX_KEYS],
    #[cfg(not(target_arch = "x86_64"))]
    never: std::convert::Infallible,
}

impl Drop for Xts {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.dec.zeroize();
        self.tweak.zeroize();
    }
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
                enc: [0; MAX_KEYS],
                dec: [0; MAX_KEYS],
                tweak: [0; MAX_KEYS],
            };
            // SAFETY: the AES-NI feature was detected by `available()` above.
            unsafe {
                imp::expand(k1, &mut x.enc)?;
                imp::expand(k2, &mut x.tweak)?;
                imp::invert(&x.enc, &mut x.dec, rounds);
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
        self.enc.get(..=self.rounds).unwrap_or_default()
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

    /// Multiplies both 128-bit tweaks in `t` by α^16 (IEEE 1619 §5.2, applied 16 times): the
    /// 128-bit lanes shift left by 16 bits, and the 16 bits shifted out are reduced by
    /// x^128 = x^7 + x^2 + x + 1 (a carry-less multiply by 0x87).
    #[inline]
    #[target_feature(enable = "avx2,vpclmulqdq")]
    fn mul_alpha16(t: __m256i, poly: __m256i) -> __m256i {
        let top = _mm256_srli_epi64::<48>(t);
        let shifted = _mm256_xor_si256(_mm256_slli_epi64::<16>(t), _mm256_slli_si256::<8>(top));
        // High qword of `top` (the lane's top 16 bits) times the low qword of `poly`.
        let red = _mm256_clmulepi64_epi128::<0x01>(top, poly);
        _mm256_xor_si256(shifted, red)
    }

    /// `t · α` in plain integer arithmetic.
    #[inline(always)]
    fn mul_alpha(t: u128) -> u128 {
        (t << 1) ^ ((t >> 127) * 0x87)
    }

    /// Blocks per group (8 registers of 2).
    const GROUP: usize = 16;

    /// Round keys in registers, for one direction. Wiped on drop.
    pub(super) struct Keys {
        /// Rounds 1 .. rounds−1, broadcast to both lanes.
        ymid: [__m256i; MAX_KEYS],
        /// The same as 128-bit values.
        xmid: [__m128i; MAX_KEYS],
        /// How many of `ymid`/`xmid` are used.
        nmid: usize,
        y0: __m256i,
        ylast: __m256i,
        x0: __m128i,
        xlast: __m128i,
    }

    impl Drop for Keys {
        fn drop(&mut self) {
            self.wipe();
        }
    }

    impl Keys {
        /// Overwrites every round key (volatile writes).
        #[inline(always)]
        pub(super) fn wipe(&mut self) {
            // Only the used entries (the others are still zero from `zero`).
            let n = self.nmid.min(MAX_KEYS);
            for y in self.ymid.iter_mut().take(n) {
                wipe(y);
            }
            for x in self.xmid.iter_mut().take(n) {
                wipe(x);
            }
            wipe(&mut self.y0);
            wipe(&mut self.ylast);
            wipe(&mut self.x0);
            wipe(&mut self.xlast);
        }

        /// Whether every round key is zero (for tests).
        #[cfg(test)]
        pub(super) fn is_zero(&self) -> bool {
            let y = self.ymid.iter().chain([&self.y0, &self.ylast]).all(|v| {
                // SAFETY: `__m256i` is 32 plain bytes.
                let b = unsafe { std::mem::transmute::<__m256i, [u8; 32]>(*v) };
                b == [0; 32]
            });
            let x = self.xmid.iter().chain([&self.x0, &self.xlast]).all(|v| {
                // SAFETY: `__m128i` is 16 plain bytes.
                let b = unsafe { std::mem::transmute::<__m128i, [u8; 16]>(*v) };
                b == [0; 16]
            });
            y && x
        }

        /// No keys; [`Keys::load`] fills them in place (a `Keys` holding keys is never moved,
        /// so no unwiped copy of it is left behind).
        #[inline(always)]
        pub(super) fn zero() -> Keys {
            // SAFETY: all-zero bytes are a valid value of every field (SIMD integer vectors
            // and a `usize`); no CPU feature is involved.
            unsafe {
                Keys {
                    ymid: std::mem::zeroed(),
                    xmid: std::mem::zeroed(),
                    nmid: 0,
                    y0: std::mem::zeroed(),
                    ylast: std::mem::zeroed(),
                    x0: std::mem::zeroed(),
                    xlast: std::mem::zeroed(),
                }
            }
        }

        /// Loads the schedule `keys` (first, middle, last round keys), the 256-bit copies only
        /// if `wide`; `false` if it has fewer than two or more than `MAX_KEYS` keys.
        ///
        /// # Safety
        /// AVX2 is available.
        #[inline(always)]
        pub(super) unsafe fn load(&mut self, keys: &[u128], wide: bool) -> bool {
            let Some((k0, rest)) = keys.split_first() else {
                return false;
            };
            let Some((klast, kmid)) = rest.split_last() else {
                return false;
            };
            if kmid.len() > MAX_KEYS {
                return false;
            }
            // SAFETY: the caller guarantees AVX2.
            unsafe {
                self.nmid = kmid.len();
                self.x0 = to_m128(*k0);
                self.xlast = to_m128(*klast);
                for (x, m) in self.xmid.iter_mut().zip(kmid) {
                    *x = to_m128(*m);
                }
                if wide {
                    self.y0 = _mm256_broadcastsi128_si256(self.x0);
                    self.ylast = _mm256_broadcastsi128_si256(self.xlast);
                    for (y, x) in self.ymid.iter_mut().zip(self.xmid.iter()) {
                        *y = _mm256_broadcastsi128_si256(*x);
                    }
                }
            }
            true
        }
    }

    /// Units whose tweaks are computed together (independent AES chains, pipelined).
    const TWEAK_BATCH: usize = 8;

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
        let tk = x.tweak.get(..=rounds).unwrap_or_default();
        let dk = match dir {
            Dir::Encrypt => &x.enc,
            Dir::Decrypt => &x.dec,
        };
        let mut keys = Keys::zero();
        let mut tkeys = Keys::zero();
        // SAFETY: AVX2 is enabled in this function.
        // The tweak key is used in 128-bit registers only.
        if !unsafe {
            keys.load(dk.get(..=rounds).unwrap_or_default(), true) && tkeys.load(tk, false)
        } {
            return Err(Error::Internal);
        }
        let tmid = tkeys.xmid.get(..tkeys.nmid).unwrap_or_default();
        for (chunk, civs) in data
            .chunks_mut(unit_len.saturating_mul(TWEAK_BATCH))
            .zip(ivs.chunks(TWEAK_BATCH))
        {
            // The tweaks of up to 8 units: their IVs encrypted under the tweak key, the 8 AES
            // chains interleaved round by round.
            let mut t = [_mm_setzero_si128(); TWEAK_BATCH];
            for (t, iv) in t.iter_mut().zip(civs.iter()) {
                *t = _mm_xor_si128(to_m128(u128::from_le_bytes(*iv)), tkeys.x0);
            }
            for k in tmid {
                for t in t.iter_mut() {
                    *t = _mm_aesenc_si128(*t, *k);
                }
            }
            let mut tweaks = [0u128; TWEAK_BATCH];
            for (out, t) in tweaks.iter_mut().zip(t.iter()) {
                *out = from_m128(_mm_aesenclast_si128(*t, tkeys.xlast));
            }
            wipe(&mut t);
            for (u, tw) in chunk.chunks_exact_mut(unit_len).zip(tweaks.iter()) {
                // SAFETY: AVX2 etc. are enabled in this function; `u` is whole blocks.
                unsafe { unit(&keys, u, *tw, dir) };
            }
            tweaks.zeroize();
        }
        Ok(())
    }

    /// One data unit whose (encrypted) tweak is `tw`.
    ///
    /// # Safety
    /// AES-NI, PCLMULQDQ, AVX2, VAES and VPCLMULQDQ are available; `data.len() % 16 == 0`.
    #[inline(always)]
    unsafe fn unit(keys: &Keys, data: &mut [u8], tw: u128, dir: Dir) {
        // SAFETY: the caller guarantees the CPU features; memory accesses are commented below.
        unsafe {
            let mut tw = tw;
            let ymid = keys.ymid.get(..keys.nmid).unwrap_or_default();
            let xmid = keys.xmid.get(..keys.nmid).unwrap_or_default();
            let (y0, ylast) = (keys.y0, keys.ylast);
            let poly = _mm256_set_epi64x(0, 0x87, 0, 0x87);

            let (groups, tail) = data.split_at_mut(data.len() / (16 * GROUP) * (16 * GROUP));
            if !groups.is_empty() {
                // Tweaks of blocks 0..16: register j holds blocks 2j (low lane) and 2j + 1.
                let mut tws = [_mm256_setzero_si256(); 8];
                for reg in tws.iter_mut() {
                    let a = tw;
                    let b = mul_alpha(a);
                    tw = mul_alpha(b);
                    *reg = _mm256_set_m128i(to_m128(b), to_m128(a));
                }
                for g in groups.chunks_exact_mut(16 * GROUP) {
                    let p = g.as_mut_ptr().cast::<__m256i>();
                    let mut v = [_mm256_setzero_si256(); 8];
                    for (j, (v, t)) in v.iter_mut().zip(tws.iter()).enumerate() {
                        // `g` is 256 bytes = 8 registers; j < 8.
                        let d = _mm256_loadu_si256(p.add(j));
                        *v = _mm256_xor_si256(d, _mm256_xor_si256(*t, y0));
                    }
                    match dir {
                        Dir::Encrypt => {
                            for k in ymid {
                                for v in v.iter_mut() {
                                    *v = _mm256_aesenc_epi128(*v, *k);
                                }
                            }
                            for (v, t) in v.iter_mut().zip(tws.iter()) {
                                *v = _mm256_aesenclast_epi128(*v, _mm256_xor_si256(ylast, *t));
                            }
                        }
                        Dir::Decrypt => {
                            for k in ymid {
                                for v in v.iter_mut() {
                                    *v = _mm256_aesdec_epi128(*v, *k);
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
                        *t = mul_alpha16(*t, poly);
                    }
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
                            v = _mm_aesenc_si128(v, *k);
                        }
                        v = _mm_aesenclast_si128(v, _mm_xor_si128(klast, t));
                    }
                    Dir::Decrypt => {
                        for k in xmid {
                            v = _mm_aesdec_si128(v, *k);
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
