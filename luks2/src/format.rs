//! The LUKS2 writer, pure: builds new headers and keyslots as byte buffers with their offsets.
//!
//! Nothing here opens a file or asks the OS for randomness: the caller passes the volume key,
//! the passphrase and a random source (a closure that fills a buffer), and gets back a
//! [`Plan`], an ordered list of writes. Executing the writes in order, with a sync after each,
//! keeps the header device consistent at every step:
//!
//! - adding a keyslot writes the key material into a free area first, then the secondary header
//!   copy, then the primary (both with the sequence id bumped); an interruption leaves either the
//!   old metadata (the new area is unused) or the new;
//! - removing a keyslot writes the metadata first (secondary, primary), then wipes the area;
//! - formatting writes the keyslots area (random bytes with the keyslot inside), then the
//!   secondary header, then the primary.
//!
//! The JSON text follows cryptsetup's compact form and key order, so `cryptsetup luksDump` and
//! `cryptsetup repair` see what cryptsetup itself would have written.

use crate::af::{self, AfError};
use crate::cipher::{CipherError, CipherSpec, SectorCipher};
use crate::hash::HashAlg;
use crate::header::{HeaderCopy, Luks2Header, MAGIC_PRIMARY, MAGIC_SECONDARY};
use crate::kdf::{Argon2Variant, KdfError, KdfParams};
use crate::metadata::{JsonObject, JsonValue, Priority};
use crate::secret::SecretBuf;
use base64::Engine;
use std::fmt;

/// Size of the binary part of a header copy.
pub const BINARY_HEADER_SIZE: u64 = 4096;
/// The header sizes (binary header + JSON area) LUKS2 allows.
pub const METADATA_SIZES: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x10_0000, 0x20_0000, 0x40_0000,
];
/// cryptsetup's default header size (16 KiB).
pub const DEFAULT_METADATA_SIZE: u64 = 0x4000;
/// cryptsetup's default data offset for a header on the device (16 MiB).
pub const DEFAULT_DATA_OFFSET: u64 = 16 * 1024 * 1024;
/// Largest keyslots area cryptsetup accepts (128 MiB).
pub const MAX_KEYSLOTS_SIZE: u64 = 128 * 1024 * 1024;
/// Alignment of the data offset when the keyslots size is given (1 MiB).
pub const DATA_ALIGNMENT: u64 = 1024 * 1024;
/// Anti-forensic stripes of a LUKS2 keyslot.
pub const AF_STRIPES: u32 = 4000;
/// Salt length of keyslots and digests.
pub const SALT_LEN: usize = 32;
/// Alignment of keyslot areas.
pub const AREA_ALIGN: u64 = 4096;
/// Highest number of keyslots.
pub const MAX_KEYSLOTS: u32 = 32;
/// Longest label or subsystem (the 48-byte field keeps a NUL).
pub const MAX_LABEL_LEN: usize = 47;
/// cryptsetup's minimum PBKDF2 iteration count (digests and forced keyslots).
pub const MIN_PBKDF2_ITERATIONS: u32 = 1000;

/// Why a header or keyslot could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// `--luks2-metadata-size` is not one of the allowed sizes.
    BadMetadataSize(u64),
    /// The keyslots area size is not usable.
    BadKeyslotsSize {
        /// The size asked for.
        size: u64,
        /// Why not.
        reason: &'static str,
    },
    /// The sector size is not a power of two between 512 and 4096.
    BadSectorSize(u32),
    /// The cipher cannot be used.
    Cipher(CipherError),
    /// The KDF parameters are invalid or the derivation failed.
    Kdf(KdfError),
    /// The anti-forensic split failed.
    Af(AfError),
    /// The random source failed.
    Random(String),
    /// The label or subsystem is too long.
    LabelTooLong {
        /// `label` or `subsystem`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The UUID is not in the 8-4-4-4-12 hex form.
    BadUuid(String),
    /// No free space in the keyslots area for a new keyslot of this size.
    NoSpace {
        /// Bytes needed.
        needed: u64,
    },
    /// All 32 keyslot ids are taken.
    NoFreeKeyslot,
    /// The keyslot id is taken (for a new one) or absent (to change or remove).
    Keyslot {
        /// The id.
        id: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// The volume key does not fit the cipher.
    KeySize {
        /// Bytes given.
        got: usize,
    },
    /// The metadata text does not fit the JSON area.
    JsonTooLarge {
        /// Bytes of text (with the terminating NUL).
        len: u64,
        /// Size of the JSON area.
        max: u64,
    },
    /// The existing metadata cannot be changed by this writer.
    Unsupported(String),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::BadMetadataSize(s) => write!(
                f,
                "metadata size {s} is not allowed (16k, 32k, 64k, 128k, 256k, 512k, 1m, 2m or 4m)"
            ),
            FormatError::BadKeyslotsSize { size, reason } => {
                write!(f, "keyslots area size {size}: {reason}")
            }
            FormatError::BadSectorSize(s) => write!(
                f,
                "sector size {s} is not a power of two between 512 and 4096"
            ),
            FormatError::Cipher(e) => write!(f, "cipher: {e}"),
            FormatError::Kdf(e) => write!(f, "key derivation: {e}"),
            FormatError::Af(e) => write!(f, "anti-forensic split: {e}"),
            FormatError::Random(e) => write!(f, "random source failed: {e}"),
            FormatError::LabelTooLong { field, len } => write!(
                f,
                "{field} has {len} bytes, more than the {MAX_LABEL_LEN} the header holds"
            ),
            FormatError::BadUuid(u) => write!(f, "'{u}' is not a UUID (8-4-4-4-12 hex digits)"),
            FormatError::NoSpace { needed } => write!(
                f,
                "no free space of {needed} bytes left in the keyslots area"
            ),
            FormatError::NoFreeKeyslot => write!(f, "all {MAX_KEYSLOTS} keyslots are in use"),
            FormatError::Keyslot { id, reason } => write!(f, "keyslot {id}: {reason}"),
            FormatError::KeySize { got } => {
                write!(f, "a volume key of {got} bytes does not fit the cipher")
            }
            FormatError::JsonTooLarge { len, max } => write!(
                f,
                "the metadata needs {len} bytes, more than the {max}-byte JSON area"
            ),
            FormatError::Unsupported(why) => write!(f, "cannot change this header: {why}"),
        }
    }
}

