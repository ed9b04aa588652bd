//! Sector ciphers as dm-crypt names them (`aes-xts-plain64`, `serpent-cbc-essiv:sha256`, …).
//!
//! A specification is `cipher-chainmode-ivmode[:ivopts]`, parsed as dm-crypt's
//! `crypt_ctr_cipher_old` does.
//!
//! - Block ciphers (128-bit blocks): `aes`, `serpent`, `twofish`, `camellia`, each with a 16-,
//!   24- or 32-byte key.
//! - Chain modes: `xts` (IEEE 1619; two keys of the same size: 32, 48 or 64 bytes), `lrw` (as
//!   the Linux kernel's `crypto/lrw.c`: the cipher key followed by a 16-byte tweak key, 32, 40
//!   or 48 bytes), `cbc` and `ecb` (16, 24 or 32 bytes).
//! - IV generators: `plain` (32-bit little-endian sector number), `plain64` (64-bit
//!   little-endian), `plain64be` (64-bit big-endian in the last 8 bytes), `benbi` (big-endian
//!   count of 16-byte blocks from 1: `(sector << 5) + 1` in the last 8 bytes), `null` (all
//!   zero), and `essiv:H`: the plain64 block encrypted with the same block cipher keyed by
//!   `H(key)`, where `key` is the whole key given to the chain mode (both XTS halves, the LRW
//!   tweak key included) and `H` is any hash of [`HashAlg`] whose digest is a key size of
//!   that cipher, or the kernel's truncated Whirlpool `wp256`/`wp384`/`wp512`.
//!   `ecb` takes no IV. As in dm-crypt, `aes` alone and `aes-plain` mean `aes-cbc-plain`.
//!
//! Everything else is refused with a [`CipherError`] naming the specification: other ciphers
//! (`cipher_null`, `blowfish`, …), the `capi:` syntax, key counts (`aes:64`), other chain modes
//! (`gcm`, `ctr`, …) and IV generators (`lmk`, `tcw`, `random`, `eboiv`, `elephant`).
//!
//! Data is processed in units of `sector_size` bytes (512 to 4096, a power of two); the IV of
//! unit `i` is built from `first_iv + i * (sector_size / 512)`, as dm-crypt counts 512-byte
//! units unless `iv_large_sectors` is set (LUKS2 never sets it). The chain modes run many
//! blocks per call so that the block cipher crates can pipeline them (AES-NI/VAES when
//! available for AES); key schedules, tweak keys and ESSIV keys are wiped on drop.

pub use crate::blk::BlockCipherKind;
use crate::blk::{with_blk, Blk};
use crate::hash::HashAlg;
use aes::cipher::array::{Array, ArraySize};
use aes::cipher::typenum::U16;
use aes::cipher::{
    BlockCipherDecBackend, BlockCipherDecClosure, BlockCipherDecrypt, BlockCipherEncBackend,
    BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser,
};
use aes::Block;
use std::fmt;
use zeroize::Zeroize;

/// dm-crypt's IV unit: IV sector numbers count 512-byte units.
pub const IV_SECTOR_SIZE: usize = 512;
/// Smallest encryption sector size.
pub const MIN_SECTOR_SIZE: usize = 512;
/// Largest encryption sector size.
pub const MAX_SECTOR_SIZE: usize = 4096;

/// Valid XTS key sizes in bytes (two AES-128, AES-192 or AES-256 keys).
pub const XTS_KEY_SIZES: &[usize] = &[32, 48, 64];
/// Valid CBC and ECB key sizes in bytes (128-, 192- and 256-bit keys).
pub const AES_KEY_SIZES: &[usize] = &[16, 24, 32];
/// Valid LRW key sizes in bytes (a 16-, 24- or 32-byte cipher key, then a 16-byte tweak key).
pub const LRW_KEY_SIZES: &[usize] = &[32, 40, 48];

/// Why a cipher cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CipherError {
    /// The block cipher (or the specification syntax) is not supported; holds the whole spec.
    UnsupportedCipher(String),
    /// The chain mode is not supported.
    UnsupportedMode {
        /// The whole specification.
        spec: String,
        /// The chain mode (`gcm`, `lrw`, …).
        mode: String,
    },
    /// The IV generator (or its option, such as the ESSIV hash) is not supported.
    UnsupportedIv {
        /// The whole specification.
        spec: String,
        /// The IV part (`benbi`, `essiv:sha1`, …).
        iv: String,
    },
    /// A chain mode other than `ecb` was given without an IV generator (dm-crypt: "IV
    /// mechanism required").
    MissingIv(String),
    /// The key size does not fit the cipher and mode.
    KeySize {
        /// The whole specification.
        spec: String,
        /// The key size given, in bytes.
        got: usize,
        /// The key sizes the mode accepts, in bytes.
        expected: &'static [usize],
    },
    /// The sector size is not a power of two between 512 and 4096.
    SectorSize(usize),
    /// The data length is not a multiple of the sector size.
    DataLength {
        /// The data length in bytes.
        len: usize,
        /// The sector size in bytes.
        sector_size: usize,
    },
}

impl fmt::Display for CipherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CipherError::UnsupportedCipher(spec) => write!(
                f,
                "unsupported cipher {spec:?}: only aes, serpent, twofish and camellia (xts, \
                 lrw, cbc, ecb) are implemented"
            ),
            CipherError::UnsupportedMode { spec, mode } => write!(
                f,
                "unsupported cipher mode {mode:?} in {spec:?}: only xts, lrw, cbc and ecb \
                 are implemented"
            ),
            CipherError::UnsupportedIv { spec, iv } => write!(
                f,
                "unsupported IV generator {iv:?} in {spec:?}: only plain, plain64, \
                 plain64be, benbi, null and essiv:HASH (a hash whose digest is a key size of \
                 the cipher) are implemented, and ecb takes none"
            ),
            CipherError::MissingIv(spec) => {
                write!(
                    f,
                    "cipher {spec:?} has no IV generator (IV mechanism required)"
                )
            }
            CipherError::KeySize {
                spec,
                got,
                expected,
            } => write!(
                f,
                "cipher {spec:?} cannot use a {got}-byte key (expected {})",
                expected
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            CipherError::SectorSize(n) => write!(
                f,
                "invalid encryption sector size {n}: must be a power of two from 512 to 4096"
            ),
            CipherError::DataLength { len, sector_size } => write!(
                f,
                "data length {len} is not a multiple of the sector size {sector_size}"
            ),
        }
    }
}

impl std::error::Error for CipherError {}

/// Block-chaining mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CipherMode {
    /// XTS (IEEE 1619), without ciphertext stealing (sectors are whole blocks).
    Xts,
    /// LRW (the kernel's `lrw` template): tweak = tweak key × block index in GF(2^128).
    Lrw,
    /// CBC, restarted with a fresh IV at every sector.
    Cbc,
    /// ECB (no IV).
    Ecb,
}

