//! The session process's signals and the inner shell: fork, the child's privilege drop,
//! secrets and exec, the parent's wait with signal forwarding.

use super::{shown, RealHost, TERMINATING};
use crate::ghost::host::{Child, Fork, HostError, HostResult};
use crate::ghost::session::should_forward;
use crate::kernel::privs::{self, SigSet, WaitStatus};
use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Largest secret file read into an environment variable (the kernel's limit for one
/// environment string is 128 KiB).
const SECRET_MAX: u64 = 128 * 1024;

impl Child for RealHost {
    fn block_signals(&mut self) -> HostResult<()> {
        let mut all = TERMINATING.to_vec();
        all.push(libc::SIGCHLD);
        privs::block_signals(&SigSet::of(&all))
            .map(|_| ())
            .map_err(|e| HostError::new("block signals", "", e))
    }

    fn pending_signal(&mut self) -> HostResult<Option<i32>> {
        privs::wait_signal(&SigSet::of(&TERMINATING), 0)
            .map(|s| s.map(|i| i.signo))
            .map_err(|e| HostError::new("check pending signals", "", e))
    }

    fn getpid(&mut self) -> u32 {
        privs::getpid()
    }

    fn fork(&mut self) -> HostResult<Fork> {
        match privs::fork() {
            Ok(privs::Forked::Child) => Ok(Fork::Child),
            Ok(privs::Forked::Parent(p)) => Ok(Fork::Parent(p)),
            Err(e) => Err(HostError::new("fork", "", e)),
        }
    }

    fn set_groups(&mut self, groups: &[u32]) -> HostResult<()> {
        privs::set_groups(groups).map_err(|e| HostError::new("setgroups", format!("{groups:?}"), e))
    }

    fn set_resgid(&mut self, gid: u32) -> HostResult<()> {
        privs::set_resgid(gid).map_err(|e| HostError::new("setresgid", gid.to_string(), e))
    }

    fn clear_ambient_caps(&mut self) -> HostResult<()> {
        privs::clear_ambient_caps().map_err(|e| HostError::new("clear ambient capabilities", "", e))
    }

    fn drop_bounding_set(&mut self) -> HostResult<()> {
        privs::drop_bounding_set()
            .map_err(|e| HostError::new("drop the capability bounding set", "", e))
    }

    fn set_resuid(&mut self, uid: u32) -> HostResult<()> {
        privs::set_resuid(uid).map_err(|e| HostError::new("setresuid", uid.to_string(), e))
    }

    fn clear_caps(&mut self) -> HostResult<()> {
        privs::clear_caps().map_err(|e| HostError::new("clear capabilities", "", e))
    }

    fn set_no_new_privs(&mut self) -> HostResult<()> {
        privs::set_no_new_privs().map_err(|e| HostError::new("set no_new_privs", "", e))
    }

    fn die_with_parent(&mut self, parent: u32) -> HostResult<()> {
        privs::set_parent_death_signal(libc::SIGKILL)
            .map_err(|e| HostError::new("set parent-death signal", "", e))?;
        if privs::getppid() != parent {
            return Err(HostError::new(
                "start the shell",
                "",
                io::Error::other("the session process is gone"),
            ));
        }
        Ok(())
    }

    fn close_stray_fds(&mut self) -> HostResult<()> {
        self.hold = None;
        privs::close_fds_from(3).map_err(|e| HostError::new("close descriptors", "", e))
    }

    fn chdir(&mut self, dir: &Path) -> HostResult<()> {
        privs::chdir(dir).map_err(|e| HostError::new("chdir", shown(dir), e))
    }

    fn read_secret(&mut self, path: &Path) -> HostResult<Vec<u8>> {
        use std::io::Read;
        let fail = |e: io::Error| HostError::new("read", shown(path), e);
        let f = std::fs::File::open(path).map_err(fail)?;
        let mut v = Vec::new();
        f.take(SECRET_MAX + 1).read_to_end(&mut v).map_err(fail)?;
        if v.len() as u64 > SECRET_MAX {
            return Err(fail(io::Error::other(format!(
                "larger than {SECRET_MAX} bytes; use `as = \"path\"`"
            ))));
        }
        Ok(v)
    }

    fn reset_signals(&mut self) -> HostResult<()> {
        privs::reset_signals().map_err(|e| HostError::new("reset signals", "", e))
    }

    fn exec(
        &mut self,
        program: &Path,
        argv: &[OsString],
        env: &[(OsString, OsString)],
    ) -> HostError {
        let bad = || {
            HostError::new(
                "exec",
                shown(program),
                io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"),
            )
        };
        let mut av = Vec::with_capacity(argv.len());
        for a in argv {
            match CString::new(a.as_bytes()) {
                Ok(c) => av.push(c),
                Err(_) => return bad(),
            }
        }
        let mut ev = Vec::with_capacity(env.len());
        for (k, v) in env {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            match CString::new(kv) {
                Ok(c) => ev.push(c),
                Err(_) => return bad(),
            }
        }
        HostError::new("exec", shown(program), privs::execve(program, &av, &ev))
    }

    fn child_exit(&mut self, code: i32, err: &HostError) {
        eprintln!("tazpod: cannot start the session shell: {err}");
        privs::exit_now(code)
    }

    fn wait_child(&mut self, pid: u32) -> HostResult<WaitStatus> {
        let fail = |e: io::Error| HostError::new("wait for the shell", pid.to_string(), e);
        let mut all = TERMINATING.to_vec();
        all.push(libc::SIGCHLD);
        let set = SigSet::of(&all);
        let own_pgid = privs::getpgid(0).unwrap_or(0);
        loop {
            if let Some(st) = privs::try_wait(pid).map_err(fail)? {
                return Ok(st);
            }
            match privs::wait_signal(&set, 1000).map_err(fail)? {
                None => {}
                Some(i) if i.signo == libc::SIGCHLD => {}
                Some(i) => {
                    let child_pgid = privs::getpgid(pid).unwrap_or(0);
                    if should_forward(i.code, own_pgid, child_pgid) {
                        let _ = privs::kill(pid, i.signo);
                    }
                }
            }
        }
    }
}
