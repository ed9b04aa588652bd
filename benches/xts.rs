//! Sector cipher throughput: XTS and CBC-ESSIV decryption of 64 KiB and 1 MiB buffers.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use luks2::cipher::{CipherSpec, SectorCipher};
use std::hint::black_box;

fn decrypt(c: &mut Criterion) {
    let mut g = c.benchmark_group("decrypt");
    for (spec, key_size, sector) in [
        ("aes-xts-plain64", 64usize, 512usize),
        ("aes-xts-plain64", 64, 4096),
        ("aes-xts-plain64", 32, 4096),
        ("aes-cbc-essiv:sha256", 32, 512),
    ] {
        let key: Vec<u8> = (0..key_size).map(|i| (i * 13 + 1) as u8).collect();
        let cipher = SectorCipher::new(&CipherSpec::parse(spec, key_size).unwrap(), &key).unwrap();
        for len in [64usize << 10, 1 << 20] {
            let mut buf = vec![0x5au8; len];
            g.throughput(Throughput::Bytes(len as u64));
            let id = format!("{spec}-{}b-{sector}", key_size * 8);
            g.bench_function(BenchmarkId::new(id, len), |b| {
                b.iter(|| cipher.decrypt(black_box(&mut buf), sector, 0).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, decrypt);
criterion_main!(benches);
