//! Why a ghost session could not start (before the session engine ran): the messages are in
//! `Display`; `crate::error` gives the exit codes and hints. A leaf module, so that
//! `crate::error` can import it.

use crate::config::LoadError;
use crate::device::DeviceError;
use crate::ghost::caller::error::{CallerError, WithRights};
use crate::ghost::create::error::CreateError;
use crate::passphrase::TryError;
use crate::preflight::PreflightError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// A vault that cannot be opened as the caller.
#[derive(Debug)]
pub enum OpenError {
    /// The caller may not open it (`how`: "read" or "read and write").
    Open {
        shown: String,
        how: &'static str,
        error: io::Error,
    },
    /// Its descriptor cannot be looked at.
    Stat { shown: String, error: io::Error },
    /// A block device the caller may not write.
    BlockNotWritable { shown: String, error: io::Error },
    /// Neither a regular file nor a block device.
    NotAFile { shown: String },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Open { shown, error, .. } => {
                write!(f, "cannot open the vault {shown}: {error}")
            }
            OpenError::Stat { shown, error } => write!(f, "cannot stat {shown}: {error}"),
            OpenError::BlockNotWritable { shown, error } => {
                write!(f, "cannot use the block device {shown} as a vault: {error}")
            }
            OpenError::NotAFile { shown } => {
                write!(f, "the vault {shown} is not a regular file or block device")
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// Why `unlock` could not start a session.
#[derive(Debug)]
pub enum StartError {
    /// Who is calling, or the session user.
    Caller(CallerError),
    /// The configuration.
    Config(LoadError<CallerError>),
    /// Opening the vault as the caller.
    Open(WithRights<OpenError>),
    /// A missing vault and `--readonly`.
    ReadonlyCreate { vault: PathBuf },
    /// The checks before creating a missing vault.
    Create(CreateError),
    /// The new vault's passphrase (read with the caller's rights).
    NewPassphrase(WithRights<CreateError>),
    /// The kernel or the system cannot map a vault.
    Preflight(PreflightError),
    /// The metadata lock.
    Device(DeviceError),
    /// The header, the passphrase tries, the volume.
    Unlock(TryError),
    /// The passphrase tries, run with the caller's rights (the key file is theirs).
    UnlockAsCaller(WithRights<TryError>),
    /// The unlocked vault's descriptor cannot be looked at.
    Stat { shown: String, error: io::Error },
    /// The session lock.
    SessionLock(io::Error),
    /// The vault is in a session of another user.
    OtherUser { shown: String, uid: u32 },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Caller(e) => e.fmt(f),
            StartError::Config(e) => e.fmt(f),
            StartError::Open(e) => e.fmt(f),
            StartError::ReadonlyCreate { vault } => write!(
                f,
                "{} does not exist, and a new vault cannot be created read-only",
                vault.display()
            ),
            StartError::Create(e) => e.fmt(f),
            StartError::NewPassphrase(e) => e.fmt(f),
            StartError::Preflight(e) => e.fmt(f),
            StartError::Device(e) => e.fmt(f),
            StartError::Unlock(e) => e.fmt(f),
            StartError::UnlockAsCaller(e) => e.fmt(f),
            StartError::Stat { shown, error } => write!(f, "cannot stat {shown}: {error}"),
            StartError::SessionLock(e) => write!(
                f,
                "cannot take the session lock in {}: {e}",
                crate::ghost::lock::RUNTIME_DIR
            ),
            StartError::OtherUser { shown, uid } => write!(
                f,
                "{shown} is unlocked in a ghost session of another user (uid {uid}); a session \
                 is joined only by its own user"
            ),
        }
    }
}

impl std::error::Error for StartError {}

macro_rules! from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for StartError {
            fn from(e: $t) -> Self {
                StartError::$v(e)
            }
        }
    )*};
}
from!(CallerError => Caller, LoadError<CallerError> => Config, WithRights<OpenError> => Open,
      CreateError => Create, WithRights<CreateError> => NewPassphrase,
      PreflightError => Preflight, DeviceError => Device, TryError => Unlock,
      WithRights<TryError> => UnlockAsCaller);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::testing::{assert_converts, denied};
    use crate::error::{code, CliError};

    #[test]
    fn open_errors_convert() {
        let d = denied();
        let shown = || "/v.img".to_string();
        assert_converts(vec![
            (
                OpenError::Open {
                    shown: shown(),
                    how: "read and write",
                    error: denied(),
                },
                code::DEVICE,
                format!("cannot open the vault /v.img: {d}"),
                Some(
                    "the vault is opened with the rights of the user who ran tazpod: that user \
                     must be able to read and write it",
                ),
            ),
            (
                OpenError::Stat {
                    shown: shown(),
                    error: denied(),
                },
                code::DEVICE,
                format!("cannot stat /v.img: {d}"),
                None,
            ),
            (
                OpenError::BlockNotWritable {
                    shown: shown(),
                    error: denied(),
                },
                code::DEVICE,
                format!("cannot use the block device /v.img as a vault: {d}"),
                Some("a block device is a vault only for a user who may write it"),
            ),
            (
                OpenError::NotAFile { shown: shown() },
                code::DEVICE,
                "the vault /v.img is not a regular file or block device".into(),
                None,
            ),
        ]);
    }

    #[test]
    fn start_errors_convert() {
        let d = denied();
        assert_converts(vec![
            (
                StartError::ReadonlyCreate {
                    vault: "/v.img".into(),
                },
                code::INVALID,
                "/v.img does not exist, and a new vault cannot be created read-only".into(),
                Some("drop --readonly to create it, or check the vault path; nothing was created"),
            ),
            (
                StartError::Stat {
                    shown: "/v.img".into(),
                    error: denied(),
                },
                code::DEVICE,
                format!("cannot stat /v.img: {d}"),
                None,
            ),
            (
                StartError::SessionLock(denied()),
                code::BUSY,
                format!("cannot take the session lock in /run/tazpod: {d}"),
                None,
            ),
            (
                StartError::OtherUser {
                    shown: "/v.img".into(),
                    uid: 1001,
                },
                code::BUSY,
                "/v.img is unlocked in a ghost session of another user (uid 1001); a session is \
                 joined only by its own user"
                    .into(),
                Some("wait until that session ends"),
            ),
        ]);
        // The steps' own errors keep their code, message and hint.
        let same = |e: StartError, inner: CliError| {
            let e = CliError::from(e);
            assert_eq!(
                (e.code, e.message, e.hint),
                (inner.code, inner.message, inner.hint)
            );
        };
        same(
            StartError::Caller(CallerError::Root),
            CallerError::Root.into(),
        );
        same(
            StartError::Create(CreateError::NoTerminal),
            CreateError::NoTerminal.into(),
        );
        same(
            StartError::Open(WithRights::Failed(OpenError::NotAFile {
                shown: "/v".into(),
            })),
            OpenError::NotAFile { shown: "/v".into() }.into(),
        );
    }
}
