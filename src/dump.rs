//! `tazpod dump`: the header in cryptsetup `luksDump`'s layout, the metadata as JSON, and the
//! volume key dump.

use luks2::header::{CopyProblem, Header, HeaderCopy, Luks2Header};
use luks2::luks1::Luks1Header;
use luks2::metadata::{JsonObject, JsonValue, KeyslotKdf, SegmentSize};
use luks2::volume::DataSegment;
use luks2::VolumeKey;
use std::fmt::Write as _;

/// Appends `bytes` as lowercase hex, each byte followed by `sep`, breaking after every `wrap`
/// bytes (except after the last) with `wrap_sep` (cryptsetup's `crypt_log_hex`).
fn hex_wrapped(out: &mut String, bytes: &[u8], sep: &str, wrap: usize, wrap_sep: &str) {
    for (i, b) in bytes.iter().enumerate() {
        let _ = write!(out, "{b:02x}{sep}");
        if wrap > 0 && (i + 1) % wrap == 0 && i + 1 < bytes.len() {
            out.push_str(wrap_sep);
        }
    }
}

/// One line for standard error when a LUKS2 header copy was not used (damaged, or older than
/// the other): which copy was used, why the other was not, and how to repair it. `None` when
/// both copies are intact and current (and for LUKS1, which has one header).
pub fn copy_warning(header: &Header, device: &str) -> Option<String> {
    let Header::Luks2(h) = header else {
        return None;
    };
    let problem = h.other_copy.as_ref()?;
    let (used, other) = match h.used_copy {
        HeaderCopy::Primary => ("primary", "secondary"),
        HeaderCopy::Secondary => ("secondary", "primary"),
    };
    let fix = match problem {
        CopyProblem::Stale { .. } => "bring it up to date",
        _ => "rewrite it from the good copy",
    };
    Some(format!(
        "tazpod: warning: {device}: using the {used} header copy (offset {}); the {other} copy \
         was not used: {problem}; to {fix}: cryptsetup repair {device} (tazpod does not write \
         headers when reading)",
        h.binary.hdr_offset
    ))
}

/// The human-readable dump, byte for byte as `cryptsetup luksDump` prints it.
pub fn human(header: &Header, device: &str) -> String {
    match header {
        Header::Luks2(h) => luks2_human(h),
        Header::Luks1(h) => luks1_human(h, device),
    }
}

