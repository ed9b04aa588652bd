//! The ghost session lifecycle over a [`Host`]: setup in a private mount namespace, the
//! inner shell (fork, privilege drop, exec), waiting, and teardown in reverse order. Every
//! step that leaves something behind pushes its undo; a setup that fails half-way undoes
//! exactly what was done, and teardown attempts every undo even when one fails.

use super::host::{
    DirMode, DirRef, ExecSpec, Fork, FormatRequest, Host, HostError, HostResult, Identity,
    ImageRequest, MappingHandle, NewImage, VaultMapRequest,
};
pub use super::host::{Mkfs, VaultKey};
use super::lock::mapping_name;
use crate::kernel::privs::WaitStatus;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// A bind mount from the configuration, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Directory inside the vault, relative to its root (no `..`).
    pub source: PathBuf,
    /// Absolute target (usually in the user's home).
    pub target: PathBuf,
    /// Mount it read-only.
    pub readonly: bool,
}

/// Everything setup needs besides the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPlan {
    /// The vault image.
    pub vault: PathBuf,
    /// The device-mapper name.
    pub name: String,
    /// Map and mount read-only.
    pub readonly: bool,
    /// Where device-mapper nodes live (`/dev/mapper`); a private tmpfs is mounted over it.
    pub mapper_dir: PathBuf,
    /// Where the user sees the vault.
    pub mount_point: PathBuf,
    /// Bind mounts, applied in order.
    pub binds: Vec<Bind>,
    /// The user.
    pub user: Identity,
}

impl SessionPlan {
    /// The root-only staging directory (inside the private tmpfs) where the vault is first
    /// mounted and chowned before it is moved onto the user's mount point.
    pub fn staging(&self) -> PathBuf {
        self.mapper_dir.join(".tazpod-vault")
    }
}

/// A vault to create: the image, its LUKS2 header, its ext4 filesystem.
pub struct NewVault<'a> {
    /// The image file.
    pub image: ImageRequest,
    /// The header (options and passphrase).
    pub format: FormatRequest<'a>,
    /// How the filesystem is made (decided before anything was created).
    pub mkfs: Mkfs,
    /// Who owns the root directory of the new filesystem (the session user): uid, gid.
    pub root_owner: (u32, u32),
}

/// The label of a new vault's ext4 filesystem.
pub const FS_LABEL: &str = "tazpod-vault";

/// `mkfs.ext4`'s arguments for a new vault on `device`: quiet, no questions (the device is
/// new), no blocks reserved for root (one user's data), blocks of 4096 bytes when the
/// encryption sector is larger than 1024 (a block must not be smaller than a sector), the root
/// directory owned by `owner`, no discard (dm-crypt refuses it without `allow-discards`).
pub fn mkfs_args(device: &Path, sector_size: u32, owner: (u32, u32)) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "-q".into(),
        "-F".into(),
        "-L".into(),
        FS_LABEL.into(),
        "-m".into(),
        "0".into(),
    ];
    if sector_size > 1024 {
        v.push("-b".into());
        v.push("4096".into());
    }
    v.push("-E".into());
    v.push(format!("root_owner={}:{},nodiscard", owner.0, owner.1).into());
    v.push(device.into());
    v
}

/// Where the session's vault comes from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// An existing vault, unlocked: its key.
    Unlocked(&'a VaultKey),
    /// A vault to create first (`tazpod unlock` of a missing vault).
    New(&'a NewVault<'a>),
}

/// How the inner shell is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellPlan {
    /// The user it runs as.
    pub user: Identity,
    /// What it execs.
    pub exec: ExecSpec,
    /// Set `PR_SET_NO_NEW_PRIVS` (set-uid programs stop working in the session).
    pub no_new_privs: bool,
    /// Empty the capability bounding set.
    pub drop_bounding_set: bool,
}

/// Something setup did that teardown must undo.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Undo {
    Umount(PathBuf),
    Mapping(MappingHandle),
    /// A vault being created: removed if setup fails (never by a session's teardown).
    Image(NewImage),
    Hold(MappingHandle),
}

/// A session whose setup completed: what teardown undoes.
#[derive(Debug)]
pub struct Session {
    undo: Vec<Undo>,
}

/// Why setup stopped.
#[derive(Debug)]
pub enum SetupError {
    /// A host operation failed.
    Host(HostError),
    /// A termination signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) arrived during setup.
    Interrupted(i32),
}

impl From<HostError> for SetupError {
    fn from(e: HostError) -> Self {
        SetupError::Host(e)
    }
}

