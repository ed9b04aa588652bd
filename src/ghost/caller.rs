//! Who is asking, as the root side of `unlock` and `init` sees it: the caller's identity comes
//! from the kernel and from sudo, never from the command line; the session user is the caller
//! unless the caller is real root or a root-owned policy file allows another user.
//!
//! - Run by sudo (real uid 0, `SUDO_UID` set and not 0): the caller is `SUDO_UID`, with
//!   `SUDO_GID` as primary group. sudo sets both itself; a sudoers rule that lets the user set
//!   environment variables (`SETENV`, `env_keep += SUDO_*`) would let them lie, and is as good
//!   as root anyway (it lets them set `LD_PRELOAD` too).
//! - Real uid not 0 (a set-uid install): the real uid and gid.
//! - Real root (no `SUDO_UID`, or `SUDO_UID=0`): root, who may name any session user.
//!
//! A non-root caller must have a passwd entry. Every path such a caller names is opened with
//! the caller's filesystem rights ([`Caller::rights`]).

pub mod error;

pub use error::{CallerError, Untrusted, WithRights};

use super::host::Identity;
use crate::config::{
    self, toml_error, ConfigFile, ConfigReader, LoadError, UserSpec, DEFAULT_UID, DEFAULT_USER,
};
use crate::kernel::privs::{self, FsIdentity};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The root-owned file that lets callers choose another session user.
pub const POLICY_FILE: &str = "/etc/tazpod/policy.toml";

/// The user who asked for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `None` for real root; else the caller's passwd identity (its `gid` is the primary
    /// group sudo reported, its `groups` include it).
    pub user: Option<Identity>,
}

/// The caller's uid and gid from the real ids and sudo's variables (pure, for tests).
/// `Ok(None)` is real root.
pub fn caller_ids(
    ruid: u32,
    rgid: u32,
    sudo_uid: Option<&str>,
    sudo_gid: Option<&str>,
) -> Result<Option<(u32, u32)>, String> {
    if ruid != 0 {
        return Ok(Some((ruid, rgid)));
    }
    let Some(u) = sudo_uid else {
        return Ok(None);
    };
    let uid: u32 = u
        .trim()
        .parse()
        .map_err(|_| format!("SUDO_UID={u:?} is not a user id"))?;
    if uid == 0 {
        return Ok(None);
    }
    let gid: u32 = match sudo_gid {
        Some(g) => g
            .trim()
            .parse()
            .map_err(|_| format!("SUDO_GID={g:?} is not a group id"))?,
        None => return Err("SUDO_UID is set but SUDO_GID is not".into()),
    };
    Ok(Some((uid, gid)))
}

impl Caller {
    /// The caller of this process (see the module documentation).
    pub fn current() -> Result<Caller, CallerError> {
        let var = |n: &str| std::env::var_os(n).map(|v| v.to_string_lossy().into_owned());
        let ids = caller_ids(
            privs::getuid(),
            privs::getgid(),
            var("SUDO_UID").as_deref(),
            var("SUDO_GID").as_deref(),
        )
        .map_err(CallerError::Unknown)?;
        let Some((uid, gid)) = ids else {
            return Ok(Caller { user: None });
        };
        let pw = privs::user_by_uid(uid)
            .map_err(|error| CallerError::CallerLookup { uid, error })?
            .ok_or(CallerError::CallerNoPasswd { uid })?;
        let mut groups = privs::group_list(&pw.name, gid).unwrap_or_else(|_| vec![gid]);
        if !groups.contains(&gid) {
            groups.push(gid);
        }
        Ok(Caller {
            user: Some(Identity {
                name: pw.name,
                uid,
                gid,
                groups,
                home: pw.home,
                shell: pw.shell,
            }),
        })
    }

    /// Real root.
    pub fn root() -> Caller {
        Caller { user: None }
    }

    /// The identity whose filesystem rights open what the caller names (`None`: root's).
    pub fn rights(&self) -> Option<&Identity> {
        self.user.as_ref()
    }

    /// Switches this process's filesystem rights to the caller's until the guard drops (no-op
    /// for root, or when not running as root).
    pub fn become_fs(&self) -> Result<Option<FsIdentity>, CallerError> {
        match &self.user {
            Some(u) if privs::geteuid() == 0 => FsIdentity::switch(u.uid, u.gid, &u.groups)
                .map(Some)
                .map_err(|error| CallerError::Rights {
                    user: u.name.clone(),
                    error,
                }),
            _ => Ok(None),
        }
    }

