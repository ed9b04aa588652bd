//! `tazpod benchmark`: KDF and cipher speeds on this machine, laid out as
//! `cryptsetup benchmark` prints them.
//!
//! Differences from cryptsetup, on purpose:
//! - PBKDF2 iterations per second: cryptsetup divides by the process's CPU time and computes
//!   the output blocks of a key one after the other. tazpod computes them on threads, so it
//!   divides its CPU time by the number of threads used: the rate is what the wall clock gives
//!   on an idle machine (for a 256-bit key from SHA-1, two chains on two threads), and, as
//!   cryptsetup's, it is not lowered by other processes competing for the CPUs.
//! - Ciphers are tazpod's own userspace implementation (the `luks2` crate: AES-NI/VAES through
//!   the `aes` crate, Serpent and Twofish in portable Rust) on a 1 MiB buffer in 512-byte
//!   sectors with plain64 IVs, not the kernel's through AF_ALG; the rows are cryptsetup's.
//! - The KDF figures come from `kdfcal`, the calibrator the writer uses for new keyslots.
//! - `--pbkdf-force-iterations N` runs the KDF once with exactly that cost (N iterations for
//!   PBKDF2, time cost N for Argon2 with `--pbkdf-memory` and `--pbkdf-parallel`) and prints
//!   its wall time: a fixed-work measurement to compare with `cryptsetup open --test-passphrase`.

use crate::kdfcal;
use luks2::cipher::{CipherError, CipherSpec, SectorCipher};
use luks2::hash::HashAlg;
use luks2::kdf::{Argon2Variant, KdfError, KdfParams};
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

/// What `tazpod benchmark` measures (cryptsetup's options, same meanings).
#[derive(Debug, Clone, Default)]
pub struct BenchmarkOptions {
    /// Benchmark only this KDF: pbkdf2, argon2i or argon2id
    pub pbkdf: Option<String>,
    /// Benchmark PBKDF2 only with this hash (sha1, sha256, sha512, …)
    pub hash: Option<String>,
    /// Benchmark only this cipher (aes-xts, aes-cbc, or a full spec like aes-xts-plain64)
    pub cipher: Option<String>,
    /// Key size in bits [default: 256; the cipher table has its own sizes]
    pub key_size: Option<usize>,
    /// Target time of the Argon2 search, in milliseconds
    pub iter_time: u32,
    /// Largest Argon2 memory cost, in KiB
    pub pbkdf_memory: u32,
    /// Argon2 parallel lanes (cryptsetup's default is 4)
    pub pbkdf_parallel: u32,
    /// Run the KDF once with exactly this cost and print its wall time (tazpod extension)
    pub pbkdf_force_iterations: Option<u32>,
}

/// The PBKDF2 hashes cryptsetup benchmarks, in its order (whirlpool and ripemd160 included).
const PBKDF2_HASHES: [&str; 5] = ["sha1", "sha256", "sha512", "ripemd160", "whirlpool"];

/// cryptsetup's cipher table: cipher-mode and key size in bytes, in its order.
const CIPHERS: [(&str, usize); 12] = [
    ("aes-cbc", 16),
    ("serpent-cbc", 16),
    ("twofish-cbc", 16),
    ("aes-cbc", 32),
    ("serpent-cbc", 32),
    ("twofish-cbc", 32),
    ("aes-xts", 32),
    ("serpent-xts", 32),
    ("twofish-xts", 32),
    ("aes-xts", 64),
    ("serpent-xts", 64),
    ("twofish-xts", 64),
];
/// Why a benchmark could not run. [`fmt::Display`] gives the message; the CLI adds the hint
/// and exit code (`From<BenchmarkError> for CliError`).
#[derive(Debug)]
pub enum BenchmarkError {
    /// `--key-size` is zero or not a multiple of 8.
    KeySize,
    /// `--cipher` is not of the form cipher-mode.
    CipherPattern { spec: String },
    /// `--pbkdf` names no KDF tazpod knows.
    UnknownKdf { kdf: String },
    /// The KDF `what` failed.
    Kdf { what: String, error: KdfError },
    /// The cipher `name` with a `bits`-bit key is not available.
    CipherUnavailable {
        name: String,
        bits: usize,
        error: CipherError,
    },
    /// The cipher `name` failed to set up or to run.
    Cipher { name: String, error: CipherError },
}

