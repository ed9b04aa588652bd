//! Creating a vault's image: the file made under a temporary name with the owner's rights
//! and locked, its LUKS2 header, its ext4 filesystem (tazpod's formatter or `mkfs.ext4`),
//! moving it into place, or removing it; and the sweep of what a killed creation left.

use super::creating::Creating;
use super::{shown, RealHost};
use crate::ghost::host::{
    FormatRequest, HostError, HostResult, Identity, Image, ImageRequest, Mkfs, NewImage, VaultKey,
    VolumeInfo,
};
use crate::ghost::lock::{self, Acquired};
use crate::kernel::mount;
use crate::kernel::privs::FsIdentity;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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

/// tazpod's own ext4 formatter (`ext4fmt`) on the new mapping `device`: only metadata is
/// written (the rest of a fresh dm-crypt device reads as noise, which the lazily initialised
/// inode tables and journal never read), then synced. Root directory owned by `owner`,
/// label [`crate::ghost::session::FS_LABEL`], fresh random UUID and hash seed.
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
        label: crate::ghost::session::FS_LABEL.as_bytes().to_vec(),
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

impl Image for RealHost {
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
        // The writer's typed error rides inside the I/O error: the CLI reads it back for its
        // message, hint and exit code (`error::host_failure`).
        .map_err(|e| HostError::new("format", name.clone(), io::Error::other(e)))?;
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
        how: &Mkfs,
        device: &Path,
        sector_size: u32,
        owner: (u32, u32),
    ) -> HostResult<()> {
        let program = match how {
            Mkfs::Builtin => return builtin_mkfs(device, owner),
            Mkfs::Tool(p) => p,
        };
        let args = crate::ghost::session::mkfs_args(device, sector_size, owner);
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::tests::{nobody, NOBODY};
    use super::*;
    use crate::ghost::recording::RecordingHost;
    use crate::kernel::privs;
    use std::os::unix::fs::PermissionsExt;

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
        // The recording double of the session tests answers with the same shapes: the same
        // temporary name but for its random part, the same volume but for its random UUID.
        let mut fake = RecordingHost::default();
        let fake_img = fake.create_image(&req).unwrap();
        let (real_name, fake_name) = (
            img.temp.file_name().unwrap().to_string_lossy(),
            fake_img.temp.file_name().unwrap().to_string_lossy(),
        );
        assert_eq!(fake_img.temp.parent(), img.temp.parent());
        assert_eq!(fake_name.len(), real_name.len());
        assert_eq!(
            fake_name[..real_name.len() - 8],
            real_name[..real_name.len() - 8]
        );
        let fake_key = fake
            .format_image(
                &fake_img,
                &FormatRequest {
                    spec: &spec,
                    passphrase: &pass,
                    verbose: false,
                },
            )
            .unwrap();
        assert_eq!(fake_key.volume.segment, key.volume.segment);
        assert_eq!(
            (fake_key.volume.version, fake_key.volume.digest),
            (key.volume.version, key.volume.digest)
        );
        assert_eq!(
            fake_key.volume.persistent_flags,
            key.volume.persistent_flags
        );
        assert_eq!(fake_key.volume.uuid.len(), key.volume.uuid.len());
        assert_eq!(fake_key.key.len(), key.key.len());
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
