//! The binary's kernel interfaces, one small module each: device-mapper ioctls
//! (`dm`), cryptsetup's metadata lock (`flock`), loop devices (`loopdev`), the kernel
//! keyring (`keyring`), mounts and namespaces (`mount`), privileges (`privs`), no-replace
//! renames (`fs`), in-memory files for `tazpod run` (`memfd`), huge pages for KDF memory
//! (`hugepages`, not registered), process protection for secrets (`secmem`), the terminal
//! (`tty`) and zeroing freed memory (`wipe`).
//!
//! This is the only place with `unsafe` code in the project; every `unsafe`
//! block carries a `// SAFETY:` comment. Structures handed to the kernel are
//! encoded field by field into byte buffers and replies are decoded with
//! bounds checks; no byte buffer is ever cast to a struct.
// The mapping code that calls dm, loopdev and keyring is not merged yet.
#![allow(dead_code)]

pub mod dm;
pub mod flock;
pub mod fs;
pub mod hugepages;
pub mod keyring;
pub mod loopdev;
pub mod memfd;
pub mod mount;
pub mod privs;
pub mod secmem;
pub mod tty;
pub mod wipe;

use std::ffi::CString;
use std::fmt;
use std::io;
use std::path::Path;

/// An `errno` value returned by a failed system call.
///
/// Displays as the C library's message without the " (os error N)" suffix,
/// e.g. `File exists`, so that it reads well at the end of a sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The `errno` left by the last failed system call of this thread.
    pub fn last() -> Errno {
        Errno(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// The `errno` carried by an [`io::Error`], or `EIO` when it has none.
    pub fn from_io(err: &io::Error) -> Errno {
        Errno(err.raw_os_error().unwrap_or(libc::EIO))
    }

    /// The raw `errno` number.
    pub fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = io::Error::from_raw_os_error(self.0).to_string();
        let suffix = format!(" (os error {})", self.0);
        f.write_str(text.strip_suffix(suffix.as_str()).unwrap_or(&text))
    }
}

/// A block or character device number split into major and minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevId {
    /// Major number (driver).
    pub major: u32,
    /// Minor number (instance).
    pub minor: u32,
}

impl DevId {
    /// Splits a `dev_t` in the glibc/kernel "huge" encoding
    /// (`huge_encode_dev`: 12-bit major in bits 8..20, minor in bits 0..8 and
    /// 20..32, with the wide extensions above bit 32).
    pub fn from_raw(dev: u64) -> DevId {
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
        let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
        // Both values are masked to 32 bits above, so the fallback never applies.
        DevId {
            major: u32::try_from(major).unwrap_or(u32::MAX),
            minor: u32::try_from(minor).unwrap_or(u32::MAX),
        }
    }

    /// Joins major and minor into a `dev_t` in the same encoding as
    /// [`DevId::from_raw`] (what `makedev(3)` returns).
    pub const fn to_raw(self) -> u64 {
        let major = self.major as u64;
        let minor = self.minor as u64;
        ((major & 0xfff) << 8)
            | ((major & 0xffff_f000) << 32)
            | (minor & 0xff)
            | ((minor & 0xffff_ff00) << 12)
    }

    /// Parses the `MAJ:MIN` text found in sysfs `dev` files.
    pub fn parse_sysfs(text: &str) -> Option<DevId> {
        let (major, minor) = text.trim().split_once(':')?;
        Some(DevId {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl fmt::Display for DevId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Converts a path to a C string; a path with an interior NUL gives `EINVAL`.
pub(crate) fn path_cstring(path: &Path) -> Result<CString, Errno> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno(libc::EINVAL))
}

/// What [`ensure_device_node`] found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeOutcome {
    /// A node of the right kind and number was already there (e.g. made by udev).
    Existed,
    /// The node was created.
    Created,
}

/// Makes sure `path` is a device node of the given kind (`libc::S_IFBLK` or
/// `libc::S_IFCHR`) and number, creating it with mode 0600 when missing.
///
/// An existing node with the same number is accepted. Anything else at
/// `path` (a regular file, a node with another number) gives `EEXIST`.
pub fn ensure_device_node(
    path: &Path,
    kind: libc::mode_t,
    dev: DevId,
) -> Result<NodeOutcome, Errno> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let matches = |meta: &std::fs::Metadata| {
        let ft = meta.file_type();
        let kind_ok = if kind == libc::S_IFBLK {
            ft.is_block_device()
        } else {
            ft.is_char_device()
        };
        kind_ok && DevId::from_raw(meta.rdev()) == dev
    };
    // Follow symlinks: udev may have made `path` a link to the real node.
    match std::fs::metadata(path) {
        Ok(meta) if matches(&meta) => return Ok(NodeOutcome::Existed),
        Ok(_) => return Err(Errno(libc::EEXIST)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Errno::from_io(&e)),
    }
    let cpath = path_cstring(path)?;
    let raw: libc::dev_t = dev.to_raw();
    // SAFETY: `cpath` is a valid NUL-terminated string that outlives the
    // call; mknod only reads it. Mode and device are plain integers.
    let rc = unsafe { libc::mknod(cpath.as_ptr(), kind | 0o600, raw) };
    if rc == 0 {
        return Ok(NodeOutcome::Created);
    }
    let err = Errno::last();
    // Lost a race with udev or another opener: accept a node that matches.
    if err.raw() == libc::EEXIST {
        if let Ok(meta) = std::fs::metadata(path) {
            if matches(&meta) {
                return Ok(NodeOutcome::Existed);
            }
        }
    }
    Err(err)
}

