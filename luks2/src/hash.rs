//! Hash algorithms named in LUKS headers (`sha256`, `sha1`, `ripemd160`, …).

/// A hash function a LUKS header can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1
    Sha1,
    /// SHA-224
    Sha224,
    /// SHA-256
    Sha256,
    /// SHA-384
    Sha384,
    /// SHA-512
    Sha512,
    /// RIPEMD-160
    Ripemd160,
    /// Whirlpool
    Whirlpool,
    /// SHA3-256
    Sha3_256,
    /// SHA3-512
    Sha3_512,
}

impl HashAlg {
    /// Parses a header hash name as cryptsetup spells it (case-insensitive), `None` if unknown.
    pub fn from_name(name: &str) -> Option<HashAlg> {
        let _ = name;
        todo!("crypto helper")
    }
    /// The canonical lowercase name (`"sha256"`).
    pub fn name(self) -> &'static str {
        todo!("crypto helper")
    }
    /// Output length in bytes.
    pub fn output_size(self) -> usize {
        todo!("crypto helper")
    }
    /// Hashes the concatenation of `parts` into `out` (`out.len() == self.output_size()`).
    pub fn digest_into(self, parts: &[&[u8]], out: &mut [u8]) {
        let _ = (parts, out);
        todo!("crypto helper")
    }
}
