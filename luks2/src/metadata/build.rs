//! Building the typed objects from validated JSON (keyslots, digests), and the value
//! readers that mirror json-c's conversions.

use super::json::{JObject, JVal};
use super::model::{
    AntiForensic, Digest, DigestDump, KdfDump, Keyslot, KeyslotArea, KeyslotKdf, Priority,
    SALT_SIZE,
};
use crate::kdf::Argon2Variant;

/// `json_object_get_int` as a C `uint32_t` receives it.
pub(super) fn get_int_u32(v: &JVal) -> u32 {
    let i = v.get_int();
    u32::from_ne_bytes(i.to_ne_bytes())
}

/// The low 32 bits of `json_object_get_int64` (an `unsigned int` assignment in C).
pub(super) fn get_int64_u32(v: &JVal) -> u32 {
    let b = v.get_int64().to_le_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// cryptsetup's `crypt_base64_decode`: standard alphabet, padding required, white space
/// (space, tab, CR, LF; and NUL, which its `strchr` also matches) ignored anywhere.
pub(crate) fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let clean: Vec<u8> = s
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// cryptsetup's `hexprint_base64` input: the bytes of a base64 string field (a missing or
/// non-string field decodes as empty), `None` when it is not base64.
pub(super) fn dump_bytes(v: Option<&JVal>) -> Option<Vec<u8>> {
    base64_decode(v.and_then(JVal::as_str_bytes).unwrap_or_default())
}

/// `json_object_get_int64` as cryptsetup prints it (`PRIu64`: a negative value wraps).
pub(super) fn dump_int64(v: Option<&JVal>) -> u64 {
    u64::from_ne_bytes(v.map_or(0, JVal::get_int64).to_ne_bytes())
}

/// `json_object_get_uint64` as cryptsetup prints it (a value over `i64::MAX` as stored).
pub(super) fn dump_uint64(v: Option<&JVal>) -> u64 {
    match v {
        Some(JVal::UInt(u)) => *u,
        other => dump_int64(other),
    }
}

/// Decodes a salt as cryptsetup does when it uses it; the problem, if any, as text.
pub(super) fn decode_salt(v: Option<&JVal>, what: &str) -> Result<Vec<u8>, String> {
    let Some(v) = v else {
        return Err(format!("{what} is missing"));
    };
    // json_object_get_string_len is 0 for anything but a string.
    let bytes = v.as_str_bytes().unwrap_or_default();
    let salt = base64_decode(bytes).ok_or_else(|| format!("{what} is not valid base64"))?;
    if salt.len() != SALT_SIZE {
        return Err(format!("{what} is {} bytes, not {SALT_SIZE}", salt.len()));
    }
    Ok(salt)
}

/// A string as `json_object_get_string` gives it (non-strings as their JSON text).
pub(super) fn get_string(v: &JVal) -> String {
    match v.as_cstr() {
        Some(s) => lossy(s),
        None => lossy(&v.to_plain_bytes()),
    }
}

/// A validated keyslot object as the typed [`Keyslot`] (the reader's direction; `format.rs`
/// builds new keyslots).
pub(super) fn keyslot_from_json(k: &JObject, offset: u64, size: u64) -> Keyslot {
    let type_name = k.get("type").and_then(JVal::as_cstr).unwrap_or_default();
    let key_size = k.get("key_size").and_then(JVal::valid_u32).unwrap_or(0);
    let priority_value = k.get("priority").map_or(1, JVal::get_int);
    let priority = match priority_value {
        1 => Priority::Normal,
        2 => Priority::High,
        _ => Priority::Ignore,
    };
    let area_obj = k.get("area").and_then(JVal::as_object);
    let area = area_obj.map(|a| KeyslotArea {
        type_name: lossy(a.get("type").and_then(JVal::as_cstr).unwrap_or_default()),
        offset,
        size,
        encryption: a.get("encryption").map(get_string).unwrap_or_default(),
        key_size: a.get("key_size").map(get_int_u32).unwrap_or(0),
        dump_key_size: a.get("key_size").map(get_int64_u32).unwrap_or(0),
    });
    let mut defect = None;
    let (mut kdf, mut af, mut kdf_dump) = (None, None, None);
    if type_name == b"luks2" {
        let kdf_obj = k.get("kdf").and_then(JVal::as_object);
        if let Some(o) = kdf_obj {
            kdf_dump = Some(KdfDump {
                iterations: dump_uint64(o.get("iterations")),
                time: dump_int64(o.get("time")),
                memory: dump_int64(o.get("memory")),
                cpus: dump_int64(o.get("cpus")),
                salt: dump_bytes(o.get("salt")),
            });
            let kt = o.get("type").and_then(JVal::as_cstr).unwrap_or_default();
            let salt = || match decode_salt(o.get("salt"), "kdf.salt") {
                Ok(s) => (s, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            let num = |name: &str| o.get(name).map(get_int_u32).unwrap_or(0);
            kdf = Some(match kt {
                b"pbkdf2" => {
                    let (salt, d) = salt();
                    defect = d;
                    KeyslotKdf::Pbkdf2 {
                        hash: o.get("hash").map(get_string).unwrap_or_default(),
                        iterations: num("iterations"),
                        salt,
                    }
                }
                b"argon2i" | b"argon2id" => {
                    let (salt, d) = salt();
                    defect = d;
                    KeyslotKdf::Argon2 {
                        variant: if kt == b"argon2i" {
                            Argon2Variant::I
                        } else {
                            Argon2Variant::Id
                        },
                        time: num("time"),
                        memory_kib: num("memory"),
                        cpus: num("cpus"),
                        salt,
                    }
                }
                other => {
                    defect = Some(format!("kdf type {:?} is not supported", lossy(other)));
                    KeyslotKdf::Unknown {
                        type_name: lossy(other),
                    }
                }
            });
        }
        af = k.get("af").and_then(JVal::as_object).map(|a| AntiForensic {
            type_name: lossy(a.get("type").and_then(JVal::as_cstr).unwrap_or_default()),
            stripes: a.get("stripes").map(get_int_u32).unwrap_or(0),
            hash: a.get("hash").map(get_string).unwrap_or_default(),
        });
    }
    Keyslot {
        type_name: lossy(type_name),
        key_size,
        priority,
        priority_value,
        area,
        kdf,
        af,
        defect,
        kdf_dump,
    }
}

/// A validated digest object as the typed [`Digest`], with the keyslots and segments it names.
pub(super) fn digest_from_json(d: &JObject, keyslots: Vec<u32>, segments: Vec<u32>) -> Digest {
    let type_name = d.get("type").and_then(JVal::as_cstr).unwrap_or_default();
    let mut out = Digest {
        type_name: lossy(type_name),
        keyslots,
        segments,
        hash: String::new(),
        iterations: 0,
        salt: Vec::new(),
        digest: Vec::new(),
        defect: None,
        dump: DigestDump {
            hash: d.get("hash").map(get_string),
            iterations: dump_int64(d.get("iterations")),
            salt: dump_bytes(d.get("salt")),
            digest: dump_bytes(d.get("digest")),
        },
    };
    if type_name != b"pbkdf2" {
        out.defect = Some(format!("digest type {:?} is not supported", out.type_name));
        return out;
    }
    // PBKDF2_digest_verify reads these, in this order.
    let Some(hash) = d.get("hash") else {
        out.defect = Some("hash is missing".into());
        return out;
    };
    out.hash = get_string(hash);
    let Some(iterations) = d.get("iterations") else {
        out.defect = Some("iterations is missing".into());
        return out;
    };
    out.iterations = get_int64_u32(iterations);
    match decode_salt(d.get("salt"), "salt") {
        Ok(s) => out.salt = s,
        Err(e) => {
            out.defect = Some(e);
            return out;
        }
    }
    let Some(digest) = d.get("digest") else {
        out.defect = Some("digest is missing".into());
        return out;
    };
    match base64_decode(digest.as_str_bytes().unwrap_or_default()) {
        Some(bytes) if (20..=64).contains(&bytes.len()) => out.digest = bytes,
        Some(bytes) => {
            out.defect = Some(format!(
                "digest is {} bytes, not between 20 and 64",
                bytes.len()
            ));
        }
        None => out.defect = Some("digest is not valid base64".into()),
    }
    out
}

/// Bytes as text, invalid UTF-8 replaced.
pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