impl CipherMode {
    /// The dm-crypt name (`xts`, `lrw`, `cbc`, `ecb`).
    pub fn name(self) -> &'static str {
        match self {
            CipherMode::Xts => "xts",
            CipherMode::Lrw => "lrw",
            CipherMode::Cbc => "cbc",
            CipherMode::Ecb => "ecb",
        }
    }
}

/// IV generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IvMode {
    /// No IV (ECB).
    None,
    /// `plain`: the sector number truncated to 32 bits, little-endian, zero-padded.
    Plain,
    /// `plain64`: the sector number, 64-bit little-endian, zero-padded.
    Plain64,
    /// `plain64be`: the sector number, 64-bit big-endian, in the last 8 bytes.
    Plain64Be,
    /// `benbi`: big-endian count of 16-byte blocks from 1, `(sector << 5) + 1`, in the last 8
    /// bytes (meant for LRW).
    Benbi,
    /// `null`: an all-zero IV.
    Null,
    /// `essiv:H`: the plain64 block encrypted with the data cipher keyed by `H(key)`.
    Essiv(HashAlg),
    /// `essiv:wpN` (`wp256`, `wp384`, `wp512`): ESSIV with the Whirlpool digest truncated to
    /// `N` bits, as the kernel names it; holds `N`.
    EssivWp(u16),
}

impl IvMode {
    /// The dm-crypt name (`plain64`, `essiv:sha256`; empty for [`IvMode::None`]).
    pub fn name(self) -> String {
        match self {
            IvMode::None => String::new(),
            IvMode::Plain => "plain".into(),
            IvMode::Plain64 => "plain64".into(),
            IvMode::Plain64Be => "plain64be".into(),
            IvMode::Benbi => "benbi".into(),
            IvMode::Null => "null".into(),
            IvMode::Essiv(h) => format!("essiv:{}", h.name()),
            IvMode::EssivWp(bits) => format!("essiv:wp{bits}"),
        }
    }
}

/// A parsed dm-crypt cipher specification with its key size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherSpec {
    cipher: BlockCipherKind,
    mode: CipherMode,
    iv: IvMode,
    key_size: usize,
}

impl CipherSpec {
    /// Parses `encryption` (e.g. `aes-xts-plain64`) for a key of `key_size` bytes.
    pub fn parse(encryption: &str, key_size: usize) -> Result<CipherSpec, CipherError> {
        let spec = || encryption.to_string();
        let (cipher, rest) = match encryption.split_once('-') {
            Some((c, r)) => (c, Some(r)),
            None => (encryption, None),
        };
        // `aes:64` (key count) and `capi:…` are dm-crypt syntaxes we do not implement.
        // Block cipher and IV names are case-insensitive, as cryptsetup's keyslot decryption
        // takes them (`AES-xts-plain64`, `aes-cbc-ESSIV:SHA256` open there); the chain mode
        // is not (`aes-XTS-plain64` does not).
        let Some(kind) = BlockCipherKind::from_name(cipher) else {
            return Err(CipherError::UnsupportedCipher(spec()));
        };
        let (chain, iv_part) = match rest {
            None => (None, None),
            Some(r) => match r.split_once('-') {
                Some((c, iv)) => (Some(c), Some(iv)),
                None => (Some(r), None),
            },
        };
        // dm-crypt compatibility: "aes" and "aes-plain" mean "aes-cbc-plain".
        let (chain, iv_part) = match (chain, iv_part) {
            (None, _) | (Some("plain"), None) => ("cbc", Some("plain")),
            (Some(c), iv) => (c, iv),
        };
        let mode = match chain {
            "xts" => CipherMode::Xts,
            "lrw" => CipherMode::Lrw,
            "cbc" => CipherMode::Cbc,
            "ecb" => CipherMode::Ecb,
            other => {
                return Err(CipherError::UnsupportedMode {
                    spec: spec(),
                    mode: other.to_string(),
                })
            }
        };
        let iv = match (mode, iv_part) {
            (CipherMode::Ecb, None) => IvMode::None,
            (CipherMode::Ecb, Some(iv)) => {
                return Err(CipherError::UnsupportedIv {
                    spec: spec(),
                    iv: iv.to_string(),
                })
            }
            (_, None) | (_, Some("")) => return Err(CipherError::MissingIv(spec())),
            (_, Some(iv)) => parse_iv(iv, kind).ok_or_else(|| CipherError::UnsupportedIv {
                spec: spec(),
                iv: iv.to_string(),
            })?,
        };
        let expected = mode_key_sizes(mode);
        if !expected.contains(&key_size) {
            return Err(CipherError::KeySize {
                spec: spec(),
                got: key_size,
                expected,
            });
        }
        Ok(CipherSpec {
            cipher: kind,
            mode,
            iv,
            key_size,
        })
    }

    /// Composes a LUKS1 header's `cipher_name` and `cipher_mode` (`aes`, `xts-plain64`) into a
    /// dm-crypt specification and parses it. Trailing NUL padding must already be removed.
    pub fn from_luks1(
        cipher_name: &str,
        cipher_mode: &str,
        key_size: usize,
    ) -> Result<CipherSpec, CipherError> {
        CipherSpec::parse(&format!("{cipher_name}-{cipher_mode}"), key_size)
    }

    /// The canonical dm-crypt name (`aes-xts-plain64`, `aes-cbc-essiv:sha256`, `aes-ecb`).
    pub fn name(&self) -> String {
        let c = self.cipher.name();
        match self.iv {
            IvMode::None => format!("{c}-{}", self.mode.name()),
            iv => format!("{c}-{}-{}", self.mode.name(), iv.name()),
        }
    }

    /// The block cipher's name (`"aes"`, `"serpent"`, …).
    pub fn cipher(&self) -> &'static str {
        self.cipher.name()
    }

    /// The block cipher.
    pub fn cipher_kind(&self) -> BlockCipherKind {
        self.cipher
    }

    /// The kernel modules dm-crypt needs for this specification, as `modprobe` takes them
    /// (`serpent_generic xts`, `aes_generic lrw`, `aes_generic cbc essiv sha256_generic`).
    pub fn kernel_modules(&self) -> Vec<String> {
        let mut m = vec![self.cipher.kernel_module().to_string()];
        if self.mode != CipherMode::Ecb || self.iv == IvMode::None {
            m.push(self.mode.name().to_string());
        }
        match self.iv {
            IvMode::Essiv(h) => {
                m.push("essiv".into());
                m.push(kernel_hash_module(h).into());
            }
            IvMode::EssivWp(_) => {
                m.push("essiv".into());
                m.push("wp512".into());
            }
            _ => {}
        }
        m
    }

    /// The chain mode.
    pub fn mode(&self) -> CipherMode {
        self.mode
    }

    /// The IV generator.
    pub fn iv_mode(&self) -> IvMode {
        self.iv
    }

    /// The key size in bytes (for XTS, both halves).
    pub fn key_size(&self) -> usize {
        self.key_size
    }
}

