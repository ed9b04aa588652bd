//! The validated metadata: keyslots, segments, digests, tokens, config, and lookups
//! over them as cryptsetup does them.

use crate::kdf::Argon2Variant;
use std::collections::BTreeMap;

/// Size of the LUKS2 binary header in front of each JSON area.
pub const BINARY_HEADER_SIZE: u64 = 4096;

/// The metadata sizes (binary header + JSON area) LUKS2 allows; a secondary header sits at one
/// of these offsets.
pub const METADATA_SIZES: [u64; 9] = [
    0x4000, 0x8000, 0x1_0000, 0x2_0000, 0x4_0000, 0x8_0000, 0x10_0000, 0x20_0000, 0x40_0000,
];

/// Largest keyslots area cryptsetup accepts (`LUKS2_MAX_KEYSLOTS_SIZE`, 128 MiB).
pub const MAX_KEYSLOTS_SIZE: u64 = 0x800_0000;

/// The salt length cryptsetup requires for keyslot KDFs and digests.
pub const SALT_SIZE: usize = 32;

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
    /// Keyslot ids in the order they appear in the JSON text. cryptsetup tries keyslots of one
    /// priority in this order (not in numeric order).
    pub keyslot_order: Vec<u32>,
    /// Digest ids in the order they appear in the JSON text (cryptsetup's lookup order).
    pub digest_order: Vec<u32>,
}

/// Keyslot priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// 0: used only when named explicitly. Any stored value other than 1 or 2 also ends up here:
    /// cryptsetup never tries such a keyslot unless it is named.
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
    /// The stored priority as `json_object_get_int` reads it (1 when absent): `luksDump`
    /// shows values other than 0, 1 and 2 as "invalid".
    pub priority_value: i32,
    /// The raw area, when present (always present after validation: cryptsetup requires an
    /// area with type, offset and size for every keyslot).
    pub area: Option<KeyslotArea>,
    /// The KDF (only for `luks2` keyslots).
    pub kdf: Option<KeyslotKdf>,
    /// The anti-forensic splitter (only for `luks2` keyslots).
    pub af: Option<AntiForensic>,
    /// Why this keyslot cannot be used although the header is valid (for example a salt that
    /// is not base64 or not 32 bytes). cryptsetup loads such a keyslot and fails with an
    /// "invalid argument" error when it tries it.
    pub defect: Option<String>,
    /// The KDF as `cryptsetup luksDump` prints it (`luks2` keyslots with a `kdf` object).
    pub kdf_dump: Option<KdfDump>,
}

/// A keyslot's KDF fields as `cryptsetup luksDump` reads them for printing, which is not how
/// it reads them to unlock: `iterations` is `json_object_get_uint64` (a negative value wraps),
/// `time`, `memory` and `cpus` are `json_object_get_int64` printed unsigned (whatever the KDF
/// type, also an unknown one), a missing field is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdfDump {
    /// PBKDF2 iterations.
    pub iterations: u64,
    /// Argon2 time cost.
    pub time: u64,
    /// Argon2 memory (KiB).
    pub memory: u64,
    /// Argon2 threads.
    pub cpus: u64,
    /// The salt's bytes whatever their number; `None` when it is not base64 (cryptsetup then
    /// prints nothing, not even the end of the line).
    pub salt: Option<Vec<u8>>,
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
    /// Area cipher (`aes-xts-plain64`); empty when not stored.
    pub encryption: String,
    /// Area cipher key size in bytes, read as cryptsetup reads it (`json_object_get_int`);
    /// 0 when not stored.
    pub key_size: u32,
    /// The same as `luksDump` reads it to print it (the low 32 bits of
    /// `json_object_get_int64`).
    pub dump_key_size: u32,
}

/// A keyslot's KDF. Numbers are read as cryptsetup reads them (`json_object_get_int`, then
/// converted to an unsigned 32-bit value), so a header unlocks here with the same parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyslotKdf {
    /// PBKDF2.
    Pbkdf2 {
        /// Hash name as stored.
        hash: String,
        /// Iterations.
        iterations: u32,
        /// Salt bytes (decoded from base64; empty if it does not decode, see `defect`).
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
    /// `"luks1"` (the only type cryptsetup accepts).
    pub type_name: String,
    /// Number of stripes as stored. cryptsetup ignores it and always uses 4000.
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
    /// Byte offset on the data device (a multiple of 512).
    pub offset: u64,
    /// Size (a multiple of 512 and of the sector size).
    pub size: SegmentSize,
    /// IV offset in 512-byte units (crypt only; 0 otherwise).
    pub iv_tweak: u64,
    /// Cipher (crypt only; empty otherwise).
    pub encryption: String,
    /// Encryption sector size in bytes (crypt only; 512 otherwise). Validation only requires a
    /// non-zero multiple of 512, as cryptsetup does; dm-crypt further needs a power of two in
    /// 512..=4096.
    pub sector_size: u32,
    /// Integrity type (`integrity.type`) when the segment has one.
    pub integrity: Option<String>,
    /// Segment flags (e.g. `backup-final`).
    pub flags: Vec<String>,
    /// `encryption` as `cryptsetup luksDump` prints it (`json_object_get_string`), whatever the
    /// segment's type; `None` when absent.
    pub dump_cipher: Option<String>,
    /// `sector_size` as `luksDump` prints it (the low 32 bits of `json_object_get_int64`),
    /// whatever the type; `None` when absent.
    pub dump_sector_size: Option<u32>,
}