impl std::error::Error for FormatError {}

impl From<CipherError> for FormatError {
    fn from(e: CipherError) -> Self {
        FormatError::Cipher(e)
    }
}
impl From<KdfError> for FormatError {
    fn from(e: KdfError) -> Self {
        FormatError::Kdf(e)
    }
}
impl From<AfError> for FormatError {
    fn from(e: AfError) -> Self {
        FormatError::Af(e)
    }
}

/// The caller's random source: fills the buffer or says why it could not.
pub type Rng<'a> = dyn FnMut(&mut [u8]) -> Result<(), String> + 'a;

fn fill(rng: &mut Rng<'_>, buf: &mut [u8]) -> Result<(), FormatError> {
    rng(buf).map_err(FormatError::Random)
}

/// One write of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWrite {
    /// What this write is, for messages (`keyslot 1 area`, `secondary header`).
    pub what: String,
    /// Byte offset on the header device.
    pub offset: u64,
    /// The bytes (never secret: key material is encrypted and split).
    pub data: Vec<u8>,
}

/// Writes to execute in order, each followed by a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The writes, in the order that keeps the header consistent.
    pub writes: Vec<PlannedWrite>,
}

impl Plan {
    /// Applies the writes to an in-memory image (grown as needed): for tests and for checking
    /// a plan before running it.
    pub fn apply_to(&self, image: &mut Vec<u8>) {
        for w in &self.writes {
            apply_one(w, image);
        }
    }

    /// Applies only the first `n` writes (an interrupted sequence).
    pub fn apply_first(&self, n: usize, image: &mut Vec<u8>) {
        for w in self.writes.iter().take(n) {
            apply_one(w, image);
        }
    }
}

fn apply_one(w: &PlannedWrite, image: &mut Vec<u8>) {
    let (Ok(start), Some(end)) = (
        usize::try_from(w.offset),
        usize::try_from(w.offset)
            .ok()
            .and_then(|s| s.checked_add(w.data.len())),
    ) else {
        return;
    };
    if image.len() < end {
        image.resize(end, 0);
    }
    if let Some(dst) = image.get_mut(start..end) {
        dst.copy_from_slice(&w.data);
    }
}

/// Where the header, the keyslots and the data go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Binary header + JSON area, per copy.
    pub metadata_size: u64,
    /// The keyslots area (starts at `2 * metadata_size`).
    pub keyslots_size: u64,
    /// Offset of the data segment on the data device.
    pub data_offset: u64,
}

impl Layout {
    /// cryptsetup's layout for `luksFormat` with the given `--luks2-metadata-size`,
    /// `--luks2-keyslots-size` and, for a detached header, data offset 0.
    ///
    /// Defaults: 16 KiB metadata; the data at 16 MiB and the keyslots area filling the space
    /// before it; with a keyslots size, the data at the next 1 MiB boundary after it.
    pub fn cryptsetup(
        metadata_size: Option<u64>,
        keyslots_size: Option<u64>,
        detached: bool,
    ) -> Result<Layout, FormatError> {
        let metadata_size = metadata_size.unwrap_or(DEFAULT_METADATA_SIZE);
        if !METADATA_SIZES.contains(&metadata_size) {
            return Err(FormatError::BadMetadataSize(metadata_size));
        }
        let headers = 2 * metadata_size;
        let (keyslots_size, data_offset) = match keyslots_size {
            Some(k) => {
                let end = headers.checked_add(k).ok_or(FormatError::BadKeyslotsSize {
                    size: k,
                    reason: "too large",
                })?;
                let data = end.checked_next_multiple_of(DATA_ALIGNMENT).ok_or(
                    FormatError::BadKeyslotsSize {
                        size: k,
                        reason: "too large",
                    },
                )?;
                (k, data)
            }
            None => {
                let k = DEFAULT_DATA_OFFSET.checked_sub(headers).ok_or(
                    FormatError::BadKeyslotsSize {
                        size: 0,
                        reason: "the metadata leaves no room before 16 MiB",
                    },
                )?;
                (k.min(MAX_KEYSLOTS_SIZE), DEFAULT_DATA_OFFSET)
            }
        };
        if keyslots_size == 0 || keyslots_size % AREA_ALIGN != 0 {
            return Err(FormatError::BadKeyslotsSize {
                size: keyslots_size,
                reason: "must be a non-zero multiple of 4096",
            });
        }
        if keyslots_size > MAX_KEYSLOTS_SIZE {
            return Err(FormatError::BadKeyslotsSize {
                size: keyslots_size,
                reason: "more than 128 MiB",
            });
        }
        Ok(Layout {
            metadata_size,
            keyslots_size,
            data_offset: if detached { 0 } else { data_offset },
        })
    }

    /// Where the keyslots area ends on the header device (the header file's minimum size).
    pub fn header_end(&self) -> u64 {
        2 * self.metadata_size + self.keyslots_size
    }
}

