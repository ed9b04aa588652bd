//! Keyslot → volume key: KDF, keyslot area decryption, AF merge, digest check.

use std::fmt;

/// Why no volume key came out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnlockError {
    /// No keyslot accepted the passphrase.
    WrongPassphrase,
}

impl fmt::Display for UnlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}
