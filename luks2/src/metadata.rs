//! LUKS2 JSON metadata: typed structures and one validation pass as strict (and as lenient) as
//! cryptsetup's `LUKS2_hdr_validate`.
//!
//! The JSON area is read with a parser that accepts exactly what cryptsetup's json-c accepts
//! (see [`json`](self) internals), then checked in cryptsetup 2.6's order: requirements, tokens,
//! digests, segments, keyslots, config, keyslot areas, JSON size, keyslot implementations.
//! The first rule broken is reported as a [`MetadataError`] naming the object and field.
//!
//! Like cryptsetup, validation accepts unknown keyslot, KDF, token, digest and segment types and
//! unknown config flags and requirements; such objects load and are listed, but cannot be used.
//! Values cryptsetup only reads when it uses an object (salts, hash names, most KDF numbers)
//! are not validated either: a problem there is recorded in the object's `defect` field.
//!
//! One deliberate difference: object ids must be canonical decimal numbers that fit `u32`
//! ("0", "7", not "07" or ""). cryptsetup only checks that ids are made of digits, and then
//! resolves "07" inconsistently (as "07" in some lookups, as 7 in others); such a header is
//! refused here with [`MetadataError::IdNotCanonical`] rather than guessed at.

mod json;

pub use json::{JsonErrorKind, JsonType};

use crate::kdf::Argon2Variant;
use json::{cstr, JObject, JVal};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

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

/// A top-level section holding numbered objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `keyslots`
    Keyslots,
    /// `tokens`
    Tokens,
    /// `segments`
    Segments,
    /// `digests`
    Digests,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Keyslots => "keyslots",
            Section::Tokens => "tokens",
            Section::Segments => "segments",
            Section::Digests => "digests",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where in the metadata a rule is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The top-level JSON object.
    Root,
    /// The `config` object.
    Config,
    /// A keyslot, by id.
    Keyslot(u32),
    /// A token, by id.
    Token(u32),
    /// A segment, by id.
    Segment(u32),
    /// A digest, by id.
    Digest(u32),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Root => f.write_str("JSON metadata"),
            Location::Config => f.write_str("config"),
            Location::Keyslot(i) => write!(f, "keyslot {i}"),
            Location::Token(i) => write!(f, "token {i}"),
            Location::Segment(i) => write!(f, "segment {i}"),
            Location::Digest(i) => write!(f, "digest {i}"),
        }
    }
}

