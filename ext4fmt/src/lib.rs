//! A formatter of a fresh, empty ext4 filesystem: what `mkfs.ext4 -b 4096 -m 0 -L LABEL -E
//! root_owner=UID:GID,lazy_itable_init=1,lazy_journal_init=1` makes, in pure Rust.
//!
//! The filesystem has 4096-byte blocks, 32768 blocks per group, 256-byte inodes and the
//! features `has_journal ext_attr dir_index filetype extent 64bit sparse_super large_file
//! huge_file dir_nlink extra_isize metadata_csum` (no `resize_inode`, no `flex_bg`): a root
//! directory owned by the given user, `lost+found`, and (from 8 MiB up, as mkfs) a journal in
//! inode 8 sized as mkfs sizes it, at most 256 MiB.
//!
//! Only metadata is written, through [`WriteAt`]: the superblock and its backups, the group
//! descriptors and their backups, the bitmaps of the groups that hold something, the first
//! block of the first inode table, the two directories and the journal superblock. Nothing
//! else is touched, so a sparse image stays sparse, and the unwritten blocks may hold anything
//! (on dm-crypt they read as noise): the groups are marked `INODE_UNINIT`/`BLOCK_UNINIT` and
//! the unused part of every inode table is declared by `bg_itable_unused`, as mkfs's lazy
//! inode-table init does (the kernel zeroes the tables in the background after the first
//! mount); the journal is empty (`s_start` 0), so its log blocks are never read before the
//! kernel has written them (mkfs's lazy journal init).
//!
//! The library does not panic and has no unsafe code: a bad size is an [`Error`], and so is a
//! failed write.

#![forbid(unsafe_code)]

use std::fmt;

/// The block size.
pub const BLOCK_SIZE: u64 = BS as u64;
/// The block size, for buffers.
const BS: usize = 4096;
/// The smallest filesystem made: 1 MiB (256 blocks).
pub const MIN_SIZE: u64 = 1 << 20;
/// The largest filesystem made: 16 TiB minus one block (block numbers fit 32 bits).
pub const MAX_SIZE: u64 = ((1 << 32) - 1) * BLOCK_SIZE;
/// Blocks per group (one bitmap block of 4096 bytes).
const BLOCKS_PER_GROUP: u64 = 32768;
/// The inode size.
const INODE_SIZE: u64 = 256;
/// Inodes per inode table block.
const INODES_PER_BLOCK: u64 = BLOCK_SIZE / INODE_SIZE;
/// Group descriptor size (64bit).
const DESC_SIZE: u64 = 64;
/// The first non-reserved inode (`lost+found`).
const FIRST_INO: u32 = 11;
const ROOT_INO: u32 = 2;
const JOURNAL_INO: u32 = 8;
const LPF_INO: u32 = 11;
/// Blocks of `lost+found` (16 KiB, as mkfs).
const LPF_BLOCKS: u64 = 4;
/// The largest initialized extent.
const MAX_EXTENT: u64 = 32768;
/// The largest journal made (65536 blocks, 256 MiB).
const MAX_JOURNAL: u64 = 65536;
/// `i_extra_isize` (and `s_min_extra_isize`, `s_want_extra_isize`).
const EXTRA_ISIZE: u16 = 32;

// Feature flags.
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_EXT_ATTR: u32 = 0x8;
const COMPAT_DIR_INDEX: u32 = 0x20;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_LARGE_FILE: u32 = 0x2;
const RO_COMPAT_HUGE_FILE: u32 = 0x8;
const RO_COMPAT_DIR_NLINK: u32 = 0x20;
const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

// Group descriptor flags.
const BG_INODE_UNINIT: u16 = 0x1;
const BG_BLOCK_UNINIT: u16 = 0x2;

/// Inode flag: the inode uses extents.
const EXTENTS_FL: u32 = 0x80000;

