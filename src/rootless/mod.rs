//! Rootless vault access: `ls`, `cat` and `run` read the vault's ext4 filesystem in-process.
//!
//! No device-mapper, loop device, mount or capability is involved: the vault file is opened
//! read-only, the volume key is recovered in userspace, and the ext4 filesystem in the data
//! segment is read by `ext4-view` (a pure-Rust, read-only ext4 reader) through a
//! [`reader::VaultReader`] that decrypts only the sectors the walk asks for. The plaintext
//! exists only in this process's memory: for `cat` on its way to standard output, for `run`
//! in the environment or the memfds handed to the command.
//!
//! Every walk of the filesystem runs under [`guarded`]: the ext4 reader reports corrupt data
//! as errors (the vendored copy in `third_party/ext4-view/` has no known panic left, see its
//! `PATCHES.md`), and should it panic on some input nobody foresaw, the panic becomes a clear
//! error too, never a crash report. This is defence in depth: the tests and the `ext4` fuzz
//! target treat any panic as a bug.

pub mod reader;
mod run;
pub mod tree;
mod walk;

pub use run::{run, RunArgs};
pub use tree::{fs_error, shown};
pub use walk::{cat, ls, CatArgs, LsArgs};

use crate::cli::args::LimitArgs;
use crate::config::{ConfigFile, DEFAULT_VAULT};
use crate::device;
use crate::error::{code, CliError};
use crate::passphrase::KeyArgs;
use crate::unlock::KeyRequest;
use ext4_view::Ext4;
use luks2::volume::Decryptor;
use reader::{Stats, VaultReader};
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Once;