/// Why the JSON metadata is rejected. Each variant names the object (`at`) and the field
/// (a dotted path such as `"kdf.salt"`) where the rule is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    /// The header size given for the JSON text is not one LUKS2 allows.
    BadHeaderSize {
        /// The size given.
        hdr_size: u64,
    },
    /// The JSON area does not start with `{`.
    JsonAreaNotObject,
    /// The JSON text does not parse (as json-c, which cryptsetup uses, parses it).
    JsonSyntax {
        /// Byte offset in the JSON area.
        offset: u64,
        /// What is wrong there.
        kind: JsonErrorKind,
    },
    /// The JSON text fills the whole area: no NUL byte follows it.
    JsonNotTerminated {
        /// Size of the JSON area.
        area_size: u64,
    },
    /// A byte other than NUL follows the JSON text.
    JsonTrailingBytes {
        /// Byte offset in the JSON area.
        offset: u64,
    },
    /// An object id in a section is not made of decimal digits (cryptsetup refuses it too).
    IdNotNumeric {
        /// The section.
        section: Section,
        /// The id as stored.
        key: String,
    },
    /// An object id is digits but not a canonical `u32` ("07", "", "4294967296"); cryptsetup
    /// loads such ids but resolves them inconsistently, so they are refused here.
    IdNotCanonical {
        /// The section.
        section: Section,
        /// The id as stored.
        key: String,
    },
    /// An object that must be a JSON object is something else.
    NotAnObject {
        /// The object.
        at: Location,
        /// Its JSON type.
        found: JsonType,
    },
    /// A required field is absent.
    MissingField {
        /// The object.
        at: Location,
        /// The field path.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    WrongType {
        /// The object.
        at: Location,
        /// The field path.
        field: &'static str,
        /// The type required.
        expected: JsonType,
        /// The type found.
        found: JsonType,
    },
    /// A string field that must not be empty is empty.
    EmptyString {
        /// The object.
        at: Location,
        /// The field path.
        field: &'static str,
    },
    /// A field that must be a decimal number (as a string) is not.
    NotANumber {
        /// The object.
        at: Location,
        /// The field path.
        field: &'static str,
        /// The value as stored.
        value: String,
    },
    /// A number is too large (or negative) for its field.
    NumberOutOfRange {
        /// The object.
        at: Location,
        /// The field path.
        field: &'static str,
        /// The value as stored.
        value: String,
    },
    /// A number is not a multiple of the alignment its field needs.
    Misaligned {
        /// The object.
        at: Location,
        /// The field path.
        field: &'static str,
        /// The value.
        value: u64,
        /// The required alignment in bytes.
        alignment: u64,
    },
    /// A size field is zero.
    Zero {
        /// The object.
        at: Location,
        /// The field path.
        field: &'static str,
    },
    /// A field holds a value that is not allowed there (for example a keyslot `af.type` other
    /// than `luks1`).
    UnsupportedValue {
        /// The object.
        at: Location,
        /// The field path.
        field: &'static str,
        /// The value as stored.
        value: String,
    },
    /// An array that must hold strings holds something else.
    BadArrayElement {
        /// The object.
        at: Location,
        /// The array's field path.
        field: &'static str,
        /// Index of the element.
        index: usize,
        /// Its JSON type.
        found: JsonType,
    },
    /// An array names a keyslot or segment that does not exist.
    DanglingReference {
        /// The object holding the array.
        at: Location,
        /// The array (`keyslots` or `segments`).
        field: &'static str,
        /// The id it names.
        target: String,
    },
    /// The `segments` section is empty.
    NoSegments,
    /// A regular segment has a higher id than a backup segment.
    RegularSegmentAfterBackup {
        /// The regular segment.
        segment: u32,
        /// The lowest backup segment seen before it.
        backup: u32,
    },
    /// Segment 0 is a backup segment: there is no regular segment.
    NoRegularSegment,
    /// Segment ids are not contiguous from 0.
    SegmentIdGap {
        /// The first missing id.
        missing: u32,
    },
    /// A segment with `"size": "dynamic"` is not the last regular segment.
    DynamicSegmentNotLast {
        /// The segment.
        segment: u32,
    },
    /// Two regular segments overlap.
    SegmentsOverlap {
        /// One segment.
        first: u32,
        /// The other.
        second: u32,
    },
    /// A segment's offset + size overflows 64 bits.
    SegmentEndOverflow {
        /// The segment.
        segment: u32,
    },
    /// A `crypt` segment is not listed by any digest.
    SegmentWithoutDigest {
        /// The segment.
        segment: u32,
    },
    /// An online reencryption header lacks its `backup-final` or `backup-previous` segment.
    MissingBackupSegment {
        /// The missing flag.
        flag: &'static str,
    },
    /// During online reencryption a segment matches neither backup segment.
    ReencryptSegmentMismatch {
        /// The segment.
        segment: u32,
    },
    /// A `luks2` keyslot is not listed by exactly one digest.
    KeyslotDigestCount {
        /// The keyslot.
        keyslot: u32,
        /// How many digests list it.
        count: usize,
    },
    /// Online reencryption is required but there is no `reencrypt` keyslot.
    MissingReencryptKeyslot,
    /// A `reencrypt` keyslot exists without an `online-reencrypt` requirement.
    ReencryptKeyslotWithoutRequirement,
    /// More than one `reencrypt` keyslot.
    TooManyReencryptKeyslots {
        /// How many there are.
        count: usize,
    },
    /// A keyslot area starts inside the two metadata copies.
    AreaInsideMetadata {
        /// The keyslot.
        keyslot: u32,
        /// The area offset.
        offset: u64,
        /// The lowest allowed offset (2 × metadata size).
        minimum: u64,
    },
    /// A keyslot area's offset + size overflows 64 bits.
    AreaEndOverflow {
        /// The keyslot.
        keyslot: u32,
    },
    /// A keyslot area ends beyond the keyslots area.
    AreaBeyondKeyslotsArea {
        /// The keyslot.
        keyslot: u32,
        /// Where the area ends.
        end: u64,
        /// Where the keyslots area ends (2 × metadata size + keyslots_size).
        limit: u64,
    },
    /// Two keyslot areas overlap.
    AreasOverlap {
        /// One keyslot.
        first: u32,
        /// The other.
        second: u32,
    },
    /// `config.json_size` + 4096 is not an allowed metadata size.
    UnsupportedMetadataSize {
        /// The metadata size.
        size: u64,
    },
    /// `config.keyslots_size` is not a multiple of 4096 or exceeds 128 MiB.
    BadKeyslotsSize {
        /// The size.
        size: u64,
    },
    /// The keyslots area does not fit between the metadata copies and the first data segment.
    KeyslotsAreaTooLarge {
        /// `config.keyslots_size`.
        keyslots_size: u64,
        /// Offset of the first data segment.
        data_offset: u64,
        /// Where the keyslots area starts (2 × metadata size).
        area_start: u64,
    },
    /// `config.json_size` differs from the JSON area size of the binary header.
    JsonSizeMismatch {
        /// `config.json_size`.
        config: u64,
        /// The JSON area size from the binary header.
        header: u64,
    },
    /// The metadata, serialized as cryptsetup would write it, does not fit its area.
    JsonTooLarge {
        /// Serialized length.
        serialized: u64,
        /// `config.json_size`.
        area: u64,
    },
    /// More than one online reencryption requirement is listed.
    MultipleReencryptRequirements,
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MetadataError as E;
        match self {
            E::BadHeaderSize { hdr_size } => write!(
                f,
                "LUKS2 header size {hdr_size} is not allowed (16 KiB to 4 MiB, a power of two)"
            ),
            E::JsonAreaNotObject => {
                f.write_str("LUKS2 JSON area does not start with '{' (area wiped or damaged)")
            }
            E::JsonSyntax { offset, kind } => {
                write!(f, "LUKS2 JSON metadata does not parse: {kind} at byte {offset} of the JSON area")
            }
            E::JsonNotTerminated { area_size } => write!(
                f,
                "LUKS2 JSON text fills the whole {area_size}-byte JSON area: no terminating NUL byte"
            ),
            E::JsonTrailingBytes { offset } => write!(
                f,
                "LUKS2 JSON area has a non-NUL byte after the JSON text, at byte {offset}"
            ),
            E::IdNotNumeric { section, key } => {
                write!(f, "{section} id {key:?} is not a decimal number")
            }
            E::IdNotCanonical { section, key } => write!(
                f,
                "{section} id {key:?} is not a canonical decimal number (no leading zeros, \
                 at most 4294967295); refusing to guess which object it means"
            ),
            E::NotAnObject { at, found } => write!(f, "{at} is a {found}, not an object"),
            E::MissingField { at, field } => write!(f, "{at}: required field {field:?} is missing"),
            E::WrongType {
                at,
                field,
                expected,
                found,
            } => write!(f, "{at}: field {field:?} must be a {expected}, not a {found}"),
            E::EmptyString { at, field } => write!(f, "{at}: field {field:?} is an empty string"),
            E::NotANumber { at, field, value } => write!(
                f,
                "{at}: field {field:?} must be a decimal number in a string, found {value:?}"
            ),
            E::NumberOutOfRange { at, field, value } => {
                write!(f, "{at}: field {field:?} is out of range: {value}")
            }
            E::Misaligned {
                at,
                field,
                value,
                alignment,
            } => write!(
                f,
                "{at}: field {field:?} = {value} is not a multiple of {alignment}"
            ),
            E::Zero { at, field } => write!(f, "{at}: field {field:?} must not be zero"),
            E::UnsupportedValue { at, field, value } => {
                write!(f, "{at}: field {field:?} has a value not allowed here: {value:?}")
            }
            E::BadArrayElement {
                at,
                field,
                index,
                found,
            } => write!(
                f,
                "{at}: element {index} of {field:?} is a {found}, not a string"
            ),
            E::DanglingReference { at, field, target } => write!(
                f,
                "{at}: {field:?} names {target:?}, which does not exist in the {field} section"
            ),
            E::NoSegments => f.write_str("the segments section is empty"),
            E::RegularSegmentAfterBackup { segment, backup } => write!(
                f,
                "regular segment {segment} comes after backup segment {backup}"
            ),
            E::NoRegularSegment => f.write_str("segment 0 is a backup segment: no regular segment"),
            E::SegmentIdGap { missing } => {
                write!(f, "segment ids are not contiguous: segment {missing} is missing")
            }
            E::DynamicSegmentNotLast { segment } => write!(
                f,
                "segment {segment} has a dynamic size but is not the last regular segment"
            ),
            E::SegmentsOverlap { first, second } => {
                write!(f, "segments {first} and {second} overlap")
            }
            E::SegmentEndOverflow { segment } => {
                write!(f, "segment {segment}: offset + size overflows 64 bits")
            }
            E::SegmentWithoutDigest { segment } => {
                write!(f, "crypt segment {segment} is not assigned to any digest")
            }
            E::MissingBackupSegment { flag } => write!(
                f,
                "online reencryption is in progress but no segment is flagged {flag:?}"
            ),
            E::ReencryptSegmentMismatch { segment } => write!(
                f,
                "segment {segment} matches neither backup segment of the reencryption"
            ),
            E::KeyslotDigestCount { keyslot, count } => write!(
                f,
                "keyslot {keyslot} is assigned to {count} digests; a luks2 keyslot needs exactly one"
            ),
            E::MissingReencryptKeyslot => f.write_str(
                "online reencryption is required but there is no reencrypt keyslot",
            ),
            E::ReencryptKeyslotWithoutRequirement => f.write_str(
                "a reencrypt keyslot exists but no online-reencrypt requirement is set",
            ),
            E::TooManyReencryptKeyslots { count } => {
                write!(f, "{count} reencrypt keyslots; at most one is allowed")
            }
            E::AreaInsideMetadata {
                keyslot,
                offset,
                minimum,
            } => write!(
                f,
                "keyslot {keyslot}: area offset {offset} lies inside the metadata copies (below {minimum})"
            ),
            E::AreaEndOverflow { keyslot } => {
                write!(f, "keyslot {keyslot}: area offset + size overflows 64 bits")
            }
            E::AreaBeyondKeyslotsArea {
                keyslot,
                end,
                limit,
            } => write!(
                f,
                "keyslot {keyslot}: area ends at {end}, beyond the keyslots area which ends at {limit}"
            ),
            E::AreasOverlap { first, second } => {
                write!(f, "keyslot areas of keyslots {first} and {second} overlap")
            }
            E::UnsupportedMetadataSize { size } => write!(
                f,
                "config.json_size gives a metadata size of {size}, not one of 16 KiB .. 4 MiB (powers of two)"
            ),
            E::BadKeyslotsSize { size } => write!(
                f,
                "config.keyslots_size {size} must be a multiple of 4096 and at most 128 MiB"
            ),
            E::KeyslotsAreaTooLarge {
                keyslots_size,
                data_offset,
                area_start,
            } => write!(
                f,
                "config.keyslots_size {keyslots_size} does not fit between the metadata \
                 (ending at {area_start}) and the data segment at {data_offset}"
            ),
            E::JsonSizeMismatch { config, header } => write!(
                f,
                "config.json_size is {config} but the binary header gives a JSON area of {header} bytes"
            ),
            E::JsonTooLarge { serialized, area } => write!(
                f,
                "the JSON metadata needs {serialized} bytes but its area holds {area}"
            ),
            E::MultipleReencryptRequirements => {
                f.write_str("more than one online-reencrypt requirement is listed")
            }
        }
    }
}

