//! `tazpod init`: the options of creating a vault (also taken by `unlock`, for a vault that
//! does not exist yet), the re-execution as root, and the root side, which resolves the
//! settings, checks the vault path and runs the creation (`crate::ghost::create` for the
//! checks and the passphrase, `crate::ghost::session::create_vault` for the steps).

use super::write::KdfArgs;
use crate::cli::args::KeyArgs;
use crate::config::{expand_home, Flags, Settings, UserSpec};
use crate::error::{code, CliError};
use crate::ghost::caller::{self, Caller, Policy, POLICY_FILE};
use crate::ghost::create::{self, CreateOptions, DEFAULT_SIZE};
use crate::ghost::host::{FormatRequest, ImageRequest};
use crate::ghost::real::RealHost;
use crate::ghost::session::{create_vault, NewVault, SetupError};
use crate::ghost::sudo;
use crate::kernel::{privs, tty};
use crate::write::{self, KdfOptions};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// Options for creating a vault, taken by `init` and by `unlock` (used there only when the
/// vault does not exist).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Creating a vault")]
pub struct CreateArgs {
    /// Size of a new vault image, a sparse file (suffixes K, M, G, T: binary units) [default: 512M]
    #[arg(long, value_name = "SIZE", value_parser = parse_vault_size)]
    pub size: Option<u64>,
    /// Make the new vault's ext4 filesystem with the system's mkfs.ext4 (e2fsprogs, from
    /// /usr/sbin, /sbin, /usr/bin or /bin) instead of tazpod's own formatter
    #[arg(long = "mkfs-ext4")]
    pub mkfs_ext4: bool,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

impl CreateArgs {
    /// What these options ask of the creation (`--size` left out: [`DEFAULT_SIZE`]).
    pub fn options(&self) -> CreateOptions {
        CreateOptions {
            size: self.size.unwrap_or(DEFAULT_SIZE),
            mkfs_ext4: self.mkfs_ext4,
            kdf: KdfOptions::from(&self.kdf),
        }
    }

    /// The options for the root re-execution: those not at their defaults.
    pub fn push_argv(&self, v: &mut Vec<OsString>) {
        if self.mkfs_ext4 {
            v.push("--mkfs-ext4".into());
        }
        let mut push = |flag: &str, value: String| {
            v.push(flag.into());
            v.push(value.into());
        };
        if let Some(s) = self.size {
            push("--size", s.to_string());
        }

        let d = KdfOptions::default();
        let k = &self.kdf;
        if d.pbkdf != k.pbkdf {
            push("--pbkdf", k.pbkdf.clone());
        }
        if d.hash != k.hash {
            push("--hash", k.hash.clone());
        }
        let nums = [
            ("--iter-time", k.iter_time),
            ("--pbkdf-memory", k.pbkdf_memory.map(u64::from)),
            ("--pbkdf-parallel", k.pbkdf_parallel.map(u64::from)),
            (
                "--pbkdf-force-iterations",
                k.force_iterations.map(u64::from),
            ),
        ];
        for (flag, n) in nums {
            if let Some(n) = n {
                push(flag, n.to_string());
            }
        }
    }
}

/// `--size`: cryptsetup's sizes (bytes, or K, M, G, T), not zero.
pub fn parse_vault_size(s: &str) -> Result<u64, String> {
    match write::parse_size(s)? {
        0 => Err("a vault cannot be empty".into()),
        n => Ok(n),
    }
}

/// Options of `tazpod init`.
#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// The vault image to create [default: the config's, else /workspace/.tazpod-vault/vault.img]
    #[arg(long, value_name = "FILE")]
    pub vault: Option<PathBuf>,
    /// The user whose vault it is: owner of its filesystem's root directory; only yourself,
    /// unless you are root or /etc/tazpod/policy.toml allows it [default: the config's, else
    /// the caller (root: tazpod)]
    #[arg(long, value_name = "USER|UID")]
    pub user: Option<String>,
    /// Read FILE instead of ~/.config/tazpod/config.toml (after /etc/tazpod/config.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Replace an existing vault (its data is lost) after a typed YES
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    /// How to become root when not root
    #[arg(long = "sudo-command", value_name = "CMD", default_value = "sudo")]
    pub sudo_command: OsString,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub create: CreateArgs,
}

/// What `init` does about the vault path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitAction {
    /// Nothing there: create the vault.
    Create,
    /// A vault there and no `--force`: refuse, touch nothing.
    Refuse,
    /// A vault there and `--force`: replace it, after a typed YES unless `--batch-mode`.
    Replace {
        /// Ask for the typed YES first.
        confirm: bool,
    },
}

/// The action for a vault path where something `exists` or not.
pub fn init_action(exists: bool, force: bool, batch_mode: bool) -> InitAction {
    match (exists, force) {
        (false, _) => InitAction::Create,
        (true, false) => InitAction::Refuse,
        (true, true) => InitAction::Replace {
            confirm: !batch_mode,
        },
    }
}

