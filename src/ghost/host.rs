//! The operations a ghost session needs from the system, behind a few small traits (youki's
//! `Syscall` pattern) that [`Host`] gathers: [`RealHost`](super::real::RealHost) performs
//! them, the recording double of the tests only writes them down. The orchestration in [`session`](super::session) calls
//! nothing else, so its order and its unwinding are tested without root.

use crate::kernel::privs::WaitStatus;
use crate::write::HeaderSpec;
use luks2::{Passphrase, VolumeKey};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// A failed host operation: what was done, on what, and the system's reason.
#[derive(Debug)]
pub struct HostError {
    /// The operation ("mount ext4", "setresuid").
    pub op: &'static str,
    /// What it worked on (a path, a user, a device name), may be empty.
    pub target: String,
    /// The reason.
    pub source: io::Error,
}

impl HostError {
    /// An error of `op` on `target`.
    pub fn new(op: &'static str, target: impl Into<String>, source: io::Error) -> Self {
        HostError {
            op,
            target: target.into(),
            source,
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.target.is_empty() {
            write!(f, "{}: {}", self.op, self.source)
        } else {
            write!(f, "{} {}: {}", self.op, self.target, self.source)
        }
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Result of a host operation.
pub type HostResult<T> = Result<T, HostError>;

/// The user the inner shell runs as, resolved before anything is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Login name (for `USER`, `LOGNAME`).
    pub name: String,
    /// User id (never 0).
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (including `gid`).
    pub groups: Vec<u32>,
    /// Home directory (for `HOME` and `~` in the configuration).
    pub home: PathBuf,
    /// Login shell from passwd.
    pub shell: PathBuf,
}

/// The unlocked vault. Owns the volume key, which is wiped as soon as the mapping exists.
pub struct VaultKey {
    /// What the mapping needs from the header.
    pub volume: VolumeInfo,
    /// The volume key.
    pub key: VolumeKey,
}

/// How a new vault's ext4 filesystem is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mkfs {
    /// tazpod's own formatter (the `ext4fmt` crate): no external tool.
    Builtin,
    /// The system's `mkfs.ext4` at this path, with [`mkfs_args`](super::session::mkfs_args) (`--mkfs-ext4`).
    Tool(PathBuf),
}

pub use crate::mapping::VolumeInfo;

/// What `map_vault` needs to map the vault through dm-crypt: the session's side of the
/// request; the real host turns it into the mapping layer's `mapping::MapRequest` (its key
/// transport, flags and node policy). The key is borrowed and never copied by the
/// orchestration.
pub struct VaultMapRequest<'a> {
    /// The vault image file (to attach to a loop device with autoclear).
    pub vault: &'a Path,
    /// The device-mapper name (globally unique: `tazpod-<dev>-<ino>`).
    pub name: &'a str,
    /// Map read-only (read-only loop and table).
    pub readonly: bool,
    /// Where to create the device node: the private tmpfs on `/dev/mapper` (which hides the
    /// host's `/dev/mapper/control`: the dm layer must create its own control node there).
    pub node_dir: &'a Path,
    /// UUID, version, flags, segment, digest.
    pub volume: &'a VolumeInfo,
    /// The verified volume key.
    pub key: &'a VolumeKey,
}

/// A live dm-crypt mapping of the vault, as `map_vault` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingHandle {
    /// The device-mapper name.
    pub name: String,
    /// The device node (inside the private `/dev/mapper` tmpfs).
    pub node: PathBuf,
    /// Device number of the dm device (`makedev(major, minor)`).
    pub dev: u64,
}

/// A vault image to create (`tazpod init`, or `tazpod unlock` of a missing vault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    /// Where the vault goes. It is built under a temporary name next to it
    /// ([`NewImage::temp`]) and moved there only when complete.
    pub path: PathBuf,
    /// Its size in bytes (a sparse file).
    pub size: u64,
    /// Create the image (and its missing parent directories, mode 0700) with this user's
    /// filesystem rights, so that they belong to the user; `None`: as root.
    pub owner: Option<Identity>,
    /// Replace an existing file at `path` when moving the image into place (`init --force`);
    /// otherwise an existing file there stops it.
    pub replace: bool,
}