impl std::error::Error for MetadataError {}

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
    /// Parses and validates the JSON text of a header whose binary header says `hdr_size`.
    ///
    /// The text is taken as if stored in a JSON area of `hdr_size - 4096` bytes padded with NUL
    /// bytes, so it must be shorter than that area and contain no NUL byte.
    pub fn parse(json: &str, hdr_size: u64) -> Result<Metadata, MetadataError> {
        let area_size = json_area_size(hdr_size)?;
        let area_len =
            usize::try_from(area_size).map_err(|_| MetadataError::BadHeaderSize { hdr_size })?;
        let text = json.as_bytes();
        if text.len() >= area_len {
            return Err(MetadataError::JsonNotTerminated { area_size });
        }
        let mut area = vec![0u8; area_len];
        if let Some(dst) = area.get_mut(..text.len()) {
            dst.copy_from_slice(text);
        }
        Metadata::parse_area(&area).map(|(m, _)| m)
    }

    /// Parses and validates a whole JSON area (the `hdr_size - 4096` bytes after a binary
    /// header), applying cryptsetup's framing rules: the area starts with `{`, the JSON text is
    /// followed by at least one NUL byte and nothing but NUL bytes. Returns the metadata and
    /// the length of the JSON text.
    pub fn parse_area(area: &[u8]) -> Result<(Metadata, usize), MetadataError> {
        let area_size = area.len() as u64;
        let hdr_size = area_size.saturating_add(BINARY_HEADER_SIZE);
        // cryptsetup's parse_and_validate_json: hdr_size in (4096, 4 MiB].
        if area_size == 0 || hdr_size > METADATA_SIZES[8] {
            return Err(MetadataError::BadHeaderSize { hdr_size });
        }
        if area.first() != Some(&b'{') {
            return Err(MetadataError::JsonAreaNotObject);
        }
        let (value, json_len) = json::parse(area).map_err(|e| MetadataError::JsonSyntax {
            offset: e.offset as u64,
            kind: e.kind,
        })?;
        if json_len >= area.len() {
            return Err(MetadataError::JsonNotTerminated { area_size });
        }
        if let Some(p) = area
            .get(json_len..)
            .and_then(|tail| tail.iter().position(|&b| b != 0))
        {
            return Err(MetadataError::JsonTrailingBytes {
                offset: (json_len + p) as u64,
            });
        }
        let JVal::Object(mut root) = value else {
            return Err(MetadataError::JsonAreaNotObject);
        };
        repair(&mut root);
        let m = validate(&root, area_size)?;
        Ok((m, json_len))
    }

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

/// JSON area size for a binary header `hdr_size`, as cryptsetup's `parse_and_validate_json`
/// accepts it (above 4096, at most 4 MiB).
fn json_area_size(hdr_size: u64) -> Result<u64, MetadataError> {
    if hdr_size <= BINARY_HEADER_SIZE || hdr_size > METADATA_SIZES[8] {
        return Err(MetadataError::BadHeaderSize { hdr_size });
    }
    Ok(hdr_size - BINARY_HEADER_SIZE)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// cryptsetup's `LUKS2_hdr_repair`: drops leftover KDF parameters of other KDF types from
/// `luks2` keyslots (cryptsetup < 2.0.3 could leave them). cryptsetup runs it only when the
/// first validation fails; running it first gives the same verdict, because a header that
/// validates has no leftovers.
fn repair(root: &mut JObject) {
    let Some(JVal::Object(keyslots)) = root.get_mut("keyslots") else {
        return;
    };
    let ids: Vec<Vec<u8>> = keyslots.iter().map(|(k, _)| k.to_vec()).collect();
    for id in ids {
        let Some(JVal::Object(ks)) = keyslots_get_mut(keyslots, &id) else {
            continue;
        };
        if ks.get("type").and_then(JVal::as_cstr) != Some(b"luks2".as_slice()) {
            continue;
        }
        let Some(JVal::Object(kdf)) = ks.get_mut("kdf") else {
            continue;
        };
        let keep: &[&[u8]] = match kdf.get("type").and_then(JVal::as_cstr) {
            Some(b"pbkdf2") => &[b"type", b"salt", b"hash", b"iterations"],
            Some(b"argon2i" | b"argon2id") => &[b"type", b"salt", b"time", b"memory", b"cpus"],
            _ => continue,
        };
        kdf.retain_keys(|k| keep.contains(&k));
    }
}

fn keyslots_get_mut<'a>(o: &'a mut JObject, key: &[u8]) -> Option<&'a mut JVal> {
    let k = std::str::from_utf8(key).ok()?;
    o.get_mut(k)
}

// ---------------------------------------------------------------------------------------------
// Field access helpers (cryptsetup's json_contains / json_contains_string / numbered / ...)

type R<T> = Result<T, MetadataError>;

/// The object of an entry, or `NotAnObject`.
fn as_obj(v: &JVal, at: Location) -> R<&JObject> {
    v.as_object().ok_or(MetadataError::NotAnObject {
        at,
        found: v.json_type(),
    })
}

/// `json_contains(obj, field, type)`: present and of `ty`.
fn need<'a>(
    o: &'a JObject,
    at: Location,
    key: &str,
    field: &'static str,
    ty: JsonType,
) -> R<&'a JVal> {
    let v = o
        .get(key)
        .ok_or(MetadataError::MissingField { at, field })?;
    if v.json_type() != ty {
        return Err(MetadataError::WrongType {
            at,
            field,
            expected: ty,
            found: v.json_type(),
        });
    }
    Ok(v)
}

fn need_obj<'a>(o: &'a JObject, at: Location, key: &str, field: &'static str) -> R<&'a JObject> {
    let v = need(o, at, key, field, JsonType::Object)?;
    v.as_object()
        .ok_or(MetadataError::MissingField { at, field })
}

fn need_arr<'a>(o: &'a JObject, at: Location, key: &str, field: &'static str) -> R<&'a [JVal]> {
    let v = need(o, at, key, field, JsonType::Array)?;
    v.as_array()
        .ok_or(MetadataError::MissingField { at, field })
}

/// `json_contains_string`: a string whose C view is not empty. Returns the C view.
fn need_str<'a>(o: &'a JObject, at: Location, key: &str, field: &'static str) -> R<&'a [u8]> {
    let v = need(o, at, key, field, JsonType::String)?;
    let s = v.as_cstr().unwrap_or_default();
    if s.is_empty() {
        return Err(MetadataError::EmptyString { at, field });
    }
    Ok(s)
}

/// A `json_type_int` field.
fn need_int<'a>(o: &'a JObject, at: Location, key: &str, field: &'static str) -> R<&'a JVal> {
    need(o, at, key, field, JsonType::Int)
}

/// A `json_type_int` field that passes `validate_json_uint32`.
fn need_u32(o: &JObject, at: Location, key: &str, field: &'static str) -> R<u32> {
    let v = need_int(o, at, key, field)?;
    v.valid_u32()
        .ok_or_else(|| MetadataError::NumberOutOfRange {
            at,
            field,
            value: lossy(&v.to_plain_bytes()),
        })
}

