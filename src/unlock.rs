//! The unlock pipeline every verb that opens a keyslot goes through, in this order:
//!
//! 1. [`read_header`]: the header from its source (a descriptor the verb opened and locked as
//!    it must: read-only and shared for the readers, read-write and exclusive for the writer,
//!    with the caller's rights in ghost mode), and the data segment when the verb maps or
//!    decrypts it ([`HeaderRead::need_segment`], checked before any passphrase is asked);
//! 2. the verb's own checks that must come before the passphrase (a free mapping name, an
//!    output that may be written), none of them here;
//! 3. [`HeaderRead::unlock`]: the passphrase tries over the key options, under the KDF limits
//!    ([`kdf_limits_from`]: this machine's memory budget, the container's limit included),
//!    giving the volume key and the keyslot and digest that opened;
//! 4. [`HeaderRead::volume`]: what the mapping or the decryptor needs of the volume.
//!
//! The pipeline opens nothing by path: the sources are descriptors the verb holds, so the
//! file whose passphrase was checked is the file that is then mapped or read.

use crate::device;
use crate::mapping::VolumeInfo;
use crate::passphrase::{with_passphrase, KeySource, TryError};
use luks2::kdf::KdfLimits;
use luks2::unlock::{unlock, UnlockOptions, Unlocked};
use luks2::volume::DataSegment;
use std::io::{Read, Seek};

/// KDF limits from `--max-kdf-memory`, `--max-pbkdf2-time` and `--max-argon2-time`, each
/// defaulting to the library's default (memory: from what this machine has available).
pub fn kdf_limits_from(
    max_kdf_memory: Option<u64>,
    max_pbkdf2_time: Option<u64>,
    max_argon2_time: Option<u32>,
) -> KdfLimits {
    let budget = device::memory_budget();
    let _ = device::MEMORY_NOTE.set(budget.to_string());
    // Nothing known about memory: the library's default limit rather than none at all.
    let mut limits = if budget.bytes > 0 {
        KdfLimits::for_available_memory(budget.bytes)
    } else {
        KdfLimits::default()
    };
    if let Some(kib) = max_kdf_memory {
        limits.max_memory_kib = kib;
    }
    if let Some(secs) = max_pbkdf2_time {
        limits.max_pbkdf2_seconds = Some(secs);
    }
    if let Some(passes) = max_argon2_time {
        limits.max_time = passes;
    }
    limits
}

/// The KDF limits of a verb without `--max-…` flags (the writer's verbs).
pub fn default_limits() -> KdfLimits {
    kdf_limits_from(None, None, None)
}

/// How to get the volume key: which key options, which keyslots, under which limits.
pub struct KeyRequest<'a> {
    /// Key file, offset, size and tries.
    pub key: &'a KeySource,
    /// Try only this keyslot.
    pub keyslot: Option<u32>,
    /// The KDF limits.
    pub limits: KdfLimits,
    /// Say which keyslot opened.
    pub verbose: bool,
}

/// A header read for an unlock, with the name its source is shown by in messages.
pub struct HeaderRead {
    /// The header.
    pub header: luks2::Header,
    /// The data segment, when the verb asked for one.
    pub segment: Option<DataSegment>,
    /// The header source's name in messages.
    pub shown: String,
}

/// Step 1: reads the header from `src`.
pub fn read_header<R: Read + Seek>(mut src: R, shown: &str) -> Result<HeaderRead, TryError> {
    let header = luks2::read_header(&mut src).map_err(|e| TryError::Library {
        device: shown.to_string(),
        error: e,
    })?;
    Ok(HeaderRead::of(header, shown))
}

impl HeaderRead {
    /// A header the verb has already read (the writer reads it under its exclusive lock).
    pub fn of(header: luks2::Header, shown: &str) -> HeaderRead {
        HeaderRead {
            header,
            segment: None,
            shown: shown.to_string(),
        }
    }

    /// Step 1, for a verb that maps or decrypts: the data segment, refused here when it
    /// cannot be used, before any passphrase (a passphrase test needs no segment, as in
    /// cryptsetup).
    pub fn need_segment(&mut self) -> Result<&DataSegment, TryError> {
        let seg = DataSegment::of(&self.header).map_err(|e| TryError::Library {
            device: self.shown.clone(),
            error: e,
        })?;
        Ok(self.segment.insert(seg))
    }

    /// Step 3: the passphrase tries over `req`, reading the keyslots from `src` (the same
    /// source the header came from).
    pub fn unlock<R: Read + Seek>(
        &self,
        mut src: R,
        req: &KeyRequest,
    ) -> Result<Unlocked, TryError> {
        let opts = UnlockOptions {
            keyslot: req.keyslot,
            limits: req.limits,
        };
        let u = with_passphrase(req.key, &self.shown, |p| {
            unlock(&self.header, &mut src, p.as_bytes(), &opts)
        })?;
        if req.verbose {
            eprintln!("Key slot {} unlocked.", u.keyslot);
        }
        Ok(u)
    }

    /// Step 4: the volume as the mapping sees it, with the digest that verified `u`'s key
    /// (the data segment is the one step 1 checked, or checked now).
    pub fn volume(&mut self, u: &Unlocked) -> Result<VolumeInfo, TryError> {
        let seg = match &self.segment {
            Some(seg) => seg.clone(),
            None => self.need_segment()?.clone(),
        };
        Ok(VolumeInfo::of(&self.header, seg, u.digest))
    }
}
