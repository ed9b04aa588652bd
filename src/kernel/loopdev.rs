//! Loop devices: attach a regular file to a free `/dev/loopN`.
//!
//! Layouts follow `include/uapi/linux/loop.h`: `struct loop_info64` (232
//! bytes) and `struct loop_config` (304 bytes), encoded field by field.
//! Attaching uses `LOOP_CONFIGURE` (Linux ≥ 5.8) with
//! `LO_FLAGS_AUTOCLEAR`, falling back to `LOOP_SET_FD` + `LOOP_SET_STATUS64`
//! on older kernels, and retries with another device when a concurrent
//! attacher takes the free one first (`EBUSY`).
//!
//! Autoclear detaches the device when its last opener closes it. The
//! [`LoopDevice`] handle keeps the loop device open: keep it until the
//! device-mapper table that uses it is loaded (dm then holds the device),
//! then drop it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{ensure_device_node, ioctl_request, read_sysfs_dev, DevId, Errno};

/// Path of the loop control node.
pub const LOOP_CONTROL_PATH: &str = "/dev/loop-control";
/// Device number of `/dev/loop-control` (misc 10, `LOOP_CTRL_MINOR`).
pub const LOOP_CONTROL_DEV: DevId = DevId {
    major: 10,
    minor: 237,
};
/// Block major number of loop devices.
pub const LOOP_MAJOR: u32 = 7;

const LOOP_SET_FD: u32 = 0x4C00;
const LOOP_CLR_FD: u32 = 0x4C01;
const LOOP_SET_STATUS64: u32 = 0x4C04;
const LOOP_GET_STATUS64: u32 = 0x4C05;
const LOOP_CONFIGURE: u32 = 0x4C0A;
const LOOP_CTL_GET_FREE: u32 = 0x4C82;

/// `lo_flags` bits.
pub mod lo_flags {
    /// The device is read-only.
    pub const READ_ONLY: u32 = 1;
    /// Detach when the last opener closes the device.
    pub const AUTOCLEAR: u32 = 4;
    /// Scan for partitions.
    pub const PARTSCAN: u32 = 8;
    /// Direct I/O to the backing file.
    pub const DIRECT_IO: u32 = 16;
}

/// `LO_NAME_SIZE`: the file name field, including its NUL.
pub const LO_NAME_SIZE: usize = 64;
/// `sizeof(struct loop_info64)`.
pub const LOOP_INFO64_SIZE: usize = 232;
/// `sizeof(struct loop_config)`.
pub const LOOP_CONFIG_SIZE: usize = 304;

// Offsets inside struct loop_info64.
const INFO_OFF_DEVICE: usize = 0;
const INFO_OFF_INODE: usize = 8;
const INFO_OFF_RDEVICE: usize = 16;
const INFO_OFF_OFFSET: usize = 24;
const INFO_OFF_SIZELIMIT: usize = 32;
const INFO_OFF_NUMBER: usize = 40;
const INFO_OFF_FLAGS: usize = 52;
const INFO_OFF_FILE_NAME: usize = 56;
// Offsets inside struct loop_config.
const CONFIG_OFF_FD: usize = 0;
const CONFIG_OFF_BLOCK_SIZE: usize = 4;
const CONFIG_OFF_INFO: usize = 8;

/// How many times a free device may be lost to a concurrent attacher.
const MAX_ATTEMPTS: u32 = 16;

/// A failed loop device operation.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoopError {
    /// A system call failed.
    Os {
        /// What was being done, e.g. `LOOP_CONFIGURE`.
        op: &'static str,
        /// The file or device involved.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// Every free device found was taken by someone else first.
    Busy {
        /// The file being attached.
        file: PathBuf,
        /// How many devices were tried.
        attempts: u32,
    },
    /// The kernel's answer does not decode.
    Malformed(&'static str),
}

impl LoopError {
    fn os(op: &'static str, path: &Path, errno: Errno) -> LoopError {
        LoopError::Os {
            op,
            path: path.to_owned(),
            errno,
        }
    }

    /// The `errno` of a failed system call, if that is what failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LoopError::Os { errno, .. } => Some(errno.raw()),
            _ => None,
        }
    }
}

