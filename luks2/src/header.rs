//! The LUKS2 binary header (both copies) and the entry point that reads any LUKS header.
//!
//! [`read_header`] follows cryptsetup 2.6 (`_crypt_load_luks`, `LUKS2_disk_hdr_read`):
//! the first 8 bytes decide between LUKS1 (magic `LUKS\xba\xbe`, version 1) and LUKS2 (version
//! 2, or no primary magic at all, in which case the secondary header is searched for). Each
//! LUKS2 copy must pass, in order: magic for its place, version 2, `hdr_offset` equal to where
//! it was read, `hdr_size` within 16 KiB..=4 MiB (and equal to its offset, for the secondary),
//! the checksum named by `checksum_alg`, then the JSON area framing and metadata validation of
//! [`Metadata::parse_area`]. Of two usable copies the higher `seqid` wins (the primary on a
//! tie). The secondary copy is read at the primary's `hdr_size` when the primary's checksum is
//! right, otherwise at the first of the nine allowed offsets where a copy passes its checksum.
//! Finally the device must hold both metadata copies and the keyslots area.
//!
//! Reading never writes: unlike cryptsetup, a damaged copy is reported in
//! [`Luks2Header::other_copy`], not repaired.

use crate::codec::{c_field, Cursor};
pub use crate::codec::{MAGIC_PRIMARY, MAGIC_SECONDARY};
use crate::error::{Error, IoError};
use crate::luks1::{Luks1Error, Luks1Header};
use crate::metadata::{Metadata, BINARY_HEADER_SIZE, METADATA_SIZES};
use std::io::{Read, Seek, SeekFrom};

pub(crate) mod error;
pub use error::{CopyProblem, HeaderError};

/// Which copy of a LUKS2 header was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCopy {
    /// The primary at offset 0.
    Primary,
    /// The secondary at `hdr_size`.
    Secondary,
}

/// One LUKS2 binary header (4096 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryHeader {
    /// 2.
    pub version: u16,
    /// Binary header + JSON area size.
    pub hdr_size: u64,
    /// Sequence id.
    pub seqid: u64,
    /// Label (up to the first NUL).
    pub label: String,
    /// Checksum algorithm name.
    pub checksum_alg: String,
    /// Salt.
    pub salt: [u8; 64],
    /// UUID text.
    pub uuid: String,
    /// Subsystem (up to the first NUL).
    pub subsystem: String,
    /// Offset this copy claims to live at.
    pub hdr_offset: u64,
    /// Stored checksum (64 bytes, the hash length used).
    pub csum: [u8; 64],
}

/// A loaded LUKS2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Luks2Header {
    /// The binary header of the copy in use.
    pub binary: BinaryHeader,
    /// Its validated metadata.
    pub metadata: Metadata,
    /// The JSON text as stored (up to the first NUL; bytes that are not UTF-8 replaced).
    pub json_text: String,
    /// The JSON object as json-c parses it (what `cryptsetup luksDump` reads and prints).
    pub json: crate::metadata::JsonObject,
    /// The copy in use.
    pub used_copy: HeaderCopy,
    /// Why the other copy was not used, if it was unusable or older (for warnings).
    pub other_copy_problem: Option<String>,
    /// The same, typed.
    pub other_copy: Option<CopyProblem>,
}

impl Luks2Header {
    /// The JSON object of keyslot `id` as stored, for fields the typed metadata does not keep
    /// (a `reencrypt` keyslot's mode, direction and resilience area).
    pub fn keyslot_json(&self, id: u32) -> Option<&crate::metadata::JsonObject> {
        self.json
            .get("keyslots")?
            .as_object()?
            .get(&id.to_string())?
            .as_object()
    }
}

/// Any LUKS header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// LUKS version 2.
    Luks2(Box<Luks2Header>),
    /// LUKS version 1.
    Luks1(Box<Luks1Header>),
}

