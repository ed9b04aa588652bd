//! Hash algorithms named in LUKS headers (`sha256`, `sha1`, `ripemd160`, …).
//!
//! [`HashAlg`] names a hash the way cryptsetup spells it, hashes byte strings into caller
//! buffers ([`HashAlg::digest_into`]) and runs PBKDF2-HMAC with it ([`HashAlg::pbkdf2_hmac`]).

use digest::Digest;
use zeroize::Zeroize;

/// The largest output size of any [`HashAlg`] (SHA-512, SHA3-512 and Whirlpool), in bytes.
pub const MAX_OUTPUT_SIZE: usize = 64;

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

/// Every supported hash, in a fixed order (useful for tests and for listing).
pub const ALL: [HashAlg; 9] = [
    HashAlg::Sha1,
    HashAlg::Sha224,
    HashAlg::Sha256,
    HashAlg::Sha384,
    HashAlg::Sha512,
    HashAlg::Ripemd160,
    HashAlg::Whirlpool,
    HashAlg::Sha3_256,
    HashAlg::Sha3_512,
];

/// Hashes the concatenation of `parts` with `D` and writes the first `out.len()` bytes of the
/// digest (at most the whole digest) to `out`. The digest copy on the stack is wiped.
fn digest_generic<D: Digest>(parts: &[&[u8]], out: &mut [u8]) {
    let mut h = D::new();
    for p in parts {
        Digest::update(&mut h, p);
    }
    let mut full = digest::Output::<D>::default();
    h.finalize_into(&mut full);
    for (o, b) in out.iter_mut().zip(full.iter()) {
        *o = *b;
    }
    full.as_mut_slice().zeroize();
}

/// PBKDF2-HMAC-`D` of `password` and `salt` into `out`.
fn pbkdf2_generic<D: digest::block_api::EagerHash>(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    out: &mut [u8],
) -> Result<(), digest::InvalidLength> {
    pbkdf2::pbkdf2::<hmac::Hmac<D>>(password, salt, iterations, out)
}

/// PBKDF2 with the generic HMAC for hashes without an exposed block core (SHA-3).
fn pbkdf2_simple<D: Digest + digest::common::BlockSizeUser + Clone>(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    out: &mut [u8],
) -> Result<(), digest::InvalidLength> {
    pbkdf2::pbkdf2::<hmac::SimpleHmac<D>>(password, salt, iterations, out)
}

impl HashAlg {
    /// Parses a header hash name as cryptsetup spells it (case-insensitive), `None` if unknown.
    ///
    /// Accepted: `sha1`, `sha224`, `sha256`, `sha384`, `sha512`, `ripemd160`, `whirlpool`,
    /// `sha3-256`, `sha3-512`.
    pub fn from_name(name: &str) -> Option<HashAlg> {
        ALL.iter()
            .copied()
            .find(|h| h.name().eq_ignore_ascii_case(name))
    }