fn luks2_human(h: &Luks2Header) -> String {
    let b = &h.binary;
    let md = &h.metadata;
    let mut o = String::new();
    o.push_str("LUKS header information\n");
    let _ = writeln!(o, "Version:       \t{}", b.version);
    let _ = writeln!(o, "Epoch:         \t{}", b.seqid);
    let _ = writeln!(o, "Metadata area: \t{} [bytes]", b.hdr_size);
    let _ = writeln!(o, "Keyslots area: \t{} [bytes]", md.config.keyslots_size);
    let or = |s: &str, none: &str| {
        if s.is_empty() {
            none.to_string()
        } else {
            s.to_string()
        }
    };
    let _ = writeln!(o, "UUID:          \t{}", or(&b.uuid, "(no UUID)"));
    let _ = writeln!(o, "Label:         \t{}", or(&b.label, "(no label)"));
    let _ = writeln!(o, "Subsystem:     \t{}", or(&b.subsystem, "(no subsystem)"));

    // Config: flags and requirements.
    o.push_str("Flags:       \t");
    for f in &md.config.flags {
        let _ = write!(o, "{f} ");
    }
    let reqs = &md.config.requirements_mandatory;
    let _ = write!(
        o,
        "{}\n{}",
        if md.config.flags.is_empty() {
            "(no flags)"
        } else {
            ""
        },
        if reqs.is_empty() { "\n" } else { "" }
    );
    if !reqs.is_empty() {
        o.push_str("Requirements:\t");
        for r in reqs {
            let _ = write!(o, "{r} ");
        }
        o.push_str("\n\n");
    }

    o.push_str("Data segments:\n");
    for (id, s) in &md.segments {
        let _ = writeln!(o, "  {id}: {}", s.type_name);
        let _ = writeln!(o, "\toffset: {} [bytes]", s.offset);
        match s.size {
            SegmentSize::Dynamic => o.push_str("\tlength: (whole device)\n"),
            SegmentSize::Fixed(n) => {
                let _ = writeln!(o, "\tlength: {n} [bytes]");
            }
        }
        // As cryptsetup: whatever the type, the fields that are there.
        if let Some(c) = &s.dump_cipher {
            let _ = writeln!(o, "\tcipher: {c}");
        }
        if let Some(n) = s.dump_sector_size {
            let _ = writeln!(o, "\tsector: {n} [bytes]");
        }
        if let Some(i) = &s.integrity {
            let _ = writeln!(o, "\tintegrity: {i}");
        }
        if !s.flags.is_empty() {
            let _ = writeln!(o, "\tflags : {}", s.flags.join(", "));
        }
        o.push('\n');
    }

    o.push_str("Keyslots:\n");
    for (id, k) in &md.keyslots {
        // Bound (as cryptsetup's LUKS2_keyslot_for_segment with CRYPT_ONE_SEGMENT): the
        // keyslot's digest is the digest of a regular (non-backup) segment.
        let bound = md.digest_for_keyslot(*id).is_some_and(|(kd, _)| {
            md.segments
                .iter()
                .filter(|(_, s)| !s.is_backup())
                .any(|(sid, _)| md.digest_for_segment(*sid).map(|(d, _)| d) == Some(kd))
        });
        let _ = writeln!(
            o,
            "  {id}: {}{}",
            k.type_name,
            if bound { "" } else { " (unbound)" }
        );
        // `%u` of a 32-bit product, as cryptsetup prints it (2^29 bytes show as 0 bits).
        let _ = writeln!(o, "\tKey:        {} bits", k.key_size.wrapping_mul(8));
        let prio = match k.priority_value {
            0 => "ignored",
            1 => "normal",
            2 => "preferred",
            _ => "invalid",
        };
        let _ = writeln!(o, "\tPriority:   {prio}");
        if k.type_name == "luks2" {
            if let Some(a) = &k.area {
                let _ = writeln!(o, "\tCipher:     {}", a.encryption);
                let _ = writeln!(o, "\tCipher key: {} bits", a.dump_key_size.wrapping_mul(8));
            }
            // As cryptsetup's keyslot dump: PBKDF2's hash and iterations, or (any other
            // type, an unknown one too) time, memory and threads; then the salt.
            if let (Some(kdf), Some(d)) = (&k.kdf, &k.kdf_dump) {
                let type_name = match kdf {
                    KeyslotKdf::Pbkdf2 { .. } => "pbkdf2",
                    KeyslotKdf::Argon2 { variant, .. } => variant.name(),
                    KeyslotKdf::Unknown { type_name } => type_name.as_str(),
                };
                let _ = writeln!(o, "\tPBKDF:      {type_name}");
                if let KeyslotKdf::Pbkdf2 { hash, .. } = kdf {
                    let _ = writeln!(o, "\tHash:       {hash}");
                    let _ = writeln!(o, "\tIterations: {}", d.iterations);
                } else {
                    let _ = writeln!(o, "\tTime cost:  {}", d.time);
                    let _ = writeln!(o, "\tMemory:     {}", d.memory);
                    let _ = writeln!(o, "\tThreads:    {}", d.cpus);
                }
                hexprint_line(&mut o, "\tSalt:       ", d.salt.as_deref());
            }
            if let Some(af) = &k.af {
                let _ = writeln!(o, "\tAF stripes: {}", af.stripes);
                let _ = writeln!(o, "\tAF hash:    {}", af.hash);
            }
            if let Some(a) = &k.area {
                let _ = writeln!(o, "\tArea offset:{} [bytes]", a.offset);
                let _ = writeln!(o, "\tArea length:{} [bytes]", a.size);
            }
        } else if k.type_name == "reencrypt" {
            // json_object_get_string of the stored fields (validation made them present).
            let js = h.keyslot_json(*id);
            let area = js
                .and_then(|j| j.get("area"))
                .and_then(JsonValue::as_object);
            let field = |obj: Option<&JsonObject>, key: &str| {
                obj.and_then(|j| j.get(key))
                    .and_then(JsonValue::get_string)
                    .map_or_else(String::new, |b| String::from_utf8_lossy(&b).into_owned())
            };
            let resilience = field(area, "type");
            let _ = writeln!(o, "\t{:<12}{}", "Mode:", field(js, "mode"));
            let _ = writeln!(o, "\t{:<12}{}", "Direction:", field(js, "direction"));
            let _ = writeln!(o, "\t{:<12}{}", "Resilience:", resilience);
            if resilience == "checksum" {
                let _ = writeln!(o, "\t{:<12}{}", "Hash:", field(area, "hash"));
                let _ = writeln!(
                    o,
                    "\t{:<12}{} [bytes]",
                    "Hash data:",
                    field(area, "sector_size")
                );
            } else if resilience == "datashift" {
                let _ = writeln!(
                    o,
                    "\t{:<12}{}[bytes]",
                    "Shift size:",
                    field(area, "shift_size")
                );
            }
            if let Some(a) = &k.area {
                let _ = writeln!(o, "\tArea offset:{} [bytes]", a.offset);
                let _ = writeln!(o, "\tArea length:{} [bytes]", a.size);
            }
        }
        for (did, d) in &md.digests {
            if d.keyslots.contains(id) {
                let _ = writeln!(o, "\tDigest ID:  {did}");
            }
        }
    }

    o.push_str("Tokens:\n");
    for (id, t) in &md.tokens {
        let _ = writeln!(o, "  {id}: {}", t.type_name);
        if t.type_name == "luks2-keyring" {
            if let Some(desc) = &t.key_description {
                let _ = writeln!(o, "\tKey description: {desc}");
            }
        }
        for k in &t.keyslots {
            let _ = writeln!(o, "\tKeyslot:    {k}");
        }
    }

    o.push_str("Digests:\n");
    for (id, d) in &md.digests {
        let _ = writeln!(o, "  {id}: {}", d.type_name);
        if d.type_name == "pbkdf2" {
            let p = &d.dump;
            let _ = writeln!(o, "\tHash:       {}", p.hash.as_deref().unwrap_or("(null)"));
            let _ = writeln!(o, "\tIterations: {}", p.iterations);
            hexprint_line(&mut o, "\tSalt:       ", p.salt.as_deref());
            hexprint_line(&mut o, "\tDigest:     ", p.digest.as_deref());
        }
    }
    o
}

