//! File operations the standard library lacks: moving a file into place without replacing
//! what may have appeared there (`renameat2(RENAME_NOREPLACE)`).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Renames `from` to `to`, failing with `EEXIST` when `to` exists (of any type, a dangling
/// symbolic link included). On a filesystem or kernel without `RENAME_NOREPLACE`, the same
/// guarantee comes from a hard link (which never replaces) followed by the removal of `from`.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let f = c_path(from)?;
    let t = c_path(to)?;
    // SAFETY: both pointers are NUL-terminated strings that live until the call returns;
    // AT_FDCWD makes relative paths relative to the working directory, as rename(2) does.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::write(&a, b"new").unwrap();
        std::fs::write(&b, b"old").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(std::fs::read(&b).unwrap(), b"old");
        // a dangling symbolic link counts as existing
        std::fs::remove_file(&b).unwrap();
        std::os::unix::fs::symlink(d.path().join("nowhere"), &b).unwrap();
        assert!(rename_noreplace(&a, &b).is_err());
        std::fs::remove_file(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"new");
    }
}
