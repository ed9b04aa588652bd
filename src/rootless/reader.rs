//! A random-access reader of a vault's plaintext: it decrypts only the sectors asked for.
//!
//! [`VaultReader`] sits between the ext4 reader (`ext4-view`, through its [`Ext4Read`] trait)
//! and the encrypted data segment. A read of plaintext bytes `[start, start + len)` reads the
//! ciphertext of the sectors that cover it and decrypts them with the volume key, in place:
//! - runs of whole sectors of a large read are decrypted straight into the caller's buffer;
//! - partial sectors (at the edges of a read) and small reads go through a small LRU cache of
//!   decrypted sectors ([`CACHE_BYTES`] in all), held in one [`SecretBuf`] that is wiped on drop.
//!
//! Memory use is bounded whatever the vault size: the cache, plus what the caller asks for.

use ext4_view::Ext4Read;
use luks2::volume::Decryptor;
use luks2::SecretBuf;
use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;
use zeroize::Zeroize;

/// Bytes of decrypted sectors kept in the cache (16 sectors of 4096 bytes, 128 of 512).
pub const CACHE_BYTES: usize = 64 * 1024;

/// Reads of at most this many bytes go through the cache entirely; larger reads decrypt
/// their whole sectors straight into the caller's buffer.
const SMALL_READ: usize = 4096;

/// Why a read of the vault's plaintext failed.
#[derive(Debug)]
pub enum ReadError {
    /// The read goes past the end of the data segment.
    OutOfRange {
        /// First plaintext byte asked for.
        start: u64,
        /// Bytes asked for.
        len: usize,
        /// Length of the data segment.
        segment_len: u64,
    },
    /// Reading the ciphertext from the vault file failed.
    Io {
        /// Offset in the vault file.
        offset: u64,
        /// The error.
        error: io::Error,
    },
    /// The sector cipher refused the data (a length that is not whole sectors).
    Decrypt(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::OutOfRange {
                start,
                len,
                segment_len,
            } => write!(
                f,
                "read of {len} bytes at {start} goes past the end of the {segment_len}-byte data segment"
            ),
            ReadError::Io { offset, error } => {
                write!(f, "cannot read the vault at offset {offset}: {error}")
            }
            ReadError::Decrypt(e) => write!(f, "cannot decrypt: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Counters of what the reader did (for tests and `--verbose`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Calls to [`Ext4Read::read`].
    pub reads: u64,
    /// Bytes of plaintext returned.
    pub bytes: u64,
    /// Sectors decrypted.
    pub sectors_decrypted: u64,
    /// Sectors served from the cache.
    pub cache_hits: u64,
}

/// An LRU cache of decrypted sectors in one wiped-on-drop buffer.
struct SectorCache {
    /// `slots × sector` bytes of plaintext.
    data: SecretBuf,
    /// The sector index held by each slot.
    tags: Vec<Option<u64>>,
    /// Last use of each slot (a logical clock).
    used: Vec<u64>,
    clock: u64,
    sector: usize,
}

impl SectorCache {
    fn new(sector: usize) -> SectorCache {
        let slots = (CACHE_BYTES / sector).max(1);
        SectorCache {
            data: SecretBuf::zeroed(slots * sector),
            tags: vec![None; slots],
            used: vec![0; slots],
            clock: 0,
            sector,
        }
    }

    /// The slot holding sector `idx`, marked as just used.
    fn find(&mut self, idx: u64) -> Option<usize> {
        let slot = self.tags.iter().position(|t| *t == Some(idx))?;
        self.clock += 1;
        if let Some(u) = self.used.get_mut(slot) {
            *u = self.clock;
        }
        Some(slot)
    }

    /// The least recently used (or an empty) slot, now tagged with `idx`.
    fn claim(&mut self, idx: u64) -> usize {
        let slot = self
            .used
            .iter()
            .enumerate()
            .min_by_key(|(i, u)| (self.tags.get(*i).copied().flatten().is_some(), **u))
            .map_or(0, |(i, _)| i);
        self.clock += 1;
        if let (Some(t), Some(u)) = (self.tags.get_mut(slot), self.used.get_mut(slot)) {
            *t = Some(idx);
            *u = self.clock;
        }
        slot
    }

    fn forget(&mut self, slot: usize) {
        if let Some(t) = self.tags.get_mut(slot) {
            *t = None;
        }
        if let Some(b) = self.slot_mut(slot) {
            b.zeroize();
        }
    }

    fn slot(&self, slot: usize) -> Option<&[u8]> {
        let start = slot.checked_mul(self.sector)?;
        self.data
            .as_bytes()
            .get(start..start.checked_add(self.sector)?)
    }

    fn slot_mut(&mut self, slot: usize) -> Option<&mut [u8]> {
        let start = slot.checked_mul(self.sector)?;
        let end = start.checked_add(self.sector)?;
        self.data.as_mut_bytes().get_mut(start..end)
    }
}

/// Where the ciphertext comes from, and the key to decrypt it.
struct Source<R> {
    src: R,
    dec: Decryptor,
    /// Offset of the data segment in `src`.
    data_offset: u64,
}

impl<R: Read + Seek> Source<R> {
    /// Reads the ciphertext at segment position `pos` into `buf` and decrypts it in place.
    /// `pos` and `buf.len()` are whole sectors.
    fn fill(&mut self, pos: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let offset = self.data_offset.saturating_add(pos);
        self.src
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.src.read_exact(buf))
            .map_err(|error| ReadError::Io { offset, error })?;
        self.dec
            .decrypt_at(pos, buf)
            .map_err(|e| ReadError::Decrypt(e.to_string()))
    }
}

/// Plaintext access to a data segment, for `ext4-view`.
pub struct VaultReader<R> {
    source: Source<R>,
    /// Length of the data segment.
    len: u64,
    sector: usize,
    cache: SectorCache,
    stats: Rc<Cell<Stats>>,
}

impl<R: Read + Seek> VaultReader<R> {
    /// A reader of the `len`-byte segment that `dec` decrypts, read from `src` (the vault
    /// file; the segment starts at `dec.segment().offset`). `len` comes from
    /// [`luks2::volume::DataSegment::length_on`], which checks it is whole sectors.
    pub fn new(src: R, dec: Decryptor, len: u64) -> VaultReader<R> {
        let sector = usize::try_from(dec.segment().sector_size)
            .unwrap_or(4096)
            .clamp(512, 4096);
        VaultReader {
            source: Source {
                src,
                data_offset: dec.segment().offset,
                dec,
            },
            len,
            sector,
            cache: SectorCache::new(sector),
            stats: Rc::new(Cell::new(Stats::default())),
        }
    }

