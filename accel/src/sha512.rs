//! The inner loop of PBKDF2-HMAC-SHA512: SHA-512 compressions of one 64-byte message after a
//! 128-byte key block, with AVX2 (message schedule) and BMI1/BMI2 (`andn`, `rorx`) rounds.
//!
//! PBKDF2-HMAC-SHA512 with a 64-byte output is one chain of `2 × iterations` dependent
//! compressions, so only a faster compression shortens it. From the second iteration on, each
//! inner and each outer message is one SHA-512 output (8 words) followed by fixed padding
//! (`0x80`, zeros, the bit length 1536), compressed from a fixed keyed state. This module
//! computes exactly that compression:
//! - the message words stay 64-bit words (no byte swapping: the big-endian bytes of one output
//!   are the big-endian words of the next message);
//! - the eight padding words and their round constants are constants, and the schedule's first
//!   steps fold them in at compile time;
//! - the schedule runs two words per `xmm` register, interleaved with the scalar rounds that use
//!   words computed two groups earlier, so the vector and integer units work at once;
//! - the rounds use `rorx` (three-operand rotations), `andn`, `Ch(e,f,g) = (e∧f) + (¬e∧g)` (the
//!   two terms never share a bit, so they are added into `h` separately) and
//!   `Maj(a,b,c) = ((a⊕b) ∧ (b⊕c)) ⊕ b` with `b⊕c` carried from the previous round.
//!
//! [`hmac_iterations`] is the only entry point; it returns `false` on a CPU without AVX2 and
//! BMI2, and the caller keeps its own loop. Tests compare it with the `sha2` crate's compression
//! on random states and messages.

use zeroize::Zeroize;

/// SHA-512 round constants (FIPS 180-4 §4.2.3).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const K: [u64; 80] = [
    0x428a2f98d728ae22,
    0x7137449123ef65cd,
    0xb5c0fbcfec4d3b2f,
    0xe9b5dba58189dbbc,
    0x3956c25bf348b538,
    0x59f111f1b605d019,
    0x923f82a4af194f9b,
    0xab1c5ed5da6d8118,
    0xd807aa98a3030242,
    0x12835b0145706fbe,
    0x243185be4ee4b28c,
    0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f,
    0x80deb1fe3b1696b1,
    0x9bdc06a725c71235,
    0xc19bf174cf692694,
    0xe49b69c19ef14ad2,
    0xefbe4786384f25e3,
    0x0fc19dc68b8cd5b5,
    0x240ca1cc77ac9c65,
    0x2de92c6f592b0275,
    0x4a7484aa6ea6e483,
    0x5cb0a9dcbd41fbd4,
    0x76f988da831153b5,
    0x983e5152ee66dfab,
    0xa831c66d2db43210,
    0xb00327c898fb213f,
    0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2,
    0xd5a79147930aa725,
    0x06ca6351e003826f,
    0x142929670a0e6e70,
    0x27b70a8546d22ffc,
    0x2e1b21385c26c926,
    0x4d2c6dfc5ac42aed,
    0x53380d139d95b3df,
    0x650a73548baf63de,
    0x766a0abb3c77b2a8,
    0x81c2c92e47edaee6,
    0x92722c851482353b,
    0xa2bfe8a14cf10364,
    0xa81a664bbc423001,
    0xc24b8b70d0f89791,
    0xc76c51a30654be30,
    0xd192e819d6ef5218,
    0xd69906245565a910,
    0xf40e35855771202a,
    0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8,
    0x1e376c085141ab53,
    0x2748774cdf8eeb99,
    0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63,
    0x4ed8aa4ae3418acb,
    0x5b9cca4f7763e373,
    0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc,
    0x78a5636f43172f60,
    0x84c87814a1f0ab72,
    0x8cc702081a6439ec,
    0x90befffa23631e28,
    0xa4506cebde82bde9,
    0xbef9a3f7b2c67915,
    0xc67178f2e372532b,
    0xca273eceea26619c,
    0xd186b8c721c0c207,
    0xeada7dd6cde0eb1e,
    0xf57d4f7fee6ed178,
    0x06f067aa72176fba,
    0x0a637dc5a2c898a6,
    0x113f9804bef90dae,
    0x1b710b35131c471b,
    0x28db77f523047d84,
    0x32caab7b40c72493,
    0x3c9ebe0a15c9bebc,
    0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6,
    0x597f299cfc657e2a,
    0x5fcb6fab3ad6faec,
    0x6c44198c4a475817,
];

