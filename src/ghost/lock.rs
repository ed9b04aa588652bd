//! The session lock: one file per vault in a root-only runtime directory
//! (`/run/tazpod/<dev>-<ino>.lock`), guarded by `flock`, recording the session holder's pid
//! and mount namespace so a second `tazpod unlock` of the same vault joins the live session
//! instead of mapping the vault twice.
//!
//! Protocol:
//! - the holder takes the lock **exclusively** before setup, publishes its record once setup
//!   is complete, then downgrades to **shared** for the life of its shell;
//! - a joiner (after verifying the passphrase) takes it **shared** (waiting while a holder
//!   sets up), reads the record, and joins a process still in the recorded namespace; it keeps
//!   the shared lock until its own shell exits;
//! - when its shell exits, the holder waits for the lock **exclusively**, that is until no
//!   joined shell is left, tears down, and removes the file while still holding it;
//! - anyone who locked a file that was meanwhile removed (its inode is no longer the one at
//!   the path) starts over.
//!
//! The vault is named by device and inode, not by path: two paths to one file (symbolic or
//! hard links, bind mounts) are one session, so one image is never mapped twice.

use crate::kernel::mount::{flock, mount_ns_of, LockOp, NsId};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The root-only directory of session lock files.
pub const RUNTIME_DIR: &str = "/run/tazpod";

/// The identity of a vault file: `<dev>-<ino>` in hex.
pub fn vault_id(meta: &std::fs::Metadata) -> String {
    format!("{:x}-{:x}", meta.dev(), meta.ino())
}

/// The device-mapper name of a vault's mapping.
pub fn mapping_name(id: &str) -> String {
    format!("tazpod-{id}")
}

/// What the lock file says about the live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The session holder's pid.
    pub pid: u32,
    /// Its mount namespace.
    pub ns: NsId,
    /// The vault path it was unlocked by (for messages).
    pub vault: String,
    /// Where the vault is mounted (for messages).
    pub mount: String,
    /// The session user's uid: only a session of the same user is joined (0 in a record that
    /// names none, which matches no session user).
    pub uid: u32,
}

const MAGIC: &str = "tazpod-session 1";

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], "?")
}

impl Record {
    /// The file's text.
    pub fn to_text(&self) -> String {
        format!(
            "{MAGIC}\npid {}\nmntns {}:{}\nvault {}\nmount {}\nuid {}\n",
            self.pid,
            self.ns.dev,
            self.ns.ino,
            one_line(&self.vault),
            one_line(&self.mount),
            self.uid
        )
    }

    /// Parses a record; `None` for an empty, foreign or damaged file (a stale lock).
    pub fn parse(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let (mut pid, mut ns, mut vault, mut mount) = (None, None, String::new(), String::new());
        let mut uid = 0;
        for l in lines {
            let (k, v) = l.split_once(' ')?;
            match k {
                "pid" => pid = v.parse().ok(),
                "mntns" => {
                    let (d, i) = v.split_once(':')?;
                    ns = Some(NsId {
                        dev: d.parse().ok()?,
                        ino: i.parse().ok()?,
                    });
                }
                "vault" => vault = v.to_string(),
                "mount" => mount = v.to_string(),
                "uid" => uid = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        Some(Record {
            pid: pid.filter(|p| *p > 0)?,
            ns: ns?,
            vault,
            mount,
            uid,
        })
    }
}

/// A process still in the namespace of `rec`: its holder if it is, else any other process
/// found in `/proc` (a joined shell's session process keeps the vault alive after the
/// holder is gone).
pub fn find_ns_member(rec: &Record) -> Option<u32> {
    if mount_ns_of(Some(rec.pid)).ok() == Some(rec.ns) {
        return Some(rec.pid);
    }
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != me)
        .find(|&p| mount_ns_of(Some(p)).ok() == Some(rec.ns))
}

/// Makes sure `dir` exists, is a directory owned by root and reachable by root only.
pub fn ensure_runtime_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let m = std::fs::symlink_metadata(dir)?;
    if !m.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if m.uid() != 0 {
        return Err(io::Error::other(format!(
            "{} is owned by uid {}, not by root",
            dir.display(),
            m.uid()
        )));
    }
    if m.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// An open, locked session lock file.
#[derive(Debug)]
pub struct SessionLock {
    file: File,
    path: PathBuf,
    exclusive: bool,
}

/// What [`acquire`] found.
#[derive(Debug)]
pub enum Acquired {
    /// No live session: we hold the lock exclusively and set the session up.
    Holder(SessionLock),
    /// A live session: we hold the lock shared and join `pid`'s namespace.
    Joiner {
        /// The lock, held shared until our shell exits.
        lock: SessionLock,
        /// The session's record.
        record: Record,
        /// A process in the session's namespace.
        pid: u32,
    },
}

fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Whether `file` is still the file at `path` (not removed and replaced meanwhile).
fn still_at_path(file: &File, path: &Path) -> io::Result<bool> {
    let a = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(b) => Ok(a.dev() == b.dev() && a.ino() == b.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn read_record(file: &mut File) -> io::Result<Option<Record>> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0))?;
    Read::by_ref(file).take(4096).read_to_string(&mut s)?;
    Ok(Record::parse(&s))
}

