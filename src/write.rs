//! The verbs that write a LUKS2 header: `format`, `add-key`, `remove-key`, `kill-slot`,
//! `config`.
//!
//! The bytes come from the pure writer (`luks2::format`), which returns an ordered plan of
//! writes; this module supplies what the library must not do itself: randomness from the OS
//! (`/dev/urandom`), KDF benchmarking to `--iter-time`, the confirmations, and running the plan
//! with an `fsync` after every write, so that an interruption leaves a header that opens with the
//! old or the new keyslots (`luks2/tests/format_crash.rs` checks every interruption point).

use crate::device::{self, metadata_lock};
use crate::error::{code, CliError};
use crate::kdfcal;
use crate::kernel::{flock, tty};
use crate::passphrase::{with_passphrase, KeyArgs, PASSPHRASE_MAX};
use crate::unlock::{HeaderRead, KeyRequest};
use clap::Args;
use luks2::format::{self, FormatError, FormatParams, KeyslotSpec, Layout, Plan};
use luks2::hash::HashAlg;
use luks2::header::Luks2Header;
use luks2::kdf::{Argon2Variant, KdfParams};
use luks2::metadata::Priority;
use luks2::unlock::{unlock, UnlockOptions};
use luks2::{Passphrase, SecretBuf};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// cryptsetup's defaults for a new LUKS2 header (the command line shows the same values).
pub const DEFAULT_PBKDF: &str = "argon2id";
/// Hash for PBKDF2, the AF splitter and the digest.
pub const DEFAULT_HASH: &str = "sha256";
/// Data cipher.
pub const DEFAULT_CIPHER: &str = "aes-xts-plain64";
/// Encryption sector size (cryptsetup's for a file or a 4096-byte-sector device).
pub const DEFAULT_SECTOR_SIZE: u32 = 4096;
/// The only type written.
pub const DEFAULT_TYPE: &str = "luks2";

/// KDF options shared by `format` and `add-key` (cryptsetup's names and defaults).
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct KdfArgs {
    /// PBKDF for the new keyslot: argon2id, argon2i or pbkdf2
    #[arg(long, value_name = "TYPE", default_value = DEFAULT_PBKDF)]
    pub pbkdf: String,
    /// Unlock time of the new keyslot, in milliseconds [default: 2000]
    #[arg(short = 'i', long = "iter-time", value_name = "MS")]
    pub iter_time: Option<u64>,
    /// Argon2 memory cost in KiB [default: 1048576, at most half the available memory]
    #[arg(long = "pbkdf-memory", value_name = "KiB")]
    pub pbkdf_memory: Option<u32>,
    /// Argon2 threads [default: min(4, CPUs)]
    #[arg(long = "pbkdf-parallel", value_name = "N")]
    pub pbkdf_parallel: Option<u32>,
    /// Use this iteration count (Argon2 time cost) and skip the benchmark
    #[arg(long = "pbkdf-force-iterations", value_name = "N")]
    pub force_iterations: Option<u32>,
    /// Hash for PBKDF2, the anti-forensic splitter and the digest
    #[arg(long, value_name = "HASH", default_value = DEFAULT_HASH)]
    pub hash: String,
}

impl Default for KdfArgs {
    /// The command line's defaults: argon2id with sha256, everything else calibrated.
    fn default() -> Self {
        KdfArgs {
            pbkdf: DEFAULT_PBKDF.into(),
            iter_time: None,
            pbkdf_memory: None,
            pbkdf_parallel: None,
            force_iterations: None,
            hash: DEFAULT_HASH.into(),
        }
    }
}

/// The KDF choices of a new keyslot as the writer takes them: the command line's `KdfArgs`
/// without its parsing, so that no command-line type travels into the services (the ghost
/// host, the header spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdfOptions {
    /// `argon2id`, `argon2i` or `pbkdf2`.
    pub pbkdf: String,
    /// Target unlock time in milliseconds (default 2000).
    pub iter_time: Option<u64>,
    /// Argon2 memory cap in KiB.
    pub pbkdf_memory: Option<u32>,
    /// Argon2 threads.
    pub pbkdf_parallel: Option<u32>,
    /// A fixed cost instead of the calibration.
    pub force_iterations: Option<u32>,
    /// Hash for PBKDF2, the anti-forensic splitter and the digest.
    pub hash: String,
}

impl From<&KdfArgs> for KdfOptions {
    fn from(a: &KdfArgs) -> KdfOptions {
        KdfOptions {
            pbkdf: a.pbkdf.clone(),
            iter_time: a.iter_time,
            pbkdf_memory: a.pbkdf_memory,
            pbkdf_parallel: a.pbkdf_parallel,
            force_iterations: a.force_iterations,
            hash: a.hash.clone(),
        }
    }
}

/// `tazpod format`.
#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Only luks2 is written
    #[arg(long = "type", value_name = "TYPE", default_value = DEFAULT_TYPE)]
    pub luks_type: String,
    /// Data cipher
    #[arg(short = 'c', long, default_value = DEFAULT_CIPHER)]
    pub cipher: String,
    /// Volume key size in bits [default: 512 for XTS, 256 otherwise]
    #[arg(short = 's', long = "key-size", value_name = "BITS")]
    pub key_size: Option<usize>,
    /// Encryption sector size
    #[arg(long = "sector-size", value_name = "BYTES", default_value_t = DEFAULT_SECTOR_SIZE)]
    pub sector_size: u32,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Label of the volume
    #[arg(long)]
    pub label: Option<String>,
    /// Subsystem of the volume
    #[arg(long)]
    pub subsystem: Option<String>,
    /// Use this UUID instead of a random one
    #[arg(long)]
    pub uuid: Option<String>,
    /// Size of one header copy (16k … 4m)
    #[arg(long = "luks2-metadata-size", value_name = "SIZE", value_parser = parse_size)]
    pub metadata_size: Option<u64>,
    /// Size of the keyslots area
    #[arg(long = "luks2-keyslots-size", value_name = "SIZE", value_parser = parse_size)]
    pub keyslots_size: Option<u64>,
    /// Write the header to FILE (created if missing); the data starts at offset 0 of DEVICE
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    /// Do not ask for confirmation
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The device or image file to format
    pub device: PathBuf,
}

