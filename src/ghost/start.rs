//! Starting a ghost session as root (the service behind `tazpod unlock`): who is calling and
//! as whom the session runs, the configuration, the vault opened once with the caller's
//! rights; then either a new vault created and a session on it, or the header read, the
//! passphrase checked, the session lock taken, and the session held or joined. Plain values
//! in, a session report or a [`StartError`] out: the command layer (`cli/ghost.rs`) says what
//! happened.

pub mod error;

pub use self::error::{OpenError, StartError};

use super::caller::{self, Caller, Policy, POLICY_FILE};
use super::create::{self, CreateOptions, Prepared};
use super::exec::{build_exec, ExecInputs};
use super::host::{FormatRequest, ImageRequest};
use super::lock::{self, Acquired, RUNTIME_DIR};
use super::real::RealHost;
use super::session::{
    run_creator, run_holder, run_joiner, Bind, JoinTarget, NewVault, Report, SessionPlan,
    ShellPlan, VaultKey,
};
use super::sudo::absolute;
use crate::config::{expand_home, Flags, Settings};
use crate::passphrase::KeySource;
use crate::unlock::KeyRequest;
use luks2::kdf::KdfLimits;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// What a session is started from.
#[derive(Debug)]
pub struct StartRequest<'a> {
    /// `--config`.
    pub config: Option<&'a Path>,
    /// The command line's vault, mount, user, shell and no-new-privs.
    pub flags: Flags,
    /// The command to run instead of a shell (empty: the shell).
    pub command: &'a [OsString],
    /// Map and mount the vault read-only.
    pub readonly: bool,
    /// The passphrase source.
    pub key: &'a KeySource,
    /// The KDF limits of the passphrase tries.
    pub limits: KdfLimits,
    /// How a missing vault is created.
    pub create: CreateOptions,
    /// Say more.
    pub verbose: bool,
}

/// What the command layer is told while a session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// The vault does not exist: a new one of `size` bytes is being created.
    Creating { vault: &'a Path, size: u64 },
    /// The vault is in a live session of the same user, mounted at `mount`: joining it.
    Joining { mount: &'a str },
}

/// A session that ran.
#[derive(Debug)]
pub struct Started {
    /// What the session engine reports.
    pub report: Report,
    /// The session was to start on a vault it created.
    pub created: bool,
}

/// The checks before a missing vault is created by `unlock` (also run before sudo, as the
/// caller, to refuse early).
pub fn check_new_vault(
    vault: &Path,
    readonly: bool,
    create: &CreateOptions,
    key: &KeySource,
) -> Result<Prepared, StartError> {
    if readonly {
        return Err(StartError::ReadonlyCreate {
            vault: vault.to_path_buf(),
        });
    }
    Ok(create::prepare(
        vault,
        create,
        key,
        crate::kernel::tty::stdin_is_tty(),
    )?)
}

/// Opens the vault as the caller (the guard of `caller` must be active): read-write, or
/// read-only for `--readonly`; a block device only if the caller may open it read-write.
/// `Ok(None)` when nothing is there.
pub fn open_vault(vault: &Path, readonly: bool) -> Result<Option<File>, OpenError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let shown = vault.display().to_string();
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .write(!readonly)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(vault)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            let how = if readonly { "read" } else { "read and write" };
            return Err(OpenError::Open { shown, how, error });
        }
    };
    let ft = match f.metadata() {
        Ok(m) => m.file_type(),
        Err(error) => return Err(OpenError::Stat { shown, error }),
    };
    if ft.is_block_device() && readonly {
        // Reopening the very same device through the descriptor checks the caller's write
        // permission without a second lookup of the path.
        if let Err(error) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&f)
            ))
        {
            return Err(OpenError::BlockNotWritable { shown, error });
        }
    } else if !(ft.is_file() || ft.is_block_device()) {
        return Err(OpenError::NotAFile { shown });
    }
    Ok(Some(f))
}

/// Whether the vault (when named) is an image file that needs a loop device (not a block
/// device); an unnamed or missing vault is taken to be one.
pub fn vault_is_image(vault: Option<&Path>) -> bool {
    use std::os::unix::fs::FileTypeExt;
    !vault
        .and_then(|v| std::fs::metadata(v).ok())
        .is_some_and(|m| m.file_type().is_block_device())
}

