//! `tazpod ls` and `tazpod cat`: listing and streaming files of the vault's filesystem.

use super::{fs_error, guarded, load_config, open_vault, shown, vault_path, VaultArgs};
use crate::error::{code, CliError};
use crate::passphrase::KeyArgs;
use ext4_view::{Ext4, FileType, Metadata};
use luks2::SecretBuf;
use std::ffi::OsString;
use std::io::{self, Write};

/// Bytes of plaintext moved per write by `cat` (the file is never loaded whole).
const CAT_CHUNK: usize = 64 * 1024;

/// Deepest directory `ls --recursive` descends into.
const MAX_DEPTH: usize = 128;

/// `tazpod ls`.
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    vault: VaultArgs,
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
    vault: VaultArgs,
    #[command(flatten)]
    key: KeyArgs,
    /// Files of the vault to write to standard output, in order (symlinks are followed)
    #[arg(required = true)]
    paths: Vec<OsString>,
}

/// What `ls` prints for each entry.
#[derive(Debug, Clone, Copy)]
struct Format {
    long: bool,
    end: u8,
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
            };
            lister.entry(&path, &shown_name, &lmeta)
        }
    });
    let flushed = out.flush().map_err(write_error);
    if verbose {
        report(&vault);
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

/// Prints directory listings.
struct Lister<'a, W: Write> {
    fs: &'a Ext4,
    vault: &'a str,
    fmt: Format,
    out: &'a mut W,
}

impl<W: Write> Lister<'_, W> {
    /// Lists directory `path`; entries are shown as `prefix` + name.
    fn dir(
        &mut self,
        path: &[u8],
        prefix: &[u8],
        recursive: bool,
        depth: usize,
    ) -> Result<(), CliError> {
        if depth > MAX_DEPTH {
            return Err(CliError::new(
                code::INVALID,
                format!(
                    "{}: {} is nested more than {MAX_DEPTH} directories deep (a directory loop?)",
                    self.vault,
                    shown(path)
                ),
            ));
        }
        let mut entries = Vec::new();
        let dir = self
            .fs
            .read_dir(path)
            .map_err(|e| fs_error(self.vault, Some(path), e))?;
        for entry in dir {
            let entry = entry.map_err(|e| fs_error(self.vault, Some(path), e))?;
            let name = entry.file_name().as_ref().to_vec();
            if name == b"." || name == b".." {
                continue;
            }
            let ft = entry
                .file_type()
                .map_err(|e| fs_error(self.vault, Some(path), e))?;
            entries.push((name, ft));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, ft) in entries {
            let full = join(path, &name);
            let mut rel = prefix.to_vec();
            rel.extend_from_slice(&name);
            if self.fmt.long {
                let meta = self
                    .fs
                    .symlink_metadata(full.as_slice())
                    .map_err(|e| fs_error(self.vault, Some(&full), e))?;
                self.entry(&full, &rel, &meta)?;
            } else {
                self.line(&rel)?;
            }
            if recursive && ft.is_dir() {
                rel.push(b'/');
                self.dir(&full, &rel, true, depth + 1)?;
            }
        }
        Ok(())
    }

    /// One entry in the chosen format.
    fn entry(&mut self, full: &[u8], rel: &[u8], meta: &Metadata) -> Result<(), CliError> {
        if !self.fmt.long {
            return self.line(rel);
        }
        let mut text = format!(
            "{} {:>5} {:>5} {:>10} ",
            mode_string(meta.file_type(), meta.mode()),
            meta.uid(),
            meta.gid(),
            meta.len()
        )
        .into_bytes();
        text.extend_from_slice(rel);
        if meta.is_symlink() {
            let target = self
                .fs
                .read_link(full)
                .map_err(|e| fs_error(self.vault, Some(full), e))?;
            text.extend_from_slice(b" -> ");
            text.extend_from_slice(target.as_ref());
        }
        self.line(&text)
    }

    fn line(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        self.out
            .write_all(bytes)
            .and_then(|()| self.out.write_all(&[self.fmt.end]))
            .map_err(write_error)
    }
}

/// `dir` + `/` + `name`.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The type and permission column of `ls -l` (`drwxr-xr-x`).
pub fn mode_string(ft: FileType, mode: u16) -> String {
    let t = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_dev() {
        'c'
    } else if ft.is_block_dev() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_socket() {
        's'
    } else {
        '-'
    };
    let bit = |mask: u16, c: char| if mode & mask != 0 { c } else { '-' };
    let special = |x: bool, set: bool, on: char, off: char, plain: char| match (set, x) {
        (true, true) => on,
        (true, false) => off,
        (false, true) => plain,
        (false, false) => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(
        mode & 0o100 != 0,
        mode & 0o4000 != 0,
        's',
        'S',
        'x',
    ));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(
        mode & 0o010 != 0,
        mode & 0o2000 != 0,
        's',
        'S',
        'x',
    ));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(
        mode & 0o001 != 0,
        mode & 0o1000 != 0,
        't',
        'T',
        'x',
    ));
    s
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
            stream(&vault.fs, &name, &path, &mut buf, &mut out)
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

