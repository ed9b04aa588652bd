//! Opening devices and header files read-only, and the plaintext output of `decrypt`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kernel::flock;

/// What went wrong with a device, a header file or the output. [`fmt::Display`] gives the
/// message; the CLI adds the hint and exit code (`From<DeviceError> for CliError`).
#[derive(Debug)]
pub enum DeviceError {
    /// `name` (a `role`: device, vault, header file) cannot be looked at or opened.
    Missing {
        role: String,
        name: String,
        error: io::Error,
    },
    /// `name` is neither a regular file nor a block device; `what` says what it is.
    Incompatible {
        role: String,
        name: String,
        what: &'static str,
    },
    /// The size of `name` cannot be found.
    Size { name: String, error: io::Error },
    /// Another process held the metadata lock on `name` for `waited`.
    LockBusy {
        name: String,
        mode: flock::Mode,
        waited: Duration,
    },
    /// The write lock on `name` cannot be taken: its lock file `path` cannot be used.
    LockIo {
        name: String,
        path: PathBuf,
        error: io::Error,
    },
    /// The output is the encrypted device itself.
    OutputIsSource { path: PathBuf },
    /// The output is a directory.
    OutputIsDir { path: PathBuf },
    /// The output is a non-empty regular file, and no `--force`.
    OutputNotEmpty { path: PathBuf },
    /// The output cannot be looked at.
    OutputUnusable { path: PathBuf, error: io::Error },
    /// The output file cannot be created.
    OutputCreate { path: PathBuf, error: io::Error },
    /// Standard output cannot be flushed.
    StdoutWrite(io::Error),
    /// The output file cannot be synced.
    OutputWrite { path: PathBuf, error: io::Error },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Missing { role, name, error } => {
                write!(f, "{role} {name} does not exist or access denied: {error}")
            }
            DeviceError::Incompatible { role, name, what } => {
                write!(f, "{role} {name} is not compatible: it is {what}")
            }
            DeviceError::Size { name, error } => {
                write!(f, "cannot get the size of {name}: {error}")
            }
            DeviceError::LockBusy { name, mode, waited } => {
                let (what, done) = match mode {
                    flock::Mode::Exclusive => ("write", "written"),
                    flock::Mode::Shared => ("read", "read"),
                };
                write!(
                    f,
                    "{name} is busy: another process held its metadata lock for {:.1} s, so the \
                     {what} lock was not taken; nothing was {done}",
                    waited.as_secs_f64()
                )
            }
            DeviceError::LockIo { name, path, error } => write!(
                f,
                "cannot take the write lock on {name} ({}): {error}; nothing was written",
                path.display()
            ),
            DeviceError::OutputIsSource { path } => {
                write!(
                    f,
                    "output {} is the encrypted device itself",
                    path.display()
                )
            }
            DeviceError::OutputIsDir { path } => {
                write!(f, "output {} is a directory", path.display())
            }
            DeviceError::OutputNotEmpty { path } => {
                write!(f, "output {} exists and is not empty", path.display())
            }
            DeviceError::OutputUnusable { path, error } => {
                write!(f, "cannot use output {}: {error}", path.display())
            }
            DeviceError::OutputCreate { path, error } => {
                write!(f, "cannot create output {}: {error}", path.display())
            }
            DeviceError::StdoutWrite(error) => {
                write!(f, "cannot write to standard output: {error}")
            }
            DeviceError::OutputWrite { path, error } => {
                write!(f, "cannot write {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for DeviceError {}

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
    pub fn open(path: &Path) -> Result<ReadOnly, DeviceError> {
        ReadOnly::open_as(path, "device")
    }

    /// [`ReadOnly::open`], its messages naming the file's role (`"vault"`, `"header file"`).
    pub fn open_as(path: &Path, role: &str) -> Result<ReadOnly, DeviceError> {
        let name = path.display().to_string();
        let missing = |error| DeviceError::Missing {
            role: role.to_string(),
            name: name.clone(),
            error,
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
            return Err(DeviceError::Incompatible {
                role: role.to_string(),
                name,
                what,
            });
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
    pub fn lock_shared(&mut self) -> Result<(), DeviceError> {
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
    pub fn size(&mut self) -> Result<u64, DeviceError> {
        self.file
            .seek(SeekFrom::End(0))
            .map_err(|error| DeviceError::Size {
                name: self.name.clone(),
                error,
            })
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
) -> Result<Option<flock::DeviceLock>, DeviceError> {
    let timeout = lock_timeout();
    let r = flock::lock(file, mode, timeout, || {
        eprintln!(
            "tazpod: {shown} is locked by another process (a tazpod or cryptsetup command \
             using its header); waiting up to {} s for it...",
            timeout.as_secs_f64()
        );
    });
    match r {
        Ok(l) => Ok(Some(l)),
        Err(flock::LockError::Busy { waited }) => Err(DeviceError::LockBusy {
            name: shown.to_string(),
            mode,
            waited,
        }),
        Err(flock::LockError::Io { .. }) if mode == flock::Mode::Shared => Ok(None),
        Err(flock::LockError::Io { what: path, err }) => Err(DeviceError::LockIo {
            name: shown.to_string(),
            path,
            error: err,
        }),
    }
}

/// `MemAvailable` from `/proc/meminfo` in bytes; without a `/proc` (an empty root), free and
/// buffer memory from `sysinfo(2)`; 0 if neither is known.
fn meminfo_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| kib.saturating_mul(1024))
        .or_else(crate::kernel::secmem::sysinfo_free_bytes)
        .unwrap_or(0)
}

/// Memory kept back from a container's free memory for the rest of the process (its code,
/// buffers and the kernel's accounting of it), beyond the KDF.
pub const CGROUP_HEADROOM: u64 = 16 << 20;

/// Where the memory a KDF may use comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemorySource {
    /// `MemAvailable` of `/proc/meminfo` (the machine's).
    Available,
    /// A cgroup memory limit, tighter than the machine's available memory.
    Cgroup {
        /// The limit in bytes (`memory.max`, or v1 `memory.limit_in_bytes`).
        limit: u64,
        /// What the group uses now (`memory.current`, or v1 `memory.usage_in_bytes`).
        used: u64,
        /// The limit's file.
        file: PathBuf,
    },
    /// Nothing could be read.
    Unknown,
}

/// The memory this process may use for a key derivation, and where that figure comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes.
    pub bytes: u64,
    /// Where the figure comes from.
    pub source: MemorySource,
}

fn mib(b: u64) -> u64 {
    b / (1 << 20)
}

impl std::fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            MemorySource::Available => {
                write!(
                    f,
                    "the available memory of this machine, {} MiB",
                    mib(self.bytes)
                )
            }
            MemorySource::Cgroup { limit, used, file } => write!(
                f,
                "the container memory limit {} MiB ({}; {} MiB in use)",
                mib(*limit),
                file.display(),
                mib(*used)
            ),
            MemorySource::Unknown => f.write_str("an unknown amount of memory"),
        }
    }
}