    /// Runs `f` with the caller's filesystem rights.
    pub fn with_rights<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, WithRights<E>> {
        let _guard = self.become_fs().map_err(WithRights::Rights)?;
        f().map_err(WithRights::Failed)
    }
}

/// One rule of the policy file: `caller` may run sessions as any of `users`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// A user name or uid.
    pub caller: String,
    /// User names or uids.
    pub users: Vec<String>,
}

/// `/etc/tazpod/policy.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The rules.
    #[serde(default)]
    pub allow: Vec<Allow>,
}

fn names(spec: &str, id: &Identity) -> bool {
    spec == id.name || spec.parse::<u32>().is_ok_and(|u| u == id.uid)
}

/// Whether a policy file (or its directory) with this owner and mode may be trusted: owned
/// by root, writable by nobody else.
pub fn trusted(uid: u32, mode: u32) -> Result<(), String> {
    if uid != 0 {
        return Err(format!("it is owned by uid {uid}, not by root"));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "it is writable by its group or others (mode {:o})",
            mode & 0o7777
        ));
    }
    Ok(())
}

impl Policy {
    /// Parses the policy text (errors give line and column, never a line of the file).
    pub fn parse(text: &str) -> Result<Policy, String> {
        toml::from_str(text).map_err(|e| toml_error(text, &e))
    }

    /// Whether `caller` may run a session as `target`.
    pub fn allows(&self, caller: &Identity, target: &Identity) -> bool {
        self.allow
            .iter()
            .any(|a| names(&a.caller, caller) && a.users.iter().any(|u| names(u, target)))
    }

    /// Reads the policy file at `path` (as root). A missing file allows nothing; a file that
    /// is not root's, or writable by others, or in such a directory, is refused.
    pub fn load(path: &Path) -> Result<Policy, CallerError> {
        let bad = |why: Untrusted| CallerError::PolicyUntrusted {
            path: path.to_path_buf(),
            why,
        };
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Policy::default()),
            Err(e) => return Err(bad(Untrusted::Open(e))),
        };
        let m = f.metadata().map_err(|e| bad(Untrusted::Io(e)))?;
        if !m.file_type().is_file() {
            return Err(bad(Untrusted::NotAFile));
        }
        trusted(m.uid(), m.mode()).map_err(|w| bad(Untrusted::File(w)))?;
        if let Some(dir) = path.parent() {
            let d = std::fs::symlink_metadata(dir).map_err(|e| bad(Untrusted::Io(e)))?;
            trusted(d.uid(), d.mode()).map_err(|w| bad(Untrusted::Dir(w)))?;
        }
        let mut text = String::new();
        f.take(1 << 20)
            .read_to_string(&mut text)
            .map_err(|e| bad(Untrusted::Io(e)))?;
        Policy::parse(&text).map_err(|error| CallerError::PolicyParse {
            path: path.to_path_buf(),
            error,
        })
    }
}

/// The session user. Real root gets `requested` (or TazPod's default user); anyone else gets
/// themselves, or `requested` when it names them, or another user only if `policy` allows it.
pub fn session_user(
    caller: &Caller,
    requested: Option<&UserSpec>,
    policy: impl FnOnce() -> Result<Policy, CallerError>,
) -> Result<Identity, CallerError> {
    let Some(me) = &caller.user else {
        return root_session_user(requested, None);
    };
    let Some(spec) = requested else {
        return Ok(me.clone());
    };
    let asks_me = match spec {
        UserSpec::Name(n) => *n == me.name,
        UserSpec::Uid(u) => *u == me.uid,
    };
    if asks_me {
        return Ok(me.clone());
    }
    let target = resolve_identity(spec, false)?;
    if target.uid == me.uid {
        return Ok(me.clone());
    }
    if policy()?.allows(me, &target) {
        return Ok(target);
    }
    Err(CallerError::NotAllowed {
        requested: spec.clone(),
        caller: me.name.clone(),
        uid: me.uid,
    })
}

/// The session user as real root chooses it: `--user` / the config's, else `invoker`, else
/// TazPod's (the rules for other callers are in [`session_user`]).
pub fn root_session_user(
    configured: Option<&UserSpec>,
    invoker: Option<u32>,
) -> Result<Identity, CallerError> {
    let (spec, defaulted) = match (configured, invoker) {
        (Some(u), _) => (u.clone(), false),
        (None, Some(uid)) => (UserSpec::Uid(uid), false),
        (None, None) => (UserSpec::Name(DEFAULT_USER.into()), true),
    };
    resolve_identity(&spec, defaulted)
}