/// What to format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Size of the device in bytes (a multiple of 4096 is used; the rest is left alone).
    pub size: u64,
    /// The filesystem UUID (random for a new filesystem).
    pub uuid: [u8; 16],
    /// The directory hash seed (random for a new filesystem).
    pub hash_seed: [u8; 16],
    /// The volume label, at most 16 bytes.
    pub label: Vec<u8>,
    /// Owner of the root directory: uid, gid.
    pub root_owner: (u32, u32),
    /// Creation time, seconds since the epoch (to February 2106; past January 2038 the
    /// inodes' epoch bits are set).
    pub time: u32,
}

/// Why a filesystem was not made.
#[derive(Debug)]
pub enum Error {
    /// The size is out of range ([`MIN_SIZE`] to [`MAX_SIZE`]).
    Size(u64),
    /// The label is longer than 16 bytes.
    Label(usize),
    /// A write failed: the byte offset and the error.
    Write(u64, std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Size(s) => write!(
                f,
                "a filesystem of {s} bytes cannot be made: from {MIN_SIZE} to {MAX_SIZE} bytes"
            ),
            Error::Label(n) => write!(f, "a label of {n} bytes is too long (at most 16)"),
            Error::Write(off, e) => write!(f, "write at byte {off}: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Write(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Where the filesystem is written: whole blocks at byte offsets.
pub trait WriteAt {
    /// Writes all of `data` at byte `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()>;
}

impl WriteAt for std::fs::File {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, data, offset)
    }
}

impl<T: WriteAt + ?Sized> WriteAt for &mut T {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        (**self).write_at(offset, data)
    }
}

/// A summary of what was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Blocks in the filesystem.
    pub blocks: u64,
    /// Block groups.
    pub groups: u64,
    /// Inodes per group.
    pub inodes_per_group: u64,
    /// Journal blocks (0: no journal).
    pub journal_blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Blocks written.
    pub written_blocks: u64,
}

/// The CRC32C (Castagnoli, reflected) table.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        #[allow(clippy::cast_possible_truncation)] // i < 256
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        #[allow(clippy::indexing_slicing)] // i < 256, and a constant
        {
            t[i] = c;
        }
        i += 1;
    }
    t
};

/// CRC32C as the kernel's `crc32c_le`: no inversion in or out.
fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        let k = usize::from(crc.to_le_bytes()[0] ^ b);
        crc = (crc >> 8) ^ CRC_TABLE.get(k).copied().unwrap_or(0);
    }
    crc
}

/// Writes `bytes` at `off` in `buf` (out of range: nothing; offsets here are constants).
fn put(buf: &mut [u8], off: u64, bytes: &[u8]) {
    let Ok(start) = usize::try_from(off) else {
        return;
    };
    if let Some(dst) = start
        .checked_add(bytes.len())
        .and_then(|end| buf.get_mut(start..end))
    {
        dst.copy_from_slice(bytes);
    }
}

fn put16(buf: &mut [u8], off: u64, v: u16) {
    put(buf, off, &v.to_le_bytes());
}

fn put32(buf: &mut [u8], off: u64, v: u32) {
    put(buf, off, &v.to_le_bytes());
}

/// The low 32 bits (the callers' values are below 2^32 or the low word is what is stored).
fn lo32(v: u64) -> u32 {
    u32::try_from(v & 0xFFFF_FFFF).unwrap_or(0)
}

fn hi32(v: u64) -> u32 {
    lo32(v >> 32)
}

fn lo16(v: u64) -> u16 {
    u16::try_from(v & 0xFFFF).unwrap_or(0)
}

fn put8(buf: &mut [u8], off: u64, v: u8) {
    put(buf, off, &[v]);
}

fn hi16(v: u64) -> u16 {
    lo16(v >> 16)
}

/// Sets bit `i` of a bitmap.
fn set_bit(map: &mut [u8], i: u64) {
    if let Some(b) = usize::try_from(i / 8).ok().and_then(|k| map.get_mut(k)) {
        *b |= 1 << (i % 8);
    }
}

