//! Creating a vault: `tazpod init`, and `tazpod unlock` of a vault that does not exist yet
//! (TazPod's first unlock).
//!
//! Everything that can refuse is checked before anything is created or a passphrase is
//! asked for: the size, where the new passphrase comes from (asked twice on a terminal, or a
//! key file; never a line of a pipe), `mkfs.ext4` when `--mkfs-ext4` asks for it (else
//! tazpod's own formatter makes the filesystem: no external tool), and for
//! `init --force` that the old vault is in no session and attached to no loop device. Then
//! the passphrase, then the steps of [`super::session`] behind the host: the image is made as a
//! sparse file under a temporary name next to the vault, gets a LUKS2 header from the writer
//! (`tazpod format`'s defaults and code), is mapped, gets its ext4 filesystem (root directory
//! owned by the session user), and is moved to its path only when complete. A failure at any
//! step removes the image and undoes the mapping; the vault path never holds a half-made
//! vault, and `init --force` leaves the old vault in place until the new one replaces it.
//!
//! The checks and the passphrase refuse with a [`CreateError`] (its message in `Display`; exit
//! codes and hints in `crate::error`); the command layer is `cli/init.rs`.

pub mod error;
mod size;

pub use self::error::CreateError;
pub use self::size::{human_size, DEFAULT_SIZE, MIN_FS_SIZE};

use super::host::HostError;
use super::lock::{self, Acquired, SessionLock, RUNTIME_DIR};
use super::session::Mkfs;
use crate::kernel::loopdev;
use crate::kernel::tty;
use crate::passphrase::KeySource;
use crate::write::{self, FormatOptions, HeaderSpec, KdfOptions};
use luks2::Passphrase;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The only directories `mkfs.ext4` is taken from: fixed system directories, never `PATH`
/// (root runs it).
pub const SBIN_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// What creating a vault takes, from `init` and from `unlock` (used there only when the vault
/// does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// The image size in bytes.
    pub size: u64,
    /// Make the filesystem with the system's `mkfs.ext4` instead of tazpod's own formatter.
    pub mkfs_ext4: bool,
    /// The new keyslot's KDF; the rest of the header takes `tazpod format`'s defaults.
    pub kdf: KdfOptions,
}

impl Default for CreateOptions {
    /// [`DEFAULT_SIZE`], tazpod's formatter, `format`'s KDF defaults.
    fn default() -> Self {
        CreateOptions {
            size: DEFAULT_SIZE,
            mkfs_ext4: false,
            kdf: KdfOptions::default(),
        }
    }
}

/// Whether a vault of `size` bytes fits a header ending at `data_offset` and a filesystem.
pub fn check_size(size: u64, data_offset: u64) -> Result<(), CreateError> {
    if size % 4096 != 0 {
        return Err(CreateError::SizeNotAligned { size });
    }
    if size < data_offset.saturating_add(MIN_FS_SIZE) {
        return Err(CreateError::TooSmall { size, data_offset });
    }
    Ok(())
}

