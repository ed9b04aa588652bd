//! The ghost-mode verbs: `unlock` (outer: re-exec through sudo; root: verify the passphrase,
//! then hold or join the session), `lock`, `env`, `shell-init`. The session engine, the
//! shell's environment, the secrets map and the checks `lock` makes are in `crate::ghost`.

use super::init::CreateArgs;
use crate::cli::args::KeyArgs;
use crate::cli::args::LimitArgs;
use crate::config::{Flags, UserSpec};
use crate::error::{code, CliError};
use crate::ghost::caller::{self, Caller};
use crate::ghost::create;
use crate::ghost::ending::{is_ancestor, lock_target_ok, proc_ppid, LockFacts};
use crate::ghost::exec::GHOST_MODE_VAR;
use crate::ghost::secrets::{env_lines, read_capped};
use crate::ghost::session::{Report, SessionEnd};
use crate::ghost::start::{self, Notice, StartRequest};
use crate::ghost::sudo::{absolute, current_exe, exec_as_root};
use crate::kernel::privs;
use crate::shell::{shell_init, valid_guard_name, ShellKind};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use zeroize::Zeroize;

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

/// The shell names `shell-init` takes on its command line.
impl clap::ValueEnum for ShellKind {
    fn value_variants<'a>() -> &'a [Self] {
        &[ShellKind::Bash, ShellKind::Zsh]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            ShellKind::Bash => PossibleValue::new("bash").help("GNU bash"),
            ShellKind::Zsh => PossibleValue::new("zsh").help("Z shell"),
        })
    }
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
        crate::preflight::kernel_can_map(start::vault_is_image(args.vault.as_deref()))?;
        // A vault named on the command line that does not exist is created as root: what
        // would stop that is checked now, before sudo asks for a password.
        if let Some(v) = &args.vault {
            let v = absolute(v);
            if matches!(std::fs::symlink_metadata(&v), Err(e) if e.kind() == io::ErrorKind::NotFound)
            {
                start::check_new_vault(
                    &v,
                    args.readonly,
                    &args.create.options(),
                    &args.key.source(),
                )?;
            }
        }
        return Err(reexec_as_root(&args, verbose));
    }
    unlock_as_root(args, verbose)
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
        Err(e) => return e.into(),
    };
    let argv = root_argv(args, &exe, verbose);
    exec_as_root(&args.sudo_command, &argv, "unlock").into()
}

/// `unlock` as root: the session service, and what it says on the way.
fn unlock_as_root(args: UnlockArgs, verbose: bool) -> Result<u8, CliError> {
    let req = StartRequest {
        config: args.config.as_deref(),
        flags: Flags {
            vault: args.vault.clone(),
            mount: args.mount.clone(),
            user: args.user.as_deref().map(UserSpec::parse),
            shell: args.shell.clone(),
            no_new_privs: args.no_new_privs,
        },
        command: &args.command,
        readonly: args.readonly,
        key: &args.key.source(),
        limits: args.limits.limits(),
        create: args.create.options(),
        verbose,
    };
    let started = start::start(&req, &mut |n| match n {
        Notice::Creating { vault, size } => eprintln!(
            "tazpod: {} does not exist: creating a new vault ({})",
            vault.display(),
            create::human_size(size)
        ),
        Notice::Joining { mount } => eprintln!(
            "tazpod: this vault is already unlocked in a session; joining it (mounted at {mount})"
        ),
    })?;
    finish(started.report, started.created)
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
        SessionEnd::SetupFailed(e) => {
            let hint = match create::where_hint(&e).filter(|_| created) {
                Some(h) => format!("{h}; {undone_hint}"),
                None => undone_hint.to_string(),
            };
            let (code, step) = crate::error::host_failure(e);
            Err(CliError::new(code, format!("cannot set up the ghost session: {step}")).hint(hint))
        }
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

// ---------------------------------------------------------------------------------------------
// lock

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
    let written = super::output::print_bytes(&out);
    out.zeroize();
    written?;
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
    super::output::print_out(&shell_init(args.shell, &args.guard))?;
    Ok(code::OK)
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

    #[test]
    fn a_missing_sudo_is_exit_1_not_a_wrong_passphrase() {
        let e = CliError::from(exec_as_root(
            std::ffi::OsStr::new("/nonexistent/sudo"),
            &[],
            "unlock",
        ));
        assert_eq!(e.code, code::INVALID, "{e}");
        assert!(e.message.contains("needs root"), "{e}");
    }
}
