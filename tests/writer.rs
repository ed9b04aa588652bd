//! `tazpod format / add-key / remove-key / kill-slot / config` against cryptsetup, the oracle:
//! every volume tazpod writes passes `cryptsetup luksDump`, opens with the passphrases it
//! should (and not with removed or wrong ones) through `cryptsetup open --test-passphrase`,
//! gives the volume key tazpod's reader finds, and `cryptsetup repair` leaves it unchanged.
//! Tests that need cryptsetup say so loudly and skip when it is absent.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Cheap KDF options for tests.
const CHEAP: &[&str] = &["--pbkdf-force-iterations", "4", "--pbkdf-memory", "32"];

fn run(bin: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    // A command that exits early does not read its input: ignore the broken pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn tazpod(args: &[&str], stdin: &[u8]) -> Output {
    run(env!("CARGO_BIN_EXE_tazpod"), args, stdin)
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// cryptsetup open --test-passphrase: true if accepted, false if refused (exit 2).
fn cs_accepts(dev: &Path, header: Option<&Path>, pass: &[u8]) -> bool {
    let d = p(dev);
    let mut args = vec!["open", "--test-passphrase", "--key-file", "-"];
    let h;
    if let Some(x) = header {
        h = p(x);
        args.extend(["--header", h.as_str()]);
    }
    args.push(&d);
    let o = run("cryptsetup", &args, pass);
    let code = o.status.code().unwrap_or(-1);
    if code == 1 && String::from_utf8_lossy(&o.stderr).contains("No usable keyslot") {
        return false;
    }
    assert!(
        code == 0 || code == 2,
        "cryptsetup open: {code} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    code == 0
}

fn cs_dump(file: &Path) -> String {
    let o = run("cryptsetup", &["luksDump", &p(file)], b"");
    ok(&o, "cryptsetup luksDump");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn cs_repair_noop(file: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy");
    std::fs::copy(file, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    ok(
        &run("cryptsetup", &["repair", "-q", &p(&copy)], b""),
        "repair",
    );
    assert!(
        before == std::fs::read(&copy).unwrap(),
        "repair changed the header"
    );
}

fn vk_line(out: &[u8]) -> String {
    // The hex after "MK dump:", joined over its continuation lines.
    let s = String::from_utf8_lossy(out);
    let mut hex = String::new();
    let mut on = false;
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix("MK dump:") {
            on = true;
            hex.push_str(rest);
        } else if on && line.starts_with('\t') {
            hex.push_str(line);
        } else {
            on = false;
        }
    }
    hex.chars().filter(char::is_ascii_hexdigit).collect()
}

/// Volume key through cryptsetup and through tazpod: they must be equal.
fn same_volume_key(file: &Path, header: Option<&Path>, pass: &[u8]) {
    let hf = header.unwrap_or(file);
    let theirs = run(
        "cryptsetup",
        &[
            "luksDump",
            "-q",
            "--dump-volume-key",
            "--key-file",
            "-",
            &p(hf),
        ],
        pass,
    );
    ok(&theirs, "cryptsetup --dump-volume-key");
    let mut args = vec!["dump", "-q", "--dump-volume-key", "--key-file", "-"];
    let hs;
    if let Some(h) = header {
        hs = p(h);
        args.extend(["--header", hs.as_str()]);
    }
    let fs = p(file);
    args.push(&fs);
    let ours = tazpod(&args, pass);
    ok(&ours, "tazpod dump --dump-volume-key");
    let a = vk_line(&theirs.stdout);
    let b = vk_line(&ours.stdout);
    assert!(!a.is_empty() && a == b, "volume keys differ: {a} vs {b}");
}

fn image(dir: &Path, name: &str, size: u64) -> std::path::PathBuf {
    let f = dir.join(name);
    let file = std::fs::File::create(&f).unwrap();
    file.set_len(size).unwrap();
    f
}

/// Formats with `extra` options and checks the volume with cryptsetup and tazpod.
fn format_and_check(extra: &[&str], size: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = image(dir.path(), "v.img", size);
    let mut args = vec!["format", "-q"];
    args.extend_from_slice(extra);
    let fs = p(&f);
    args.push(&fs);
    ok(
        &tazpod(&args, b"secret one\n"),
        &format!("format {extra:?}"),
    );
    ok(
        &tazpod(
            &["open", "--test-passphrase", "--key-file", "-", &fs],
            b"secret one",
        ),
        "tazpod open --test-passphrase",
    );
    if !common::have_cryptsetup() {
        return String::new();
    }
    let dump = cs_dump(&f);
    assert!(cs_accepts(&f, None, b"secret one"), "{extra:?}");
    assert!(!cs_accepts(&f, None, b"secret two"), "{extra:?}");
    same_volume_key(&f, None, b"secret one");
    cs_repair_noop(&f);
    dump
}

#[test]
fn format_pbkdf_variants() {
    for kdf in ["pbkdf2", "argon2i", "argon2id"] {
        let mut a = vec!["--pbkdf", kdf];
        a.extend_from_slice(CHEAP);
        let dump = format_and_check(&a, 20 << 20);
        if !dump.is_empty() {
            assert!(dump.contains(&format!("PBKDF:      {kdf}")), "{dump}");
        }
    }
}

#[test]
fn format_sector_key_sizes() {
    for sector in ["512", "4096"] {
        for key in ["256", "512"] {
            let mut a = vec!["--sector-size", sector, "--key-size", key];
            a.extend_from_slice(CHEAP);
            let dump = format_and_check(&a, 20 << 20);
            if !dump.is_empty() {
                assert!(
                    dump.contains(&format!("sector: {sector} [bytes]")),
                    "{dump}"
                );
                assert!(dump.contains(&format!("Key:        {key} bits")), "{dump}");
            }
        }
    }
}

#[test]
fn format_metadata_sizes_label_uuid() {
    let uuid = "0b5a2c1e-7d3f-4e8a-9c6b-2f1e0d9c8b7a";
    let mut a = vec![
        "--luks2-metadata-size",
        "64k",
        "--luks2-keyslots-size",
        "2m",
        "--label",
        "my vault",
        "--uuid",
        uuid,
        "--pbkdf",
        "pbkdf2",
    ];
    a.extend_from_slice(CHEAP);
    let dump = format_and_check(&a, 8 << 20);
    if !dump.is_empty() {
        assert!(dump.contains("Metadata area: \t65536 [bytes]"), "{dump}");
        assert!(dump.contains("Keyslots area: \t2097152 [bytes]"), "{dump}");
        assert!(dump.contains("my vault") && dump.contains(uuid), "{dump}");
        assert!(dump.contains("offset: 3145728 [bytes]"), "{dump}");
    }
}

#[test]
fn format_detached_header() {
    let dir = tempfile::tempdir().unwrap();
    let d = image(dir.path(), "data.img", 4 << 20);
    let h = dir.path().join("hdr.img");
    let mut args = vec!["format", "-q", "--header", h.to_str().unwrap()];
    args.extend_from_slice(CHEAP);
    args.push(d.to_str().unwrap());
    ok(&tazpod(&args, b"pw\n"), "format --header");
    // The data device is untouched.
    assert!(std::fs::read(&d).unwrap().iter().all(|&b| b == 0));
    if !common::have_cryptsetup() {
        return;
    }
    cs_dump(&h);
    assert!(cs_accepts(&d, Some(&h), b"pw"));
    assert!(!cs_accepts(&d, Some(&h), b"px"));
    same_volume_key(&d, Some(&h), b"pw");
    cs_repair_noop(&h);
}

#[test]
fn format_refuses_existing_header_without_batch_mode() {
    let dir = tempfile::tempdir().unwrap();
    let f = image(dir.path(), "v.img", 20 << 20);
    let fs = p(&f);
    let mut args = vec!["format", "-q"];
    args.extend_from_slice(CHEAP);
    args.push(&fs);
    ok(&tazpod(&args, b"first\n"), "format");
    let before = std::fs::read(&f).unwrap();
    let mut args = vec!["format"];
    args.extend_from_slice(CHEAP);
    args.push(&fs);
    let o = tazpod(&args, b"second\n");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already contains a LUKS header"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        before == std::fs::read(&f).unwrap(),
        "the header was changed"
    );
}

#[test]
fn format_refuses_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let f = image(dir.path(), "v.img", 20 << 20);
    let fs = p(&f);
    for bad in [
        &["--luks2-metadata-size", "10k"][..],
        &["--sector-size", "1024", "--key-size", "100"],
        &["--cipher", "blowfish-xts-plain64"],
        // cryptsetup's keyslot code has no truncated Whirlpool: refused as by cryptsetup.
        &["--cipher", "aes-xts-essiv:wp256"],
        &["--cipher", "camellia-cbc-essiv:sha512"],
        &["--cipher", "aes-gcm-random"],
        &["--type", "luks1"],
        &["--pbkdf", "scrypt"],
    ] {
        let mut args = vec!["format", "-q"];
        args.extend_from_slice(bad);
        args.push(&fs);
        let o = tazpod(&args, b"x\n");
        assert_eq!(o.status.code(), Some(1), "{bad:?}");
    }
    // Too small for the default 16 MiB data offset.
    let small = image(dir.path(), "s.img", 8 << 20);
    let o = tazpod(&["format", "-q", &p(&small)], b"x\n");
    assert_eq!(o.status.code(), Some(4));
}

#[test]
fn add_remove_kill_config_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let f = image(dir.path(), "v.img", 20 << 20);
    let fs = p(&f);
    let kf = dir.path().join("new.key");
    std::fs::write(&kf, b"key file secret\x00\x01binary").unwrap();
    let kfs = p(&kf);
    let old = dir.path().join("old.key");
    std::fs::write(&old, b"first").unwrap();
    let olds = p(&old);

    let mut args = vec!["format", "-q", "--pbkdf", "pbkdf2"];
    args.extend_from_slice(CHEAP);
    args.push(&fs);
    ok(&tazpod(&args, b"first\n"), "format");

    // add-key: old passphrase from the key file, new one from stdin.
    let mut a = vec!["add-key", "-d", &olds, "--pbkdf", "argon2id"];
    a.extend_from_slice(CHEAP);
    a.push(&fs);
    ok(&tazpod(&a, b"second\n"), "add-key (stdin)");
    // add-key into slot 5 from a new key file, old passphrase on stdin.
    let mut a = vec!["add-key", "--key-slot", "5", "--new-keyfile", &kfs];
    a.extend_from_slice(CHEAP);
    a.push(&fs);
    ok(&tazpod(&a, b"second\n"), "add-key (new key file)");
    // A wrong passphrase adds nothing.
    let mut a = vec!["add-key"];
    a.extend_from_slice(CHEAP);
    a.push(&fs);
    let o = tazpod(&a, b"wrong\nthird\n");
    assert_eq!(o.status.code(), Some(2));
    // Slot 5 is taken now.
    let mut a = vec!["add-key", "-S", "5", "-d", &olds];
    a.extend_from_slice(CHEAP);
    a.push(&fs);
    assert_eq!(tazpod(&a, b"x\n").status.code(), Some(1));

    let cs = common::have_cryptsetup();
    if cs {
        let dump = cs_dump(&f);
        assert!(
            dump.contains("  1: luks2") && dump.contains("  5: luks2"),
            "{dump}"
        );
        assert!(cs_accepts(&f, None, b"first"));
        assert!(cs_accepts(&f, None, b"second"));
        assert!(cs_accepts(&f, None, &std::fs::read(&kf).unwrap()));
        assert!(!cs_accepts(&f, None, b"third"));
        cs_repair_noop(&f);
    }

    // config: label and priority.
    ok(
        &tazpod(
            &[
                "config",
                "--label",
                "relabelled",
                "--priority",
                "prefer",
                "-S",
                "1",
                &fs,
            ],
            b"",
        ),
        "config",
    );
    if cs {
        let dump = cs_dump(&f);
        assert!(
            dump.contains("relabelled") && dump.contains("preferred"),
            "{dump}"
        );
        cs_repair_noop(&f);
    }

    // remove-key removes the slot "first" opens.
    ok(&tazpod(&["remove-key", &fs], b"first\n"), "remove-key");
    assert_eq!(
        tazpod(&["open", "--test-passphrase", &fs], b"first\n")
            .status
            .code(),
        Some(2)
    );
    // kill-slot 5.
    ok(&tazpod(&["kill-slot", &fs, "5"], b""), "kill-slot");
    // kill-slot of an unused slot fails.
    assert_eq!(tazpod(&["kill-slot", &fs, "7"], b"").status.code(), Some(1));
    if cs {
        let dump = cs_dump(&f);
        assert!(
            !dump.contains("  0: luks2") && !dump.contains("  5: luks2"),
            "{dump}"
        );
        assert!(!cs_accepts(&f, None, b"first"));
        assert!(!cs_accepts(&f, None, &std::fs::read(&kf).unwrap()));
        assert!(cs_accepts(&f, None, b"second"));
        same_volume_key(&f, None, b"second");
        cs_repair_noop(&f);
    }
    // The last slot on input that holds nothing is kept ("Nothing to read on input.", exit 1;
    // cryptsetup would wipe it); with --batch-mode it is wiped.
    let o = tazpod(&["kill-slot", &fs, "1"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Nothing to read on input."));
    ok(
        &tazpod(&["kill-slot", "-q", &fs, "1"], b""),
        "kill last slot",
    );
    if cs {
        cs_dump(&f);
        assert!(!cs_accepts(&f, None, b"second"));
    }
}

/// Headers cryptsetup made are changed by tazpod, and cryptsetup still agrees.
#[test]
fn add_key_to_a_cryptsetup_volume() {
    if !common::have_cryptsetup() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = image(dir.path(), "v.img", 20 << 20);
    let fs = p(&f);
    ok(
        &run(
            "cryptsetup",
            &[
                "luksFormat",
                "-q",
                "--type",
                "luks2",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--key-file",
                "-",
                &fs,
            ],
            b"cs pass",
        ),
        "cryptsetup luksFormat",
    );
    let mut a = vec!["add-key"];
    a.extend_from_slice(CHEAP);
    a.push(&fs);
    ok(&tazpod(&a, b"cs pass\ntaz pass\n"), "add-key");
    assert!(cs_accepts(&f, None, b"taz pass"));
    assert!(cs_accepts(&f, None, b"cs pass"));
    cs_repair_noop(&f);
    ok(&tazpod(&["remove-key", &fs], b"cs pass\n"), "remove-key");
    assert!(!cs_accepts(&f, None, b"cs pass"));
    assert!(cs_accepts(&f, None, b"taz pass"));
    cs_repair_noop(&f);
}

#[test]
fn change_key_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let f = image(dir.path(), "v.img", 20 << 20);
    let fs = p(&f);
    let mut args = vec!["format", "-q", "--pbkdf", "pbkdf2"];
    args.extend_from_slice(CHEAP);
    args.push(&fs);
    ok(&tazpod(&args, b"before\n"), "format");
    let mut a = vec!["change-key"];
    a.extend_from_slice(CHEAP);
    a.push(&fs);
    ok(&tazpod(&a, b"before\nafter\n"), "change-key");
    assert_eq!(
        tazpod(&["open", "--test-passphrase", &fs], b"before\n")
            .status
            .code(),
        Some(2)
    );
    ok(
        &tazpod(&["open", "--test-passphrase", &fs], b"after\n"),
        "new passphrase",
    );
    if common::have_cryptsetup() {
        let dump = cs_dump(&f);
        assert!(
            dump.contains("  0: luks2") && !dump.contains("  1: luks2"),
            "{dump}"
        );
        assert!(!cs_accepts(&f, None, b"before"));
        assert!(cs_accepts(&f, None, b"after"));
        same_volume_key(&f, None, b"after");
        cs_repair_noop(&f);
    }
}

/// Without --pbkdf-force-iterations the KDF is benchmarked to --iter-time (kept short here).
#[test]
fn format_benchmarked_kdf() {
    let dump = format_and_check(&["--pbkdf", "pbkdf2", "--iter-time", "50"], 20 << 20);
    if !dump.is_empty() {
        let iters: Vec<u64> = dump
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Iterations: "))
            .map(|v| v.trim().parse().unwrap())
            .collect();
        // Keyslot and digest both above cryptsetup's minimum of 1000.
        assert_eq!(iters.len(), 2, "{dump}");
        assert!(iters.iter().all(|&i| i >= 1000), "{iters:?}");
    }
    let dump = format_and_check(
        &[
            "--pbkdf",
            "argon2id",
            "--iter-time",
            "100",
            "--pbkdf-memory",
            "8192",
            "--pbkdf-parallel",
            "1",
        ],
        20 << 20,
    );
    if !dump.is_empty() {
        assert!(dump.contains("Threads:    1"), "{dump}");
        assert!(dump.contains("PBKDF:      argon2id"), "{dump}");
    }
}

/// The keyslot ids `tazpod dump` lists ("  N: luks2" lines, as in luksDump).
fn slots(file: &Path) -> Vec<u32> {
    let o = tazpod(&["dump", &p(file)], b"");
    ok(&o, "tazpod dump");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": luks2"))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// A volume with keyslots 0, 1, 2 holding "p0", "p1", "p2" (or only 0 with `one`).
