//! Mount namespaces and mounts: `unshare(CLONE_NEWNS)`, propagation, `mount(2)`, `umount2`,
//! `setns`, the identity of a mount namespace, and the `flock` that guards a ghost session.
//!
//! Every function is a thin wrapper that turns `-1`/errno into an [`io::Error`]; callers add
//! what was being done and to which path.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A path as a C string, refusing interior NUL bytes.
pub(crate) fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", p.display()),
        )
    })
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves the calling process (thread) into a new mount namespace, a copy of the current one.
pub fn unshare_mount_ns() -> io::Result<()> {
    // SAFETY: unshare takes only a flag word and touches no memory of ours.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })
}

/// Makes every mount at and below `path` private (`MS_REC | MS_PRIVATE`): nothing mounted
/// afterwards propagates to or from another namespace.
pub fn make_rprivate(path: &Path) -> io::Result<()> {
    let target = cpath(path)?;
    // SAFETY: `target` is a valid NUL-terminated string for the duration of the call; source,
    // filesystem type and data may be NULL for a propagation change.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })
}

/// `mount(2)`: mounts `source` (a device, or a name for pseudo filesystems) of type `fstype`
/// on `target` with `flags` and the filesystem-specific `data` string.
pub fn mount(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = cpath(source)?;
    let tgt = cpath(target)?;
    let fs = CString::new(fstype)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in filesystem type"))?;
    let data = data
        .map(CString::new)
        .transpose()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount options"))?;
    let data_ptr = data
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr().cast::<libc::c_void>());
    // SAFETY: every pointer is either NULL (data) or a NUL-terminated string that outlives
    // the call.
    check(unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), fs.as_ptr(), flags, data_ptr) })
}

/// Mounts a tmpfs on `target` (`mode=0755`, at most 1 MiB), with `flags` (for instance
/// `MS_NOSUID | MS_NOEXEC`).
pub fn mount_tmpfs(target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    mount(
        Path::new("tmpfs"),
        target,
        "tmpfs",
        flags,
        Some("mode=0755,size=1m"),
    )
}

/// Bind-mounts `source` on `target` (not recursive). With `readonly`, the bind is then
/// remounted read-only; bind mounts are always `nosuid,nodev`.
pub fn bind(source: &Path, target: &Path, readonly: bool) -> io::Result<()> {
    let src = cpath(source)?;
    let tgt = cpath(target)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; fstype and data are NULL,
    // which MS_BIND allows.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    })?;
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
    if readonly {
        flags |= libc::MS_RDONLY;
    }
    // SAFETY: as above; a remount of an existing bind takes only the target and flags.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            tgt.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    })
}

/// Moves the mount at `source` to `target` (`MS_MOVE`).
pub fn move_mount(source: &Path, target: &Path) -> io::Result<()> {
    let src = cpath(source)?;
    let tgt = cpath(target)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; MS_MOVE ignores fstype
    // and data, which are NULL.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        )
    })
}

/// Unmounts `target` without following a symbolic link in its last component. When the
/// mount is busy, detaches it lazily (`MNT_DETACH`) so it goes when its last user does.
pub fn umount(target: &Path) -> io::Result<()> {
    let tgt = cpath(target)?;
    // SAFETY: `tgt` is a NUL-terminated string that outlives the call.
    let r = check(unsafe { libc::umount2(tgt.as_ptr(), libc::UMOUNT_NOFOLLOW) });
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            // SAFETY: as above.
            check(unsafe { libc::umount2(tgt.as_ptr(), libc::UMOUNT_NOFOLLOW | libc::MNT_DETACH) })
        }
        other => other,
    }
}

/// The identity of a mount namespace: device and inode of its `/proc/<pid>/ns/mnt` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsId {
    /// Device of the nsfs inode.
    pub dev: u64,
    /// Inode number (what `readlink /proc/PID/ns/mnt` shows in `mnt:[N]`).
    pub ino: u64,
}

/// The mount namespace of process `pid`, or of this process with `None`.
pub fn mount_ns_of(pid: Option<u32>) -> io::Result<NsId> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/ns/mnt"),
        None => "/proc/thread-self/ns/mnt".to_string(),
    };
    let m = std::fs::metadata(path)?;
    Ok(NsId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// Opens the mount namespace of process `pid` and checks, on the open file, that it is the
/// namespace `expect` (so a recycled pid cannot send us elsewhere).
pub fn open_mount_ns(pid: u32, expect: NsId) -> io::Result<File> {
    let f = File::open(format!("/proc/{pid}/ns/mnt"))?;
    let m = f.metadata()?;
    if m.dev() != expect.dev || m.ino() != expect.ino {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {pid} is no longer in the session's mount namespace"),
        ));
    }
    Ok(f)
}

