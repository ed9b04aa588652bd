//! Running tazpod again as root through sudo (or `--sudo-command`): the executable's path,
//! paths made absolute for the root side, and the exec itself. The root side trusts none of
//! it: it learns the caller from the kernel and sudo, and opens every path with the
//! caller's rights. The messages are in [`SudoError`]'s `Display`; `crate::error` gives the
//! exit codes and hints.

use std::ffi::{OsStr, OsString};
use std::fmt;
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

/// Why tazpod cannot run itself again as root.
#[derive(Debug)]
pub enum SudoError {
    /// The path of this executable cannot be found.
    CurrentExe(io::Error),
    /// `tool` (`--sudo-command`) cannot be executed for the tazpod verb `verb`.
    Exec {
        verb: String,
        tool: String,
        error: io::Error,
    },
}

impl SudoError {
    /// Whether the tool was not found (rather than found but not executable).
    pub fn tool_not_found(&self) -> bool {
        matches!(self, SudoError::Exec { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }
}

impl fmt::Display for SudoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SudoError::CurrentExe(e) => {
                write!(
                    f,
                    "cannot find the tazpod executable to run it as root: {e}"
                )
            }
            SudoError::Exec { verb, tool, .. } if self.tool_not_found() => {
                write!(f, "tazpod {verb} needs root, and `{tool}` was not found")
            }
            SudoError::Exec { tool, error, .. } => write!(f, "cannot run `{tool}`: {error}"),
        }
    }
}

/// The path of this executable, to run it again as root.
pub fn current_exe() -> Result<PathBuf, SudoError> {
    std::env::current_exe().map_err(SudoError::CurrentExe)
}

/// Execs `sudo argv` (`verb` names the tazpod verb in messages); returns only on failure.
pub fn exec_as_root(sudo: &OsStr, argv: &[OsString], verb: &str) -> SudoError {
    let error = std::process::Command::new(sudo).args(argv).exec();
    SudoError::Exec {
        verb: verb.to_string(),
        tool: Path::new(sudo).display().to_string(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use crate::error::testing::{assert_converts, denied};

    #[test]
    fn sudo_errors_convert() {
        let denied = denied();
        let exec = |error| SudoError::Exec {
            verb: "init".into(),
            tool: "/bin/doas".into(),
            error,
        };
        assert_converts(vec![
            (
                SudoError::CurrentExe(crate::error::testing::denied()),
                code::INVALID,
                format!("cannot find the tazpod executable to run it as root: {denied}"),
                None,
            ),
            (
                exec(io::Error::from(io::ErrorKind::NotFound)),
                code::INVALID,
                "tazpod init needs root, and `/bin/doas` was not found".into(),
                Some("run it as root, install sudo, or name another tool with --sudo-command"),
            ),
            (
                exec(crate::error::testing::denied()),
                code::INVALID,
                format!("cannot run `/bin/doas`: {denied}"),
                Some("run it as root, or name an installed tool on PATH with --sudo-command"),
            ),
        ]);
    }
}
