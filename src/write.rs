//! The verbs that write a LUKS2 header: `format`, `add-key`, `remove-key`, `kill-slot`,
//! `config`.
//!
//! The bytes come from the pure writer (`luks2::format`), which returns an ordered plan of
//! writes; this module supplies what the library must not do itself: randomness from the OS
//! (`/dev/urandom`), KDF benchmarking to `--iter-time`, the confirmations, and running the plan
//! with an `fsync` after every write, so that an interruption leaves a header that opens with the
//! old or the new keyslots (`luks2/tests/format_crash.rs` checks every interruption point).

use crate::device::{self, metadata_lock, DeviceError};
use crate::kdfcal;
use crate::kernel::{flock, tty};
use crate::passphrase::{with_passphrase, KeySource, PassphraseError, TryError, PASSPHRASE_MAX};
use crate::unlock::{HeaderRead, KeyRequest};
use luks2::format::{self, FormatError, FormatParams, KeyslotSpec, Layout, Plan};
use luks2::hash::HashAlg;
use luks2::header::Luks2Header;
use luks2::kdf::{Argon2Variant, KdfParams};
use luks2::unlock::{unlock, UnlockOptions};
use luks2::{Passphrase, SecretBuf};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Why a header could not be written. [`fmt::Display`] gives the message; the CLI adds the
/// hint and exit code (`From<WriteError> for CliError`).
#[derive(Debug)]
pub enum WriteError {
    /// The header device (or file) cannot be opened read-write.
    OpenForWrite { path: PathBuf, error: io::Error },
    /// A block device that another user holds, with a signature tazpod knows on it
    /// (cryptsetup's wipe refuses it with exit 1).
    InUseWithSignature { path: PathBuf },
    /// A block device that another user holds, without a known signature (exit 5).
    InUse { path: PathBuf },
    /// The size of the device cannot be read.
    Size { path: PathBuf, error: io::Error },
    /// A write (or its sync) of the plan failed.
    Write {
        shown: String,
        what: String,
        offset: u64,
        error: io::Error,
    },
    /// A confirmation was asked for with no terminal to answer it.
    NoTerminal { question: String },
    /// The answer to a confirmation could not be read.
    Answer(io::Error),
    /// The answer to a confirmation was not "YES".
    Aborted,
    /// The answer to the last keyslot's confirmation was not "YES".
    LastKeyslotKept,
    /// A passphrase could not be read.
    Passphrase(PassphraseError),
    /// A new key file holds nothing.
    EmptyNewKeyFile { file: String },
    /// The new passphrase could not be read from standard input.
    NewPassphraseStdin(io::Error),
    /// The new passphrase on standard input is over the limit.
    NewPassphraseTooLong,
    /// The new passphrase could not be read from the terminal.
    Prompt(io::Error),
    /// The new passphrase typed on the terminal is over the limit.
    PromptTooLong,
    /// The two typed passphrases differ.
    Mismatch,
    /// PBKDF2 could not be benchmarked with `hash`.
    Pbkdf2Benchmark { hash: &'static str },
    /// Argon2 could not be benchmarked.
    Argon2Benchmark(luks2::error::KdfError),
    /// `--hash` names no hash tazpod knows.
    UnknownHash { hash: String },
    /// `--pbkdf` names no PBKDF tazpod knows.
    UnknownPbkdf { pbkdf: String },
    /// `--type` is not luks2.
    Type { luks_type: String },
    /// `--key-size` is not a whole number of bytes.
    KeySize { bits: usize },
    /// The cipher cannot be used with a key of `bits`.
    Cipher {
        cipher: String,
        bits: usize,
        error: luks2::error::CipherError,
    },
    /// The cipher's ESSIV hash is a truncated Whirlpool, which cryptsetup's LUKS2 keyslots
    /// cannot use.
    EssivWhirlpool { cipher: String, bits: u16 },
    /// The OS random source failed.
    Random(String),
    /// The writer refused the change (`what` is the device, or "layout").
    Format { what: String, error: FormatError },
    /// The writers' lock could not be taken.
    Device(DeviceError),
    /// The header of `shown` could not be read.
    Luks { shown: String, error: luks2::Error },
    /// The header is LUKS1, which tazpod only reads.
    Luks1 { shown: String },
    /// The keyslot to wipe is not in use.
    SlotNotInUse { shown: String, slot: u32 },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::OpenForWrite { path, error } => {
                write!(f, "cannot open {} for writing: {error}", path.display())
            }
            WriteError::InUseWithSignature { path } => {
                write!(
                    f,
                    "cannot exclusively open {}, device in use",
                    path.display()
                )
            }
            WriteError::InUse { path } => write!(
                f,
                "cannot use device {} which is in use (already mapped or mounted)",
                path.display()
            ),
            WriteError::Size { path, error } => {
                write!(f, "cannot get the size of {}: {error}", path.display())
            }
            WriteError::Write {
                shown,
                what,
                offset,
                error,
            } => write!(
                f,
                "{shown}: writing the {what} at offset {offset} failed: {error}"
            ),
            WriteError::NoTerminal { question } => {
                write!(f, "{question}: refused without a terminal to confirm")
            }
            WriteError::Answer(e) => write!(f, "cannot read the answer: {e}"),
            WriteError::Aborted => f.write_str("operation aborted"),
            WriteError::LastKeyslotKept => {
                f.write_str("operation aborted, the keyslot was NOT wiped")
            }
            WriteError::Passphrase(e) => e.fmt(f),
            WriteError::EmptyNewKeyFile { file } => write!(
                f,
                "the new key file '{file}' is empty: nothing to read; nothing was written"
            ),
            WriteError::NewPassphraseStdin(e) => {
                write!(f, "cannot read the new passphrase from standard input: {e}")
            }
            WriteError::NewPassphraseTooLong => f.write_str("the new passphrase is too long"),
            WriteError::Prompt(e) => write!(f, "cannot read passphrase: {e}"),
            WriteError::PromptTooLong => f.write_str("the passphrase is too long"),
            WriteError::Mismatch => f.write_str("passphrases do not match"),
            WriteError::Pbkdf2Benchmark { hash } => {
                write!(f, "cannot measure PBKDF2-{hash} on this machine")
            }
            WriteError::Argon2Benchmark(e) => write!(f, "argon2 benchmark: {e}"),
            WriteError::UnknownHash { hash } => write!(f, "unknown hash '{hash}'"),
            WriteError::UnknownPbkdf { pbkdf } => {
                write!(f, "unknown PBKDF '{pbkdf}' (argon2id, argon2i or pbkdf2)")
            }
            WriteError::Type { luks_type } => {
                write!(f, "--type {luks_type}: tazpod writes only luks2")
            }
            WriteError::KeySize { bits } => {
                write!(f, "--key-size {bits} is not a whole number of bytes")
            }
            WriteError::Cipher {
                cipher,
                bits,
                error,
            } => write!(f, "cipher {cipher} with a {bits}-bit key: {error}"),
            WriteError::EssivWhirlpool { cipher, bits } => write!(
                f,
                "cipher {cipher}: cryptsetup cannot use the ESSIV hash wp{bits} for LUKS2 \
                 keyslot encryption, so the volume would not open there"
            ),
            WriteError::Random(e) => f.write_str(e),
            WriteError::Format { what, error } => write!(f, "{what}: {error}"),
            WriteError::Device(e) => e.fmt(f),
            WriteError::Luks { shown, error } => write!(f, "{shown}: {error}"),
            WriteError::Luks1 { shown } => {
                write!(f, "{shown}: LUKS1 headers are read-only in tazpod")
            }
            WriteError::SlotNotInUse { shown, slot } => {
                write!(f, "{shown}: keyslot {slot} is not in use")
            }
        }
    }
}

