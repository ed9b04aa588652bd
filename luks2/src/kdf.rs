//! Key derivation: PBKDF2 (any [`HashAlg`]) and Argon2i/Argon2id, with cost limits checked
//! before any work starts.

use crate::hash::HashAlg;
use std::fmt;

/// Argon2 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Variant {
    /// Argon2i
    I,
    /// Argon2id
    Id,
}

/// A key derivation with its cost parameters (the salt is passed separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KdfParams {
    /// PBKDF2-HMAC with `hash`.
    Pbkdf2 {
        /// The PRF's hash.
        hash: HashAlg,
        /// Iteration count.
        iterations: u32,
    },
    /// Argon2 (version 0x13).
    Argon2 {
        /// i or id.
        variant: Argon2Variant,
        /// Passes over memory (t).
        time: u32,
        /// Memory in KiB (m).
        memory_kib: u32,
        /// Lanes/threads (p).
        cpus: u32,
    },
}

/// Upper bounds on the work a header may ask for, checked before deriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfLimits {
    /// Largest Argon2 memory accepted, in KiB.
    pub max_memory_kib: u64,
    /// Largest Argon2 time cost.
    pub max_time: u32,
    /// Largest Argon2 parallelism.
    pub max_cpus: u32,
    /// Largest PBKDF2 iteration count.
    pub max_pbkdf2_iterations: u32,
}

/// Why a key derivation was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KdfError {
    /// Placeholder until the crypto module lands.
    Unimplemented,
}

impl fmt::Display for KdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl KdfParams {
    /// Refuses parameters over `limits` (or invalid, such as zero iterations).
    pub fn check(&self, limits: &KdfLimits) -> Result<(), KdfError> {
        let _ = limits;
        todo!("crypto helper")
    }
    /// Derives `out.len()` bytes from `password` and `salt` into `out`.
    pub fn derive(&self, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), KdfError> {
        let _ = (password, salt, out);
        todo!("crypto helper")
    }
}
