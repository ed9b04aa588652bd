//! The LUKS1 header: 592 bytes, 8 keyslots at fixed offsets, PBKDF2 only.
//!
//! [`Luks1Header::parse`] decodes the big-endian header and applies the checks cryptsetup 2.6
//! makes when it loads one (`_check_and_convert_hdr`, `LUKS_check_keyslots`): a hash spec it
//! knows with at least 20 bytes of output, 4000 stripes in every keyslot (active or not),
//! keyslot material after the header and before the payload, and no two keyslots overlapping.
//! [`Luks1Header::required_device_size`] is its `LUKS_check_device_size`. Keyslot `active`
//! values other than the two defined ones load, as in cryptsetup, and are reported as
//! [`Luks1SlotState::Invalid`].

use crate::codec::{c_field, openssl_hash_size, Cursor, MAGIC_PRIMARY};
use std::fmt;

/// Size of the LUKS1 header on disk.
pub const LUKS1_HEADER_SIZE: usize = 592;
/// The only stripe count cryptsetup accepts.
pub const LUKS1_STRIPES: u32 = 4000;
/// `active` value of an enabled keyslot.
pub const LUKS1_KEY_ENABLED: u32 = 0x00AC_71F3;
/// `active` value of a disabled keyslot.
pub const LUKS1_KEY_DISABLED: u32 = 0x0000_DEAD;

/// Why a LUKS1 header is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Luks1Error {
    /// The device is shorter than the 592-byte header.
    Truncated {
        /// Device size in bytes.
        size: u64,
    },
    /// The magic is not `LUKS\xba\xbe`.
    BadMagic,
    /// The version is not 1.
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// The hash spec is unknown or its output is shorter than 20 bytes.
    UnsupportedHash {
        /// The hash spec as stored.
        hash: String,
    },
    /// A keyslot's stripe count is not 4000.
    InvalidStripes {
        /// The keyslot (0..8).
        keyslot: usize,
        /// The stripe count found.
        stripes: u32,
    },
    /// A keyslot's material starts inside the header.
    KeyslotInHeader {
        /// The keyslot.
        keyslot: usize,
        /// Its offset in 512-byte sectors.
        offset: u32,
    },
    /// A keyslot's material starts at or after the payload.
    KeyslotBeyondPayload {
        /// The keyslot.
        keyslot: usize,
        /// Its offset in sectors.
        offset: u32,
        /// The payload offset in sectors.
        payload_offset: u32,
    },
    /// A keyslot's material runs into the payload.
    KeyslotRunsIntoPayload {
        /// The keyslot.
        keyslot: usize,
        /// Its offset in sectors.
        offset: u32,
        /// Its size in sectors.
        sectors: u64,
        /// The payload offset in sectors.
        payload_offset: u32,
    },
    /// A keyslot's material runs into the next keyslot's.
    KeyslotsOverlap {
        /// The keyslot whose material is too long.
        keyslot: usize,
        /// The keyslot it runs into.
        next: usize,
    },
    /// The key size is zero.
    ZeroKeyBytes,
}

impl fmt::Display for Luks1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Luks1Error as E;
        match self {
            E::Truncated { size } => write!(
                f,
                "LUKS1 header is cut short: the device has {size} bytes, the header needs {LUKS1_HEADER_SIZE}"
            ),
            E::BadMagic => f.write_str("no LUKS1 magic at offset 0"),
            E::UnsupportedVersion { version } => {
                write!(f, "LUKS header version {version} is not 1")
            }
            E::UnsupportedHash { hash } => {
                write!(f, "LUKS1 hash {hash:?} is not supported")
            }
            E::InvalidStripes { keyslot, stripes } => write!(
                f,
                "LUKS1 keyslot {keyslot} is invalid: {stripes} stripes instead of {LUKS1_STRIPES}"
            ),
            E::KeyslotInHeader { keyslot, offset } => write!(
                f,
                "LUKS1 keyslot {keyslot} is invalid: its material at sector {offset} overlaps the header"
            ),
            E::KeyslotBeyondPayload {
                keyslot,
                offset,
                payload_offset,
            } => write!(
                f,
                "LUKS1 keyslot {keyslot} is invalid: its material at sector {offset} is not before \
                 the data at sector {payload_offset}"
            ),
            E::KeyslotRunsIntoPayload {
                keyslot,
                offset,
                sectors,
                payload_offset,
            } => write!(
                f,
                "LUKS1 keyslot {keyslot} is invalid: its {sectors} sectors at sector {offset} run \
                 into the data at sector {payload_offset}"
            ),
            E::KeyslotsOverlap { keyslot, next } => write!(
                f,
                "LUKS1 keyslot {keyslot} is invalid: its material runs into keyslot {next}"
            ),
            E::ZeroKeyBytes => f.write_str("LUKS1 header has a key size of 0 bytes"),
        }
    }
}

