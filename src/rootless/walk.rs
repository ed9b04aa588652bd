//! `tazpod ls` and `tazpod cat`: listing and streaming files of the vault's filesystem (the
//! filesystem work itself is in [`super::tree`]).

use super::tree::{
    is_quiet, max_dirs, stream, write_error, Format, Lister, CAT_CHUNK, WRITE_FAILED,
};
use super::{fs_error, guarded, load_config, open_vault, vault_path, VaultArgs};
use crate::error::{code, CliError};
use crate::passphrase::KeyArgs;
use luks2::SecretBuf;
use std::ffi::OsString;
use std::io::{self, Write};

/// `tazpod ls`.
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub vault: VaultArgs,
    /// Show type and permissions, owner, group, size, and symlink targets
    #[arg(long)]
    long: bool,
    /// List subdirectories too, as paths relative to PATH (symlinks are not followed)
    #[arg(short = 'R', long)]
    recursive: bool,
    /// End each entry with a NUL byte instead of a newline (for names with newlines)
    #[arg(short = 'z', long)]
    zero: bool,
    #[command(flatten)]
    key: KeyArgs,
    /// The directory (or file) of the vault to list; relative paths start at its root
    #[arg(default_value = "/")]
    path: OsString,
}

/// `tazpod cat`.
#[derive(clap::Args, Debug)]
pub struct CatArgs {
    #[command(flatten)]
    pub vault: VaultArgs,
    #[command(flatten)]
    key: KeyArgs,
    /// Files of the vault to write to standard output, in order (symlinks are followed)
    #[arg(required = true)]
    paths: Vec<OsString>,
}

/// Lists `a.path` of the vault.
pub fn ls(a: LsArgs, verbose: bool) -> Result<(), CliError> {
    let path = vault_path(&a.path);
    let config = load_config(&a.vault, false)?;
    let vault = open_vault(&a.vault, &config, &a.key, verbose)?;
    let fmt = Format {
        long: a.long,
        end: if a.zero { 0 } else { b'\n' },
    };
    let name = vault.name.clone();
    let out = io::stdout();
    let mut out = io::BufWriter::new(out.lock());
    let r = guarded(&name, || {
        let meta = vault
            .fs
            .metadata(path.as_slice())
            .map_err(|e| fs_error(&name, Some(&path), e))?;
        if meta.is_dir() {
            let mut lister = Lister {
                fs: &vault.fs,
                vault: &name,
                fmt,
                out: &mut out,
                dirs_left: max_dirs(vault.len),
                found: None,
            };
            lister.dir(&path, b"", a.recursive, 0)
        } else {
            // A file: print it as given, as ls does.
            let shown_name = a.path.as_encoded_bytes().to_vec();
            let lmeta = vault
                .fs
                .symlink_metadata(path.as_slice())
                .map_err(|e| fs_error(&name, Some(&path), e))?;
            let mut lister = Lister {
                fs: &vault.fs,
                vault: &name,
                fmt,
                out: &mut out,
                dirs_left: 0,
                found: None,
            };
            lister.entry(&path, &shown_name, &lmeta)
        }
    });
    let flushed = out.flush().map_err(write_error);
    if verbose {
        report(&vault);
    }
    drop(vault);
    if verbose {
        super::report_wiped();
    }
    match (r, flushed) {
        (Err(mut e), _) | (Ok(()), Err(mut e)) if !is_quiet(&e) => {
            if e.code == WRITE_FAILED {
                e.code = code::INVALID;
            }
            Err(e)
        }
        _ => Ok(()),
    }
}

/// Streams the files `a.paths` of the vault to standard output. As cat does, a file that
/// cannot be read is reported and the next one is tried; the last failure is returned (and
/// sets the exit code). A write error stops at once; a closed pipe stops quietly.
pub fn cat(a: CatArgs, verbose: bool) -> Result<(), CliError> {
    let config = load_config(&a.vault, false)?;
    let vault = open_vault(&a.vault, &config, &a.key, verbose)?;
    let name = vault.name.clone();
    let out = io::stdout();
    let mut out = out.lock();
    let mut buf = SecretBuf::zeroed(CAT_CHUNK);
    let mut last: Option<CliError> = None;
    for p in &a.paths {
        let path = vault_path(p);
        match guarded(&name, || {
            stream(&vault.fs, &name, &path, &mut buf, &mut out, u64::MAX)
        }) {
            Ok(_) => {}
            Err(e) if is_quiet(&e) => break,
            Err(e) => {
                let fatal = e.code == WRITE_FAILED;
                if let Some(prev) = last.replace(e) {
                    eprintln!("{prev}");
                }
                if fatal {
                    break;
                }
            }
        }
    }
    if verbose {
        report(&vault);
    }
    drop(vault);
    if verbose {
        super::report_wiped();
    }
    match last {
        None => Ok(()),
        Some(mut e) => {
            if e.code == WRITE_FAILED {
                e.code = code::INVALID;
            }
            Err(e)
        }
    }
}

