//! The [`Host`] that really does it, through `crate::kernel::{mount, privs}`.
//!
//! The device-mapper side goes through the mapping layer (`crate::mapping::activate`, the
//! same all-or-nothing activation as `tazpod open`, without its `/dev/mapper` node): the key
//! travels through the keyring and is revoked once the table is live, the loop device is
//! autoclear and released to the mapping, and the node is made in the private tmpfs.

use super::host::{
    DirMode, DirRef, Fork, FormatRequest, Host, HostError, HostResult, Identity, ImageRequest,
    MapRequest, MappingHandle, NewImage, VolumeInfo,
};
use super::lock::{self, Acquired, Record, SessionLock, RUNTIME_DIR};
use super::session::{should_forward, VaultKey};
use crate::kernel::dm::{self, DmError};
use crate::kernel::mount::{self, NsId};
use crate::kernel::privs::{self, FsIdentity, SigSet, WaitStatus};
use crate::mapping;
use crate::table::CryptFlags;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The signals a session holder blocks, waits for and forwards.
const TERMINATING: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Largest secret file read into an environment variable (the kernel's limit for one
/// environment string is 128 KiB).
const SECRET_MAX: u64 = 128 * 1024;

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
    image: Option<Creating>,
    /// The vault, opened once with the caller's rights: the loop device is bound to this
    /// descriptor, never to the path.
    vault_file: Option<File>,
}

/// An image `create_image` made, until it is published or removed.
#[derive(Debug)]
struct Creating {
    /// Open read-write (the header is written through it).
    file: File,
    /// Its device and inode (it is removed only while it is still this file).
    dev: u64,
    ino: u64,
    /// Whose filesystem rights create, move and remove it.
    owner: Option<Identity>,
    /// The directory it is in, opened once (`O_PATH`): it is created, renamed and removed
    /// by name relative to this descriptor.
    dir: OwnedFd,
    /// Its temporary name and its final name in `dir`.
    temp_name: OsString,
    final_name: OsString,
    /// Whether it may replace what is at its path.
    replace: bool,
    /// Whether `create_image` took the session lock (released when it is removed).
    locked: bool,
    /// The parent directories it created, deepest first (removed with it when empty).
    made_dirs: Vec<PathBuf>,
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

fn dm_error(op: &'static str, name: &str, e: impl std::fmt::Display) -> HostError {
    HostError::new(op, name, io::Error::other(e.to_string()))
}

/// A failed ioctl as a host error that keeps its cause: the errno's kind with the
/// device-mapper message (so a busy device stays exit 5).
fn dm_os_error(op: &'static str, name: &str, e: DmError) -> HostError {
    let kind = match e.errno() {
        Some(libc::EBUSY | libc::EEXIST) => io::ErrorKind::ResourceBusy,
        Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    HostError::new(op, name, io::Error::new(kind, e.to_string()))
}

/// A mapping failure as a host error that keeps its meaning as an error kind (busy, missing)
/// and its errno where it came from the kernel, and its message and hint as text.
fn mapping_error(op: &'static str, name: &str, e: mapping::MapError) -> HostError {
    let kind = match e.kind() {
        mapping::Kind::Busy => io::ErrorKind::ResourceBusy,
        mapping::Kind::Device => io::ErrorKind::NotFound,
        mapping::Kind::Invalid => io::ErrorKind::Other,
    };
    HostError::new(op, name, io::Error::new(kind, e.to_string()))
}

/// Switches to `owner`'s filesystem rights (none: stays root).
fn as_owner(owner: Option<&Identity>) -> io::Result<Option<FsIdentity>> {
    owner
        .map(|u| FsIdentity::switch(u.uid, u.gid, &u.groups))
        .transpose()
}

/// `.NAME.tazpod-new-XXXXXXXX` next to `path`.
fn temp_name(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the vault path names no file")
    })?;
    let mut rnd = [0u8; 4];
    crate::write::os_random(&mut rnd).map_err(io::Error::other)?;
    let mut t = OsString::from(".");
    t.push(name);
    t.push(format!(
        ".tazpod-new-{}",
        rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    Ok(path.with_file_name(t))
}

/// How old (last modified) an unlocked temporary image must be before [`sweep_stale`] takes it
/// for the leftover of a killed creation: its creator locks it right after making it, and
/// writes to it while it works.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the temporary images (`.NAME.tazpod-new-XXXXXXXX` next to `path`) that a creation
/// killed by SIGKILL left behind, and returns their paths.
///
/// A creator holds an exclusive `flock` on its temporary image from just after making it until
/// it is published or removed, so an image is taken for a leftover only when nobody holds that
/// lock, it is a regular file owned by `uid`, and it was last modified more than
/// [`STALE_AFTER`] ago. Such an image never held anything but a new, empty filesystem. Errors
/// are ignored: a leftover that cannot be removed stays, as before.
fn sweep_stale(path: &Path, uid: u32) -> Vec<PathBuf> {
    let (Some(name), dir) = (path.file_name(), path.parent()) else {
        return Vec::new();
    };
    let dir = dir
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".tazpod-new-");
    let prefix = prefix.as_bytes();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(suffix) = file_name.as_bytes().strip_prefix(prefix) else {
            continue;
        };
        if suffix.len() != 8 || !suffix.iter().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let candidate = dir.join(&file_name);
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&candidate)
        else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if !meta.file_type().is_file() || meta.uid() != uid || !old {
            continue;
        }
        if mount::flock(&file, mount::LockOp::TryExclusive).is_err() {
            continue; // a live creator holds it
        }
        let same = std::fs::symlink_metadata(&candidate)
            .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        if same && std::fs::remove_file(&candidate).is_ok() {
            removed.push(candidate);
        }
    }
    removed
}

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

