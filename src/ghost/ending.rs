//! Which shell `tazpod lock` may end: only the session shell of the caller's own session
//! (an ancestor of the caller, in the caller's mount namespace, which is not the host's,
//! owned by the caller). The refusal's message is in [`LockTargetError`]'s `Display`;
//! `crate::error` gives the exit code and hint.

use std::fmt;

/// The parent pid in a `/proc/<pid>/stat` line (the command name may hold spaces and
/// parentheses, so fields are counted after the last `)`).
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `target` is `start` or one of its ancestors, walking `ppid_of`.
pub fn is_ancestor(target: u32, start: u32, ppid_of: impl Fn(u32) -> Option<u32>) -> bool {
    let mut p = start;
    for _ in 0..256 {
        if p == target {
            return true;
        }
        match ppid_of(p) {
            Some(q) if q > 0 && q != p => p = q,
            _ => return false,
        }
    }
    false
}

/// What `tazpod lock` knows about the process `TAZPOD_SHELL_PID` names.
pub struct LockFacts {
    /// It is this command or one of its ancestors.
    pub ancestor: bool,
    /// This process's mount namespace.
    pub mine: Option<crate::kernel::mount::NsId>,
    /// The target's mount namespace.
    pub target_ns: Option<crate::kernel::mount::NsId>,
    /// pid 1's mount namespace (when readable).
    pub init_ns: Option<crate::kernel::mount::NsId>,
    /// The target's real uid.
    pub target_uid: Option<u32>,
    /// Who runs `tazpod lock` (the kernel's and sudo's answer, 0 for real root).
    pub caller_uid: u32,
    /// The target.
    pub pid: u32,
}

/// Why `tazpod lock` may not end the process `pid` (`TAZPOD_SHELL_PID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockTargetError {
    /// It is neither this command nor one of its ancestors.
    NotAncestor { pid: u32 },
    /// It is not in this process's mount namespace (or either is unknown).
    OtherNamespace { pid: u32 },
    /// This process is in the system's mount namespace: not in a ghost session.
    SystemNamespace { pid: u32 },
    /// It does not belong to `caller_uid`, who runs `tazpod lock`.
    OtherUser { pid: u32, caller_uid: u32 },
}

impl fmt::Display for LockTargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (LockTargetError::NotAncestor { pid }
        | LockTargetError::OtherNamespace { pid }
        | LockTargetError::SystemNamespace { pid }
        | LockTargetError::OtherUser { pid, .. }) = self;
        write!(f, "process {pid} (TAZPOD_SHELL_PID) ")?;
        match self {
            LockTargetError::NotAncestor { .. } => f.write_str("is not a parent of this command"),
            LockTargetError::OtherNamespace { .. } => {
                f.write_str("is not in this ghost session's mount namespace")
            }
            LockTargetError::SystemNamespace { .. } => {
                f.write_str("is in the system's mount namespace: this is not a ghost session")
            }
            LockTargetError::OtherUser { caller_uid, .. } => {
                write!(
                    f,
                    "does not belong to uid {caller_uid}, who runs tazpod lock"
                )
            }
        }
    }
}

/// Whether `tazpod lock` may end the process of `f`: an ancestor in this very session (the
/// same mount namespace, which is not the system's), of the caller's own uid. So even run
/// through sudo with a forged `TAZPOD_SHELL_PID`, it ends only the caller's session shell.
pub fn lock_target_ok(f: &LockFacts) -> Result<(), LockTargetError> {
    let pid = f.pid;
    if !f.ancestor {
        return Err(LockTargetError::NotAncestor { pid });
    }
    match (f.mine, f.target_ns) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(LockTargetError::OtherNamespace { pid }),
    }
    if f.init_ns.is_some() && f.init_ns == f.mine {
        return Err(LockTargetError::SystemNamespace { pid });
    }
    if f.caller_uid != 0 && f.target_uid != Some(f.caller_uid) {
        return Err(LockTargetError::OtherUser {
            pid,
            caller_uid: f.caller_uid,
        });
    }
    Ok(())
}