/// `tazpod add-key`.
#[derive(Args, Debug)]
pub struct AddKeyArgs {
    /// Slot for the new key [default: the first free one]
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    /// Read the new key from FILE instead of asking for it
    #[arg(long = "new-keyfile", value_name = "FILE")]
    pub new_keyfile: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Header file (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The LUKS device or image file
    pub device: PathBuf,
}

/// `tazpod change-key`.
#[derive(Args, Debug)]
pub struct ChangeKeyArgs {
    /// Change only the passphrase of this keyslot
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    /// Read the new key from FILE instead of asking for it
    #[arg(long = "new-keyfile", value_name = "FILE")]
    pub new_keyfile: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Header file (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The LUKS device or image file
    pub device: PathBuf,
}

/// `tazpod remove-key`.
#[derive(Args, Debug)]
pub struct RemoveKeyArgs {
    /// Header file (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    /// Do not ask for confirmation (needed to remove the last key without a terminal)
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The LUKS device or image file
    pub device: PathBuf,
}

/// `tazpod kill-slot`.
#[derive(Args, Debug)]
pub struct KillSlotArgs {
    /// Header file (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    /// Do not ask for confirmation (needed to kill the last slot without a terminal); on a
    /// terminal and without a key file, also no remaining passphrase is asked for
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    /// A remaining key (it must open another keyslot, or the killed one if it is the last)
    #[command(flatten)]
    pub key: KeyArgs,
    /// The LUKS device or image file
    pub device: PathBuf,
    /// The keyslot to wipe
    pub slot: u32,
}

/// `tazpod config`.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Set the label (an empty string removes it)
    #[arg(long)]
    pub label: Option<String>,
    /// Keyslot priority: ignore, normal or prefer (needs --key-slot)
    #[arg(long, requires = "key_slot")]
    pub priority: Option<String>,
    /// The keyslot whose priority changes
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    /// Header file (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    /// The LUKS device or image file
    pub device: PathBuf,
}

/// Parses sizes like cryptsetup: a number of bytes with an optional k/m/g/t suffix (binary).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                'k' => 1u64 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => return Err(format!("unknown size unit in '{s}'")),
            };
            (t.get(..i).unwrap_or(""), m)
        }
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("'{s}' is not a size"))
}

/// Fills `buf` from the OS random source.
pub fn os_random(buf: &mut [u8]) -> Result<(), String> {
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("/dev/urandom: {e}"))
}

fn fmt_err(what: &str, e: FormatError) -> CliError {
    let c = match e {
        FormatError::Kdf(luks2::error::KdfError::OutOfMemory { .. }) => code::NOMEM,
        _ => code::INVALID,
    };
    CliError::new(c, format!("{what}: {e}"))
}

/// Opens the header device read-write.
fn open_rw(path: &Path, create: bool) -> Result<File, CliError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| {
            CliError::new(
                code::DEVICE,
                format!("cannot open {} for writing: {e}", path.display()),
            )
        })
}

/// Opens the device `format` writes its header to: read-write, and on a block device with
/// `O_EXCL`, as cryptsetup does, so that a mounted, mapped or otherwise claimed device is refused
/// (and stays unclaimed by others while tazpod writes). Regular files get no such check.
fn open_for_format(path: &Path, create: bool) -> Result<File, CliError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let is_block = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(create).truncate(false);
    if is_block {
        o.custom_flags(libc::O_EXCL);
    }
    match o.open(path) {
        Ok(f) => Ok(f),
        Err(e) if is_block && e.raw_os_error() == Some(libc::EBUSY) => Err(busy(path)),
        Err(e) => Err(CliError::new(
            code::DEVICE,
            format!("cannot open {} for writing: {e}", path.display()),
        )),
    }
}

/// The error for a block device that another user holds. cryptsetup 2.6.1 says one of two
/// things: when blkid finds a signature on the device it first tries to wipe it, and that
/// exclusive open fails with "Cannot exclusively open X, device in use." (exit 1); on a
/// device without one, the library's own exclusive open fails with "Cannot use device X which
/// is in use (already mapped or mounted)." (exit 5). tazpod knows two signatures, the ones a
/// vault has: a LUKS header and an ext2/3/4 superblock.
fn busy(path: &Path) -> CliError {
    let shown = path.display();
    let hint = "unmount it, close its mapping (`tazpod close NAME`) or stop the program that \
                holds it; /sys/class/block/<device>/holders lists device-mapper users";
    if has_known_signature(path) {
        CliError::new(
            code::INVALID,
            format!("cannot exclusively open {shown}, device in use"),
        )
        .hint(hint)
    } else {
        CliError::new(
            code::BUSY,
            format!("cannot use device {shown} which is in use (already mapped or mounted)"),
        )
        .hint(hint)
    }
}

