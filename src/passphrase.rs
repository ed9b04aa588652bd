//! Where passphrases come from: a key file (`--key-file`, `-` for stdin), standard input when it
//! is not a terminal, or a prompt on the terminal without echo, with `--tries` attempts.
//!
//! As in cryptsetup, a key file is used whole (no newline processing) from `--keyfile-offset`
//! for `--keyfile-size` bytes (at most 8 MiB), while a typed or piped passphrase ends at the
//! first newline and may be at most 512 bytes.

use crate::kernel::tty;
use luks2::error::{Error, UnlockError};
use luks2::{Passphrase, SecretBuf};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

/// Largest key file read without an explicit `--keyfile-size` (cryptsetup's default).
pub const KEYFILE_MAX: u64 = 8 * 1024 * 1024;
/// Largest passphrase typed at the prompt or piped on stdin (cryptsetup's default).
pub const PASSPHRASE_MAX: usize = 512;

/// Where a passphrase comes from, for every verb that needs one (the command line's
/// `--key-file`, `--keyfile-offset`, `--keyfile-size`, `--tries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// Read the key from this file (`-` is standard input); the whole file is the key.
    pub key_file: Option<PathBuf>,
    /// Bytes skipped at the start of the key file.
    pub keyfile_offset: u64,
    /// Read at most this many bytes of the key file.
    pub keyfile_size: Option<u64>,
    /// How many times to prompt for a passphrase.
    pub tries: u32,
}

/// cryptsetup's default number of passphrase prompts.
pub const DEFAULT_TRIES: u32 = 3;

impl Default for KeySource {
    /// The command line's defaults: no key file, whole file, three prompts.
    fn default() -> Self {
        KeySource {
            key_file: None,
            keyfile_offset: 0,
            keyfile_size: None,
            tries: DEFAULT_TRIES,
        }
    }
}

/// Why no passphrase could be read. [`fmt::Display`] gives the message; the CLI adds the hint
/// and exit code (`From<PassphraseError> for CliError`).
#[derive(Debug)]
pub enum PassphraseError {
    /// The key file could not be looked at or read.
    KeyFileRead { path: String, error: io::Error },
    /// The key file is a directory.
    KeyFileIsDir { path: String },
    /// The key file could not be opened.
    KeyFileOpen { path: String, error: io::Error },
    /// The key file ended before `--keyfile-offset`.
    KeyFileShorterThanOffset { path: String, offset: u64 },
    /// `--keyfile-size` asks for more than [`KEYFILE_MAX`].
    KeyfileSizeOverLimit { limit: u64 },
    /// The key file holds more than [`KEYFILE_MAX`] bytes and no `--keyfile-size` was given.
    KeyFileTooLarge { path: String },
    /// The key file ended before `--keyfile-size` bytes.
    KeyFileShorterThanSize { path: String, len: usize, want: u64 },
    /// Standard input could not be read.
    Stdin(io::Error),
    /// The terminal could not be read.
    Terminal(io::Error),
    /// The passphrase (terminal or standard input) could not be read.
    Read(io::Error),
    /// Standard input (or `--key-file -`) ended before its first byte.
    NothingToRead,
    /// A typed or piped passphrase over [`PASSPHRASE_MAX`] bytes.
    TooLong,
}

impl fmt::Display for PassphraseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassphraseError::KeyFileRead { path, error } => {
                write!(f, "cannot read key file '{path}': {error}")
            }
            PassphraseError::KeyFileIsDir { path } => write!(f, "key file '{path}' is a directory"),
            PassphraseError::KeyFileOpen { path, error } => {
                write!(f, "cannot open key file '{path}': {error}")
            }
            PassphraseError::KeyFileShorterThanOffset { path, offset } => {
                write!(
                    f,
                    "key file '{path}' is shorter than --keyfile-offset {offset}"
                )
            }
            PassphraseError::KeyfileSizeOverLimit { limit } => {
                write!(
                    f,
                    "--keyfile-size {limit} is over the {KEYFILE_MAX}-byte limit"
                )
            }
            PassphraseError::KeyFileTooLarge { path } => {
                write!(
                    f,
                    "key file '{path}' is larger than the {KEYFILE_MAX}-byte limit"
                )
            }
            PassphraseError::KeyFileShorterThanSize { path, len, want } => write!(
                f,
                "key file '{path}' has {len} bytes, fewer than --keyfile-size {want}"
            ),
            PassphraseError::Stdin(e) => {
                write!(f, "cannot read passphrase from standard input: {e}")
            }
            PassphraseError::Terminal(e) => {
                write!(f, "cannot read passphrase from the terminal: {e}")
            }
            PassphraseError::Read(e) => write!(f, "cannot read the passphrase: {e}"),
            PassphraseError::NothingToRead => f.write_str("Nothing to read on input."),
            PassphraseError::TooLong => {
                write!(f, "the passphrase is longer than {PASSPHRASE_MAX} bytes")
            }
        }
    }
}

impl std::error::Error for PassphraseError {}

