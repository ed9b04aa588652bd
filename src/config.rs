//! The ghost-mode configuration: TOML in `/etc/tazpod/config.toml` and
//! `~/.config/tazpod/config.toml` (or `--config FILE`), the user's file over the system's,
//! command-line flags over both.
//!
//! ```toml
//! vault = "/workspace/.tazpod-vault/vault.img"
//! mount = "~/secrets"            # ~ is the session user's home
//! user = "tazpod"                # or a uid: user = 1000
//! shell = "/bin/bash"            # default: the user's login shell
//! no_new_privs = false
//!
//! [[bind]]                       # a directory inside the vault over a path of the user
//! source = ".gcloud"             # relative to the vault's root
//! target = "~/.config/gcloud"
//! readonly = false
//!
//! [[secret]]                     # a file inside the vault as an environment variable
//! env = "GITHUB_TOKEN"
//! file = "tokens/github"
//! as = "value"                   # the file's content (trailing newlines removed); or "path"
//! ```
//!
//! Scalars of a later layer replace earlier ones; `bind` entries with the same `target` and
//! `secret` entries with the same `env` replace earlier ones, others are added.

use crate::shell::valid_env_name;
use serde::Deserialize;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// The system-wide configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/tazpod/config.toml";
/// The user's configuration file, relative to the home directory.
pub const USER_CONFIG: &str = ".config/tazpod/config.toml";
/// Default vault image (TazPod's).
pub const DEFAULT_VAULT: &str = "/workspace/.tazpod-vault/vault.img";
/// Default mount point: `~/secrets`, that is `/home/tazpod/secrets` for TazPod's user.
pub const DEFAULT_MOUNT: &str = "~/secrets";
/// Default user (TazPod's).
pub const DEFAULT_USER: &str = "tazpod";
/// The uid assumed for the default user when the passwd database has no `tazpod`.
pub const DEFAULT_UID: u32 = 1000;

/// A user, by name or by uid.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum UserSpec {
    /// A uid.
    Uid(u32),
    /// A login name.
    Name(String),
}

impl UserSpec {
    /// `--user` value: digits are a uid, anything else a name.
    pub fn parse(s: &str) -> UserSpec {
        match s.parse::<u32>() {
            Ok(u) => UserSpec::Uid(u),
            Err(_) => UserSpec::Name(s.to_string()),
        }
    }
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSpec::Uid(u) => write!(f, "{u}"),
            UserSpec::Name(n) => f.write_str(n),
        }
    }
}

/// A `[[bind]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindEntry {
    /// Directory inside the vault, relative to its root.
    pub source: PathBuf,
    /// Where it appears (absolute, or `~/...`).
    pub target: PathBuf,
    /// Mount it read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// What a secret variable holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretKind {
    /// The file's content.
    #[default]
    Value,
    /// The file's path.
    Path,
}

/// A `[[secret]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretEntry {
    /// Environment variable name.
    pub env: String,
    /// File inside the vault, relative to its root.
    pub file: PathBuf,
    /// Value or path.
    #[serde(default, rename = "as")]
    pub kind: SecretKind,
}

/// One configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The vault image.
    pub vault: Option<PathBuf>,
    /// The mount point.
    pub mount: Option<PathBuf>,
    /// The session user.
    pub user: Option<UserSpec>,
    /// The shell to run.
    pub shell: Option<PathBuf>,
    /// Set `PR_SET_NO_NEW_PRIVS` in the session.
    pub no_new_privs: Option<bool>,
    /// Bind mounts.
    #[serde(default)]
    pub bind: Vec<BindEntry>,
    /// The secrets map.
    #[serde(default)]
    pub secret: Vec<SecretEntry>,
}

/// A configuration problem, naming the file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or "command line").
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}: {}", self.origin, self.message)
    }
}

fn err(origin: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        origin: origin.to_string(),
        message: message.into(),
    }
}

/// A TOML error as "MESSAGE (line L, column C)": never the offending line itself, which
/// `toml`'s own `Display` quotes (a root process must not print a line of a file it read).
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{msg} (line {line}, column {col})")
        }
        None => msg.to_string(),
    }
}

/// A path inside the vault: relative, not empty, without `..`.
fn inside_vault(p: &Path) -> bool {
    !p.as_os_str().is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && p.components().any(|c| matches!(c, Component::Normal(_)))
}

/// Absolute, or `~` / `~/...`.
fn absolute_or_home(p: &Path) -> bool {
    p.is_absolute() || p == Path::new("~") || p.starts_with("~")
}

/// Names the session sets itself, which the secrets map may not override.
const RESERVED_ENV: &[&str] = &["HOME", "USER", "LOGNAME", "SHELL", "PATH"];