/// Resolves the session user; refuses uid 0.
pub fn resolve_identity(spec: &UserSpec, defaulted: bool) -> Result<Identity, CallerError> {
    let lookup_err = |error: io::Error| CallerError::UserLookup {
        spec: spec.clone(),
        error,
    };
    let pw = match spec {
        UserSpec::Name(n) => privs::user_by_name(n).map_err(lookup_err)?,
        UserSpec::Uid(u) => privs::user_by_uid(*u).map_err(lookup_err)?,
    };
    let pw = match (pw, spec) {
        (Some(pw), _) => pw,
        (None, UserSpec::Uid(u)) => return Err(CallerError::NoPasswd { uid: *u }),
        (None, UserSpec::Name(_)) if defaulted => privs::user_by_uid(DEFAULT_UID)
            .map_err(lookup_err)?
            .ok_or(CallerError::NoDefaultUser)?,
        (None, UserSpec::Name(n)) => return Err(CallerError::UserNotFound { name: n.clone() }),
    };
    if pw.uid == 0 {
        return Err(CallerError::Root);
    }
    let groups = privs::group_list(&pw.name, pw.gid).unwrap_or_else(|_| vec![pw.gid]);
    Ok(Identity {
        name: pw.name,
        uid: pw.uid,
        gid: pw.gid,
        groups,
        home: pw.home,
        shell: pw.shell,
    })
}

impl ConfigReader for Caller {
    type Error = CallerError;

    fn read_text(&self, path: &Path) -> Result<Option<String>, CallerError> {
        let _guard = self.become_fs()?;
        let read = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .and_then(|f| {
                if !f.metadata()?.is_file() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "not a regular file",
                    ));
                }
                let mut t = String::new();
                f.take(1 << 20).read_to_string(&mut t)?;
                Ok(t)
            });
        match read {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(CallerError::ReadConfig {
                path: path.to_path_buf(),
                error,
            }),
        }
    }

    /// The caller's home; for root, `$HOME`.
    fn home(&self) -> Option<PathBuf> {
        match self.rights() {
            Some(u) => Some(u.home.clone()),
            None => std::env::var_os("HOME").map(PathBuf::from),
        }
    }
}

