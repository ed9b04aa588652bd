//! Anonymous in-memory files (`memfd_create(2)`) that a child process inherits.
//!
//! `tazpod run` serves secret files to the command it starts without writing them to any
//! disk: each one goes into a memfd created *without* `MFD_CLOEXEC`, is sealed against
//! writes, and the command gets its path as `/proc/self/fd/N`. Opening that path reopens the
//! memory file with its own offset, in the command and in the processes it starts (which
//! inherit the descriptor too). The memory is the kernel's page cache for a file that has no
//! name in any filesystem; it is freed when the last descriptor to it is closed.

use super::Errno;
use std::ffi::CString;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// A memfd that is inherited across `execve` (no close-on-exec flag).
#[derive(Debug)]
pub struct Memfd {
    file: File,
}

impl Memfd {
    /// Creates an empty memfd named `name` (the name only shows in `/proc/PID/fd` links as
    /// `/memfd:NAME`; a NUL in it gives `EINVAL`). Sealing is allowed; on kernels that know
    /// `MFD_NOEXEC_SEAL` (6.3+) the file can never be made executable.
    pub fn create(name: &str) -> Result<Memfd, Errno> {
        let cname = CString::new(name).map_err(|_| Errno(libc::EINVAL))?;
        let base = libc::MFD_ALLOW_SEALING;
        let mut fd = memfd_create(&cname, base | libc::MFD_NOEXEC_SEAL);
        if fd == Err(Errno(libc::EINVAL)) {
            // Kernels before 6.3 reject the unknown flag.
            fd = memfd_create(&cname, base);
        }
        let fd = fd?;
        // SAFETY: `fd` was just returned by memfd_create, is open, and is owned by nothing
        // else: the File becomes its only owner and closes it on drop.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(Memfd { file })
    }

    /// Appends `bytes` to the file.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.file.write_all(bytes).map_err(|e| Errno::from_io(&e))
    }

    /// Seals the content (no write, grow, shrink, or further seal change) and rewinds the
    /// descriptor to offset 0, so a reader of the inherited descriptor itself starts at the
    /// beginning too.
    pub fn seal(&mut self) -> Result<(), Errno> {
        let seals =
            libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        // SAFETY: fcntl(F_ADD_SEALS) takes an int argument and touches no memory of ours;
        // the descriptor is open for the life of `self.file`.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_ADD_SEALS, seals) };
        if rc != 0 {
            return Err(Errno::last());
        }
        self.file
            .seek(SeekFrom::Start(0))
            .map(|_| ())
            .map_err(|e| Errno::from_io(&e))
    }

    /// The descriptor number.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The path a process that inherited the descriptor opens it by.
    pub fn proc_self_path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd())
    }
}

/// Calls `memfd_create(2)`.
fn memfd_create(name: &CString, flags: libc::c_uint) -> Result<RawFd, Errno> {
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call; the kernel
    // only reads it. The flags are plain integers.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        Err(Errno::last())
    } else {
        Ok(fd)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn memfd_is_inheritable_sealed_and_readable_by_path() {
        let mut m = Memfd::create("tazpod-test").unwrap();
        m.write_all(b"top secret\n").unwrap();
        m.seal().unwrap();
        // Not close-on-exec.
        // SAFETY: F_GETFD on an open descriptor reads only its flags.
        let flags = unsafe { libc::fcntl(m.fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, 0);
        // Readable through /proc/self/fd/N with its own offset, twice.
        for _ in 0..2 {
            let mut s = String::new();
            File::open(m.proc_self_path())
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "top secret\n");
        }
        // Writes are refused after sealing, also through a reopened path.
        assert!(m.write_all(b"x").is_err());
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(m.proc_self_path())
            .unwrap();
        assert!(w.write_all(b"x").is_err());
        let link = std::fs::read_link(m.proc_self_path()).unwrap();
        assert!(link.to_string_lossy().starts_with("/memfd:tazpod-test"));
    }

    #[test]
    fn nul_in_name_is_einval() {
        assert_eq!(Memfd::create("a\0b").unwrap_err(), Errno(libc::EINVAL));
    }
}
