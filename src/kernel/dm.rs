//! Device-mapper ioctls over `/dev/mapper/control`.
//!
//! The layout follows the kernel's `include/uapi/linux/dm-ioctl.h` (interface
//! version 4). Every request is a `struct dm_ioctl` (312 bytes) followed by a
//! data area; both are encoded here field by field into a byte buffer by
//! [`encode_request`] and replies are decoded by [`decode_header`],
//! [`decode_targets`], [`decode_name_list`] and [`decode_target_versions`],
//! which check every offset against the buffer. These are pure functions,
//! tested without root. [`Control::ioctl`] is the single place that calls
//! `ioctl(2)`: it sets the interface version and sizes, grows the buffer when
//! the kernel answers `DM_BUFFER_FULL_FLAG` and turns `errno` into a
//! [`DmError`] naming the operation and the device.
//!
//! Every buffer is a `Zeroizing<Vec<u8>>`: table parameters (which may name a
//! key or, in hex mode, contain one) are wiped when the buffer is dropped.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{ensure_device_node, ioctl_request, remove_device_node, DevId, Errno, NodeOutcome};

/// Path of the device-mapper control node.
pub const CONTROL_PATH: &str = "/dev/mapper/control";
/// Directory holding `/dev/mapper/<name>` nodes.
pub const MAPPER_DIR: &str = "/dev/mapper";
/// Sysfs file giving the control node's `MAJ:MIN` when device-mapper is loaded.
pub const CONTROL_SYSFS_DEV: &str = "/sys/class/misc/device-mapper/dev";

/// `sizeof(struct dm_ioctl)`.
pub const HEADER_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
pub const SPEC_SIZE: usize = 40;
/// `DM_NAME_LEN`: the name field, including its NUL.
pub const DM_NAME_LEN: usize = 128;
/// `DM_UUID_LEN`: the uuid field, including its NUL.
pub const DM_UUID_LEN: usize = 129;
/// `DM_MAX_TYPE_NAME`: the target type field, including its NUL.
pub const DM_MAX_TYPE_NAME: usize = 16;

/// Interface version we speak (major must match, minor 0 is accepted by all).
const OUR_VERSION: [u32; 3] = [4, 0, 0];
/// `offsetof(struct dm_ioctl, data)`: the smallest `data_size` the kernel takes
/// and the size it reports back for commands without a data area.
const MIN_DATA_SIZE: usize = 305;
/// First output buffer for commands that return data (libdevmapper's default).
const INITIAL_OUTPUT_SIZE: usize = 16 * 1024;
/// Largest buffer we grow to before giving up.
const MAX_BUFFER_SIZE: usize = 16 * 1024 * 1024;

// Field offsets inside struct dm_ioctl.
const OFF_VERSION: usize = 0;
const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_OPEN_COUNT: usize = 24;
const OFF_FLAGS: usize = 28;
const OFF_EVENT_NR: usize = 32;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;
const OFF_UUID: usize = OFF_NAME + DM_NAME_LEN;

// Field offsets inside struct dm_target_spec.
const SPEC_OFF_START: usize = 0;
const SPEC_OFF_LENGTH: usize = 8;
const SPEC_OFF_STATUS: usize = 16;
const SPEC_OFF_NEXT: usize = 20;
const SPEC_OFF_TYPE: usize = 24;

/// `offsetof(struct dm_name_list, name)`.
const NAME_LIST_OFF_NAME: usize = 12;
/// `offsetof(struct dm_target_versions, name)`.
const VERSIONS_OFF_NAME: usize = 16;

/// `dm_ioctl.flags` bits.
pub mod flags {
    /// In: table is read-only. Out: device is read-only.
    pub const READONLY: u32 = 1 << 0;
    /// In: suspend (DEV_SUSPEND). Out: device is suspended.
    pub const SUSPEND: u32 = 1 << 1;
    /// In: use the minor number in `dev`.
    pub const PERSISTENT_DEV: u32 = 1 << 3;
    /// In: TABLE_STATUS returns the table lines instead of the status.
    pub const STATUS_TABLE: u32 = 1 << 4;
    /// Out: an active table is present.
    pub const ACTIVE_PRESENT: u32 = 1 << 5;
    /// Out: an inactive (loaded, not yet resumed) table is present.
    pub const INACTIVE_PRESENT: u32 = 1 << 6;
    /// Out: the buffer was too small for the answer.
    pub const BUFFER_FULL: u32 = 1 << 8;
    /// In: do not freeze the filesystem when suspending.
    pub const SKIP_LOCKFS: u32 = 1 << 10;
    /// In: suspend without flushing queued I/O.
    pub const NOFLUSH: u32 = 1 << 11;
    /// Out: a uevent was generated.
    pub const UEVENT_GENERATED: u32 = 1 << 13;
    /// In: the kernel wipes its copies of the buffer (key material).
    pub const SECURE_DATA: u32 = 1 << 15;
    /// In (DEV_REMOVE): remove when the last opener closes. Out: removal is pending.
    pub const DEFERRED_REMOVE: u32 = 1 << 17;
    /// Out: device is suspended internally.
    pub const INTERNAL_SUSPEND: u32 = 1 << 18;
}

/// Minimum interface minor versions for features we use (from cryptsetup's
/// `_dm_check_versions`).
pub mod min_minor {
    /// `DM_SECURE_DATA_FLAG`.
    pub const SECURE_DATA: u32 = 20;
    /// `DM_DEFERRED_REMOVE`.
    pub const DEFERRED_REMOVE: u32 = 27;
    /// `DM_GET_TARGET_VERSION` (loads the target's module on demand).
    pub const GET_TARGET_VERSION: u32 = 41;
}

/// The device-mapper ioctl commands (`DM_*_CMD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `DM_VERSION`: interface version only.
    Version,
    /// `DM_LIST_DEVICES`: names and numbers of all devices.
    ListDevices,
    /// `DM_DEV_CREATE`: new device without table.
    DevCreate,
    /// `DM_DEV_REMOVE`: remove a device.
    DevRemove,
    /// `DM_DEV_SUSPEND`: suspend, or resume (swapping in the inactive table).
    DevSuspend,
    /// `DM_DEV_STATUS`: device information.
    DevStatus,
    /// `DM_TABLE_LOAD`: load the inactive table.
    TableLoad,
    /// `DM_TABLE_CLEAR`: drop the inactive table.
    TableClear,
    /// `DM_TABLE_STATUS`: per-target status or table lines.
    TableStatus,
    /// `DM_LIST_VERSIONS`: loaded target types and their versions.
    ListVersions,
    /// `DM_GET_TARGET_VERSION`: one target type's version, loading its module.
    GetTargetVersion,
}

impl Command {
    /// The command number (`_IOC_NR`).
    pub const fn nr(self) -> u32 {
        match self {
            Command::Version => 0,
            Command::ListDevices => 2,
            Command::DevCreate => 3,
            Command::DevRemove => 4,
            Command::DevSuspend => 6,
            Command::DevStatus => 7,
            Command::TableLoad => 9,
            Command::TableClear => 10,
            Command::TableStatus => 12,
            Command::ListVersions => 13,
            Command::GetTargetVersion => 17,
        }
    }

    /// The name used in error messages (the kernel's, without `DM_`).
    pub const fn name(self) -> &'static str {
        match self {
            Command::Version => "VERSION",
            Command::ListDevices => "LIST_DEVICES",
            Command::DevCreate => "DEV_CREATE",
            Command::DevRemove => "DEV_REMOVE",
            Command::DevSuspend => "DEV_SUSPEND",
            Command::DevStatus => "DEV_STATUS",
            Command::TableLoad => "TABLE_LOAD",
            Command::TableClear => "TABLE_CLEAR",
            Command::TableStatus => "TABLE_STATUS",
            Command::ListVersions => "LIST_VERSIONS",
            Command::GetTargetVersion => "GET_TARGET_VERSION",
        }
    }

    /// The ioctl request number: `_IOWR(0xfd, nr, struct dm_ioctl)`.
    // HEADER_SIZE is 312: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    pub const fn request(self) -> u32 {
        iowr(0xfd, self.nr(), HEADER_SIZE as u32)
    }

    /// Whether the kernel writes a variable-size answer into the data area.
    const fn returns_data(self) -> bool {
        matches!(
            self,
            Command::ListDevices
                | Command::ListVersions
                | Command::GetTargetVersion
                | Command::TableStatus
        )
    }
}

#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips32r6",
    target_arch = "mips64",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
const IOC_READ_WRITE: u32 = (2 | 4) << 29;
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips32r6",
    target_arch = "mips64",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
const IOC_READ_WRITE: u32 = 3 << 30;

/// `_IOWR(ty, nr, size)`: direction bits, 13/14-bit size, type and number.
pub const fn iowr(ty: u32, nr: u32, size: u32) -> u32 {
    IOC_READ_WRITE | ((size & 0x1fff) << 16) | ((ty & 0xff) << 8) | (nr & 0xff)
}