/// Copies one file of the vault to `out` in [`CAT_CHUNK`] pieces through `buf`; returns the
/// bytes copied.
pub fn stream(
    fs: &Ext4,
    vault: &str,
    path: &[u8],
    buf: &mut SecretBuf,
    out: &mut impl Write,
) -> Result<u64, CliError> {
    let mut file = fs.open(path).map_err(|e| fs_error(vault, Some(path), e))?;
    let mut total = 0u64;
    loop {
        let mut n = 0usize;
        while let Some(rest) = buf.as_mut_bytes().get_mut(n..).filter(|r| !r.is_empty()) {
            let got = file
                .read_bytes(rest)
                .map_err(|e| fs_error(vault, Some(path), e))?;
            if got == 0 {
                break;
            }
            n += got;
        }
        if n == 0 {
            return Ok(total);
        }
        let chunk = buf.as_bytes().get(..n).unwrap_or_default();
        out.write_all(chunk).map_err(write_error)?;
        total += n as u64;
    }
}

/// Marks a failed write to standard output inside this module (never an exit code: it is
/// replaced by [`code::INVALID`] before the error leaves).
const WRITE_FAILED: u8 = 255;

/// A failed write to standard output. A closed pipe (`tazpod cat f | head`) is not an error:
/// it gives the quiet marker (code 0, see [`is_quiet`]).
fn write_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return CliError::new(code::OK, String::new());
    }
    CliError::new(
        WRITE_FAILED,
        format!("cannot write to standard output: {e}"),
    )
}

/// Whether `e` stands for "the reader went away": stop quietly.
fn is_quiet(e: &CliError) -> bool {
    e.code == code::OK
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
    use super::*;
    use luks2::unlock::{unlock, UnlockOptions};
    use luks2::volume::{DataSegment, Decryptor};
    use std::panic::{self, AssertUnwindSafe};

    #[test]
    fn mode_strings() {
        let fs = ext4_view::FileType::Regular;
        assert_eq!(mode_string(fs, 0o644), "-rw-r--r--");
        assert_eq!(
            mode_string(ext4_view::FileType::Directory, 0o1777),
            "drwxrwxrwt"
        );
        assert_eq!(mode_string(fs, 0o4754), "-rwsr-xr--");
        assert_eq!(mode_string(fs, 0o2644), "-rw-r-Sr--");
        assert_eq!(
            mode_string(ext4_view::FileType::Symlink, 0o777),
            "lrwxrwxrwx"
        );
    }

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

    /// Everything `ls -R --long` and `cat` do, on an in-memory image: Ok(entries listed) or
    /// the first error (files that fail to stream are counted, not fatal).
    fn walk_everything(img: Vec<u8>) -> Result<usize, CliError> {
        let fs = Ext4::load(Box::new(img)).map_err(|e| super::super::fs_error("v", None, e))?;
        let mut listing = Vec::new();
        Lister {
            fs: &fs,
            vault: "v",
            fmt: Format { long: true, end: 0 },
            out: &mut listing,
        }
        .dir(b"/", b"", true, 0)?;
        let mut buf = SecretBuf::zeroed(CAT_CHUNK);
        let entries: Vec<&[u8]> = listing
            .split(|b| *b == 0)
            .filter(|l| l.len() > 34)
            .collect();
        for line in &entries {
            let name = line.get(34..).unwrap();
            let name = name.split(|b| *b == b' ').next().unwrap();
            let _ = stream(&fs, "v", &[b"/", name].concat(), &mut buf, &mut io::sink());
        }
        Ok(entries.len())
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
                let fs =
                    Ext4::load(Box::new(img)).map_err(|e| super::super::fs_error("v", None, e))?;
                let mut out = Vec::new();
                Lister {
                    fs: &fs,
                    vault: "v",
                    fmt: Format {
                        long: false,
                        end: b'\n',
                    },
                    out: &mut out,
                }
                .dir(b"/many", b"", false, 0)
            });
            let e = r.expect_err("a corrupt /many lists without error");
            assert!(e.message.starts_with("v: "), "{}", e.message);
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