/// Bit length of every message this module compresses: a 128-byte HMAC key block and a
/// 64-byte SHA-512 output.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const MSG_BITS: u64 = (128 + 64) * 8;

/// Whether [`hmac_iterations`] runs on this CPU (x86-64 with AVX2, BMI1 and BMI2).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("bmi1")
            && std::is_x86_feature_detected!("bmi2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `count` PBKDF2-HMAC-SHA512 iterations of one output block.
///
/// `inner` and `outer` are the SHA-512 states after the HMAC key block XOR `ipad` and `opad`;
/// `u` holds `U_{j}` and `acc` the XOR of `U_1 … U_j`, both as SHA-512 state words (the
/// big-endian words of the 64-byte values). Each iteration sets
/// `u = C(outer, C(inner, u ‖ pad) ‖ pad)` and `acc ^= u`, where `C` is the SHA-512
/// compression and `pad` the fixed padding of a 192-byte message; after the call `u` and `acc`
/// are `U_{j+count}` and its XOR sum.
///
/// Returns `false`, with `u` and `acc` untouched, when [`available`] is false.
pub fn hmac_iterations(
    inner: &[u64; 8],
    outer: &[u64; 8],
    u: &mut [u64; 8],
    acc: &mut [u64; 8],
    count: u32,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if available() {
            // SAFETY: `available()` checked AVX2, BMI1 and BMI2 at run time.
            unsafe { x86::iterations(inner, outer, u, acc, count) };
            return true;
        }
    }
    let _ = (inner, outer, u, acc, count);
    false
}