/// A cgroup limit as read from a `memory.max`-like file: a number, or none (`max`, or the
/// huge value cgroup v1 uses for "no limit").
fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    t.parse::<u64>().ok().filter(|&v| v < (1 << 62))
}

/// The tightest memory limit of the cgroup this process is in and its ancestors, as
/// `(limit, used, file)`, from the cgroup file system under `root` (`/sys/fs/cgroup`) and the
/// process's `/proc/self/cgroup` text: cgroup v2 (`0::/path`: `memory.max` and
/// `memory.current`), else v1 (the `memory` controller's `memory.limit_in_bytes` and
/// `memory.usage_in_bytes`, under `root/memory`). The free room is `limit - used`.
pub fn cgroup_limit(root: &Path, proc_self_cgroup: &str) -> Option<(u64, u64, PathBuf)> {
    let mut best: Option<(u64, u64, PathBuf)> = None;
    let mut consider = |dir: PathBuf, max_name: &str, cur_name: &str| {
        let mut d = dir;
        loop {
            let max_file = d.join(max_name);
            if let Some(limit) = std::fs::read_to_string(&max_file)
                .ok()
                .and_then(|t| parse_limit(&t))
            {
                let used = std::fs::read_to_string(d.join(cur_name))
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let free = limit.saturating_sub(used);
                if best
                    .as_ref()
                    .is_none_or(|(l, u, _)| free < l.saturating_sub(*u))
                {
                    best = Some((limit, used, max_file));
                }
            }
            if !d.pop() || !d.starts_with(root) || d.as_os_str().len() < root.as_os_str().len() {
                break;
            }
        }
    };
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            consider(root.join(rel), "memory.max", "memory.current");
        } else if controllers.split(',').any(|c| c == "memory") {
            consider(
                root.join("memory").join(rel),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            );
        }
    }
    best
}

