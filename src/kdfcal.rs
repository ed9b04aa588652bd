//! The one KDF calibrator, cryptsetup's method, used by `benchmark` (what it prints) and by
//! the writer (`format`, `add-key`, `change-key`, `init`: the cost of a new keyslot and of the
//! digest).
//!
//! - PBKDF2 (`crypt_pbkdf_check`): from 2^15 iterations, grow until a run takes over 500 ms of
//!   CPU time, and scale to iterations per second; a keyslot gets `per_second × iter_time`,
//!   the digest `per_second × 125 ms`, each at least 1000.
//! - Argon2 (`crypt_argon2_check`): small parameters that take at least 250 ms, then memory
//!   first (up to the memory cap), then time, until a run is within 95-110 % of the target.

use luks2::hash::HashAlg;
use luks2::kdf::{Argon2Variant, KdfError, KdfParams};
use std::time::{Duration, Instant};

/// cryptsetup's benchmark passphrase and salts.
pub const PASSWORD: &[u8] = b"foobarfo";
pub const PBKDF2_SALT: &[u8] = b"0123456789abcdef";
pub const ARGON2_SALT: &[u8] = b"0123456789abcdef0123456789abcdef";

/// Wall time of one derivation of `key_bytes` bytes with `params`.
pub fn time_kdf(params: &KdfParams, salt: &[u8], key_bytes: usize) -> Result<Duration, KdfError> {
    let mut key = luks2::SecretBuf::zeroed(key_bytes);
    let start = Instant::now();
    params.derive(PASSWORD, salt, key.as_mut_bytes())?;
    Ok(start.elapsed())
}

/// CPU time (user + system) of this process so far, in seconds, from `/proc/self/stat`
/// (`utime` and `stime`, in the kernel's fixed USER_HZ of 100 ticks per second).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are
    // numbered from 3.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// How many PBKDF2 chains of a `key_bytes` key run at once: one per output block of the hash,
/// on at most as many threads as there are CPUs (the library's rule for long derivations).
fn pbkdf2_threads(alg: HashAlg, key_bytes: usize) -> f64 {
    let blocks = key_bytes.div_ceil(alg.output_size()).max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A handful of threads: exact in f64.
    blocks.min(cpus) as f64
}

/// cryptsetup's PBKDF2 calibration (`crypt_pbkdf_check`): from 2^15 iterations, grow until a
/// run takes over 500 ms, and scale the last run to one second. `None` for an unknown hash.
///
/// Like cryptsetup, time is CPU time, so that other load on the machine does not count; it is
/// divided by the number of threads the derivation ran on, which makes the rate what the wall
/// clock shows on an idle machine (cryptsetup computes the chains one after the other).
pub fn pbkdf2_per_second(alg: HashAlg, key_bytes: usize) -> Option<u64> {
    // Measured once per process for each hash and key size (a writer calibrates the keyslot
    // and the digest with the same figure, as cryptsetup does).
    static CACHE: std::sync::Mutex<Vec<(HashAlg, usize, u64)>> = std::sync::Mutex::new(Vec::new());
    if let Ok(c) = CACHE.lock() {
        if let Some(&(_, _, n)) = c.iter().find(|(h, k, _)| *h == alg && *k == key_bytes) {
            return Some(n);
        }
    }
    let n = measure_pbkdf2(alg, key_bytes)?;
    if let Ok(mut c) = CACHE.lock() {
        c.push((alg, key_bytes, n));
    }
    Some(n)
}

fn measure_pbkdf2(alg: HashAlg, key_bytes: usize) -> Option<u64> {
    let threads = pbkdf2_threads(alg, key_bytes);
    let mut iterations: u32 = 1 << 15;
    for _ in 0..11 {
        let p = KdfParams::Pbkdf2 {
            hash: alg,
            iterations,
        };
        let cpu0 = process_cpu_seconds();
        let wall = time_kdf(&p, PBKDF2_SALT, key_bytes).ok()?.as_secs_f64();
        let ms = match (cpu0, process_cpu_seconds()) {
            (Some(a), Some(b)) if b > a => (b - a) / threads * 1000.0,
            _ => wall * 1000.0,
        };
        if ms > 500.0 {
            let per_s = f64::from(iterations) * 1000.0 / ms;
            // Saturating float-to-int conversion; a rate is never negative.
            return Some(per_s.min(u64::MAX as f64) as u64);
        }
        let shift = if ms <= 62.0 {
            4
        } else if ms <= 125.0 {
            3
        } else if ms <= 250.0 {
            2
        } else {
            1
        };
        iterations = iterations.checked_shl(shift)?;
    }
    None
}

pub fn argon2_params(variant: Argon2Variant, time: u32, memory_kib: u32, cpus: u32) -> KdfParams {
    KdfParams::Argon2 {
        variant,
        time,
        memory_kib,
        cpus,
    }
}

