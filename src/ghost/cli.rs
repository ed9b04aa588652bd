//! The ghost-mode verbs: `unlock` (outer: re-exec through sudo; root: verify the passphrase,
//! then hold or join the session), `lock`, `env`, `shell-init`.

use super::caller::{self, Caller, Policy, POLICY_FILE};
use super::create::{self, CreateArgs};
use super::host::{ExecSpec, FormatRequest, HostError, Identity, ImageRequest, SecretVar};
use super::lock::{self, Acquired, RUNTIME_DIR};
use super::real::RealHost;
use super::session::{
    run_creator, run_holder, run_joiner, trim_newlines, Bind, JoinTarget, NewVault, Report,
    SessionEnd, SessionPlan, ShellPlan, VaultKey, DEFAULT_PATH,
};
use super::sudo::{absolute, current_exe, exec_as_root};
use crate::cli::args::LimitArgs;
use crate::config::{expand_home, Flags, SecretEntry, SecretKind, Settings, UserSpec};
use crate::error::{code, CliError};
use crate::kernel::privs;
use crate::passphrase::KeyArgs;
use crate::shell::{export_line, shell_init, valid_guard_name, ShellKind};
use crate::unlock::KeyRequest;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroize;

/// Set to `true` in every ghost session's environment.
pub const GHOST_MODE_VAR: &str = "TAZPOD_GHOST_MODE";

/// Options of `tazpod unlock`.
#[derive(clap::Args, Debug, Clone)]
pub struct UnlockArgs {
    /// The vault image [default: the config's, else /workspace/.tazpod-vault/vault.img]
    #[arg(long, value_name = "FILE")]
    pub vault: Option<PathBuf>,
    /// Where the vault appears inside the session [default: the config's, else ~/secrets]
    #[arg(long, value_name = "DIR")]
    pub mount: Option<PathBuf>,
    /// Run the session as USER: only yourself, unless you are root or /etc/tazpod/policy.toml
    /// allows it [default: the config's, else the caller (root: tazpod)]
    #[arg(long, value_name = "USER|UID")]
    pub user: Option<String>,
    /// Shell to run [default: the config's, else the user's login shell]
    #[arg(long, value_name = "PATH")]
    pub shell: Option<PathBuf>,
    /// Read FILE instead of ~/.config/tazpod/config.toml (after /etc/tazpod/config.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Map and mount the vault read-only
    #[arg(long)]
    pub readonly: bool,
    /// Set no_new_privs in the session (set-uid programs such as sudo stop working there)
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// How to become root when not root
    #[arg(long = "sudo-command", value_name = "CMD", default_value = "sudo")]
    pub sudo_command: OsString,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// When the vault does not exist, it is created first (passphrase asked twice)
    #[command(flatten)]
    pub create: CreateArgs,
    /// Run COMMAND in the session instead of a shell
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Options of `tazpod shell-init`.
#[derive(clap::Args, Debug, Clone)]
pub struct ShellInitArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: ShellKind,
    /// Add a wrapper that runs NAME only inside a ghost session (repeatable)
    #[arg(long = "guard", value_name = "NAME")]
    pub guard: Vec<String>,
}

fn in_ghost_session() -> bool {
    std::env::var_os(GHOST_MODE_VAR).is_some_and(|v| v == "true")
}

// ---------------------------------------------------------------------------------------------
// unlock

/// `tazpod unlock`. Returns the session's exit status.
pub fn cmd_unlock(args: UnlockArgs, verbose: bool) -> Result<u8, CliError> {
    if in_ghost_session() {
        let at = std::env::var_os("TAZPOD_VAULT_MOUNT")
            .map(|m| format!(" (the vault is at {})", Path::new(&m).display()))
            .unwrap_or_default();
        eprintln!("tazpod: already inside a ghost session{at}; exit this shell to lock the vault");
        return Ok(code::OK);
    }
    if privs::geteuid() != 0 {
        // A kernel that cannot map the vault is said before sudo asks for a password.
        crate::preflight::kernel_can_map(vault_is_image(args.vault.as_deref()))?;
        // A vault named on the command line that does not exist is created as root: what
        // would stop that is checked now, before sudo asks for a password.
        if let Some(v) = &args.vault {
            let v = absolute(v);
            if matches!(std::fs::symlink_metadata(&v), Err(e) if e.kind() == io::ErrorKind::NotFound)
            {
                check_new_vault(&args, &v)?;
            }
        }
        return Err(reexec_as_root(&args, verbose));
    }
    unlock_as_root(args, verbose)
}

