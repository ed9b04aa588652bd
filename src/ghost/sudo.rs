//! Running tazpod again as root through sudo (or `--sudo-command`): the executable's path,
//! paths made absolute for the root side, and the exec itself. The root side trusts none of
//! it: it learns the caller from the kernel and sudo, and opens every path with the
//! caller's rights.

use crate::error::{code, CliError};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// `p` made absolute (relative to the working directory), except `~/...` and `-`.
pub fn absolute(p: &Path) -> PathBuf {
    if p.starts_with("~") || p == Path::new("-") {
        return p.to_path_buf();
    }
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The path of this executable, to run it again as root.
pub fn current_exe() -> Result<PathBuf, CliError> {
    std::env::current_exe().map_err(|e| {
        CliError::new(
            code::INVALID,
            format!("cannot find the tazpod executable to run it as root: {e}"),
        )
    })
}

/// Execs `sudo argv` (`verb` names the tazpod verb in messages); returns only on failure.
pub fn exec_as_root(sudo: &OsStr, argv: &[OsString], verb: &str) -> CliError {
    let tool = Path::new(sudo).display().to_string();
    let e = std::process::Command::new(sudo).args(argv).exec();
    if e.kind() == io::ErrorKind::NotFound {
        CliError::new(
            code::INVALID,
            format!("tazpod {verb} needs root, and `{tool}` was not found"),
        )
        .hint("run it as root, install sudo, or name another tool with --sudo-command")
    } else {
        CliError::new(code::INVALID, format!("cannot run `{tool}`: {e}"))
            .hint("run it as root, or name an installed tool on PATH with --sudo-command")
    }
}