impl std::error::Error for WriteError {}
impl From<PassphraseError> for WriteError {
    fn from(e: PassphraseError) -> Self {
        WriteError::Passphrase(e)
    }
}

impl From<TryError> for WriteError {
    fn from(e: TryError) -> Self {
        match e {
            TryError::Passphrase(e) => WriteError::Passphrase(e),
            TryError::Library { device, error } => WriteError::Luks {
                shown: device,
                error,
            },
        }
    }
}

impl From<DeviceError> for WriteError {
    fn from(e: DeviceError) -> Self {
        WriteError::Device(e)
    }
}

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

impl Default for KdfOptions {
    /// `format`'s defaults: argon2id with sha256, everything else calibrated.
    fn default() -> Self {
        KdfOptions {
            pbkdf: DEFAULT_PBKDF.into(),
            iter_time: None,
            pbkdf_memory: None,
            pbkdf_parallel: None,
            force_iterations: None,
            hash: DEFAULT_HASH.into(),
        }
    }
}

/// The choices of a new header, as `format` takes them (unchecked; [`header_spec`] checks
/// them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOptions {
    /// The header type (only `luks2` is written).
    pub luks_type: String,
    /// Data (and keyslot) cipher.
    pub cipher: String,
    /// Volume key size in bits (default: 512 for XTS, 256 otherwise).
    pub key_size: Option<usize>,
    /// Encryption sector size.
    pub sector_size: u32,
    /// The first keyslot's KDF.
    pub kdf: KdfOptions,
    /// Label.
    pub label: Option<String>,
    /// Subsystem.
    pub subsystem: Option<String>,
    /// A fixed UUID (else a random one).
    pub uuid: Option<String>,
    /// Size of one header copy.
    pub metadata_size: Option<u64>,
    /// Size of the keyslots area.
    pub keyslots_size: Option<u64>,
    /// The header is written to a file of its own (detached header).
    pub detached: bool,
}

