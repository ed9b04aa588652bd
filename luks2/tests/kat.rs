//! Known-answer tests for the crypto primitives, each with its source.
//!
//! Published vectors: RFC 6070 (PBKDF2-HMAC-SHA1), RFC 7914 §11 (PBKDF2-HMAC-SHA256),
//! RFC 9106 §5 (Argon2i/Argon2id), IEEE 1619-2007 Annex B (XTS-AES).
//! Computed vectors: `tests/kat_gen.py`, which shares no code with this crate (OpenSSL through
//! Python's `cryptography` and `hashlib`, the reference Argon2 through `argon2-cffi`, and a
//! transcription of cryptsetup's `lib/luks1/af.c`).
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use luks2::af;
use luks2::cipher::{CipherSpec, SectorCipher};
use luks2::hash::HashAlg;
use luks2::kdf::{Argon2Variant, KdfParams};
use proptest::prelude::*;

/// Deterministic filler, the same as `pattern()` in `kat_gen.py`.
fn pattern(n: usize, mul: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * mul + (i >> 8)) % 256) as u8).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    let mut out = [0u8; 32];
    HashAlg::Sha256.digest_into(&[data], &mut out);
    hex::encode(out)
}

fn pbkdf2(hash: HashAlg, iterations: u32, password: &[u8], salt: &[u8], len: usize) -> String {
    let mut out = vec![0u8; len];
    KdfParams::Pbkdf2 { hash, iterations }
        .derive(password, salt, &mut out)
        .unwrap();
    hex::encode(out)
}

// ---------------------------------------------------------------------------------------------
// PBKDF2