/// The reader's counters, for `--verbose`.
fn report(vault: &super::Vault) {
    let s = vault.stats.get();
    eprintln!(
        "Read {} bytes of plaintext in {} reads: {} sectors decrypted, {} from the cache.",
        s.bytes, s.reads, s.sectors_decrypted, s.cache_hits
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::super::tree::{load, walk_all, KNOWN_EXT4_VIEW_PANIC};
    use super::*;
    use luks2::unlock::{unlock, UnlockOptions};
    use luks2::volume::{DataSegment, Decryptor};
    use std::panic::{self, AssertUnwindSafe};

    /// The plaintext filesystem of a fixture vault (decrypted with the library).
    fn plaintext(vault: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/rootless/{vault}", env!("CARGO_MANIFEST_DIR"));
        let mut f = std::fs::File::open(path).unwrap();
        let header = luks2::read_header(&mut f).unwrap();
        let u = unlock(&header, &mut f, b"rootless-test", &UnlockOptions::default()).unwrap();
        let dec = Decryptor::new(DataSegment::of(&header).unwrap(), &u.volume_key).unwrap();
        let size = f.metadata().unwrap().len();
        let mut out = Vec::new();
        dec.copy(&mut f, size, &mut out).unwrap();
        out
    }

    /// Everything `ls -R --long`, `cat` and `run` do, on an in-memory image: Ok(entries
    /// listed) or the first error (files that fail to stream are counted, not fatal).
    fn walk_everything(img: Vec<u8>) -> Result<usize, CliError> {
        let len = img.len() as u64;
        let fs = load(Box::new(img), "v", len)?;
        let dirs = max_dirs(len);
        walk_all(&fs, "v", dirs, u64::MAX).map(|s| s.entries)
    }

    /// A panic the guard caught must be the known one of `ext4-view` (the guard's note names
    /// the crate, file and line); any other is a bug to look at.
    fn assert_known_panic_only(message: &str) {
        if message.contains("the ext4 reader stopped") {
            let (file, line) = KNOWN_EXT4_VIEW_PANIC;
            assert!(
                message.contains(&format!("{file}:{line}")),
                "a panic at a new place: {message}"
            );
        }
    }

    /// Corrupts every used filesystem block of two fixtures in turn (zeros, then noise) and
    /// walks everything under [`guarded`]: each walk succeeds or fails with an error (never an
    /// uncaught panic, nor an endless loop). `ext4-view` 1.0.0 itself can panic on a corrupt
    /// htree node (`dir_block.rs:134`, an unchecked entry count); the guard turns that into an
    /// error too, and the sweep prints where.
    #[test]
    fn corrupting_any_used_block_gives_errors() {
        sweep(false);
    }

    /// Noise over each block of the htree directory `/many` (its extent block, the htree root,
    /// the leaves): listing it fails with a clear error every time. Noise on the root used to
    /// make `ext4-view` panic (caught by the guard).
    #[test]
    fn a_corrupt_htree_directory_gives_an_error() {
        let path = format!(
            "{}/fixtures/rootless/manifest.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let blocks = m["vaults"]["luks2-xts-4k.img"]["many_blocks"]
            .as_array()
            .unwrap();
        assert!(blocks.len() > 2);
        let clean = plaintext("luks2-xts-4k.img");
        for b in blocks {
            let at = b.as_u64().unwrap() as usize * 4096;
            let mut img = clean.clone();
            for (i, x) in img[at..at + 4096].iter_mut().enumerate() {
                *x = (i as u8).wrapping_mul(151) ^ 0x3c;
            }
            let r = super::super::guarded("v", || {
                let len = img.len() as u64;
                let fs = load(Box::new(img), "v", len)?;
                let mut out = Vec::new();
                Lister {
                    fs: &fs,
                    vault: "v",
                    fmt: Format {
                        long: false,
                        end: b'\n',
                    },
                    out: &mut out,
                    dirs_left: 1,
                    found: None,
                }
                .dir(b"/many", b"", false, 0)
            });
            let e = r.expect_err("a corrupt /many lists without error");
            assert!(e.message.starts_with("v: "), "{}", e.message);
            assert_known_panic_only(&e.message);
            eprintln!("block {b}: {}", e.message);
        }
    }

    /// The same over every block, also the all-zero ones, and over the large fixture too
    /// (minutes in a debug build).
    #[test]
    #[ignore = "slow: cargo test --release -- --ignored corrupting_every_block"]
    fn corrupting_every_block_gives_errors() {
        sweep(true);
    }

    fn sweep(all_blocks: bool) {
        let mut caught = Vec::new();
        let mut outcomes = [0usize; 2];
        let mut vaults = vec![("luks2-cbc-essiv.img", 4096usize), ("luks1-xts.img", 1024)];
        if all_blocks {
            // Journal, htree directory, long symlink, sparse and large files.
            vaults.push(("luks2-xts-4k.img", 4096));
        }
        for (vault, bs) in vaults {
            let clean = plaintext(vault);
            let full = walk_everything(clean.clone()).unwrap();
            assert!(full >= 19, "{vault}: {full}");
            for block in 0..clean.len() / bs {
                if !all_blocks && clean[block * bs..(block + 1) * bs].iter().all(|b| *b == 0) {
                    continue;
                }
                for pattern in 0..2u8 {
                    let mut img = clean.clone();
                    for (i, b) in img[block * bs..(block + 1) * bs].iter_mut().enumerate() {
                        *b = if pattern == 0 {
                            0
                        } else {
                            (i as u8).wrapping_mul(151) ^ 0x3c
                        };
                    }
                    match panic::catch_unwind(AssertUnwindSafe(|| {
                        super::super::guarded("v", || walk_everything(img))
                    })) {
                        Ok(Ok(_)) => outcomes[0] += 1,
                        Ok(Err(e)) => {
                            outcomes[1] += 1;
                            if e.message.contains("the ext4 reader stopped") {
                                assert_known_panic_only(&e.message);
                                caught.push((vault, block, pattern, e.message));
                            }
                        }
                        Err(_) => panic!("{vault} block {block}: a panic escaped the guard"),
                    }
                }
            }
        }
        eprintln!(
            "walks that succeeded: {}, that failed cleanly: {}",
            outcomes[0], outcomes[1]
        );
        for c in &caught {
            eprintln!("ext4-view panicked (caught by the guard): {c:?}");
        }
        assert!(outcomes[1] > 0);
    }
}
