//! Where passphrases come from: a key file (`--key-file`, `-` for stdin), standard input when it
//! is not a terminal, or a prompt on the terminal without echo, with `--tries` attempts.
//!
//! As in cryptsetup, a key file is used whole (no newline processing) from `--keyfile-offset`
//! for `--keyfile-size` bytes (at most 8 MiB), while a typed or piped passphrase ends at the
//! first newline and may be at most 512 bytes.

use crate::error::{code, CliError};
use crate::kernel::tty;
use luks2::error::{Error, UnlockError};
use luks2::{Passphrase, SecretBuf};
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

/// Largest key file read without an explicit `--keyfile-size` (cryptsetup's default).
pub const KEYFILE_MAX: u64 = 8 * 1024 * 1024;
/// Largest passphrase typed at the prompt or piped on stdin (cryptsetup's default).
pub const PASSPHRASE_MAX: usize = 512;

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

/// cryptsetup's default number of passphrase prompts.
pub const DEFAULT_TRIES: u32 = 3;

impl Default for KeyArgs {
    /// The command line's defaults: no key file, whole file, three prompts.
    fn default() -> Self {
        KeyArgs {
            key_file: None,
            keyfile_offset: 0,
            keyfile_size: None,
            tries: DEFAULT_TRIES,
        }
    }
}

/// Reads the key file as cryptsetup does.
fn read_key_file(args: &KeyArgs, path: &PathBuf) -> Result<Passphrase, CliError> {
    let shown = path.display().to_string();
    let mut reader: Box<dyn Read> = if shown == "-" {
        Box::new(io::stdin().lock())
    } else {
        let meta = std::fs::metadata(path).map_err(|e| {
            CliError::new(
                code::INVALID,
                format!("cannot read key file '{shown}': {e}"),
            )
        })?;
        if meta.is_dir() {
            return Err(CliError::new(
                code::INVALID,
                format!("key file '{shown}' is a directory"),
            ));
        }
        Box::new(File::open(path).map_err(|e| {
            CliError::new(
                code::INVALID,
                format!("cannot open key file '{shown}': {e}"),
            )
        })?)
    };
    // Skip the offset by reading: works for pipes and FIFOs too.
    let skipped = io::copy(
        &mut (&mut reader).take(args.keyfile_offset),
        &mut io::sink(),
    )
    .map_err(|e| {
        CliError::new(
            code::INVALID,
            format!("cannot read key file '{shown}': {e}"),
        )
    })?;
    if skipped < args.keyfile_offset {
        return Err(CliError::new(
            code::INVALID,
            format!(
                "key file '{shown}' is shorter than --keyfile-offset {}",
                args.keyfile_offset
            ),
        ));
    }
    let limit = args.keyfile_size.unwrap_or(KEYFILE_MAX);
    if limit > KEYFILE_MAX {
        return Err(CliError::new(
            code::INVALID,
            format!("--keyfile-size {limit} is over the {KEYFILE_MAX}-byte limit"),
        ));
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
            Err(e) => {
                return Err(CliError::new(
                    code::INVALID,
                    format!("cannot read key file '{shown}': {e}"),
                ))
            }
        }
    }
    if len > cap {
        if args.keyfile_size.is_some() {
            len = cap;
        } else {
            return Err(CliError::new(
                code::INVALID,
                format!("key file '{shown}' is larger than the {KEYFILE_MAX}-byte limit"),
            )
            .hint("use --keyfile-size to read only the start of the file"));
        }
    }
    if let Some(want) = args.keyfile_size {
        if (len as u64) < want {
            return Err(CliError::new(
                code::INVALID,
                format!("key file '{shown}' has {len} bytes, fewer than --keyfile-size {want}"),
            ));
        }
    }
    buf.truncate(len);
    Ok(Passphrase::new(buf))
}

/// Runs `attempt` with passphrases from the configured source until it succeeds, fails with
/// another error than a wrong passphrase, or the tries are used up.
pub fn with_passphrase<T>(
    args: &KeyArgs,
    device: &str,
    mut attempt: impl FnMut(&Passphrase) -> Result<T, Error>,
) -> Result<T, CliError> {
    if let Some(path) = &args.key_file {
        let pass = read_key_file(args, path)?;
        if path.as_os_str() == "-" && pass.as_bytes().is_empty() {
            return Err(nothing_to_read());
        }
        return attempt(&pass).map_err(|e| CliError::luks(device, e));
    }
    if !tty::stdin_is_tty() {
        // Piped passphrase: up to the first newline, one try. Input that has already ended is
        // not an empty passphrase (an empty line is).
        let line = tty::read_line(PASSPHRASE_MAX).map_err(|e| {
            CliError::new(
                code::INVALID,
                format!("cannot read passphrase from standard input: {e}"),
            )
        })?;
        let pass = match line {
            tty::Line::Text(b) => b,
            tty::Line::Eof => return Err(nothing_to_read()),
            tty::Line::TooLong => return Err(too_long()),
        };
        return attempt(&Passphrase::new(pass)).map_err(|e| CliError::luks(device, e));
    }
    let tries = args.tries.max(1);
    let mut last = None;
    for _ in 0..tries {
        let prompt = format!("Enter passphrase for {device}: ");
        let pass = tty::prompt_passphrase(&prompt, PASSPHRASE_MAX).map_err(|e| {
            CliError::new(
                code::INVALID,
                format!("cannot read passphrase from the terminal: {e}"),
            )
        })?;
        let Some(pass) = pass else {
            eprintln!("{}", too_long().message);
            last = Some(too_long());
            continue;
        };
        match attempt(&Passphrase::new(pass)) {
            Ok(v) => return Ok(v),
            Err(Error::Unlock(UnlockError::WrongPassphrase)) => {
                eprintln!("No key available with this passphrase.");
                last = Some(CliError::luks(
                    device,
                    Error::Unlock(UnlockError::WrongPassphrase),
                ));
            }
            Err(e) => return Err(CliError::luks(device, e)),
        }
    }
    Err(last.unwrap_or_else(|| CliError::new(code::PERMISSION, "no passphrase given")))
}

/// Reads one passphrase, with no retries: from the key file, a line of standard input when it
/// is not a terminal, or the terminal after `prompt`. Returns `None` when the input held
/// nothing at all: standard input (or `--key-file -`) that ended before its first byte, which
/// cryptsetup reports as "Nothing to read on input" (an empty line or an empty key file is an
/// empty passphrase).
pub fn read_once(args: &KeyArgs, prompt: &str) -> Result<Option<Passphrase>, CliError> {
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
    .map_err(|e| CliError::new(code::INVALID, format!("cannot read the passphrase: {e}")))?;
    match line {
        tty::Line::Text(b) => Ok(Some(Passphrase::new(b))),
        tty::Line::Eof => Ok(None),
        tty::Line::TooLong => Err(too_long()),
    }
}

/// Standard input (or `--key-file -`) that ended before its first byte, where a passphrase was
/// to be read: cryptsetup's "Nothing to read on input." (exit 1). Nothing is written after it.
pub fn nothing_to_read() -> CliError {
    CliError::new(code::INVALID, "Nothing to read on input.").hint(
        "standard input ended before a passphrase (was it already read by an earlier prompt?); \
         give one line per passphrase asked for, or use --key-file",
    )
}

fn too_long() -> CliError {
    CliError::new(
        code::INVALID,
        format!("the passphrase is longer than {PASSPHRASE_MAX} bytes"),
    )
    .hint("use --key-file for longer keys")
}
