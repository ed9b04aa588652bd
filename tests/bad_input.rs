//! The CLI's bad-input table: each hostile or broken input gives cryptsetup's exit code and a
//! message saying what is wrong, within a time limit, and no output ever contains the
//! passphrase or key-file content that was given.
//!
//! Covers devices that are directories, character devices or FIFOs; empty, truncated and
//! damaged images (edited from the fixtures, checksums recomputed); KDF parameters no KDF
//! accepts or over the memory limit; key files that are FIFOs, directories or over 8 MiB; and
//! passphrases over 512 bytes, piped and typed at a prompt on a pseudo-terminal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use sha2::Digest as _;
use std::ffi::CString;
mod common;
use common::openpty;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TIME_LIMIT: Duration = Duration::from_secs(120);
const PASS: &str = "fixture";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/images")
        .join(name)
}

/// Waits for `child` at most [`TIME_LIMIT`]; kills it and fails if it hangs.
fn wait_bounded(mut child: Child, what: &str) -> (i32, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            if let Some(mut o) = child.stdout.take() {
                o.read_to_string(&mut out).unwrap();
            }
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).unwrap();
            }
            return (status.code().unwrap_or(-1), out + &err);
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            panic!("{what}: no answer within {TIME_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs tazpod with `stdin` piped in (or /dev/null); returns the exit code and stdout+stderr.
fn tazpod(args: &[&str], stdin: Option<&[u8]>) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tazpod"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        let input = input.to_vec();
        // A writer thread: tazpod may stop reading early (over-long input).
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        });
    }
    // Output is small; the pipes do not fill up before exit.
    wait_bounded(child, &args.join(" "))
}

/// The primary copy's hdr_size.
fn hdr_size(img: &[u8]) -> usize {
    u64::from_be_bytes(img[8..16].try_into().unwrap()) as usize
}

/// Recomputes the sha256 checksum of the copy at `at`.
fn fix_checksum(img: &mut [u8], at: usize) {
    let hs = u64::from_be_bytes(img[at + 8..at + 16].try_into().unwrap()) as usize;
    img[at + 448..at + 512].fill(0);
    let sum = sha2::Sha256::digest(&img[at..at + hs]);
    img[at + 448..at + 448 + 32].copy_from_slice(&sum);
}

/// A copy of fixture `name` whose JSON text (both copies) is rewritten by `f`.
fn edited_text(dir: &Path, name: &str, f: impl FnOnce(Vec<u8>) -> Vec<u8>) -> String {
    let mut img = std::fs::read(fixture(name)).unwrap();
    let hs = hdr_size(&img);
    let area = &img[4096..hs];
    let end = area.iter().position(|&b| b == 0).unwrap();
    let v: Value = serde_json::from_slice(&area[..end]).unwrap();
    let text = f(v.to_string().into_bytes());
    for at in [0, hs] {
        let a = &mut img[at + 4096..at + hs];
        a.fill(0);
        a[..text.len()].copy_from_slice(&text);
        fix_checksum(&mut img, at);
    }
    write(dir, &format!("edited-{name}-{}", unique()), &img)
}