/// `tazpod init`: creates the vault and exits (`tazpod unlock` then opens it).
pub fn cmd_init(args: InitArgs, verbose: bool) -> Result<u8, CliError> {
    if privs::geteuid() != 0 {
        // What can be checked as the caller is, before sudo asks for a password.
        crate::preflight::kernel_can_map(true)?;
        if let Some(v) = &args.vault {
            let v = sudo::absolute(v);
            let exists = std::fs::symlink_metadata(&v).is_ok();
            if init_action(exists, args.force, args.batch_mode) == InitAction::Refuse {
                return Err(exists_error(&v));
            }
            create::prepare(
                &v,
                &args.create.options(),
                &args.key.source(),
                tty::stdin_is_tty(),
            )?;
        }
        let exe = sudo::current_exe()?;
        let argv = init_root_argv(&args, &exe, verbose);
        return Err(sudo::exec_as_root(&args.sudo_command, &argv, "init").into());
    }
    init_as_root(args, verbose)
}

fn exists_error(vault: &Path) -> CliError {
    CliError::new(
        code::INVALID,
        format!("{} already exists; nothing was changed", vault.display()),
    )
    .hint(
        "`tazpod unlock` opens it; `tazpod init --force` replaces it with a new, empty vault \
         (its data is lost)",
    )
}

/// The command line that runs `tazpod init` again as root (no secret and no identity on it).
pub fn init_root_argv(a: &InitArgs, exe: &Path, verbose: bool) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["--".into(), exe.into()];
    if verbose {
        v.push("-v".into());
    }
    v.push("init".into());
    for (flag, p) in [
        ("--vault", &a.vault),
        ("--config", &a.config),
        ("--key-file", &a.key.key_file),
    ] {
        if let Some(p) = p {
            v.push(flag.into());
            v.push(sudo::absolute(p).into());
        }
    }
    if let Some(u) = &a.user {
        v.push("--user".into());
        v.push(u.into());
    }
    if a.force {
        v.push("--force".into());
    }
    if a.batch_mode {
        v.push("--batch-mode".into());
    }
    if a.key.keyfile_offset != 0 {
        v.push("--keyfile-offset".into());
        v.push(a.key.keyfile_offset.to_string().into());
    }
    if let Some(n) = a.key.keyfile_size {
        v.push("--keyfile-size".into());
        v.push(n.to_string().into());
    }
    a.create.push_argv(&mut v);
    v
}