impl fmt::Display for CipherSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The kernel module providing hash `h` (for the error that names what to load).
fn kernel_hash_module(h: HashAlg) -> &'static str {
    match h {
        HashAlg::Sha1 => "sha1_generic",
        HashAlg::Sha224 | HashAlg::Sha256 => "sha256_generic",
        HashAlg::Sha384 | HashAlg::Sha512 => "sha512_generic",
        HashAlg::Ripemd160 => "rmd160",
        HashAlg::Whirlpool => "wp512",
        HashAlg::Sha3_256 | HashAlg::Sha3_512 => "sha3_generic",
    }
}

/// The key sizes a chain mode accepts, in bytes.
fn mode_key_sizes(mode: CipherMode) -> &'static [usize] {
    match mode {
        CipherMode::Xts => XTS_KEY_SIZES,
        CipherMode::Lrw => LRW_KEY_SIZES,
        CipherMode::Cbc | CipherMode::Ecb => AES_KEY_SIZES,
    }
}

/// Parses the IV part of a specification (`plain64`, `essiv:sha256`) for block cipher `kind`.
fn parse_iv(iv: &str, kind: BlockCipherKind) -> Option<IvMode> {
    match iv.split_once(':') {
        None if iv.eq_ignore_ascii_case("plain") => Some(IvMode::Plain),
        None if iv.eq_ignore_ascii_case("plain64") => Some(IvMode::Plain64),
        None if iv.eq_ignore_ascii_case("plain64be") => Some(IvMode::Plain64Be),
        None if iv.eq_ignore_ascii_case("benbi") => Some(IvMode::Benbi),
        None if iv.eq_ignore_ascii_case("null") => Some(IvMode::Null),
        None => None,
        Some((essiv, hash)) if essiv.eq_ignore_ascii_case("essiv") => {
            // Hash names are case-insensitive (as for cryptsetup); the digest keys the ESSIV
            // cipher (the same block cipher), so it must be one of that cipher's key sizes.
            let wp = [("wp256", 256u16), ("wp384", 384), ("wp512", 512)]
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(hash))
                .map(|(_, bits)| *bits);
            if let Some(bits) = wp {
                return kind
                    .accepts_key(usize::from(bits / 8))
                    .then_some(IvMode::EssivWp(bits));
            }
            let h = HashAlg::from_name(hash)?;
            kind.accepts_key(h.output_size())
                .then_some(IvMode::Essiv(h))
        }
        Some(_) => None,
    }
}

/// The LRW tweak key as a GF(2^128) element (big-endian, the kernel's "bbe" convention) and
/// its multiples by `2^(i+1) - 1`, the XOR of two consecutive block indices whose lower one
/// ends in `i` one bits (as the kernel's `mulinc` table). Wiped on drop.
struct LrwKey {
    k2: u128,
    mulinc: Box<[u128; 128]>,
}

impl LrwKey {
    fn new(tweak_key: &[u8]) -> Option<LrwKey> {
        let bytes: [u8; 16] = tweak_key.try_into().ok()?;
        let k2 = u128::from_be_bytes(bytes);
        let mut mulinc = Box::new([0u128; 128]);
        let mut idx = 0u128;
        for (i, m) in mulinc.iter_mut().enumerate() {
            idx |= 1u128 << i;
            *m = gf128_mul(k2, idx);
        }
        Some(LrwKey { k2, mulinc })
    }
}

impl Drop for LrwKey {
    fn drop(&mut self) {
        self.k2.zeroize();
        self.mulinc.zeroize();
    }
}

/// Multiplication in GF(2^128) modulo x^128 + x^7 + x^2 + x + 1, elements as big-endian
/// 128-bit integers with bit 0 the coefficient of x^0 (IEEE P1619 LRW; the kernel's
/// `gf128mul_bbe`). Constant time.
fn gf128_mul(a: u128, b: u128) -> u128 {
    let mut r = 0u128;
    let mut x = a;
    for i in 0..128 {
        r ^= x & 0u128.wrapping_sub((b >> i) & 1);
        x = mul_alpha(x);
    }
    r
}

// One per cipher instance; the key schedules are boxed where large.
#[allow(clippy::large_enum_variant)]
enum DataKeys {
    /// Data key, tweak key.
    Xts(Blk, Blk),
    /// Cipher key, tweak key.
    Lrw(Blk, LrwKey),
    Cbc(Blk),
    Ecb(Blk),
}

/// A keyed sector cipher. Key schedules are wiped on drop.
pub struct SectorCipher {
    spec: CipherSpec,
    keys: DataKeys,
    /// The ESSIV cipher: the data block cipher keyed by the hash of the whole key.
    essiv: Option<Blk>,
    /// XTS with VAES/VPCLMULQDQ (`luks2-accel`) when the CPU has them and the key is AES-128
    /// or AES-256; `keys` (the `aes` crate) otherwise.
    fast_xts: Option<luks2_accel::xts::Xts>,
}

impl fmt::Debug for SectorCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SectorCipher({}, [REDACTED; {}])",
            self.spec.name(),
            self.spec.key_size
        )
    }
}

/// Whether to encrypt or decrypt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Encrypt,
    Decrypt,
}

/// Bytes processed per batch: whole sectors, at most 4096 bytes (256 AES blocks).
const CHUNK: usize = 4096;
const CHUNK_BLOCKS: usize = CHUNK / 16;
const MAX_SECTORS_PER_CHUNK: usize = CHUNK / MIN_SECTOR_SIZE;