/// Where the default KDF memory limit comes from ("the container memory limit 200 MiB …"),
/// set once when the KDF limits are made, for the hint of a keyslot over that limit.
pub static MEMORY_NOTE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The memory a key derivation may use: the machine's available memory, or, when tighter,
/// the free room under this process's cgroup memory limit less [`CGROUP_HEADROOM`] (a
/// container's limit; `/proc/meminfo` still shows the host's memory there).
pub fn memory_budget() -> MemoryBudget {
    let avail = meminfo_available();
    let cg = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| cgroup_limit(Path::new("/sys/fs/cgroup"), &t));
    match cg {
        Some((limit, used, file))
            if avail == 0 || limit.saturating_sub(used).saturating_sub(CGROUP_HEADROOM) < avail =>
        {
            MemoryBudget {
                bytes: limit
                    .saturating_sub(used)
                    .saturating_sub(CGROUP_HEADROOM)
                    .max(1),
                source: MemorySource::Cgroup { limit, used, file },
            }
        }
        _ if avail > 0 => MemoryBudget {
            bytes: avail,
            source: MemorySource::Available,
        },
        _ => MemoryBudget {
            bytes: 0,
            source: MemorySource::Unknown,
        },
    }
}

/// The bytes of [`memory_budget`] (0 if unknown: the KDF limit then falls back to the library's
/// default).
pub fn mem_available() -> u64 {
    memory_budget().bytes
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
    pub fn check(path: &Path, force: bool, source: &ReadOnly) -> Result<(), DeviceError> {
        if path.as_os_str() == "-" {
            return Ok(());
        }
        let path = path.to_path_buf();
        match std::fs::metadata(&path) {
            Ok(m) if m.dev() == source.dev && m.ino() == source.ino => {
                Err(DeviceError::OutputIsSource { path })
            }
            Ok(m) if m.is_dir() => Err(DeviceError::OutputIsDir { path }),
            Ok(m) if m.is_file() && m.len() > 0 && !force => {
                Err(DeviceError::OutputNotEmpty { path })
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(DeviceError::OutputUnusable { path, error }),
        }
    }

    /// Opens the output for writing (after [`Output::check`]).
    pub fn create(path: &Path) -> Result<Output, DeviceError> {
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
            .map_err(|error| DeviceError::OutputCreate {
                path: path.to_path_buf(),
                error,
            })?;
        Ok(Output::File {
            file,
            path: path.to_path_buf(),
            created: !existed,
            done: false,
        })
    }

    /// Flushes and syncs; after this the output is kept even if dropped.
    pub fn finish(&mut self) -> Result<(), DeviceError> {
        match self {
            Output::Stdout(s) => s.flush().map_err(DeviceError::StdoutWrite),
            Output::File {
                file, path, done, ..
            } => {
                file.sync_all().map_err(|error| DeviceError::OutputWrite {
                    path: path.clone(),
                    error,
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

#[cfg(test)]
mod memory_tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let f = root.join(rel);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }

    #[test]
    fn the_tightest_cgroup_v2_limit_on_the_way_up_wins() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        put(r, "a/memory.max", "1073741824\n");
        put(r, "a/memory.current", "104857600\n");
        put(r, "a/b/memory.max", "max\n");
        put(r, "a/b/memory.current", "5000\n");
        put(r, "a/b/c/memory.max", "209715200\n");
        put(r, "a/b/c/memory.current", "10485760\n");
        let (limit, used, file) = cgroup_limit(r, "0::/a/b/c\n").unwrap();
        assert_eq!((limit, used), (209_715_200, 10_485_760));
        assert_eq!(file, r.join("a/b/c/memory.max"));
        // The parent is tighter once the child has more room than it.
        put(r, "a/memory.current", "1000000000\n");
        let (limit, _, file) = cgroup_limit(r, "0::/a/b/c\n").unwrap();
        assert_eq!(limit, 1_073_741_824);
        assert_eq!(file, r.join("a/memory.max"));
    }

    #[test]
    fn cgroup_v1_and_no_limit() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        put(r, "memory/docker/x/memory.limit_in_bytes", "268435456\n");
        put(r, "memory/docker/x/memory.usage_in_bytes", "1048576\n");
        put(r, "memory/memory.limit_in_bytes", "9223372036854771712\n");
        let text = "12:cpu,cpuacct:/docker/x\n4:memory:/docker/x\n";
        let (limit, used, _) = cgroup_limit(r, text).unwrap();
        assert_eq!((limit, used), (268_435_456, 1_048_576));
        // "max" everywhere, or no memory controller: no limit.
        put(r, "memory.max", "max\n");
        assert_eq!(cgroup_limit(r, "0::/\n"), None);
        assert_eq!(cgroup_limit(r, "3:cpu:/x\n"), None);
        assert_eq!(cgroup_limit(r, "garbage"), None);
    }

    #[test]
    fn the_budget_names_its_source() {
        let b = MemoryBudget {
            bytes: 150 << 20,
            source: MemorySource::Cgroup {
                limit: 200 << 20,
                used: 34 << 20,
                file: PathBuf::from("/sys/fs/cgroup/memory.max"),
            },
        };
        assert_eq!(
            b.to_string(),
            "the container memory limit 200 MiB (/sys/fs/cgroup/memory.max; 34 MiB in use)"
        );
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use crate::error::code;
    use crate::error::testing::{assert_converts, denied as io_err};

    #[test]
    fn each_error_has_its_message_hint_and_exit_code() {
        let denied = io_err().to_string();
        let out = || PathBuf::from("out");
        let busy_hint = "try again when the other tazpod or cryptsetup command has finished \
                         (TAZPOD_LOCK_TIMEOUT_MS sets how long to wait)";
        let table: Vec<(DeviceError, u8, String, Option<&str>)> = vec![
            (
                DeviceError::Missing {
                    role: "vault".into(),
                    name: "v".into(),
                    error: io_err(),
                },
                code::DEVICE,
                format!("vault v does not exist or access denied: {denied}"),
                Some("check the path and your permissions"),
            ),
            (
                DeviceError::Incompatible {
                    role: "device".into(),
                    name: "d".into(),
                    what: "a directory",
                },
                code::DEVICE,
                "device d is not compatible: it is a directory".into(),
                None,
            ),
            (
                DeviceError::Size {
                    name: "d".into(),
                    error: io_err(),
                },
                code::DEVICE,
                format!("cannot get the size of d: {denied}"),
                None,
            ),
            (
                DeviceError::LockBusy {
                    name: "d".into(),
                    mode: flock::Mode::Exclusive,
                    waited: Duration::from_millis(1500),
                },
                code::BUSY,
                "d is busy: another process held its metadata lock for 1.5 s, so the write lock \
                 was not taken; nothing was written"
                    .into(),
                Some(busy_hint),
            ),
            (
                DeviceError::LockBusy {
                    name: "d".into(),
                    mode: flock::Mode::Shared,
                    waited: Duration::from_millis(200),
                },
                code::BUSY,
                "d is busy: another process held its metadata lock for 0.2 s, so the read lock \
                 was not taken; nothing was read"
                    .into(),
                Some(busy_hint),
            ),
            (
                DeviceError::LockIo {
                    name: "d".into(),
                    path: PathBuf::from("/run/cryptsetup/L_8:0"),
                    error: io_err(),
                },
                code::BUSY,
                format!(
                    "cannot take the write lock on d (/run/cryptsetup/L_8:0): {denied}; nothing \
                     was written"
                ),
                Some(
                    "writing a block device's header needs root (the lock lives in \
                     /run/cryptsetup)",
                ),
            ),
            (
                DeviceError::OutputIsSource { path: out() },
                code::INVALID,
                "output out is the encrypted device itself".into(),
                Some("write the plaintext somewhere else; tazpod never writes to the device"),
            ),
            (
                DeviceError::OutputIsDir { path: out() },
                code::INVALID,
                "output out is a directory".into(),
                None,
            ),
            (
                DeviceError::OutputNotEmpty { path: out() },
                code::INVALID,
                "output out exists and is not empty".into(),
                Some("remove it, choose another path, or pass --force to overwrite it"),
            ),
            (
                DeviceError::OutputUnusable {
                    path: out(),
                    error: io_err(),
                },
                code::INVALID,
                format!("cannot use output out: {denied}"),
                None,
            ),
            (
                DeviceError::OutputCreate {
                    path: out(),
                    error: io_err(),
                },
                code::INVALID,
                format!("cannot create output out: {denied}"),
                None,
            ),
            (
                DeviceError::StdoutWrite(io_err()),
                code::INVALID,
                format!("cannot write to standard output: {denied}"),
                None,
            ),
            (
                DeviceError::OutputWrite {
                    path: out(),
                    error: io_err(),
                },
                code::INVALID,
                format!("cannot write out: {denied}"),
                None,
            ),
        ];
        assert_converts(table);
    }
}
