//! The LUKS anti-forensic information splitter (AF split and merge).
//!
//! A key of `key_size` bytes is stored as `stripes` stripes of `key_size` bytes. Merging keeps
//! a running buffer `d` (zero at first): for each stripe but the last, `d = diffuse(d ^ s_i)`;
//! the key is `d ^ s_last`. `diffuse` hashes `d` in blocks of the hash's output size: block `j`
//! becomes `H(be32(j) || block_j)`, the last block possibly partial (its hash truncated).
//! This is cryptsetup's `lib/luks1/af.c`, used by LUKS1 and LUKS2 (`af.type = "luks1"`).

use crate::hash::{HashAlg, MAX_OUTPUT_SIZE};
use crate::secret::SecretBuf;
use std::fmt;
use zeroize::Zeroize;

/// The sector size the split key area is rounded up to.
pub const AF_SECTOR_SIZE: usize = 512;

/// Stripes of every LUKS2 keyslot. cryptsetup's `luks2_keyslot_get_key` always merges
/// `LUKS_STRIPES` (4000) stripes and never reads `af.stripes`, so neither does this library:
/// a header whose `af.stripes` says otherwise opens exactly as it does with cryptsetup.
pub const LUKS2_AF_STRIPES: u32 = 4000;

/// Why an AF merge or split could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfError {
    /// The input (split area for a merge, random stripes for a split) is shorter than needed.
    SourceTooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// The output buffer has the wrong size.
    OutputSize {
        /// Bytes expected (the key size for a merge; at least `key_size * stripes` for a split).
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The stripe count is zero.
    StripesZero,
    /// `key_size * stripes` does not fit in memory sizes.
    Overflow {
        /// Key size in bytes.
        key_size: usize,
        /// Stripe count.
        stripes: u32,
    },
}

impl fmt::Display for AfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AfError::SourceTooShort { needed, got } => write!(
                f,
                "anti-forensic split data too short: {got} bytes given, {needed} needed \
                 (key size × stripes)"
            ),
            AfError::OutputSize { expected, got } => write!(
                f,
                "anti-forensic output buffer has {got} bytes, {expected} expected"
            ),
            AfError::StripesZero => write!(f, "anti-forensic stripe count is zero"),
            AfError::Overflow { key_size, stripes } => write!(
                f,
                "anti-forensic size overflows: key size {key_size} × {stripes} stripes"
            ),
        }
    }
}

impl std::error::Error for AfError {}

/// Bytes of the keyslot area that hold the split key: `key_size * stripes` rounded up to 512.
/// `None` on arithmetic overflow.
pub fn split_area_len(key_size: usize, stripes: u32) -> Option<usize> {
    let bytes = key_size.checked_mul(usize::try_from(stripes).ok()?)?;
    bytes.checked_next_multiple_of(AF_SECTOR_SIZE)
}

/// `dst ^= src` over the common length.
fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// cryptsetup's `diffuse`, in place: block `j` (hash-size, last one partial) becomes the first
/// `len(block_j)` bytes of `H(be32(j) || block_j)`.
fn diffuse(hash: HashAlg, buf: &mut [u8]) {
    let ds = hash.output_size();
    let mut tmp = [0u8; MAX_OUTPUT_SIZE];
    for (j, block) in buf.chunks_mut(ds).enumerate() {
        // A block index cannot exceed u32 for any real key; wrap as C's unsigned int would.
        let iv =
            u32::try_from(u64::try_from(j).unwrap_or_default() & 0xffff_ffff).unwrap_or_default();
        let t = tmp.get_mut(..block.len()).unwrap_or_default();
        hash.digest_into(&[&iv.to_be_bytes(), block], t);
        block.copy_from_slice(t);
    }
    tmp.zeroize();
}

fn stripe_bytes(key_size: usize, stripes: u32) -> Result<usize, AfError> {
    usize::try_from(stripes)
        .ok()
        .and_then(|s| key_size.checked_mul(s))
        .ok_or(AfError::Overflow { key_size, stripes })
}

/// Merges `stripes` stripes of `key_size` bytes from `src` into `out` (`out.len() == key_size`).
///
/// `src` may be longer than `key_size * stripes` (the 512-byte padding of the keyslot area);
/// the extra bytes are ignored. The running buffer is a [`SecretBuf`], wiped on return.
pub fn merge(
    hash: HashAlg,
    src: &[u8],
    key_size: usize,
    stripes: u32,
    out: &mut [u8],
) -> Result<(), AfError> {
    if stripes == 0 {
        return Err(AfError::StripesZero);
    }
    if out.len() != key_size {
        return Err(AfError::OutputSize {
            expected: key_size,
            got: out.len(),
        });
    }
    let needed = stripe_bytes(key_size, stripes)?;
    let src = src.get(..needed).ok_or(AfError::SourceTooShort {
        needed,
        got: src.len(),
    })?;
    if key_size == 0 {
        return Ok(());
    }
    let mut buf = SecretBuf::zeroed(key_size);
    let d = buf.as_mut_bytes();
    let mut chunks = src.chunks_exact(key_size);
    // `stripes >= 1` and `src.len() == key_size * stripes`, so there are exactly `stripes`
    // chunks; the last one is taken with `next_back`.
    let last = chunks.next_back().unwrap_or_default();
    for stripe in chunks {
        xor_into(d, stripe);
        diffuse(hash, d);
    }
    out.copy_from_slice(d);
    xor_into(out, last);
    Ok(())
}

