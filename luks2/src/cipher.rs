//! Sector ciphers as dm-crypt names them (`aes-xts-plain64`, `aes-cbc-essiv:sha256`, …).

use std::fmt;

/// Why a cipher cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CipherError {
    /// Placeholder until the crypto module lands.
    Unimplemented,
}

impl fmt::Display for CipherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A parsed dm-crypt cipher specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherSpec {
    _todo: (),
}

impl CipherSpec {
    /// Parses `encryption` (e.g. `aes-xts-plain64`) for a key of `key_size` bytes.
    pub fn parse(encryption: &str, key_size: usize) -> Result<CipherSpec, CipherError> {
        let _ = (encryption, key_size);
        todo!("crypto helper")
    }
}

/// A keyed sector cipher. Key schedules are wiped on drop.
pub struct SectorCipher {
    _todo: (),
}

impl SectorCipher {
    /// Keys the cipher; `key.len()` must equal the spec's key size.
    pub fn new(spec: &CipherSpec, key: &[u8]) -> Result<SectorCipher, CipherError> {
        let _ = (spec, key);
        todo!("crypto helper")
    }
    /// Decrypts `data` in place as consecutive units of `sector_size` bytes; unit `i` uses the
    /// IV sector number `first_iv + i * (sector_size / 512)` (dm-crypt counts 512-byte units).
    pub fn decrypt(
        &self,
        data: &mut [u8],
        sector_size: usize,
        first_iv: u64,
    ) -> Result<(), CipherError> {
        let _ = (data, sector_size, first_iv);
        todo!("crypto helper")
    }
    /// Encrypts in place; the inverse of [`SectorCipher::decrypt`].
    pub fn encrypt(
        &self,
        data: &mut [u8],
        sector_size: usize,
        first_iv: u64,
    ) -> Result<(), CipherError> {
        let _ = (data, sector_size, first_iv);
        todo!("crypto helper")
    }
}