impl ConfigFile {
    /// Parses and checks one file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
        let c: ConfigFile = toml::from_str(text).map_err(|e| err(origin, toml_error(text, &e)))?;
        c.check(origin)?;
        Ok(c)
    }

    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        if let Some(v) = &self.vault {
            if !absolute_or_home(v) {
                return Err(err(
                    origin,
                    format!("vault {} must be an absolute path", v.display()),
                ));
            }
        }
        if let Some(m) = &self.mount {
            if !absolute_or_home(m) {
                return Err(err(
                    origin,
                    format!(
                        "mount {} must be an absolute path or start with ~/",
                        m.display()
                    ),
                ));
            }
        }
        for b in &self.bind {
            if !inside_vault(&b.source) {
                return Err(err(
                    origin,
                    format!(
                        "bind source {} must be a relative path inside the vault, without ..",
                        b.source.display()
                    ),
                ));
            }
            if !absolute_or_home(&b.target) {
                return Err(err(
                    origin,
                    format!(
                        "bind target {} must be an absolute path or start with ~/",
                        b.target.display()
                    ),
                ));
            }
        }
        for s in &self.secret {
            if !valid_env_name(&s.env) {
                return Err(err(
                    origin,
                    format!("secret env {:?} is not a valid variable name", s.env),
                ));
            }
            if s.env.starts_with("TAZPOD_") || RESERVED_ENV.contains(&s.env.as_str()) {
                return Err(err(
                    origin,
                    format!("secret env {} is set by tazpod itself", s.env),
                ));
            }
            if !inside_vault(&s.file) {
                return Err(err(
                    origin,
                    format!(
                        "secret file {} must be a relative path inside the vault, without ..",
                        s.file.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Lays `over` on top of `self`.
    pub fn merge(mut self, over: ConfigFile) -> ConfigFile {
        self.vault = over.vault.or(self.vault);
        self.mount = over.mount.or(self.mount);
        self.user = over.user.or(self.user);
        self.shell = over.shell.or(self.shell);
        self.no_new_privs = over.no_new_privs.or(self.no_new_privs);
        for b in over.bind {
            match self.bind.iter_mut().find(|x| x.target == b.target) {
                Some(x) => *x = b,
                None => self.bind.push(b),
            }
        }
        for s in over.secret {
            match self.secret.iter_mut().find(|x| x.env == s.env) {
                Some(x) => *x = s,
                None => self.secret.push(s),
            }
        }
        self
    }
}

/// What the command line says (each `Some` wins over the files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--vault`.
    pub vault: Option<PathBuf>,
    /// `--mount`.
    pub mount: Option<PathBuf>,
    /// `--user`.
    pub user: Option<UserSpec>,
    /// `--shell`.
    pub shell: Option<PathBuf>,
    /// `--no-new-privs`.
    pub no_new_privs: bool,
}

/// The effective settings of a session, `~` not yet expanded (it needs the user's home).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The vault image.
    pub vault: PathBuf,
    /// The mount point.
    pub mount: PathBuf,
    /// The user, if flags or files name one (else the caller's default applies).
    pub user: Option<UserSpec>,
    /// The shell, if named.
    pub shell: Option<PathBuf>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// Bind mounts.
    pub binds: Vec<BindEntry>,
    /// The secrets map.
    pub secrets: Vec<SecretEntry>,
}

impl Settings {
    /// Flags over `files` (already merged) over the defaults.
    pub fn resolve(files: ConfigFile, flags: &Flags) -> Settings {
        Settings {
            vault: flags
                .vault
                .clone()
                .or(files.vault)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_VAULT)),
            mount: flags
                .mount
                .clone()
                .or(files.mount)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_MOUNT)),
            user: flags.user.clone().or(files.user),
            shell: flags.shell.clone().or(files.shell),
            no_new_privs: flags.no_new_privs || files.no_new_privs.unwrap_or(false),
            binds: files.bind,
            secrets: files.secret,
        }
    }
}

/// Replaces a leading `~` with `home`.
pub fn expand_home(p: &Path, home: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) if rest.as_os_str().is_empty() => home.to_path_buf(),
        Ok(rest) => home.join(rest),
        Err(_) => p.to_path_buf(),
    }
}

/// Reads configuration files with one user's filesystem rights (a root process reads only
/// what that user may read).
pub trait ConfigReader {
    /// What goes wrong while reading (taking the rights, reading the file).
    type Error;
    /// The text of the regular file `path` (at most 1 MiB); `Ok(None)` when it does not exist.
    /// Errors never quote the file.
    fn read_text(&self, path: &Path) -> Result<Option<String>, Self::Error>;
    /// The home directory whose `~/.config/tazpod/config.toml` is this reader's.
    fn home(&self) -> Option<PathBuf>;
}

