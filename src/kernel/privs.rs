//! Users, credentials, capabilities and processes: user and group lookups (`/etc/passwd` and
//! `/etc/group` read directly, no NSS), the privilege drop of the ghost shell (`setgroups`,
//! `setresgid`, `setresuid`, capabilities through the raw `capset` syscall, the bounding and
//! ambient sets, `PR_SET_NO_NEW_PRIVS`, `PR_SET_PDEATHSIG`), closing stray descriptors, and
//! fork / exec / wait / signals.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn to_pid(pid: u32) -> io::Result<libc::pid_t> {
    libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "process id out of range"))
}

// ---------------------------------------------------------------------------------------------
// Users and groups

/// A passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
    /// Login shell (may be empty).
    pub shell: PathBuf,
}

/// Where users and groups are read from: the files themselves, as a container has them, with
/// no NSS module (a static binary cannot load one). Accounts only an NSS service knows (LDAP,
/// SSSD) are not seen.
pub const PASSWD_FILE: &str = "/etc/passwd";
/// See [`PASSWD_FILE`].
pub const GROUP_FILE: &str = "/etc/group";

/// Parses one `/etc/passwd` line (`name:password:uid:gid:gecos:home:shell`); `None` for a
/// line that is not one (a comment, a NIS `+`/`-` line, too few fields, a bad number).
pub fn parse_passwd_line(line: &[u8]) -> Option<Passwd> {
    let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    if f.len() < 7 {
        return None;
    }
    let name = *f.first()?;
    if name.is_empty() || matches!(name.first(), Some(b'#' | b'+' | b'-')) {
        return None;
    }
    let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u32>().ok();
    let os = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
    Some(Passwd {
        name: String::from_utf8_lossy(name).into_owned(),
        uid: num(f.get(2)?)?,
        gid: num(f.get(3)?)?,
        home: os(f.get(5)?),
        shell: os(f.get(6)?),
    })
}

/// The first entry of passwd text `text` that `want` accepts (the first one wins, as with
/// glibc's files module).
pub fn find_user(text: &[u8], want: impl Fn(&Passwd) -> bool) -> Option<Passwd> {
    text.split(|&b| b == b'\n')
        .filter_map(parse_passwd_line)
        .find(|p| want(p))
}

/// The groups of user `name` in group text `text` (`name:password:gid:member,member`):
/// `gid` first, then every group that lists `name` as a member, each once.
pub fn groups_of(text: &[u8], name: &str, gid: u32) -> Vec<u32> {
    let mut out = vec![gid];
    for line in text.split(|&b| b == b'\n') {
        let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        let (Some(gname), Some(g), Some(members)) = (f.first(), f.get(2), f.get(3)) else {
            continue;
        };
        if gname.is_empty() || matches!(gname.first(), Some(b'#' | b'+' | b'-')) {
            continue;
        }
        let Some(g) = std::str::from_utf8(g)
            .ok()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let member = members
            .split(|&b| b == b',')
            .any(|m| m.trim_ascii() == name.as_bytes());
        if member && !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

fn read_db(path: &str) -> io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{path}: {e}"))),
    }
}

/// The passwd entry of user `name` in [`PASSWD_FILE`], `None` when there is none.
pub fn user_by_name(name: &str) -> io::Result<Option<Passwd>> {
    if name.contains(['\0', ':', '\n']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a user name cannot hold NUL, ':' or a newline",
        ));
    }
    Ok(find_user(&read_db(PASSWD_FILE)?, |p| p.name == name))
}

/// The passwd entry of `uid` in [`PASSWD_FILE`], `None` when there is none.
pub fn user_by_uid(uid: u32) -> io::Result<Option<Passwd>> {
    Ok(find_user(&read_db(PASSWD_FILE)?, |p| p.uid == uid))
}

/// The groups of user `name` (`gid`, plus the supplementary groups of [`GROUP_FILE`]).
pub fn group_list(name: &str, gid: u32) -> io::Result<Vec<u32>> {
    Ok(groups_of(&read_db(GROUP_FILE)?, name, gid))
}

// ---------------------------------------------------------------------------------------------
// Credentials

/// Sets the supplementary groups.
pub fn set_groups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and length describe `groups`, which outlives the call.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })
}

