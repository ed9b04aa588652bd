//! The rootless verbs: `ls`, `cat` and `run`, which read the vault's ext4 filesystem
//! in-process (the service is `crate::rootless`). This file holds their options, the choice of
//! the configuration and the vault, what they print, and how their outcome becomes an exit
//! status.

use super::args::LimitArgs;
use crate::cli::args::KeyArgs;
use crate::config::ConfigFile;
use crate::error::CliError;
use crate::rootless::run::{collect, command, exec, secrets_of};
use crate::rootless::tree::{write_error, Format, CAT_CHUNK};
use crate::rootless::walk::{cat_file, list};
use crate::rootless::{self, RootlessError, Vault, VaultSpec};
use luks2::SecretBuf;
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;

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

/// Parses `NAME=PATH`; NAME must be a portable variable name (`[A-Za-z_][A-Za-z0-9_]*`, the
/// rule of ghost mode's secrets map).
fn parse_assignment(s: &str) -> Result<(String, OsString), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=PATH"))?;
    if !crate::shell::valid_env_name(name) {
        return Err(format!(
            "'{name}' is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    if path.is_empty() {
        return Err(format!("no vault path after '{name}='"));
    }
    Ok((name.to_string(), OsString::from(path)))
}

/// The configuration, read when `always` or when it decides something: the vault when
/// `--vault` is absent, or an explicit `--config`.
fn load_config(v: &VaultArgs, always: bool) -> Result<ConfigFile, CliError> {
    if always || v.vault.is_none() || v.config.is_some() {
        Ok(rootless::load_config(v.config.as_deref())?)
    } else {
        Ok(ConfigFile::default())
    }
}

/// Opens the vault these options name.
fn open(
    v: &VaultArgs,
    config: &ConfigFile,
    key: &KeyArgs,
    verbose: bool,
) -> Result<Vault, CliError> {
    let spec = VaultSpec {
        vault: v.vault.as_deref(),
        header: v.header.as_deref(),
        key_slot: v.key_slot,
        limits: v.limits.limits(),
    };
    Ok(rootless::open_vault(&spec, config, &key.source(), verbose)?)
}

/// Lists `a.path` of the vault. A closed standard output stops quietly.
pub fn ls(a: LsArgs, verbose: bool) -> Result<(), CliError> {
    let config = load_config(&a.vault, false)?;
    let vault = open(&a.vault, &config, &a.key, verbose)?;
    let fmt = Format {
        long: a.long,
        end: if a.zero { 0 } else { b'\n' },
    };
    let out = io::stdout();
    let mut out = io::BufWriter::new(out.lock());
    let listed = list(&vault, &a.path, fmt, a.recursive, &mut out);
    let flushed = out.flush().map_err(|e| RootlessError::from(write_error(e)));
    finish(vault, verbose);
    match listed.and(flushed) {
        Err(e) if !e.is_closed() => Err(e.into()),
        _ => Ok(()),
    }
}

/// Streams the files `a.paths` of the vault to standard output. As cat does, a file that
/// cannot be read is reported and the next one is tried; the last failure is returned (and
/// sets the exit code). A write error stops at once; a closed pipe stops quietly.
pub fn cat(a: CatArgs, verbose: bool) -> Result<(), CliError> {
    let config = load_config(&a.vault, false)?;
    let vault = open(&a.vault, &config, &a.key, verbose)?;
    let out = io::stdout();
    let mut out = out.lock();
    let mut buf = SecretBuf::zeroed(CAT_CHUNK);
    let mut last: Option<CliError> = None;
    for p in &a.paths {
        match cat_file(&vault, p, &mut buf, &mut out) {
            Ok(_) => {}
            Err(e) if e.is_closed() => break,
            Err(e) => {
                let fatal = e.is_write();
                if let Some(prev) = last.replace(e.into()) {
                    eprintln!("{prev}");
                }
                if fatal {
                    break;
                }
            }
        }
    }
    finish(vault, verbose);
    last.map_or(Ok(()), Err)
}

/// Runs the command with the secrets map applied. Returns only on failure.
pub fn run(a: RunArgs, verbose: bool) -> Result<(), CliError> {
    let config = load_config(&a.vault, true)?;
    let secrets = secrets_of(&config, &a.env, &a.env_file)?;
    let vault = open(&a.vault, &config, &a.key, verbose)?;
    let served = collect(&vault, &secrets)?;
    // Wipe the cache and the key schedule before the command starts.
    drop(vault);
    let cmd = command(&a.command, &served)?;
    if verbose {
        report_wiped();
        eprintln!(
            "Running {} with {} secret(s) from the vault.",
            cmd.get_program().to_string_lossy(),
            served.len()
        );
    }
    Err(exec(cmd).into())
}

/// Drops the vault (its reader, caches and key schedule), saying with `verbose` what the
/// reader did and how much freed memory was zeroed.
fn finish(vault: Vault, verbose: bool) {
    if verbose {
        let s = vault.stats.get();
        eprintln!(
            "Read {} bytes of plaintext in {} reads: {} sectors decrypted, {} from the cache.",
            s.bytes, s.reads, s.sectors_decrypted, s.cache_hits
        );
    }
    drop(vault);
    if verbose {
        report_wiped();
    }
}

/// For `--verbose`, once the vault (and with it the ext4 reader and its caches) is dropped:
/// how much freed memory was zeroed.
fn report_wiped() {
    if crate::alloc::ALLOC.wiping() {
        eprintln!(
            "Zeroed {} bytes of freed memory (the ext4 reader's caches and buffers among them).",
            crate::alloc::ALLOC.wiped_bytes()
        );
    } else {
        eprintln!("Freed memory is not being zeroed.");
    }
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