/// One compression of `m ‖ pad` from `state` (the function [`hmac_iterations`] chains), for
/// tests; `None` when [`available`] is false.
pub fn compress_message(state: &[u64; 8], m: &[u64; 8]) -> Option<[u64; 8]> {
    #[cfg(target_arch = "x86_64")]
    {
        if available() {
            let mut kw = [0u64; 80];
            // SAFETY: `available()` checked AVX2, BMI1 and BMI2 at run time.
            let out = unsafe { x86::compress(state, m, &mut kw) };
            kw.zeroize();
            return Some(out);
        }
    }
    let _ = (state, m);
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{K, MSG_BITS};
    use core::arch::x86_64::*;
    use zeroize::Zeroize;

    /// The two constants of schedule pair `p` (words `2p`, `2p + 1`) as one register.
    macro_rules! kpair {
        ($p:expr) => {
            _mm_set_epi64x(K[2 * $p + 1] as i64, K[2 * $p] as i64)
        };
    }

    /// `σ0` of both words: `rotr 1 ⊕ rotr 8 ⊕ shr 7`.
    macro_rules! small_sigma0 {
        ($x:expr) => {{
            let x = $x;
            _mm_xor_si128(
                _mm_xor_si128(
                    _mm_xor_si128(_mm_srli_epi64::<1>(x), _mm_slli_epi64::<63>(x)),
                    _mm_xor_si128(_mm_srli_epi64::<8>(x), _mm_slli_epi64::<56>(x)),
                ),
                _mm_srli_epi64::<7>(x),
            )
        }};
    }

    /// `σ1` of both words: `rotr 19 ⊕ rotr 61 ⊕ shr 6`.
    macro_rules! small_sigma1 {
        ($x:expr) => {{
            let x = $x;
            _mm_xor_si128(
                _mm_xor_si128(
                    _mm_xor_si128(_mm_srli_epi64::<19>(x), _mm_slli_epi64::<45>(x)),
                    _mm_xor_si128(_mm_srli_epi64::<61>(x), _mm_slli_epi64::<3>(x)),
                ),
                _mm_srli_epi64::<6>(x),
            )
        }};
    }

    /// Schedule pair `p ≥ 8`: `W[2p..2p+2]` from the pairs before it, and `W + K` stored for
    /// the rounds.
    macro_rules! schedule {
        ($x:ident, $kw:ident, $p:expr) => {{
            let p = $p;
            let w15 = _mm_alignr_epi8::<8>($x[p - 7], $x[p - 8]);
            let w7 = _mm_alignr_epi8::<8>($x[p - 3], $x[p - 4]);
            $x[p] = _mm_add_epi64(
                _mm_add_epi64($x[p - 8], small_sigma0!(w15)),
                _mm_add_epi64(w7, small_sigma1!($x[p - 1])),
            );
            let v = _mm_add_epi64($x[p], kpair!(p));
            // SAFETY: `p < 40`, so words `2p` and `2p + 1` are inside the 80-word `kw`; the
            // store is unaligned.
            unsafe { _mm_storeu_si128($kw.as_mut_ptr().add(2 * p).cast::<__m128i>(), v) };
        }};
    }

    /// One SHA-512 round; `$h` becomes the new `a` and `$d` the new `e`.
    macro_rules! round {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident,
         $bc:ident, $kw:expr) => {{
            $h = $h.wrapping_add($kw);
            $h = $h.wrapping_add($e & $f);
            $h = $h.wrapping_add(!$e & $g);
            $h = $h.wrapping_add($e.rotate_right(14) ^ $e.rotate_right(18) ^ $e.rotate_right(41));
            $d = $d.wrapping_add($h);
            let ab = $a ^ $b;
            $h = $h.wrapping_add($a.rotate_right(28) ^ $a.rotate_right(34) ^ $a.rotate_right(39));
            $h = $h.wrapping_add((ab & $bc) ^ $b);
            $bc = ab;
        }};
    }

    /// Rounds `8g … 8g + 7` on the working variables `$a … $h`; with `sched`, also schedule
    /// pairs `4g + 8 … 4g + 11` (the words of rounds `8g + 16 …`), one after every second round.
    macro_rules! eight {
        ($a:ident $b:ident $c:ident $d:ident $e:ident $f:ident $g:ident $h:ident,
         $bc:ident, $kw:ident, $grp:expr) => {{
            let i = 8 * $grp;
            round!($a, $b, $c, $d, $e, $f, $g, $h, $bc, $kw[i]);
            round!($h, $a, $b, $c, $d, $e, $f, $g, $bc, $kw[i + 1]);
            round!($g, $h, $a, $b, $c, $d, $e, $f, $bc, $kw[i + 2]);
            round!($f, $g, $h, $a, $b, $c, $d, $e, $bc, $kw[i + 3]);
            round!($e, $f, $g, $h, $a, $b, $c, $d, $bc, $kw[i + 4]);
            round!($d, $e, $f, $g, $h, $a, $b, $c, $bc, $kw[i + 5]);
            round!($c, $d, $e, $f, $g, $h, $a, $b, $bc, $kw[i + 6]);
            round!($b, $c, $d, $e, $f, $g, $h, $a, $bc, $kw[i + 7]);
        }};
        ($a:ident $b:ident $c:ident $d:ident $e:ident $f:ident $g:ident $h:ident,
         $bc:ident, $kw:ident, $x:ident, $grp:expr, sched) => {{
            let i = 8 * $grp;
            let p = 4 * $grp + 8;
            round!($a, $b, $c, $d, $e, $f, $g, $h, $bc, $kw[i]);
            round!($h, $a, $b, $c, $d, $e, $f, $g, $bc, $kw[i + 1]);
            schedule!($x, $kw, p);
            round!($g, $h, $a, $b, $c, $d, $e, $f, $bc, $kw[i + 2]);
            round!($f, $g, $h, $a, $b, $c, $d, $e, $bc, $kw[i + 3]);
            schedule!($x, $kw, p + 1);
            round!($e, $f, $g, $h, $a, $b, $c, $d, $bc, $kw[i + 4]);
            round!($d, $e, $f, $g, $h, $a, $b, $c, $bc, $kw[i + 5]);
            schedule!($x, $kw, p + 2);
            round!($c, $d, $e, $f, $g, $h, $a, $b, $bc, $kw[i + 6]);
            round!($b, $c, $d, $e, $f, $g, $h, $a, $bc, $kw[i + 7]);
            schedule!($x, $kw, p + 3);
        }};
    }

    /// The SHA-512 compression of the block `m ‖ pad` (pad: `0x80…`, zeros, [`MSG_BITS`])
    /// from `state`, returning the new state. `kw` is scratch for the 80 words `W + K` (the
    /// caller wipes it).
    ///
    /// # Safety
    /// The CPU has AVX2, BMI1 and BMI2.
    #[inline]
    #[target_feature(enable = "avx2,bmi1,bmi2")]
    #[allow(clippy::indexing_slicing)] // every index is a constant below 80 (40 for `x`)
    #[allow(unused_assignments)] // the last round's `b ⊕ c` for a next round that never comes
    pub(super) unsafe fn compress(state: &[u64; 8], m: &[u64; 8], kw: &mut [u64; 80]) -> [u64; 8] {
        // x[p] = (W[2p], W[2p + 1]).
        let mut x = [_mm_setzero_si128(); 40];
        x[0] = _mm_set_epi64x(m[1] as i64, m[0] as i64);
        x[1] = _mm_set_epi64x(m[3] as i64, m[2] as i64);
        x[2] = _mm_set_epi64x(m[5] as i64, m[4] as i64);
        x[3] = _mm_set_epi64x(m[7] as i64, m[6] as i64);
        x[4] = _mm_set_epi64x(0, i64::MIN); // W8 = 0x8000…, W9 = 0
        x[5] = _mm_setzero_si128();
        x[6] = _mm_setzero_si128();
        x[7] = _mm_set_epi64x(MSG_BITS as i64, 0); // W14 = 0, W15 = the bit length
        for p in 0..8 {
            let v = _mm_add_epi64(x[p], kpair!(p));
            // SAFETY: `p < 8`, so words `2p` and `2p + 1` are inside `kw`; unaligned store.
            unsafe { _mm_storeu_si128(kw.as_mut_ptr().add(2 * p).cast::<__m128i>(), v) };
        }

        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
        let mut bc = b ^ c;
        eight!(a b c d e f g h, bc, kw, x, 0, sched);
        eight!(a b c d e f g h, bc, kw, x, 1, sched);
        eight!(a b c d e f g h, bc, kw, x, 2, sched);
        eight!(a b c d e f g h, bc, kw, x, 3, sched);
        eight!(a b c d e f g h, bc, kw, x, 4, sched);
        eight!(a b c d e f g h, bc, kw, x, 5, sched);
        eight!(a b c d e f g h, bc, kw, x, 6, sched);
        eight!(a b c d e f g h, bc, kw, x, 7, sched);
        eight!(a b c d e f g h, bc, kw, 8);
        eight!(a b c d e f g h, bc, kw, 9);
        // The working variables and the schedule registers are dead after this; registers
        // cannot be wiped, and the caller wipes `kw`.
        let [s0, s1, s2, s3, s4, s5, s6, s7] = *state;
        [
            s0.wrapping_add(a),
            s1.wrapping_add(b),
            s2.wrapping_add(c),
            s3.wrapping_add(d),
            s4.wrapping_add(e),
            s5.wrapping_add(f),
            s6.wrapping_add(g),
            s7.wrapping_add(h),
        ]
    }

    /// [`super::hmac_iterations`] on this CPU.
    ///
    /// # Safety
    /// The CPU has AVX2, BMI1 and BMI2.
    #[target_feature(enable = "avx2,bmi1,bmi2")]
    pub(super) unsafe fn iterations(
        inner: &[u64; 8],
        outer: &[u64; 8],
        u: &mut [u64; 8],
        acc: &mut [u64; 8],
        count: u32,
    ) {
        let mut kw = [0u64; 80];
        let mut cur = *u;
        let mut sum = *acc;
        for _ in 0..count {
            // SAFETY: the caller guarantees the CPU features.
            let mut t = unsafe { compress(inner, &cur, &mut kw) };
            // SAFETY: as above.
            cur = unsafe { compress(outer, &t, &mut kw) };
            t.zeroize();
            for (a, v) in sum.iter_mut().zip(cur) {
                *a ^= v;
            }
        }
        *u = cur;
        *acc = sum;
        cur.zeroize();
        sum.zeroize();
        kw.zeroize();
    }
}

#[cfg(test)]
mod tests;
