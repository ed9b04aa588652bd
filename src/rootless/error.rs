//! What the rootless service reports: the filesystem walk's errors ([`TreeError`]), a panic
//! caught by [`super::guarded`], a configuration, vault or header that cannot be read, the
//! unlock pipeline's errors, and what stops `run` (the secrets map, a secret that cannot be
//! served, the command that cannot start). The messages are in `Display`; `crate::error`
//! gives the exit codes and hints.

use super::tree::{shown, TreeError};
use crate::config::LoadError;
use crate::device::DeviceError;
use crate::ghost::caller::error::CallerError;
use crate::kernel::Errno;
use crate::passphrase::TryError;
use std::fmt;
use std::io;

/// How [`RootlessError::Panic`]'s message starts (after the vault's name); the tests look for
/// it to make sure that no walk panicked.
pub const PANIC_STOP: &str = "the ext4 reader stopped on data it did not expect";

/// An error of the rootless service.
#[derive(Debug)]
pub enum RootlessError {
    /// The filesystem walk failed.
    Tree(TreeError),
    /// The ext4 reader panicked inside [`super::guarded`]: `note` says where and why.
    Panic { vault: String, note: String },
    /// The configuration cannot be loaded.
    Config(LoadError<CallerError>),
    /// The vault file cannot be opened; `given` when its path was given by the caller, not
    /// taken from the config or the default.
    Vault { error: DeviceError, given: bool },
    /// The header file cannot be opened, or the vault or header file cannot be locked or
    /// sized.
    Device(DeviceError),
    /// The unlock pipeline failed (the data segment, the passphrase tries).
    Unlock(TryError),
    /// The header cannot be read from `device`; `detached` when it is a header file apart
    /// from the vault.
    Header {
        device: String,
        error: luks2::Error,
        detached: bool,
    },
    /// A library error on `device` (the data segment's length, the decryptor).
    Luks { device: String, error: luks2::Error },
    /// `run`: a variable given more than once on the command line.
    RepeatedVariable(String),
    /// `run`: the secrets map is empty.
    NoSecrets,
    /// `run`: the file `path` of the vault is over `max` bytes (`run::ENV_VALUE_MAX`), too
    /// large for variable `name`.
    ValueTooLarge {
        vault: String,
        path: Vec<u8>,
        name: String,
        max: usize,
    },
    /// `run`: the file `path` holds a NUL byte, which variable `name` cannot carry.
    ValueHasNul {
        vault: String,
        path: Vec<u8>,
        name: String,
    },
    /// `run`: the in-memory file for variable `name` cannot be created or sealed.
    Memfd { name: String, error: Errno },
    /// `run`: no command to run.
    NoCommand,
    /// `run`: the command `program` cannot be executed.
    Exec { program: String, error: io::Error },
}

impl RootlessError {
    /// Whether the output's reader went away: the verbs stop quietly.
    pub fn is_closed(&self) -> bool {
        matches!(self, RootlessError::Tree(TreeError::Closed))
    }

    /// Whether a write to the output failed: nothing more can be written.
    pub fn is_write(&self) -> bool {
        matches!(self, RootlessError::Tree(TreeError::Write(_)))
    }
}

impl From<TreeError> for RootlessError {
    fn from(e: TreeError) -> Self {
        RootlessError::Tree(e)
    }
}

impl From<TryError> for RootlessError {
    fn from(e: TryError) -> Self {
        RootlessError::Unlock(e)
    }
}

