//! Parsing the JSON area and validating it in the order of cryptsetup's
//! `LUKS2_hdr_validate`, with the field-access helpers that mirror cryptsetup's.

use super::build::{digest_from_json, get_int64_u32, get_string, keyslot_from_json, lossy};
use super::error::{Location, MetadataError, Section};
use super::json::{self, cstr, JObject, JVal, JsonType};
use super::model::{
    requirement_kind, Config, Metadata, ReqKind, Segment, SegmentSize, Token, BINARY_HEADER_SIZE,
    MAX_KEYSLOTS_SIZE, METADATA_SIZES,
};
use std::collections::{BTreeMap, HashMap, HashSet};

impl Metadata {
    /// Parses and validates the JSON text of a header whose binary header says `hdr_size`.
    ///
    /// The text is taken as if stored in a JSON area of `hdr_size - 4096` bytes padded with NUL
    /// bytes, so it must be shorter than that area and contain no NUL byte.
    pub fn parse(json: &str, hdr_size: u64) -> Result<Metadata, MetadataError> {
        let area_size = json_area_size(hdr_size)?;
        let area_len =
            usize::try_from(area_size).map_err(|_| MetadataError::BadHeaderSize { hdr_size })?;
        let text = json.as_bytes();
        if text.len() >= area_len {
            return Err(MetadataError::JsonNotTerminated { area_size });
        }
        let mut area = vec![0u8; area_len];
        if let Some(dst) = area.get_mut(..text.len()) {
            dst.copy_from_slice(text);
        }
        Metadata::parse_area(&area).map(|(m, _)| m)
    }

    /// Parses and validates a whole JSON area (the `hdr_size - 4096` bytes after a binary
    /// header), applying cryptsetup's framing rules: the area starts with `{`, the JSON text is
    /// followed by at least one NUL byte and nothing but NUL bytes. Returns the metadata and
    /// the length of the JSON text.
    pub fn parse_area(area: &[u8]) -> Result<(Metadata, usize), MetadataError> {
        Metadata::parse_area_json(area).map(|(m, _, len)| (m, len))
    }

    /// [`Metadata::parse_area`], also returning the parsed JSON object as json-c holds it
    /// (after cryptsetup's keyslot repair), which is what `cryptsetup luksDump` reads.
    pub fn parse_area_json(area: &[u8]) -> Result<(Metadata, JObject, usize), MetadataError> {
        let area_size = area.len() as u64;
        let hdr_size = area_size.saturating_add(BINARY_HEADER_SIZE);
        // cryptsetup's parse_and_validate_json: hdr_size in (4096, 4 MiB].
        if area_size == 0 || hdr_size > METADATA_SIZES[8] {
            return Err(MetadataError::BadHeaderSize { hdr_size });
        }
        if area.first() != Some(&b'{') {
            return Err(MetadataError::JsonAreaNotObject);
        }
        let (value, json_len) = json::parse(area).map_err(|e| MetadataError::JsonSyntax {
            offset: e.offset as u64,
            kind: e.kind,
        })?;
        if json_len >= area.len() {
            return Err(MetadataError::JsonNotTerminated { area_size });
        }
        if let Some(p) = area
            .get(json_len..)
            .and_then(|tail| tail.iter().position(|&b| b != 0))
        {
            return Err(MetadataError::JsonTrailingBytes {
                offset: (json_len + p) as u64,
            });
        }
        let JVal::Object(mut root) = value else {
            return Err(MetadataError::JsonAreaNotObject);
        };
        repair(&mut root);
        let m = validate(&root, area_size)?;
        Ok((m, *root, json_len))
    }
}

/// JSON area size for a binary header `hdr_size`, as cryptsetup's `parse_and_validate_json`
/// accepts it (above 4096, at most 4 MiB).
pub(super) fn json_area_size(hdr_size: u64) -> Result<u64, MetadataError> {
    if hdr_size <= BINARY_HEADER_SIZE || hdr_size > METADATA_SIZES[8] {
        return Err(MetadataError::BadHeaderSize { hdr_size });
    }
    Ok(hdr_size - BINARY_HEADER_SIZE)
}

/// cryptsetup's `LUKS2_hdr_repair`: drops leftover KDF parameters of other KDF types from
/// `luks2` keyslots (cryptsetup < 2.0.3 could leave them). cryptsetup runs it only when the
/// first validation fails; running it first gives the same verdict, because a header that
/// validates has no leftovers.
pub(super) fn repair(root: &mut JObject) {
    let Some(JVal::Object(keyslots)) = root.get_mut("keyslots") else {
        return;
    };
    let ids: Vec<Vec<u8>> = keyslots.iter().map(|(k, _)| k.to_vec()).collect();
    for id in ids {
        let Some(JVal::Object(ks)) = keyslots_get_mut(keyslots, &id) else {
            continue;
        };
        if ks.get("type").and_then(JVal::as_cstr) != Some(b"luks2".as_slice()) {
            continue;
        }
        let Some(JVal::Object(kdf)) = ks.get_mut("kdf") else {
            continue;
        };
        let keep: &[&[u8]] = match kdf.get("type").and_then(JVal::as_cstr) {
            Some(b"pbkdf2") => &[b"type", b"salt", b"hash", b"iterations"],
            Some(b"argon2i" | b"argon2id") => &[b"type", b"salt", b"time", b"memory", b"cpus"],
            _ => continue,
        };
        kdf.retain_keys(|k| keep.contains(&k));
    }
}

