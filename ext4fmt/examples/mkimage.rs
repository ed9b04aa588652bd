//! `cargo run -p ext4fmt --example mkimage IMAGE SIZE [UID GID]`: formats IMAGE (created
//! sparse, SIZE bytes) and prints what was made and how long it took.
#![allow(clippy::expect_used, clippy::indexing_slicing)]
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let path = &a[1];
    let size: u64 = a[2].parse().expect("SIZE in bytes");
    let uid = a.get(3).map_or(0, |s| s.parse().expect("UID"));
    let gid = a.get(4).map_or(0, |s| s.parse().expect("GID"));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open");
    if f.metadata().expect("stat").len() < size {
        f.set_len(size).expect("set_len");
    }
    let t = std::time::Instant::now();
    let s = ext4fmt::format(
        &mut f,
        &ext4fmt::Params {
            size,
            uuid: *b"0123456789abcdef",
            hash_seed: *b"fedcba9876543210",
            label: b"tazpod-vault".to_vec(),
            root_owner: (uid, gid),
            time: 1_700_000_000,
        },
    )
    .expect("format");
    f.sync_all().expect("sync");
    println!("{s:?} in {:?}", t.elapsed());
}