/// Splits `key` into `stripes` stripes written to the first `key.len() * stripes` bytes of
/// `out` (the rest of `out`, such as the 512-byte padding, is left untouched).
///
/// The first `stripes - 1` stripes are copied from `random_stripes` (which must hold at least
/// `key.len() * (stripes - 1)` bytes of fresh randomness; extra bytes are ignored) and the last
/// one is computed so that [`merge`] gives back `key`.
pub fn split(
    hash: HashAlg,
    key: &[u8],
    stripes: u32,
    random_stripes: &[u8],
    out: &mut [u8],
) -> Result<(), AfError> {
    if stripes == 0 {
        return Err(AfError::StripesZero);
    }
    let key_size = key.len();
    let needed_out = stripe_bytes(key_size, stripes)?;
    let needed_random = needed_out - key_size;
    let out_len = out.len();
    let out = out.get_mut(..needed_out).ok_or(AfError::OutputSize {
        expected: needed_out,
        got: out_len,
    })?;
    let random = random_stripes
        .get(..needed_random)
        .ok_or(AfError::SourceTooShort {
            needed: needed_random,
            got: random_stripes.len(),
        })?;
    if key_size == 0 {
        return Ok(());
    }
    let (head, last) = out.split_at_mut(needed_random);
    head.copy_from_slice(random);
    let mut buf = SecretBuf::zeroed(key_size);
    let d = buf.as_mut_bytes();
    for stripe in head.chunks_exact(key_size) {
        xor_into(d, stripe);
        diffuse(hash, d);
    }
    last.copy_from_slice(d);
    xor_into(last, key);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn area_len() {
        assert_eq!(split_area_len(32, 4000), Some(128_000));
        assert_eq!(split_area_len(64, 4000), Some(256_000));
        assert_eq!(split_area_len(16, 4000), Some(64_000));
        assert_eq!(split_area_len(20, 1), Some(512));
        assert_eq!(split_area_len(33, 4000), Some(132_096));
        assert_eq!(split_area_len(0, 4000), Some(0));
        assert_eq!(split_area_len(usize::MAX, 2), None);
        assert_eq!(split_area_len(usize::MAX - 10, 1), None);
    }

    #[test]
    fn one_stripe_is_identity() {
        let src = [7u8; 32];
        let mut out = [0u8; 32];
        merge(HashAlg::Sha256, &src, 32, 1, &mut out).unwrap();
        assert_eq!(out, src);
    }

    #[test]
    fn errors_are_exact() {
        let mut out = [0u8; 32];
        assert_eq!(
            merge(HashAlg::Sha256, &[0; 100], 32, 0, &mut out),
            Err(AfError::StripesZero)
        );
        assert_eq!(
            merge(HashAlg::Sha256, &[0; 100], 32, 4, &mut out),
            Err(AfError::SourceTooShort {
                needed: 128,
                got: 100
            })
        );
        assert_eq!(
            merge(HashAlg::Sha256, &[0; 100], 16, 4, &mut out),
            Err(AfError::OutputSize {
                expected: 16,
                got: 32
            })
        );
        let mut big = vec![0u8; 0];
        assert_eq!(
            merge(HashAlg::Sha256, &[], usize::MAX, 2, &mut big),
            Err(AfError::OutputSize {
                expected: usize::MAX,
                got: 0
            })
        );
        assert_eq!(
            split(HashAlg::Sha1, &[1; 16], 3, &[0; 31], &mut [0; 48]),
            Err(AfError::SourceTooShort {
                needed: 32,
                got: 31
            })
        );
        assert_eq!(
            split(HashAlg::Sha1, &[1; 16], 3, &[0; 32], &mut [0; 47]),
            Err(AfError::OutputSize {
                expected: 48,
                got: 47
            })
        );
    }

    #[test]
    fn split_then_merge_every_hash() {
        let key: Vec<u8> = (0..67u8).collect(); // not a multiple of any digest size
        let random: Vec<u8> = (0..67 * 9).map(|i| (i * 31 % 251) as u8).collect();
        for h in crate::hash::ALL {
            let mut area = vec![0u8; split_area_len(67, 10).unwrap()];
            split(h, &key, 10, &random, &mut area).unwrap();
            assert_eq!(&area[..67 * 9], &random[..]);
            let mut out = vec![0u8; 67];
            merge(h, &area, 67, 10, &mut out).unwrap();
            assert_eq!(out, key, "{h}");
        }
    }
}