/// The configuration as `caller` may read it: the system file with root's rights, the
/// user's (or `explicit`) with the caller's.
pub fn load_config(
    explicit: Option<&Path>,
    caller: &Caller,
) -> Result<ConfigFile, LoadError<CallerError>> {
    config::load(explicit, &Caller::root(), caller)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::testing::{assert_converts, denied};
    use crate::error::{code, CliError};

    fn id(name: &str, uid: u32) -> Identity {
        Identity {
            name: name.into(),
            uid,
            gid: uid,
            groups: vec![uid],
            home: format!("/home/{name}").into(),
            shell: "/bin/sh".into(),
        }
    }

    #[test]
    fn caller_comes_from_the_real_uid_and_sudo_only() {
        // not root: the real ids, whatever the environment says
        assert_eq!(
            caller_ids(1000, 1000, Some("0"), Some("0")),
            Ok(Some((1000, 1000)))
        );
        assert_eq!(caller_ids(1000, 100, None, None), Ok(Some((1000, 100))));
        // root through sudo: sudo's ids
        assert_eq!(
            caller_ids(0, 0, Some("1000"), Some("1000")),
            Ok(Some((1000, 1000)))
        );
        // real root
        assert_eq!(caller_ids(0, 0, None, None), Ok(None));
        assert_eq!(caller_ids(0, 0, Some("0"), Some("0")), Ok(None));
        // garbage is refused, not taken for root
        assert!(caller_ids(0, 0, Some("x"), Some("1000")).is_err());
        assert!(caller_ids(0, 0, Some("1000"), None).is_err());
        assert!(caller_ids(0, 0, Some("1000"), Some("-1")).is_err());
    }

    #[test]
    fn a_non_root_caller_is_the_session_user() {
        let me = Caller {
            user: Some(id("alice", 1000)),
        };
        let no_policy = || -> Result<Policy, CallerError> { Ok(Policy::default()) };
        assert_eq!(session_user(&me, None, no_policy).unwrap().uid, 1000);
        let same = UserSpec::Name("alice".into());
        assert_eq!(session_user(&me, Some(&same), no_policy).unwrap().uid, 1000);
        assert_eq!(
            session_user(&me, Some(&UserSpec::Uid(1000)), no_policy)
                .unwrap()
                .uid,
            1000
        );
        // another user (root's "nobody" exists everywhere), an unknown uid, root: refused
        for other in [
            UserSpec::Name("nobody".into()),
            UserSpec::Uid(54321),
            UserSpec::Uid(42),
            UserSpec::Uid(0),
        ] {
            assert!(
                session_user(&me, Some(&other), no_policy).is_err(),
                "{other}"
            );
        }
        let e = session_user(&me, Some(&UserSpec::Name("nobody".into())), no_policy).unwrap_err();
        let e = CliError::from(e);
        assert_eq!(e.code, code::PERMISSION);
        assert!(e.message.contains("only as themselves"), "{}", e.message);
    }

    #[test]
    fn the_policy_can_allow_another_user() {
        let me = Caller {
            user: Some(id("alice", 1000)),
        };
        let p = Policy::parse("[[allow]]\ncaller = \"alice\"\nusers = [\"nobody\"]\n").unwrap();
        let nobody = privs::user_by_name("nobody").unwrap().unwrap();
        let pol = || Ok(p.clone());
        let got = session_user(&me, Some(&UserSpec::Name("nobody".into())), pol).unwrap();
        assert_eq!(got.uid, nobody.uid);
        // only for the caller it names
        let bob = Caller {
            user: Some(id("bob", 1001)),
        };
        assert!(session_user(&bob, Some(&UserSpec::Name("nobody".into())), pol).is_err());
        // by uid too
        let p2 = Policy::parse(&format!(
            "[[allow]]\ncaller = \"1001\"\nusers = [\"{}\"]\n",
            nobody.uid
        ))
        .unwrap();
        assert!(p2.allows(&id("bob", 1001), &id("nobody", nobody.uid)));
        assert!(!p2.allows(&id("bob", 1001), &id("carol", 1002)));
    }

    #[test]
    fn policy_file_must_be_roots_and_errors_quote_nothing() {
        assert!(trusted(0, 0o100644).is_ok());
        assert!(trusted(0, 0o040755).is_ok());
        assert!(trusted(1000, 0o100644).unwrap_err().contains("uid 1000"));
        assert!(trusted(0, 0o100664).unwrap_err().contains("writable"));
        assert!(trusted(0, 0o100646).unwrap_err().contains("writable"));
        let e = Policy::parse("[[allow]]\ncaller = \"a\"\nusers = [\"b\"]\nsecret-token-x = 1\n")
            .unwrap_err();
        assert!(e.contains("line 4"), "{e}");
        let e = Policy::parse("root:$6$secret-hash:1:2::\n").unwrap_err();
        assert!(!e.contains("secret-hash"), "{e}");
        // a missing file allows nothing
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            Policy::load(&d.path().join("none.toml")).unwrap(),
            Policy::default()
        );
        // a symbolic link is not followed
        let l = d.path().join("l.toml");
        std::os::unix::fs::symlink("/etc/passwd", &l).unwrap();
        assert!(Policy::load(&l).is_err());
    }

    #[test]
    fn identity_resolution() {
        let e = resolve_identity(&UserSpec::Uid(0), false).unwrap_err();
        assert!(matches!(e, CallerError::Root), "{e}");
        let e = resolve_identity(&UserSpec::Name("root".into()), false).unwrap_err();
        assert!(matches!(e, CallerError::Root), "{e}");
        let e = resolve_identity(&UserSpec::Name("no-such-user-x".into()), false).unwrap_err();
        assert!(matches!(e, CallerError::UserNotFound { .. }), "{e}");
        // no session for a uid without a passwd entry (it used to get gid = uid)
        let e = resolve_identity(&UserSpec::Uid(54321), false).unwrap_err();
        assert!(matches!(e, CallerError::NoPasswd { uid: 54321 }), "{e}");
        // the default user falls back to uid 1000, if it exists
        match resolve_identity(&UserSpec::Name("no-such-user-x".into()), true) {
            Ok(i) => assert_eq!(i.uid, DEFAULT_UID),
            Err(e) => assert!(matches!(e, CallerError::NoDefaultUser), "{e}"),
        }
    }

    #[test]
    fn caller_errors_convert() {
        let denied = denied();
        let user = Some("pass --user USER|UID, or set `user` in the config");
        let trust = Some("make it (and its directory) owned by root and writable by root only");
        let policy_hint = format!(
            "drop --user (and `user` from the config), or ask an administrator to allow it in \
             {POLICY_FILE}"
        );
        let untrusted = |why| CallerError::PolicyUntrusted {
            path: POLICY_FILE.into(),
            why,
        };
        let p = POLICY_FILE;
        assert_converts(vec![
            (
                CallerError::Unknown("SUDO_UID is set but SUDO_GID is not".into()),
                code::INVALID,
                "cannot tell who ran tazpod: SUDO_UID is set but SUDO_GID is not".into(),
                Some("run tazpod through sudo, or as root"),
            ),
            (
                CallerError::CallerLookup {
                    uid: 7,
                    error: crate::error::testing::denied(),
                },
                code::INVALID,
                format!("cannot look up uid 7: {denied}"),
                None,
            ),
            (
                CallerError::CallerNoPasswd { uid: 7 },
                code::INVALID,
                "uid 7, who ran tazpod, has no passwd entry: no session for it".into(),
                Some("add the user to /etc/passwd (or the user database) first"),
            ),
            (
                CallerError::Rights {
                    user: "alice".into(),
                    error: crate::error::testing::denied(),
                },
                code::INVALID,
                format!("cannot take the filesystem rights of alice: {denied}"),
                None,
            ),
            (
                untrusted(Untrusted::Open(crate::error::testing::denied())),
                code::INVALID,
                format!("the tazpod policy {p} cannot be trusted: cannot open it: {denied}"),
                trust,
            ),
            (
                untrusted(Untrusted::Io(crate::error::testing::denied())),
                code::INVALID,
                format!("the tazpod policy {p} cannot be trusted: {denied}"),
                trust,
            ),
            (
                untrusted(Untrusted::NotAFile),
                code::INVALID,
                format!("the tazpod policy {p} cannot be trusted: it is not a regular file"),
                trust,
            ),
            (
                untrusted(Untrusted::File(trusted(1000, 0o100644).unwrap_err())),
                code::INVALID,
                format!(
                    "the tazpod policy {p} cannot be trusted: it is owned by uid 1000, not by \
                     root"
                ),
                trust,
            ),
            (
                untrusted(Untrusted::Dir(trusted(0, 0o040777).unwrap_err())),
                code::INVALID,
                format!(
                    "the tazpod policy {p} cannot be trusted: its directory: it is writable by \
                     its group or others (mode 777)"
                ),
                trust,
            ),
            (
                CallerError::PolicyParse {
                    path: POLICY_FILE.into(),
                    error: "expected `=` (line 1, column 3)".into(),
                },
                code::INVALID,
                format!("the tazpod policy {p}: expected `=` (line 1, column 3)"),
                Some("fix the file (see docs/threat-model.md)"),
            ),
            (
                CallerError::UserLookup {
                    spec: UserSpec::Name("bob".into()),
                    error: crate::error::testing::denied(),
                },
                code::INVALID,
                format!("cannot look up user bob: {denied}"),
                None,
            ),
            (
                CallerError::NoPasswd { uid: 54321 },
                code::INVALID,
                "uid 54321 has no passwd entry: no session for it".into(),
                Some("add the user first, or pass --user with an existing user"),
            ),
            (
                CallerError::NoDefaultUser,
                code::INVALID,
                "no session user: user 'tazpod' and uid 1000 do not exist".into(),
                user,
            ),
            (
                CallerError::UserNotFound { name: "bob".into() },
                code::INVALID,
                "user 'bob' not found".into(),
                user,
            ),
            (
                CallerError::Root,
                code::INVALID,
                "the session shell runs as an unprivileged user; uid 0 is refused".into(),
                user,
            ),
            (
                CallerError::ReadConfig {
                    path: "/c.toml".into(),
                    error: crate::error::testing::denied(),
                },
                code::INVALID,
                format!("cannot read config /c.toml: {denied}"),
                None,
            ),
            (
                CallerError::NotAllowed {
                    requested: UserSpec::Uid(1001),
                    caller: "alice".into(),
                    uid: 1000,
                },
                code::PERMISSION,
                "user 1001: alice (uid 1000) may run a ghost session only as themselves".into(),
                Some(&policy_hint),
            ),
        ]);
        let rights = |e| WithRights::<CallerError>::Rights(e);
        assert_converts(vec![
            (
                rights(CallerError::Rights {
                    user: "alice".into(),
                    error: crate::error::testing::denied(),
                }),
                code::INVALID,
                format!("cannot take the filesystem rights of alice: {denied}"),
                None,
            ),
            (
                WithRights::Failed(CallerError::Root),
                code::INVALID,
                "the session shell runs as an unprivileged user; uid 0 is refused".into(),
                user,
            ),
        ]);
    }
}