/// The checks before a missing vault is created by `unlock`.
fn check_new_vault(args: &UnlockArgs, vault: &Path) -> Result<create::Prepared, CliError> {
    if args.readonly {
        return Err(CliError::new(
            code::INVALID,
            format!(
                "{} does not exist, and a new vault cannot be created read-only",
                vault.display()
            ),
        )
        .hint("drop --readonly to create it, or check the vault path; nothing was created"));
    }
    create::prepare(
        vault,
        &args.create,
        &args.key,
        crate::kernel::tty::stdin_is_tty(),
    )
}

/// The command line that runs `tazpod unlock` again as root: `SUDO -- EXE [-v] unlock
/// [options]`. Only the options go on it (paths made absolute), never a secret and never an
/// identity: the root side learns who the caller is from the kernel and sudo.
pub fn root_argv(args: &UnlockArgs, exe: &Path, verbose: bool) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["--".into(), exe.into()];
    if verbose {
        v.push("-v".into());
    }
    v.push("unlock".into());
    let mut path = |flag: &str, p: &Option<PathBuf>| {
        if let Some(p) = p {
            v.push(flag.into());
            v.push(absolute(p).into());
        }
    };
    path("--vault", &args.vault);
    path("--mount", &args.mount);
    path("--shell", &args.shell);
    path("--config", &args.config);
    path("--key-file", &args.key.key_file);
    if let Some(u) = &args.user {
        v.push("--user".into());
        v.push(u.into());
    }
    if args.readonly {
        v.push("--readonly".into());
    }
    if args.no_new_privs {
        v.push("--no-new-privs".into());
    }
    let mut num = |flag: &str, n: Option<u64>| {
        if let Some(n) = n {
            v.push(flag.into());
            v.push(n.to_string().into());
        }
    };
    num("--max-kdf-memory", args.limits.max_kdf_memory);
    num("--max-pbkdf2-time", args.limits.max_pbkdf2_time);
    num(
        "--max-argon2-time",
        args.limits.max_argon2_time.map(u64::from),
    );
    num(
        "--keyfile-offset",
        Some(args.key.keyfile_offset).filter(|o| *o != 0),
    );
    num("--keyfile-size", args.key.keyfile_size);
    num("--tries", Some(u64::from(args.key.tries)));
    args.create.push_argv(&mut v);
    if !args.command.is_empty() {
        v.push("--".into());
        v.extend(args.command.iter().cloned());
    }
    v
}

/// Re-executes through `--sudo-command`; returns only on failure.
fn reexec_as_root(args: &UnlockArgs, verbose: bool) -> CliError {
    let exe = match current_exe() {
        Ok(e) => e,
        Err(e) => return e,
    };
    let argv = root_argv(args, &exe, verbose);
    exec_as_root(&args.sudo_command, &argv, "unlock")
}