/// Sets bits `from..to` of `map` (bits past its end: nothing), whole bytes at a time.
fn set_bits(map: &mut [u8], from: u64, to: u64) {
    let to = to.min(map.len() as u64 * 8);
    let mut i = from;
    while i < to && i % 8 != 0 {
        set_bit(map, i);
        i += 1;
    }
    let whole = (to - i.min(to)) / 8;
    if let (Ok(a), Ok(n)) = (usize::try_from(i / 8), usize::try_from(whole)) {
        if let Some(bytes) = map.get_mut(a..a + n) {
            bytes.fill(0xff);
        }
    }
    i += whole * 8;
    while i < to {
        set_bit(map, i);
        i += 1;
    }
}

/// Whether group `g` holds a superblock backup (`sparse_super`: 0, 1, powers of 3, 5, 7).
fn has_super(g: u64) -> bool {
    if g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut p = base;
        while p < g {
            match p.checked_mul(base) {
                Some(n) => p = n,
                None => return false,
            }
        }
        p == g
    })
}

/// The journal size mkfs picks for a filesystem of `blocks` 4 KiB blocks, capped.
fn journal_blocks(blocks: u64) -> u64 {
    let j = match blocks {
        0..2048 => 0,
        2048..32768 => 1024,
        32768..262_144 => 4096,
        262_144..524_288 => 8192,
        524_288..4_194_304 => 16384,
        4_194_304..8_388_608 => 32768,
        _ => 65536,
    };
    j.min(MAX_JOURNAL)
}

/// One block group's place.
#[derive(Debug, Clone)]
struct Group {
    start: u64,
    len: u64,
    /// Blocks of superblock and descriptor copy at the start (0 without a backup).
    super_blocks: u64,
    block_bitmap: u64,
    inode_bitmap: u64,
    inode_table: u64,
    /// The first block after the inode table.
    data_start: u64,
    /// Data blocks allocated from `data_start` on (contiguous).
    used_data: u64,
}

impl Group {
    fn meta(&self) -> u64 {
        self.data_start - self.start
    }
    fn free(&self) -> u64 {
        self.len - self.meta() - self.used_data
    }
}

/// The filesystem's geometry.
struct Layout {
    blocks: u64,
    groups: Vec<Group>,
    gdt_blocks: u64,
    ipg: u64,
    root_block: u64,
    lpf_block: u64,
    /// Journal extents: (logical block, length, physical start).
    journal: Vec<(u64, u64, u64)>,
    journal_blocks: u64,
}

fn layout(size: u64) -> Result<Layout, Error> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(Error::Size(size));
    }
    let mut blocks = size / BLOCK_SIZE;
    let ratio = if size < (512 << 20) { 4096 } else { 16384 };
    let mut ngroups = blocks.div_ceil(BLOCKS_PER_GROUP);
    let inodes = blocks * BLOCK_SIZE / ratio;
    let ipg = inodes
        .div_ceil(ngroups)
        .next_multiple_of(INODES_PER_BLOCK)
        .clamp(INODES_PER_BLOCK, BLOCKS_PER_GROUP);
    let itable_blocks = ipg / INODES_PER_BLOCK;
    let gdt_for = |n: u64| (n * DESC_SIZE).div_ceil(BLOCK_SIZE);
    // A last group too small for its metadata and some data goes (as mkfs does).
    let last = blocks - (ngroups - 1) * BLOCKS_PER_GROUP;
    let last_meta = if has_super(ngroups - 1) {
        1 + gdt_for(ngroups)
    } else {
        0
    } + 2
        + itable_blocks;
    if ngroups > 1 && last < last_meta + 50 {
        blocks -= last;
        ngroups -= 1;
    }
    let gdt_blocks = gdt_for(ngroups);
    let mut groups = Vec::new();
    for g in 0..ngroups {
        let start = g * BLOCKS_PER_GROUP;
        let len = BLOCKS_PER_GROUP.min(blocks - start);
        let super_blocks = if has_super(g) { 1 + gdt_blocks } else { 0 };
        let block_bitmap = start + super_blocks;
        let data_start = block_bitmap + 2 + itable_blocks;
        if data_start >= start + len {
            return Err(Error::Size(size));
        }
        groups.push(Group {
            start,
            len,
            super_blocks,
            block_bitmap,
            inode_bitmap: block_bitmap + 1,
            inode_table: block_bitmap + 2,
            data_start,
            used_data: 0,
        });
    }
    // The two directories at the start of group 0's data.
    let g0 = groups.first_mut().ok_or(Error::Size(size))?;
    if g0.free() < 1 + LPF_BLOCKS + 16 {
        return Err(Error::Size(size));
    }
    let root_block = g0.data_start;
    let lpf_block = root_block + 1;
    g0.used_data = 1 + LPF_BLOCKS;
    // The journal: the free runs that follow, one extent per group (metadata splits them).
    let want = journal_blocks(blocks);
    let mut journal = Vec::new();
    let mut placed = 0;
    for g in groups.iter_mut() {
        if placed == want || journal.len() == 4 {
            break;
        }
        let n = g.free().min(want - placed).min(MAX_EXTENT);
        if n == 0 {
            continue;
        }
        journal.push((placed, n, g.data_start + g.used_data));
        g.used_data += n;
        placed += n;
    }
    if placed != want {
        return Err(Error::Size(size));
    }
    Ok(Layout {
        blocks,
        groups,
        gdt_blocks,
        ipg,
        root_block,
        lpf_block,
        journal,
        journal_blocks: want,
    })
}

