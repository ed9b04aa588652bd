//! Vault creation on the host (`tazpod init`, `tazpod unlock` of a missing vault): every
//! refusal comes before anything is created and leaves nothing; with root, the passphrase is
//! asked twice and a mismatch exits 2, `--force` waits for a typed YES, and a creation that
//! fails half-way (no device-mapper here) removes what it made. The whole creation, with a
//! real kernel, is in tests/guest/ghost.sh.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing
)]

mod common;
use common::openpty;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHEAP: [&str; 4] = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

fn tazpod(args: &[&str], stdin: Option<&[u8]>) -> Output {
    tazpod_env(args, stdin, &[])
}

/// [`tazpod`] with extra environment variables (`SUDO_UID`... as sudo sets them); without
/// them it runs as real root, whatever the test runner's environment holds.
fn tazpod_env(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tazpod"))
        .args(args)
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        // Past the up-front device-mapper check, to the creation steps this host can run.
        .env("TAZPOD_SKIP_PREFLIGHT", "1")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Never reach a real sudo from a test: as a user, the checks before it are tested.
        .env("PATH", "/nonexistent")
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let _ = child.stdin.take().unwrap().write_all(input);
    }
    child.wait_with_output().unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn mkfs_present() -> bool {
    ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .any(|d| Path::new(d).join("mkfs.ext4").exists())
}

struct Dir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    key: String,
}

fn dir() -> Dir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let key = root.join("key");
    std::fs::write(&key, b"a new vault key").unwrap();
    Dir {
        key: key.display().to_string(),
        _tmp: tmp,
        root,
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Everything under `d` but the key file.
fn made(d: &Dir) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(&d.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "key")
        .collect();
    v.sort();
    v
}

#[test]
fn init_refuses_an_existing_vault_without_force() {
    let d = dir();
    let vault = d.root.join("vault.img");
    std::fs::write(&vault, b"an old vault").unwrap();
    for extra in [&[][..], &["--batch-mode"][..]] {
        let mut args = vec![
            "init",
            "--vault",
            &vault.to_str().unwrap(),
            "--key-file",
            &d.key,
        ];
        args.extend_from_slice(extra);
        let o = tazpod(&args, None);
        assert_eq!(o.status.code(), Some(1), "{}", err(&o));
        assert!(err(&o).contains("already exists"), "{}", err(&o));
        assert!(err(&o).contains("--force"), "{}", err(&o));
    }
    assert_eq!(std::fs::read(&vault).unwrap(), b"an old vault");
    assert_eq!(made(&d), ["vault.img"]);
}

#[test]
fn bad_sizes_are_refused_before_anything_is_made() {
    let d = dir();
    let vault = s(&d.root.join("sub/vault.img"));
    for (size, says) in [
        ("12X", "--size"),
        ("0", "cannot be empty"),
        ("1.5G", "not a size"),
        ("8M", "too small"),
        ("16M", "at least 17 MiB"),
        ("33554433", "multiple of 4096"),
    ] {
        let mut args = vec![
            "init",
            "--vault",
            &vault,
            "--key-file",
            &d.key,
            "--size",
            size,
        ];
        args.extend_from_slice(&CHEAP);
        let o = tazpod(&args, None);
        assert_eq!(o.status.code(), Some(1), "--size {size}: {}", err(&o));
        assert!(err(&o).contains(says), "--size {size}: {}", err(&o));
    }
    let o = tazpod(
        &[
            "init",
            "--vault",
            &vault,
            "--key-file",
            &d.key,
            "--pbkdf",
            "scrypt",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("unknown PBKDF"), "{}", err(&o));
    assert!(made(&d).is_empty(), "{:?}", made(&d));
}

#[test]
fn a_new_vault_passphrase_is_never_read_from_a_pipe() {
    let d = dir();
    let vault = s(&d.root.join("sub/vault.img"));
    let mount = s(&d.root.join("m"));
    for args in [
        vec!["init", "--vault", &vault],
        vec!["unlock", "--vault", &vault, "--mount", &mount, "--", "true"],
    ] {
        let o = tazpod(&args, Some(b"piped passphrase\n"));
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", err(&o));
        assert!(err(&o).contains("asked twice"), "{args:?}: {}", err(&o));
        assert!(err(&o).contains("--key-file -"), "{args:?}: {}", err(&o));
        assert!(!err(&o).contains("piped passphrase"));
    }
    assert!(made(&d).is_empty(), "{:?}", made(&d));
}

#[test]
fn a_missing_vault_is_not_created_read_only() {
    let d = dir();
    let vault = s(&d.root.join("vault.img"));
    let o = tazpod(
        &[
            "unlock",
            "--vault",
            &vault,
            "--key-file",
            &d.key,
            "--readonly",
            "--",
            "true",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("read-only"), "{}", err(&o));
    assert!(made(&d).is_empty());
}

#[test]
fn help_describes_creation() {
    let o = tazpod(&["init", "--help"], None);
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "--size",
        "512M",
        "--force",
        "--batch-mode",
        "--pbkdf",
        "--key-file",
    ] {
        assert!(out.contains(want), "init --help lacks {want}: {out}");
    }
    let o = tazpod(&["unlock", "--help"], None);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Creating a vault"), "{out}");
    assert!(out.contains("--size"), "{out}");
}

// ---- as root: the prompts, and a creation that fails half-way --------------------------------

const TIME_LIMIT: Duration = Duration::from_secs(120);

/// Runs tazpod with its standard input on a terminal, answering each prompt (passphrase,
/// verification, confirmation: read from its standard error) with the next of `lines`.
fn tazpod_on_tty(args: &[&str], lines: &[&[u8]]) -> (i32, String) {
    let (master, slave) = openpty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tazpod"))
        .env("TAZPOD_SKIP_PREFLIGHT", "1")
        .args(args)
        .stdin(Stdio::from(slave))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(master);
    let mut errs = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut answered = 0;
    let mut buf = [0u8; 4096];
    loop {
        let n = errs.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        let prompts = text.matches("Enter passphrase").count()
            + text.matches("Verify passphrase").count()
            + text.matches("Are you sure?").count();
        while answered < prompts && answered < lines.len() {
            // Give the child time to turn echo off (TCSAFLUSH) after printing the prompt.
            std::thread::sleep(Duration::from_millis(300));
            master.write_all(lines[answered]).unwrap();
            master.write_all(b"\n").unwrap();
            answered += 1;
        }
        assert!(start.elapsed() < TIME_LIMIT, "no end within {TIME_LIMIT:?}");
    }
    let status = child.wait().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&seen).into_owned(),
    )
}

