//! Keyslot → volume key: KDF, keyslot area decryption, AF merge, digest check.
//!
//! [`unlock`] tries keyslots in cryptsetup's order (priority high, then normal, each by id;
//! priority-ignore keyslots only when named) and returns the first volume key whose digest
//! matches. A keyslot that cannot be used (an unsupported cipher or hash, a KDF over the cost
//! limits) does not stop the others from being tried; if no keyslot opens, the error says why:
//! a cost over a limit ([`UnlockError::KdfOverLimit`], [`UnlockError::DigestOverLimit`],
//! [`UnlockError::KeyTooLarge`]), some keyslot could not be tried
//! ([`UnlockError::UntriedKeyslots`], never reported as a wrong passphrase), none was usable,
//! or the passphrase matched none of them ([`UnlockError::WrongPassphrase`]).
//!
//! Only keyslots and digests are read: the data segment plays no part (a passphrase test
//! works whatever the segment's type, cipher or sector size).

use crate::af;
pub use crate::af::LUKS2_AF_STRIPES;
use crate::cipher::{CipherSpec, SectorCipher};
use crate::error::{read_exact_at, Error};
use crate::hash::HashAlg;
use crate::header::{Header, Luks2Header};
use crate::kdf::{KdfError, KdfLimits, KdfParams};
use crate::luks1::Luks1Header;
use crate::metadata::{Digest, Keyslot, KeyslotKdf, Priority};
use crate::secret::{SecretBuf, VolumeKey};
use std::io::{Read, Seek};
use subtle::ConstantTimeEq;

pub(crate) mod error;
pub use error::UnlockError;

/// How to unlock.
#[derive(Debug, Clone, Default)]
pub struct UnlockOptions {
    /// Try only this keyslot (also allowed when its priority is "ignore").
    pub keyslot: Option<u32>,
    /// Cost limits checked before each KDF runs.
    pub limits: KdfLimits,
}

/// A successfully recovered volume key.
#[derive(Debug)]
pub struct Unlocked {
    /// The volume key.
    pub volume_key: VolumeKey,
    /// The keyslot that opened.
    pub keyslot: u32,
    /// The digest that verified it (LUKS2; 0 for LUKS1).
    pub digest: u32,
}

/// Recovers the volume key with `passphrase`. `r` reads the header device (with a detached
/// header, the header file: the keyslot areas live there).
pub fn unlock<R: Read + Seek>(
    header: &Header,
    r: &mut R,
    passphrase: &[u8],
    opts: &UnlockOptions,
) -> Result<Unlocked, Error> {
    match header {
        Header::Luks2(h) => unlock_luks2(h, r, passphrase, opts),
        Header::Luks1(h) => unlock_luks1(h, r, passphrase, opts),
    }
}

/// Outcome of trying one keyslot.
enum Attempt {
    Opened(VolumeKey),
    Mismatch,
    Unusable(String),
    /// A cost over the limits: the keyslot's KDF (`None`) or that digest's PBKDF2.
    OverLimit(KdfError, Option<u32>),
    /// The split key of a `key_size` this large does not fit the memory limit.
    TooLarge {
        key_size: u32,
        limit_bytes: u64,
    },
}

/// Collects attempt outcomes and turns them into the final error.
#[derive(Default)]
struct Tally {
    mismatched: bool,
    unusable: Vec<(u32, String)>,
    over_limit: Option<UnlockError>,
}

impl Tally {
    fn record(&mut self, id: u32, a: Attempt) -> Option<VolumeKey> {
        match a {
            Attempt::Opened(k) => return Some(k),
            Attempt::Mismatch => self.mismatched = true,
            Attempt::Unusable(why) => self.unusable.push((id, why)),
            Attempt::OverLimit(error, digest) => {
                if self.over_limit.is_none() {
                    self.over_limit = Some(match digest {
                        None => UnlockError::KdfOverLimit { keyslot: id, error },
                        Some(digest) => UnlockError::DigestOverLimit {
                            keyslot: id,
                            digest,
                            error,
                        },
                    });
                }
            }
            Attempt::TooLarge {
                key_size,
                limit_bytes,
            } => {
                if self.over_limit.is_none() {
                    self.over_limit = Some(UnlockError::KeyTooLarge {
                        keyslot: id,
                        key_size,
                        limit_bytes,
                    });
                }
            }
        }
        None
    }

