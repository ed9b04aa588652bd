//! The [`Host`](super::host::Host) that really does it, through `crate::kernel::{mount, privs}`.
//!
//! The device-mapper side goes through the mapping layer (`crate::mapping::activate`, the
//! same all-or-nothing activation as `tazpod open`, without its `/dev/mapper` node): the key
//! travels through the keyring and is revoked once the table is live, the loop device is
//! autoclear and released to the mapping, and the node is made in the private tmpfs.
//!
//! One file per trait of [`Host`](super::host::Host): [`image`] (creating, formatting and
//! publishing a new vault's image), [`mapper`] (the dm-crypt mapping), [`mounts`] (the
//! private namespace and its mounts), [`child`] (signals and the inner shell); the session
//! lock's two steps are here, with the state they all share.

use super::host::{HostError, HostResult, Lock};
use super::lock::{Record, SessionLock, RUNTIME_DIR};
use crate::kernel::mount::{self, NsId};
use crate::kernel::privs::{self, SigSet};
use std::fs::File;
use std::path::{Path, PathBuf};

mod child;
mod creating;
mod image;
mod mapper;
mod mounts;
#[cfg(test)]
mod tests;

/// The signals a session holder blocks, waits for and forwards.
const TERMINATING: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The real host.
#[derive(Debug, Default)]
pub struct RealHost {
    /// Mount namespace before `unshare` (the straggler kill refuses to run in it).
    ns_before: Option<NsId>,
    /// The open mapping node while a deferred removal is being set.
    hold: Option<File>,
    /// The session lock (holder or joiner).
    lock: Option<SessionLock>,
    /// The record to publish when setup completes (pid and namespace filled in then).
    record: Option<Record>,
    /// The private tmpfs (where bind mounts are prepared before being moved into place).
    private_dir: Option<std::path::PathBuf>,
    /// Where a new image's session lock is taken (`/run/tazpod`; none in tests).
    lock_dir: Option<PathBuf>,
    /// The image being created.
    image: Option<creating::Creating>,
    /// The vault, opened once with the caller's rights: the loop device is bound to this
    /// descriptor, never to the path.
    vault_file: Option<File>,
}

impl RealHost {
    /// A session holder's host: `lock` is held exclusively; `file` is the vault as the
    /// caller opened it (mapped through this descriptor); `vault`, `mount` and the session
    /// user's `uid` go into the record published when setup completes.
    pub fn holder(lock: SessionLock, file: File, vault: &Path, mount: &Path, uid: u32) -> RealHost {
        RealHost {
            lock: Some(lock),
            record: Some(Record {
                pid: 0,
                ns: NsId { dev: 0, ino: 0 },
                vault: vault.display().to_string(),
                mount: mount.display().to_string(),
                uid,
            }),
            vault_file: Some(file),
            ..RealHost::default()
        }
    }

    /// The host of a session that creates its vault first: the lock is taken on the new
    /// file by `create_image`.
    pub fn creating(vault: &Path, mount: &Path, uid: u32) -> RealHost {
        RealHost {
            record: Some(Record {
                pid: 0,
                ns: NsId { dev: 0, ino: 0 },
                vault: vault.display().to_string(),
                mount: mount.display().to_string(),
                uid,
            }),
            lock_dir: Some(PathBuf::from(RUNTIME_DIR)),
            ..RealHost::default()
        }
    }

    /// The host of `tazpod init` (no session).
    pub fn init() -> RealHost {
        RealHost {
            lock_dir: Some(PathBuf::from(RUNTIME_DIR)),
            ..RealHost::default()
        }
    }

    /// A joiner's host: `lock` is held shared until the process exits.
    pub fn joiner(lock: SessionLock) -> RealHost {
        RealHost {
            lock: Some(lock),
            ..RealHost::default()
        }
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

impl Lock for RealHost {
    fn session_ready(&mut self) -> HostResult<()> {
        let (Some(lock), Some(rec)) = (self.lock.as_mut(), self.record.as_mut()) else {
            return Ok(());
        };
        rec.pid = privs::getpid();
        rec.ns =
            mount::mount_ns_of(None).map_err(|e| HostError::new("read mount namespace", "", e))?;
        lock.publish(rec)
            .map_err(|e| HostError::new("write session lock", shown(lock.path()), e))
    }

    fn wait_for_joined_shells(&mut self) -> HostResult<bool> {
        let Some(lock) = self.lock.as_mut() else {
            return Ok(true);
        };
        let set = SigSet::of(&TERMINATING);
        let mut told = false;
        loop {
            match lock.try_exclusive() {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => return Err(HostError::new("lock", shown(lock.path()), e)),
            }
            if !told {
                eprintln!(
                    "tazpod: other shells of this session are still open; the vault stays \
                     unlocked until they exit (Ctrl-C leaves it to them)"
                );
                told = true;
            }
            match privs::wait_signal(&set, 300) {
                Ok(Some(_)) => return Ok(false),
                Ok(None) => {}
                Err(e) => return Err(HostError::new("wait for signals", "", e)),
            }
        }
    }
}
