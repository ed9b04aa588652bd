//! Key derivation: PBKDF2 (any [`HashAlg`]) and Argon2i/Argon2id, with cost limits checked
//! before any work starts.
//!
//! Two kinds of refusal are kept apart:
//! - *invalid* parameters, which cryptsetup (libargon2, its PBKDF2) would refuse as well:
//!   zero iterations, zero time, zero or more than 2^24−1 lanes, less than 8 KiB of memory per
//!   lane, an Argon2 salt under 8 bytes, a key under 4 bytes for Argon2
//!   ([`KdfError::InvalidParameter`], [`KdfError::SaltInvalid`]);
//! - *over our limits*: valid parameters that ask for more memory or work than
//!   [`KdfLimits`] allows ([`KdfError::MemoryOverLimit`], [`KdfError::TimeOverLimit`], …).
//!
//! Argon2 runs in `luks2-accel` (AVX2 compression, lanes on scoped threads) when the CPU has
//! AVX2, and in the `argon2` crate otherwise; both are checked against RFC 9106, the reference
//! implementation and each other. Either way the memory is allocated fallibly, so a failed
//! allocation is reported as [`KdfError::OutOfMemory`] instead of aborting the process, and it
//! is wiped after use.

use crate::hash::HashAlg;
use std::fmt;
use zeroize::Zeroize;

/// Argon2 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Variant {
    /// Argon2i
    I,
    /// Argon2id
    Id,
}

impl Argon2Variant {
    /// The name used in LUKS2 headers: `"argon2i"` or `"argon2id"`.
    pub fn name(self) -> &'static str {
        match self {
            Argon2Variant::I => "argon2i",
            Argon2Variant::Id => "argon2id",
        }
    }

    /// Parses a LUKS2 kdf type (`argon2i`, `argon2id`; exact, as cryptsetup compares it).
    pub fn from_name(name: &str) -> Option<Argon2Variant> {
        match name {
            "argon2i" => Some(Argon2Variant::I),
            "argon2id" => Some(Argon2Variant::Id),
            _ => None,
        }
    }
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

/// Largest Argon2 memory cryptsetup lets a new keyslot use, and our default cap: 4 GiB in KiB.
pub const MAX_ARGON2_MEMORY_KIB: u64 = 4 * 1024 * 1024;
/// Largest Argon2 lane count the algorithm allows (2^24 − 1, as libargon2 and the RFC).
pub const MAX_ARGON2_LANES: u32 = 0x00FF_FFFF;
/// Smallest Argon2 salt (libargon2's `ARGON2_MIN_SALT_LENGTH`).
pub const MIN_ARGON2_SALT_LEN: usize = 8;
/// Smallest Argon2 output (libargon2's `ARGON2_MIN_OUTLEN`).
pub const MIN_ARGON2_OUTPUT_LEN: usize = 4;
/// Default cap on the Argon2 time cost. cryptsetup's benchmark picks 4 to a few dozen passes
/// (it grows memory first); 1000 passes over even 64 MiB already take minutes.
pub const DEFAULT_MAX_ARGON2_TIME: u32 = 1000;

/// Default time budget of one PBKDF2 run (a keyslot's, or a digest's), in seconds.
/// cryptsetup's own benchmark aims at 2 s per keyslot; 60 s leaves room for a slow machine
/// opening a header made on a fast one, and stops a crafted 2^31-iteration keyslot (minutes).
pub const DEFAULT_MAX_PBKDF2_SECONDS: u64 = 60;

/// PBKDF2 iterations every machine runs per second, whatever the hash (a debug build of the
/// slowest hash does far more): counts up to `budget × this` are accepted without measuring.
const PBKDF2_SURE_SPEED: u64 = 1000;

/// Upper bounds on the work a header may ask for, checked before deriving.
///
/// The default allows up to 4 GiB of Argon2 memory (cryptsetup's own maximum), up to
/// [`DEFAULT_MAX_ARGON2_TIME`] passes, any valid lane count (lanes split the work, they do not
/// add to it, and threads come from a fixed pool) and PBKDF2 iteration counts that run within
/// [`DEFAULT_MAX_PBKDF2_SECONDS`] on this machine (speed measured once per hash per process,
/// see [`pbkdf2_speed`]). Use [`KdfLimits::for_available_memory`] to also bound memory by
/// what the machine has free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfLimits {
    /// Largest Argon2 memory accepted, in KiB.
    pub max_memory_kib: u64,
    /// Largest Argon2 time cost.
    pub max_time: u32,
    /// Largest Argon2 parallelism.
    pub max_cpus: u32,
    /// Largest PBKDF2 iteration count (whatever the time).
    pub max_pbkdf2_iterations: u32,
    /// Largest estimated PBKDF2 run time, in seconds, from this machine's measured speed of
    /// the hash; `None` for no time limit.
    pub max_pbkdf2_seconds: Option<u64>,
}

