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

pub mod error;
pub mod reader;
pub mod run;
pub mod tree;
pub mod walk;

pub use error::RootlessError;

use crate::config::{ConfigFile, DEFAULT_VAULT};
use crate::device;
use crate::passphrase::KeySource;
use crate::unlock::{HeaderRead, KeyRequest};
use ext4_view::Ext4;
use luks2::kdf::KdfLimits;
use luks2::volume::Decryptor;
use reader::{Stats, VaultReader};
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Once;

/// Which vault to open and how.
pub struct VaultSpec<'a> {
    /// The vault file as the caller gave it (`None`: the config's, else the default).
    pub vault: Option<&'a Path>,
    /// The detached header file, if the vault file holds only the encrypted data.
    pub header: Option<&'a Path>,
    /// Try only this keyslot.
    pub key_slot: Option<u32>,
    /// The KDF limits of the unlock.
    pub limits: KdfLimits,
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

/// The configuration (ghost mode's: `/etc/tazpod/config.toml`, then `explicit` or
/// `~/.config/tazpod/config.toml`).
pub fn load_config(explicit: Option<&Path>) -> Result<ConfigFile, RootlessError> {
    crate::ghost::caller::load_config(explicit, &crate::ghost::caller::Caller::root())
        .map_err(RootlessError::Config)
}

/// The vault path: `given`, else the config's `vault` (`~` is `$HOME`), else the default.
pub fn vault_file(given: Option<&Path>, config: &ConfigFile) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    match (&config.vault, std::env::var_os("HOME")) {
        (Some(p), Some(home)) => crate::config::expand_home(p, Path::new(&home)),
        (Some(p), None) => p.clone(),
        (None, _) => PathBuf::from(DEFAULT_VAULT),
    }
}

/// Opens the vault read-only (and the `--header` file, if any), asks for the passphrase,
/// recovers the volume key and loads the ext4 superblock and group descriptors. The volume key
/// itself is wiped before this returns: only the expanded cipher key schedule lives on, inside
/// the reader (wiped on drop).
///
/// The unlock pipeline's own errors (the data segment, the passphrase tries) come as it gives
/// them, in [`RootlessError::Unlock`].
pub fn open_vault(
    v: &VaultSpec,
    config: &ConfigFile,
    key: &KeySource,
    verbose: bool,
) -> Result<Vault, RootlessError> {
    let path = vault_file(v.vault, config);
    let mut f =
        device::ReadOnly::open_as(&path, "vault").map_err(|error| RootlessError::Vault {
            error,
            given: v.vault.is_some(),
        })?;
    let name = f.name.clone();
    // With a detached header, the header and keyslots come from that file; the vault file is
    // only the data segment's device.
    let mut detached = match v.header {
        Some(h) => {
            Some(device::ReadOnly::open_as(h, "header file").map_err(RootlessError::Device)?)
        }
        None => None,
    };
    let hdr_name = detached
        .as_ref()
        .map_or_else(|| name.clone(), |h| h.name.clone());
    let src = detached.as_mut().unwrap_or(&mut f);
    src.lock_shared().map_err(RootlessError::Device)?;
    let header = luks2::read_header(src).map_err(|error| RootlessError::Header {
        device: hdr_name.clone(),
        error,
        detached: v.header.is_some(),
    })?;
    let mut read = HeaderRead::of(header, &hdr_name);
    let seg = read.need_segment()?.clone();
    let size = f.size().map_err(RootlessError::Device)?;
    let luks = |device: &str| {
        let device = device.to_string();
        move |error| RootlessError::Luks { device, error }
    };
    let len = seg.length_on(size).map_err(luks(&name))?;
    let req = KeyRequest {
        key,
        keyslot: v.key_slot,
        limits: v.limits,
        verbose,
    };
    let unlocked = read.unlock(detached.as_mut().unwrap_or(&mut f), &req)?;
    let dec = Decryptor::new(seg, &unlocked.volume_key).map_err(luks(&hdr_name))?;
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

/// Runs `f`, turning any panic inside it (in the ext4 reader, on data nobody foresaw) into
/// [`RootlessError::Panic`], which names the vault and where the panic happened, without the
/// default panic report. Defence in depth: no panic is known.
pub fn guarded<T, E>(vault: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, RootlessError>
where
    RootlessError: From<E>,
{
    install_panic_hook();
    GUARDS.with(|g| g.set(g.get() + 1));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDS.with(|g| g.set(g.get().saturating_sub(1)));
    match r {
        Ok(r) => r.map_err(RootlessError::from),
        Err(_) => Err(RootlessError::Panic {
            vault: vault.to_string(),
            note: PANIC_NOTE
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "no detail".into()),
        }),
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
    use super::error::PANIC_STOP;
    use super::*;
    use crate::error::{code, CliError};

    #[test]
    fn paths_are_made_absolute() {
        assert_eq!(vault_path("a/b".as_ref()), b"/a/b");
        assert_eq!(vault_path("/a".as_ref()), b"/a");
        assert_eq!(vault_path("".as_ref()), b"/");
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let r: Result<(), RootlessError> =
            guarded("v.img", || -> Result<(), RootlessError> { panic!("boom") });
        let e = CliError::from(r.unwrap_err());
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
        let r: Result<(), RootlessError> = guarded("v.img", || {
            let v: Vec<u8> = Vec::new();
            let i = v.len() + 3;
            Err(RootlessError::RepeatedVariable(format!("{}", v[i])))
        });
        let e = CliError::from(r.unwrap_err());
        assert_eq!(e.code, code::INVALID);
        assert!(e.message.contains("index out of bounds"), "{}", e.message);
        // The previous hook is back, and a normal result passes through.
        assert_eq!(guarded("v", || Ok::<_, RootlessError>(3)).unwrap(), 3);
    }
}