/// Whether the device starts with a LUKS header or holds an ext2/3/4 superblock (read-only).
fn has_known_signature(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    let mut head = [0u8; 2048];
    if f.read_exact_at(&mut head, 0).is_err() {
        return false;
    }
    // ext2/3/4: the superblock at 1024, its s_magic 0xEF53 (little endian) 56 bytes in.
    const EXT_MAGIC_AT: usize = 1024 + 56;
    head.starts_with(&luks2::header::MAGIC_PRIMARY)
        || head.get(EXT_MAGIC_AT..EXT_MAGIC_AT + 2) == Some(&[0x53, 0xEF][..])
}

fn size_of(f: &File, path: &Path) -> Result<u64, CliError> {
    use std::io::{Seek, SeekFrom};
    let mut f = f;
    f.seek(SeekFrom::End(0)).map_err(|e| {
        CliError::new(
            code::DEVICE,
            format!("cannot get the size of {}: {e}", path.display()),
        )
    })
}

/// Where the writes of a plan go: a file (with `fsync` after each write) or, in tests, memory.
pub trait Sink {
    /// Writes `data` at `offset`.
    fn write_at(&mut self, data: &[u8], offset: u64) -> std::io::Result<()>;
    /// Makes the writes so far durable.
    fn sync(&mut self) -> std::io::Result<()>;
}

impl Sink for File {
    fn write_at(&mut self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.write_all_at(data, offset)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_all()
    }
}

/// Runs the plan in order, syncing after every write (the order is what keeps one header
/// copy consistent at any interruption).
pub fn execute(plan: &Plan, sink: &mut dyn Sink, shown: &str) -> Result<(), CliError> {
    for w in &plan.writes {
        sink.write_at(&w.data, w.offset)
            .and_then(|()| sink.sync())
            .map_err(|e| {
                CliError::new(
                    code::DEVICE,
                    format!(
                        "{shown}: writing the {} at offset {} failed: {e}",
                        w.what, w.offset
                    ),
                )
                .hint("the header keeps its previous or its new state; check it with `tazpod dump`")
            })?;
    }
    Ok(())
}

/// Asks for a typed "YES" on the terminal; refuses without one.
pub fn confirm(question: &str) -> Result<(), CliError> {
    confirm_or(question, "operation aborted")
}

/// [`confirm`] with the message for an answer other than "YES".
fn confirm_or(question: &str, aborted: &str) -> Result<(), CliError> {
    if !tty::stdin_is_tty() {
        return Err(CliError::new(
            code::INVALID,
            format!("{question}: refused without a terminal to confirm"),
        )
        .hint("add --batch-mode to confirm"));
    }
    eprint!("{question}\nAre you sure? (Type 'yes' in capital letters): ");
    let answer = tty::read_line_secret(64)
        .map_err(|e| CliError::new(code::INVALID, format!("cannot read the answer: {e}")))?;
    match answer {
        Some(a) if a.as_bytes() == b"YES" => Ok(()),
        _ => Err(CliError::new(code::PERMISSION, aborted)),
    }
}

/// A new passphrase: from `keyfile`, asked twice on a terminal, or a line of standard input.
pub fn new_passphrase(
    keyfile: Option<&PathBuf>,
    key: Option<&KeyArgs>,
    shown: &str,
) -> Result<Passphrase, CliError> {
    let copy = |p: &Passphrase| Ok(Passphrase::from_vec(p.as_bytes().to_vec()));
    // A new key from a file must hold at least one byte: an empty file is a mistake (a file
    // not yet written, a failed redirection), never a key. cryptsetup would take it as an empty
    // key; tazpod refuses, writing nothing. `-` that ends at once is "Nothing to read".
    let from_file = |args: &KeyArgs| -> Result<Passphrase, CliError> {
        let p = with_passphrase(args, shown, copy)?;
        if p.as_bytes().is_empty() {
            let file = args
                .key_file
                .as_ref()
                .map_or(String::new(), |f| f.display().to_string());
            return Err(CliError::new(
                code::INVALID,
                format!("the new key file '{file}' is empty: nothing to read; nothing was written"),
            )
            .hint("a new key needs at least one byte; check the file"));
        }
        Ok(p)
    };
    if let Some(path) = keyfile {
        let args = KeyArgs {
            key_file: Some(path.clone()),
            keyfile_offset: 0,
            keyfile_size: None,
            tries: 1,
        };
        return from_file(&args);
    }
    if let Some(k) = key.filter(|k| k.key_file.is_some()) {
        return from_file(k);
    }
    if !tty::stdin_is_tty() {
        // A line of standard input. Input that has already ended (an earlier prompt took the
        // last line) is "Nothing to read on input." (exit 1), as in cryptsetup, never an empty
        // passphrase; an empty line is one, as in cryptsetup, with a warning.
        let line = tty::read_line(PASSPHRASE_MAX).map_err(|e| {
            CliError::new(
                code::INVALID,
                format!("cannot read the new passphrase from standard input: {e}"),
            )
        })?;
        let p = match line {
            tty::Line::Text(p) => p,
            tty::Line::Eof => return Err(crate::passphrase::nothing_to_read()),
            tty::Line::TooLong => {
                return Err(CliError::new(
                    code::INVALID,
                    "the new passphrase is too long",
                ))
            }
        };
        if p.as_bytes().is_empty() {
            eprintln!(
                "tazpod: warning: the new passphrase is empty (an empty line on standard input)"
            );
        }
        return Ok(Passphrase::new(p));
    }
    let read = |prompt: &str| -> Result<SecretBuf, CliError> {
        tty::prompt_passphrase(prompt, PASSPHRASE_MAX)
            .map_err(|e| CliError::new(code::INVALID, format!("cannot read passphrase: {e}")))?
            .ok_or_else(|| CliError::new(code::INVALID, "the passphrase is too long"))
    };
    let a = read(&format!("Enter passphrase for {shown}: "))?;
    let b = read("Verify passphrase: ")?;
    if a.as_bytes() != b.as_bytes() {
        return Err(CliError::new(code::PERMISSION, "passphrases do not match"));
    }
    Ok(Passphrase::new(a))
}

