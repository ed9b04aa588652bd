//! AF merge (the anti-forensic split of a keyslot: 4000 stripes) per hash and key size.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use luks2::af;
use luks2::hash::HashAlg;
use std::hint::black_box;

fn merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("af-merge");
    for (hash, key_size) in [
        (HashAlg::Sha256, 64usize),
        (HashAlg::Sha256, 32),
        (HashAlg::Sha1, 64),
        (HashAlg::Sha512, 64),
    ] {
        let stripes = 4000u32;
        let area: Vec<u8> = (0..af::split_area_len(key_size, stripes).unwrap())
            .map(|i| (i * 31 + 7) as u8)
            .collect();
        let mut out = vec![0u8; key_size];
        g.throughput(Throughput::Bytes((key_size * stripes as usize) as u64));
        g.bench_function(BenchmarkId::new(hash.name(), key_size * 8), |b| {
            b.iter(|| af::merge(hash, black_box(&area), key_size, stripes, &mut out).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, merge);
criterion_main!(benches);