/// Why [`with_passphrase`] failed: no passphrase could be read, or the attempt with the last
/// one failed (a wrong passphrase after the last try, or another library error on `device`).
#[derive(Debug)]
pub enum TryError {
    /// No passphrase could be read.
    Passphrase(PassphraseError),
    /// The attempt failed on `device`.
    Library { device: String, error: Error },
}

impl From<PassphraseError> for TryError {
    fn from(e: PassphraseError) -> Self {
        TryError::Passphrase(e)
    }
}

impl TryError {
    fn library(device: &str, error: Error) -> Self {
        TryError::Library {
            device: device.to_string(),
            error,
        }
    }
}

impl fmt::Display for TryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryError::Passphrase(e) => e.fmt(f),
            TryError::Library { device, error } => write!(f, "{device}: {error}"),
        }
    }
}

impl std::error::Error for TryError {}

/// Reads the key file as cryptsetup does.
fn read_key_file(args: &KeySource, path: &PathBuf) -> Result<Passphrase, PassphraseError> {
    let shown = path.display().to_string();
    let read_error = |error| PassphraseError::KeyFileRead {
        path: shown.clone(),
        error,
    };
    let mut reader: Box<dyn Read> = if shown == "-" {
        Box::new(io::stdin().lock())
    } else {
        let meta = std::fs::metadata(path).map_err(read_error)?;
        if meta.is_dir() {
            return Err(PassphraseError::KeyFileIsDir { path: shown });
        }
        Box::new(
            File::open(path).map_err(|error| PassphraseError::KeyFileOpen {
                path: shown.clone(),
                error,
            })?,
        )
    };
    // Skip the offset by reading: works for pipes and FIFOs too.
    let skipped = io::copy(
        &mut (&mut reader).take(args.keyfile_offset),
        &mut io::sink(),
    )
    .map_err(read_error)?;
    if skipped < args.keyfile_offset {
        return Err(PassphraseError::KeyFileShorterThanOffset {
            path: shown,
            offset: args.keyfile_offset,
        });
    }
    let limit = args.keyfile_size.unwrap_or(KEYFILE_MAX);
    if limit > KEYFILE_MAX {
        return Err(PassphraseError::KeyfileSizeOverLimit { limit });
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    // Read one byte more than allowed to detect an oversized file. The buffer starts small and
    // doubles (the old one is wiped on drop): a full-size buffer would make every unlock touch
    // and wipe 8 MiB.
    let want = cap.saturating_add(1);
    let mut buf = SecretBuf::zeroed(want.min(4096));
    let mut len = 0usize;
    loop {
        if len == buf.len() {
            if len >= want {
                break;
            }
            let mut bigger = SecretBuf::zeroed(len.saturating_mul(2).min(want));
            if let Some(dst) = bigger.as_mut_bytes().get_mut(..len) {
                dst.copy_from_slice(buf.as_bytes());
            }
            buf = bigger;
        }
        let Some(dst) = buf.as_mut_bytes().get_mut(len..) else {
            break;
        };
        match reader.read(dst) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
    if len > cap {
        if args.keyfile_size.is_some() {
            len = cap;
        } else {
            return Err(PassphraseError::KeyFileTooLarge { path: shown });
        }
    }
    if let Some(want) = args.keyfile_size {
        if (len as u64) < want {
            return Err(PassphraseError::KeyFileShorterThanSize {
                path: shown,
                len,
                want,
            });
        }
    }
    buf.truncate(len);
    Ok(Passphrase::new(buf))
}

/// Runs `attempt` with passphrases from the configured source until it succeeds, fails with
/// another error than a wrong passphrase, or the tries are used up.
pub fn with_passphrase<T>(
    args: &KeySource,
    device: &str,
    mut attempt: impl FnMut(&Passphrase) -> Result<T, Error>,
) -> Result<T, TryError> {
    if let Some(path) = &args.key_file {
        let pass = read_key_file(args, path)?;
        if path.as_os_str() == "-" && pass.as_bytes().is_empty() {
            return Err(PassphraseError::NothingToRead.into());
        }
        return attempt(&pass).map_err(|e| TryError::library(device, e));
    }
    if !tty::stdin_is_tty() {
        // Piped passphrase: up to the first newline, one try. Input that has already ended is
        // not an empty passphrase (an empty line is).
        let line = tty::read_line(PASSPHRASE_MAX).map_err(PassphraseError::Stdin)?;
        let pass = match line {
            tty::Line::Text(b) => b,
            tty::Line::Eof => return Err(PassphraseError::NothingToRead.into()),
            tty::Line::TooLong => return Err(PassphraseError::TooLong.into()),
        };
        return attempt(&Passphrase::new(pass)).map_err(|e| TryError::library(device, e));
    }
    // Each failed try says why on stderr; the last one's error is returned.
    let mut left = args.tries.max(1);
    loop {
        left -= 1;
        let prompt = format!("Enter passphrase for {device}: ");
        let pass =
            tty::prompt_passphrase(&prompt, PASSPHRASE_MAX).map_err(PassphraseError::Terminal)?;
        let failed = match pass {
            None => {
                eprintln!("{}", PassphraseError::TooLong);
                PassphraseError::TooLong.into()
            }
            Some(pass) => match attempt(&Passphrase::new(pass)) {
                Ok(v) => return Ok(v),
                Err(e @ Error::Unlock(UnlockError::WrongPassphrase)) => {
                    eprintln!("No key available with this passphrase.");
                    TryError::library(device, e)
                }
                Err(e) => return Err(TryError::library(device, e)),
            },
        };
        if left == 0 {
            return Err(failed);
        }
    }
}

/// Reads one passphrase, with no retries: from the key file, a line of standard input when it
/// is not a terminal, or the terminal after `prompt`. Returns `None` when the input held
/// nothing at all: standard input (or `--key-file -`) that ended before its first byte, which
/// cryptsetup reports as "Nothing to read on input" (an empty line or an empty key file is an
/// empty passphrase).
pub fn read_once(args: &KeySource, prompt: &str) -> Result<Option<Passphrase>, PassphraseError> {
    if let Some(path) = &args.key_file {
        let pass = read_key_file(args, path)?;
        let from_stdin = path.as_os_str() == "-";
        return Ok((!from_stdin || !pass.as_bytes().is_empty()).then_some(pass));
    }
    let line = if tty::stdin_is_tty() {
        tty::prompt_passphrase(prompt, PASSPHRASE_MAX)
            .map(|l| l.map_or(tty::Line::TooLong, tty::Line::Text))
    } else {
        tty::read_line(PASSPHRASE_MAX)
    }
    .map_err(PassphraseError::Read)?;
    match line {
        tty::Line::Text(b) => Ok(Some(Passphrase::new(b))),
        tty::Line::Eof => Ok(None),
        tty::Line::TooLong => Err(PassphraseError::TooLong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::testing::{assert_converts, denied as io_err};
    use crate::error::{code, CliError};

    #[test]
    fn each_error_has_its_message_hint_and_exit_code() {
        let path = || "k".to_string();
        let denied = io_err().to_string();
        let nothing_hint = "standard input ended before a passphrase (was it already read by an \
                            earlier prompt?); give one line per passphrase asked for, or use \
                            --key-file";
        let table: Vec<(PassphraseError, String, Option<&str>)> = vec![
            (
                PassphraseError::KeyFileRead {
                    path: path(),
                    error: io_err(),
                },
                format!("cannot read key file 'k': {denied}"),
                None,
            ),
            (
                PassphraseError::KeyFileIsDir { path: path() },
                "key file 'k' is a directory".into(),
                None,
            ),
            (
                PassphraseError::KeyFileOpen {
                    path: path(),
                    error: io_err(),
                },
                format!("cannot open key file 'k': {denied}"),
                None,
            ),
            (
                PassphraseError::KeyFileShorterThanOffset {
                    path: path(),
                    offset: 7,
                },
                "key file 'k' is shorter than --keyfile-offset 7".into(),
                None,
            ),
            (
                PassphraseError::KeyfileSizeOverLimit { limit: 9 << 20 },
                "--keyfile-size 9437184 is over the 8388608-byte limit".into(),
                None,
            ),
            (
                PassphraseError::KeyFileTooLarge { path: path() },
                "key file 'k' is larger than the 8388608-byte limit".into(),
                Some("use --keyfile-size to read only the start of the file"),
            ),
            (
                PassphraseError::KeyFileShorterThanSize {
                    path: path(),
                    len: 3,
                    want: 5,
                },
                "key file 'k' has 3 bytes, fewer than --keyfile-size 5".into(),
                None,
            ),
            (
                PassphraseError::Stdin(io_err()),
                format!("cannot read passphrase from standard input: {denied}"),
                None,
            ),
            (
                PassphraseError::Terminal(io_err()),
                format!("cannot read passphrase from the terminal: {denied}"),
                None,
            ),
            (
                PassphraseError::Read(io_err()),
                format!("cannot read the passphrase: {denied}"),
                None,
            ),
            (
                PassphraseError::NothingToRead,
                "Nothing to read on input.".into(),
                Some(nothing_hint),
            ),
            (
                PassphraseError::TooLong,
                "the passphrase is longer than 512 bytes".into(),
                Some("use --key-file for longer keys"),
            ),
        ];
        assert_converts(
            table
                .into_iter()
                .map(|(e, message, hint)| (TryError::from(e), code::INVALID, message, hint))
                .collect(),
        );
    }

    #[test]
    fn a_library_error_is_reported_on_its_device() {
        let e = CliError::from(TryError::library(
            "vault",
            Error::Unlock(UnlockError::WrongPassphrase),
        ));
        assert_eq!(e.code, code::PERMISSION);
        assert!(e.message.starts_with("vault: "), "{}", e.message);
        assert_eq!(e.hint, None);
    }
}