/// How to protect the volume key in a new keyslot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyslotSpec {
    /// The KDF and its cost.
    pub kdf: KdfParams,
    /// The AF hash (cryptsetup: the `--hash`, sha256 by default).
    pub af_hash: HashAlg,
    /// The keyslot area cipher (cryptsetup: the segment's cipher).
    pub encryption: String,
    /// Priority (`None` or `Normal`: the default, not stored).
    pub priority: Option<Priority>,
}

/// Everything `format` needs besides the secrets and the random source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatParams {
    /// The data cipher (`aes-xts-plain64`).
    pub encryption: String,
    /// Data sector size (512 … 4096).
    pub sector_size: u32,
    /// Header, keyslots and data placement.
    pub layout: Layout,
    /// Label (may be empty).
    pub label: String,
    /// Subsystem (may be empty).
    pub subsystem: String,
    /// UUID; `None`: a random version-4 UUID.
    pub uuid: Option<String>,
    /// The first keyslot (id 0).
    pub keyslot: KeyslotSpec,
    /// Digest hash (sha256).
    pub digest_hash: HashAlg,
    /// Digest PBKDF2 iterations.
    pub digest_iterations: u32,
}

/// The result of [`format()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatted {
    /// The writes.
    pub plan: Plan,
    /// The UUID written.
    pub uuid: String,
    /// The JSON text written.
    pub json: String,
}

/// A version-4 UUID from 16 random bytes.
pub fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or("").to_string();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

fn check_uuid(u: &str) -> Result<(), FormatError> {
    let groups: Vec<&str> = u.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, l)| g.len() == l && g.bytes().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(FormatError::BadUuid(u.to_string()))
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn num_str(n: u64) -> JsonValue {
    JsonValue::from(n.to_string())
}

/// Size of the keyslot area for a key of `key_size` bytes: `key_size × 4000` rounded to 4 KiB.
pub fn keyslot_area_size(key_size: usize) -> Result<u64, FormatError> {
    let split = af::split_area_len(key_size, AF_STRIPES).ok_or(AfError::Overflow {
        key_size,
        stripes: AF_STRIPES,
    })?;
    u64::try_from(split)
        .ok()
        .and_then(|s| s.checked_next_multiple_of(AREA_ALIGN))
        .ok_or(FormatError::Af(AfError::Overflow {
            key_size,
            stripes: AF_STRIPES,
        }))
}

/// Builds a keyslot: its JSON object and its area bytes (`area_size` bytes: the encrypted AF
/// split, then random bytes).
fn build_keyslot(
    volume_key: &[u8],
    passphrase: &[u8],
    spec: &KeyslotSpec,
    area_offset: u64,
    area_size: u64,
    rng: &mut Rng<'_>,
) -> Result<(JsonValue, Vec<u8>), FormatError> {
    let key_size = volume_key.len();
    let cspec = CipherSpec::parse(&spec.encryption, key_size)?;
    let mut salt = [0u8; SALT_LEN];
    fill(rng, &mut salt)?;
    spec.kdf.validate()?;
    let mut kek = SecretBuf::zeroed(key_size);
    spec.kdf.derive(passphrase, &salt, kek.as_mut_bytes())?;
    let cipher = SectorCipher::new(&cspec, kek.as_bytes())?;
    drop(kek);

    let split_len = af::split_area_len(key_size, AF_STRIPES).ok_or(AfError::Overflow {
        key_size,
        stripes: AF_STRIPES,
    })?;
    let mut random = SecretBuf::zeroed(split_len);
    fill(rng, random.as_mut_bytes())?;
    let mut split = SecretBuf::zeroed(split_len);
    af::split(
        spec.af_hash,
        volume_key,
        AF_STRIPES,
        random.as_bytes(),
        split.as_mut_bytes(),
    )?;
    drop(random);
    cipher.encrypt(split.as_mut_bytes(), af::AF_SECTOR_SIZE, 0)?;

    let area_len =
        usize::try_from(area_size).map_err(|_| FormatError::NoSpace { needed: area_size })?;
    let mut area = vec![0u8; area_len];
    fill(rng, &mut area)?;
    if let Some(dst) = area.get_mut(..split_len) {
        dst.copy_from_slice(split.as_bytes());
    } else {
        return Err(FormatError::NoSpace { needed: area_size });
    }

    let mut kdf = JsonObject::default();
    match &spec.kdf {
        KdfParams::Pbkdf2 { hash, iterations } => {
            kdf.set("type", "pbkdf2".into());
            kdf.set("hash", hash.name().into());
            kdf.set("iterations", (*iterations).into());
        }
        KdfParams::Argon2 {
            variant,
            time,
            memory_kib,
            cpus,
        } => {
            let name = match variant {
                Argon2Variant::I => "argon2i",
                Argon2Variant::Id => "argon2id",
            };
            kdf.set("type", name.into());
            kdf.set("time", (*time).into());
            kdf.set("memory", (*memory_kib).into());
            kdf.set("cpus", (*cpus).into());
        }
    }
    kdf.set("salt", b64(&salt).into());
    let af = JsonObject::from_entries([
        ("type", "luks1".into()),
        ("stripes", AF_STRIPES.into()),
        ("hash", spec.af_hash.name().into()),
    ]);
    let area_obj = JsonObject::from_entries([
        ("type", "raw".into()),
        ("offset", num_str(area_offset)),
        ("size", num_str(area_size)),
        ("encryption", spec.encryption.as_str().into()),
        ("key_size", key_size.into()),
    ]);
    let mut ks = JsonValue::from(JsonObject::from_entries([
        ("type", "luks2".into()),
        ("key_size", key_size.into()),
        ("af", af.into()),
        ("area", area_obj.into()),
        ("kdf", kdf.into()),
    ]));
    set_priority(&mut ks, spec.priority);
    Ok((ks, area))
}