fn kill_slot_volume(dir: &Path, name: &str, one: bool) -> std::path::PathBuf {
    let f = image(dir, name, 20 << 20);
    let fs = p(&f);
    let mut args = vec![
        "format",
        "-q",
        "--pbkdf",
        "pbkdf2",
        "--luks2-keyslots-size",
        "1m",
    ];
    args.extend_from_slice(CHEAP);
    args.push(&fs);
    ok(&tazpod(&args, b"p0\n"), "format");
    if !one {
        for (slot, pass) in [("1", b"p0\np1\n"), ("2", b"p0\np2\n")] {
            let mut a = vec!["add-key", "-S", slot, "--pbkdf", "pbkdf2"];
            a.extend_from_slice(CHEAP);
            a.push(&fs);
            ok(&tazpod(&a, pass), "add-key");
        }
    }
    f
}

/// One row of the kill-slot comparison: options, standard input, the slot killed, the exit
/// code and the keyslots left.
struct KillCase {
    one: bool,
    opts: &'static [&'static str],
    stdin: &'static [u8],
    slot: &'static str,
    code: i32,
    left: &'static [u32],
    /// cryptsetup's result where tazpod differs on purpose (exit code, keyslots left).
    cryptsetup: Option<(i32, &'static [u32])>,
}

