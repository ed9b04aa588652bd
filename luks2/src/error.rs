//! The library's error type: one `#[non_exhaustive]` enum over small per-module enums, all
//! `PartialEq` so that tests can assert the exact variant.
//!
//! The modules that return [`Error`] (`header`, `unlock`, `volume`) keep their enums in leaf
//! submodules (`header::error`, …), which is where this facade imports them from: it imports
//! nothing of a module that imports it.

use std::fmt;

pub use crate::af::AfError;
pub use crate::cipher::CipherError;
pub use crate::header::error::HeaderError;
pub use crate::kdf::KdfError;
pub use crate::metadata::MetadataError;
pub use crate::unlock::error::UnlockError;
pub use crate::volume::error::VolumeError;

/// Every error the library returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Reading the device or header file failed.
    Io(IoError),
    /// The binary header (either copy) is missing, damaged or not LUKS.
    Header(HeaderError),
    /// The JSON metadata is malformed or breaks a validation rule.
    Metadata(MetadataError),
    /// A key derivation was refused (over a cost limit, unsupported) or failed.
    Kdf(KdfError),
    /// A cipher specification is unsupported or a key has the wrong size.
    Cipher(CipherError),
    /// The anti-forensic merge could not run.
    Af(AfError),
    /// No keyslot could be unlocked, or activation is refused.
    Unlock(UnlockError),
    /// The data segment cannot be mapped or decrypted.
    Volume(VolumeError),
}

/// An I/O failure, with what was being read and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoError {
    /// What was being read ("primary binary header", "keyslot 0 area", …).
    pub what: String,
    /// Byte offset of the read.
    pub offset: u64,
    /// The kind of I/O error; `UnexpectedEof` when the source is shorter than needed.
    pub kind: std::io::ErrorKind,
    /// The operating system's message.
    pub message: String,
}

impl IoError {
    /// Builds an `IoError` from a `std::io::Error`.
    pub fn new(what: impl Into<String>, offset: u64, e: &std::io::Error) -> Self {
        IoError {
            what: what.into(),
            offset,
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl IoError {
    /// An `UnexpectedEof` error: the source ends before `what` at `offset`.
    pub fn short(what: impl Into<String>, offset: u64) -> Self {
        IoError {
            what: what.into(),
            offset,
            kind: std::io::ErrorKind::UnexpectedEof,
            message: "unexpected end of file".into(),
        }
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == std::io::ErrorKind::UnexpectedEof {
            write!(
                f,
                "cannot read {} at offset {}: the device or file ends before it",
                self.what, self.offset
            )
        } else {
            write!(
                f,
                "cannot read {} at offset {}: {}",
                self.what, self.offset, self.message
            )
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::Header(e) => e.fmt(f),
            Error::Metadata(e) => e.fmt(f),
            Error::Kdf(e) => e.fmt(f),
            Error::Cipher(e) => e.fmt(f),
            Error::Af(e) => e.fmt(f),
            Error::Unlock(e) => e.fmt(f),
            Error::Volume(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

macro_rules! from_sub {
    ($($sub:ident => $var:ident),*) => {
        $(impl From<$sub> for Error {
            fn from(e: $sub) -> Self {
                Error::$var(e)
            }
        })*
    };
}
from_sub!(IoError => Io, HeaderError => Header, MetadataError => Metadata, KdfError => Kdf,
          CipherError => Cipher, AfError => Af, UnlockError => Unlock, VolumeError => Volume);

/// Reads exactly `buf.len()` bytes at `offset`, mapping failures to [`IoError`] naming `what`.
pub fn read_exact_at<R: std::io::Read + std::io::Seek>(
    r: &mut R,
    offset: u64,
    buf: &mut [u8],
    what: &str,
) -> Result<(), IoError> {
    r.seek(std::io::SeekFrom::Start(offset))
        .map_err(|e| IoError::new(what, offset, &e))?;
    r.read_exact(buf)
        .map_err(|e| IoError::new(what, offset, &e))
}