impl SectorCipher {
    /// Keys the cipher; `key.len()` must equal the spec's key size.
    pub fn new(spec: &CipherSpec, key: &[u8]) -> Result<SectorCipher, CipherError> {
        let key_err = || CipherError::KeySize {
            spec: spec.name(),
            got: key.len(),
            expected: mode_key_sizes(spec.mode),
        };
        if key.len() != spec.key_size {
            return Err(key_err());
        }
        let kind = spec.cipher;
        let keys = match spec.mode {
            CipherMode::Xts => {
                let (k1, k2) = key.split_at(key.len() / 2);
                match (Blk::new(kind, k1), Blk::new(kind, k2)) {
                    (Some(a), Some(b)) => DataKeys::Xts(a, b),
                    _ => return Err(key_err()),
                }
            }
            CipherMode::Lrw => {
                let (k1, k2) = key.split_at(key.len().saturating_sub(16));
                match (Blk::new(kind, k1), LrwKey::new(k2)) {
                    (Some(a), Some(b)) => DataKeys::Lrw(a, b),
                    _ => return Err(key_err()),
                }
            }
            CipherMode::Cbc => DataKeys::Cbc(Blk::new(kind, key).ok_or_else(key_err)?),
            CipherMode::Ecb => DataKeys::Ecb(Blk::new(kind, key).ok_or_else(key_err)?),
        };
        let essiv_salt = |h: HashAlg, len: usize| -> Result<Blk, CipherError> {
            let mut salt = [0u8; crate::hash::MAX_OUTPUT_SIZE];
            let out = salt.get_mut(..h.output_size()).unwrap_or_default();
            h.digest_into(&[key], out);
            let c = Blk::new(kind, salt.get(..len).unwrap_or_default());
            salt.zeroize();
            c.ok_or_else(key_err)
        };
        let essiv = match spec.iv {
            IvMode::Essiv(h) => Some(essiv_salt(h, h.output_size())?),
            IvMode::EssivWp(bits) => Some(essiv_salt(HashAlg::Whirlpool, usize::from(bits / 8))?),
            _ => None,
        };
        let fast_xts = match (spec.mode, kind) {
            (CipherMode::Xts, BlockCipherKind::Aes) => luks2_accel::xts::Xts::new(key),
            _ => None,
        };
        Ok(SectorCipher {
            spec: spec.clone(),
            keys,
            essiv,
            fast_xts,
        })
    }

    /// The specification this cipher was keyed for.
    pub fn spec(&self) -> &CipherSpec {
        &self.spec
    }

    /// Decrypts `data` in place as consecutive units of `sector_size` bytes; unit `i` uses the
    /// IV sector number `first_iv + i * (sector_size / 512)` (dm-crypt counts 512-byte units).
    /// The sector number wraps at 2^64 as in the kernel.
    pub fn decrypt(
        &self,
        data: &mut [u8],
        sector_size: usize,
        first_iv: u64,
    ) -> Result<(), CipherError> {
        self.run(data, sector_size, first_iv, Dir::Decrypt)
    }

    /// Encrypts in place; the inverse of [`SectorCipher::decrypt`].
    pub fn encrypt(
        &self,
        data: &mut [u8],
        sector_size: usize,
        first_iv: u64,
    ) -> Result<(), CipherError> {
        self.run(data, sector_size, first_iv, Dir::Encrypt)
    }

    fn run(
        &self,
        data: &mut [u8],
        sector_size: usize,
        first_iv: u64,
        dir: Dir,
    ) -> Result<(), CipherError> {
        if !(MIN_SECTOR_SIZE..=MAX_SECTOR_SIZE).contains(&sector_size)
            || !sector_size.is_power_of_two()
        {
            return Err(CipherError::SectorSize(sector_size));
        }
        if data.len() % sector_size != 0 {
            return Err(CipherError::DataLength {
                len: data.len(),
                sector_size,
            });
        }
        let ivgen = IvGen {
            mode: self.spec.iv,
            essiv: self.essiv.as_ref(),
            step: u64::try_from(sector_size / IV_SECTOR_SIZE).unwrap_or(1),
        };
        let mut scratch = Scratch::new();
        if let Some(fast) = &self.fast_xts {
            return xts_accel(fast, &ivgen, data, sector_size, first_iv, dir, &mut scratch);
        }
        match &self.keys {
            DataKeys::Xts(k1, k2) => with_blk!(k1, k => tweaked(
                k,
                &ivgen,
                data,
                sector_size,
                first_iv,
                dir,
                &mut scratch,
                xts_tweaks(k2),
            )),
            DataKeys::Lrw(k1, k2) => with_blk!(k1, k => tweaked(
                k,
                &ivgen,
                data,
                sector_size,
                first_iv,
                dir,
                &mut scratch,
                lrw_tweaks(k2),
            )),
            DataKeys::Cbc(k) => {
                with_blk!(k, k => cbc(k, &ivgen, data, sector_size, first_iv, dir, &mut scratch))
            }
            DataKeys::Ecb(k) => with_blk!(k, k => ecb(k, data, dir)),
        }
        Ok(())
    }
}

/// Builds IV blocks for sector numbers.
struct IvGen<'a> {
    mode: IvMode,
    essiv: Option<&'a Blk>,
    /// IV sector numbers per encryption sector (`sector_size / 512`).
    step: u64,
}

impl IvGen<'_> {
    /// Fills `ivs[k]` with the IV of the sector numbered `first + k * step` (wrapping).
    fn fill(&self, first: u64, ivs: &mut [Block]) {
        let mut n = first;
        for b in ivs.iter_mut() {
            let mut v = [0u8; 16];
            match self.mode {
                IvMode::None | IvMode::Null => {}
                IvMode::Plain => {
                    let low = u32::try_from(n & 0xffff_ffff).unwrap_or_default();
                    v[..4].copy_from_slice(&low.to_le_bytes());
                }
                IvMode::Plain64 | IvMode::Essiv(_) | IvMode::EssivWp(_) => {
                    v[..8].copy_from_slice(&n.to_le_bytes())
                }
                IvMode::Plain64Be => v[8..].copy_from_slice(&n.to_be_bytes()),
                // 16-byte blocks: 512 / 16 = 2^5 blocks per IV sector, counted from 1.
                IvMode::Benbi => v[8..].copy_from_slice(&(n << 5).wrapping_add(1).to_be_bytes()),
            }
            *b = Block::from(v);
            n = n.wrapping_add(self.step);
        }
        if let Some(c) = self.essiv {
            c.encrypt_blocks(ivs);
        }
    }
}

/// Per-call work buffers that hold key-derived values (XTS tweaks, ESSIV-encrypted IVs),
/// wiped on drop. Only the parts a call used are wiped, so that small calls stay cheap.
struct Scratch {
    tweaks: [u128; CHUNK_BLOCKS],
    tweaks_used: bool,
    ivs: [Block; MAX_SECTORS_PER_CHUNK],
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            tweaks: [0; CHUNK_BLOCKS],
            tweaks_used: false,
            ivs: [Block::default(); MAX_SECTORS_PER_CHUNK],
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.tweaks_used {
            self.tweaks.zeroize();
        }
        for b in self.ivs.iter_mut() {
            b.as_mut_slice().zeroize();
        }
    }
}

#[inline(always)]
fn xor_block(b: &mut Block, t: u128) {
    let v = u128::from_le_bytes(b.0) ^ t;
    b.0 = v.to_le_bytes();
}

/// Multiplies an XTS tweak by the primitive element α of GF(2^128) (IEEE 1619 §5.2: the
/// 16-byte tweak read as a little-endian integer, shifted left, reduced by x^128 + x^7 + x^2 +
/// x + 1). Constant time.
#[inline(always)]
fn mul_alpha(t: u128) -> u128 {
    (t << 1) ^ ((t >> 127) * 0x87)
}

