//! Option groups shared by several verb families.

use luks2::kdf::KdfLimits;

/// The KDF limits of every verb that opens a keyslot (`open`, `decrypt`, `dump
/// --dump-volume-key`, `unlock`, `ls`, `cat`, `run`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Refuse KDFs that need more than N KiB of memory [default: min(4 GiB, 3/4 of available)]
    #[arg(long = "max-kdf-memory", value_name = "KiB")]
    pub max_kdf_memory: Option<u64>,
    /// Refuse a PBKDF2 (keyslot or digest) that would run longer than SECONDS on this machine
    /// (speed measured here) [default: 60]
    #[arg(long = "max-pbkdf2-time", value_name = "SECONDS")]
    pub max_pbkdf2_time: Option<u64>,
    /// Refuse an Argon2 time cost over PASSES [default: 1000]
    #[arg(long = "max-argon2-time", value_name = "PASSES")]
    pub max_argon2_time: Option<u32>,
}

impl LimitArgs {
    /// The limits these flags set, each flag left out taking its default.
    pub fn limits(&self) -> KdfLimits {
        crate::unlock::kdf_limits_from(
            self.max_kdf_memory,
            self.max_pbkdf2_time,
            self.max_argon2_time,
        )
    }
}