/// Number of CPUs.
fn cpus() -> u32 {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok())
        .unwrap_or(1)
}

/// cryptsetup's defaults.
const DEFAULT_ITER_TIME_MS: u64 = 2000;
const DEFAULT_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;
const MIN_ARGON2_MEMORY_KIB: u32 = 32;
/// cryptsetup benchmarks the volume key digest to 125 ms (LUKS_MKD_ITERATIONS_MS).
const DIGEST_ITER_TIME_MS: u64 = 125;

/// PBKDF2 iterations that take `target_ms` for a `key_len`-byte output on this machine (the
/// calibrator `benchmark` uses), at least cryptsetup's minimum.
fn bench_pbkdf2(hash: HashAlg, key_len: usize, target_ms: u64) -> Result<u32, CliError> {
    kdfcal::pbkdf2_iterations(
        hash,
        key_len.max(1),
        target_ms,
        format::MIN_PBKDF2_ITERATIONS,
    )
    .ok_or_else(|| {
        CliError::new(
            code::INVALID,
            format!("cannot measure PBKDF2-{} on this machine", hash.name()),
        )
    })
}

/// The keyslot KDF from the options: forced, or benchmarked to `--iter-time` like cryptsetup.
fn choose_kdf(a: &KdfOptions, key_len: usize, verbose: bool) -> Result<KdfParams, CliError> {
    let hash = HashAlg::from_name(&a.hash)
        .ok_or_else(|| CliError::new(code::INVALID, format!("unknown hash '{}'", a.hash)))?;
    let target = a.iter_time.unwrap_or(DEFAULT_ITER_TIME_MS).max(1);
    let variant = match a.pbkdf.as_str() {
        "pbkdf2" => {
            let iterations = match a.force_iterations {
                Some(n) => n.max(format::MIN_PBKDF2_ITERATIONS),
                None => bench_pbkdf2(hash, key_len, target)?,
            };
            return Ok(KdfParams::Pbkdf2 { hash, iterations });
        }
        "argon2i" => Argon2Variant::I,
        "argon2id" => Argon2Variant::Id,
        other => {
            return Err(CliError::new(
                code::INVALID,
                format!("unknown PBKDF '{other}' (argon2id, argon2i or pbkdf2)"),
            ))
        }
    };
    // Memory: the option, else 1 GiB; never more than half the available memory.
    let half_avail = u32::try_from(device::mem_available() / 2 / 1024).unwrap_or(u32::MAX);
    let mut memory = a.pbkdf_memory.unwrap_or(DEFAULT_ARGON2_MEMORY_KIB);
    if a.pbkdf_memory.is_none() && half_avail > 0 {
        memory = memory.min(half_avail);
    }
    let cpus = a.pbkdf_parallel.unwrap_or_else(|| cpus().min(4)).max(1);
    memory = memory.max(MIN_ARGON2_MEMORY_KIB).max(8 * cpus);
    if let Some(t) = a.force_iterations {
        return Ok(KdfParams::Argon2 {
            variant,
            time: t.max(1),
            memory_kib: memory,
            cpus,
        });
    }
    // cryptsetup's search: memory first (up to the cap above), then time, to --iter-time.
    let (time, memory_kib) = kdfcal::argon2_search(variant, target, memory, cpus, key_len.max(4))
        .map_err(|e| {
        let c = match e {
            luks2::kdf::KdfError::OutOfMemory { .. } => code::NOMEM,
            _ => code::INVALID,
        };
        CliError::new(c, format!("argon2 benchmark: {e}"))
    })?;
    if verbose {
        eprintln!(
            "PBKDF {}: time {time}, memory {memory_kib} KiB, {cpus} threads (for {target} ms)",
            a.pbkdf
        );
    }
    Ok(KdfParams::Argon2 {
        variant,
        time,
        memory_kib,
        cpus,
    })
}

/// The checked options of a new LUKS2 header (everything but the device and the key).
#[derive(Debug, Clone)]
pub struct HeaderSpec {
    /// Data (and keyslot) cipher.
    pub cipher: String,
    /// Volume key length in bytes.
    pub key_len: usize,
    /// Encryption sector size.
    pub sector_size: u32,
    /// Hash for PBKDF2, the AF splitter and the digest.
    pub hash: HashAlg,
    /// Header, keyslots area and data offset.
    pub layout: Layout,
    /// Label.
    pub label: String,
    /// Subsystem.
    pub subsystem: String,
    /// A fixed UUID (else a random one).
    pub uuid: Option<String>,
    /// The keyslot's KDF options.
    pub kdf: KdfOptions,
}

/// A header just written: its UUID and the volume key it protects.
pub struct NewHeader {
    /// The LUKS UUID.
    pub uuid: String,
    /// The volume key (random).
    pub volume_key: luks2::VolumeKey,
}

/// `format`'s options at their defaults (the command line's own), for `device`, with the KDF
/// options `kdf`.
pub fn format_defaults(device: &Path, kdf: KdfArgs) -> FormatArgs {
    FormatArgs {
        luks_type: DEFAULT_TYPE.into(),
        cipher: DEFAULT_CIPHER.into(),
        key_size: None,
        sector_size: DEFAULT_SECTOR_SIZE,
        kdf,
        label: None,
        subsystem: None,
        uuid: None,
        metadata_size: None,
        keyslots_size: None,
        header: None,
        batch_mode: false,
        key: KeyArgs::default(),
        device: device.to_path_buf(),
    }
}