    /// A handle on the counters that stays valid after the reader is handed to `ext4-view`.
    pub fn stats(&self) -> Rc<Cell<Stats>> {
        Rc::clone(&self.stats)
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Decrypts whole sectors at `pos` into `buf`, counting them.
    fn fill(&mut self, pos: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.source.fill(pos, buf)?;
        let n = (buf.len() / self.sector) as u64;
        self.count(|s| s.sectors_decrypted += n);
        Ok(())
    }

    /// Copies bytes `within..within + dst.len()` of sector `idx` into `dst`, through the cache.
    fn cached(&mut self, idx: u64, within: usize, dst: &mut [u8]) -> Result<(), ReadError> {
        let slot = match self.cache.find(idx) {
            Some(slot) => {
                self.count(|s| s.cache_hits += 1);
                slot
            }
            None => {
                let slot = self.cache.claim(idx);
                let pos = idx.saturating_mul(self.sector as u64);
                // Decrypt into the slot itself: no other copy of the plaintext is made.
                let r = match self.cache.slot_mut(slot) {
                    Some(buf) => self.source.fill(pos, buf),
                    None => Err(ReadError::Decrypt("cache slot out of range".into())),
                };
                if let Err(e) = r {
                    self.cache.forget(slot);
                    return Err(e);
                }
                self.count(|s| s.sectors_decrypted += 1);
                slot
            }
        };
        let src = self
            .cache
            .slot(slot)
            .and_then(|b| b.get(within..within.checked_add(dst.len())?))
            .ok_or_else(|| ReadError::Decrypt("partial sector out of range".into()))?;
        dst.copy_from_slice(src);
        Ok(())
    }

    /// Fills `dst` with the plaintext at segment position `start`.
    fn read_plain(&mut self, start: u64, dst: &mut [u8]) -> Result<(), ReadError> {
        let len = dst.len();
        let segment_len = self.len;
        let out_of_range = || ReadError::OutOfRange {
            start,
            len,
            segment_len,
        };
        let end = start
            .checked_add(len as u64)
            .filter(|e| *e <= self.len)
            .ok_or_else(out_of_range)?;
        let sector = self.sector as u64;
        let small = len <= SMALL_READ;
        let mut pos = start;
        let mut out = 0usize;
        while pos < end {
            let idx = pos / sector;
            let within = pos % sector;
            let rest = end - pos;
            if within == 0 && rest >= sector && !small {
                // Whole sectors: decrypt straight into the caller's buffer.
                let whole = usize::try_from(rest - rest % sector).map_err(|_| out_of_range())?;
                let buf = dst.get_mut(out..out + whole).ok_or_else(out_of_range)?;
                self.fill(pos, buf)?;
                pos += whole as u64;
                out += whole;
            } else {
                // Part of a sector, or a small read: through the cache.
                let take =
                    usize::try_from((sector - within).min(rest)).map_err(|_| out_of_range())?;
                let within = usize::try_from(within).map_err(|_| out_of_range())?;
                let buf = dst.get_mut(out..out + take).ok_or_else(out_of_range)?;
                self.cached(idx, within, buf)?;
                pos += take as u64;
                out += take;
            }
        }
        Ok(())
    }
}

impl<R: Read + Seek> Ext4Read for VaultReader<R> {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.count(|s| s.reads += 1);
        match self.read_plain(start_byte, dst) {
            Ok(()) => {
                let n = dst.len() as u64;
                self.count(|s| s.bytes += n);
                Ok(())
            }
            Err(e) => {
                // Leave no partial plaintext behind.
                dst.zeroize();
                Err(Box::new(e))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use luks2::volume::DataSegment;
    use luks2::VolumeKey;
    use std::io::Cursor;

    /// A segment of `sectors` sectors at offset 4096, encrypted with a fixed key; returns the
    /// device image and the plaintext.
    fn fixture(
        enc: &str,
        key_len: usize,
        sector: u32,
        sectors: usize,
    ) -> (Vec<u8>, Vec<u8>, DataSegment, VolumeKey) {
        let seg = DataSegment {
            offset: 4096,
            size: None,
            encryption: enc.into(),
            key_size: key_len,
            sector_size: sector,
            iv_tweak: 0,
        };
        let key = VolumeKey::from_vec(
            (0..key_len as u8)
                .map(|b| b.wrapping_mul(7) ^ 0x5a)
                .collect(),
        );
        let len = sectors * sector as usize;
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        // Encrypt with the library's own cipher, sector by sector.
        let spec = luks2::cipher::CipherSpec::parse(enc, key_len).unwrap();
        let cipher = luks2::cipher::SectorCipher::new(&spec, key.as_bytes()).unwrap();
        let mut ct = plain.clone();
        cipher.encrypt(&mut ct, sector as usize, 0).unwrap();
        let mut dev = vec![0xeeu8; 4096];
        dev.extend_from_slice(&ct);
        (dev, plain, seg, key)
    }

    fn reader(
        enc: &str,
        key_len: usize,
        sector: u32,
        sectors: usize,
    ) -> (VaultReader<Cursor<Vec<u8>>>, Vec<u8>) {
        let (dev, plain, seg, key) = fixture(enc, key_len, sector, sectors);
        let len = plain.len() as u64;
        let dec = Decryptor::new(seg, &key).unwrap();
        (VaultReader::new(Cursor::new(dev), dec, len), plain)
    }

    #[test]
    fn any_range_reads_back_the_plaintext() {
        for (enc, key_len, sector) in [
            ("aes-xts-plain64", 64, 4096u32),
            ("aes-xts-plain64", 32, 512),
            ("aes-cbc-essiv:sha256", 32, 512),
            ("aes-cbc-essiv:sha256", 32, 4096),
        ] {
            let (mut r, plain) = reader(enc, key_len, sector, 160 * 1024 / sector as usize);
            let n = plain.len();
            for &(start, len) in &[
                (0usize, 1usize),
                (1024, 1024),
                (0, n),
                (511, 2),
                (4095, 4098),
                (100, 70_000),
                (n - 1, 1),
                (4096, 32768),
                (3, 0),
            ] {
                let mut buf = vec![0u8; len];
                Ext4Read::read(&mut r, start as u64, &mut buf).unwrap();
                assert_eq!(
                    buf,
                    plain[start..start + len],
                    "{enc} {sector} {start}+{len}"
                );
            }
        }
    }

    #[test]
    fn only_the_covering_sectors_are_decrypted() {
        let (mut r, _) = reader("aes-xts-plain64", 64, 4096, 64);
        let stats = r.stats();
        let mut buf = vec![0u8; 1024];
        r.read(1024, &mut buf).unwrap();
        assert_eq!(stats.get().sectors_decrypted, 1);
        // Again: from the cache.
        r.read(2048, &mut buf).unwrap();
        assert_eq!(stats.get().sectors_decrypted, 1);
        assert_eq!(stats.get().cache_hits, 1);
        // A large aligned read decrypts exactly its sectors, directly.
        let mut big = vec![0u8; 8 * 4096];
        r.read(10 * 4096, &mut big).unwrap();
        assert_eq!(stats.get().sectors_decrypted, 9);
        // A large unaligned read: two edge sectors through the cache, the middle directly.
        let mut odd = vec![0u8; 3 * 4096];
        r.read(20 * 4096 + 100, &mut odd).unwrap();
        assert_eq!(stats.get().sectors_decrypted, 9 + 4);
    }

    #[test]
    fn cache_is_bounded_and_lru() {
        let (mut r, plain) = reader("aes-xts-plain64", 32, 512, 1024);
        let slots = CACHE_BYTES / 512;
        let mut b = [0u8; 16];
        for i in 0..(slots as u64 + 10) {
            r.read(i * 512 + 7, &mut b).unwrap();
            assert_eq!(b[..], plain[i as usize * 512 + 7..][..16]);
        }
        assert_eq!(r.cache.tags.len(), slots);
        assert_eq!(r.cache.data.len(), CACHE_BYTES);
        let before = r.stats().get().sectors_decrypted;
        // The oldest sectors were evicted, the newest are still there.
        r.read(slots as u64 * 512, &mut b).unwrap();
        assert_eq!(r.stats().get().sectors_decrypted, before);
        r.read(0, &mut b).unwrap();
        assert_eq!(r.stats().get().sectors_decrypted, before + 1);
    }

    #[test]
    fn reads_past_the_end_fail_cleanly() {
        let (mut r, plain) = reader("aes-xts-plain64", 64, 4096, 4);
        let n = plain.len() as u64;
        let mut buf = vec![1u8; 10];
        let e = r.read(n - 5, &mut buf).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
        assert!(buf.iter().all(|b| *b == 0));
        assert!(r.read(u64::MAX, &mut buf).is_err());
        // A truncated vault file: an I/O error naming the offset.
        let (dev, _, seg, key) = fixture("aes-xts-plain64", 64, 4096, 4);
        let dec = Decryptor::new(seg, &key).unwrap();
        let mut short = VaultReader::new(Cursor::new(dev[..3 * 4096].to_vec()), dec, n);
        let mut buf = vec![0u8; 4096];
        let e = short.read(3 * 4096, &mut buf).unwrap_err();
        assert!(e.to_string().contains("offset 16384"), "{e}");
    }
}
