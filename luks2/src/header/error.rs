//! Why a LUKS header cannot be used: one copy's problem ([`CopyProblem`]) or the whole
//! header's ([`HeaderError`]).
//!
//! A leaf: [`crate::error`] wraps `HeaderError`, and the header module, which returns that
//! facade, re-exports both types.

use crate::luks1::Luks1Error;
use crate::metadata::MetadataError;
use std::fmt;

/// Why one LUKS2 header copy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyProblem {
    /// The device ends before the copy does.
    Truncated {
        /// Offset of the copy.
        offset: u64,
    },
    /// The magic is not the one for this place (`LUKS\xba\xbe` at 0, `SKUL\xba\xbe` after it).
    BadMagic {
        /// Offset of the copy.
        offset: u64,
    },
    /// No secondary header at any of the nine allowed offsets (16 KiB .. 4 MiB).
    NotFound,
    /// The version is not 2.
    UnsupportedVersion {
        /// Offset of the copy.
        offset: u64,
        /// The version found.
        version: u16,
    },
    /// `hdr_offset` says the copy belongs elsewhere.
    WrongOffset {
        /// Where it was read.
        offset: u64,
        /// What `hdr_offset` says.
        stored: u64,
    },
    /// `hdr_size` is outside 16 KiB..=4 MiB.
    BadSize {
        /// Offset of the copy.
        offset: u64,
        /// The size found.
        hdr_size: u64,
    },
    /// A secondary copy whose `hdr_size` differs from its offset.
    SizeMismatch {
        /// Offset of the copy.
        offset: u64,
        /// The size found.
        hdr_size: u64,
    },
    /// `checksum_alg` names a hash this library cannot compute.
    UnknownChecksumAlg {
        /// Offset of the copy.
        offset: u64,
        /// The name as stored.
        name: String,
    },
    /// The checksum does not match.
    ChecksumMismatch {
        /// Offset of the copy.
        offset: u64,
        /// The checksum algorithm.
        alg: String,
    },
    /// The checksum is right but the JSON metadata is malformed or invalid.
    Metadata {
        /// Offset of the copy.
        offset: u64,
        /// What is wrong.
        error: Box<MetadataError>,
    },
    /// The copy is valid but older than the one used.
    Stale {
        /// Offset of the copy.
        offset: u64,
        /// Its sequence id.
        seqid: u64,
        /// The sequence id of the copy used.
        used_seqid: u64,
    },
}

impl fmt::Display for CopyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CopyProblem as P;
        match self {
            P::Truncated { offset } => {
                write!(f, "the device ends before the header copy at offset {offset}")
            }
            P::BadMagic { offset } => write!(f, "no LUKS2 magic at offset {offset}"),
            P::NotFound => f.write_str(
                "no secondary header at any allowed offset (16 KiB to 4 MiB)",
            ),
            P::UnsupportedVersion { offset, version } => {
                write!(f, "header at offset {offset} has version {version}, not 2")
            }
            P::WrongOffset { offset, stored } => write!(
                f,
                "header at offset {offset} says it belongs at offset {stored}"
            ),
            P::BadSize { offset, hdr_size } => write!(
                f,
                "header at offset {offset} has size {hdr_size}, outside 16 KiB to 4 MiB"
            ),
            P::SizeMismatch { offset, hdr_size } => write!(
                f,
                "secondary header at offset {offset} has size {hdr_size}; it must equal its offset"
            ),
            P::UnknownChecksumAlg { offset, name } => write!(
                f,
                "header at offset {offset} uses unsupported checksum algorithm {name:?}"
            ),
            P::ChecksumMismatch { offset, alg } => {
                write!(f, "header at offset {offset} fails its {alg} checksum")
            }
            P::Metadata { offset, error } => {
                write!(f, "header at offset {offset} has invalid metadata: {error}")
            }
            P::Stale {
                offset,
                seqid,
                used_seqid,
            } => write!(
                f,
                "header at offset {offset} is older (seqid {seqid}) than the copy used (seqid {used_seqid})"
            ),
        }
    }
}

/// Why a binary header (or both) is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// No LUKS magic at offset 0 and no LUKS2 secondary header at any allowed offset.
    NotLuks,
    /// LUKS magic at offset 0 with a version other than 1 or 2.
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// Neither LUKS2 copy is usable.
    NoUsableCopy {
        /// Why the primary (offset 0) is unusable.
        primary: CopyProblem,
        /// Why the secondary is unusable.
        secondary: CopyProblem,
    },
    /// The device is smaller than the header says it must be (LUKS2: both metadata copies and
    /// the keyslots area; LUKS1: up to the end of the last keyslot).
    DeviceTooSmall {
        /// Device size in bytes.
        size: u64,
        /// Bytes the header needs.
        required: u64,
    },
    /// A LUKS1 header breaks a rule.
    Luks1(Luks1Error),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::NotLuks => f.write_str(
                "not a LUKS device: no LUKS header at offset 0 and no LUKS2 secondary header",
            ),
            HeaderError::UnsupportedVersion { version } => {
                write!(f, "unsupported LUKS version {version}")
            }
            HeaderError::NoUsableCopy { primary, secondary } => write!(
                f,
                "no usable LUKS2 header: primary: {primary}; secondary: {secondary} \
                 (restore a header backup, or repair with cryptsetup)"
            ),
            HeaderError::DeviceTooSmall { size, required } => write!(
                f,
                "device is too small: {size} bytes, the LUKS header needs at least {required}"
            ),
            HeaderError::Luks1(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for HeaderError {}

impl From<Luks1Error> for HeaderError {
    fn from(e: Luks1Error) -> Self {
        HeaderError::Luks1(e)
    }
}