/// tazpod's own ext4 formatter (`ext4fmt`) on the new mapping `device`: only metadata is
/// written (the rest of a fresh dm-crypt device reads as noise, which the lazily initialised
/// inode tables and journal never read), then synced. Root directory owned by `owner`,
/// label [`super::session::FS_LABEL`], fresh random UUID and hash seed.
fn builtin_mkfs(device: &Path, owner: (u32, u32)) -> HostResult<()> {
    use std::io::{Seek, SeekFrom};
    let fail = |e: io::Error| HostError::new("make the ext4 filesystem on", shown(device), e);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(device)
        .map_err(fail)?;
    let size = f.seek(SeekFrom::End(0)).map_err(fail)?;
    let mut rand = [0u8; 32];
    crate::write::os_random(&mut rand).map_err(|e| fail(io::Error::other(e)))?;
    let (mut uuid, mut hash_seed) = ([0u8; 16], [0u8; 16]);
    uuid.copy_from_slice(rand.get(..16).unwrap_or(&[0; 16]));
    hash_seed.copy_from_slice(rand.get(16..).unwrap_or(&[0; 16]));
    // A version 4 (random) UUID, as mkfs.ext4 makes.
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let params = ext4fmt::Params {
        size,
        uuid,
        hash_seed,
        label: super::session::FS_LABEL.as_bytes().to_vec(),
        root_owner: owner,
        time,
    };
    ext4fmt::format(&mut f, &params).map_err(|e| match e {
        ext4fmt::Error::Write(_, err) => fail(err),
        other => fail(io::Error::other(other.to_string())),
    })?;
    f.sync_all().map_err(fail)
}