/// The supplementary groups of this process.
pub fn get_groups() -> io::Result<Vec<u32>> {
    // SAFETY: with size 0, getgroups only returns the count and writes nothing.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let mut v: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: `v` has room for `n` entries.
    let got = unsafe { libc::getgroups(n, v.as_mut_ptr()) };
    let got = usize::try_from(got).map_err(|_| io::Error::last_os_error())?;
    v.truncate(got);
    Ok(v)
}

/// Sets real, effective and saved group ids to `gid`, and checks they took.
pub fn set_resgid(gid: u32) -> io::Result<()> {
    // SAFETY: setresgid takes plain integers.
    check(unsafe { libc::setresgid(gid, gid, gid) })?;
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: the three pointers are valid writable integers.
    check(unsafe { libc::getresgid(&mut r, &mut e, &mut s) })?;
    if (r, e, s) != (gid, gid, gid) {
        return Err(io::Error::other("group ids did not change"));
    }
    Ok(())
}

/// Sets real, effective and saved user ids to `uid`, and checks they took. From root to
/// another uid this also clears the permitted and effective capabilities.
pub fn set_resuid(uid: u32) -> io::Result<()> {
    // SAFETY: setresuid takes plain integers.
    check(unsafe { libc::setresuid(uid, uid, uid) })?;
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: the three pointers are valid writable integers.
    check(unsafe { libc::getresuid(&mut r, &mut e, &mut s) })?;
    if (r, e, s) != (uid, uid, uid) {
        return Err(io::Error::other("user ids did not change"));
    }
    Ok(())
}

/// The effective user id.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The real group id.
pub fn getgid() -> u32 {
    // SAFETY: getgid has no preconditions.
    unsafe { libc::getgid() }
}

/// The real user id.
pub fn getuid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// Temporarily makes filesystem access checks use another user's ids (`setfsuid`,
/// `setfsgid` and the user's groups), so paths the user controls are resolved with the
/// user's rights, never root's. Dropping it restores root's.
pub struct FsIdentity {
    saved_groups: Vec<u32>,
}

impl FsIdentity {
    /// Switches filesystem ids to `uid`/`gid` with supplementary `groups`.
    pub fn switch(uid: u32, gid: u32, groups: &[u32]) -> io::Result<FsIdentity> {
        let saved_groups = get_groups()?;
        set_groups(groups)?;
        let guard = FsIdentity { saved_groups };
        // SAFETY: setfsgid/setfsuid take plain integers; they return the previous value and
        // report failure only by not changing it, which is checked below with the
        // no-change query value -1.
        unsafe {
            libc::setfsgid(gid);
            libc::setfsuid(uid);
        }
        // SAFETY: (uid_t)-1 never changes the id, it only returns the current one.
        let (now_u, now_g) = unsafe { (libc::setfsuid(u32::MAX), libc::setfsgid(u32::MAX)) };
        if u32::try_from(now_u).ok() != Some(uid) || u32::try_from(now_g).ok() != Some(gid) {
            return Err(io::Error::other("setfsuid/setfsgid refused"));
        }
        Ok(guard)
    }
}

impl Drop for FsIdentity {
    fn drop(&mut self) {
        // SAFETY: as in `switch`; the effective ids are still root's, so going back works.
        unsafe {
            libc::setfsuid(libc::geteuid());
            libc::setfsgid(libc::getegid());
        }
        let _ = set_groups(&self.saved_groups);
    }
}

// ---------------------------------------------------------------------------------------------
// Capabilities and prctl

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Clears the effective, permitted and inheritable capability sets (raw `capset`, version 3).
pub fn clear_caps() -> io::Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: version 3 takes one header and two data structs, laid out as the kernel's
    // __user_cap_header_struct / __user_cap_data_struct (repr(C), u32 fields); both live
    // across the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Clears the ambient capability set (a no-op on kernels older than 4.3, which have none).
