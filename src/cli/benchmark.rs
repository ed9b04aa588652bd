//! `tazpod benchmark`: its options (a subset of cryptsetup's, same names) over
//! `crate::benchmark`.

use super::output::print_out;
use crate::benchmark::{self, BenchmarkOptions};
use crate::error::CliError;

/// Options of `tazpod benchmark` (a subset of cryptsetup's, same names).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchmarkArgs {
    /// Benchmark only this KDF: pbkdf2, argon2i or argon2id
    #[arg(long, value_name = "KDF")]
    pub pbkdf: Option<String>,
    /// Benchmark PBKDF2 only with this hash (sha1, sha256, sha512, …)
    #[arg(long, value_name = "HASH")]
    pub hash: Option<String>,
    /// Benchmark only this cipher (aes-xts, aes-cbc, or a full spec like aes-xts-plain64)
    #[arg(short = 'c', long, value_name = "CIPHER")]
    pub cipher: Option<String>,
    /// Key size in bits [default: 256; the cipher table has its own sizes]
    #[arg(short = 's', long = "key-size", value_name = "BITS")]
    pub key_size: Option<usize>,
    /// Target time of the Argon2 search, in milliseconds
    #[arg(
        short = 'i',
        long = "iter-time",
        value_name = "MS",
        default_value_t = 2000
    )]
    pub iter_time: u32,
    /// Largest Argon2 memory cost, in KiB
    #[arg(long = "pbkdf-memory", value_name = "KiB", default_value_t = 1_048_576)]
    pub pbkdf_memory: u32,
    /// Argon2 parallel lanes (cryptsetup's default is 4)
    #[arg(long = "pbkdf-parallel", value_name = "N", default_value_t = 4)]
    pub pbkdf_parallel: u32,
    /// Run the KDF once with exactly this cost and print its wall time (tazpod extension)
    #[arg(long = "pbkdf-force-iterations", value_name = "N")]
    pub pbkdf_force_iterations: Option<u32>,
}

impl BenchmarkArgs {
    /// What these options ask to measure.
    pub fn options(&self) -> BenchmarkOptions {
        BenchmarkOptions {
            pbkdf: self.pbkdf.clone(),
            hash: self.hash.clone(),
            cipher: self.cipher.clone(),
            key_size: self.key_size,
            iter_time: self.iter_time,
            pbkdf_memory: self.pbkdf_memory,
            pbkdf_parallel: self.pbkdf_parallel,
            pbkdf_force_iterations: self.pbkdf_force_iterations,
        }
    }
}

/// `tazpod benchmark`.
pub fn cmd_benchmark(a: &BenchmarkArgs) -> Result<(), CliError> {
    print_out(&benchmark::run(&a.options())?)
}