/// `numbered()` then `json_str_to_uint64()` on a non-empty string.
fn digits_u64(s: &[u8], at: Location, field: &'static str) -> R<u64> {
    if !s.iter().all(u8::is_ascii_digit) {
        return Err(MetadataError::NotANumber {
            at,
            field,
            value: lossy(s),
        });
    }
    json::strtoull_whole(s).ok_or_else(|| MetadataError::NumberOutOfRange {
        at,
        field,
        value: lossy(s),
    })
}

/// `json_str_to_uint64()` alone (as `config` uses it: `strtoull` rules, sign and leading
/// white space allowed).
fn strtoull_u64(s: &[u8], at: Location, field: &'static str) -> R<u64> {
    json::strtoull_whole(s).ok_or_else(|| {
        let digits_only = s.iter().all(u8::is_ascii_digit);
        if digits_only {
            MetadataError::NumberOutOfRange {
                at,
                field,
                value: lossy(s),
            }
        } else {
            MetadataError::NotANumber {
                at,
                field,
                value: lossy(s),
            }
        }
    })
}

/// An optional array of strings (segment and config `flags`, `requirements.mandatory`).
fn string_array<'a>(arr: &'a [JVal], at: Location, field: &'static str) -> R<Vec<&'a [u8]>> {
    arr.iter()
        .enumerate()
        .map(|(index, v)| {
            v.as_cstr().ok_or(MetadataError::BadArrayElement {
                at,
                field,
                index,
                found: v.json_type(),
            })
        })
        .collect()
}

/// Parses a canonical object id.
fn canonical_id(key: &[u8]) -> Option<u32> {
    if key.is_empty() || (key.len() > 1 && key.first() == Some(&b'0')) {
        return None;
    }
    if !key.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(key).ok()?.parse::<u32>().ok()
}

/// A section as (id, value) pairs in JSON order, with ids checked.
struct Sect<'a> {
    entries: Vec<(u32, &'a [u8], &'a JVal)>,
    obj: &'a JObject,
}

