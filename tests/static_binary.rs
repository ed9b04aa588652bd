//! The binary is static (no program interpreter, no shared library) and runs in an empty root
//! that holds nothing but itself and a vault: the rootless verbs read the demo vault there.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

fn u16_at(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn u32_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// (has a PT_INTERP program header, number of DT_NEEDED entries) of a little-endian ELF64.
fn elf_links(elf: &[u8]) -> (bool, usize) {
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "ELF64");
    let (phoff, phentsize, phnum) = (
        u64_at(elf, 0x20) as usize,
        u16_at(elf, 0x36) as usize,
        u16_at(elf, 0x38) as usize,
    );
    let mut interp = false;
    let mut needed = 0;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = u32_at(elf, ph);
        if p_type == 3 {
            interp = true;
        }
        if p_type == 2 {
            // PT_DYNAMIC: 16-byte entries (d_tag, d_val) up to DT_NULL.
            let (off, size) = (u64_at(elf, ph + 8) as usize, u64_at(elf, ph + 32) as usize);
            let mut at = off;
            while at + 16 <= off + size {
                match u64_at(elf, at) {
                    0 => break,
                    1 => needed += 1,
                    _ => {}
                }
                at += 16;
            }
        }
    }
    (interp, needed)
}

#[test]
fn the_binary_links_no_shared_library() {
    let elf = std::fs::read(env!("CARGO_BIN_EXE_tazpod")).unwrap();
    assert_eq!(elf_links(&elf), (false, 0), "tazpod is dynamically linked");
}

#[test]
fn the_rootless_verbs_run_in_an_empty_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("!!!!!! not root: SKIPPING the chroot into an empty root !!!!!!");
        return;
    }
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo/vault.img");
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::copy(env!("CARGO_BIN_EXE_tazpod"), r.join("tazpod")).unwrap();
    std::fs::copy(&demo, r.join("vault.img")).unwrap();
    std::fs::write(r.join("key"), b"tazpod-demo").unwrap();
    let names: Vec<_> = std::fs::read_dir(r)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "the root holds the binary, the vault and the key only"
    );
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chroot (coreutils)");
    let inside = |args: &[&str]| {
        let o = Command::new(chroot)
            .arg(r)
            .arg("/tazpod")
            .args(args)
            .env_clear()
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?} in the empty root: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    let outside = Command::new(env!("CARGO_BIN_EXE_tazpod"))
        .args(["cat", "--vault"])
        .arg(&demo)
        .args(["--key-file", "/dev/stdin", "aws/access_key_id"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"tazpod-demo")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(outside.status.success());
    let got = inside(&[
        "cat",
        "--vault",
        "/vault.img",
        "--key-file",
        "/key",
        "aws/access_key_id",
    ]);
    assert!(!got.is_empty());
    assert_eq!(got, outside.stdout);
    let ls = inside(&["ls", "--vault", "/vault.img", "--key-file", "/key"]);
    assert!(String::from_utf8_lossy(&ls).contains("aws"));
    let dump = inside(&["dump", "/vault.img"]);
    assert!(String::from_utf8_lossy(&dump).starts_with("LUKS header information"));
}