/// Reads and validates the LUKS header at the start of `r` (never writes).
///
/// I/O errors other than the source ending early are returned as [`Error::Io`]; a source that
/// is too short makes the copies it cuts off unusable.
pub fn read_header<R: Read + Seek>(r: &mut R) -> Result<Header, Error> {
    let dev_size = r
        .seek(SeekFrom::End(0))
        .map_err(|e| IoError::new("device size", 0, &e))?;
    let mut dev = Dev { r, size: dev_size };

    // LUKS2_hdr_version_unlocked: the version, when the primary magic is there.
    let mut first = [0u8; 8];
    let version = match dev.read_at(0, &mut first, "LUKS header magic")? {
        true if first.starts_with(&MAGIC_PRIMARY) => Some(u16::from_be_bytes([first[6], first[7]])),
        _ => None,
    };
    match version {
        Some(1) => read_luks1(&mut dev).map(|h| Header::Luks1(Box::new(h))),
        Some(0 | 2) | None => {
            read_luks2(&mut dev, version.is_some()).map(|h| Header::Luks2(Box::new(h)))
        }
        Some(v) => Err(HeaderError::UnsupportedVersion { version: v }.into()),
    }
}

struct Dev<'a, R> {
    r: &'a mut R,
    size: u64,
}

impl<R: Read + Seek> Dev<'_, R> {
    /// Reads `buf.len()` bytes at `offset`; `Ok(false)` if the device ends before.
    fn read_at(&mut self, offset: u64, buf: &mut [u8], what: &str) -> Result<bool, Error> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return Ok(false);
        }
        match crate::error::read_exact_at(self.r, offset, buf, what) {
            Ok(()) => Ok(true),
            Err(e) if e.kind == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

fn read_luks1<R: Read + Seek>(dev: &mut Dev<'_, R>) -> Result<Luks1Header, Error> {
    let mut buf = [0u8; crate::luks1::LUKS1_HEADER_SIZE];
    if !dev.read_at(0, &mut buf, "LUKS1 header")? {
        return Err(HeaderError::Luks1(Luks1Error::Truncated { size: dev.size }).into());
    }
    let hdr = Luks1Header::parse(&buf).map_err(HeaderError::Luks1)?;
    let required = hdr.required_device_size().map_err(HeaderError::Luks1)?;
    // cryptsetup compares whole 512-byte sectors.
    if required > dev.size / 512 * 512 {
        return Err(HeaderError::DeviceTooSmall {
            size: dev.size,
            required,
        }
        .into());
    }
    Ok(hdr)
}

/// A copy that passed its checksum.
struct RawCopy {
    bin: BinaryHeader,
    area: Vec<u8>,
}

/// A copy that passed everything.
struct GoodCopy {
    bin: BinaryHeader,
    metadata: Metadata,
    json_text: String,
    json: crate::metadata::JsonObject,
    offset: u64,
}

enum CopyState {
    Ok(Box<GoodCopy>),
    /// Checksum right, metadata wrong (cryptsetup's `HDR_OBSOLETE`), with the copy's
    /// `hdr_size`.
    BadMetadata(CopyProblem, u64),
    /// Anything before (cryptsetup's `HDR_FAIL`/`HDR_FAIL_IO`).
    Failed(CopyProblem),
}

/// Reads both LUKS2 copies; `primary_magic` says whether offset 0 holds the LUKS magic.
fn read_luks2<R: Read + Seek>(
    dev: &mut Dev<'_, R>,
    primary_magic: bool,
) -> Result<Luks2Header, Error> {
    let primary = match read_copy(dev, 0, false)? {
        Ok(raw) => validate_copy(raw, 0),
        Err(p) => CopyState::Failed(p),
    };
    let secondary = match &primary {
        CopyState::Ok(g) => read_secondary_at(dev, g.bin.hdr_size)?,
        // The primary's checksummed binary header locates the secondary.
        CopyState::BadMetadata(_, hdr_size) => read_secondary_at(dev, *hdr_size)?,
        CopyState::Failed(_) => scan_secondary(dev)?,
    };

    let (used, used_copy, other) = match (primary, secondary) {
        (CopyState::Ok(p), CopyState::Ok(s)) => {
            if p.bin.seqid >= s.bin.seqid {
                let other = (s.bin.seqid < p.bin.seqid).then_some(CopyProblem::Stale {
                    offset: s.offset,
                    seqid: s.bin.seqid,
                    used_seqid: p.bin.seqid,
                });
                (p, HeaderCopy::Primary, other)
            } else {
                let other = CopyProblem::Stale {
                    offset: 0,
                    seqid: p.bin.seqid,
                    used_seqid: s.bin.seqid,
                };
                (s, HeaderCopy::Secondary, Some(other))
            }
        }
        (CopyState::Ok(p), CopyState::BadMetadata(e, _) | CopyState::Failed(e)) => {
            (p, HeaderCopy::Primary, Some(e))
        }
        (CopyState::BadMetadata(e, _) | CopyState::Failed(e), CopyState::Ok(s)) => {
            (s, HeaderCopy::Secondary, Some(e))
        }
        (
            CopyState::BadMetadata(p, _) | CopyState::Failed(p),
            CopyState::BadMetadata(s, _) | CopyState::Failed(s),
        ) => {
            if !primary_magic && s == CopyProblem::NotFound {
                return Err(HeaderError::NotLuks.into());
            }
            return Err(HeaderError::NoUsableCopy {
                primary: p,
                secondary: s,
            }
            .into());
        }
    };

    let required = used.metadata.config.header_and_areas_size();
    if required > dev.size {
        return Err(HeaderError::DeviceTooSmall {
            size: dev.size,
            required,
        }
        .into());
    }
    let used = *used;
    Ok(Luks2Header {
        binary: used.bin,
        metadata: used.metadata,
        json_text: used.json_text,
        json: used.json,
        used_copy,
        other_copy_problem: other.as_ref().map(ToString::to_string),
        other_copy: other,
    })
}

/// Reads the secondary copy where the primary says it is.
fn read_secondary_at<R: Read + Seek>(
    dev: &mut Dev<'_, R>,
    offset: u64,
) -> Result<CopyState, Error> {
    Ok(match read_copy(dev, offset, true)? {
        Ok(raw) => validate_copy(raw, offset),
        Err(p) => CopyState::Failed(p),
    })
}

/// Tries the nine allowed offsets in order and takes the first copy that passes its checksum
/// (cryptsetup stops there even if its metadata then fails).
fn scan_secondary<R: Read + Seek>(dev: &mut Dev<'_, R>) -> Result<CopyState, Error> {
    let mut first_problem: Option<CopyProblem> = None;
    for offset in METADATA_SIZES {
        match read_copy(dev, offset, true)? {
            Ok(raw) => return Ok(validate_copy(raw, offset)),
            Err(p) => {
                let informative = !matches!(
                    p,
                    CopyProblem::BadMagic { .. } | CopyProblem::Truncated { .. }
                );
                if informative && first_problem.is_none() {
                    first_problem = Some(p);
                }
            }
        }
    }
    Ok(CopyState::Failed(
        first_problem.unwrap_or(CopyProblem::NotFound),
    ))
}

/// Parses the JSON area of a checksummed copy.
fn validate_copy(raw: RawCopy, offset: u64) -> CopyState {
    match Metadata::parse_area_json(&raw.area) {
        Ok((metadata, json, json_len)) => {
            let text = raw.area.get(..json_len).unwrap_or_default();
            CopyState::Ok(Box::new(GoodCopy {
                bin: raw.bin,
                metadata,
                json_text: String::from_utf8_lossy(text).into_owned(),
                json,
                offset,
            }))
        }
        Err(error) => CopyState::BadMetadata(
            CopyProblem::Metadata {
                offset,
                error: Box::new(error),
            },
            raw.bin.hdr_size,
        ),
    }
}

/// cryptsetup's `hdr_read_disk`: binary header sanity checks, then the JSON area and the
/// checksum. The inner `Err` says why this copy is unusable.
fn read_copy<R: Read + Seek>(
    dev: &mut Dev<'_, R>,
    offset: u64,
    secondary: bool,
) -> Result<Result<RawCopy, CopyProblem>, Error> {
    let what = if secondary {
        "secondary LUKS2 header"
    } else {
        "primary LUKS2 header"
    };
    let mut block = [0u8; 4096];
    if !dev.read_at(offset, &mut block, what)? {
        return Ok(Err(CopyProblem::Truncated { offset }));
    }
    let magic = if secondary {
        MAGIC_SECONDARY
    } else {
        MAGIC_PRIMARY
    };
    if !block.starts_with(&magic) {
        return Ok(Err(CopyProblem::BadMagic { offset }));
    }
    let bin = parse_binary(&block);
    if bin.version != 2 {
        return Ok(Err(CopyProblem::UnsupportedVersion {
            offset,
            version: bin.version,
        }));
    }
    if bin.hdr_offset != offset {
        return Ok(Err(CopyProblem::WrongOffset {
            offset,
            stored: bin.hdr_offset,
        }));
    }
    let hdr_size = bin.hdr_size;
    if !(METADATA_SIZES[0]..=METADATA_SIZES[8]).contains(&hdr_size) {
        return Ok(Err(CopyProblem::BadSize { offset, hdr_size }));
    }
    if secondary && offset != hdr_size {
        return Ok(Err(CopyProblem::SizeMismatch { offset, hdr_size }));
    }
    // hdr_size <= 4 MiB, so this allocation is bounded; read_at refuses areas past the end.
    let area_len = usize::try_from(hdr_size - BINARY_HEADER_SIZE).unwrap_or(0);
    let mut area = vec![0u8; area_len];
    if !dev.read_at(offset + BINARY_HEADER_SIZE, &mut area, what)? {
        return Ok(Err(CopyProblem::Truncated { offset }));
    }
    let Some(alg) = ChecksumAlg::from_field(&block[72..104]) else {
        return Ok(Err(CopyProblem::UnknownChecksumAlg {
            offset,
            name: bin.checksum_alg.clone(),
        }));
    };
    let mut zeroed = block;
    zeroed[448..512].fill(0);
    let mut sum = [0u8; 64];
    let n = alg.digest(&[&zeroed, &area], &mut sum);
    if sum.get(..n) != block.get(448..448 + n) {
        return Ok(Err(CopyProblem::ChecksumMismatch {
            offset,
            alg: bin.checksum_alg.clone(),
        }));
    }
    Ok(Ok(RawCopy { bin, area }))
}

/// Decodes the fields of a 4096-byte LUKS2 binary header (no checks).
fn parse_binary(block: &[u8; 4096]) -> BinaryHeader {
    let mut c = Cursor::new(block);
    let _magic: [u8; 6] = c.take();
    let version = c.u16();
    let hdr_size = c.u64();
    let seqid = c.u64();
    let label: [u8; 48] = c.take();
    let checksum_alg: [u8; 32] = c.take();
    let salt: [u8; 64] = c.take();
    let uuid: [u8; 40] = c.take();
    let subsystem: [u8; 48] = c.take();
    let hdr_offset = c.u64();
    let _padding: [u8; 184] = c.take();
    let csum: [u8; 64] = c.take();
    BinaryHeader {
        version,
        hdr_size,
        seqid,
        label: c_field(&label),
        checksum_alg: c_field(&checksum_alg),
        salt,
        uuid: c_field(&uuid),
        subsystem: c_field(&subsystem),
        hdr_offset,
        csum,
    }
}

/// Hashes a header checksum may use (names as OpenSSL, which cryptsetup uses, knows them; any
/// letter case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChecksumAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Sha512_224,
    Sha512_256,
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    Ripemd160,
    Whirlpool,
}