impl Default for FormatOptions {
    /// `format`'s defaults (the command line's own).
    fn default() -> Self {
        FormatOptions {
            luks_type: DEFAULT_TYPE.into(),
            cipher: DEFAULT_CIPHER.into(),
            key_size: None,
            sector_size: DEFAULT_SECTOR_SIZE,
            kdf: KdfOptions::default(),
            label: None,
            subsystem: None,
            uuid: None,
            metadata_size: None,
            keyslots_size: None,
            detached: false,
        }
    }
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

/// The writer's refusal of a change to `what` (a device, or "layout").
pub fn fmt_err(what: &str, error: FormatError) -> WriteError {
    WriteError::Format {
        what: what.to_string(),
        error,
    }
}

/// Opens the header device read-write.
pub fn open_rw(path: &Path, create: bool) -> Result<File, WriteError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|error| WriteError::OpenForWrite {
            path: path.to_path_buf(),
            error,
        })
}

/// Opens the device `format` writes its header to: read-write, and on a block device with
/// `O_EXCL`, as cryptsetup does, so that a mounted, mapped or otherwise claimed device is refused
/// (and stays unclaimed by others while tazpod writes). Regular files get no such check.
pub fn open_for_format(path: &Path, create: bool) -> Result<File, WriteError> {
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
        Err(error) => Err(WriteError::OpenForWrite {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// The error for a block device that another user holds. cryptsetup 2.6.1 says one of two
/// things: when blkid finds a signature on the device it first tries to wipe it, and that
/// exclusive open fails with "Cannot exclusively open X, device in use." (exit 1); on a
/// device without one, the library's own exclusive open fails with "Cannot use device X which
/// is in use (already mapped or mounted)." (exit 5). tazpod knows two signatures, the ones a
/// vault has: a LUKS header and an ext2/3/4 superblock.
fn busy(path: &Path) -> WriteError {
    let path = path.to_path_buf();
    if has_known_signature(&path) {
        WriteError::InUseWithSignature { path }
    } else {
        WriteError::InUse { path }
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

pub fn size_of(f: &File, path: &Path) -> Result<u64, WriteError> {
    use std::io::{Seek, SeekFrom};
    let mut f = f;
    f.seek(SeekFrom::End(0)).map_err(|error| WriteError::Size {
        path: path.to_path_buf(),
        error,
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
pub fn execute(plan: &Plan, sink: &mut dyn Sink, shown: &str) -> Result<(), WriteError> {
    for w in &plan.writes {
        sink.write_at(&w.data, w.offset)
            .and_then(|()| sink.sync())
            .map_err(|error| WriteError::Write {
                shown: shown.to_string(),
                what: w.what.clone(),
                offset: w.offset,
                error,
            })?;
    }
    Ok(())
}

/// Asks for a typed "YES" on the terminal; refuses without one.
pub fn confirm(question: &str) -> Result<(), WriteError> {
    confirm_or(question, WriteError::Aborted)
}

/// [`confirm`] with the error for an answer other than "YES".
fn confirm_or(question: &str, aborted: WriteError) -> Result<(), WriteError> {
    if !tty::stdin_is_tty() {
        return Err(WriteError::NoTerminal {
            question: question.to_string(),
        });
    }
    eprint!("{question}\nAre you sure? (Type 'yes' in capital letters): ");
    let answer = tty::read_line_secret(64).map_err(WriteError::Answer)?;
    match answer {
        Some(a) if a.as_bytes() == b"YES" => Ok(()),
        _ => Err(aborted),
    }
}

/// A new passphrase: from `keyfile`, asked twice on a terminal, or a line of standard input.
pub fn new_passphrase(
    keyfile: Option<&PathBuf>,
    key: Option<&KeySource>,
    shown: &str,
) -> Result<Passphrase, WriteError> {
    let copy = |p: &Passphrase| Ok(Passphrase::from_vec(p.as_bytes().to_vec()));
    // A new key from a file must hold at least one byte: an empty file is a mistake (a file
    // not yet written, a failed redirection), never a key. cryptsetup would take it as an empty
    // key; tazpod refuses, writing nothing. `-` that ends at once is "Nothing to read".
    let from_file = |args: &KeySource| -> Result<Passphrase, WriteError> {
        let p = with_passphrase(args, shown, copy)?;
        if p.as_bytes().is_empty() {
            let file = args
                .key_file
                .as_ref()
                .map_or(String::new(), |f| f.display().to_string());
            return Err(WriteError::EmptyNewKeyFile { file });
        }
        Ok(p)
    };
    if let Some(path) = keyfile {
        let args = KeySource {
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
        let line = tty::read_line(PASSPHRASE_MAX).map_err(WriteError::NewPassphraseStdin)?;
        let p = match line {
            tty::Line::Text(p) => p,
            tty::Line::Eof => return Err(PassphraseError::NothingToRead.into()),
            tty::Line::TooLong => return Err(WriteError::NewPassphraseTooLong),
        };
        if p.as_bytes().is_empty() {
            eprintln!(
                "tazpod: warning: the new passphrase is empty (an empty line on standard input)"
            );
        }
        return Ok(Passphrase::new(p));
    }
    let read = |prompt: &str| -> Result<SecretBuf, WriteError> {
        tty::prompt_passphrase(prompt, PASSPHRASE_MAX)
            .map_err(WriteError::Prompt)?
            .ok_or(WriteError::PromptTooLong)
    };
    let a = read(&format!("Enter passphrase for {shown}: "))?;
    let b = read("Verify passphrase: ")?;
    if a.as_bytes() != b.as_bytes() {
        return Err(WriteError::Mismatch);
    }
    Ok(Passphrase::new(a))
}

/// The hash `name` names.
fn hash_of(name: &str) -> Result<HashAlg, WriteError> {
    HashAlg::from_name(name).ok_or_else(|| WriteError::UnknownHash {
        hash: name.to_string(),
    })
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
fn bench_pbkdf2(hash: HashAlg, key_len: usize, target_ms: u64) -> Result<u32, WriteError> {
    kdfcal::pbkdf2_iterations(
        hash,
        key_len.max(1),
        target_ms,
        format::MIN_PBKDF2_ITERATIONS,
    )
    .ok_or(WriteError::Pbkdf2Benchmark { hash: hash.name() })
}

/// The keyslot KDF from the options: forced, or benchmarked to `--iter-time` like cryptsetup.
fn choose_kdf(a: &KdfOptions, key_len: usize, verbose: bool) -> Result<KdfParams, WriteError> {
    let hash = hash_of(&a.hash)?;
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
            return Err(WriteError::UnknownPbkdf {
                pbkdf: other.to_string(),
            })
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
        .map_err(WriteError::Argon2Benchmark)?;
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

/// Checks the choices of a new header (those that do not depend on the device).
pub fn header_spec(a: &FormatOptions) -> Result<HeaderSpec, WriteError> {
    if a.luks_type != "luks2" {
        return Err(WriteError::Type {
            luks_type: a.luks_type.clone(),
        });
    }
    let key_bits = a
        .key_size
        .unwrap_or(if a.cipher.contains("xts") { 512 } else { 256 });
    if key_bits % 8 != 0 || key_bits == 0 {
        return Err(WriteError::KeySize { bits: key_bits });
    }
    let key_len = key_bits / 8;
    let parsed = luks2::cipher::CipherSpec::parse(&a.cipher, key_len).map_err(|error| {
        WriteError::Cipher {
            cipher: a.cipher.clone(),
            bits: key_bits,
            error,
        }
    })?;
    // The keyslots are encrypted with the data cipher (as cryptsetup does), and cryptsetup's
    // keyslot code has no truncated Whirlpool: it refuses this format and could not open the
    // volume tazpod would write. LUKS1 volumes with it (read only here) do open.
    if let luks2::cipher::IvMode::EssivWp(bits) = parsed.iv_mode() {
        return Err(WriteError::EssivWhirlpool {
            cipher: a.cipher.clone(),
            bits,
        });
    }
    let hash = hash_of(&a.kdf.hash)?;
    if !matches!(a.kdf.pbkdf.as_str(), "argon2id" | "argon2i" | "pbkdf2") {
        return Err(WriteError::UnknownPbkdf {
            pbkdf: a.kdf.pbkdf.clone(),
        });
    }
    let layout = Layout::cryptsetup(a.metadata_size, a.keyslots_size, a.detached)
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
        kdf: a.kdf.clone(),
    })
}

/// A header spec that is quick to write in tests: the defaults with PBKDF2-SHA256 at 1000
/// iterations instead of a calibrated Argon2id.
#[cfg(test)]
pub fn quick_spec() -> HeaderSpec {
    let spec = header_spec(&FormatOptions {
        kdf: KdfOptions {
            pbkdf: "pbkdf2".into(),
            force_iterations: Some(1000),
            ..KdfOptions::default()
        },
        ..FormatOptions::default()
    });
    spec.expect("the defaults are valid")
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
) -> Result<NewHeader, WriteError> {
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
    os_random(vk.as_mut_bytes()).map_err(WriteError::Random)?;
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

/// A header opened read-write under the writers' lock.
pub struct Loaded {
    /// The header device (or `--header` file), read-write.
    pub file: File,
    /// Its name in messages.
    pub shown: String,
    /// The header read under the lock.
    pub header: Luks2Header,
    /// Held until this is dropped, after the last write.
    pub _lock: Option<flock::DeviceLock>,
}

/// Opens the header read-write, takes the writers' lock and loads it (LUKS2 only).
pub fn load_rw(device: &Path, header: Option<&PathBuf>) -> Result<Loaded, WriteError> {
    let path = header.map_or(device, |h| h.as_path());
    let shown = path.display().to_string();
    let mut f = open_rw(path, false)?;
    // The header is read only once the writers' lock is held, so the update starts from the
    // latest state; the lock stays held until the last write is synced.
    let lock = metadata_lock(&f, &shown, flock::Mode::Exclusive)?;
    let h = luks2::read_header(&mut f).map_err(|error| WriteError::Luks {
        shown: shown.clone(),
        error,
    })?;
    match h {
        luks2::Header::Luks2(h) => Ok(Loaded {
            file: f,
            shown,
            header: *h,
            _lock: lock,
        }),
        luks2::Header::Luks1(_) => Err(WriteError::Luks1 { shown }),
    }
}

/// Unlocks (optionally only `slot`), asks for the new key, and builds the new keyslot's spec.
#[allow(clippy::too_many_arguments)]
pub fn unlock_for_new_key(
    f: &mut File,
    shown: &str,
    h: &Luks2Header,
    key: &KeySource,
    slot: Option<u32>,
    new_keyfile: Option<&PathBuf>,
    kdf: &KdfOptions,
    verbose: bool,
) -> Result<(luks2::unlock::Unlocked, Passphrase, KeyslotSpec), WriteError> {
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
    let hash = hash_of(&kdf.hash)?;
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

pub fn kill(
    f: &mut File,
    shown: &str,
    h: &Luks2Header,
    slot: u32,
    batch: bool,
) -> Result<(), WriteError> {
    if !h.metadata.keyslots.contains_key(&slot) {
        return Err(WriteError::SlotNotInUse {
            shown: shown.to_string(),
            slot,
        });
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
pub fn last_keyslot_rule(shown: &str, slot: u32) -> Result<(), WriteError> {
    if tty::stdin_is_tty() {
        return confirm_or(
            &format!(
                "WARNING!\n========\nThis is the last keyslot of {shown}. Device will become \
                 unusable after purging this key."
            ),
            WriteError::LastKeyslotKept,
        );
    }
    eprintln!(
        "tazpod: warning: keyslot {slot} is the last keyslot of {shown}; with no terminal to \
         confirm, it is wiped as cryptsetup does, and no passphrase will open the device again"
    );
    Ok(())
}

/// The keyslot `pass` opens: `slot` itself when it is the `last`, else any other active one
/// (tried by id, each on its own, so priority "ignore" keyslots count too, as in cryptsetup's
/// `verify_keyslot`). A passphrase that opens none is a wrong passphrase (exit 2); another
/// failure (a KDF over the memory limit, say) is reported if nothing opened.
pub fn remaining_opens(
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

#[cfg(test)]
mod tests {
    use super::*;

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
                assert!(e.to_string().contains(&format!("w{n}")), "{e}");
            }
            let written: Vec<u8> = (1..=u8::try_from(n).unwrap_or(0)).collect();
            assert_eq!(s.image, written);
        }
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use crate::error::code;
    use crate::error::testing::{assert_converts, denied as io_err};
    use luks2::error::{CipherError, KdfError, UnlockError};

    #[test]
    fn each_error_has_its_message_hint_and_exit_code() {
        let denied = io_err().to_string();
        let d = || PathBuf::from("d");
        let in_use =
            "unmount it, close its mapping (`tazpod close NAME`) or stop the program that \
                      holds it; /sys/class/block/<device>/holders lists device-mapper users";
        let oom = || KdfError::OutOfMemory { required_kib: 1024 };
        let unsupported = || CipherError::UnsupportedCipher("foo-xts-plain64".into());
        let table: Vec<(WriteError, u8, String, Option<&str>)> = vec![
            (
                WriteError::OpenForWrite {
                    path: d(),
                    error: io_err(),
                },
                code::DEVICE,
                format!("cannot open d for writing: {denied}"),
                None,
            ),
            (
                WriteError::InUseWithSignature { path: d() },
                code::INVALID,
                "cannot exclusively open d, device in use".into(),
                Some(in_use),
            ),
            (
                WriteError::InUse { path: d() },
                code::BUSY,
                "cannot use device d which is in use (already mapped or mounted)".into(),
                Some(in_use),
            ),
            (
                WriteError::Size {
                    path: d(),
                    error: io_err(),
                },
                code::DEVICE,
                format!("cannot get the size of d: {denied}"),
                None,
            ),
            (
                WriteError::Write {
                    shown: "d".into(),
                    what: "primary header".into(),
                    offset: 4096,
                    error: io_err(),
                },
                code::DEVICE,
                format!("d: writing the primary header at offset 4096 failed: {denied}"),
                Some("the header keeps its previous or its new state; check it with `tazpod dump`"),
            ),
            (
                WriteError::NoTerminal {
                    question: "Q".into(),
                },
                code::INVALID,
                "Q: refused without a terminal to confirm".into(),
                Some("add --batch-mode to confirm"),
            ),
            (
                WriteError::Answer(io_err()),
                code::INVALID,
                format!("cannot read the answer: {denied}"),
                None,
            ),
            (
                WriteError::Aborted,
                code::PERMISSION,
                "operation aborted".into(),
                None,
            ),
            (
                WriteError::LastKeyslotKept,
                code::PERMISSION,
                "operation aborted, the keyslot was NOT wiped".into(),
                None,
            ),
            (
                WriteError::Passphrase(PassphraseError::TooLong),
                code::INVALID,
                PassphraseError::TooLong.to_string(),
                Some("use --key-file for longer keys"),
            ),
            (
                WriteError::EmptyNewKeyFile { file: "k".into() },
                code::INVALID,
                "the new key file 'k' is empty: nothing to read; nothing was written".into(),
                Some("a new key needs at least one byte; check the file"),
            ),
            (
                WriteError::NewPassphraseStdin(io_err()),
                code::INVALID,
                format!("cannot read the new passphrase from standard input: {denied}"),
                None,
            ),
            (
                WriteError::NewPassphraseTooLong,
                code::INVALID,
                "the new passphrase is too long".into(),
                None,
            ),
            (
                WriteError::Prompt(io_err()),
                code::INVALID,
                format!("cannot read passphrase: {denied}"),
                None,
            ),
            (
                WriteError::PromptTooLong,
                code::INVALID,
                "the passphrase is too long".into(),
                None,
            ),
            (
                WriteError::Mismatch,
                code::PERMISSION,
                "passphrases do not match".into(),
                None,
            ),
            (
                WriteError::Pbkdf2Benchmark { hash: "sha256" },
                code::INVALID,
                "cannot measure PBKDF2-sha256 on this machine".into(),
                None,
            ),
            (
                WriteError::Argon2Benchmark(oom()),
                code::NOMEM,
                format!("argon2 benchmark: {}", oom()),
                None,
            ),
            (
                WriteError::Argon2Benchmark(KdfError::Failed("x".into())),
                code::INVALID,
                format!("argon2 benchmark: {}", KdfError::Failed("x".into())),
                None,
            ),
            (
                WriteError::UnknownHash { hash: "md4".into() },
                code::INVALID,
                "unknown hash 'md4'".into(),
                None,
            ),
            (
                WriteError::UnknownPbkdf {
                    pbkdf: "scrypt".into(),
                },
                code::INVALID,
                "unknown PBKDF 'scrypt' (argon2id, argon2i or pbkdf2)".into(),
                None,
            ),
            (
                WriteError::Type {
                    luks_type: "luks1".into(),
                },
                code::INVALID,
                "--type luks1: tazpod writes only luks2".into(),
                None,
            ),
            (
                WriteError::KeySize { bits: 12 },
                code::INVALID,
                "--key-size 12 is not a whole number of bytes".into(),
                None,
            ),
            (
                WriteError::Cipher {
                    cipher: "foo-xts-plain64".into(),
                    bits: 512,
                    error: unsupported(),
                },
                code::INVALID,
                format!(
                    "cipher foo-xts-plain64 with a 512-bit key: {}",
                    unsupported()
                ),
                None,
            ),
            (
                WriteError::EssivWhirlpool {
                    cipher: "aes-cbc-essiv:wp256".into(),
                    bits: 256,
                },
                code::INVALID,
                "cipher aes-cbc-essiv:wp256: cryptsetup cannot use the ESSIV hash wp256 for \
                 LUKS2 keyslot encryption, so the volume would not open there"
                    .into(),
                Some("use another ESSIV hash (essiv:sha256) or plain64"),
            ),
            (
                WriteError::Random("/dev/urandom: gone".into()),
                code::INVALID,
                "/dev/urandom: gone".into(),
                None,
            ),
            (
                fmt_err("layout", FormatError::BadMetadataSize(5)),
                code::INVALID,
                format!("layout: {}", FormatError::BadMetadataSize(5)),
                None,
            ),
            (
                fmt_err("d", FormatError::Kdf(oom())),
                code::NOMEM,
                format!("d: {}", FormatError::Kdf(oom())),
                None,
            ),
            (
                WriteError::Device(DeviceError::Size {
                    name: "d".into(),
                    error: io_err(),
                }),
                code::DEVICE,
                format!("cannot get the size of d: {denied}"),
                None,
            ),
            (
                WriteError::Luks {
                    shown: "d".into(),
                    error: luks2::Error::Unlock(UnlockError::WrongPassphrase),
                },
                code::PERMISSION,
                format!("d: {}", luks2::Error::Unlock(UnlockError::WrongPassphrase)),
                None,
            ),
            (
                WriteError::Luks1 { shown: "d".into() },
                code::INVALID,
                "d: LUKS1 headers are read-only in tazpod".into(),
                None,
            ),
            (
                WriteError::SlotNotInUse {
                    shown: "d".into(),
                    slot: 3,
                },
                code::INVALID,
                "d: keyslot 3 is not in use".into(),
                None,
            ),
        ];
        assert_converts(table);
    }

    /// A library error of a passphrase attempt keeps the device it was met on.
    #[test]
    fn a_failed_attempt_names_its_device() {
        let e = WriteError::from(TryError::Library {
            device: "d".into(),
            error: luks2::Error::Unlock(UnlockError::WrongPassphrase),
        });
        assert!(
            matches!(&e, WriteError::Luks { shown, .. } if shown == "d"),
            "{e:?}"
        );
        let e = WriteError::from(TryError::Passphrase(PassphraseError::NothingToRead));
        assert!(matches!(
            e,
            WriteError::Passphrase(PassphraseError::NothingToRead)
        ));
    }
}