/// Opens the vault as the caller (the guard of `caller` must be active): read-write, or
/// read-only for `--readonly`; a block device only if the caller may open it read-write.
/// `Ok(None)` when nothing is there.
pub fn open_vault(vault: &Path, readonly: bool) -> Result<Option<std::fs::File>, CliError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let shown = vault.display();
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .write(!readonly)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(vault)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            let how = if readonly { "read" } else { "read and write" };
            return Err(
                CliError::new(code::DEVICE, format!("cannot open the vault {shown}: {e}")).hint(
                    format!(
                "the vault is opened with the rights of the user who ran tazpod: that user must \
                 be able to {how} it"
            ),
                ),
            );
        }
    };
    let ft = f
        .metadata()
        .map_err(|e| CliError::new(code::DEVICE, format!("cannot stat {shown}: {e}")))?
        .file_type();
    if ft.is_block_device() && readonly {
        // Reopening the very same device through the descriptor checks the caller's write
        // permission without a second lookup of the path.
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&f)
            ))
            .map_err(|e| {
                CliError::new(
                    code::DEVICE,
                    format!("cannot use the block device {shown} as a vault: {e}"),
                )
                .hint("a block device is a vault only for a user who may write it")
            })?;
    } else if !(ft.is_file() || ft.is_block_device()) {
        return Err(CliError::new(
            code::DEVICE,
            format!("the vault {shown} is not a regular file or block device"),
        ));
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

fn unlock_as_root(args: UnlockArgs, verbose: bool) -> Result<u8, CliError> {
    let caller = Caller::current()?;
    let files = caller::load_config(args.config.as_deref(), &caller)?;
    let flags = Flags {
        vault: args.vault.clone(),
        mount: args.mount.clone(),
        user: args.user.as_deref().map(UserSpec::parse),
        shell: args.shell.clone(),
        no_new_privs: args.no_new_privs,
    };
    let settings = Settings::resolve(files, &flags);
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

    let config_var = args.config.as_deref().map(absolute);
    let inherited: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let cwd = std::env::current_dir().ok();
    let exec_for = |mount: &Path| {
        let exec = build_exec(&ExecInputs {
            user: &user,
            shell: settings.shell.as_deref(),
            command: &args.command,
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
        readonly: args.readonly,
        mapper_dir: PathBuf::from("/dev/mapper"),
        mount_point: mount.clone(),
        binds: binds.clone(),
        user: user.clone(),
    };

    // The vault is opened once, with the caller's rights; from here on only this descriptor
    // is used: header, passphrase check, session id, lock and loop device.
    let opened = caller.with_rights(|| open_vault(&vault, args.readonly))?;

    // No vault yet: create it, then the session goes on as usual on the new vault.
    let Some(file) = opened else {
        let prepared = check_new_vault(&args, &vault)?;
        eprintln!(
            "tazpod: {} does not exist: creating a new vault ({})",
            vault.display(),
            create::human_size(prepared.size)
        );
        // Device-mapper and loop devices, before the passphrase or the KDF.
        crate::preflight::can_map(true)?;
        let pass = caller.with_rights(|| create::new_passphrase(&args.key, &vault))?;
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
                verbose,
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
        return finish(report, true);
    };

    // Before anything is created: the header, the passphrase, the volume key.
    let shown = vault.display().to_string();
    // cryptsetup's shared metadata lock while the header and keyslots are read, so that no
    // tazpod or cryptsetup writer changes them in between; released before the mapping.
    // Device-mapper and loop devices, before the passphrase or the KDF.
    crate::preflight::can_map(!file.metadata().is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_block_device()
    }))?;
    let header_lock =
        crate::device::metadata_lock(&file, &shown, crate::kernel::flock::Mode::Shared)?;
    let mut read = crate::unlock::read_header(&file, &shown)?;
    read.need_segment()?;
    let req = KeyRequest {
        key: &args.key,
        keyslot: None,
        limits: args.limits.limits(),
        verbose,
    };
    // The key file is read with the caller's rights: it can be only a file they may read.
    let unlocked = caller.with_rights(|| read.unlock(&file, &req))?;
    drop(header_lock);

    // The session is named after the file whose passphrase was just checked (fstat of the
    // same descriptor), whatever the path leads to now.
    let meta = file
        .metadata()
        .map_err(|e| CliError::new(code::DEVICE, format!("cannot stat {shown}: {e}")))?;
    let id = lock::vault_id(&meta);
    let runtime = Path::new(RUNTIME_DIR);
    let lock_err = |e: io::Error| {
        CliError::new(
            code::BUSY,
            format!("cannot take the session lock in {RUNTIME_DIR}: {e}"),
        )
    };
    lock::ensure_runtime_dir(runtime).map_err(lock_err)?;
    let acquired = lock::acquire(runtime, &id, lock::find_ns_member).map_err(lock_err)?;
    match acquired {
        Acquired::Holder(lock) => {
            let shell = exec_for(&mount);
            let plan = plan_named(lock::mapping_name(&id));
            let mut host = RealHost::holder(lock, file, &vault, &mount, user.uid);
            let volume = read.volume(&unlocked)?;
            let key = VaultKey {
                volume,
                key: unlocked.volume_key,
            };
            let report = run_holder(&mut host, &plan, &shell, key);
            finish(report, false)
        }
        Acquired::Joiner { lock, record, pid } => {
            drop(unlocked);
            drop(file);
            if record.uid != user.uid {
                return Err(CliError::new(
                    code::BUSY,
                    format!(
                        "{shown} is unlocked in a ghost session of another user (uid {}); a \
                         session is joined only by its own user",
                        record.uid
                    ),
                )
                .hint("wait until that session ends"));
            }
            eprintln!(
                "tazpod: this vault is already unlocked in a session; joining it (mounted at {})",
                record.mount
            );
            let shell = exec_for(Path::new(&record.mount));
            let mut host = RealHost::joiner(lock);
            let target = JoinTarget {
                pid,
                ns_dev: record.ns.dev,
                ns_ino: record.ns.ino,
            };
            let report = run_joiner(&mut host, target, &shell);
            finish(report, false)
        }
    }
}

/// Turns a session report into messages and the exit status (`created`: the session was to
/// start on a vault it created).
fn finish(report: Report, created: bool) -> Result<u8, CliError> {
    for e in &report.cleanup_errors {
        eprintln!("tazpod: warning: could not {e}");
    }
    let clean = report.cleanup_errors.is_empty();
    let locked_msg = || {
        if report.torn_down {
            eprintln!("vault locked");
        }
    };
    let undone_hint = if clean && created {
        "nothing was left behind (the new vault was removed)"
    } else if clean {
        "nothing was left behind"
    } else {
        "some steps could not be undone (warnings above); the kernel removes the rest when \
         the session's processes are gone"
    };
    let code_of = HostError::exit_code;
    match report.end {
        SessionEnd::Shell(st) => {
            if report.torn_down {
                locked_msg();
            } else {
                eprintln!(
                    "tazpod: the vault stays unlocked for the other shells of this session; \
                     it locks when the last one exits"
                );
            }
            Ok(u8::try_from(st.code()).unwrap_or(255))
        }
        SessionEnd::SetupFailed(e) => Err(CliError::new(
            code_of(&e),
            format!("cannot set up the ghost session: {e}"),
        )
        .hint(match create::where_hint(&e).filter(|_| created) {
            Some(h) => format!("{h}; {undone_hint}"),
            None => undone_hint.to_string(),
        })),
        SessionEnd::Interrupted(sig) => Err(CliError::new(
            u8::try_from(128 + sig).unwrap_or(255),
            format!("interrupted by signal {sig} during setup"),
        )
        .hint(undone_hint)),
        SessionEnd::SpawnFailed(e) | SessionEnd::WaitFailed(e) => {
            locked_msg();
            Err(CliError::new(code::INVALID, format!("session shell: {e}")))
        }
        SessionEnd::ChildReturned => Ok(126),
    }
}

/// What the inner shell's [`ExecSpec`] is built from.
pub struct ExecInputs<'a> {
    /// The session user.
    pub user: &'a Identity,
    /// `--shell` / config `shell`.
    pub shell: Option<&'a Path>,
    /// The COMMAND after `--` (empty: a login shell).
    pub command: &'a [OsString],
    /// The vault image.
    pub vault: &'a Path,
    /// The mount point.
    pub mount: &'a Path,
    /// The `--config` file, for `tazpod env` inside the session.
    pub config: Option<&'a Path>,
    /// The secrets map.
    pub secrets: &'a [SecretEntry],
    /// This process's environment (only terminal and locale variables are kept).
    pub inherited: &'a [(OsString, OsString)],
    /// Where the user was.
    pub cwd: Option<&'a Path>,
}