/// Starts (or joins) the session and runs it to its end. Runs as root.
pub fn start(
    req: &StartRequest<'_>,
    notice: &mut dyn FnMut(Notice<'_>),
) -> Result<Started, StartError> {
    let caller = Caller::current()?;
    let files = caller::load_config(req.config, &caller)?;
    let settings = Settings::resolve(files, &req.flags);
    let user = caller::session_user(&caller, settings.user.as_ref(), || {
        Policy::load(Path::new(POLICY_FILE))
    })?;
    let vault = expand_home(&settings.vault, &user.home);
    let mount = expand_home(&settings.mount, &user.home);
    let binds: Vec<Bind> = settings
        .binds
        .iter()
        .map(|b| Bind {
            source: b.source.clone(),
            target: expand_home(&b.target, &user.home),
            readonly: b.readonly,
        })
        .collect();

    let config_var = req.config.map(absolute);
    let inherited: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let cwd = std::env::current_dir().ok();
    let exec_for = |mount: &Path| {
        let exec = build_exec(&ExecInputs {
            user: &user,
            shell: settings.shell.as_deref(),
            command: req.command,
            vault: &vault,
            mount,
            config: config_var.as_deref(),
            secrets: &settings.secrets,
            inherited: &inherited,
            cwd: cwd.as_deref(),
        });
        ShellPlan {
            user: user.clone(),
            exec,
            no_new_privs: settings.no_new_privs,
            drop_bounding_set: true,
        }
    };
    let plan_named = |name: String| SessionPlan {
        vault: vault.clone(),
        name,
        readonly: req.readonly,
        mapper_dir: PathBuf::from("/dev/mapper"),
        mount_point: mount.clone(),
        binds: binds.clone(),
        user: user.clone(),
    };

    // The vault is opened once, with the caller's rights; from here on only this descriptor
    // is used: header, passphrase check, session id, lock and loop device.
    let opened = caller.with_rights(|| open_vault(&vault, req.readonly))?;

    // No vault yet: create it, then the session goes on as usual on the new vault.
    let Some(file) = opened else {
        let prepared = check_new_vault(&vault, req.readonly, &req.create, req.key)?;
        notice(Notice::Creating {
            vault: &vault,
            size: prepared.size,
        });
        // Device-mapper and loop devices, before the passphrase or the KDF.
        crate::preflight::can_map(true)?;
        let pass = caller.with_rights(|| create::new_passphrase(req.key, &vault))?;
        let new = NewVault {
            image: ImageRequest {
                path: vault.clone(),
                size: prepared.size,
                owner: caller.rights().cloned(),
                replace: false,
            },
            format: FormatRequest {
                spec: &prepared.spec,
                passphrase: &pass,
                verbose: req.verbose,
            },
            mkfs: prepared.mkfs.clone(),
            root_owner: (user.uid, user.gid),
        };
        // The mapping is named after the new file's identity, known once it exists.
        let plan = plan_named(String::new());
        let shell = exec_for(&mount);
        let mut host = RealHost::creating(&vault, &mount, user.uid);
        let report = run_creator(&mut host, &plan, &shell, &new);
        drop(pass);
        return Ok(Started {
            report,
            created: true,
        });
    };

    // Before anything is created: the header, the passphrase, the volume key.
    let shown = vault.display().to_string();
    // Device-mapper and loop devices, before the passphrase or the KDF.
    crate::preflight::can_map(!file.metadata().is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_block_device()
    }))?;
    // cryptsetup's shared metadata lock while the header and keyslots are read, so that no
    // tazpod or cryptsetup writer changes them in between; released before the mapping.
    let header_lock =
        crate::device::metadata_lock(&file, &shown, crate::kernel::flock::Mode::Shared)?;
    let mut read = crate::unlock::read_header(&file, &shown)?;
    read.need_segment()?;
    let key_req = KeyRequest {
        key: req.key,
        keyslot: None,
        limits: req.limits,
        verbose: req.verbose,
    };
    // The key file is read with the caller's rights: it can be only a file they may read.
    let unlocked = caller.with_rights(|| read.unlock(&file, &key_req))?;
    drop(header_lock);

    // The session is named after the file whose passphrase was just checked (fstat of the
    // same descriptor), whatever the path leads to now.
    let meta = file.metadata().map_err(|error| StartError::Stat {
        shown: shown.clone(),
        error,
    })?;
    let id = lock::vault_id(&meta);
    let runtime = Path::new(RUNTIME_DIR);
    lock::ensure_runtime_dir(runtime).map_err(StartError::SessionLock)?;
    let acquired =
        lock::acquire(runtime, &id, lock::find_ns_member).map_err(StartError::SessionLock)?;
    let report = match acquired {
        Acquired::Holder(lock) => {
            let shell = exec_for(&mount);
            let plan = plan_named(lock::mapping_name(&id));
            let mut host = RealHost::holder(lock, file, &vault, &mount, user.uid);
            let volume = read.volume(&unlocked)?;
            let key = VaultKey {
                volume,
                key: unlocked.volume_key,
            };
            run_holder(&mut host, &plan, &shell, key)
        }
        Acquired::Joiner { lock, record, pid } => {
            drop(unlocked);
            drop(file);
            if record.uid != user.uid {
                return Err(StartError::OtherUser {
                    shown,
                    uid: record.uid,
                });
            }
            notice(Notice::Joining {
                mount: &record.mount,
            });
            let shell = exec_for(Path::new(&record.mount));
            let mut host = RealHost::joiner(lock);
            let target = JoinTarget {
                pid,
                ns_dev: record.ns.dev,
                ns_ino: record.ns.ino,
            };
            run_joiner(&mut host, target, &shell)
        }
    };
    Ok(Started {
        report,
        created: false,
    })
}