impl fmt::Display for RootlessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootlessError::Tree(e) => e.fmt(f),
            RootlessError::Panic { vault, note } => write!(
                f,
                "{vault}: {PANIC_STOP} (a panic: {note}); the filesystem in the vault is \
                 probably corrupt"
            ),
            RootlessError::Config(e) => e.fmt(f),
            RootlessError::Vault { error, .. } => error.fmt(f),
            RootlessError::Device(e) => e.fmt(f),
            RootlessError::Unlock(e) => e.fmt(f),
            RootlessError::Header { device, error, .. } | RootlessError::Luks { device, error } => {
                write!(f, "{device}: {error}")
            }
            RootlessError::RepeatedVariable(name) => {
                write!(f, "variable {name} is given more than once")
            }
            RootlessError::NoSecrets => write!(f, "no secrets to serve"),
            RootlessError::ValueTooLarge {
                vault,
                path,
                name,
                max,
            } => write!(
                f,
                "{vault}: {} is too large for variable {name} (over {max} bytes)",
                shown(path)
            ),
            RootlessError::ValueHasNul { vault, path, .. } => write!(
                f,
                "{vault}: {} holds a NUL byte, which a variable cannot carry",
                shown(path)
            ),
            RootlessError::Memfd { name, error } => {
                write!(f, "cannot create an in-memory file for {name}: {error}")
            }
            RootlessError::NoCommand => write!(f, "no command given"),
            RootlessError::Exec { program, error } => match error.kind() {
                io::ErrorKind::NotFound => write!(f, "cannot run {program}: command not found"),
                io::ErrorKind::PermissionDenied => {
                    write!(f, "cannot run {program}: permission denied")
                }
                _ => write!(f, "cannot run {program}: {error}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use crate::error::testing::{assert_converts, denied};
    use ext4_view::Ext4Error;
    use luks2::error::{Error, UnlockError};

    fn fs(path: Option<&[u8]>, error: Ext4Error) -> RootlessError {
        RootlessError::Tree(TreeError::Fs {
            vault: "v".into(),
            path: path.map(<[u8]>::to_vec),
            error,
        })
    }

    fn missing() -> DeviceError {
        DeviceError::Missing {
            role: "vault".into(),
            name: "v".into(),
            error: denied(),
        }
    }

    #[test]
    fn rootless_errors_convert() {
        let denied = denied();
        let corrupt = "`tazpod decrypt VAULT fs.img && e2fsck -fn fs.img` shows the damage \
                       (remove fs.img after)";
        let missing_msg = missing().to_string();
        let header_missing = DeviceError::Missing {
            role: "header file".into(),
            name: "h".into(),
            error: crate::error::testing::denied(),
        }
        .to_string();
        let p = Some(&b"/a"[..]);
        let tree = |e| RootlessError::Tree(e);
        assert_converts(vec![
            (
                fs(p, Ext4Error::NotFound),
                code::INVALID,
                "v: '/a' does not exist in the vault".into(),
                Some("list a directory with `tazpod ls [PATH]`"),
            ),
            (
                fs(None, Ext4Error::NotFound),
                code::INVALID,
                "v: the vault's filesystem does not exist in the vault".into(),
                Some("list a directory with `tazpod ls [PATH]`"),
            ),
            (
                fs(p, Ext4Error::NotADirectory),
                code::INVALID,
                "v: '/a' is not a directory (or a part of it is not)".into(),
                None,
            ),
            (
                fs(p, Ext4Error::IsADirectory),
                code::INVALID,
                "v: '/a' is a directory, not a file".into(),
                Some("list it with `tazpod ls`"),
            ),
            (
                fs(p, Ext4Error::IsASpecialFile),
                code::INVALID,
                "v: '/a' is not a regular file (a device, FIFO or socket)".into(),
                None,
            ),
            (
                fs(p, Ext4Error::TooManySymlinks),
                code::INVALID,
                "v: '/a': too many levels of symbolic links (a symlink loop?)".into(),
                None,
            ),
            (
                fs(p, Ext4Error::Encrypted),
                code::INVALID,
                "v: '/a' uses ext4 file encryption (fscrypt), which tazpod cannot read".into(),
                None,
            ),
            (
                fs(p, Ext4Error::NotAbsolute),
                code::INVALID,
                "v: '/a' is not a valid path in the vault: path is not absolute".into(),
                None,
            ),
            (
                fs(p, Ext4Error::Io(Box::new(crate::error::testing::denied()))),
                code::DEVICE,
                format!("v: reading '/a' failed: {denied}"),
                None,
            ),
            (
                fs(p, Ext4Error::FileTooLarge),
                code::INVALID,
                "v: '/a': file is too large to store in memory".into(),
                None,
            ),
            (
                tree(TreeError::Geometry {
                    vault: "v".into(),
                    what: "odd".into(),
                }),
                code::INVALID,
                "v: the filesystem in the vault is corrupt: odd".into(),
                Some(corrupt),
            ),
            (
                tree(TreeError::TooDeep {
                    vault: "v".into(),
                    path: b"/d\n".to_vec(),
                }),
                code::INVALID,
                "v: '/d\\n' is nested more than 128 directories deep (a directory loop?)".into(),
                Some(corrupt),
            ),
            (
                tree(TreeError::DirLoop {
                    vault: "v".into(),
                    path: b"/d".to_vec(),
                }),
                code::INVALID,
                "v: listing '/d' visits more directories than the filesystem can hold (a \
                 directory loop: the filesystem in the vault is corrupt)"
                    .into(),
                Some(corrupt),
            ),
            (
                tree(TreeError::Write(crate::error::testing::denied())),
                code::INVALID,
                format!("cannot write to standard output: {denied}"),
                None,
            ),
            (
                RootlessError::Panic {
                    vault: "v".into(),
                    note: "boom, at a/b.rs:1".into(),
                },
                code::INVALID,
                format!(
                    "v: {PANIC_STOP} (a panic: boom, at a/b.rs:1); the filesystem in the vault \
                     is probably corrupt"
                ),
                Some(
                    "`tazpod decrypt VAULT fs.img && e2fsck -fn fs.img` shows the damage \
                     (remove fs.img after); if e2fsck finds nothing wrong, this is a bug in \
                     tazpod's ext4 reader: please report it with this message",
                ),
            ),
            (
                RootlessError::Vault {
                    error: missing(),
                    given: true,
                },
                code::DEVICE,
                missing_msg.clone(),
                Some("check the path and your permissions"),
            ),
            (
                RootlessError::Vault {
                    error: missing(),
                    given: false,
                },
                code::DEVICE,
                missing_msg,
                Some("pass --vault FILE, or set `vault` in the config"),
            ),
            (
                RootlessError::Config(LoadError::NotFound {
                    path: "/c.toml".into(),
                }),
                code::INVALID,
                "config file /c.toml not found".into(),
                None,
            ),
            (
                RootlessError::Device(DeviceError::Missing {
                    role: "header file".into(),
                    name: "h".into(),
                    error: crate::error::testing::denied(),
                }),
                code::DEVICE,
                header_missing,
                Some("check the path and your permissions"),
            ),
            (
                RootlessError::Unlock(TryError::Library {
                    device: "v".into(),
                    error: Error::Unlock(UnlockError::WrongPassphrase),
                }),
                code::PERMISSION,
                format!("v: {}", Error::Unlock(UnlockError::WrongPassphrase)),
                None,
            ),
            (
                RootlessError::Header {
                    device: "h".into(),
                    error: Error::Unlock(UnlockError::WrongPassphrase),
                    detached: true,
                },
                code::PERMISSION,
                format!("h: {}", Error::Unlock(UnlockError::WrongPassphrase)),
                None,
            ),
            (
                RootlessError::Header {
                    device: "v".into(),
                    error: Error::Unlock(UnlockError::WrongPassphrase),
                    detached: false,
                },
                code::PERMISSION,
                format!("v: {}", Error::Unlock(UnlockError::WrongPassphrase)),
                Some(
                    "check that this is the vault; if its header is kept apart, give it with \
                     --header FILE",
                ),
            ),
            (
                RootlessError::Luks {
                    device: "v".into(),
                    error: Error::Unlock(UnlockError::WrongPassphrase),
                },
                code::PERMISSION,
                format!("v: {}", Error::Unlock(UnlockError::WrongPassphrase)),
                None,
            ),
            (
                RootlessError::RepeatedVariable("A".into()),
                code::INVALID,
                "variable A is given more than once".into(),
                None,
            ),
            (
                RootlessError::NoSecrets,
                code::INVALID,
                "no secrets to serve".into(),
                Some(
                    "give --env NAME=PATH or --env-file NAME=PATH (paths inside the vault), or \
                     [[secret]] entries in the config",
                ),
            ),
            (
                RootlessError::ValueTooLarge {
                    vault: "v".into(),
                    path: b"/t".to_vec(),
                    name: "T".into(),
                    max: 131_070,
                },
                code::INVALID,
                "v: '/t' is too large for variable T (over 131070 bytes)".into(),
                Some("serve it as a file: --env-file T=PATH"),
            ),
            (
                RootlessError::ValueHasNul {
                    vault: "v".into(),
                    path: b"/t".to_vec(),
                    name: "T".into(),
                },
                code::INVALID,
                "v: '/t' holds a NUL byte, which a variable cannot carry".into(),
                Some("serve it as a file: --env-file T=PATH"),
            ),
            (
                RootlessError::Memfd {
                    name: "T".into(),
                    error: Errno(12),
                },
                code::NOMEM,
                format!("cannot create an in-memory file for T: {}", Errno(12)),
                None,
            ),
            (
                RootlessError::NoCommand,
                code::INVALID,
                "no command given".into(),
                None,
            ),
            (
                RootlessError::Exec {
                    program: "x".into(),
                    error: io::Error::from(io::ErrorKind::NotFound),
                },
                code::NOT_FOUND,
                "cannot run x: command not found".into(),
                None,
            ),
            (
                RootlessError::Exec {
                    program: "x".into(),
                    error: io::Error::from(io::ErrorKind::PermissionDenied),
                },
                code::NOT_EXECUTABLE,
                "cannot run x: permission denied".into(),
                None,
            ),
            (
                RootlessError::Exec {
                    program: "x".into(),
                    error: io::Error::from_raw_os_error(7),
                },
                code::INVALID,
                format!("cannot run x: {}", io::Error::from_raw_os_error(7)),
                None,
            ),
        ]);
    }

    #[test]
    fn a_closed_output_is_quiet_and_a_failed_write_stops() {
        let closed = RootlessError::from(TreeError::Closed);
        assert!(closed.is_closed() && !closed.is_write());
        assert_eq!(crate::error::CliError::from(closed).code, code::OK);
        let write = RootlessError::from(TreeError::Write(denied()));
        assert!(write.is_write() && !write.is_closed());
    }
}