pub fn clear_ambient_caps() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    match check(r) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Drops every capability from the bounding set (needs `CAP_SETPCAP`, so before `setresuid`):
/// nothing executed later can gain a capability, not even a set-uid-root program.
pub fn drop_bounding_set() -> io::Result<()> {
    for cap in 0..=last_cap() {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_DROP,
                libc::c_ulong::from(cap),
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        match check(r) {
            Ok(()) => {}
            // Past the kernel's last capability.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets `PR_SET_NO_NEW_PRIVS`: execve can no longer grant privileges (set-uid bits and file
/// capabilities are ignored).
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

/// Asks for `signal` when the parent dies (`PR_SET_PDEATHSIG`). Credential changes clear
/// this setting, so call it after them.
pub fn set_parent_death_signal(signal: libc::c_int) -> io::Result<()> {
    let sig = libc::c_ulong::try_from(signal)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad signal number"))?;
    // SAFETY: prctl with integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            sig,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Descriptors

/// Closes every file descriptor from `low` up (`close_range`, or `/proc/self/fd` on kernels
/// without it).
pub fn close_fds_from(low: u32) -> io::Result<()> {
    // SAFETY: close_range takes integers; closing descriptors we may not know about is the
    // point, and this runs only in the child right before exec.
    let r = unsafe { libc::syscall(libc::SYS_close_range, low, u32::MAX, 0u32) };
    if r == 0 {
        return Ok(());
    }
    let mut fds = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd")? {
        let name = e?.file_name();
        if let Some(fd) = name.to_str().and_then(|s| s.parse::<libc::c_int>().ok()) {
            if u32::try_from(fd).is_ok_and(|f| f >= low) {
                fds.push(fd);
            }
        }
    }
    // The directory's own descriptor is closed now; closing it again just fails with EBADF.
    for fd in fds {
        // SAFETY: closing a descriptor number; failures (EBADF) are harmless.
        unsafe {
            libc::close(fd);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes and signals

/// Result of [`fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the child.
    Child,
    /// In the parent, with the child's pid.
    Parent(u32),
}

/// How many threads this process has.
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// `fork()`, refused unless the process is single-threaded (the child runs Rust code that
/// allocates before it execs).
pub fn fork() -> io::Result<Forked> {
    // Worker threads of a finished computation (the KDF's lanes) exit on their own shortly
    // after their pool is dropped: give them up to two seconds.
    let mut n = thread_count()?;
    for _ in 0..200 {
        if n == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        n = thread_count()?;
    }
    if n != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {n} threads"
        )));
    }
    // SAFETY: the process is single-threaded (checked above), so the child inherits
    // consistent allocator and library state.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        p => Ok(Forked::Parent(u32::try_from(p).unwrap_or(0))),
    }
}

/// `execve(path, argv, envp)`. Returns only on failure.
pub fn execve(path: &std::path::Path, argv: &[CString], envp: &[CString]) -> io::Error {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return io::Error::new(io::ErrorKind::InvalidInput, "NUL in program path");
    };
    let mut av: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    av.push(std::ptr::null());
    let mut ev: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    ev.push(std::ptr::null());
    // SAFETY: `p` and every string of `argv`/`envp` are NUL-terminated and alive; both
    // pointer arrays end with NULL.
    unsafe {
        libc::execve(p.as_ptr(), av.as_ptr(), ev.as_ptr());
    }
    io::Error::last_os_error()
}

/// Ends the process at once with `code`, running no destructors or atexit handlers (for a
/// forked child whose exec failed).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// This process's id.
pub fn getpid() -> u32 {
    std::process::id()
}

/// The parent's process id.
pub fn getppid() -> u32 {
    // SAFETY: getppid has no preconditions.
    let p = unsafe { libc::getppid() };
    u32::try_from(p).unwrap_or(0)
}

/// The process group of `pid` (0 for this process).
pub fn getpgid(pid: u32) -> io::Result<u32> {
    // SAFETY: getpgid takes an integer.
    let g = unsafe { libc::getpgid(to_pid(pid)?) };
    u32::try_from(g).map_err(|_| io::Error::last_os_error())
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let p = to_pid(pid)?;
    if p <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad process id",
        ));
    }
    // SAFETY: kill takes integers; `p` is a single positive pid, never a group or -1.
    check(unsafe { libc::kill(p, signal) })
}