    /// Over a limit first (the caller can raise it), then unusable keyslots (the passphrase
    /// may be the one of a keyslot that could not be tried: never reported as wrong), then a
    /// wrong passphrase.
    fn into_error(self) -> Error {
        if let Some(e) = self.over_limit {
            return e.into();
        }
        match (self.mismatched, self.unusable.is_empty()) {
            (true, true) => UnlockError::WrongPassphrase.into(),
            (true, false) => UnlockError::UntriedKeyslots(self.unusable).into(),
            (false, true) => UnlockError::NoKeyslots.into(),
            (false, false) => UnlockError::NoUsableKeyslot(self.unusable).into(),
        }
    }
}

fn unlock_luks2<R: Read + Seek>(
    h: &Luks2Header,
    r: &mut R,
    passphrase: &[u8],
    opts: &UnlockOptions,
) -> Result<Unlocked, Error> {
    let md = &h.metadata;
    if !md.config.requirements_mandatory.is_empty() {
        return Err(
            UnlockError::RequirementRefused(md.config.requirements_mandatory.clone()).into(),
        );
    }
    // Keyslots whose digest covers a segment can open the volume.
    let bound = |id: u32| -> Option<(u32, &Digest)> {
        md.digests
            .iter()
            .find(|(_, d)| d.keyslots.contains(&id) && !d.segments.is_empty())
            .map(|(did, d)| (*did, d))
    };
    let order: Vec<u32> = match opts.keyslot {
        Some(id) => {
            if !md.keyslots.contains_key(&id) {
                return Err(UnlockError::KeyslotNotFound(id).into());
            }
            if bound(id).is_none() {
                return Err(UnlockError::KeyslotNotBound(id).into());
            }
            vec![id]
        }
        None => {
            // High before normal; within a priority in the JSON order, as cryptsetup's
            // LUKS2_keyslot_open_priority walks the keyslots object.
            let mut ids: Vec<u32> = Vec::new();
            for prio in [Priority::High, Priority::Normal] {
                ids.extend(md.keyslot_order.iter().copied().filter(|id| {
                    md.keyslots.get(id).is_some_and(|k| k.priority == prio) && bound(*id).is_some()
                }));
            }
            ids
        }
    };
    let mut tally = Tally::default();
    for id in order {
        let (Some(ks), Some((did, digest))) = (md.keyslots.get(&id), bound(id)) else {
            continue;
        };
        let attempt = try_luks2_keyslot(id, ks, did, digest, r, passphrase, &opts.limits)?;
        if let Some(volume_key) = tally.record(id, attempt) {
            return Ok(Unlocked {
                volume_key,
                keyslot: id,
                digest: did,
            });
        }
    }
    Err(tally.into_error())
}

/// Converts the stored KDF of a keyslot into parameters and salt.
fn luks2_kdf(kdf: &KeyslotKdf) -> Result<(KdfParams, &[u8]), String> {
    match kdf {
        KeyslotKdf::Pbkdf2 {
            hash,
            iterations,
            salt,
        } => {
            let hash = HashAlg::from_name(hash)
                .ok_or_else(|| format!("unsupported PBKDF2 hash '{hash}'"))?;
            Ok((
                KdfParams::Pbkdf2 {
                    hash,
                    iterations: *iterations,
                },
                salt,
            ))
        }
        KeyslotKdf::Argon2 {
            variant,
            time,
            memory_kib,
            cpus,
            salt,
        } => Ok((
            KdfParams::Argon2 {
                variant: *variant,
                time: *time,
                memory_kib: *memory_kib,
                cpus: *cpus,
            },
            salt,
        )),
        KeyslotKdf::Unknown { type_name } => Err(format!("unsupported KDF type '{type_name}'")),
    }
}