/// cryptsetup's `hexprint_base64` after a label: 16 bytes a line, continuation lines aligned
/// under the first; a field that is not base64 prints nothing after the label, not even the
/// end of the line.
fn hexprint_line(o: &mut String, label: &str, bytes: Option<&[u8]>) {
    o.push_str(label);
    if let Some(bytes) = bytes {
        hex_wrapped(o, bytes, " ", 16, "\n\t            ");
        o.push('\n');
    }
}

fn luks1_human(h: &Luks1Header, device: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "LUKS header information for {device}\n");
    let _ = writeln!(o, "Version:       \t1");
    let _ = writeln!(o, "Cipher name:   \t{}", h.cipher_name);
    let _ = writeln!(o, "Cipher mode:   \t{}", h.cipher_mode);
    let _ = writeln!(o, "Hash spec:     \t{}", h.hash_spec);
    let _ = writeln!(o, "Payload offset:\t{}", h.payload_offset);
    let _ = writeln!(o, "MK bits:       \t{}", u64::from(h.key_bytes) * 8);
    o.push_str("MK digest:     \t");
    hex_wrapped(&mut o, &h.mk_digest, " ", 0, "");
    o.push('\n');
    o.push_str("MK salt:       \t");
    hex_wrapped(&mut o, &h.mk_digest_salt, " ", 16, "\n               \t");
    o.push('\n');
    let _ = writeln!(o, "MK iterations: \t{}", h.mk_digest_iterations);
    let _ = writeln!(o, "UUID:          \t{}\n", h.uuid);
    for (i, k) in h.keyslots.iter().enumerate() {
        if k.active {
            let _ = writeln!(o, "Key Slot {i}: ENABLED");
            let _ = writeln!(o, "\tIterations:         \t{}", k.iterations);
            o.push_str("\tSalt:               \t");
            hex_wrapped(&mut o, &k.salt, " ", 16, "\n\t                      \t");
            o.push('\n');
            let _ = writeln!(o, "\tKey material offset:\t{}", k.key_material_offset);
            let _ = writeln!(o, "\tAF stripes:            \t{}", k.stripes);
        } else {
            let _ = writeln!(o, "Key Slot {i}: DISABLED");
        }
    }
    o
}

