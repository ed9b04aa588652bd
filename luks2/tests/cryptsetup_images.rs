//! cryptsetup's own LUKS1 test images (`fixtures/cryptsetup/luks1-images.tar.xz`): aes, serpent
//! and twofish in xts, aes in cbc-essiv:sha256, lrw-plain64 and xts-essiv:wp256, with sha1,
//! sha256 and whirlpool key hashes. Each unlocks with the key file and its data area decrypts
//! (in userspace) to a FAT12 filesystem with volume ID DEAD-BABE.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use luks2::kdf::KdfLimits;
use luks2::unlock::{unlock, UnlockOptions};
use luks2::volume::{DataSegment, Decryptor};
use luks2::Header;
use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The images and the cipher each one's name announces.
const IMAGES: &[(&str, &str)] = &[
    ("aes-cbc-essiv-sha256-sha1", "aes-cbc-essiv:sha256"),
    ("aes-lrw-plain64-sha1", "aes-lrw-plain64"),
    ("aes-xts-essiv-wp256-whirlpool", "aes-xts-essiv:wp256"),
    ("aes-xts-plain64-sha1", "aes-xts-plain64"),
    ("aes-xts-plain64-sha256", "aes-xts-plain64"),
    ("aes-xts-plain64-whirlpool", "aes-xts-plain64"),
    ("serpent-xts-plain64-sha1", "serpent-xts-plain64"),
    ("serpent-xts-plain64-sha256", "serpent-xts-plain64"),
    ("serpent-xts-plain64-whirlpool", "serpent-xts-plain64"),
    ("twofish-xts-plain64-sha1", "twofish-xts-plain64"),
    ("twofish-xts-plain64-sha256", "twofish-xts-plain64"),
    ("twofish-xts-plain64-whirlpool", "twofish-xts-plain64"),
];

/// Unpacks the archive (with the system's `tar`, which the test command installs) into a
/// temporary directory; returns it and the directory holding the images.
fn unpack() -> (tempfile::TempDir, PathBuf) {
    let archive = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/cryptsetup/luks1-images.tar.xz");
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-xJf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .arg("--no-same-owner")
        .status()
        .expect("tar (with xz) is needed to unpack cryptsetup's test images");
    assert!(st.success(), "tar -xJf {} failed", archive.display());
    let images = dir.path().join("luks1-images");
    (dir, images)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The volume key cryptsetup prints for `img`, when this host's cryptsetup can decrypt the
/// keyslot (it uses the kernel's ciphers for keyslots); `None` otherwise.
fn cryptsetup_volume_key(img: &Path, keyfile: &Path) -> Option<String> {
    let out = Command::new("cryptsetup")
        .args([
            "luksDump",
            "--dump-volume-key",
            "--batch-mode",
            "--key-file",
        ])
        .arg(keyfile)
        .arg(img)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut key = String::new();
    let mut in_key = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("MK dump:") {
            in_key = true;
            key.push_str(rest);
        } else if in_key && line.starts_with(char::is_whitespace) {
            key.push_str(line);
        } else {
            in_key = false;
        }
    }
    let key: String = key.split_whitespace().collect();
    (!key.is_empty()).then_some(key)
}

#[test]
fn every_cryptsetup_luks1_image_decrypts_to_its_filesystem() {
    let (_tmp, dir) = unpack();
    let keyfile = dir.join("keyfile1");
    let key = std::fs::read(&keyfile).unwrap();
    let mut oracle = 0;
    for (name, cipher) in IMAGES {
        let path = dir.join(format!("luks1_{name}.img"));
        let before = std::fs::read(&path).unwrap();
        let mut f = File::open(&path).unwrap();
        let header = luks2::read_header(&mut f).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Header::Luks1(h) = &header else {
            panic!("{name}: not read as LUKS1")
        };
        assert_eq!(h.cipher_spec(), *cipher, "{name}: cipher");
        let opts = UnlockOptions {
            keyslot: None,
            limits: KdfLimits::default(),
        };
        let u = unlock(&header, &mut f, &key, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(u.keyslot, 0, "{name}: keyslot");
        if let Some(want) = cryptsetup_volume_key(&path, &keyfile) {
            assert_eq!(hex(u.volume_key.as_bytes()), want, "{name}: volume key");
            oracle += 1;
        }
        let seg = DataSegment::of(&header).unwrap_or_else(|e| panic!("{name}: {e}"));
        let dec = Decryptor::new(seg, &u.volume_key).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut out = Vec::new();
        let size = u64::try_from(before.len()).unwrap();
        dec.copy(&mut Cursor::new(&before), size, &mut out)
            .unwrap_or_else(|e| panic!("{name}: decrypt: {e}"));
        // FAT12 boot sector: the volume ID (little-endian) at 39, the type at 54, 55 AA at 510.
        assert_eq!(&out[39..43], &[0xbe, 0xba, 0xad, 0xde], "{name}: volume ID");
        assert_eq!(&out[54..62], b"FAT12   ", "{name}: filesystem type");
        assert_eq!(&out[510..512], &[0x55, 0xaa], "{name}: boot signature");
        // The first FAT starts after the reserved sector(s) with the media byte F8 FF FF.
        let reserved = usize::from(u16::from_le_bytes([out[14], out[15]]));
        assert_eq!(
            &out[reserved * 512..reserved * 512 + 3],
            &[0xf8, 0xff, 0xff],
            "{name}: FAT"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "{name}: image changed"
        );
    }
    eprintln!(
        "{} images decrypted; {oracle} volume keys also checked against cryptsetup",
        IMAGES.len()
    );
}
