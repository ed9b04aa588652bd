//! The writer's output, fuzzed: the input chooses `format`'s options (cipher, key size, sector
//! size, metadata and keyslots sizes, detached or not, label, subsystem, UUID, KDF with tiny
//! costs, hashes), the passphrase, the random bytes, and a sequence of add / change / remove /
//! configure operations, each possibly interrupted after any of its writes. Whatever the
//! writer accepts to write must then be accepted by the reader (validation included), every
//! keyslot must open with its passphrase and give the volume key, a wrong passphrase must be
//! refused, and an interrupted update must leave a header that reads and opens with the old or
//! the new keys. Options the writer refuses end the run (a refusal is fine; a panic is not).
#![no_main]
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use luks2::error::{Error, UnlockError};
use luks2::format::{self, FormatParams, KeyslotSpec, Layout, Plan};
use luks2::hash::HashAlg;
use luks2::kdf::{Argon2Variant, KdfParams};
use luks2::metadata::Priority;
use luks2::unlock::{unlock, UnlockOptions};
use std::collections::BTreeMap;
use std::io::Cursor;

const CIPHERS: [&str; 6] = [
    "aes-xts-plain64",
    "aes-xts-plain",
    "aes-cbc-essiv:sha256",
    "aes-cbc-plain64",
    "aes-xts-essiv:sha256",
    "serpent-xts-plain64",
];
const HASHES: [&str; 8] = [
    "sha256",
    "sha1",
    "sha512",
    "sha384",
    "ripemd160",
    "whirlpool",
    "sha3-256",
    "blake2b",
];

/// A deterministic random source (splitmix64) that can be told to fail after `fail_after`
/// requests, so the writer's `Random` error path is reached too.
struct Rng {
    state: u64,
    fail_after: Option<u32>,
}