/// Counts the blocks written and hands them to the writer.
struct Out<'w, W: WriteAt + ?Sized> {
    w: &'w mut W,
    written: u64,
}

impl<W: WriteAt + ?Sized> Out<'_, W> {
    fn block(&mut self, block: u64, data: &[u8]) -> Result<(), Error> {
        let off = block * BLOCK_SIZE;
        self.w
            .write_at(off, data)
            .map_err(|e| Error::Write(off, e))?;
        self.written += (data.len() as u64).div_ceil(BLOCK_SIZE);
        Ok(())
    }
}

/// An inode's fields that differ between the ones made here.
struct InodeSpec<'a> {
    mode: u16,
    uid: u32,
    gid: u32,
    size: u64,
    links: u16,
    /// Extents: (logical block, length, physical start).
    extents: &'a [(u64, u64, u64)],
}

fn inode_bytes(spec: &InodeSpec<'_>, ino: u32, time: u32, seed: u32) -> [u8; 256] {
    let mut b = [0u8; 256];
    put16(&mut b, 0x00, spec.mode);
    put16(&mut b, 0x02, lo16(u64::from(spec.uid)));
    put32(&mut b, 0x04, lo32(spec.size));
    put32(&mut b, 0x08, time);
    put32(&mut b, 0x0C, time);
    put32(&mut b, 0x10, time);
    put16(&mut b, 0x18, lo16(u64::from(spec.gid)));
    put16(&mut b, 0x1A, spec.links);
    let blocks: u64 = spec.extents.iter().map(|e| e.1).sum();
    let sectors = blocks * (BLOCK_SIZE / 512);
    put32(&mut b, 0x1C, lo32(sectors));
    put32(&mut b, 0x20, EXTENTS_FL);
    // i_block: the extent header and up to 4 extents.
    put16(&mut b, 0x28, 0xF30A);
    put16(&mut b, 0x2A, lo16(spec.extents.len() as u64));
    put16(&mut b, 0x2C, 4);
    put16(&mut b, 0x2E, 0);
    for (k, &(logical, len, start)) in spec.extents.iter().enumerate() {
        let off = 0x28 + 12 + 12 * k as u64;
        put32(&mut b, off, lo32(logical));
        put16(&mut b, off + 4, lo16(len));
        put16(&mut b, off + 6, lo16(start >> 32));
        put32(&mut b, off + 8, lo32(start));
    }
    put32(&mut b, 0x6C, hi32(spec.size));
    put16(&mut b, 0x74, lo16(sectors >> 32));
    put16(&mut b, 0x78, hi16(u64::from(spec.uid)));
    put16(&mut b, 0x7A, hi16(u64::from(spec.gid)));
    put16(&mut b, 0x80, EXTRA_ISIZE);
    put32(&mut b, 0x90, time);
    // The base time fields are signed: past January 2038 (2^31 s) the epoch bits of the
    // `_extra` fields (ctime, mtime, atime, crtime) carry the 2^32 s the sign took.
    let epoch = u32::from(time >= 1 << 31);
    for off in [0x84, 0x88, 0x8C, 0x94] {
        put32(&mut b, off, epoch);
    }
    let csum = inode_csum(&b, ino, seed);
    put16(&mut b, 0x7C, lo16(u64::from(csum)));
    put16(&mut b, 0x82, hi16(u64::from(csum)));
    b
}