/// A failed setup, after unwinding.
#[derive(Debug)]
pub struct SetupFailure {
    /// What stopped it.
    pub error: SetupError,
    /// Undo steps that failed too (each was attempted).
    pub unwind_errors: Vec<HostError>,
}

/// Sets a session up; on failure undoes, in reverse order, exactly what was done. A vault
/// created on the way is removed on failure and kept on success.
pub fn setup<H: Host>(
    host: &mut H,
    plan: &SessionPlan,
    vault: Source<'_>,
) -> Result<Session, SetupFailure> {
    let mut undo = Vec::new();
    match setup_steps(host, plan, vault, &mut undo) {
        Ok(()) => {
            undo.retain(|u| !matches!(u, Undo::Image(_)));
            Ok(Session { undo })
        }
        Err(error) => {
            let unwind_errors = unwind(host, &mut undo);
            Err(SetupFailure {
                error,
                unwind_errors,
            })
        }
    }
}

fn setup_steps<H: Host>(
    host: &mut H,
    plan: &SessionPlan,
    source: Source<'_>,
    undo: &mut Vec<Undo>,
) -> Result<(), SetupError> {
    // A new vault: the image and its header first; its mapping is named after the new file.
    let new_key;
    let (vault_path, name, vault, creating) = match source {
        Source::Unlocked(k) => (plan.vault.clone(), plan.name.clone(), k, None),
        Source::New(n) => {
            let img = host.create_image(&n.image)?;
            undo.push(Undo::Image(img.clone()));
            new_key = host.format_image(&img, &n.format)?;
            let name = mapping_name(&img.id);
            (img.temp.clone(), name, &new_key, Some((n, img)))
        }
    };
    host.unshare_mount_ns()?;
    host.make_rprivate(Path::new("/"))?;
    // The mapper node must live only in this namespace.
    host.mount_tmpfs(&plan.mapper_dir)?;
    undo.push(Undo::Umount(plan.mapper_dir.clone()));
    let staging = plan.staging();
    host.make_dir(&staging, 0o700)?;
    let m = host.map_vault(&VaultMapRequest {
        vault: &vault_path,
        name: &name,
        readonly: plan.readonly,
        node_dir: &plan.mapper_dir,
        volume: &vault.volume,
        key: &vault.key,
    })?;
    undo.push(Undo::Mapping(m.clone()));
    // Held open, the mapping takes the deferred removal now, before the mount: from here on
    // the kernel removes it by itself when its last user goes, even if we are killed.
    host.hold_mapping(&m)?;
    undo.push(Undo::Hold(m.clone()));
    host.defer_remove(&m)?;
    if let Some((n, img)) = &creating {
        let sector = vault.volume.segment.sector_size;
        host.make_filesystem(&n.mkfs, &m.node, sector, n.root_owner)?;
        host.publish_image(img)?;
    }
    host.mount_ext4(&m.node, &staging, plan.readonly)?;
    undo.push(Undo::Umount(staging.clone()));
    host.release_mapping(&m)?;
    undo.retain(|u| !matches!(u, Undo::Hold(_)));
    if !plan.readonly {
        host.chown(&staging, plan.user.uid, plan.user.gid)?;
    }
    let mut sources: Vec<DirRef> = Vec::with_capacity(plan.binds.len());
    for b in &plan.binds {
        let src = host.open_vault_dir(&staging, &b.source, &plan.user, !plan.readonly)?;
        sources.push(src);
    }
    let mp = host.open_user_dir(
        &plan.mount_point,
        &plan.user,
        DirMode {
            create: true,
            owned: true,
        },
    )?;
    host.move_mount(&staging, &mp)?;
    if let Some(last) = undo.last_mut() {
        *last = Undo::Umount(plan.mount_point.clone());
    }
    for (b, src) in plan.binds.iter().zip(&sources) {
        let dst = host.open_user_dir(
            &b.target,
            &plan.user,
            DirMode {
                create: true,
                owned: true,
            },
        )?;
        host.bind_mount(src, &dst, b.readonly || plan.readonly)?;
        undo.push(Undo::Umount(b.target.clone()));
    }
    if let Some(sig) = host.pending_signal()? {
        return Err(SetupError::Interrupted(sig));
    }
    host.session_ready()?;
    Ok(())
}