/// Why a device-mapper operation failed.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DmErrorKind {
    /// The ioctl returned this `errno`.
    Os(Errno),
    /// The control node is missing and device-mapper is not in the kernel.
    Unavailable,
    /// The control node could not be opened or created.
    Control {
        /// Path that was opened or created.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// The kernel speaks another major interface version.
    InterfaceVersion {
        /// The kernel's version.
        kernel: [u32; 3],
    },
    /// The kernel's interface is too old for a feature.
    Unsupported {
        /// The feature.
        feature: &'static str,
        /// The interface minor version the feature needs (major is 4).
        needed_minor: u32,
        /// The kernel's version.
        kernel: [u32; 3],
    },
    /// The device name cannot be sent to the kernel.
    InvalidName(&'static str),
    /// The uuid cannot be sent to the kernel.
    InvalidUuid(&'static str),
    /// A table target cannot be encoded.
    InvalidTarget {
        /// Index of the target in the table.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The request would exceed the largest buffer we send.
    TooLarge,
    /// The kernel kept asking for a bigger buffer past our limit.
    BufferLimit,
    /// The kernel's reply does not decode.
    Malformed(&'static str),
    /// The `/dev/mapper/<name>` node could not be created or removed.
    Node {
        /// The node path.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
}

/// A failed device-mapper operation: what was done (`op`), to which device
/// (`name`, empty for global operations) and why.
#[derive(Debug, PartialEq, Eq)]
pub struct DmError {
    /// The operation, e.g. `DEV_CREATE`.
    pub op: &'static str,
    /// The device (or target type) name; empty for global operations.
    pub name: String,
    /// Why it failed.
    pub kind: DmErrorKind,
}

impl DmError {
    fn new(op: &'static str, name: &str, kind: DmErrorKind) -> DmError {
        DmError {
            op,
            name: name.to_owned(),
            kind,
        }
    }

    /// The `errno` of a failed ioctl, if that is what failed.
    pub fn errno(&self) -> Option<i32> {
        match &self.kind {
            DmErrorKind::Os(e) => Some(e.raw()),
            _ => None,
        }
    }

    /// True when the kernel knows no device of that name (`ENXIO`).
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(libc::ENXIO)
    }

    /// True when the device is open or the name/uuid is taken (`EBUSY`).
    pub fn is_busy(&self) -> bool {
        self.errno() == Some(libc::EBUSY)
    }
}

impl fmt::Display for DmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "device-mapper {} failed: ", self.op)?;
        } else {
            write!(f, "device-mapper {} of '{}' failed: ", self.op, self.name)?;
        }
        match &self.kind {
            DmErrorKind::Os(e) => match (self.op, e.raw()) {
                ("DEV_CREATE", libc::EBUSY) => {
                    write!(f, "a device with this name or uuid already exists ({e})")
                }
                ("DEV_REMOVE", libc::EBUSY) => write!(f, "the device is still in use ({e})"),
                (_, libc::ENXIO) => write!(f, "no such device ({e})"),
                (_, libc::EACCES) | (_, libc::EPERM) => {
                    write!(f, "{e} (device-mapper needs CAP_SYS_ADMIN)")
                }
                _ => write!(f, "{e}"),
            },
            DmErrorKind::Unavailable => write!(
                f,
                "device-mapper is not available in this kernel (no {CONTROL_PATH} and no \
                 {CONTROL_SYSFS_DEV}; load the dm_mod module)"
            ),
            DmErrorKind::Control { path, errno } => {
                write!(f, "cannot open {}: {errno}", path.display())?;
                if matches!(errno.raw(), libc::ENODEV | libc::ENXIO) {
                    write!(f, " (device-mapper is not available in this kernel)")?;
                }
                Ok(())
            }
            DmErrorKind::InterfaceVersion { kernel } => write!(
                f,
                "kernel speaks device-mapper interface {}.{}.{}, we need 4.x",
                kernel[0], kernel[1], kernel[2]
            ),
            DmErrorKind::Unsupported {
                feature,
                needed_minor,
                kernel,
            } => write!(
                f,
                "{feature} needs device-mapper interface 4.{needed_minor}, kernel has {}.{}.{}",
                kernel[0], kernel[1], kernel[2]
            ),
            DmErrorKind::InvalidName(why) => write!(f, "invalid device name: {why}"),
            DmErrorKind::InvalidUuid(why) => write!(f, "invalid device uuid: {why}"),
            DmErrorKind::InvalidTarget { index, reason } => {
                write!(f, "invalid table target {index}: {reason}")
            }
            DmErrorKind::TooLarge => write!(f, "request too large"),
            DmErrorKind::BufferLimit => write!(
                f,
                "reply larger than {} MiB",
                MAX_BUFFER_SIZE / (1024 * 1024)
            ),
            DmErrorKind::Malformed(what) => write!(f, "malformed kernel reply: {what}"),
            DmErrorKind::Node { path, errno } => write!(f, "{}: {errno}", path.display()),
        }
    }
}

impl std::error::Error for DmError {}

/// One line of a table to load: `start length target_type params`.
///
/// `params` may hold key material (a hex key, or a keyring reference); it is
/// wiped on drop and never printed by `Debug`.
pub struct Target {
    /// First sector (512-byte units) of the device this line maps.
    pub start: u64,
    /// Number of sectors mapped.
    pub length: u64,
    /// Target type, e.g. `crypt` (at most 15 bytes).
    pub target_type: String,
    /// Target parameters, without NUL bytes.
    pub params: Zeroizing<Vec<u8>>,
}

impl Target {
    /// Builds a table line.
    pub fn new(start: u64, length: u64, target_type: &str, params: Zeroizing<Vec<u8>>) -> Target {
        Target {
            start,
            length,
            target_type: target_type.to_owned(),
            params,
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("start", &self.start)
            .field("length", &self.length)
            .field("target_type", &self.target_type)
            .field("params", &"<redacted>")
            .finish()
    }
}

/// One target of a table as reported by TABLE_STATUS.
pub struct TargetInfo {
    /// First sector.
    pub start: u64,
    /// Number of sectors.
    pub length: u64,
    /// Target type.
    pub target_type: String,
    /// Table parameters (`want_table`) or status text; wiped on drop since a
    /// table line may hold a hex key.
    pub params: Zeroizing<Vec<u8>>,
}

impl TargetInfo {
    /// The parameters as text, when they are UTF-8.
    pub fn params_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.params).ok()
    }
}

impl fmt::Debug for TargetInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetInfo")
            .field("start", &self.start)
            .field("length", &self.length)
            .field("target_type", &self.target_type)
            .field("params", &"<redacted>")
            .finish()
    }
}

/// A device's state from the reply header (DEV_STATUS, TABLE_STATUS, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device name.
    pub name: String,
    /// Device uuid (empty when none).
    pub uuid: String,
    /// Device number of the mapped block device.
    pub dev: DevId,
    /// Number of openers.
    pub open_count: i32,
    /// Event counter.
    pub event_nr: u32,
    /// Number of targets in the (active) table.
    pub target_count: u32,
    /// Raw `flags` as returned (see [`flags`]).
    pub flags: u32,
}

impl DeviceInfo {
    /// The device is read-only.
    pub fn readonly(&self) -> bool {
        self.flags & flags::READONLY != 0
    }
    /// The device is suspended.
    pub fn suspended(&self) -> bool {
        self.flags & flags::SUSPEND != 0
    }
    /// An active table is present.
    pub fn active_table(&self) -> bool {
        self.flags & flags::ACTIVE_PRESENT != 0
    }
    /// An inactive (loaded, not yet resumed) table is present.
    pub fn inactive_table(&self) -> bool {
        self.flags & flags::INACTIVE_PRESENT != 0
    }
    /// A deferred removal is pending (device goes away on last close).
    pub fn deferred_remove(&self) -> bool {
        self.flags & flags::DEFERRED_REMOVE != 0
    }

    fn from_header(h: &Header) -> DeviceInfo {
        DeviceInfo {
            name: h.name.clone(),
            uuid: h.uuid.clone(),
            dev: DevId::from_raw(h.dev),
            open_count: h.open_count,
            event_nr: h.event_nr,
            target_count: h.target_count,
            flags: h.flags,
        }
    }
}

/// A loaded target type and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetVersion {
    /// Target type name, e.g. `crypt`.
    pub name: String,
    /// Version `[major, minor, patch]`.
    pub version: [u32; 3],
}

/// What DEV_REMOVE did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// The device is gone.
    Removed,
    /// The device is open; the kernel removes it when the last opener closes.
    Deferred,
}

/// The fields of one request, before encoding.
#[derive(Debug)]
pub struct Request<'a> {
    /// The command.
    pub cmd: Command,
    /// Device name (target type name for GET_TARGET_VERSION); may be empty.
    pub name: &'a str,
    /// Device uuid; may be empty.
    pub uuid: &'a str,
    /// `dm_ioctl.flags` input bits.
    pub flags: u32,
    /// Table lines (TABLE_LOAD only).
    pub targets: &'a [Target],
}

impl<'a> Request<'a> {
    /// A request with no uuid, flags or targets.
    pub fn new(cmd: Command, name: &'a str) -> Request<'a> {
        Request {
            cmd,
            name,
            uuid: "",
            flags: 0,
            targets: &[],
        }
    }
}

/// The decoded `struct dm_ioctl` of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Kernel interface version.
    pub version: [u32; 3],
    /// Bytes of the buffer the kernel filled (header included).
    pub data_size: u32,
    /// Offset of the data area.
    pub data_start: u32,
    /// Number of targets.
    pub target_count: u32,
    /// Number of openers.
    pub open_count: i32,
    /// Flags.
    pub flags: u32,
    /// Event counter.
    pub event_nr: u32,
    /// Device number (kernel `huge_encode_dev`).
    pub dev: u64,
    /// Device name.
    pub name: String,
    /// Device uuid.
    pub uuid: String,
}