/// The seed of an inode's checksums (and its directory blocks'): generation 0.
fn inode_seed(ino: u32, seed: u32) -> u32 {
    crc32c(crc32c(seed, &ino.to_le_bytes()), &0u32.to_le_bytes())
}

/// The inode checksum (with the checksum fields zero in `b`).
fn inode_csum(b: &[u8; 256], ino: u32, seed: u32) -> u32 {
    crc32c(inode_seed(ino, seed), b)
}

/// A directory block: `entries` (inode, name), the last one spanning to the checksum tail.
/// No entries: one empty entry.
fn dir_block(entries: &[(u32, &[u8])], ino: u32, seed: u32) -> Vec<u8> {
    let bs = BS;
    let mut b = vec![0u8; bs];
    let tail = bs - 12;
    let mut off = 0usize;
    if entries.is_empty() {
        put16(&mut b, 4, lo16(tail as u64));
    }
    for (k, (inode, name)) in entries.iter().enumerate() {
        let rec = if k + 1 == entries.len() {
            tail - off
        } else {
            (8 + name.len()).next_multiple_of(4)
        };
        put32(&mut b, off as u64, *inode);
        put16(&mut b, off as u64 + 4, lo16(rec as u64));
        put8(
            &mut b,
            off as u64 + 6,
            u8::try_from(name.len()).unwrap_or(0),
        );
        put8(&mut b, off as u64 + 7, 2); // directory
        put(&mut b, off as u64 + 8, name);
        off += rec;
    }
    // The tail: inode 0, rec_len 12, name_len 0, type 0xDE, checksum.
    put16(&mut b, tail as u64 + 4, 12);
    put8(&mut b, tail as u64 + 7, 0xDE);
    let csum = crc32c(inode_seed(ino, seed), b.get(..tail).unwrap_or_default());
    put32(&mut b, tail as u64 + 8, csum);
    b
}

