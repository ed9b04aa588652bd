//! The state of an image being created, which the real host keeps between the `Image` steps
//! (`image.rs` does the steps).

use crate::ghost::host::Identity;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// An image `create_image` made, until it is published or removed.
#[derive(Debug)]
pub(super) struct Creating {
    /// Open read-write (the header is written through it, and the mapping made from it).
    pub(super) file: File,
    /// Its device and inode (it is removed only while it is still this file).
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// Whose filesystem rights create, move and remove it.
    pub(super) owner: Option<Identity>,
    /// The directory it is in, opened once (`O_PATH`): it is created, renamed and removed
    /// by name relative to this descriptor.
    pub(super) dir: OwnedFd,
    /// Its temporary name and its final name in `dir`.
    pub(super) temp_name: OsString,
    pub(super) final_name: OsString,
    /// Whether it may replace what is at its path.
    pub(super) replace: bool,
    /// Whether `create_image` took the session lock (released when it is removed).
    pub(super) locked: bool,
    /// The parent directories it created, deepest first (removed with it when empty).
    pub(super) made_dirs: Vec<PathBuf>,
}