/// `kill-slot` without a terminal, against `cryptsetup luksKillSlot` 2.6.1 on copies of the
/// same volume: a remaining passphrase is read even with --batch-mode (stdin is not a
/// terminal), it must open another keyslot (or the last one itself), a key file is checked
/// the same way, and input that ends before its first byte skips the check.
#[test]
fn kill_slot_checks_a_remaining_passphrase_like_cryptsetup() {
    let dir = tempfile::tempdir().unwrap();
    let three = kill_slot_volume(dir.path(), "three.img", false);
    let one = kill_slot_volume(dir.path(), "one.img", true);
    let keys = dir.path();
    for (n, k) in [
        ("k0", &b"p0"[..]),
        ("k1", b"p1"),
        ("k2", b"p2"),
        ("empty", b""),
    ] {
        std::fs::write(keys.join(n), k).unwrap();
    }
    let cases = [
        // Not the last keyslot: the passphrase must open another one.
        KillCase {
            one: false,
            opts: &[],
            stdin: b"p0\n",
            slot: "1",
            code: 0,
            left: &[0, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &[],
            stdin: b"p2",
            slot: "1",
            code: 0,
            left: &[0, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &[],
            stdin: b"p1\n",
            slot: "1",
            code: 2,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &[],
            stdin: b"bad\n",
            slot: "1",
            code: 2,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &[],
            stdin: b"\n",
            slot: "1",
            code: 2,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &[],
            stdin: b"",
            slot: "1",
            code: 0,
            left: &[0, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["-q"],
            stdin: b"bad\n",
            slot: "1",
            code: 2,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["-q"],
            stdin: b"p0\n",
            slot: "1",
            code: 0,
            left: &[0, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["-q"],
            stdin: b"",
            slot: "1",
            code: 0,
            left: &[0, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["--key-file", "k1"],
            stdin: b"",
            slot: "1",
            code: 2,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["-q", "--key-file", "k1"],
            stdin: b"",
            slot: "1",
            code: 2,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["-q", "--key-file", "k2"],
            stdin: b"",
            slot: "1",
            code: 0,
            left: &[0, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["--key-file", "empty"],
            stdin: b"",
            slot: "1",
            code: 2,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["--key-file", "-"],
            stdin: b"",
            slot: "1",
            code: 0,
            left: &[0, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["--key-file", "-"],
            stdin: b"p0\n",
            slot: "1",
            code: 2,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["--key-file", "-"],
            stdin: b"p0",
            slot: "1",
            code: 0,
            left: &[0, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["--key-file", "/nonexistent"],
            stdin: b"",
            slot: "1",
            code: 1,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &[],
            stdin: b"p0\n",
            slot: "7",
            code: 1,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        KillCase {
            one: false,
            opts: &["-q"],
            stdin: b"",
            slot: "40",
            code: 1,
            left: &[0, 1, 2],
            cryptsetup: None,
        },
        // The last keyslot: the passphrase must open it. Without a terminal tazpod wants
        // --batch-mode or a key file; cryptsetup takes the missing terminal as a "yes".
        KillCase {
            one: true,
            opts: &["-q"],
            stdin: b"p0\n",
            slot: "0",
            code: 0,
            left: &[],
            cryptsetup: None,
        },
        KillCase {
            one: true,
            opts: &["-q"],
            stdin: b"bad\n",
            slot: "0",
            code: 2,
            left: &[0],
            cryptsetup: None,
        },
        KillCase {
            one: true,
            opts: &["-q"],
            stdin: b"",
            slot: "0",
            code: 0,
            left: &[],
            cryptsetup: None,
        },
        KillCase {
            one: true,
            opts: &["--key-file", "k0"],
            stdin: b"",
            slot: "0",
            code: 0,
            left: &[],
            cryptsetup: None,
        },
        KillCase {
            one: true,
            opts: &["--key-file", "k1"],
            stdin: b"",
            slot: "0",
            code: 2,
            left: &[0],
            cryptsetup: None,
        },
        // The last keyslot without a terminal: wiped once a passphrase opens it, as cryptsetup.
        KillCase {
            one: true,
            opts: &[],
            stdin: b"p0\n",
            slot: "0",
            code: 0,
            left: &[],
            cryptsetup: None,
        },
        KillCase {
            one: true,
            opts: &[],
            stdin: b"p1\n",
            slot: "0",
            code: 2,
            left: &[0],
            cryptsetup: None,
        },
        KillCase {
            one: true,
            opts: &[],
            stdin: b"",
            slot: "0",
            code: 1,
            left: &[0],
            cryptsetup: Some((0, &[])),
        },
    ];
    let cs = common::have_cryptsetup();
    for (i, c) in cases.iter().enumerate() {
        let what = format!(
            "case {i}: kill-slot {:?} slot {} stdin {:?}",
            c.opts,
            c.slot,
            String::from_utf8_lossy(c.stdin)
        );
        let src = if c.one { &one } else { &three };
        for tool in ["tazpod", "cryptsetup"] {
            if tool == "cryptsetup" && !cs {
                continue;
            }
            let v = dir.path().join(format!("case-{tool}.img"));
            std::fs::copy(src, &v).unwrap();
            let vs = p(&v);
            let mut args: Vec<String> = vec![if tool == "tazpod" {
                "kill-slot"
            } else {
                "luksKillSlot"
            }
            .into()];
            let mut opts = c.opts.iter();
            while let Some(o) = opts.next() {
                args.push((*o).into());
                if *o == "--key-file" {
                    let f = opts.next().unwrap();
                    args.push(if f.starts_with('/') || *f == "-" {
                        (*f).into()
                    } else {
                        p(&keys.join(f))
                    });
                }
            }
            args.push(vs);
            args.push(c.slot.into());
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = if tool == "tazpod" {
                tazpod(&argv, c.stdin)
            } else {
                run("cryptsetup", &argv, c.stdin)
            };
            let (code, left) = match (tool, c.cryptsetup) {
                ("cryptsetup", Some(theirs)) => theirs,
                _ => (c.code, c.left),
            };
            assert_eq!(
                o.status.code(),
                Some(code),
                "{tool} {what}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(slots(&v), left, "{tool} {what}");
        }
    }
}

/// Runs `argv` on a pseudo-terminal (through python3's `pty` module: no unsafe code here),
/// typing each answer after the next prompt (output ending in ": "). Returns the exit code and
/// the transcript, or None when python3 is missing.
fn on_terminal(argv: &[&str], answers: &[&str]) -> Option<(i32, String)> {
    const DRIVER: &str = r#"
import os, pty, select, sys, time
sep = sys.argv.index('--')
answers, cmd = sys.argv[1:sep], sys.argv[sep + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
out = b''
def read_until(done, limit):
    global out
    end = time.time() + limit
    while time.time() < end and not done():
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                d = os.read(fd, 4096)
            except OSError:
                return
            if not d:
                return
            out += d
for a in answers:
    seen = len(out)
    read_until(lambda: out[seen:].rstrip(b' ').endswith(b':'), 30)
    time.sleep(0.2)
    os.write(fd, a.encode() + b'\n')
read_until(lambda: False, 30)
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors='replace'))
sys.exit(os.waitstatus_to_exitcode(st))
"#;
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("!!!!!! python3 is not installed: SKIPPING the terminal checks !!!!!!");
        return None;
    }
    let mut args = vec!["-c", DRIVER];
    args.extend_from_slice(answers);
    args.push("--");
    args.extend_from_slice(argv);
    let o = Command::new("python3").args(&args).output().unwrap();
    Some((
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    ))
}

/// `kill-slot` on a terminal, against `cryptsetup luksKillSlot`: "Enter any remaining
/// passphrase: " for another keyslot; the typed "YES" and then the passphrase of the last
/// keyslot itself; --batch-mode asks nothing; a key file replaces the "YES".
#[test]
fn kill_slot_on_a_terminal_like_cryptsetup() {
    let dir = tempfile::tempdir().unwrap();
    let three = kill_slot_volume(dir.path(), "three.img", false);
    let one = kill_slot_volume(dir.path(), "one.img", true);
    let k0 = dir.path().join("k0");
    std::fs::write(&k0, b"p0").unwrap();
    let k0s = p(&k0);
    type Row<'a> = (
        bool,
        Vec<&'a str>,
        &'a str,
        Vec<&'a str>,
        i32,
        Vec<u32>,
        Vec<&'a str>,
    );
    let rows: Vec<Row<'_>> = vec![
        (
            false,
            vec![],
            "1",
            vec!["p0"],
            0,
            vec![0, 2],
            vec!["Enter any remaining passphrase: "],
        ),
        (
            false,
            vec![],
            "1",
            vec!["p1"],
            2,
            vec![0, 1, 2],
            vec!["no key available with this passphrase"],
        ),
        (false, vec!["-q"], "1", vec![], 0, vec![0, 2], vec![]),
        (
            true,
            vec![],
            "0",
            vec!["YES", "p0"],
            0,
            vec![],
            vec![
                "This is the last keyslot",
                "Type 'yes' in capital letters",
                "Enter any remaining passphrase: ",
            ],
        ),
        (true, vec![], "0", vec!["YES", "p1"], 2, vec![0], vec![]),
        (
            true,
            vec![],
            "0",
            vec!["no"],
            2,
            vec![0],
            vec!["keyslot was NOT wiped"],
        ),
        (true, vec!["-q"], "0", vec![], 0, vec![], vec![]),
        (
            true,
            vec!["--key-file", &k0s],
            "0",
            vec![],
            0,
            vec![],
            vec![],
        ),
    ];
    let cs = common::have_cryptsetup();
    let tz = env!("CARGO_BIN_EXE_tazpod");
    for (one_slot, opts, slot, answers, code, left, says) in rows {
        for tool in [tz, "cryptsetup"] {
            if tool == "cryptsetup" && !cs {
                continue;
            }
            let v = dir.path().join("tty.img");
            std::fs::copy(if one_slot { &one } else { &three }, &v).unwrap();
            let vs = p(&v);
            let mut argv = vec![
                tool,
                if tool == tz {
                    "kill-slot"
                } else {
                    "luksKillSlot"
                },
            ];
            argv.extend_from_slice(&opts);
            argv.extend([vs.as_str(), slot]);
            let Some((got, transcript)) = on_terminal(&argv, &answers) else {
                return;
            };
            let what = format!("{argv:?} answers {answers:?}:\n{transcript}");
            assert_eq!(got, code, "{what}");
            assert_eq!(slots(&v), left, "{what}");
            if tool == tz {
                for s in &says {
                    assert!(transcript.contains(s), "{s:?} missing: {what}");
                }
            }
        }
    }
}

/// A loop device over a file, detached when dropped.
struct LoopDev(String);

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A loop device for `file`, or None (with a loud SKIPPING line) when not root or losetup fails.
fn loop_device(file: &Path) -> Option<LoopDev> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user.
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        eprintln!("!!!!!! not root: SKIPPING the loop device checks of `format` !!!!!!");
        return None;
    }
    match Command::new("losetup")
        .args(["-f", "--show", &p(file)])
        .output()
    {
        Ok(o) if o.status.success() => Some(LoopDev(
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )),
        other => {
            eprintln!("!!!!!! losetup failed ({other:?}): SKIPPING the loop device checks !!!!!!");
            None
        }
    }
}

/// Holds a block device open with O_EXCL, as a mount or a mapping would.
fn hold_exclusive(dev: &str) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(dev)
        .unwrap()
}

fn format_args<'a>(dev: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["format", "-q", "--pbkdf", "pbkdf2"];
    a.extend_from_slice(CHEAP);
    a.extend_from_slice(extra);
    a.push(dev);
    a
}

fn cs_format(dev: &str) -> Output {
    run(
        "cryptsetup",
        &[
            "luksFormat",
            "-q",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            "-",
            dev,
        ],
        b"cs",
    )
}

/// `format` opens a block device with O_EXCL, like cryptsetup: a device that is mounted,
/// mapped or held exclusively is refused, with cryptsetup's exit code (5 for a blank device,
/// 1 when it carries a signature, for which cryptsetup's blkid wipe fails first), and nothing
/// is written. Regular files and the data device of a detached header are not checked.
/// Needs root and loop devices (skips loudly otherwise).
#[test]
fn format_refuses_a_block_device_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let f = image(dir.path(), "blk.img", 20 << 20);
    let Some(lo) = loop_device(&f) else {
        return;
    };
    let dev = lo.0.clone();
    let cs = common::have_cryptsetup();
    let zeros = |what: &str| {
        let b = std::fs::read(&f).unwrap();
        assert!(
            b[..1 << 20].iter().all(|&x| x == 0),
            "{what}: the device was written"
        );
    };

    // A blank device held exclusively: exit 5.
    let hold = hold_exclusive(&dev);
    let o = tazpod(&format_args(&dev, &[]), b"pw\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("in use (already mapped or mounted)"), "{err}");
    zeros("held blank device");
    if cs {
        assert_eq!(cs_format(&dev).status.code(), Some(5));
        zeros("cryptsetup on the held blank device");
    }
    // A detached header does not need the data device exclusively (nor does cryptsetup).
    let h = dir.path().join("hdr.img");
    let hs = p(&h);
    ok(
        &tazpod(&format_args(&dev, &["--header", &hs]), b"pw\n"),
        "format --header, data device held",
    );
    zeros("detached header");
    drop(hold);

    // Free: it formats, and cryptsetup opens it.
    ok(
        &tazpod(&format_args(&dev, &[]), b"pw\n"),
        "format on a free loop device",
    );
    if cs {
        assert!(cs_accepts(Path::new(&dev), None, b"pw"));
    }

    // Held again, now with a LUKS header on it: exit 1, and the header is unchanged.
    let before = std::fs::read(&f).unwrap();
    let hold = hold_exclusive(&dev);
    let o = tazpod(&format_args(&dev, &[]), b"other\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot exclusively open"), "{err}");
    if cs {
        assert_eq!(cs_format(&dev).status.code(), Some(1));
    }
    assert!(
        before == std::fs::read(&f).unwrap(),
        "the header was changed"
    );
    drop(hold);

    // Mounted (an ext4 filesystem on it): exit 1, as cryptsetup.
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mkfs = Command::new("mkfs.ext4").args(["-q", "-F", &dev]).output();
    if !mkfs.is_ok_and(|o| o.status.success()) {
        eprintln!("!!!!!! mkfs.ext4 failed or missing: SKIPPING the mounted-device check !!!!!!");
        return;
    }
    let mounted = Command::new("mount").args([&dev, &p(&mnt)]).status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("!!!!!! mount failed: SKIPPING the mounted-device check !!!!!!");
        return;
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let um = Unmount(p(&mnt));
    let o = tazpod(&format_args(&dev, &[]), b"pw\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    if cs {
        assert_eq!(cs_format(&dev).status.code(), Some(1));
    }
    drop(um);
    drop(lo);
}

/// A regular file gets no exclusivity check (cryptsetup has none either): another open
/// descriptor does not stop `format`.
#[test]
fn format_on_a_regular_file_that_is_open_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let f = image(dir.path(), "file.img", 20 << 20);
    let _other = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f)
        .unwrap();
    let fs = p(&f);
    ok(
        &tazpod(&format_args(&fs, &[]), b"pw\n"),
        "format a file open elsewhere",
    );
}