impl std::error::Error for Luks1Error {}

/// The `active` field of a LUKS1 keyslot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Luks1SlotState {
    /// `0x00AC71F3`.
    Active,
    /// `0x0000DEAD`.
    Inactive,
    /// Any other value (cryptsetup reports the slot as invalid and does not use it).
    Invalid(u32),
}

/// One LUKS1 keyslot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Luks1Keyslot {
    /// Whether the slot is active (0x00AC71F3).
    pub active: bool,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// PBKDF2 salt.
    pub salt: [u8; 32],
    /// Start of the key material in 512-byte sectors.
    pub key_material_offset: u32,
    /// AF stripes.
    pub stripes: u32,
    /// The `active` field as stored.
    pub state: Luks1SlotState,
}

/// A LUKS1 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Luks1Header {
    /// Cipher name (`aes`).
    pub cipher_name: String,
    /// Cipher mode (`xts-plain64`).
    pub cipher_mode: String,
    /// Hash spec (`sha256`).
    pub hash_spec: String,
    /// Data offset in 512-byte sectors.
    pub payload_offset: u32,
    /// Volume key size in bytes.
    pub key_bytes: u32,
    /// Master key digest (PBKDF2, 20 bytes).
    pub mk_digest: [u8; 20],
    /// Master key digest salt.
    pub mk_digest_salt: [u8; 32],
    /// Master key digest iterations.
    pub mk_digest_iterations: u32,
    /// UUID text.
    pub uuid: String,
    /// The 8 keyslots.
    pub keyslots: [Luks1Keyslot; 8],
}

impl Luks1Header {
    /// Decodes and checks a LUKS1 header from the first bytes of a device (at least 592).
    pub fn parse(bytes: &[u8]) -> Result<Luks1Header, Luks1Error> {
        let Some(block) = bytes.first_chunk::<LUKS1_HEADER_SIZE>() else {
            return Err(Luks1Error::Truncated {
                size: bytes.len() as u64,
            });
        };
        let mut c = Cursor::new(block);
        let magic: [u8; 6] = c.take();
        if magic != MAGIC_PRIMARY {
            return Err(Luks1Error::BadMagic);
        }
        let version = c.u16();
        if version != 1 {
            return Err(Luks1Error::UnsupportedVersion { version });
        }
        let cipher_name: [u8; 32] = c.take();
        let cipher_mode: [u8; 32] = c.take();
        let hash_spec: [u8; 32] = c.take();
        let payload_offset = c.u32();
        let key_bytes = c.u32();
        let mk_digest: [u8; 20] = c.take();
        let mk_digest_salt: [u8; 32] = c.take();
        let mk_digest_iterations = c.u32();
        let uuid: [u8; 40] = c.take();
        let keyslots: [Luks1Keyslot; 8] = std::array::from_fn(|_| {
            let active = c.u32();
            let iterations = c.u32();
            let salt: [u8; 32] = c.take();
            let key_material_offset = c.u32();
            let stripes = c.u32();
            let state = match active {
                LUKS1_KEY_ENABLED => Luks1SlotState::Active,
                LUKS1_KEY_DISABLED => Luks1SlotState::Inactive,
                other => Luks1SlotState::Invalid(other),
            };
            Luks1Keyslot {
                active: state == Luks1SlotState::Active,
                iterations,
                salt,
                key_material_offset,
                stripes,
                state,
            }
        });
        let hdr = Luks1Header {
            cipher_name: c_field(&cipher_name),
            cipher_mode: c_field(&cipher_mode),
            hash_spec: c_field(&hash_spec),
            payload_offset,
            key_bytes,
            mk_digest,
            mk_digest_salt,
            mk_digest_iterations,
            uuid: c_field(&uuid),
            keyslots,
        };
        hdr.check()?;
        Ok(hdr)
    }