/// Whether an inherited variable passes into the clean environment.
fn kept(name: &OsStr) -> bool {
    let n = name.as_bytes();
    matches!(
        n,
        b"TERM" | b"COLORTERM" | b"LANG" | b"LANGUAGE" | b"TZ" | b"NO_COLOR"
    ) || n.starts_with(b"LC_")
}

/// The inner shell's program, argv and clean environment.
pub fn build_exec(i: &ExecInputs<'_>) -> ExecSpec {
    let user = i.user;
    let login_shell = i
        .shell
        .map(Path::to_path_buf)
        .or_else(|| Some(user.shell.clone()).filter(|s| !s.as_os_str().is_empty()))
        .unwrap_or_else(|| PathBuf::from("/bin/sh"));
    let (program, argv) = match i.command.first() {
        Some(p) => (p.clone(), i.command.to_vec()),
        None => {
            let base = login_shell
                .file_name()
                .map_or_else(|| OsString::from("sh"), OsStr::to_os_string);
            let mut argv0 = OsString::from("-");
            argv0.push(base);
            (login_shell.clone().into_os_string(), vec![argv0])
        }
    };
    let mut env: Vec<(OsString, OsString)> = vec![
        (GHOST_MODE_VAR.into(), "true".into()),
        ("HOME".into(), user.home.clone().into_os_string()),
        ("USER".into(), user.name.clone().into()),
        ("LOGNAME".into(), user.name.clone().into()),
        ("SHELL".into(), login_shell.into_os_string()),
        ("PATH".into(), DEFAULT_PATH.into()),
        ("TAZPOD_VAULT".into(), i.vault.into()),
        ("TAZPOD_VAULT_MOUNT".into(), i.mount.into()),
    ];
    if let Some(c) = i.config {
        env.push(("TAZPOD_CONFIG".into(), c.into()));
    }
    env.extend(i.inherited.iter().filter(|(k, _)| kept(k)).cloned());
    let secrets = i
        .secrets
        .iter()
        .map(|s| SecretVar {
            env: s.env.clone(),
            file: i.mount.join(&s.file),
            as_value: s.kind == SecretKind::Value,
        })
        .collect();
    let mut cwd: Vec<PathBuf> = i.cwd.map(Path::to_path_buf).into_iter().collect();
    cwd.push(user.home.clone());
    ExecSpec {
        program,
        argv,
        env,
        secrets,
        cwd,
    }
}

