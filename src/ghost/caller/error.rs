//! What [`super`] reports: who the caller is cannot be told, a user cannot be looked up or may
//! not be the session user, the policy file cannot be trusted or parsed, the caller's rights
//! cannot be taken, a config file cannot be read with them. The messages are in `Display`;
//! `crate::error` gives the exit codes and hints. A leaf module, so that `crate::error` can
//! name these types without importing the caller module (which imports the host's types).

use crate::config::{UserSpec, DEFAULT_UID, DEFAULT_USER};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// An error of the caller module.
#[derive(Debug)]
pub enum CallerError {
    /// The real ids and sudo's variables do not say who the caller is (`why`).
    Unknown(String),
    /// The passwd database cannot be read for the caller's `uid`.
    CallerLookup { uid: u32, error: io::Error },
    /// The caller's `uid` has no passwd entry.
    CallerNoPasswd { uid: u32 },
    /// The filesystem rights of `user` cannot be taken.
    Rights { user: String, error: io::Error },
    /// The policy file at `path` cannot be trusted.
    PolicyUntrusted { path: PathBuf, why: Untrusted },
    /// The policy file at `path` does not parse (`error` gives line and column, never a line
    /// of the file).
    PolicyParse { path: PathBuf, error: String },
    /// `caller` (uid `uid`) asked for the session user `requested`, which the policy does not
    /// allow.
    NotAllowed {
        requested: UserSpec,
        caller: String,
        uid: u32,
    },
    /// The passwd database cannot be read for the user `spec`.
    UserLookup { spec: UserSpec, error: io::Error },
    /// The session user's `uid` has no passwd entry.
    NoPasswd { uid: u32 },
    /// No session user named, and neither TazPod's user nor its uid exist.
    NoDefaultUser,
    /// The session user `name` does not exist.
    UserNotFound { name: String },
    /// The session user is root.
    Root,
    /// The config file at `path` cannot be read.
    ReadConfig { path: PathBuf, error: io::Error },
}

/// Why the policy file cannot be trusted.
#[derive(Debug)]
pub enum Untrusted {
    /// It cannot be opened.
    Open(io::Error),
    /// Its metadata, its directory's or its text cannot be read.
    Io(io::Error),
    /// It is not a regular file.
    NotAFile,
    /// Its owner or mode (`super::trusted`'s answer).
    File(String),
    /// Its directory's owner or mode.
    Dir(String),
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::Open(e) => write!(f, "cannot open it: {e}"),
            Untrusted::Io(e) => e.fmt(f),
            Untrusted::NotAFile => f.write_str("it is not a regular file"),
            Untrusted::File(why) => f.write_str(why),
            Untrusted::Dir(why) => write!(f, "its directory: {why}"),
        }
    }
}

impl fmt::Display for CallerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallerError::Unknown(why) => write!(f, "cannot tell who ran tazpod: {why}"),
            CallerError::CallerLookup { uid, error } => {
                write!(f, "cannot look up uid {uid}: {error}")
            }
            CallerError::CallerNoPasswd { uid } => write!(
                f,
                "uid {uid}, who ran tazpod, has no passwd entry: no session for it"
            ),
            CallerError::Rights { user, error } => {
                write!(f, "cannot take the filesystem rights of {user}: {error}")
            }
            CallerError::PolicyUntrusted { path, why } => write!(
                f,
                "the tazpod policy {} cannot be trusted: {why}",
                path.display()
            ),
            CallerError::PolicyParse { path, error } => {
                write!(f, "the tazpod policy {}: {error}", path.display())
            }
            CallerError::NotAllowed {
                requested,
                caller,
                uid,
            } => write!(
                f,
                "user {requested}: {caller} (uid {uid}) may run a ghost session only as \
                 themselves"
            ),
            CallerError::UserLookup { spec, error } => {
                write!(f, "cannot look up user {spec}: {error}")
            }
            CallerError::NoPasswd { uid } => {
                write!(f, "uid {uid} has no passwd entry: no session for it")
            }
            CallerError::NoDefaultUser => write!(
                f,
                "no session user: user '{DEFAULT_USER}' and uid {DEFAULT_UID} do not exist"
            ),
            CallerError::UserNotFound { name } => write!(f, "user '{name}' not found"),
            CallerError::Root => {
                f.write_str("the session shell runs as an unprivileged user; uid 0 is refused")
            }
            CallerError::ReadConfig { path, error } => {
                write!(f, "cannot read config {}: {error}", path.display())
            }
        }
    }
}

/// What [`super::Caller::with_rights`] returns on failure: the caller's rights could not be
/// taken, or the function run with them failed.
#[derive(Debug)]
pub enum WithRights<E> {
    /// The rights could not be taken ([`CallerError::Rights`]).
    Rights(CallerError),
    /// The function failed.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for WithRights<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WithRights::Rights(e) => e.fmt(f),
            WithRights::Failed(e) => e.fmt(f),
        }
    }
}
