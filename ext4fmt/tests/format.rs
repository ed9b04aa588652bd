//! The formatter's output checked by e2fsprogs (`e2fsck -fn`, `dumpe2fs`), read by ext4-view
//! (the rootless verbs' reader), and mounted by the kernel (loop device; root only).
//!
//! The e2fsprogs checks are skipped (with a line on stderr) where e2fsck is not installed;
//! `tests/run-all.sh` installs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::panic
)]

use ext4fmt::{format, Params, Summary, WriteAt};
use std::io::Write;
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// A vault's LUKS2 header (the filesystem is the rest of the image).
const HEADER: u64 = 16 * MIB;

fn params(size: u64) -> Params {
    Params {
        size,
        uuid: *b"\x5a\x17\x00\x42tazpod-tests",
        hash_seed: *b"hash seed 012345",
        label: b"tazpod-vault".to_vec(),
        root_owner: (1000, 1001),
        time: 1_700_000_000,
    }
}

fn have(tool: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

/// A sparse image of `size` bytes, formatted.
fn image(dir: &Path, size: u64) -> (std::path::PathBuf, Summary) {
    let path = dir.join(format!("fs-{size}.img"));
    let mut f = std::fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    let s = format(&mut f, &params(size)).unwrap();
    (path, s)
}

fn e2fsck(path: &Path) -> (i32, String) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Allocated bytes of a file.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn e2fsck_passes_from_the_minimum_to_64_gib() {
    if !have("e2fsck") {
        eprintln!("skipped: no e2fsck (install e2fsprogs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The minimum (a 17 MiB vault), around the journal and group thresholds, odd sizes with
    // a short last group (and one so short it is dropped), TazPod's default, up to 64 GiB.
    let sizes = [
        MIB,
        MIB + 4096,
        8 * MIB - 4096,
        8 * MIB,
        128 * MIB,
        128 * MIB + 4096,
        (128 + 1) * MIB + 50 * 4096,
        512 * MIB - HEADER,
        512 * MIB,
        GIB + 123 * 4096,
        4 * GIB - HEADER,
        16 * GIB,
        32 * GIB - HEADER,
        64 * GIB - HEADER,
        64 * GIB,
    ];
    for size in sizes {
        let (path, s) = image(dir.path(), size);
        let (code, text) = e2fsck(&path);
        assert_eq!(code, 0, "size {size}: {s:?}\n{text}");
        assert!(
            text.contains(&format!("11/{} files", s.groups * s.inodes_per_group)),
            "{text}"
        );
        // Metadata only: a 64 GiB filesystem takes well under a megabyte.
        assert!(
            allocated(&path) <= s.written_blocks * 4096 + 64 * 1024,
            "{size}"
        );
        std::fs::remove_file(&path).unwrap();
    }
}

/// On dm-crypt the blocks never written read as noise, not zeros: the filesystem must not
/// depend on them.
#[test]
fn e2fsck_passes_on_a_device_full_of_noise() {
    if !have("e2fsck") {
        eprintln!("skipped: no e2fsck (install e2fsprogs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for size in [MIB, 40 * MIB, 200 * MIB - HEADER] {
        let path = dir.path().join("noise.img");
        let mut f = std::fs::File::create(&path).unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ size;
        let mut buf = vec![0u8; MIB as usize];
        for _ in 0..size / MIB {
            for chunk in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&buf).unwrap();
        }
        format(&mut f, &params(size)).unwrap();
        let (code, text) = e2fsck(&path);
        assert_eq!(code, 0, "size {size}\n{text}");
    }
}

#[test]
fn dumpe2fs_shows_the_features_label_and_owner() {
    if !have("dumpe2fs") || !have("debugfs") {
        eprintln!("skipped: no dumpe2fs/debugfs (install e2fsprogs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, s) = image(dir.path(), 512 * MIB - HEADER);
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .map(|l| l[key.len()..].trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
    };
    assert_eq!(line("Filesystem volume name:"), "tazpod-vault");
    assert_eq!(
        line("Filesystem features:"),
        "has_journal ext_attr dir_index filetype extent 64bit sparse_super large_file \
         huge_file dir_nlink extra_isize metadata_csum"
    );
    assert_eq!(line("Block size:"), "4096");
    assert_eq!(line("Reserved block count:"), "0");
    assert_eq!(line("Checksum type:"), "crc32c");
    assert_eq!(line("Journal inode:"), "8");
    assert_eq!(line("Total journal blocks:"), "4096");
    assert_eq!(line("Journal start:"), "0");
    assert_eq!(line("Filesystem state:"), "clean");
    assert_eq!(line("Free blocks:"), s.free_blocks.to_string());
    let out = Command::new("debugfs")
        .arg("-R")
        .arg("stat /")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("User:  1000   Group:  1001"), "{text}");
    assert!(text.contains("Mode:  0755"), "{text}");
}

struct Image(std::fs::File);

impl ext4_view::Ext4Read for Image {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, dst, start)?;
        Ok(())
    }
}

#[test]
fn ext4_view_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    for size in [MIB, 512 * MIB - HEADER, 64 * GIB - HEADER] {
        let (path, _) = image(dir.path(), size);
        let fs =
            ext4_view::Ext4::load(Box::new(Image(std::fs::File::open(&path).unwrap()))).unwrap();
        assert_eq!(fs.label().to_str().unwrap(), "tazpod-vault");
        let root = fs.metadata("/").unwrap();
        assert!(root.is_dir());
        assert_eq!(
            (root.uid(), root.gid(), root.mode() & 0o7777),
            (1000, 1001, 0o755)
        );
        let names: Vec<String> = fs
            .read_dir("/")
            .unwrap()
            .map(|e| e.unwrap().file_name().as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, [".", "..", "lost+found"]);
        let lpf = fs.metadata("/lost+found").unwrap();
        assert_eq!(
            (lpf.uid(), lpf.mode() & 0o7777, lpf.len()),
            (0, 0o700, 16384)
        );
        assert_eq!(fs.read_dir("/lost+found").unwrap().count(), 2);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn only_metadata_is_written() {
    struct Count(Vec<(u64, usize)>);
    impl WriteAt for Count {
        fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.0.push((offset, data.len()));
            Ok(())
        }
    }
    let mut c = Count(Vec::new());
    let s = format(&mut c, &params(512 * MIB - HEADER)).unwrap();
    // Superblocks and descriptors (groups 0, 1, 3), bitmaps, one inode table block, five
    // directory blocks, the journal superblock.
    assert_eq!(s.written_blocks, 16);
    assert!(c.0.iter().all(|&(o, n)| o % 4096 == 0 && n == 4096));
    let bytes: usize = c.0.iter().map(|w| w.1).sum();
    assert_eq!(bytes as u64, s.written_blocks * 4096);
}

/// The kernel mounts it (loop device), files written there survive a remount and pass
/// e2fsck, and ext4-view reads them. Root only (skipped otherwise).
#[test]
fn kernel_round_trip() {
    if euid() != 0 || !have("mount") || !have("e2fsck") {
        eprintln!("skipped: needs root, mount and e2fsck");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = image(dir.path(), 64 * MIB);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mount = |ro: bool| {
        let opts = if ro { "loop,ro" } else { "loop" };
        let st = Command::new("mount")
            .args(["-t", "ext4", "-o", opts])
            .arg(&path)
            .arg(&mnt)
            .status()
            .unwrap();
        st.success()
    };
    if !mount(false) {
        eprintln!("skipped: the loop mount failed (no loop devices here?)");
        return;
    }
    let umount = || assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::create_dir(mnt.join("d")).unwrap();
    for i in 0..200 {
        std::fs::write(mnt.join("d").join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    std::fs::write(mnt.join("big"), &big).unwrap();
    umount();
    let (code, text) = e2fsck(&path);
    assert_eq!(code, 0, "{text}");
    assert!(mount(true));
    assert_eq!(std::fs::read(mnt.join("big")).unwrap(), big);
    assert_eq!(
        std::fs::read_to_string(mnt.join("d/f199")).unwrap(),
        "file 199\n"
    );
    umount();
    let fs = ext4_view::Ext4::load(Box::new(Image(std::fs::File::open(&path).unwrap()))).unwrap();
    assert_eq!(fs.read("/big").unwrap(), big);
    assert_eq!(fs.read_dir("/d").unwrap().count(), 202);
}

/// The effective uid, from /proc (the crate has no libc).
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Times up to 2106 (the `time` field is 32 bits unsigned): the inodes say exactly that time as
/// ext4-view reads it (signed base field plus the `_extra` epoch bits, as the kernel), the
/// kernel's reader in debugfs agrees, and e2fsck finds nothing.
#[test]
fn times_past_2038_read_back() {
    let dir = tempfile::tempdir().unwrap();
    for time in [0u32, 1_700_000_000, (1 << 31) - 1, 1 << 31, u32::MAX] {
        let path = dir.path().join(format!("t-{time}.img"));
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(8 * MIB).unwrap();
        format(
            &mut f,
            &Params {
                time,
                ..params(8 * MIB)
            },
        )
        .unwrap();
        drop(f);
        let fs =
            ext4_view::Ext4::load(Box::new(Image(std::fs::File::open(&path).unwrap()))).unwrap();
        for p in ["/", "/lost+found"] {
            let m = fs.metadata(p).unwrap();
            let want = i64::from(time);
            assert_eq!(m.modified().seconds(), want, "{p} mtime, time {time}");
            assert_eq!(m.accessed().seconds(), want, "{p} atime, time {time}");
            assert_eq!(
                m.created().map(|t| t.seconds()),
                Some(want),
                "{p} crtime, time {time}"
            );
        }
        if have("e2fsck") {
            let (code, text) = e2fsck(&path);
            assert_eq!(code, 0, "time {time}: {text}");
        }
        if have("debugfs") {
            let out = Command::new("debugfs")
                .args(["-R", "stat <2>"])
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            // debugfs prints the base field and the `_extra` field (the epoch bits).
            let hex = format!("0x{:08x}:{:08x}", time, u32::from(time >= 1 << 31));
            assert!(
                text.contains(&format!("mtime: {hex}")) && text.contains(&format!("crtime: {hex}")),
                "time {time}: {text}"
            );
        }
        std::fs::remove_file(&path).unwrap();
    }
}