fn set_priority(ks: &mut JsonValue, p: Option<Priority>) {
    if let Some(obj) = ks.as_object_mut() {
        match p {
            None | Some(Priority::Normal) => obj.remove("priority"),
            Some(Priority::Ignore) => obj.set("priority", 0u32.into()),
            Some(Priority::High) => obj.set("priority", 2u32.into()),
        }
    }
}

/// The digest of a volume key (PBKDF2 over it).
fn build_digest(
    volume_key: &[u8],
    hash: HashAlg,
    iterations: u32,
    keyslots: &[u32],
    segments: &[u32],
    rng: &mut Rng<'_>,
) -> Result<JsonValue, FormatError> {
    let mut salt = [0u8; SALT_LEN];
    fill(rng, &mut salt)?;
    let params = KdfParams::Pbkdf2 { hash, iterations };
    params.validate()?;
    let mut out = vec![0u8; hash.output_size()];
    params.derive(volume_key, &salt, &mut out)?;
    let ids = |v: &[u32]| JsonValue::Array(v.iter().map(|i| i.to_string().into()).collect());
    Ok(JsonObject::from_entries([
        ("type", "pbkdf2".into()),
        ("keyslots", ids(keyslots)),
        ("segments", ids(segments)),
        ("hash", hash.name().into()),
        ("iterations", iterations.into()),
        ("salt", b64(&salt).into()),
        ("digest", b64(&out).into()),
    ])
    .into())
}

/// The seqid ("Epoch" in `cryptsetup luksDump`) of a freshly formatted header. cryptsetup
/// 2.6.1's `luksFormat` leaves 3 (its header is written more than once while it formats),
/// with every KDF, key size, sector size, metadata size and detached header tried; tazpod
/// writes each copy once but starts at the same value.
pub const FORMAT_SEQID: u64 = 3;

/// Builds a new LUKS2 volume header with one keyslot (id 0) holding `volume_key` under
/// `passphrase`. The plan writes the whole keyslots area (random bytes around the keyslot),
/// then the secondary header copy, then the primary (seqid [`FORMAT_SEQID`]). Over an existing
/// LUKS2 header, [`format_over`] orders the writes so that the old passphrases keep opening
/// until the new header is complete.
pub fn format(
    p: &FormatParams,
    volume_key: &[u8],
    passphrase: &[u8],
    rng: &mut Rng<'_>,
) -> Result<Formatted, FormatError> {
    let area_start = 2 * p.layout.metadata_size;
    build_formatted(
        p,
        volume_key,
        passphrase,
        rng,
        None,
        area_start,
        FORMAT_SEQID,
    )
}

/// [`format`] over an existing LUKS2 header `old` on the same device (or header file), with
/// the writes ordered so that an interruption at any point (or a torn write) leaves a device
/// that opens with the old passphrases or with the new one, never neither:
///
/// 1. the new keyslot goes into the first 4 KiB-aligned gap of the new keyslots area that no
///    active old keyslot uses (not always at the start of the area, which cryptsetup accepts:
///    a keyslot may lie anywhere in the area);
/// 2. the header copy *not* in use is written first, then the one in use, both with a seqid
///    one above the old one: as long as the new copy being written is incomplete (its checksum
///    fails) the old copy in use wins; once it is complete its higher seqid wins, for tazpod's
///    reader and for cryptsetup alike;
/// 3. only then is the rest of the keyslots area, with the old keyslots, overwritten with
///    random bytes.
///
/// Returns `Ok(None)` when no such order exists: the old header has another metadata size
/// (its secondary copy lies elsewhere) or its keyslots leave no gap for the new one. The caller
/// then uses [`format`], with which the old passphrases stop opening at the first write (as
/// with cryptsetup's `luksFormat`).
pub fn format_over(
    p: &FormatParams,
    volume_key: &[u8],
    passphrase: &[u8],
    old: &Luks2Header,
    rng: &mut Rng<'_>,
) -> Result<Option<Formatted>, FormatError> {
    let l = p.layout;
    if old.binary.hdr_size != l.metadata_size {
        return Ok(None);
    }
    let area_size = keyslot_area_size(volume_key.len())?;
    let start = 2 * l.metadata_size;
    let end = start.saturating_add(l.keyslots_size);
    let Some(off) = first_gap(old, start, end, area_size) else {
        return Ok(None);
    };
    let seqid = old
        .binary
        .seqid
        .checked_add(1)
        .ok_or_else(|| FormatError::Unsupported("the sequence id is at its maximum".into()))?
        .max(FORMAT_SEQID);
    build_formatted(
        p,
        volume_key,
        passphrase,
        rng,
        Some(old.used_copy),
        off,
        seqid,
    )
    .map(Some)
}