/// One exhausted-input row: the same verb through tazpod and cryptsetup.
struct InputRow {
    what: &'static str,
    tazpod: &'static [&'static str],
    cryptsetup: &'static [&'static str],
    stdin: &'static [u8],
    /// Exit code of both tools, or (tazpod, cryptsetup) where tazpod differs on purpose.
    code: (i32, i32),
    /// Whether the image is left byte for byte as it was (for tazpod; and cryptsetup when the
    /// codes agree).
    unchanged: bool,
}

/// A new passphrase or key is never taken from input that has already ended: "Nothing to read
/// on input." (exit 1) and nothing written, as in cryptsetup, for every verb that reads a new
/// key; an empty new key file is refused too (cryptsetup takes it as an empty key); an empty
/// line is an empty passphrase, as in cryptsetup. `IMG`, `OLD` (a key file holding "old"),
/// `EMPTY` (an empty file) stand for paths.
#[test]
fn exhausted_input_is_nothing_to_read_like_cryptsetup() {
    let rows = [
        InputRow {
            what: "format, stdin empty",
            tazpod: &["format", "-q", "IMG"],
            cryptsetup: &["luksFormat", "-q", "IMG"],
            stdin: b"",
            code: (1, 1),
            unchanged: true,
        },
        InputRow {
            what: "format --key-file -, stdin empty",
            tazpod: &["format", "-q", "--key-file", "-", "IMG"],
            cryptsetup: &["luksFormat", "-q", "--key-file", "-", "IMG"],
            stdin: b"",
            code: (1, 1),
            unchanged: true,
        },
        InputRow {
            what: "format --key-file EMPTY",
            tazpod: &["format", "-q", "--key-file", "EMPTY", "IMG"],
            cryptsetup: &["luksFormat", "-q", "--key-file", "EMPTY", "IMG"],
            stdin: b"",
            code: (1, 0),
            unchanged: true,
        },
        InputRow {
            what: "add-key, the new passphrase after the input ended",
            tazpod: &["add-key", "IMG"],
            cryptsetup: &["luksAddKey", "IMG"],
            stdin: b"old\n",
            code: (1, 1),
            unchanged: true,
        },
        InputRow {
            what: "add-key, no old passphrase either",
            tazpod: &["add-key", "IMG"],
            cryptsetup: &["luksAddKey", "IMG"],
            stdin: b"",
            code: (1, 1),
            unchanged: true,
        },
        InputRow {
            what: "add-key --key-file -, stdin empty",
            tazpod: &["add-key", "--key-file", "-", "IMG", "--new-keyfile", "OLD"],
            cryptsetup: &["luksAddKey", "--key-file", "-", "IMG", "OLD"],
            stdin: b"",
            code: (1, 1),
            unchanged: true,
        },
        InputRow {
            what: "add-key, new key file EMPTY",
            tazpod: &[
                "add-key",
                "--key-file",
                "OLD",
                "IMG",
                "--new-keyfile",
                "EMPTY",
            ],
            cryptsetup: &["luksAddKey", "--key-file", "OLD", "IMG", "EMPTY"],
            stdin: b"",
            code: (1, 0),
            unchanged: true,
        },
        InputRow {
            what: "change-key, the new passphrase after the input ended",
            tazpod: &["change-key", "IMG"],
            cryptsetup: &["luksChangeKey", "IMG"],
            stdin: b"old\n",
            code: (1, 1),
            unchanged: true,
        },
        InputRow {
            what: "change-key, stdin empty",
            tazpod: &["change-key", "IMG"],
            cryptsetup: &["luksChangeKey", "IMG"],
            stdin: b"",
            code: (1, 1),
            unchanged: true,
        },
        InputRow {
            what: "change-key, new key file EMPTY",
            tazpod: &[
                "change-key",
                "--key-file",
                "OLD",
                "IMG",
                "--new-keyfile",
                "EMPTY",
            ],
            cryptsetup: &["luksChangeKey", "--key-file", "OLD", "IMG", "EMPTY"],
            stdin: b"",
            code: (1, 0),
            unchanged: true,
        },
        InputRow {
            what: "remove-key, stdin empty",
            tazpod: &["remove-key", "IMG"],
            cryptsetup: &["luksRemoveKey", "IMG"],
            stdin: b"",
            code: (1, 1),
            unchanged: true,
        },
        InputRow {
            what: "open --test-passphrase, stdin empty",
            tazpod: &["open", "--test-passphrase", "IMG"],
            cryptsetup: &["open", "--test-passphrase", "IMG"],
            stdin: b"",
            code: (1, 1),
            unchanged: true,
        },
        InputRow {
            what: "add-key, an empty line is an empty passphrase",
            tazpod: &["add-key", "IMG"],
            cryptsetup: &["luksAddKey", "IMG"],
            stdin: b"old\n\n",
            code: (0, 0),
            unchanged: false,
        },
        InputRow {
            what: "remove-key of the last keyslot without a terminal",
            tazpod: &["remove-key", "IMG"],
            cryptsetup: &["luksRemoveKey", "IMG"],
            stdin: b"old\n",
            code: (0, 0),
            unchanged: false,
        },
    ];
    let cs = common::have_cryptsetup();
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.key");
    std::fs::write(&old, b"old").unwrap();
    let empty = dir.path().join("empty.key");
    std::fs::write(&empty, b"").unwrap();
    // The volume the key verbs work on: one keyslot, passphrase "old".
    let base = image(dir.path(), "base.img", 20 << 20);
    let mut args = vec!["format", "-q", "--key-file"];
    let (olds, bases) = (p(&old), p(&base));
    args.extend([olds.as_str(), bases.as_str()]);
    args.extend_from_slice(CHEAP);
    ok(&tazpod(&args, b""), "format the base volume");
    for r in &rows {
        for tool in ["tazpod", "cryptsetup"] {
            if tool == "cryptsetup" && !cs {
                continue;
            }
            let img = dir.path().join(format!("{tool}.img"));
            if r.tazpod[0] == "format" {
                drop(image(dir.path(), &format!("{tool}.img"), 20 << 20));
            } else {
                std::fs::copy(&base, &img).unwrap();
            }
            let before = std::fs::read(&img).unwrap();
            let words = if tool == "tazpod" {
                r.tazpod
            } else {
                r.cryptsetup
            };
            let mut argv: Vec<String> = words
                .iter()
                .map(|w| match *w {
                    "IMG" => p(&img),
                    "OLD" => p(&old),
                    "EMPTY" => p(&empty),
                    w => w.to_string(),
                })
                .collect();
            if tool == "tazpod" && r.tazpod[0] != "open" && r.tazpod[0] != "remove-key" {
                argv.extend(CHEAP.iter().map(|s| s.to_string()));
            } else if tool == "cryptsetup" && !["open", "luksRemoveKey"].contains(&words[0]) {
                argv.extend(
                    ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"].map(String::from),
                );
            }
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let o = if tool == "tazpod" {
                tazpod(&argv, r.stdin)
            } else {
                run("cryptsetup", &argv, r.stdin)
            };
            let want = if tool == "tazpod" { r.code.0 } else { r.code.1 };
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(want), "{tool}: {}: {err}", r.what);
            if want == 1 && r.code.0 == r.code.1 {
                assert!(
                    err.contains("Nothing to read on input."),
                    "{tool}: {}: {err}",
                    r.what
                );
            }
            let after = std::fs::read(&img).unwrap();
            if tool == "tazpod" || r.code.0 == r.code.1 {
                assert_eq!(
                    before == after,
                    r.unchanged,
                    "{tool}: {}: the image was {}",
                    r.what,
                    if r.unchanged {
                        "written"
                    } else {
                        "not written"
                    }
                );
            }
        }
    }
    // The empty-line passphrase opens the volume tazpod changed; the last keyslot is gone.
    let t = dir.path().join("check.img");
    std::fs::copy(&base, &t).unwrap();
    let ts = p(&t);
    let mut a = vec!["add-key", ts.as_str()];
    a.extend_from_slice(CHEAP);
    let o = tazpod(&a, b"old\n\n");
    ok(&o, "add-key with an empty line");
    assert!(String::from_utf8_lossy(&o.stderr).contains("the new passphrase is empty"));
    ok(
        &tazpod(&["open", "--test-passphrase", &ts], b"\n"),
        "the empty passphrase opens",
    );
}