/// cryptsetup's Argon2 calibration (`crypt_argon2_check`): find small parameters that take at
/// least 250 ms, then adjust memory first (up to `--pbkdf-memory`), then time, until a run is
/// within 95–110 % of `--iter-time`. Returns (time cost, memory KiB).
pub fn argon2_search(
    variant: Argon2Variant,
    iter_time_ms: u64,
    max_memory_kib: u32,
    parallel: u32,
    key_bytes: usize,
) -> Result<(u32, u32), KdfError> {
    const MIN_MS: u64 = 250;
    const MIN_MS_FAST: u64 = 10;
    let parallel = parallel.max(1);
    let target = iter_time_ms.max(1);
    let min_t = 4u32;
    let min_m = 32u32.max(parallel.saturating_mul(8));
    let max_m = max_memory_kib.max(min_m);
    let (at_least, at_most) = (target * 95 / 100, target * 110 / 100);
    let measure = |t: u32, m: u32| -> Result<u64, KdfError> {
        let d = time_kdf(
            &argon2_params(variant, t, m, parallel),
            ARGON2_SALT,
            key_bytes,
        )?;
        Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    let (mut t, mut m) = (min_t, min_m);
    let mut ms;
    loop {
        ms = measure(t, m)?;
        if ms >= MIN_MS {
            break;
        }
        if m == max_m {
            let new = if ms < MIN_MS_FAST {
                t.saturating_mul(16)
            } else {
                scale(t, MIN_MS, ms)
            };
            if new == t {
                break;
            }
            t = new;
        } else {
            m = if ms < MIN_MS_FAST {
                m.saturating_mul(16)
            } else {
                let new = scale(m, MIN_MS, ms);
                if new == m {
                    break;
                }
                new
            }
            .min(max_m);
        }
    }
    for _ in 0..16 {
        if next_params(&mut t, &mut m, min_t, min_m, max_m, ms, target) {
            break;
        }
        ms = measure(t, m)?;
        if (at_least..=at_most).contains(&ms) {
            break;
        }
    }
    Ok((t, m))
}

/// `v × num / den`, saturating to `u32`.
fn scale(v: u32, num: u64, den: u64) -> u32 {
    let r = u64::from(v) * num / den.max(1);
    u32::try_from(r).unwrap_or(u32::MAX)
}

/// cryptsetup's `next_argon2_params`: too slow lowers time then memory, too fast raises
/// memory then time. `true` when the parameters are final.
fn next_params(
    t: &mut u32,
    m: &mut u32,
    min_t: u32,
    min_m: u32,
    max_m: u32,
    ms: u64,
    target: u64,
) -> bool {
    let (old_t, old_m) = (*t, *m);
    let ms = ms.max(1);
    if ms > target {
        let new_t = scale(*t, target, ms);
        if new_t < min_t {
            let mem = u64::from(*t) * u64::from(*m) * target / (u64::from(min_t) * ms);
            *t = min_t;
            *m = u32::try_from(mem).unwrap_or(u32::MAX);
            if *m < min_m {
                *m = min_m;
                return true;
            }
        } else {
            *t = new_t;
        }
    } else {
        let new_m = scale(*m, target, ms);
        if new_m > max_m {
            let time = u64::from(*t) * u64::from(*m) * target / (u64::from(max_m) * ms);
            *t = u32::try_from(time).unwrap_or(u32::MAX);
            *m = max_m;
            if *t <= min_t {
                *t = min_t;
                return true;
            }
        } else if new_m < min_m {
            *m = min_m;
            return true;
        } else {
            *m = new_m;
        }
    }
    old_t == *t && old_m == *m
}

/// PBKDF2 iterations that take `target_ms` on this machine for a `key_bytes`-byte output, at
/// least `min`; `None` when the speed cannot be measured.
pub fn pbkdf2_iterations(hash: HashAlg, key_bytes: usize, target_ms: u64, min: u32) -> Option<u32> {
    let per_second = pbkdf2_per_second(hash, key_bytes)?;
    let n = u128::from(per_second) * u128::from(target_ms) / 1000;
    Some(u32::try_from(n).unwrap_or(u32::MAX).max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_params_follows_cryptsetup() {
        // Too fast at the memory cap: time grows.
        let (mut t, mut m) = (4, 1_048_576);
        assert!(!next_params(&mut t, &mut m, 4, 32, 1_048_576, 1000, 2000));
        assert_eq!((t, m), (8, 1_048_576));
        // Too fast below the cap: memory grows first.
        let (mut t, mut m) = (4, 65536);
        assert!(!next_params(&mut t, &mut m, 4, 32, 1_048_576, 250, 2000));
        assert_eq!((t, m), (4, 524_288));
        // Too slow at the minimum time: memory shrinks.
        let (mut t, mut m) = (4, 1_048_576);
        assert!(!next_params(&mut t, &mut m, 4, 32, 1_048_576, 4000, 2000));
        assert_eq!((t, m), (4, 524_288));
    }
}