/// The new header and its plan. `over` is the copy in use of an old header being replaced
/// (the write order of [`format_over`]), `None` for a plain [`format`]; `area_offset` is where
/// keyslot 0 goes.
fn build_formatted(
    p: &FormatParams,
    volume_key: &[u8],
    passphrase: &[u8],
    rng: &mut Rng<'_>,
    over: Option<HeaderCopy>,
    area_offset: u64,
    seqid: u64,
) -> Result<Formatted, FormatError> {
    if !(512..=4096).contains(&p.sector_size) || !p.sector_size.is_power_of_two() {
        return Err(FormatError::BadSectorSize(p.sector_size));
    }
    let spec = CipherSpec::parse(&p.encryption, volume_key.len())?;
    SectorCipher::new(&spec, volume_key).map_err(|_| FormatError::KeySize {
        got: volume_key.len(),
    })?;
    check_label("label", &p.label)?;
    check_label("subsystem", &p.subsystem)?;
    let uuid = match &p.uuid {
        Some(u) => {
            check_uuid(u)?;
            u.to_ascii_lowercase()
        }
        None => {
            let mut b = [0u8; 16];
            fill(rng, &mut b)?;
            uuid_v4(b)
        }
    };
    let l = p.layout;
    if !METADATA_SIZES.contains(&l.metadata_size) {
        return Err(FormatError::BadMetadataSize(l.metadata_size));
    }
    let area_start = 2 * l.metadata_size;
    let area_size = keyslot_area_size(volume_key.len())?;
    let area_end = area_start.saturating_add(l.keyslots_size);
    if area_offset < area_start || area_offset.saturating_add(area_size) > area_end {
        return Err(FormatError::NoSpace { needed: area_size });
    }
    let (ks, area) = build_keyslot(
        volume_key,
        passphrase,
        &p.keyslot,
        area_offset,
        area_size,
        rng,
    )?;
    let digest = build_digest(
        volume_key,
        p.digest_hash,
        p.digest_iterations,
        &[0],
        &[0],
        rng,
    )?;
    let json_size = l.metadata_size - BINARY_HEADER_SIZE;
    let segment = JsonObject::from_entries([
        ("type", "crypt".into()),
        ("offset", num_str(l.data_offset)),
        ("size", "dynamic".into()),
        ("iv_tweak", "0".into()),
        ("encryption", p.encryption.as_str().into()),
        ("sector_size", p.sector_size.into()),
    ]);
    let config = JsonObject::from_entries([
        ("json_size", num_str(json_size)),
        ("keyslots_size", num_str(l.keyslots_size)),
    ]);
    let one = |v: JsonValue| JsonValue::from(JsonObject::from_entries([("0", v)]));
    let meta = JsonObject::from_entries([
        ("keyslots", one(ks)),
        ("tokens", JsonObject::default().into()),
        ("segments", one(segment.into())),
        ("digests", one(digest)),
        ("config", config.into()),
    ]);
    let json = to_json_text(&meta);

    // The keyslots area: random bytes, the keyslot at `area_offset`.
    let ks_len = usize::try_from(l.keyslots_size).map_err(|_| FormatError::BadKeyslotsSize {
        size: l.keyslots_size,
        reason: "too large for memory",
    })?;
    let mut keyslots = vec![0u8; ks_len];
    fill(rng, &mut keyslots)?;
    let rel = usize::try_from(area_offset - area_start).unwrap_or(usize::MAX);
    let Some(dst) = rel
        .checked_add(area.len())
        .and_then(|e| keyslots.get_mut(rel..e))
    else {
        return Err(FormatError::NoSpace { needed: area_size });
    };
    dst.copy_from_slice(&area);
    let mut salts = [[0u8; 64]; 2];
    fill(rng, &mut salts[0])?;
    fill(rng, &mut salts[1])?;
    let fields = HeaderFields {
        metadata_size: l.metadata_size,
        seqid,
        label: &p.label,
        subsystem: &p.subsystem,
        uuid: &uuid,
        salts,
    };
    let (primary, secondary) = header_copies(&json, &fields)?;
    let secondary = PlannedWrite {
        what: "secondary header".into(),
        offset: l.metadata_size,
        data: secondary,
    };
    let primary = PlannedWrite {
        what: "primary header".into(),
        offset: 0,
        data: primary,
    };
    let writes = match over {
        None => vec![
            PlannedWrite {
                what: "keyslots area".into(),
                offset: area_start,
                data: keyslots,
            },
            secondary,
            primary,
        ],
        Some(used) => {
            // The new keyslot alone, the copy not in use, the copy in use, then the rest of the
            // area (the old keyslots) overwritten.
            let (first, second) = match used {
                HeaderCopy::Primary => (secondary, primary),
                HeaderCopy::Secondary => (primary, secondary),
            };
            let tail = keyslots.split_off(rel.saturating_add(area.len()));
            let own = keyslots.split_off(rel);
            let mut w = vec![
                PlannedWrite {
                    what: "keyslot 0 area".into(),
                    offset: area_offset,
                    data: own,
                },
                first,
                second,
            ];
            if !keyslots.is_empty() {
                w.push(PlannedWrite {
                    what: "keyslots area before keyslot 0 (old keyslots wiped)".into(),
                    offset: area_start,
                    data: keyslots,
                });
            }
            if !tail.is_empty() {
                w.push(PlannedWrite {
                    what: "keyslots area after keyslot 0 (old keyslots wiped)".into(),
                    offset: area_offset.saturating_add(u64::try_from(area.len()).unwrap_or(0)),
                    data: tail,
                });
            }
            w
        }
    };
    Ok(Formatted {
        plan: Plan { writes },
        uuid,
        json,
    })
}

fn check_label(field: &'static str, s: &str) -> Result<(), FormatError> {
    if s.contains('\0') {
        return Err(FormatError::Unsupported(format!(
            "the {field} contains a NUL byte"
        )));
    }
    if s.len() > MAX_LABEL_LEN {
        return Err(FormatError::LabelTooLong {
            field,
            len: s.len(),
        });
    }
    Ok(())
}

