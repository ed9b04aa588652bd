//! Keyslot unlock on a fuzzed image (checksums fixed up) with the KDF costs capped tiny:
//! KDF parameters, cipher specs, AF sizes, area offsets and digests from the header are all
//! attacker-chosen; unlock must answer with an error, never a panic or a huge allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use luks2::unlock::{unlock, UnlockOptions};

fuzz_target!(|data: &[u8]| {
    // First byte: the passphrase length (the passphrase is the next bytes).
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (pass, image) = rest.split_at(n);
    let mut img = image.to_vec();
    tazpod_fuzz::fix_checksums(&mut img);
    let mut cur = tazpod_fuzz::Padded::new(&img, tazpod_fuzz::MAX_HEADER_AND_AREAS);
    let Ok(h) = luks2::read_header(&mut cur) else {
        return;
    };
    let opts = UnlockOptions {
        keyslot: None,
        limits: tazpod_fuzz::tiny_limits(),
    };
    if let Ok(u) = unlock(&h, &mut cur, pass, &opts) {
        if let Ok(seg) = luks2::volume::DataSegment::of(&h) {
            if let Ok(d) = luks2::volume::Decryptor::new(seg, &u.volume_key) {
                let mut buf = [0u8; 4096];
                let _ = d.decrypt_at(0, &mut buf);
            }
        }
    }
});
