//! Every cryptsetup-made fixture in `fixtures/manifest.json`, through the library: the expected
//! outcome, keyslot, volume key and plaintext (sha256 of the decrypted data area).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::panic,
    clippy::indexing_slicing
)]

use luks2::error::{Error, UnlockError};
use luks2::kdf::KdfLimits;
use luks2::unlock::{unlock, UnlockOptions};
use luks2::volume::{DataSegment, Decryptor};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn passphrase(c: &Value) -> Vec<u8> {
    match c["key_file"].as_str() {
        Some(k) => std::fs::read(fixtures().join(k)).unwrap(),
        None => c["passphrase"].as_str().unwrap().as_bytes().to_vec(),
    }
}

/// The sha256 of the first `data_size` bytes of the case's data area, decrypted.
fn plaintext_sha256(
    c: &Value,
    header: &luks2::Header,
    image: &std::path::Path,
    key: &luks2::VolumeKey,
) -> Result<String, String> {
    let name = c["name"].as_str().unwrap();
    let seg = DataSegment::of(header).map_err(|e| format!("{name}: {e}"))?;
    let mut data = File::open(image).unwrap();
    let size = data.metadata().unwrap().len();
    let dec = Decryptor::new(seg, key).map_err(|e| format!("{name}: {e}"))?;
    let mut out = Vec::new();
    dec.copy(&mut data, size, &mut out)
        .map_err(|e| format!("{name}: decrypt: {e}"))?;
    let n = c["data_size"].as_u64().unwrap() as usize;
    Ok(hex(&Sha256::digest(&out[..n.min(out.len())])))
}

/// Runs one manifest case; returns a description of the mismatch, if any.
fn check(c: &Value) -> Result<(), String> {
    let name = c["name"].as_str().unwrap();
    let image = fixtures().join(c["image"].as_str().unwrap());
    let header_path = c["header"].as_str().map(|h| fixtures().join(h));
    let before = std::fs::read(&image).unwrap();
    let mut hf = File::open(header_path.as_ref().unwrap_or(&image)).unwrap();
    let expect = c["expect"].as_str().unwrap();
    let header = match luks2::read_header(&mut hf) {
        Ok(h) => h,
        Err(e) => {
            return if expect == "invalid_header" {
                Ok(())
            } else {
                Err(format!("{name}: read_header failed: {e}"))
            };
        }
    };
    if expect == "invalid_header" {
        return Err(format!("{name}: header accepted, expected invalid"));
    }
    let opts = UnlockOptions {
        keyslot: c["key_slot"].as_u64().map(|s| s as u32),
        limits: KdfLimits::default(),
    };
    if expect == "unsupported_cipher" {
        // The keyslot opens (its area cipher is AES) but the data segment cannot be used.
        return match DataSegment::of(&header) {
            Err(Error::Cipher(_)) => Ok(()),
            other => Err(format!("{name}: expected a cipher error, got {other:?}")),
        };
    }
    let result = unlock(&header, &mut hf, &passphrase(c), &opts);
    match (expect, result) {
        ("mislabelled_cipher", Ok(u)) => {
            // The segment names a supported cipher other than the one the data was written
            // with: it maps, and its decryption is not the plaintext.
            let want = c["volume_key_hex"].as_str().unwrap();
            if hex(u.volume_key.as_bytes()) != want {
                return Err(format!("{name}: wrong volume key"));
            }
            let got = plaintext_sha256(c, &header, &image, &u.volume_key)?;
            if Some(got.as_str()) == c["plaintext_sha256"].as_str() {
                return Err(format!(
                    "{name}: mislabelled data decrypted to the plaintext"
                ));
            }
        }
        ("ok", Ok(u)) => {
            if let Some(ks) = c["keyslot_used"].as_u64() {
                if u64::from(u.keyslot) != ks {
                    return Err(format!("{name}: opened keyslot {} want {ks}", u.keyslot));
                }
            }
            let want = c["volume_key_hex"].as_str().unwrap();
            if hex(u.volume_key.as_bytes()) != want {
                return Err(format!("{name}: wrong volume key"));
            }
            if let Some(sha) = c["plaintext_sha256"].as_str() {
                let got = plaintext_sha256(c, &header, &image, &u.volume_key)?;
                if got != sha {
                    return Err(format!("{name}: plaintext sha256 {got} want {sha}"));
                }
            }
        }
        ("wrong_passphrase", Err(Error::Unlock(UnlockError::WrongPassphrase))) => {}
        ("keyslot_inactive", Err(Error::Unlock(UnlockError::KeyslotNotFound(_)))) => {}
        ("requirement", Err(Error::Unlock(UnlockError::RequirementRefused(_)))) => {}
        ("unsupported_cipher", Err(Error::Unlock(UnlockError::NoUsableKeyslot(_)))) => {}
        (e, r) => {
            return Err(format!(
                "{name}: expected {e}, got {:?}",
                r.map(|u| u.keyslot)
            ))
        }
    }
    if std::fs::read(&image).unwrap() != before {
        return Err(format!("{name}: the image changed"));
    }
    Ok(())
}

#[test]
fn every_fixture_gives_its_expected_outcome() {
    let m: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap())
            .unwrap();
    assert!(m.len() > 40, "manifest has {} cases", m.len());
    let failures: Vec<String> = m.iter().filter_map(|c| check(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        m.len(),
        failures.join("\n")
    );
}