#[allow(clippy::too_many_arguments)]
fn try_luks2_keyslot<R: Read + Seek>(
    id: u32,
    ks: &Keyslot,
    digest_id: u32,
    digest: &Digest,
    r: &mut R,
    passphrase: &[u8],
    limits: &KdfLimits,
) -> Result<Attempt, Error> {
    if let Some(defect) = ks.defect.as_ref().or(digest.defect.as_ref()) {
        return Ok(Attempt::Unusable(defect.clone()));
    }
    if ks.type_name != "luks2" {
        return Ok(Attempt::Unusable(format!(
            "keyslot type '{}' cannot be opened",
            ks.type_name
        )));
    }
    let (Some(area), Some(kdf), Some(afs)) = (&ks.area, &ks.kdf, &ks.af) else {
        return Ok(Attempt::Unusable("keyslot lacks area, kdf or af".into()));
    };
    if area.type_name != "raw" {
        return Ok(Attempt::Unusable(format!(
            "area type '{}' is not supported",
            area.type_name
        )));
    }
    if afs.type_name != "luks1" {
        return Ok(Attempt::Unusable(format!(
            "af type '{}' is not supported",
            afs.type_name
        )));
    }
    if digest.type_name != "pbkdf2" {
        return Ok(Attempt::Unusable(format!(
            "digest type '{}' is not supported",
            digest.type_name
        )));
    }
    let (params, salt) = match luks2_kdf(kdf) {
        Ok(p) => p,
        Err(why) => return Ok(Attempt::Unusable(why)),
    };
    let Some(af_hash) = HashAlg::from_name(&afs.hash) else {
        return Ok(Attempt::Unusable(format!(
            "unsupported AF hash '{}'",
            afs.hash
        )));
    };
    let Some(digest_hash) = HashAlg::from_name(&digest.hash) else {
        return Ok(Attempt::Unusable(format!(
            "unsupported digest hash '{}'",
            digest.hash
        )));
    };
    let Ok(area_key_size) = usize::try_from(area.key_size) else {
        return Ok(Attempt::Unusable("area key size too large".into()));
    };
    let spec = match CipherSpec::parse(&area.encryption, area_key_size) {
        Ok(s) => s,
        Err(e) => return Ok(Attempt::Unusable(e.to_string())),
    };
    let Ok(key_size) = usize::try_from(ks.key_size) else {
        return Ok(Attempt::Unusable("key size too large".into()));
    };
    // An empty volume key would "verify" against nothing but its digest: never usable.
    if key_size == 0 {
        return Ok(Attempt::Unusable("key_size is 0".into()));
    }
    let digest_params = KdfParams::Pbkdf2 {
        hash: digest_hash,
        iterations: digest.iterations,
    };
    // Parameters no KDF accepts (zero iterations, no lanes…) make the keyslot unusable; only
    // valid parameters over the limits are reported as over the limit.
    // Both costs are checked before any work, the keyslot's first: cryptsetup runs the
    // keyslot's KDF before it reads the digest, so a keyslot over a limit is reported as
    // such (exit 3) even when its digest is invalid.
    if let Err(e) = params.validate() {
        return Ok(Attempt::Unusable(e.to_string()));
    }
    if let Err(e) = params.check(limits) {
        return Ok(Attempt::OverLimit(e, None));
    }
    if let Err(e) = digest_params.validate() {
        return Ok(Attempt::Unusable(format!("digest {digest_id}: {e}")));
    }
    if let Err(e) = digest_params.check(limits) {
        return Ok(Attempt::OverLimit(e, Some(digest_id)));
    }
    // The split key is held in memory whole, as cryptsetup holds it (`crypt_safe_alloc` of
    // the AF sectors, -ENOMEM when that fails): over the memory limit it is refused before
    // any work, as an over-limit cost (a `key_size` of 2^31 asks for 8 TB).
    let split_len = af::split_area_len(key_size, LUKS2_AF_STRIPES);
    let limit_bytes = limits.max_memory_kib.saturating_mul(1024);
    let Some(split_len) = split_len.filter(|l| u64::try_from(*l).is_ok_and(|l| l <= limit_bytes))
    else {
        return Ok(Attempt::TooLarge {
            key_size: ks.key_size,
            limit_bytes,
        });
    };
    // cryptsetup reads the split key from the area's 512-byte sector (`offset / 512`) and
    // for as many sectors as the split key needs, whatever the area's stored size; so do we
    // (the header validation keeps the area inside the keyslots area).
    let candidate = open_area(
        &params,
        passphrase,
        salt,
        &spec,
        area_key_size,
        r,
        area.offset / 512 * 512,
        split_len,
        af_hash,
        key_size,
        LUKS2_AF_STRIPES,
        &format!("keyslot {id} area"),
    )?;
    verify_digest(&digest_params, candidate, &digest.salt, &digest.digest)
}

