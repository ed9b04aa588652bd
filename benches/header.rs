//! Header read + validation, and a whole unlock (KDF, keyslot decryption, AF merge, digest) of
//! fixture images whose KDFs are cheap (1000 PBKDF2 iterations; Argon2id with 1 MiB).
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use luks2::kdf::KdfLimits;
use luks2::unlock::{unlock, UnlockOptions};
use std::hint::black_box;
use std::io::Cursor;

fn image(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/images")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read_and_unlock(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    for name in [
        "default-like.img",
        "pbkdf2-sha256.img",
        "luks1-xts-sha256.img",
    ] {
        let bytes = image(name);
        g.bench_function(format!("read+validate {name}"), |b| {
            b.iter(|| luks2::read_header(&mut Cursor::new(black_box(&bytes[..]))).unwrap())
        });
        let header = luks2::read_header(&mut Cursor::new(&bytes[..])).unwrap();
        let opts = UnlockOptions {
            keyslot: None,
            limits: KdfLimits::default(),
        };
        g.bench_function(format!("unlock {name}"), |b| {
            b.iter(|| unlock(&header, &mut Cursor::new(&bytes[..]), b"fixture", &opts).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, read_and_unlock);
criterion_main!(benches);