/// A copy of fixture `name` whose JSON metadata (both copies) is changed by `f`.
fn edited(dir: &Path, name: &str, f: impl FnOnce(&mut Value)) -> String {
    edited_text(dir, name, |t| {
        let mut v: Value = serde_json::from_slice(&t).unwrap();
        f(&mut v);
        v.to_string().into_bytes()
    })
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Opens `fifo` for writing on a thread and writes `data` (errors ignored: the reader may
/// stop early or never open it).
fn feed_fifo(fifo: PathBuf, data: Vec<u8>) {
    std::thread::spawn(move || {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) {
            let _ = f.write_all(&data);
        }
    });
}

/// One row: arguments, optional stdin, exit code, a fragment the output must contain, and
/// secrets it must not contain.
struct Row {
    name: &'static str,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    code: i32,
    fragment: &'static str,
    secrets: Vec<Vec<u8>>,
}

fn row(name: &'static str, args: &[&str], code: i32, fragment: &'static str) -> Row {
    Row {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        code,
        fragment,
        secrets: Vec::new(),
    }
}

impl Row {
    fn stdin(mut self, s: &[u8]) -> Row {
        self.stdin = Some(s.to_vec());
        self
    }
    fn secret(mut self, s: &[u8]) -> Row {
        self.secrets.push(s.to_vec());
        self
    }
}

#[test]
fn cli_bad_input_table() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // A copy under a name that does not contain the passphrase ("fixture").
    let good = write(
        d,
        "vol.img",
        &std::fs::read(fixture("pbkdf2-sha256.img")).unwrap(),
    );
    let argon = "argon2id.img";
    let key = write(d, "key", PASS.as_bytes());
    let mut rows: Vec<Row> = Vec::new();

    // --- the DEVICE argument ------------------------------------------------------------------
    let dir = d.join("adir");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.display().to_string();
    rows.push(row(
        "device missing",
        &["dump", "/nonexistent/x"],
        4,
        "does not exist",
    ));
    rows.push(row(
        "device is a directory",
        &["dump", &dir],
        4,
        "it is a directory",
    ));
    rows.push(row(
        "device is a character device",
        &["open", "--test-passphrase", "--key-file", &key, "/dev/zero"],
        4,
        "it is a character device",
    ));
    let fifo_dev = d.join("fifo-dev");
    mkfifo(&fifo_dev);
    let fifo_dev = fifo_dev.display().to_string();
    rows.push(row(
        "device is a FIFO",
        &["dump", &fifo_dev],
        4,
        "not a regular file or block device",
    ));
    rows.push(row(
        "--header is a directory",
        &["dump", "--header", &dir, &good],
        4,
        "it is a directory",
    ));

    // --- empty, truncated, damaged images ------------------------------------------------------
    let img = std::fs::read(fixture("pbkdf2-sha256.img")).unwrap();
    let empty = write(d, "empty", &[]);
    rows.push(row("empty file", &["dump", &empty], 1, "not a LUKS device"));
    let t4k = write(d, "t4k", &img[..4096]);
    rows.push(row(
        "binary header only",
        &["dump", &t4k],
        1,
        "the device ends before the header copy at offset 0",
    ));
    let t40k = write(d, "t40k", &img[..40_960]);
    rows.push(row(
        "cut before the keyslots area ends",
        &["dump", &t40k],
        1,
        "40960",
    ));
    let short = write(d, "short", &img[..150_000]);
    rows.push(row(
        "shorter than the data offset (decrypt)",
        &["decrypt", "--key-file", &key, &short, "-"],
        1,
        "device is too small: 150000 bytes, the LUKS header needs at least 163840",
    ));
    let mut huge = img.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    let hs = hdr_size(&img);
    huge[hs + 8..hs + 16].copy_from_slice(&u64::MAX.to_be_bytes());
    let huge = write(d, "huge-hdr-size", &huge);
    rows.push(row(
        "hdr_size 2^64-1",
        &["dump", &huge],
        1,
        "18446744073709551615",
    ));
    let mut nonul = img.clone();
    for at in [0, hs] {
        let area = &mut nonul[at + 4096..at + hs];
        let end = area.iter().position(|&b| b == 0).unwrap();
        area[end..].fill(b' ');
        fix_checksum(&mut nonul, at);
    }
    let nonul = write(d, "no-nul", &nonul);
    rows.push(row("JSON area without NUL", &["dump", &nonul], 1, "NUL"));
    let mut nonutf8 = img.clone();
    for at in [0, hs] {
        let area = &mut nonutf8[at + 4096..at + hs];
        area[1] = 0xff;
        fix_checksum(&mut nonutf8, at);
    }
    let nonutf8 = write(d, "non-utf8", &nonutf8);
    rows.push(row("non-UTF-8 JSON", &["dump", &nonutf8], 1, "JSON"));
    let deep = edited_text(d, "pbkdf2-sha256.img", |t| {
        String::from_utf8(t)
            .unwrap()
            .replacen(
                "\"tokens\":{}",
                &format!(
                    "\"tokens\":{{\"0\":{{\"type\":\"t\",\"keyslots\":[],\"x\":{}}}}}",
                    "[".repeat(100)
                ),
                1,
            )
            .into_bytes()
    });
    rows.push(row("deeply nested JSON", &["dump", &deep], 1, "nest"));
    let overlap = edited(d, "pbkdf2-sha256.img", |v| {
        let k = v["keyslots"]["0"].clone();
        v["keyslots"]["1"] = k;
        v["digests"]["0"]["keyslots"] = json!(["0", "1"]);
    });
    rows.push(row(
        "overlapping keyslot areas",
        &["dump", &overlap],
        1,
        "overlap",
    ));
    let outside = edited(d, "pbkdf2-sha256.img", |v| {
        v["keyslots"]["0"]["area"]["offset"] = json!("16777216");
    });
    rows.push(row(
        "keyslot area outside the keyslots area",
        &["dump", &outside],
        1,
        "keyslot 0",
    ));
    let overflow = edited(d, "pbkdf2-sha256.img", |v| {
        v["keyslots"]["0"]["area"]["offset"] = json!("18446744073709547520");
    });
    rows.push(row(
        "64-bit overflow of an area end",
        &["dump", &overflow],
        1,
        "overflow",
    ));
    let v3 = {
        let mut i = img.clone();
        i[6..8].copy_from_slice(&3u16.to_be_bytes());
        write(d, "v3", &i)
    };
    rows.push(row("LUKS version 3", &["dump", &v3], 1, "version 3"));
    let l1 = std::fs::read(fixture("luks1-xts-sha256.img")).unwrap();
    let l1t = write(d, "luks1-trunc", &l1[..300]);
    rows.push(row("truncated LUKS1 header", &["dump", &l1t], 1, "LUKS1"));

    // --- keyslot and KDF parameters -------------------------------------------------------------
    let args_open = |img: &str| -> Vec<String> {
        ["open", "--test-passphrase", "--key-file", &key, img]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let mut push_open = |name: &'static str, img: String, code: i32, fragment: &'static str| {
        rows.push(Row {
            name,
            args: args_open(&img),
            stdin: None,
            code,
            fragment,
            secrets: vec![PASS.as_bytes().to_vec()],
        });
    };
    push_open(
        "stripes 1000 (opens, as with cryptsetup)",
        edited(d, "pbkdf2-sha256.img", |v| {
            v["keyslots"]["0"]["af"]["stripes"] = json!(1000)
        }),
        0,
        "",
    );
    // A passphrase test depends only on the keyslot: its key size decides.
    push_open(
        "key_size 0",
        edited(d, "pbkdf2-sha256.img", |v| {
            v["keyslots"]["0"]["key_size"] = json!(0)
        }),
        1,
        "key_size is 0",
    );
    // cryptsetup: "Not enough available memory to open a keyslot", exit 3.
    push_open(
        "key_size enormous",
        edited(d, "pbkdf2-sha256.img", |v| {
            v["keyslots"]["0"]["key_size"] = json!(i32::MAX)
        }),
        3,
        "key_size 2147483647 needs 8589934588000 bytes",
    );
    push_open(
        "salt of the wrong length",
        edited(d, "pbkdf2-sha256.img", |v| {
            v["keyslots"]["0"]["kdf"]["salt"] = json!("AAECAwQFBgcICQoLDA0ODw==")
        }),
        1,
        "16 bytes, not 32",
    );
    push_open(
        "zero iterations",
        edited(d, "pbkdf2-sha256.img", |v| {
            v["keyslots"]["0"]["kdf"]["iterations"] = json!(0)
        }),
        1,
        "iterations = 0",
    );
    push_open(
        "Argon2 memory 0",
        edited(d, argon, |v| v["keyslots"]["0"]["kdf"]["memory"] = json!(0)),
        1,
        "memory = 0",
    );
    push_open(
        "Argon2 memory 4 TiB",
        edited(d, argon, |v| {
            v["keyslots"]["0"]["kdf"]["memory"] = json!(4u64 << 30)
        }),
        3,
        "--max-kdf-memory",
    );
    push_open(
        "Argon2 cpus 0",
        edited(d, argon, |v| v["keyslots"]["0"]["kdf"]["cpus"] = json!(0)),
        1,
        "cpus = 0",
    );
    push_open(
        "Argon2 cpus 2^24",
        edited(d, argon, |v| {
            v["keyslots"]["0"]["kdf"]["cpus"] = json!(1 << 24)
        }),
        1,
        "cpus = 16777216",
    );
    push_open(
        "unknown hash",
        edited(d, "pbkdf2-sha256.img", |v| {
            v["keyslots"]["0"]["kdf"]["hash"] = json!("md5")
        }),
        1,
        "unsupported PBKDF2 hash 'md5'",
    );
    push_open(
        "unknown keyslot cipher",
        edited(d, "pbkdf2-sha256.img", |v| {
            v["keyslots"]["0"]["area"]["encryption"] = json!("rot13-ecb")
        }),
        1,
        "rot13-ecb",
    );
    // The passphrase test does not need the data segment (cryptsetup: 0); activation and
    // decrypt refuse it before asking for the passphrase.
    let blowfish = edited(d, "pbkdf2-sha256.img", |v| {
        v["segments"]["0"]["encryption"] = json!("blowfish-cbc-plain64")
    });
    push_open("unknown segment cipher, test", blowfish.clone(), 0, "");
    rows.push(row(
        "unknown segment cipher, open",
        &["open", "--key-file", &key, &blowfish, "tazpod-never-mapped"],
        1,
        "blowfish-cbc-plain64",
    ));
    rows.push(row(
        "unknown segment cipher, decrypt",
        &["decrypt", "--key-file", &key, &blowfish, "-"],
        1,
        "--test-passphrase` still checks",
    ));

    // --- key files --------------------------------------------------------------------------
    let kfifo = d.join("key-fifo");
    mkfifo(&kfifo);
    feed_fifo(kfifo.clone(), PASS.as_bytes().to_vec());
    let kfifo_s = kfifo.display().to_string();
    rows.push(
        row(
            "key file is a FIFO",
            &["open", "--test-passphrase", "--key-file", &kfifo_s, &good],
            0,
            "",
        )
        .secret(PASS.as_bytes()),
    );
    let bigfifo = d.join("key-fifo-big");
    mkfifo(&bigfifo);
    let big_secret = b"BIGKEY-4f1c".repeat(800_000); // 8.8 MB
    feed_fifo(bigfifo.clone(), big_secret.clone());
    let bigfifo_s = bigfifo.display().to_string();
    rows.push(
        row(
            "key file is a FIFO over 8 MiB",
            &["open", "--test-passphrase", "--key-file", &bigfifo_s, &good],
            1,
            "larger than the 8388608-byte limit",
        )
        .secret(b"BIGKEY-4f1c"),
    );
    let bigfile = write(d, "key-big", &big_secret);
    rows.push(
        row(
            "key file over 8 MiB",
            &["open", "--test-passphrase", "--key-file", &bigfile, &good],
            1,
            "larger than the 8388608-byte limit",
        )
        .secret(b"BIGKEY-4f1c"),
    );
    rows.push(row(
        "key file is a directory",
        &["open", "--test-passphrase", "--key-file", &dir, &good],
        1,
        "is a directory",
    ));
    rows.push(row(
        "key file missing",
        &[
            "open",
            "--test-passphrase",
            "--key-file",
            "/nonexistent/k",
            &good,
        ],
        1,
        "cannot read key file",
    ));
    rows.push(row(
        "--keyfile-size over 8 MiB",
        &[
            "open",
            "--test-passphrase",
            "--key-file",
            &key,
            "--keyfile-size",
            "8388609",
            &good,
        ],
        1,
        "over the 8388608-byte limit",
    ));
    rows.push(
        row(
            "--keyfile-offset past the end",
            &[
                "open",
                "--test-passphrase",
                "--key-file",
                &key,
                "--keyfile-offset",
                "100",
                &good,
            ],
            1,
            "shorter than --keyfile-offset 100",
        )
        .secret(PASS.as_bytes()),
    );
    let wrongkey = write(d, "wrong-key", b"Wr0ng-K3y-File-Content-77");
    rows.push(
        row(
            "wrong key file",
            &["open", "--test-passphrase", "--key-file", &wrongkey, &good],
            2,
            "no key available with this passphrase",
        )
        .secret(b"Wr0ng-K3y-File-Content-77"),
    );

    // --- piped passphrases ------------------------------------------------------------------
    let p513 = "q".repeat(513);
    rows.push(
        row(
            "piped passphrase of 513 bytes",
            &["open", "--test-passphrase", &good],
            1,
            "longer than 512 bytes",
        )
        .stdin(format!("{p513}\n").as_bytes())
        .secret(&p513.as_bytes()[..64]),
    );
    let p512 = "w".repeat(512);
    rows.push(
        row(
            "piped passphrase of 512 bytes (accepted, wrong)",
            &["open", "--test-passphrase", &good],
            2,
            "no key available with this passphrase",
        )
        .stdin(format!("{p512}\n").as_bytes())
        .secret(&p512.as_bytes()[..64]),
    );
    rows.push(
        row(
            "wrong piped passphrase",
            &["open", "--test-passphrase", &good],
            2,
            "no key available with this passphrase",
        )
        .stdin(b"Sup3r-S3cret-Guess\n")
        .secret(b"Sup3r-S3cret-Guess"),
    );
    rows.push(
        row(
            "wrong passphrase, dump --dump-volume-key",
            &["dump", "--dump-volume-key", "--batch-mode", &good],
            2,
            "no key available with this passphrase",
        )
        .stdin(b"Sup3r-S3cret-Guess\n")
        .secret(b"Sup3r-S3cret-Guess"),
    );

    let n = rows.len();
    let before = std::fs::read(fixture("pbkdf2-sha256.img")).unwrap();
    let mut failures = Vec::new();
    for r in rows {
        let args: Vec<&str> = r.args.iter().map(String::as_str).collect();
        let (code, out) = tazpod(&args, r.stdin.as_deref());
        if code != r.code || !out.contains(r.fragment) {
            failures.push(format!(
                "{}: exit {code} (want {}), output {out:?} (want {:?})",
                r.name, r.code, r.fragment
            ));
        }
        if out.contains("panicked") || out.contains("RUST_BACKTRACE") {
            failures.push(format!("{}: panic: {out}", r.name));
        }
        if code != 0 && !out.contains("tazpod: ") {
            failures.push(format!(
                "{}: error without the 'tazpod: ' prefix: {out}",
                r.name
            ));
        }
        for s in &r.secrets {
            let s = String::from_utf8_lossy(s);
            if out.contains(s.as_ref()) {
                failures.push(format!("{}: output contains the secret {s:?}", r.name));
            }
        }
    }
    assert_eq!(
        before,
        std::fs::read(fixture("pbkdf2-sha256.img")).unwrap(),
        "the fixture changed"
    );
    assert!(
        failures.is_empty(),
        "{} of {n} rows fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{n} CLI bad-input rows pass");
}

/// Runs tazpod with its standard input on a terminal, answering each "Enter passphrase"
/// prompt (read from its standard error) with the next of `lines`.
fn tazpod_on_tty(args: &[&str], lines: &[&[u8]]) -> (i32, String) {
    let (master, slave) = openpty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tazpod"))
        .args(args)
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(master);
    let mut err = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut answered = 0;
    // stderr is read to its end (exit), answering prompts as they appear. The echo guard
    // flushes pending input when it turns echo off, so each line is written only after its
    // prompt.
    let mut buf = [0u8; 4096];
    loop {
        let n = err.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        let prompts = String::from_utf8_lossy(&seen)
            .matches("Enter passphrase")
            .count();
        while answered < prompts && answered < lines.len() {
            // Give the child time to turn echo off (TCSAFLUSH) after printing the prompt.
            std::thread::sleep(Duration::from_millis(300));
            master.write_all(lines[answered]).unwrap();
            master.write_all(b"\n").unwrap();
            answered += 1;
        }
        assert!(
            start.elapsed() < TIME_LIMIT,
            "no answer within {TIME_LIMIT:?}"
        );
    }
    let (code, out) = wait_bounded(child, &args.join(" "));
    (code, out + &String::from_utf8_lossy(&seen))
}

/// A copy of the pbkdf2-sha256 fixture under a name without the passphrase in it.
fn volume_copy() -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "vol.img",
        &std::fs::read(fixture("pbkdf2-sha256.img")).unwrap(),
    );
    (tmp, p)
}