impl Header {
    /// The data area `[data_start, data_size)` of `buf`, empty when the kernel
    /// returned no data.
    fn data<'b>(&self, buf: &'b [u8]) -> Result<&'b [u8], DmErrorKind> {
        let start = usize::try_from(self.data_start)
            .map_err(|_| DmErrorKind::Malformed("data_start out of range"))?;
        let end = usize::try_from(self.data_size)
            .map_err(|_| DmErrorKind::Malformed("data_size out of range"))?;
        if end <= start {
            return Ok(&[]);
        }
        buf.get(start..end)
            .ok_or(DmErrorKind::Malformed("data area outside the buffer"))
    }
}

/// Checks a device name the way the kernel does, before sending it:
/// non-empty, at most 127 bytes, no `/`, no NUL, not `control`, `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), DmErrorKind> {
    if name.is_empty() {
        return Err(DmErrorKind::InvalidName("empty"));
    }
    if name.len() >= DM_NAME_LEN {
        return Err(DmErrorKind::InvalidName("longer than 127 bytes"));
    }
    if name.contains('/') {
        return Err(DmErrorKind::InvalidName("contains '/'"));
    }
    if name.contains('\0') {
        return Err(DmErrorKind::InvalidName("contains a NUL byte"));
    }
    if matches!(name, "control" | "." | "..") {
        return Err(DmErrorKind::InvalidName("reserved name"));
    }
    Ok(())
}

/// Checks a device uuid: at most 128 bytes, no NUL (empty means none).
pub fn validate_uuid(uuid: &str) -> Result<(), DmErrorKind> {
    if uuid.len() >= DM_UUID_LEN {
        return Err(DmErrorKind::InvalidUuid("longer than 128 bytes"));
    }
    if uuid.contains('\0') {
        return Err(DmErrorKind::InvalidUuid("contains a NUL byte"));
    }
    Ok(())
}

fn validate_target_type(ttype: &str) -> Result<(), &'static str> {
    if ttype.is_empty() {
        return Err("empty target type");
    }
    if ttype.len() >= DM_MAX_TYPE_NAME {
        return Err("target type longer than 15 bytes");
    }
    if ttype.contains('\0') {
        return Err("target type contains a NUL byte");
    }
    Ok(())
}

/// Rounds up to the next multiple of 8 (the kernel's `align_ptr`).
fn align8(n: usize) -> Option<usize> {
    n.checked_add(7).map(|v| v & !7)
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) -> Result<(), DmErrorKind> {
    let end = off.checked_add(bytes.len()).ok_or(DmErrorKind::TooLarge)?;
    buf.get_mut(off..end)
        .ok_or(DmErrorKind::TooLarge)?
        .copy_from_slice(bytes);
    Ok(())
}

/// Encodes a request: `struct dm_ioctl` then, for TABLE_LOAD, one
/// `struct dm_target_spec` per target followed by its NUL-terminated
/// parameters, each record padded to 8 bytes.
///
/// The buffer is at least `min_size` bytes (room for the kernel's answer);
/// `data_size` is set to the buffer length and `data_start` to 312.
pub fn encode_request(
    req: &Request<'_>,
    min_size: usize,
) -> Result<Zeroizing<Vec<u8>>, DmErrorKind> {
    match req.cmd {
        Command::Version | Command::ListDevices | Command::ListVersions => {
            if !req.name.is_empty() || !req.uuid.is_empty() {
                return Err(DmErrorKind::InvalidName(
                    "global commands take no name or uuid",
                ));
            }
        }
        Command::GetTargetVersion => {
            validate_target_type(req.name).map_err(DmErrorKind::InvalidName)?;
        }
        Command::DevCreate => {
            validate_name(req.name)?;
            validate_uuid(req.uuid)?;
        }
        _ => {
            // Lookups go by exactly one of name or uuid.
            match (req.name.is_empty(), req.uuid.is_empty()) {
                (false, true) => validate_name(req.name)?,
                (true, false) => validate_uuid(req.uuid)?,
                (true, true) => return Err(DmErrorKind::InvalidName("no name or uuid given")),
                (false, false) => {
                    return Err(DmErrorKind::InvalidName("give a name or a uuid, not both"))
                }
            }
        }
    }
    if req.cmd != Command::TableLoad && !req.targets.is_empty() {
        return Err(DmErrorKind::InvalidTarget {
            index: 0,
            reason: "targets given to a command other than TABLE_LOAD",
        });
    }
    if req.cmd == Command::TableLoad && req.targets.is_empty() {
        return Err(DmErrorKind::InvalidTarget {
            index: 0,
            reason: "empty table",
        });
    }

    // Size of each target record.
    let mut records = Vec::with_capacity(req.targets.len());
    let mut total = HEADER_SIZE;
    for (index, t) in req.targets.iter().enumerate() {
        validate_target_type(&t.target_type)
            .map_err(|reason| DmErrorKind::InvalidTarget { index, reason })?;
        if t.params.contains(&0) {
            return Err(DmErrorKind::InvalidTarget {
                index,
                reason: "parameters contain a NUL byte",
            });
        }
        let rec = SPEC_SIZE
            .checked_add(t.params.len())
            .and_then(|n| n.checked_add(1))
            .and_then(align8)
            .ok_or(DmErrorKind::TooLarge)?;
        records.push(rec);
        total = total.checked_add(rec).ok_or(DmErrorKind::TooLarge)?;
    }
    let size = total.max(min_size);
    if size > MAX_BUFFER_SIZE {
        return Err(DmErrorKind::TooLarge);
    }
    let data_size = u32::try_from(size).map_err(|_| DmErrorKind::TooLarge)?;
    let target_count = u32::try_from(req.targets.len()).map_err(|_| DmErrorKind::TooLarge)?;

    let mut buf = Zeroizing::new(vec![0u8; size]);
    for (i, v) in OUR_VERSION.iter().enumerate() {
        put(&mut buf, OFF_VERSION + 4 * i, &v.to_ne_bytes())?;
    }
    put(&mut buf, OFF_DATA_SIZE, &data_size.to_ne_bytes())?;
    put(
        &mut buf,
        OFF_DATA_START,
        &u32::try_from(HEADER_SIZE)
            .map_err(|_| DmErrorKind::TooLarge)?
            .to_ne_bytes(),
    )?;
    put(&mut buf, OFF_TARGET_COUNT, &target_count.to_ne_bytes())?;
    put(&mut buf, OFF_FLAGS, &req.flags.to_ne_bytes())?;
    // open_count, event_nr, padding and dev stay zero.
    put(&mut buf, OFF_NAME, req.name.as_bytes())?;
    put(&mut buf, OFF_UUID, req.uuid.as_bytes())?;

    let mut off = HEADER_SIZE;
    for (i, (t, rec)) in req.targets.iter().zip(&records).enumerate() {
        let next = if i + 1 == req.targets.len() {
            0
        } else {
            u32::try_from(*rec).map_err(|_| DmErrorKind::TooLarge)?
        };
        put(&mut buf, off + SPEC_OFF_START, &t.start.to_ne_bytes())?;
        put(&mut buf, off + SPEC_OFF_LENGTH, &t.length.to_ne_bytes())?;
        put(&mut buf, off + SPEC_OFF_STATUS, &0i32.to_ne_bytes())?;
        put(&mut buf, off + SPEC_OFF_NEXT, &next.to_ne_bytes())?;
        put(&mut buf, off + SPEC_OFF_TYPE, t.target_type.as_bytes())?;
        put(&mut buf, off + SPEC_SIZE, &t.params)?;
        // The NUL terminator and padding are already zero.
        off = off.checked_add(*rec).ok_or(DmErrorKind::TooLarge)?;
    }
    Ok(buf)
}

fn get_u32(buf: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let b: [u8; 4] = buf.get(off..end)?.try_into().ok()?;
    Some(u32::from_ne_bytes(b))
}

fn get_i32(buf: &[u8], off: usize) -> Option<i32> {
    let end = off.checked_add(4)?;
    let b: [u8; 4] = buf.get(off..end)?.try_into().ok()?;
    Some(i32::from_ne_bytes(b))
}

fn get_u64(buf: &[u8], off: usize) -> Option<u64> {
    let end = off.checked_add(8)?;
    let b: [u8; 8] = buf.get(off..end)?.try_into().ok()?;
    Some(u64::from_ne_bytes(b))
}

/// The bytes of the NUL-terminated string starting at `off`, found before
/// `limit` (exclusive); `None` if it runs past `limit` or the buffer.
fn get_cstr(buf: &[u8], off: usize, limit: usize) -> Option<&[u8]> {
    let field = buf.get(off..limit.min(buf.len()))?;
    let len = field.iter().position(|&b| b == 0)?;
    field.get(..len)
}