impl Default for KdfLimits {
    fn default() -> Self {
        KdfLimits {
            max_memory_kib: MAX_ARGON2_MEMORY_KIB,
            max_time: DEFAULT_MAX_ARGON2_TIME,
            max_cpus: MAX_ARGON2_LANES,
            max_pbkdf2_iterations: u32::MAX,
            max_pbkdf2_seconds: Some(DEFAULT_MAX_PBKDF2_SECONDS),
        }
    }
}

/// PBKDF2-HMAC iterations per second of `hash` on this machine: measured on first use (a run
/// of about 50 ms on a fixed password and salt), then cached for the process.
pub fn pbkdf2_speed(hash: HashAlg) -> u64 {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static SPEEDS: Mutex<Vec<(HashAlg, u64)>> = Mutex::new(Vec::new());
    let cached = |v: &[(HashAlg, u64)]| v.iter().find(|(h, _)| *h == hash).map(|(_, n)| *n);
    if let Some(n) = SPEEDS.lock().ok().and_then(|v| cached(&v)) {
        return n;
    }
    let mut out = [0u8; 32];
    let mut iterations: u32 = 1000;
    let target = Duration::from_millis(50);
    let speed = loop {
        let start = Instant::now();
        if hash
            .pbkdf2_hmac(b"tazpod-speed", b"tazpod-speed-salt", iterations, &mut out)
            .is_err()
        {
            break PBKDF2_SURE_SPEED;
        }
        let took = start.elapsed();
        if took >= target || iterations >= 1 << 28 {
            let nanos = took.as_nanos().max(1);
            let per_sec = u128::from(iterations) * 1_000_000_000 / nanos;
            break u64::try_from(per_sec)
                .unwrap_or(u64::MAX)
                .max(PBKDF2_SURE_SPEED);
        }
        iterations = iterations.saturating_mul(4);
    };
    if let Ok(mut v) = SPEEDS.lock() {
        if cached(&v).is_none() {
            v.push((hash, speed));
        }
    }
    speed
}

impl KdfLimits {
    /// The default limits with Argon2 memory capped at 3/4 of `available_bytes` (for example
    /// `MemAvailable` from `/proc/meminfo`), and never above 4 GiB.
    pub fn for_available_memory(available_bytes: u64) -> Self {
        let three_quarters_kib = (available_bytes / 1024 / 4).saturating_mul(3);
        KdfLimits {
            max_memory_kib: three_quarters_kib.min(MAX_ARGON2_MEMORY_KIB),
            ..KdfLimits::default()
        }
    }
}