impl Rng {
    fn fill(&mut self, buf: &mut [u8]) -> std::result::Result<(), String> {
        if let Some(n) = self.fail_after.as_mut() {
            if *n == 0 {
                return Err("injected random source failure".into());
            }
            *n -= 1;
        }
        for chunk in buf.chunks_mut(8) {
            self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

fn hash(u: &mut Unstructured<'_>) -> Result<HashAlg> {
    Ok(HashAlg::from_name(u.choose(&HASHES)?).unwrap_or(HashAlg::Sha256))
}

/// PBKDF2 iterations: mostly a handful (every run unlocks many times), up to the 1000 of
/// `tiny_limits` now and then.
fn iterations(u: &mut Unstructured<'_>) -> Result<u32> {
    if u.ratio(1u8, 8)? {
        u.int_in_range(1..=1000)
    } else {
        u.int_in_range(1..=8)
    }
}

/// A KDF within the fuzz unlock limits (`tiny_limits`), or an invalid one now and then.
fn kdf(u: &mut Unstructured<'_>) -> Result<KdfParams> {
    Ok(match u.int_in_range(0u8..=2)? {
        0 => KdfParams::Pbkdf2 {
            hash: hash(u)?,
            iterations: iterations(u)?,
        },
        v => KdfParams::Argon2 {
            variant: if v == 1 {
                Argon2Variant::I
            } else {
                Argon2Variant::Id
            },
            time: u.int_in_range(0..=4)?,
            memory_kib: if u.ratio(1u8, 8)? {
                u.int_in_range(0..=256)?
            } else {
                u.int_in_range(8..=32)?
            },
            cpus: u.int_in_range(0..=4)?,
        },
    })
}

fn spec(u: &mut Unstructured<'_>, encryption: &str) -> Result<KeyslotSpec> {
    Ok(KeyslotSpec {
        kdf: kdf(u)?,
        af_hash: hash(u)?,
        encryption: encryption.to_string(),
        priority: None,
    })
}

fn text(u: &mut Unstructured<'_>, max: usize) -> Result<String> {
    let n = u.int_in_range(0..=max)?;
    Ok(String::from_utf8_lossy(u.bytes(n)?).into_owned())
}

fn passphrase(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let n = u.int_in_range(0..=24)?;
    Ok(u.bytes(n)?.to_vec())
}

fn header(image: &[u8]) -> luks2::header::Luks2Header {
    match luks2::read_header(&mut Cursor::new(image)) {
        Ok(luks2::Header::Luks2(h)) => *h,
        Ok(luks2::Header::Luks1(_)) => panic!("the writer's output reads as LUKS1"),
        Err(e) => panic!("the reader refuses the writer's output: {e}"),
    }
}

fn open(
    h: &luks2::header::Luks2Header,
    image: &[u8],
    slot: Option<u32>,
    pass: &[u8],
) -> std::result::Result<Vec<u8>, Error> {
    let h = luks2::Header::Luks2(Box::new(h.clone()));
    let opts = UnlockOptions {
        keyslot: slot,
        limits: tazpod_fuzz::tiny_limits(),
    };
    unlock(&h, &mut Cursor::new(image), pass, &opts).map(|u| u.volume_key.as_bytes().to_vec())
}

/// The header lists exactly the model's keyslots, and those of them in `only` (all of them
/// with `None`) open with their passphrase and give `vk`. (Opening is the costly part: after
/// each step only the keyslot it changed is opened, at the end all of them.)
fn check_model(image: &[u8], model: &BTreeMap<u32, Vec<u8>>, vk: &[u8], only: Option<u32>) {
    let h = header(image);
    let ids: Vec<u32> = h.metadata.keyslots.keys().copied().collect();
    let want: Vec<u32> = model.keys().copied().collect();
    assert_eq!(ids, want, "keyslots in the header");
    for (&id, pass) in model
        .iter()
        .filter(|(id, _)| only.is_none_or(|o| o == **id))
    {
        match open(&h, image, Some(id), pass) {
            Ok(k) => assert_eq!(k, vk, "keyslot {id} gives another volume key"),
            Err(e) => panic!("keyslot {id} does not open with its passphrase: {e}"),
        }
    }
}

/// A passphrase no keyslot has (longer than all of them).
fn wrong(model: &BTreeMap<u32, Vec<u8>>) -> Vec<u8> {
    vec![0xa5; model.values().map(Vec::len).max().unwrap_or(0) + 1]
}

/// After the first `n` writes of `plan` only: the header reads, lists only keyslots of the
/// state before or after, and every keyslot the update touches that it lists opens with its
/// passphrase from before or after, giving `vk` (never neither).
fn check_torn(
    image: &[u8],
    plan: &Plan,
    n: usize,
    before: &BTreeMap<u32, Vec<u8>>,
    after: &BTreeMap<u32, Vec<u8>>,
    vk: &[u8],
) {
    let mut torn = image.to_vec();
    plan.apply_first(n, &mut torn);
    let h = header(&torn);
    for &id in h.metadata.keyslots.keys() {
        assert!(
            before.contains_key(&id) || after.contains_key(&id),
            "interrupted after {n} writes: keyslot {id} in neither state"
        );
        if before.get(&id) == after.get(&id) {
            continue;
        }
        let opened = [before.get(&id), after.get(&id)]
            .into_iter()
            .flatten()
            .any(|pass| open(&h, &torn, Some(id), pass).is_ok_and(|k| k == vk));
        assert!(
            opened,
            "interrupted after {n} of {} writes: keyslot {id} opens with neither passphrase",
            plan.writes.len()
        );
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let encryption = if u.ratio(1u8, 16)? {
        text(u, 40)?
    } else {
        u.choose(&CIPHERS)?.to_string()
    };
    let key_len = if u.ratio(1u8, 16)? {
        u.int_in_range(0..=130)?
    } else {
        *u.choose(&[16usize, 24, 32, 48, 64])?
    };
    let sector_size = if u.ratio(1u8, 16)? {
        u.arbitrary()?
    } else {
        512 << u.int_in_range(0..=3)?
    };
    // Mostly small metadata and keyslots areas (both are written whole, and read back after
    // every step): 16 to 64 KiB and up to 1 MiB; now and then any of the nine metadata sizes,
    // up to 4 MiB of keyslots, or an odd keyslots size.
    let metadata_size = if u.ratio(1u8, 8)? {
        *u.choose(&tazpod_fuzz::HDR_SIZES)?
    } else {
        *u.choose(&tazpod_fuzz::HDR_SIZES[..3])?
    };
    let keyslots_size = match u.int_in_range(0u8..=15)? {
        0 => u.int_in_range(0..=(4u64 << 20))?,
        1 => 4096 * u.int_in_range(1..=1024u64)?,
        _ => 4096 * u.int_in_range(1..=256u64)?,
    };
    let detached = u.arbitrary()?;
    let Ok(layout) = Layout::cryptsetup(Some(metadata_size), Some(keyslots_size), detached) else {
        return Ok(());
    };
    let params = FormatParams {
        encryption: encryption.clone(),
        sector_size,
        layout,
        label: if u.ratio(1u8, 2)? {
            String::new()
        } else {
            text(u, 50)?
        },
        subsystem: if u.ratio(3u8, 4)? {
            String::new()
        } else {
            text(u, 50)?
        },
        uuid: match u.int_in_range(0u8..=3)? {
            0 => Some(text(u, 40)?),
            1 => Some("0b5a2c1e-7d3f-4e8a-9c6b-2F1E0D9C8B7A".into()),
            _ => None,
        },
        keyslot: spec(u, &encryption)?,
        digest_hash: hash(u)?,
        digest_iterations: iterations(u)?,
    };
    let mut rng = Rng {
        state: u.arbitrary()?,
        fail_after: if u.ratio(1u8, 16)? {
            Some(u.int_in_range(0..=8)?)
        } else {
            None
        },
    };
    let mut vk = vec![0u8; key_len];
    if rng.fill(&mut vk).is_err() {
        return Ok(());
    }
    let p0 = passphrase(u)?;
    let Ok(f) = format::format(&params, &vk, &p0, &mut |b: &mut [u8]| rng.fill(b)) else {
        return Ok(());
    };
    let mut image = Vec::new();
    f.plan.apply_to(&mut image);
    let h = header(&image);
    assert_eq!(h.binary.seqid, format::FORMAT_SEQID);
    assert_eq!(h.binary.label, params.label);
    let mut model = BTreeMap::from([(0u32, p0)]);
    check_model(&image, &model, &vk, None);
    match open(&h, &image, None, &wrong(&model)) {
        Err(Error::Unlock(UnlockError::WrongPassphrase)) => {}
        other => panic!("a wrong passphrase: {:?}", other.map(|_| "opened")),
    }
    // The data segment the writer described is usable with the volume key.
    let seg = luks2::volume::DataSegment::of(&luks2::Header::Luks2(Box::new(h.clone())))
        .expect("the writer's data segment");
    luks2::volume::Decryptor::new(seg, &luks2::VolumeKey::from_vec(vk.clone()))
        .expect("a decryptor for the writer's segment");

    for _ in 0..u.int_in_range(0..=4)? {
        let h = header(&image);
        let before = model.clone();
        let mut after = model.clone();
        let r =
            match u.int_in_range(0u8..=3)? {
                0 => {
                    let pass = passphrase(u)?;
                    let id = if u.arbitrary()? {
                        Some(u.int_in_range(0..=33)?)
                    } else {
                        None
                    };
                    let s = spec(u, &encryption)?;
                    format::add_keyslot(&h, &vk, 0, &pass, &s, id, &mut |b: &mut [u8]| rng.fill(b))
                        .map(|(plan, id)| {
                            assert!(!before.contains_key(&id), "add-key reused keyslot {id}");
                            after.insert(id, pass);
                            plan
                        })
                }
                1 => {
                    let id = u.int_in_range(0..=33)?;
                    let pass = passphrase(u)?;
                    let s = spec(u, &encryption)?;
                    format::change_keyslot(&h, &vk, id, &pass, &s, &mut |b: &mut [u8]| rng.fill(b))
                        .map(|plan| {
                            after.insert(id, pass);
                            plan
                        })
                }
                2 => {
                    let id = u.int_in_range(0..=33)?;
                    format::remove_keyslot(&h, id, &mut |b: &mut [u8]| rng.fill(b)).map(|plan| {
                        after.remove(&id);
                        plan
                    })
                }
                _ => {
                    let label = if u.arbitrary()? {
                        Some(text(u, 50)?)
                    } else {
                        None
                    };
                    let prio = if u.arbitrary()? {
                        let id = u.int_in_range(0..=33)?;
                        let p = *u.choose(&[Priority::Ignore, Priority::Normal, Priority::High])?;
                        Some((id, p))
                    } else {
                        None
                    };
                    format::configure(&h, label.as_deref(), prio, &mut |b: &mut [u8]| rng.fill(b))
                }
            };
        let Ok(plan) = r else {
            continue;
        };
        let touched = before
            .keys()
            .chain(after.keys())
            .copied()
            .find(|id| before.get(id) != after.get(id));
        if !plan.writes.is_empty() {
            let n = u.int_in_range(0..=plan.writes.len() - 1)?;
            check_torn(&image, &plan, n, &before, &after, &vk);
        }
        plan.apply_to(&mut image);
        let new = header(&image);
        if !plan.writes.is_empty() {
            assert_eq!(new.binary.seqid, h.binary.seqid + 1, "seqid bump");
        }
        model = after;
        check_model(&image, &model, &vk, Some(touched.unwrap_or(u32::MAX)));
        // A changed passphrase no longer opens its keyslot.
        for (id, old) in &before {
            if model.get(id).is_some_and(|new| new != old) {
                assert!(
                    open(&new, &image, Some(*id), old).is_err(),
                    "old passphrase of {id}"
                );
            }
        }
    }
    check_model(&image, &model, &vk, None);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
