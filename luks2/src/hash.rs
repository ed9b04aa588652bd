//! Hash algorithms named in LUKS headers (`sha256`, `sha1`, `ripemd160`, …).
//!
//! [`HashAlg`] names a hash the way cryptsetup spells it, hashes byte strings into caller
//! buffers ([`HashAlg::digest_into`]) and runs PBKDF2-HMAC with it ([`HashAlg::pbkdf2_hmac`]).

use digest::Digest;
use zeroize::Zeroize;

/// The largest output size of any [`HashAlg`] (SHA-512, SHA3-512 and Whirlpool), in bytes.
pub const MAX_OUTPUT_SIZE: usize = 64;

/// A hash function a LUKS header can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1
    Sha1,
    /// SHA-224
    Sha224,
    /// SHA-256
    Sha256,
    /// SHA-384
    Sha384,
    /// SHA-512
    Sha512,
    /// RIPEMD-160
    Ripemd160,
    /// Whirlpool
    Whirlpool,
    /// SHA3-256
    Sha3_256,
    /// SHA3-512
    Sha3_512,
}

/// Every supported hash, in a fixed order (useful for tests and for listing).
pub const ALL: [HashAlg; 9] = [
    HashAlg::Sha1,
    HashAlg::Sha224,
    HashAlg::Sha256,
    HashAlg::Sha384,
    HashAlg::Sha512,
    HashAlg::Ripemd160,
    HashAlg::Whirlpool,
    HashAlg::Sha3_256,
    HashAlg::Sha3_512,
];

/// Hashes the concatenation of `parts` with `D` and writes the first `out.len()` bytes of the
/// digest (at most the whole digest) to `out`. The digest copy on the stack is wiped.
fn digest_generic<D: Digest>(parts: &[&[u8]], out: &mut [u8]) {
    let mut h = D::new();
    for p in parts {
        Digest::update(&mut h, p);
    }
    let mut full = digest::Output::<D>::default();
    h.finalize_into(&mut full);
    for (o, b) in out.iter_mut().zip(full.iter()) {
        *o = *b;
    }
    full.as_mut_slice().zeroize();
}

/// PBKDF2-HMAC-`D` of `password` and `salt` into `out`.
fn pbkdf2_generic<D: digest::block_api::EagerHash>(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    out: &mut [u8],
) -> Result<(), digest::InvalidLength> {
    pbkdf2::pbkdf2::<hmac::Hmac<D>>(password, salt, iterations, out)
}

/// PBKDF2 with the generic HMAC for hashes without an exposed block core (SHA-3).
fn pbkdf2_simple<D: Digest + digest::common::BlockSizeUser + Clone>(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    out: &mut [u8],
) -> Result<(), digest::InvalidLength> {
    pbkdf2::pbkdf2::<hmac::SimpleHmac<D>>(password, salt, iterations, out)
}

impl HashAlg {
    /// Parses a header hash name as cryptsetup spells it (case-insensitive), `None` if unknown.
    ///
    /// Accepted: `sha1`, `sha224`, `sha256`, `sha384`, `sha512`, `ripemd160`, `whirlpool`,
    /// `sha3-256`, `sha3-512`.
    pub fn from_name(name: &str) -> Option<HashAlg> {
        ALL.iter()
            .copied()
            .find(|h| h.name().eq_ignore_ascii_case(name))
    }