pub(super) fn keyslots_get_mut<'a>(o: &'a mut JObject, key: &[u8]) -> Option<&'a mut JVal> {
    let k = std::str::from_utf8(key).ok()?;
    o.get_mut(k)
}

// ---------------------------------------------------------------------------------------------
// Field access helpers (cryptsetup's json_contains / json_contains_string / numbered / ...)

pub(super) type R<T> = Result<T, MetadataError>;

/// The object of an entry, or `NotAnObject`.
pub(super) fn as_obj(v: &JVal, at: Location) -> R<&JObject> {
    v.as_object().ok_or(MetadataError::NotAnObject {
        at,
        found: v.json_type(),
    })
}

/// `json_contains(obj, field, type)`: present and of `ty`.
pub(super) fn need<'a>(
    o: &'a JObject,
    at: Location,
    key: &str,
    field: &'static str,
    ty: JsonType,
) -> R<&'a JVal> {
    let v = o
        .get(key)
        .ok_or(MetadataError::MissingField { at, field })?;
    if v.json_type() != ty {
        return Err(MetadataError::WrongType {
            at,
            field,
            expected: ty,
            found: v.json_type(),
        });
    }
    Ok(v)
}

pub(super) fn need_obj<'a>(
    o: &'a JObject,
    at: Location,
    key: &str,
    field: &'static str,
) -> R<&'a JObject> {
    let v = need(o, at, key, field, JsonType::Object)?;
    v.as_object()
        .ok_or(MetadataError::MissingField { at, field })
}

pub(super) fn need_arr<'a>(
    o: &'a JObject,
    at: Location,
    key: &str,
    field: &'static str,
) -> R<&'a [JVal]> {
    let v = need(o, at, key, field, JsonType::Array)?;
    v.as_array()
        .ok_or(MetadataError::MissingField { at, field })
}

/// `json_contains_string`: a string whose C view is not empty. Returns the C view.
pub(super) fn need_str<'a>(
    o: &'a JObject,
    at: Location,
    key: &str,
    field: &'static str,
) -> R<&'a [u8]> {
    let v = need(o, at, key, field, JsonType::String)?;
    let s = v.as_cstr().unwrap_or_default();
    if s.is_empty() {
        return Err(MetadataError::EmptyString { at, field });
    }
    Ok(s)
}

/// A `json_type_int` field.
pub(super) fn need_int<'a>(
    o: &'a JObject,
    at: Location,
    key: &str,
    field: &'static str,
) -> R<&'a JVal> {
    need(o, at, key, field, JsonType::Int)
}

/// A `json_type_int` field that passes `validate_json_uint32`.
pub(super) fn need_u32(o: &JObject, at: Location, key: &str, field: &'static str) -> R<u32> {
    let v = need_int(o, at, key, field)?;
    v.valid_u32()
        .ok_or_else(|| MetadataError::NumberOutOfRange {
            at,
            field,
            value: lossy(&v.to_plain_bytes()),
        })
}

/// `numbered()` then `json_str_to_uint64()` on a non-empty string.
pub(super) fn digits_u64(s: &[u8], at: Location, field: &'static str) -> R<u64> {
    if !s.iter().all(u8::is_ascii_digit) {
        return Err(MetadataError::NotANumber {
            at,
            field,
            value: lossy(s),
        });
    }
    json::strtoull_whole(s).ok_or_else(|| MetadataError::NumberOutOfRange {
        at,
        field,
        value: lossy(s),
    })
}

/// `json_str_to_uint64()` alone (as `config` uses it: `strtoull` rules, sign and leading
/// white space allowed).
pub(super) fn strtoull_u64(s: &[u8], at: Location, field: &'static str) -> R<u64> {
    json::strtoull_whole(s).ok_or_else(|| {
        let digits_only = s.iter().all(u8::is_ascii_digit);
        if digits_only {
            MetadataError::NumberOutOfRange {
                at,
                field,
                value: lossy(s),
            }
        } else {
            MetadataError::NotANumber {
                at,
                field,
                value: lossy(s),
            }
        }
    })
}

/// An optional array of strings (segment and config `flags`, `requirements.mandatory`).
pub(super) fn string_array<'a>(
    arr: &'a [JVal],
    at: Location,
    field: &'static str,
) -> R<Vec<&'a [u8]>> {
    arr.iter()
        .enumerate()
        .map(|(index, v)| {
            v.as_cstr().ok_or(MetadataError::BadArrayElement {
                at,
                field,
                index,
                found: v.json_type(),
            })
        })
        .collect()
}

