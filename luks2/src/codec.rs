//! What the LUKS2 and LUKS1 header decoders share: the magics, a panic-free big-endian
//! cursor, C string fields, and the hash output sizes OpenSSL knows. Both `header` and
//! `luks1` build on this module; neither imports the other's internals.

/// Magic of the primary LUKS2 header (and of any LUKS1 header).
pub const MAGIC_PRIMARY: [u8; 6] = *b"LUKS\xba\xbe";
/// Magic of the secondary LUKS2 header.
pub const MAGIC_SECONDARY: [u8; 6] = *b"SKUL\xba\xbe";

/// A panic-free big-endian cursor over a byte slice.
pub(crate) struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes }
    }
    pub(crate) fn take<const N: usize>(&mut self) -> [u8; N] {
        match self.rest.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                *head
            }
            None => {
                self.rest = &[];
                [0; N]
            }
        }
    }
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }
    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
}

/// A fixed-size text field as C reads it after forcing its last byte to NUL.
pub(crate) fn c_field(field: &[u8]) -> String {
    let limited = field
        .get(..field.len().saturating_sub(1))
        .unwrap_or_default();
    let end = limited
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(limited.len());
    String::from_utf8_lossy(limited.get(..end).unwrap_or_default()).into_owned()
}

/// Output size of a hash OpenSSL knows by `name` (any letter case), for LUKS1's
/// `crypt_hmac_size` check. Includes hashes this library cannot compute.
pub(crate) fn openssl_hash_size(name: &str) -> Option<usize> {
    let table: [(&str, usize); 19] = [
        ("sha1", 20),
        ("sha224", 28),
        ("sha256", 32),
        ("sha384", 48),
        ("sha512", 64),
        ("sha512-224", 28),
        ("sha512-256", 32),
        ("sha3-224", 28),
        ("sha3-256", 32),
        ("sha3-384", 48),
        ("sha3-512", 64),
        ("ripemd160", 20),
        ("whirlpool", 64),
        ("blake2b-512", 64),
        ("blake2s-256", 32),
        ("sm3", 32),
        ("md5", 16),
        ("md4", 16),
        ("mdc2", 16),
    ];
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, s)| s)
}