impl fmt::Display for BenchmarkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchmarkError::KeySize => {
                f.write_str("key size must be a positive multiple of 8 bits")
            }
            BenchmarkError::CipherPattern { spec } => {
                write!(
                    f,
                    "no known cipher specification pattern detected in {spec:?}"
                )
            }
            BenchmarkError::UnknownKdf { kdf } => write!(f, "unknown pbkdf {kdf:?}"),
            BenchmarkError::Kdf { what, error } => {
                write!(f, "benchmark of {what} failed: {error}")
            }
            BenchmarkError::CipherUnavailable { name, bits, error } => write!(
                f,
                "cipher {name} (with {bits} bits key) is not available: {error}"
            ),
            BenchmarkError::Cipher { name, error } => write!(f, "cipher {name}: {error}"),
        }
    }
}

impl std::error::Error for BenchmarkError {}

/// Runs the benchmark the options ask for and returns the report (cryptsetup's layout).
pub fn run(args: &BenchmarkOptions) -> Result<String, BenchmarkError> {
    let mut out = String::from("# Tests are approximate using memory only (no storage IO).\n");
    let key_bytes = args.key_size.unwrap_or(256) / 8;
    if args.key_size.is_some_and(|b| b == 0 || b % 8 != 0) {
        return Err(BenchmarkError::KeySize);
    }
    let kdf = match (&args.pbkdf, &args.hash) {
        (Some(k), _) => Some(k.as_str()),
        (None, Some(_)) => Some("pbkdf2"),
        (None, None) => None,
    };
    if let Some(kdf) = kdf {
        if let Some(n) = args.pbkdf_force_iterations {
            forced(&mut out, kdf, args, key_bytes, n)?;
        } else {
            kdf_line(
                &mut out,
                kdf,
                args.hash.as_deref().unwrap_or("sha256"),
                args,
                key_bytes,
            )?;
        }
        return Ok(out);
    }
    if let Some(c) = &args.cipher {
        let (name, mode) = cipher_name(c)?;
        let key = args.key_size.map(|b| b / 8).unwrap_or(32);
        let (enc, dec) = cipher_speed(&format!("{name}-{mode}"), key)?;
        let width = (name.len() + mode.len() + 1).max(11);
        let _ = writeln!(
            out,
            "#{:w$} Algorithm |       Key |      Encryption |      Decryption",
            "",
            w = width - 11
        );
        let _ = writeln!(
            out,
            "{:>w$}-{mode}  {:9}b  {enc:10.1} MiB/s  {dec:10.1} MiB/s",
            name,
            key * 8,
            w = width - mode.len() - 1
        );
        return Ok(out);
    }
    for h in PBKDF2_HASHES {
        kdf_line(&mut out, "pbkdf2", h, args, key_bytes)?;
    }
    for k in ["argon2i", "argon2id"] {
        kdf_line(&mut out, k, "", args, key_bytes)?;
    }
    out.push_str("#     Algorithm |       Key |      Encryption |      Decryption\n");
    for (c, key) in CIPHERS {
        match cipher_speed(c, key) {
            Ok((enc, dec)) => {
                let _ = writeln!(
                    out,
                    "{c:>15}  {:9}b  {enc:10.1} MiB/s  {dec:10.1} MiB/s",
                    key * 8
                );
            }
            Err(_) => {
                let _ = writeln!(out, "{c:>15}  {:9}b {:>17} {:>17}", key * 8, "N/A", "N/A");
            }
        }
    }
    Ok(out)
}

/// Splits `aes-xts[-plain64]` into (`aes`, `xts`).
fn cipher_name(c: &str) -> Result<(&str, &str), BenchmarkError> {
    let mut parts = c.splitn(3, '-');
    match (parts.next(), parts.next()) {
        (Some(name), Some(mode)) if !name.is_empty() && !mode.is_empty() => Ok((name, mode)),
        _ => Err(BenchmarkError::CipherPattern {
            spec: c.to_string(),
        }),
    }
}