    /// Size of one keyslot's key material in 512-byte sectors (`AF_split_sectors`).
    pub fn keyslot_sectors(&self) -> u64 {
        (u64::from(self.key_bytes) * u64::from(LUKS1_STRIPES)).div_ceil(512)
    }

    /// Keyslot indices sorted by material offset (stable, as cryptsetup's insertion sort).
    fn sorted_slots(&self) -> [usize; 8] {
        let mut idx = [0, 1, 2, 3, 4, 5, 6, 7];
        idx.sort_by_key(|&i| self.keyslots.get(i).map_or(0, |k| k.key_material_offset));
        idx
    }

    /// cryptsetup's checks at load time.
    fn check(&self) -> Result<(), Luks1Error> {
        let known = openssl_hash_size(&self.hash_spec).is_some_and(|n| n >= 20);
        if !known {
            return Err(Luks1Error::UnsupportedHash {
                hash: self.hash_spec.clone(),
            });
        }
        let secs = self.keyslot_sectors();
        for (i, ks) in self.keyslots.iter().enumerate() {
            if ks.stripes != LUKS1_STRIPES {
                return Err(Luks1Error::InvalidStripes {
                    keyslot: i,
                    stripes: ks.stripes,
                });
            }
            // `keyMaterialOffset * SECTOR_SIZE` is 32-bit arithmetic in cryptsetup.
            if u64::from(ks.key_material_offset.wrapping_mul(512)) < LUKS1_HEADER_SIZE as u64 {
                return Err(Luks1Error::KeyslotInHeader {
                    keyslot: i,
                    offset: ks.key_material_offset,
                });
            }
            // A detached header may have payload offset 0.
            if self.payload_offset == 0 {
                continue;
            }
            if self.payload_offset <= ks.key_material_offset {
                return Err(Luks1Error::KeyslotBeyondPayload {
                    keyslot: i,
                    offset: ks.key_material_offset,
                    payload_offset: self.payload_offset,
                });
            }
            if u64::from(self.payload_offset) < u64::from(ks.key_material_offset) + secs {
                return Err(Luks1Error::KeyslotRunsIntoPayload {
                    keyslot: i,
                    offset: ks.key_material_offset,
                    sectors: secs,
                    payload_offset: self.payload_offset,
                });
            }
        }
        let sorted = self.sorted_slots();
        for w in sorted.windows(2) {
            if let [prev, next] = *w {
                let (Some(p), Some(n)) = (self.keyslots.get(prev), self.keyslots.get(next)) else {
                    continue;
                };
                if u64::from(n.key_material_offset) < u64::from(p.key_material_offset) + secs {
                    return Err(Luks1Error::KeyslotsOverlap {
                        keyslot: prev,
                        next,
                    });
                }
            }
        }
        Ok(())
    }

    /// Bytes the device must hold: up to the end of the last keyslot's material
    /// (cryptsetup's `LUKS_check_device_size`, which also refuses a zero key size).
    pub fn required_device_size(&self) -> Result<u64, Luks1Error> {
        if self.key_bytes == 0 {
            return Err(Luks1Error::ZeroKeyBytes);
        }
        let last = self.sorted_slots()[7];
        let off = self
            .keyslots
            .get(last)
            .map_or(0, |k| u64::from(k.key_material_offset));
        Ok((off + self.keyslot_sectors()) * 512)
    }

    /// The cipher spec as cryptsetup shows it (`aes-xts-plain64`).
    pub fn cipher_spec(&self) -> String {
        format!("{}-{}", self.cipher_name, self.cipher_mode)
    }
}
