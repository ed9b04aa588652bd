//! The rootless verbs' ext4 walk (`src/rootless/tree.rs`, compiled into this crate) over a
//! whole fuzzed filesystem image: `ls -R --long` from the root (every directory listed, every
//! entry's metadata and symlink target read), then what `cat` and `run` do with every entry
//! that is not a directory (metadata through symlinks, the content up to 1 MiB). The input is
//! the start of the image, zeros follow up to the size the superblock claims (`Ext4Image`),
//! and the superblock checksum is fixed up; it is loaded as the verbs load a vault's
//! filesystem (`tree::load`: tazpod's cap on the block group count, then `ext4-view`'s own
//! checks). The walk may fail (a clean `CliError`) but must not panic: any panic aborts and is
//! a crash (the vendored `ext4-view` has no known panic left, `third_party/ext4-view/PATCHES.md`).
//! `TAZPOD_FUZZ_VERBOSE=1` prints each walk's outcome (to check the seeds:
//! `fuzz run ext4 seeds/ext4 -- -runs=0`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tazpod_fuzz::{tree, Ext4Image};

fuzz_target!(|data: &[u8]| {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    let img = Ext4Image::new(data.to_vec());
    // Directories can only live in the input: inodes past it are all zeros (no type).
    let dirs = tree::max_dirs(img.input_len()).max(1);
    let len = img.len();
    let r = tree::load(Box::new(img), "fuzz", len)
        .and_then(|fs| tree::walk_all(&fs, "fuzz", dirs, 1 << 20));
    if *VERBOSE.get_or_init(|| std::env::var_os("TAZPOD_FUZZ_VERBOSE").is_some()) {
        match r {
            Ok(s) => eprintln!("walk: {s:?}"),
            Err(e) => eprintln!("walk failed: {e}"),
        }
    }
});