/// Formats `params.size` bytes of `w` as a new, empty ext4 filesystem.
pub fn format<W: WriteAt + ?Sized>(w: &mut W, params: &Params) -> Result<Summary, Error> {
    if params.label.len() > 16 {
        return Err(Error::Label(params.label.len()));
    }
    let l = layout(params.size)?;
    let now = params.time;
    let seed = crc32c(!0, &params.uuid);
    let bs = BS;
    let ngroups = l.groups.len() as u64;
    let last = ngroups - 1;
    let used_inodes = u64::from(FIRST_INO);

    // Group descriptors.
    let mut gdt = vec![0u8; usize::try_from(l.gdt_blocks * BLOCK_SIZE).unwrap_or(0)];
    let mut bitmaps: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut free_total = 0u64;
    // A block bitmap: `used` blocks from the start, and the blocks past the group's `len`.
    let block_bitmap = |used: u64, len: u64| {
        let mut bb = vec![0u8; bs];
        set_bits(&mut bb, 0, used);
        set_bits(&mut bb, len, BLOCKS_PER_GROUP);
        bb
    };
    // An inode bitmap: `used` inodes, and the bits past the group's inodes (the checksum
    // covers only the group's inodes).
    let inode_bitmap = |used: u64| {
        let mut ib = vec![0u8; bs];
        set_bits(&mut ib, 0, used);
        set_bits(&mut ib, l.ipg, BLOCK_SIZE * 8);
        ib
    };
    let ib_sum = |ib: &[u8]| {
        crc32c(
            seed,
            ib.get(..usize::try_from(l.ipg / 8).unwrap_or(0))
                .unwrap_or_default(),
        )
    };
    let ib0_csum = ib_sum(&inode_bitmap(used_inodes));
    let ib_csum = ib_sum(&inode_bitmap(0));
    let mut bb_sums: std::collections::BTreeMap<(u64, u64), u32> = Default::default();
    for (g, grp) in l.groups.iter().enumerate() {
        let g = g as u64;
        let has_data = grp.used_data > 0;
        let mut flags = 0u16;
        if g != 0 {
            flags |= BG_INODE_UNINIT;
        }
        let block_init = g == 0 || g == last || has_data;
        if !block_init {
            flags |= BG_BLOCK_UNINIT;
        }
        // The block bitmap (checksummed either way, written only when initialized). Groups
        // alike share one checksum: a 16 TiB filesystem has 131072 groups, almost all alike.
        let key = (grp.meta() + grp.used_data, grp.len);
        let bb_csum = match bb_sums.get(&key) {
            Some(c) => *c,
            None => {
                let c = crc32c(seed, &block_bitmap(key.0, key.1));
                bb_sums.insert(key, c);
                c
            }
        };
        let ib_csum = if g == 0 { ib0_csum } else { ib_csum };
        let free_blocks = grp.free();
        free_total += free_blocks;
        let (free_inodes, dirs, unused) = if g == 0 {
            (l.ipg - used_inodes, 2, l.ipg - used_inodes)
        } else {
            (l.ipg, 0, l.ipg)
        };
        let mut d = [0u8; 64];
        put32(&mut d, 0x00, lo32(grp.block_bitmap));
        put32(&mut d, 0x04, lo32(grp.inode_bitmap));
        put32(&mut d, 0x08, lo32(grp.inode_table));
        put16(&mut d, 0x0C, lo16(free_blocks));
        put16(&mut d, 0x0E, lo16(free_inodes));
        put16(&mut d, 0x10, dirs);
        put16(&mut d, 0x12, flags);
        put16(&mut d, 0x18, lo16(u64::from(bb_csum)));
        put16(&mut d, 0x1A, lo16(u64::from(ib_csum)));
        put16(&mut d, 0x1C, lo16(unused));
        put32(&mut d, 0x20, hi32(grp.block_bitmap));
        put32(&mut d, 0x24, hi32(grp.inode_bitmap));
        put32(&mut d, 0x28, hi32(grp.inode_table));
        put16(&mut d, 0x2C, hi16(free_blocks));
        put16(&mut d, 0x2E, hi16(free_inodes));
        put16(&mut d, 0x32, hi16(unused));
        put16(&mut d, 0x38, hi16(u64::from(bb_csum)));
        put16(&mut d, 0x3A, hi16(u64::from(ib_csum)));
        let csum = crc32c(crc32c(seed, &lo32(g).to_le_bytes()), &d);
        put16(&mut d, 0x1E, lo16(u64::from(crc32c_low(csum))));
        put(&mut gdt, g * DESC_SIZE, &d);
        if block_init {
            bitmaps.push((grp.block_bitmap, block_bitmap(key.0, key.1)));
        }
        if g == 0 {
            bitmaps.push((grp.inode_bitmap, inode_bitmap(used_inodes)));
        }
    }

    // The superblock (group 0's; the backups differ in s_block_group_nr and the checksum).
    let mut sb = [0u8; 1024];
    let inodes_count = l.ipg * ngroups;
    put32(&mut sb, 0x00, lo32(inodes_count));
    put32(&mut sb, 0x04, lo32(l.blocks));
    put32(&mut sb, 0x0C, lo32(free_total));
    put32(&mut sb, 0x10, lo32(inodes_count - used_inodes));
    put32(&mut sb, 0x14, 0);
    put32(&mut sb, 0x18, 2);
    put32(&mut sb, 0x1C, 2);
    put32(&mut sb, 0x20, lo32(BLOCKS_PER_GROUP));
    put32(&mut sb, 0x24, lo32(BLOCKS_PER_GROUP));
    put32(&mut sb, 0x28, lo32(l.ipg));
    put32(&mut sb, 0x30, now);
    put16(&mut sb, 0x36, 0xFFFF);
    put16(&mut sb, 0x38, 0xEF53);
    put16(&mut sb, 0x3A, 1);
    put16(&mut sb, 0x3C, 1);
    put32(&mut sb, 0x40, now);
    put32(&mut sb, 0x4C, 1);
    put32(&mut sb, 0x54, FIRST_INO);
    put16(&mut sb, 0x58, lo16(INODE_SIZE));
    let journal = l.journal_blocks > 0;
    let compat = COMPAT_EXT_ATTR | COMPAT_DIR_INDEX | if journal { COMPAT_HAS_JOURNAL } else { 0 };
    put32(&mut sb, 0x5C, compat);
    put32(
        &mut sb,
        0x60,
        INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT,
    );
    put32(
        &mut sb,
        0x64,
        RO_COMPAT_SPARSE_SUPER
            | RO_COMPAT_LARGE_FILE
            | RO_COMPAT_HUGE_FILE
            | RO_COMPAT_DIR_NLINK
            | RO_COMPAT_EXTRA_ISIZE
            | RO_COMPAT_METADATA_CSUM,
    );
    put(&mut sb, 0x68, &params.uuid);
    put(&mut sb, 0x78, &params.label);
    put(&mut sb, 0xEC, &params.hash_seed);
    put8(&mut sb, 0xFC, 1); // half_md4
    put16(&mut sb, 0xFE, lo16(DESC_SIZE));
    put32(&mut sb, 0x100, 0x000C); // user_xattr acl
    put32(&mut sb, 0x108, now);
    put16(&mut sb, 0x15C, EXTRA_ISIZE);
    put16(&mut sb, 0x15E, EXTRA_ISIZE);
    put32(&mut sb, 0x160, 0x1); // signed directory hash
    put8(&mut sb, 0x175, 1); // crc32c
    put32(&mut sb, 0x150, hi32(l.blocks));
    put32(&mut sb, 0x158, hi32(free_total));

    let journal_inode = InodeSpec {
        mode: 0o100600,
        uid: 0,
        gid: 0,
        size: l.journal_blocks * BLOCK_SIZE,
        links: 1,
        extents: &l.journal,
    };
    let j_inode = inode_bytes(&journal_inode, JOURNAL_INO, now, seed);
    if journal {
        put32(&mut sb, 0xE0, JOURNAL_INO);
        put8(&mut sb, 0xFD, 1); // s_jnl_blocks holds a copy of i_block
        put(&mut sb, 0x10C, j_inode.get(0x28..0x64).unwrap_or_default());
        put32(&mut sb, 0x10C + 15 * 4, hi32(journal_inode.size));
        put32(&mut sb, 0x10C + 16 * 4, lo32(journal_inode.size));
    }

    let mut out = Out { w, written: 0 };

    // Superblocks and descriptor tables.
    for (g, grp) in l.groups.iter().enumerate() {
        if grp.super_blocks == 0 {
            continue;
        }
        let mut copy = sb;
        put16(&mut copy, 0x5A, lo16(g as u64));
        let csum = crc32c(!0, copy.get(..0x3FC).unwrap_or_default());
        put32(&mut copy, 0x3FC, csum);
        let mut block = vec![0u8; bs];
        put(&mut block, if g == 0 { 1024 } else { 0 }, &copy);
        out.block(grp.start, &block)?;
        out.block(grp.start + 1, &gdt)?;
    }
    for (block, map) in &bitmaps {
        out.block(*block, map)?;
    }

    // The first inode table block: inodes 1 to 16.
    let mut itable = vec![0u8; bs];
    let root = InodeSpec {
        mode: 0o040755,
        uid: params.root_owner.0,
        gid: params.root_owner.1,
        size: BLOCK_SIZE,
        links: 3,
        extents: &[(0, 1, l.root_block)],
    };
    let lpf = InodeSpec {
        mode: 0o040700,
        uid: 0,
        gid: 0,
        size: LPF_BLOCKS * BLOCK_SIZE,
        links: 2,
        extents: &[(0, LPF_BLOCKS, l.lpf_block)],
    };
    put(
        &mut itable,
        u64::from(ROOT_INO - 1) * INODE_SIZE,
        &inode_bytes(&root, ROOT_INO, now, seed),
    );
    put(
        &mut itable,
        u64::from(LPF_INO - 1) * INODE_SIZE,
        &inode_bytes(&lpf, LPF_INO, now, seed),
    );
    if journal {
        put(
            &mut itable,
            u64::from(JOURNAL_INO - 1) * INODE_SIZE,
            &j_inode,
        );
    }
    let g0_table = l.groups.first().map(|g| g.inode_table).unwrap_or(0);
    out.block(g0_table, &itable)?;

    // The directories.
    let root_dir = dir_block(
        &[
            (ROOT_INO, b"."),
            (ROOT_INO, b".."),
            (LPF_INO, b"lost+found"),
        ],
        ROOT_INO,
        seed,
    );
    out.block(l.root_block, &root_dir)?;
    out.block(
        l.lpf_block,
        &dir_block(&[(LPF_INO, b"."), (ROOT_INO, b"..")], LPF_INO, seed),
    )?;
    let empty = dir_block(&[], LPF_INO, seed);
    for k in 1..LPF_BLOCKS {
        out.block(l.lpf_block + k, &empty)?;
    }

    // The journal superblock (jbd2 v2, big-endian, empty).
    if let Some(&(_, _, jstart)) = l.journal.first() {
        let mut j = vec![0u8; bs];
        put(&mut j, 0x00, &0xC03B_3998u32.to_be_bytes());
        put(&mut j, 0x04, &4u32.to_be_bytes());
        put(&mut j, 0x0C, &lo32(BLOCK_SIZE).to_be_bytes());
        put(&mut j, 0x10, &lo32(l.journal_blocks).to_be_bytes());
        put(&mut j, 0x14, &1u32.to_be_bytes());
        put(&mut j, 0x18, &1u32.to_be_bytes());
        put(&mut j, 0x30, &params.uuid);
        put(&mut j, 0x40, &1u32.to_be_bytes());
        out.block(jstart, &j)?;
    }

    Ok(Summary {
        blocks: l.blocks,
        groups: ngroups,
        inodes_per_group: l.ipg,
        journal_blocks: l.journal_blocks,
        free_blocks: free_total,
        written_blocks: out.written,
    })
}