/// The binary header fields both copies share.
#[derive(Debug, Clone)]
pub struct HeaderFields<'a> {
    /// Binary header + JSON area.
    pub metadata_size: u64,
    /// Sequence id.
    pub seqid: u64,
    /// Label.
    pub label: &'a str,
    /// Subsystem.
    pub subsystem: &'a str,
    /// UUID text.
    pub uuid: &'a str,
    /// Salts of the primary and the secondary copy.
    pub salts: [[u8; 64]; 2],
}

/// Both header copies (primary, secondary), each `metadata_size` bytes: binary header with
/// its checksum (sha256 over the copy with the checksum field zeroed), then the JSON text and
/// zero padding.
pub fn header_copies(json: &str, f: &HeaderFields<'_>) -> Result<(Vec<u8>, Vec<u8>), FormatError> {
    if !METADATA_SIZES.contains(&f.metadata_size) {
        return Err(FormatError::BadMetadataSize(f.metadata_size));
    }
    let size = usize::try_from(f.metadata_size)
        .map_err(|_| FormatError::BadMetadataSize(f.metadata_size))?;
    let json_max = f.metadata_size - BINARY_HEADER_SIZE;
    let len = u64::try_from(json.len()).unwrap_or(u64::MAX);
    if len >= json_max {
        return Err(FormatError::JsonTooLarge {
            len: len.saturating_add(1),
            max: json_max,
        });
    }
    check_label("label", f.label)?;
    check_label("subsystem", f.subsystem)?;
    let one = |magic: &[u8; 6], offset: u64, salt: &[u8; 64]| -> Vec<u8> {
        let mut b = vec![0u8; size];
        put(&mut b, 0, magic);
        put(&mut b, 6, &2u16.to_be_bytes());
        put(&mut b, 8, &f.metadata_size.to_be_bytes());
        put(&mut b, 16, &f.seqid.to_be_bytes());
        put(&mut b, 24, f.label.as_bytes());
        put(&mut b, 72, b"sha256");
        put(&mut b, 104, salt);
        put(
            &mut b,
            168,
            f.uuid.as_bytes().get(..39).unwrap_or(f.uuid.as_bytes()),
        );
        put(&mut b, 208, f.subsystem.as_bytes());
        put(&mut b, 256, &offset.to_be_bytes());
        put(&mut b, 4096, json.as_bytes());
        let mut csum = [0u8; 32];
        HashAlg::Sha256.digest_into(&[&b], &mut csum);
        put(&mut b, 448, &csum);
        b
    };
    Ok((
        one(&MAGIC_PRIMARY, 0, &f.salts[0]),
        one(&MAGIC_SECONDARY, f.metadata_size, &f.salts[1]),
    ))
}

fn put(b: &mut [u8], at: usize, src: &[u8]) {
    if let Some(dst) = at.checked_add(src.len()).and_then(|end| b.get_mut(at..end)) {
        dst.copy_from_slice(src);
    }
}

// ---------------------------------------------------------------------------------------------
// Changing an existing header.

/// What to change in the binary header and where the new copies go.
struct Rewrite<'a> {
    h: &'a Luks2Header,
    meta: JsonObject,
    label: Option<&'a str>,
}

impl Rewrite<'_> {
    fn new(h: &Luks2Header) -> Result<Rewrite<'_>, FormatError> {
        if !h.metadata.config.requirements_mandatory.is_empty() {
            return Err(FormatError::Unsupported(format!(
                "it has mandatory requirements ({})",
                h.metadata.config.requirements_mandatory.join(", ")
            )));
        }
        Ok(Rewrite {
            h,
            meta: h.json.clone(),
            label: None,
        })
    }

    fn section(&mut self, name: &str) -> Result<&mut JsonObject, FormatError> {
        self.meta
            .get_mut(name)
            .and_then(JsonValue::as_object_mut)
            .ok_or_else(|| FormatError::Unsupported(format!("no '{name}' object")))
    }

    /// The two header writes, seqid + 1: the copy not in use first (the secondary, for an
    /// intact header), then the one in use.
    fn header_writes(&self, rng: &mut Rng<'_>) -> Result<Vec<PlannedWrite>, FormatError> {
        let json = to_json_text(&self.meta);
        let b = &self.h.binary;
        let mut salts = [[0u8; 64]; 2];
        fill(rng, &mut salts[0])?;
        fill(rng, &mut salts[1])?;
        let fields = HeaderFields {
            metadata_size: b.hdr_size,
            seqid: b.seqid.checked_add(1).ok_or_else(|| {
                FormatError::Unsupported("the sequence id is at its maximum".into())
            })?,
            label: self.label.unwrap_or(&b.label),
            subsystem: &b.subsystem,
            uuid: &b.uuid,
            salts,
        };
        let (primary, secondary) = header_copies(&json, &fields)?;
        let secondary = PlannedWrite {
            what: "secondary header".into(),
            offset: b.hdr_size,
            data: secondary,
        };
        let primary = PlannedWrite {
            what: "primary header".into(),
            offset: 0,
            data: primary,
        };
        // The copy in use is written last: while the other one is written (and may tear), the
        // copy in use still carries the old state.
        Ok(match self.h.used_copy {
            HeaderCopy::Primary => vec![secondary, primary],
            HeaderCopy::Secondary => vec![primary, secondary],
        })
    }
}

