//! `tazpod ls` and `tazpod cat`: listing and streaming files of the vault's filesystem.

use super::{fs_error, guarded, open_vault, shown, vault_path, VaultArgs};
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
    let vault = open_vault(&a.vault, &a.key, verbose)?;
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
    let vault = open_vault(&a.vault, &a.key, verbose)?;
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
