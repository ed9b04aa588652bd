//! CLI errors: what failed, where, what to try next, and cryptsetup's exit code.

use crate::benchmark::BenchmarkError;
use crate::config::LoadError;
use crate::device::DeviceError;
use crate::ghost::caller::error::{CallerError, WithRights};
use crate::ghost::create::error::CreateError;
use crate::ghost::ending::LockTargetError;
use crate::ghost::host::HostError;
use crate::ghost::start::error::{OpenError, StartError};
use crate::ghost::sudo::SudoError;
use crate::mapping::{Kind, MapError};
use crate::passphrase::{PassphraseError, TryError};
use crate::preflight::PreflightError;
use crate::rootless::error::RootlessError;
use crate::rootless::tree::TreeError;
use crate::write::WriteError;
use ext4_view::Ext4Error;
use luks2::error::{Error, KdfError, UnlockError, VolumeError};
use luks2::format::FormatError;
use std::fmt;

/// cryptsetup's exit codes, which tazpod uses too.
pub mod code {
    /// Success.
    pub const OK: u8 = 0;
    /// Wrong parameters, invalid or unsupported header, refused requirement.
    pub const INVALID: u8 = 1;
    /// No permission (wrong passphrase).
    pub const PERMISSION: u8 = 2;
    /// Out of memory, or a KDF over the memory limit.
    pub const NOMEM: u8 = 3;
    /// Wrong device specified (missing, unreadable).
    pub const DEVICE: u8 = 4;
    /// Device already exists or is busy.
    pub const BUSY: u8 = 5;
    /// `tazpod run`: the command cannot be executed (as in shells).
    pub const NOT_EXECUTABLE: u8 = 126;
    /// `tazpod run`: the command cannot be found (as in shells).
    pub const NOT_FOUND: u8 = 127;
}

/// An error the CLI reports and exits with.
#[derive(Debug)]
pub struct CliError {
    /// Exit code (cryptsetup's meaning).
    pub code: u8,
    /// What failed, lowercase, no trailing period.
    pub message: String,
    /// What to do next, when there is something useful to say.
    pub hint: Option<String>,
}

impl CliError {
    /// An error with an exit code and a message.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A typed error's message (its `Display`) with the exit code and hint the CLI gives it.
    pub fn typed(code: u8, e: &impl fmt::Display, hint: Option<&str>) -> Self {
        CliError {
            code,
            message: e.to_string(),
            hint: hint.map(String::from),
        }
    }

    /// Wraps a library error met while working on `device`.
    pub fn luks(device: &str, e: Error) -> Self {
        let code = exit_code(&e);
        let hint = match &e {
            Error::Unlock(UnlockError::WrongPassphrase) => None,
            Error::Header(_) | Error::Metadata(_) => Some(
                "check that this is the right device; `tazpod dump` shows which header copy is damaged".to_string(),
            ),
            Error::Kdf(KdfError::OutOfMemory { .. }) => Some("free memory or use another keyslot".into()),
            Error::Unlock(UnlockError::KdfOverLimit {
                error: KdfError::MemoryOverLimit { .. },
                ..
            }) => Some(match crate::device::MEMORY_NOTE.get() {
                Some(budget) => format!(
                    "without --max-kdf-memory the limit is 3/4 of {budget}; --max-kdf-memory KiB \
                     sets it"
                ),
                None => "--max-kdf-memory KiB sets the limit".into(),
            }),
            Error::Volume(
                VolumeError::UnsupportedSegment(_)
                | VolumeError::SectorSize(_)
                | VolumeError::IntegritySegment(_),
            )
            | Error::Cipher(_) => Some(
                "the data segment cannot be mapped or decrypted; `tazpod open --test-passphrase` still checks a passphrase".into(),
            ),
            _ => None,
        };
        CliError {
            code,
            message: format!("{device}: {e}"),
            hint,
        }
    }
}

/// The exit code for a library error.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Unlock(UnlockError::WrongPassphrase) => code::PERMISSION,
        Error::Unlock(
            UnlockError::KdfOverLimit { .. }
            | UnlockError::DigestOverLimit { .. }
            | UnlockError::KeyTooLarge { .. },
        ) => code::NOMEM,
        Error::Kdf(KdfError::OutOfMemory { .. }) => code::NOMEM,
        _ => code::INVALID,
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tazpod: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// A passphrase that could not be read: exit 1, with what to try next where there is something.
impl From<PassphraseError> for CliError {
    fn from(e: PassphraseError) -> Self {
        let hint = match &e {
            PassphraseError::KeyFileTooLarge { .. } => {
                Some("use --keyfile-size to read only the start of the file")
            }
            PassphraseError::NothingToRead => Some(
                "standard input ended before a passphrase (was it already read by an earlier \
                 prompt?); give one line per passphrase asked for, or use --key-file",
            ),
            PassphraseError::TooLong => Some("use --key-file for longer keys"),
            _ => None,
        };
        CliError::typed(code::INVALID, &e, hint)
    }
}

