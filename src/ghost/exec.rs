//! The inner shell's program, argv and clean environment: a login shell (or the COMMAND
//! after `--`) with only the session's own variables, the terminal and locale ones passed
//! through, and the secrets map.

use super::host::{ExecSpec, Identity, SecretVar};
use super::session::DEFAULT_PATH;
use crate::config::{SecretEntry, SecretKind};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Set to `true` in every ghost session's environment.
pub const GHOST_MODE_VAR: &str = "TAZPOD_GHOST_MODE";

/// What the inner shell's [`ExecSpec`] is built from.
pub struct ExecInputs<'a> {
    /// The session user.
    pub user: &'a Identity,
    /// `--shell` / config `shell`.
    pub shell: Option<&'a Path>,
    /// The COMMAND after `--` (empty: a login shell).
    pub command: &'a [OsString],
    /// The vault image.
    pub vault: &'a Path,
    /// The mount point.
    pub mount: &'a Path,
    /// The `--config` file, for `tazpod env` inside the session.
    pub config: Option<&'a Path>,
    /// The secrets map.
    pub secrets: &'a [SecretEntry],
    /// This process's environment (only terminal and locale variables are kept).
    pub inherited: &'a [(OsString, OsString)],
    /// Where the user was.
    pub cwd: Option<&'a Path>,
}

/// Whether an inherited variable passes into the clean environment.
fn kept(name: &OsStr) -> bool {
    let n = name.as_bytes();
    matches!(
        n,
        b"TERM" | b"COLORTERM" | b"LANG" | b"LANGUAGE" | b"TZ" | b"NO_COLOR"
    ) || n.starts_with(b"LC_")
}

/// The inner shell's program, argv and clean environment.
pub fn build_exec(i: &ExecInputs<'_>) -> ExecSpec {
    let user = i.user;
    let login_shell = i
        .shell
        .map(Path::to_path_buf)
        .or_else(|| Some(user.shell.clone()).filter(|s| !s.as_os_str().is_empty()))
        .unwrap_or_else(|| PathBuf::from("/bin/sh"));
    let (program, argv) = match i.command.first() {
        Some(p) => (p.clone(), i.command.to_vec()),
        None => {
            let base = login_shell
                .file_name()
                .map_or_else(|| OsString::from("sh"), OsStr::to_os_string);
            let mut argv0 = OsString::from("-");
            argv0.push(base);
            (login_shell.clone().into_os_string(), vec![argv0])
        }
    };
    let mut env: Vec<(OsString, OsString)> = vec![
        (GHOST_MODE_VAR.into(), "true".into()),
        ("HOME".into(), user.home.clone().into_os_string()),
        ("USER".into(), user.name.clone().into()),
        ("LOGNAME".into(), user.name.clone().into()),
        ("SHELL".into(), login_shell.into_os_string()),
        ("PATH".into(), DEFAULT_PATH.into()),
        ("TAZPOD_VAULT".into(), i.vault.into()),
        ("TAZPOD_VAULT_MOUNT".into(), i.mount.into()),
    ];
    if let Some(c) = i.config {
        env.push(("TAZPOD_CONFIG".into(), c.into()));
    }
    env.extend(i.inherited.iter().filter(|(k, _)| kept(k)).cloned());
    let secrets = i
        .secrets
        .iter()
        .map(|s| SecretVar {
            env: s.env.clone(),
            file: i.mount.join(&s.file),
            as_value: s.kind == SecretKind::Value,
        })
        .collect();
    let mut cwd: Vec<PathBuf> = i.cwd.map(Path::to_path_buf).into_iter().collect();
    cwd.push(user.home.clone());
    ExecSpec {
        program,
        argv,
        env,
        secrets,
        cwd,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Lossless `OsString` from bytes.
    fn os(b: &[u8]) -> OsString {
        std::os::unix::ffi::OsStringExt::from_vec(b.to_vec())
    }

    fn user() -> Identity {
        Identity {
            name: "tazpod".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            home: "/home/tazpod".into(),
            shell: "/bin/bash".into(),
        }
    }

    #[test]
    fn exec_is_a_login_shell_with_a_clean_environment() {
        let u = user();
        let secrets = vec![
            SecretEntry {
                env: "GH_TOKEN".into(),
                file: "tokens/gh".into(),
                kind: SecretKind::Value,
            },
            SecretEntry {
                env: "KEYFILE".into(),
                file: "k.json".into(),
                kind: SecretKind::Path,
            },
        ];
        let inherited = vec![
            (os(b"TERM"), os(b"xterm")),
            (os(b"LC_ALL"), os(b"C.UTF-8")),
            (os(b"SUDO_USER"), os(b"tazpod")),
            (os(b"LD_PRELOAD"), os(b"/evil.so")),
            (os(b"PATH"), os(b"/root/bin")),
        ];
        let e = build_exec(&ExecInputs {
            user: &u,
            shell: None,
            command: &[],
            vault: Path::new("/w/vault.img"),
            mount: Path::new("/home/tazpod/secrets"),
            config: None,
            secrets: &secrets,
            inherited: &inherited,
            cwd: Some(Path::new("/w")),
        });
        assert_eq!(e.program, "/bin/bash");
        assert_eq!(e.argv, vec![OsString::from("-bash")]);
        let names: Vec<String> = e
            .env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into())
            .collect();
        assert_eq!(
            names,
            vec![
                "TAZPOD_GHOST_MODE",
                "HOME",
                "USER",
                "LOGNAME",
                "SHELL",
                "PATH",
                "TAZPOD_VAULT",
                "TAZPOD_VAULT_MOUNT",
                "TERM",
                "LC_ALL"
            ]
        );
        assert_eq!(e.env[5].1, DEFAULT_PATH);
        assert_eq!(
            e.secrets[0].file,
            PathBuf::from("/home/tazpod/secrets/tokens/gh")
        );
        assert!(e.secrets[0].as_value && !e.secrets[1].as_value);
        assert_eq!(
            e.cwd,
            vec![PathBuf::from("/w"), PathBuf::from("/home/tazpod")]
        );
    }

    #[test]
    fn exec_runs_the_command_or_the_chosen_shell() {
        let u = user();
        let cmd = vec![OsString::from("cat"), OsString::from("/x")];
        let base = ExecInputs {
            user: &u,
            shell: Some(Path::new("/bin/zsh")),
            command: &cmd,
            vault: Path::new("/v"),
            mount: Path::new("/m"),
            config: Some(Path::new("/c.toml")),
            secrets: &[],
            inherited: &[],
            cwd: None,
        };
        let e = build_exec(&base);
        assert_eq!(e.program, "cat");
        assert_eq!(e.argv, cmd);
        assert!(e
            .env
            .iter()
            .any(|(k, v)| k == "TAZPOD_CONFIG" && v == "/c.toml"));
        assert!(e.env.iter().any(|(k, v)| k == "SHELL" && v == "/bin/zsh"));
        let e = build_exec(&ExecInputs {
            command: &[],
            ..base
        });
        assert_eq!(e.argv, vec![OsString::from("-zsh")]);
    }
}