/// A process, held by a pidfd (`pidfd_open`, Linux 5.3): a signal sent through it reaches
/// that process or nobody, never a later process that reused its pid.
pub struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    /// Opens process `pid`.
    pub fn open(pid: u32) -> io::Result<PidFd> {
        use std::os::fd::FromRawFd;
        let p = to_pid(pid)?;
        if p <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad process id",
            ));
        }
        // SAFETY: pidfd_open takes a pid and flags (0) and returns a new descriptor.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, p, 0) };
        let fd = libc::c_int::try_from(r).map_err(|_| io::Error::last_os_error())?;
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        Ok(PidFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends `signal` to the process (`ESRCH` once it has exited).
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open; a NULL siginfo means "as kill(2) would", flags 0.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// The real user id of process `pid` (from `/proc/<pid>/status`).
pub fn real_uid_of(pid: u32) -> io::Result<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("no Uid line"))
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl WaitStatus {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            WaitStatus::Exited(c) => c,
            WaitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// `waitpid(pid, WNOHANG)`: `None` while the child runs.
pub fn try_wait(pid: u32) -> io::Result<Option<WaitStatus>> {
    let p = to_pid(pid)?;
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid writable int.
        let r = unsafe { libc::waitpid(p, &mut status, libc::WNOHANG) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some(WaitStatus::Exited(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some(WaitStatus::Signaled(libc::WTERMSIG(status))));
        }
        // Stopped or continued: still alive.
        return Ok(None);
    }
}

/// A set of signals.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// The set of `signals`.
    pub fn of(signals: &[libc::c_int]) -> SigSet {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let mut s: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `s` is a valid sigset_t.
        unsafe {
            libc::sigemptyset(&mut s);
        }
        for &sig in signals {
            // SAFETY: `s` is initialised; an invalid number only makes sigaddset fail.
            unsafe {
                libc::sigaddset(&mut s, sig);
            }
        }
        SigSet(s)
    }
}

/// Blocks `set` (adds it to the signal mask), returning the previous mask.
pub fn block_signals(set: &SigSet) -> io::Result<SigSet> {
    // SAFETY: sigset_t is plain data, filled by sigprocmask.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid sigset_t.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set.0, &mut old) })?;
    Ok(SigSet(old))
}

/// Sets the signal mask to `set`.
pub fn set_signal_mask(set: &SigSet) -> io::Result<()> {
    // SAFETY: `set.0` is a valid sigset_t; the old mask is not asked for.
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set.0, std::ptr::null_mut()) })
}

/// A signal taken from the pending set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// `si_code` (`SI_USER` for kill(2), `SI_KERNEL` for terminal-generated signals...).
    pub code: i32,
    /// Sending process, when `code` says there is one.
    pub pid: u32,
}

/// Waits up to `timeout_ms` for one of the (blocked) signals of `set`; `None` on timeout.
pub fn wait_signal(set: &SigSet, timeout_ms: u64) -> io::Result<Option<SigInfo>> {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout_ms / 1000).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::try_from((timeout_ms % 1000) * 1_000_000).unwrap_or(0),
    };
    // SAFETY: siginfo_t is plain data, filled by sigtimedwait.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: all three pointers are valid for the call.
    let r = unsafe { libc::sigtimedwait(&set.0, &mut info, &ts) };
    if r == -1 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: si_pid reads the union member the kernel fills for user- and kernel-sent
    // signals; for other codes the value is ignored by callers.
    let pid = unsafe { info.si_pid() };
    Ok(Some(SigInfo {
        signo: r,
        code: info.si_code,
        pid: u32::try_from(pid).unwrap_or(0),
    }))
}

/// Resets the handlers of the classic signals (1 to 31) to their defaults and unblocks every
/// signal, as a freshly executed program expects (Rust ignores `SIGPIPE`, for instance).
pub fn reset_signals() -> io::Result<()> {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing the default disposition; invalid numbers only fail.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    set_signal_mask(&SigSet::of(&[]))
}