/// One XTS pass over `blocks` with their `tweaks`, run inside the AES backend: each group of
/// the backend's parallel blocks (30 with VAES, 8 with AES-NI) is XORed with its tweaks,
/// encrypted or decrypted and XORed again while it is still in L1, instead of three passes over
/// the whole chunk.
struct XtsPass<'a> {
    blocks: &'a mut [Block],
    tweaks: &'a [u128],
}

impl BlockSizeUser for XtsPass<'_> {
    type BlockSize = U16;
}

impl XtsPass<'_> {
    /// Runs `par` on each full group of `N` blocks and `one` on the remaining blocks, with the
    /// tweak XOR before and after.
    #[inline(always)]
    fn run<N: ArraySize>(self, par: impl Fn(&mut Array<Block, N>), one: impl Fn(&mut Block)) {
        let (groups, tail) = Array::<Block, N>::slice_as_chunks_mut(self.blocks);
        // The caller passes one tweak per block; with fewer, nothing is processed.
        let Some((group_tweaks, tail_tweaks)) =
            self.tweaks.split_at_checked(groups.len() * N::USIZE)
        else {
            return;
        };
        for (g, tw) in groups.iter_mut().zip(group_tweaks.chunks_exact(N::USIZE)) {
            for (b, t) in g.iter_mut().zip(tw) {
                xor_block(b, *t);
            }
            par(g);
            for (b, t) in g.iter_mut().zip(tw) {
                xor_block(b, *t);
            }
        }
        for (b, t) in tail.iter_mut().zip(tail_tweaks) {
            xor_block(b, *t);
            one(b);
            xor_block(b, *t);
        }
    }
}

impl BlockCipherDecClosure for XtsPass<'_> {
    #[inline(always)]
    fn call<B: BlockCipherDecBackend<BlockSize = U16>>(self, backend: &B) {
        self.run::<B::ParBlocksSize>(
            |g| backend.decrypt_par_blocks_inplace(g),
            |b| backend.decrypt_block_inplace(b),
        );
    }
}

impl BlockCipherEncClosure for XtsPass<'_> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        self.run::<B::ParBlocksSize>(
            |g| backend.encrypt_par_blocks_inplace(g),
            |b| backend.encrypt_block_inplace(b),
        );
    }
}

