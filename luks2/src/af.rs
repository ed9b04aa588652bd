//! The LUKS anti-forensic information splitter (AF split and merge).

use crate::hash::HashAlg;
use std::fmt;

/// Why an AF merge or split could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfError {
    /// Placeholder until the crypto module lands.
    Unimplemented,
}

impl fmt::Display for AfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Bytes of the keyslot area that hold the split key: `key_size * stripes` rounded up to 512.
pub fn split_area_len(key_size: usize, stripes: u32) -> Option<usize> {
    let _ = (key_size, stripes);
    todo!("crypto helper")
}

/// Merges `stripes` stripes of `key_size` bytes from `src` into `out` (`out.len() == key_size`).
pub fn merge(
    hash: HashAlg,
    src: &[u8],
    key_size: usize,
    stripes: u32,
    out: &mut [u8],
) -> Result<(), AfError> {
    let _ = (hash, src, key_size, stripes, out);
    todo!("crypto helper")
}
