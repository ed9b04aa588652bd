//! The session's private mount namespace: unsharing it, the tmpfs and directories, the
//! mounts and bind mounts (directories the user names opened with the user's rights),
//! joining it, and ending what is left in it.

use super::{shown, RealHost};
use crate::ghost::host::{DirMode, DirRef, HostError, HostResult, Identity, Mounts};
use crate::kernel::mount::{self, NsId};
use crate::kernel::privs::{self, FsIdentity};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Kills process `pid` if it is in the mount namespace `ns`, through a pidfd: the process is
/// held first, then checked, then signalled, so a pid reused meanwhile by a process outside
/// the session is never hit (the pidfd of an exited process signals nobody). On a kernel
/// without pidfds (before 5.3), a plain kill after the check.
fn kill_if_in(pid: u32, ns: NsId) -> bool {
    match privs::PidFd::open(pid) {
        Ok(fd) => {
            mount::mount_ns_of(Some(pid)).ok() == Some(ns) && fd.signal(libc::SIGKILL).is_ok()
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            mount::mount_ns_of(Some(pid)).ok() == Some(ns)
                && privs::kill(pid, libc::SIGKILL).is_ok()
        }
        Err(_) => false,
    }
}

impl Mounts for RealHost {
    fn unshare_mount_ns(&mut self) -> HostResult<()> {
        self.ns_before = Some(
            mount::mount_ns_of(None).map_err(|e| HostError::new("read mount namespace", "", e))?,
        );
        mount::unshare_mount_ns().map_err(|e| HostError::new("unshare mount namespace", "", e))
    }

    fn make_rprivate(&mut self, path: &Path) -> HostResult<()> {
        mount::make_rprivate(path).map_err(|e| HostError::new("make private", shown(path), e))
    }

    fn mount_tmpfs(&mut self, target: &Path) -> HostResult<()> {
        // An empty /dev/mapper left in the shared /dev is harmless; its content is private.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(target)
            .map_err(|e| HostError::new("create directory", shown(target), e))?;
        mount::mount_tmpfs(target, libc::MS_NOSUID | libc::MS_NOEXEC)
            .map_err(|e| HostError::new("mount tmpfs on", shown(target), e))?;
        self.private_dir = Some(target.to_path_buf());
        Ok(())
    }

    fn make_dir(&mut self, path: &Path, mode: u32) -> HostResult<()> {
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(path)
            .map_err(|e| HostError::new("create directory", shown(path), e))
    }

    fn mount_ext4(&mut self, device: &Path, target: &Path, readonly: bool) -> HostResult<()> {
        let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
        if readonly {
            flags |= libc::MS_RDONLY;
        }
        mount::mount(device, target, "ext4", flags, None).map_err(|e| {
            HostError::new(
                "mount ext4",
                format!("{} on {}", shown(device), shown(target)),
                e,
            )
        })
    }

