//! The vault formatter (`ext4fmt`), fuzzed, then its output corrupted and read back as the
//! rootless verbs read a vault. The input chooses the parameters (size anywhere from 0 to
//! 2^64-1, most often up to 64 GiB and near the edges that matter: the minimum, a group
//! boundary, the smallest journal; label of 0-31 bytes; root owner; time; UUID; hash seed), then
//! a list of corruptions (a byte offset into the written metadata and an XOR mask).
//!
//! Checked:
//! - `format` refuses exactly what is out of range (a label over 16 bytes, a size outside
//!   `MIN_SIZE..=MAX_SIZE`) with the matching error, never writes past the end, never panics;
//! - up to 64 GiB (held as the written blocks only), what it made loads through the rootless
//!   verbs' loader (`tree::load`: tazpod's geometry check, then `ext4-view`), carries the
//!   label, has a root directory owned by the chosen user (mode 0755) holding only
//!   `lost+found`, and the whole tree walks cleanly;
//! - then, with the corruptions applied to the metadata blocks it wrote (superblock, group
//!   descriptors, bitmaps, inode table, directories, journal superblock), the same load and walk
//!   may fail, with a clean error, but must not panic.
#![no_main]
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tazpod_fuzz::{tree, SparseImage};

/// Largest filesystem read back (larger ones are formatted into a discarding sink).
const READ_BACK: u64 = 64 << 30;
const MIB: u64 = 1 << 20;
/// Blocks per group, in bytes.
const GROUP: u64 = 32768 * 4096;

fn size(u: &mut Unstructured) -> Result<u64> {
    let near = |u: &mut Unstructured, at: u64| -> Result<u64> {
        let d = u.int_in_range(0u64..=16384)?;
        Ok(if u.arbitrary()? {
            at.saturating_add(d)
        } else {
            at.saturating_sub(d)
        })
    };
    Ok(match u.int_in_range(0u8..=7)? {
        0 => u.arbitrary()?,
        1 => near(u, ext4fmt::MIN_SIZE)?,
        2 => near(u, 8 * MIB)?,
        3 => {
            let at = u.int_in_range(1u64..=512)? * GROUP;
            near(u, at)?
        }
        4 => near(u, 512 * MIB)?,
        5 => near(u, ext4fmt::MAX_SIZE)?,
        _ => u.int_in_range(0..=READ_BACK)?,
    })
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let size = size(&mut u)?;
    let label_len = u.int_in_range(0usize..=31)?;
    let label = u.bytes(label_len)?.to_vec();
    let params = ext4fmt::Params {
        size,
        uuid: u.arbitrary()?,
        hash_seed: u.arbitrary()?,
        label,
        root_owner: (u.arbitrary()?, u.arbitrary()?),
        time: u.arbitrary()?,
    };
    let in_range = (ext4fmt::MIN_SIZE..=ext4fmt::MAX_SIZE).contains(&size);
    let read_back = size <= READ_BACK;
    let mut img = if read_back {
        SparseImage::new(size)
    } else {
        SparseImage::discarding(size)
    };
    let r = ext4fmt::format(&mut img, &params);
    match (&r, params.label.len() > 16, in_range) {
        (Err(ext4fmt::Error::Label(n)), true, _) => assert_eq!(*n, params.label.len()),
        (Err(ext4fmt::Error::Size(s)), false, false) => assert_eq!(*s, size),
        (Ok(_), false, true) => {}
        (r, _, _) => panic!("format({size} bytes, label {:?}): {r:?}", params.label),
    }
    if r.is_err() || !read_back {
        return Ok(());
    }

    // What it made reads back as a vault's filesystem.
    let len = img.len();
    let dirs = tree::max_dirs(img.written()).max(2);
    let fs = tree::load(Box::new(img), "fuzz", len).unwrap_or_else(|e| {
        panic!(
            "{size} bytes: the new filesystem does not load: {e}"
        )
    });
    let label = fs.label().to_str().map(|s| s.as_bytes().to_vec());
    // (A label is a C string: it reads back up to its first NUL.)
    let want: Vec<u8> = params
        .label
        .iter()
        .copied()
        .take_while(|b| *b != 0)
        .collect();
    if let Ok(l) = label {
        assert_eq!(l, want, "label");
    }
    let root = fs.metadata("/").expect("root directory");
    assert!(root.is_dir());
    assert_eq!((root.uid(), root.gid()), params.root_owner, "root owner");
    assert_eq!(root.mode() & 0o7777, 0o755);
    let names: Vec<Vec<u8>> = fs
        .read_dir("/")
        .expect("read root")
        .map(|e| e.expect("root entry").file_name().as_ref().to_vec())
        .collect();
    assert_eq!(names, [&b"."[..], b"..", b"lost+found"]);
    tree::walk_all(&fs, "fuzz", dirs, 1 << 20).unwrap_or_else(|e| {
        panic!(
            "{size} bytes: the new filesystem does not walk: {e}"
        )
    });
    drop(fs);

    // Corrupted metadata: a clean error or a walk, never a panic.
    let mut img = SparseImage::new(size);
    ext4fmt::format(&mut img, &params).expect("formats again");
    let mut any = false;
    while !u.is_empty() {
        let at: u64 = u.arbitrary()?;
        let mask: u8 = u.arbitrary()?;
        img.corrupt(at, mask.max(1));
        any = true;
    }
    if any {
        let len = img.len();
        let dirs = tree::max_dirs(img.written()).max(2);
        let _ = tree::load(Box::new(img), "fuzz", len)
            .and_then(|fs| tree::walk_all(&fs, "fuzz", dirs, 1 << 20));
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