/// Adds a keyslot holding `volume_key` (already verified by the caller against `digest`)
/// under `passphrase`, at `id` or the lowest free id, in the first free space of the keyslots
/// area. Plan: the keyslot area, then the secondary header, then the primary.
///
/// Returns the plan and the keyslot id.
pub fn add_keyslot(
    h: &Luks2Header,
    volume_key: &[u8],
    digest: u32,
    passphrase: &[u8],
    spec: &KeyslotSpec,
    id: Option<u32>,
    rng: &mut Rng<'_>,
) -> Result<(Plan, u32), FormatError> {
    let m = &h.metadata;
    let id = match id {
        Some(i) if i >= MAX_KEYSLOTS => {
            return Err(FormatError::Keyslot {
                id: i,
                reason: "is out of range (0-31)",
            })
        }
        Some(i) if m.keyslots.contains_key(&i) => {
            return Err(FormatError::Keyslot {
                id: i,
                reason: "is in use",
            })
        }
        Some(i) => i,
        None => (0..MAX_KEYSLOTS)
            .find(|i| !m.keyslots.contains_key(i))
            .ok_or(FormatError::NoFreeKeyslot)?,
    };
    if !m.digests.contains_key(&digest) {
        return Err(FormatError::Unsupported(format!("no digest {digest}")));
    }
    let size = keyslot_area_size(volume_key.len())?;
    let off = free_area(h, size)?;
    let (ks, area) = build_keyslot(volume_key, passphrase, spec, off, size, rng)?;
    let mut rw = Rewrite::new(h)?;
    rw.section("keyslots")?.set(id.to_string(), ks);
    let d = rw
        .section("digests")?
        .get_mut(&digest.to_string())
        .and_then(JsonValue::as_object_mut)
        .and_then(|d| d.get_mut("keyslots"))
        .and_then(JsonValue::as_array_mut)
        .ok_or_else(|| FormatError::Unsupported(format!("digest {digest} has no keyslots")))?;
    d.push(id.to_string().into());
    let mut writes = vec![PlannedWrite {
        what: format!("keyslot {id} area"),
        offset: off,
        data: area,
    }];
    writes.extend(rw.header_writes(rng)?);
    Ok((Plan { writes }, id))
}

/// The lowest 4 KiB-aligned offset in the keyslots area where `size` bytes overlap no
/// keyslot area in use (cryptsetup's first-gap rule).
fn free_area(h: &Luks2Header, size: u64) -> Result<u64, FormatError> {
    let start = 2 * h.binary.hdr_size;
    let end = start.saturating_add(h.metadata.config.keyslots_size);
    first_gap(h, start, end, size).ok_or(FormatError::NoSpace { needed: size })
}

/// The lowest 4 KiB-aligned offset in `start..end` where `size` bytes overlap no keyslot
/// area of `h` (cryptsetup's first-gap rule), if there is one.
fn first_gap(h: &Luks2Header, start: u64, end: u64, size: u64) -> Option<u64> {
    let mut used: Vec<(u64, u64)> = h
        .metadata
        .keyslots
        .values()
        .filter_map(|k| k.area.as_ref())
        .map(|a| (a.offset, a.offset.saturating_add(a.size)))
        .collect();
    used.sort_unstable();
    let mut off = start;
    for (s, e) in &used {
        if off.saturating_add(size) <= *s {
            break;
        }
        off = off.max(e.checked_next_multiple_of(AREA_ALIGN).unwrap_or(u64::MAX));
    }
    (off.saturating_add(size) <= end).then_some(off)
}

/// Replaces the passphrase of keyslot `id` (cryptsetup's `luksChangeKey`): the new keyslot
/// keeps the id but gets a new area. Plan: the new area, the secondary header, the primary,
/// then the old area is wiped with random bytes. An interruption leaves the old keyslot or
/// the new one in place.
pub fn change_keyslot(
    h: &Luks2Header,
    volume_key: &[u8],
    id: u32,
    passphrase: &[u8],
    spec: &KeyslotSpec,
    rng: &mut Rng<'_>,
) -> Result<Plan, FormatError> {
    let old_area = h
        .metadata
        .keyslots
        .get(&id)
        .ok_or(FormatError::Keyslot {
            id,
            reason: "is not in use",
        })?
        .area
        .clone();
    let size = keyslot_area_size(volume_key.len())?;
    let off = free_area(h, size)?;
    let (mut ks, area) = build_keyslot(volume_key, passphrase, spec, off, size, rng)?;
    let priority = h.metadata.keyslots.get(&id).map(|k| k.priority);
    set_priority(&mut ks, priority);
    let mut rw = Rewrite::new(h)?;
    rw.section("keyslots")?.set(id.to_string(), ks);
    let mut writes = vec![PlannedWrite {
        what: format!("keyslot {id} new area"),
        offset: off,
        data: area,
    }];
    writes.extend(rw.header_writes(rng)?);
    if let Some(a) = old_area {
        let len = usize::try_from(a.size).map_err(|_| FormatError::NoSpace { needed: a.size })?;
        let mut data = vec![0u8; len];
        fill(rng, &mut data)?;
        writes.push(PlannedWrite {
            what: format!("keyslot {id} old area wipe"),
            offset: a.offset,
            data,
        });
    }
    Ok(Plan { writes })
}