/// An image being created, as [`Image::create_image`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    /// The temporary file it is built in (`.NAME.tazpod-new-XXXXXXXX`, next to the vault).
    pub temp: PathBuf,
    /// Where it goes when complete.
    pub path: PathBuf,
    /// Its identity `<dev>-<ino>` (names the session lock and the mapping; a rename keeps it).
    pub id: String,
}

/// How [`Image::format_image`] writes the LUKS2 header: the writer's options, the passphrase.
pub struct FormatRequest<'a> {
    /// Cipher, sector size, layout, KDF options (`tazpod format`'s defaults).
    pub spec: &'a HeaderSpec,
    /// The new vault's passphrase or key-file content.
    pub passphrase: &'a Passphrase,
    /// Print the KDF parameters chosen.
    pub verbose: bool,
}

/// A directory opened for mounting on or from it. In the real host it holds an `O_PATH`
/// descriptor opened with the user's filesystem rights, and mounts go through
/// `/proc/self/fd/N`, so nobody can swap the path for a symbolic link in between.
#[derive(Debug)]
pub struct DirRef {
    /// The path it was opened at (for messages and unmounting).
    pub path: PathBuf,
    /// The descriptor (real host only).
    pub fd: Option<OwnedFd>,
}

impl DirRef {
    /// A reference by path only (test doubles).
    #[cfg(test)]
    pub fn by_path(path: &Path) -> DirRef {
        DirRef {
            path: path.to_path_buf(),
            fd: None,
        }
    }

    /// The path to hand to mount(2): `/proc/self/fd/N` when there is a descriptor.
    pub fn mount_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        match &self.fd {
            Some(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => self.path.clone(),
        }
    }
}

/// How `open_user_dir` treats the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirMode {
    /// Create it (and missing parents, mode 0700) as the user when missing.
    pub create: bool,
    /// Require the user to own it (mount points and bind targets: we never mount over a
    /// directory the user could not have changed anyway).
    pub owned: bool,
}

/// Where `fork` left us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// In the child.
    Child,
    /// In the parent, with the child's pid.
    Parent(u32),
}

/// The program the inner shell execs and its environment, computed before the fork (the
/// secret variables are read by the child after it has dropped its privileges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// The program (a path, or a bare name searched in `PATH` of `env`).
    pub program: OsString,
    /// argv, `argv[0]` included.
    pub argv: Vec<OsString>,
    /// The clean environment (no secrets), in order.
    pub env: Vec<(OsString, OsString)>,
    /// Secret variables: read from files inside the vault as the user.
    pub secrets: Vec<SecretVar>,
    /// Working directories to try in order (the first that works as the user).
    pub cwd: Vec<PathBuf>,
}

/// One secret variable of the secrets map, resolved to an absolute file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVar {
    /// Environment variable name.
    pub env: String,
    /// The file inside the mounted vault.
    pub file: PathBuf,
    /// Give the variable the file's content (else its path).
    pub as_value: bool,
}

/// The system operations of a ghost session, by concern: [`Image`] (a new vault's image
/// file), [`Mapper`] (its dm-crypt mapping), [`Mounts`] (the private mount namespace and what
/// is mounted in it), [`Lock`] (the session lock others join through) and [`Child`] (the
/// session process's signals and the inner shell). The session engine takes any `Host`.
///
/// Setup runs as root in this order: [`block_signals`](Child::block_signals),
/// [`unshare_mount_ns`](Mounts::unshare_mount_ns), [`make_rprivate`](Mounts::make_rprivate),
/// [`mount_tmpfs`](Mounts::mount_tmpfs), [`make_dir`](Mounts::make_dir),
/// [`map_vault`](Mapper::map_vault), [`hold_mapping`](Mapper::hold_mapping),
/// [`defer_remove`](Mapper::defer_remove), [`mount_ext4`](Mounts::mount_ext4),
/// [`release_mapping`](Mapper::release_mapping), [`chown`](Mounts::chown),
/// [`open_user_dir`](Mounts::open_user_dir), [`move_mount`](Mounts::move_mount),
/// [`bind_mount`](Mounts::bind_mount), [`session_ready`](Lock::session_ready); the
/// exact sequence is [`super::session::setup`]. Creating a vault adds
/// [`create_image`](Image::create_image) and [`format_image`](Image::format_image) first, and
/// [`make_filesystem`](Image::make_filesystem) and [`publish_image`](Image::publish_image)
/// between the deferred removal and the mount ([`super::session::create_vault`] for
/// `tazpod init`).
pub trait Host: Image + Mapper + Mounts + Lock + Child {}