/// A passphrase that could not be read, or the library error of the last attempt.
impl From<TryError> for CliError {
    fn from(e: TryError) -> Self {
        match e {
            TryError::Passphrase(e) => e.into(),
            TryError::Library { device, error } => CliError::luks(&device, error),
        }
    }
}

/// A device, header file or output that cannot be used: exit 4 for a device that cannot be
/// opened, 5 for a busy one, 1 for the output.
impl From<DeviceError> for CliError {
    fn from(e: DeviceError) -> Self {
        let (code, hint) = match &e {
            DeviceError::Missing { .. } => (code::DEVICE, Some("check the path and your permissions")),
            DeviceError::Incompatible { .. } | DeviceError::Size { .. } => (code::DEVICE, None),
            DeviceError::LockBusy { .. } => (
                code::BUSY,
                Some(
                    "try again when the other tazpod or cryptsetup command has finished \
                     (TAZPOD_LOCK_TIMEOUT_MS sets how long to wait)",
                ),
            ),
            DeviceError::LockIo { .. } => (
                code::BUSY,
                Some("writing a block device's header needs root (the lock lives in /run/cryptsetup)"),
            ),
            DeviceError::OutputIsSource { .. } => (
                code::INVALID,
                Some("write the plaintext somewhere else; tazpod never writes to the device"),
            ),
            DeviceError::OutputNotEmpty { .. } => (
                code::INVALID,
                Some("remove it, choose another path, or pass --force to overwrite it"),
            ),
            DeviceError::OutputIsDir { .. }
            | DeviceError::OutputUnusable { .. }
            | DeviceError::OutputCreate { .. }
            | DeviceError::StdoutWrite(_)
            | DeviceError::OutputWrite { .. } => (code::INVALID, None),
        };
        CliError::typed(code, &e, hint)
    }
}

/// What mapping a volume lacks: exit 1, with what to do about it.
impl From<PreflightError> for CliError {
    fn from(e: PreflightError) -> Self {
        CliError::new(code::INVALID, e.to_string()).hint(e.hint())
    }
}

/// A benchmark that could not run: exit 3 for a KDF out of memory, else 1.
impl From<BenchmarkError> for CliError {
    fn from(e: BenchmarkError) -> Self {
        let (code, hint) = match &e {
            BenchmarkError::Kdf {
                error: KdfError::OutOfMemory { .. },
                ..
            } => (code::NOMEM, None),
            BenchmarkError::CipherPattern { .. } => (
                code::INVALID,
                Some("use the form cipher-mode, for example aes-xts"),
            ),
            BenchmarkError::UnknownKdf { .. } => {
                (code::INVALID, Some("use pbkdf2, argon2i or argon2id"))
            }
            BenchmarkError::KeySize
            | BenchmarkError::Kdf { .. }
            | BenchmarkError::CipherUnavailable { .. }
            | BenchmarkError::Cipher { .. } => (code::INVALID, None),
        };
        CliError::typed(code, &e, hint)
    }
}

/// The hint for a corrupt filesystem in a vault.
const CORRUPT_HINT: &str =
    "`tazpod decrypt VAULT fs.img && e2fsck -fn fs.img` shows the damage (remove fs.img after)";

/// A walk of a vault's filesystem that failed: exit 4 for a read that failed, else 1, and
/// what to try next. A closed output is exit 0: the verbs stop quietly on it before it gets
/// here.
impl From<TreeError> for CliError {
    fn from(e: TreeError) -> Self {
        let (code, hint) = match &e {
            TreeError::Fs { error, .. } => match error {
                Ext4Error::Io(_) => (code::DEVICE, None),
                Ext4Error::NotFound => (
                    code::INVALID,
                    Some("list a directory with `tazpod ls [PATH]`"),
                ),
                Ext4Error::IsADirectory => (code::INVALID, Some("list it with `tazpod ls`")),
                Ext4Error::Incompatible(_) => (
                    code::INVALID,
                    Some(
                        "open the vault with `tazpod open` or ghost mode instead (they need root)",
                    ),
                ),
                Ext4Error::Corrupt(_) => (code::INVALID, Some(CORRUPT_HINT)),
                _ => (code::INVALID, None),
            },
            TreeError::Geometry { .. } | TreeError::TooDeep { .. } | TreeError::DirLoop { .. } => {
                (code::INVALID, Some(CORRUPT_HINT))
            }
            TreeError::Write(_) => (code::INVALID, None),
            TreeError::Closed => (code::OK, None),
        };
        CliError {
            code,
            message: e.to_string(),
            hint: hint.map(String::from),
        }
    }
}

