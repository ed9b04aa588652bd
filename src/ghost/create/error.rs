//! What the checks of a new vault refuse, and what stops its passphrase. The messages are in
//! `Display`; `crate::error` gives the exit codes and hints (`From<CreateError> for CliError`).

use super::size::{human_size, MIN_FS_SIZE};
use crate::ghost::lock::RUNTIME_DIR;
use crate::write::WriteError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a vault cannot be created (or replaced) as asked.
#[derive(Debug)]
pub enum CreateError {
    /// The size is not a multiple of 4096 bytes.
    SizeNotAligned { size: u64 },
    /// The size does not hold the header and the smallest filesystem.
    TooSmall { size: u64, data_offset: u64 },
    /// `--mkfs-ext4` and no `mkfs.ext4` in the fixed system directories.
    NoMkfs,
    /// No key file and standard input is no terminal, found before anything is created.
    PipedPassphrase { vault: PathBuf },
    /// No key file and standard input is no terminal, found when the passphrase is asked.
    NoTerminal,
    /// The header options, or reading the new passphrase (the writer's errors).
    Write(WriteError),
    /// `init --force` on something that is not a regular file.
    NotAFile { vault: PathBuf },
    /// `init --force` on a vault the caller cannot open for writing.
    NotWritable { vault: PathBuf, error: io::Error },
    /// The session lock of the vault to replace cannot be taken.
    SessionLock(io::Error),
    /// The vault to replace is unlocked in a session.
    Unlocked {
        vault: PathBuf,
        pid: u32,
        mount: String,
    },
    /// The vault to replace is attached to loop devices.
    Attached { vault: PathBuf, loops: Vec<PathBuf> },
}

impl From<WriteError> for CreateError {
    fn from(e: WriteError) -> Self {
        CreateError::Write(e)
    }
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::SizeNotAligned { size } => write!(
                f,
                "--size {size}: a vault's size must be a multiple of 4096 bytes"
            ),
            CreateError::TooSmall { size, data_offset } => write!(
                f,
                "--size {}: too small; a vault needs at least {} ({} of LUKS2 header, {} of \
                 filesystem)",
                human_size(*size),
                human_size(data_offset.saturating_add(MIN_FS_SIZE)),
                human_size(*data_offset),
                human_size(MIN_FS_SIZE)
            ),
            CreateError::NoMkfs => f.write_str(
                "mkfs.ext4 not found (searched /usr/sbin, /sbin, /usr/bin, /bin): creating a \
                 vault needs it for the vault's ext4 filesystem",
            ),
            CreateError::PipedPassphrase { vault } => write!(
                f,
                "{} does not exist, and a new vault's passphrase is asked twice on a terminal: \
                 standard input is not one",
                vault.display()
            ),
            CreateError::NoTerminal => f.write_str(
                "standard input is not a terminal: cannot ask for the new passphrase twice",
            ),
            CreateError::Write(e) => e.fmt(f),
            CreateError::NotAFile { vault } => write!(
                f,
                "{} is not a regular file; tazpod init replaces only vault image files",
                vault.display()
            ),
            CreateError::NotWritable { vault, error } => write!(
                f,
                "cannot replace {}: {error}; nothing was changed",
                vault.display()
            ),
            CreateError::SessionLock(e) => {
                write!(f, "cannot take the session lock in {RUNTIME_DIR}: {e}")
            }
            CreateError::Unlocked { vault, pid, mount } => write!(
                f,
                "{} is unlocked in a ghost session (process {pid}, mounted at {mount}); it \
                 cannot be replaced now",
                vault.display()
            ),
            CreateError::Attached { vault, loops } => {
                let names: Vec<String> = loops.iter().map(|l| l.display().to_string()).collect();
                write!(
                    f,
                    "{} is in use: attached to {}",
                    vault.display(),
                    names.join(", ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use crate::error::testing::{assert_converts, denied};

    #[test]
    fn each_error_has_its_message_hint_and_exit_code() {
        let v = || PathBuf::from("/w/v.img");
        let denied_msg = denied().to_string();
        assert_converts(vec![
            (
                CreateError::SizeNotAligned { size: 33554944 },
                code::INVALID,
                "--size 33554944: a vault's size must be a multiple of 4096 bytes".into(),
                Some("give it in K, M or G, such as 512M"),
            ),
            (
                CreateError::TooSmall {
                    size: 16 << 20,
                    data_offset: 16 << 20,
                },
                code::INVALID,
                "--size 16 MiB: too small; a vault needs at least 17 MiB (16 MiB of LUKS2 \
                 header, 1 MiB of filesystem)"
                    .into(),
                None,
            ),
            (
                CreateError::NoMkfs,
                code::INVALID,
                "mkfs.ext4 not found (searched /usr/sbin, /sbin, /usr/bin, /bin): creating a \
                 vault needs it for the vault's ext4 filesystem"
                    .into(),
                Some(
                    "install e2fsprogs (apt-get install e2fsprogs, dnf install e2fsprogs, apk \
                     add e2fsprogs); nothing was created",
                ),
            ),
            (
                CreateError::PipedPassphrase { vault: v() },
                code::INVALID,
                "/w/v.img does not exist, and a new vault's passphrase is asked twice on a \
                 terminal: standard input is not one"
                    .into(),
                Some(
                    "run it on a terminal, or give the new vault's key with --key-file FILE \
                     (--key-file - reads it from standard input); nothing was created",
                ),
            ),
            (
                CreateError::NoTerminal,
                code::INVALID,
                "standard input is not a terminal: cannot ask for the new passphrase twice".into(),
                None,
            ),
            (
                CreateError::Write(WriteError::Mismatch),
                code::PERMISSION,
                WriteError::Mismatch.to_string(),
                None,
            ),
            (
                CreateError::NotAFile { vault: v() },
                code::INVALID,
                "/w/v.img is not a regular file; tazpod init replaces only vault image files"
                    .into(),
                None,
            ),
            (
                CreateError::NotWritable {
                    vault: v(),
                    error: denied(),
                },
                code::PERMISSION,
                format!("cannot replace /w/v.img: {denied_msg}; nothing was changed"),
                Some("tazpod init --force replaces only a vault the user who runs it may write"),
            ),
            (
                CreateError::SessionLock(denied()),
                code::BUSY,
                format!("cannot take the session lock in /run/tazpod: {denied_msg}"),
                None,
            ),
            (
                CreateError::Unlocked {
                    vault: v(),
                    pid: 42,
                    mount: "/home/u/secrets".into(),
                },
                code::BUSY,
                "/w/v.img is unlocked in a ghost session (process 42, mounted at \
                 /home/u/secrets); it cannot be replaced now"
                    .into(),
                Some(
                    "exit the session's shells (or `tazpod lock` in it) first; nothing was \
                     changed",
                ),
            ),
            (
                CreateError::Attached {
                    vault: v(),
                    loops: vec!["/dev/loop3".into(), "/dev/loop7".into()],
                },
                code::BUSY,
                "/w/v.img is in use: attached to /dev/loop3, /dev/loop7".into(),
                Some(
                    "close what maps it (`tazpod close NAME`, `cryptsetup close NAME`) first; \
                     nothing was changed",
                ),
            ),
        ]);
    }
}
