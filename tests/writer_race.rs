//! Concurrent header writers on one image: two writers started at the same moment, 20 rounds
//! for each pair (tazpod add-key / add-key, add-key / remove-key, add-key / change-key, and
//! tazpod add-key / cryptsetup luksAddKey). Every writer that exits 0 must find its change in
//! the result, a refused one must exit non-zero with nothing of its change written, and the
//! volume's own passphrase must keep opening it: no key is ever lost. A few rounds run with no
//! wait at all (`TAZPOD_LOCK_TIMEOUT_MS=0`), where the loser is refused with exit 5.
//!
//! `TAZPOD_RACE_BIN` runs the rounds against another tazpod binary (to show what an unlocked
//! writer loses); the report line gives rounds, refusals and keys lost.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Cheap KDF options for tazpod's new keyslots.
const CHEAP: &[&str] = &["--pbkdf-force-iterations", "4", "--pbkdf-memory", "32"];
const ROUNDS: usize = 20;

fn bin() -> String {
    std::env::var("TAZPOD_RACE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tazpod").into())
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn spawn(program: &str, args: &[String], no_wait: bool) -> Child {
    let mut c = Command::new(program);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if no_wait {
        c.env("TAZPOD_LOCK_TIMEOUT_MS", "0");
    }
    c.spawn().unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Whether the key in `key` opens `img` (tazpod's test, checked against cryptsetup's).
fn opens(img: &Path, key: &Path, cs: bool) -> bool {
    let o = Command::new(env!("CARGO_BIN_EXE_tazpod"))
        .args(["open", "--test-passphrase", "--key-file", &p(key), &p(img)])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let code = o.status.code();
    assert!(
        code == Some(0) || code == Some(2),
        "tazpod open --test-passphrase: {code:?} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ours = code == Some(0);
    if cs {
        let o = Command::new("cryptsetup")
            .args(["open", "--test-passphrase", "--key-file", &p(key), &p(img)])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            o.status.code() == Some(0),
            ours,
            "cryptsetup and tazpod disagree on {}: {}",
            key.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    ours
}

/// The second writer of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Other {
    Add,
    Remove,
    Change,
    CryptsetupAdd,
}

struct Keys {
    base: PathBuf,
    a: PathBuf,
    b: PathBuf,
    /// The second passphrase of the template (removed or changed by `Other`).
    second: PathBuf,
}

/// A template volume with keyslots for `base` and `second`.
fn template(dir: &Path, k: &Keys) -> PathBuf {
    let img = dir.join("template.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(20 << 20)
        .unwrap();
    let mut a: Vec<String> = ["format", "-q", "--key-file", &p(&k.base), &p(&img)]
        .map(String::from)
        .to_vec();
    a.extend(CHEAP.iter().map(|s| s.to_string()));
    let o = Command::new(env!("CARGO_BIN_EXE_tazpod"))
        .args(&a)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut a: Vec<String> = [
        "add-key",
        "--key-file",
        &p(&k.base),
        &p(&img),
        "--new-keyfile",
        &p(&k.second),
    ]
    .map(String::from)
    .to_vec();
    a.extend(CHEAP.iter().map(|s| s.to_string()));
    let o = Command::new(env!("CARGO_BIN_EXE_tazpod"))
        .args(&a)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    img
}

#[derive(Default, Debug)]
struct Tally {
    rounds: usize,
    refused: usize,
    lost: usize,
}

/// One round: tazpod add-key (key `a`) against `other`, both started together.
fn round(img: &Path, k: &Keys, other: Other, no_wait: bool, cs: bool, t: &mut Tally) {
    let mut add: Vec<String> = [
        "add-key",
        "--key-file",
        &p(&k.base),
        &p(img),
        "--new-keyfile",
        &p(&k.a),
    ]
    .map(String::from)
    .to_vec();
    add.extend(CHEAP.iter().map(|s| s.to_string()));
    let (prog, mut args): (String, Vec<String>) = match other {
        Other::Add => (
            bin(),
            [
                "add-key",
                "--key-file",
                &p(&k.base),
                &p(img),
                "--new-keyfile",
                &p(&k.b),
            ]
            .map(String::from)
            .to_vec(),
        ),
        Other::Remove => (
            bin(),
            ["remove-key", "--key-file", &p(&k.second), &p(img)]
                .map(String::from)
                .to_vec(),
        ),
        Other::Change => (
            bin(),
            [
                "change-key",
                "--key-file",
                &p(&k.second),
                &p(img),
                "--new-keyfile",
                &p(&k.b),
            ]
            .map(String::from)
            .to_vec(),
        ),
        Other::CryptsetupAdd => (
            "cryptsetup".into(),
            [
                "luksAddKey",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--key-file",
                &p(&k.base),
                &p(img),
                &p(&k.b),
            ]
            .map(String::from)
            .to_vec(),
        ),
    };
    if matches!(other, Other::Add | Other::Change) {
        args.extend(CHEAP.iter().map(|s| s.to_string()));
    }
    let first = spawn(&bin(), &add, no_wait);
    let second = spawn(&prog, &args, no_wait);
    let a = first.wait_with_output().unwrap();
    let b = second.wait_with_output().unwrap();
    t.rounds += 1;
    let what = format!("{other:?} round {} (no wait: {no_wait})", t.rounds);
    for (o, name) in [(&a, "add-key"), (&b, "the other writer")] {
        if !o.status.success() {
            t.refused += 1;
            let err = String::from_utf8_lossy(&o.stderr);
            if name == "add-key" || other != Other::CryptsetupAdd {
                assert_eq!(o.status.code(), Some(5), "{what}: {name} refused: {err}");
            }
            eprintln!(
                "{what}: {name} refused: {}",
                err.lines().next().unwrap_or("")
            );
        }
    }
    let mut lost = Vec::new();
    if !opens(img, &k.base, cs) {
        lost.push("the base passphrase");
    }
    if opens(img, &k.a, cs) != a.status.success() {
        lost.push("add-key's key (exit status and result differ)");
    }
    match other {
        Other::Add | Other::CryptsetupAdd => {
            if opens(img, &k.b, cs) != b.status.success() {
                lost.push("the second add's key (exit status and result differ)");
            }
        }
        Other::Remove => {
            if opens(img, &k.second, cs) == b.status.success() {
                lost.push("remove-key's change (exit status and result differ)");
            }
        }
        Other::Change => {
            let done = b.status.success();
            if opens(img, &k.b, cs) != done || opens(img, &k.second, cs) == done {
                lost.push("change-key's change (exit status and result differ)");
            }
        }
    }
    if !lost.is_empty() {
        eprintln!("{what}: LOST {lost:?}");
        t.lost += lost.len();
    }
}

#[test]
fn concurrent_writers_never_lose_a_key() {
    let cs = common::have("cryptsetup", "its race rounds and checks");
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str, v: &[u8]| {
        let f = dir.path().join(name);
        std::fs::write(&f, v).unwrap();
        f
    };
    let k = Keys {
        base: key("base.key", b"base passphrase"),
        a: key("a.key", b"key of writer a"),
        b: key("b.key", b"key of writer b"),
        second: key("second.key", b"second passphrase"),
    };
    let tpl = template(dir.path(), &k);
    let img = dir.path().join("race.img");
    let mut pairs = vec![Other::Add, Other::Remove, Other::Change];
    if cs {
        pairs.push(Other::CryptsetupAdd);
    }
    let mut total = Tally::default();
    for other in pairs {
        let mut t = Tally::default();
        for i in 0..ROUNDS + 3 {
            std::fs::copy(&tpl, &img).unwrap();
            // The last three rounds of each pair do not wait for the lock: one side may be
            // refused (exit 5), and must then have written nothing.
            let no_wait = i >= ROUNDS && other != Other::CryptsetupAdd;
            round(&img, &k, other, no_wait, cs, &mut t);
        }
        eprintln!(
            "{other:?}: {} rounds, {} refused, {} keys lost",
            t.rounds, t.refused, t.lost
        );
        total.rounds += t.rounds;
        total.refused += t.refused;
        total.lost += t.lost;
    }
    eprintln!(
        "race summary: {} rounds, {} writers refused, {} keys lost",
        total.rounds, total.refused, total.lost
    );
    assert_eq!(total.lost, 0, "concurrent writers lost keys");
}