/// Password, salt, iterations, output length, expected hex.
type Pbkdf2Row = (&'static [u8], &'static [u8], u32, usize, &'static str);

/// RFC 6070 §2, PBKDF2-HMAC-SHA1.
#[test]
fn pbkdf2_sha1_rfc6070() {
    let rows: [Pbkdf2Row; 5] = [
        (
            b"password",
            b"salt",
            1,
            20,
            "0c60c80f961f0e71f3a9b524af6012062fe037a6",
        ),
        (
            b"password",
            b"salt",
            2,
            20,
            "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957",
        ),
        (
            b"password",
            b"salt",
            4096,
            20,
            "4b007901b765489abead49d926f721d065a429c1",
        ),
        (
            b"passwordPASSWORDpassword",
            b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
            4096,
            25,
            "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038",
        ),
        (
            b"pass\0word",
            b"sa\0lt",
            4096,
            16,
            "56fa6aa75548099dcc37d7f03425e0c3",
        ),
    ];
    for (p, s, c, n, want) in rows {
        assert_eq!(pbkdf2(HashAlg::Sha1, c, p, s, n), want, "c={c}");
    }
}

/// RFC 6070 §2, the 16777216-iteration row (slow: run with `--ignored`).
#[test]
#[ignore]
fn pbkdf2_sha1_rfc6070_16777216() {
    assert_eq!(
        pbkdf2(HashAlg::Sha1, 16_777_216, b"password", b"salt", 20),
        "eefe3d61cd4da4e4e9945b3d6ba2158c2634e984"
    );
}

/// RFC 7914 §11, PBKDF2-HMAC-SHA256.
#[test]
fn pbkdf2_sha256_rfc7914() {
    assert_eq!(
        pbkdf2(HashAlg::Sha256, 1, b"passwd", b"salt", 64),
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
         49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
    );
    assert_eq!(
        pbkdf2(HashAlg::Sha256, 80000, b"Password", b"NaCl", 64),
        "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56\
         a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"
    );
}

/// kat_gen.py: `hashlib.pbkdf2_hmac(h, b"tazpod passphrase", pattern(32, 3), 1000, 64)`.
/// (Python's hashlib has no Whirlpool; its digest is checked against ISO vectors in `hash`.)
#[test]
fn pbkdf2_other_hashes_vs_openssl() {
    let salt = pattern(32, 3);
    let rows = [
        (HashAlg::Sha224, "612e89cc62629ceab7ec99af81bab3b50f87327442479cb64c0575c445d429152f92837711fc344d59c5fec0e687050fba2aad31b6e2822dfdc1b40a878f9743"),
        (HashAlg::Sha384, "2b8ecf0ff51cdc56553e20b60e170fbf797604b811fe3712218be25af89fdeb86f1f255a6637fdcb0e96ee95c340dfbcb0f97b320d3e5ad851224da4d91b4236"),
        (HashAlg::Sha512, "6405752de48eae4ed98b4d28ffac8b5b8267e8a183123a418e91754c7b2308bfaa066322168942922c927ded2f95126714cb033c1394fa4af7064953953f6e97"),
        (HashAlg::Ripemd160, "0a9c5fcbd547ba3dee64d7658f7a317c011d267dced14511b2e29b1c797baf453c042332d9d0bb78eb2fd83ced2680d7a5f2ad1e31f1fc94622ad15e44591c19"),
        (HashAlg::Sha3_256, "d0e091e63ed13d858f7f9fdca11551f797bf44e9e27ae620da27781ed64c3de17d0328f25f682ea0a9fec5d4e34fd67a3f478d617d691c97ae1637ece0630ff8"),
        (HashAlg::Sha3_512, "8acaf125a958fb4d47028ecc16b38aa73fc159293b3a851dbea7966ef633604bccd22161948629be082bd1c51e256e05aaa6ea6ab15f39ef36f6a4468a5beb91"),
    ];
    for (h, want) in rows {
        assert_eq!(
            pbkdf2(h, 1000, b"tazpod passphrase", &salt, 64),
            want,
            "{h}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Argon2

/// RFC 9106 §5.2 (Argon2i) and §5.3 (Argon2id): m = 32 KiB, t = 3, p = 4, password 32 × 0x01,
/// salt 16 × 0x02, secret 8 × 0x03, associated data 12 × 0x04, tag 32 bytes. LUKS2 uses no
/// secret or associated data, so this checks the Argon2 core through the crate directly.
#[test]
fn argon2_rfc9106() {
    for (alg, want) in [
        (
            argon2::Algorithm::Argon2i,
            "c814d9d1dc7f37aa13f0d77f2494bda1c8de6b016dd388d29952a4c4672b6ce8",
        ),
        (
            argon2::Algorithm::Argon2id,
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659",
        ),
    ] {
        let params = argon2::ParamsBuilder::new()
            .m_cost(32)
            .t_cost(3)
            .p_cost(4)
            .data(argon2::AssociatedData::new(&[4; 12]).unwrap())
            .output_len(32)
            .build()
            .unwrap();
        let ctx =
            argon2::Argon2::new_with_secret(&[3; 8], alg, argon2::Version::V0x13, params).unwrap();
        let mut out = [0u8; 32];
        ctx.hash_password_into(&[1; 32], &[2; 16], &mut out)
            .unwrap();
        assert_eq!(hex::encode(out), want, "{alg:?}");
    }
}

/// kat_gen.py: the reference Argon2 (`argon2-cffi` `hash_secret_raw`, version 19) with
/// password `tazpod passphrase` and salt `pattern(32, 5)`, as a LUKS2 keyslot would run it.
/// Includes m = 65 with p = 2 (rounded down to 64 blocks, as libargon2 does) and the minimum
/// m = 8 × p.
#[test]
fn argon2_derive_vs_reference() {
    let salt = pattern(32, 5);
    let rows = [
        (Argon2Variant::Id, 2, 256, 1, 32, "5d29d9513a3db78c59f872f2868017e8fe022b269ca692c29a3fedf904346f5c"),
        (Argon2Variant::I, 3, 1024, 4, 64, "07d9b895a625642aed99bd9d73b32a964e2baffc20cc5cfeffc33cb059bcfdbf408976099a1639d7e3b18db3b8b9f90b86820fb45bbe358928dc2e1bdd7ad36f"),
        (Argon2Variant::Id, 1, 65, 2, 32, "20be667636ea6e96d6507c7adc979c36c848d2915d82ce6ff6ca49c08a1ce692"),
        (Argon2Variant::I, 4, 32, 4, 64, "b74473d5d3814dd7f9fde99e0facc9f1bad1900d70c5c39cf709903031cc64dc7cd6b77bd8479d2854ac49ee5e61e117e9bf0f0e35567f58d8221541ecfaad1c"),
    ];
    for (variant, time, memory_kib, cpus, len, want) in rows {
        let p = KdfParams::Argon2 {
            variant,
            time,
            memory_kib,
            cpus,
        };
        let mut out = vec![0u8; len];
        p.derive(b"tazpod passphrase", &salt, &mut out).unwrap();
        assert_eq!(hex::encode(&out), want, "{}", p.describe());
    }
}

// ---------------------------------------------------------------------------------------------
// XTS-AES, IEEE 1619-2007 Annex B

/// Encrypts `ptx` as the start of one 512-byte sector with IV number `seq` (plain64 = the
/// IEEE data unit sequence number) and returns the first `ptx.len()` bytes. XTS has no
/// chaining, so a short vector's ciphertext is the prefix of the sector's.
fn xts_prefix(key: &str, seq: u64, ptx: &[u8]) -> Vec<u8> {
    let key = hex::decode(key).unwrap();
    let spec = CipherSpec::parse("aes-xts-plain64", key.len()).unwrap();
    let c = SectorCipher::new(&spec, &key).unwrap();
    let mut sector = pattern(512, 3);
    sector[..ptx.len()].copy_from_slice(ptx);
    let orig = sector.clone();
    c.encrypt(&mut sector, 512, seq).unwrap();
    let ct = sector[..ptx.len()].to_vec();
    c.decrypt(&mut sector, 512, seq).unwrap();
    assert_eq!(sector, orig);
    ct
}

/// IEEE 1619-2007 vector 1: zero keys, data unit 0, 32 zero bytes.
#[test]
fn xts_ieee1619_vector1() {
    assert_eq!(
        hex::encode(xts_prefix(&"00".repeat(32), 0, &[0; 32])),
        "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e"
    );
}

/// IEEE 1619-2007 vector 2: key1 11…, key2 22…, data unit 0x3333333333, 32 × 0x44.
#[test]
fn xts_ieee1619_vector2() {
    let key = format!("{}{}", "11".repeat(16), "22".repeat(16));
    assert_eq!(
        hex::encode(xts_prefix(&key, 0x33_3333_3333, &[0x44; 32])),
        "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0"
    );
}

/// IEEE 1619-2007 vector 3: key1 fffefd…f0, key2 22…, data unit 0x3333333333, 32 × 0x44.
#[test]
fn xts_ieee1619_vector3() {
    let key = format!("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0{}", "22".repeat(16));
    assert_eq!(
        hex::encode(xts_prefix(&key, 0x33_3333_3333, &[0x44; 32])),
        "af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89"
    );
}

const XTS_V4_CT: &str = "27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89cc78cf7f5e543445f8333d8fa7f56000005279fa5d8b5e4ad40e736ddb4d35412328063fd2aab53e5ea1e0a9f332500a5df9487d07a5c92cc512c8866c7e860ce93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad02655ea92dc4c4e41a8952c651d33174be51a10c421110e6d81588ede82103a252d8a750e8768defffed9122810aaeb99f9172af82b604dc4b8e51bcb08235a6f4341332e4ca60482a4ba1a03b3e65008fc5da76b70bf1690db4eae29c5f1badd03c5ccf2a55d705ddcd86d449511ceb7ec30bf12b1fa35b913f9f747a8afd1b130e94bff94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc1e08298516e2c9ed03ff3c1b7860f6de76d4cecd94c8119855ef5297ca67e9f3e7ff72b1e99785ca0a7e7720c5b36dc6d72cac9574c8cbbc2f801e23e56fd344b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f499027a78572aeebd74d20cc39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752afe656bb3c17256a9f6e9bf19fdd5a38fc82bbe872c5539edb609ef4f79c203ebb140f2e583cb2ad15b4aa5b655016a8449277dbd477ef2c8d6c017db738b18deb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568";

const XTS_V10_CT: &str = "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed43851ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151";

fn xts_full_sector(key: &str, seq: u64, want: &str) {
    let key = hex::decode(key).unwrap();
    let spec = CipherSpec::parse("aes-xts-plain64", key.len()).unwrap();
    let c = SectorCipher::new(&spec, &key).unwrap();
    let pt: Vec<u8> = (0..512).map(|i| (i % 256) as u8).collect();
    let mut d = pt.clone();
    c.encrypt(&mut d, 512, seq).unwrap();
    assert_eq!(hex::encode(&d), want);
    let mut d = hex::decode(want).unwrap();
    c.decrypt(&mut d, 512, seq).unwrap();
    assert_eq!(d, pt);
}

/// IEEE 1619-2007 vector 4: AES-128 keys e/π digits, data unit 0, 512 bytes 00..ff 00..ff.
#[test]
fn xts_ieee1619_vector4() {
    xts_full_sector(
        "2718281828459045235360287471352631415926535897932384626433832795",
        0,
        XTS_V4_CT,
    );
}

/// IEEE 1619-2007 vector 10: AES-256 keys, data unit 0xff, 512 bytes 00..ff 00..ff.
#[test]
fn xts_ieee1619_vector10() {
    xts_full_sector(
        "27182818284590452353602874713526624977572470936999595749669676273141592653589793238462643383279502884197169399375105820974944592",
        0xff,
        XTS_V10_CT,
    );
}

// ---------------------------------------------------------------------------------------------
// dm-crypt sector ciphers (IV generators, sector sizes, IV numbering)

/// kat_gen.py `dm_encrypt`: 3 × 4096 bytes of `pattern(.., 131)` encrypted by OpenSSL the way
/// dm-crypt does (unit i uses IV number first_iv + i × sector_size / 512; ESSIV salt =
/// SHA-256 of the whole key), key = `pattern(64, 37)[..key_size]`. Columns: spec, key size,
/// sector size, first IV, first 32 ciphertext bytes, SHA-256 of the whole ciphertext.
const DM_CASES: &[(&str, usize, usize, u64, &str, &str)] = &[
    (
        "aes-xts-plain64",
        64,
        4096,
        1099511627779,
        "9b2c508db6d56b9e0d919cc5448f3048925848296c507ae26779d100420e767c",
        "0c7da0f8c1c9342a8cd9d233790d0cdb3deef3eedc2597b3a6c0f3bc247b85fd",
    ),
    (
        "aes-xts-plain64",
        32,
        512,
        7,
        "d2ce8ebf41ff7aa4ba8c0d235f683314446a99d9e456282051ee4a1cdcad71d2",
        "28099e737427b7729acd17401ad45cf8041955c6516e28099b71fb88cdf3670f",
    ),
    (
        "aes-xts-plain",
        64,
        512,
        4294967294,
        "875f488a56180c24fc9ecafcadcb49d77c49e4fb8e15c3b544d4b2a9563fc248",
        "360c6cbf19da97fdb5548a2626936ddd1285ab4262e33bdfb808fed2a8695193",
    ),
    (
        "aes-xts-essiv:sha256",
        64,
        4096,
        8,
        "03fae3a0ed4fdf66e561d79739f1227a6943fea2bc1e8b3611bbd99affcd03c9",
        "6cf6cc744b11ead05717258b6892183c5c570a54b208d4ed7ba3b820fc16da76",
    ),
    (
        "aes-cbc-essiv:sha256",
        32,
        512,
        5,
        "259c797c8b23292382f654581549dd2871b2b2eebdc86896d068a387a630d23a",
        "279558916b80f4c9cd4ce449e69163e37c1ca1e2a40d26c51a0282149a8d8d2a",
    ),
    (
        "aes-cbc-essiv:sha256",
        16,
        4096,
        0,
        "ca5ab896130ba22396084749ad4de21090f07b4431d23af85af301d272666cdc",
        "7fe64036771514f605edd12b3eae69a082e64816ed410cdea5c8b99e672e65de",
    ),
    (
        "aes-cbc-plain64",
        32,
        512,
        8589934593,
        "66419e1d2028dba5fcbcc3fee239a189aa2e36630b0a87286cff160c08ee610e",
        "4ea13c1efc41b2e98034b3880a2ac25ecc8fa6ea8983787a6fa1790a03b2b0b6",
    ),
    (
        "aes-cbc-plain",
        24,
        1024,
        4294967295,
        "25e43f8993f0e4a68eddfc6f9a89171209f973b6372c086fc5e63f4814352595",
        "b7afdcc23243aadab6c8e1c274527a374221a9b0529328b5526946951bd69b7a",
    ),
    (
        "aes-ecb",
        32,
        512,
        0,
        "6b941d840d93ec931aed685c3939a29664af2364cef412894518e5237ed486f1",
        "fdfebd797ccc624282d3a74c9352a435620f71731f334a48e6dbd13d2e018673",
    ),
];

#[test]
fn dm_crypt_ciphers_vs_openssl() {
    let key = pattern(64, 37);
    let plain = pattern(3 * 4096, 131);
    for &(spec, ks, ss, iv, head, digest) in DM_CASES {
        let c = SectorCipher::new(&CipherSpec::parse(spec, ks).unwrap(), &key[..ks]).unwrap();
        let mut d = plain.clone();
        c.encrypt(&mut d, ss, iv).unwrap();
        assert_eq!(hex::encode(&d[..32]), head, "{spec} {ks} {ss}");
        assert_eq!(sha256_hex(&d), digest, "{spec} {ks} {ss}");
        c.decrypt(&mut d, ss, iv).unwrap();
        assert!(d == plain, "{spec} {ks} {ss}: decrypt");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// decrypt ∘ encrypt = identity for any data, sector size and IV; and one call over many
    /// sectors equals one call per sector (IV numbering).
    #[test]
    fn sector_cipher_round_trip(
        which in 0usize..6,
        shift in 0u32..4,
        sectors in 0usize..5,
        iv in any::<u64>(),
        seed in any::<u8>(),
    ) {
        let (spec, ks) = [
            ("aes-xts-plain64", 64), ("aes-xts-plain64", 32), ("aes-xts-essiv:sha256", 64),
            ("aes-cbc-essiv:sha256", 32), ("aes-cbc-plain", 16), ("aes-ecb", 24),
        ][which];
        let ss = 512usize << shift;
        let key = pattern(ks, 7 + usize::from(seed));
        let c = SectorCipher::new(&CipherSpec::parse(spec, ks).unwrap(), &key).unwrap();
        let plain = pattern(ss * sectors, 1 + 2 * usize::from(seed));
        let mut whole = plain.clone();
        c.encrypt(&mut whole, ss, iv).unwrap();
        let mut pieces = plain.clone();
        for (i, s) in pieces.chunks_mut(ss).enumerate() {
            c.encrypt(s, ss, iv.wrapping_add((i * ss / 512) as u64)).unwrap();
        }
        prop_assert_eq!(&whole, &pieces);
        c.decrypt(&mut whole, ss, iv).unwrap();
        prop_assert_eq!(whole, plain);
    }
}

// ---------------------------------------------------------------------------------------------
// Anti-forensic split

/// kat_gen.py `af_split` (cryptsetup's lib/luks1/af.c transcribed): key = `pattern(ks, 11)`,
/// stripes 0..n-2 = `pattern(ks × (n − 1), 197)`; the last stripe is the hex below. Covers
/// keys shorter than, equal to, and not a multiple of the digest size.
#[test]
fn af_merge_vs_cryptsetup_transcription() {
    let rows = [
        (HashAlg::Sha256, 32usize, 4000u32, "10b5cdc28ed1b4ea3358835ddc03a0b96f366edfbb3081765889bfe2a3fe254e"),
        (HashAlg::Sha1, 64, 4000, "7a094244f26be60378a594d5a9ee31b274ce6bb12ec249c429ec5c50e78810b0f78abb0f2610fecb0901af7932f8c4410738c29ab5b82e129d3c58f813f5d138"),
        (HashAlg::Sha512, 32, 4000, "fdd88fbc2db28656ab9d2e5e6f94eb819e8ea995cd53566b34291b5ae8a943b1"),
        (HashAlg::Ripemd160, 20, 7, "bb332fa96483218cf03962b5cdbad32b5a39b6df"),
        (HashAlg::Sha256, 33, 3, "af869499fe4921b3594eabe999997a5e699edc6d6c4a75d2dad79c25fc2b41b6d9"),
    ];
    for (h, ks, stripes, last) in rows {
        let key = pattern(ks, 11);
        let random = pattern(ks * (stripes as usize - 1), 197);
        let mut area = vec![0u8; af::split_area_len(ks, stripes).unwrap()];
        area[..random.len()].copy_from_slice(&random);
        area[random.len()..ks * stripes as usize].copy_from_slice(&hex::decode(last).unwrap());
        let mut out = vec![0u8; ks];
        af::merge(h, &area, ks, stripes, &mut out).unwrap();
        assert_eq!(out, key, "{h} {ks} {stripes}");
        // And our split produces the same last stripe.
        let mut area2 = vec![0u8; area.len()];
        af::split(h, &key, stripes, &random, &mut area2).unwrap();
        assert!(area2 == area, "{h} {ks} {stripes}: split");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// merge ∘ split = identity for any hash, key size and stripe count.
    #[test]
    fn af_split_merge_round_trip(
        which in 0usize..9,
        key in proptest::collection::vec(any::<u8>(), 1..130),
        stripes in 1u32..40,
        seed in any::<u8>(),
    ) {
        let h = luks2::hash::ALL[which];
        let ks = key.len();
        let random = pattern(ks * (stripes as usize - 1), 3 + usize::from(seed));
        let mut area = vec![0u8; af::split_area_len(ks, stripes).unwrap()];
        af::split(h, &key, stripes, &random, &mut area).unwrap();
        let mut out = vec![0u8; ks];
        af::merge(h, &area, ks, stripes, &mut out).unwrap();
        prop_assert_eq!(out, key);
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput (run in release: `cargo test --release -p luks2 --test kat -- --ignored --nocapture`)

/// Nanoseconds this thread has spent on a CPU (Linux `schedstat`), so that the figure is not
/// skewed by other processes competing for the cores; `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

#[test]
#[ignore]
fn throughput() {
    let data_len = 64 << 20;
    for (spec, ks, ss) in [
        ("aes-ecb", 32, 4096),
        ("aes-xts-plain64", 64, 512),
        ("aes-xts-plain64", 64, 4096),
        ("aes-xts-plain64", 32, 4096),
        ("aes-cbc-essiv:sha256", 32, 512),
    ] {
        let c = SectorCipher::new(&CipherSpec::parse(spec, ks).unwrap(), &pattern(ks, 9)).unwrap();
        let mut d = vec![0x5au8; data_len];
        c.decrypt(&mut d, ss, 0).unwrap(); // warm up
        let rounds = 8;
        let t = std::time::Instant::now();
        let cpu0 = thread_cpu_ns();
        for r in 0..rounds {
            if std::env::var_os("KAT_PER_CALL_4K").is_some() {
                for (i, chunk) in d.chunks_mut(4096).enumerate() {
                    c.decrypt(chunk, ss, r + 8 * i as u64).unwrap();
                }
            } else {
                c.decrypt(&mut d, ss, r).unwrap();
            }
        }
        let wall = t.elapsed().as_secs_f64();
        let bytes = data_len as f64 * rounds as f64;
        let cpu = match (cpu0, thread_cpu_ns()) {
            (Some(a), Some(b)) => format!(
                "{:.2} GB/s per CPU-second",
                bytes / ((b - a) as f64 / 1e9) / 1e9
            ),
            _ => "cpu time unknown".into(),
        };
        println!(
            "decrypt {spec} key {ks} sector {ss}: {:.2} GB/s wall, {cpu}",
            bytes / wall / 1e9
        );
    }
}

/// Argon2id at cryptsetup-like cost (256 MiB, t = 4, 4 lanes), release mode.
#[test]
#[ignore]
fn argon2_timing() {
    let p = KdfParams::Argon2 {
        variant: Argon2Variant::Id,
        time: 4,
        memory_kib: 256 * 1024,
        cpus: 4,
    };
    let mut out = [0u8; 64];
    let t = std::time::Instant::now();
    p.derive(b"tazpod passphrase", &pattern(32, 5), &mut out)
        .unwrap();
    println!("{}: {:.2} s wall", p.describe(), t.elapsed().as_secs_f64());
}