/// Parses a canonical object id.
pub(super) fn canonical_id(key: &[u8]) -> Option<u32> {
    if key.is_empty() || (key.len() > 1 && key.first() == Some(&b'0')) {
        return None;
    }
    if !key.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(key).ok()?.parse::<u32>().ok()
}

/// A section as (id, value) pairs in JSON order, with ids checked.
pub(super) struct Sect<'a> {
    entries: Vec<(u32, &'a [u8], &'a JVal)>,
    obj: &'a JObject,
}

impl<'a> Sect<'a> {
    fn new(obj: &'a JObject, section: Section) -> R<Sect<'a>> {
        let mut entries = Vec::with_capacity(obj.len());
        for (k, v) in obj.iter() {
            match canonical_id(k) {
                Some(id) => entries.push((id, k, v)),
                None => {
                    let key = lossy(k);
                    return Err(if k.iter().all(u8::is_ascii_digit) {
                        MetadataError::IdNotCanonical { section, key }
                    } else {
                        MetadataError::IdNotNumeric { section, key }
                    });
                }
            }
        }
        Ok(Sect { entries, obj })
    }

    /// Whether `name` (a C string) names an entry that is an object (cryptsetup's
    /// `json_contains(section, name, json_type_object)`).
    fn has_object(&self, name: &[u8]) -> bool {
        matches!(self.obj.get_bytes(name), Some(JVal::Object(_)))
    }
}

/// Checks that every element of a `keyslots`/`segments` reference array is a string naming
/// an existing object of `target` (cryptsetup's `validate_keyslots_array` and
/// `validate_segments_array`), returning the referenced ids.
pub(super) fn references(
    arr: &[JVal],
    at: Location,
    field: &'static str,
    target: Option<&Sect<'_>>,
) -> R<Vec<u32>> {
    let mut ids = Vec::with_capacity(arr.len());
    for (index, v) in arr.iter().enumerate() {
        let name = v.as_cstr().ok_or(MetadataError::BadArrayElement {
            at,
            field,
            index,
            found: v.json_type(),
        })?;
        let dangling = || MetadataError::DanglingReference {
            at,
            field,
            target: lossy(name),
        };
        let Some(sect) = target else {
            return Err(dangling());
        };
        if !sect.has_object(name) {
            return Err(dangling());
        }
        // Existing keys are canonical, so the name parses.
        ids.push(canonical_id(name).ok_or_else(dangling)?);
    }
    Ok(ids)
}

/// cryptsetup's `reencrypt_candidate_flag`: `online-reencrypt` or `online-reencrypt-v<digits>`.
pub(super) fn reencrypt_candidate(name: &[u8]) -> bool {
    if name == b"online-reencrypt" {
        return true;
    }
    match name.strip_prefix(b"online-reencrypt-v") {
        Some(rest) => !rest.is_empty() && rest.iter().all(u8::is_ascii_digit),
        None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Validation, in the order of cryptsetup's LUKS2_hdr_validate.

pub(super) fn validate(root: &JObject, json_area_size: u64) -> R<Metadata> {
    let at = Location::Root;
    // Ids of all sections (cryptsetup's numbered(), plus the canonical-u32 rule).
    let sect = |name: &str, section: Section| -> R<Option<Sect<'_>>> {
        match root.get(name) {
            Some(JVal::Object(o)) => Sect::new(o, section).map(Some),
            _ => Ok(None),
        }
    };
    let keyslots_s = sect("keyslots", Section::Keyslots)?;
    let tokens_s = sect("tokens", Section::Tokens)?;
    let segments_s = sect("segments", Section::Segments)?;
    let digests_s = sect("digests", Section::Digests)?;

    // 1. hdr_validate_requirements
    let config = need_obj(root, at, "config", "config")?;
    let mut mandatory: Vec<&[u8]> = Vec::new();
    if let Some(req) = config.get("requirements") {
        let req = req.as_object().ok_or(MetadataError::WrongType {
            at: Location::Config,
            field: "requirements",
            expected: JsonType::Object,
            found: req.json_type(),
        })?;
        if req.get("mandatory").is_some() {
            let arr = need_arr(req, Location::Config, "mandatory", "requirements.mandatory")?;
            mandatory = string_array(arr, Location::Config, "requirements.mandatory")?;
        }
    }
    if mandatory.iter().filter(|m| reencrypt_candidate(m)).count() > 1 {
        return Err(MetadataError::MultipleReencryptRequirements);
    }
    let online_reencrypt = mandatory
        .iter()
        .any(|m| requirement_kind(m) == ReqKind::Online);

    // 2. hdr_validate_tokens
    need_obj(root, at, "tokens", "tokens")?;
    let tokens_s = tokens_s.ok_or(MetadataError::MissingField {
        at,
        field: "tokens",
    })?;
    let mut token_refs: Vec<Vec<u32>> = Vec::with_capacity(tokens_s.entries.len());
    for &(id, _, v) in &tokens_s.entries {
        let tat = Location::Token(id);
        if root.get("keyslots").is_none() {
            return Err(MetadataError::MissingField {
                at,
                field: "keyslots",
            });
        }
        let t = as_obj(v, tat)?;
        need_str(t, tat, "type", "type")?;
        let arr = need_arr(t, tat, "keyslots", "keyslots")?;
        token_refs.push(references(arr, tat, "keyslots", keyslots_s.as_ref())?);
    }

    // 3. hdr_validate_digests
    need_obj(root, at, "digests", "digests")?;
    need_obj(root, at, "keyslots", "keyslots")?;
    need_obj(root, at, "segments", "segments")?;
    let digests_s = digests_s.ok_or(MetadataError::MissingField {
        at,
        field: "digests",
    })?;
    let keyslots_s = keyslots_s.ok_or(MetadataError::MissingField {
        at,
        field: "keyslots",
    })?;
    let segments_s = segments_s.ok_or(MetadataError::MissingField {
        at,
        field: "segments",
    })?;
    let mut digest_refs: Vec<(Vec<u32>, Vec<u32>)> = Vec::with_capacity(digests_s.entries.len());
    for &(id, _, v) in &digests_s.entries {
        let dat = Location::Digest(id);
        let d = as_obj(v, dat)?;
        need_str(d, dat, "type", "type")?;
        let ks = need_arr(d, dat, "keyslots", "keyslots")?;
        let ss = need_arr(d, dat, "segments", "segments")?;
        let k = references(ks, dat, "keyslots", Some(&keyslots_s))?;
        let s = references(ss, dat, "segments", Some(&segments_s))?;
        digest_refs.push((k, s));
    }
    // Segment ids listed by any digest (segment_has_digest).
    let digested_segments: HashSet<u32> = digest_refs
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .collect();

    // 4. hdr_validate_segments
    let segs = validate_segments(&segments_s, &digested_segments, online_reencrypt)?;

    // 5. hdr_validate_keyslots
    for &(id, _, v) in &keyslots_s.entries {
        let kat = Location::Keyslot(id);
        let k = as_obj(v, kat)?;
        need_str(k, kat, "type", "type")?;
        need_u32(k, kat, "key_size", "key_size")?;
    }

    // 6. hdr_validate_config
    let cat = Location::Config;
    let json_size = strtoull_u64(
        need_str(config, cat, "json_size", "json_size")?,
        cat,
        "json_size",
    )?;
    let keyslots_size = strtoull_u64(
        need_str(config, cat, "keyslots_size", "keyslots_size")?,
        cat,
        "keyslots_size",
    )?;
    let metadata_size = json_size.wrapping_add(BINARY_HEADER_SIZE);
    if !METADATA_SIZES.contains(&metadata_size) {
        return Err(MetadataError::UnsupportedMetadataSize {
            size: metadata_size,
        });
    }
    if keyslots_size % 4096 != 0 || keyslots_size > MAX_KEYSLOTS_SIZE {
        return Err(MetadataError::BadKeyslotsSize {
            size: keyslots_size,
        });
    }
    // json_segments_get_minimal_offset over regular segments (0 means detached header).
    let mut data_offset = u64::MAX;
    for s in segs.values() {
        if s.backup {
            continue;
        }
        if s.offset == 0 {
            data_offset = 0;
            break;
        }
        data_offset = data_offset.min(s.offset);
    }
    let area_start = 2 * metadata_size;
    if data_offset != 0 && (data_offset < keyslots_size || data_offset - keyslots_size < area_start)
    {
        return Err(MetadataError::KeyslotsAreaTooLarge {
            keyslots_size,
            data_offset,
            area_start,
        });
    }
    let mut config_flags: Vec<&[u8]> = Vec::new();
    if config.get("flags").is_some() {
        let arr = need_arr(config, cat, "flags", "flags")?;
        config_flags = string_array(arr, cat, "flags")?;
    }

    // 7. hdr_validate_areas
    let areas_end = area_start + keyslots_size;
    let mut intervals: Vec<(u32, u64, u64)> = Vec::with_capacity(keyslots_s.entries.len());
    for &(id, _, v) in &keyslots_s.entries {
        let kat = Location::Keyslot(id);
        let k = as_obj(v, kat)?;
        let area = need_obj(k, kat, "area", "area")?;
        need_str(area, kat, "type", "area.type")?;
        let off = need_str(area, kat, "offset", "area.offset")?;
        let len = need_str(area, kat, "size", "area.size")?;
        let off = digits_u64(off, kat, "area.offset")?;
        let len = digits_u64(len, kat, "area.size")?;
        intervals.push((id, off, len));
    }
    validate_areas(&intervals, metadata_size, areas_end)?;

    // 8. hdr_validate_json_size
    if json_size != json_area_size {
        return Err(MetadataError::JsonSizeMismatch {
            config: json_size,
            header: json_area_size,
        });
    }
    let serialized = root.plain_len();
    if serialized > json_size {
        return Err(MetadataError::JsonTooLarge {
            serialized,
            area: json_size,
        });
    }

    // 9. LUKS2_keyslots_validate
    let mut digests_per_keyslot: HashMap<u32, usize> = HashMap::new();
    for (ks, _) in &digest_refs {
        let uniq: HashSet<u32> = ks.iter().copied().collect();
        for k in uniq {
            *digests_per_keyslot.entry(k).or_insert(0) += 1;
        }
    }
    let mut reencrypt_count = 0usize;
    for &(id, _, v) in &keyslots_s.entries {
        let kat = Location::Keyslot(id);
        let k = as_obj(v, kat)?;
        match k.get("type").and_then(JVal::as_cstr) {
            Some(b"luks2") => {
                validate_luks2_keyslot(k, kat)?;
                let count = digests_per_keyslot.get(&id).copied().unwrap_or(0);
                if count != 1 {
                    return Err(MetadataError::KeyslotDigestCount { keyslot: id, count });
                }
            }
            Some(b"reencrypt") => {
                validate_reencrypt_keyslot(k, kat)?;
                reencrypt_count += 1;
            }
            _ => {}
        }
    }
    if online_reencrypt && reencrypt_count == 0 {
        return Err(MetadataError::MissingReencryptKeyslot);
    }
    if reencrypt_count > 0 && !mandatory.iter().any(|m| reencrypt_candidate(m)) {
        return Err(MetadataError::ReencryptKeyslotWithoutRequirement);
    }
    if reencrypt_count > 1 {
        return Err(MetadataError::TooManyReencryptKeyslots {
            count: reencrypt_count,
        });
    }

    // Build the typed result.
    let mut keyslots = BTreeMap::new();
    let mut keyslot_order = Vec::with_capacity(keyslots_s.entries.len());
    for (&(id, _, v), &(_, off, len)) in keyslots_s.entries.iter().zip(&intervals) {
        let k = as_obj(v, Location::Keyslot(id))?;
        keyslots.insert(id, keyslot_from_json(k, off, len));
        keyslot_order.push(id);
    }
    let mut tokens = BTreeMap::new();
    for (&(id, _, v), refs) in tokens_s.entries.iter().zip(token_refs) {
        let t = as_obj(v, Location::Token(id))?;
        tokens.insert(
            id,
            Token {
                type_name: lossy(t.get("type").and_then(JVal::as_cstr).unwrap_or_default()),
                keyslots: refs,
                key_description: t.get("key_description").and_then(JVal::as_cstr).map(lossy),
                json: lossy(&v.to_plain_bytes()),
            },
        );
    }
    let mut digests = BTreeMap::new();
    let mut digest_order = Vec::with_capacity(digests_s.entries.len());
    for (&(id, _, v), (ks, ss)) in digests_s.entries.iter().zip(digest_refs) {
        let d = as_obj(v, Location::Digest(id))?;
        digests.insert(id, digest_from_json(d, ks, ss));
        digest_order.push(id);
    }
    let segments = segs.into_iter().map(|(id, s)| (id, s.segment)).collect();
    Ok(Metadata {
        keyslots,
        tokens,
        segments,
        digests,
        config: Config {
            json_size,
            keyslots_size,
            flags: config_flags.iter().map(|f| lossy(f)).collect(),
            requirements_mandatory: mandatory.iter().map(|f| lossy(f)).collect(),
        },
        keyslot_order,
        digest_order,
    })
}

/// A segment as validated, with what later checks need.
pub(super) struct SegInfo {
    segment: Segment,
    offset: u64,
    /// 0 for dynamic (as cryptsetup's `json_segment_get_size`).
    size: u64,
    backup: bool,
    /// `json_segment_get_sector_size` (for `json_segment_cmp`).
    cmp_sector_size: u32,
    cipher_cmp: Vec<u8>,
    type_cmp: Vec<u8>,
}

/// cryptsetup's `hdr_validate_segments` (with `hdr_validate_crypt_segment`,
/// `validate_segment_intervals` and `validate_reencrypt_segments`).
pub(super) fn validate_segments(
    sect: &Sect<'_>,
    digested: &HashSet<u32>,
    online_reencrypt: bool,
) -> R<BTreeMap<u32, SegInfo>> {
    let count = sect.entries.len();
    if count < 1 {
        return Err(MetadataError::NoSegments);
    }
    let mut first_backup: Option<u32> = None;
    let mut out = BTreeMap::new();
    for &(id, _, v) in &sect.entries {
        let at = Location::Segment(id);
        let s = as_obj(v, at)?;
        let type_name = need_str(s, at, "type", "type")?;
        let offset = need_str(s, at, "offset", "offset")?;
        let size_s = need_str(s, at, "size", "size")?;
        let offset = digits_u64(offset, at, "offset")?;
        let (size, seg_size) = if size_s == b"dynamic" {
            (0, SegmentSize::Dynamic)
        } else {
            let n = digits_u64(size_s, at, "size")?;
            if n == 0 {
                return Err(MetadataError::Zero { at, field: "size" });
            }
            (n, SegmentSize::Fixed(n))
        };
        if offset % 512 != 0 {
            return Err(MetadataError::Misaligned {
                at,
                field: "offset",
                value: offset,
                alignment: 512,
            });
        }
        if size % 512 != 0 {
            return Err(MetadataError::Misaligned {
                at,
                field: "size",
                value: size,
                alignment: 512,
            });
        }
        let mut flags: Vec<&[u8]> = Vec::new();
        if s.get("flags").is_some() {
            let arr = need_arr(s, at, "flags", "flags")?;
            flags = string_array(arr, at, "flags")?;
        }
        let backup = flags.iter().any(|f| f.starts_with(b"backup-"));
        if backup {
            if first_backup.is_none_or(|b| id < b) {
                first_backup = Some(id);
            }
        } else if let Some(b) = first_backup {
            if id >= b {
                return Err(MetadataError::RegularSegmentAfterBackup {
                    segment: id,
                    backup: b,
                });
            }
        }
        let mut seg = Segment {
            type_name: lossy(type_name),
            offset,
            size: seg_size,
            iv_tweak: 0,
            encryption: String::new(),
            sector_size: 512,
            integrity: None,
            flags: flags.iter().map(|f| lossy(f)).collect(),
            dump_cipher: s.get("encryption").map(get_string),
            dump_sector_size: s.get("sector_size").map(get_int64_u32),
        };
        if type_name == b"crypt" {
            validate_crypt_segment(s, at, size, &mut seg)?;
            if !digested.contains(&id) {
                return Err(MetadataError::SegmentWithoutDigest { segment: id });
            }
        }
        // json_segment_get_sector_size: json_object_get_int, negative gives 512.
        let cmp_sector_size = match s.get("sector_size") {
            None => 512,
            Some(v) => u32::try_from(v.get_int()).unwrap_or(512),
        };
        let cipher_cmp = match s.get("encryption") {
            None => b"null".to_vec(),
            Some(JVal::Str(b)) => cstr(b).to_vec(),
            Some(other) => other.to_plain_bytes(),
        };
        out.insert(
            id,
            SegInfo {
                segment: seg,
                offset,
                size,
                backup,
                cmp_sector_size,
                cipher_cmp,
                type_cmp: type_name.to_vec(),
            },
        );
    }
    let count_u32 = u32::try_from(count).unwrap_or(u32::MAX);
    if first_backup == Some(0) {
        return Err(MetadataError::NoRegularSegment);
    }
    if let Some(b) = first_backup {
        if b >= count_u32 {
            // A gap between the last regular segment and the backup segment.
            let missing = (0..count_u32).find(|i| !out.contains_key(i)).unwrap_or(b);
            return Err(MetadataError::SegmentIdGap { missing });
        }
    }
    let regular = first_backup.unwrap_or(count_u32);
    let mut intervals: Vec<(u32, u64, u64)> = Vec::with_capacity(regular as usize);
    for i in 0..regular {
        let s = out
            .get(&i)
            .ok_or(MetadataError::SegmentIdGap { missing: i })?;
        let len = if s.size == 0 { u64::MAX } else { s.size };
        intervals.push((i, s.offset, len));
    }
    validate_segment_intervals(&intervals)?;
    for i in regular..count_u32 {
        if !out.contains_key(&i) {
            return Err(MetadataError::SegmentIdGap { missing: i });
        }
    }
    if online_reencrypt {
        validate_reencrypt_segments(&out, regular, count_u32)?;
    }
    Ok(out)
}

/// cryptsetup's `hdr_validate_crypt_segment` (the digest check is done by the caller).
pub(super) fn validate_crypt_segment(
    s: &JObject,
    at: Location,
    size: u64,
    seg: &mut Segment,
) -> R<()> {
    let iv = need_str(s, at, "iv_tweak", "iv_tweak")?;
    let enc = need_str(s, at, "encryption", "encryption")?;
    let ss = need_int(s, at, "sector_size", "sector_size")?;
    if s.get("integrity").is_some() {
        let integ = need_obj(s, at, "integrity", "integrity")?;
        let t = need_str(integ, at, "type", "integrity.type")?;
        need_str(
            integ,
            at,
            "journal_encryption",
            "integrity.journal_encryption",
        )?;
        need_str(
            integ,
            at,
            "journal_integrity",
            "integrity.journal_integrity",
        )?;
        seg.integrity = Some(lossy(t));
    }
    let sector_size = ss
        .valid_u32()
        .ok_or_else(|| MetadataError::NumberOutOfRange {
            at,
            field: "sector_size",
            value: lossy(&ss.to_plain_bytes()),
        })?;
    if sector_size == 0 {
        return Err(MetadataError::Zero {
            at,
            field: "sector_size",
        });
    }
    if sector_size % 512 != 0 {
        return Err(MetadataError::Misaligned {
            at,
            field: "sector_size",
            value: u64::from(sector_size),
            alignment: 512,
        });
    }
    let iv_tweak = digits_u64(iv, at, "iv_tweak")?;
    if size % u64::from(sector_size) != 0 {
        return Err(MetadataError::Misaligned {
            at,
            field: "size",
            value: size,
            alignment: u64::from(sector_size),
        });
    }
    seg.iv_tweak = iv_tweak;
    seg.encryption = lossy(enc);
    // cryptsetup reads it back with json_object_get_int (clamped to i32::MAX).
    seg.sector_size = u32::try_from(ss.get_int()).unwrap_or(512);
    Ok(())
}

/// cryptsetup's `validate_segment_intervals` over regular segments 0..n (length `u64::MAX`
/// stands for dynamic). Overlaps are found by sorting, which finds one exactly when the
/// pairwise check does.
pub(super) fn validate_segment_intervals(ix: &[(u32, u64, u64)]) -> R<()> {
    let n = ix.len();
    for (pos, &(id, _, len)) in ix.iter().enumerate() {
        if len == u64::MAX && pos + 1 != n {
            return Err(MetadataError::DynamicSegmentNotLast { segment: id });
        }
    }
    // The pairwise loop checks offset+length overflow of every segment when there are two or
    // more.
    if n >= 2 {
        for &(id, off, len) in ix {
            if len != u64::MAX && off.checked_add(len).is_none() {
                return Err(MetadataError::SegmentEndOverflow { segment: id });
            }
        }
    }
    let mut sorted: Vec<&(u32, u64, u64)> = ix.iter().collect();
    sorted.sort_by_key(|&&(id, off, _)| (off, id));
    for w in sorted.windows(2) {
        if let [&(a, aoff, alen), &(b, boff, _)] = w {
            let overlaps = boff == aoff || alen == u64::MAX || boff < aoff.saturating_add(alen);
            if overlaps {
                let (first, second) = if a < b { (a, b) } else { (b, a) };
                return Err(MetadataError::SegmentsOverlap { first, second });
            }
        }
    }
    Ok(())
}

/// cryptsetup's `validate_reencrypt_segments` (only with an online-reencrypt requirement).
pub(super) fn validate_reencrypt_segments(
    segs: &BTreeMap<u32, SegInfo>,
    first_backup: u32,
    count: u32,
) -> R<()> {
    let mut backup_final = None;
    let mut backup_previous = None;
    for i in first_backup..count {
        let s = segs
            .get(&i)
            .ok_or(MetadataError::SegmentIdGap { missing: i })?;
        let flags = &s.segment.flags;
        if flags.iter().any(|f| f == "backup-final") {
            backup_final = Some(s);
        } else if flags.iter().any(|f| f == "backup-previous") {
            backup_previous = Some(s);
        }
    }
    let fin = backup_final.ok_or(MetadataError::MissingBackupSegment {
        flag: "backup-final",
    })?;
    let prev = backup_previous.ok_or(MetadataError::MissingBackupSegment {
        flag: "backup-previous",
    })?;
    let same = |a: &SegInfo, b: &SegInfo| {
        a.type_cmp == b.type_cmp
            && (a.type_cmp != b"crypt"
                || (a.cmp_sector_size == b.cmp_sector_size && a.cipher_cmp == b.cipher_cmp))
    };
    for i in 0..first_backup {
        let s = segs
            .get(&i)
            .ok_or(MetadataError::SegmentIdGap { missing: i })?;
        let ok = if s.segment.flags.iter().any(|f| f == "in-reencryption") {
            same(s, fin)
        } else {
            same(s, fin) || same(s, prev)
        };
        if !ok {
            return Err(MetadataError::ReencryptSegmentMismatch { segment: i });
        }
    }
    Ok(())
}

/// cryptsetup's `validate_intervals` for keyslot areas, in JSON order. Overlaps are found by
/// sorting, which finds one exactly when the pairwise check does.
pub(super) fn validate_areas(ix: &[(u32, u64, u64)], metadata_size: u64, end_limit: u64) -> R<()> {
    let minimum = 2 * metadata_size;
    for &(id, off, len) in ix {
        let at = Location::Keyslot(id);
        if off < minimum {
            return Err(MetadataError::AreaInsideMetadata {
                keyslot: id,
                offset: off,
                minimum,
            });
        }
        if len == 0 {
            return Err(MetadataError::Zero {
                at,
                field: "area.size",
            });
        }
        let end = off
            .checked_add(len)
            .ok_or(MetadataError::AreaEndOverflow { keyslot: id })?;
        if end > end_limit {
            return Err(MetadataError::AreaBeyondKeyslotsArea {
                keyslot: id,
                end,
                limit: end_limit,
            });
        }
    }
    let mut sorted: Vec<&(u32, u64, u64)> = ix.iter().collect();
    sorted.sort_by_key(|&&(id, off, _)| (off, id));
    for w in sorted.windows(2) {
        if let [&(a, aoff, alen), &(b, boff, _)] = w {
            if boff < aoff.saturating_add(alen) {
                let (first, second) = if a < b { (a, b) } else { (b, a) };
                return Err(MetadataError::AreasOverlap { first, second });
            }
        }
    }
    Ok(())
}

/// cryptsetup's `luks2_keyslot_validate` (after its repair of leftover KDF fields).
pub(super) fn validate_luks2_keyslot(k: &JObject, at: Location) -> R<()> {
    let kdf = need_obj(k, at, "kdf", "kdf")?;
    let af = need_obj(k, at, "af", "af")?;
    let area = need_obj(k, at, "area", "area")?;
    let kdf_type = need_str(kdf, at, "type", "kdf.type")?;
    match kdf_type {
        b"pbkdf2" => {
            need_str(kdf, at, "hash", "kdf.hash")?;
            need_int(kdf, at, "iterations", "kdf.iterations")?;
            need_str(kdf, at, "salt", "kdf.salt")?;
        }
        b"argon2i" | b"argon2id" => {
            need_int(kdf, at, "time", "kdf.time")?;
            need_int(kdf, at, "memory", "kdf.memory")?;
            need_int(kdf, at, "cpus", "kdf.cpus")?;
            need_str(kdf, at, "salt", "kdf.salt")?;
        }
        _ => {}
    }
    let af_type = need_str(af, at, "type", "af.type")?;
    if af_type != b"luks1" {
        return Err(MetadataError::UnsupportedValue {
            at,
            field: "af.type",
            value: lossy(af_type),
        });
    }
    need_str(af, at, "hash", "af.hash")?;
    need_int(af, at, "stripes", "af.stripes")?;
    let area_type = need_str(area, at, "type", "area.type")?;
    if area_type != b"raw" {
        return Err(MetadataError::UnsupportedValue {
            at,
            field: "area.type",
            value: lossy(area_type),
        });
    }
    need_str(area, at, "encryption", "area.encryption")?;
    need_int(area, at, "key_size", "area.key_size")?;
    need_str(area, at, "offset", "area.offset")?;
    need_str(area, at, "size", "area.size")?;
    Ok(())
}

/// cryptsetup's `reenc_keyslot_validate`.
pub(super) fn validate_reencrypt_keyslot(k: &JObject, at: Location) -> R<()> {
    let area = need_obj(k, at, "area", "area")?;
    let area_type =
        area.get("type")
            .and_then(JVal::as_cstr)
            .ok_or(MetadataError::MissingField {
                at,
                field: "area.type",
            })?;
    let key_size = need_int(k, at, "key_size", "key_size")?;
    let mode = need_str(k, at, "mode", "mode")?;
    let direction = need_str(k, at, "direction", "direction")?;
    if key_size.valid_u32() != Some(1) {
        return Err(MetadataError::UnsupportedValue {
            at,
            field: "key_size",
            value: lossy(&key_size.to_plain_bytes()),
        });
    }
    if !matches!(mode, b"reencrypt" | b"encrypt" | b"decrypt") {
        return Err(MetadataError::UnsupportedValue {
            at,
            field: "mode",
            value: lossy(mode),
        });
    }
    if !matches!(direction, b"forward" | b"backward") {
        return Err(MetadataError::UnsupportedValue {
            at,
            field: "direction",
            value: lossy(direction),
        });
    }
    match area_type {
        b"checksum" | b"datashift-checksum" => {
            need_str(area, at, "hash", "area.hash")?;
            let ss = need_int(area, at, "sector_size", "area.sector_size")?;
            let v = ss
                .valid_u32()
                .ok_or_else(|| MetadataError::NumberOutOfRange {
                    at,
                    field: "area.sector_size",
                    value: lossy(&ss.to_plain_bytes()),
                })?;
            if v < 512 || !v.is_power_of_two() {
                return Err(MetadataError::UnsupportedValue {
                    at,
                    field: "area.sector_size",
                    value: v.to_string(),
                });
            }
        }
        b"datashift" | b"datashift-journal" => {
            let shift = need_str(area, at, "shift_size", "area.shift_size")?;
            // crypt_jobj_get_uint64: json_str_to_uint64, 0 on failure.
            let v = json::strtoull_whole(shift).unwrap_or(0);
            if v == 0 {
                return Err(MetadataError::Zero {
                    at,
                    field: "area.shift_size",
                });
            }
            if v % 512 != 0 {
                return Err(MetadataError::Misaligned {
                    at,
                    field: "area.shift_size",
                    value: v,
                    alignment: 512,
                });
            }
        }
        _ => {}
    }
    Ok(())
}