/// A rootless verb that failed: the walk's, the configuration's, the device's and the unlock
/// pipeline's exit codes; 2 or 3 as the library says for a header; 3 for an in-memory file that cannot be made; 127 for a command
/// not found and 126 for one that cannot be executed (as in shells); else 1.
impl From<RootlessError> for CliError {
    fn from(e: RootlessError) -> Self {
        let (code, hint) = match e {
            RootlessError::Tree(e) => return e.into(),
            RootlessError::Config(e) => return e.into(),
            RootlessError::Device(e) => return e.into(),
            RootlessError::Unlock(e) => return e.into(),
            RootlessError::Vault { error, given } => {
                let mut e = CliError::from(error);
                if !given {
                    e.hint = Some("pass --vault FILE, or set `vault` in the config".into());
                }
                return e;
            }
            RootlessError::Header {
                device,
                error,
                detached,
            } => {
                let mut e = CliError::luks(&device, error);
                if !detached {
                    e.hint = Some(
                        "check that this is the vault; if its header is kept apart, give it \
                         with --header FILE"
                            .into(),
                    );
                }
                return e;
            }
            RootlessError::Luks { device, error } => return CliError::luks(&device, error),
            RootlessError::Panic { .. } => (
                code::INVALID,
                Some(format!(
                    "{CORRUPT_HINT}; if e2fsck finds nothing wrong, this is a bug in tazpod's \
                     ext4 reader: please report it with this message"
                )),
            ),
            RootlessError::NoSecrets => (
                code::INVALID,
                Some(
                    "give --env NAME=PATH or --env-file NAME=PATH (paths inside the vault), or \
                     [[secret]] entries in the config"
                        .into(),
                ),
            ),
            RootlessError::ValueTooLarge { ref name, .. }
            | RootlessError::ValueHasNul { ref name, .. } => (
                code::INVALID,
                Some(format!("serve it as a file: --env-file {name}=PATH")),
            ),
            RootlessError::Memfd { .. } => (code::NOMEM, None),
            RootlessError::Exec { ref error, .. } => (
                match error.kind() {
                    std::io::ErrorKind::NotFound => code::NOT_FOUND,
                    std::io::ErrorKind::PermissionDenied => code::NOT_EXECUTABLE,
                    _ => code::INVALID,
                },
                None,
            ),
            RootlessError::RepeatedVariable(_) | RootlessError::NoCommand => (code::INVALID, None),
        };
        CliError {
            code,
            message: e.to_string(),
            hint,
        }
    }
}

/// Helpers for the tests of the typed errors' conversions.
impl From<MapError> for CliError {
    /// cryptsetup's exit code for the kind; a library error as every verb reports one.
    fn from(e: MapError) -> CliError {
        match e {
            MapError::Failed {
                kind,
                message,
                hint,
                ..
            } => {
                let c = match kind {
                    Kind::Invalid => code::INVALID,
                    Kind::Device => code::DEVICE,
                    Kind::Busy => code::BUSY,
                };
                let e = CliError::new(c, message);
                match hint {
                    Some(h) => e.hint(h),
                    None => e,
                }
            }
            MapError::Library { device, error } => CliError::luks(&device, error),
        }
    }
}

