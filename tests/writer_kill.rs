//! Every writing verb killed (SIGKILL, through `strace`'s fault injection) at each of its
//! `pwrite64` calls and at each of its `fsync` calls: `format` over an existing header,
//! `add-key`, `change-key`, `remove-key`, `kill-slot` and `config`. After every kill the image
//! must open with the old passphrases or with the new ones, never neither, for tazpod and
//! cryptsetup alike, and `cryptsetup repair` of a copy must keep every passphrase that opened.
//! (Torn writes, a crash in the middle of one write, are `luks2/tests/format_crash.rs`.)
//! Needs `strace` (the test command installs it) and says SKIPPING loudly without it.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHEAP: &[&str] = &["--pbkdf-force-iterations", "4", "--pbkdf-memory", "32"];

fn tz() -> &'static str {
    env!("CARGO_BIN_EXE_tazpod")
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn run(program: &str, args: &[String]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Which of `keys` open `img`: tazpod's answer, checked against cryptsetup's.
fn opens(img: &Path, keys: &[&Path], cs: bool) -> Vec<bool> {
    keys.iter()
        .map(|k| {
            let args =
                ["open", "--test-passphrase", "--key-file", &p(k), &p(img)].map(String::from);
            let o = run(tz(), &args);
            let code = o.status.code();
            assert!(
                code == Some(0) || code == Some(2),
                "tazpod open --test-passphrase {}: {code:?} {}",
                img.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            let ours = code == Some(0);
            if cs {
                let o = run("cryptsetup", &args);
                assert_eq!(
                    o.status.code() == Some(0),
                    ours,
                    "tazpod and cryptsetup disagree: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            ours
        })
        .collect()
}

/// `cryptsetup repair` of a copy keeps what opened.
fn repair_keeps(img: &Path, keys: &[&Path], before: &[bool], what: &str) {
    let copy = img.with_extension("repaired");
    std::fs::copy(img, &copy).unwrap();
    let o = run("cryptsetup", &["repair".into(), "-q".into(), p(&copy)]);
    assert!(
        o.status.success(),
        "{what}: cryptsetup repair: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after = opens(&copy, keys, true);
    for (b, a) in before.iter().zip(&after) {
        assert!(
            !b || *a,
            "{what}: cryptsetup repair lost a passphrase: {before:?} -> {after:?}"
        );
    }
    std::fs::remove_file(&copy).unwrap();
}

struct Verb {
    name: &'static str,
    /// Arguments after the verb; `IMG`, and key names, are replaced.
    args: &'static [&'static str],
    /// Which of [old, second, new] open before and after.
    before: [bool; 3],
    after: [bool; 3],
}

#[test]
fn every_writer_killed_at_every_write_and_fsync() {
    if !common::have("strace", "what needs it") {
        return;
    }
    let cs = common::have("cryptsetup", "what needs it");
    let dir = tempfile::tempdir().unwrap();
    let key = |n: &str| -> PathBuf {
        let f = dir.path().join(format!("{n}.key"));
        std::fs::write(&f, format!("passphrase {n}")).unwrap();
        f
    };
    let (old, second, new) = (key("old"), key("second"), key("new"));
    // The template: keyslot 0 "old", keyslot 1 "second".
    let tpl = dir.path().join("template.img");
    std::fs::File::create(&tpl)
        .unwrap()
        .set_len(20 << 20)
        .unwrap();
    let mut a: Vec<String> = ["format", "-q", "--key-file", &p(&old), &p(&tpl)]
        .map(String::from)
        .to_vec();
    a.extend(CHEAP.iter().map(|s| s.to_string()));
    assert!(run(tz(), &a).status.success());
    let mut a: Vec<String> = [
        "add-key",
        "--key-file",
        &p(&old),
        &p(&tpl),
        "--new-keyfile",
        &p(&second),
    ]
    .map(String::from)
    .to_vec();
    a.extend(CHEAP.iter().map(|s| s.to_string()));
    assert!(run(tz(), &a).status.success());

    let verbs = [
        Verb {
            name: "format",
            args: &["-q", "--key-file", "NEW", "IMG"],
            before: [true, true, false],
            after: [false, false, true],
        },
        Verb {
            name: "add-key",
            args: &["--key-file", "OLD", "IMG", "--new-keyfile", "NEW"],
            before: [true, true, false],
            after: [true, true, true],
        },
        Verb {
            name: "change-key",
            args: &["--key-file", "OLD", "IMG", "--new-keyfile", "NEW"],
            before: [true, true, false],
            after: [false, true, true],
        },
        Verb {
            name: "remove-key",
            args: &["--key-file", "SECOND", "IMG"],
            before: [true, true, false],
            after: [true, false, false],
        },
        Verb {
            name: "kill-slot",
            args: &["--key-file", "OLD", "IMG", "1"],
            before: [true, true, false],
            after: [true, false, false],
        },
        Verb {
            name: "config",
            args: &["--label", "killed-or-not", "IMG"],
            before: [true, true, false],
            after: [true, true, false],
        },
    ];
    let img = dir.path().join("kill.img");
    let keys = [old.as_path(), second.as_path(), new.as_path()];
    let mut states = 0;
    for v in &verbs {
        let mut argv: Vec<String> = vec![v.name.into()];
        argv.extend(v.args.iter().map(|a| match *a {
            "IMG" => p(&img),
            "OLD" => p(&old),
            "SECOND" => p(&second),
            "NEW" => p(&new),
            a => a.to_string(),
        }));
        if ["format", "add-key", "change-key"].contains(&v.name) {
            argv.extend(CHEAP.iter().map(|s| s.to_string()));
        }
        for call in ["pwrite64", "fsync"] {
            for n in 1.. {
                std::fs::copy(&tpl, &img).unwrap();
                let mut s: Vec<String> = [
                    "-f",
                    "-qq",
                    "-o",
                    "/dev/null",
                    "-e",
                    "trace=pwrite64,fsync",
                    "-e",
                    &format!("inject={call}:signal=SIGKILL:when={n}"),
                    tz(),
                ]
                .map(String::from)
                .to_vec();
                s.extend(argv.iter().cloned());
                let o = run("strace", &s);
                let what = format!("{} killed at {call} {n}", v.name);
                let got = opens(&img, &keys, cs);
                assert!(
                    got == v.before || got == v.after,
                    "{what}: opens {got:?}, neither old {:?} nor new {:?}",
                    v.before,
                    v.after
                );
                if cs {
                    repair_keeps(&img, &keys, &got, &what);
                }
                states += 1;
                if o.status.success() {
                    // The verb ran to its end: there was no call number `n`.
                    assert_eq!(got, v.after, "{what}: the completed verb");
                    break;
                }
                assert!(n < 64, "{what}: the verb never completed: {o:?}");
            }
        }
    }
    eprintln!("{states} kill points tried");
    assert!(states >= 40, "{states}");
}
