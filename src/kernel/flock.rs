//! The metadata lock cryptsetup (libcryptsetup 2.x, `utils_device_locking.c`) uses to serialise
//! header readers and writers, so that tazpod and cryptsetup exclude each other:
//!
//! - a **regular file** (an image) is locked with `flock(2)` on the image itself;
//! - a **block device** is locked with `flock(2)` on the file `/run/cryptsetup/L_<major>:<minor>`
//!   (made if missing, mode 0644, in a directory made with mode 0700), checked after locking to
//!   still be the file at that path (a releasing process may have removed it), and removed
//!   again by the last holder.
//!
//! Readers take `LOCK_SH`, writers `LOCK_EX`. cryptsetup waits without bound; tazpod waits at
//! most a given time, then reports the device as busy.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where cryptsetup keeps its block-device lock files (`DEFAULT_LUKS2_LOCK_PATH`).
pub const LOCK_DIR: &str = "/run/cryptsetup";

/// Shared (readers) or exclusive (writers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `LOCK_SH`: any number of readers, no writer.
    Shared,
    /// `LOCK_EX`: one writer, no reader.
    Exclusive,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process held the lock for the whole wait.
    Busy {
        /// How long tazpod waited.
        waited: Duration,
    },
    /// The lock file or its directory could not be used (`what` names it).
    Io {
        /// The file or directory concerned.
        what: PathBuf,
        /// The system error.
        err: io::Error,
    },
}

/// A held lock; dropping it releases the lock (and removes a block device's lock file when no
/// one else holds or waits on it, as cryptsetup does).
#[derive(Debug)]
pub struct DeviceLock {
    file: File,
    /// The lock file of a block device, `None` for an image locked through itself.
    lock_file: Option<PathBuf>,
    mode: Mode,
}

impl DeviceLock {
    /// Which mode is held.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// The block device's lock file, if the lock is one.
    pub fn lock_file(&self) -> Option<&Path> {
        self.lock_file.as_deref()
    }
}

fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: `flock` takes a file descriptor and flags; the descriptor is owned by `f`,
        // open for the duration of the call.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Drop for DeviceLock {
    fn drop(&mut self) {
        if let Some(path) = &self.lock_file {
            // Remove the lock file only if nobody else holds it (we get LOCK_EX at once) and
            // the path still names our file, as cryptsetup's release does.
            if flock(&self.file, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
                if let (Ok(a), Ok(b)) = (self.file.metadata(), std::fs::metadata(path)) {
                    if a.dev() == b.dev() && a.ino() == b.ino() {
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
        }
        let _ = flock(&self.file, libc::LOCK_UN);
    }
}

/// The lock file cryptsetup uses for the block device `rdev` (`L_<major>:<minor>`).
pub fn lock_file_for(rdev: u64) -> PathBuf {
    let id = super::DevId::from_raw(rdev);
    Path::new(LOCK_DIR).join(format!("L_{}:{}", id.major, id.minor))
}

/// Opens (making it if needed) the block device lock file in `dir`, as cryptsetup does:
/// the directory without following a symbolic link, the file `O_NOFOLLOW`.
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    let dir = path.parent().unwrap_or(Path::new(LOCK_DIR));
    let io_err = |what: &Path, err: io::Error| LockError::Io {
        what: what.to_path_buf(),
        err,
    };
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(io_err(
                dir,
                io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(dir, e)),
            }
        }
        Err(e) => return Err(io_err(dir, e)),
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_err(path, e))
}

/// Locks the device or image open as `dev` (the descriptor is used as it is: never a path
/// reopened) in `mode`, waiting at most `timeout`; `waiting` is called once, when the first
/// attempt finds the lock taken.
pub fn lock(
    dev: &File,
    mode: Mode,
    timeout: Duration,
    mut waiting: impl FnMut(),
) -> Result<DeviceLock, LockError> {
    let meta = dev.metadata().map_err(|err| LockError::Io {
        what: PathBuf::from("the device"),
        err,
    })?;
    let op = match mode {
        Mode::Shared => libc::LOCK_SH,
        Mode::Exclusive => libc::LOCK_EX,
    };
    let start = Instant::now();
    let mut told = false;
    let block = meta.file_type().is_block_device();
    loop {
        let (file, lock_file) = if block {
            let path = lock_file_for(meta.rdev());
            (open_lock_file(&path)?, Some(path))
        } else {
            let f = dev.try_clone().map_err(|err| LockError::Io {
                what: PathBuf::from("the device"),
                err,
            })?;
            (f, None)
        };
        match flock(&file, op | libc::LOCK_NB) {
            Ok(()) => {
                // A block device's lock file may have been removed (by its last holder) between
                // our open and our flock: then the lock guards nothing and we start again.
                if let Some(path) = &lock_file {
                    let same = match (file.metadata(), std::fs::metadata(path)) {
                        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                        _ => false,
                    };
                    if !same {
                        let _ = flock(&file, libc::LOCK_UN);
                        continue;
                    }
                }
                return Ok(DeviceLock {
                    file,
                    lock_file,
                    mode,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err(LockError::Busy { waited });
                }
                if !told {
                    told = true;
                    waiting();
                }
                std::thread::sleep(Duration::from_millis(20).min(timeout - waited));
            }
            Err(err) => {
                return Err(LockError::Io {
                    what: lock_file.unwrap_or_else(|| PathBuf::from("the device")),
                    err,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_locked_through_itself_and_excludes_a_second_writer() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let a = File::open(t.path()).unwrap();
        let b = File::open(t.path()).unwrap();
        let held = lock(&a, Mode::Exclusive, Duration::ZERO, || {}).unwrap();
        assert!(held.lock_file().is_none());
        let mut told = 0;
        let r = lock(&b, Mode::Exclusive, Duration::from_millis(60), || told += 1);
        assert!(matches!(r, Err(LockError::Busy { .. })), "{r:?}");
        assert_eq!(told, 1);
        assert!(matches!(
            lock(&b, Mode::Shared, Duration::ZERO, || {}),
            Err(LockError::Busy { .. })
        ));
        drop(held);
        let s1 = lock(&a, Mode::Shared, Duration::ZERO, || {}).unwrap();
        let s2 = lock(&b, Mode::Shared, Duration::ZERO, || {}).unwrap();
        assert_eq!(s2.mode(), Mode::Shared);
        drop((s1, s2));
        lock(&b, Mode::Exclusive, Duration::ZERO, || {}).unwrap();
    }

    #[test]
    fn a_waiting_writer_gets_the_lock_when_it_is_released() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let a = File::open(t.path()).unwrap();
        let b = File::open(t.path()).unwrap();
        let held = lock(&a, Mode::Exclusive, Duration::ZERO, || {}).unwrap();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        let start = Instant::now();
        lock(&b, Mode::Exclusive, Duration::from_secs(5), || {}).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(90));
        h.join().unwrap();
    }

    #[test]
    fn block_device_lock_files_are_named_as_cryptsetup_names_them() {
        let rdev = super::super::DevId { major: 7, minor: 3 }.to_raw();
        assert_eq!(lock_file_for(rdev), Path::new("/run/cryptsetup/L_7:3"));
        let rdev = super::super::DevId {
            major: 259,
            minor: 1048575,
        }
        .to_raw();
        assert_eq!(
            lock_file_for(rdev),
            Path::new("/run/cryptsetup/L_259:1048575")
        );
    }
}
