//! KDF benches: PBKDF2 (the fast path against the `pbkdf2` crate it replaced) and Argon2 at
//! small parameters. `cargo bench --bench kdf`; add `-- --quick` for a short run.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use luks2::hash::HashAlg;
use luks2::kdf::{Argon2Variant, KdfParams};
use std::hint::black_box;

/// PBKDF2 for a 512-bit key (aes-xts-plain64's): fast path vs the generic crate, per iteration
/// count. Throughput is in iterations (criterion prints "elem/s").
fn pbkdf2(c: &mut Criterion) {
    for hash in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512] {
        let mut g = c.benchmark_group(format!("pbkdf2-{}", hash.name()));
        g.sample_size(10);
        for iterations in [1_000u32, 10_000, 100_000] {
            g.throughput(Throughput::Elements(u64::from(iterations)));
            let mut out = [0u8; 64];
            g.bench_with_input(
                BenchmarkId::new("tazpod", iterations),
                &iterations,
                |b, &n| b.iter(|| hash.pbkdf2_hmac(b"passphrase", black_box(b"salt"), n, &mut out)),
            );
            g.bench_with_input(
                BenchmarkId::new("pbkdf2-crate", iterations),
                &iterations,
                |b, &n| {
                    b.iter(|| {
                        hash.pbkdf2_hmac_generic(b"passphrase", black_box(b"salt"), n, &mut out)
                    })
                },
            );
        }
        g.finish();
    }
}

/// Argon2id/Argon2i with small memory, as through the library's `KdfParams::derive`.
fn argon2(c: &mut Criterion) {
    let mut g = c.benchmark_group("argon2");
    g.sample_size(10);
    for (variant, memory_kib, time, cpus) in [
        (Argon2Variant::Id, 1024u32, 4u32, 1u32),
        (Argon2Variant::Id, 16 * 1024, 2, 2),
        (Argon2Variant::I, 16 * 1024, 2, 2),
        (Argon2Variant::Id, 64 * 1024, 1, 2),
    ] {
        let p = KdfParams::Argon2 {
            variant,
            time,
            memory_kib,
            cpus,
        };
        g.throughput(Throughput::Bytes(
            u64::from(memory_kib) * 1024 * u64::from(time),
        ));
        let id = format!("{}-m{memory_kib}-t{time}-p{cpus}", variant.name());
        let mut out = [0u8; 64];
        g.bench_function(id, |b| {
            b.iter(|| {
                p.derive(b"passphrase", black_box(b"saltsaltsaltsalt"), &mut out)
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pbkdf2, argon2);
criterion_main!(benches);