/// Removes keyslot `id`: the metadata first (secondary, primary), then its area is overwritten
/// with random bytes.
pub fn remove_keyslot(h: &Luks2Header, id: u32, rng: &mut Rng<'_>) -> Result<Plan, FormatError> {
    let area = h
        .metadata
        .keyslots
        .get(&id)
        .ok_or(FormatError::Keyslot {
            id,
            reason: "is not in use",
        })?
        .area
        .clone();
    let mut rw = Rewrite::new(h)?;
    let key = id.to_string();
    rw.section("keyslots")?.remove(&key);
    for sec in ["digests", "tokens"] {
        for obj in rw.section(sec)?.values_mut() {
            let arr = obj
                .as_object_mut()
                .and_then(|o| o.get_mut("keyslots"))
                .and_then(JsonValue::as_array_mut);
            if let Some(arr) = arr {
                arr.retain(|v| v.as_str_bytes() != Some(key.as_bytes()));
            }
        }
    }
    let mut writes = rw.header_writes(rng)?;
    if let Some(a) = area {
        let len = usize::try_from(a.size).map_err(|_| FormatError::NoSpace { needed: a.size })?;
        let mut data = vec![0u8; len];
        fill(rng, &mut data)?;
        writes.push(PlannedWrite {
            what: format!("keyslot {id} area wipe"),
            offset: a.offset,
            data,
        });
    }
    Ok(Plan { writes })
}

/// Changes the label and/or a keyslot's priority (header writes only).
pub fn configure(
    h: &Luks2Header,
    label: Option<&str>,
    priority: Option<(u32, Priority)>,
    rng: &mut Rng<'_>,
) -> Result<Plan, FormatError> {
    let mut rw = Rewrite::new(h)?;
    if let Some(l) = label {
        check_label("label", l)?;
        rw.label = Some(l);
    }
    if let Some((id, p)) = priority {
        let ks = rw
            .section("keyslots")?
            .get_mut(&id.to_string())
            .ok_or(FormatError::Keyslot {
                id,
                reason: "is not in use",
            })?;
        set_priority(ks, Some(p));
    }
    Ok(Plan {
        writes: rw.header_writes(rng)?,
    })
}

// ---------------------------------------------------------------------------------------------
// JSON text in cryptsetup's order.

#[derive(Clone, Copy)]
enum Ctx {
    Root,
    IdMap(IdKind),
    Keyslot,
    Area,
    Kdf,
    Af,
    Segment,
    Digest,
    Config,
    Other,
}

#[derive(Clone, Copy)]
enum IdKind {
    Keyslot,
    Token,
    Segment,
    Digest,
}

fn key_order(ctx: Ctx) -> &'static [&'static str] {
    match ctx {
        Ctx::Root => &["keyslots", "tokens", "segments", "digests", "config"],
        Ctx::Keyslot => &["type", "key_size", "af", "area", "kdf", "priority"],
        Ctx::Area => &["type", "offset", "size", "encryption", "key_size"],
        Ctx::Kdf => &[
            "type",
            "hash",
            "iterations",
            "time",
            "memory",
            "cpus",
            "salt",
        ],
        Ctx::Af => &["type", "stripes", "hash"],
        Ctx::Segment => &[
            "type",
            "offset",
            "size",
            "iv_tweak",
            "encryption",
            "sector_size",
            "integrity",
            "flags",
        ],
        Ctx::Digest => &[
            "type",
            "keyslots",
            "segments",
            "hash",
            "iterations",
            "salt",
            "digest",
        ],
        Ctx::Config => &["json_size", "keyslots_size", "flags", "requirements"],
        Ctx::IdMap(_) | Ctx::Other => &[],
    }
}

fn child_ctx(ctx: Ctx, key: &str) -> Ctx {
    match (ctx, key) {
        (Ctx::Root, "keyslots") => Ctx::IdMap(IdKind::Keyslot),
        (Ctx::Root, "tokens") => Ctx::IdMap(IdKind::Token),
        (Ctx::Root, "segments") => Ctx::IdMap(IdKind::Segment),
        (Ctx::Root, "digests") => Ctx::IdMap(IdKind::Digest),
        (Ctx::Root, "config") => Ctx::Config,
        (Ctx::IdMap(IdKind::Keyslot), _) => Ctx::Keyslot,
        (Ctx::IdMap(IdKind::Segment), _) => Ctx::Segment,
        (Ctx::IdMap(IdKind::Digest), _) => Ctx::Digest,
        (Ctx::Keyslot, "area") => Ctx::Area,
        (Ctx::Keyslot, "kdf") => Ctx::Kdf,
        (Ctx::Keyslot, "af") => Ctx::Af,
        _ => Ctx::Other,
    }
}

/// Serializes LUKS2 metadata compactly (json-c's plain text, `/` not escaped) with
/// cryptsetup's key order: known keys in the order cryptsetup adds them, id maps numerically,
/// other keys after them in byte order.
pub fn to_json_text(v: &JsonObject) -> String {
    String::from_utf8_lossy(&ordered_object(v, Ctx::Root).to_plain_bytes()).into_owned()
}

/// `o` with its keys (and its children's) in cryptsetup's order for `ctx`.
fn ordered_object(o: &JsonObject, ctx: Ctx) -> JsonValue {
    let order = key_order(ctx);
    let mut keys: Vec<(&[u8], &JsonValue)> = o.iter().collect();
    keys.sort_by_key(|(k, _)| {
        let name = std::str::from_utf8(k).ok();
        let known = name.and_then(|n| order.iter().position(|o| *o == n));
        let id = name.and_then(|n| n.parse::<u64>().ok());
        (known.unwrap_or(usize::MAX), id.unwrap_or(u64::MAX), *k)
    });
    let mut out = JsonObject::default();
    for (k, v) in keys {
        out.set(k, ordered(v, child_ctx(ctx, &String::from_utf8_lossy(k))));
    }
    out.into()
}

fn ordered(v: &JsonValue, ctx: Ctx) -> JsonValue {
    match v {
        JsonValue::Object(o) => ordered_object(o, ctx),
        JsonValue::Array(a) => JsonValue::Array(a.iter().map(|x| ordered(x, Ctx::Other)).collect()),
        other => other.clone(),
    }
}
