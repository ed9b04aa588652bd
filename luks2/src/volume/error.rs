//! Why the volume cannot be mapped or decrypted as asked ([`VolumeError`]).
//!
//! A leaf: [`crate::error`] wraps `VolumeError`, and the volume module, which returns that
//! facade, re-exports it.

use std::fmt;

/// Why the volume cannot be mapped or decrypted as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VolumeError {
    /// The header has no crypt data segment.
    NoDataSegment,
    /// More than one data segment (e.g. a reencryption in progress).
    MultipleSegments(usize),
    /// The data segment uses dm-integrity.
    IntegritySegment(String),
    /// The segment's type cannot be decrypted.
    UnsupportedSegment(String),
    /// The device is shorter than the data offset.
    DeviceTooSmall {
        /// Device size in bytes.
        device_size: u64,
        /// Data offset in bytes.
        data_offset: u64,
    },
    /// The segment size is not a multiple of the sector size.
    Misaligned {
        /// Segment length in bytes.
        length: u64,
        /// Sector size.
        sector_size: u32,
    },
    /// The sector size is not a power of two from 512 to 4096.
    SectorSize(u32),
    /// Writing the plaintext failed.
    Write(String),
}

impl fmt::Display for VolumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeError::NoDataSegment => write!(f, "the header has no crypt data segment"),
            VolumeError::MultipleSegments(n) => write!(
                f,
                "the header has {n} data segments (a reencryption in progress?); finish it with cryptsetup first"
            ),
            VolumeError::IntegritySegment(t) => write!(
                f,
                "the data segment uses authenticated encryption (integrity '{t}'), which is not supported"
            ),
            VolumeError::UnsupportedSegment(t) => write!(f, "data segment type '{t}' is not supported"),
            VolumeError::DeviceTooSmall {
                device_size,
                data_offset,
            } => write!(
                f,
                "the device ({device_size} bytes) is smaller than the data offset ({data_offset} bytes)"
            ),
            VolumeError::Misaligned { length, sector_size } => write!(
                f,
                "the data length ({length} bytes) is not a multiple of the {sector_size}-byte sector size"
            ),
            VolumeError::SectorSize(n) => write!(
                f,
                "the data segment's sector size {n} is not a power of two from 512 to 4096"
            ),
            VolumeError::Write(e) => write!(f, "cannot write the plaintext: {e}"),
        }
    }
}