impl fmt::Display for LoopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopError::Os { op, path, errno } => {
                write!(f, "loop device {op} on {} failed: {errno}", path.display())
            }
            LoopError::Busy { file, attempts } => write!(
                f,
                "cannot attach {} to a loop device: {attempts} free devices were taken by \
                 other attachers first; try again",
                file.display()
            ),
            LoopError::Malformed(what) => write!(f, "malformed loop device reply: {what}"),
        }
    }
}

impl std::error::Error for LoopError {}

/// The decoded fields of `struct loop_info64` we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopInfo {
    /// Device of the backing file's filesystem.
    pub device: u64,
    /// Inode of the backing file.
    pub inode: u64,
    /// Device number of the loop device.
    pub rdevice: u64,
    /// Byte offset into the backing file.
    pub offset: u64,
    /// Size limit in bytes (0: whole file).
    pub sizelimit: u64,
    /// Loop device number N.
    pub number: u32,
    /// `lo_flags`.
    pub flags: u32,
    /// `lo_file_name` (up to 63 bytes).
    pub file_name: Vec<u8>,
}

/// Encodes a `struct loop_info64` with the given flags and file name
/// (truncated to 63 bytes plus NUL, as the kernel keeps it); every other
/// field is zero.
pub fn encode_loop_info64(file_name: &[u8], flags: u32) -> [u8; LOOP_INFO64_SIZE] {
    let mut b = [0u8; LOOP_INFO64_SIZE];
    b[INFO_OFF_FLAGS..INFO_OFF_FLAGS + 4].copy_from_slice(&flags.to_ne_bytes());
    let n = file_name.len().min(LO_NAME_SIZE - 1);
    if let (Some(dst), Some(src)) = (
        b.get_mut(INFO_OFF_FILE_NAME..INFO_OFF_FILE_NAME + n),
        file_name.get(..n),
    ) {
        dst.copy_from_slice(src);
    }
    b
}

/// Encodes a `struct loop_config`: backing file descriptor, logical block
/// size (0: default) and the `loop_info64`; the reserved words stay zero.
pub fn encode_loop_config(
    fd: u32,
    block_size: u32,
    info: &[u8; LOOP_INFO64_SIZE],
) -> [u8; LOOP_CONFIG_SIZE] {
    let mut b = [0u8; LOOP_CONFIG_SIZE];
    b[CONFIG_OFF_FD..CONFIG_OFF_FD + 4].copy_from_slice(&fd.to_ne_bytes());
    b[CONFIG_OFF_BLOCK_SIZE..CONFIG_OFF_BLOCK_SIZE + 4].copy_from_slice(&block_size.to_ne_bytes());
    b[CONFIG_OFF_INFO..CONFIG_OFF_INFO + LOOP_INFO64_SIZE].copy_from_slice(info);
    b
}