fn init_as_root(args: InitArgs, verbose: bool) -> Result<u8, CliError> {
    let caller = Caller::current()?;
    let files = caller::load_config(args.config.as_deref(), &caller)?;
    let flags = Flags {
        vault: args.vault.clone(),
        mount: None,
        user: args.user.as_deref().map(UserSpec::parse),
        shell: None,
        no_new_privs: false,
    };
    let settings = Settings::resolve(files, &flags);
    let user = caller::session_user(&caller, settings.user.as_ref(), || {
        Policy::load(Path::new(POLICY_FILE))
    })?;
    let vault = expand_home(&settings.vault, &user.home);
    let shown = vault.display().to_string();

    // Looked at, and for --force opened, with the caller's rights: only a vault the caller
    // may write is replaced.
    let existing = caller.with_rights(|| match std::fs::symlink_metadata(&vault) {
        Ok(m) => {
            if args.force {
                create::replaceable_by_caller(&vault, &m)?;
            }
            Ok(Some(m))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(
            CliError::new(code::DEVICE, format!("cannot look at {shown}: {e}")).hint(
                "the vault is looked at and created with the rights of the user who ran tazpod: \
             choose a --vault path that user can write; nothing was created",
            ),
        ),
    })?;
    let action = init_action(existing.is_some(), args.force, args.batch_mode);
    if action == InitAction::Refuse {
        return Err(exists_error(&vault));
    }
    let prepared = create::prepare(
        &vault,
        &args.create.options(),
        &args.key.source(),
        tty::stdin_is_tty(),
    )?;
    // Held until the new vault has replaced the old one: no session of the old one starts.
    let _old_lock = match &existing {
        Some(m) => Some(create::check_replaceable(&vault, m)?),
        None => None,
    };
    if action == (InitAction::Replace { confirm: true }) {
        write::confirm(&format!(
            "WARNING!\n========\nThis will replace the vault {shown} with a new, empty one: \
             its data will be lost irrevocably."
        ))?;
    }
    // Device-mapper and loop devices, before the passphrase or the KDF.
    crate::preflight::can_map(true)?;
    let pass = caller.with_rights(|| create::new_passphrase(&args.key.source(), &vault))?;
    let new = NewVault {
        image: ImageRequest {
            path: vault.clone(),
            size: prepared.size,
            owner: caller.rights().cloned(),
            replace: existing.is_some(),
        },
        format: FormatRequest {
            spec: &prepared.spec,
            passphrase: &pass,
            verbose,
        },
        mkfs: prepared.mkfs.clone(),
        root_owner: (user.uid, user.gid),
    };
    let mut host = RealHost::init();
    let result = create_vault(&mut host, &new, Path::new("/dev/mapper"));
    drop(pass);
    let warnings = match result {
        Ok(w) => w,
        Err(f) => {
            for e in &f.unwind_errors {
                eprintln!("tazpod: warning: could not {e}");
            }
            let hint = if f.unwind_errors.is_empty() {
                if existing.is_some() {
                    "nothing was left behind; the old vault is unchanged"
                } else {
                    "nothing was left behind"
                }
            } else {
                "some steps could not be undone (warnings above)"
            };
            return Err(match f.error {
                SetupError::Host(e) => {
                    let hint = match create::where_hint(&e) {
                        Some(h) => format!("{h}; {hint}"),
                        None => hint.to_string(),
                    };
                    let (code, step) = crate::error::host_failure(e);
                    CliError::new(code, format!("cannot create the vault {shown}: {step}"))
                        .hint(hint)
                }
                SetupError::Interrupted(sig) => CliError::new(
                    u8::try_from(128 + sig).unwrap_or(255),
                    format!("interrupted by signal {sig} while creating the vault {shown}"),
                )
                .hint(hint),
            });
        }
    };
    for e in &warnings {
        eprintln!("tazpod: warning: could not {e}");
    }
    let how = if args.vault.is_some() {
        format!("tazpod unlock --vault {shown}")
    } else {
        "tazpod unlock".to_string()
    };
    eprintln!(
        "tazpod: created the vault {shown}: {}, LUKS2 {}, ext4 for {}; `{how}` opens it",
        create::human_size(prepared.size),
        prepared.spec.cipher,
        user.name
    );
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
        i: InitArgs,
    }

    fn parse(args: &[&str]) -> Result<InitArgs, clap::Error> {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::try_parse_from(v).map(|t| t.i)
    }

    #[test]
    fn defaults_are_the_command_lines() {
        assert_eq!(
            parse(&[]).unwrap().create.options(),
            CreateOptions::default()
        );
        let c = parse(&[
            "--size",
            "64M",
            "--mkfs-ext4",
            "--pbkdf",
            "pbkdf2",
            "--hash",
            "sha512",
        ])
        .unwrap()
        .create
        .options();
        assert_eq!(c.size, 64 << 20);
        assert!(c.mkfs_ext4);
        assert_eq!(c.kdf.pbkdf, "pbkdf2");
        assert_eq!(c.kdf.hash, "sha512");
    }

    #[test]
    fn sizes_parse_like_cryptsetup_and_truncate() {
        assert_eq!(parse_vault_size("512M"), Ok(512 << 20));
        assert_eq!(parse_vault_size("512m"), Ok(512 << 20));
        assert_eq!(parse_vault_size("1G"), Ok(1 << 30));
        assert_eq!(parse_vault_size("2t"), Ok(2 << 40));
        assert_eq!(parse_vault_size("20480K"), Ok(20 << 20));
        assert_eq!(parse_vault_size("33554432"), Ok(32 << 20));
        for bad in [
            "",
            "0",
            "0M",
            "12X",
            "M",
            "-5M",
            "1.5G",
            "99999999999999999999G",
        ] {
            assert!(parse_vault_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse(&[]).unwrap().create.options().size, DEFAULT_SIZE);
        assert_eq!(
            parse(&["--size", "64M"]).unwrap().create.options().size,
            64 << 20
        );
        assert!(parse(&["--size", "lots"]).is_err());
    }

    #[test]
    fn root_argv_carries_the_options_and_no_secret() {
        let a = parse(&[
            "--vault",
            "/w/v.img",
            "--force",
            "-q",
            "--key-file",
            "/k",
            "--size",
            "64M",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--sudo-command",
            "doas",
        ])
        .unwrap();
        let v = init_root_argv(&a, Path::new("/usr/bin/tazpod"), false);
        let s: Vec<String> = v.iter().map(|x| x.to_string_lossy().into()).collect();
        assert_eq!(
            s,
            [
                "--",
                "/usr/bin/tazpod",
                "init",
                "--vault",
                "/w/v.img",
                "--key-file",
                "/k",
                "--force",
                "--batch-mode",
                "--size",
                "67108864",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000"
            ]
        );
        let back = parse(&s[3..].iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
        assert!(parse(&["--invoker", "0"]).is_err());
        assert_eq!(back.create.size, Some(64 << 20));
        assert_eq!(back.create.kdf.pbkdf, "pbkdf2");
        assert_eq!(back.create.kdf.hash, "sha256");
        assert!(back.force && back.batch_mode);
        // defaults are not repeated
        let plain = init_root_argv(&parse(&[]).unwrap(), Path::new("/t"), true);
        assert_eq!(plain.len(), 4);
    }

    #[test]
    fn force_replaces_only_after_confirmation_or_batch_mode() {
        assert_eq!(init_action(false, false, false), InitAction::Create);
        assert_eq!(init_action(false, true, true), InitAction::Create);
        assert_eq!(init_action(true, false, false), InitAction::Refuse);
        // --batch-mode alone never replaces
        assert_eq!(init_action(true, false, true), InitAction::Refuse);
        assert_eq!(
            init_action(true, true, false),
            InitAction::Replace { confirm: true }
        );
        assert_eq!(
            init_action(true, true, true),
            InitAction::Replace { confirm: false }
        );
    }
}
