//! What tazpod prints for shells: `export` lines for `tazpod env` (single-quoted, safe for
//! any value) and the functions of `tazpod shell-init bash|zsh`.

/// Quotes `value` for a POSIX shell: inside single quotes nothing is special except the
/// single quote itself, written `'\''`. Newlines, `$`, backquotes and backslashes stay as
/// they are. (A NUL byte cannot be in a shell string; callers refuse such values.)
pub fn quote(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 2);
    out.push(b'\'');
    for &b in value {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// Whether `name` can be an environment variable set by `export`.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// `export NAME='value'\n`. `None` when the name is not a valid variable name or the value
/// holds a NUL byte.
pub fn export_line(name: &str, value: &[u8]) -> Option<Vec<u8>> {
    if !valid_env_name(name) || value.contains(&0) {
        return None;
    }
    let mut line = format!("export {name}=").into_bytes();
    line.extend_from_slice(&quote(value));
    line.push(b'\n');
    Some(line)
}

/// The shells `shell-init` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellKind {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
}

/// Whether `name` can be guarded: a command name that is also a safe function name.
pub fn valid_guard_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c == '-' || c.is_ascii_alphanumeric())
        && name != "tazpod"
}

/// The functions for the user's rc file: the `tazpod` wrapper (so `tazpod env` sets the
/// variables in the current shell instead of printing secrets on the terminal), and one
/// guard per `guards` name that runs the command only inside a ghost session and otherwise
/// offers to unlock. Guard names must pass [`valid_guard_name`].
pub fn shell_init(kind: ShellKind, guards: &[String]) -> String {
    let rc = match kind {
        ShellKind::Bash => "bash",
        ShellKind::Zsh => "zsh",
    };
    let mut s = format!(
        "# tazpod shell integration ({rc}). Install with:\n\
         #   tazpod shell-init {rc} >> ~/.{rc}rc\n\
         # `tazpod env` (inside a ghost session) sets the secret variables in this shell.\n\
         tazpod() {{\n    \
             if [ \"${{1-}}\" = \"env\" ]; then\n        \
                 shift\n        \
                 local tazpod_env_out tazpod_env_rc\n        \
                 tazpod_env_out=\"$(command tazpod env \"$@\")\"\n        \
                 tazpod_env_rc=$?\n        \
                 eval \"$tazpod_env_out\"\n        \
                 return \"$tazpod_env_rc\"\n    \
             fi\n    \
             command tazpod \"$@\"\n\
         }}\n"
    );
    for g in guards {
        s.push_str(&format!(
            "# {g} runs only inside a ghost session (the vault unlocked).\n\
             {g}() {{\n    \
                 if [ \"${{TAZPOD_GHOST_MODE-}}\" = \"true\" ]; then\n        \
                     command {g} \"$@\"\n        \
                     return\n    \
                 fi\n    \
                 echo \"tazpod: the vault is locked; {g} runs only inside a ghost session\" >&2\n    \
                 if [ -t 0 ] && [ -t 2 ]; then\n        \
                     local tazpod_answer\n        \
                     printf '%s' \"Unlock the vault now? [y/N] \" >&2\n        \
                     read -r tazpod_answer\n        \
                     case \"$tazpod_answer\" in\n            \
                         [yY]|[yY][eE][sS]) command tazpod unlock ;;\n        \
                     esac\n    \
                 fi\n    \
                 return 1\n\
             }}\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::process::Command;

    const WEIRD: &[&[u8]] = &[
        b"",
        b"plain",
        b"it's",
        b"''",
        b"a'b'c'",
        b"line1\nline2\n",
        b"$(touch /tmp/tazpod-pwned) `id` $HOME ${X}",
        b"back\\slash\\",
        b"\"double\" quotes",
        b"tab\tand;semicolon&&|| > <",
        b"unicode \xc3\xa9\xe2\x82\xac",
        b"\xff\xfe not utf-8",
        b"!history !! event",
        b"*glob? [x]",
        b"-n",
    ];

    #[test]
    fn quoting_examples() {
        assert_eq!(quote(b"abc"), b"'abc'");
        assert_eq!(quote(b"it's"), b"'it'\\''s'");
        assert_eq!(quote(b""), b"''");
        assert_eq!(
            export_line("GH_TOKEN", b"x'y").unwrap(),
            b"export GH_TOKEN='x'\\''y'\n"
        );
        assert_eq!(export_line("1BAD", b"x"), None);
        assert_eq!(export_line("BAD-NAME", b"x"), None);
        assert_eq!(export_line("OK", b"a\0b"), None);
    }

    /// Every weird value survives `eval` in sh, bash and zsh (those installed), byte for byte.
    #[test]
    fn export_lines_round_trip_through_shells() {
        for shell in ["/bin/sh", "/bin/bash", "/bin/zsh", "/usr/bin/zsh"] {
            if !std::path::Path::new(shell).exists() {
                continue;
            }
            for (i, v) in WEIRD.iter().enumerate() {
                let mut script = b"set -e\n".to_vec();
                script.extend(export_line("TAZ_V", v).unwrap());
                // Print through a child so export (not just assignment) is checked.
                script.extend_from_slice(b"env | grep -q '^TAZ_V='\n");
                script.extend_from_slice(b"printf '%s' \"$TAZ_V\"\n");
                let out = Command::new(shell)
                    .arg("-c")
                    .arg(std::ffi::OsStr::new(
                        &<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(script),
                    ))
                    .env_remove("TAZ_V")
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{shell} case {i}");
                assert_eq!(&out.stdout[..], *v, "{shell} case {i}");
            }
        }
        assert!(!std::path::Path::new("/tmp/tazpod-pwned").exists());
    }

    #[test]
    fn shell_init_has_wrapper_and_guards() {
        let s = shell_init(ShellKind::Bash, &["gemini".into(), "gcloud".into()]);
        assert!(s.contains("tazpod() {\n"));
        assert!(s.contains("gemini() {\n"));
        assert!(s.contains("command gcloud \"$@\""));
        assert!(s.contains("tazpod shell-init bash >> ~/.bashrc"));
        let z = shell_init(ShellKind::Zsh, &[]);
        assert!(z.contains("~/.zshrc"));
        assert!(!z.contains("gemini"));
    }

    #[test]
    fn guard_names() {
        assert!(valid_guard_name("gemini"));
        assert!(valid_guard_name("aws-vault"));
        assert!(valid_guard_name("_x1"));
        for bad in ["", "-x", "1x", "a b", "a;b", "$(x)", "tazpod", "a'b"] {
            assert!(!valid_guard_name(bad), "{bad}");
        }
    }

    /// The generated functions parse, and behave: outside a session the guard refuses (and
    /// does not prompt without a terminal); inside it runs the command; the wrapper evals
    /// `tazpod env` from a stub `tazpod` on PATH.
    #[test]
    fn shell_init_runs_in_bash() {
        let bash = "/bin/bash";
        if !std::path::Path::new(bash).exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path();
        std::fs::write(
            bin.join("tazpod"),
            "#!/bin/sh\nif [ \"$1\" = env ]; then cat <<'EOF'\nexport TAZ_T='a'\\''b'\nEOF\nexit 0; fi\necho real-tazpod \"$@\"\n",
        )
        .unwrap();
        std::fs::write(bin.join("gemini"), "#!/bin/sh\necho gemini-ran \"$@\"\n").unwrap();
        for f in ["tazpod", "gemini"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(bin.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let init = shell_init(ShellKind::Bash, &["gemini".into()]);
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let run = |ghost: bool, body: &str| {
            let mut c = Command::new(bash);
            c.arg("-c")
                .arg(format!("{init}\n{body}"))
                .env("PATH", &path)
                .stdin(std::process::Stdio::null());
            if ghost {
                c.env("TAZPOD_GHOST_MODE", "true");
            } else {
                c.env_remove("TAZPOD_GHOST_MODE");
            }
            c.output().unwrap()
        };
        let o = run(false, "gemini hi");
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("the vault is locked"));
        assert!(o.stdout.is_empty());
        let o = run(true, "gemini hi");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "gemini-ran hi\n");
        let o = run(true, "tazpod env && printf '%s' \"$TAZ_T\"");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "a'b");
        let o = run(true, "tazpod status x");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "real-tazpod status x\n");
        // zsh, when installed, at least parses it.
        for zsh in ["/bin/zsh", "/usr/bin/zsh"] {
            if std::path::Path::new(zsh).exists() {
                let z = shell_init(ShellKind::Zsh, &["gemini".into()]);
                let o = Command::new(zsh)
                    .arg("-n")
                    .arg("-c")
                    .arg(z)
                    .output()
                    .unwrap();
                assert!(o.status.success());
            }
        }
    }
}