    /// The canonical lowercase name (`"sha256"`), as cryptsetup writes it in headers.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha224 => "sha224",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
            HashAlg::Ripemd160 => "ripemd160",
            HashAlg::Whirlpool => "whirlpool",
            HashAlg::Sha3_256 => "sha3-256",
            HashAlg::Sha3_512 => "sha3-512",
        }
    }

    /// Output length in bytes.
    pub fn output_size(self) -> usize {
        match self {
            HashAlg::Sha1 | HashAlg::Ripemd160 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 | HashAlg::Sha3_256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 | HashAlg::Whirlpool | HashAlg::Sha3_512 => 64,
        }
    }

    /// Hashes the concatenation of `parts` into `out`.
    ///
    /// Normally `out.len() == self.output_size()`. A shorter `out` receives the digest's first
    /// `out.len()` bytes (what the AF diffuse step needs for its last, partial block); with a
    /// longer `out` only the first `output_size()` bytes are written. Never panics.
    pub fn digest_into(self, parts: &[&[u8]], out: &mut [u8]) {
        match self {
            HashAlg::Sha1 => fast::digest::<fast::Sha1>(parts, out),
            HashAlg::Sha224 => fast::digest::<fast::Sha224>(parts, out),
            HashAlg::Sha256 => fast::digest::<fast::Sha256>(parts, out),
            HashAlg::Sha384 => fast::digest::<fast::Sha384>(parts, out),
            HashAlg::Sha512 => fast::digest::<fast::Sha512>(parts, out),
            HashAlg::Ripemd160 => digest_generic::<ripemd::Ripemd160>(parts, out),
            HashAlg::Whirlpool => digest_generic::<whirlpool::Whirlpool>(parts, out),
            HashAlg::Sha3_256 => digest_generic::<sha3::Sha3_256>(parts, out),
            HashAlg::Sha3_512 => digest_generic::<sha3::Sha3_512>(parts, out),
        }
    }

    /// PBKDF2 (RFC 8018) with HMAC-`self` as PRF: derives `out.len()` bytes from `password` and
    /// `salt` with `iterations` rounds. It does not validate `iterations` (0 behaves like 1):
    /// callers go through [`crate::kdf::KdfParams`], which refuses 0.
    ///
    /// Fails only if the HMAC cannot be keyed with `password`, which HMAC never refuses; the
    /// error is a plain message for [`crate::kdf::KdfError::Failed`].
    pub fn pbkdf2_hmac(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
        out: &mut [u8],
    ) -> Result<(), String> {
        // SHA-1 and SHA-2: the fast path (raw compression function, output blocks on threads).
        match self {
            HashAlg::Sha1 => fast::pbkdf2::<fast::Sha1>(password, salt, iterations, out),
            HashAlg::Sha224 => fast::pbkdf2::<fast::Sha224>(password, salt, iterations, out),
            HashAlg::Sha256 => fast::pbkdf2::<fast::Sha256>(password, salt, iterations, out),
            HashAlg::Sha384 => fast::pbkdf2::<fast::Sha384>(password, salt, iterations, out),
            HashAlg::Sha512 => fast::pbkdf2::<fast::Sha512>(password, salt, iterations, out),
            _ => return self.pbkdf2_hmac_generic(password, salt, iterations, out),
        }
        Ok(())
    }

    /// PBKDF2 through the `pbkdf2` and `hmac` crates, for every hash: the reference the fast
    /// path ([`HashAlg::pbkdf2_hmac`] for SHA-1 and SHA-2) is tested against, and the
    /// implementation for the other hashes. Same contract as [`HashAlg::pbkdf2_hmac`].
    pub fn pbkdf2_hmac_generic(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
        out: &mut [u8],
    ) -> Result<(), String> {
        let r = match self {
            HashAlg::Sha1 => pbkdf2_generic::<sha1::Sha1>(password, salt, iterations, out),
            HashAlg::Sha224 => pbkdf2_generic::<sha2::Sha224>(password, salt, iterations, out),
            HashAlg::Sha256 => pbkdf2_generic::<sha2::Sha256>(password, salt, iterations, out),
            HashAlg::Sha384 => pbkdf2_generic::<sha2::Sha384>(password, salt, iterations, out),
            HashAlg::Sha512 => pbkdf2_generic::<sha2::Sha512>(password, salt, iterations, out),
            HashAlg::Ripemd160 => {
                pbkdf2_generic::<ripemd::Ripemd160>(password, salt, iterations, out)
            }
            HashAlg::Whirlpool => {
                pbkdf2_generic::<whirlpool::Whirlpool>(password, salt, iterations, out)
            }
            HashAlg::Sha3_256 => pbkdf2_simple::<sha3::Sha3_256>(password, salt, iterations, out),
            HashAlg::Sha3_512 => pbkdf2_simple::<sha3::Sha3_512>(password, salt, iterations, out),
        };
        r.map_err(|_| format!("HMAC-{} refused the passphrase as a key", self.name()))
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// PBKDF2-HMAC for SHA-1 and SHA-2 on the raw compression function, with the output blocks
/// computed on threads.
///
/// HMAC keyed with the passphrase starts every inner hash from the same state (the key block
/// XOR `ipad` compressed once) and every outer hash from another (XOR `opad`). From the second
/// PBKDF2 iteration on, both messages are one hash-size value after that key block, so each
/// iteration is exactly two compressions of one fixed-layout padded block: the previous value,
/// `0x80`, zeros and the bit length `(block + output) × 8`. This module precomputes the two
/// states once and loops over the compression function (SHA-NI for SHA-1/SHA-256 and AVX2 for
/// SHA-512 through the `sha1`/`sha2` crates' runtime detection), XORing states word by word.
///
/// PBKDF2 output blocks (`T_1`, `T_2`, … of `output size` bytes each) are independent chains:
/// a 64-byte key from SHA-256 is two chains, from SHA-1 four. With enough iterations they run
/// on up to [`std::thread::available_parallelism`] scoped threads; if a thread cannot be
/// started, its blocks are computed on the calling thread. Every key-derived intermediate
/// (pad states, blocks, chaining values) is wiped before returning.
mod fast {
    use crate::secret::SecretBuf;
    use zeroize::Zeroize;

    /// A Merkle–Damgård hash through its compression function.
    pub(super) trait RawHash {
        /// Chaining state.
        type State: Copy + Zeroize + Send + Sync;
        /// One message block.
        type Block: Copy + AsRef<[u8]> + AsMut<[u8]> + Zeroize + Send;
        /// Block size in bytes.
        const BLOCK: usize;
        /// Output size in bytes (a prefix of the big-endian state).
        const OUT: usize;
        /// Size of the big-endian bit-length field at the end of the last block.
        const LEN_BYTES: usize;
        /// The initial state.
        const IV: Self::State;
        /// An all-zero block.
        const ZERO: Self::Block;
        /// Compresses one block into `state`.
        fn compress(state: &mut Self::State, block: &Self::Block);
        /// Writes the first [`RawHash::OUT`] bytes of `state` (big-endian words) to `out`
        /// (fewer if `out` is shorter).
        fn store(state: &Self::State, out: &mut [u8]);
        /// `acc ^= x`, word by word.
        fn xor(acc: &mut Self::State, x: &Self::State);
        /// The hash of `data` (for a passphrase longer than a block).
        fn digest(data: &[u8], out: &mut [u8]);
        /// `count` PBKDF2 iterations after the first (`u = C(outer, C(inner, u))`,
        /// `acc ^= u`) by an accelerated kernel; `false`, with nothing done, when this hash
        /// or CPU has none and the caller's loop runs instead.
        fn iterate(
            inner: &Self::State,
            outer: &Self::State,
            u: &mut Self::State,
            acc: &mut Self::State,
            count: u32,
        ) -> bool {
            let _ = (inner, outer, u, acc, count);
            false
        }
    }

    fn store32(state: &[u32], out: &mut [u8]) {
        for (o, w) in out.chunks_mut(4).zip(state) {
            for (d, s) in o.iter_mut().zip(w.to_be_bytes()) {
                *d = s;
            }
        }
    }

    fn store64(state: &[u64], out: &mut [u8]) {
        for (o, w) in out.chunks_mut(8).zip(state) {
            for (d, s) in o.iter_mut().zip(w.to_be_bytes()) {
                *d = s;
            }
        }
    }

    macro_rules! raw_hash {
        ($name:ident, $word:ty, $n:literal, $block:literal, $out:literal, $len:literal,
         $compress:path, $store:ident, $digest:ty, $iv:expr $(, $iterate:path)?) => {
            /// Marker type for this hash's raw compression.
            pub(super) struct $name;
            impl RawHash for $name {
                type State = [$word; $n];
                type Block = [u8; $block];
                const BLOCK: usize = $block;
                const OUT: usize = $out;
                const LEN_BYTES: usize = $len;
                const IV: [$word; $n] = $iv;
                const ZERO: [u8; $block] = [0; $block];
                #[inline(always)]
                fn compress(state: &mut [$word; $n], block: &[u8; $block]) {
                    $compress(state, core::slice::from_ref(block));
                }
                #[inline(always)]
                fn store(state: &[$word; $n], out: &mut [u8]) {
                    let bytes = out.len().min($out);
                    $store(state, out.get_mut(..bytes).unwrap_or_default());
                }
                #[inline(always)]
                fn xor(acc: &mut [$word; $n], x: &[$word; $n]) {
                    for (a, b) in acc.iter_mut().zip(x) {
                        *a ^= b;
                    }
                }
                fn digest(data: &[u8], out: &mut [u8]) {
                    super::digest_generic::<$digest>(&[data], out);
                }
                $(
                fn iterate(
                    inner: &[$word; $n],
                    outer: &[$word; $n],
                    u: &mut [$word; $n],
                    acc: &mut [$word; $n],
                    count: u32,
                ) -> bool {
                    $iterate(inner, outer, u, acc, count)
                }
                )?
            }
        };
    }

    // Initial values: FIPS 180-4 §5.3.1 (SHA-1), §5.3.2 (SHA-224), §5.3.3 (SHA-256),
    // §5.3.4 (SHA-384), §5.3.5 (SHA-512).
    raw_hash!(
        Sha1,
        u32,
        5,
        64,
        20,
        8,
        sha1::block_api::compress,
        store32,
        sha1::Sha1,
        [
            0x6745_2301,
            0xefcd_ab89,
            0x98ba_dcfe,
            0x1032_5476,
            0xc3d2_e1f0
        ]
    );
    raw_hash!(
        Sha224,
        u32,
        8,
        64,
        28,
        8,
        sha2::block_api::compress256,
        store32,
        sha2::Sha224,
        [
            0xc105_9ed8,
            0x367c_d507,
            0x3070_dd17,
            0xf70e_5939,
            0xffc0_0b31,
            0x6858_1511,
            0x64f9_8fa7,
            0xbefa_4fa4
        ]
    );
    raw_hash!(
        Sha256,
        u32,
        8,
        64,
        32,
        8,
        sha2::block_api::compress256,
        store32,
        sha2::Sha256,
        [
            0x6a09_e667,
            0xbb67_ae85,
            0x3c6e_f372,
            0xa54f_f53a,
            0x510e_527f,
            0x9b05_688c,
            0x1f83_d9ab,
            0x5be0_cd19
        ]
    );
    raw_hash!(
        Sha384,
        u64,
        8,
        128,
        48,
        16,
        sha2::block_api::compress512,
        store64,
        sha2::Sha384,
        [
            0xcbbb_9d5d_c105_9ed8,
            0x629a_292a_367c_d507,
            0x9159_015a_3070_dd17,
            0x152f_ecd8_f70e_5939,
            0x6733_2667_ffc0_0b31,
            0x8eb4_4a87_6858_1511,
            0xdb0c_2e0d_64f9_8fa7,
            0x47b5_481d_befa_4fa4
        ]
    );
    raw_hash!(
        Sha512,
        u64,
        8,
        128,
        64,
        16,
        sha2::block_api::compress512,
        store64,
        sha2::Sha512,
        [
            0x6a09_e667_f3bc_c908,
            0xbb67_ae85_84ca_a73b,
            0x3c6e_f372_fe94_f82b,
            0xa54f_f53a_5f1d_36f1,
            0x510e_527f_ade6_82d1,
            0x9b05_688c_2b3e_6c1f,
            0x1f83_d9ab_fb41_bd6b,
            0x5be0_cd19_137e_2179
        ],
        // One 64-byte output per message: the AVX2/BMI2 kernel of `luks2-accel`.
        luks2_accel::sha512::hmac_iterations
    );

    /// Writes the Merkle–Damgård padding for a message of `total_len` bytes whose last
    /// `tail_len` bytes (`tail_len < BLOCK`) are already at the start of `block`: `0x80`, zeros,
    /// the big-endian bit length. `false` if it does not fit in this block (the caller then
    /// compresses it and pads a fresh one with `tail_len = 0` and no `0x80`).
    fn pad<H: RawHash>(block: &mut H::Block, tail_len: usize, total_len: u64, mark: bool) -> bool {
        let b = block.as_mut();
        if tail_len + usize::from(mark) + H::LEN_BYTES > H::BLOCK {
            if mark {
                if let Some(x) = b.get_mut(tail_len) {
                    *x = 0x80;
                }
                for x in b.iter_mut().skip(tail_len + 1) {
                    *x = 0;
                }
            }
            return false;
        }
        if mark {
            if let Some(x) = b.get_mut(tail_len) {
                *x = 0x80;
            }
        }
        let zeros_from = tail_len + usize::from(mark);
        for x in b.iter_mut().skip(zeros_from) {
            *x = 0;
        }
        let bits = u128::from(total_len) << 3;
        let len_bytes = bits.to_be_bytes();
        let src = len_bytes.get(16 - H::LEN_BYTES..).unwrap_or_default();
        let dst_from = H::BLOCK - H::LEN_BYTES;
        for (d, s) in b.iter_mut().skip(dst_from).zip(src) {
            *d = *s;
        }
        true
    }

    /// Hashes `parts` starting from `state`, which has already absorbed `prefix` bytes (one
    /// block for HMAC, none for a plain digest), and pads; the result is in `state`.
    pub(super) fn finish<H: RawHash>(state: &mut H::State, prefix: u64, parts: &[&[u8]]) {
        let mut block = H::ZERO;
        let mut fill = 0usize;
        let mut total = prefix;
        for part in parts {
            total = total.wrapping_add(u64::try_from(part.len()).unwrap_or(u64::MAX));
            let mut rest: &[u8] = part;
            while !rest.is_empty() {
                let (take, tail) = rest.split_at(rest.len().min(H::BLOCK - fill));
                if let Some(dst) = block.as_mut().get_mut(fill..fill + take.len()) {
                    dst.copy_from_slice(take);
                }
                fill += take.len();
                rest = tail;
                if fill == H::BLOCK {
                    H::compress(state, &block);
                    fill = 0;
                }
            }
        }
        if pad::<H>(&mut block, fill, total, true) {
            H::compress(state, &block);
        } else {
            H::compress(state, &block);
            let mut last = H::ZERO;
            pad::<H>(&mut last, 0, total, false);
            H::compress(state, &last);
        }
        block.zeroize();
    }

    /// The digest of the concatenated `parts`, its first `out.len()` bytes (at most the output
    /// size) written to `out`. The same as the `sha1`/`sha2` crates' `Digest`, without their
    /// buffering: the anti-forensic merge hashes 8000 short blocks per keyslot.
    pub(super) fn digest<H: RawHash>(parts: &[&[u8]], out: &mut [u8]) {
        let mut state = H::IV;
        finish::<H>(&mut state, 0, parts);
        H::store(&state, out);
        state.zeroize();
    }

    /// The HMAC key states: the key block XOR `ipad`/`opad`, each compressed from the IV.
    struct Keyed<H: RawHash> {
        inner: H::State,
        outer: H::State,
    }

    impl<H: RawHash> Drop for Keyed<H> {
        fn drop(&mut self) {
            self.inner.zeroize();
            self.outer.zeroize();
        }
    }

    impl<H: RawHash> Keyed<H> {
        fn new(password: &[u8]) -> Self {
            let mut key = H::ZERO;
            if password.len() > H::BLOCK {
                H::digest(password, key.as_mut());
            } else {
                for (k, p) in key.as_mut().iter_mut().zip(password) {
                    *k = *p;
                }
            }
            let mut pad = key;
            for b in pad.as_mut().iter_mut() {
                *b ^= 0x36;
            }
            let mut inner = H::IV;
            H::compress(&mut inner, &pad);
            for (p, k) in pad.as_mut().iter_mut().zip(key.as_ref()) {
                *p = k ^ 0x5c;
            }
            let mut outer = H::IV;
            H::compress(&mut outer, &pad);
            key.zeroize();
            pad.zeroize();
            Keyed { inner, outer }
        }

        /// `T_index` truncated to `out.len()` (at most the output size) bytes.
        fn block(&self, salt: &[u8], index: u32, iterations: u32, out: &mut [u8]) {
            let block_len = u64::try_from(H::BLOCK).unwrap_or(u64::MAX);
            // U_1 = HMAC(P, S || INT(index)).
            let mut u = self.inner;
            finish::<H>(&mut u, block_len, &[salt, &index.to_be_bytes()]);
            let mut buf = H::ZERO;
            H::store(&u, buf.as_mut());
            let msg_len = block_len + u64::try_from(H::OUT).unwrap_or(u64::MAX);
            // Both the inner and outer messages from here on are one output after the key
            // block: the padding is the same and stays in place.
            pad::<H>(&mut buf, H::OUT, msg_len, true);
            u = self.outer;
            H::compress(&mut u, &buf);
            let mut acc = u;
            let rest = iterations.saturating_sub(1);
            let done = H::iterate(&self.inner, &self.outer, &mut u, &mut acc, rest);
            for _ in 0..if done { 0 } else { rest } {
                H::store(&u, buf.as_mut());
                u = self.inner;
                H::compress(&mut u, &buf);
                H::store(&u, buf.as_mut());
                u = self.outer;
                H::compress(&mut u, &buf);
                H::xor(&mut acc, &u);
            }
            H::store(&acc, out);
            u.zeroize();
            acc.zeroize();
            buf.zeroize();
        }
    }

    /// Iterations below which output blocks are not spread over threads: starting a thread
    /// costs tens of microseconds, a few thousand iterations about as much.
    const PARALLEL_MIN_ITERATIONS: u32 = 4096;

    /// PBKDF2-HMAC-`H` into `out`. `iterations == 0` behaves like 1.
    pub(super) fn pbkdf2<H: RawHash>(
        password: &[u8],
        salt: &[u8],
        iterations: u32,
        out: &mut [u8],
    ) {
        let keyed = Keyed::<H>::new(password);
        let blocks = out.len().div_ceil(H::OUT);
        let threads = if iterations >= PARALLEL_MIN_ITERATIONS && blocks > 1 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(blocks)
        } else {
            1
        };
        // Block i (from 1) of the output; `chunks_mut` yields them in order.
        let run = |first: usize, chunks: &mut [u8]| {
            for (k, chunk) in chunks.chunks_mut(H::OUT).enumerate() {
                let index = u32::try_from(first + k + 1).unwrap_or(u32::MAX);
                keyed.block(salt, index, iterations, chunk);
            }
        };
        if threads <= 1 {
            run(0, out);
            return;
        }
        // Contiguous groups of whole blocks, as even as possible. Helpers compute theirs into
        // wiped buffers that the calling thread copies out; the calling thread takes the first
        // group, and recomputes any group whose thread could not start.
        let per = blocks.div_ceil(threads);
        let out_len = out.len();
        let span = |lo: usize, hi: usize| (lo * H::OUT).min(out_len)..(hi * H::OUT).min(out_len);
        std::thread::scope(|s| {
            let mut helpers = Vec::new();
            for g in 1..threads {
                let (lo, hi) = (g * per, ((g + 1) * per).min(blocks));
                if lo >= hi {
                    continue;
                }
                let len = span(lo, hi).len();
                let run = &run;
                let handle = std::thread::Builder::new()
                    .name("pbkdf2".into())
                    .spawn_scoped(s, move || {
                        let mut buf = SecretBuf::zeroed(len);
                        run(lo, buf.as_mut_bytes());
                        buf
                    })
                    .ok();
                helpers.push((lo, hi, handle));
            }
            if let Some(mine) = out.get_mut(span(0, per)) {
                run(0, mine);
            }
            for (lo, hi, handle) in helpers {
                let Some(dst) = out.get_mut(span(lo, hi)) else {
                    continue;
                };
                match handle.and_then(|h| h.join().ok()) {
                    Some(buf) if buf.len() == dst.len() => dst.copy_from_slice(buf.as_bytes()),
                    _ => run(lo, dst),
                }
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitive() {
        for h in ALL {
            assert_eq!(HashAlg::from_name(h.name()), Some(h));
            assert_eq!(HashAlg::from_name(&h.name().to_uppercase()), Some(h));
            assert!(h.output_size() <= MAX_OUTPUT_SIZE);
        }
        assert_eq!(HashAlg::from_name("SHA3-256"), Some(HashAlg::Sha3_256));
        assert_eq!(HashAlg::from_name("md5"), None);
        assert_eq!(HashAlg::from_name("sha3_256"), None);
        assert_eq!(HashAlg::from_name(""), None);
    }

    #[test]
    fn digest_sizes_and_abc_vectors() {
        // FIPS 180-2 / FIPS 202 / RIPEMD and Whirlpool reference "abc" digests (prefixes).
        let cases: [(HashAlg, &str); 9] = [
            (HashAlg::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (HashAlg::Sha224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"),
            (
                HashAlg::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (HashAlg::Sha384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
            (HashAlg::Sha512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
            (HashAlg::Ripemd160, "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"),
            (HashAlg::Whirlpool, "4e2448a4c6f486bb16b6562c73b4020bf3043e3a731bce721ae1b303d97e6d4c7181eebdb6c57e277d0e34957114cbd6c797fc9d95d8b582d225292076d4eef5"),
            (
                HashAlg::Sha3_256,
                "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
            ),
            (HashAlg::Sha3_512, "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0"),
        ];
        for (h, want) in cases {
            let mut out = vec![0u8; h.output_size()];
            h.digest_into(&[b"a", b"bc"], &mut out);
            assert_eq!(hex::encode(&out), want, "{h}");
            // Prefix output.
            let mut short = [0u8; 7];
            h.digest_into(&[b"abc"], &mut short);
            assert_eq!(&short[..], &out[..7]);
        }
    }

    const FAST: [HashAlg; 5] = [
        HashAlg::Sha1,
        HashAlg::Sha224,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ];

    fn both(h: HashAlg, pw: &[u8], salt: &[u8], iterations: u32, len: usize) -> (Vec<u8>, Vec<u8>) {
        let mut fast = vec![0u8; len];
        let mut generic = vec![0u8; len];
        h.pbkdf2_hmac(pw, salt, iterations, &mut fast).unwrap();
        h.pbkdf2_hmac_generic(pw, salt, iterations, &mut generic)
            .unwrap();
        (fast, generic)
    }

    /// The padding boundaries: salts that make `salt || INT(i)` end just before, at and after
    /// the point where the length field no longer fits; passphrases at and over the block
    /// size (hashed first); outputs of partial and several blocks; on threads.
    #[test]
    fn fast_pbkdf2_matches_generic_at_edges() {
        for h in FAST {
            for salt_len in [
                0usize, 1, 47, 50, 51, 52, 55, 56, 60, 64, 107, 111, 112, 116, 128, 200,
            ] {
                let salt: Vec<u8> = (0..salt_len).map(|i| (i * 31 + 7) as u8).collect();
                for pw_len in [0usize, 1, 63, 64, 65, 127, 128, 129, 300] {
                    let pw: Vec<u8> = (0..pw_len).map(|i| (i * 17 + 3) as u8).collect();
                    let (a, b) = both(h, &pw, &salt, 3, 70);
                    assert_eq!(a, b, "{h} salt {salt_len} pw {pw_len}");
                }
            }
            for len in [1usize, 19, 20, 21, 32, 64, 65, 129, 200] {
                let (a, b) = both(h, b"pw", b"salt", 5000, len);
                assert_eq!(a, b, "{h} threaded len {len}");
            }
            let (a, b) = both(h, b"pw", b"salt", 0, 40);
            assert_eq!(a, b, "{h} zero iterations");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

        /// Differential: the fast PBKDF2 equals the `pbkdf2` crate on random inputs.
        #[test]
        fn fast_pbkdf2_matches_generic(
            which in 0usize..5,
            pw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            salt in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            iterations in 1u32..40,
            len in 1usize..300,
        ) {
            let (a, b) = both(FAST[which], &pw, &salt, iterations, len);
            proptest::prop_assert_eq!(a, b);
        }
    }

    /// The raw-compression digest equals the `sha1`/`sha2` crates' for every length around
    /// the padding boundaries, split into parts in several ways, with short outputs.
    #[test]
    fn fast_digest_matches_crates() {
        fn reference(h: HashAlg, data: &[u8]) -> Vec<u8> {
            let mut out = vec![0u8; h.output_size()];
            match h {
                HashAlg::Sha1 => digest_generic::<sha1::Sha1>(&[data], &mut out),
                HashAlg::Sha224 => digest_generic::<sha2::Sha224>(&[data], &mut out),
                HashAlg::Sha256 => digest_generic::<sha2::Sha256>(&[data], &mut out),
                HashAlg::Sha384 => digest_generic::<sha2::Sha384>(&[data], &mut out),
                _ => digest_generic::<sha2::Sha512>(&[data], &mut out),
            }
            out
        }
        let data: Vec<u8> = (0..700).map(|i| (i * 7 + 3) as u8).collect();
        for h in FAST {
            for len in (0..300).chain([511, 512, 513, 699]) {
                let want = reference(h, &data[..len]);
                let mut got = vec![0u8; h.output_size()];
                h.digest_into(&[&data[..len]], &mut got);
                assert_eq!(got, want, "{h} len {len}");
                let cut = len / 3;
                let mut parts = vec![0u8; h.output_size()];
                h.digest_into(&[&data[..cut], &[], &data[cut..len]], &mut parts);
                assert_eq!(parts, want, "{h} len {len} in parts");
                let mut short = vec![0u8; 5];
                h.digest_into(&[&data[..len]], &mut short);
                assert_eq!(short[..], want[..5]);
            }
        }
    }
}
