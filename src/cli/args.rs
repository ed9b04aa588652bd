//! Option groups shared by several verb families: the KDF limits and the key options, each
//! turned into the plain value the services take.

use crate::passphrase::{KeySource, DEFAULT_TRIES};
use luks2::kdf::KdfLimits;
use std::path::PathBuf;

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

/// The key options shared by every verb that needs a passphrase.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// Read the key from FILE (- is standard input); the whole file is the key
    #[arg(short = 'd', long = "key-file", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Skip N bytes at the start of the key file
    #[arg(long = "keyfile-offset", value_name = "N", default_value_t = 0)]
    pub keyfile_offset: u64,
    /// Read at most N bytes of the key file
    #[arg(short = 'l', long = "keyfile-size", value_name = "N")]
    pub keyfile_size: Option<u64>,
    /// How many times to prompt for a passphrase
    #[arg(short = 'T', long = "tries", value_name = "N", default_value_t = DEFAULT_TRIES)]
    pub tries: u32,
}

impl KeyArgs {
    /// The passphrase source these options name.
    pub fn source(&self) -> KeySource {
        KeySource {
            key_file: self.key_file.clone(),
            keyfile_offset: self.keyfile_offset,
            keyfile_size: self.keyfile_size,
            tries: self.tries,
        }
    }
}
