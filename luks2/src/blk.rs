//! The 128-bit block ciphers a sector cipher can use (AES, Serpent, Twofish, Camellia), keyed
//! for one key size. Every key schedule is wiped on drop (the crates' `zeroize` feature). Twofish
//! is this crate's own table-driven implementation ([`crate::twofish`]).

use crate::twofish::Twofish;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256, Block};
use camellia::{Camellia128, Camellia192, Camellia256};
use serpent::Serpent;

/// A block cipher family as dm-crypt names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockCipherKind {
    /// AES (Rijndael), 128-, 192- or 256-bit keys.
    Aes,
    /// Serpent, 128- to 256-bit keys (in whole bytes).
    Serpent,
    /// Twofish, 128-, 192- or 256-bit keys.
    Twofish,
    /// Camellia, 128-, 192- or 256-bit keys.
    Camellia,
}

/// Every supported block cipher, in a fixed order.
pub const ALL_KINDS: [BlockCipherKind; 4] = [
    BlockCipherKind::Aes,
    BlockCipherKind::Serpent,
    BlockCipherKind::Twofish,
    BlockCipherKind::Camellia,
];

impl BlockCipherKind {
    /// The dm-crypt name (`aes`, `serpent`, `twofish`, `camellia`).
    pub fn name(self) -> &'static str {
        match self {
            BlockCipherKind::Aes => "aes",
            BlockCipherKind::Serpent => "serpent",
            BlockCipherKind::Twofish => "twofish",
            BlockCipherKind::Camellia => "camellia",
        }
    }

    /// The kind named `name` (case-insensitive, as cryptsetup's keyslot code takes it).
    pub fn from_name(name: &str) -> Option<BlockCipherKind> {
        ALL_KINDS
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// Whether a key of `len` bytes keys this cipher. Serpent takes any whole-byte key from
    /// 16 to 32 bytes (an ESSIV salt from SHA-1 is 20 bytes); the others 16, 24 or 32.
    pub fn accepts_key(self, len: usize) -> bool {
        match self {
            BlockCipherKind::Serpent => (16..=32).contains(&len),
            _ => matches!(len, 16 | 24 | 32),
        }
    }

    /// The kernel modules that provide the generic implementation of this cipher.
    pub fn kernel_module(self) -> &'static str {
        match self {
            BlockCipherKind::Aes => "aes_generic",
            BlockCipherKind::Serpent => "serpent_generic",
            BlockCipherKind::Twofish => "twofish_generic",
            BlockCipherKind::Camellia => "camellia_generic",
        }
    }
}

/// A keyed block cipher of any supported kind and size.
pub(crate) enum Blk {
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
    Serpent(Box<Serpent>),
    Twofish(Box<Twofish>),
    Camellia128(Box<Camellia128>),
    Camellia192(Box<Camellia192>),
    Camellia256(Box<Camellia256>),
}

/// Runs `$body` with `$k` bound to the concrete key schedule inside `$blk` (monomorphised per
/// cipher, so that the chain modes run without dynamic dispatch per block).
macro_rules! with_blk {
    ($blk:expr, $k:ident => $body:expr) => {
        match $blk {
            $crate::blk::Blk::Aes128($k) => $body,
            $crate::blk::Blk::Aes192($k) => $body,
            $crate::blk::Blk::Aes256($k) => $body,
            $crate::blk::Blk::Serpent(b) => {
                let $k: &serpent::Serpent = b;
                $body
            }
            $crate::blk::Blk::Twofish(b) => {
                let $k: &$crate::twofish::Twofish = b;
                $body
            }
            $crate::blk::Blk::Camellia128(b) => {
                let $k: &camellia::Camellia128 = b;
                $body
            }
            $crate::blk::Blk::Camellia192(b) => {
                let $k: &camellia::Camellia192 = b;
                $body
            }
            $crate::blk::Blk::Camellia256(b) => {
                let $k: &camellia::Camellia256 = b;
                $body
            }
        }
    };
}
pub(crate) use with_blk;

impl Blk {
    /// Keys `kind` with `key`; `None` when the key size does not fit.
    pub(crate) fn new(kind: BlockCipherKind, key: &[u8]) -> Option<Blk> {
        if !kind.accepts_key(key.len()) {
            return None;
        }
        match (kind, key.len()) {
            (BlockCipherKind::Aes, 16) => Aes128::new_from_slice(key).ok().map(Blk::Aes128),
            (BlockCipherKind::Aes, 24) => Aes192::new_from_slice(key).ok().map(Blk::Aes192),
            (BlockCipherKind::Aes, 32) => Aes256::new_from_slice(key).ok().map(Blk::Aes256),
            (BlockCipherKind::Serpent, _) => Serpent::new_from_slice(key)
                .ok()
                .map(|k| Blk::Serpent(Box::new(k))),
            (BlockCipherKind::Twofish, _) => Twofish::new(key).map(Blk::Twofish),
            (BlockCipherKind::Camellia, 16) => Camellia128::new_from_slice(key)
                .ok()
                .map(|k| Blk::Camellia128(Box::new(k))),
            (BlockCipherKind::Camellia, 24) => Camellia192::new_from_slice(key)
                .ok()
                .map(|k| Blk::Camellia192(Box::new(k))),
            (BlockCipherKind::Camellia, 32) => Camellia256::new_from_slice(key)
                .ok()
                .map(|k| Blk::Camellia256(Box::new(k))),
            _ => None,
        }
    }

    /// Encrypts `blocks` in place (ECB).
    pub(crate) fn encrypt_blocks(&self, blocks: &mut [Block]) {
        with_blk!(self, k => k.encrypt_blocks(blocks))
    }
}