/// A header that could not be written: exit 4 for a device that cannot be opened, sized or
/// written, 5 for a busy one, 2 for a refused confirmation or a passphrase mismatch, 3 for a
/// KDF out of memory, else 1; the errors passed through keep their own.
impl From<WriteError> for CliError {
    fn from(e: WriteError) -> Self {
        const IN_USE: &str = "unmount it, close its mapping (`tazpod close NAME`) or stop the \
                              program that holds it; /sys/class/block/<device>/holders lists \
                              device-mapper users";
        let (code, hint) = match e {
            WriteError::Passphrase(e) => return e.into(),
            WriteError::Device(e) => return e.into(),
            WriteError::Luks { shown, error } => return CliError::luks(&shown, error),
            WriteError::OpenForWrite { .. } | WriteError::Size { .. } => (code::DEVICE, None),
            WriteError::Write { .. } => (
                code::DEVICE,
                Some("the header keeps its previous or its new state; check it with `tazpod dump`"),
            ),
            WriteError::InUseWithSignature { .. } => (code::INVALID, Some(IN_USE)),
            WriteError::InUse { .. } => (code::BUSY, Some(IN_USE)),
            WriteError::NoTerminal { .. } => (code::INVALID, Some("add --batch-mode to confirm")),
            WriteError::Aborted | WriteError::LastKeyslotKept | WriteError::Mismatch => {
                (code::PERMISSION, None)
            }
            WriteError::EmptyNewKeyFile { .. } => (
                code::INVALID,
                Some("a new key needs at least one byte; check the file"),
            ),
            WriteError::EssivWhirlpool { .. } => (
                code::INVALID,
                Some("use another ESSIV hash (essiv:sha256) or plain64"),
            ),
            WriteError::Argon2Benchmark(KdfError::OutOfMemory { .. })
            | WriteError::Format {
                error: FormatError::Kdf(KdfError::OutOfMemory { .. }),
                ..
            } => (code::NOMEM, None),
            WriteError::Answer(_)
            | WriteError::NewPassphraseStdin(_)
            | WriteError::NewPassphraseTooLong
            | WriteError::Prompt(_)
            | WriteError::PromptTooLong
            | WriteError::Pbkdf2Benchmark { .. }
            | WriteError::Argon2Benchmark(_)
            | WriteError::UnknownHash { .. }
            | WriteError::UnknownPbkdf { .. }
            | WriteError::Type { .. }
            | WriteError::KeySize { .. }
            | WriteError::Cipher { .. }
            | WriteError::Random(_)
            | WriteError::Format { .. }
            | WriteError::Luks1 { .. }
            | WriteError::SlotNotInUse { .. } => (code::INVALID, None),
        };
        CliError::typed(code, &e, hint)
    }
}

/// A vault that cannot be created (or replaced) as asked: exit 2 for a vault the caller may
/// not write, 5 for one in use (session lock, a session, a loop device), else 1; the writer's
/// errors keep their own.
impl From<CreateError> for CliError {
    fn from(e: CreateError) -> Self {
        let (code, hint) = match e {
            CreateError::Write(e) => return e.into(),
            CreateError::SizeNotAligned { .. } => {
                (code::INVALID, Some("give it in K, M or G, such as 512M"))
            }
            CreateError::NoMkfs => (
                code::INVALID,
                Some(
                    "install e2fsprogs (apt-get install e2fsprogs, dnf install e2fsprogs, apk \
                     add e2fsprogs); nothing was created",
                ),
            ),
            CreateError::PipedPassphrase { .. } => (
                code::INVALID,
                Some(
                    "run it on a terminal, or give the new vault's key with --key-file FILE \
                     (--key-file - reads it from standard input); nothing was created",
                ),
            ),
            CreateError::NotWritable { .. } => (
                code::PERMISSION,
                Some("tazpod init --force replaces only a vault the user who runs it may write"),
            ),
            CreateError::Unlocked { .. } => (
                code::BUSY,
                Some(
                    "exit the session's shells (or `tazpod lock` in it) first; nothing was \
                     changed",
                ),
            ),
            CreateError::Attached { .. } => (
                code::BUSY,
                Some(
                    "close what maps it (`tazpod close NAME`, `cryptsetup close NAME`) first; \
                     nothing was changed",
                ),
            ),
            CreateError::SessionLock(_) => (code::BUSY, None),
            CreateError::TooSmall { .. }
            | CreateError::NoTerminal
            | CreateError::NotAFile { .. } => (code::INVALID, None),
        };
        CliError::typed(code, &e, hint)
    }
}