/// The options that say which vault to open and how.
#[derive(clap::Args, Debug, Clone)]
pub struct VaultArgs {
    /// The vault image, a LUKS file holding ext4 [default: the config's, else /workspace/.tazpod-vault/vault.img]
    #[arg(long, value_name = "FILE")]
    pub vault: Option<PathBuf>,
    /// Read FILE instead of ~/.config/tazpod/config.toml (after /etc/tazpod/config.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read the LUKS header (and keyslots) from FILE; the vault file holds only the encrypted
    /// data (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    /// Try only this keyslot
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// An unlocked vault whose filesystem is ready to read.
pub struct Vault {
    /// The filesystem (it owns the decrypting reader and, through it, the vault file).
    pub fs: Ext4,
    /// The vault path as the user gave it, for messages.
    pub name: String,
    /// What the decrypting reader did so far.
    pub stats: Rc<Cell<Stats>>,
    /// Bytes of the filesystem (the data segment).
    pub len: u64,
}

/// The largest Argon2 memory (KiB) an unlock with these options accepts.
pub fn max_kdf_memory_kib(v: &VaultArgs) -> u64 {
    v.limits.limits().max_memory_kib
}

/// The configuration (ghost mode's: `/etc/tazpod/config.toml`, then `--config FILE` or
/// `~/.config/tazpod/config.toml`), read when `always` or when it decides something: the
/// vault when `--vault` is absent, or an explicit `--config`.
pub fn load_config(v: &VaultArgs, always: bool) -> Result<ConfigFile, CliError> {
    if always || v.vault.is_none() || v.config.is_some() {
        crate::ghost::caller::load_config(
            v.config.as_deref(),
            &crate::ghost::caller::Caller::root(),
        )
    } else {
        Ok(ConfigFile::default())
    }
}

/// The vault path: `--vault`, else the config's `vault` (`~` is `$HOME`), else the default.
pub fn vault_file(v: &VaultArgs, config: &ConfigFile) -> PathBuf {
    if let Some(p) = &v.vault {
        return p.clone();
    }
    match (&config.vault, std::env::var_os("HOME")) {
        (Some(p), Some(home)) => crate::config::expand_home(p, std::path::Path::new(&home)),
        (Some(p), None) => p.clone(),
        (None, _) => PathBuf::from(DEFAULT_VAULT),
    }
}

/// Opens the vault read-only (and the `--header` file, if any), asks for the passphrase,
/// recovers the volume key and loads the ext4 superblock and group descriptors. The volume key
/// itself is wiped before this returns: only the expanded cipher key schedule lives on, inside
/// the reader (wiped on drop).
pub fn open_vault(
    v: &VaultArgs,
    config: &ConfigFile,
    key: &KeyArgs,
    verbose: bool,
) -> Result<Vault, CliError> {
    let path = vault_file(v, config);
    let mut f = device::ReadOnly::open_as(&path, "vault").map_err(|e| {
        let mut e = CliError::from(e);
        if v.vault.is_none() {
            e.hint = Some("pass --vault FILE, or set `vault` in the config".into());
        }
        e
    })?;
    let name = f.name.clone();
    // With a detached header, the header and keyslots come from that file; the vault file is
    // only the data segment's device.
    let mut detached = match &v.header {
        Some(h) => Some(device::ReadOnly::open_as(h, "header file")?),
        None => None,
    };
    let hdr_name = detached
        .as_ref()
        .map_or_else(|| name.clone(), |h| h.name.clone());
    detached.as_mut().unwrap_or(&mut f).lock_shared()?;
    let mut read = crate::unlock::read_header(detached.as_mut().unwrap_or(&mut f), &hdr_name)
        .map_err(|mut e| {
            if v.header.is_none() {
                e.hint = Some(
                    "check that this is the vault; if its header is kept apart, give it \
                         with --header FILE"
                        .into(),
                );
            }
            e
        })?;
    let seg = read.need_segment()?.clone();
    let size = f.size()?;
    let len = seg.length_on(size).map_err(|e| CliError::luks(&name, e))?;
    let req = KeyRequest {
        key,
        keyslot: v.key_slot,
        limits: v.limits.limits(),
        verbose,
    };
    let unlocked = read.unlock(detached.as_mut().unwrap_or(&mut f), &req)?;
    let dec =
        Decryptor::new(seg, &unlocked.volume_key).map_err(|e| CliError::luks(&hdr_name, e))?;
    drop(unlocked);
    detached.as_mut().unwrap_or(&mut f).release_lock();
    drop(detached);
    let reader = VaultReader::new(f, dec, len);
    let stats = reader.stats();
    let fs = guarded(&name, || tree::load(Box::new(reader), &name, len))?;
    Ok(Vault {
        fs,
        name,
        stats,
        len,
    })
}

thread_local! {
    /// How many [`guarded`] calls are running on this thread.
    static GUARDS: Cell<u32> = const { Cell::new(0) };
    /// Where and why the last guarded panic of this thread happened.
    static PANIC_NOTE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that, inside [`guarded`], records the panic
/// instead of printing it, and otherwise defers to the hook that was there before.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDS.with(Cell::get) > 0 {
                let payload = info.payload();
                let what = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("no message");
                let note = match info.location() {
                    Some(l) => {
                        // The crate and file, not the whole registry path.
                        let parts: Vec<&str> = l.file().rsplitn(4, '/').take(3).collect();
                        let file: Vec<&str> = parts.into_iter().rev().collect();
                        format!("{what}, at {}:{}", file.join("/"), l.line())
                    }
                    None => what.to_string(),
                };
                PANIC_NOTE.with(|p| *p.borrow_mut() = Some(note));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning any panic inside it (in the ext4 reader, on data nobody foresaw) into an
/// error that names the vault and where the panic happened, without the default panic report:
/// exit code 1 ([`code::INVALID`]), as for a corrupt filesystem, with a hint to check the
/// filesystem and to report a bug if it is sound. Defence in depth: no panic is known.
pub fn guarded<T>(vault: &str, f: impl FnOnce() -> Result<T, CliError>) -> Result<T, CliError> {
    install_panic_hook();
    GUARDS.with(|g| g.set(g.get() + 1));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDS.with(|g| g.set(g.get().saturating_sub(1)));
    r.unwrap_or_else(|_| {
        let note = PANIC_NOTE
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "no detail".into());
        Err(CliError::new(
            code::INVALID,
            format!(
                "{vault}: {PANIC_STOP} (a panic: {note}); the filesystem in the vault is \
                 probably corrupt"
            ),
        )
        .hint(format!(
            "{}; if e2fsck finds nothing wrong, this is a bug in tazpod's ext4 reader: \
             please report it with this message",
            tree::corrupt_hint()
        )))
    })
}

/// How [`guarded`]'s error starts (after the vault's name); the tests look for it to make sure
/// that no walk panicked.
pub const PANIC_STOP: &str = "the ext4 reader stopped on data it did not expect";

/// For `--verbose`, once the vault (and with it the ext4 reader and its caches) is dropped:
/// how much freed memory was zeroed.
pub fn report_wiped() {
    if crate::alloc::ALLOC.wiping() {
        eprintln!(
            "Zeroed {} bytes of freed memory (the ext4 reader's caches and buffers among them).",
            crate::alloc::ALLOC.wiped_bytes()
        );
    } else {
        eprintln!("Freed memory is not being zeroed.");
    }
}

/// A path of the vault as the user typed it: absolute (relative paths start at the vault's
/// root), as bytes.
pub fn vault_path(p: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len() + 1);
    if b.first() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(b);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute() {
        assert_eq!(vault_path("a/b".as_ref()), b"/a/b");
        assert_eq!(vault_path("/a".as_ref()), b"/a");
        assert_eq!(vault_path("".as_ref()), b"/");
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let r: Result<(), CliError> = guarded("v.img", || panic!("boom"));
        let e = r.unwrap_err();
        assert_eq!(e.code, code::INVALID);
        assert!(
            e.message
                .starts_with(&format!("v.img: {PANIC_STOP} (a panic: boom, at ")),
            "{}",
            e.message
        );
        assert!(e.message.contains("src/rootless/mod.rs:"), "{}", e.message);
        assert!(e.message.ends_with("probably corrupt"), "{}", e.message);
        let hint = e.hint.as_deref().unwrap();
        assert!(hint.contains("e2fsck -fn"), "{hint}");
        assert!(hint.contains("please report it"), "{hint}");
        // Any panic, wherever it happens, the same way.
        let r: Result<(), CliError> = guarded("v.img", || {
            let v: Vec<u8> = Vec::new();
            let i = v.len() + 3;
            Err(CliError::new(code::OK, format!("{}", v[i])))
        });
        let e = r.unwrap_err();
        assert_eq!(e.code, code::INVALID);
        assert!(e.message.contains("index out of bounds"), "{}", e.message);
        // The previous hook is back, and a normal result passes through.
        assert_eq!(guarded("v", || Ok(3)).unwrap(), 3);
    }
}