/// Decodes a `struct loop_info64` returned by `LOOP_GET_STATUS64`.
pub fn decode_loop_info64(b: &[u8]) -> Result<LoopInfo, LoopError> {
    const SHORT: LoopError = LoopError::Malformed("loop_info64 too short");
    let u64_at = |off: usize| -> Result<u64, LoopError> {
        let s: [u8; 8] = b
            .get(off..off + 8)
            .and_then(|s| s.try_into().ok())
            .ok_or(SHORT)?;
        Ok(u64::from_ne_bytes(s))
    };
    let u32_at = |off: usize| -> Result<u32, LoopError> {
        let s: [u8; 4] = b
            .get(off..off + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or(SHORT)?;
        Ok(u32::from_ne_bytes(s))
    };
    let name_field = b
        .get(INFO_OFF_FILE_NAME..INFO_OFF_FILE_NAME + LO_NAME_SIZE)
        .ok_or(SHORT)?;
    let name_len = name_field
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(LO_NAME_SIZE);
    Ok(LoopInfo {
        device: u64_at(INFO_OFF_DEVICE)?,
        inode: u64_at(INFO_OFF_INODE)?,
        rdevice: u64_at(INFO_OFF_RDEVICE)?,
        offset: u64_at(INFO_OFF_OFFSET)?,
        sizelimit: u64_at(INFO_OFF_SIZELIMIT)?,
        number: u32_at(INFO_OFF_NUMBER)?,
        flags: u32_at(INFO_OFF_FLAGS)?,
        file_name: name_field.get(..name_len).unwrap_or(&[]).to_vec(),
    })
}

/// `ioctl(fd, req, arg)` with an integer argument; returns the result.
fn ioctl_int(file: &File, req: u32, arg: libc::c_ulong) -> Result<libc::c_int, Errno> {
    // SAFETY: the requests passed here (LOOP_CTL_GET_FREE, LOOP_SET_FD,
    // LOOP_CLR_FD) take an integer argument, not a pointer, so the kernel
    // dereferences no user memory. The fd is open for the call's duration.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), ioctl_request(req), arg) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// `ioctl(fd, req, buf)` where `buf` is exactly the structure `req` reads or
/// writes (`loop_config` for LOOP_CONFIGURE, `loop_info64` for the status
/// requests).
fn ioctl_struct<const N: usize>(file: &File, req: u32, buf: &mut [u8; N]) -> Result<(), Errno> {
    let expected = match req {
        LOOP_CONFIGURE => LOOP_CONFIG_SIZE,
        LOOP_SET_STATUS64 | LOOP_GET_STATUS64 => LOOP_INFO64_SIZE,
        _ => 0,
    };
    if expected != N {
        return Err(Errno(libc::EINVAL));
    }
    // SAFETY: `buf` is an exclusively borrowed array of exactly the size of
    // the structure this request copies in or out (checked above), so the
    // kernel's copy_from_user/copy_to_user stays inside it. No reference is
    // kept after the call. The fd is open for the call's duration.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), ioctl_request(req), buf.as_mut_ptr()) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Checks that loop devices can be made: `/dev/loop-control` opens (the node is made when
/// missing), as it must before a file is attached.
pub fn check_control() -> Result<(), LoopError> {
    open_control().map(drop)
}

/// Opens `/dev/loop-control`, creating the node (10:237, or the number in
/// sysfs) when missing.
fn open_control() -> Result<File, LoopError> {
    let path = Path::new(LOOP_CONTROL_PATH);
    let open = || OpenOptions::new().read(true).write(true).open(path);
    match open() {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dev = read_sysfs_dev(Path::new("/sys/class/misc/loop-control/dev"))
                .unwrap_or(LOOP_CONTROL_DEV);
            ensure_device_node(path, libc::S_IFCHR, dev)
                .map_err(|errno| LoopError::os("mknod", path, errno))?;
            open().map_err(|e| LoopError::os("open", path, Errno::from_io(&e)))
        }
        Err(e) => Err(LoopError::os("open", path, Errno::from_io(&e))),
    }
}

/// The device number of `/dev/loopN`: from sysfs, else (7, N).
fn loop_dev_id(number: u32) -> DevId {
    read_sysfs_dev(&PathBuf::from(format!("/sys/block/loop{number}/dev"))).unwrap_or(DevId {
        major: LOOP_MAJOR,
        minor: number,
    })
}

/// An attached loop device. The device stays open while this handle lives;
/// with autoclear set, dropping the last opener detaches it.
#[derive(Debug)]
pub struct LoopDevice {
    file: File,
    path: PathBuf,
    dev: DevId,
    number: u32,
}

/// How one attach attempt ended.
enum Attempt {
    Attached,
    /// Someone else took the device: try another.
    Lost,
}

impl LoopDevice {
    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device number.
    pub fn dev(&self) -> DevId {
        self.dev
    }

    /// N in `/dev/loopN`.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The device's status (`LOOP_GET_STATUS64`).
    pub fn status(&self) -> Result<LoopInfo, LoopError> {
        let mut buf = [0u8; LOOP_INFO64_SIZE];
        ioctl_struct(&self.file, LOOP_GET_STATUS64, &mut buf)
            .map_err(|e| LoopError::os("LOOP_GET_STATUS64", &self.path, e))?;
        decode_loop_info64(&buf)
    }

    /// Detaches the backing file (`LOOP_CLR_FD`) and closes the device. If
    /// someone else still has the device open, the kernel detaches it when
    /// they close it.
    pub fn detach(self) -> Result<(), LoopError> {
        match ioctl_int(&self.file, LOOP_CLR_FD, 0) {
            Ok(_) => Ok(()),
            // Already detached (e.g. autoclear raced us).
            Err(e) if e.raw() == libc::ENXIO => Ok(()),
            Err(e) => Err(LoopError::os("LOOP_CLR_FD", &self.path, e)),
        }
    }

    /// Closes this handle without detaching: with autoclear, the device
    /// detaches once its other openers (e.g. a dm table) let go.
    pub fn release(self) {
        drop(self);
    }
}

/// Attaches the regular file `file` to a free loop device with autoclear
/// (and read-only when `readonly`), naming it after the file.
///
/// Opens the file read-write (read-only when `readonly`), takes a free
/// device from `/dev/loop-control` (creating that node and the `/dev/loopN`
/// node if missing), and configures it. Retries with another device when a
/// concurrent attacher wins the race, up to 16 times.
pub fn attach(file: &Path, readonly: bool) -> Result<LoopDevice, LoopError> {
    attach_with(file, readonly, true)
}

/// [`attach`] of a file already open (`name` for messages and the loop device's file name):
/// the device is bound to this very descriptor (`LOOP_CONFIGURE` / `LOOP_SET_FD` take a
/// descriptor), so no path is looked up again. It is read-only when `readonly`, or when
/// `backing` was opened read-only.
pub fn attach_fd(backing: &File, name: &Path, readonly: bool) -> Result<LoopDevice, LoopError> {
    attach_open(backing, name, readonly, true)
}

/// [`attach`], optionally skipping LOOP_CONFIGURE (to test the fallback).
fn attach_with(file: &Path, readonly: bool, use_configure: bool) -> Result<LoopDevice, LoopError> {
    let backing = OpenOptions::new()
        .read(true)
        .write(!readonly)
        .open(file)
        .map_err(|e| LoopError::os("open", file, Errno::from_io(&e)))?;
    attach_open(&backing, file, readonly, use_configure)
}

fn attach_open(
    backing: &File,
    file: &Path,
    readonly: bool,
    use_configure: bool,
) -> Result<LoopDevice, LoopError> {
    let backing_fd = u32::try_from(backing.as_raw_fd())
        .map_err(|_| LoopError::os("open", file, Errno(libc::EBADF)))?;
    let control = open_control()?;
    let control_path = Path::new(LOOP_CONTROL_PATH);

    let mut flags = lo_flags::AUTOCLEAR;
    if readonly {
        flags |= lo_flags::READ_ONLY;
    }
    let info = encode_loop_info64(file.as_os_str().as_bytes(), flags);

    for _ in 0..MAX_ATTEMPTS {
        let number = ioctl_int(&control, LOOP_CTL_GET_FREE, 0)
            .map_err(|e| LoopError::os("LOOP_CTL_GET_FREE", control_path, e))?;
        let number = u32::try_from(number)
            .map_err(|_| LoopError::Malformed("negative free loop device number"))?;
        let dev = loop_dev_id(number);
        let path = PathBuf::from(format!("/dev/loop{number}"));
        ensure_device_node(&path, libc::S_IFBLK, dev)
            .map_err(|e| LoopError::os("mknod", &path, e))?;
        let device = OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(&path)
            .map_err(|e| LoopError::os("open", &path, Errno::from_io(&e)))?;
        match configure(&device, &path, backing_fd, &info, use_configure)? {
            Attempt::Attached => {
                return Ok(LoopDevice {
                    file: device,
                    path,
                    dev,
                    number,
                })
            }
            Attempt::Lost => continue,
        }
    }
    Err(LoopError::Busy {
        file: file.to_owned(),
        attempts: MAX_ATTEMPTS,
    })
}

/// Binds `backing` to the opened loop `device`: LOOP_CONFIGURE, or on
/// kernels without it LOOP_SET_FD then LOOP_SET_STATUS64.
fn configure(
    device: &File,
    path: &Path,
    backing_fd: u32,
    info: &[u8; LOOP_INFO64_SIZE],
    use_configure: bool,
) -> Result<Attempt, LoopError> {
    if use_configure {
        let mut config = encode_loop_config(backing_fd, 0, info);
        match ioctl_struct(device, LOOP_CONFIGURE, &mut config) {
            Ok(()) => return Ok(Attempt::Attached),
            Err(e) if e.raw() == libc::EBUSY => return Ok(Attempt::Lost),
            // Kernels before 5.8 answer EINVAL (or ENOTTY) to LOOP_CONFIGURE.
            Err(e) if e.raw() == libc::EINVAL || e.raw() == libc::ENOTTY => {}
            Err(e) => return Err(LoopError::os("LOOP_CONFIGURE", path, e)),
        }
    }
    let fd = libc::c_ulong::from(backing_fd);
    match ioctl_int(device, LOOP_SET_FD, fd) {
        Ok(_) => {}
        Err(e) if e.raw() == libc::EBUSY => return Ok(Attempt::Lost),
        Err(e) => return Err(LoopError::os("LOOP_SET_FD", path, e)),
    }
    // The read-only flag is not settable here: LOOP_SET_FD made the device
    // read-only already when the backing file was opened read-only.
    let mut status = *info;
    if let Err(e) = ioctl_struct(device, LOOP_SET_STATUS64, &mut status) {
        let _ = ioctl_int(device, LOOP_CLR_FD, 0);
        return Err(LoopError::os("LOOP_SET_STATUS64", path, e));
    }
    Ok(Attempt::Attached)
}

/// The attached loop devices whose backing file is the file `(dev, ino)` (by
/// `LOOP_GET_STATUS64`, so whatever path the file was attached by). Devices
/// that cannot be opened or queried are skipped.
pub fn attached_to(dev: u64, ino: u64) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix("loop")) else {
            continue;
        };
        if n.parse::<u32>().is_err() || !e.path().join("loop").exists() {
            continue;
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let Ok(f) = File::open(&path) else {
            continue;
        };
        let mut buf = [0u8; LOOP_INFO64_SIZE];
        if ioctl_struct(&f, LOOP_GET_STATUS64, &mut buf).is_err() {
            continue;
        }
        if let Ok(info) = decode_loop_info64(&buf) {
            if info.device == dev && info.inode == ino {
                found.push(path);
            }
        }
    }
    found
}

