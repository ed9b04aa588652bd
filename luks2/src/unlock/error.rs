//! Why no volume key came out ([`UnlockError`]), with the hint of which limit to raise.
//!
//! A leaf: [`crate::error`] wraps `UnlockError`, and the unlock module, which returns that
//! facade, re-exports it.

use crate::af::LUKS2_AF_STRIPES;
use crate::kdf::KdfError;
use std::fmt;

/// Why no volume key came out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnlockError {
    /// No usable keyslot accepted the passphrase.
    WrongPassphrase,
    /// The header has no active keyslot at all.
    NoKeyslots,
    /// The keyslot named with `--key-slot` does not exist or is inactive.
    KeyslotNotFound(u32),
    /// The named keyslot is not assigned to the data segment's digest (an unbound key).
    KeyslotNotBound(u32),
    /// No keyslot could even be tried; each entry says which keyslot and why.
    NoUsableKeyslot(Vec<(u32, String)>),
    /// A keyslot's KDF costs more than the limits allow, and no other keyslot opened.
    KdfOverLimit {
        /// The keyslot.
        keyslot: u32,
        /// What the KDF asked for.
        error: KdfError,
    },
    /// The digest that verifies a keyslot's key (its PBKDF2) costs more than the limits
    /// allow, and no other keyslot opened. LUKS1 has one digest, numbered 0.
    DigestOverLimit {
        /// The keyslot being verified.
        keyslot: u32,
        /// The digest.
        digest: u32,
        /// What its PBKDF2 asked for.
        error: KdfError,
    },
    /// The header carries mandatory requirements this implementation does not support.
    RequirementRefused(Vec<String>),
    /// The passphrase opened none of the keyslots that could be tried, and these keyslots
    /// could not be tried at all (so the passphrase is not known to be wrong).
    UntriedKeyslots(Vec<(u32, String)>),
    /// A keyslot's split key (`key_size` × 4000 stripes) is larger than the memory limit.
    KeyTooLarge {
        /// The keyslot.
        keyslot: u32,
        /// Its `key_size` in bytes.
        key_size: u32,
        /// The memory limit in bytes.
        limit_bytes: u64,
    },
}

impl fmt::Display for UnlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnlockError::WrongPassphrase => write!(f, "no key available with this passphrase"),
            UnlockError::NoKeyslots => write!(f, "the header has no active keyslot"),
            UnlockError::KeyslotNotFound(id) => {
                write!(f, "keyslot {id} is not active (see the Keyslots section of `tazpod dump`)")
            }
            UnlockError::KeyslotNotBound(id) => {
                write!(f, "keyslot {id} holds a key not assigned to the data segment")
            }
            UnlockError::NoUsableKeyslot(reasons) => {
                write!(f, "no usable keyslot is available")?;
                for (id, why) in reasons {
                    write!(f, "; keyslot {id}: {why}")?;
                }
                Ok(())
            }
            UnlockError::KdfOverLimit { keyslot, error } => {
                write!(f, "keyslot {keyslot}: {error}{}", raise_hint(error))
            }
            UnlockError::DigestOverLimit {
                keyslot,
                digest,
                error,
            } => write!(
                f,
                "digest {digest} (verifying keyslot {keyslot}): {error}{}",
                raise_hint(error)
            ),
            UnlockError::UntriedKeyslots(reasons) => {
                write!(
                    f,
                    "no key available with this passphrase in the keyslots that could be tried, \
                     and some could not be tried (the passphrase may be theirs)"
                )?;
                for (id, why) in reasons {
                    write!(f, "; keyslot {id}: {why}")?;
                }
                Ok(())
            }
            UnlockError::KeyTooLarge {
                keyslot,
                key_size,
                limit_bytes,
            } => write!(
                f,
                "keyslot {keyslot}: key_size {key_size} needs {} bytes of split key in memory, \
                 over the limit of {limit_bytes} bytes (raise it with --max-kdf-memory if this \
                 machine has the memory)",
                u64::from(*key_size).saturating_mul(u64::from(LUKS2_AF_STRIPES))
            ),
            UnlockError::RequirementRefused(reqs) => write!(
                f,
                "the header carries unsupported mandatory requirement(s): {} (finish or roll back that operation with cryptsetup first)",
                reqs.join(", ")
            ),
        }
    }
}

/// What to do about a cost over a limit: the flag of that limit (each its own).
fn raise_hint(error: &KdfError) -> &'static str {
    match error {
        KdfError::MemoryOverLimit { .. } => {
            " (raise the limit with --max-kdf-memory KiB if this machine has the memory)"
        }
        KdfError::TimeOverLimit { .. } => {
            " (raise the limit with --max-argon2-time PASSES if you trust this header)"
        }
        KdfError::Pbkdf2TimeOverLimit { .. } | KdfError::IterationsOverLimit { .. } => {
            " (raise the limit with --max-pbkdf2-time SECONDS if you trust this header)"
        }
        _ => "",
    }
}