impl Segment {
    /// Whether this is a reencryption backup segment (a flag starting with `backup-`).
    pub fn is_backup(&self) -> bool {
        self.flags.iter().any(|f| f.starts_with("backup-"))
    }
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
    /// PBKDF2 iterations (cryptsetup's `json_object_get_int64` truncated to 32 bits).
    pub iterations: u32,
    /// Salt bytes (32 unless `defect` says otherwise).
    pub salt: Vec<u8>,
    /// Expected digest bytes (20..=64; cryptsetup also requires 20 or the hash's output size).
    pub digest: Vec<u8>,
    /// Why this digest cannot be used although the header is valid (unknown type, missing or
    /// undecodable parameters). cryptsetup fails with "invalid argument" when it uses it.
    pub defect: Option<String>,
    /// The digest as `cryptsetup luksDump` prints it (`pbkdf2` digests).
    pub dump: DigestDump,
}

/// A PBKDF2 digest's fields as `cryptsetup luksDump` reads them for printing: whatever is
/// there, also when the digest is unusable (a missing `iterations` does not hide the salt).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestDump {
    /// `hash` as `json_object_get_string` gives it; `None` when missing (printed `(null)`).
    pub hash: Option<String>,
    /// `iterations` as `json_object_get_int64` printed unsigned (missing: 0).
    pub iterations: u64,
    /// The salt's bytes; `None` when not base64.
    pub salt: Option<Vec<u8>>,
    /// The digest's bytes; `None` when not base64.
    pub digest: Option<Vec<u8>>,
}

/// A token (kept as stored; only its type and keyslots are interpreted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Token type (`luks2-keyring`, or a foreign one).
    pub type_name: String,
    /// Keyslot ids it refers to.
    pub keyslots: Vec<u32>,
    /// `key_description` when it is a string (what `luksDump` prints for a `luks2-keyring`
    /// token).
    pub key_description: Option<String>,
    /// The whole token object as JSON text (json-c's plain serialization).
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

impl Config {
    /// Size of one metadata copy (binary header + JSON area).
    pub fn metadata_size(&self) -> u64 {
        self.json_size.saturating_add(BINARY_HEADER_SIZE)
    }

    /// Bytes from the start of the device to the end of the keyslots area
    /// (2 × metadata size + keyslots size); the device must be at least this large.
    pub fn header_and_areas_size(&self) -> u64 {
        self.metadata_size()
            .saturating_mul(2)
            .saturating_add(self.keyslots_size)
    }
}

impl Metadata {
    /// The segment cryptsetup calls the default one (`LUKS2_get_default_segment`): the segment
    /// flagged `backup-final` if any, else segment 0 when there is a regular segment.
    pub fn default_segment(&self) -> Option<(u32, &Segment)> {
        if let Some((id, s)) = self
            .segments
            .iter()
            .find(|(_, s)| s.flags.iter().any(|f| f == "backup-final"))
        {
            return Some((*id, s));
        }
        if self.segments.values().any(|s| !s.is_backup()) {
            return self.segments.get(&0).map(|s| (0, s));
        }
        None
    }

    /// The data segment to map: the lowest-numbered `crypt` segment that is not a backup
    /// segment. For a header not in reencryption this is segment 0.
    pub fn data_segment(&self) -> Option<(u32, &Segment)> {
        self.segments
            .iter()
            .find(|(_, s)| s.type_name == "crypt" && !s.is_backup())
            .map(|(id, s)| (*id, s))
    }

    /// The digest that lists keyslot `id` (the first in JSON order, as cryptsetup's
    /// `LUKS2_digest_by_keyslot`).
    pub fn digest_for_keyslot(&self, id: u32) -> Option<(u32, &Digest)> {
        self.digest_order.iter().find_map(|d| {
            let dg = self.digests.get(d)?;
            dg.keyslots.contains(&id).then_some((*d, dg))
        })
    }

    /// The digest that lists segment `id` (the first in JSON order, as cryptsetup's
    /// `LUKS2_digest_by_segment`).
    pub fn digest_for_segment(&self, id: u32) -> Option<(u32, &Digest)> {
        self.digest_order.iter().find_map(|d| {
            let dg = self.digests.get(d)?;
            dg.segments.contains(&id).then_some((*d, dg))
        })
    }

    /// Whether online reencryption is required (`online-reencrypt`, `-v2` or `-v3`).
    pub fn requires_online_reencrypt(&self) -> bool {
        self.config
            .requirements_mandatory
            .iter()
            .any(|r| requirement_kind(r.as_bytes()) == ReqKind::Online)
    }
}

/// How a requirement name is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReqKind {
    Online,
    Offline,
    Unknown,
}

/// cryptsetup's `get_requirement_by_name`.
pub(super) fn requirement_kind(name: &[u8]) -> ReqKind {
    match name {
        b"online-reencrypt-v2" | b"online-reencrypt-v3" | b"online-reencrypt" => ReqKind::Online,
        b"offline-reencrypt" => ReqKind::Offline,
        _ => ReqKind::Unknown,
    }
}