/// The last lines of a tool's error output, on one line.
fn tail_of(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

fn control(name: &str) -> HostResult<dm::Control> {
    dm::Control::open().map_err(|e| dm_os_error("open device-mapper control for", name, e))
}

impl Host for RealHost {
    fn create_image(&mut self, req: &ImageRequest) -> HostResult<NewImage> {
        let shown_path = shown(&req.path);
        let fail = |e: io::Error| HostError::new("create", shown_path.clone(), e);
        let temp = temp_name(&req.path).map_err(fail)?;
        let (Some(temp_base), Some(final_name)) = (temp.file_name(), req.path.file_name()) else {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the vault path names no file",
            )));
        };
        let (temp_base, final_name) = (temp_base.to_os_string(), final_name.to_os_string());
        let dir = req.path.parent().filter(|d| !d.as_os_str().is_empty());
        let mut made_dirs = Vec::new();
        let (dir_fd, file) = {
            // Made with the owner's rights: a path the user controls leads only where the
            // user could create files anyway, and what is made belongs to the user.
            let _as = as_owner(req.owner.as_ref()).map_err(fail)?;
            let mut up = dir;
            while let Some(d) = up.filter(|d| !d.as_os_str().is_empty()) {
                match std::fs::symlink_metadata(d) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        made_dirs.push(d.to_path_buf())
                    }
                    _ => break,
                }
                up = d.parent();
            }
            let made = match dir {
                Some(d) => std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(d)
                    .map_err(fail),
                None => Ok(()),
            };
            if made_dirs.is_empty() {
                let uid = req.owner.as_ref().map_or(0, |o| o.uid);
                for p in sweep_stale(&req.path, uid) {
                    eprintln!(
                        "tazpod: removed {}, the unfinished image of a vault creation that was \
                         killed",
                        shown(&p)
                    );
                }
            }
            let f = made.and_then(|()| {
                // The directory is opened once; the image is made in it by name, never
                // through a symbolic link, and must be new.
                let d = crate::kernel::fs::open_dir_path(dir.unwrap_or(Path::new(".")))
                    .map_err(fail)?;
                let f = crate::kernel::fs::create_new_at(d.as_fd(), &temp_base, 0o600)
                    .map_err(|e| HostError::new("create", shown(&temp), e))?;
                // Held until the image is published or removed: `sweep_stale` of a later
                // creation leaves a locked image alone.
                mount::flock(&f, mount::LockOp::TryExclusive)
                    .map_err(|e| HostError::new("lock", shown(&temp), e))?;
                Ok((d, f))
            });
            match f {
                Ok(df) => df,
                Err(e) => {
                    for d in &made_dirs {
                        let _ = std::fs::remove_dir(d);
                    }
                    return Err(e);
                }
            }
        };
        let meta = file
            .metadata()
            .map_err(|e| HostError::new("stat", shown(&temp), e))?;
        let mut c = Creating {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            owner: req.owner.clone(),
            dir: dir_fd,
            temp_name: temp_base,
            final_name,
            replace: req.replace,
            locked: false,
            made_dirs,
        };
        let id = lock::vault_id(&meta);
        // Sparse: only what the header and the filesystem write takes room.
        let sized = c
            .file
            .set_len(req.size)
            .map_err(|e| HostError::new("size", shown(&temp), e));
        let locked = sized.and_then(|()| match &self.lock_dir {
            None => Ok(None),
            Some(dir) => {
                let lock_err =
                    |e: io::Error| HostError::new("take the session lock in", shown(dir), e);
                lock::ensure_runtime_dir(dir).map_err(lock_err)?;
                match lock::acquire(dir, &id, lock::find_ns_member).map_err(lock_err)? {
                    Acquired::Holder(l) => Ok(Some(l)),
                    Acquired::Joiner { .. } => {
                        Err(lock_err(io::Error::from_raw_os_error(libc::EBUSY)))
                    }
                }
            }
        });
        let image = NewImage {
            temp: temp.clone(),
            path: req.path.clone(),
            id,
        };
        match locked {
            Ok(l) => {
                c.locked = l.is_some();
                if l.is_some() {
                    self.lock = l;
                }
                self.image = Some(c);
                Ok(image)
            }
            Err(e) => {
                self.image = Some(c);
                let _ = self.remove_image(&image);
                Err(e)
            }
        }
    }

    fn format_image(&mut self, image: &NewImage, req: &FormatRequest<'_>) -> HostResult<VaultKey> {
        let name = shown(&image.path);
        let fail =
            |op: &'static str, e: String| HostError::new(op, name.clone(), io::Error::other(e));
        let c = self
            .image
            .as_mut()
            .ok_or_else(|| fail("format", "no image is being created".into()))?;
        // The writers' lock, as every header writer takes it (the new file is still private to
        // this process, so nobody else can hold it).
        let _lock =
            crate::device::metadata_lock(&c.file, &name, crate::kernel::flock::Mode::Exclusive)
                .map_err(|e| fail("lock", e.to_string()))?;
        let new = crate::write::write_header(
            req.spec,
            req.passphrase,
            &mut c.file,
            &name,
            req.verbose,
            None,
        )
        .map_err(|e| {
            // The CLI's message and hint, as an `Other` I/O error: exit 1 for every failure.
            let e = crate::error::CliError::from(e);
            match e.hint {
                Some(h) => fail("format", format!("{} ({h})", e.message)),
                None => fail("format", e.message),
            }
        })?;
        // Read back through the reader: what is mapped is what a later unlock will see.
        let mut f = &c.file;
        let header = luks2::read_header(&mut f)
            .map_err(|e| fail("read back the header of", e.to_string()))?;
        let segment = luks2::volume::DataSegment::of(&header)
            .map_err(|e| fail("read back the header of", e.to_string()))?;
        let digest = match &header {
            luks2::Header::Luks2(h) => h
                .metadata
                .digests
                .iter()
                .find(|(_, d)| d.keyslots.contains(&0))
                .map_or(0, |(id, _)| *id),
            luks2::Header::Luks1(_) => 0,
        };
        Ok(VaultKey {
            volume: VolumeInfo::of(&header, segment, digest),
            key: new.volume_key,
        })
    }

    fn make_filesystem(
        &mut self,
        how: &super::host::Mkfs,
        device: &Path,
        sector_size: u32,
        owner: (u32, u32),
    ) -> HostResult<()> {
        let program = match how {
            super::host::Mkfs::Builtin => return builtin_mkfs(device, owner),
            super::host::Mkfs::Tool(p) => p,
        };
        let args = super::session::mkfs_args(device, sector_size, owner);
        let target = shown(device);
        let out = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| HostError::new("run", shown(program), e))?;
        if out.status.success() {
            return Ok(());
        }
        let mut why = out.status.to_string();
        let tail = tail_of(&out.stderr);
        if !tail.is_empty() {
            why = format!("{why}: {tail}");
        }
        Err(HostError::new(
            "mkfs.ext4 on",
            target,
            io::Error::other(why),
        ))
    }

    fn publish_image(&mut self, image: &NewImage) -> HostResult<()> {
        let fail = |e: io::Error| HostError::new("move the new vault to", shown(&image.path), e);
        let c = self
            .image
            .as_mut()
            .ok_or_else(|| fail(io::Error::other("no image is being created")))?;
        c.file.sync_all().map_err(fail)?;
        let _as = as_owner(c.owner.as_ref()).map_err(fail)?;
        // Only our own file moves: what is under the temporary name is checked first, the
        // rename works by name in the directory opened at creation, and the result is
        // checked again.
        let ours = |name: &OsString| {
            crate::kernel::fs::stat_at(c.dir.as_fd(), name).is_ok_and(|di| di == (c.dev, c.ino))
        };
        if !ours(&c.temp_name) {
            return Err(fail(io::Error::other(format!(
                "{} is no longer the image tazpod made (it was moved or replaced); nothing was \
                 published",
                shown(&image.temp)
            ))));
        }
        {
            crate::kernel::fs::rename_at(c.dir.as_fd(), &c.temp_name, &c.final_name, !c.replace)
                .map_err(|e| {
                    if e.raw_os_error() == Some(libc::EEXIST) {
                        HostError::new(
                            "move the new vault to",
                            format!(
                                "{} (something appeared there meanwhile: another tazpod creating \
                             the same vault?)",
                                shown(&image.path)
                            ),
                            e,
                        )
                    } else {
                        fail(e)
                    }
                })?;
        }
        if !ours(&c.final_name) {
            return Err(fail(io::Error::other(
                "the published image was moved or replaced at once",
            )));
        }
        if let Ok(dir) = File::open(format!("/proc/self/fd/{}", c.dir.as_raw_fd())) {
            let _ = dir.sync_all();
        }
        // The vault is in place: the lock that kept sweepers away has done its work.
        let _ = mount::flock(&c.file, mount::LockOp::Unlock);
        Ok(())
    }

    fn remove_image(&mut self, image: &NewImage) -> HostResult<()> {
        let Some(c) = self.image.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        {
            let _as = as_owner(c.owner.as_ref())
                .map_err(|e| HostError::new("remove", shown(&image.temp), e))?;
            for (p, name) in [(&image.temp, &c.temp_name), (&image.path, &c.final_name)] {
                let ours = crate::kernel::fs::stat_at(c.dir.as_fd(), name)
                    .is_ok_and(|di| di == (c.dev, c.ino));
                if ours {
                    if let Err(e) = crate::kernel::fs::unlink_at(c.dir.as_fd(), name) {
                        result = Err(HostError::new("remove", shown(p), e));
                    }
                }
            }
            // The directories made for it, if nothing else went in meanwhile.
            for d in &c.made_dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
        if c.locked {
            // Held exclusively: dropping it removes the lock file.
            self.lock = None;
        }
        result
    }

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

    fn map_vault(&mut self, req: &MapRequest<'_>) -> HostResult<MappingHandle> {
        // The vault as the caller opened it, or the image being created: by descriptor.
        let data = match (&self.vault_file, &self.image) {
            (Some(f), _) => f,
            (None, Some(c)) => &c.file,
            (None, None) => {
                return Err(dm_error(
                    "map the vault as",
                    req.name,
                    "no open vault to map",
                ))
            }
        };
        let m = mapping::activate_fd(
            &mapping::MapRequest {
                name: req.name,
                data: req.vault,
                volume: req.volume,
                key: req.key,
                readonly: req.readonly,
                flags: CryptFlags::default(),
                key_mode: mapping::KeyMode::KeyringOrHex,
                make_node: false,
            },
            data,
        )
        .map_err(|e| mapping_error("map the vault as", req.name, e))?;
        let node = req.node_dir.join(req.name);
        if let Err(e) = crate::kernel::ensure_device_node(&node, libc::S_IFBLK, m.dev) {
            if let Ok(ctl) = dm::Control::open() {
                let _ = ctl.remove(req.name, false);
            }
            return Err(dm_error("create node", &shown(&node), e));
        }
        Ok(MappingHandle {
            name: req.name.to_string(),
            node,
            dev: m.dev.to_raw(),
        })
    }

    fn hold_mapping(&mut self, m: &MappingHandle) -> HostResult<()> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&m.node)
            .map_err(|e| HostError::new("open", shown(&m.node), e))?;
        self.hold = Some(f);
        Ok(())
    }

    fn defer_remove(&mut self, m: &MappingHandle) -> HostResult<()> {
        match control(&m.name)?.remove(&m.name, true) {
            Ok(dm::RemoveOutcome::Deferred) => Ok(()),
            // Not held open: it is gone already, and nothing can be mounted from it.
            Ok(dm::RemoveOutcome::Removed) => Err(HostError::new(
                "deferred removal of",
                &m.name,
                io::Error::other("the mapping was removed at once: it was not held open"),
            )),
            Err(e) => Err(dm_os_error("deferred removal of", &m.name, e)),
        }
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

    fn release_mapping(&mut self, _m: &MappingHandle) -> HostResult<()> {
        self.hold = None;
        Ok(())
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

    fn remove_mapping(&mut self, m: &MappingHandle) -> HostResult<()> {
        let ctl = control(&m.name)?;
        // Only our own mapping: the name could have been reused after a deferred removal.
        match ctl.info(&m.name) {
            Ok(info) if info.dev.to_raw() == m.dev => {}
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(dm_os_error("look up mapping", &m.name, e)),
        }
        match ctl.remove(&m.name, false) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            // Still open (a lazily detached mount): leave it to the deferred removal.
            Err(e) if e.is_busy() => ctl
                .remove(&m.name, true)
                .map(|_| ())
                .map_err(|e| dm_os_error("remove mapping", &m.name, e)),
            Err(e) => Err(dm_os_error("remove mapping", &m.name, e)),
        }
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

#[cfg(test)]
mod tests {
    //! As root only: the whole lifecycle with the real host, device-mapper aside (the vault
    //! is a tmpfs "mounted" where ext4 would be), in a forked single-threaded child.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::code;
    use crate::ghost::host::{ExecSpec, VolumeInfo};
    use crate::ghost::session::{run_holder, Bind, SessionEnd, SessionPlan, ShellPlan, VaultKey};

    /// A busy device is exit 5 in ghost mode as in `open`: the failure keeps its cause
    /// through the host layer (the mapping's exit code, the ioctl's errno).
    #[test]
    fn host_errors_keep_their_exit_code() {
        let failed = |kind, hint: Option<&str>| mapping::MapError::Failed {
            kind,
            message: "device tazpod-x is busy".into(),
            hint: hint.map(String::from),
            errno: Some(libc::EBUSY),
        };
        let e = mapping_error(
            "map the vault as",
            "tazpod-x",
            failed(mapping::Kind::Busy, Some("close it")),
        );
        assert_eq!(e.exit_code(), code::BUSY);
        assert!(e.to_string().contains("is busy (close it)"), "{e}");
        for (k, want) in [
            (mapping::Kind::Device, code::DEVICE),
            (mapping::Kind::Invalid, code::INVALID),
        ] {
            let e = mapping_error("map the vault as", "v", failed(k, None));
            assert_eq!(e.exit_code(), want, "{k:?}");
        }
        let dm = |errno| DmError {
            op: "DEV_CREATE",
            name: "tazpod-x".into(),
            kind: dm::DmErrorKind::Os(crate::kernel::Errno(errno)),
        };
        let e = dm_os_error("remove mapping", "tazpod-x", dm(libc::EBUSY));
        assert_eq!(e.exit_code(), code::BUSY);
        assert!(e.to_string().contains("DEV_CREATE"), "{e}");
        let e = dm_os_error("look up mapping", "tazpod-x", dm(libc::ENXIO));
        assert_eq!(e.exit_code(), code::DEVICE);
        let e = dm_os_error("look up mapping", "tazpod-x", dm(libc::EINVAL));
        assert_eq!(e.exit_code(), code::INVALID);
    }
    use luks2::volume::DataSegment;
    use luks2::VolumeKey;
    use std::ffi::OsString;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;

    /// The real host with the dm operations replaced: `mount_ext4` mounts a tmpfs.
    struct NoDm(RealHost);

    macro_rules! delegate {
        ($($name:ident($($a:ident: $t:ty),*) -> $r:ty;)*) => {
            $(fn $name(&mut self, $($a: $t),*) -> $r { self.0.$name($($a),*) })*
        };
    }

    impl Host for NoDm {
        delegate! {
            block_signals() -> HostResult<()>;
            pending_signal() -> HostResult<Option<i32>>;
            unshare_mount_ns() -> HostResult<()>;
            make_rprivate(p: &Path) -> HostResult<()>;
            mount_tmpfs(p: &Path) -> HostResult<()>;
            make_dir(p: &Path, m: u32) -> HostResult<()>;
            chown(p: &Path, u: u32, g: u32) -> HostResult<()>;
            open_user_dir(p: &Path, u: &Identity, m: DirMode) -> HostResult<DirRef>;
            open_vault_dir(r: &Path, p: &Path, u: &Identity, c: bool) -> HostResult<DirRef>;
            move_mount(f: &Path, t: &DirRef) -> HostResult<()>;
            bind_mount(f: &DirRef, t: &DirRef, r: bool) -> HostResult<()>;
            session_ready() -> HostResult<()>;
            join_namespace(p: u32, d: u64, i: u64) -> HostResult<()>;
            wait_for_joined_shells() -> HostResult<bool>;
            kill_namespace_stragglers() -> HostResult<usize>;
            umount(p: &Path) -> HostResult<()>;
            getpid() -> u32;
            fork() -> HostResult<Fork>;
            set_groups(g: &[u32]) -> HostResult<()>;
            set_resgid(g: u32) -> HostResult<()>;
            clear_ambient_caps() -> HostResult<()>;
            drop_bounding_set() -> HostResult<()>;
            set_resuid(u: u32) -> HostResult<()>;
            clear_caps() -> HostResult<()>;
            set_no_new_privs() -> HostResult<()>;
            die_with_parent(p: u32) -> HostResult<()>;
            close_stray_fds() -> HostResult<()>;
            chdir(d: &Path) -> HostResult<()>;
            read_secret(p: &Path) -> HostResult<Vec<u8>>;
            reset_signals() -> HostResult<()>;
            exec(p: &Path, a: &[OsString], e: &[(OsString, OsString)]) -> HostError;
            child_exit(c: i32, e: &HostError) -> ();
            wait_child(p: u32) -> HostResult<WaitStatus>;
            create_image(r: &ImageRequest) -> HostResult<NewImage>;
            format_image(i: &NewImage, r: &FormatRequest<'_>) -> HostResult<VaultKey>;
            make_filesystem(
                how: &crate::ghost::session::Mkfs,
                d: &Path,
                s: u32,
                o: (u32, u32)
            ) -> HostResult<()>;
            publish_image(i: &NewImage) -> HostResult<()>;
            remove_image(i: &NewImage) -> HostResult<()>;
        }
        fn map_vault(&mut self, req: &MapRequest<'_>) -> HostResult<MappingHandle> {
            Ok(MappingHandle {
                name: req.name.into(),
                node: req.node_dir.join(req.name),
                dev: 0,
            })
        }
        fn hold_mapping(&mut self, _: &MappingHandle) -> HostResult<()> {
            Ok(())
        }
        fn defer_remove(&mut self, _: &MappingHandle) -> HostResult<()> {
            Ok(())
        }
        fn mount_ext4(&mut self, _: &Path, target: &Path, _: bool) -> HostResult<()> {
            mount::mount_tmpfs(target, libc::MS_NOSUID | libc::MS_NODEV)
                .map_err(|e| HostError::new("mount", shown(target), e))
        }
        fn release_mapping(&mut self, _: &MappingHandle) -> HostResult<()> {
            Ok(())
        }
        fn remove_mapping(&mut self, _: &MappingHandle) -> HostResult<()> {
            Ok(())
        }
    }

    const NOBODY: u32 = 65534;

    /// Runs a whole session with `NoDm` in a forked child; returns its exit code and the
    /// session report.
    fn session_in_child(plan: SessionPlan, shell: ShellPlan, report: PathBuf) -> (i32, String) {
        let st = spawn_session(plan, shell, report.clone()).wait().unwrap();
        (
            st.code().unwrap_or(-1),
            std::fs::read_to_string(report).unwrap_or_default(),
        )
    }

    fn spawn_session(
        plan: SessionPlan,
        shell: ShellPlan,
        report_path: PathBuf,
    ) -> std::process::Child {
        let mut cmd = std::process::Command::new("/bin/true");
        // SAFETY: the closure runs in the forked child, which is single-threaded; it runs
        // the session and leaves with _exit, never returning to the test harness.
        unsafe {
            cmd.pre_exec(move || {
                // Closing std's exec-status pipe lets spawn() return now, not at our exit.
                privs::close_fds_from(3)?;
                let mut host = NoDm(RealHost::default());
                let vault = VaultKey {
                    volume: VolumeInfo {
                        version: 2,
                        uuid: "u".into(),
                        persistent_flags: vec![],
                        segment: DataSegment {
                            offset: 0,
                            size: None,
                            encryption: "aes-xts-plain64".into(),
                            key_size: 64,
                            sector_size: 512,
                            iv_tweak: 0,
                        },
                        digest: 0,
                    },
                    key: VolumeKey::from_vec(vec![0; 64]),
                };
                let r = run_holder(&mut host, &plan, &shell, vault);
                let _ = std::fs::write(&report_path, format!("{r:?}"));
                let code = match r.end {
                    SessionEnd::Shell(st) if r.cleanup_errors.is_empty() && r.torn_down => {
                        st.code()
                    }
                    _ => 99,
                };
                privs::exit_now(code)
            });
        }
        cmd.spawn().unwrap()
    }

    struct Scene {
        _dir: tempfile::TempDir,
        root: PathBuf,
        home: PathBuf,
        out: PathBuf,
        user: Identity,
    }

    fn scene() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = root.join("home");
        let out = root.join("out");
        for d in [&home, &out] {
            std::fs::create_dir(d).unwrap();
            std::os::unix::fs::chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        // A planted link to a root-owned directory.
        std::os::unix::fs::symlink("/etc", home.join("evil")).unwrap();
        let user = Identity {
            name: "nobody".into(),
            uid: NOBODY,
            gid: NOBODY,
            groups: vec![NOBODY],
            home: home.clone(),
            shell: "/bin/sh".into(),
        };
        Scene {
            _dir: dir,
            root,
            home,
            out,
            user,
        }
    }

    fn plan(s: &Scene, binds: Vec<Bind>) -> SessionPlan {
        SessionPlan {
            vault: "/nonexistent".into(),
            name: "tazpod-test".into(),
            readonly: false,
            mapper_dir: s.root.join("mapper"),
            mount_point: s.home.join("secrets"),
            binds,
            user: s.user.clone(),
        }
    }

    fn shell(s: &Scene, script: String) -> ShellPlan {
        ShellPlan {
            user: s.user.clone(),
            exec: ExecSpec {
                program: "/bin/sh".into(),
                argv: vec!["sh".into(), "-c".into(), script.into()],
                env: vec![
                    ("TAZPOD_GHOST_MODE".into(), "true".into()),
                    ("PATH".into(), "/usr/bin:/bin".into()),
                    ("SECRET".into(), "plain".into()),
                ],
                secrets: vec![],
                cwd: vec![s.home.clone()],
            },
            no_new_privs: true,
            drop_bounding_set: true,
        }
    }

    fn nothing_left(s: &Scene) {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mi.contains(&s.root.display().to_string()),
            "a mount leaked"
        );
        assert!(!s.home.join("secrets/written").exists());
        assert_eq!(std::fs::read_dir(s.root.join("mapper")).unwrap().count(), 0);
    }

    #[test]
    fn real_lifecycle_without_device_mapper() {
        if privs::geteuid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let s = scene();
        let binds = vec![
            Bind {
                source: ".cfg".into(),
                target: s.home.join(".config/tool"),
                readonly: false,
            },
            Bind {
                source: ".ro".into(),
                target: s.home.join(".ro"),
                readonly: true,
            },
        ];
        let script = format!(
            "set -e; o={out}; m={home}/secrets; id -u > $o/uid; \
             grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|CapInh)' /proc/self/status > $o/caps; \
             echo hi > $m/written; stat -c %u $m/written > $o/owner; \
             echo x > $m/.cfg/f; cat {home}/.config/tool/f > $o/bound; \
             if touch {home}/.ro/x 2>/dev/null; then echo rw; else echo ro; fi > $o/ro; \
             grep -c \" $m \" /proc/self/mountinfo > $o/mounted; \
             echo \"$TAZPOD_GHOST_MODE $SECRET\" > $o/env; exit 7",
            out = s.out.display(),
            home = s.home.display()
        );
        let (code, report) =
            session_in_child(plan(&s, binds), shell(&s, script), s.root.join("report"));
        assert_eq!(code, 7, "the shell's status passes through: {report}");
        let read = |f: &str| std::fs::read_to_string(s.out.join(f)).unwrap();
        assert_eq!(read("uid"), "65534\n");
        for l in read("caps").lines() {
            assert!(l.ends_with("0000000000000000"), "{l}");
        }
        assert_eq!(read("owner"), "65534\n");
        assert_eq!(read("bound"), "x\n");
        assert_eq!(read("ro"), "ro\n");
        assert_eq!(read("mounted"), "1\n");
        assert_eq!(read("env"), "true plain\n");
        nothing_left(&s);
    }

    #[test]
    fn sigkill_of_the_session_process_leaves_nothing() {
        if privs::geteuid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let s = scene();
        let script = format!(
            "echo $$ > {o}/pid.tmp && mv {o}/pid.tmp {o}/pid && exec sleep 60",
            o = s.out.display()
        );
        let mut child = spawn_session(plan(&s, vec![]), shell(&s, script), s.root.join("r"));
        let pidfile = s.out.join("pid");
        for _ in 0..200 {
            if pidfile.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let shell_pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(Path::new(&format!("/proc/{shell_pid}")).exists());
        child.kill().unwrap();
        child.wait().unwrap();
        // The inner command dies with its parent (PR_SET_PDEATHSIG); reap-free check: its
        // /proc entry goes once init reaps it.
        let mut gone = false;
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{shell_pid}/stat"));
            if stat.map_or(true, |t| t.contains(") Z ")) {
                gone = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(gone, "the inner command survived its session process");
        nothing_left(&s);
    }

    fn wait_for(p: &Path) {
        for _ in 0..250 {
            if p.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("{} never appeared", p.display());
    }

    #[test]
    fn a_second_shell_joins_the_live_session() {
        if privs::geteuid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let s = scene();
        let o = s.out.display().to_string();
        let m = s.home.join("secrets").display().to_string();
        // The first shell writes a file in the vault, then waits for the joiner to finish.
        let first = format!(
            "echo one > {m}/from-first && touch {o}/ready && \
             while [ ! -e {o}/joined ]; do sleep 0.05; done"
        );
        let mut holder = spawn_session(plan(&s, vec![]), shell(&s, first), s.root.join("r1"));
        wait_for(&s.out.join("ready"));
        let pid = holder.id();
        let ns = mount::mount_ns_of(Some(pid)).unwrap();
        assert_ne!(ns, mount::mount_ns_of(None).unwrap());
        let second = shell(
            &s,
            format!("cat {m}/from-first > {o}/seen; id -u >> {o}/seen; touch {o}/joined"),
        );
        let mut joiner = std::process::Command::new("/bin/true");
        // SAFETY: runs in the forked single-threaded child, which leaves with _exit.
        unsafe {
            joiner.pre_exec(move || {
                privs::close_fds_from(3)?;
                let mut host = RealHost::default();
                let r = crate::ghost::session::run_joiner(
                    &mut host,
                    crate::ghost::session::JoinTarget {
                        pid,
                        ns_dev: ns.dev,
                        ns_ino: ns.ino,
                    },
                    &second,
                );
                privs::exit_now(match r.end {
                    SessionEnd::Shell(st) => st.code(),
                    _ => 99,
                })
            });
        }
        assert_eq!(joiner.status().unwrap().code(), Some(0));
        assert_eq!(
            std::fs::read_to_string(s.out.join("seen")).unwrap(),
            "one\n65534\n"
        );
        assert_eq!(holder.wait().unwrap().code(), Some(0));
        nothing_left(&s);
    }

    #[test]
    fn a_bind_over_a_root_directory_is_refused_and_unwound() {
        if privs::geteuid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let s = scene();
        let binds = vec![
            Bind {
                source: ".cfg".into(),
                target: s.home.join(".config/tool"),
                readonly: false,
            },
            Bind {
                source: ".x".into(),
                target: s.home.join("evil"),
                readonly: false,
            },
        ];
        let (code, report) = session_in_child(
            plan(&s, binds),
            shell(&s, "exit 0".into()),
            s.root.join("report"),
        );
        assert_eq!(code, 99);
        assert!(report.contains("owned by uid 0"), "{report}");
        assert!(report.contains("cleanup_errors: []"), "{report}");
        nothing_left(&s);
    }

    #[test]
    fn open_user_dir_resolves_as_the_user() {
        if privs::geteuid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
        std::os::unix::fs::symlink("/root", home.join("to-root")).unwrap();
        std::os::unix::fs::symlink("/etc", home.join("to-etc")).unwrap();
        let user = Identity {
            name: "nobody".into(),
            uid: NOBODY,
            gid: NOBODY,
            groups: vec![NOBODY],
            home: home.clone(),
            shell: "/bin/sh".into(),
        };
        let mut h = RealHost::default();
        let mk = DirMode {
            create: true,
            owned: true,
        };
        // created as the user
        let d = h.open_user_dir(&home.join("a/b"), &user, mk).unwrap();
        assert!(d.fd.is_some());
        assert_eq!(std::fs::metadata(home.join("a/b")).unwrap().uid(), NOBODY);
        // root-only places cannot be reached, root-owned ones are refused as targets
        let e = h
            .open_user_dir(&home.join("to-root/x"), &user, mk)
            .unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(!Path::new("/root/x").exists());
        let e = h
            .open_user_dir(&home.join("to-etc"), &user, mk)
            .unwrap_err();
        assert!(e.to_string().contains("owned by uid 0"), "{e}");
        // root's own rights are back afterwards
        assert!(std::fs::File::create(dir.path().join("root-can-write")).is_ok());
    }

    #[test]
    fn bind_sources_resolve_beneath_the_vault_without_links() {
        if privs::geteuid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // the vault's root, owned by the user as after the chown
        let vault = dir.path().join("vault");
        std::fs::create_dir(&vault).unwrap();
        std::os::unix::fs::chown(&vault, Some(NOBODY), Some(NOBODY)).unwrap();
        std::os::unix::fs::symlink("/", vault.join("rootlink")).unwrap();
        std::os::unix::fs::symlink("real", vault.join("inner-link")).unwrap();
        std::fs::create_dir(vault.join("real")).unwrap();
        let user = nobody(dir.path());
        let mut h = RealHost::default();
        // a real directory, and a missing one made as the user
        assert!(h
            .open_vault_dir(&vault, Path::new("real"), &user, false)
            .is_ok());
        let d = h
            .open_vault_dir(&vault, Path::new("new/sub"), &user, true)
            .unwrap();
        assert_eq!(d.path, vault.join("new/sub"));
        assert_eq!(
            std::fs::metadata(vault.join("new/sub")).unwrap().uid(),
            NOBODY
        );
        // a link out of the vault, a link inside it, through a link: refused
        for bad in ["rootlink", "rootlink/etc", "rootlink/root/x", "inner-link"] {
            let e = h
                .open_vault_dir(&vault, Path::new(bad), &user, true)
                .unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{bad}: {e}");
        }
        assert!(!Path::new("/root/x").exists());
        // nothing but plain names
        assert!(h
            .open_vault_dir(&vault, Path::new("../x"), &user, true)
            .is_err());
        // root's own rights are back afterwards
        assert!(std::fs::File::create(dir.path().join("root-can-write")).is_ok());
    }

    fn nobody(home: &Path) -> Identity {
        Identity {
            name: "nobody".into(),
            uid: NOBODY,
            gid: NOBODY,
            groups: vec![NOBODY],
            home: home.to_path_buf(),
            shell: "/bin/sh".into(),
        }
    }

    #[test]
    fn only_unlocked_old_leftovers_of_the_same_vault_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("vault.img");
        let uid = privs::geteuid();
        let old = std::time::SystemTime::now() - 2 * STALE_AFTER;
        let make = |name: &str, age: std::time::SystemTime| {
            let p = dir.path().join(name);
            let f = File::create(&p).unwrap();
            f.set_modified(age).unwrap();
            (p, f)
        };
        let (stale, _) = make(".vault.img.tazpod-new-0123abcd", old);
        let (young, _) = make(
            ".vault.img.tazpod-new-89abcdef",
            std::time::SystemTime::now(),
        );
        let (held, held_file) = make(".vault.img.tazpod-new-deadbeef", old);
        mount::flock(&held_file, mount::LockOp::TryExclusive).unwrap();
        let (other_vault, _) = make(".other.img.tazpod-new-0123abcd", old);
        let (bad_suffix, _) = make(".vault.img.tazpod-new-0123abcg", old);
        let (long_suffix, _) = make(".vault.img.tazpod-new-0123abcd0", old);
        let the_vault = make("vault.img", old).0;
        let link = dir.path().join(".vault.img.tazpod-new-11111111");
        std::os::unix::fs::symlink(&the_vault, &link).unwrap();
        let subdir = dir.path().join(".vault.img.tazpod-new-22222222");
        std::fs::create_dir(&subdir).unwrap();

        // Another owner's leftovers are not ours to remove.
        assert!(sweep_stale(&vault, uid.wrapping_add(1)).is_empty());
        assert_eq!(sweep_stale(&vault, uid), vec![stale.clone()]);
        assert!(!stale.exists());
        for kept in [
            &young,
            &held,
            &other_vault,
            &bad_suffix,
            &long_suffix,
            &the_vault,
            &link,
            &subdir,
        ] {
            assert!(kept.symlink_metadata().is_ok(), "{}", kept.display());
        }
        // Once its creator lets go, the held one is a leftover too.
        drop(held_file);
        assert_eq!(sweep_stale(&vault, uid), vec![held]);
        // A vault path in the current directory or with no file name sweeps nothing.
        assert!(sweep_stale(Path::new("/"), uid).is_empty());
    }

    #[test]
    fn a_new_image_is_made_as_the_owner_formatted_moved_into_place_or_removed() {
        if privs::geteuid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
        let vault = home.join("a/b/vault.img");
        let req = ImageRequest {
            path: vault.clone(),
            size: 32 << 20,
            owner: Some(nobody(&home)),
            replace: false,
        };
        let mut h = RealHost::default();
        let img = h.create_image(&req).unwrap();
        assert_eq!(img.temp.parent(), vault.parent());
        let name = img.temp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".vault.img.tazpod-new-"), "{name}");
        let m = std::fs::metadata(&img.temp).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (NOBODY, NOBODY, 0o600)
        );
        assert_eq!(m.len(), 32 << 20);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "not sparse: {} blocks",
            m.blocks()
        );
        // Even when it looks old, a creation's image is not swept while the creation holds it.
        File::options()
            .write(true)
            .open(&img.temp)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * STALE_AFTER)
            .unwrap();
        assert!(sweep_stale(&vault, NOBODY).is_empty());
        assert!(img.temp.exists());
        for d in [home.join("a"), home.join("a/b")] {
            let m = std::fs::metadata(&d).unwrap();
            assert_eq!(
                (m.uid(), m.mode() & 0o777),
                (NOBODY, 0o700),
                "{}",
                d.display()
            );
        }
        assert!(
            !vault.exists(),
            "the vault path holds nothing before it is complete"
        );

        // The header: the writer's, read back, and the key opens through the reader.
        let spec = crate::write::quick_spec();
        let pass = luks2::Passphrase::from_vec(b"new vault".to_vec());
        let key = h
            .format_image(
                &img,
                &FormatRequest {
                    spec: &spec,
                    passphrase: &pass,
                    verbose: false,
                },
            )
            .unwrap();
        assert_eq!(key.volume.version, 2);
        assert_eq!(key.volume.segment.sector_size, 4096);
        assert_eq!(key.volume.segment.offset, 16 << 20);
        assert_eq!(key.key.len(), 64);
        let mut f = std::fs::File::open(&img.temp).unwrap();
        let header = luks2::read_header(&mut f).unwrap();
        let opts = luks2::unlock::UnlockOptions {
            keyslot: None,
            limits: luks2::kdf::KdfLimits::for_available_memory(crate::device::mem_available()),
        };
        let u = luks2::unlock::unlock(&header, &mut f, b"new vault", &opts).unwrap();
        assert_eq!(u.volume_key.as_bytes(), key.key.as_bytes());

        // mkfs.ext4 stands for any tool: its failure names the device and the status.
        use crate::ghost::session::Mkfs;
        let e = h
            .make_filesystem(
                &Mkfs::Tool("/bin/false".into()),
                Path::new("/dev/mapper/x"),
                4096,
                (1, 1),
            )
            .unwrap_err();
        assert!(e.to_string().contains("/dev/mapper/x"), "{e}");
        assert!(e.to_string().contains("exit status: 1"), "{e}");
        h.make_filesystem(
            &Mkfs::Tool("/bin/true".into()),
            Path::new("/x"),
            512,
            (1, 1),
        )
        .unwrap();
        // The built-in formatter (here on a plain file standing for the mapping).
        let fs = dir.path().join("fs.img");
        std::fs::File::create(&fs)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        h.make_filesystem(&Mkfs::Builtin, &fs, 4096, (NOBODY, NOBODY))
            .unwrap();
        let sb = std::fs::read(&fs).unwrap();
        assert_eq!(&sb[1080..1082], &[0x53, 0xef], "ext4 magic");
        let e = h
            .make_filesystem(&Mkfs::Builtin, &dir.path().join("missing"), 4096, (1, 1))
            .unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");

        h.publish_image(&img).unwrap();
        let m2 = std::fs::metadata(&vault).unwrap();
        assert_eq!((m2.ino(), m2.uid()), (m.ino(), NOBODY));
        assert!(!img.temp.exists());

        // A second image for the same path is not moved over the first, and goes.
        let mut h2 = RealHost::default();
        let img2 = h2.create_image(&req).unwrap();
        let e = h2.publish_image(&img2).unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(libc::EEXIST), "{e}");
        h2.remove_image(&img2).unwrap();
        assert!(!img2.temp.exists());
        assert_eq!(std::fs::metadata(&vault).unwrap().ino(), m.ino());
        // With `replace`, it is.
        let mut h3 = RealHost::default();
        let img3 = h3
            .create_image(&ImageRequest {
                replace: true,
                ..req.clone()
            })
            .unwrap();
        h3.publish_image(&img3).unwrap();
        let ino3 = std::fs::metadata(&vault).unwrap().ino();
        assert_ne!(ino3, m.ino());
        // Removed after it was published (a session setup failing after the move): the vault
        // goes, and only the directories made for it (none here).
        h3.remove_image(&img3).unwrap();
        assert!(!vault.exists());
        assert!(home.join("a/b").exists());

        // The directories made for an image go with it.
        let deep = home.join("c/d/vault.img");
        let mut h4 = RealHost::default();
        let img4 = h4
            .create_image(&ImageRequest {
                path: deep,
                ..req.clone()
            })
            .unwrap();
        h4.remove_image(&img4).unwrap();
        assert!(!home.join("c").exists());
        // Where the owner may not write, nothing is made.
        let e = RealHost::default()
            .create_image(&ImageRequest {
                path: dir.path().join("root-only/vault.img"),
                ..req
            })
            .unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(!dir.path().join("root-only").exists());
    }
}