/// A block device is locked through cryptsetup's lock file `/run/cryptsetup/L_<maj>:<min>`:
/// while another process holds it, a tazpod writer (and reader) waits, then exits 5 having
/// written nothing, and cryptsetup waits on the same file; released, the writer goes ahead
/// and removes the lock file it no longer needs, as cryptsetup does.
#[test]
fn block_devices_use_cryptsetups_lock_file() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let f = image(dir.path(), "blk.img", 20 << 20);
    let Some(lo) = loop_device(&f) else {
        return;
    };
    let dev = lo.0.clone();
    let k1 = dir.path().join("k1");
    let k2 = dir.path().join("k2");
    std::fs::write(&k1, b"one").unwrap();
    std::fs::write(&k2, b"two").unwrap();
    let (k1s, k2s) = (p(&k1), p(&k2));
    ok(
        &tazpod(&format_args(&dev, &["--key-file", &k1s]), b""),
        "format the loop device",
    );
    let rdev = std::fs::metadata(&dev).unwrap().rdev();
    let lock_path = format!(
        "/run/cryptsetup/L_{}:{}",
        libc::major(rdev),
        libc::minor(rdev)
    );
    std::fs::create_dir_all("/run/cryptsetup").unwrap();
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);
    let before = std::fs::read(&f).unwrap();
    let mut add = vec!["add-key", "--key-file", &k1s, &dev, "--new-keyfile", &k2s];
    add.extend_from_slice(CHEAP);
    let timed = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tazpod"));
        c.args(args)
            .env("TAZPOD_LOCK_TIMEOUT_MS", "300")
            .stdin(Stdio::null());
        c.output().unwrap()
    };
    let o = timed(&add);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("waiting") && err.contains("busy"), "{err}");
    let o = timed(&["dump", &dev]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "a reader waits for the writer's lock too"
    );
    assert!(std::fs::read(&f).unwrap() == before, "nothing was written");
    if common::have_cryptsetup() {
        // cryptsetup honours the same lock file: it waits (and is stopped by `timeout`).
        let o = Command::new("timeout")
            .args([
                "2",
                "cryptsetup",
                "open",
                "--test-passphrase",
                "--key-file",
                &k1s,
                &dev,
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(124), "cryptsetup did not wait: {o:?}");
    }
    drop(holder);
    ok(&timed(&add), "add-key once the lock is free");
    ok(
        &tazpod(
            &["open", "--test-passphrase", "--key-file", &k2s, &dev],
            b"",
        ),
        "the new key opens",
    );
    assert!(
        !Path::new(&lock_path).exists(),
        "the last holder removes the lock file"
    );
}