/// Who ran tazpod, or the session user, that cannot be told or is refused: exit 2 for a
/// session user the caller may not choose, else 1.
impl From<CallerError> for CliError {
    fn from(e: CallerError) -> Self {
        const USER: &str = "pass --user USER|UID, or set `user` in the config";
        let (code, hint) = match &e {
            CallerError::Unknown(_) => (code::INVALID, Some("run tazpod through sudo, or as root")),
            CallerError::CallerNoPasswd { .. } => (
                code::INVALID,
                Some("add the user to /etc/passwd (or the user database) first"),
            ),
            CallerError::PolicyUntrusted { .. } => (
                code::INVALID,
                Some("make it (and its directory) owned by root and writable by root only"),
            ),
            CallerError::PolicyParse { .. } => (
                code::INVALID,
                Some("fix the file (see docs/threat-model.md)"),
            ),
            // The path is `ghost::caller::POLICY_FILE` (the conversion test checks it).
            CallerError::NotAllowed { .. } => (
                code::PERMISSION,
                Some(
                    "drop --user (and `user` from the config), or ask an administrator to allow \
                     it in /etc/tazpod/policy.toml",
                ),
            ),
            CallerError::NoPasswd { .. } => (
                code::INVALID,
                Some("add the user first, or pass --user with an existing user"),
            ),
            CallerError::NoDefaultUser | CallerError::UserNotFound { .. } | CallerError::Root => {
                (code::INVALID, Some(USER))
            }
            CallerError::CallerLookup { .. }
            | CallerError::Rights { .. }
            | CallerError::UserLookup { .. }
            | CallerError::ReadConfig { .. } => (code::INVALID, None),
        };
        CliError::typed(code, &e, hint)
    }
}

/// A vault the caller cannot open: exit 4, with what the caller's rights must allow.
impl From<OpenError> for CliError {
    fn from(e: OpenError) -> Self {
        let hint = match &e {
            OpenError::Open { how, .. } => Some(format!(
                "the vault is opened with the rights of the user who ran tazpod: that user must \
                 be able to {how} it"
            )),
            OpenError::BlockNotWritable { .. } => {
                Some("a block device is a vault only for a user who may write it".to_string())
            }
            OpenError::Stat { .. } | OpenError::NotAFile { .. } => None,
        };
        CliError::typed(code::DEVICE, &e, hint.as_deref())
    }
}

/// A ghost session that cannot start: each step's error as it says; a vault in another
/// user's session or a session lock that cannot be taken is busy (exit 5).
impl From<StartError> for CliError {
    fn from(e: StartError) -> Self {
        let (code, hint) = match e {
            StartError::Caller(e) => return e.into(),
            StartError::Config(e) => return e.into(),
            StartError::Open(e) => return e.into(),
            StartError::Create(e) => return e.into(),
            StartError::NewPassphrase(e) => return e.into(),
            StartError::Preflight(e) => return e.into(),
            StartError::Device(e) => return e.into(),
            StartError::Unlock(e) => return e.into(),
            StartError::UnlockAsCaller(e) => return e.into(),
            StartError::ReadonlyCreate { .. } => (
                code::INVALID,
                Some("drop --readonly to create it, or check the vault path; nothing was created"),
            ),
            StartError::Stat { .. } => (code::DEVICE, None),
            StartError::SessionLock(_) => (code::BUSY, None),
            StartError::OtherUser { .. } => (code::BUSY, Some("wait until that session ends")),
        };
        CliError::typed(code, &e, hint)
    }
}

/// The exit code of a failed host step (cryptsetup's meaning of its errno): a busy device 5,
/// a missing one 4, anything else 1.
pub fn host_exit_code(e: &HostError) -> u8 {
    use std::io::ErrorKind as K;
    match (e.source.raw_os_error(), e.source.kind()) {
        (Some(libc::EBUSY) | Some(libc::EEXIST), _) => code::BUSY,
        (Some(libc::ENOENT) | Some(libc::ENXIO) | Some(libc::ENODEV), _) => code::DEVICE,
        (Some(_), _) => code::INVALID,
        (None, K::ResourceBusy | K::AlreadyExists) => code::BUSY,
        (None, K::NotFound) => code::DEVICE,
        (None, K::PermissionDenied) => code::PERMISSION,
        (None, K::OutOfMemory) => code::NOMEM,
        (None, _) => code::INVALID,
    }
}