/// Removes the device node at `path` (or a symlink to it) if it is a node of
/// the given kind and number. Missing is fine; something else at `path` is
/// left alone (`EEXIST`).
pub fn remove_device_node(path: &Path, kind: libc::mode_t, dev: DevId) -> Result<(), Errno> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    match std::fs::metadata(path) {
        Ok(meta) => {
            let ft = meta.file_type();
            let kind_ok = if kind == libc::S_IFBLK {
                ft.is_block_device()
            } else {
                ft.is_char_device()
            };
            if !kind_ok || DevId::from_raw(meta.rdev()) != dev {
                return Err(Errno(libc::EEXIST));
            }
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Errno::from_io(&e)),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Errno::from_io(&e)),
    }
}

/// Reads a sysfs `dev` file (`MAJ:MIN`).
pub(crate) fn read_sysfs_dev(path: &Path) -> Option<DevId> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| DevId::parse_sysfs(&t))
}

/// Reinterprets an ioctl request number as the C library's request type
/// (`c_ulong` on glibc, `c_int` on musl). The bit pattern is what matters.
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
pub(crate) const fn ioctl_request(req: u32) -> libc::Ioctl {
    req as libc::Ioctl
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn errno_display_has_no_suffix() {
        assert_eq!(Errno(libc::EEXIST).to_string(), "File exists");
        assert_eq!(Errno(libc::ENXIO).to_string(), "No such device or address");
    }

    #[test]
    fn dev_encoding_matches_libc() {
        for &(ma, mi) in &[
            (7u32, 0u32),
            (253, 0),
            (253, 255),
            (253, 256),
            (259, 1_048_575),
            (4095, 12345),
            (4096, 7),
            (0xffff_ffff, 0xffff_ffff),
        ] {
            let d = DevId {
                major: ma,
                minor: mi,
            };
            assert_eq!(d.to_raw(), libc::makedev(ma, mi), "{d}");
            assert_eq!(DevId::from_raw(libc::makedev(ma, mi)), d);
            assert_eq!(libc::major(d.to_raw()), ma);
            assert_eq!(libc::minor(d.to_raw()), mi);
        }
    }

    #[test]
    fn sysfs_dev_parse() {
        assert_eq!(
            DevId::parse_sysfs("10:236\n"),
            Some(DevId {
                major: 10,
                minor: 236
            })
        );
        assert_eq!(DevId::parse_sysfs("10"), None);
        assert_eq!(DevId::parse_sysfs("a:b"), None);
    }

    #[test]
    fn node_helpers_refuse_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"x").unwrap();
        let dev = DevId { major: 7, minor: 0 };
        assert_eq!(
            ensure_device_node(&p, libc::S_IFBLK, dev),
            Err(Errno(libc::EEXIST))
        );
        assert_eq!(
            remove_device_node(&p, libc::S_IFBLK, dev),
            Err(Errno(libc::EEXIST))
        );
        assert!(p.exists());
        assert_eq!(
            remove_device_node(&dir.path().join("missing"), libc::S_IFBLK, dev),
            Ok(())
        );
    }

    #[test]
    fn node_create_and_remove_as_root() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mknod needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node");
        // A loop device number: creating the node does not open the device.
        let dev = DevId {
            major: 7,
            minor: 200,
        };
        assert_eq!(
            ensure_device_node(&p, libc::S_IFBLK, dev),
            Ok(NodeOutcome::Created)
        );
        assert_eq!(
            ensure_device_node(&p, libc::S_IFBLK, dev),
            Ok(NodeOutcome::Existed)
        );
        let other = DevId {
            major: 7,
            minor: 201,
        };
        assert_eq!(
            ensure_device_node(&p, libc::S_IFBLK, other),
            Err(Errno(libc::EEXIST))
        );
        assert_eq!(
            remove_device_node(&p, libc::S_IFBLK, other),
            Err(Errno(libc::EEXIST))
        );
        assert_eq!(remove_device_node(&p, libc::S_IFBLK, dev), Ok(()));
        assert!(!p.exists());
    }
}