    fn chown(&mut self, path: &Path, uid: u32, gid: u32) -> HostResult<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|e| HostError::new("chown", shown(path), e))
    }

    fn open_user_dir(&mut self, path: &Path, user: &Identity, mode: DirMode) -> HostResult<DirRef> {
        let fail = |e: io::Error| HostError::new("open directory", shown(path), e);
        let file = {
            // Resolve and create with the user's rights: a symbolic link the user planted
            // leads only where the user could go anyway.
            let _as_user = FsIdentity::switch(user.uid, user.gid, &user.groups).map_err(fail)?;
            if mode.create {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(fail)?;
            }
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(path)
                .map_err(fail)?
        };
        let meta = file.metadata().map_err(fail)?;
        if mode.owned && meta.uid() != user.uid {
            return Err(fail(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "it is owned by uid {}, not by {} (uid {}); tazpod mounts only over \
                     directories the session user owns",
                    meta.uid(),
                    user.name,
                    user.uid
                ),
            )));
        }
        Ok(DirRef {
            path: path.to_path_buf(),
            fd: Some(OwnedFd::from(file)),
        })
    }

    fn open_vault_dir(
        &mut self,
        root: &Path,
        rel: &Path,
        user: &Identity,
        create: bool,
    ) -> HostResult<DirRef> {
        use crate::kernel::fs::{mkdir_at, open_dir_beneath, open_dir_path};
        let path = root.join(rel);
        let fail = |e: io::Error| HostError::new("open directory in the vault", shown(&path), e);
        // The vault's root, a root-only staging directory: opened by root.
        let mut dir = open_dir_path(root).map_err(fail)?;
        let _as_user = FsIdentity::switch(user.uid, user.gid, &user.groups).map_err(fail)?;
        // One component at a time, each resolved beneath the last without following a link:
        // what is missing is made as the user, what is a link is refused (ELOOP).
        for c in rel.components() {
            let name = match c {
                std::path::Component::Normal(n) => n,
                std::path::Component::CurDir => continue,
                _ => {
                    return Err(fail(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "not a path inside the vault",
                    )))
                }
            };
            let next = match open_dir_beneath(dir.as_fd(), Path::new(name)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    match mkdir_at(dir.as_fd(), name, 0o700) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(fail(e)),
                    }
                    open_dir_beneath(dir.as_fd(), Path::new(name))
                }
                other => other,
            };
            dir = next.map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    fail(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "it is (or passes through) a symbolic link; bind sources must be real \
                         directories inside the vault",
                    ))
                } else {
                    fail(e)
                }
            })?;
        }
        Ok(DirRef {
            path,
            fd: Some(dir),
        })
    }

    fn move_mount(&mut self, from: &Path, to: &DirRef) -> HostResult<()> {
        mount::move_mount(from, &to.mount_path()).map_err(|e| {
            HostError::new(
                "move mount",
                format!("{} to {}", shown(from), shown(&to.path)),
                e,
            )
        })
    }

    fn bind_mount(&mut self, from: &DirRef, to: &DirRef, readonly: bool) -> HostResult<()> {
        // The bind is made (and remounted nosuid, nodev, read-only if asked) on a directory
        // only root controls, then moved onto the user's directory through its descriptor:
        // a remount through `/proc/self/fd/N` would reach the directory under the new mount.
        let what = format!("{} on {}", shown(&from.path), shown(&to.path));
        let fail = |e: io::Error| HostError::new("bind mount", what.clone(), e);
        let stage = self
            .private_dir
            .as_ref()
            .map(|d| d.join(".tazpod-bind"))
            .ok_or_else(|| fail(io::Error::other("no private tmpfs to prepare it on")))?;
        match std::fs::DirBuilder::new().mode(0o700).create(&stage) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(e)),
        }
        mount::bind(&from.mount_path(), &stage, readonly).map_err(fail)?;
        if let Err(e) = mount::move_mount(&stage, &to.mount_path()) {
            let _ = mount::umount(&stage);
            return Err(fail(e));
        }
        Ok(())
    }

    fn join_namespace(&mut self, pid: u32, ns_dev: u64, ns_ino: u64) -> HostResult<()> {
        let ns = NsId {
            dev: ns_dev,
            ino: ns_ino,
        };
        let target = format!("of process {pid}");
        let f = mount::open_mount_ns(pid, ns)
            .map_err(|e| HostError::new("open mount namespace", target.clone(), e))?;
        mount::setns_mount(&f).map_err(|e| HostError::new("enter mount namespace", target, e))
    }

    fn kill_namespace_stragglers(&mut self) -> HostResult<usize> {
        let fail = |e: io::Error| HostError::new("end processes left in the session", "", e);
        let mine = mount::mount_ns_of(None).map_err(fail)?;
        if self.ns_before.is_none() || self.ns_before == Some(mine) {
            // Never outside a namespace of our own: that would kill the whole system.
            return Ok(0);
        }
        let me = privs::getpid();
        let mut killed = 0;
        // Kill until none is left (processes may fork meanwhile), for at most about 2 s: a
        // process that exited has left the namespace and released its mounts.
        for _ in 0..100 {
            let pids: Vec<u32> = std::fs::read_dir("/proc")
                .map_err(fail)?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&p| p != me)
                .filter(|&p| mount::mount_ns_of(Some(p)).ok() == Some(mine))
                .collect();
            if pids.is_empty() {
                return Ok(killed);
            }
            for p in pids {
                if kill_if_in(p, mine) {
                    killed += 1;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Err(fail(io::Error::other(
            "processes are still in the session's namespace after SIGKILL",
        )))
    }

    fn umount(&mut self, target: &Path) -> HostResult<()> {
        mount::umount(target).map_err(|e| HostError::new("unmount", shown(target), e))
    }
}