/// Checks the options of `format` that do not depend on the device.
pub fn header_spec(a: &FormatArgs) -> Result<HeaderSpec, CliError> {
    if a.luks_type != "luks2" {
        return Err(CliError::new(
            code::INVALID,
            format!("--type {}: tazpod writes only luks2", a.luks_type),
        ));
    }
    let key_bits = a
        .key_size
        .unwrap_or(if a.cipher.contains("xts") { 512 } else { 256 });
    if key_bits % 8 != 0 || key_bits == 0 {
        return Err(CliError::new(
            code::INVALID,
            format!("--key-size {key_bits} is not a whole number of bytes"),
        ));
    }
    let key_len = key_bits / 8;
    let parsed = luks2::cipher::CipherSpec::parse(&a.cipher, key_len).map_err(|e| {
        CliError::new(
            code::INVALID,
            format!("cipher {} with a {key_bits}-bit key: {e}", a.cipher),
        )
    })?;
    // The keyslots are encrypted with the data cipher (as cryptsetup does), and cryptsetup's
    // keyslot code has no truncated Whirlpool: it refuses this format and could not open the
    // volume tazpod would write. LUKS1 volumes with it (read only here) do open.
    if let luks2::cipher::IvMode::EssivWp(bits) = parsed.iv_mode() {
        return Err(CliError::new(
            code::INVALID,
            format!(
                "cipher {}: cryptsetup cannot use the ESSIV hash wp{bits} for LUKS2 keyslot \
                 encryption, so the volume would not open there",
                a.cipher
            ),
        )
        .hint("use another ESSIV hash (essiv:sha256) or plain64"));
    }
    let hash = HashAlg::from_name(&a.kdf.hash)
        .ok_or_else(|| CliError::new(code::INVALID, format!("unknown hash '{}'", a.kdf.hash)))?;
    if !matches!(a.kdf.pbkdf.as_str(), "argon2id" | "argon2i" | "pbkdf2") {
        return Err(CliError::new(
            code::INVALID,
            format!(
                "unknown PBKDF '{}' (argon2id, argon2i or pbkdf2)",
                a.kdf.pbkdf
            ),
        ));
    }
    let layout = Layout::cryptsetup(a.metadata_size, a.keyslots_size, a.header.is_some())
        .map_err(|e| fmt_err("layout", e))?;
    Ok(HeaderSpec {
        cipher: a.cipher.clone(),
        key_len,
        sector_size: a.sector_size,
        hash,
        layout,
        label: a.label.clone().unwrap_or_default(),
        subsystem: a.subsystem.clone().unwrap_or_default(),
        uuid: a.uuid.clone(),
        kdf: KdfOptions::from(&a.kdf),
    })
}

/// Writes a new header made to `spec` with one keyslot for `pass` through `hdr` (the KDF
/// benchmarked to `--iter-time` unless forced; a random volume key), every write synced.
pub fn write_header(
    spec: &HeaderSpec,
    pass: &Passphrase,
    hdr: &mut dyn Sink,
    hdr_name: &str,
    verbose: bool,
    old: Option<&Luks2Header>,
) -> Result<NewHeader, CliError> {
    let kdf = choose_kdf(&spec.kdf, spec.key_len, verbose)?;
    let digest_iterations = if spec.kdf.force_iterations.is_some() {
        format::MIN_PBKDF2_ITERATIONS
    } else {
        bench_pbkdf2(spec.hash, spec.key_len, DIGEST_ITER_TIME_MS)?
    };
    let params = FormatParams {
        encryption: spec.cipher.clone(),
        sector_size: spec.sector_size,
        layout: spec.layout,
        label: spec.label.clone(),
        subsystem: spec.subsystem.clone(),
        uuid: spec.uuid.clone(),
        keyslot: KeyslotSpec {
            kdf,
            af_hash: spec.hash,
            encryption: spec.cipher.clone(),
            priority: None,
        },
        digest_hash: spec.hash,
        digest_iterations,
    };
    let mut vk = SecretBuf::zeroed(spec.key_len);
    os_random(vk.as_mut_bytes()).map_err(|e| CliError::new(code::INVALID, e))?;
    // Over an existing LUKS2 header, the order that keeps the old passphrases working until
    // the new header is complete (see `format_over`), where the layouts allow it.
    let over = match old {
        Some(h) => format::format_over(&params, vk.as_bytes(), pass.as_bytes(), h, &mut os_random)
            .map_err(|e| fmt_err(hdr_name, e))?,
        None => None,
    };
    if old.is_some() && over.is_none() {
        eprintln!(
            "tazpod: the old header of {hdr_name} has another metadata size or no room beside \
             its keyslots: its passphrases stop working with the first write"
        );
    }
    let f = match over {
        Some(f) => f,
        None => format::format(&params, vk.as_bytes(), pass.as_bytes(), &mut os_random)
            .map_err(|e| fmt_err(hdr_name, e))?,
    };
    execute(&f.plan, hdr, hdr_name)?;
    Ok(NewHeader {
        uuid: f.uuid,
        volume_key: luks2::VolumeKey::new(vk),
    })
}