impl ChecksumAlg {
    /// From the 32-byte `checksum_alg` field: the name up to its NUL (a name without NUL in
    /// the field is refused).
    fn from_field(field: &[u8]) -> Option<ChecksumAlg> {
        let end = field.iter().position(|&b| b == 0)?;
        let name = std::str::from_utf8(field.get(..end)?).ok()?;
        Self::from_name(name)
    }

    fn from_name(name: &str) -> Option<ChecksumAlg> {
        use ChecksumAlg as A;
        let table = [
            ("sha1", A::Sha1),
            ("sha224", A::Sha224),
            ("sha256", A::Sha256),
            ("sha384", A::Sha384),
            ("sha512", A::Sha512),
            ("sha512-224", A::Sha512_224),
            ("sha512-256", A::Sha512_256),
            ("sha3-224", A::Sha3_224),
            ("sha3-256", A::Sha3_256),
            ("sha3-384", A::Sha3_384),
            ("sha3-512", A::Sha3_512),
            ("ripemd160", A::Ripemd160),
            ("whirlpool", A::Whirlpool),
        ];
        table
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, a)| a)
    }

    /// Hashes the concatenation of `parts` into `out`, returning the output length.
    fn digest(self, parts: &[&[u8]], out: &mut [u8; 64]) -> usize {
        fn run<D: digest::Digest>(parts: &[&[u8]], out: &mut [u8; 64]) -> usize {
            let mut h = D::new();
            for p in parts {
                h.update(p);
            }
            let r = h.finalize();
            let n = r.len().min(64);
            if let (Some(dst), Some(src)) = (out.get_mut(..n), r.get(..n)) {
                dst.copy_from_slice(src);
            }
            n
        }
        use ChecksumAlg as A;
        match self {
            A::Sha1 => run::<sha1::Sha1>(parts, out),
            A::Sha224 => run::<sha2::Sha224>(parts, out),
            A::Sha256 => run::<sha2::Sha256>(parts, out),
            A::Sha384 => run::<sha2::Sha384>(parts, out),
            A::Sha512 => run::<sha2::Sha512>(parts, out),
            A::Sha512_224 => run::<sha2::Sha512_224>(parts, out),
            A::Sha512_256 => run::<sha2::Sha512_256>(parts, out),
            A::Sha3_224 => run::<sha3::Sha3_224>(parts, out),
            A::Sha3_256 => run::<sha3::Sha3_256>(parts, out),
            A::Sha3_384 => run::<sha3::Sha3_384>(parts, out),
            A::Sha3_512 => run::<sha3::Sha3_512>(parts, out),
            A::Ripemd160 => run::<ripemd::Ripemd160>(parts, out),
            A::Whirlpool => run::<whirlpool::Whirlpool>(parts, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_names() {
        assert_eq!(ChecksumAlg::from_name("SHA256"), Some(ChecksumAlg::Sha256));
        assert_eq!(
            ChecksumAlg::from_name("sha3-512"),
            Some(ChecksumAlg::Sha3_512)
        );
        assert_eq!(ChecksumAlg::from_name("crc32"), None);
        let mut field = [0u8; 32];
        field[..6].copy_from_slice(b"sha256");
        assert_eq!(ChecksumAlg::from_field(&field), Some(ChecksumAlg::Sha256));
        assert_eq!(ChecksumAlg::from_field(&[b'a'; 32]), None);
    }

    #[test]
    fn checksum_lengths() {
        let mut out = [0u8; 64];
        assert_eq!(ChecksumAlg::Sha1.digest(&[b"abc"], &mut out), 20);
        assert_eq!(ChecksumAlg::Whirlpool.digest(&[b"abc"], &mut out), 64);
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(ChecksumAlg::Sha256.digest(&[b"a", b"bc"], &mut out), 32);
        assert_eq!(
            out[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "sha256(abc) starts ba7816bf"
        );
    }

    #[test]
    fn c_fields_stop_at_nul_and_last_byte() {
        assert_eq!(c_field(b"ab\0cd"), "ab");
        assert_eq!(c_field(b"abcd"), "abc");
    }
}
