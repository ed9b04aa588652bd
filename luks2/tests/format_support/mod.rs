//! Shared helpers for the writer tests: a deterministic random source, cheap parameters, and
//! cryptsetup as the oracle (skipped loudly when it is not installed).
#![allow(dead_code, clippy::unwrap_used, clippy::cast_possible_truncation)]

use luks2::format::{FormatParams, KeyslotSpec, Layout};
use luks2::hash::HashAlg;
use luks2::kdf::{Argon2Variant, KdfParams};
use luks2::unlock::{unlock, UnlockOptions};
use std::io::{Cursor, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// A deterministic "random" source (splitmix64: cheap, also in debug builds).
pub struct TestRng {
    state: u64,
}

impl TestRng {
    pub fn new(seed: u64) -> Self {
        TestRng {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
        for chunk in buf.chunks_mut(8) {
            self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

pub fn pbkdf2() -> KdfParams {
    KdfParams::Pbkdf2 {
        hash: HashAlg::Sha256,
        iterations: 1000,
    }
}

pub fn argon(variant: Argon2Variant) -> KdfParams {
    KdfParams::Argon2 {
        variant,
        time: 4,
        memory_kib: 32,
        cpus: 1,
    }
}

pub fn spec(kdf: KdfParams, cipher: &str) -> KeyslotSpec {
    KeyslotSpec {
        kdf,
        af_hash: HashAlg::Sha256,
        encryption: cipher.into(),
        priority: None,
    }
}

/// Small cheap parameters: 16 KiB metadata, 1 MiB keyslots, pbkdf2 with 1000 iterations.
pub fn params() -> FormatParams {
    FormatParams {
        encryption: "aes-xts-plain64".into(),
        sector_size: 4096,
        layout: Layout::cryptsetup(None, Some(1024 * 1024), false).unwrap(),
        label: String::new(),
        subsystem: String::new(),
        uuid: None,
        keyslot: spec(pbkdf2(), "aes-xts-plain64"),
        digest_hash: HashAlg::Sha256,
        digest_iterations: 1000,
    }
}

/// Whether `pass` unlocks the image with tazpod's reader; the volume key if so.
pub fn our_unlock(image: &[u8], pass: &[u8]) -> Option<Vec<u8>> {
    let mut c = Cursor::new(image);
    let h = luks2::read_header(&mut c).expect("our reader accepts the header");
    unlock(&h, &mut c, pass, &UnlockOptions::default())
        .ok()
        .map(|u| u.volume_key.as_bytes().to_vec())
}

pub fn have_cryptsetup() -> bool {
    let ok = Command::new("cryptsetup")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "!!!!!! cryptsetup is not installed: SKIPPING the cryptsetup oracle checks !!!!!!"
        );
    }
    ok
}

/// Runs cryptsetup with `args`, feeding `stdin`; returns (exit code, stdout, stderr).
pub fn cs(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new("cryptsetup")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cryptsetup");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// cryptsetup accepts `pass` (`open --test-passphrase`); `header` is a detached header file.
pub fn cs_accepts(dev: &Path, header: Option<&Path>, pass: &[u8]) -> bool {
    let mut args = vec!["open", "--test-passphrase", "--key-file", "-"];
    let h;
    if let Some(p) = header {
        h = p.display().to_string();
        args.push("--header");
        args.push(&h);
    }
    let d = dev.display().to_string();
    args.push(&d);
    let (code, _, err) = cs(&args, pass);
    assert!(
        code == 0 || code == 2,
        "cryptsetup open --test-passphrase: exit {code}: {err}"
    );
    code == 0
}

/// cryptsetup's `luksDump` works; returns its output.
pub fn cs_dump(file: &Path) -> String {
    let f = file.display().to_string();
    let (code, out, err) = cs(&["luksDump", &f], b"");
    assert_eq!(code, 0, "cryptsetup luksDump failed: {err}");
    assert!(
        !err.contains("WARNING") || err.contains("keyslots area"),
        "{err}"
    );
    out
}

/// The volume key cryptsetup recovers with `pass`.
pub fn cs_volume_key(file: &Path, pass: &[u8]) -> Vec<u8> {
    let f = file.display().to_string();
    let (code, out, err) = cs(
        &["luksDump", "-q", "--dump-volume-key", "--key-file", "-", &f],
        pass,
    );
    assert_eq!(code, 0, "luksDump --dump-volume-key: {err}");
    // "MK dump:\t<hex bytes>" over several lines.
    let mut hex = String::new();
    let mut on = false;
    for line in out.lines() {
        if line.starts_with("MK dump:") || line.starts_with("Volume key:") {
            on = true;
            hex.push_str(line.split(':').nth(1).unwrap_or(""));
            continue;
        }
        if on {
            if line.starts_with('\t') || line.starts_with(' ') {
                hex.push_str(line);
            } else {
                on = false;
            }
        }
    }
    let hex: String = hex.chars().filter(char::is_ascii_hexdigit).collect();
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// `cryptsetup repair` on a copy finds nothing to change.
pub fn cs_repair_is_noop(file: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.img");
    std::fs::copy(file, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let c = copy.display().to_string();
    let (code, out, err) = cs(&["repair", "-q", &c], b"");
    assert_eq!(code, 0, "cryptsetup repair failed: {out}{err}");
    let after = std::fs::read(&copy).unwrap();
    assert!(
        before == after,
        "cryptsetup repair changed the header: {err}"
    );
}