#[test]
fn mismatched_passphrases_exit_2_and_create_nothing() {
    if !is_root() || !mkfs_present() {
        eprintln!("skipped: needs root (the prompts are asked by the root process) and mkfs.ext4");
        return;
    }
    let d = dir();
    let vault = s(&d.root.join("sub/vault.img"));
    let mut args = vec!["init", "--vault", &vault, "--size", "32M"];
    args.extend_from_slice(&CHEAP);
    let (code, out) = tazpod_on_tty(&args, &[b"first-secret", b"other-secret"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("Enter passphrase for"), "{out}");
    assert!(out.contains("Verify passphrase: "), "{out}");
    assert!(out.contains("do not match"), "{out}");
    assert!(
        !out.contains("first-secret") && !out.contains("other-secret"),
        "{out}"
    );
    assert!(made(&d).is_empty(), "{:?}", made(&d));
}

#[test]
fn force_waits_for_a_typed_yes() {
    if !is_root() || !mkfs_present() {
        eprintln!(
            "skipped: needs root (the confirmation is asked by the root process) and mkfs.ext4"
        );
        return;
    }
    let d = dir();
    let vault = d.root.join("vault.img");
    std::fs::write(&vault, b"an old vault").unwrap();
    let v = s(&vault);
    let mut args = vec!["init", "--vault", &v, "--force", "--key-file", &d.key];
    args.extend_from_slice(&CHEAP);
    for answer in [&b"no"[..], b"yes", b""] {
        let (code, out) = tazpod_on_tty(&args, &[answer]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("will replace the vault"), "{out}");
        assert!(out.contains("Type 'yes' in capital letters"), "{out}");
        assert!(out.contains("operation aborted"), "{out}");
    }
    assert_eq!(std::fs::read(&vault).unwrap(), b"an old vault");
    assert_eq!(made(&d), ["vault.img"]);
}

#[test]
fn a_creation_that_fails_half_way_leaves_nothing() {
    if !is_root() || !mkfs_present() {
        eprintln!("skipped: needs root and mkfs.ext4");
        return;
    }
    // Without device-mapper (this host), the mapping fails after the image and its header
    // were made; with it, the vault is complete. Either way nothing half-made is left.
    let d = dir();
    let vault = d.root.join("a/b/vault.img");
    let v = s(&vault);
    let mut args = vec!["init", "--vault", &v, "--key-file", &d.key, "--size", "32M"];
    args.extend_from_slice(&CHEAP);
    let o = tazpod(&args, None);
    if o.status.success() {
        assert_eq!(std::fs::metadata(&vault).unwrap().len(), 32 << 20);
        let o = tazpod(
            &["open", "--test-passphrase", "--key-file", &d.key, &v],
            None,
        );
        assert!(o.status.success(), "{}", err(&o));
        assert_eq!(std::fs::read_dir(d.root.join("a/b")).unwrap().count(), 1);
    } else {
        assert!(err(&o).contains("cannot create the vault"), "{}", err(&o));
        assert!(err(&o).contains("nothing was left behind"), "{}", err(&o));
        assert!(made(&d).is_empty(), "{:?}", made(&d));
    }
}

#[test]
fn the_image_is_made_with_the_callers_rights() {
    if !is_root() || !mkfs_present() {
        eprintln!("skipped: needs root and mkfs.ext4");
        return;
    }
    // As sudo runs it: SUDO_UID names the caller (here nobody), who cannot write in a
    // root-only directory, so nothing is made there.
    let d = dir();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d.root, std::fs::Permissions::from_mode(0o700)).unwrap();
    // The key file must be one nobody may read (it is read with the caller's rights).
    let keys = tempfile::tempdir().unwrap();
    std::fs::set_permissions(keys.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = keys.path().join("key");
    std::fs::copy(&d.key, &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let key = s(&key);
    let v = s(&d.root.join("sub/vault.img"));
    let mut args = vec!["init", "--vault", &v, "--key-file", &key, "--size", "32M"];
    args.extend_from_slice(&CHEAP);
    let sudo = [("SUDO_UID", "65534"), ("SUDO_GID", "65534")];
    let o = tazpod_env(&args, None, &sudo);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert!(err(&o).contains("Permission denied"), "{}", err(&o));
    assert!(err(&o).contains("choose a --vault path"), "{}", err(&o));
    assert!(made(&d).is_empty(), "{:?}", made(&d));
}