/// The backing file of a loop device, from
/// `/sys/dev/block/MAJ:MIN/loop/backing_file`; `None` when `dev` is not an
/// attached loop device.
pub fn find_backing_file(dev: DevId) -> Option<PathBuf> {
    let p = format!(
        "/sys/dev/block/{}:{}/loop/backing_file",
        dev.major, dev.minor
    );
    let text = std::fs::read(p).ok()?;
    let text = text.strip_suffix(b"\n").unwrap_or(&text);
    if text.is_empty() {
        return None;
    }
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(text)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::time::{Duration, Instant};

    #[test]
    fn loop_info64_layout() {
        let b = encode_loop_info64(b"/tmp/x.img", lo_flags::AUTOCLEAR | lo_flags::READ_ONLY);
        assert_eq!(b.len(), 232);
        assert_eq!(u32::from_ne_bytes(b[52..56].try_into().unwrap()), 5);
        assert_eq!(&b[56..66], b"/tmp/x.img");
        assert!(b[66..].iter().all(|&x| x == 0));
        assert!(b[..52].iter().all(|&x| x == 0));
        let info = decode_loop_info64(&b).unwrap();
        assert_eq!(info.flags, 5);
        assert_eq!(info.file_name, b"/tmp/x.img");
    }

    #[test]
    fn long_file_names_are_truncated_to_63_bytes() {
        let long = vec![b'a'; 100];
        let b = encode_loop_info64(&long, 0);
        assert_eq!(&b[56..119], &long[..63]);
        assert_eq!(b[119], 0);
        assert_eq!(decode_loop_info64(&b).unwrap().file_name.len(), 63);
    }

    #[test]
    fn loop_config_layout() {
        let info = encode_loop_info64(b"f", lo_flags::AUTOCLEAR);
        let c = encode_loop_config(9, 4096, &info);
        assert_eq!(c.len(), 304);
        assert_eq!(u32::from_ne_bytes(c[0..4].try_into().unwrap()), 9);
        assert_eq!(u32::from_ne_bytes(c[4..8].try_into().unwrap()), 4096);
        assert_eq!(&c[8..240], &info[..]);
        assert!(c[240..].iter().all(|&x| x == 0), "reserved");
    }

    #[test]
    fn decode_short_info_fails_cleanly() {
        for n in [0, 10, 55, 100, 119] {
            assert!(decode_loop_info64(&vec![0u8; n]).is_err(), "{n}");
        }
    }

    #[test]
    fn wrong_struct_size_is_refused_before_the_kernel() {
        let f = File::open("/dev/null").unwrap();
        let mut small = [0u8; 8];
        assert_eq!(
            ioctl_struct(&f, LOOP_CONFIGURE, &mut small),
            Err(Errno(libc::EINVAL))
        );
    }

    fn loop_usable() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: loop devices need root");
            return false;
        }
        if !Path::new(LOOP_CONTROL_PATH).exists() {
            eprintln!("skipped: no {LOOP_CONTROL_PATH}");
            return false;
        }
        true
    }

    fn wait_detached(dev: DevId) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if find_backing_file(dev).is_none() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn attach_read_write_and_detach() {
        if !loop_usable() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("rw.img");
        let mut data = vec![0u8; 1 << 20];
        data[..11].copy_from_slice(b"tazpod-loop");
        std::fs::write(&img, &data).unwrap();
        let img = img.canonicalize().unwrap();

        let lo = attach(&img, false).unwrap();
        assert!(lo.path().to_string_lossy().starts_with("/dev/loop"));
        assert_eq!(find_backing_file(lo.dev()), Some(img.clone()));
        let st = lo.status().unwrap();
        assert_eq!(st.number, lo.number());
        assert_ne!(st.flags & lo_flags::AUTOCLEAR, 0);
        assert_eq!(st.flags & lo_flags::READ_ONLY, 0);
        let name = img.as_os_str().as_bytes();
        assert_eq!(st.file_name, &name[..name.len().min(63)]);

        // Reads and writes go through to the file.
        let mut dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(lo.path())
            .unwrap();
        let mut head = [0u8; 11];
        dev.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"tazpod-loop");
        dev.seek(std::io::SeekFrom::Start(0)).unwrap();
        dev.write_all(b"TAZPOD").unwrap();
        dev.sync_all().unwrap();
        drop(dev);

        let devid = lo.dev();
        lo.detach().unwrap();
        assert!(wait_detached(devid), "loop device still attached");
        let back = std::fs::read(&img).unwrap();
        assert_eq!(&back[..11], b"TAZPOD-loop");
    }

    #[test]
    fn attach_read_only_and_autoclear_on_close() {
        if !loop_usable() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("ro.img");
        std::fs::write(&img, vec![7u8; 1 << 20]).unwrap();
        let img = img.canonicalize().unwrap();

        let lo = attach(&img, true).unwrap();
        let st = lo.status().unwrap();
        assert_ne!(st.flags & lo_flags::READ_ONLY, 0);
        assert_ne!(st.flags & lo_flags::AUTOCLEAR, 0);
        let ro = std::fs::read_to_string(format!("/sys/block/loop{}/ro", lo.number())).unwrap();
        assert_eq!(ro.trim(), "1");
        // Writes to a read-only loop device fail (at open or at write).
        let write = OpenOptions::new()
            .write(true)
            .open(lo.path())
            .and_then(|mut f| f.write_all(&[0u8; 512]).and_then(|()| f.sync_all()));
        assert!(write.is_err());
        assert_eq!(std::fs::read(&img).unwrap()[0], 7);

        let devid = lo.dev();
        assert_eq!(find_backing_file(devid), Some(img));
        // Closing the last opener lets autoclear detach the device.
        lo.release();
        assert!(wait_detached(devid), "autoclear did not detach");
    }

    #[test]
    fn attach_with_set_fd_fallback() {
        if !loop_usable() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for readonly in [false, true] {
            let img = dir.path().join(format!("fallback-{readonly}.img"));
            std::fs::write(&img, vec![1u8; 1 << 20]).unwrap();
            let img = img.canonicalize().unwrap();
            let lo = attach_with(&img, readonly, false).unwrap();
            let st = lo.status().unwrap();
            assert_ne!(st.flags & lo_flags::AUTOCLEAR, 0);
            assert_eq!(st.flags & lo_flags::READ_ONLY != 0, readonly);
            assert_eq!(find_backing_file(lo.dev()), Some(img));
            let devid = lo.dev();
            lo.release();
            assert!(wait_detached(devid), "autoclear did not detach");
        }
    }

    #[test]
    fn attach_missing_file_names_it() {
        let e = attach(Path::new("/nonexistent/tazpod.img"), true).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(e.to_string().contains("/nonexistent/tazpod.img"));
    }

    #[test]
    fn backing_file_of_non_loop_is_none() {
        assert_eq!(find_backing_file(DevId { major: 1, minor: 3 }), None);
    }
}