impl<T: Image + Mapper + Mounts + Lock + Child> Host for T {}

/// Creating a vault's image, as root.
pub trait Image {
    /// Creates the image as a new sparse file of `req.size` bytes, mode 0600, under a
    /// temporary name next to `req.path` (parent directories created as needed), and takes
    /// the session lock of the new file. All or nothing.
    fn create_image(&mut self, req: &ImageRequest) -> HostResult<NewImage>;
    /// Writes a new LUKS2 header on the image (keyslot 0 for the passphrase, a random volume
    /// key) and returns what mapping it needs.
    fn format_image(&mut self, image: &NewImage, req: &FormatRequest<'_>) -> HostResult<VaultKey>;
    /// Makes the new vault's ext4 filesystem on `device` (the mapping), its root directory
    /// owned by `owner`: with tazpod's formatter, or by running `mkfs.ext4` with
    /// [`super::session::mkfs_args`] (failing unless it exits 0).
    fn make_filesystem(
        &mut self,
        how: &Mkfs,
        device: &Path,
        sector_size: u32,
        owner: (u32, u32),
    ) -> HostResult<()>;
    /// Syncs the image and moves it from its temporary name to its path (replacing what is
    /// there only when the request said so).
    fn publish_image(&mut self, image: &NewImage) -> HostResult<()>;
    /// Removes the image (under its temporary name or at its path, only if it is still the
    /// file created) and releases its lock: the undo of [`create_image`](Image::create_image).
    fn remove_image(&mut self, image: &NewImage) -> HostResult<()>;
}

/// The vault's dm-crypt mapping, as root.
pub trait Mapper {
    /// Maps the vault: loop device (autoclear), key in the keyring, dm-crypt table, node in
    /// `req.node_dir`. All or nothing: on error nothing of it is left.
    fn map_vault(&mut self, req: &VaultMapRequest<'_>) -> HostResult<MappingHandle>;
    /// Opens the mapping's node and keeps it open, so a deferred removal set now waits.
    fn hold_mapping(&mut self, mapping: &MappingHandle) -> HostResult<()>;
    /// Marks the mapping for deferred removal: the kernel removes it when its last opener
    /// (the mount) goes, even if tazpod is killed.
    fn defer_remove(&mut self, mapping: &MappingHandle) -> HostResult<()>;
    /// Closes the descriptor of [`hold_mapping`](Mapper::hold_mapping).
    fn release_mapping(&mut self, mapping: &MappingHandle) -> HostResult<()>;
    /// Removes the dm device (already gone after a deferred removal counts as done).
    fn remove_mapping(&mut self, mapping: &MappingHandle) -> HostResult<()>;
}

/// The session's private mount namespace and what is mounted in it.
pub trait Mounts {
    /// `unshare(CLONE_NEWNS)`.
    fn unshare_mount_ns(&mut self) -> HostResult<()>;
    /// Makes every mount under `path` private (`MS_REC | MS_PRIVATE`).
    fn make_rprivate(&mut self, path: &Path) -> HostResult<()>;
    /// Mounts a private tmpfs on `target` (created if missing), nosuid, noexec.
    fn mount_tmpfs(&mut self, target: &Path) -> HostResult<()>;
    /// Creates a root-owned directory (on a path only root controls).
    fn make_dir(&mut self, path: &Path, mode: u32) -> HostResult<()>;
    /// Mounts the ext4 filesystem on `device` at `target`, `MS_NOSUID | MS_NODEV`
    /// (and `MS_RDONLY` when `readonly`).
    fn mount_ext4(&mut self, device: &Path, target: &Path, readonly: bool) -> HostResult<()>;
    /// Changes the owner of `path` (root-controlled path).
    fn chown(&mut self, path: &Path, uid: u32, gid: u32) -> HostResult<()>;
    /// Opens (and creates, as the user) a directory the user names, resolving the path
    /// with the user's filesystem rights.
    fn open_user_dir(&mut self, path: &Path, user: &Identity, mode: DirMode) -> HostResult<DirRef>;
    /// Opens (and creates, as the user, when `create`) the directory `rel` inside the vault
    /// mounted at `root`, resolved beneath `root` from its descriptor: no symbolic link is
    /// followed and nothing outside the vault is reached (a `rootlink -> /` in the vault
    /// leads nowhere).
    fn open_vault_dir(
        &mut self,
        root: &Path,
        rel: &Path,
        user: &Identity,
        create: bool,
    ) -> HostResult<DirRef>;
    /// Moves the mount at `from` onto `to`.
    fn move_mount(&mut self, from: &Path, to: &DirRef) -> HostResult<()>;
    /// Bind-mounts `from` on `to` (nosuid, nodev; read-only when asked).
    fn bind_mount(&mut self, from: &DirRef, to: &DirRef, readonly: bool) -> HostResult<()>;
    /// Enters the mount namespace of a live session (`setns` on `/proc/<pid>/ns/mnt`,
    /// checking it is still the namespace `ns_ino`).
    fn join_namespace(&mut self, pid: u32, ns_dev: u64, ns_ino: u64) -> HostResult<()>;
    /// Kills the processes still in the session's namespace (background jobs left by the
    /// shells), never this process; returns how many.
    fn kill_namespace_stragglers(&mut self) -> HostResult<usize>;
    /// Unmounts `target` (lazily if busy).
    fn umount(&mut self, target: &Path) -> HostResult<()>;
}

/// The session lock, through which a second `unlock` joins the live session.
pub trait Lock {
    /// Setup is complete: record the session in its lock file so others can join it.
    fn session_ready(&mut self) -> HostResult<()>;
    /// Waits until no other shell of the session (joined from another terminal) is open.
    /// `Ok(false)` when the wait was interrupted (SIGINT, SIGTERM...) while other shells
    /// still use the vault: teardown is then left to them.
    fn wait_for_joined_shells(&mut self) -> HostResult<bool>;
}

/// The session process's signals and the inner shell: fork, the child's privilege drop and
/// exec, the parent's wait.
pub trait Child {
    /// Blocks SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGCHLD so they queue: during setup
    /// they are looked at when it is safe, and during the session they are forwarded.
    fn block_signals(&mut self) -> HostResult<()>;
    /// A termination signal that arrived while blocked, if any (consumes it).
    fn pending_signal(&mut self) -> HostResult<Option<i32>>;
    /// This process's id.
    fn getpid(&mut self) -> u32;
    /// `fork()`.
    fn fork(&mut self) -> HostResult<Fork>;
    /// Child: `setgroups`.
    fn set_groups(&mut self, groups: &[u32]) -> HostResult<()>;
    /// Child: `setresgid(gid, gid, gid)`.
    fn set_resgid(&mut self, gid: u32) -> HostResult<()>;
    /// Child: clears the ambient capabilities.
    fn clear_ambient_caps(&mut self) -> HostResult<()>;
    /// Child: empties the capability bounding set.
    fn drop_bounding_set(&mut self) -> HostResult<()>;
    /// Child: `setresuid(uid, uid, uid)`.
    fn set_resuid(&mut self, uid: u32) -> HostResult<()>;
    /// Child: clears effective, permitted and inheritable capabilities (`capset`).
    fn clear_caps(&mut self) -> HostResult<()>;
    /// Child: `PR_SET_NO_NEW_PRIVS`.
    fn set_no_new_privs(&mut self) -> HostResult<()>;
    /// Child: `PR_SET_PDEATHSIG(SIGKILL)`, then checks the parent is still `parent`.
    fn die_with_parent(&mut self, parent: u32) -> HostResult<()>;
    /// Child: closes every descriptor above 2.
    fn close_stray_fds(&mut self) -> HostResult<()>;
    /// Child: changes directory.
    fn chdir(&mut self, dir: &Path) -> HostResult<()>;
    /// Child (already the user): reads a secret file.
    fn read_secret(&mut self, path: &Path) -> HostResult<Vec<u8>>;
    /// Child: default signal handlers, empty signal mask.
    fn reset_signals(&mut self) -> HostResult<()>;
    /// Child: `execve`. Returns only on failure.
    fn exec(
        &mut self,
        program: &Path,
        argv: &[OsString],
        env: &[(OsString, OsString)],
    ) -> HostError;
    /// Child: reports `err` and ends the child process with `code` (never returns in the
    /// real host; the test double records and returns).
    fn child_exit(&mut self, code: i32, err: &HostError);
    /// Parent: waits for the child, forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT to it.
    fn wait_child(&mut self, pid: u32) -> HostResult<WaitStatus>;
}
