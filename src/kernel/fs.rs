//! File operations the standard library lacks: moving a file into place without replacing
//! what may have appeared there (`renameat2(RENAME_NOREPLACE)`), and the descriptor-relative
//! calls (`openat`, `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, `mkdirat`,
//! `renameat2`, `fstatat`, `unlinkat`) through which the root side works on paths a user
//! controls: a name is looked up once, in a directory already opened, never by path again.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
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

fn c_name(n: &OsStr) -> io::Result<CString> {
    if n.is_empty() || n.as_bytes().contains(&b'/') || n == "." || n == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single file name",
        ));
    }
    CString::new(n.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

fn fd_result(r: libc::c_long) -> io::Result<OwnedFd> {
    let fd = libc::c_int::try_from(r).map_err(|_| io::Error::last_os_error())?;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory at `path` as an `O_PATH` descriptor (following symbolic links with the
/// current filesystem rights).
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    let r = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    fd_result(libc::c_long::from(r))
}

/// Creates the new file `name` in `dir` (`O_CREAT | O_EXCL | O_NOFOLLOW`, read-write, `mode`).
pub fn create_new_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<File> {
    let c = c_name(name)?;
    // SAFETY: `dir` is an open descriptor and `c` a NUL-terminated name, both alive across
    // the call.
    let r = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )
    };
    fd_result(libc::c_long::from(r)).map(File::from)
}

/// Creates the directory `name` in `dir` (never through a symbolic link).
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: as in `create_new_at`.
    let r = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens the directory `rel` (relative, several components allowed) beneath `dir` as an
/// `O_PATH` descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`: no symbolic link is followed, no `..` leaves
/// `dir`, no mount is crossed. Kernels without `openat2` (before 5.6) get `ENOSYS`.
pub fn open_dir_beneath(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let c = c_path(rel)?;
    // SAFETY: open_how is plain old data (three u64); zeroed is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = u64::try_from(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC).unwrap_or(0);
    how.resolve = libc::RESOLVE_BENEATH
        | libc::RESOLVE_NO_SYMLINKS
        | libc::RESOLVE_NO_MAGICLINKS
        | libc::RESOLVE_NO_XDEV;
    // SAFETY: `dir` is open, `c` is NUL-terminated, `how` is a valid `struct open_how` whose
    // size is passed; all live across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    fd_result(r)
}

/// Device and inode of `name` in `dir`, without following a symbolic link.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<(u64, u64)> {
    let c = c_name(name)?;
    // SAFETY: stat is plain old data; zeroed is valid and fstatat overwrites it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is open, `c` NUL-terminated, `st` writable; all live across the call.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok((st.st_dev, st.st_ino))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Renames `from` to `to`, both in `dir`; with `noreplace`, fails with `EEXIST` when `to`
/// exists (a hard link then an unlink where `RENAME_NOREPLACE` is missing).
pub fn rename_at(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr, noreplace: bool) -> io::Result<()> {
    let f = c_name(from)?;
    let t = c_name(to)?;
    let flags = if noreplace { libc::RENAME_NOREPLACE } else { 0 };
    // SAFETY: `dir` is open and both names are NUL-terminated; all live across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            dir.as_raw_fd(),
            f.as_ptr(),
            dir.as_raw_fd(),
            t.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) if noreplace => {
            // SAFETY: as above; linkat with no flags does not follow `from` if it is a link.
            let r = unsafe {
                libc::linkat(dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), t.as_ptr(), 0)
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            unlink_at(dir, from)
        }
        _ => Err(e),
    }
}

/// Removes the file `name` from `dir`.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: `dir` is open and `c` NUL-terminated.
    let r = unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
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

    #[test]
    fn beneath_refuses_links_and_dotdot() {
        use std::os::fd::AsFd;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("/", d.path().join("rootlink")).unwrap();
        std::os::unix::fs::symlink("a", d.path().join("alink")).unwrap();
        let root = open_dir_path(d.path()).unwrap();
        assert!(open_dir_beneath(root.as_fd(), Path::new("a/b")).is_ok());
        for bad in [
            "rootlink",
            "rootlink/etc",
            "alink/b",
            "..",
            "a/../..",
            "/etc",
        ] {
            let e = open_dir_beneath(root.as_fd(), Path::new(bad)).unwrap_err();
            assert!(
                matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV)),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn at_calls_work_on_names_only() {
        use std::os::fd::AsFd;
        let d = tempfile::tempdir().unwrap();
        let dir = open_dir_path(d.path()).unwrap();
        let f = create_new_at(dir.as_fd(), OsStr::new("t"), 0o600).unwrap();
        let m = f.metadata().unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            stat_at(dir.as_fd(), OsStr::new("t")).unwrap(),
            (m.dev(), m.ino())
        );
        assert!(create_new_at(dir.as_fd(), OsStr::new("t"), 0o600).is_err());
        assert!(create_new_at(dir.as_fd(), OsStr::new("a/b"), 0o600).is_err());
        assert!(create_new_at(dir.as_fd(), OsStr::new(".."), 0o600).is_err());
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("l")).unwrap();
        assert!(create_new_at(dir.as_fd(), OsStr::new("l"), 0o600).is_err());
        std::fs::write(d.path().join("v"), b"x").unwrap();
        let e = rename_at(dir.as_fd(), OsStr::new("t"), OsStr::new("v"), true).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        rename_at(dir.as_fd(), OsStr::new("t"), OsStr::new("w"), true).unwrap();
        assert_eq!(
            stat_at(dir.as_fd(), OsStr::new("w")).unwrap(),
            (m.dev(), m.ino())
        );
        unlink_at(dir.as_fd(), OsStr::new("w")).unwrap();
        mkdir_at(dir.as_fd(), OsStr::new("sub"), 0o700).unwrap();
        assert!(d.path().join("sub").is_dir());
    }
}
