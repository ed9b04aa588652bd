//! Test support: builds LUKS2 images (binary headers + JSON areas + checksums) and a corpus of
//! metadata variants, each breaking (or deliberately bending) exactly one rule, with the result
//! cryptsetup 2.6 gives. Shared by the `header_*` and `metadata_*` test crates.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use luks2::metadata::{JsonErrorKind, JsonType, Location, MetadataError, Section};
use serde_json::{json, Value};
use sha2::Digest as _;

/// Binary header + JSON area size used by the corpus.
pub const HDR_SIZE: u64 = 16384;
/// Keyslots area size used by the corpus.
pub const KEYSLOTS_SIZE: u64 = 32768;
/// Data offset: 2 × HDR_SIZE + KEYSLOTS_SIZE.
pub const DATA_OFFSET: u64 = 65536;
/// Device size for corpus images (header, keyslots area and 64 KiB of data).
pub const DEV_SIZE: u64 = 131072;

/// Base64 of bytes 0..32 (keyslot salt).
pub const KS_SALT: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Base64 of bytes 100..132 (digest salt).
pub const DG_SALT: &str = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";
/// Base64 of bytes 200..232 (digest).
pub const DG_DIGEST: &str = "yMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f4OHi4+Tl5uc=";

/// A valid metadata text in cryptsetup's key order: one luks2 keyslot, one crypt segment,
/// one digest, no tokens.
pub fn base_json() -> String {
    format!(
        concat!(
            r#"{{"keyslots":{{"0":{{"type":"luks2","key_size":64,"#,
            r#""af":{{"type":"luks1","stripes":4000,"hash":"sha256"}},"#,
            r#""area":{{"type":"raw","offset":"32768","size":"4096","encryption":"aes-xts-plain64","key_size":64}},"#,
            r#""kdf":{{"type":"pbkdf2","hash":"sha256","iterations":1000,"salt":"{ks}"}}}}}},"#,
            r#""tokens":{{}},"#,
            r#""segments":{{"0":{{"type":"crypt","offset":"65536","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}}}},"#,
            r#""digests":{{"0":{{"type":"pbkdf2","keyslots":["0"],"segments":["0"],"hash":"sha256","iterations":1000,"salt":"{ds}","digest":"{dd}"}}}},"#,
            r#""config":{{"json_size":"12288","keyslots_size":"32768"}}}}"#
        ),
        ks = KS_SALT,
        ds = DG_SALT,
        dd = DG_DIGEST
    )
}

/// The base metadata as a `serde_json::Value`, for mutation.
pub fn base_value() -> Value {
    serde_json::from_str(&base_json()).unwrap()
}

/// The base metadata changed by `f`, as text (keys sorted, which cryptsetup does not mind).
pub fn with(f: impl FnOnce(&mut Value)) -> String {
    let mut v = base_value();
    f(&mut v);
    v.to_string()
}

/// Sets the value at a JSON pointer whose parent exists.
pub fn set(v: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let p = if parent.is_empty() {
        v
    } else {
        v.pointer_mut(parent).unwrap()
    };
    p.as_object_mut().unwrap().insert(key.to_string(), new);
}

/// Removes the value at a JSON pointer.
pub fn del(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let p = if parent.is_empty() {
        v
    } else {
        v.pointer_mut(parent).unwrap()
    };
    p.as_object_mut().unwrap().remove(key);
}

/// Renames an object id within a section, and every reference to it.
pub fn rename_keyslot(v: &mut Value, new: &str) {
    let ks = v["keyslots"].as_object_mut().unwrap().remove("0").unwrap();
    v["keyslots"]
        .as_object_mut()
        .unwrap()
        .insert(new.into(), ks);
    v["digests"]["0"]["keyslots"] = json!([new]);
}

/// One corpus entry.
pub struct Case {
    /// What is changed.
    pub name: &'static str,
    /// The JSON text.
    pub json: Vec<u8>,
    /// The result cryptsetup 2.6 gives (`Ok` = loads), with our exact error.
    pub expect: Result<(), MetadataError>,
    /// Whether cryptsetup agrees (false only for our documented stricter id rule).
    pub cryptsetup_loads: bool,
}