/// `tazpod init`: creates a vault and nothing else. The image is made and formatted, mapped in
/// a private mount namespace (on a private `/dev/mapper` tmpfs at `mapper_dir`), `mkfs.ext4`
/// runs on the mapping, the mapping goes, and only then is the image moved into place.
/// Returns the warnings of that last cleanup; on failure (or a termination signal) everything
/// done is undone, the image removed.
pub fn create_vault<H: Host>(
    host: &mut H,
    new: &NewVault<'_>,
    mapper_dir: &Path,
) -> Result<Vec<HostError>, SetupFailure> {
    let mut undo = Vec::new();
    let mut warnings = Vec::new();
    match create_steps(host, new, mapper_dir, &mut undo, &mut warnings) {
        Ok(()) => Ok(warnings),
        Err(error) => {
            warnings.extend(unwind(host, &mut undo));
            Err(SetupFailure {
                error,
                unwind_errors: warnings,
            })
        }
    }
}

fn create_steps<H: Host>(
    host: &mut H,
    new: &NewVault<'_>,
    mapper_dir: &Path,
    undo: &mut Vec<Undo>,
    warnings: &mut Vec<HostError>,
) -> Result<(), SetupError> {
    host.block_signals()?;
    let img = host.create_image(&new.image)?;
    undo.push(Undo::Image(img.clone()));
    let key = host.format_image(&img, &new.format)?;
    host.unshare_mount_ns()?;
    host.make_rprivate(Path::new("/"))?;
    host.mount_tmpfs(mapper_dir)?;
    undo.push(Undo::Umount(mapper_dir.to_path_buf()));
    let m = host.map_vault(&VaultMapRequest {
        vault: &img.temp,
        name: &mapping_name(&img.id),
        readonly: false,
        node_dir: mapper_dir,
        volume: &key.volume,
        key: &key.key,
    })?;
    let sector = key.volume.segment.sector_size;
    drop(key);
    undo.push(Undo::Mapping(m.clone()));
    host.hold_mapping(&m)?;
    undo.push(Undo::Hold(m.clone()));
    host.defer_remove(&m)?;
    host.make_filesystem(&new.mkfs, &m.node, sector, new.root_owner)?;
    if let Some(sig) = host.pending_signal()? {
        return Err(SetupError::Interrupted(sig));
    }
    // The filesystem is made: the mapping goes (everything it wrote is in the image), then
    // the image moves into place and stays.
    let mut mapping = undo.split_off(1);
    warnings.extend(unwind(host, &mut mapping));
    host.publish_image(&img)?;
    undo.clear();
    Ok(())
}

/// Undoes `undo` in reverse order, attempting every step; returns the failures.
fn unwind<H: Host>(host: &mut H, undo: &mut Vec<Undo>) -> Vec<HostError> {
    let mut errors = Vec::new();
    while let Some(u) = undo.pop() {
        let results = match &u {
            Undo::Umount(p) => vec![host.umount(p)],
            Undo::Hold(m) => vec![host.release_mapping(m)],
            Undo::Mapping(m) => vec![host.remove_mapping(m)],
            Undo::Image(i) => vec![host.remove_image(i)],
        };
        errors.extend(results.into_iter().filter_map(Result::err));
    }
    errors
}

/// Tears a session down: ends what the shells left running in the namespace, unmounts the
/// binds and the vault, removes the mapping (its autoclear loop device goes with it; the key
/// was revoked as soon as the table was live) and unmounts the private `/dev/mapper`. Every step is attempted; returns the failures.
pub fn teardown<H: Host>(host: &mut H, mut session: Session) -> Vec<HostError> {
    let mut errors = Vec::new();
    if let Err(e) = host.kill_namespace_stragglers() {
        errors.push(e);
    }
    errors.extend(unwind(host, &mut session.undo));
    errors
}

/// Where `spawn_shell` left us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawned {
    /// In the parent, with the shell's pid.
    Parent(u32),
    /// In the child, after `child_exit` returned (only with a test double).
    ChildReturned,
}

/// Forks the inner shell. The child drops its privileges for good and execs; it never
/// returns with the real host.
pub fn spawn_shell<H: Host>(host: &mut H, shell: &ShellPlan) -> HostResult<Spawned> {
    let parent = host.getpid();
    match host.fork()? {
        Fork::Parent(pid) => Ok(Spawned::Parent(pid)),
        Fork::Child => {
            let err = child(host, shell, parent);
            let code = if err.op == "exec" && err.source.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            host.child_exit(code, &err);
            Ok(Spawned::ChildReturned)
        }
    }
}

