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

use super::tree::stream;
use super::{fs_error, guarded, load_config, open_vault, shown, vault_path, VaultArgs};
use crate::config::{ConfigFile, SecretKind};
use crate::error::{code, CliError};
use crate::kernel::memfd::Memfd;
use crate::passphrase::KeyArgs;
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

/// Exit code when the command cannot be found (as in shells).
const NOT_FOUND: u8 = 127;
/// Exit code when the command cannot be executed (as in shells).
const NOT_EXECUTABLE: u8 = 126;

/// `tazpod run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub vault: VaultArgs,
    /// Set variable NAME to the content of the vault file PATH (trailing newlines removed);
    /// adds to the config's `[[secret]]` map, or replaces its entry for NAME
    #[arg(long = "env", value_name = "NAME=PATH", value_parser = parse_assignment)]
    env: Vec<(String, OsString)>,
    /// Serve the vault file PATH through an in-memory file; NAME is set to its /proc/self/fd
    /// path (the config's `as = "path"`)
    #[arg(long = "env-file", value_name = "NAME=PATH", value_parser = parse_assignment)]
    env_file: Vec<(String, OsString)>,
    #[command(flatten)]
    key: KeyArgs,
    /// The command to run and its arguments (after --)
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

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

/// Parses `NAME=PATH`; NAME must be a portable variable name (`[A-Za-z_][A-Za-z0-9_]*`).
fn parse_assignment(s: &str) -> Result<(String, OsString), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=PATH"))?;
    check_name(name)?;
    if path.is_empty() {
        return Err(format!("no vault path after '{name}='"));
    }
    Ok((name.to_string(), OsString::from(path)))
}

/// Checks an environment variable name (the rule of ghost mode's secrets map).
pub fn check_name(name: &str) -> Result<(), String> {
    if crate::shell::valid_env_name(name) {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a variable name (letters, digits and _, not starting with a digit)"
        ))
    }
}

/// The secrets map: the config's entries, then the command line's, which replace a config
/// entry of the same variable; a variable given twice on the command line is refused.
fn secrets_of(a: &RunArgs, config: &ConfigFile) -> Result<Vec<Secret>, CliError> {
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
    let values = a.env.iter().map(|(n, p)| (n, p, Serve::Value));
    let files = a.env_file.iter().map(|(n, p)| (n, p, Serve::File));
    for (name, path, serve) in values.chain(files) {
        if !seen.insert(name.clone()) {
            return Err(CliError::new(
                code::INVALID,
                format!("variable {name} is given more than once"),
            ));
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
        return Err(CliError::new(code::INVALID, "no secrets to serve").hint(
            "give --env NAME=PATH or --env-file NAME=PATH (paths inside the vault), \
             or [[secret]] entries in the config",
        ));
    }
    Ok(out)
}

/// What the command gets for one secret.
enum Served {
    /// A variable value (wiped when dropped if exec fails).
    Value(String, SecretBuf),
    /// A variable pointing at a memfd that must stay open until exec.
    File(String, Memfd),
}

/// Reads every secret of the map out of the vault.
fn collect(fs: &Ext4, vault: &str, secrets: &[Secret]) -> Result<Vec<Served>, CliError> {
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
fn read_value(fs: &Ext4, vault: &str, name: &str, path: &[u8]) -> Result<SecretBuf, CliError> {
    let meta = fs
        .metadata(path)
        .map_err(|e| fs_error(vault, Some(path), e))?;
    let too_big = || {
        CliError::new(
            code::INVALID,
            format!(
                "{vault}: {} is too large for variable {name} (over {ENV_VALUE_MAX} bytes)",
                shown(path)
            ),
        )
        .hint(format!("serve it as a file: --env-file {name}=PATH"))
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
        return Err(CliError::new(
            code::INVALID,
            format!(
                "{vault}: {} holds a NUL byte, which a variable cannot carry",
                shown(path)
            ),
        )
        .hint(format!("serve it as a file: --env-file {name}=PATH")));
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
fn serve_file(fs: &Ext4, vault: &str, name: &str, path: &[u8]) -> Result<Memfd, CliError> {
    let memfd_error = |e: crate::kernel::Errno| {
        CliError::new(
            code::NOMEM,
            format!("cannot create an in-memory file for {name}: {e}"),
        )
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

/// Runs the command with the secrets map applied. Returns only on failure.
pub fn run(a: RunArgs, verbose: bool) -> Result<(), CliError> {
    let config = load_config(&a.vault, true)?;
    let secrets = secrets_of(&a, &config)?;
    let vault = open_vault(&a.vault, &config, &a.key, verbose)?;
    let name = vault.name.clone();
    let served = guarded(&name, || collect(&vault.fs, &name, &secrets))?;
    // Wipe the cache and the key schedule before the command starts.
    drop(vault);
    let (program, args) = match a.command.split_first() {
        Some(p) => p,
        None => return Err(CliError::new(code::INVALID, "no command given")),
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    for s in &served {
        match s {
            Served::Value(n, v) => {
                cmd.env(n, OsString::from_vec(v.as_bytes().to_vec()));
            }
            Served::File(n, m) => {
                cmd.env(n, m.proc_self_path());
            }
        }
    }
    if verbose {
        super::report_wiped();
        eprintln!(
            "Running {} with {} secret(s) from the vault.",
            program.to_string_lossy(),
            served.len()
        );
    }
    let e = cmd.exec();
    let shown_program = program.to_string_lossy();
    Err(match e.kind() {
        std::io::ErrorKind::NotFound => CliError::new(
            NOT_FOUND,
            format!("cannot run {shown_program}: command not found"),
        ),
        std::io::ErrorKind::PermissionDenied => CliError::new(
            NOT_EXECUTABLE,
            format!("cannot run {shown_program}: permission denied"),
        ),
        _ => CliError::new(code::INVALID, format!("cannot run {shown_program}: {e}")),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn assignments_parse() {
        assert_eq!(
            parse_assignment("TOKEN=env/token").unwrap(),
            ("TOKEN".to_string(), OsString::from("env/token"))
        );
        assert_eq!(
            parse_assignment("_a1=/x=y").unwrap(),
            ("_a1".to_string(), OsString::from("/x=y"))
        );
        assert!(parse_assignment("TOKEN").is_err());
        assert!(parse_assignment("1A=x").is_err());
        assert!(parse_assignment("A-B=x").is_err());
        assert!(parse_assignment("=x").is_err());
        assert!(parse_assignment("A=").is_err());
    }
}