/// Takes the session lock of `id` in `dir`: as the holder when no session is live, else as
/// a joiner of the live one. `live` finds a process in a record's namespace
/// ([`find_ns_member`] in real use).
pub fn acquire(
    dir: &Path,
    id: &str,
    live: impl Fn(&Record) -> Option<u32>,
) -> io::Result<Acquired> {
    let path = dir.join(format!("{id}.lock"));
    for _ in 0..100 {
        let mut file = open_lock(&path)?;
        match flock(&file, LockOp::TryExclusive) {
            Ok(()) => {
                if !still_at_path(&file, &path)? {
                    continue;
                }
                // Nobody holds it. A record whose namespace still has a process means the
                // session lives on without lock holders (a holder killed while background
                // jobs kept its namespace): join it rather than map the vault twice.
                if let Some(rec) = read_record(&mut file)? {
                    if let Some(pid) = live(&rec) {
                        flock(&file, LockOp::Shared)?;
                        if !still_at_path(&file, &path)? {
                            continue;
                        }
                        return Ok(Acquired::Joiner {
                            lock: SessionLock {
                                file,
                                path,
                                exclusive: false,
                            },
                            record: rec,
                            pid,
                        });
                    }
                }
                file.set_len(0)?;
                return Ok(Acquired::Holder(SessionLock {
                    file,
                    path,
                    exclusive: true,
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // A session is being set up, is live, or is being torn down: wait for a
                // shared lock, then look.
                flock(&file, LockOp::Shared)?;
                if !still_at_path(&file, &path)? {
                    continue;
                }
                if let Some(rec) = read_record(&mut file)? {
                    if let Some(pid) = live(&rec) {
                        return Ok(Acquired::Joiner {
                            lock: SessionLock {
                                file,
                                path,
                                exclusive: false,
                            },
                            record: rec,
                            pid,
                        });
                    }
                }
                drop(file);
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "could not settle the session lock {}",
        path.display()
    )))
}

impl SessionLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Holder, setup complete: writes the record, then downgrades to shared so others can
    /// join.
    pub fn publish(&mut self, rec: &Record) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(rec.to_text().as_bytes())?;
        self.file.sync_data()?;
        flock(&self.file, LockOp::Shared)?;
        self.exclusive = false;
        Ok(())
    }

    /// Holder, shell exited: tries to take the lock exclusively (`true` when no joined
    /// shell holds it any more). A failed attempt may drop our shared lock; that is harmless,
    /// since the record stays and newcomers still join.
    pub fn try_exclusive(&mut self) -> io::Result<bool> {
        match flock(&self.file, LockOp::TryExclusive) {
            Ok(()) => {
                self.exclusive = true;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Drop for SessionLock {
    /// Held exclusively (a holder after teardown or a failed setup): the file goes first, so
    /// whoever waits on it starts over with a fresh one.
    fn drop(&mut self) {
        if self.exclusive && still_at_path(&self.file, &self.path).unwrap_or(false) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec() -> Record {
        Record {
            pid: 4242,
            ns: NsId {
                dev: 4,
                ino: 4026532999,
            },
            vault: "/workspace/.tazpod-vault/vault.img".into(),
            mount: "/home/tazpod/secrets".into(),
            uid: 1000,
        }
    }

    #[test]
    fn record_round_trip() {
        let r = rec();
        assert_eq!(Record::parse(&r.to_text()), Some(r));
        let mut odd = rec();
        odd.mount = "/a\nb".into();
        assert_eq!(Record::parse(&odd.to_text()).unwrap().mount, "/a?b");
    }

    #[test]
    fn damaged_records_are_stale() {
        for t in [
            "",
            "garbage",
            "tazpod-session 1\n",
            "tazpod-session 1\npid 0\nmntns 1:2\n",
            "tazpod-session 1\npid 5\nmntns 12\n",
            "tazpod-session 2\npid 5\nmntns 1:2\n",
        ] {
            assert_eq!(Record::parse(t), None, "{t:?}");
        }
    }

    #[test]
    fn names() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v");
        std::fs::write(&f, b"x").unwrap();
        let id = vault_id(&std::fs::metadata(&f).unwrap());
        assert!(id.contains('-'));
        // a hard link is the same vault
        std::fs::hard_link(&f, dir.path().join("w")).unwrap();
        assert_eq!(
            id,
            vault_id(&std::fs::metadata(dir.path().join("w")).unwrap())
        );
        assert_eq!(mapping_name("801-c"), "tazpod-801-c");
    }

    #[test]
    fn first_is_holder_then_joiner_after_publish() {
        let dir = tempfile::tempdir().unwrap();
        let Acquired::Holder(mut holder) = acquire(dir.path(), "v", |_| None).unwrap() else {
            panic!("first must hold");
        };
        holder.publish(&rec()).unwrap();
        let live = |r: &Record| Some(r.pid);
        let Acquired::Joiner { record, pid, lock } = acquire(dir.path(), "v", live).unwrap() else {
            panic!("second must join");
        };
        assert_eq!(record, rec());
        assert_eq!(pid, 4242);
        // the holder cannot take it exclusively while the joiner is there
        assert!(!holder.try_exclusive().unwrap());
        drop(lock);
        assert!(holder.try_exclusive().unwrap());
        let path = holder.path().to_path_buf();
        drop(holder);
        assert!(!path.exists(), "the holder removes the lock file");
    }

    #[test]
    fn stale_record_makes_a_new_holder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v.lock"), rec().to_text()).unwrap();
        let Acquired::Holder(h) = acquire(dir.path(), "v", |_| None).unwrap() else {
            panic!("stale lock must give a holder");
        };
        // the stale record is cleared
        assert_eq!(std::fs::read(h.path()).unwrap().len(), 0);
    }

    #[test]
    fn unlocked_but_live_record_joins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v.lock"), rec().to_text()).unwrap();
        let got = acquire(dir.path(), "v", |_| Some(77)).unwrap();
        assert!(matches!(got, Acquired::Joiner { pid: 77, .. }));
    }

    #[test]
    fn a_waiter_during_setup_joins_after_publish() {
        let dir = tempfile::tempdir().unwrap();
        let Acquired::Holder(mut holder) = acquire(dir.path(), "v", |_| None).unwrap() else {
            panic!();
        };
        let d = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            matches!(
                acquire(&d, "v", |r| Some(r.pid)).unwrap(),
                Acquired::Joiner { pid: 4242, .. }
            )
        });
        std::thread::sleep(Duration::from_millis(100));
        holder.publish(&rec()).unwrap();
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn a_waiter_during_a_failed_setup_becomes_holder() {
        let dir = tempfile::tempdir().unwrap();
        let Acquired::Holder(holder) = acquire(dir.path(), "v", |_| None).unwrap() else {
            panic!();
        };
        let d = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            matches!(acquire(&d, "v", |_| None).unwrap(), Acquired::Holder(_))
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(holder); // setup failed: file removed while exclusive
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn runtime_dir_is_made_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let rt = dir.path().join("rt");
        if crate::kernel::privs::geteuid() != 0 {
            return;
        }
        ensure_runtime_dir(&rt).unwrap();
        let m = std::fs::metadata(&rt).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_runtime_dir(&rt).unwrap();
        assert_eq!(std::fs::metadata(&rt).unwrap().mode() & 0o777, 0o700);
        let f = dir.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(ensure_runtime_dir(&f).is_err());
    }
}