/// The child: every step must succeed before exec; the first failure is returned (and
/// the child then exits without running anything).
fn child<H: Host>(host: &mut H, shell: &ShellPlan, parent: u32) -> HostError {
    macro_rules! step {
        ($e:expr) => {
            if let Err(e) = $e {
                return e;
            }
        };
    }
    let user = &shell.user;
    step!(host.set_groups(&user.groups));
    step!(host.set_resgid(user.gid));
    step!(host.clear_ambient_caps());
    if shell.drop_bounding_set {
        step!(host.drop_bounding_set());
    }
    step!(host.set_resuid(user.uid));
    step!(host.clear_caps());
    if shell.no_new_privs {
        step!(host.set_no_new_privs());
    }
    // After the credential changes, which clear the parent-death signal.
    step!(host.die_with_parent(parent));
    step!(host.close_stray_fds());
    let exec = &shell.exec;
    if !exec.cwd.iter().any(|d| host.chdir(d).is_ok()) {
        step!(host.chdir(Path::new("/")));
    }
    let mut env = exec.env.clone();
    let me = host.getpid();
    env.push(("TAZPOD_SHELL_PID".into(), me.to_string().into()));
    for s in &exec.secrets {
        if !s.as_value {
            env.push((s.env.clone().into(), s.file.clone().into_os_string()));
            continue;
        }
        match host.read_secret(&s.file) {
            Ok(mut v) => {
                trim_newlines(&mut v);
                if v.contains(&0) {
                    eprintln!(
                        "tazpod: warning: {} not set: {} contains a NUL byte",
                        s.env,
                        s.file.display()
                    );
                    continue;
                }
                env.push((s.env.clone().into(), OsString::from_vec(v)));
            }
            Err(e) => eprintln!("tazpod: warning: {} not set: {e}", s.env),
        }
    }
    step!(host.reset_signals());
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let mut last = None;
    for candidate in exec_candidates(&exec.program, path.as_deref()) {
        let e = host.exec(&candidate, &exec.argv, &env);
        if e.source.kind() != io::ErrorKind::NotFound {
            return e;
        }
        last = Some(e);
    }
    last.unwrap_or_else(|| {
        HostError::new(
            "exec",
            exec.program.to_string_lossy(),
            io::Error::from(io::ErrorKind::NotFound),
        )
    })
}

/// Removes trailing newlines (and carriage returns), as `$(cat file)` would.
pub fn trim_newlines(v: &mut Vec<u8>) {
    while matches!(v.last(), Some(b'\n' | b'\r')) {
        v.pop();
    }
}

/// The paths execvp would try for `program` with `PATH` = `path`.
pub fn exec_candidates(program: &OsStr, path: Option<&OsStr>) -> Vec<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return vec![PathBuf::from(program)];
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    path.as_bytes()
        .split(|b| *b == b':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(OsStr::from_bytes(d)).join(program))
        .collect()
}

/// `PATH` of the inner shell's clean environment.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The shell ran and ended so.
    Shell(WaitStatus),
    /// Setup failed (everything done was undone).
    SetupFailed(HostError),
    /// A termination signal arrived before the shell started (everything was undone).
    Interrupted(i32),
    /// The shell could not be forked (the session was torn down).
    SpawnFailed(HostError),
    /// Waiting for the shell failed (the session was torn down).
    WaitFailed(HostError),
    /// Only with a test double: the forked child returned.
    ChildReturned,
}

/// What happened, for the caller to report.
#[derive(Debug)]
pub struct Report {
    /// How it ended.
    pub end: SessionEnd,
    /// Teardown or unwind steps that failed (each was attempted).
    pub cleanup_errors: Vec<HostError>,
    /// Teardown ran (the vault is locked), or was left to other shells of the session.
    pub torn_down: bool,
}

/// The whole life of a session started here: setup (the key is wiped right after the
/// mapping exists), the inner shell, waiting, then teardown once no joined shell is left.
pub fn run_holder<H: Host>(
    host: &mut H,
    plan: &SessionPlan,
    shell: &ShellPlan,
    vault: VaultKey,
) -> Report {
    if let Err(e) = host.block_signals() {
        return setup_not_started(e);
    }
    let setup = setup(host, plan, Source::Unlocked(&vault));
    drop(vault);
    run_set_up(host, shell, setup)
}

/// [`run_holder`] for a vault that does not exist yet: setup creates it first (and removes
/// it again if setup fails), then the session goes on as usual on the new, empty vault.
pub fn run_creator<H: Host>(
    host: &mut H,
    plan: &SessionPlan,
    shell: &ShellPlan,
    new: &NewVault<'_>,
) -> Report {
    if let Err(e) = host.block_signals() {
        return setup_not_started(e);
    }
    let setup = setup(host, plan, Source::New(new));
    run_set_up(host, shell, setup)
}

fn setup_not_started(e: HostError) -> Report {
    Report {
        end: SessionEnd::SetupFailed(e),
        cleanup_errors: Vec::new(),
        torn_down: true,
    }
}