/// The parent pid of `pid`, from `/proc`.
pub fn proc_ppid(pid: u32) -> Option<u32> {
    parse_ppid(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::kernel::privs;

    #[test]
    fn ppid_parsing_and_ancestry() {
        assert_eq!(parse_ppid("123 (bash) S 45 123 123 0"), Some(45));
        assert_eq!(parse_ppid("123 (a) b (c) d) S 46 1"), Some(46));
        assert_eq!(parse_ppid("garbage"), None);
        let tree = |p: u32| match p {
            10 => Some(9),
            9 => Some(5),
            5 => Some(1),
            1 => Some(0),
            _ => None,
        };
        assert!(is_ancestor(5, 10, tree));
        assert!(is_ancestor(10, 10, tree));
        assert!(!is_ancestor(7, 10, tree));
        assert!(is_ancestor(
            std::process::id(),
            std::process::id(),
            proc_ppid
        ));
        let parent = privs::getppid();
        assert!(is_ancestor(parent, std::process::id(), proc_ppid));
    }

    #[test]
    fn lock_ends_only_an_own_shell_of_this_session() {
        use crate::kernel::mount::NsId;
        let sys = NsId { dev: 4, ino: 1 };
        let sess = NsId { dev: 4, ino: 2 };
        let ok = LockFacts {
            ancestor: true,
            mine: Some(sess),
            target_ns: Some(sess),
            init_ns: Some(sys),
            target_uid: Some(1000),
            caller_uid: 1000,
            pid: 77,
        };
        assert!(lock_target_ok(&ok).is_ok());
        // pid 1 unreadable (an unprivileged caller): the other checks still hold
        assert!(lock_target_ok(&LockFacts {
            init_ns: None,
            ..ok
        })
        .is_ok());
        for (bad, why) in [
            (
                LockFacts {
                    ancestor: false,
                    ..ok
                },
                "not a parent",
            ),
            // an ancestor outside the session (the sudo, the login shell...)
            (
                LockFacts {
                    target_ns: Some(sys),
                    ..ok
                },
                "mount namespace",
            ),
            // run outside any session with a forged TAZPOD_GHOST_MODE / TAZPOD_SHELL_PID
            (
                LockFacts {
                    mine: Some(sys),
                    target_ns: Some(sys),
                    ..ok
                },
                "system's mount namespace",
            ),
            // the session's root holder, or another user's process
            (
                LockFacts {
                    target_uid: Some(0),
                    ..ok
                },
                "uid 1000",
            ),
            (
                LockFacts {
                    target_uid: None,
                    ..ok
                },
                "uid 1000",
            ),
        ] {
            let e = lock_target_ok(&bad).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn lock_target_errors_convert() {
        use crate::error::code;
        use crate::error::testing::assert_converts;
        let hint = Some("exit the session shell to lock the vault");
        assert_converts(vec![
            (
                LockTargetError::NotAncestor { pid: 77 },
                code::INVALID,
                "process 77 (TAZPOD_SHELL_PID) is not a parent of this command".into(),
                hint,
            ),
            (
                LockTargetError::OtherNamespace { pid: 77 },
                code::INVALID,
                "process 77 (TAZPOD_SHELL_PID) is not in this ghost session's mount namespace"
                    .into(),
                hint,
            ),
            (
                LockTargetError::SystemNamespace { pid: 77 },
                code::INVALID,
                "process 77 (TAZPOD_SHELL_PID) is in the system's mount namespace: this is not \
                 a ghost session"
                    .into(),
                hint,
            ),
            (
                LockTargetError::OtherUser {
                    pid: 77,
                    caller_uid: 1000,
                },
                code::INVALID,
                "process 77 (TAZPOD_SHELL_PID) does not belong to uid 1000, who runs tazpod lock"
                    .into(),
                hint,
            ),
        ]);
    }
}