/// Why the configuration cannot be loaded; `E` is the reader's error.
#[derive(Debug)]
pub enum LoadError<E> {
    /// The reader failed.
    Read(E),
    /// A file does not parse, or breaks a rule.
    Parse(ConfigError),
    /// The file given explicitly (`--config`) does not exist.
    NotFound { path: PathBuf },
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Read(e) => e.fmt(f),
            LoadError::Parse(e) => e.fmt(f),
            LoadError::NotFound { path } => write!(f, "config file {} not found", path.display()),
        }
    }
}

/// Reads and parses one config file with `reader`'s rights; `Ok(None)` when it does not exist.
fn read_config<R: ConfigReader + ?Sized>(
    path: &Path,
    reader: &R,
) -> Result<Option<ConfigFile>, LoadError<R::Error>> {
    let shown = path.display().to_string();
    let Some(text) = reader.read_text(path).map_err(LoadError::Read)? else {
        return Ok(None);
    };
    ConfigFile::parse(&text, &shown)
        .map(Some)
        .map_err(LoadError::Parse)
}

/// The configuration: [`SYSTEM_CONFIG`] read by `system`, then `explicit` (which must exist)
/// or the user's `~/.config/tazpod/config.toml` read by `user`, the later overriding the
/// earlier.
pub fn load<R: ConfigReader + ?Sized>(
    explicit: Option<&Path>,
    system: &R,
    user: &R,
) -> Result<ConfigFile, LoadError<R::Error>> {
    let mut merged = ConfigFile::default();
    if let Some(sys) = read_config(Path::new(SYSTEM_CONFIG), system)? {
        merged = merged.merge(sys);
    }
    let user_path = explicit
        .map(Path::to_path_buf)
        .or_else(|| user.home().map(|h| h.join(USER_CONFIG)));
    if let Some(p) = user_path {
        match read_config(&p, user)? {
            Some(c) => merged = merged.merge(c),
            None if explicit.is_some() => return Err(LoadError::NotFound { path: p }),
            None => {}
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn full_file_parses() {
        let c = ConfigFile::parse(
            r#"
vault = "/v/vault.img"
mount = "~/sec"
user = 1001
shell = "/bin/zsh"
no_new_privs = true
[[bind]]
source = ".gcloud"
target = "~/.config/gcloud"
[[bind]]
source = "kube/conf"
target = "/home/x/.kube"
readonly = true
[[secret]]
env = "GH_TOKEN"
file = "tokens/gh"
[[secret]]
env = "GOOGLE_APPLICATION_CREDENTIALS"
file = ".gcloud/key.json"
as = "path"
"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.user, Some(UserSpec::Uid(1001)));
        assert_eq!(c.bind.len(), 2);
        assert!(c.bind[1].readonly);
        assert_eq!(c.secret[0].kind, SecretKind::Value);
        assert_eq!(c.secret[1].kind, SecretKind::Path);
        let named = ConfigFile::parse("user = \"bob\"", "t").unwrap();
        assert_eq!(named.user, Some(UserSpec::Name("bob".into())));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let s = Settings::resolve(ConfigFile::parse("", "t").unwrap(), &Flags::default());
        assert_eq!(s.vault, PathBuf::from("/workspace/.tazpod-vault/vault.img"));
        assert_eq!(
            expand_home(&s.mount, Path::new("/home/tazpod")),
            PathBuf::from("/home/tazpod/secrets")
        );
        assert_eq!(s.user, None);
        assert!(!s.no_new_privs);
        assert!(s.binds.is_empty() && s.secrets.is_empty());
    }

    #[test]
    fn parse_errors_give_line_and_column_never_the_line() {
        let text = "# x\nroot:$y$j9T$secrethash:19000:0:99999:7:::\n";
        let e = ConfigFile::parse(text, "/etc/shadow").unwrap_err();
        assert!(!e.message.contains("secrethash"), "{e}");
        assert!(!e.message.contains("root:"), "{e}");
        assert!(e.message.contains("line 2, column"), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let e = ConfigFile::parse("vaultt = \"/x\"", "/etc/tazpod/config.toml").unwrap_err();
        assert_eq!(e.origin, "/etc/tazpod/config.toml");
        assert!(e.message.contains("vaultt"), "{e}");
        assert!(e
            .to_string()
            .starts_with("config /etc/tazpod/config.toml: "));
        for (text, what) in [
            ("vault = \"rel/v.img\"", "absolute"),
            ("mount = \"rel\"", "absolute"),
            (
                "[[bind]]\nsource = \"../x\"\ntarget = \"~/x\"",
                "inside the vault",
            ),
            (
                "[[bind]]\nsource = \"/etc\"\ntarget = \"~/x\"",
                "inside the vault",
            ),
            ("[[bind]]\nsource = \"x\"\ntarget = \"rel\"", "absolute"),
            ("[[secret]]\nenv = \"A-B\"\nfile = \"x\"", "valid variable"),
            ("[[secret]]\nenv = \"HOME\"\nfile = \"x\"", "set by tazpod"),
            (
                "[[secret]]\nenv = \"TAZPOD_X\"\nfile = \"x\"",
                "set by tazpod",
            ),
            (
                "[[secret]]\nenv = \"A\"\nfile = \"a/../../x\"",
                "inside the vault",
            ),
            (
                "[[secret]]\nenv = \"A\"\nfile = \"x\"\nas = \"blob\"",
                "blob",
            ),
            ("[[secret]]\nenv = \"A\"\nfile = \".\"", "inside the vault"),
            ("user = -1", "line 1, column 8"),
        ] {
            let e = ConfigFile::parse(text, "f").unwrap_err();
            assert!(e.message.contains(what), "{text}: {e}");
        }
    }

    #[test]
    fn user_file_over_system_file_and_flags_over_both() {
        let sys = ConfigFile::parse(
            r#"
vault = "/sys/v.img"
mount = "/sys/mnt"
user = "tazpod"
[[bind]]
source = "a"
target = "~/a"
[[bind]]
source = "b"
target = "~/b"
[[secret]]
env = "A"
file = "a"
"#,
            "sys",
        )
        .unwrap();
        let user = ConfigFile::parse(
            r#"
mount = "~/m"
[[bind]]
source = "b2"
target = "~/b"
readonly = true
[[secret]]
env = "A"
file = "a2"
as = "path"
[[secret]]
env = "B"
file = "b"
"#,
            "user",
        )
        .unwrap();
        let merged = sys.merge(user);
        assert_eq!(merged.vault, Some("/sys/v.img".into()));
        assert_eq!(merged.mount, Some("~/m".into()));
        assert_eq!(merged.user, Some(UserSpec::Name("tazpod".into())));
        assert_eq!(
            merged.bind,
            vec![
                BindEntry {
                    source: "a".into(),
                    target: "~/a".into(),
                    readonly: false
                },
                BindEntry {
                    source: "b2".into(),
                    target: "~/b".into(),
                    readonly: true
                },
            ]
        );
        assert_eq!(merged.secret.len(), 2);
        assert_eq!(merged.secret[0].file, PathBuf::from("a2"));
        assert_eq!(merged.secret[0].kind, SecretKind::Path);
        let flags = Flags {
            vault: Some("/flag/v.img".into()),
            mount: None,
            user: Some(UserSpec::parse("1002")),
            shell: Some("/bin/sh".into()),
            no_new_privs: true,
        };
        let s = Settings::resolve(merged, &flags);
        assert_eq!(s.vault, PathBuf::from("/flag/v.img"));
        assert_eq!(s.mount, PathBuf::from("~/m"));
        assert_eq!(s.user, Some(UserSpec::Uid(1002)));
        assert_eq!(s.shell, Some("/bin/sh".into()));
        assert!(s.no_new_privs);
    }

    #[test]
    fn home_expansion() {
        let h = Path::new("/home/u");
        assert_eq!(expand_home(Path::new("~"), h), PathBuf::from("/home/u"));
        assert_eq!(
            expand_home(Path::new("~/x/y"), h),
            PathBuf::from("/home/u/x/y")
        );
        assert_eq!(expand_home(Path::new("/abs"), h), PathBuf::from("/abs"));
        assert_eq!(expand_home(Path::new("~bob/x"), h), PathBuf::from("~bob/x"));
    }

    #[test]
    fn user_spec_parse() {
        assert_eq!(UserSpec::parse("1000"), UserSpec::Uid(1000));
        assert_eq!(UserSpec::parse("tazpod"), UserSpec::Name("tazpod".into()));
        assert_eq!(UserSpec::Uid(5).to_string(), "5");
    }

    #[test]
    fn load_errors_convert() {
        use crate::error::code;
        use crate::error::testing::{assert_converts, denied};
        use crate::ghost::caller::CallerError;
        let denied = denied();
        let load = |e| LoadError::<CallerError>::Read(e);
        let parse = || ConfigFile::parse("vaultt = 1", "/c.toml").unwrap_err();
        assert_converts(vec![
            (
                load(CallerError::ReadConfig {
                    path: "/c.toml".into(),
                    error: crate::error::testing::denied(),
                }),
                code::INVALID,
                format!("cannot read config /c.toml: {denied}"),
                None,
            ),
            (
                LoadError::Parse(parse()),
                code::INVALID,
                format!("config /c.toml: {}", parse().message),
                Some("fix or remove the file"),
            ),
            (
                LoadError::NotFound {
                    path: "/c.toml".into(),
                },
                code::INVALID,
                "config file /c.toml not found".into(),
                None,
            ),
        ]);
    }
}