/// Derives the area key, reads and decrypts the keyslot area, and merges the AF stripes.
#[allow(clippy::too_many_arguments)]
fn open_area<R: Read + Seek>(
    params: &KdfParams,
    passphrase: &[u8],
    salt: &[u8],
    spec: &CipherSpec,
    area_key_size: usize,
    r: &mut R,
    offset: u64,
    split_len: usize,
    af_hash: HashAlg,
    key_size: usize,
    stripes: u32,
    what: &str,
) -> Result<SecretBuf, Error> {
    let mut area_key = SecretBuf::zeroed(area_key_size);
    params.derive(passphrase, salt, area_key.as_mut_bytes())?;
    let mut material = SecretBuf::zeroed(split_len);
    read_exact_at(r, offset, material.as_mut_bytes(), what)?;
    let cipher = SectorCipher::new(spec, area_key.as_bytes())?;
    drop(area_key);
    cipher.decrypt(material.as_mut_bytes(), 512, 0)?;
    let mut candidate = SecretBuf::zeroed(key_size);
    af::merge(
        af_hash,
        material.as_bytes(),
        key_size,
        stripes,
        candidate.as_mut_bytes(),
    )?;
    Ok(candidate)
}

/// Checks a candidate volume key against a PBKDF2 digest in constant time.
fn verify_digest(
    params: &KdfParams,
    candidate: SecretBuf,
    salt: &[u8],
    expected: &[u8],
) -> Result<Attempt, Error> {
    let mut got = SecretBuf::zeroed(expected.len());
    params.derive(candidate.as_bytes(), salt, got.as_mut_bytes())?;
    if bool::from(got.as_bytes().ct_eq(expected)) {
        Ok(Attempt::Opened(VolumeKey::new(candidate)))
    } else {
        Ok(Attempt::Mismatch)
    }
}

fn unlock_luks1<R: Read + Seek>(
    h: &Luks1Header,
    r: &mut R,
    passphrase: &[u8],
    opts: &UnlockOptions,
) -> Result<Unlocked, Error> {
    let order: Vec<u32> = match opts.keyslot {
        Some(id) => {
            let active = usize::try_from(id)
                .ok()
                .and_then(|i| h.keyslots.get(i))
                .is_some_and(|k| k.active);
            if !active {
                return Err(UnlockError::KeyslotNotFound(id).into());
            }
            vec![id]
        }
        None => (0u32..8)
            .filter(|i| h.keyslots.get(*i as usize).is_some_and(|k| k.active))
            .collect(),
    };
    let Some(hash) = HashAlg::from_name(&h.hash_spec) else {
        return Err(UnlockError::NoUsableKeyslot(
            order
                .iter()
                .map(|id| (*id, format!("unsupported hash '{}'", h.hash_spec)))
                .collect(),
        )
        .into());
    };
    let key_size = usize::try_from(h.key_bytes).unwrap_or(usize::MAX);
    let spec = CipherSpec::from_luks1(&h.cipher_name, &h.cipher_mode, key_size);
    let digest_params = KdfParams::Pbkdf2 {
        hash,
        iterations: h.mk_digest_iterations,
    };
    let mut tally = Tally::default();
    for id in order {
        let Some(ks) = h.keyslots.get(id as usize) else {
            continue;
        };
        let attempt = (|| -> Result<Attempt, Error> {
            let spec = match &spec {
                Ok(s) => s,
                Err(e) => return Ok(Attempt::Unusable(e.to_string())),
            };
            let params = KdfParams::Pbkdf2 {
                hash,
                iterations: ks.iterations,
            };
            if let Err(e) = params.validate() {
                return Ok(Attempt::Unusable(e.to_string()));
            }
            if let Err(e) = params.check(&opts.limits) {
                return Ok(Attempt::OverLimit(e, None));
            }
            if let Err(e) = digest_params.validate() {
                return Ok(Attempt::Unusable(format!("MK digest: {e}")));
            }
            if let Err(e) = digest_params.check(&opts.limits) {
                return Ok(Attempt::OverLimit(e, Some(0)));
            }
            let Some(split_len) = af::split_area_len(key_size, ks.stripes) else {
                return Ok(Attempt::Unusable("AF size overflows".into()));
            };
            let candidate = open_area(
                &params,
                passphrase,
                &ks.salt,
                spec,
                key_size,
                r,
                u64::from(ks.key_material_offset) * 512,
                split_len,
                hash,
                key_size,
                ks.stripes,
                &format!("keyslot {id} key material"),
            )?;
            verify_digest(&digest_params, candidate, &h.mk_digest_salt, &h.mk_digest)
        })()?;
        if let Some(volume_key) = tally.record(id, attempt) {
            return Ok(Unlocked {
                volume_key,
                keyslot: id,
                digest: 0,
            });
        }
    }
    Err(tally.into_error())
}