// ---------------------------------------------------------------------------------------------
// lock

/// The parent pid in a `/proc/<pid>/stat` line (the command name may hold spaces and
/// parentheses, so fields are counted after the last `)`).
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `target` is `start` or one of its ancestors, walking `ppid_of`.
pub fn is_ancestor(target: u32, start: u32, ppid_of: impl Fn(u32) -> Option<u32>) -> bool {
    let mut p = start;
    for _ in 0..256 {
        if p == target {
            return true;
        }
        match ppid_of(p) {
            Some(q) if q > 0 && q != p => p = q,
            _ => return false,
        }
    }
    false
}

/// What `tazpod lock` knows about the process `TAZPOD_SHELL_PID` names.
pub struct LockFacts {
    /// It is this command or one of its ancestors.
    pub ancestor: bool,
    /// This process's mount namespace.
    pub mine: Option<crate::kernel::mount::NsId>,
    /// The target's mount namespace.
    pub target_ns: Option<crate::kernel::mount::NsId>,
    /// pid 1's mount namespace (when readable).
    pub init_ns: Option<crate::kernel::mount::NsId>,
    /// The target's real uid.
    pub target_uid: Option<u32>,
    /// Who runs `tazpod lock` (the kernel's and sudo's answer, 0 for real root).
    pub caller_uid: u32,
    /// The target.
    pub pid: u32,
}

/// Whether `tazpod lock` may end the process of `f`: an ancestor in this very session (the
/// same mount namespace, which is not the system's), of the caller's own uid. So even run
/// through sudo with a forged `TAZPOD_SHELL_PID`, it ends only the caller's session shell.
pub fn lock_target_ok(f: &LockFacts) -> Result<(), CliError> {
    let pid = f.pid;
    let no = |why: String| {
        CliError::new(
            code::INVALID,
            format!("process {pid} (TAZPOD_SHELL_PID) {why}"),
        )
        .hint("exit the session shell to lock the vault")
    };
    if !f.ancestor {
        return Err(no("is not a parent of this command".into()));
    }
    match (f.mine, f.target_ns) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(no("is not in this ghost session's mount namespace".into())),
    }
    if f.init_ns.is_some() && f.init_ns == f.mine {
        return Err(no(
            "is in the system's mount namespace: this is not a ghost session".into(),
        ));
    }
    if f.caller_uid != 0 && f.target_uid != Some(f.caller_uid) {
        return Err(no(format!(
            "does not belong to uid {}, who runs tazpod lock",
            f.caller_uid
        )));
    }
    Ok(())
}

