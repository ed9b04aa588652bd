//! Shared helpers for the fuzz targets.
//!
//! - [`fix_checksums`]: cryptsetup's trick from `crypt2_load_fuzz.cc`: recompute the checksum
//!   of every LUKS2 header copy in a mutated image, so the fuzzer gets past the checksum and
//!   reaches the JSON parser and the validator.
//! - `kernel` and `table`: the binary crate's pure encoders and decoders (a fuzz target cannot
//!   depend on a bin crate), compiled here from the same source files.
//! - `tree`: the binary crate's filesystem walk of the rootless verbs (`ls`, `cat`, `run`),
//!   with its own error type, for the `ext4` target, with [`Ext4Image`] (a fuzzed image padded
//!   with zeros, superblock checksum fixed up).
#![allow(clippy::all)]

/// The binary crate's kernel modules (only the pure dm encode/decode functions are fuzzed;
/// nothing here calls the kernel).
#[allow(dead_code, unused_imports, unused_variables)]
#[path = "../../src/kernel/mod.rs"]
pub mod kernel;

/// The binary crate's dm-crypt table builder and parser.
#[allow(dead_code)]
#[path = "../../src/table.rs"]
pub mod table;

/// The binary crate's filesystem walk of `ls`, `cat` and `run`.
#[allow(dead_code)]
#[path = "../../src/rootless/tree.rs"]
pub mod tree;

/// The nine LUKS2 header sizes (binary header + JSON area) cryptsetup accepts.
pub const HDR_SIZES: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Recomputes the checksum of the copy at `at` if its binary header names a usable size and a
/// hash we know (sha1, sha256, sha512), as a cryptsetup-written header would have it. Bytes of
/// the copy past the end of `img` count as zeros (see [`Padded`]).
pub fn fix_checksum_at(img: &mut [u8], at: usize) {
    let Some(hdr_size) = be_u64(img, at + 8) else {
        return;
    };
    if !HDR_SIZES.contains(&hdr_size) || img.len() < at + 512 {
        return;
    }
    let end = at + hdr_size as usize;
    let alg_field = &img[at + 72..at + 104];
    let alg_len = alg_field.iter().position(|&b| b == 0).unwrap_or(32);
    let alg = alg_field[..alg_len].to_ascii_lowercase();
    img[at + 448..at + 512].fill(0);
    let present = &img[at..end.min(img.len())];
    let missing = end - at - present.len();
    fn sum<D: sha2::Digest>(present: &[u8], missing: usize) -> Vec<u8> {
        let mut d = D::new();
        d.update(present);
        let zeros = [0u8; 4096];
        let mut left = missing;
        while left > 0 {
            let n = left.min(zeros.len());
            d.update(&zeros[..n]);
            left -= n;
        }
        d.finalize().to_vec()
    }
    let sum = match alg.as_slice() {
        b"sha256" => sum::<sha2::Sha256>(present, missing),
        b"sha1" => sum::<sha1::Sha1>(present, missing),
        b"sha512" => sum::<sha2::Sha512>(present, missing),
        _ => return,
    };
    img[at + 448..at + 448 + sum.len()].copy_from_slice(&sum);
}

/// Fixes the checksum of the primary copy and of every secondary copy (`SKUL` magic at one of
/// the nine allowed offsets).
pub fn fix_checksums(img: &mut [u8]) {
    if img.starts_with(b"LUKS\xba\xbe") {
        fix_checksum_at(img, 0);
    }
    for off in HDR_SIZES {
        let off = off as usize;
        if img.get(off..off + 6) == Some(b"SKUL\xba\xbe") {
            fix_checksum_at(img, off);
        }
    }
}

/// A device made of `data` followed by zeros up to `len` bytes, without allocating them, so
/// that a short fuzz input passes the device-size checks (`config.keyslots_size` and
/// `hdr_size` may ask for up to 136 MiB) and reaches the code after them.
pub struct Padded<'a> {
    data: &'a [u8],
    len: u64,
    pos: u64,
}