/// Why a key derivation was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KdfError {
    /// The header names a hash this library does not implement (for PBKDF2).
    UnsupportedHash(String),
    /// A parameter is outside what the algorithm (and cryptsetup) accepts.
    InvalidParameter {
        /// The parameter: `"iterations"`, `"time"`, `"memory"`, `"cpus"`, `"key size"`, …
        name: &'static str,
        /// Its value.
        value: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The salt cannot be used (Argon2 needs at least 8 bytes).
    SaltInvalid {
        /// The salt's length in bytes.
        len: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Argon2 asks for more memory than the limit.
    MemoryOverLimit {
        /// Memory the header asks for, in KiB.
        required_kib: u64,
        /// The limit, in KiB.
        limit_kib: u64,
    },
    /// Argon2 asks for more passes than the limit.
    TimeOverLimit {
        /// Time cost the header asks for.
        time: u32,
        /// The limit.
        limit: u32,
    },
    /// Argon2 asks for more lanes than the limit.
    CpusOverLimit {
        /// Lanes the header asks for.
        cpus: u32,
        /// The limit.
        limit: u32,
    },
    /// PBKDF2 asks for more iterations than the limit.
    IterationsOverLimit {
        /// Iterations the header asks for.
        iterations: u32,
        /// The limit.
        limit: u32,
    },
    /// PBKDF2 asks for more iterations than run within the time limit on this machine.
    Pbkdf2TimeOverLimit {
        /// The hash.
        hash: HashAlg,
        /// Iterations the header asks for.
        iterations: u32,
        /// Iterations per second measured here for this hash.
        per_second: u64,
        /// The time limit in seconds.
        limit_seconds: u64,
    },
    /// The Argon2 memory could not be allocated.
    OutOfMemory {
        /// Memory that was asked for, in KiB.
        required_kib: u64,
    },
    /// The derivation failed for another reason (the underlying library's message).
    Failed(String),
}

impl fmt::Display for KdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KdfError::UnsupportedHash(h) => {
                write!(f, "unsupported hash {h:?} for pbkdf2")
            }
            KdfError::InvalidParameter {
                name,
                value,
                reason,
            } => write!(f, "invalid kdf parameter {name} = {value}: {reason}"),
            KdfError::SaltInvalid { len, reason } => {
                write!(f, "invalid kdf salt of {len} bytes: {reason}")
            }
            KdfError::MemoryOverLimit {
                required_kib,
                limit_kib,
            } => write!(
                f,
                "argon2 needs {required_kib} KiB of memory, over the limit of {limit_kib} KiB; \
                 free memory or unlock on a machine with more"
            ),
            KdfError::TimeOverLimit { time, limit } => write!(
                f,
                "argon2 time cost {time} is over the limit of {limit} passes"
            ),
            KdfError::CpusOverLimit { cpus, limit } => write!(
                f,
                "argon2 parallelism {cpus} is over the limit of {limit} lanes"
            ),
            KdfError::IterationsOverLimit { iterations, limit } => write!(
                f,
                "pbkdf2 iteration count {iterations} is over the limit of {limit}"
            ),
            KdfError::Pbkdf2TimeOverLimit {
                hash,
                iterations,
                per_second,
                limit_seconds,
            } => write!(
                f,
                "pbkdf2-{} with {iterations} iterations would run about {} s here \
                 ({per_second} iterations/s measured), over the limit of {limit_seconds} s",
                hash.name(),
                u64::from(*iterations) / (*per_second).max(1)
            ),
            KdfError::OutOfMemory { required_kib } => write!(
                f,
                "cannot allocate {required_kib} KiB of memory for argon2; free memory and retry"
            ),
            KdfError::Failed(m) => write!(f, "key derivation failed: {m}"),
        }
    }
}

impl std::error::Error for KdfError {}

/// The argon2 crate's work memory, wiped (every block) when dropped, also on error paths.
struct WipedBlocks(Vec<argon2::Block>);

impl Drop for WipedBlocks {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

fn invalid(name: &'static str, value: u64, reason: &'static str) -> KdfError {
    KdfError::InvalidParameter {
        name,
        value,
        reason,
    }
}

impl KdfParams {
    /// PBKDF2 parameters from a header's hash name (case-insensitive) and iteration count.
    pub fn pbkdf2(hash_name: &str, iterations: u32) -> Result<KdfParams, KdfError> {
        let hash = HashAlg::from_name(hash_name)
            .ok_or_else(|| KdfError::UnsupportedHash(hash_name.to_string()))?;
        Ok(KdfParams::Pbkdf2 { hash, iterations })
    }

    /// A short human description (`pbkdf2-sha256, 1000 iterations`,
    /// `argon2id, time 4, memory 1048576 KiB, 4 cpus`).
    pub fn describe(&self) -> String {
        match self {
            KdfParams::Pbkdf2 { hash, iterations } => {
                format!("pbkdf2-{}, {iterations} iterations", hash.name())
            }
            KdfParams::Argon2 {
                variant,
                time,
                memory_kib,
                cpus,
            } => format!(
                "{}, time {time}, memory {memory_kib} KiB, {cpus} cpus",
                variant.name()
            ),
        }
    }