fn proc_ppid(pid: u32) -> Option<u32> {
    parse_ppid(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `tazpod lock`: inside a session, ends the session's shell (SIGHUP, which interactive
/// shells obey); its session process then tears down and prints "vault locked".
pub fn cmd_lock() -> Result<u8, CliError> {
    let outside = || {
        CliError::new(code::INVALID, "not inside a ghost session: nothing to lock")
            .hint("`tazpod unlock` starts one")
    };
    if !in_ghost_session() {
        return Err(outside());
    }
    let pid = std::env::var("TAZPOD_SHELL_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|p| *p > 1)
        .ok_or_else(|| {
            CliError::new(
                code::INVALID,
                "TAZPOD_SHELL_PID is not set: cannot tell which shell holds the session",
            )
            .hint("exit the session shell to lock the vault")
        })?;
    // Held first (a pidfd), checked next, signalled through the pidfd: the process checked
    // is the one signalled.
    let target = privs::PidFd::open(pid).map_err(|e| {
        CliError::new(
            code::INVALID,
            format!("cannot find the session shell {pid}: {e}"),
        )
    })?;
    let caller = Caller::current()?;
    let caller_uid = caller.rights().map_or(0, |u| u.uid);
    lock_target_ok(&LockFacts {
        ancestor: is_ancestor(pid, privs::getpid(), proc_ppid),
        mine: crate::kernel::mount::mount_ns_of(None).ok(),
        target_ns: crate::kernel::mount::mount_ns_of(Some(pid)).ok(),
        init_ns: crate::kernel::mount::mount_ns_of(Some(1)).ok(),
        target_uid: privs::real_uid_of(pid).ok(),
        caller_uid,
        pid,
    })?;
    target.signal(libc::SIGHUP).map_err(|e| {
        CliError::new(
            code::INVALID,
            format!("cannot end the session shell {pid}: {e}"),
        )
    })?;
    eprintln!(
        "tazpod: ending the session shell; the vault locks when the session's last shell exits"
    );
    Ok(code::OK)
}

// ---------------------------------------------------------------------------------------------
// env

/// The `export` lines for `secrets` with the vault at `mount`; `read` returns a file's bytes.
/// Returns the output and the number of variables left out (each reported on stderr).
pub fn env_lines(
    secrets: &[SecretEntry],
    mount: &Path,
    mut read: impl FnMut(&Path) -> io::Result<Vec<u8>>,
) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut failed = 0;
    for s in secrets {
        let path = mount.join(&s.file);
        let mut value = match s.kind {
            SecretKind::Path => path.as_os_str().as_bytes().to_vec(),
            SecretKind::Value => match read(&path) {
                Ok(mut v) => {
                    trim_newlines(&mut v);
                    v
                }
                Err(e) => {
                    eprintln!(
                        "tazpod: {} not set: cannot read {}: {e}",
                        s.env,
                        path.display()
                    );
                    failed += 1;
                    continue;
                }
            },
        };
        match export_line(&s.env, &value) {
            Some(mut line) => {
                out.extend_from_slice(&line);
                line.zeroize();
            }
            None => {
                eprintln!(
                    "tazpod: {} not set: {} holds a NUL byte",
                    s.env,
                    path.display()
                );
                failed += 1;
            }
        }
        value.zeroize();
    }
    (out, failed)
}

fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut v = Vec::new();
    f.take(1 << 20).read_to_end(&mut v)?;
    Ok(v)
}

/// `tazpod env`: inside a session, `export NAME='value'` lines for the secrets map.
pub fn cmd_env() -> Result<u8, CliError> {
    if !in_ghost_session() {
        return Err(CliError::new(
            code::INVALID,
            "not inside a ghost session: no secrets to export",
        )
        .hint("run `tazpod unlock` first"));
    }
    let mount = std::env::var_os("TAZPOD_VAULT_MOUNT")
        .map(PathBuf::from)
        .ok_or_else(|| {
            CliError::new(
                code::INVALID,
                "TAZPOD_VAULT_MOUNT is not set in this session",
            )
        })?;
    let config = std::env::var_os("TAZPOD_CONFIG").map(PathBuf::from);
    let files = caller::load_config(config.as_deref(), &Caller::root())?;
    let (mut out, failed) = env_lines(&files.secret, &mount, read_capped);
    let written = {
        let mut o = io::stdout().lock();
        o.write_all(&out).and_then(|()| o.flush())
    };
    out.zeroize();
    written.map_err(|e| {
        CliError::new(
            code::INVALID,
            format!("cannot write to standard output: {e}"),
        )
    })?;
    Ok(if failed == 0 { code::OK } else { code::INVALID })
}

// ---------------------------------------------------------------------------------------------
// shell-init

/// `tazpod shell-init bash|zsh [--guard NAME]...`.
pub fn cmd_shell_init(args: ShellInitArgs) -> Result<u8, CliError> {
    if let Some(bad) = args.guard.iter().find(|g| !valid_guard_name(g)) {
        return Err(CliError::new(
            code::INVALID,
            format!("--guard {bad:?} is not a command name tazpod can wrap"),
        )
        .hint("use letters, digits, _ and -, starting with a letter or _"));
    }
    let s = shell_init(args.shell, &args.guard);
    let mut o = io::stdout().lock();
    o.write_all(s.as_bytes())
        .and_then(|()| o.flush())
        .map_err(|e| {
            CliError::new(
                code::INVALID,
                format!("cannot write to standard output: {e}"),
            )
        })?;
    Ok(code::OK)
}

/// Lossless `OsString` from bytes (for tests).
#[cfg(test)]
fn os(b: &[u8]) -> OsString {
    std::os::unix::ffi::OsStringExt::from_vec(b.to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        u: UnlockArgs,
    }

    fn parse(args: &[&str]) -> UnlockArgs {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::try_parse_from(v).unwrap().u
    }

    #[test]
    fn root_argv_carries_options_and_identity_only() {
        let a = parse(&[
            "--vault",
            "/v.img",
            "--mount",
            "rel/m",
            "--user",
            "bob",
            "--key-file",
            "/k",
            "--readonly",
            "--tries",
            "5",
            "--sudo-command",
            "doas",
            "--",
            "sh",
            "-c",
            "id",
        ]);
        let v = root_argv(&a, Path::new("/usr/local/bin/tazpod"), true);
        let s: Vec<String> = v.iter().map(|x| x.to_string_lossy().into()).collect();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            s,
            vec![
                "--".to_string(),
                "/usr/local/bin/tazpod".into(),
                "-v".into(),
                "unlock".into(),
                "--vault".into(),
                "/v.img".into(),
                "--mount".into(),
                cwd.join("rel/m").display().to_string(),
                "--key-file".into(),
                "/k".into(),
                "--user".into(),
                "bob".into(),
                "--readonly".into(),
                "--tries".into(),
                "5".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                "id".into(),
            ]
        );
        // the re-executed command line parses back to the same options
        let mut back = vec!["t".to_string()];
        back.extend(s[4..].iter().cloned());
        let b = T::try_parse_from(back).unwrap().u;
        assert_eq!(b.vault, a.vault);
        assert_eq!(b.user, a.user);
        assert!(b.readonly);
        assert_eq!(b.key.tries, 5);
        assert_eq!(b.command, a.command);
        // no sudo option goes through, and no identity
        assert!(!s.iter().any(|x| x.contains("doas")));
        assert!(!s.iter().any(|x| x.contains("invoker")));
        // and none can be passed by hand
        assert!(T::try_parse_from(["t", "--invoker", "0"]).is_err());
    }

    #[test]
    fn root_argv_keeps_stdin_key_and_tilde() {
        let a = parse(&["--key-file", "-", "--mount", "~/m"]);
        let v = root_argv(&a, Path::new("/t"), false);
        let s: Vec<String> = v.iter().map(|x| x.to_string_lossy().into()).collect();
        assert!(s.windows(2).any(|w| w == ["--key-file", "-"]));
        assert!(s.windows(2).any(|w| w == ["--mount", "~/m"]));
        assert!(!s.contains(&"-v".to_string()));
    }

    fn user() -> Identity {
        Identity {
            name: "tazpod".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            home: "/home/tazpod".into(),
            shell: "/bin/bash".into(),
        }
    }

    #[test]
    fn exec_is_a_login_shell_with_a_clean_environment() {
        let u = user();
        let secrets = vec![
            SecretEntry {
                env: "GH_TOKEN".into(),
                file: "tokens/gh".into(),
                kind: SecretKind::Value,
            },
            SecretEntry {
                env: "KEYFILE".into(),
                file: "k.json".into(),
                kind: SecretKind::Path,
            },
        ];
        let inherited = vec![
            (os(b"TERM"), os(b"xterm")),
            (os(b"LC_ALL"), os(b"C.UTF-8")),
            (os(b"SUDO_USER"), os(b"tazpod")),
            (os(b"LD_PRELOAD"), os(b"/evil.so")),
            (os(b"PATH"), os(b"/root/bin")),
        ];
        let e = build_exec(&ExecInputs {
            user: &u,
            shell: None,
            command: &[],
            vault: Path::new("/w/vault.img"),
            mount: Path::new("/home/tazpod/secrets"),
            config: None,
            secrets: &secrets,
            inherited: &inherited,
            cwd: Some(Path::new("/w")),
        });
        assert_eq!(e.program, "/bin/bash");
        assert_eq!(e.argv, vec![OsString::from("-bash")]);
        let names: Vec<String> = e
            .env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into())
            .collect();
        assert_eq!(
            names,
            vec![
                "TAZPOD_GHOST_MODE",
                "HOME",
                "USER",
                "LOGNAME",
                "SHELL",
                "PATH",
                "TAZPOD_VAULT",
                "TAZPOD_VAULT_MOUNT",
                "TERM",
                "LC_ALL"
            ]
        );
        assert_eq!(e.env[5].1, DEFAULT_PATH);
        assert_eq!(
            e.secrets[0].file,
            PathBuf::from("/home/tazpod/secrets/tokens/gh")
        );
        assert!(e.secrets[0].as_value && !e.secrets[1].as_value);
        assert_eq!(
            e.cwd,
            vec![PathBuf::from("/w"), PathBuf::from("/home/tazpod")]
        );
    }

    #[test]
    fn exec_runs_the_command_or_the_chosen_shell() {
        let u = user();
        let cmd = vec![OsString::from("cat"), OsString::from("/x")];
        let base = ExecInputs {
            user: &u,
            shell: Some(Path::new("/bin/zsh")),
            command: &cmd,
            vault: Path::new("/v"),
            mount: Path::new("/m"),
            config: Some(Path::new("/c.toml")),
            secrets: &[],
            inherited: &[],
            cwd: None,
        };
        let e = build_exec(&base);
        assert_eq!(e.program, "cat");
        assert_eq!(e.argv, cmd);
        assert!(e
            .env
            .iter()
            .any(|(k, v)| k == "TAZPOD_CONFIG" && v == "/c.toml"));
        assert!(e.env.iter().any(|(k, v)| k == "SHELL" && v == "/bin/zsh"));
        let e = build_exec(&ExecInputs {
            command: &[],
            ..base
        });
        assert_eq!(e.argv, vec![OsString::from("-zsh")]);
    }

    #[test]
    fn a_missing_sudo_is_exit_1_not_a_wrong_passphrase() {
        let e = exec_as_root(OsStr::new("/nonexistent/sudo"), &[], "unlock");
        assert_eq!(e.code, code::INVALID, "{e}");
        assert!(e.message.contains("needs root"), "{e}");
    }

    #[test]
    fn ppid_parsing_and_ancestry() {
        assert_eq!(parse_ppid("123 (bash) S 45 123 123 0"), Some(45));
        assert_eq!(parse_ppid("123 (a) b (c) d) S 46 1"), Some(46));
        assert_eq!(parse_ppid("garbage"), None);
        let tree = |p: u32| match p {
            10 => Some(9),
            9 => Some(5),
            5 => Some(1),
            1 => Some(0),
            _ => None,
        };
        assert!(is_ancestor(5, 10, tree));
        assert!(is_ancestor(10, 10, tree));
        assert!(!is_ancestor(7, 10, tree));
        assert!(is_ancestor(
            std::process::id(),
            std::process::id(),
            proc_ppid
        ));
        let parent = privs::getppid();
        assert!(is_ancestor(parent, std::process::id(), proc_ppid));
    }

    #[test]
    fn lock_ends_only_an_own_shell_of_this_session() {
        use crate::kernel::mount::NsId;
        let sys = NsId { dev: 4, ino: 1 };
        let sess = NsId { dev: 4, ino: 2 };
        let ok = LockFacts {
            ancestor: true,
            mine: Some(sess),
            target_ns: Some(sess),
            init_ns: Some(sys),
            target_uid: Some(1000),
            caller_uid: 1000,
            pid: 77,
        };
        assert!(lock_target_ok(&ok).is_ok());
        // pid 1 unreadable (an unprivileged caller): the other checks still hold
        assert!(lock_target_ok(&LockFacts {
            init_ns: None,
            ..ok
        })
        .is_ok());
        for (bad, why) in [
            (
                LockFacts {
                    ancestor: false,
                    ..ok
                },
                "not a parent",
            ),
            // an ancestor outside the session (the sudo, the login shell...)
            (
                LockFacts {
                    target_ns: Some(sys),
                    ..ok
                },
                "mount namespace",
            ),
            // run outside any session with a forged TAZPOD_GHOST_MODE / TAZPOD_SHELL_PID
            (
                LockFacts {
                    mine: Some(sys),
                    target_ns: Some(sys),
                    ..ok
                },
                "system's mount namespace",
            ),
            // the session's root holder, or another user's process
            (
                LockFacts {
                    target_uid: Some(0),
                    ..ok
                },
                "uid 1000",
            ),
            (
                LockFacts {
                    target_uid: None,
                    ..ok
                },
                "uid 1000",
            ),
        ] {
            let e = lock_target_ok(&bad).unwrap_err();
            assert!(e.message.contains(why), "{}", e.message);
        }
    }

    #[test]
    fn env_lines_for_values_paths_and_failures() {
        let secrets = vec![
            SecretEntry {
                env: "A".into(),
                file: "a".into(),
                kind: SecretKind::Value,
            },
            SecretEntry {
                env: "B".into(),
                file: "dir/b".into(),
                kind: SecretKind::Path,
            },
            SecretEntry {
                env: "MISSING".into(),
                file: "nope".into(),
                kind: SecretKind::Value,
            },
            SecretEntry {
                env: "NUL".into(),
                file: "nul".into(),
                kind: SecretKind::Value,
            },
        ];
        let read = |p: &Path| -> io::Result<Vec<u8>> {
            match p.to_str() {
                Some("/m/a") => Ok(b"it's\nmulti\n\n".to_vec()),
                Some("/m/nul") => Ok(b"a\0b".to_vec()),
                _ => Err(io::Error::from(io::ErrorKind::NotFound)),
            }
        };
        let (out, failed) = env_lines(&secrets, Path::new("/m"), read);
        assert_eq!(failed, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "export A='it'\\''s\nmulti'\nexport B='/m/dir/b'\n"
        );
    }
}
