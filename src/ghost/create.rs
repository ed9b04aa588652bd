//! Creating a vault: `tazpod init`, and `tazpod unlock` of a vault that does not exist yet
//! (TazPod's first unlock).
//!
//! Everything that can refuse is checked before anything is created or a passphrase is
//! asked for: the size, where the new passphrase comes from (asked twice on a terminal, or a
//! key file; never a line of a pipe), `mkfs.ext4` when `--mkfs-ext4` asks for it (else
//! tazpod's own formatter makes the filesystem: no external tool), and for
//! `init --force` that the old vault is in no session and attached to no loop device. Then
//! the passphrase, then the steps of [`super::session`] behind the host: the image is made as a
//! sparse file under a temporary name next to the vault, gets a LUKS2 header from the writer
//! (`tazpod format`'s defaults and code), is mapped, gets its ext4 filesystem (root directory
//! owned by the session user), and is moved to its path only when complete. A failure at any
//! step removes the image and undoes the mapping; the vault path never holds a half-made
//! vault, and `init --force` leaves the old vault in place until the new one replaces it.

use super::caller::{Caller, Policy, POLICY_FILE};
use super::host::{FormatRequest, HostError, ImageRequest};
use super::lock::{self, Acquired, SessionLock, RUNTIME_DIR};
use super::real::RealHost;
use super::session::{create_vault, Mkfs, NewVault, SetupError};
use crate::cli::write::KdfArgs;
use crate::config::{expand_home, Flags, Settings, UserSpec};
use crate::error::{code, CliError};
use crate::kernel::tty;
use crate::kernel::{loopdev, privs};
use crate::passphrase::KeyArgs;
use crate::write::{self, FormatOptions, HeaderSpec, KdfOptions};
use luks2::Passphrase;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Size of a new vault (TazPod's).
pub const DEFAULT_SIZE: u64 = 512 << 20;
/// The smallest filesystem a new vault gets (after the LUKS2 header).
pub const MIN_FS_SIZE: u64 = 1 << 20;
/// The only directories `mkfs.ext4` is taken from: fixed system directories, never `PATH`
/// (root runs it).
pub const SBIN_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

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
    /// The size of a new vault.
    pub fn size(&self) -> u64 {
        self.size.unwrap_or(DEFAULT_SIZE)
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

        let d = KdfArgs::default();
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

/// `n` bytes for people: whole GiB, MiB or KiB when exact, else bytes.
pub fn human_size(n: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// Whether a vault of `size` bytes fits a header ending at `data_offset` and a filesystem.
pub fn check_size(size: u64, data_offset: u64) -> Result<(), CliError> {
    if size % 4096 != 0 {
        return Err(CliError::new(
            code::INVALID,
            format!("--size {size}: a vault's size must be a multiple of 4096 bytes"),
        )
        .hint("give it in K, M or G, such as 512M"));
    }
    let min = data_offset.saturating_add(MIN_FS_SIZE);
    if size < min {
        return Err(CliError::new(
            code::INVALID,
            format!(
                "--size {}: too small; a vault needs at least {} ({} of LUKS2 header, {} of filesystem)",
                human_size(size),
                human_size(min),
                human_size(data_offset),
                human_size(MIN_FS_SIZE)
            ),
        ));
    }
    Ok(())
}

/// The first of `PATH`'s directories (absolute ones only), then `extra`, holding `name` as
/// something `usable` accepts.
pub fn find_tool(
    name: &str,
    path: Option<&OsStr>,
    extra: &[&str],
    usable: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let from_path = path
        .map(|p| {
            p.as_bytes()
                .split(|b| *b == b':')
                .map(|d| PathBuf::from(OsStr::from_bytes(d)))
                .filter(|d| d.is_absolute())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| usable(p))
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `mkfs.ext4`, from the fixed system directories only ([`SBIN_DIRS`]).
pub fn find_mkfs() -> Result<PathBuf, CliError> {
    find_tool("mkfs.ext4", None, &SBIN_DIRS, executable).ok_or_else(|| {
        CliError::new(
            code::INVALID,
            "mkfs.ext4 not found (searched /usr/sbin, /sbin, /usr/bin, /bin): creating a vault \
             needs it for the vault's ext4 filesystem",
        )
        .hint(
            "install e2fsprogs (apt-get install e2fsprogs, dnf install e2fsprogs, apk add \
             e2fsprogs); nothing was created",
        )
    })
}

/// What to do when the image could not be made where the vault goes.
pub fn where_hint(e: &HostError) -> Option<&'static str> {
    (e.op == "create" && e.source.kind() == io::ErrorKind::PermissionDenied).then_some(
        "the image is created with the rights of the user who ran tazpod: choose a --vault \
         path that user can write, or make its directory writable for them",
    )
}

/// What creating a vault needs, all checked before anything is created.
pub struct Prepared {
    /// The header's options (`tazpod format`'s defaults with the KDF options given).
    pub spec: HeaderSpec,
    /// How the filesystem is made.
    pub mkfs: Mkfs,
    /// The image size.
    pub size: u64,
}

/// Checks, before anything is created: where the new passphrase comes from, the header
/// options, the size, and `mkfs.ext4` when `--mkfs-ext4` asks for it.
pub fn prepare(
    vault: &Path,
    create: &CreateArgs,
    key: &KeyArgs,
    stdin_tty: bool,
) -> Result<Prepared, CliError> {
    let shown = vault.display();
    if key.key_file.is_none() && !stdin_tty {
        return Err(CliError::new(
            code::INVALID,
            format!(
                "{shown} does not exist, and a new vault's passphrase is asked twice on a \
                 terminal: standard input is not one"
            ),
        )
        .hint(
            "run it on a terminal, or give the new vault's key with --key-file FILE \
             (--key-file - reads it from standard input); nothing was created",
        ));
    }
    let spec = write::header_spec(&FormatOptions {
        kdf: KdfOptions::from(&create.kdf),
        ..FormatOptions::default()
    })?;
    let size = create.size();
    check_size(size, spec.layout.data_offset)?;
    let mkfs = if create.mkfs_ext4 {
        Mkfs::Tool(find_mkfs()?)
    } else {
        Mkfs::Builtin
    };
    Ok(Prepared { spec, mkfs, size })
}

/// The new vault's passphrase: the key file, or asked twice on the terminal ("Verify
/// passphrase:"; a mismatch exits 2 as in cryptsetup). [`prepare`] refused the other cases.
pub fn new_passphrase(key: &KeyArgs, vault: &Path) -> Result<Passphrase, CliError> {
    let shown = vault.display().to_string();
    if key.key_file.is_none() && !tty::stdin_is_tty() {
        return Err(CliError::new(
            code::INVALID,
            "standard input is not a terminal: cannot ask for the new passphrase twice",
        ));
    }
    Ok(write::new_passphrase(None, Some(key), &shown)?)
}

/// Whether the caller (whose filesystem rights are active) may replace `vault`: a regular
/// file, not a symbolic link, that they can open for writing.
fn replaceable_by_caller(vault: &Path, meta: &std::fs::Metadata) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = vault.display();
    if !meta.file_type().is_file() {
        return Err(CliError::new(
            code::INVALID,
            format!("{shown} is not a regular file; tazpod init replaces only vault image files"),
        ));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(vault)
        .map(drop)
        .map_err(|e| {
            CliError::new(
                code::PERMISSION,
                format!("cannot replace {shown}: {e}; nothing was changed"),
            )
            .hint("tazpod init --force replaces only a vault the user who runs it may write")
        })
}

/// An existing vault `init --force` may replace: a regular file, unlocked in no session
/// (its session lock is returned, held, so that none starts while it is replaced), attached to
/// no loop device.
pub fn check_replaceable(vault: &Path, meta: &std::fs::Metadata) -> Result<SessionLock, CliError> {
    let shown = vault.display();
    if !meta.file_type().is_file() {
        return Err(CliError::new(
            code::INVALID,
            format!("{shown} is not a regular file; tazpod init replaces only vault image files"),
        ));
    }
    let runtime = Path::new(RUNTIME_DIR);
    let lock_err = |e: io::Error| {
        CliError::new(
            code::BUSY,
            format!("cannot take the session lock in {RUNTIME_DIR}: {e}"),
        )
    };
    lock::ensure_runtime_dir(runtime).map_err(lock_err)?;
    let held = match lock::acquire(runtime, &lock::vault_id(meta), lock::find_ns_member)
        .map_err(lock_err)?
    {
        Acquired::Holder(l) => l,
        Acquired::Joiner { record, pid, .. } => {
            return Err(CliError::new(
                code::BUSY,
                format!(
                    "{shown} is unlocked in a ghost session (process {pid}, mounted at {}); it \
                     cannot be replaced now",
                    record.mount
                ),
            )
            .hint(
                "exit the session's shells (or `tazpod lock` in it) first; nothing was changed",
            ));
        }
    };
    let loops = loopdev::attached_to(meta.dev(), meta.ino());
    if !loops.is_empty() {
        let names: Vec<String> = loops.iter().map(|l| l.display().to_string()).collect();
        return Err(CliError::new(
            code::BUSY,
            format!("{shown} is in use: attached to {}", names.join(", ")),
        )
        .hint("close what maps it (`tazpod close NAME`, `cryptsetup close NAME`) first; nothing was changed"));
    }
    Ok(held)
}

// ---------------------------------------------------------------------------------------------
// init

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
            let v = super::sudo::absolute(v);
            let exists = std::fs::symlink_metadata(&v).is_ok();
            if init_action(exists, args.force, args.batch_mode) == InitAction::Refuse {
                return Err(exists_error(&v));
            }
            prepare(&v, &args.create, &args.key, tty::stdin_is_tty())?;
        }
        let exe = super::sudo::current_exe()?;
        let argv = init_root_argv(&args, &exe, verbose);
        return Err(super::sudo::exec_as_root(&args.sudo_command, &argv, "init").into());
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
            v.push(super::sudo::absolute(p).into());
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
    let files = super::caller::load_config(args.config.as_deref(), &caller)?;
    let flags = Flags {
        vault: args.vault.clone(),
        mount: None,
        user: args.user.as_deref().map(UserSpec::parse),
        shell: None,
        no_new_privs: false,
    };
    let settings = Settings::resolve(files, &flags);
    let user = super::caller::session_user(&caller, settings.user.as_ref(), || {
        Policy::load(Path::new(POLICY_FILE))
    })?;
    let vault = expand_home(&settings.vault, &user.home);
    let shown = vault.display().to_string();

    // Looked at, and for --force opened, with the caller's rights: only a vault the caller
    // may write is replaced.
    let existing = caller.with_rights(|| match std::fs::symlink_metadata(&vault) {
        Ok(m) => {
            if args.force {
                replaceable_by_caller(&vault, &m)?;
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
    let prepared = prepare(&vault, &args.create, &args.key, tty::stdin_is_tty())?;
    // Held until the new vault has replaced the old one: no session of the old one starts.
    let _old_lock = match &existing {
        Some(m) => Some(check_replaceable(&vault, m)?),
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
    let pass = caller.with_rights(|| new_passphrase(&args.key, &vault))?;
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
                SetupError::Host(e) => CliError::new(
                    e.exit_code(),
                    format!("cannot create the vault {shown}: {e}"),
                )
                .hint(match where_hint(&e) {
                    Some(h) => format!("{h}; {hint}"),
                    None => hint.to_string(),
                }),
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
        human_size(prepared.size),
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
        assert_eq!(parse(&[]).unwrap().create.size(), DEFAULT_SIZE);
        assert_eq!(parse(&["--size", "64M"]).unwrap().create.size(), 64 << 20);
        assert!(parse(&["--size", "lots"]).is_err());
    }

    #[test]
    fn size_must_hold_the_header_and_a_filesystem() {
        let off = 16 << 20;
        assert!(check_size(512 << 20, off).is_ok());
        assert!(check_size(17 << 20, off).is_ok());
        let e = check_size(16 << 20, off).unwrap_err();
        assert_eq!(e.code, code::INVALID);
        assert!(e.message.contains("at least 17 MiB"), "{}", e.message);
        let e = check_size((32 << 20) + 512, off).unwrap_err();
        assert!(e.message.contains("multiple of 4096"), "{}", e.message);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(512 << 20), "512 MiB");
        assert_eq!(human_size(1 << 30), "1 GiB");
        assert_eq!(human_size(1536 << 20), "1536 MiB");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1000), "1000 bytes");
    }

    #[test]
    fn mkfs_is_searched_in_path_then_sbin() {
        let have =
            |set: &'static [&'static str]| move |p: &Path| set.iter().any(|s| Path::new(s) == p);
        let path = OsStr::new("/home/u/bin:relative:/usr/bin");
        assert_eq!(
            find_tool(
                "mkfs.ext4",
                Some(path),
                &SBIN_DIRS,
                have(&["/usr/bin/mkfs.ext4", "/sbin/mkfs.ext4"])
            ),
            Some(PathBuf::from("/usr/bin/mkfs.ext4"))
        );
        // not in PATH (sudo's secure_path, su): the sbin directories
        assert_eq!(
            find_tool(
                "mkfs.ext4",
                Some(OsStr::new("/bin")),
                &SBIN_DIRS,
                have(&["/sbin/mkfs.ext4"])
            ),
            Some(PathBuf::from("/sbin/mkfs.ext4"))
        );
        // a relative PATH entry is never used
        assert_eq!(
            find_tool(
                "mkfs.ext4",
                Some(OsStr::new("relative")),
                &[],
                have(&["relative/mkfs.ext4"])
            ),
            None
        );
        assert_eq!(find_tool("mkfs.ext4", None, &SBIN_DIRS, have(&[])), None);
    }

    #[test]
    fn a_new_passphrase_is_never_read_from_a_pipe() {
        let create = parse(&[]).unwrap().create;
        let key = parse(&[]).unwrap().key;
        let e = prepare(Path::new("/x/vault.img"), &create, &key, false)
            .err()
            .unwrap();
        assert_eq!(e.code, code::INVALID);
        assert!(e.message.contains("asked twice"), "{}", e.message);
        assert!(e.hint.unwrap().contains("--key-file"));
        // with a key file, or on a terminal, the checks go on
        let key = parse(&["--key-file", "/k"]).unwrap().key;
        let r = prepare(Path::new("/x/vault.img"), &create, &key, false);
        if let Err(e) = r {
            // only a missing mkfs.ext4 may stop it on this machine
            assert!(e.message.contains("mkfs.ext4"), "{}", e.message);
        }
        let small = parse(&["--size", "8M"]).unwrap().create;
        let e = prepare(Path::new("/x/v"), &small, &key, true)
            .err()
            .unwrap();
        assert!(e.message.contains("too small"), "{}", e.message);
        let bad = parse(&["--pbkdf", "scrypt"]).unwrap().create;
        assert!(prepare(Path::new("/x/v"), &bad, &key, true).is_err());
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

    #[test]
    fn replacing_refuses_what_is_not_a_file() {
        let d = tempfile::tempdir().unwrap();
        let m = std::fs::metadata(d.path()).unwrap();
        let e = check_replaceable(d.path(), &m).err().unwrap();
        assert_eq!(e.code, code::INVALID);
        assert!(e.message.contains("not a regular file"));
    }

    #[test]
    fn only_a_file_the_caller_may_write_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("v.img");
        std::fs::write(&f, b"x").unwrap();
        let m = std::fs::symlink_metadata(&f).unwrap();
        assert!(replaceable_by_caller(&f, &m).is_ok());
        let l = d.path().join("link");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        let m = std::fs::symlink_metadata(&l).unwrap();
        assert!(replaceable_by_caller(&l, &m).is_err());
    }

    #[test]
    fn mkfs_is_looked_up_in_fixed_system_directories_only() {
        assert_eq!(SBIN_DIRS, ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
        // PATH plays no part: a planted mkfs.ext4 in a PATH directory is never found
        let d = tempfile::tempdir().unwrap();
        let planted = d.path().join("mkfs.ext4");
        std::fs::write(&planted, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Ok(found) = find_mkfs() {
            assert!(
                SBIN_DIRS.iter().any(|dir| found.starts_with(dir)),
                "{found:?}"
            );
            assert_ne!(found, planted);
        }
    }
}