/// Decodes the `struct dm_ioctl` at the start of a reply.
///
/// Checks the interface major version (4), that `data_size` lies between
/// the header and the buffer's end, and that name and uuid are
/// NUL-terminated inside their fields.
pub fn decode_header(buf: &[u8]) -> Result<Header, DmErrorKind> {
    const SHORT: DmErrorKind = DmErrorKind::Malformed("reply shorter than struct dm_ioctl");
    if buf.len() < HEADER_SIZE {
        return Err(SHORT);
    }
    let version = [
        get_u32(buf, OFF_VERSION).ok_or(SHORT)?,
        get_u32(buf, OFF_VERSION + 4).ok_or(SHORT)?,
        get_u32(buf, OFF_VERSION + 8).ok_or(SHORT)?,
    ];
    if version[0] != OUR_VERSION[0] {
        return Err(DmErrorKind::InterfaceVersion { kernel: version });
    }
    let data_size = get_u32(buf, OFF_DATA_SIZE).ok_or(SHORT)?;
    let data_start = get_u32(buf, OFF_DATA_START).ok_or(SHORT)?;
    let ds = usize::try_from(data_size).map_err(|_| DmErrorKind::Malformed("data_size"))?;
    if ds < MIN_DATA_SIZE || ds > buf.len() {
        return Err(DmErrorKind::Malformed("data_size outside the buffer"));
    }
    let name = get_cstr(buf, OFF_NAME, OFF_NAME + DM_NAME_LEN)
        .ok_or(DmErrorKind::Malformed("name not NUL-terminated"))?;
    let uuid = get_cstr(buf, OFF_UUID, OFF_UUID + DM_UUID_LEN)
        .ok_or(DmErrorKind::Malformed("uuid not NUL-terminated"))?;
    Ok(Header {
        version,
        data_size,
        data_start,
        target_count: get_u32(buf, OFF_TARGET_COUNT).ok_or(SHORT)?,
        open_count: get_i32(buf, OFF_OPEN_COUNT).ok_or(SHORT)?,
        flags: get_u32(buf, OFF_FLAGS).ok_or(SHORT)?,
        event_nr: get_u32(buf, OFF_EVENT_NR).ok_or(SHORT)?,
        dev: get_u64(buf, OFF_DEV).ok_or(SHORT)?,
        name: String::from_utf8_lossy(name).into_owned(),
        uuid: String::from_utf8_lossy(uuid).into_owned(),
    })
}

/// Decodes the target specs of a TABLE_STATUS reply.
///
/// The first spec sits at `data_start`; each `next` is an offset from the
/// first spec and must move forward past the previous spec's string.
pub fn decode_targets(buf: &[u8], header: &Header) -> Result<Vec<TargetInfo>, DmErrorKind> {
    const BAD: DmErrorKind = DmErrorKind::Malformed("target spec outside the data area");
    let data = header.data(buf)?;
    let count = usize::try_from(header.target_count).map_err(|_| BAD)?;
    if count == 0 {
        return Ok(Vec::new());
    }
    // Each spec takes at least 41 bytes: refuse counts the data cannot hold.
    if count > data.len() / (SPEC_SIZE + 1) {
        return Err(DmErrorKind::Malformed(
            "target_count larger than the data area",
        ));
    }
    let mut out = Vec::with_capacity(count);
    let mut off = 0usize;
    for i in 0..count {
        let spec_end = off.checked_add(SPEC_SIZE).ok_or(BAD)?;
        if spec_end > data.len() {
            return Err(BAD);
        }
        let start = get_u64(data, off + SPEC_OFF_START).ok_or(BAD)?;
        let length = get_u64(data, off + SPEC_OFF_LENGTH).ok_or(BAD)?;
        let next = get_u32(data, off + SPEC_OFF_NEXT).ok_or(BAD)?;
        let ttype = get_cstr(data, off + SPEC_OFF_TYPE, spec_end).unwrap_or_else(|| {
            // A 16-byte type without NUL (strncpy): take all of it.
            data.get(off + SPEC_OFF_TYPE..spec_end).unwrap_or(&[])
        });
        let params = get_cstr(data, spec_end, data.len()).ok_or(DmErrorKind::Malformed(
            "target parameters not NUL-terminated",
        ))?;
        out.push(TargetInfo {
            start,
            length,
            target_type: String::from_utf8_lossy(ttype).into_owned(),
            params: Zeroizing::new(params.to_vec()),
        });
        if i + 1 < count {
            let next = usize::try_from(next).map_err(|_| BAD)?;
            let min_next = spec_end
                .checked_add(params.len())
                .and_then(|n| n.checked_add(1))
                .ok_or(BAD)?;
            if next < min_next {
                return Err(DmErrorKind::Malformed(
                    "target spec 'next' does not move forward",
                ));
            }
            off = next;
        }
    }
    Ok(out)
}

/// Decodes a LIST_DEVICES reply: `struct dm_name_list` records, each `next`
/// relative to its own record, 0 on the last. An empty area, or a first
/// record with `dev == 0`, means no devices.
pub fn decode_name_list(buf: &[u8], header: &Header) -> Result<Vec<(String, DevId)>, DmErrorKind> {
    const BAD: DmErrorKind = DmErrorKind::Malformed("name list record outside the data area");
    let data = header.data(buf)?;
    let mut out = Vec::new();
    if data.is_empty() || get_u64(data, 0) == Some(0) {
        return Ok(out);
    }
    let mut off = 0usize;
    loop {
        let dev = get_u64(data, off).ok_or(BAD)?;
        let next = get_u32(data, off + 8).ok_or(BAD)?;
        let name_off = off.checked_add(NAME_LIST_OFF_NAME).ok_or(BAD)?;
        let name = get_cstr(data, name_off, data.len())
            .ok_or(DmErrorKind::Malformed("device name not NUL-terminated"))?;
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            DevId::from_raw(dev),
        ));
        if next == 0 {
            return Ok(out);
        }
        let next = usize::try_from(next).map_err(|_| BAD)?;
        if next < NAME_LIST_OFF_NAME + name.len() + 1 {
            return Err(DmErrorKind::Malformed(
                "name list 'next' does not move forward",
            ));
        }
        off = off.checked_add(next).ok_or(BAD)?;
    }
}

/// Decodes a LIST_VERSIONS / GET_TARGET_VERSION reply:
/// `struct dm_target_versions` records, `next` relative to its own record,
/// 0 on the last.
pub fn decode_target_versions(
    buf: &[u8],
    header: &Header,
) -> Result<Vec<TargetVersion>, DmErrorKind> {
    const BAD: DmErrorKind = DmErrorKind::Malformed("target version record outside the data area");
    let data = header.data(buf)?;
    let mut out = Vec::new();
    if data.is_empty() {
        return Ok(out);
    }
    let mut off = 0usize;
    loop {
        let next = get_u32(data, off).ok_or(BAD)?;
        let version = [
            get_u32(data, off + 4).ok_or(BAD)?,
            get_u32(data, off + 8).ok_or(BAD)?,
            get_u32(data, off + 12).ok_or(BAD)?,
        ];
        let name_off = off.checked_add(VERSIONS_OFF_NAME).ok_or(BAD)?;
        let name = get_cstr(data, name_off, data.len())
            .ok_or(DmErrorKind::Malformed("target name not NUL-terminated"))?;
        out.push(TargetVersion {
            name: String::from_utf8_lossy(name).into_owned(),
            version,
        });
        if next == 0 {
            return Ok(out);
        }
        let next = usize::try_from(next).map_err(|_| BAD)?;
        if next < VERSIONS_OFF_NAME + name.len() + 1 {
            return Err(DmErrorKind::Malformed(
                "target version 'next' does not move forward",
            ));
        }
        off = off.checked_add(next).ok_or(BAD)?;
    }
}

/// After a failed ioctl: the kernel's version when it differs in major from
/// ours. On a major mismatch the kernel fails with `EINVAL` but still writes
/// its version into the buffer. A zero version means the buffer was wiped
/// (`DM_SECURE_DATA_FLAG`) and says nothing about the interface.
fn interface_mismatch(buf: &[u8]) -> Option<[u32; 3]> {
    let major = get_u32(buf, OFF_VERSION)?;
    if major == 0 || major == OUR_VERSION[0] {
        return None;
    }
    Some([
        major,
        get_u32(buf, OFF_VERSION + 4).unwrap_or(0),
        get_u32(buf, OFF_VERSION + 8).unwrap_or(0),
    ])
}

/// A successful reply: its decoded header and the whole buffer (wiped on drop).
pub struct Reply {
    /// The decoded header.
    pub header: Header,
    /// The buffer as the kernel left it.
    pub buf: Zeroizing<Vec<u8>>,
}

/// An open `/dev/mapper/control` and the kernel's interface version.
#[derive(Debug)]
pub struct Control {
    file: File,
    version: [u32; 3],
}

impl Control {
    /// Opens `/dev/mapper/control`, creating the node (and `/dev/mapper`)
    /// from `/sys/class/misc/device-mapper/dev` when it is missing, then asks
    /// the kernel's interface version and checks it is 4.x.
    pub fn open() -> Result<Control, DmError> {
        Self::open_at(Path::new(CONTROL_PATH), Path::new(CONTROL_SYSFS_DEV))
    }