/// The first of `PATH`'s directories (absolute ones only), then `extra`, holding `name` as
/// something `usable` accepts.
pub fn find_tool(
    name: &str,
    path: Option<&OsStr>,
    extra: &[&str],
    usable: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let from_path = path
        .map(|p| {
            p.as_bytes()
                .split(|b| *b == b':')
                .map(|d| PathBuf::from(OsStr::from_bytes(d)))
                .filter(|d| d.is_absolute())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| usable(p))
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `mkfs.ext4`, from the fixed system directories only ([`SBIN_DIRS`]).
pub fn find_mkfs() -> Result<PathBuf, CreateError> {
    find_tool("mkfs.ext4", None, &SBIN_DIRS, executable).ok_or(CreateError::NoMkfs)
}

/// What to do when the image could not be made where the vault goes.
pub fn where_hint(e: &HostError) -> Option<&'static str> {
    (e.op == "create" && e.source.kind() == io::ErrorKind::PermissionDenied).then_some(
        "the image is created with the rights of the user who ran tazpod: choose a --vault \
         path that user can write, or make its directory writable for them",
    )
}

/// What creating a vault needs, all checked before anything is created.
pub struct Prepared {
    /// The header's options (`tazpod format`'s defaults with the KDF options given).
    pub spec: HeaderSpec,
    /// How the filesystem is made.
    pub mkfs: Mkfs,
    /// The image size.
    pub size: u64,
}

/// Checks, before anything is created: where the new passphrase comes from, the header
/// options, the size, and `mkfs.ext4` when `--mkfs-ext4` asks for it.
pub fn prepare(
    vault: &Path,
    create: &CreateOptions,
    key: &KeySource,
    stdin_tty: bool,
) -> Result<Prepared, CreateError> {
    if key.key_file.is_none() && !stdin_tty {
        return Err(CreateError::PipedPassphrase {
            vault: vault.to_path_buf(),
        });
    }
    let spec = write::header_spec(&FormatOptions {
        kdf: create.kdf.clone(),
        ..FormatOptions::default()
    })?;
    let size = create.size;
    check_size(size, spec.layout.data_offset)?;
    let mkfs = if create.mkfs_ext4 {
        Mkfs::Tool(find_mkfs()?)
    } else {
        Mkfs::Builtin
    };
    Ok(Prepared { spec, mkfs, size })
}

/// The new vault's passphrase: the key file, or asked twice on the terminal ("Verify
/// passphrase:"; a mismatch exits 2 as in cryptsetup). [`prepare`] refused the other cases.
pub fn new_passphrase(key: &KeySource, vault: &Path) -> Result<Passphrase, CreateError> {
    let shown = vault.display().to_string();
    if key.key_file.is_none() && !tty::stdin_is_tty() {
        return Err(CreateError::NoTerminal);
    }
    Ok(write::new_passphrase(None, Some(key), &shown)?)
}

/// Whether the caller (whose filesystem rights are active) may replace `vault`: a regular
/// file, not a symbolic link, that they can open for writing.
pub fn replaceable_by_caller(vault: &Path, meta: &std::fs::Metadata) -> Result<(), CreateError> {
    use std::os::unix::fs::OpenOptionsExt;
    if !meta.file_type().is_file() {
        return Err(CreateError::NotAFile {
            vault: vault.to_path_buf(),
        });
    }
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(vault)
        .map(drop)
        .map_err(|error| CreateError::NotWritable {
            vault: vault.to_path_buf(),
            error,
        })
}

/// An existing vault `init --force` may replace: a regular file, unlocked in no session
/// (its session lock is returned, held, so that none starts while it is replaced), attached to
/// no loop device.
pub fn check_replaceable(
    vault: &Path,
    meta: &std::fs::Metadata,
) -> Result<SessionLock, CreateError> {
    if !meta.file_type().is_file() {
        return Err(CreateError::NotAFile {
            vault: vault.to_path_buf(),
        });
    }
    let runtime = Path::new(RUNTIME_DIR);
    lock::ensure_runtime_dir(runtime).map_err(CreateError::SessionLock)?;
    let held = match lock::acquire(runtime, &lock::vault_id(meta), lock::find_ns_member)
        .map_err(CreateError::SessionLock)?
    {
        Acquired::Holder(l) => l,
        Acquired::Joiner { record, pid, .. } => {
            return Err(CreateError::Unlocked {
                vault: vault.to_path_buf(),
                pid,
                mount: record.mount,
            });
        }
    };
    let loops = loopdev::attached_to(meta.dev(), meta.ino());
    if !loops.is_empty() {
        return Err(CreateError::Attached {
            vault: vault.to_path_buf(),
            loops,
        });
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn size_must_hold_the_header_and_a_filesystem() {
        let off = 16 << 20;
        assert!(check_size(512 << 20, off).is_ok());
        assert!(check_size(17 << 20, off).is_ok());
        let e = check_size(16 << 20, off).unwrap_err();
        assert!(
            matches!(e, CreateError::TooSmall { size, data_offset } if size == 16 << 20 && data_offset == off),
            "{e}"
        );
        assert!(e.to_string().contains("at least 17 MiB"), "{e}");
        let e = check_size((32 << 20) + 512, off).unwrap_err();
        assert!(matches!(e, CreateError::SizeNotAligned { .. }), "{e}");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(512 << 20), "512 MiB");
        assert_eq!(human_size(1 << 30), "1 GiB");
        assert_eq!(human_size(1536 << 20), "1536 MiB");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1000), "1000 bytes");
    }

    #[test]
    fn mkfs_is_searched_in_path_then_sbin() {
        let have =
            |set: &'static [&'static str]| move |p: &Path| set.iter().any(|s| Path::new(s) == p);
        let path = OsStr::new("/home/u/bin:relative:/usr/bin");
        assert_eq!(
            find_tool(
                "mkfs.ext4",
                Some(path),
                &SBIN_DIRS,
                have(&["/usr/bin/mkfs.ext4", "/sbin/mkfs.ext4"])
            ),
            Some(PathBuf::from("/usr/bin/mkfs.ext4"))
        );
        // not in PATH (sudo's secure_path, su): the sbin directories
        assert_eq!(
            find_tool(
                "mkfs.ext4",
                Some(OsStr::new("/bin")),
                &SBIN_DIRS,
                have(&["/sbin/mkfs.ext4"])
            ),
            Some(PathBuf::from("/sbin/mkfs.ext4"))
        );
        // a relative PATH entry is never used
        assert_eq!(
            find_tool(
                "mkfs.ext4",
                Some(OsStr::new("relative")),
                &[],
                have(&["relative/mkfs.ext4"])
            ),
            None
        );
        assert_eq!(find_tool("mkfs.ext4", None, &SBIN_DIRS, have(&[])), None);
    }

    #[test]
    fn a_new_passphrase_is_never_read_from_a_pipe() {
        let create = CreateOptions::default();
        let key = KeySource::default();
        let e = prepare(Path::new("/x/vault.img"), &create, &key, false)
            .err()
            .unwrap();
        assert!(
            matches!(&e, CreateError::PipedPassphrase { vault } if vault == Path::new("/x/vault.img")),
            "{e}"
        );
        assert!(e.to_string().contains("asked twice"), "{e}");
        // with a key file, or on a terminal, the checks go on
        let key = KeySource {
            key_file: Some(PathBuf::from("/k")),
            ..KeySource::default()
        };
        let r = prepare(Path::new("/x/vault.img"), &create, &key, false);
        if let Err(e) = r {
            // only a missing mkfs.ext4 may stop it on this machine
            assert!(matches!(e, CreateError::NoMkfs), "{e}");
        }
        let small = CreateOptions {
            size: 8 << 20,
            ..CreateOptions::default()
        };
        let e = prepare(Path::new("/x/v"), &small, &key, true)
            .err()
            .unwrap();
        assert!(matches!(e, CreateError::TooSmall { .. }), "{e}");
        let bad = CreateOptions {
            kdf: KdfOptions {
                pbkdf: "scrypt".into(),
                ..KdfOptions::default()
            },
            ..CreateOptions::default()
        };
        let e = prepare(Path::new("/x/v"), &bad, &key, true).err().unwrap();
        assert!(matches!(e, CreateError::Write(_)), "{e}");
    }

    #[test]
    fn replacing_refuses_what_is_not_a_file() {
        let d = tempfile::tempdir().unwrap();
        let m = std::fs::metadata(d.path()).unwrap();
        let e = check_replaceable(d.path(), &m).err().unwrap();
        assert!(matches!(e, CreateError::NotAFile { .. }), "{e}");
    }

    #[test]
    fn only_a_file_the_caller_may_write_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("v.img");
        std::fs::write(&f, b"x").unwrap();
        let m = std::fs::symlink_metadata(&f).unwrap();
        assert!(replaceable_by_caller(&f, &m).is_ok());
        let l = d.path().join("link");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        let m = std::fs::symlink_metadata(&l).unwrap();
        let e = replaceable_by_caller(&l, &m).err().unwrap();
        assert!(matches!(e, CreateError::NotAFile { .. }), "{e}");
    }

    #[test]
    fn mkfs_is_looked_up_in_fixed_system_directories_only() {
        assert_eq!(SBIN_DIRS, ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
        // PATH plays no part: a planted mkfs.ext4 in a PATH directory is never found
        let d = tempfile::tempdir().unwrap();
        let planted = d.path().join("mkfs.ext4");
        std::fs::write(&planted, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Ok(found) = find_mkfs() {
            assert!(
                SBIN_DIRS.iter().any(|dir| found.starts_with(dir)),
                "{found:?}"
            );
            assert_ne!(found, planted);
        }
    }
}
