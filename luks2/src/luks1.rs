//! The LUKS1 header: 592 bytes, 8 keyslots at fixed offsets, PBKDF2 only.

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