/// The session after its setup: the shell, waiting, teardown.
fn run_set_up<H: Host>(
    host: &mut H,
    shell: &ShellPlan,
    setup: Result<Session, SetupFailure>,
) -> Report {
    let session = match setup {
        Ok(s) => s,
        Err(f) => {
            let end = match f.error {
                SetupError::Host(e) => SessionEnd::SetupFailed(e),
                SetupError::Interrupted(s) => SessionEnd::Interrupted(s),
            };
            return Report {
                end,
                cleanup_errors: f.unwind_errors,
                torn_down: true,
            };
        }
    };
    let end = match spawn_shell(host, shell) {
        Ok(Spawned::Parent(pid)) => match host.wait_child(pid) {
            Ok(st) => SessionEnd::Shell(st),
            Err(e) => SessionEnd::WaitFailed(e),
        },
        Ok(Spawned::ChildReturned) => {
            return Report {
                end: SessionEnd::ChildReturned,
                cleanup_errors: Vec::new(),
                torn_down: false,
            }
        }
        Err(e) => SessionEnd::SpawnFailed(e),
    };
    let mut cleanup_errors = Vec::new();
    match host.wait_for_joined_shells() {
        Ok(true) => {}
        Ok(false) => {
            // Interrupted while other shells still use the vault: leave it to them; the
            // kernel removes everything when the last of them exits.
            return Report {
                end,
                cleanup_errors,
                torn_down: false,
            };
        }
        Err(e) => {
            cleanup_errors.push(e);
            return Report {
                end,
                cleanup_errors,
                torn_down: false,
            };
        }
    }
    cleanup_errors.extend(teardown(host, session));
    Report {
        end,
        cleanup_errors,
        torn_down: true,
    }
}

/// A live session to join, from its lock record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinTarget {
    /// A process in the session's namespace.
    pub pid: u32,
    /// The namespace's nsfs device.
    pub ns_dev: u64,
    /// The namespace's inode.
    pub ns_ino: u64,
}

/// Joins a live session: enters its namespace and runs a shell there. No setup and no
/// teardown: the session's holder tears down after the last shell.
pub fn run_joiner<H: Host>(host: &mut H, target: JoinTarget, shell: &ShellPlan) -> Report {
    let ready = host
        .block_signals()
        .and_then(|()| host.join_namespace(target.pid, target.ns_dev, target.ns_ino));
    if let Err(e) = ready {
        return Report {
            end: SessionEnd::SetupFailed(e),
            cleanup_errors: Vec::new(),
            torn_down: false,
        };
    }
    let end = match spawn_shell(host, shell) {
        Ok(Spawned::Parent(pid)) => match host.wait_child(pid) {
            Ok(st) => SessionEnd::Shell(st),
            Err(e) => SessionEnd::WaitFailed(e),
        },
        Ok(Spawned::ChildReturned) => SessionEnd::ChildReturned,
        Err(e) => SessionEnd::SpawnFailed(e),
    };
    Report {
        end,
        cleanup_errors: Vec::new(),
        torn_down: false,
    }
}

/// Whether the session process should pass a signal it received on to the shell. A signal
/// the terminal sent (`SI_KERNEL`) to the foreground process group already reached the
/// shell when it shares our group; forwarding it would deliver it twice.
pub fn should_forward(code: i32, own_pgid: u32, child_pgid: u32) -> bool {
    !(code == libc::SI_KERNEL && own_pgid == child_pgid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn candidates_follow_path() {
        assert_eq!(
            exec_candidates(OsStr::new("/bin/sh"), None),
            vec![PathBuf::from("/bin/sh")]
        );
        assert_eq!(
            exec_candidates(OsStr::new("./x"), Some(OsStr::new("/a"))),
            vec![PathBuf::from("./x")]
        );
        assert_eq!(
            exec_candidates(OsStr::new("sh"), Some(OsStr::new("/a::/b"))),
            vec![PathBuf::from("/a/sh"), PathBuf::from("/b/sh")]
        );
        assert_eq!(exec_candidates(OsStr::new("sh"), None).len(), 3);
    }

    #[test]
    fn newlines_trimmed() {
        let mut v = b"tok\r\n\n".to_vec();
        trim_newlines(&mut v);
        assert_eq!(v, b"tok");
        let mut v = b"a\nb".to_vec();
        trim_newlines(&mut v);
        assert_eq!(v, b"a\nb");
    }

    #[test]
    fn forwarding_skips_terminal_signals_to_the_same_group() {
        assert!(!should_forward(libc::SI_KERNEL, 10, 10));
        assert!(should_forward(libc::SI_KERNEL, 10, 11));
        assert!(should_forward(libc::SI_USER, 10, 10));
    }
}