#[test]
fn passphrase_longer_than_512_at_the_prompt() {
    let (_tmp, good) = volume_copy();
    let long = "z".repeat(600);
    let (code, out) = tazpod_on_tty(
        &["open", "--test-passphrase", &good],
        &[long.as_bytes(), long.as_bytes(), long.as_bytes()],
    );
    assert_eq!(code, 1, "{out}");
    // One message per try, then the final error.
    assert_eq!(out.matches("longer than 512 bytes").count(), 4, "{out}");
    assert!(!out.contains(&long[..32]), "{out}");
}

#[test]
fn wrong_then_right_passphrase_at_the_prompt() {
    let (_tmp, good) = volume_copy();
    let (code, out) = tazpod_on_tty(
        &["open", "--test-passphrase", "--tries", "2", &good],
        &[b"T0p-S3cret-Wrong", PASS.as_bytes()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("No key available with this passphrase"),
        "{out}"
    );
    assert!(!out.contains("T0p-S3cret-Wrong"), "{out}");
    assert!(!out.contains(PASS), "{out}");
}

/// `(uid of /proc/PID/status, VmLck in KiB)` of a running process.
fn proc_owner_and_locked(pid: u32) -> Option<(u32, u64)> {
    use std::os::unix::fs::MetadataExt;
    let p = format!("/proc/{pid}/status");
    let uid = std::fs::metadata(&p).ok()?.uid();
    let s = std::fs::read_to_string(&p).ok()?;
    let lck = s
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some((uid, lck))
}

/// Starts `decrypt` (via `prefix`, e.g. setpriv) with a FIFO key file, so that it waits for
/// the key after its startup protection; returns what /proc says about it, then feeds the
/// key and collects the exit code and output.
fn decrypt_paused(prefix: &[&str]) -> ((u32, u64), i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let vol = write(
        d,
        "vol.img",
        &std::fs::read(fixture("pbkdf2-sha256.img")).unwrap(),
    );
    let fifo = d.join("key");
    mkfifo(&fifo);
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let out = d.join("plain").display().to_string();
    let fifo_s = fifo.display().to_string();
    let mut argv: Vec<&str> = prefix.to_vec();
    let bin = env!("CARGO_BIN_EXE_tazpod");
    argv.extend([bin, "decrypt", "--key-file", &fifo_s, &vol, &out]);
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it blocks on the FIFO (the process is then tazpod itself, past startup).
    let start = Instant::now();
    let seen = loop {
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).ok();
        let wchan =
            std::fs::read_to_string(format!("/proc/{}/wchan", child.id())).unwrap_or_default();
        // fifo_open sleeps in wait_for_partner until a writer opens the FIFO.
        if exe.is_some_and(|e| e.ends_with("tazpod"))
            && (wchan.contains("partner") || wchan.contains("fifo"))
        {
            break proc_owner_and_locked(child.id()).unwrap();
        }
        assert!(
            start.elapsed() < TIME_LIMIT,
            "tazpod never waited on the key FIFO"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    feed_fifo(fifo, PASS.as_bytes().to_vec());
    let (code, text) = wait_bounded(child, "decrypt with a FIFO key");
    (seen, code, text)
}

/// The verbs that handle secrets make the process non-dumpable (its /proc files then belong
/// to root, whoever runs it) and lock its memory when allowed; as an unprivileged user with
/// the usual 8 MiB RLIMIT_MEMLOCK, the lock is skipped with a one-line warning.
#[test]
fn secret_verbs_are_non_dumpable_and_lock_memory() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (to compare with an unprivileged run)");
        return;
    }
    let ((uid, locked), code, text) = decrypt_paused(&[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(uid, 0);
    assert!(locked > 1024, "VmLck {locked} KiB as root");
    assert!(!text.contains("warning"), "{text}");

    let ((uid, locked), code, text) = decrypt_paused(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ]);
    assert_eq!(code, 0, "{text}");
    // Owned by root although running as uid 65534: PR_SET_DUMPABLE 0 took effect.
    assert_eq!(uid, 0, "the unprivileged tazpod is still dumpable");
    assert_eq!(locked, 0);
    assert!(
        text.contains("tazpod: warning: memory is not locked: RLIMIT_MEMLOCK is"),
        "{text}"
    );
    assert_eq!(text.matches("warning").count(), 1, "{text}");
}