    fn open_at(path: &Path, sysfs_dev: &Path) -> Result<Control, DmError> {
        let op = "open control";
        let control_err = |errno: Errno| {
            DmError::new(
                op,
                "",
                DmErrorKind::Control {
                    path: path.to_owned(),
                    errno,
                },
            )
        };
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(dev) = super::read_sysfs_dev(sysfs_dev) else {
                    return Err(DmError::new(op, "", DmErrorKind::Unavailable));
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        DmError::new(
                            op,
                            "",
                            DmErrorKind::Control {
                                path: dir.to_owned(),
                                errno: Errno::from_io(&e),
                            },
                        )
                    })?;
                }
                ensure_device_node(path, libc::S_IFCHR, dev).map_err(control_err)?;
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| control_err(Errno::from_io(&e)))?
            }
            Err(e) => return Err(control_err(Errno::from_io(&e))),
        };
        let mut ctl = Control {
            file,
            version: OUR_VERSION,
        };
        let reply = ctl.ioctl(&Request::new(Command::Version, ""))?;
        ctl.version = reply.header.version;
        Ok(ctl)
    }

    /// The kernel's interface version `[4, minor, patch]`.
    pub fn version(&self) -> [u32; 3] {
        self.version
    }

    /// Whether the kernel supports DM_DEFERRED_REMOVE (interface ≥ 4.27).
    pub fn supports_deferred_remove(&self) -> bool {
        self.version[1] >= min_minor::DEFERRED_REMOVE
    }

    /// Performs one device-mapper ioctl. This is the only function that calls
    /// `ioctl(2)` on the control node.
    ///
    /// Encodes `req` (version 4.0.0, `data_size` = buffer length,
    /// `data_start` = 312), and for commands that answer with data, starts
    /// with a 16 KiB buffer and doubles it while the kernel sets
    /// `DM_BUFFER_FULL_FLAG`. A failed call becomes a [`DmError`] naming the
    /// command and `req.name`.
    pub fn ioctl(&self, req: &Request<'_>) -> Result<Reply, DmError> {
        let op = req.cmd.name();
        let name = if req.name.is_empty() {
            req.uuid
        } else {
            req.name
        };
        let fail = |kind| DmError::new(op, name, kind);
        let mut size = if req.cmd.returns_data() {
            INITIAL_OUTPUT_SIZE
        } else {
            0
        };
        loop {
            let mut buf = encode_request(req, size).map_err(fail)?;
            let request = ioctl_request(req.cmd.request());
            // SAFETY: `buf` is a live, exclusively borrowed allocation of
            // `buf.len()` bytes, and `data_size` in it equals `buf.len()`
            // (set by encode_request). The kernel reads and writes at most
            // `data_size` bytes at the pointer and keeps no reference after
            // the call returns. The fd is an open control node owned by self.
            let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), request, buf.as_mut_ptr()) };
            if rc < 0 {
                let errno = Errno::last();
                if errno.raw() == libc::EINVAL {
                    if let Some(kernel) = interface_mismatch(&buf) {
                        return Err(fail(DmErrorKind::InterfaceVersion { kernel }));
                    }
                }
                return Err(fail(DmErrorKind::Os(errno)));
            }
            let header = decode_header(&buf).map_err(fail)?;
            if header.flags & flags::BUFFER_FULL != 0 {
                size = buf.len().saturating_mul(2);
                if size > MAX_BUFFER_SIZE {
                    return Err(fail(DmErrorKind::BufferLimit));
                }
                continue;
            }
            return Ok(Reply { header, buf });
        }
    }

    /// Asks the interface version again (DM_VERSION).
    pub fn query_version(&self) -> Result<[u32; 3], DmError> {
        Ok(self
            .ioctl(&Request::new(Command::Version, ""))?
            .header
            .version)
    }

    /// Lists loaded target types and their versions (DM_LIST_VERSIONS).
    /// Target modules not loaded yet are not listed.
    pub fn target_versions(&self) -> Result<Vec<TargetVersion>, DmError> {
        let reply = self.ioctl(&Request::new(Command::ListVersions, ""))?;
        decode_target_versions(&reply.buf, &reply.header)
            .map_err(|k| DmError::new(Command::ListVersions.name(), "", k))
    }

    /// The version of one target type, or `None` when the kernel does not
    /// have it. On interface ≥ 4.41 this uses DM_GET_TARGET_VERSION, which
    /// loads the target's module on demand; older kernels are asked with
    /// DM_LIST_VERSIONS.
    pub fn target_version(&self, target_type: &str) -> Result<Option<[u32; 3]>, DmError> {
        if self.version[1] >= min_minor::GET_TARGET_VERSION {
            let cmd = Command::GetTargetVersion;
            match self.ioctl(&Request::new(cmd, target_type)) {
                Ok(reply) => {
                    let list = decode_target_versions(&reply.buf, &reply.header)
                        .map_err(|k| DmError::new(cmd.name(), target_type, k))?;
                    return Ok(list
                        .into_iter()
                        .find(|t| t.name == target_type)
                        .map(|t| t.version));
                }
                // Unknown target type.
                Err(e) if e.errno() == Some(libc::EINVAL) => return Ok(None),
                // Kernel without the command after all: fall back.
                Err(e) if e.errno() == Some(libc::ENOTTY) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self
            .target_versions()?
            .into_iter()
            .find(|t| t.name == target_type)
            .map(|t| t.version))
    }

    /// The `crypt` target's version (keyring keys need ≥ 1.15.0).
    pub fn crypt_target_version(&self) -> Result<Option<[u32; 3]>, DmError> {
        self.target_version("crypt")
    }

    /// Creates a device with no table (DM_DEV_CREATE) and returns its
    /// device number. `uuid` may be empty.
    pub fn create(&self, name: &str, uuid: &str) -> Result<DevId, DmError> {
        let mut req = Request::new(Command::DevCreate, name);
        req.uuid = uuid;
        let reply = self.ioctl(&req)?;
        Ok(DevId::from_raw(reply.header.dev))
    }

    /// Loads `targets` as the device's inactive table (DM_TABLE_LOAD).
    ///
    /// `readonly` makes the table read-only. `secure` sets
    /// `DM_SECURE_DATA_FLAG` so the kernel wipes its copies of the
    /// parameters: set it whenever they carry key material. With a keyring
    /// key (`:<len>:logon:<desc>`), call this from the thread that added the
    /// key: dm-crypt looks the key up in the caller's keyrings, and the
    /// thread keyring belongs to one thread.
    pub fn load_table(
        &self,
        name: &str,
        targets: &[Target],
        readonly: bool,
        secure: bool,
    ) -> Result<DeviceInfo, DmError> {
        let mut req = Request::new(Command::TableLoad, name);
        req.targets = targets;
        if readonly {
            req.flags |= flags::READONLY;
        }
        if secure {
            if self.version[1] < min_minor::SECURE_DATA {
                return Err(DmError::new(
                    Command::TableLoad.name(),
                    name,
                    DmErrorKind::Unsupported {
                        feature: "DM_SECURE_DATA",
                        needed_minor: min_minor::SECURE_DATA,
                        kernel: self.version,
                    },
                ));
            }
            req.flags |= flags::SECURE_DATA;
        }
        let reply = self.ioctl(&req)?;
        Ok(DeviceInfo::from_header(&reply.header))
    }

    /// Drops the device's inactive table (DM_TABLE_CLEAR).
    pub fn clear_table(&self, name: &str) -> Result<DeviceInfo, DmError> {
        let reply = self.ioctl(&Request::new(Command::TableClear, name))?;
        Ok(DeviceInfo::from_header(&reply.header))
    }

    /// Resumes the device, making a loaded inactive table live
    /// (DM_DEV_SUSPEND without the suspend flag).
    pub fn resume(&self, name: &str) -> Result<DeviceInfo, DmError> {
        let reply = self.ioctl(&Request::new(Command::DevSuspend, name))?;
        Ok(DeviceInfo::from_header(&reply.header))
    }

    /// Removes the device (DM_DEV_REMOVE). With `deferred`, an open device is
    /// removed by the kernel when its last opener closes it (needs
    /// interface ≥ 4.27).
    pub fn remove(&self, name: &str, deferred: bool) -> Result<RemoveOutcome, DmError> {
        let cmd = Command::DevRemove;
        let mut req = Request::new(cmd, name);
        if deferred {
            if !self.supports_deferred_remove() {
                return Err(DmError::new(
                    cmd.name(),
                    name,
                    DmErrorKind::Unsupported {
                        feature: "deferred remove",
                        needed_minor: min_minor::DEFERRED_REMOVE,
                        kernel: self.version,
                    },
                ));
            }
            req.flags |= flags::DEFERRED_REMOVE;
        }
        let reply = self.ioctl(&req)?;
        // The kernel clears the flag when it removed the device at once and
        // leaves it set when removal is deferred.
        if deferred && reply.header.flags & flags::DEFERRED_REMOVE != 0 {
            Ok(RemoveOutcome::Deferred)
        } else {
            Ok(RemoveOutcome::Removed)
        }
    }

    /// The device's state (DM_DEV_STATUS).
    pub fn info(&self, name: &str) -> Result<DeviceInfo, DmError> {
        let reply = self.ioctl(&Request::new(Command::DevStatus, name))?;
        Ok(DeviceInfo::from_header(&reply.header))
    }

    /// The device's state and its active table's targets (DM_TABLE_STATUS).
    /// With `want_table` each target's parameters are its table line (which
    /// may hold a hex key: the request sets `DM_SECURE_DATA_FLAG` and the
    /// result is wiped on drop); otherwise its status text.
    pub fn table_status(
        &self,
        name: &str,
        want_table: bool,
    ) -> Result<(DeviceInfo, Vec<TargetInfo>), DmError> {
        let cmd = Command::TableStatus;
        let mut req = Request::new(cmd, name);
        if want_table {
            req.flags |= flags::STATUS_TABLE;
            if self.version[1] >= min_minor::SECURE_DATA {
                req.flags |= flags::SECURE_DATA;
            }
        }
        let reply = self.ioctl(&req)?;
        let targets = decode_targets(&reply.buf, &reply.header)
            .map_err(|k| DmError::new(cmd.name(), name, k))?;
        Ok((DeviceInfo::from_header(&reply.header), targets))
    }

    /// All device-mapper devices: name and device number (DM_LIST_DEVICES).
    pub fn list_devices(&self) -> Result<Vec<(String, DevId)>, DmError> {
        let cmd = Command::ListDevices;
        let reply = self.ioctl(&Request::new(cmd, ""))?;
        decode_name_list(&reply.buf, &reply.header).map_err(|k| DmError::new(cmd.name(), "", k))
    }
}