fn kdf_error(what: &str, error: KdfError) -> BenchmarkError {
    BenchmarkError::Kdf {
        what: what.to_string(),
        error,
    }
}

fn argon2_variant(kdf: &str) -> Option<Argon2Variant> {
    Argon2Variant::from_name(kdf)
}

/// One line for `kdf` (PBKDF2 with `hash`, or Argon2), as cryptsetup prints it.
fn kdf_line(
    out: &mut String,
    kdf: &str,
    hash: &str,
    args: &BenchmarkOptions,
    key_bytes: usize,
) -> Result<(), BenchmarkError> {
    if kdf == "pbkdf2" {
        match HashAlg::from_name(hash).and_then(|h| kdfcal::pbkdf2_per_second(h, key_bytes)) {
            Some(n) => {
                let _ = writeln!(
                    out,
                    "PBKDF2-{hash:<9} {n:7} iterations per second for {}-bit key",
                    key_bytes * 8
                );
            }
            None => {
                let _ = writeln!(out, "PBKDF2-{hash:<9}     N/A");
            }
        }
        return Ok(());
    }
    let Some(variant) = argon2_variant(kdf) else {
        return Err(unknown_kdf(kdf));
    };
    match kdfcal::argon2_search(
        variant,
        u64::from(args.iter_time),
        args.pbkdf_memory,
        args.pbkdf_parallel,
        key_bytes,
    ) {
        Ok((t, m)) => {
            let _ = writeln!(
                out,
                "{kdf:<10} {t:4} iterations, {m:5} memory, {} parallel threads (CPUs) for \
                 {}-bit key (requested {} ms time)",
                args.pbkdf_parallel,
                key_bytes * 8,
                args.iter_time
            );
        }
        Err(_) => {
            let _ = writeln!(out, "{kdf:<10} N/A");
        }
    }
    Ok(())
}

fn unknown_kdf(kdf: &str) -> BenchmarkError {
    BenchmarkError::UnknownKdf {
        kdf: kdf.to_string(),
    }
}