/// `tazpod format`.
pub fn cmd_format(a: FormatArgs, verbose: bool) -> Result<(), CliError> {
    let spec = header_spec(&a)?;
    let layout = spec.layout;
    let shown = a.device.display().to_string();

    // The data device must hold the data offset plus at least one sector, in whole sectors.
    // The device that receives the header is opened exclusively (a block device in use is
    // refused); with --header the data device is not written, and cryptsetup does not check it.
    let mut dev = if a.header.is_some() {
        open_rw(&a.device, false)?
    } else {
        open_for_format(&a.device, false)?
    };
    let dev_size = size_of(&dev, &a.device)?;
    let sector = u64::from(a.sector_size);
    if dev_size <= layout.data_offset {
        return Err(CliError::new(
            code::DEVICE,
            format!(
                "{shown} is too small: {dev_size} bytes, LUKS2 with this layout needs more than {}",
                layout.data_offset
            ),
        ));
    }
    if sector == 0 || (dev_size - layout.data_offset) % sector != 0 {
        return Err(CliError::new(
            code::INVALID,
            format!("the size of {shown} is not a multiple of the sector size {sector}"),
        ));
    }
    let mut hdr = match &a.header {
        Some(h) => open_for_format(h, true)?,
        None => dev
            .try_clone()
            .map_err(|e| CliError::new(code::DEVICE, format!("{shown}: {e}")))?,
    };
    let hdr_name = a
        .header
        .as_ref()
        .map_or(shown.clone(), |h| h.display().to_string());
    // The writers' lock on the header device, held until the new header is synced.
    let _lock = metadata_lock(&hdr, &hdr_name, flock::Mode::Exclusive)?;
    // Refuse to overwrite a LUKS header without confirmation.
    let mut magic = [0u8; 6];
    // The header being replaced, if it is a LUKS2 header tazpod reads (read under the lock;
    // a damaged primary with an intact secondary counts).
    let old = match luks2::read_header(&mut hdr) {
        Ok(luks2::Header::Luks2(h)) => Some(*h),
        _ => None,
    };
    let has_luks = old.is_some()
        || (hdr.read_exact_at(&mut magic, 0).is_ok() && magic == luks2::header::MAGIC_PRIMARY);
    if !a.batch_mode {
        if has_luks {
            confirm(&format!(
                "WARNING: {hdr_name} already contains a LUKS header.\nThis will overwrite data on {hdr_name} irrevocably."
            ))?;
        } else if tty::stdin_is_tty() {
            confirm(&format!(
                "WARNING!\n========\nThis will overwrite data on {hdr_name} irrevocably."
            ))?;
        }
    }
    let pass = new_passphrase(None, Some(&a.key), &shown)?;
    let f = write_header(&spec, &pass, &mut hdr, &hdr_name, verbose, old.as_ref())?;
    drop(f.volume_key);
    drop(hdr);
    dev.sync().ok();
    if verbose {
        eprintln!("Formatted {shown} as LUKS2, UUID {}.", f.uuid);
    }
    Ok(())
}

/// A header opened read-write under the writers' lock.
struct Loaded {
    file: File,
    shown: String,
    header: Luks2Header,
    /// Held until this is dropped, after the last write.
    _lock: Option<flock::DeviceLock>,
}

/// Opens the header read-write, takes the writers' lock and loads it (LUKS2 only).
fn load_rw(device: &Path, header: Option<&PathBuf>) -> Result<Loaded, CliError> {
    let path = header.map_or(device, |h| h.as_path());
    let shown = path.display().to_string();
    let mut f = open_rw(path, false)?;
    // The header is read only once the writers' lock is held, so the update starts from the
    // latest state; the lock stays held until the last write is synced.
    let lock = metadata_lock(&f, &shown, flock::Mode::Exclusive)?;
    let h = luks2::read_header(&mut f).map_err(|e| CliError::luks(&shown, e))?;
    match h {
        luks2::Header::Luks2(h) => Ok(Loaded {
            file: f,
            shown,
            header: *h,
            _lock: lock,
        }),
        luks2::Header::Luks1(_) => Err(CliError::new(
            code::INVALID,
            format!("{shown}: LUKS1 headers are read-only in tazpod"),
        )),
    }
}

/// Unlocks (optionally only `slot`), asks for the new key, and builds the new keyslot's spec.
#[allow(clippy::too_many_arguments)]
fn unlock_for_new_key(
    f: &mut File,
    shown: &str,
    h: &Luks2Header,
    key: &KeyArgs,
    slot: Option<u32>,
    new_keyfile: Option<&PathBuf>,
    kdf: &KdfOptions,
    verbose: bool,
) -> Result<(luks2::unlock::Unlocked, Passphrase, KeyslotSpec), CliError> {
    let read = HeaderRead::of(luks2::Header::Luks2(Box::new(h.clone())), shown);
    let u = read.unlock(
        f,
        &KeyRequest {
            key,
            keyslot: slot,
            limits: crate::unlock::default_limits(),
            verbose,
        },
    )?;
    let new = new_passphrase(new_keyfile, None, shown)?;
    let params = choose_kdf(kdf, u.volume_key.len(), verbose)?;
    let hash = HashAlg::from_name(&kdf.hash)
        .ok_or_else(|| CliError::new(code::INVALID, format!("unknown hash '{}'", kdf.hash)))?;
    let encryption = h
        .metadata
        .keyslots
        .get(&u.keyslot)
        .and_then(|k| k.area.as_ref())
        .map(|ar| ar.encryption.clone())
        .unwrap_or_else(|| "aes-xts-plain64".into());
    let spec = KeyslotSpec {
        kdf: params,
        af_hash: hash,
        encryption,
        priority: None,
    };
    Ok((u, new, spec))
}