/// The largest `2 × hdr_size + keyslots_size` a valid header can ask for (2 × 4 MiB + 128 MiB).
pub const MAX_HEADER_AND_AREAS: u64 = 2 * 0x40_0000 + 0x800_0000;

impl<'a> Padded<'a> {
    /// `data` padded with zeros to `max(len, data.len())` bytes.
    pub fn new(data: &'a [u8], len: u64) -> Self {
        Padded {
            data,
            len: len.max(data.len() as u64),
            pos: 0,
        }
    }
}

impl std::io::Read for Padded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - self.pos) as usize;
        let out = &mut buf[..n];
        let start = self.pos.min(self.data.len() as u64) as usize;
        let avail = &self.data[start..];
        let k = if self.pos < self.data.len() as u64 {
            avail.len().min(n)
        } else {
            0
        };
        out[..k].copy_from_slice(&avail[..k]);
        out[k..].fill(0);
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for Padded<'_> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        let new = match pos {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before start",
            )),
        }
    }
}

/// Tiny KDF limits so that an unlock on fuzzed input returns in about a millisecond, yet the
/// fixtures' own keyslots (PBKDF2 1000 iterations; Argon2 4 passes over 64 or 256 KiB) still
/// open: 256 KiB of Argon2 memory, 4 passes, 4 lanes, 1000 PBKDF2 iterations.
pub fn tiny_limits() -> luks2::kdf::KdfLimits {
    luks2::kdf::KdfLimits {
        max_memory_kib: 256,
        max_time: 4,
        max_cpus: 4,
        max_pbkdf2_iterations: 1000,
        // The iteration cap above is tighter than any time budget: no speed measurement.
        max_pbkdf2_seconds: None,
    }
}

/// The end of a read of `n` bytes at `start` from an image of `len` bytes, or the error
/// `ext4-view` gets for a read past the end (as past the end of a vault's data segment).
fn read_end(start: u64, n: usize, len: u64) -> Result<u64, &'static str> {
    start
        .checked_add(n as u64)
        .filter(|e| *e <= len)
        .ok_or("read past the end of the image")
}

/// Largest filesystem an [`Ext4Image`] pretends to be (zeros past the input).
pub const MAX_EXT4_IMAGE: u64 = 256 << 20;

/// A fuzzed ext4 image as `ext4-view` reads it: the input, then zeros up to the size its
/// superblock claims (at most [`MAX_EXT4_IMAGE`]), so that seeds can drop the long runs of
/// zeros at the end of a freshly made filesystem and stay small. Reads past that size fail,
/// as they do past the end of a vault's data segment.
pub struct Ext4Image {
    data: Vec<u8>,
    len: u64,
}

/// Offset of the ext4 superblock.
const SB: usize = 1024;
/// Offset of `s_checksum` in the superblock.
const SB_CSUM: usize = 0x3fc;

impl Ext4Image {
    /// `data` with its superblock checksum recomputed (when the superblock says
    /// `metadata_csum`), cryptsetup's fix-up trick applied to ext4: mutations of the superblock
    /// get past its checksum and reach the code after it (also the flip of `metadata_csum`
    /// itself, which turns every other checksum off).
    pub fn new(mut data: Vec<u8>) -> Self {
        let u32_at = |d: &[u8], at: usize| {
            d.get(at..at + 4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()))
        };
        let ro_compat = u32_at(&data, SB + 0x64);
        if ro_compat & 0x400 != 0 && data.len() >= SB + 1024 {
            const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
            let sum = CRC32C.checksum(&data[SB..SB + SB_CSUM]) ^ !0;
            data[SB + SB_CSUM..SB + SB_CSUM + 4].copy_from_slice(&sum.to_le_bytes());
        }
        let log = u32_at(&data, SB + 24);
        let blocks_lo = u64::from(u32_at(&data, SB + 4));
        let incompat = u32_at(&data, SB + 0x60);
        let blocks_hi = if incompat & 0x80 != 0 {
            u64::from(u32_at(&data, SB + 0x150))
        } else {
            0
        };
        let blocks = blocks_lo | (blocks_hi << 32);
        let claimed = if log <= 6 {
            blocks.saturating_mul(1024 << log)
        } else {
            0
        };
        let len = claimed.min(MAX_EXT4_IMAGE).max(data.len() as u64);
        Ext4Image { data, len }
    }

    /// The bytes the filesystem spans (input and zeros).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The bytes of the input (after the fix-up).
    pub fn input_len(&self) -> u64 {
        self.data.len() as u64
    }
}