    /// The canonical lowercase name (`"sha256"`), as cryptsetup writes it in headers.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha224 => "sha224",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
            HashAlg::Ripemd160 => "ripemd160",
            HashAlg::Whirlpool => "whirlpool",
            HashAlg::Sha3_256 => "sha3-256",
            HashAlg::Sha3_512 => "sha3-512",
        }
    }

    /// Output length in bytes.
    pub fn output_size(self) -> usize {
        match self {
            HashAlg::Sha1 | HashAlg::Ripemd160 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 | HashAlg::Sha3_256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 | HashAlg::Whirlpool | HashAlg::Sha3_512 => 64,
        }
    }

    /// Hashes the concatenation of `parts` into `out`.
    ///
    /// Normally `out.len() == self.output_size()`. A shorter `out` receives the digest's first
    /// `out.len()` bytes (what the AF diffuse step needs for its last, partial block); with a
    /// longer `out` only the first `output_size()` bytes are written. Never panics.
    pub fn digest_into(self, parts: &[&[u8]], out: &mut [u8]) {
        match self {
            HashAlg::Sha1 => digest_generic::<sha1::Sha1>(parts, out),
            HashAlg::Sha224 => digest_generic::<sha2::Sha224>(parts, out),
            HashAlg::Sha256 => digest_generic::<sha2::Sha256>(parts, out),
            HashAlg::Sha384 => digest_generic::<sha2::Sha384>(parts, out),
            HashAlg::Sha512 => digest_generic::<sha2::Sha512>(parts, out),
            HashAlg::Ripemd160 => digest_generic::<ripemd::Ripemd160>(parts, out),
            HashAlg::Whirlpool => digest_generic::<whirlpool::Whirlpool>(parts, out),
            HashAlg::Sha3_256 => digest_generic::<sha3::Sha3_256>(parts, out),
            HashAlg::Sha3_512 => digest_generic::<sha3::Sha3_512>(parts, out),
        }
    }

    /// PBKDF2 (RFC 8018) with HMAC-`self` as PRF: derives `out.len()` bytes from `password` and
    /// `salt` with `iterations` rounds. It does not validate `iterations` (0 behaves like 1):
    /// callers go through [`crate::kdf::KdfParams`], which refuses 0.
    ///
    /// Fails only if the HMAC cannot be keyed with `password`, which HMAC never refuses; the
    /// error is a plain message for [`crate::kdf::KdfError::Failed`].
    pub fn pbkdf2_hmac(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
        out: &mut [u8],
    ) -> Result<(), String> {
        let r = match self {
            HashAlg::Sha1 => pbkdf2_generic::<sha1::Sha1>(password, salt, iterations, out),
            HashAlg::Sha224 => pbkdf2_generic::<sha2::Sha224>(password, salt, iterations, out),
            HashAlg::Sha256 => pbkdf2_generic::<sha2::Sha256>(password, salt, iterations, out),
            HashAlg::Sha384 => pbkdf2_generic::<sha2::Sha384>(password, salt, iterations, out),
            HashAlg::Sha512 => pbkdf2_generic::<sha2::Sha512>(password, salt, iterations, out),
            HashAlg::Ripemd160 => {
                pbkdf2_generic::<ripemd::Ripemd160>(password, salt, iterations, out)
            }
            HashAlg::Whirlpool => {
                pbkdf2_generic::<whirlpool::Whirlpool>(password, salt, iterations, out)
            }
            HashAlg::Sha3_256 => pbkdf2_simple::<sha3::Sha3_256>(password, salt, iterations, out),
            HashAlg::Sha3_512 => pbkdf2_simple::<sha3::Sha3_512>(password, salt, iterations, out),
        };
        r.map_err(|_| format!("HMAC-{} refused the passphrase as a key", self.name()))
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitive() {
        for h in ALL {
            assert_eq!(HashAlg::from_name(h.name()), Some(h));
            assert_eq!(HashAlg::from_name(&h.name().to_uppercase()), Some(h));
            assert!(h.output_size() <= MAX_OUTPUT_SIZE);
        }
        assert_eq!(HashAlg::from_name("SHA3-256"), Some(HashAlg::Sha3_256));
        assert_eq!(HashAlg::from_name("md5"), None);
        assert_eq!(HashAlg::from_name("sha3_256"), None);
        assert_eq!(HashAlg::from_name(""), None);
    }

    #[test]
    fn digest_sizes_and_abc_vectors() {
        // FIPS 180-2 / FIPS 202 / RIPEMD and Whirlpool reference "abc" digests (prefixes).
        let cases: [(HashAlg, &str); 9] = [
            (HashAlg::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (HashAlg::Sha224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"),
            (
                HashAlg::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (HashAlg::Sha384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
            (HashAlg::Sha512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
            (HashAlg::Ripemd160, "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"),
            (HashAlg::Whirlpool, "4e2448a4c6f486bb16b6562c73b4020bf3043e3a731bce721ae1b303d97e6d4c7181eebdb6c57e277d0e34957114cbd6c797fc9d95d8b582d225292076d4eef5"),
            (
                HashAlg::Sha3_256,
                "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
            ),
            (HashAlg::Sha3_512, "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0"),
        ];
        for (h, want) in cases {
            let mut out = vec![0u8; h.output_size()];
            h.digest_into(&[b"a", b"bc"], &mut out);
            assert_eq!(hex::encode(&out), want, "{h}");
            // Prefix output.
            let mut short = [0u8; 7];
            h.digest_into(&[b"abc"], &mut short);
            assert_eq!(&short[..], &out[..7]);
        }
    }
}
