//! LUKS2 JSON metadata: typed structures and one validation pass as strict (and as lenient) as
//! cryptsetup's `LUKS2_hdr_validate`.

use crate::kdf::Argon2Variant;
use std::collections::BTreeMap;
use std::fmt;

/// Why the JSON metadata is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    /// Placeholder until the metadata module lands.
    Unimplemented,
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Validated LUKS2 metadata. Maps are keyed by the numeric object id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Keyslots by id.
    pub keyslots: BTreeMap<u32, Keyslot>,
    /// Tokens by id.
    pub tokens: BTreeMap<u32, Token>,
    /// Segments by id.
    pub segments: BTreeMap<u32, Segment>,
    /// Digests by id.
    pub digests: BTreeMap<u32, Digest>,
    /// The `config` object.
    pub config: Config,
}

/// Keyslot priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// 0: used only when named explicitly.
    Ignore,
    /// 1 (the default).
    Normal,
    /// 2: tried first.
    High,
}

/// A keyslot. Unknown types load (listed, unusable for unlock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyslot {
    /// `"luks2"`, `"reencrypt"`, or an unknown type name.
    pub type_name: String,
    /// Size of the key it holds, in bytes.
    pub key_size: u32,
    /// Priority (`Normal` when absent).
    pub priority: Priority,
    /// The raw area, when present.
    pub area: Option<KeyslotArea>,
    /// The KDF, when present.
    pub kdf: Option<KeyslotKdf>,
    /// The anti-forensic splitter, when present.
    pub af: Option<AntiForensic>,
}

/// A keyslot's binary area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyslotArea {
    /// `"raw"` (or another type, which cannot unlock).
    pub type_name: String,
    /// Byte offset from the start of the header device.
    pub offset: u64,
    /// Byte length.
    pub size: u64,
    /// Area cipher (`aes-xts-plain64`).
    pub encryption: String,
    /// Area cipher key size in bytes.
    pub key_size: u32,
}

/// A keyslot's KDF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyslotKdf {
    /// PBKDF2.
    Pbkdf2 {
        /// Hash name as stored.
        hash: String,
        /// Iterations.
        iterations: u32,
        /// Salt bytes (decoded from base64).
        salt: Vec<u8>,
    },
    /// Argon2i or Argon2id.
    Argon2 {
        /// Variant.
        variant: Argon2Variant,
        /// Time cost.
        time: u32,
        /// Memory cost in KiB.
        memory_kib: u32,
        /// Parallelism.
        cpus: u32,
        /// Salt bytes.
        salt: Vec<u8>,
    },
    /// A KDF type this library does not know.
    Unknown {
        /// Its type name.
        type_name: String,
    },
}

/// The anti-forensic splitter of a keyslot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AntiForensic {
    /// `"luks1"` (the only defined type).
    pub type_name: String,
    /// Number of stripes (4000).
    pub stripes: u32,
    /// Diffusion hash name.
    pub hash: String,
}

/// A segment's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentSize {
    /// Up to the end of the device.
    Dynamic,
    /// A fixed number of bytes.
    Fixed(u64),
}

/// A data segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// `"crypt"`, `"linear"`, or an unknown type.
    pub type_name: String,
    /// Byte offset on the data device.
    pub offset: u64,
    /// Size.
    pub size: SegmentSize,
    /// IV offset in 512-byte units (crypt only; 0 otherwise).
    pub iv_tweak: u64,
    /// Cipher (crypt only; empty otherwise).
    pub encryption: String,
    /// Encryption sector size in bytes (crypt only; 512 otherwise).
    pub sector_size: u32,
    /// Integrity type (`integrity.type`) when the segment has one.
    pub integrity: Option<String>,
    /// Segment flags (e.g. `backup-final`).
    pub flags: Vec<String>,
}

/// A digest binding keyslots to segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// `"pbkdf2"` or an unknown type.
    pub type_name: String,
    /// Keyslot ids it covers.
    pub keyslots: Vec<u32>,
    /// Segment ids it covers.
    pub segments: Vec<u32>,
    /// PBKDF2 hash name.
    pub hash: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Salt bytes.
    pub salt: Vec<u8>,
    /// Expected digest bytes.
    pub digest: Vec<u8>,
}

/// A token (kept as stored; only its type and keyslots are interpreted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Token type (`luks2-keyring`, or a foreign one).
    pub type_name: String,
    /// Keyslot ids it refers to.
    pub keyslots: Vec<u32>,
    /// The whole token object as JSON text.
    pub json: String,
}

/// The `config` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Size of the JSON area in bytes.
    pub json_size: u64,
    /// Size of the keyslots area in bytes.
    pub keyslots_size: u64,
    /// Persistent flags as stored (unknown ones kept, ignored).
    pub flags: Vec<String>,
    /// `requirements.mandatory` as stored.
    pub requirements_mandatory: Vec<String>,
}

impl Metadata {
    /// Parses and validates the JSON text of a header whose binary header says `hdr_size`.
    pub fn parse(json: &str, hdr_size: u64) -> Result<Metadata, MetadataError> {
        let _ = (json, hdr_size);
        todo!("metadata helper")
    }
}