fn case(name: &'static str, json: String, expect: Result<(), MetadataError>) -> Case {
    let loads = expect.is_ok();
    Case {
        name,
        json: json.into_bytes(),
        expect,
        cryptsetup_loads: loads,
    }
}

fn ok(name: &'static str, json: String) -> Case {
    case(name, json, Ok(()))
}

fn ks() -> Location {
    Location::Keyslot(0)
}

fn seg() -> Location {
    Location::Segment(0)
}

/// A second luks2 keyslot "1" (copy of "0" with area at `offset`), listed by digest 0.
fn add_keyslot_1(v: &mut Value, offset: &str) {
    let mut k1 = v["keyslots"]["0"].clone();
    k1["area"]["offset"] = json!(offset);
    v["keyslots"]["1"] = k1;
    v["digests"]["0"]["keyslots"] = json!(["0", "1"]);
}

/// A valid reencrypt keyslot.
fn reencrypt_keyslot() -> Value {
    json!({"type":"reencrypt","key_size":1,"mode":"reencrypt","direction":"forward",
           "area":{"type":"none","offset":"40960","size":"4096"}})
}

/// The corpus. Every case's text is complete JSON metadata for a 16 KiB header.
pub fn corpus() -> Vec<Case> {
    use MetadataError as E;
    let base = base_json();
    let mut c = vec![
        ok("base", base.clone()),
        // --- leniencies cryptsetup has (they must load) -------------------------------------
        ok("unknown keyslot type", with(|v| {
            set(v, "/keyslots/1", json!({"type":"future","key_size":32,
                "area":{"type":"whatever","offset":"36864","size":"4096"}}));
        })),
        ok("unknown kdf type", with(|v| set(v, "/keyslots/0/kdf/type", json!("scrypt")))),
        ok("leftover kdf field (repaired)", with(|v| set(v, "/keyslots/0/kdf/time", json!(4)))),
        ok("unknown config flag", with(|v| set(v, "/config/flags", json!(["allow-discards", "x-future"])))),
        ok("unknown mandatory requirement", with(|v| set(v, "/config/requirements", json!({"mandatory":["x-future"]})))),
        ok("unknown token type", with(|v| set(v, "/tokens/0", json!({"type":"x-token","keyslots":["0"],"blob":{"a":[1,2.5,null]}})))),
        ok("sector size 1536 (dm-crypt refuses, cryptsetup loads)", with(|v| set(v, "/segments/0/sector_size", json!(1536)))),
        ok("salt not base64 (fails only on use)", with(|v| set(v, "/keyslots/0/kdf/salt", json!("!!")))),
        ok("digest without hash (fails only on use)", with(|v| del(v, "/digests/0/hash"))),
        ok("unknown digest type", with(|v| set(v, "/digests/0/type", json!("x-digest")))),
        ok("priority 2", with(|v| set(v, "/keyslots/0/priority", json!(2)))),
        ok("priority as string", with(|v| set(v, "/keyslots/0/priority", json!("0")))),
        ok("integrity", with(|v| set(v, "/segments/0/integrity", json!({"type":"hmac(sha256)","journal_encryption":"none","journal_integrity":"none"})))),
        ok("json_size with plus sign", with(|v| set(v, "/config/json_size", json!("+12288")))),
        ok("detached header (segment offset 0)", with(|v| set(v, "/segments/0/offset", json!("0")))),
        ok("area at the very end", with(|v| set(v, "/keyslots/0/area/offset", json!("61440")))),
        ok("adjacent areas", with(|v| add_keyslot_1(v, "36864"))),
        ok("fixed size segment", with(|v| set(v, "/segments/0/size", json!("65536")))),
        ok("two segments", with(|v| {
            set(v, "/segments/0/size", json!("4096"));
            let mut s1 = v["segments"]["0"].clone();
            s1["offset"] = json!("69632");
            s1["size"] = json!("dynamic");
            v["segments"]["1"] = s1;
            v["digests"]["0"]["segments"] = json!(["0", "1"]);
        })),
        ok("linear segment needs no digest", with(|v| {
            set(v, "/segments/0/size", json!("4096"));
            v["segments"]["1"] = json!({"type":"linear","offset":"69632","size":"dynamic"});
        })),
        ok("keyslots_size 0", with(|v| {
            set(v, "/config/keyslots_size", json!("0"));
            set(v, "/keyslots", json!({}));
            set(v, "/digests/0/keyslots", json!([]));
        })),
        ok("key_size 0", with(|v| set(v, "/keyslots/0/key_size", json!(0)))),
        ok("area key_size negative (fails only on use)", with(|v| set(v, "/keyslots/0/area/key_size", json!(-1)))),
        ok("iterations huge (fails only on use)", with(|v| set(v, "/keyslots/0/kdf/iterations", json!(u64::MAX)))),
        // json-c syntax leniencies
        ok("comment", base.replacen("\"tokens\":{}", "\"tokens\":/* c */{}", 1)),
        ok("line comment", base.replacen("\"tokens\":{}", "\"tokens\"://c\n{}", 1)),
        ok("trailing comma", base.replacen("\"tokens\":{}", "\"tokens\":{\"0\":{\"type\":\"t\",\"keyslots\":[],},}", 1)),
        ok("single quotes", base.replacen("\"tokens\":{}", "'tokens':{'0':{'type':'t','keyslots':[]}}", 1)),
        ok("leading zero int", base.replacen("\"key_size\":64,\"af\"", "\"key_size\":064,\"af\"", 1)),
        ok("NaN Infinity True", base.replacen("\"tokens\":{}", "\"tokens\":{\"0\":{\"type\":\"t\",\"keyslots\":[],\"x\":[NaN,-Infinity,True,NULL]}}", 1)),
        ok("white space after text", format!("{base} \n\t")),
        ok("comment after text", format!("{base}/* trailing */")),
        ok("duplicate key, last wins", base.replacen("\"tokens\":{}", "\"tokens\":5,\"tokens\":{}", 1)),
        ok("escaped NUL in string", base.replacen("\"tokens\":{}", "\"tokens\":{\"0\":{\"type\":\"t\\u0000x\",\"keyslots\":[]}}", 1)),
        ok("raw control byte in string", base.replacen("\"tokens\":{}", "\"tokens\":{\"0\":{\"type\":\"t\u{1}x\",\"keyslots\":[]}}", 1)),
        ok("nesting depth 31", base.replacen("\"tokens\":{}", &format!("\"tokens\":{{\"0\":{{\"type\":\"t\",\"keyslots\":[],\"d\":{}{}}}}}", "[".repeat(29), "]".repeat(29)), 1)),
        // --- framing and syntax -------------------------------------------------------------
        case("leading white space", format!(" {base}"), Err(E::JsonAreaNotObject)),
        case("trailing garbage", format!("{base}x"), Err(E::JsonTrailingBytes { offset: base.len() as u64 })),
        case("syntax error", base.replacen("\"tokens\":{}", "\"tokens\":{]", 1),
             Err(E::JsonSyntax { offset: base.find("\"tokens\"").unwrap() as u64 + 10, kind: JsonErrorKind::Unexpected })),
        case("nesting depth 32", base.replacen("\"tokens\":{}", &format!("\"tokens\":{{\"0\":{{\"type\":\"t\",\"keyslots\":[],\"d\":{}{}}}}}", "[".repeat(30), "]".repeat(30)), 1),
             Err(E::JsonSyntax { offset: base.find("\"tokens\"").unwrap() as u64 + 73, kind: JsonErrorKind::TooDeep })),
        case("plus sign on int", base.replacen("\"key_size\":64,\"af\"", "\"key_size\":+64,\"af\"", 1),
             Err(E::JsonSyntax { offset: base.find("\"key_size\":64").unwrap() as u64 + 11, kind: JsonErrorKind::Unexpected })),
        case("unquoted key", base.replacen("\"tokens\":{}", "tokens:{}", 1),
             Err(E::JsonSyntax { offset: base.find("\"tokens\"").unwrap() as u64, kind: JsonErrorKind::Unexpected })),
        // --- sections -----------------------------------------------------------------------
        case("no keyslots", with(|v| del(v, "/keyslots")), Err(E::MissingField { at: Location::Root, field: "keyslots" })),
        case("keyslots is an array", with(|v| set(v, "/keyslots", json!([]))),
             Err(E::WrongType { at: Location::Root, field: "keyslots", expected: JsonType::Object, found: JsonType::Array })),
        case("no tokens", with(|v| del(v, "/tokens")), Err(E::MissingField { at: Location::Root, field: "tokens" })),
        case("no digests", with(|v| del(v, "/digests")), Err(E::MissingField { at: Location::Root, field: "digests" })),
        case("no segments", with(|v| del(v, "/segments")), Err(E::MissingField { at: Location::Root, field: "segments" })),
        case("no config", with(|v| del(v, "/config")), Err(E::MissingField { at: Location::Root, field: "config" })),
        case("keyslot id not numeric", with(|v| rename_keyslot(v, "a")), Err(E::IdNotNumeric { section: Section::Keyslots, key: "a".into() })),
        // --- tokens -------------------------------------------------------------------------
        case("token without type", with(|v| set(v, "/tokens/0", json!({"keyslots":[]}))),
             Err(E::MissingField { at: Location::Token(0), field: "type" })),
        case("token names missing keyslot", with(|v| set(v, "/tokens/0", json!({"type":"t","keyslots":["3"]}))),
             Err(E::DanglingReference { at: Location::Token(0), field: "keyslots", target: "3".into() })),
        case("token keyslots not array", with(|v| set(v, "/tokens/0", json!({"type":"t","keyslots":"0"}))),
             Err(E::WrongType { at: Location::Token(0), field: "keyslots", expected: JsonType::Array, found: JsonType::String })),
        case("token is not an object", with(|v| set(v, "/tokens/0", json!(1))),
             Err(E::NotAnObject { at: Location::Token(0), found: JsonType::Int })),
        // --- digests ------------------------------------------------------------------------
        case("digest without type", with(|v| del(v, "/digests/0/type")), Err(E::MissingField { at: Location::Digest(0), field: "type" })),
        case("digest without segments", with(|v| del(v, "/digests/0/segments")), Err(E::MissingField { at: Location::Digest(0), field: "segments" })),
        case("digest names missing keyslot", with(|v| set(v, "/digests/0/keyslots", json!(["0", "5"]))),
             Err(E::DanglingReference { at: Location::Digest(0), field: "keyslots", target: "5".into() })),
        case("digest names missing segment", with(|v| set(v, "/digests/0/segments", json!(["1"]))),
             Err(E::DanglingReference { at: Location::Digest(0), field: "segments", target: "1".into() })),
        case("digest keyslot as integer", with(|v| set(v, "/digests/0/keyslots", json!([0]))),
             Err(E::BadArrayElement { at: Location::Digest(0), field: "keyslots", index: 0, found: JsonType::Int })),
        case("digest names non-canonical keyslot", with(|v| set(v, "/digests/0/keyslots", json!(["00"]))),
             Err(E::DanglingReference { at: Location::Digest(0), field: "keyslots", target: "00".into() })),
        // --- segments -----------------------------------------------------------------------
        case("segments empty", with(|v| {
            set(v, "/segments", json!({}));
            set(v, "/digests/0/segments", json!([]));
        }), Err(E::NoSegments)),
        case("segment not digested", with(|v| set(v, "/digests/0/segments", json!([]))), Err(E::SegmentWithoutDigest { segment: 0 })),
        case("segment offset misaligned", with(|v| set(v, "/segments/0/offset", json!("65537"))),
             Err(E::Misaligned { at: seg(), field: "offset", value: 65537, alignment: 512 })),
        case("segment offset not a number", with(|v| set(v, "/segments/0/offset", json!("0x100"))),
             Err(E::NotANumber { at: seg(), field: "offset", value: "0x100".into() })),
        case("segment offset overflows", with(|v| set(v, "/segments/0/offset", json!("18446744073709551616"))),
             Err(E::NumberOutOfRange { at: seg(), field: "offset", value: "18446744073709551616".into() })),
        case("segment offset as integer", with(|v| set(v, "/segments/0/offset", json!(65536))),
             Err(E::WrongType { at: seg(), field: "offset", expected: JsonType::String, found: JsonType::Int })),
        case("segment size zero", with(|v| set(v, "/segments/0/size", json!("0"))), Err(E::Zero { at: seg(), field: "size" })),
        case("segment size misaligned", with(|v| set(v, "/segments/0/size", json!("1000"))),
             Err(E::Misaligned { at: seg(), field: "size", value: 1000, alignment: 512 })),
        case("segment size not sector multiple", with(|v| {
            set(v, "/segments/0/size", json!("1024"));
            set(v, "/segments/0/sector_size", json!(4096));
        }), Err(E::Misaligned { at: seg(), field: "size", value: 1024, alignment: 4096 })),
        case("sector size zero", with(|v| set(v, "/segments/0/sector_size", json!(0))), Err(E::Zero { at: seg(), field: "sector_size" })),
        case("sector size misaligned", with(|v| set(v, "/segments/0/sector_size", json!(1000))),
             Err(E::Misaligned { at: seg(), field: "sector_size", value: 1000, alignment: 512 })),
        case("sector size as string", with(|v| set(v, "/segments/0/sector_size", json!("512"))),
             Err(E::WrongType { at: seg(), field: "sector_size", expected: JsonType::Int, found: JsonType::String })),
        case("sector size negative", with(|v| set(v, "/segments/0/sector_size", json!(-512))),
             Err(E::NumberOutOfRange { at: seg(), field: "sector_size", value: "-512".into() })),
        case("iv_tweak negative", with(|v| set(v, "/segments/0/iv_tweak", json!("-1"))),
             Err(E::NotANumber { at: seg(), field: "iv_tweak", value: "-1".into() })),
        case("iv_tweak as integer", with(|v| set(v, "/segments/0/iv_tweak", json!(0))),
             Err(E::WrongType { at: seg(), field: "iv_tweak", expected: JsonType::String, found: JsonType::Int })),
        case("encryption empty", with(|v| set(v, "/segments/0/encryption", json!(""))), Err(E::EmptyString { at: seg(), field: "encryption" })),
        case("segment type empty", with(|v| set(v, "/segments/0/type", json!(""))), Err(E::EmptyString { at: seg(), field: "type" })),
        case("integrity incomplete", with(|v| set(v, "/segments/0/integrity", json!({"type":"hmac(sha256)","journal_integrity":"none"}))),
             Err(E::MissingField { at: seg(), field: "integrity.journal_encryption" })),
        case("segment flags not array", with(|v| set(v, "/segments/0/flags", json!("x"))),
             Err(E::WrongType { at: seg(), field: "flags", expected: JsonType::Array, found: JsonType::String })),
        case("segment flag not string", with(|v| set(v, "/segments/0/flags", json!([1]))),
             Err(E::BadArrayElement { at: seg(), field: "flags", index: 0, found: JsonType::Int })),
        case("segment id gap", with(|v| {
            let s = v["segments"].as_object_mut().unwrap().remove("0").unwrap();
            v["segments"]["1"] = s;
            v["digests"]["0"]["segments"] = json!(["1"]);
        }), Err(E::SegmentIdGap { missing: 0 })),
        case("dynamic segment not last", with(|v| {
            let mut s1 = v["segments"]["0"].clone();
            s1["offset"] = json!("69632");
            s1["size"] = json!("4096");
            v["segments"]["1"] = s1;
            v["digests"]["0"]["segments"] = json!(["0", "1"]);
        }), Err(E::DynamicSegmentNotLast { segment: 0 })),
        case("segments overlap", with(|v| {
            set(v, "/segments/0/size", json!("8192"));
            let mut s1 = v["segments"]["0"].clone();
            s1["offset"] = json!("69632");
            s1["size"] = json!("dynamic");
            v["segments"]["1"] = s1;
            v["digests"]["0"]["segments"] = json!(["0", "1"]);
        }), Err(E::SegmentsOverlap { first: 0, second: 1 })),
        case("only a backup segment", with(|v| set(v, "/segments/0/flags", json!(["backup-final"]))), Err(E::NoRegularSegment)),
        // --- keyslots -----------------------------------------------------------------------
        case("keyslot without type", with(|v| del(v, "/keyslots/0/type")), Err(E::MissingField { at: ks(), field: "type" })),
        case("keyslot type empty", with(|v| set(v, "/keyslots/0/type", json!(""))), Err(E::EmptyString { at: ks(), field: "type" })),
        case("key_size as string", with(|v| set(v, "/keyslots/0/key_size", json!("64"))),
             Err(E::WrongType { at: ks(), field: "key_size", expected: JsonType::Int, found: JsonType::String })),
        case("key_size as fraction", with(|v| set(v, "/keyslots/0/key_size", json!(64.5))),
             Err(E::WrongType { at: ks(), field: "key_size", expected: JsonType::Int, found: JsonType::Double })),
        case("key_size negative", with(|v| set(v, "/keyslots/0/key_size", json!(-1))),
             Err(E::NumberOutOfRange { at: ks(), field: "key_size", value: "-1".into() })),
        case("key_size above u32", with(|v| set(v, "/keyslots/0/key_size", json!(4294967296u64))),
             Err(E::NumberOutOfRange { at: ks(), field: "key_size", value: "4294967296".into() })),
        case("no kdf", with(|v| del(v, "/keyslots/0/kdf")), Err(E::MissingField { at: ks(), field: "kdf" })),
        case("kdf without salt", with(|v| del(v, "/keyslots/0/kdf/salt")), Err(E::MissingField { at: ks(), field: "kdf.salt" })),
        case("kdf iterations as string", with(|v| set(v, "/keyslots/0/kdf/iterations", json!("1000"))),
             Err(E::WrongType { at: ks(), field: "kdf.iterations", expected: JsonType::Int, found: JsonType::String })),
        case("argon2 without memory", with(|v| set(v, "/keyslots/0/kdf", json!({"type":"argon2id","time":4,"cpus":1,"salt":KS_SALT}))),
             Err(E::MissingField { at: ks(), field: "kdf.memory" })),
        case("af type not luks1", with(|v| set(v, "/keyslots/0/af/type", json!("luks2"))),
             Err(E::UnsupportedValue { at: ks(), field: "af.type", value: "luks2".into() })),
        case("af without stripes", with(|v| del(v, "/keyslots/0/af/stripes")), Err(E::MissingField { at: ks(), field: "af.stripes" })),
        case("area type not raw", with(|v| set(v, "/keyslots/0/area/type", json!("journal"))),
             Err(E::UnsupportedValue { at: ks(), field: "area.type", value: "journal".into() })),
        case("area without encryption", with(|v| del(v, "/keyslots/0/area/encryption")),
             Err(E::MissingField { at: ks(), field: "area.encryption" })),
        case("no area", with(|v| del(v, "/keyslots/0/area")), Err(E::MissingField { at: ks(), field: "area" })),
        case("keyslot in no digest", with(|v| set(v, "/digests/0/keyslots", json!([]))), Err(E::KeyslotDigestCount { keyslot: 0, count: 0 })),
        case("keyslot in two digests", with(|v| {
            let d = v["digests"]["0"].clone();
            v["digests"]["1"] = d;
        }), Err(E::KeyslotDigestCount { keyslot: 0, count: 2 })),
        // --- keyslot areas ------------------------------------------------------------------
        case("area offset not a number", with(|v| set(v, "/keyslots/0/area/offset", json!("abc"))),
             Err(E::NotANumber { at: ks(), field: "area.offset", value: "abc".into() })),
        case("area inside metadata", with(|v| set(v, "/keyslots/0/area/offset", json!("16384"))),
             Err(E::AreaInsideMetadata { keyslot: 0, offset: 16384, minimum: 32768 })),
        case("area size zero", with(|v| set(v, "/keyslots/0/area/size", json!("0"))), Err(E::Zero { at: ks(), field: "area.size" })),
        case("area beyond keyslots area", with(|v| set(v, "/keyslots/0/area/offset", json!("61952"))),
             Err(E::AreaBeyondKeyslotsArea { keyslot: 0, end: 66048, limit: 65536 })),
        case("area end overflows", with(|v| set(v, "/keyslots/0/area/offset", json!("18446744073709551615"))),
             Err(E::AreaEndOverflow { keyslot: 0 })),
        case("areas overlap", with(|v| add_keyslot_1(v, "36352")), Err(E::AreasOverlap { first: 0, second: 1 })),
        // --- config -------------------------------------------------------------------------
        case("json_size not allowed", with(|v| set(v, "/config/json_size", json!("16384"))), Err(E::UnsupportedMetadataSize { size: 20480 })),
        case("json_size not a number", with(|v| set(v, "/config/json_size", json!("12k"))),
             Err(E::NotANumber { at: Location::Config, field: "json_size" , value: "12k".into() })),
        case("json_size as integer", with(|v| set(v, "/config/json_size", json!(12288))),
             Err(E::WrongType { at: Location::Config, field: "json_size", expected: JsonType::String, found: JsonType::Int })),
        case("keyslots_size misaligned", with(|v| set(v, "/config/keyslots_size", json!("32000"))), Err(E::BadKeyslotsSize { size: 32000 })),
        case("keyslots_size above 128 MiB", with(|v| set(v, "/config/keyslots_size", json!("134221824"))), Err(E::BadKeyslotsSize { size: 134221824 })),
        case("keyslots area runs into data", with(|v| set(v, "/config/keyslots_size", json!("36864"))),
             Err(E::KeyslotsAreaTooLarge { keyslots_size: 36864, data_offset: 65536, area_start: 32768 })),
        case("config flags not array", with(|v| set(v, "/config/flags", json!("allow-discards"))),
             Err(E::WrongType { at: Location::Config, field: "flags", expected: JsonType::Array, found: JsonType::String })),
        case("requirements not object", with(|v| set(v, "/config/requirements", json!([]))),
             Err(E::WrongType { at: Location::Config, field: "requirements", expected: JsonType::Object, found: JsonType::Array })),
        case("mandatory element not string", with(|v| set(v, "/config/requirements", json!({"mandatory":[5]}))),
             Err(E::BadArrayElement { at: Location::Config, field: "requirements.mandatory", index: 0, found: JsonType::Int })),
        case("two online-reencrypt requirements", with(|v| set(v, "/config/requirements", json!({"mandatory":["online-reencrypt","online-reencrypt-v9"]}))),
             Err(E::MultipleReencryptRequirements)),
        case("online reencryption without backup segments", with(|v| set(v, "/config/requirements", json!({"mandatory":["online-reencrypt-v2"]}))),
             Err(E::MissingBackupSegment { flag: "backup-final" })),
        case("reencrypt keyslot without requirement", with(|v| set(v, "/keyslots/1", reencrypt_keyslot())),
             Err(E::ReencryptKeyslotWithoutRequirement)),
        case("reencrypt keyslot with bad mode", with(|v| {
            let mut k = reencrypt_keyslot();
            k["mode"] = json!("sideways");
            set(v, "/keyslots/1", k);
        }), Err(E::UnsupportedValue { at: Location::Keyslot(1), field: "mode", value: "sideways".into() })),
        // --- size of the serialized JSON ----------------------------------------------------
        case("serialized JSON too large", base.replacen("\"tokens\":{}",
                &format!("\"tokens\":{{\"0\":{{\"type\":\"t\",\"keyslots\":[],\"x\":\"{}\"}}}}", "\u{1}".repeat(2500)), 1),
             Err(E::JsonTooLarge { serialized: base.len() as u64 + 37 + 6 * 2500, area: 12288 })),
    ];
    // Our one deliberate difference: cryptsetup loads non-canonical ids (here a token "01").
    let mut id01 = case(
        "token id with leading zero",
        with(|v| set(v, "/tokens/01", json!({"type":"t","keyslots":[]}))),
        Err(E::IdNotCanonical {
            section: Section::Tokens,
            key: "01".into(),
        }),
    );
    id01.cryptsetup_loads = true;
    c.push(id01);
    // cryptsetup itself rejects a keyslot "07" named as "07" by its digest: it looks the
    // keyslot up as "7" when counting digests.
    c.push(case(
        "keyslot id with leading zero",
        with(|v| rename_keyslot(v, "07")),
        Err(E::IdNotCanonical {
            section: Section::Keyslots,
            key: "07".into(),
        }),
    ));
    c
}

