//! Opening devices and header files read-only, and the plaintext output of `decrypt`.

use crate::error::{code, CliError};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kernel::flock;

/// A device or image opened read-only (`O_RDONLY`): nothing written through it, ever.
pub struct ReadOnly {
    file: File,
    /// The path as the user gave it, for messages.
    pub name: String,
    dev: u64,
    ino: u64,
    /// The shared metadata lock, while held (see [`ReadOnly::lock_shared`]).
    lock: Option<flock::DeviceLock>,
}

impl ReadOnly {
    /// Opens `path` read-only; it must be a regular file or a block device.
    pub fn open(path: &Path) -> Result<ReadOnly, CliError> {
        let name = path.display().to_string();
        let missing = |e: io::Error| {
            CliError::new(
                code::DEVICE,
                format!("device {name} does not exist or access denied: {e}"),
            )
            .hint("check the path and your permissions")
        };
        let meta = std::fs::metadata(path).map_err(missing)?;
        let ft = meta.file_type();
        if !(ft.is_file() || ft.is_block_device()) {
            let what = if ft.is_dir() {
                "a directory"
            } else if ft.is_char_device() {
                "a character device"
            } else {
                "not a regular file or block device"
            };
            return Err(CliError::new(
                code::DEVICE,
                format!("device {name} is not compatible: it is {what}"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(missing)?;
        Ok(ReadOnly {
            file,
            name,
            dev: meta.dev(),
            ino: meta.ino(),
            lock: None,
        })
    }

    /// Takes the shared metadata lock on it (see [`metadata_lock`]): held while the header and
    /// keyslots are read, so that no writer changes them in between.
    pub fn lock_shared(&mut self) -> Result<(), CliError> {
        if self.lock.is_none() {
            self.lock = metadata_lock(&self.file, &self.name, flock::Mode::Shared)?;
        }
        Ok(())
    }

    /// Releases the shared lock (after the keyslots were read; the data needs none).
    pub fn release_lock(&mut self) {
        self.lock = None;
    }

    /// Size in bytes (works for block devices, whose metadata length is 0).
    pub fn size(&mut self) -> Result<u64, CliError> {
        let n = self.file.seek(SeekFrom::End(0)).map_err(|e| {
            CliError::new(
                code::DEVICE,
                format!("cannot get the size of {}: {e}", self.name),
            )
        })?;
        Ok(n)
    }
}

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for ReadOnly {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

/// How long a verb waits for another process's metadata lock: `TAZPOD_LOCK_TIMEOUT_MS`
/// milliseconds, else 10 s (cryptsetup waits without bound).
pub fn lock_timeout() -> Duration {
    std::env::var("TAZPOD_LOCK_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// Takes cryptsetup's metadata lock (see [`flock`]) on the header device open as `file`:
/// `Exclusive` for a verb that writes a header, `Shared` for one that reads it. A lock held
/// elsewhere is waited for (saying so once on stderr) up to [`lock_timeout`], then the device
/// is busy (exit 5). A writer that cannot use the lock at all (say, `/run/cryptsetup` is not
/// writable) is refused too; a reader then reads without the lock, as it writes nothing.
pub fn metadata_lock(
    file: &File,
    shown: &str,
    mode: flock::Mode,
) -> Result<Option<flock::DeviceLock>, CliError> {
    let timeout = lock_timeout();
    let what = match mode {
        flock::Mode::Exclusive => "write",
        flock::Mode::Shared => "read",
    };
    let r = flock::lock(file, mode, timeout, || {
        eprintln!(
            "tazpod: {shown} is locked by another process (a tazpod or cryptsetup command \
             using its header); waiting up to {} s for it...",
            timeout.as_secs_f64()
        );
    });
    match r {
        Ok(l) => Ok(Some(l)),
        Err(flock::LockError::Busy { waited }) => Err(CliError::new(
            code::BUSY,
            format!(
                "{shown} is busy: another process held its metadata lock for {:.1} s, so the \
                 {what} lock was not taken; nothing was {}",
                waited.as_secs_f64(),
                if mode == flock::Mode::Exclusive {
                    "written"
                } else {
                    "read"
                }
            ),
        )
        .hint(
            "try again when the other tazpod or cryptsetup command has finished \
             (TAZPOD_LOCK_TIMEOUT_MS sets how long to wait)",
        )),
        Err(flock::LockError::Io { .. }) if mode == flock::Mode::Shared => Ok(None),
        Err(flock::LockError::Io { what: path, err }) => Err(CliError::new(
            code::BUSY,
            format!(
                "cannot take the write lock on {shown} ({}): {err}; nothing was written",
                path.display()
            ),
        )
        .hint("writing a block device's header needs root (the lock lives in /run/cryptsetup)")),
    }
}

/// `MemAvailable` from `/proc/meminfo` in bytes (0 if unknown: the KDF limit then falls back
/// to the library's default).
pub fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib.saturating_mul(1024))
}

/// Where `decrypt` writes the plaintext.
pub enum Output {
    /// Standard output.
    Stdout(io::Stdout),
    /// A file (created `0600`), removed again if the decryption fails and we created it.
    File {
        /// The open file.
        file: File,
        /// Its path.
        path: PathBuf,
        /// Whether this run created it (and so may remove it on failure).
        created: bool,
        /// Set once everything was written.
        done: bool,
    },
}

impl Output {
    /// Checks that `path` may receive the plaintext: not the source itself, and not an
    /// existing non-empty regular file unless `force`.
    pub fn check(path: &Path, force: bool, source: &ReadOnly) -> Result<(), CliError> {
        if path.as_os_str() == "-" {
            return Ok(());
        }
        let shown = path.display();
        match std::fs::metadata(path) {
            Ok(m) => {
                if m.dev() == source.dev && m.ino() == source.ino {
                    return Err(CliError::new(
                        code::INVALID,
                        format!("output {shown} is the encrypted device itself"),
                    )
                    .hint(
                        "write the plaintext somewhere else; tazpod never writes to the device",
                    ));
                }
                if m.is_dir() {
                    return Err(CliError::new(
                        code::INVALID,
                        format!("output {shown} is a directory"),
                    ));
                }
                if m.is_file() && m.len() > 0 && !force {
                    return Err(CliError::new(
                        code::INVALID,
                        format!("output {shown} exists and is not empty"),
                    )
                    .hint("remove it, choose another path, or pass --force to overwrite it"));
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CliError::new(
                code::INVALID,
                format!("cannot use output {shown}: {e}"),
            )),
        }
    }

    /// Opens the output for writing (after [`Output::check`]).
    pub fn create(path: &Path) -> Result<Output, CliError> {
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout(io::stdout()));
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                CliError::new(
                    code::INVALID,
                    format!("cannot create output {}: {e}", path.display()),
                )
            })?;
        Ok(Output::File {
            file,
            path: path.to_path_buf(),
            created: !existed,
            done: false,
        })
    }

    /// Flushes and syncs; after this the output is kept even if dropped.
    pub fn finish(&mut self) -> Result<(), CliError> {
        match self {
            Output::Stdout(s) => s.flush().map_err(|e| {
                CliError::new(
                    code::INVALID,
                    format!("cannot write to standard output: {e}"),
                )
            }),
            Output::File {
                file, path, done, ..
            } => {
                file.sync_all().map_err(|e| {
                    CliError::new(
                        code::INVALID,
                        format!("cannot write {}: {e}", path.display()),
                    )
                })?;
                *done = true;
                Ok(())
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(s) => s.write(buf),
            Output::File { file, .. } => file.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.flush(),
            Output::File { file, .. } => file.flush(),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Output::File {
            path,
            created: true,
            done: false,
            ..
        } = self
        {
            // A partial plaintext is worth nothing and should not linger.
            let _ = std::fs::remove_file(path);
        }
    }
}
