//! `tazpod ls` and `tazpod cat` over an open vault: listing a path and streaming a file, each
//! under [`guarded`] (the filesystem work itself is in [`super::tree`]).

use super::tree::{fs_error, max_dirs, stream, Format, Lister};
use super::{guarded, vault_path, RootlessError, Vault};
use luks2::SecretBuf;
use std::ffi::OsStr;
use std::io::Write;

/// Lists `path` of the vault to `out` in format `fmt` (a directory's entries, `recursive`ly
/// or not; a file as given, as ls does).
pub fn list(
    vault: &Vault,
    path: &OsStr,
    fmt: Format,
    recursive: bool,
    out: &mut impl Write,
) -> Result<(), RootlessError> {
    let name = vault.name.as_str();
    let full = vault_path(path);
    guarded(name, || {
        let meta = vault
            .fs
            .metadata(full.as_slice())
            .map_err(|e| fs_error(name, Some(&full), e))?;
        let mut lister = Lister {
            fs: &vault.fs,
            vault: name,
            fmt,
            out,
            dirs_left: 0,
            found: None,
        };
        if meta.is_dir() {
            lister.dirs_left = max_dirs(vault.len);
            lister.dir(&full, b"", recursive, 0)
        } else {
            let lmeta = vault
                .fs
                .symlink_metadata(full.as_slice())
                .map_err(|e| fs_error(name, Some(&full), e))?;
            lister.entry(&full, path.as_encoded_bytes(), &lmeta)
        }
    })
}