/// `tazpod change-key`: the keyslot the old key opens gets the new key (same id, new area).
pub fn cmd_change_key(a: ChangeKeyArgs, verbose: bool) -> Result<(), CliError> {
    let Loaded {
        file: mut f,
        shown,
        header: h,
        _lock,
    } = load_rw(&a.device, a.header.as_ref())?;
    let (u, new, spec) = unlock_for_new_key(
        &mut f,
        &shown,
        &h,
        &a.key,
        a.key_slot,
        a.new_keyfile.as_ref(),
        &KdfOptions::from(&a.kdf),
        verbose,
    )?;
    let slot = u.keyslot;
    let plan = format::change_keyslot(
        &h,
        u.volume_key.as_bytes(),
        slot,
        new.as_bytes(),
        &spec,
        &mut os_random,
    )
    .map_err(|e| fmt_err(&shown, e))?;
    drop(u);
    execute(&plan, &mut f, &shown)?;
    if verbose {
        eprintln!("Key slot {slot} changed.");
    }
    Ok(())
}

/// `tazpod add-key`.
pub fn cmd_add_key(a: AddKeyArgs, verbose: bool) -> Result<(), CliError> {
    let Loaded {
        file: mut f,
        shown,
        header: h,
        _lock,
    } = load_rw(&a.device, a.header.as_ref())?;
    let (u, new, spec) = unlock_for_new_key(
        &mut f,
        &shown,
        &h,
        &a.key,
        None,
        a.new_keyfile.as_ref(),
        &KdfOptions::from(&a.kdf),
        verbose,
    )?;
    let vk = u.volume_key;
    let (plan, id) = format::add_keyslot(
        &h,
        vk.as_bytes(),
        u.digest,
        new.as_bytes(),
        &spec,
        a.key_slot,
        &mut os_random,
    )
    .map_err(|e| fmt_err(&shown, e))?;
    drop(vk);
    execute(&plan, &mut f, &shown)?;
    if verbose {
        eprintln!("Key slot {id} created.");
    }
    Ok(())
}

/// `tazpod remove-key`.
pub fn cmd_remove_key(a: RemoveKeyArgs, verbose: bool) -> Result<(), CliError> {
    let Loaded {
        file: mut f,
        shown,
        header: h,
        _lock,
    } = load_rw(&a.device, a.header.as_ref())?;
    let read = HeaderRead::of(luks2::Header::Luks2(Box::new(h.clone())), &shown);
    let u = read.unlock(
        &mut f,
        &KeyRequest {
            key: &a.key,
            keyslot: None,
            limits: crate::unlock::default_limits(),
            // Only the removal is reported.
            verbose: false,
        },
    )?;
    drop(u.volume_key);
    kill(&mut f, &shown, &h, u.keyslot, a.batch_mode)?;
    if verbose {
        eprintln!("Key slot {} removed.", u.keyslot);
    }
    Ok(())
}

fn kill(
    f: &mut File,
    shown: &str,
    h: &Luks2Header,
    slot: u32,
    batch: bool,
) -> Result<(), CliError> {
    if !h.metadata.keyslots.contains_key(&slot) {
        return Err(CliError::new(
            code::INVALID,
            format!("{shown}: keyslot {slot} is not in use"),
        ));
    }
    if h.metadata.keyslots.len() == 1 && !batch {
        last_keyslot_rule(shown, slot)?;
    }
    let plan = format::remove_keyslot(h, slot, &mut os_random).map_err(|e| fmt_err(shown, e))?;
    execute(&plan, f, shown)
}

/// The rule for wiping the last keyslot, cryptsetup 2.6.1's for `luksRemoveKey` and
/// `luksKillSlot`: on a terminal, a typed "YES" (anything else: "operation aborted", exit 2,
/// nothing written); without a terminal there is nobody to ask and the keyslot is wiped, with
/// a warning that the device will not open again. `--batch-mode` skips the question (and for
/// `kill-slot` a key file does too); the callers check that.
fn last_keyslot_rule(shown: &str, slot: u32) -> Result<(), CliError> {
    if tty::stdin_is_tty() {
        return confirm_or(
            &format!(
                "WARNING!\n========\nThis is the last keyslot of {shown}. Device will become \
                 unusable after purging this key."
            ),
            "operation aborted, the keyslot was NOT wiped",
        );
    }
    eprintln!(
        "tazpod: warning: keyslot {slot} is the last keyslot of {shown}; with no terminal to \
         confirm, it is wiped as cryptsetup does, and no passphrase will open the device again"
    );
    Ok(())
}

/// `tazpod kill-slot`, as cryptsetup 2.6.1's `luksKillSlot`: unless `--batch-mode` is given
/// on a terminal without a key file, a remaining passphrase is read ("Enter any remaining
/// passphrase: ") and must open another keyslot than the one killed, or, when it is the last
/// keyslot, that keyslot itself (after the typed "YES", which a key file or `--batch-mode`
/// skips; see [`last_keyslot_rule`]). Input that ends before its first byte (an empty pipe,
/// `--key-file -` with nothing on it) skips the check, as cryptsetup does.
pub fn cmd_kill_slot(a: KillSlotArgs, verbose: bool) -> Result<(), CliError> {
    let Loaded {
        file: mut f,
        shown,
        header: h,
        _lock,
    } = load_rw(&a.device, a.header.as_ref())?;
    let slot = a.slot;
    if !h.metadata.keyslots.contains_key(&slot) {
        return Err(CliError::new(
            code::INVALID,
            format!("{shown}: keyslot {slot} is not active"),
        ));
    }
    if verbose {
        eprintln!("Keyslot {slot} is selected for deletion.");
    }
    let last = h.metadata.keyslots.len() == 1;
    let key_file = a.key.key_file.is_some();
    if !a.batch_mode || key_file || !tty::stdin_is_tty() {
        if last && !a.batch_mode && !key_file {
            last_keyslot_rule(&shown, slot)?;
        }
        match crate::passphrase::read_once(&a.key, "Enter any remaining passphrase: ")? {
            Some(pass) => {
                let opened = remaining_opens(&mut f, &h, slot, last, &pass)
                    .map_err(|e| CliError::luks(&shown, e))?;
                if verbose {
                    eprintln!("Key slot {opened} unlocked.");
                }
            }
            // The last keyslot is never wiped on input that held nothing (cryptsetup wipes it);
            // --batch-mode says so explicitly.
            None if last && !a.batch_mode => {
                return Err(crate::passphrase::nothing_to_read().hint(format!(
                    "keyslot {slot} is the last keyslot and was NOT wiped; give a passphrase \
                     that opens it, or --batch-mode"
                )))
            }
            None => eprintln!(
                "tazpod: nothing to read on input; keyslot {slot} is wiped without a passphrase check"
            ),
        }
    }
    let plan = format::remove_keyslot(&h, slot, &mut os_random).map_err(|e| fmt_err(&shown, e))?;
    execute(&plan, &mut f, &shown)?;
    if verbose {
        eprintln!("Keyslot {slot} is wiped.");
    }
    Ok(())
}