/// Joins the mount namespace `ns` (a file from [`open_mount_ns`]). The process must be
/// single-threaded; root and working directory move to the namespace's root.
pub fn setns_mount(ns: &File) -> io::Result<()> {
    // SAFETY: setns takes a descriptor we own for the duration of the call and a flag word.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) })
}

/// `flock` operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOp {
    /// Exclusive lock, waiting for it.
    Exclusive,
    /// Exclusive lock, or `WouldBlock` at once.
    TryExclusive,
    /// Shared lock, waiting for it.
    Shared,
    /// Shared lock, or `WouldBlock` at once.
    TryShared,
    /// Release.
    Unlock,
}

/// Applies `flock(2)` to `file`. A lock held elsewhere gives `ErrorKind::WouldBlock` for the
/// `Try*` operations.
pub fn flock(file: &File, op: LockOp) -> io::Result<()> {
    let how = match op {
        LockOp::Exclusive => libc::LOCK_EX,
        LockOp::TryExclusive => libc::LOCK_EX | libc::LOCK_NB,
        LockOp::Shared => libc::LOCK_SH,
        LockOp::TryShared => libc::LOCK_SH | libc::LOCK_NB,
        LockOp::Unlock => libc::LOCK_UN,
    };
    loop {
        // SAFETY: flock takes a descriptor we own for the duration of the call.
        let r = check(unsafe { libc::flock(file.as_raw_fd(), how) });
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn nul_in_path_is_refused() {
        let e = cpath(Path::new("a\0b")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn own_namespace_has_an_identity() {
        let a = mount_ns_of(None).unwrap();
        let b = mount_ns_of(Some(std::process::id())).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn open_mount_ns_checks_the_identity() {
        let me = std::process::id();
        let mut wrong = mount_ns_of(Some(me)).unwrap();
        wrong.ino ^= 1;
        assert_eq!(
            open_mount_ns(me, wrong).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(open_mount_ns(me, mount_ns_of(Some(me)).unwrap()).is_ok());
    }

    #[test]
    fn flock_shared_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let a = File::create(&p).unwrap();
        let b = File::open(&p).unwrap();
        flock(&a, LockOp::TryShared).unwrap();
        flock(&b, LockOp::TryShared).unwrap();
        flock(&b, LockOp::Unlock).unwrap();
        assert_eq!(
            flock(&b, LockOp::TryExclusive).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        flock(&a, LockOp::Unlock).unwrap();
        flock(&b, LockOp::TryExclusive).unwrap();
    }

    /// As root only: a tmpfs mounted in a child's private namespace is visible to the child and
    /// not to us, and a third process can join the child's namespace with setns.
    #[test]
    fn private_namespace_mount_is_invisible_outside() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_path_buf();
        let t2 = target.clone();
        let shown = target.display().to_string();
        // The child: new namespace, everything private, a tmpfs on `target`, a marker file,
        // then wait (on stdin) so we can look from outside and join it.
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!(
                "touch '{shown}/inside' && grep -q ' {shown} ' /proc/self/mountinfo && echo ready && (read x || true)"
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only makes syscalls
        // (glibc makes the small allocations in `cpath` fork-safe).
        unsafe {
            cmd.pre_exec(move || {
                unshare_mount_ns()?;
                make_rprivate(Path::new("/"))?;
                mount_tmpfs(&t2, libc::MS_NOSUID | libc::MS_NODEV)
            });
        }
        let mut child = cmd.spawn().unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut buf).unwrap();
        assert_eq!(&buf, b"ready\n");
        // Outside: no mount, no file.
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mi.contains(&format!(" {shown} ")), "mount leaked out");
        assert!(!target.join("inside").exists());
        // Joining: a process that setns into the child's namespace sees the file.
        let ns = mount_ns_of(Some(child.id())).unwrap();
        assert_ne!(ns, mount_ns_of(None).unwrap());
        let f = open_mount_ns(child.id(), ns).unwrap();
        let mut joiner = Command::new("/bin/sh");
        joiner.arg("-c").arg(format!("test -f '{shown}/inside'"));
        // SAFETY: runs in the forked, single-threaded child before exec; setns is one syscall.
        unsafe {
            joiner.pre_exec(move || setns_mount(&f));
        }
        assert!(
            joiner.status().unwrap().success(),
            "joiner did not see the mount"
        );
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        assert!(!target.join("inside").exists());
    }
}