/// `--pbkdf-force-iterations`: one run with exactly that cost.
fn forced(
    out: &mut String,
    kdf: &str,
    args: &BenchmarkOptions,
    key_bytes: usize,
    n: u32,
) -> Result<(), BenchmarkError> {
    let (params, salt, what) = if kdf == "pbkdf2" {
        let hash = args.hash.as_deref().unwrap_or("sha256");
        let p = KdfParams::pbkdf2(hash, n).map_err(|e| kdf_error("pbkdf2", e))?;
        (
            p,
            kdfcal::PBKDF2_SALT,
            format!("PBKDF2-{hash}, {n} iterations"),
        )
    } else {
        let v = argon2_variant(kdf).ok_or_else(|| unknown_kdf(kdf))?;
        let p = kdfcal::argon2_params(v, n, args.pbkdf_memory, args.pbkdf_parallel);
        let what = format!(
            "{kdf}, {n} iterations, {} memory, {} parallel threads",
            args.pbkdf_memory, args.pbkdf_parallel
        );
        (p, kdfcal::ARGON2_SALT, what)
    };
    let d = kdfcal::time_kdf(&params, salt, key_bytes).map_err(|e| kdf_error(kdf, e))?;
    let _ = writeln!(
        out,
        "{what} for {}-bit key: {:.1} ms wall",
        key_bytes * 8,
        d.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Buffer size of the cipher benchmark (cryptsetup's).
const CIPHER_BUFFER: usize = 1024 * 1024;
/// Sector size the cipher benchmark uses (dm-crypt's smallest; the slowest per byte).
const CIPHER_SECTOR: usize = 512;
/// How long each direction of a cipher is measured.
const CIPHER_TIME: Duration = Duration::from_millis(500);

/// Encryption and decryption speed in MiB/s of `name` (`aes-xts`) with a `key`-byte key.
fn cipher_speed(name: &str, key: usize) -> Result<(f64, f64), BenchmarkError> {
    let full = format!("{name}-plain64");
    let spec =
        CipherSpec::parse(&full, key).map_err(|error| BenchmarkError::CipherUnavailable {
            name: name.to_string(),
            bits: key * 8,
            error,
        })?;
    let failed = |error| BenchmarkError::Cipher {
        name: name.to_string(),
        error,
    };
    let key_bytes: Vec<u8> = (0..key).map(|i| (i * 37 + 11) as u8).collect();
    let c = SectorCipher::new(&spec, &key_bytes).map_err(failed)?;
    let mut buf = vec![0u8; CIPHER_BUFFER];
    let mut speed = |encrypt: bool| -> Result<f64, BenchmarkError> {
        let start = Instant::now();
        let mut bytes = 0u64;
        let mut iv = 0u64;
        while start.elapsed() < CIPHER_TIME {
            let r = if encrypt {
                c.encrypt(&mut buf, CIPHER_SECTOR, iv)
            } else {
                c.decrypt(&mut buf, CIPHER_SECTOR, iv)
            };
            r.map_err(failed)?;
            iv = iv.wrapping_add(2048);
            bytes += CIPHER_BUFFER as u64;
        }
        Ok(bytes as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64())
    };
    let enc = speed(true)?;
    let dec = speed(false)?;
    Ok((enc, dec))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::code;
    use crate::error::testing::assert_converts;

    #[test]
    fn cipher_names() {
        assert_eq!(cipher_name("aes-xts").unwrap(), ("aes", "xts"));
        assert_eq!(cipher_name("aes-xts-plain64").unwrap(), ("aes", "xts"));
        assert!(cipher_name("aes").is_err());
    }

    #[test]
    fn forced_pbkdf2_reports_wall_time() {
        let args = BenchmarkOptions {
            pbkdf: Some("pbkdf2".into()),
            hash: Some("sha256".into()),
            pbkdf_force_iterations: Some(1000),
            ..BenchmarkOptions::default()
        };
        let s = run(&args).unwrap();
        assert!(
            s.contains("PBKDF2-sha256, 1000 iterations for 256-bit key: "),
            "{s}"
        );
        let bad = BenchmarkOptions {
            pbkdf: Some("scrypt".into()),
            ..BenchmarkOptions::default()
        };
        assert!(run(&bad).is_err());
    }

    #[test]
    fn each_error_has_its_message_hint_and_exit_code() {
        let oom = KdfError::OutOfMemory {
            required_kib: 1 << 20,
        };
        let bad_key = || CipherSpec::parse("aes-xts-plain64", 5).unwrap_err();
        assert_converts(vec![
            (
                BenchmarkError::KeySize,
                code::INVALID,
                "key size must be a positive multiple of 8 bits".into(),
                None,
            ),
            (
                BenchmarkError::CipherPattern { spec: "aes".into() },
                code::INVALID,
                "no known cipher specification pattern detected in \"aes\"".into(),
                Some("use the form cipher-mode, for example aes-xts"),
            ),
            (
                BenchmarkError::UnknownKdf {
                    kdf: "scrypt".into(),
                },
                code::INVALID,
                "unknown pbkdf \"scrypt\"".into(),
                Some("use pbkdf2, argon2i or argon2id"),
            ),
            (
                kdf_error("argon2id", oom.clone()),
                code::NOMEM,
                format!("benchmark of argon2id failed: {oom}"),
                None,
            ),
            (
                kdf_error("pbkdf2", KdfError::UnsupportedHash("md4".into())),
                code::INVALID,
                format!(
                    "benchmark of pbkdf2 failed: {}",
                    KdfError::UnsupportedHash("md4".into())
                ),
                None,
            ),
            (
                BenchmarkError::CipherUnavailable {
                    name: "aes-xts".into(),
                    bits: 40,
                    error: bad_key(),
                },
                code::INVALID,
                format!(
                    "cipher aes-xts (with 40 bits key) is not available: {}",
                    bad_key()
                ),
                None,
            ),
            (
                BenchmarkError::Cipher {
                    name: "aes-xts".into(),
                    error: bad_key(),
                },
                code::INVALID,
                format!("cipher aes-xts: {}", bad_key()),
                None,
            ),
        ]);
    }
}