impl ext4_view::Ext4Read for Ext4Image {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let end = read_end(start, dst.len(), self.len)?;
        dst.fill(0);
        let have = self.data.len() as u64;
        if start < have {
            let n = (end.min(have) - start) as usize;
            let s = start as usize;
            dst[..n].copy_from_slice(&self.data[s..s + n]);
        }
        Ok(())
    }
}

/// Block size of a [`SparseImage`].
const SPARSE_BLOCK: u64 = 4096;

/// An image held as the 4096-byte blocks written to it (zeros elsewhere), of a given length:
/// what the `ext4fmt` target formats, corrupts and reads back. A 64 GiB filesystem costs only
/// the metadata `ext4fmt` writes (under a megabyte).
pub struct SparseImage {
    blocks: std::collections::BTreeMap<u64, Vec<u8>>,
    len: u64,
    /// Keep nothing (only check offsets): for sizes too large to read back.
    discard: bool,
}

impl SparseImage {
    /// An image of `len` bytes, all zeros.
    pub fn new(len: u64) -> Self {
        SparseImage {
            blocks: Default::default(),
            len,
            discard: false,
        }
    }

    /// An image of `len` bytes that checks writes against its length and keeps nothing.
    pub fn discarding(len: u64) -> Self {
        SparseImage {
            discard: true,
            ..SparseImage::new(len)
        }
    }

    /// The bytes the image spans.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it spans no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes written (whole blocks).
    pub fn written(&self) -> u64 {
        self.blocks.len() as u64 * SPARSE_BLOCK
    }

    /// XORs `mask` into the `n`th written byte (counted over the written blocks in order,
    /// modulo their total): corruption lands on metadata, not on the zeros around it.
    pub fn corrupt(&mut self, n: u64, mask: u8) {
        let total = self.written();
        if total == 0 {
            return;
        }
        let n = n % total;
        let (i, at) = (n / SPARSE_BLOCK, (n % SPARSE_BLOCK) as usize);
        if let Some(b) = self.blocks.values_mut().nth(i as usize) {
            b[at] ^= mask;
        }
    }
}

impl ext4fmt::WriteAt for SparseImage {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= self.len)
            .ok_or_else(|| std::io::Error::other("write past the end of the image"))?;
        if self.discard {
            return Ok(());
        }
        let mut at = offset;
        while at < end {
            let (blk, off) = (at / SPARSE_BLOCK, (at % SPARSE_BLOCK) as usize);
            let n = (SPARSE_BLOCK as usize - off).min((end - at) as usize);
            let src = &data[(at - offset) as usize..][..n];
            let b = self
                .blocks
                .entry(blk)
                .or_insert_with(|| vec![0; SPARSE_BLOCK as usize]);
            b[off..off + n].copy_from_slice(src);
            at += n as u64;
        }
        Ok(())
    }
}

impl ext4_view::Ext4Read for SparseImage {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let end = read_end(start, dst.len(), self.len)?;
        let mut at = start;
        while at < end {
            let (blk, off) = (at / SPARSE_BLOCK, (at % SPARSE_BLOCK) as usize);
            let n = (SPARSE_BLOCK as usize - off).min((end - at) as usize);
            let out = &mut dst[(at - start) as usize..][..n];
            match self.blocks.get(&blk) {
                Some(b) => out.copy_from_slice(&b[off..off + n]),
                None => out.fill(0),
            }
            at += n as u64;
        }
        Ok(())
    }
}
