//! `tazpod run`: start a command with secrets of the vault in its environment.
//!
//! The secrets map is ghost mode's: the `[[secret]]` entries of the configuration
//! (`/etc/tazpod/config.toml`, then `--config FILE` or `~/.config/tazpod/config.toml`), to
//! which `--env` and `--env-file` add entries or replace those of the same variable. Each
//! secret is a file of the vault, served one of two ways:
//! - `as = "value"` / `--env NAME=PATH`: the variable's value is the file's content (trailing
//!   newlines and carriage returns removed, as `tazpod env` does); at most [`ENV_VALUE_MAX`]
//!   bytes, no NUL byte;
//! - `as = "path"` / `--env-file NAME=PATH`: the content goes into a sealed memfd inherited by
//!   the command, and the variable holds its path `/proc/self/fd/N` (for tools that want a
//!   file, like `KUBECONFIG` or `GOOGLE_APPLICATION_CREDENTIALS`). Nothing touches a disk.
//!
//! Every secret is read before the command starts (a missing file stops everything), then
//! tazpod wipes the reader and `exec`s the command in its own place: no tazpod process stays
//! around holding plaintext, and the command's exit status is the one the caller sees.

use super::tree::{fs_error, stream};
use super::{guarded, vault_path, RootlessError, Vault};
use crate::config::{ConfigFile, SecretKind};
use crate::kernel::memfd::Memfd;
use ext4_view::Ext4;
use luks2::SecretBuf;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Largest value of one `--env` variable: the kernel's limit on one environment string
/// (`MAX_ARG_STRLEN`, 128 KiB, counting `NAME=` and the final NUL) leaves this much at most.
pub const ENV_VALUE_MAX: usize = 128 * 1024 - 2;

/// How one secret reaches the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// As the variable's value.
    Value,
    /// As a memfd whose path is the variable's value.
    File,
}

/// One entry of the secrets map: variable `name` from vault file `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The environment variable.
    pub name: String,
    /// The file in the vault.
    pub path: OsString,
    /// How it is served.
    pub serve: Serve,
}

/// The secrets map: the config's entries, then the given ones (`values` served as values,
/// `files` as files), which replace a config entry of the same variable; a variable given
/// twice among `values` and `files` is refused.
pub fn secrets_of(
    config: &ConfigFile,
    values: &[(String, OsString)],
    files: &[(String, OsString)],
) -> Result<Vec<Secret>, RootlessError> {
    let mut out: Vec<Secret> = config
        .secret
        .iter()
        .map(|s| Secret {
            name: s.env.clone(),
            path: s.file.clone().into_os_string(),
            serve: match s.kind {
                SecretKind::Value => Serve::Value,
                SecretKind::Path => Serve::File,
            },
        })
        .collect();
    let mut seen = BTreeSet::new();
    let values = values.iter().map(|(n, p)| (n, p, Serve::Value));
    let files = files.iter().map(|(n, p)| (n, p, Serve::File));
    for (name, path, serve) in values.chain(files) {
        if !seen.insert(name.clone()) {
            return Err(RootlessError::RepeatedVariable(name.clone()));
        }
        let s = Secret {
            name: name.clone(),
            path: path.clone(),
            serve,
        };
        match out.iter_mut().find(|x| x.name == *name) {
            Some(x) => *x = s,
            None => out.push(s),
        }
    }
    if out.is_empty() {
        return Err(RootlessError::NoSecrets);
    }
    Ok(out)
}

/// What the command gets for one secret.
pub enum Served {
    /// A variable value (wiped when dropped if exec fails).
    Value(String, SecretBuf),
    /// A variable pointing at a memfd that must stay open until exec.
    File(String, Memfd),
}

/// Reads every secret of the map out of the vault (under [`guarded`]).
pub fn collect(vault: &Vault, secrets: &[Secret]) -> Result<Vec<Served>, RootlessError> {
    guarded(&vault.name, || {
        collect_from(&vault.fs, &vault.name, secrets)
    })
}