/// The group descriptor checksum keeps the low 16 bits.
fn crc32c_low(c: u32) -> u32 {
    c & 0xFFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_bits_sets_exactly_the_range() {
        for from in 0..40u64 {
            for to in 0..48u64 {
                let mut fast = [0u8; 5];
                set_bits(&mut fast, from, to);
                let mut slow = [0u8; 5];
                for i in from..to {
                    set_bit(&mut slow, i);
                }
                assert_eq!(fast, slow, "{from}..{to}");
            }
        }
    }

    #[test]
    fn crc32c_matches_the_check_value() {
        // CRC-32C of "123456789" is 0xE3069283 (inverted in and out).
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn sparse_super_groups() {
        let got: Vec<u64> = (0..400).filter(|&g| has_super(g)).collect();
        assert_eq!(got, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343]);
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        let p = |size| Params {
            size,
            uuid: [1; 16],
            hash_seed: [2; 16],
            label: b"x".to_vec(),
            root_owner: (0, 0),
            time: 0,
        };
        let mut sink = Vec::<u8>::new();
        struct Null;
        impl WriteAt for Null {
            fn write_at(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
                Ok(())
            }
        }
        sink.clear();
        assert!(matches!(
            format(&mut Null, &p(MIN_SIZE - 4096)),
            Err(Error::Size(_))
        ));
        assert!(matches!(
            format(&mut Null, &p(MAX_SIZE + 4096)),
            Err(Error::Size(_))
        ));
        assert!(format(&mut Null, &p(MIN_SIZE)).is_ok());
    }
}