    /// Refuses parameters the algorithm itself does not accept (what libargon2 and
    /// cryptsetup's PBKDF2 refuse), independent of any limit.
    pub fn validate(&self) -> Result<(), KdfError> {
        match *self {
            KdfParams::Pbkdf2 { iterations, .. } => {
                if iterations == 0 {
                    return Err(invalid("iterations", 0, "must be at least 1"));
                }
            }
            KdfParams::Argon2 {
                time,
                memory_kib,
                cpus,
                ..
            } => {
                if time == 0 {
                    return Err(invalid("time", 0, "must be at least 1"));
                }
                if cpus == 0 {
                    return Err(invalid("cpus", 0, "must be at least 1"));
                }
                if cpus > MAX_ARGON2_LANES {
                    return Err(invalid(
                        "cpus",
                        u64::from(cpus),
                        "argon2 allows at most 16777215 lanes",
                    ));
                }
                if u64::from(memory_kib) < 8 * u64::from(cpus) {
                    return Err(invalid(
                        "memory",
                        u64::from(memory_kib),
                        "argon2 needs at least 8 KiB per lane (cpus)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuses parameters over `limits` (or invalid, such as zero iterations; see
    /// [`KdfParams::validate`]). Invalid parameters are reported before limits.
    pub fn check(&self, limits: &KdfLimits) -> Result<(), KdfError> {
        self.validate()?;
        match *self {
            KdfParams::Pbkdf2 { hash, iterations } => {
                if iterations > limits.max_pbkdf2_iterations {
                    return Err(KdfError::IterationsOverLimit {
                        iterations,
                        limit: limits.max_pbkdf2_iterations,
                    });
                }
                if let Some(secs) = limits.max_pbkdf2_seconds {
                    // Small counts pass on any machine without a measurement.
                    if u64::from(iterations) > secs.saturating_mul(PBKDF2_SURE_SPEED) {
                        let per_second = pbkdf2_speed(hash);
                        if u64::from(iterations) > per_second.saturating_mul(secs) {
                            return Err(KdfError::Pbkdf2TimeOverLimit {
                                hash,
                                iterations,
                                per_second,
                                limit_seconds: secs,
                            });
                        }
                    }
                }
            }
            KdfParams::Argon2 {
                time,
                memory_kib,
                cpus,
                ..
            } => {
                if u64::from(memory_kib) > limits.max_memory_kib {
                    return Err(KdfError::MemoryOverLimit {
                        required_kib: u64::from(memory_kib),
                        limit_kib: limits.max_memory_kib,
                    });
                }
                if time > limits.max_time {
                    return Err(KdfError::TimeOverLimit {
                        time,
                        limit: limits.max_time,
                    });
                }
                if cpus > limits.max_cpus {
                    return Err(KdfError::CpusOverLimit {
                        cpus,
                        limit: limits.max_cpus,
                    });
                }
            }
        }
        Ok(())
    }

    /// Derives `out.len()` bytes from `password` and `salt` into `out`.
    ///
    /// Checks validity ([`KdfParams::validate`]) but not limits: call [`KdfParams::check`]
    /// first. Argon2 memory is allocated fallibly ([`KdfError::OutOfMemory`]) and wiped.
    pub fn derive(&self, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), KdfError> {
        self.validate()?;
        if out.is_empty() {
            return Err(invalid("key size", 0, "must be at least 1 byte"));
        }
        match *self {
            KdfParams::Pbkdf2 { hash, iterations } => hash
                .pbkdf2_hmac(password, salt, iterations, out)
                .map_err(KdfError::Failed),
            KdfParams::Argon2 {
                variant,
                time,
                memory_kib,
                cpus,
            } => derive_argon2(variant, time, memory_kib, cpus, password, salt, out),
        }
    }
}

/// Maps the argon2 crate's errors to ours (the parameters were validated before, so most of
/// these are unreachable; they are mapped rather than trusted).
fn map_argon2_error(
    e: argon2::Error,
    memory_kib: u32,
    salt_len: usize,
    out_len: usize,
) -> KdfError {
    let out_len_u64 = u64::try_from(out_len).unwrap_or(u64::MAX);
    match e {
        argon2::Error::OutOfMemory => KdfError::OutOfMemory {
            required_kib: u64::from(memory_kib),
        },
        argon2::Error::SaltTooShort => KdfError::SaltInvalid {
            len: salt_len,
            reason: "argon2 needs at least 8 bytes",
        },
        argon2::Error::SaltTooLong => KdfError::SaltInvalid {
            len: salt_len,
            reason: "too long for argon2",
        },
        argon2::Error::OutputTooShort => {
            invalid("key size", out_len_u64, "argon2 derives at least 4 bytes")
        }
        argon2::Error::OutputTooLong => invalid("key size", out_len_u64, "too long for argon2"),
        argon2::Error::MemoryTooLittle => invalid(
            "memory",
            u64::from(memory_kib),
            "too little memory for argon2",
        ),
        other => KdfError::Failed(format!("argon2: {other}")),
    }
}

fn derive_argon2(
    variant: Argon2Variant,
    time: u32,
    memory_kib: u32,
    cpus: u32,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), KdfError> {
    if salt.len() < MIN_ARGON2_SALT_LEN {
        return Err(KdfError::SaltInvalid {
            len: salt.len(),
            reason: "argon2 needs at least 8 bytes",
        });
    }
    if out.len() < MIN_ARGON2_OUTPUT_LEN {
        return Err(invalid(
            "key size",
            u64::try_from(out.len()).unwrap_or(u64::MAX),
            "argon2 derives at least 4 bytes",
        ));
    }
    derive_argon2_with(
        luks2_accel::argon2::accelerated(),
        variant,
        time,
        memory_kib,
        cpus,
        password,
        salt,
        out,
    )
}

/// Argon2 through `luks2-accel` if `accel`, else through the `argon2` crate.
#[allow(clippy::too_many_arguments)]
fn derive_argon2_with(
    accel: bool,
    variant: Argon2Variant,
    time: u32,
    memory_kib: u32,
    cpus: u32,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), KdfError> {
    if accel {
        return derive_argon2_accel(variant, time, memory_kib, cpus, password, salt, out);
    }
    let map = |e| map_argon2_error(e, memory_kib, salt.len(), out.len());
    let params = argon2::Params::new(memory_kib, time, cpus, Some(out.len())).map_err(map)?;
    let algorithm = match variant {
        Argon2Variant::I => argon2::Algorithm::Argon2i,
        Argon2Variant::Id => argon2::Algorithm::Argon2id,
    };
    let ctx = argon2::Argon2::new(algorithm, argon2::Version::V0x13, params);

    let block_count = ctx.params().block_count();
    let mut blocks = WipedBlocks(Vec::new());
    blocks
        .0
        .try_reserve_exact(block_count)
        .map_err(|_| KdfError::OutOfMemory {
            required_kib: u64::from(memory_kib),
        })?;
    blocks.0.resize(block_count, argon2::Block::new());

    // The lanes run on a thread pool of our own, dropped right after: no worker threads
    // outlive the derivation (the global rayon pool's would, and a process that later forks,
    // as ghost mode does, must be single-threaded again). If no pool can be made, the crate
    // falls back to rayon's global pool.
    let lanes = usize::try_from(cpus).unwrap_or(1).clamp(1, 64);
    let mut run =
        || ctx.hash_password_into_with_memory(password, salt, out, blocks.0.as_mut_slice());
    let r = match rayon::ThreadPoolBuilder::new()
        .num_threads(lanes)
        .thread_name(|i| format!("argon2-lane-{i}"))
        .build()
    {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    };
    drop(blocks);
    r.map_err(|e| map_argon2_error(e, memory_kib, salt.len(), out.len()))
}

/// Argon2 through `luks2-accel` (AVX2 compression, lanes on scoped threads, memory zeroed by
/// the allocator and wiped in parallel). Used when the CPU has AVX2; the `argon2` crate
/// otherwise. Both are tested against RFC 9106 and the reference implementation.
fn derive_argon2_accel(
    variant: Argon2Variant,
    time: u32,
    memory_kib: u32,
    cpus: u32,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), KdfError> {
    use luks2_accel::argon2 as a2;
    let params = a2::Params {
        variant: match variant {
            Argon2Variant::I => a2::Variant::I,
            Argon2Variant::Id => a2::Variant::Id,
        },
        time,
        memory_kib,
        lanes: cpus,
    };
    a2::hash(&params, password, salt, out).map_err(|e| match e {
        a2::Error::OutOfMemory => KdfError::OutOfMemory {
            required_kib: u64::from(memory_kib),
        },
        a2::Error::InvalidParameter {
            name: "salt",
            reason,
        } => KdfError::SaltInvalid {
            len: salt.len(),
            reason,
        },
        a2::Error::InvalidParameter {
            name: "output",
            reason,
        } => invalid(
            "key size",
            u64::try_from(out.len()).unwrap_or(u64::MAX),
            reason,
        ),
        other => KdfError::Failed(format!("argon2: {other}")),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn argon(time: u32, memory_kib: u32, cpus: u32) -> KdfParams {
        KdfParams::Argon2 {
            variant: Argon2Variant::Id,
            time,
            memory_kib,
            cpus,
        }
    }

    /// Both Argon2 paths (luks2-accel and the argon2 crate) agree, and both refuse the same
    /// out-of-memory request the same way.
    #[test]
    fn argon2_accel_and_crate_paths_agree() {
        for (variant, time, memory_kib, cpus, len) in [
            (Argon2Variant::Id, 2, 256, 1, 32),
            (Argon2Variant::I, 1, 100, 3, 64),
            (Argon2Variant::Id, 3, 67, 2, 80),
        ] {
            let mut a = vec![0u8; len];
            let mut b = vec![0u8; len];
            derive_argon2_with(
                true,
                variant,
                time,
                memory_kib,
                cpus,
                b"pw",
                b"saltsalt",
                &mut a,
            )
            .unwrap();
            derive_argon2_with(
                false,
                variant,
                time,
                memory_kib,
                cpus,
                b"pw",
                b"saltsalt",
                &mut b,
            )
            .unwrap();
            assert_eq!(a, b, "{variant:?} t={time} m={memory_kib} p={cpus}");
        }
    }

    #[test]
    fn limits_from_available_memory() {
        let l = KdfLimits::for_available_memory(2 * 1024 * 1024 * 1024);
        assert_eq!(l.max_memory_kib, 1_572_864);
        let l = KdfLimits::for_available_memory(8 * 1024 * 1024 * 1024);
        assert_eq!(l.max_memory_kib, MAX_ARGON2_MEMORY_KIB);
        let l = KdfLimits::for_available_memory(1024 * 1024 * 1024);
        assert_eq!(l.max_memory_kib, 786_432);
        let l = KdfLimits::for_available_memory(64 * 1024 * 1024 * 1024);
        assert_eq!(l.max_memory_kib, MAX_ARGON2_MEMORY_KIB);
        let l = KdfLimits::for_available_memory(0);
        assert_eq!(l.max_memory_kib, 0);
        let l = KdfLimits::for_available_memory(u64::MAX);
        assert_eq!(l.max_memory_kib, MAX_ARGON2_MEMORY_KIB);
        assert_eq!(KdfLimits::default().max_memory_kib, 4_194_304);
    }

    #[test]
    fn check_reports_exact_variants() {
        let lim = KdfLimits::default();
        assert_eq!(argon(4, 1 << 20, 4).check(&lim), Ok(()));
        assert_eq!(
            argon(4, u32::MAX, 4).check(&lim),
            Err(KdfError::MemoryOverLimit {
                required_kib: u64::from(u32::MAX),
                limit_kib: 4_194_304
            })
        );
        assert_eq!(
            argon(1001, 1024, 1).check(&lim),
            Err(KdfError::TimeOverLimit {
                time: 1001,
                limit: 1000
            })
        );
        let small = KdfLimits {
            max_cpus: 4,
            max_pbkdf2_iterations: 10,
            ..lim
        };
        assert_eq!(
            argon(4, 1024, 5).check(&small),
            Err(KdfError::CpusOverLimit { cpus: 5, limit: 4 })
        );
        let p = KdfParams::Pbkdf2 {
            hash: HashAlg::Sha256,
            iterations: 11,
        };
        assert_eq!(
            p.check(&small),
            Err(KdfError::IterationsOverLimit {
                iterations: 11,
                limit: 10
            })
        );
        assert_eq!(
            argon(0, 1024, 1).check(&lim),
            Err(invalid("time", 0, "must be at least 1"))
        );
        assert!(matches!(
            argon(1, 1024, 0).check(&lim),
            Err(KdfError::InvalidParameter { name: "cpus", .. })
        ));
        assert!(matches!(
            argon(1, u32::MAX, MAX_ARGON2_LANES + 1).check(&lim),
            Err(KdfError::InvalidParameter { name: "cpus", .. })
        ));
        assert!(matches!(
            argon(1, 31, 4).check(&lim),
            Err(KdfError::InvalidParameter {
                name: "memory",
                value: 31,
                ..
            })
        ));
        assert_eq!(argon(1, 32, 4).check(&lim), Ok(()));
        let p0 = KdfParams::Pbkdf2 {
            hash: HashAlg::Sha1,
            iterations: 0,
        };
        assert!(matches!(
            p0.check(&lim),
            Err(KdfError::InvalidParameter {
                name: "iterations",
                ..
            })
        ));
        // Displays say what failed.
        let msg = argon(4, u32::MAX, 4).check(&lim).unwrap_err().to_string();
        assert!(
            msg.contains("4294967295 KiB") && msg.contains("4194304 KiB"),
            "{msg}"
        );
    }

    /// PBKDF2 counts are capped by a time budget from the speed measured here: a
    /// 2^31-iteration keyslot is refused at once, a small count needs no measurement.
    #[test]
    fn pbkdf2_time_budget() {
        let lim = KdfLimits::default();
        let p = |iterations| KdfParams::Pbkdf2 {
            hash: HashAlg::Sha256,
            iterations,
        };
        let start = std::time::Instant::now();
        let r = p(u32::MAX).check(&lim);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        let per_second = pbkdf2_speed(HashAlg::Sha256);
        assert!(per_second >= PBKDF2_SURE_SPEED);
        assert_eq!(
            r,
            Err(KdfError::Pbkdf2TimeOverLimit {
                hash: HashAlg::Sha256,
                iterations: u32::MAX,
                per_second,
                limit_seconds: 60
            })
        );
        // Cached: the same figure again.
        assert_eq!(pbkdf2_speed(HashAlg::Sha256), per_second);
        assert_eq!(p(1000).check(&lim), Ok(()));
        let none = KdfLimits {
            max_pbkdf2_seconds: None,
            ..lim
        };
        assert_eq!(p(u32::MAX).check(&none), Ok(()));
        let zero = KdfLimits {
            max_pbkdf2_seconds: Some(0),
            ..lim
        };
        assert!(matches!(
            p(1).check(&zero),
            Err(KdfError::Pbkdf2TimeOverLimit { iterations: 1, .. })
        ));
        let msg = p(u32::MAX).check(&lim).unwrap_err().to_string();
        assert!(
            msg.contains("pbkdf2-sha256 with 4294967295 iterations") && msg.contains("60 s"),
            "{msg}"
        );
    }

    #[test]
    fn pbkdf2_constructor_rejects_unknown_hash() {
        assert_eq!(
            KdfParams::pbkdf2("md5", 1000),
            Err(KdfError::UnsupportedHash("md5".into()))
        );
        assert_eq!(
            KdfParams::pbkdf2("SHA512", 1000),
            Ok(KdfParams::Pbkdf2 {
                hash: HashAlg::Sha512,
                iterations: 1000
            })
        );
    }

    #[test]
    fn argon2_refuses_short_salt_and_output() {
        let p = argon(1, 64, 1);
        let mut out = [0u8; 32];
        assert_eq!(
            p.derive(b"pw", b"1234567", &mut out),
            Err(KdfError::SaltInvalid {
                len: 7,
                reason: "argon2 needs at least 8 bytes"
            })
        );
        let mut short = [0u8; 3];
        assert!(matches!(
            p.derive(b"pw", b"12345678", &mut short),
            Err(KdfError::InvalidParameter {
                name: "key size",
                value: 3,
                ..
            })
        ));
        assert!(matches!(
            p.derive(b"pw", b"12345678", &mut []),
            Err(KdfError::InvalidParameter {
                name: "key size",
                value: 0,
                ..
            })
        ));
        assert_eq!(p.derive(b"pw", b"12345678", &mut out), Ok(()));
    }

    #[test]
    fn argon2_huge_memory_is_out_of_memory_not_abort() {
        // 4 TiB cannot be reserved under the kernel's heuristic (0) or strict (2) overcommit
        // policy; it must come back as an error. Under "always overcommit" (1) the reservation
        // would succeed and filling it would summon the OOM killer, so the test is skipped.
        // (memory_kib is u32, so the largest is 4 TiB - 1 KiB.)
        let policy = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
        if policy.trim() != "0" && policy.trim() != "2" {
            eprintln!("skipped: overcommit policy {policy:?}");
            return;
        }
        let p = argon(1, u32::MAX, 1);
        let mut out = [0u8; 32];
        let r = p.derive(b"pw", b"saltsalt", &mut out);
        assert_eq!(
            r,
            Err(KdfError::OutOfMemory {
                required_kib: u64::from(u32::MAX)
            })
        );
    }
}