/// Streams the file `path` of the vault to `out` through `buf`; returns the bytes copied.
pub fn cat_file(
    vault: &Vault,
    path: &OsStr,
    buf: &mut SecretBuf,
    out: &mut impl Write,
) -> Result<u64, RootlessError> {
    let full = vault_path(path);
    guarded(&vault.name, || {
        stream(&vault.fs, &vault.name, &full, buf, out, u64::MAX)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::super::error::PANIC_STOP;
    use super::super::tree::{load, walk_all, TreeError, MAX_GROUPS};
    use super::*;
    use crate::error::{code, CliError};
    use ext4_view::{Ext4, Ext4Error, Ext4Read};
    use luks2::unlock::{unlock, UnlockOptions};
    use luks2::volume::{DataSegment, Decryptor};
    use std::panic::{self, AssertUnwindSafe};

    /// The plaintext filesystem of a fixture vault (decrypted with the library).
    fn plaintext(vault: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/rootless/{vault}", env!("CARGO_MANIFEST_DIR"));
        let mut f = std::fs::File::open(path).unwrap();
        let header = luks2::read_header(&mut f).unwrap();
        let u = unlock(&header, &mut f, b"rootless-test", &UnlockOptions::default()).unwrap();
        let dec = Decryptor::new(DataSegment::of(&header).unwrap(), &u.volume_key).unwrap();
        let size = f.metadata().unwrap().len();
        let mut out = Vec::new();
        dec.copy(&mut f, size, &mut out).unwrap();
        out
    }

    /// Everything `ls -R --long`, `cat` and `run` do, on an in-memory image: Ok(entries
    /// listed) or the first error (files that fail to stream are counted, not fatal).
    fn walk_everything(img: Vec<u8>) -> Result<usize, TreeError> {
        let len = img.len() as u64;
        let fs = load(Box::new(img), "v", len)?;
        let dirs = max_dirs(len);
        walk_all(&fs, "v", dirs, u64::MAX).map(|s| s.entries)
    }

    /// No panic at all, not even one the guard caught (its message names the crate, file and
    /// line): any is a bug to look at.
    fn assert_no_panic(message: &str) {
        assert!(!message.contains(PANIC_STOP), "a panic: {message}");
    }

    /// Corrupts every used filesystem block of two fixtures in turn (zeros, then noise) and
    /// walks everything under [`guarded`]: each walk succeeds or fails with an error, never a
    /// panic (not even one the guard catches), nor an endless loop. `ext4-view` 1.0.0 itself
    /// panicked on a corrupt htree node (`dir_block.rs:134`, an unchecked entry count); the
    /// vendored copy reports it as corruption.
    #[test]
    fn corrupting_any_used_block_gives_errors() {
        sweep(false);
    }

    /// Noise over each block of the htree directory `/many` (its extent block, the htree root,
    /// the leaves): listing it fails with a clear error every time. Noise on the root used to
    /// make `ext4-view` 1.0.0 panic (caught by the guard); now it is a corruption error.
    #[test]
    fn a_corrupt_htree_directory_gives_an_error() {
        let path = format!(
            "{}/fixtures/rootless/manifest.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let blocks = m["vaults"]["luks2-xts-4k.img"]["many_blocks"]
            .as_array()
            .unwrap();
        assert!(blocks.len() > 2);
        let clean = plaintext("luks2-xts-4k.img");
        for b in blocks {
            let at = b.as_u64().unwrap() as usize * 4096;
            let mut img = clean.clone();
            for (i, x) in img[at..at + 4096].iter_mut().enumerate() {
                *x = (i as u8).wrapping_mul(151) ^ 0x3c;
            }
            let r = super::super::guarded("v", || {
                let len = img.len() as u64;
                let fs = load(Box::new(img), "v", len)?;
                let mut out = Vec::new();
                Lister {
                    fs: &fs,
                    vault: "v",
                    fmt: Format {
                        long: false,
                        end: b'\n',
                    },
                    out: &mut out,
                    dirs_left: 1,
                    found: None,
                }
                .dir(b"/many", b"", false, 0)
            });
            let e = CliError::from(r.expect_err("a corrupt /many lists without error"));
            assert!(e.message.starts_with("v: "), "{}", e.message);
            assert_no_panic(&e.message);
            assert!(e.message.contains("corrupt"), "{}", e.message);
            eprintln!("block {b}: {}", e.message);
        }
    }

    /// The same over every block, also the all-zero ones, and over the large fixture too
    /// (minutes in a debug build).
    #[test]
    #[ignore = "slow: cargo test --release -- --ignored corrupting_every_block"]
    fn corrupting_every_block_gives_errors() {
        sweep(true);
    }

    fn sweep(all_blocks: bool) {
        let mut outcomes = [0usize; 2];
        let mut vaults = vec![("luks2-cbc-essiv.img", 4096usize), ("luks1-xts.img", 1024)];
        if all_blocks {
            // Journal, htree directory, long symlink, sparse and large files.
            vaults.push(("luks2-xts-4k.img", 4096));
        }
        for (vault, bs) in vaults {
            let clean = plaintext(vault);
            let full = walk_everything(clean.clone()).unwrap();
            assert!(full >= 19, "{vault}: {full}");
            for block in 0..clean.len() / bs {
                if !all_blocks && clean[block * bs..(block + 1) * bs].iter().all(|b| *b == 0) {
                    continue;
                }
                for pattern in 0..2u8 {
                    let mut img = clean.clone();
                    for (i, b) in img[block * bs..(block + 1) * bs].iter_mut().enumerate() {
                        *b = if pattern == 0 {
                            0
                        } else {
                            (i as u8).wrapping_mul(151) ^ 0x3c
                        };
                    }
                    match panic::catch_unwind(AssertUnwindSafe(|| {
                        super::super::guarded("v", || walk_everything(img))
                    })) {
                        Ok(Ok(_)) => outcomes[0] += 1,
                        Ok(Err(e)) => {
                            outcomes[1] += 1;
                            assert!(
                                !e.to_string().contains(PANIC_STOP),
                                "{vault} block {block} pattern {pattern}: {e}"
                            );
                        }
                        Err(_) => panic!("{vault} block {block}: a panic escaped the guard"),
                    }
                }
            }
        }
        eprintln!(
            "walks that succeeded: {}, that failed cleanly: {}",
            outcomes[0], outcomes[1]
        );
        assert!(outcomes[1] > 0);
    }

    /// Filesystem block `n` (of `bs` bytes) of `img`.
    fn block(img: &mut [u8], n: u64, bs: usize) -> &mut [u8] {
        let at = n as usize * bs;
        &mut img[at..at + bs]
    }

    /// The plaintext of the 4 KiB-block fixture with its htree directory `/many`, and the
    /// blocks of `/many`: its htree root and a leaf.
    fn htree_fixture() -> (Vec<u8>, u64, u64) {
        let path = format!(
            "{}/fixtures/rootless/manifest.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let info = &m["vaults"]["luks2-xts-4k.img"];
        assert_eq!(info["fs_block_size"], 4096);
        let root = info["corrupt_blocks"]["htree_root"].as_u64().unwrap();
        let mut img = plaintext("luks2-xts-4k.img");
        // metadata_csum (ro_compat 0x400): the htree nodes are checksummed.
        assert_ne!(img[1024 + 0x64 + 1] & 0x04, 0);
        // A leaf: a block of /many (not the root, not its extent tree block: magic 0xf30a)
        // whose first entry is in use and shorter than the block.
        let leaf = info["many_blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap())
            .find(|&b| {
                let blk = block(&mut img, b, 4096);
                b != root
                    && blk[0..2] != [0x0a, 0xf3]
                    && u32::from_le_bytes(blk[0..4].try_into().unwrap()) != 0
                    && u16::from_le_bytes(blk[4..6].try_into().unwrap()) < 4096
            })
            .unwrap();
        (img, root, leaf)
    }

    /// Lists `/many` with ext4-view alone (no guard, no tazpod check: a panic fails the test)
    /// and returns the error.
    fn list_many(img: Vec<u8>) -> Ext4Error {
        let fs = Ext4::load(Box::new(img)).unwrap();
        let r: Result<Vec<_>, _> = fs.read_dir("/many").and_then(|d| d.collect());
        r.expect_err("a corrupt /many lists without error")
    }

    /// The first fix in the vendored ext4-view: an htree root whose `count` (0x22) points past
    /// its block is a corruption error, while listing the directory and while looking a name up
    /// through the index (1.0.0 panicked at dir_block.rs:134 in both).
    #[test]
    fn an_htree_root_counting_past_its_block_is_corrupt() {
        let (mut img, root, _) = htree_fixture();
        block(&mut img, root, 4096)[0x22..0x24].copy_from_slice(&0xffffu16.to_le_bytes());
        let e = list_many(img.clone());
        assert!(matches!(e, Ext4Error::Corrupt(_)), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("htree (directory index) node in inode")
                && text.contains("counts 65535 entries of 8 bytes, more than its 4056 bytes"),
            "{text}"
        );
        let fs = Ext4::load(Box::new(img.clone())).unwrap();
        let e = fs.metadata("/many/x").unwrap_err();
        assert!(e.to_string().contains("counts 65535 entries"), "{e}");
        // Through tazpod: a clear error, no panic.
        let e = CliError::from(super::super::guarded("v", || walk_everything(img)).unwrap_err());
        assert_no_panic(&e.message);
        assert_eq!(e.code, code::INVALID);
        assert!(
            e.message.starts_with(
                "v: the filesystem in the vault is corrupt (reading '/many'): htree (directory \
                 index) node in inode"
            ),
            "{}",
            e.message
        );
        // The largest count that fits is not this error (the checksum then fails instead).
        let (mut img, root, _) = htree_fixture();
        block(&mut img, root, 4096)[0x22..0x24].copy_from_slice(&507u16.to_le_bytes());
        let text = list_many(img).to_string();
        assert!(text.contains("invalid checksum"), "{text}");
    }

    /// The same for a non-root (internal) htree node: a block whose first entry spans the whole
    /// block, with a `count` (0x0a) past it.
    #[test]
    fn an_htree_internal_node_counting_past_its_block_is_corrupt() {
        let (mut img, _, leaf) = htree_fixture();
        let blk = block(&mut img, leaf, 4096);
        blk[0..4].copy_from_slice(&0u32.to_le_bytes()); // inode 0: not an entry
        blk[4..6].copy_from_slice(&4096u16.to_le_bytes()); // rec_len: the whole block
        blk[6..8].fill(0);
        blk[8..10].copy_from_slice(&510u16.to_le_bytes()); // limit
        blk[10..12].copy_from_slice(&0xfff0u16.to_le_bytes()); // count
        let text = list_many(img.clone()).to_string();
        assert!(
            text.contains("counts 65520 entries of 8 bytes, more than its 4080 bytes"),
            "{text}"
        );
        let e = CliError::from(super::super::guarded("v", || walk_everything(img)).unwrap_err());
        assert_no_panic(&e.message);
        assert!(e.message.contains("corrupt"), "{}", e.message);
    }

    /// CRC32C (Castagnoli), as ext4's `metadata_csum` uses it (no final inversion).
    fn crc32c_raw(data: &[u8]) -> u32 {
        const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        CRC32C.checksum(data) ^ !0
    }

    /// The plaintext of a fixture with its superblock edited by `edit` (and its checksum fixed).
    fn edited_superblock(vault: &str, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut img = plaintext(vault);
        let sb = &mut img[1024..2048];
        edit(sb);
        assert_ne!(sb[0x65] & 0x04, 0, "metadata_csum");
        let sum = crc32c_raw(&sb[..0x3fc]);
        sb[0x3fc..].copy_from_slice(&sum.to_le_bytes());
        img
    }

    fn set_u32(sb: &mut [u8], at: usize, v: u32) {
        sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn load_error(img: Vec<u8>) -> String {
        match Ext4::load(Box::new(img)) {
            Ok(_) => panic!("a corrupt superblock loads"),
            Err(e) => {
                assert!(matches!(e, Ext4Error::Corrupt(_)), "{e:?}");
                e.to_string()
            }
        }
    }

    /// The second fix: ext4-view alone refuses a superblock whose geometry does not fit the
    /// device (1.0.0 reserved one descriptor per group it implied, before reading any: the
    /// fuzz findings asked for 24 GiB and 898 MB).
    #[test]
    fn ext4_view_refuses_a_geometry_larger_than_the_device() {
        let vault = "luks2-cbc-essiv.img";
        // The first fuzz finding: 2^32 - 1 blocks, 8 per group (2^29 groups).
        let huge = edited_superblock(vault, |sb| {
            set_u32(sb, 4, u32::MAX);
            set_u32(sb, 0x20, 8);
        });
        let len = huge.len() as u64;
        let text = load_error(huge.clone());
        assert!(
            text.contains("4294967295 blocks of 4096 bytes, more than the device holds"),
            "{text}"
        );
        // tazpod leaves it to ext4-view and passes its message on.
        let e = CliError::from(load(Box::new(huge), "v", len).err().unwrap());
        assert_eq!(e.code, code::INVALID);
        assert!(
            e.message
                .starts_with("v: the filesystem in the vault is corrupt: the superblock counts ")
                && e.message
                    .ends_with("more than the device holds (its last block cannot be read)"),
            "{}",
            e.message
        );
        // The second: a high word of the block count. This filesystem has the 64bit feature,
        // so the field counts (in the kernel too): 0x150 << 32 more blocks than the device.
        let img = edited_superblock(vault, |sb| set_u32(sb, 0x150, 0x150));
        assert_ne!(img[1024 + 0x60] & 0x80, 0, "64bit feature");
        let text = load_error(img);
        assert!(text.contains("more than the device holds"), "{text}");
        // With 64bit set, the descriptor size must be a power of two from 64 to 1024.
        for size in [0u16, 32, 65, 96, 2048] {
            let text = load_error(edited_superblock(vault, |sb| {
                sb[0x60] |= 0x80;
                sb[0xfe..0x100].copy_from_slice(&size.to_le_bytes());
            }));
            assert!(
                text.contains("invalid block group descriptor size"),
                "{size}: {text}"
            );
        }
        // Fewer than 8 blocks per group.
        let text = load_error(edited_superblock(vault, |sb| set_u32(sb, 0x20, 4)));
        assert!(
            text.contains("4 blocks per group (ext4 has at least 8)"),
            "{text}"
        );
    }

    /// Without the 64bit feature the kernel ignores `s_blocks_count_hi`, and so does
    /// ext4-view (its patch 6; 1.0.0 counted it, and the device-size check then refused a
    /// filesystem the kernel mounts). Needs `mkfs.ext4` (skipped without it).
    #[test]
    fn the_high_block_count_is_ignored_without_64bit() {
        let Ok(mkfs) = crate::ghost::create::find_mkfs() else {
            eprintln!("skipped: no mkfs.ext4");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fs.img");
        let st = std::process::Command::new(mkfs)
            .args(["-q", "-F", "-O", "^64bit", "-b", "4096"])
            .arg(&file)
            .arg("8M")
            .status()
            .unwrap();
        assert!(st.success());
        let mut img = std::fs::read(&file).unwrap();
        let sb = &mut img[1024..2048];
        assert_eq!(sb[0x60] & 0x80, 0, "no 64bit feature");
        set_u32(sb, 0x150, 0x150);
        if sb[0x65] & 0x04 != 0 {
            let sum = crc32c_raw(&sb[..0x3fc]);
            sb[0x3fc..].copy_from_slice(&sum.to_le_bytes());
        }
        let sb: [u8; 1024] = sb.try_into().unwrap();
        assert_eq!(
            super::super::tree::check_geometry(&sb, img.len() as u64),
            Ok(())
        );
        let fs = Ext4::load(Box::new(img)).unwrap();
        let names: Vec<String> = fs
            .read_dir("/")
            .unwrap()
            .map(|e| e.unwrap().file_name().as_str().unwrap().to_string())
            .collect();
        assert!(names.iter().any(|n| n == "lost+found"), "{names:?}");
    }

    /// A sparse device as large as the superblock claims (2^29 groups): ext4-view reads the
    /// descriptors one by one, stops at the first bad one (it reserved memory for all of them
    /// at once before), and tazpod refuses the group count before that.
    #[test]
    fn a_huge_group_count_on_a_huge_device() {
        struct Sparse(Vec<u8>);
        impl Ext4Read for Sparse {
            fn read(
                &mut self,
                start: u64,
                dst: &mut [u8],
            ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
                if start
                    .checked_add(dst.len() as u64)
                    .is_none_or(|e| e > 1 << 46)
                {
                    return Err("past the end".into());
                }
                dst.fill(0);
                if let Some(have) = usize::try_from(start).ok().and_then(|s| self.0.get(s..)) {
                    let n = have.len().min(dst.len());
                    dst[..n].copy_from_slice(&have[..n]);
                }
                Ok(())
            }
        }
        let img = edited_superblock("luks2-cbc-essiv.img", |sb| {
            set_u32(sb, 4, u32::MAX);
            set_u32(sb, 0x20, 8);
        });
        let text = match Ext4::load(Box::new(Sparse(img.clone()))) {
            Ok(_) => panic!("loads"),
            Err(e) => e.to_string(),
        };
        assert!(text.contains("block group descriptor"), "{text}");
        let e = CliError::from(load(Box::new(Sparse(img)), "v", 1 << 46).err().unwrap());
        assert!(
            e.message.contains(&format!(
                "536870912 block groups (4294967295 blocks, 8 per group); tazpod reads \
                 filesystems of at most {MAX_GROUPS} groups"
            )),
            "{}",
            e.message
        );
    }
}