impl<'a> Sect<'a> {
    fn new(obj: &'a JObject, section: Section) -> R<Sect<'a>> {
        let mut entries = Vec::with_capacity(obj.len());
        for (k, v) in obj.iter() {
            match canonical_id(k) {
                Some(id) => entries.push((id, k, v)),
                None => {
                    let key = lossy(k);
                    return Err(if k.iter().all(u8::is_ascii_digit) {
                        MetadataError::IdNotCanonical { section, key }
                    } else {
                        MetadataError::IdNotNumeric { section, key }
                    });
                }
            }
        }
        Ok(Sect { entries, obj })
    }

    /// Whether `name` (a C string) names an entry that is an object (cryptsetup's
    /// `json_contains(section, name, json_type_object)`).
    fn has_object(&self, name: &[u8]) -> bool {
        matches!(self.obj.get_bytes(name), Some(JVal::Object(_)))
    }
}

/// Checks that every element of a `keyslots`/`segments` reference array is a string naming
/// an existing object of `target` (cryptsetup's `validate_keyslots_array` and
/// `validate_segments_array`), returning the referenced ids.
fn references(
    arr: &[JVal],
    at: Location,
    field: &'static str,
    target: Option<&Sect<'_>>,
) -> R<Vec<u32>> {
    let mut ids = Vec::with_capacity(arr.len());
    for (index, v) in arr.iter().enumerate() {
        let name = v.as_cstr().ok_or(MetadataError::BadArrayElement {
            at,
            field,
            index,
            found: v.json_type(),
        })?;
        let dangling = || MetadataError::DanglingReference {
            at,
            field,
            target: lossy(name),
        };
        let Some(sect) = target else {
            return Err(dangling());
        };
        if !sect.has_object(name) {
            return Err(dangling());
        }
        // Existing keys are canonical, so the name parses.
        ids.push(canonical_id(name).ok_or_else(dangling)?);
    }
    Ok(ids)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqKind {
    Online,
    Offline,
    Unknown,
}

/// cryptsetup's `get_requirement_by_name`.
fn requirement_kind(name: &[u8]) -> ReqKind {
    match name {
        b"online-reencrypt-v2" | b"online-reencrypt-v3" | b"online-reencrypt" => ReqKind::Online,
        b"offline-reencrypt" => ReqKind::Offline,
        _ => ReqKind::Unknown,
    }
}

/// cryptsetup's `reencrypt_candidate_flag`: `online-reencrypt` or `online-reencrypt-v<digits>`.
fn reencrypt_candidate(name: &[u8]) -> bool {
    if name == b"online-reencrypt" {
        return true;
    }
    match name.strip_prefix(b"online-reencrypt-v") {
        Some(rest) => !rest.is_empty() && rest.iter().all(u8::is_ascii_digit),
        None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Validation, in the order of cryptsetup's LUKS2_hdr_validate.

fn validate(root: &JObject, json_area_size: u64) -> R<Metadata> {
    let at = Location::Root;
    // Ids of all sections (cryptsetup's numbered(), plus the canonical-u32 rule).
    let sect = |name: &str, section: Section| -> R<Option<Sect<'_>>> {
        match root.get(name) {
            Some(JVal::Object(o)) => Sect::new(o, section).map(Some),
            _ => Ok(None),
        }
    };
    let keyslots_s = sect("keyslots", Section::Keyslots)?;
    let tokens_s = sect("tokens", Section::Tokens)?;
    let segments_s = sect("segments", Section::Segments)?;
    let digests_s = sect("digests", Section::Digests)?;

    // 1. hdr_validate_requirements
    let config = need_obj(root, at, "config", "config")?;
    let mut mandatory: Vec<&[u8]> = Vec::new();
    if let Some(req) = config.get("requirements") {
        let req = req.as_object().ok_or(MetadataError::WrongType {
            at: Location::Config,
            field: "requirements",
            expected: JsonType::Object,
            found: req.json_type(),
        })?;
        if req.get("mandatory").is_some() {
            let arr = need_arr(req, Location::Config, "mandatory", "requirements.mandatory")?;
            mandatory = string_array(arr, Location::Config, "requirements.mandatory")?;
        }
    }
    if mandatory.iter().filter(|m| reencrypt_candidate(m)).count() > 1 {
        return Err(MetadataError::MultipleReencryptRequirements);
    }
    let online_reencrypt = mandatory
        .iter()
        .any(|m| requirement_kind(m) == ReqKind::Online);

    // 2. hdr_validate_tokens
    need_obj(root, at, "tokens", "tokens")?;
    let tokens_s = tokens_s.ok_or(MetadataError::MissingField {
        at,
        field: "tokens",
    })?;
    let mut token_refs: Vec<Vec<u32>> = Vec::with_capacity(tokens_s.entries.len());
    for &(id, _, v) in &tokens_s.entries {
        let tat = Location::Token(id);
        if root.get("keyslots").is_none() {
            return Err(MetadataError::MissingField {
                at,
                field: "keyslots",
            });
        }
        let t = as_obj(v, tat)?;
        need_str(t, tat, "type", "type")?;
        let arr = need_arr(t, tat, "keyslots", "keyslots")?;
        token_refs.push(references(arr, tat, "keyslots", keyslots_s.as_ref())?);
    }

    // 3. hdr_validate_digests
    need_obj(root, at, "digests", "digests")?;
    need_obj(root, at, "keyslots", "keyslots")?;
    need_obj(root, at, "segments", "segments")?;
    let digests_s = digests_s.ok_or(MetadataError::MissingField {
        at,
        field: "digests",
    })?;
    let keyslots_s = keyslots_s.ok_or(MetadataError::MissingField {
        at,
        field: "keyslots",
    })?;
    let segments_s = segments_s.ok_or(MetadataError::MissingField {
        at,
        field: "segments",
    })?;
    let mut digest_refs: Vec<(Vec<u32>, Vec<u32>)> = Vec::with_capacity(digests_s.entries.len());
    for &(id, _, v) in &digests_s.entries {
        let dat = Location::Digest(id);
        let d = as_obj(v, dat)?;
        need_str(d, dat, "type", "type")?;
        let ks = need_arr(d, dat, "keyslots", "keyslots")?;
        let ss = need_arr(d, dat, "segments", "segments")?;
        let k = references(ks, dat, "keyslots", Some(&keyslots_s))?;
        let s = references(ss, dat, "segments", Some(&segments_s))?;
        digest_refs.push((k, s));
    }
    // Segment ids listed by any digest (segment_has_digest).
    let digested_segments: HashSet<u32> = digest_refs
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .collect();

    // 4. hdr_validate_segments
    let segs = validate_segments(&segments_s, &digested_segments, online_reencrypt)?;

    // 5. hdr_validate_keyslots
    for &(id, _, v) in &keyslots_s.entries {
        let kat = Location::Keyslot(id);
        let k = as_obj(v, kat)?;
        need_str(k, kat, "type", "type")?;
        need_u32(k, kat, "key_size", "key_size")?;
    }

    // 6. hdr_validate_config
    let cat = Location::Config;
    let json_size = strtoull_u64(
        need_str(config, cat, "json_size", "json_size")?,
        cat,
        "json_size",
    )?;
    let keyslots_size = strtoull_u64(
        need_str(config, cat, "keyslots_size", "keyslots_size")?,
        cat,
        "keyslots_size",
    )?;
    let metadata_size = json_size.wrapping_add(BINARY_HEADER_SIZE);
    if !METADATA_SIZES.contains(&metadata_size) {
        return Err(MetadataError::UnsupportedMetadataSize {
            size: metadata_size,
        });
    }
    if keyslots_size % 4096 != 0 || keyslots_size > MAX_KEYSLOTS_SIZE {
        return Err(MetadataError::BadKeyslotsSize {
            size: keyslots_size,
        });
    }
    // json_segments_get_minimal_offset over regular segments (0 means detached header).
    let mut data_offset = u64::MAX;
    for s in segs.values() {
        if s.backup {
            continue;
        }
        if s.offset == 0 {
            data_offset = 0;
            break;
        }
        data_offset = data_offset.min(s.offset);
    }
    let area_start = 2 * metadata_size;
    if data_offset != 0 && (data_offset < keyslots_size || data_offset - keyslots_size < area_start)
    {
        return Err(MetadataError::KeyslotsAreaTooLarge {
            keyslots_size,
            data_offset,
            area_start,
        });
    }
    let mut config_flags: Vec<&[u8]> = Vec::new();
    if config.get("flags").is_some() {
        let arr = need_arr(config, cat, "flags", "flags")?;
        config_flags = string_array(arr, cat, "flags")?;
    }

    // 7. hdr_validate_areas
    let areas_end = area_start + keyslots_size;
    let mut intervals: Vec<(u32, u64, u64)> = Vec::with_capacity(keyslots_s.entries.len());
    for &(id, _, v) in &keyslots_s.entries {
        let kat = Location::Keyslot(id);
        let k = as_obj(v, kat)?;
        let area = need_obj(k, kat, "area", "area")?;
        need_str(area, kat, "type", "area.type")?;
        let off = need_str(area, kat, "offset", "area.offset")?;
        let len = need_str(area, kat, "size", "area.size")?;
        let off = digits_u64(off, kat, "area.offset")?;
        let len = digits_u64(len, kat, "area.size")?;
        intervals.push((id, off, len));
    }
    validate_areas(&intervals, metadata_size, areas_end)?;

    // 8. hdr_validate_json_size
    if json_size != json_area_size {
        return Err(MetadataError::JsonSizeMismatch {
            config: json_size,
            header: json_area_size,
        });
    }
    let serialized = root.plain_len();
    if serialized > json_size {
        return Err(MetadataError::JsonTooLarge {
            serialized,
            area: json_size,
        });
    }

    // 9. LUKS2_keyslots_validate
    let mut digests_per_keyslot: HashMap<u32, usize> = HashMap::new();
    for (ks, _) in &digest_refs {
        let uniq: HashSet<u32> = ks.iter().copied().collect();
        for k in uniq {
            *digests_per_keyslot.entry(k).or_insert(0) += 1;
        }
    }
    let mut reencrypt_count = 0usize;
    for &(id, _, v) in &keyslots_s.entries {
        let kat = Location::Keyslot(id);
        let k = as_obj(v, kat)?;
        match k.get("type").and_then(JVal::as_cstr) {
            Some(b"luks2") => {
                validate_luks2_keyslot(k, kat)?;
                let count = digests_per_keyslot.get(&id).copied().unwrap_or(0);
                if count != 1 {
                    return Err(MetadataError::KeyslotDigestCount { keyslot: id, count });
                }
            }
            Some(b"reencrypt") => {
                validate_reencrypt_keyslot(k, kat)?;
                reencrypt_count += 1;
            }
            _ => {}
        }
    }
    if online_reencrypt && reencrypt_count == 0 {
        return Err(MetadataError::MissingReencryptKeyslot);
    }
    if reencrypt_count > 0 && !mandatory.iter().any(|m| reencrypt_candidate(m)) {
        return Err(MetadataError::ReencryptKeyslotWithoutRequirement);
    }
    if reencrypt_count > 1 {
        return Err(MetadataError::TooManyReencryptKeyslots {
            count: reencrypt_count,
        });
    }

    // Build the typed result.
    let mut keyslots = BTreeMap::new();
    let mut keyslot_order = Vec::with_capacity(keyslots_s.entries.len());
    for (&(id, _, v), &(_, off, len)) in keyslots_s.entries.iter().zip(&intervals) {
        let k = as_obj(v, Location::Keyslot(id))?;
        keyslots.insert(id, build_keyslot(k, off, len));
        keyslot_order.push(id);
    }
    let mut tokens = BTreeMap::new();
    for (&(id, _, v), refs) in tokens_s.entries.iter().zip(token_refs) {
        let t = as_obj(v, Location::Token(id))?;
        tokens.insert(
            id,
            Token {
                type_name: lossy(t.get("type").and_then(JVal::as_cstr).unwrap_or_default()),
                keyslots: refs,
                json: lossy(&v.to_plain_bytes()),
            },
        );
    }
    let mut digests = BTreeMap::new();
    let mut digest_order = Vec::with_capacity(digests_s.entries.len());
    for (&(id, _, v), (ks, ss)) in digests_s.entries.iter().zip(digest_refs) {
        let d = as_obj(v, Location::Digest(id))?;
        digests.insert(id, build_digest(d, ks, ss));
        digest_order.push(id);
    }
    let segments = segs.into_iter().map(|(id, s)| (id, s.segment)).collect();
    Ok(Metadata {
        keyslots,
        tokens,
        segments,
        digests,
        config: Config {
            json_size,
            keyslots_size,
            flags: config_flags.iter().map(|f| lossy(f)).collect(),
            requirements_mandatory: mandatory.iter().map(|f| lossy(f)).collect(),
        },
        keyslot_order,
        digest_order,
    })
}

/// A segment as validated, with what later checks need.
struct SegInfo {
    segment: Segment,
    offset: u64,
    /// 0 for dynamic (as cryptsetup's `json_segment_get_size`).
    size: u64,
    backup: bool,
    /// `json_segment_get_sector_size` (for `json_segment_cmp`).
    cmp_sector_size: u32,
    cipher_cmp: Vec<u8>,
    type_cmp: Vec<u8>,
}

/// cryptsetup's `hdr_validate_segments` (with `hdr_validate_crypt_segment`,
/// `validate_segment_intervals` and `validate_reencrypt_segments`).
fn validate_segments(
    sect: &Sect<'_>,
    digested: &HashSet<u32>,
    online_reencrypt: bool,
) -> R<BTreeMap<u32, SegInfo>> {
    let count = sect.entries.len();
    if count < 1 {
        return Err(MetadataError::NoSegments);
    }
    let mut first_backup: Option<u32> = None;
    let mut out = BTreeMap::new();
    for &(id, _, v) in &sect.entries {
        let at = Location::Segment(id);
        let s = as_obj(v, at)?;
        let type_name = need_str(s, at, "type", "type")?;
        let offset = need_str(s, at, "offset", "offset")?;
        let size_s = need_str(s, at, "size", "size")?;
        let offset = digits_u64(offset, at, "offset")?;
        let (size, seg_size) = if size_s == b"dynamic" {
            (0, SegmentSize::Dynamic)
        } else {
            let n = digits_u64(size_s, at, "size")?;
            if n == 0 {
                return Err(MetadataError::Zero { at, field: "size" });
            }
            (n, SegmentSize::Fixed(n))
        };
        if offset % 512 != 0 {
            return Err(MetadataError::Misaligned {
                at,
                field: "offset",
                value: offset,
                alignment: 512,
            });
        }
        if size % 512 != 0 {
            return Err(MetadataError::Misaligned {
                at,
                field: "size",
                value: size,
                alignment: 512,
            });
        }
        let mut flags: Vec<&[u8]> = Vec::new();
        if s.get("flags").is_some() {
            let arr = need_arr(s, at, "flags", "flags")?;
            flags = string_array(arr, at, "flags")?;
        }
        let backup = flags.iter().any(|f| f.starts_with(b"backup-"));
        if backup {
            if first_backup.is_none_or(|b| id < b) {
                first_backup = Some(id);
            }
        } else if let Some(b) = first_backup {
            if id >= b {
                return Err(MetadataError::RegularSegmentAfterBackup {
                    segment: id,
                    backup: b,
                });
            }
        }
        let mut seg = Segment {
            type_name: lossy(type_name),
            offset,
            size: seg_size,
            iv_tweak: 0,
            encryption: String::new(),
            sector_size: 512,
            integrity: None,
            flags: flags.iter().map(|f| lossy(f)).collect(),
            dump_cipher: s.get("encryption").map(get_string),
            dump_sector_size: s.get("sector_size").map(get_int64_u32),
        };
        if type_name == b"crypt" {
            validate_crypt_segment(s, at, size, &mut seg)?;
            if !digested.contains(&id) {
                return Err(MetadataError::SegmentWithoutDigest { segment: id });
            }
        }
        // json_segment_get_sector_size: json_object_get_int, negative gives 512.
        let cmp_sector_size = match s.get("sector_size") {
            None => 512,
            Some(v) => u32::try_from(v.get_int()).unwrap_or(512),
        };
        let cipher_cmp = match s.get("encryption") {
            None => b"null".to_vec(),
            Some(JVal::Str(b)) => cstr(b).to_vec(),
            Some(other) => other.to_plain_bytes(),
        };
        out.insert(
            id,
            SegInfo {
                segment: seg,
                offset,
                size,
                backup,
                cmp_sector_size,
                cipher_cmp,
                type_cmp: type_name.to_vec(),
            },
        );
    }
    let count_u32 = u32::try_from(count).unwrap_or(u32::MAX);
    if first_backup == Some(0) {
        return Err(MetadataError::NoRegularSegment);
    }
    if let Some(b) = first_backup {
        if b >= count_u32 {
            // A gap between the last regular segment and the backup segment.
            let missing = (0..count_u32).find(|i| !out.contains_key(i)).unwrap_or(b);
            return Err(MetadataError::SegmentIdGap { missing });
        }
    }
    let regular = first_backup.unwrap_or(count_u32);
    let mut intervals: Vec<(u32, u64, u64)> = Vec::with_capacity(regular as usize);
    for i in 0..regular {
        let s = out
            .get(&i)
            .ok_or(MetadataError::SegmentIdGap { missing: i })?;
        let len = if s.size == 0 { u64::MAX } else { s.size };
        intervals.push((i, s.offset, len));
    }
    validate_segment_intervals(&intervals)?;
    for i in regular..count_u32 {
        if !out.contains_key(&i) {
            return Err(MetadataError::SegmentIdGap { missing: i });
        }
    }
    if online_reencrypt {
        validate_reencrypt_segments(&out, regular, count_u32)?;
    }
    Ok(out)
}

/// cryptsetup's `hdr_validate_crypt_segment` (the digest check is done by the caller).
fn validate_crypt_segment(s: &JObject, at: Location, size: u64, seg: &mut Segment) -> R<()> {
    let iv = need_str(s, at, "iv_tweak", "iv_tweak")?;
    let enc = need_str(s, at, "encryption", "encryption")?;
    let ss = need_int(s, at, "sector_size", "sector_size")?;
    if s.get("integrity").is_some() {
        let integ = need_obj(s, at, "integrity", "integrity")?;
        let t = need_str(integ, at, "type", "integrity.type")?;
        need_str(
            integ,
            at,
            "journal_encryption",
            "integrity.journal_encryption",
        )?;
        need_str(
            integ,
            at,
            "journal_integrity",
            "integrity.journal_integrity",
        )?;
        seg.integrity = Some(lossy(t));
    }
    let sector_size = ss
        .valid_u32()
        .ok_or_else(|| MetadataError::NumberOutOfRange {
            at,
            field: "sector_size",
            value: lossy(&ss.to_plain_bytes()),
        })?;
    if sector_size == 0 {
        return Err(MetadataError::Zero {
            at,
            field: "sector_size",
        });
    }
    if sector_size % 512 != 0 {
        return Err(MetadataError::Misaligned {
            at,
            field: "sector_size",
            value: u64::from(sector_size),
            alignment: 512,
        });
    }
    let iv_tweak = digits_u64(iv, at, "iv_tweak")?;
    if size % u64::from(sector_size) != 0 {
        return Err(MetadataError::Misaligned {
            at,
            field: "size",
            value: size,
            alignment: u64::from(sector_size),
        });
    }
    seg.iv_tweak = iv_tweak;
    seg.encryption = lossy(enc);
    // cryptsetup reads it back with json_object_get_int (clamped to i32::MAX).
    seg.sector_size = u32::try_from(ss.get_int()).unwrap_or(512);
    Ok(())
}

/// cryptsetup's `validate_segment_intervals` over regular segments 0..n (length `u64::MAX`
/// stands for dynamic). Overlaps are found by sorting, which finds one exactly when the
/// pairwise check does.
fn validate_segment_intervals(ix: &[(u32, u64, u64)]) -> R<()> {
    let n = ix.len();
    for (pos, &(id, _, len)) in ix.iter().enumerate() {
        if len == u64::MAX && pos + 1 != n {
            return Err(MetadataError::DynamicSegmentNotLast { segment: id });
        }
    }
    // The pairwise loop checks offset+length overflow of every segment when there are two or
    // more.
    if n >= 2 {
        for &(id, off, len) in ix {
            if len != u64::MAX && off.checked_add(len).is_none() {
                return Err(MetadataError::SegmentEndOverflow { segment: id });
            }
        }
    }
    let mut sorted: Vec<&(u32, u64, u64)> = ix.iter().collect();
    sorted.sort_by_key(|&&(id, off, _)| (off, id));
    for w in sorted.windows(2) {
        if let [&(a, aoff, alen), &(b, boff, _)] = w {
            let overlaps = boff == aoff || alen == u64::MAX || boff < aoff.saturating_add(alen);
            if overlaps {
                let (first, second) = if a < b { (a, b) } else { (b, a) };
                return Err(MetadataError::SegmentsOverlap { first, second });
            }
        }
    }
    Ok(())
}

/// cryptsetup's `validate_reencrypt_segments` (only with an online-reencrypt requirement).
fn validate_reencrypt_segments(
    segs: &BTreeMap<u32, SegInfo>,
    first_backup: u32,
    count: u32,
) -> R<()> {
    let mut backup_final = None;
    let mut backup_previous = None;
    for i in first_backup..count {
        let s = segs
            .get(&i)
            .ok_or(MetadataError::SegmentIdGap { missing: i })?;
        let flags = &s.segment.flags;
        if flags.iter().any(|f| f == "backup-final") {
            backup_final = Some(s);
        } else if flags.iter().any(|f| f == "backup-previous") {
            backup_previous = Some(s);
        }
    }
    let fin = backup_final.ok_or(MetadataError::MissingBackupSegment {
        flag: "backup-final",
    })?;
    let prev = backup_previous.ok_or(MetadataError::MissingBackupSegment {
        flag: "backup-previous",
    })?;
    let same = |a: &SegInfo, b: &SegInfo| {
        a.type_cmp == b.type_cmp
            && (a.type_cmp != b"crypt"
                || (a.cmp_sector_size == b.cmp_sector_size && a.cipher_cmp == b.cipher_cmp))
    };
    for i in 0..first_backup {
        let s = segs
            .get(&i)
            .ok_or(MetadataError::SegmentIdGap { missing: i })?;
        let ok = if s.segment.flags.iter().any(|f| f == "in-reencryption") {
            same(s, fin)
        } else {
            same(s, fin) || same(s, prev)
        };
        if !ok {
            return Err(MetadataError::ReencryptSegmentMismatch { segment: i });
        }
    }
    Ok(())
}

/// cryptsetup's `validate_intervals` for keyslot areas, in JSON order. Overlaps are found by
/// sorting, which finds one exactly when the pairwise check does.
fn validate_areas(ix: &[(u32, u64, u64)], metadata_size: u64, end_limit: u64) -> R<()> {
    let minimum = 2 * metadata_size;
    for &(id, off, len) in ix {
        let at = Location::Keyslot(id);
        if off < minimum {
            return Err(MetadataError::AreaInsideMetadata {
                keyslot: id,
                offset: off,
                minimum,
            });
        }
        if len == 0 {
            return Err(MetadataError::Zero {
                at,
                field: "area.size",
            });
        }
        let end = off
            .checked_add(len)
            .ok_or(MetadataError::AreaEndOverflow { keyslot: id })?;
        if end > end_limit {
            return Err(MetadataError::AreaBeyondKeyslotsArea {
                keyslot: id,
                end,
                limit: end_limit,
            });
        }
    }
    let mut sorted: Vec<&(u32, u64, u64)> = ix.iter().collect();
    sorted.sort_by_key(|&&(id, off, _)| (off, id));
    for w in sorted.windows(2) {
        if let [&(a, aoff, alen), &(b, boff, _)] = w {
            if boff < aoff.saturating_add(alen) {
                let (first, second) = if a < b { (a, b) } else { (b, a) };
                return Err(MetadataError::AreasOverlap { first, second });
            }
        }
    }
    Ok(())
}

/// cryptsetup's `luks2_keyslot_validate` (after its repair of leftover KDF fields).
fn validate_luks2_keyslot(k: &JObject, at: Location) -> R<()> {
    let kdf = need_obj(k, at, "kdf", "kdf")?;
    let af = need_obj(k, at, "af", "af")?;
    let area = need_obj(k, at, "area", "area")?;
    let kdf_type = need_str(kdf, at, "type", "kdf.type")?;
    match kdf_type {
        b"pbkdf2" => {
            need_str(kdf, at, "hash", "kdf.hash")?;
            need_int(kdf, at, "iterations", "kdf.iterations")?;
            need_str(kdf, at, "salt", "kdf.salt")?;
        }
        b"argon2i" | b"argon2id" => {
            need_int(kdf, at, "time", "kdf.time")?;
            need_int(kdf, at, "memory", "kdf.memory")?;
            need_int(kdf, at, "cpus", "kdf.cpus")?;
            need_str(kdf, at, "salt", "kdf.salt")?;
        }
        _ => {}
    }
    let af_type = need_str(af, at, "type", "af.type")?;
    if af_type != b"luks1" {
        return Err(MetadataError::UnsupportedValue {
            at,
            field: "af.type",
            value: lossy(af_type),
        });
    }
    need_str(af, at, "hash", "af.hash")?;
    need_int(af, at, "stripes", "af.stripes")?;
    let area_type = need_str(area, at, "type", "area.type")?;
    if area_type != b"raw" {
        return Err(MetadataError::UnsupportedValue {
            at,
            field: "area.type",
            value: lossy(area_type),
        });
    }
    need_str(area, at, "encryption", "area.encryption")?;
    need_int(area, at, "key_size", "area.key_size")?;
    need_str(area, at, "offset", "area.offset")?;
    need_str(area, at, "size", "area.size")?;
    Ok(())
}

/// cryptsetup's `reenc_keyslot_validate`.
fn validate_reencrypt_keyslot(k: &JObject, at: Location) -> R<()> {
    let area = need_obj(k, at, "area", "area")?;
    let area_type =
        area.get("type")
            .and_then(JVal::as_cstr)
            .ok_or(MetadataError::MissingField {
                at,
                field: "area.type",
            })?;
    let key_size = need_int(k, at, "key_size", "key_size")?;
    let mode = need_str(k, at, "mode", "mode")?;
    let direction = need_str(k, at, "direction", "direction")?;
    if key_size.valid_u32() != Some(1) {
        return Err(MetadataError::UnsupportedValue {
            at,
            field: "key_size",
            value: lossy(&key_size.to_plain_bytes()),
        });
    }
    if !matches!(mode, b"reencrypt" | b"encrypt" | b"decrypt") {
        return Err(MetadataError::UnsupportedValue {
            at,
            field: "mode",
            value: lossy(mode),
        });
    }
    if !matches!(direction, b"forward" | b"backward") {
        return Err(MetadataError::UnsupportedValue {
            at,
            field: "direction",
            value: lossy(direction),
        });
    }
    match area_type {
        b"checksum" | b"datashift-checksum" => {
            need_str(area, at, "hash", "area.hash")?;
            let ss = need_int(area, at, "sector_size", "area.sector_size")?;
            let v = ss
                .valid_u32()
                .ok_or_else(|| MetadataError::NumberOutOfRange {
                    at,
                    field: "area.sector_size",
                    value: lossy(&ss.to_plain_bytes()),
                })?;
            if v < 512 || !v.is_power_of_two() {
                return Err(MetadataError::UnsupportedValue {
                    at,
                    field: "area.sector_size",
                    value: v.to_string(),
                });
            }
        }
        b"datashift" | b"datashift-journal" => {
            let shift = need_str(area, at, "shift_size", "area.shift_size")?;
            // crypt_jobj_get_uint64: json_str_to_uint64, 0 on failure.
            let v = json::strtoull_whole(shift).unwrap_or(0);
            if v == 0 {
                return Err(MetadataError::Zero {
                    at,
                    field: "area.shift_size",
                });
            }
            if v % 512 != 0 {
                return Err(MetadataError::Misaligned {
                    at,
                    field: "area.shift_size",
                    value: v,
                    alignment: 512,
                });
            }
        }
        _ => {}
    }
    Ok(())
}

/// `json_object_get_int` as a C `uint32_t` receives it.
fn get_int_u32(v: &JVal) -> u32 {
    let i = v.get_int();
    u32::from_ne_bytes(i.to_ne_bytes())
}

/// The low 32 bits of `json_object_get_int64` (an `unsigned int` assignment in C).
fn get_int64_u32(v: &JVal) -> u32 {
    let b = v.get_int64().to_le_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// cryptsetup's `crypt_base64_decode`: standard alphabet, padding required, white space
/// (space, tab, CR, LF; and NUL, which its `strchr` also matches) ignored anywhere.
pub(crate) fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let clean: Vec<u8> = s
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// cryptsetup's `hexprint_base64` input: the bytes of a base64 string field (a missing or
/// non-string field decodes as empty), `None` when it is not base64.
fn dump_bytes(v: Option<&JVal>) -> Option<Vec<u8>> {
    base64_decode(v.and_then(JVal::as_str_bytes).unwrap_or_default())
}

/// `json_object_get_int64` as cryptsetup prints it (`PRIu64`: a negative value wraps).
fn dump_int64(v: Option<&JVal>) -> u64 {
    u64::from_ne_bytes(v.map_or(0, JVal::get_int64).to_ne_bytes())
}

/// `json_object_get_uint64` as cryptsetup prints it (a value over `i64::MAX` as stored).
fn dump_uint64(v: Option<&JVal>) -> u64 {
    match v {
        Some(JVal::UInt(u)) => *u,
        other => dump_int64(other),
    }
}

/// Decodes a salt as cryptsetup does when it uses it; the problem, if any, as text.
fn decode_salt(v: Option<&JVal>, what: &str) -> Result<Vec<u8>, String> {
    let Some(v) = v else {
        return Err(format!("{what} is missing"));
    };
    // json_object_get_string_len is 0 for anything but a string.
    let bytes = v.as_str_bytes().unwrap_or_default();
    let salt = base64_decode(bytes).ok_or_else(|| format!("{what} is not valid base64"))?;
    if salt.len() != SALT_SIZE {
        return Err(format!("{what} is {} bytes, not {SALT_SIZE}", salt.len()));
    }
    Ok(salt)
}

/// A string as `json_object_get_string` gives it (non-strings as their JSON text).
fn get_string(v: &JVal) -> String {
    match v.as_cstr() {
        Some(s) => lossy(s),
        None => lossy(&v.to_plain_bytes()),
    }
}

fn build_keyslot(k: &JObject, offset: u64, size: u64) -> Keyslot {
    let type_name = k.get("type").and_then(JVal::as_cstr).unwrap_or_default();
    let key_size = k.get("key_size").and_then(JVal::valid_u32).unwrap_or(0);
    let priority_value = k.get("priority").map_or(1, JVal::get_int);
    let priority = match priority_value {
        1 => Priority::Normal,
        2 => Priority::High,
        _ => Priority::Ignore,
    };
    let area_obj = k.get("area").and_then(JVal::as_object);
    let area = area_obj.map(|a| KeyslotArea {
        type_name: lossy(a.get("type").and_then(JVal::as_cstr).unwrap_or_default()),
        offset,
        size,
        encryption: a.get("encryption").map(get_string).unwrap_or_default(),
        key_size: a.get("key_size").map(get_int_u32).unwrap_or(0),
        dump_key_size: a.get("key_size").map(get_int64_u32).unwrap_or(0),
    });
    let mut defect = None;
    let (mut kdf, mut af, mut kdf_dump) = (None, None, None);
    if type_name == b"luks2" {
        let kdf_obj = k.get("kdf").and_then(JVal::as_object);
        if let Some(o) = kdf_obj {
            kdf_dump = Some(KdfDump {
                iterations: dump_uint64(o.get("iterations")),
                time: dump_int64(o.get("time")),
                memory: dump_int64(o.get("memory")),
                cpus: dump_int64(o.get("cpus")),
                salt: dump_bytes(o.get("salt")),
            });
            let kt = o.get("type").and_then(JVal::as_cstr).unwrap_or_default();
            let salt = || match decode_salt(o.get("salt"), "kdf.salt") {
                Ok(s) => (s, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            let num = |name: &str| o.get(name).map(get_int_u32).unwrap_or(0);
            kdf = Some(match kt {
                b"pbkdf2" => {
                    let (salt, d) = salt();
                    defect = d;
                    KeyslotKdf::Pbkdf2 {
                        hash: o.get("hash").map(get_string).unwrap_or_default(),
                        iterations: num("iterations"),
                        salt,
                    }
                }
                b"argon2i" | b"argon2id" => {
                    let (salt, d) = salt();
                    defect = d;
                    KeyslotKdf::Argon2 {
                        variant: if kt == b"argon2i" {
                            Argon2Variant::I
                        } else {
                            Argon2Variant::Id
                        },
                        time: num("time"),
                        memory_kib: num("memory"),
                        cpus: num("cpus"),
                        salt,
                    }
                }
                other => {
                    defect = Some(format!("kdf type {:?} is not supported", lossy(other)));
                    KeyslotKdf::Unknown {
                        type_name: lossy(other),
                    }
                }
            });
        }
        af = k.get("af").and_then(JVal::as_object).map(|a| AntiForensic {
            type_name: lossy(a.get("type").and_then(JVal::as_cstr).unwrap_or_default()),
            stripes: a.get("stripes").map(get_int_u32).unwrap_or(0),
            hash: a.get("hash").map(get_string).unwrap_or_default(),
        });
    }
    Keyslot {
        type_name: lossy(type_name),
        key_size,
        priority,
        priority_value,
        area,
        kdf,
        af,
        defect,
        kdf_dump,
    }
}

fn build_digest(d: &JObject, keyslots: Vec<u32>, segments: Vec<u32>) -> Digest {
    let type_name = d.get("type").and_then(JVal::as_cstr).unwrap_or_default();
    let mut out = Digest {
        type_name: lossy(type_name),
        keyslots,
        segments,
        hash: String::new(),
        iterations: 0,
        salt: Vec::new(),
        digest: Vec::new(),
        defect: None,
        dump: DigestDump {
            hash: d.get("hash").map(get_string),
            iterations: dump_int64(d.get("iterations")),
            salt: dump_bytes(d.get("salt")),
            digest: dump_bytes(d.get("digest")),
        },
    };
    if type_name != b"pbkdf2" {
        out.defect = Some(format!("digest type {:?} is not supported", out.type_name));
        return out;
    }
    // PBKDF2_digest_verify reads these, in this order.
    let Some(hash) = d.get("hash") else {
        out.defect = Some("hash is missing".into());
        return out;
    };
    out.hash = get_string(hash);
    let Some(iterations) = d.get("iterations") else {
        out.defect = Some("iterations is missing".into());
        return out;
    };
    out.iterations = get_int64_u32(iterations);
    match decode_salt(d.get("salt"), "salt") {
        Ok(s) => out.salt = s,
        Err(e) => {
            out.defect = Some(e);
            return out;
        }
    }
    let Some(digest) = d.get("digest") else {
        out.defect = Some("digest is missing".into());
        return out;
    };
    match base64_decode(digest.as_str_bytes().unwrap_or_default()) {
        Some(bytes) if (20..=64).contains(&bytes.len()) => out.digest = bytes,
        Some(bytes) => {
            out.defect = Some(format!(
                "digest is {} bytes, not between 20 and 64",
                bytes.len()
            ));
        }
        None => out.defect = Some("digest is not valid base64".into()),
    }
    out
}
