//! `luks2`: a pure reader for LUKS2 and LUKS1 volumes.
//!
//! It reads the binary headers and the JSON metadata, validates them as strictly as
//! cryptsetup's `LUKS2_hdr_validate`, derives keys (PBKDF2, Argon2i/id), decrypts keyslot areas,
//! merges the anti-forensic split, verifies the digest and decrypts data sectors.
//! It never opens a path and never calls the kernel: input is any `Read + Seek` or `&[u8]`,
//! output is plain data (a [`Header`], a [`VolumeKey`], a [`volume::DataSegment`]).
//!
//! Data flows one way: bytes → [`header`] → [`metadata`] → [`unlock`] (via [`kdf`], [`cipher`],
//! [`af`]) → volume key → a dm-crypt table (in the binary) or the userspace [`volume`] decryptor.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod af;
mod blk;
pub mod cipher;
mod codec;
pub mod error;
pub mod format;
pub mod hash;
pub mod header;
pub mod kdf;
pub mod luks1;
pub mod metadata;
pub mod secret;
mod twofish;
pub mod unlock;
pub mod volume;

pub use error::Error;
pub use header::{read_header, Header};
pub use secret::{Passphrase, SecretBuf, VolumeKey};
