//! Why metadata is refused: the section and object, and the rule broken.

use super::json::{JsonErrorKind, JsonType};
use std::fmt;

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
