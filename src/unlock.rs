//! The unlock service every verb that opens a keyslot uses: the KDF limits (flags over this
//! machine's memory budget, the container's limit included) and the passphrase tries over
//! the key options.

use crate::device;
use crate::error::CliError;
use crate::passphrase::{with_passphrase, KeyArgs};
use luks2::kdf::KdfLimits;
use luks2::unlock::{unlock, UnlockOptions, Unlocked};

/// KDF limits from `--max-kdf-memory`, `--max-pbkdf2-time` and `--max-argon2-time`, each
/// defaulting to the library's default (memory: from what this machine has available).
pub fn kdf_limits_from(
    max_kdf_memory: Option<u64>,
    max_pbkdf2_time: Option<u64>,
    max_argon2_time: Option<u32>,
) -> KdfLimits {
    let budget = device::memory_budget();
    let _ = crate::error::MEMORY_NOTE.set(budget.to_string());
    // Nothing known about memory: the library's default limit rather than none at all.
    let mut limits = if budget.bytes > 0 {
        KdfLimits::for_available_memory(budget.bytes)
    } else {
        KdfLimits::default()
    };
    if let Some(kib) = max_kdf_memory {
        limits.max_memory_kib = kib;
    }
    if let Some(secs) = max_pbkdf2_time {
        limits.max_pbkdf2_seconds = Some(secs);
    }
    if let Some(passes) = max_argon2_time {
        limits.max_time = passes;
    }
    limits
}

/// Unlocks with passphrases from the key options.
pub fn unlock_with(
    hdr_file: &mut device::ReadOnly,
    header: &luks2::Header,
    key: &KeyArgs,
    device_name: &str,
    opts: &UnlockOptions,
    verbose: bool,
) -> Result<Unlocked, CliError> {
    let u = with_passphrase(key, device_name, |p| {
        unlock(header, hdr_file, p.as_bytes(), opts)
    })?;
    if verbose {
        eprintln!("Key slot {} unlocked.", u.keyslot);
    }
    Ok(u)
}