/// Changes the working directory.
pub fn chdir(dir: &std::path::Path) -> io::Result<()> {
    std::env::set_current_dir(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn root_is_in_passwd() {
        let r = user_by_uid(0).unwrap().unwrap();
        assert_eq!(r.name, "root");
        assert_eq!(r.gid, 0);
        let by_name = user_by_name("root").unwrap().unwrap();
        assert_eq!(by_name, r);
        assert!(group_list("root", 0).unwrap().contains(&0));
    }

    #[test]
    fn unknown_user_is_none() {
        assert_eq!(user_by_name("no-such-user-tazpod-x").unwrap(), None);
        assert!(user_by_name("a\0b").is_err());
    }

    #[test]
    fn wait_status_codes() {
        assert_eq!(WaitStatus::Exited(3).code(), 3);
        assert_eq!(WaitStatus::Signaled(9).code(), 137);
    }

    fn cap_lines(s: &str) -> Vec<(String, String)> {
        s.lines()
            .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    }

    /// As root only: the full drop in a child leaves no capability in any set and the ids
    /// of `nobody`.
    #[test]
    fn privilege_drop_leaves_nothing() {
        if geteuid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("cat /proc/self/status; id -u; id -g; id -G")
            .stdout(std::process::Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only makes syscalls
        // and small allocations (fork-safe in glibc).
        unsafe {
            cmd.pre_exec(|| {
                set_groups(&[65534])?;
                set_resgid(65534)?;
                clear_ambient_caps()?;
                drop_bounding_set()?;
                set_resuid(65534)?;
                clear_caps()?;
                set_no_new_privs()?;
                set_parent_death_signal(libc::SIGKILL)
            });
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let s = String::from_utf8(out.stdout).unwrap();
        let caps = cap_lines(&s);
        for (k, v) in &caps {
            if k == "NoNewPrivs" {
                assert_eq!(v, "1");
            } else {
                assert_eq!(v, "0000000000000000", "{k} not empty");
            }
        }
        assert!(caps.iter().any(|(k, _)| k == "CapBnd"));
        assert!(s.ends_with("65534\n65534\n65534\n"), "{s}");
    }

    #[test]
    fn signals_wait_and_time_out() {
        // sigtimedwait works per thread; the test thread blocks SIGUSR2 and sends it to itself.
        let set = SigSet::of(&[libc::SIGUSR2]);
        let old = block_signals(&set).unwrap();
        assert_eq!(wait_signal(&set, 0).unwrap(), None);
        // SAFETY: raise sends to the calling thread, which has SIGUSR2 blocked.
        unsafe {
            libc::raise(libc::SIGUSR2);
        }
        let got = wait_signal(&set, 1000).unwrap().unwrap();
        assert_eq!(got.signo, libc::SIGUSR2);
        set_signal_mask(&old).unwrap();
    }
}

#[cfg(test)]
mod db_tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
        # a comment\n\
        +nisuser::::::\n\
        broken:x:notanumber:1::/x:/bin/sh\n\
        short:x:5\n\
        tester:x:1000:1000:Test User,,,:/home/tester:/bin/sh\n\
        tester:x:1001:1001:second entry:/nowhere:/bin/false\n\
        nosh:x:1002:1002::/home/nosh:\n";
    const GROUP: &[u8] = b"root:x:0:\n\
        wheel:x:10:root, tester\n\
        audio:x:29:tester\n\
        testers:x:1000:\n\
        other:x:50:testerx,xtester\n\
        bad:x:zz:tester\n\
        dup:x:29:tester\n";

    #[test]
    fn passwd_lines_as_the_files_module_reads_them() {
        let t = find_user(PASSWD, |p| p.name == "tester").unwrap();
        assert_eq!((t.uid, t.gid), (1000, 1000));
        assert_eq!(t.home, PathBuf::from("/home/tester"));
        assert_eq!(t.shell, PathBuf::from("/bin/sh"));
        assert_eq!(find_user(PASSWD, |p| p.uid == 0).unwrap().name, "root");
        assert_eq!(
            find_user(PASSWD, |p| p.uid == 1002).unwrap().shell,
            PathBuf::new()
        );
        assert!(find_user(PASSWD, |p| p.name == "broken").is_none());
        assert!(find_user(PASSWD, |p| p.name == "short").is_none());
        assert!(find_user(PASSWD, |p| p.name.starts_with('+')).is_none());
        assert!(find_user(PASSWD, |p| p.uid == 1001).is_some_and(|p| p.name == "tester"));
        assert!(find_user(b"", |_| true).is_none());
        assert!(find_user(b"\xff\xfe:x:7:7::/h\xff:/s", |p| p.uid == 7).is_some());
    }

    #[test]
    fn supplementary_groups_from_the_member_lists() {
        assert_eq!(groups_of(GROUP, "tester", 1000), vec![1000, 10, 29]);
        assert_eq!(groups_of(GROUP, "root", 0), vec![0, 10]);
        assert_eq!(groups_of(GROUP, "nobody", 65534), vec![65534]);
        assert_eq!(groups_of(b"", "x", 1), vec![1]);
    }

    #[test]
    fn names_that_cannot_be_in_the_file_are_refused() {
        assert!(user_by_name("a:b").is_err());
        assert!(user_by_name("a\nb").is_err());
    }
}