/// The keyslot `pass` opens: `slot` itself when it is the `last`, else any other active one
/// (tried by id, each on its own, so priority "ignore" keyslots count too, as in cryptsetup's
/// `verify_keyslot`). A passphrase that opens none is a wrong passphrase (exit 2); another
/// failure (a KDF over the memory limit, say) is reported if nothing opened.
fn remaining_opens(
    f: &mut File,
    h: &Luks2Header,
    slot: u32,
    last: bool,
    pass: &Passphrase,
) -> Result<u32, luks2::Error> {
    let header = luks2::Header::Luks2(Box::new(h.clone()));
    let limits = crate::unlock::default_limits();
    let candidates: Vec<u32> = if last {
        vec![slot]
    } else {
        h.metadata
            .keyslots
            .keys()
            .copied()
            .filter(|&id| id != slot)
            .collect()
    };
    let mut err = luks2::Error::Unlock(luks2::error::UnlockError::WrongPassphrase);
    for id in candidates {
        let opts = UnlockOptions {
            keyslot: Some(id),
            limits,
        };
        match unlock(&header, f, pass.as_bytes(), &opts) {
            Ok(u) => return Ok(u.keyslot),
            Err(luks2::Error::Unlock(luks2::error::UnlockError::WrongPassphrase)) => {}
            Err(e) => err = e,
        }
    }
    Err(err)
}

/// `tazpod config`.
pub fn cmd_config(a: ConfigArgs, _verbose: bool) -> Result<(), CliError> {
    let priority = match a.priority.as_deref() {
        None => None,
        Some(p) => {
            let p = match p {
                "ignore" => Priority::Ignore,
                "normal" => Priority::Normal,
                "prefer" => Priority::High,
                other => {
                    return Err(CliError::new(
                        code::INVALID,
                        format!("--priority {other}: use ignore, normal or prefer"),
                    ))
                }
            };
            let slot = a
                .key_slot
                .ok_or_else(|| CliError::new(code::INVALID, "--priority needs --key-slot"))?;
            Some((slot, p))
        }
    };
    if a.label.is_none() && priority.is_none() {
        return Err(CliError::new(code::INVALID, "nothing to change")
            .hint("give --label and/or --priority with --key-slot"));
    }
    let Loaded {
        file: mut f,
        shown,
        header: h,
        _lock,
    } = load_rw(&a.device, a.header.as_ref())?;
    let plan = format::configure(&h, a.label.as_deref(), priority, &mut os_random)
        .map_err(|e| fmt_err(&shown, e))?;
    execute(&plan, &mut f, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults built in code are the command line's own (clap parses a bare command).
    #[test]
    fn defaults_are_the_command_lines() {
        use clap::{Command, FromArgMatches};
        let m = FormatArgs::augment_args(Command::new("format"))
            .try_get_matches_from(["format", "/dev/x"])
            .unwrap();
        let parsed = FormatArgs::from_arg_matches(&m).unwrap();
        let built = format_defaults(Path::new("/dev/x"), KdfArgs::default());
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16k"), Ok(16384));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert!(parse_size("4x").is_err());
        assert!(parse_size("").is_err());
    }

    /// A sink that fails after `n` writes.
    struct Failing {
        left: usize,
        image: Vec<u8>,
    }
    impl Sink for Failing {
        fn write_at(&mut self, data: &[u8], offset: u64) -> std::io::Result<()> {
            if self.left == 0 {
                return Err(std::io::Error::other("injected"));
            }
            self.left -= 1;
            let plan = Plan {
                writes: vec![format::PlannedWrite {
                    what: String::new(),
                    offset,
                    data: data.to_vec(),
                }],
            };
            plan.apply_to(&mut self.image);
            Ok(())
        }
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn execute_stops_at_the_failing_write_and_names_it() {
        let plan = Plan {
            writes: (0..3u8)
                .map(|i| format::PlannedWrite {
                    what: format!("w{i}"),
                    offset: u64::from(i),
                    data: vec![i + 1],
                })
                .collect(),
        };
        for n in 0..=3 {
            let mut s = Failing {
                left: n,
                image: Vec::new(),
            };
            let r = execute(&plan, &mut s, "dev");
            assert_eq!(r.is_ok(), n == 3);
            if let Err(e) = r {
                assert!(e.message.contains(&format!("w{n}")), "{}", e.message);
            }
            let written: Vec<u8> = (1..=u8::try_from(n).unwrap_or(0)).collect();
            assert_eq!(s.image, written);
        }
    }
}