/// A failed ghost-session step as the CLI reports it: its exit code and its text
/// ("op target: cause"). A step that failed in the header writer (formatting a new vault)
/// carries the [`WriteError`]: its code, message and hint are the writer's, as for `format`.
pub fn host_failure(e: HostError) -> (u8, String) {
    if !e.source.get_ref().is_some_and(|r| r.is::<WriteError>()) {
        return (host_exit_code(&e), e.to_string());
    }
    let HostError { op, target, source } = e;
    match source.into_inner().map(|b| b.downcast::<WriteError>()) {
        Some(Ok(w)) => {
            let c = CliError::from(*w);
            let cause = match c.hint {
                Some(h) => format!("{} ({h})", c.message),
                None => c.message,
            };
            let step = HostError::new(op, target, std::io::Error::other(cause));
            (c.code, step.to_string())
        }
        // Not reached (checked above); reported as it is.
        Some(Err(b)) => {
            let step = HostError::new(op, target, std::io::Error::other(b));
            (host_exit_code(&step), step.to_string())
        }
        None => (code::INVALID, format!("{op} {target}")),
    }
}

/// A process `tazpod lock` may not end: exit 1.
impl From<LockTargetError> for CliError {
    fn from(e: LockTargetError) -> Self {
        CliError::typed(
            code::INVALID,
            &e,
            Some("exit the session shell to lock the vault"),
        )
    }
}

/// tazpod that cannot run itself again as root: exit 1, with what to try instead.
impl From<SudoError> for CliError {
    fn from(e: SudoError) -> Self {
        let hint = match &e {
            SudoError::CurrentExe(_) => None,
            SudoError::Exec { .. } if e.tool_not_found() => {
                Some("run it as root, install sudo, or name another tool with --sudo-command")
            }
            SudoError::Exec { .. } => {
                Some("run it as root, or name an installed tool on PATH with --sudo-command")
            }
        };
        CliError::typed(code::INVALID, &e, hint)
    }
}

/// The caller's rights that cannot be taken, or what failed with them, as each says.
impl<E> From<WithRights<E>> for CliError
where
    CliError: From<E>,
{
    fn from(e: WithRights<E>) -> Self {
        match e {
            WithRights::Rights(e) => e.into(),
            WithRights::Failed(e) => e.into(),
        }
    }
}

/// A configuration that cannot be loaded: exit 1 (a file that does not parse: fix or remove
/// it); the reader's error as it says.
impl<E> From<LoadError<E>> for CliError
where
    CliError: From<E>,
    E: fmt::Display,
{
    fn from(e: LoadError<E>) -> Self {
        match e {
            LoadError::Read(e) => e.into(),
            LoadError::Parse(e) => {
                CliError::typed(code::INVALID, &e, Some("fix or remove the file"))
            }
            LoadError::NotFound { .. } => CliError::typed(code::INVALID, &e, None),
        }
    }
}

#[cfg(test)]
pub mod testing {
    use super::CliError;
    use std::io;

    /// An I/O error to put in an error under test.
    pub fn denied() -> io::Error {
        io::Error::from(io::ErrorKind::PermissionDenied)
    }

    /// Checks that each error becomes a [`CliError`] with its exit code, message and hint.
    pub fn assert_converts<E>(rows: Vec<(E, u8, String, Option<&str>)>)
    where
        CliError: From<E>,
    {
        for (e, exit, message, hint) in rows {
            let e = CliError::from(e);
            assert_eq!(e.code, exit, "{message}");
            assert_eq!(e.message, message);
            assert_eq!(e.hint.as_deref(), hint, "{message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// A formatting step keeps the writer's error: its exit code, message and hint, as
    /// `tazpod format` gives them; any other step's code comes from its errno or kind.
    #[test]
    fn host_failures_keep_their_cause() {
        let format = |w: WriteError| HostError::new("format", "/v.img", io::Error::other(w));
        let (c, text) = host_failure(format(WriteError::InUse {
            path: "/v.img".into(),
        }));
        assert_eq!(c, code::BUSY);
        assert!(
            text.starts_with("format /v.img: cannot use device /v.img which is in use")
                && text.ends_with("device-mapper users)"),
            "{text}"
        );
        let (c, text) = host_failure(format(WriteError::Aborted));
        assert_eq!(
            (c, text.as_str()),
            (code::PERMISSION, "format /v.img: operation aborted")
        );
        let (c, text) = host_failure(format(WriteError::Argon2Benchmark(KdfError::OutOfMemory {
            required_kib: 1 << 20,
        })));
        assert_eq!(c, code::NOMEM, "{text}");
        let busy = HostError::new(
            "mount ext4",
            "/m",
            io::Error::from_raw_os_error(libc::EBUSY),
        );
        assert_eq!(host_failure(busy).0, code::BUSY);
        let other = HostError::new("format", "/v.img", io::Error::other("no image"));
        assert_eq!(
            host_failure(other),
            (code::INVALID, "format /v.img: no image".to_string())
        );
    }
}
