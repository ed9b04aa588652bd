//! `tazpod format / add-key / remove-key / kill-slot / config` against cryptsetup, the oracle:
//! every volume tazpod writes passes `cryptsetup luksDump`, opens with the passphrases it
//! should (and not with removed or wrong ones) through `cryptsetup open --test-passphrase`,
//! gives the volume key tazpod's reader finds, and `cryptsetup repair` leaves it unchanged.
//! Tests that need cryptsetup say so loudly and skip when it is absent.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

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

fn have_cryptsetup() -> bool {
    let ok = Command::new("cryptsetup")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "!!!!!! cryptsetup is not installed: SKIPPING the cryptsetup oracle checks !!!!!!"
        );
    }
    ok
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
    if !have_cryptsetup() {
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
    if !have_cryptsetup() {
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
        &["--cipher", "serpent-xts-plain64"],
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

    let cs = have_cryptsetup();
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
    // The last slot needs --batch-mode without a terminal.
    let o = tazpod(&["kill-slot", &fs, "1"], b"");
    assert!(!o.status.success());
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
    if !have_cryptsetup() {
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
    if have_cryptsetup() {
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