/// XTS tweaks (no ciphertext stealing: sectors are multiples of 16 bytes): each sector's IV
/// encrypted with the tweak key, then multiplied by alpha per block.
fn xts_tweaks(k2: &Blk) -> impl Fn(&mut [Block], std::slice::ChunksMut<'_, u128>) + '_ {
    move |ivs, tweaks| {
        k2.encrypt_blocks(ivs);
        for (tweaks, iv) in tweaks.zip(ivs.iter()) {
            let mut t = u128::from_le_bytes(iv.0);
            for tw in tweaks.iter_mut() {
                *tw = t;
                t = mul_alpha(t);
            }
        }
    }
}

/// LRW tweaks, as the kernel's `crypto/lrw.c`: the IV read as a big-endian 128-bit block index
/// `I` (incremented per block), tweak `T = K2 ⊗ I` in GF(2^128) (the first one multiplied, the
/// next ones updated with the `mulinc` table), in big-endian byte order.
fn lrw_tweaks(k2: &LrwKey) -> impl Fn(&mut [Block], std::slice::ChunksMut<'_, u128>) + '_ {
    move |ivs, tweaks| {
        for (tweaks, iv) in tweaks.zip(ivs.iter()) {
            let mut index = u128::from_be_bytes(iv.0);
            let mut t = gf128_mul(k2.k2, index);
            for tw in tweaks.iter_mut() {
                // Stored so that `xor_block` (little-endian) XORs T's big-endian bytes.
                *tw = t.swap_bytes();
                let ones = usize::try_from(index.trailing_ones()).unwrap_or(0);
                t ^= k2.mulinc.get(ones).copied().unwrap_or(0);
                index = index.wrapping_add(1);
            }
        }
    }
}

/// The two tweaked modes (XTS, LRW: `C = E(P ⊕ T) ⊕ T` per block) over whole sectors, in
/// chunks: `tweaks_of` turns the chunk's IVs (one per sector) into the tweaks of each sector's
/// blocks (an iterator of per-sector slices).
#[allow(clippy::too_many_arguments)]
fn tweaked<C: Aes16>(
    k1: &C,
    ivgen: &IvGen<'_>,
    data: &mut [u8],
    sector_size: usize,
    first_iv: u64,
    dir: Dir,
    scratch: &mut Scratch,
    tweaks_of: impl Fn(&mut [Block], std::slice::ChunksMut<'_, u128>),
) {
    let sectors_per_chunk = (CHUNK / sector_size).max(1);
    let blocks_per_sector = sector_size / 16;
    let ivs_per_chunk = ivgen
        .step
        .wrapping_mul(u64::try_from(sectors_per_chunk).unwrap_or(1));
    let mut iv_num = first_iv;
    scratch.tweaks_used = true;
    for chunk in data.chunks_mut(sectors_per_chunk * sector_size) {
        let n_sectors = chunk.len() / sector_size;
        let ivs = scratch.ivs.get_mut(..n_sectors).unwrap_or_default();
        ivgen.fill(iv_num, ivs);
        tweaks_of(ivs, scratch.tweaks.chunks_mut(blocks_per_sector));
        let (blocks, _) = Block::slice_as_chunks_mut(chunk);
        let tweaks = scratch.tweaks.get(..blocks.len()).unwrap_or_default();
        match dir {
            Dir::Decrypt => k1.decrypt_with_backend(XtsPass { blocks, tweaks }),
            Dir::Encrypt => k1.encrypt_with_backend(XtsPass { blocks, tweaks }),
        }
        iv_num = iv_num.wrapping_add(ivs_per_chunk);
    }
}

/// Bytes per call of the accelerated XTS kernel: 8 sectors of 4 KiB (or 64 of 512 bytes), so
/// that the kernel encrypts 8 sectors' tweaks together and starts each sector without waiting
/// for its tweak (one 4 KiB sector per call cost ~5 % more per byte).
const ACCEL_CHUNK: usize = 8 * CHUNK;
const ACCEL_MAX_SECTORS: usize = ACCEL_CHUNK / MIN_SECTOR_SIZE;

/// XTS through `luks2-accel` (VAES kernel): IVs made here per chunk of sectors (up to 32 KiB),
/// one call per chunk.
fn xts_accel(
    fast: &luks2_accel::xts::Xts,
    ivgen: &IvGen<'_>,
    data: &mut [u8],
    sector_size: usize,
    first_iv: u64,
    dir: Dir,
    scratch: &mut Scratch,
) -> Result<(), CipherError> {
    let sectors_per_chunk = (ACCEL_CHUNK / sector_size).max(1);
    let ivs_per_chunk = ivgen
        .step
        .wrapping_mul(u64::try_from(sectors_per_chunk).unwrap_or(1));
    let fdir = match dir {
        Dir::Decrypt => luks2_accel::xts::Dir::Decrypt,
        Dir::Encrypt => luks2_accel::xts::Dir::Encrypt,
    };
    let mut iv_num = first_iv;
    // The IVs as plain arrays for the accel API (wiped before returning).
    let mut raw_ivs = [[0u8; 16]; ACCEL_MAX_SECTORS];
    for chunk in data.chunks_mut(sectors_per_chunk * sector_size) {
        let n_sectors = chunk.len() / sector_size;
        // Made through `scratch.ivs` (ESSIV encrypts them there), up to 8 at a time.
        let mut piece_iv = iv_num;
        for piece in raw_ivs
            .get_mut(..n_sectors)
            .unwrap_or_default()
            .chunks_mut(MAX_SECTORS_PER_CHUNK)
        {
            let ivs = scratch.ivs.get_mut(..piece.len()).unwrap_or_default();
            ivgen.fill(piece_iv, ivs);
            for (raw, iv) in piece.iter_mut().zip(ivs.iter()) {
                *raw = iv.0;
            }
            piece_iv = piece_iv.wrapping_add(
                ivgen
                    .step
                    .wrapping_mul(u64::try_from(piece.len()).unwrap_or(1)),
            );
        }
        let r = fast
            .crypt_units(
                chunk,
                sector_size,
                raw_ivs.get(..n_sectors).unwrap_or_default(),
                fdir,
            )
            .map_err(|_| CipherError::DataLength {
                len: n_sectors * sector_size,
                sector_size,
            });
        if r.is_err() {
            raw_ivs.zeroize();
            return r;
        }
        iv_num = iv_num.wrapping_add(ivs_per_chunk);
    }
    raw_ivs.zeroize();
    Ok(())
}

/// CBC restarted at every sector with that sector's IV.
fn cbc<C: Aes16>(
    k: &C,
    ivgen: &IvGen<'_>,
    data: &mut [u8],
    sector_size: usize,
    first_iv: u64,
    dir: Dir,
    scratch: &mut Scratch,
) {
    let sectors_per_chunk = (CHUNK / sector_size).max(1);
    let blocks_per_sector = sector_size / 16;
    let ivs_per_chunk = ivgen
        .step
        .wrapping_mul(u64::try_from(sectors_per_chunk).unwrap_or(1));
    let mut iv_num = first_iv;
    // Ciphertext copy for decryption; ciphertext is public, so it is not wiped.
    let mut copy_buf = [Block::default(); CHUNK_BLOCKS];
    for chunk in data.chunks_mut(sectors_per_chunk * sector_size) {
        let n_sectors = chunk.len() / sector_size;
        let ivs = scratch.ivs.get_mut(..n_sectors).unwrap_or_default();
        ivgen.fill(iv_num, ivs);
        let (blocks, _) = Block::slice_as_chunks_mut(chunk);
        match dir {
            Dir::Decrypt => {
                // Keep the ciphertext: block j of a sector is XORed with ciphertext j - 1.
                let copy = copy_buf.get_mut(..blocks.len()).unwrap_or_default();
                copy.copy_from_slice(blocks);
                k.decrypt_blocks(blocks);
                for ((sector, ct), iv) in blocks
                    .chunks_mut(blocks_per_sector)
                    .zip(copy.chunks(blocks_per_sector))
                    .zip(ivs.iter())
                {
                    for (b, prev) in sector.iter_mut().zip(std::iter::once(iv).chain(ct.iter())) {
                        xor_block(b, u128::from_le_bytes(prev.0));
                    }
                }
            }
            Dir::Encrypt => {
                for (sector, iv) in blocks.chunks_mut(blocks_per_sector).zip(ivs.iter()) {
                    let mut prev = u128::from_le_bytes(iv.0);
                    for b in sector.iter_mut() {
                        xor_block(b, prev);
                        k.encrypt_block(b);
                        prev = u128::from_le_bytes(b.0);
                    }
                }
            }
        }
        iv_num = iv_num.wrapping_add(ivs_per_chunk);
    }
}

/// A key schedule of any supported cipher: a block cipher with 16-byte blocks.
trait Aes16: BlockCipherEncrypt + BlockCipherDecrypt + BlockSizeUser<BlockSize = U16> {}
impl<C: BlockCipherEncrypt + BlockCipherDecrypt + BlockSizeUser<BlockSize = U16>> Aes16 for C {}

/// ECB: every block on its own.
fn ecb<C: Aes16>(k: &C, data: &mut [u8], dir: Dir) {
    let (blocks, _) = Block::slice_as_chunks_mut(data);
    match dir {
        Dir::Decrypt => k.decrypt_blocks(blocks),
        Dir::Encrypt => k.encrypt_blocks(blocks),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// The `luks2-accel` XTS path (VAES) against the `aes` crate path on random keys,
        /// data, sector sizes, IV modes and first sectors, both directions; up to 79 sectors,
        /// so that the accelerated path's 32 KiB calls (64 sectors of 512 bytes, IVs made 8 at
        /// a time) end inside the data. Without VAES on the CPU both sides take the crate path.
        #[test]
        fn xts_accel_matches_crate_path(
            big in proptest::prelude::any::<bool>(),
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 64),
            shift in 0u32..4,
            sectors in 1usize..80,
            fill in proptest::prelude::any::<u64>(),
            first in proptest::prelude::any::<u64>(),
            iv in 0usize..3,
        ) {
            let ks = if big { 64 } else { 32 };
            let sector = 512usize << shift;
            let ivname = ["plain64", "plain", "essiv:sha256"][iv];
            let spec = CipherSpec::parse(&format!("aes-xts-{ivname}"), ks).unwrap();
            let fast = SectorCipher::new(&spec, &key[..ks]).unwrap();
            let mut slow = SectorCipher::new(&spec, &key[..ks]).unwrap();
            slow.fast_xts = None;
            let data: Vec<u8> = (0..sector * sectors)
                .map(|i| (fill.rotate_left(i as u32 % 64) as u8) ^ (i as u8))
                .collect();
            for dir in [Dir::Decrypt, Dir::Encrypt] {
                let (mut a, mut b) = (data.clone(), data.clone());
                fast.run(&mut a, sector, first, dir).unwrap();
                slow.run(&mut b, sector, first, dir).unwrap();
                proptest::prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn xts_accel_in_use_when_the_cpu_has_it() {
        let spec = CipherSpec::parse("aes-xts-plain64", 64).unwrap();
        let c = SectorCipher::new(&spec, &[7; 64]).unwrap();
        assert_eq!(c.fast_xts.is_some(), luks2_accel::xts::available());
        let spec = CipherSpec::parse("aes-xts-plain64", 48).unwrap();
        let c = SectorCipher::new(&spec, &[7; 48]).unwrap();
        assert!(c.fast_xts.is_none(), "AES-192 XTS takes the crate path");
    }

    fn unsupported_cipher(s: &str) -> Result<CipherSpec, CipherError> {
        Err(CipherError::UnsupportedCipher(s.into()))
    }

    #[test]
    fn parse_supported() {
        for (s, ks, name) in [
            ("aes-xts-plain64", 64, "aes-xts-plain64"),
            ("aes-xts-plain64", 32, "aes-xts-plain64"),
            ("aes-xts-plain64", 48, "aes-xts-plain64"),
            ("aes-xts-plain", 64, "aes-xts-plain"),
            ("aes-xts-essiv:sha256", 64, "aes-xts-essiv:sha256"),
            ("aes-cbc-essiv:sha256", 32, "aes-cbc-essiv:sha256"),
            ("aes-cbc-essiv:sha3-256", 16, "aes-cbc-essiv:sha3-256"),
            ("aes-cbc-plain64", 24, "aes-cbc-plain64"),
            ("aes-cbc-plain", 16, "aes-cbc-plain"),
            ("aes-ecb", 32, "aes-ecb"),
            ("aes", 32, "aes-cbc-plain"),
            ("aes-plain", 32, "aes-cbc-plain"),
            ("aes-lrw-plain64", 48, "aes-lrw-plain64"),
            ("aes-lrw-benbi", 32, "aes-lrw-benbi"),
            ("aes-xts-plain64be", 64, "aes-xts-plain64be"),
            ("aes-cbc-benbi", 32, "aes-cbc-benbi"),
            ("aes-xts-null", 32, "aes-xts-null"),
            ("aes-xts-essiv:wp256", 64, "aes-xts-essiv:wp256"),
        ] {
            let spec = CipherSpec::parse(s, ks).unwrap();
            assert_eq!(spec.name(), name, "{s}");
            assert_eq!(spec.key_size(), ks);
            assert_eq!(spec.cipher(), "aes");
        }
        for (s, ks, cipher) in [
            ("serpent-xts-plain64", 64, "serpent"),
            ("Serpent-cbc-essiv:sha1", 32, "serpent"),
            ("twofish-xts-plain64", 32, "twofish"),
            ("twofish-lrw-benbi", 40, "twofish"),
            ("camellia-xts-plain64", 64, "camellia"),
            ("camellia-ecb", 16, "camellia"),
        ] {
            let spec = CipherSpec::parse(s, ks).unwrap();
            assert_eq!(spec.cipher(), cipher, "{s}");
            assert_eq!(spec.name(), s.to_ascii_lowercase());
        }
        assert_eq!(
            CipherSpec::parse("serpent-xts-plain64", 64)
                .unwrap()
                .kernel_modules(),
            ["serpent_generic", "xts"]
        );
        assert_eq!(
            CipherSpec::parse("aes-cbc-essiv:sha256", 32)
                .unwrap()
                .kernel_modules(),
            ["aes_generic", "cbc", "essiv", "sha256_generic"]
        );
        assert_eq!(
            CipherSpec::parse("aes-lrw-plain64", 24),
            Err(CipherError::KeySize {
                spec: "aes-lrw-plain64".into(),
                got: 24,
                expected: LRW_KEY_SIZES
            })
        );
        let s = CipherSpec::parse("aes-cbc-essiv:sha256", 32).unwrap();
        assert_eq!(s.mode(), CipherMode::Cbc);
        assert_eq!(s.iv_mode(), IvMode::Essiv(HashAlg::Sha256));
        assert_eq!(
            CipherSpec::from_luks1("aes", "xts-plain64", 64).unwrap(),
            CipherSpec::parse("aes-xts-plain64", 64).unwrap()
        );
        assert_eq!(
            CipherSpec::from_luks1("aes", "ecb", 16).unwrap().name(),
            "aes-ecb"
        );
    }

    #[test]
    fn parse_refusals_are_exact() {
        for s in [
            "blowfish-cbc-plain",
            "cipher_null-ecb",
            "capi:xts(aes)-plain64",
            "aes:64-cbc-lmk",
            "",
        ] {
            assert_eq!(CipherSpec::parse(s, 64), unsupported_cipher(s));
        }
        assert_eq!(
            CipherSpec::parse("aes-gcm-random", 32),
            Err(CipherError::UnsupportedMode {
                spec: "aes-gcm-random".into(),
                mode: "gcm".into()
            })
        );
        for (s, iv) in [
            ("aes-cbc-lmk", "lmk"),
            ("aes-cbc-tcw", "tcw"),
            ("aes-cbc-eboiv", "eboiv"),
            ("aes-ecb-null", "null"),
            ("aes-cbc-essiv:wp512", "essiv:wp512"),
            ("twofish-cbc-essiv:sha1", "essiv:sha1"),
            ("aes-cbc-essiv:sha1", "essiv:sha1"),
            ("aes-cbc-essiv:sha512", "essiv:sha512"),
            ("aes-cbc-essiv", "essiv"),
            ("aes-xts-plain64-x", "plain64-x"),
            ("aes-ecb-plain64", "plain64"),
        ] {
            assert_eq!(
                CipherSpec::parse(s, 32),
                Err(CipherError::UnsupportedIv {
                    spec: s.into(),
                    iv: iv.into()
                }),
                "{s}"
            );
        }
        assert_eq!(
            CipherSpec::parse("aes-cbc", 32),
            Err(CipherError::MissingIv("aes-cbc".into()))
        );
        // Cipher and IV names are case-insensitive (as cryptsetup's keyslot decryption), the
        // chain mode is not.
        for (s, canonical) in [
            ("AES-xts-plain64", "aes-xts-plain64"),
            ("aes-xts-PLAIN64", "aes-xts-plain64"),
            ("Aes-cbc-ESSIV:SHA256", "aes-cbc-essiv:sha256"),
            ("aes-cbc-essiv:Sha3-256", "aes-cbc-essiv:sha3-256"),
            ("aes-cbc-Plain", "aes-cbc-plain"),
        ] {
            assert_eq!(CipherSpec::parse(s, 32).unwrap().name(), canonical, "{s}");
        }
        assert_eq!(
            CipherSpec::parse("aes-XTS-plain64", 32),
            Err(CipherError::UnsupportedMode {
                spec: "aes-XTS-plain64".into(),
                mode: "XTS".into()
            })
        );
        assert_eq!(
            CipherSpec::parse("aes-xts-plain64", 16),
            Err(CipherError::KeySize {
                spec: "aes-xts-plain64".into(),
                got: 16,
                expected: XTS_KEY_SIZES
            })
        );
        assert_eq!(
            CipherSpec::parse("aes-cbc-plain64", 64),
            Err(CipherError::KeySize {
                spec: "aes-cbc-plain64".into(),
                got: 64,
                expected: AES_KEY_SIZES
            })
        );
        let e = CipherSpec::parse("aes-cbc-plain64", 64).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cipher \"aes-cbc-plain64\" cannot use a 64-byte key (expected 16, 24, 32)"
        );
    }

    #[test]
    fn new_checks_key_length() {
        let spec = CipherSpec::parse("aes-xts-plain64", 64).unwrap();
        assert!(matches!(
            SectorCipher::new(&spec, &[0; 32]),
            Err(CipherError::KeySize { got: 32, .. })
        ));
        let c = SectorCipher::new(&spec, &[0; 64]).unwrap();
        assert_eq!(
            format!("{c:?}"),
            "SectorCipher(aes-xts-plain64, [REDACTED; 64])"
        );
    }

    #[test]
    fn data_and_sector_size_errors() {
        let spec = CipherSpec::parse("aes-xts-plain64", 32).unwrap();
        let c = SectorCipher::new(&spec, &[1; 32]).unwrap();
        let mut d = vec![0u8; 1024];
        assert_eq!(
            c.decrypt(&mut d, 1000, 0),
            Err(CipherError::SectorSize(1000))
        );
        assert_eq!(c.decrypt(&mut d, 256, 0), Err(CipherError::SectorSize(256)));
        assert_eq!(
            c.decrypt(&mut d, 8192, 0),
            Err(CipherError::SectorSize(8192))
        );
        assert_eq!(
            c.decrypt(&mut d[..1000], 512, 0),
            Err(CipherError::DataLength {
                len: 1000,
                sector_size: 512
            })
        );
        assert_eq!(c.decrypt(&mut [], 512, 0), Ok(()));
    }

    #[test]
    fn mul_alpha_carries() {
        assert_eq!(mul_alpha(1), 2);
        assert_eq!(mul_alpha(1 << 127), 0x87);
        assert_eq!(mul_alpha((1 << 127) | 1), 0x85);
    }

    /// Encrypting then decrypting gives the input back, for every mode and sector size, and a
    /// 4096-byte sector uses the same IVs as eight 512-byte ones only in ECB.
    #[test]
    fn round_trips() {
        let key: Vec<u8> = (0..64u8).collect();
        let plain: Vec<u8> = (0..3 * 4096).map(|i| (i * 7 % 256) as u8).collect();
        for (s, ks) in [
            ("aes-xts-plain64", 64),
            ("aes-xts-plain64", 32),
            ("aes-xts-plain64", 48),
            ("aes-xts-essiv:sha256", 64),
            ("aes-xts-essiv:wp256", 64),
            ("aes-lrw-plain64", 48),
            ("aes-lrw-benbi", 32),
            ("aes-xts-plain64be", 64),
            ("aes-cbc-benbi", 32),
            ("aes-xts-null", 32),
            ("serpent-xts-plain64", 64),
            ("serpent-cbc-essiv:sha1", 16),
            ("twofish-xts-plain64", 48),
            ("twofish-lrw-plain64", 40),
            ("camellia-xts-plain64", 64),
            ("camellia-cbc-essiv:sha256", 32),
            ("camellia-ecb", 24),
            ("aes-cbc-essiv:sha256", 32),
            ("aes-cbc-plain64", 16),
            ("aes-cbc-plain", 24),
            ("aes-ecb", 32),
        ] {
            let spec = CipherSpec::parse(s, ks).unwrap();
            let c = SectorCipher::new(&spec, &key[..ks]).unwrap();
            for ss in [512, 1024, 2048, 4096] {
                let mut d = plain.clone();
                c.encrypt(&mut d, ss, 12345).unwrap();
                assert_ne!(d, plain);
                c.decrypt(&mut d, ss, 12345).unwrap();
                assert_eq!(d, plain, "{s} {ss}");
            }
        }
    }

    /// Processing in one call or sector by sector gives the same bytes (batching is invisible).
    #[test]
    fn batching_matches_single_sectors() {
        let key: Vec<u8> = (100..164u8).collect();
        let data: Vec<u8> = (0..16 * 4096).map(|i| (i * 13 % 251) as u8).collect();
        for (s, ks) in [("aes-xts-plain64", 64), ("aes-cbc-essiv:sha256", 32)] {
            let c = SectorCipher::new(&CipherSpec::parse(s, ks).unwrap(), &key[..ks]).unwrap();
            for ss in [512usize, 4096] {
                let mut whole = data.clone();
                c.decrypt(&mut whole, ss, u64::MAX - 40).unwrap();
                let mut pieces = data.clone();
                for (i, sec) in pieces.chunks_mut(ss).enumerate() {
                    let iv = (u64::MAX - 40).wrapping_add((i * ss / 512) as u64);
                    c.decrypt(sec, ss, iv).unwrap();
                }
                assert_eq!(whole, pieces, "{s} {ss}");
            }
        }
    }

    /// GF(2^128) multiplication: x · x = x^2, x^127 · x wraps to x^7 + x^2 + x + 1, and the
    /// incremental tweak update (`mulinc`) gives the same tweaks as a fresh multiplication.
    #[test]
    fn gf128_mul_and_lrw_increments() {
        assert_eq!(gf128_mul(2, 2), 4);
        assert_eq!(gf128_mul(1 << 127, 2), 0x87);
        assert_eq!(gf128_mul(0x1234, 1), 0x1234);
        let k = LrwKey::new(&[0x5a; 16]).unwrap();
        let mut index: u128 = (1u128 << 64) - 3;
        let mut t = gf128_mul(k.k2, index);
        for _ in 0..8 {
            t ^= k.mulinc[index.trailing_ones() as usize];
            index += 1;
            assert_eq!(t, gf128_mul(k.k2, index));
        }
    }

    /// The IV generators' block layouts (before ESSIV).
    #[test]
    fn iv_layouts() {
        let gen = |mode| IvGen {
            mode,
            essiv: None,
            step: 1,
        };
        let mut ivs = [Block::default(); 1];
        let n = 0x0102_0304_0506_0708u64;
        gen(IvMode::Plain64Be).fill(n, &mut ivs);
        assert_eq!(ivs[0].0[8..], n.to_be_bytes());
        assert_eq!(ivs[0].0[..8], [0; 8]);
        gen(IvMode::Benbi).fill(3, &mut ivs);
        assert_eq!(ivs[0].0[8..], 97u64.to_be_bytes());
        gen(IvMode::Null).fill(n, &mut ivs);
        assert_eq!(ivs[0].0, [0; 16]);
        gen(IvMode::Plain).fill(n, &mut ivs);
        assert_eq!(ivs[0].0[..4], 0x0506_0708u32.to_le_bytes());
    }
}
