//! The LUKS2 binary header (both copies) and the entry point that reads any LUKS header.

use crate::error::Error;
use crate::luks1::Luks1Header;
use crate::metadata::Metadata;
use std::fmt;
use std::io::{Read, Seek};

/// Why a binary header (or both) is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Placeholder until the header module lands.
    Unimplemented,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

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
    /// The JSON text as stored (up to the first NUL).
    pub json_text: String,
    /// The copy in use.
    pub used_copy: HeaderCopy,
    /// Why the other copy was not used, if it was unusable or older (for warnings).
    pub other_copy_problem: Option<String>,
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
pub fn read_header<R: Read + Seek>(r: &mut R) -> Result<Header, Error> {
    let _ = r;
    todo!("header helper")
}