fn collect_from(fs: &Ext4, vault: &str, secrets: &[Secret]) -> Result<Vec<Served>, RootlessError> {
    let mut served = Vec::with_capacity(secrets.len());
    for s in secrets {
        let path = vault_path(&s.path);
        served.push(match s.serve {
            Serve::Value => Served::Value(s.name.clone(), read_value(fs, vault, &s.name, &path)?),
            Serve::File => Served::File(s.name.clone(), serve_file(fs, vault, &s.name, &path)?),
        });
    }
    Ok(served)
}

/// The content of `path` as a variable value.
fn read_value(fs: &Ext4, vault: &str, name: &str, path: &[u8]) -> Result<SecretBuf, RootlessError> {
    let meta = fs
        .metadata(path)
        .map_err(|e| fs_error(vault, Some(path), e))?;
    let too_big = || RootlessError::ValueTooLarge {
        vault: vault.to_string(),
        path: path.to_vec(),
        name: name.to_string(),
        max: ENV_VALUE_MAX,
    };
    let len = usize::try_from(meta.len()).map_err(|_| too_big())?;
    if len > ENV_VALUE_MAX {
        return Err(too_big());
    }
    let mut buf = SecretBuf::zeroed(len);
    let mut sink = SliceWriter {
        buf: buf.as_mut_bytes(),
        at: 0,
    };
    let mut chunk = SecretBuf::zeroed(len.clamp(1, 64 * 1024));
    let n = stream(fs, vault, path, &mut chunk, &mut sink, u64::MAX)?;
    let mut n = usize::try_from(n).unwrap_or(len).min(len);
    while n > 0 && matches!(buf.as_bytes().get(n - 1), Some(b'\n' | b'\r')) {
        n -= 1;
    }
    buf.truncate(n);
    if buf.as_bytes().contains(&0) {
        return Err(RootlessError::ValueHasNul {
            vault: vault.to_string(),
            path: path.to_vec(),
            name: name.to_string(),
        });
    }
    Ok(buf)
}

/// Writes into a fixed slice; refuses to grow (the file changed size under us: impossible on
/// a read-only view, but never write out of bounds).
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl std::io::Write for SliceWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let end = self.at.checked_add(data.len());
        match end.and_then(|e| self.buf.get_mut(self.at..e)) {
            Some(dst) => {
                dst.copy_from_slice(data);
                self.at += data.len();
                Ok(data.len())
            }
            None => Err(std::io::Error::other("file longer than its size")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies `path` into a sealed memfd.
fn serve_file(fs: &Ext4, vault: &str, name: &str, path: &[u8]) -> Result<Memfd, RootlessError> {
    let memfd_error = |error| RootlessError::Memfd {
        name: name.to_string(),
        error,
    };
    let mut m = Memfd::create(&format!("tazpod:{name}")).map_err(memfd_error)?;
    let mut sink = MemfdWriter(&mut m);
    let mut chunk = SecretBuf::zeroed(64 * 1024);
    stream(fs, vault, path, &mut chunk, &mut sink, u64::MAX)?;
    m.seal().map_err(memfd_error)?;
    Ok(m)
}

/// `Write` over a memfd.
struct MemfdWriter<'a>(&'a mut Memfd);

impl std::io::Write for MemfdWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .write_all(data)
            .map(|()| data.len())
            .map_err(|e| std::io::Error::from_raw_os_error(e.raw()))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The command `command` (program and arguments) with the secrets `served` in its
/// environment; the memfds stay open as long as `served` lives.
pub fn command(command: &[OsString], served: &[Served]) -> Result<Command, RootlessError> {
    let (program, args) = command.split_first().ok_or(RootlessError::NoCommand)?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    for s in served {
        match s {
            Served::Value(n, v) => {
                cmd.env(n, OsString::from_vec(v.as_bytes().to_vec()));
            }
            Served::File(n, m) => {
                cmd.env(n, m.proc_self_path());
            }
        }
    }
    Ok(cmd)
}

/// Runs `cmd` in this process's place; returns only on failure.
pub fn exec(mut cmd: Command) -> RootlessError {
    let error = cmd.exec();
    RootlessError::Exec {
        program: cmd.get_program().to_string_lossy().into_owned(),
        error,
    }
}