// ---------------------------------------------------------------------------------------------
// Binary images

/// Writes a big-endian u16 at `pos`.
pub fn put_u16(img: &mut [u8], pos: usize, v: u16) {
    img[pos..pos + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u64 at `pos`.
pub fn put_u64(img: &mut [u8], pos: usize, v: u64) {
    img[pos..pos + 8].copy_from_slice(&v.to_be_bytes());
}

/// Hashes `data` with the named checksum algorithm (the ones tests use).
pub fn hash(alg: &str, data: &[u8]) -> Vec<u8> {
    match alg {
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha512" => sha2::Sha512::digest(data).to_vec(),
        "whirlpool" => whirlpool::Whirlpool::digest(data).to_vec(),
        other => panic!("test hash {other} not supported"),
    }
}

/// Recomputes the checksum of the copy at `at`, using the `hdr_size` and `checksum_alg`
/// stored in its binary header.
pub fn fix_checksum(img: &mut [u8], at: usize) {
    let hdr_size = u64::from_be_bytes(img[at + 8..at + 16].try_into().unwrap()) as usize;
    let alg_field = &img[at + 72..at + 104];
    let alg_end = alg_field.iter().position(|&b| b == 0).unwrap();
    let alg = std::str::from_utf8(&alg_field[..alg_end])
        .unwrap()
        .to_ascii_lowercase();
    img[at + 448..at + 512].fill(0);
    let sum = hash(&alg, &img[at..at + hdr_size]);
    img[at + 448..at + 448 + sum.len()].copy_from_slice(&sum);
}

/// Parameters of one header copy.
#[derive(Clone)]
pub struct CopySpec {
    /// Binary header + JSON area size.
    pub hdr_size: u64,
    /// Sequence id.
    pub seqid: u64,
    /// Checksum algorithm name.
    pub alg: &'static str,
    /// JSON text.
    pub json: Vec<u8>,
    /// Label.
    pub label: &'static str,
}

impl CopySpec {
    /// A copy of `json` in a 16 KiB header, seqid 1, sha256.
    pub fn new(json: impl Into<Vec<u8>>) -> Self {
        CopySpec {
            hdr_size: HDR_SIZE,
            seqid: 1,
            alg: "sha256",
            json: json.into(),
            label: "",
        }
    }
}

/// UUID used in test images.
pub const UUID: &str = "3e4ae3b0-3f1a-4ac7-9d08-1f2e3d4c5b6a";

/// Writes a copy (binary header with the right magic and offset, JSON area, checksum) at `at`.
pub fn write_copy(img: &mut Vec<u8>, at: u64, secondary: bool, spec: &CopySpec) {
    let at_u = at as usize;
    let end = at_u + spec.hdr_size as usize;
    if img.len() < end {
        img.resize(end, 0);
    }
    img[at_u..end].fill(0);
    let h = &mut img[at_u..end];
    h[0..6].copy_from_slice(if secondary {
        b"SKUL\xba\xbe"
    } else {
        b"LUKS\xba\xbe"
    });
    put_u16(h, 6, 2);
    put_u64(h, 8, spec.hdr_size);
    put_u64(h, 16, spec.seqid);
    h[24..24 + spec.label.len()].copy_from_slice(spec.label.as_bytes());
    h[72..72 + spec.alg.len()].copy_from_slice(spec.alg.as_bytes());
    h[104..168].fill(if secondary { 0x22 } else { 0x11 });
    h[168..168 + UUID.len()].copy_from_slice(UUID.as_bytes());
    put_u64(h, 256, at);
    h[4096..4096 + spec.json.len()].copy_from_slice(&spec.json);
    fix_checksum(img, at_u);
}

/// An image with both copies of `spec` (secondary at `hdr_size`) and `dev_size` bytes.
pub fn image(spec: &CopySpec, dev_size: u64) -> Vec<u8> {
    let mut img = vec![0u8; dev_size as usize];
    write_copy(&mut img, 0, false, spec);
    write_copy(&mut img, spec.hdr_size, true, spec);
    img.resize(dev_size as usize, 0);
    img
}

/// The standard good image: base metadata in both copies, 128 KiB device.
pub fn good_image() -> Vec<u8> {
    image(&CopySpec::new(base_json()), DEV_SIZE)
}

/// Real cryptsetup-made headers.
pub mod cryptsetup_luks1;
/// Real cryptsetup-made headers.
pub mod cryptsetup_luks2;