/// The metadata as JSON: LUKS2 as stored (json-c's pretty layout, like `cryptsetup luksDump
/// --dump-json-metadata`); LUKS1 as an equivalent JSON object.
pub fn json(header: &Header) -> String {
    match header {
        Header::Luks2(h) => String::from_utf8_lossy(&h.json.to_pretty_bytes()).into_owned(),
        Header::Luks1(h) => {
            let keyslots: serde_json::Map<String, serde_json::Value> = h
                .keyslots
                .iter()
                .enumerate()
                .filter(|(_, k)| k.active)
                .map(|(i, k)| {
                    (
                        i.to_string(),
                        serde_json::json!({
                            "type": "luks1",
                            "key_size": h.key_bytes,
                            "iterations": k.iterations,
                            "salt": hex(&k.salt),
                            "key_material_offset": u64::from(k.key_material_offset) * 512,
                            "stripes": k.stripes,
                        }),
                    )
                })
                .collect();
            let v = serde_json::json!({
                "version": 1,
                "uuid": h.uuid,
                "cipher_name": h.cipher_name,
                "cipher_mode": h.cipher_mode,
                "hash_spec": h.hash_spec,
                "payload_offset": u64::from(h.payload_offset) * 512,
                "key_bytes": h.key_bytes,
                "mk_digest": hex(&h.mk_digest),
                "mk_digest_salt": hex(&h.mk_digest_salt),
                "mk_digest_iterations": h.mk_digest_iterations,
                "keyslots": keyslots,
            });
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The volume key dump, as `cryptsetup luksDump --dump-volume-key` prints it.
///
/// The text holds the key in hex: it is built in a buffer allocated once, large enough that it
/// never grows (so no unwiped copy is left behind by a reallocation), and wiped on drop.
pub fn volume_key(header: &Header, device: &str, key: &VolumeKey) -> zeroize::Zeroizing<String> {
    // The data segment as the header states it, whether or not tazpod can map it (as
    // cryptsetup, which dumps the key of a segment it cannot activate too).
    let (encryption, offset) = match DataSegment::of(header) {
        Ok(seg) => (seg.encryption, seg.offset),
        Err(_) => stated_segment(header),
    };
    let (name, mode) = encryption
        .split_once('-')
        .unwrap_or((encryption.as_str(), ""));
    let uuid = match header {
        Header::Luks2(h) => h.binary.uuid.clone(),
        Header::Luks1(h) => h.uuid.clone(),
    };
    let mut o = zeroize::Zeroizing::new(String::with_capacity(4096 + device.len() + key.len() * 4));
    let _ = writeln!(o, "LUKS header information for {device}");
    let _ = writeln!(o, "Cipher name:   \t{name}");
    let _ = writeln!(o, "Cipher mode:   \t{mode}");
    let _ = writeln!(o, "Payload offset:\t{}", offset / 512);
    let _ = writeln!(o, "UUID:          \t{uuid}");
    let _ = writeln!(o, "MK bits:       \t{}", key.len() * 8);
    o.push_str("MK dump:\t");
    hex_wrapped(&mut o, key.as_bytes(), " ", 16, "\n\t\t");
    o.push('\n');
    o
}

/// The cipher and byte offset of the first regular data segment as stored (LUKS1: the
/// header's cipher and payload offset).
fn stated_segment(header: &Header) -> (String, u64) {
    match header {
        Header::Luks1(h) => (
            format!("{}-{}", h.cipher_name, h.cipher_mode),
            u64::from(h.payload_offset) * 512,
        ),
        Header::Luks2(h) => h
            .metadata
            .segments
            .values()
            .find(|s| !s.is_backup())
            .map_or((String::new(), 0), |s| {
                (s.dump_cipher.clone().unwrap_or_default(), s.offset)
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_wrap_like_crypt_log_hex() {
        let mut s = String::new();
        hex_wrapped(&mut s, &[0u8; 17], " ", 16, "|");
        assert_eq!(s, format!("{}|00 ", "00 ".repeat(16)));
    }
}