/// `/dev/mapper/<name>`.
pub fn mapper_path(name: &str) -> PathBuf {
    Path::new(MAPPER_DIR).join(name)
}

/// Creates the block node `/dev/mapper/<name>` (mode 0600) for `dev`,
/// creating `/dev/mapper` if needed. A node (or udev symlink) already
/// pointing at `dev` is accepted.
pub fn create_node(name: &str, dev: DevId) -> Result<NodeOutcome, DmError> {
    let op = "mknod";
    validate_name(name).map_err(|k| DmError::new(op, name, k))?;
    let path = mapper_path(name);
    let node_err = |path: &Path, errno| {
        DmError::new(
            op,
            name,
            DmErrorKind::Node {
                path: path.to_owned(),
                errno,
            },
        )
    };
    std::fs::create_dir_all(MAPPER_DIR)
        .map_err(|e| node_err(Path::new(MAPPER_DIR), Errno::from_io(&e)))?;
    ensure_device_node(&path, libc::S_IFBLK, dev).map_err(|e| node_err(&path, e))
}

/// Removes `/dev/mapper/<name>` if it is the node of `dev`; a missing node is
/// fine.
pub fn remove_node(name: &str, dev: DevId) -> Result<(), DmError> {
    let op = "unlink node";
    validate_name(name).map_err(|k| DmError::new(op, name, k))?;
    let path = mapper_path(name);
    remove_device_node(&path, libc::S_IFBLK, dev)
        .map_err(|errno| DmError::new(op, name, DmErrorKind::Node { path, errno }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn target(start: u64, len: u64, ttype: &str, params: &str) -> Target {
        Target::new(
            start,
            len,
            ttype,
            Zeroizing::new(params.as_bytes().to_vec()),
        )
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        get_u32(b, off).unwrap()
    }

    #[cfg(not(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )))]
    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        // Values of _IOWR(0xfd, nr, struct dm_ioctl) on x86/arm (as printed
        // by a C program including <linux/dm-ioctl.h>).
        assert_eq!(Command::Version.request(), 0xc138_fd00);
        assert_eq!(Command::ListDevices.request(), 0xc138_fd02);
        assert_eq!(Command::DevCreate.request(), 0xc138_fd03);
        assert_eq!(Command::DevRemove.request(), 0xc138_fd04);
        assert_eq!(Command::DevSuspend.request(), 0xc138_fd06);
        assert_eq!(Command::DevStatus.request(), 0xc138_fd07);
        assert_eq!(Command::TableLoad.request(), 0xc138_fd09);
        assert_eq!(Command::TableClear.request(), 0xc138_fd0a);
        assert_eq!(Command::TableStatus.request(), 0xc138_fd0c);
        assert_eq!(Command::ListVersions.request(), 0xc138_fd0d);
        assert_eq!(Command::GetTargetVersion.request(), 0xc138_fd11);
    }

    #[test]
    fn header_layout() {
        let mut req = Request::new(Command::DevCreate, "vault");
        req.uuid = "CRYPT-LUKS2-abc-vault";
        req.flags = flags::READONLY;
        let b = encode_request(&req, 0).unwrap();
        assert_eq!(b.len(), HEADER_SIZE);
        assert_eq!(u32_at(&b, 0), 4);
        assert_eq!(u32_at(&b, 4), 0);
        assert_eq!(u32_at(&b, 8), 0);
        assert_eq!(u32_at(&b, 12), 312, "data_size");
        assert_eq!(u32_at(&b, 16), 312, "data_start");
        assert_eq!(u32_at(&b, 20), 0, "target_count");
        assert_eq!(u32_at(&b, 28), 1, "flags");
        assert_eq!(&b[48..53], b"vault");
        assert!(b[53..176].iter().all(|&x| x == 0));
        assert_eq!(&b[176..197], b"CRYPT-LUKS2-abc-vault");
        assert!(b[197..312].iter().all(|&x| x == 0));
    }

    #[test]
    fn min_size_reserves_output_room() {
        let b = encode_request(&Request::new(Command::ListDevices, ""), 16384).unwrap();
        assert_eq!(b.len(), 16384);
        assert_eq!(u32_at(&b, 12), 16384);
        assert_eq!(u32_at(&b, 16), 312);
    }

    #[test]
    fn table_load_layout_and_alignment() {
        let targets = [
            target(
                0,
                2048,
                "crypt",
                "aes-xts-plain64 :64:logon:cryptsetup:x 0 /dev/loop0 4096",
            ),
            target(2048, 8, "zero", ""),
            target(2056, 1, "error", "abcdefg"),
        ];
        let mut req = Request::new(Command::TableLoad, "vault");
        req.targets = &targets;
        req.flags = flags::SECURE_DATA;
        let b = encode_request(&req, 0).unwrap();
        assert_eq!(u32_at(&b, 20), 3, "target_count");
        assert_eq!(u32_at(&b, 28), 1 << 15, "secure flag");
        assert_eq!(u32_at(&b, 12) as usize, b.len());

        let p0 = targets[0].params.len();
        let rec0 = (40 + p0 + 1 + 7) & !7;
        let s0 = 312;
        assert_eq!(get_u64(&b, s0).unwrap(), 0);
        assert_eq!(get_u64(&b, s0 + 8).unwrap(), 2048);
        assert_eq!(get_i32(&b, s0 + 16).unwrap(), 0);
        assert_eq!(
            u32_at(&b, s0 + 20) as usize,
            rec0,
            "next relative to this spec"
        );
        assert_eq!(&b[s0 + 24..s0 + 29], b"crypt");
        assert!(b[s0 + 29..s0 + 40].iter().all(|&x| x == 0));
        assert_eq!(&b[s0 + 40..s0 + 40 + p0], &targets[0].params[..]);
        assert_eq!(b[s0 + 40 + p0], 0, "NUL terminator");

        let s1 = s0 + rec0;
        assert_eq!(s1 % 8, 0);
        assert_eq!(get_u64(&b, s1).unwrap(), 2048);
        assert_eq!(&b[s1 + 24..s1 + 28], b"zero");
        // Empty params: 40 + 1 rounds up to 48.
        assert_eq!(u32_at(&b, s1 + 20), 48);

        let s2 = s1 + 48;
        assert_eq!(s2 % 8, 0);
        assert_eq!(&b[s2 + 24..s2 + 29], b"error");
        assert_eq!(&b[s2 + 40..s2 + 47], b"abcdefg");
        assert_eq!(u32_at(&b, s2 + 20), 0, "last next is 0");
        // 40 + 7 + 1 = 48: exact fit, no padding.
        assert_eq!(b.len(), s2 + 48);
    }

    #[test]
    fn names_and_uuids_are_checked() {
        assert!(validate_name(&"a".repeat(127)).is_ok());
        assert_eq!(
            validate_name(&"a".repeat(128)),
            Err(DmErrorKind::InvalidName("longer than 127 bytes"))
        );
        assert_eq!(
            validate_name("a/b"),
            Err(DmErrorKind::InvalidName("contains '/'"))
        );
        assert!(validate_name("").is_err());
        assert!(validate_name("a\0b").is_err());
        for bad in ["control", ".", ".."] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_uuid(&"u".repeat(128)).is_ok());
        assert!(validate_uuid(&"u".repeat(129)).is_err());
        assert!(validate_uuid("").is_ok());

        let long = "a".repeat(128);
        assert!(encode_request(&Request::new(Command::DevCreate, &long), 0).is_err());
        assert!(encode_request(&Request::new(Command::DevRemove, "x/y"), 0).is_err());
        assert!(encode_request(&Request::new(Command::DevStatus, ""), 0).is_err());
        let mut both = Request::new(Command::DevStatus, "a");
        both.uuid = "b";
        assert!(encode_request(&both, 0).is_err());
        let mut by_uuid = Request::new(Command::DevStatus, "");
        by_uuid.uuid = "CRYPT-x";
        assert!(encode_request(&by_uuid, 0).is_ok());
        assert!(encode_request(&Request::new(Command::ListDevices, "x"), 0).is_err());
    }

    #[test]
    fn bad_targets_are_refused() {
        let mut req = Request::new(Command::TableLoad, "v");
        assert!(encode_request(&req, 0).is_err(), "empty table");
        let t = [target(0, 1, "crypt", "a\0b")];
        req.targets = &t;
        assert!(matches!(
            encode_request(&req, 0),
            Err(DmErrorKind::InvalidTarget { index: 0, .. })
        ));
        let t = [
            target(0, 1, "zero", ""),
            target(1, 1, "sixteen-bytes-xx", ""),
        ];
        req.targets = &t;
        assert!(matches!(
            encode_request(&req, 0),
            Err(DmErrorKind::InvalidTarget { index: 1, .. })
        ));
        let t = [target(0, 1, "zero", "")];
        let mut other = Request::new(Command::DevCreate, "v");
        other.targets = &t;
        assert!(encode_request(&other, 0).is_err());
        let huge = [Target::new(
            0,
            1,
            "crypt",
            Zeroizing::new(vec![b'a'; MAX_BUFFER_SIZE]),
        )];
        req.targets = &huge;
        assert_eq!(encode_request(&req, 0), Err(DmErrorKind::TooLarge));
    }

    /// Builds a reply buffer as the kernel would: header + data area.
    fn reply(flags: u32, target_count: u32, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE + data.len()];
        b[0..4].copy_from_slice(&4u32.to_ne_bytes());
        b[4..8].copy_from_slice(&48u32.to_ne_bytes());
        b[12..16].copy_from_slice(&((HEADER_SIZE + data.len()) as u32).to_ne_bytes());
        b[16..20].copy_from_slice(&(HEADER_SIZE as u32).to_ne_bytes());
        b[20..24].copy_from_slice(&target_count.to_ne_bytes());
        b[24..28].copy_from_slice(&2i32.to_ne_bytes());
        b[28..32].copy_from_slice(&flags.to_ne_bytes());
        b[40..48].copy_from_slice(&libc::makedev(253, 3).to_ne_bytes());
        b[48..53].copy_from_slice(b"vault");
        b[176..181].copy_from_slice(b"CRYPT");
        b[HEADER_SIZE..].copy_from_slice(data);
        b
    }

    fn spec(start: u64, len: u64, next: u32, ttype: &str, params: &str) -> Vec<u8> {
        let mut s = vec![0u8; 40];
        s[0..8].copy_from_slice(&start.to_ne_bytes());
        s[8..16].copy_from_slice(&len.to_ne_bytes());
        s[20..24].copy_from_slice(&next.to_ne_bytes());
        s[24..24 + ttype.len()].copy_from_slice(ttype.as_bytes());
        s.extend_from_slice(params.as_bytes());
        s.push(0);
        while s.len() % 8 != 0 {
            s.push(0);
        }
        s
    }

    #[test]
    fn decode_header_fields() {
        let b = reply(
            flags::READONLY | flags::ACTIVE_PRESENT | flags::DEFERRED_REMOVE,
            0,
            &[],
        );
        let h = decode_header(&b).unwrap();
        assert_eq!(h.version, [4, 48, 0]);
        assert_eq!(h.name, "vault");
        assert_eq!(h.uuid, "CRYPT");
        assert_eq!(h.open_count, 2);
        let info = DeviceInfo::from_header(&h);
        assert_eq!(
            info.dev,
            DevId {
                major: 253,
                minor: 3
            }
        );
        assert!(info.readonly() && info.active_table() && info.deferred_remove());
        assert!(!info.suspended() && !info.inactive_table());
    }

    #[test]
    fn decode_header_rejects_bad_replies() {
        assert!(decode_header(&[0u8; 100]).is_err());
        let mut b = reply(0, 0, &[]);
        b[0..4].copy_from_slice(&5u32.to_ne_bytes());
        assert!(matches!(
            decode_header(&b),
            Err(DmErrorKind::InterfaceVersion { kernel: [5, 48, 0] })
        ));
        let mut b = reply(0, 0, &[]);
        b[12..16].copy_from_slice(&400u32.to_ne_bytes());
        assert!(decode_header(&b).is_err(), "data_size past the buffer");
        let mut b = reply(0, 0, &[]);
        b[12..16].copy_from_slice(&100u32.to_ne_bytes());
        assert!(decode_header(&b).is_err(), "data_size inside the header");
        let mut b = reply(0, 0, &[]);
        b[48..176].fill(b'a');
        assert!(decode_header(&b).is_err(), "name without NUL");
        let mut b = reply(0, 0, &[]);
        b[176..305].fill(b'a');
        assert!(decode_header(&b).is_err(), "uuid without NUL");
        // A reply for a command without data: data_size is 305.
        let mut b = reply(0, 0, &[]);
        b[12..16].copy_from_slice(&305u32.to_ne_bytes());
        let h = decode_header(&b).unwrap();
        assert!(decode_targets(&b, &h).unwrap().is_empty());
        assert!(decode_name_list(&b, &h).unwrap().is_empty());
    }

    #[test]
    fn decode_table_status() {
        let s0 = spec(
            0,
            2048,
            0,
            "crypt",
            "aes-xts-plain64 :64:logon:cryptsetup:x 0 7:0 4096",
        );
        let mut s0 = s0;
        let n = s0.len() as u32;
        s0[20..24].copy_from_slice(&n.to_ne_bytes());
        // Second spec's `next` is relative to the first spec.
        let s1 = spec(2048, 8, n + 48, "zero", "");
        let mut data = s0.clone();
        data.extend_from_slice(&s1);
        let b = reply(flags::ACTIVE_PRESENT, 2, &data);
        let h = decode_header(&b).unwrap();
        let t = decode_targets(&b, &h).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].target_type, "crypt");
        assert_eq!(t[0].length, 2048);
        assert_eq!(
            t[0].params_str(),
            Some("aes-xts-plain64 :64:logon:cryptsetup:x 0 7:0 4096")
        );
        assert_eq!(t[1].start, 2048);
        assert_eq!(t[1].target_type, "zero");
        assert_eq!(t[1].params_str(), Some(""));
        assert!(!format!("{:?}", t[0]).contains("logon"));
    }

    #[test]
    fn decode_targets_survives_malformed_replies() {
        let good = spec(0, 8, 0, "zero", "");
        // target_count too large for the data.
        let b = reply(0, 1000, &good);
        let h = decode_header(&b).unwrap();
        assert!(decode_targets(&b, &h).is_err());
        // Two targets claimed, `next` pointing backwards (would loop).
        let mut s = spec(0, 8, 0, "zero", "");
        s.extend_from_slice(&spec(8, 8, 0, "zero", ""));
        let b = reply(0, 2, &s);
        let h = decode_header(&b).unwrap();
        assert!(decode_targets(&b, &h).is_err());
        // `next` past the end.
        let mut s = spec(0, 8, 4000, "zero", "");
        s.extend_from_slice(&spec(8, 8, 0, "zero", ""));
        let b = reply(0, 2, &s);
        let h = decode_header(&b).unwrap();
        assert!(decode_targets(&b, &h).is_err());
        // Params not NUL-terminated before data_size.
        let mut s = spec(0, 8, 0, "crypt", "abcdefg");
        s.truncate(47);
        let b = reply(0, 1, &s);
        let h = decode_header(&b).unwrap();
        assert!(decode_targets(&b, &h).is_err());
        // data_start beyond data_size gives an empty data area.
        let mut b = reply(0, 1, &good);
        b[16..20].copy_from_slice(&u32::MAX.to_ne_bytes());
        let h = decode_header(&b).unwrap();
        assert!(decode_targets(&b, &h).is_err());
        // Every truncation and every single-byte corruption of a good reply
        // decodes or fails without panicking.
        let mut s = spec(0, 8, 48 + 8, "crypt", "key 0 7:0 0");
        let n = s.len() as u32;
        s[20..24].copy_from_slice(&n.to_ne_bytes());
        s.extend_from_slice(&spec(8, 8, 0, "zero", ""));
        let full = reply(0, 2, &s);
        for cut in 0..full.len() {
            let mut b = full[..cut].to_vec();
            if b.len() >= 16 {
                b[12..16].copy_from_slice(&(cut as u32).to_ne_bytes());
            }
            if let Ok(h) = decode_header(&b) {
                let _ = decode_targets(&b, &h);
                let _ = decode_name_list(&b, &h);
                let _ = decode_target_versions(&b, &h);
            }
        }
        for i in HEADER_SIZE..full.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut b = full.clone();
                b[i] = v;
                let h = decode_header(&b).unwrap();
                let _ = decode_targets(&b, &h);
                let _ = decode_name_list(&b, &h);
                let _ = decode_target_versions(&b, &h);
            }
        }
    }

    fn name_rec(dev: u64, next: u32, name: &str) -> Vec<u8> {
        let mut r = vec![0u8; 12];
        r[0..8].copy_from_slice(&dev.to_ne_bytes());
        r[8..12].copy_from_slice(&next.to_ne_bytes());
        r.extend_from_slice(name.as_bytes());
        r.push(0);
        while r.len() % 8 != 0 {
            r.push(0);
        }
        // Newer kernels append event_nr and flags (8 bytes).
        r.extend_from_slice(&[0u8; 8]);
        r
    }

    #[test]
    fn decode_device_list() {
        let r0 = name_rec(libc::makedev(253, 0), 0, "vault");
        let n0 = r0.len() as u32;
        let mut data = name_rec(libc::makedev(253, 0), n0, "vault");
        data.extend_from_slice(&name_rec(libc::makedev(253, 1), 0, "other"));
        let b = reply(0, 0, &data);
        let h = decode_header(&b).unwrap();
        let l = decode_name_list(&b, &h).unwrap();
        assert_eq!(
            l,
            vec![
                (
                    "vault".to_string(),
                    DevId {
                        major: 253,
                        minor: 0
                    }
                ),
                (
                    "other".to_string(),
                    DevId {
                        major: 253,
                        minor: 1
                    }
                ),
            ]
        );
        // No devices: first record has dev 0.
        let b = reply(0, 0, &[0u8; 16]);
        let h = decode_header(&b).unwrap();
        assert!(decode_name_list(&b, &h).unwrap().is_empty());
        // Loops and overruns are refused.
        let b = reply(0, 0, &name_rec(1, 4, "x"));
        let h = decode_header(&b).unwrap();
        assert!(decode_name_list(&b, &h).is_err());
        let b = reply(0, 0, &name_rec(1, 4096, "x"));
        let h = decode_header(&b).unwrap();
        assert!(decode_name_list(&b, &h).is_err());
        let mut r = name_rec(1, 0, "abc");
        r.truncate(14);
        let b = reply(0, 0, &r);
        let h = decode_header(&b).unwrap();
        assert!(decode_name_list(&b, &h).is_err());
    }

    fn vers_rec(next: u32, v: [u32; 3], name: &str) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&next.to_ne_bytes());
        for x in v {
            r.extend_from_slice(&x.to_ne_bytes());
        }
        r.extend_from_slice(name.as_bytes());
        r.push(0);
        while r.len() % 8 != 0 {
            r.push(0);
        }
        r
    }

    #[test]
    fn decode_versions() {
        let first = vers_rec(0, [1, 4, 0], "linear");
        let n = first.len() as u32;
        let mut data = vers_rec(n, [1, 4, 0], "linear");
        data.extend_from_slice(&vers_rec(0, [1, 27, 0], "crypt"));
        let b = reply(0, 0, &data);
        let h = decode_header(&b).unwrap();
        let v = decode_target_versions(&b, &h).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].name, "crypt");
        assert_eq!(v[1].version, [1, 27, 0]);
        let b = reply(0, 0, &vers_rec(3, [1, 0, 0], "x"));
        let h = decode_header(&b).unwrap();
        assert!(decode_target_versions(&b, &h).is_err());
        let b = reply(0, 0, &vers_rec(0, [1, 0, 0], "x")[..17]);
        let h = decode_header(&b).unwrap();
        assert!(decode_target_versions(&b, &h).is_err());
    }

    #[test]
    fn einval_is_a_version_mismatch_only_with_another_major() {
        let mut b = reply(0, 0, &[]);
        assert_eq!(interface_mismatch(&b), None);
        b[0..4].copy_from_slice(&5u32.to_ne_bytes());
        assert_eq!(interface_mismatch(&b), Some([5, 48, 0]));
        // A TABLE_LOAD with DM_SECURE_DATA that fails leaves a wiped buffer.
        assert_eq!(interface_mismatch(&[0u8; HEADER_SIZE]), None);
        assert_eq!(interface_mismatch(&[]), None);
    }

    #[test]
    fn error_messages_name_op_and_device() {
        let e = DmError::new("DEV_CREATE", "vault", DmErrorKind::Os(Errno(libc::EEXIST)));
        assert_eq!(
            e.to_string(),
            "device-mapper DEV_CREATE of 'vault' failed: File exists"
        );
        let e = DmError::new("DEV_CREATE", "vault", DmErrorKind::Os(Errno(libc::EBUSY)));
        assert!(e.is_busy());
        assert!(e.to_string().contains("already exists"));
        let e = DmError::new("DEV_STATUS", "vault", DmErrorKind::Os(Errno(libc::ENXIO)));
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "device-mapper DEV_STATUS of 'vault' failed: no such device (No such device or address)"
        );
        let e = DmError::new("LIST_DEVICES", "", DmErrorKind::BufferLimit);
        assert_eq!(
            e.to_string(),
            "device-mapper LIST_DEVICES failed: reply larger than 16 MiB"
        );
    }

    #[test]
    fn open_without_device_mapper_is_a_clean_error() {
        let dir = tempfile::tempdir().unwrap();
        let e =
            Control::open_at(&dir.path().join("control"), &dir.path().join("nosysfs")).unwrap_err();
        assert_eq!(e.kind, DmErrorKind::Unavailable);
        assert!(e.to_string().contains("not available"));
    }

    /// Full round trip on a kernel with device-mapper, as root: create, load
    /// an `error` table (built into dm-mod), resume, query, list, remove. Skipped elsewhere.
    #[test]
    fn round_trip_with_error_target() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: device-mapper needs root");
            return;
        }
        let ctl = match Control::open() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: {e}");
                return;
            }
        };
        assert_eq!(ctl.version()[0], 4);
        let name = format!("tazpod-test-{}", std::process::id());
        let uuid = format!("TAZPOD-TEST-{}", std::process::id());
        let dev = ctl.create(&name, &uuid).unwrap();
        let result = (|| -> Result<(), DmError> {
            let e = ctl.create(&name, "").unwrap_err();
            assert!(e.is_busy(), "{e}");
            let t = [target(0, 16, "error", "")];
            let info = ctl.load_table(&name, &t, true, true)?;
            assert!(info.inactive_table());
            let info = ctl.resume(&name)?;
            assert!(info.active_table() && !info.suspended() && info.readonly());
            assert_eq!(info.dev, dev);
            assert_eq!(info.uuid, uuid);
            let (info, targets) = ctl.table_status(&name, true)?;
            assert_eq!(info.target_count, 1);
            assert_eq!(targets.len(), 1);
            assert_eq!(targets[0].target_type, "error");
            assert_eq!(targets[0].length, 16);
            assert!(ctl.list_devices()?.contains(&(name.clone(), dev)));
            assert!(ctl.target_versions()?.iter().any(|t| t.name == "error"));
            let _ = ctl.crypt_target_version()?;
            Ok(())
        })();
        let removed = ctl.remove(&name, false);
        result.unwrap();
        assert_eq!(removed.unwrap(), RemoveOutcome::Removed);
        assert!(ctl.info(&name).unwrap_err().is_not_found());
    }

    /// A real dm-crypt mapping over a loop device with the key in the thread
    /// keyring, as `cryptsetup open` does it; then a deferred remove while the
    /// device is open. Needs root and a kernel with dm-crypt (the QEMU guest).
    #[test]
    fn crypt_mapping_through_keyring_and_deferred_remove() {
        use crate::kernel::{keyring, loopdev};
        use std::io::{Read, Seek, SeekFrom, Write};

        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: device-mapper needs root");
            return;
        }
        let ctl = match Control::open() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: {e}");
                return;
            }
        };
        let crypt = ctl.crypt_target_version().unwrap();
        let Some(crypt) = crypt else {
            eprintln!("skipped: no crypt target");
            return;
        };
        assert!(
            crypt >= [1, 15, 0],
            "crypt target {crypt:?} lacks keyring keys"
        );

        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("crypt.img");
        std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
        let lo = loopdev::attach(&img, false).unwrap();

        let pid = std::process::id();
        let name = format!("tazpod-crypt-{pid}");
        let desc = format!("cryptsetup:tazpod-test-{pid}-d0");
        let volume_key: Vec<u8> = (0u8..64).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        let key = keyring::LogonKey::add_to_thread(&desc, &volume_key).unwrap();
        let params = format!(
            "aes-xts-plain64 {} 0 {} 0",
            key.dm_key_string(volume_key.len()),
            lo.dev()
        );
        let table = [Target::new(
            0,
            8192,
            "crypt",
            Zeroizing::new(params.clone().into_bytes()),
        )];
        let dev = ctl
            .create(&name, &format!("CRYPT-TEST-{pid}-{name}"))
            .unwrap();
        let loaded = ctl.load_table(&name, &table, false, true);
        // The key is only needed while the table is built.
        key.drop_key().unwrap();
        if let Err(e) = loaded {
            let _ = ctl.remove(&name, false);
            panic!("{e}");
        }
        ctl.resume(&name).unwrap();
        // dm holds the loop device now: our handle may go.
        let lo_dev = lo.dev();
        lo.release();

        let (info, targets) = ctl.table_status(&name, true).unwrap();
        assert!(info.active_table() && !info.readonly());
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].target_type, "crypt");
        let line = targets[0].params_str().unwrap().to_owned();
        assert!(line.contains(&format!(":64:logon:{desc}")), "{line}");

        assert_eq!(create_node(&name, dev).unwrap(), NodeOutcome::Created);
        let node = mapper_path(&name);
        let plain = b"tazpod through dm-crypt, sector 8".repeat(16);
        {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&node)
                .unwrap();
            f.seek(SeekFrom::Start(8 * 512)).unwrap();
            f.write_all(&plain).unwrap();
            f.sync_all().unwrap();
        }
        // Fresh open: read back through the mapping.
        let mut f = OpenOptions::new().read(true).open(&node).unwrap();
        f.seek(SeekFrom::Start(8 * 512)).unwrap();
        let mut back = vec![0u8; plain.len()];
        f.read_exact(&mut back).unwrap();
        assert_eq!(back, plain);
        // The file holds ciphertext, not the plaintext.
        let raw = std::fs::read(&img).unwrap();
        assert_ne!(&raw[8 * 512..8 * 512 + plain.len()], &plain[..]);
        assert!(!raw.windows(16).any(|w| w == &plain[..16]));

        // Deferred remove while `f` keeps the device open.
        let info = ctl.info(&name).unwrap();
        assert!(info.open_count >= 1);
        assert_eq!(
            ctl.remove(&name, false).unwrap_err().errno(),
            Some(libc::EBUSY)
        );
        assert_eq!(ctl.remove(&name, true).unwrap(), RemoveOutcome::Deferred);
        assert!(ctl.info(&name).unwrap().deferred_remove());
        drop(f);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while ctl.info(&name).is_ok() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(ctl.info(&name).unwrap_err().is_not_found());
        remove_node(&name, dev).unwrap();
        // The loop device went with the mapping (autoclear).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while loopdev::find_backing_file(lo_dev).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(loopdev::find_backing_file(lo_dev), None);
    }
}
