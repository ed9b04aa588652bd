//! Volume key → a live dm-crypt mapping, all or nothing; and `close` / `status`.
//!
//! `activate` does what `cryptsetup open` does, without libdevmapper or udev:
//! 1. checks device-mapper and the crypt target, and that NAME is free;
//! 2. attaches a regular file to an autoclear loop device (read-only with `--readonly`);
//! 3. puts the volume key in this thread's keyring as a `logon` key
//!    `cryptsetup:<uuid>-d<digest>` (hex in the table only as a fallback);
//! 4. DEV_CREATE with `CRYPT-LUKS<v>-<uuid>-<name>`, TABLE_LOAD with `DM_SECURE_DATA`, resume;
//! 5. revokes the key (dm-crypt holds its own copy), lets go of the loop device (the mapping
//!    holds it now, and autoclear detaches it when the mapping goes), creates `/dev/mapper/NAME`.
//!
//! Any failure undoes what the earlier steps made, in reverse order.

use crate::kernel::dm::{self, Control, DmError, Target};
use crate::kernel::keyring::LogonKey;
use crate::kernel::loopdev::{self, LoopDevice};
use crate::kernel::DevId;
use crate::table::{self, CryptFlags, CryptTarget, TableKey};
use luks2::volume::DataSegment;
use luks2::{Header, VolumeKey};
use std::fmt;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// How the volume key reaches dm-crypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// Keyring; fall back to hex (with a warning) if the keyring syscalls are refused.
    KeyringOrHex,
    /// Keyring only; fail if it is refused (`--no-hex-key`).
    KeyringOnly,
    /// Hex in the table (`--disable-keyring`).
    Hex,
}

/// What to map.
pub struct MapRequest<'a> {
    /// Mapping name.
    pub name: &'a str,
    /// The data device or image file.
    pub data: &'a Path,
    /// Version, UUID, persistent flags, data segment and verifying digest, from the header.
    pub volume: &'a VolumeInfo,
    /// The volume key.
    pub key: &'a VolumeKey,
    /// Map read-only.
    pub readonly: bool,
    /// dm-crypt features from the command line (the volume's persistent flags are added).
    pub flags: CryptFlags,
    /// Key transport.
    pub key_mode: KeyMode,
    /// Create `/dev/mapper/NAME` (false when the caller makes its own node).
    pub make_node: bool,
}

/// What the mapping needs to know about the volume besides its key, taken from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// LUKS version (1 or 2), for the dm UUID `CRYPT-LUKS<v>-...`.
    pub version: u8,
    /// The LUKS UUID.
    pub uuid: String,
    /// LUKS2 persistent flags (`allow-discards`...), none for LUKS1.
    pub persistent_flags: Vec<String>,
    /// The data segment.
    pub segment: DataSegment,
    /// The digest that verified the key (keyring description `cryptsetup:<uuid>-d<N>`).
    pub digest: u32,
}

impl VolumeInfo {
    /// The volume information of `header`, with its data segment and verifying digest.
    pub fn of(header: &Header, segment: DataSegment, digest: u32) -> VolumeInfo {
        let (version, uuid, persistent_flags) = match header {
            Header::Luks2(h) => (2, h.binary.uuid.clone(), h.metadata.config.flags.clone()),
            Header::Luks1(h) => (1, h.uuid.clone(), Vec::new()),
        };
        VolumeInfo {
            version,
            uuid,
            persistent_flags,
            segment,
            digest,
        }
    }
}

/// A live mapping.
#[derive(Debug)]
pub struct Mapped {
    /// Device number of the mapping.
    pub dev: DevId,
    /// `/dev/mapper/NAME` (if made).
    pub node: Option<PathBuf>,
    /// Whether the key went through the keyring.
    pub keyring: bool,
}

/// What a mapping failure means to the caller, as cryptsetup's exit codes sort them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Wrong parameters, or the kernel refused what it was given (exit 1).
    Invalid,
    /// The device or mapping is missing or cannot be used (exit 4).
    Device,
    /// The name or the device is already in use (exit 5).
    Busy,
}

/// Why a mapping could not be made, removed or read: the kind, what failed, what to try, and
/// the errno it came from; or the library's error about the volume.
#[derive(Debug)]
pub enum MapError {
    /// A step of the mapping failed.
    Failed {
        /// What it means to the caller.
        kind: Kind,
        /// What failed, lowercase, no trailing period.
        message: String,
        /// What to do next.
        hint: Option<String>,
        /// The kernel's errno, where the failure came from a system call.
        errno: Option<i32>,
    },
    /// The library refused the volume (its data segment cannot be mapped).
    Library {
        /// The device, as the user named it.
        device: String,
        /// The library's error.
        error: luks2::Error,
    },
}

impl MapError {
    fn new(kind: Kind, message: impl Into<String>) -> MapError {
        MapError::Failed {
            kind,
            message: message.into(),
            hint: None,
            errno: None,
        }
    }

    fn hint(mut self, h: impl Into<String>) -> MapError {
        if let MapError::Failed { hint, .. } = &mut self {
            *hint = Some(h.into());
        }
        self
    }

    fn errno(mut self, e: Option<i32>) -> MapError {
        if let MapError::Failed { errno, .. } = &mut self {
            *errno = e;
        }
        self
    }

    /// What the failure means to the caller (a library error is "invalid").
    pub fn kind(&self) -> Kind {
        match self {
            MapError::Failed { kind, .. } => *kind,
            MapError::Library { .. } => Kind::Invalid,
        }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Failed { message, hint, .. } => {
                f.write_str(message)?;
                match hint {
                    Some(h) => write!(f, " ({h})"),
                    None => Ok(()),
                }
            }
            MapError::Library { device, error } => write!(f, "{device}: {error}"),
        }
    }
}

impl std::error::Error for MapError {}

/// Opens `/dev/mapper/control`, failing with a message that says what to load.
pub fn control() -> Result<Control, MapError> {
    Control::open().map_err(|e| {
        MapError::new(Kind::Invalid, format!("cannot use device-mapper: {e}"))
            .hint("load the dm_mod and dm_crypt kernel modules (modprobe dm_crypt), or run where /dev/mapper/control exists")
    })
}

fn dm_err(e: DmError) -> MapError {
    let c = if e.is_busy() {
        Kind::Busy
    } else {
        Kind::Invalid
    };
    MapError::new(c, e.to_string()).errno(e.errno())
}

/// A failed TABLE_LOAD or resume. Busy stays busy (exit 5); anything else most often means
/// the kernel lacks the cipher, its chain mode or IV generator (dm-crypt cannot allocate the
/// transform): the message names the cipher and the modules that provide it, as cryptsetup's
/// "Check that kernel supports ... cipher" does (exit 1).
fn table_err(e: DmError, cipher: &str, key_len: usize) -> MapError {
    if e.is_busy() {
        return dm_err(e);
    }
    let modules = luks2::cipher::CipherSpec::parse(cipher, key_len)
        .map(|s| s.kernel_modules().join(" "))
        .unwrap_or_else(|_| "dm_crypt".into());
    MapError::new(
        Kind::Invalid,
        format!("the kernel refused the dm-crypt table for cipher {cipher}: {e}"),
    )
    .hint(format!(
        "check that the kernel supports {cipher}: load its modules (modprobe -a {modules}); \
         dmesg shows the kernel's reason"
    ))
}

/// The data device: a block device as is, or a file on a loop device.
enum Data {
    Block { dev: DevId, size: u64 },
    Loop { dev: LoopDevice, size: u64 },
}

impl Data {
    fn dev(&self) -> DevId {
        match self {
            Data::Block { dev, .. } => *dev,
            Data::Loop { dev, .. } => dev.dev(),
        }
    }
    fn size(&self) -> u64 {
        match self {
            Data::Block { size, .. } | Data::Loop { size, .. } => *size,
        }
    }
}

/// Whether a regular file is already the backing file of a loop device that something
/// (a dm mapping, a mount) holds.
fn file_in_use(path: &Path) -> Option<String> {
    let canon = std::fs::canonicalize(path).ok()?;
    let entries = std::fs::read_dir("/sys/block").ok()?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let backing =
            std::fs::read_to_string(e.path().join("loop/backing_file")).unwrap_or_default();
        if Path::new(backing.trim_end()) != canon {
            continue;
        }
        let held = std::fs::read_dir(e.path().join("holders"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if held {
            return Some(format!("/dev/{name}"));
        }
    }
    None
}

/// The data device from a descriptor opened by the caller: a block device by its device
/// number (from `fstat` of that descriptor), a regular file attached to a loop device
/// through that descriptor. The path is only named in messages.
fn open_data_fd(file: &File, path: &Path, readonly: bool) -> Result<Data, MapError> {
    let shown = path.display();
    let meta = file
        .metadata()
        .map_err(|e| MapError::new(Kind::Device, format!("cannot stat {shown}: {e}")))?;
    let ft = meta.file_type();
    if ft.is_block_device() {
        let size = (&*file).seek(SeekFrom::End(0)).map_err(|e| {
            MapError::new(Kind::Device, format!("cannot get the size of {shown}: {e}"))
        })?;
        Ok(Data::Block {
            dev: DevId::from_raw(meta.rdev()),
            size,
        })
    } else if ft.is_file() {
        let busy = loopdev::attached_to(meta.dev(), meta.ino());
        if let Some(lo) = busy.first() {
            return Err(MapError::new(
                Kind::Busy,
                format!(
                    "cannot use {shown}: it is already in use through {}",
                    lo.display()
                ),
            ));
        }
        let dev = loopdev::attach_fd(file, path, readonly)
            .map_err(|e| MapError::new(Kind::Device, format!("cannot attach {shown}: {e}")))?;
        Ok(Data::Loop {
            dev,
            size: meta.len(),
        })
    } else {
        Err(MapError::new(
            Kind::Device,
            format!("device {shown} is not compatible: not a block device or regular file"),
        ))
    }
}

fn open_data(path: &Path, readonly: bool) -> Result<Data, MapError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        MapError::new(
            Kind::Device,
            format!("device {shown} does not exist or access denied: {e}"),
        )
    })?;
    let ft = meta.file_type();
    if ft.is_block_device() {
        // O_EXCL on a block device fails with EBUSY while it is mounted or mapped.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    MapError::new(
                        Kind::Busy,
                        format!(
                            "cannot use device {shown}: it is in use (already mapped or mounted)"
                        ),
                    )
                } else {
                    MapError::new(Kind::Device, format!("cannot open device {shown}: {e}"))
                }
            })?;
        let size = f.seek(SeekFrom::End(0)).map_err(|e| {
            MapError::new(Kind::Device, format!("cannot get the size of {shown}: {e}"))
        })?;
        Ok(Data::Block {
            dev: DevId::from_raw(meta.rdev()),
            size,
        })
    } else if ft.is_file() {
        if let Some(lo) = file_in_use(path) {
            return Err(MapError::new(
                Kind::Busy,
                format!("cannot use {shown}: it is already in use through {lo}"),
            ));
        }
        let dev = loopdev::attach(path, readonly)
            .map_err(|e| MapError::new(Kind::Device, format!("cannot attach {shown}: {e}")))?;
        Ok(Data::Loop {
            dev,
            size: meta.len(),
        })
    } else {
        Err(MapError::new(
            Kind::Device,
            format!("device {shown} is not compatible: not a block device or regular file"),
        ))
    }
}

/// Activates the mapping; on failure nothing is left behind.
pub fn activate(req: &MapRequest<'_>) -> Result<Mapped, MapError> {
    activate_from(req, None)
}

/// [`activate`] on the data device or image already open as `data` (`req.data` only names it
/// in messages): nothing is opened by path.
pub fn activate_fd(req: &MapRequest<'_>, data: &File) -> Result<Mapped, MapError> {
    activate_from(req, Some(data))
}

fn activate_from(req: &MapRequest<'_>, file: Option<&File>) -> Result<Mapped, MapError> {
    dm::validate_name(req.name).map_err(|e| {
        MapError::new(
            Kind::Invalid,
            format!("invalid mapping name '{}': {e:?}", req.name),
        )
    })?;
    let ctl = control()?;
    match ctl.crypt_target_version() {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(
                MapError::new(Kind::Invalid, "the kernel has no dm-crypt target")
                    .hint("load the dm_crypt kernel module"),
            )
        }
        Err(e) => return Err(dm_err(e)),
    }
    match ctl.info(req.name) {
        Ok(_) => {
            return Err(MapError::new(
                Kind::Busy,
                format!("device {} already exists", req.name),
            ))
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(dm_err(e)),
    }

    // Step 2: the data device.
    let data = match file {
        Some(f) => open_data_fd(f, req.data, req.readonly)?,
        None => open_data(req.data, req.readonly)?,
    };
    let result = activate_on(&ctl, req, &data);
    match (result, data) {
        (Ok(m), Data::Loop { dev, .. }) => {
            // The mapping holds the loop device now; autoclear detaches it with the mapping.
            dev.release();
            Ok(m)
        }
        (Ok(m), Data::Block { .. }) => Ok(m),
        (Err(e), Data::Loop { dev, .. }) => {
            let _ = dev.detach();
            Err(e)
        }
        (Err(e), Data::Block { .. }) => Err(e),
    }
}

fn activate_on(ctl: &Control, req: &MapRequest<'_>, data: &Data) -> Result<Mapped, MapError> {
    let length = req
        .volume
        .segment
        .length_on(data.size())
        .map_err(|e| MapError::Library {
            device: req.data.display().to_string(),
            error: e,
        })?;
    let sectors = length / 512;
    if sectors == 0 {
        return Err(MapError::new(
            Kind::Invalid,
            format!("{}: the data segment is empty", req.data.display()),
        ));
    }
    let dev = data.dev();

    // Step 3: the key.
    let description = table::key_description(&req.volume.uuid, req.volume.digest);
    let mut hex_warning = None;
    let key = match req.key_mode {
        KeyMode::Hex => None,
        KeyMode::KeyringOnly | KeyMode::KeyringOrHex => {
            match LogonKey::add_to_thread(&description, req.key.as_bytes()) {
                Ok(k) => Some(k),
                Err(e) if e.is_refused() && req.key_mode == KeyMode::KeyringOrHex => {
                    hex_warning = Some(e.to_string());
                    None
                }
                Err(e) => {
                    return Err(MapError::new(Kind::Invalid, e.to_string()).hint(
                        "allow the keyring syscalls (add_key, keyctl), or drop --no-hex-key to accept a hex key in the table",
                    ))
                }
            }
        }
    };
    if let Some(w) = hex_warning {
        eprintln!("WARNING: {w}; the volume key goes into the dm table as hex instead");
    }
    let mut flags = req.flags;
    flags.add_persistent(&req.volume.persistent_flags);
    let params: Zeroizing<String> = CryptTarget {
        cipher: &req.volume.segment.encryption,
        key: match &key {
            Some(_) => TableKey::Keyring {
                len: req.key.len(),
                description: &description,
            },
            None => TableKey::Hex(req.key.as_bytes()),
        },
        iv_offset: req.volume.segment.iv_tweak,
        major: dev.major,
        minor: dev.minor,
        offset_sectors: req.volume.segment.offset / 512,
        sector_size: req.volume.segment.sector_size,
        flags,
    }
    .params();
    let params_bytes = Zeroizing::new(params.as_bytes().to_vec());
    drop(params);

    // Step 4: create, load, resume.
    let uuid = table::dm_uuid(req.volume.version, &req.volume.uuid, req.name);
    let mdev = ctl.create(req.name, &uuid).map_err(dm_err)?;
    let loaded = ctl
        .load_table(
            req.name,
            &[Target::new(0, sectors, "crypt", params_bytes)],
            req.readonly,
            true,
        )
        .and_then(|_| ctl.resume(req.name));
    if let Err(e) = loaded {
        let _ = ctl.remove(req.name, false);
        return Err(table_err(e, &req.volume.segment.encryption, req.key.len()));
    }
    // Step 5: the key is in dm-crypt now; take it out of the keyring.
    let keyring = key.is_some();
    if let Some(k) = key {
        let _ = k.drop_key();
    }
    let node = if req.make_node {
        match dm::create_node(req.name, mdev) {
            Ok(_) => Some(dm::mapper_path(req.name)),
            Err(e) => {
                let _ = ctl.remove(req.name, false);
                return Err(MapError::new(
                    Kind::Invalid,
                    format!("cannot create {}: {e}", dm::mapper_path(req.name).display()),
                ));
            }
        }
    } else {
        None
    };
    Ok(Mapped {
        dev: mdev,
        node,
        keyring,
    })
}

/// `tazpod close NAME [--deferred]`.
pub fn close(name: &str, deferred: bool) -> Result<(), MapError> {
    let ctl = control()?;
    let info = ctl.info(name).map_err(|e| {
        if e.is_not_found() {
            MapError::new(Kind::Device, format!("device {name} is not active"))
        } else {
            dm_err(e)
        }
    })?;
    if !info.uuid.starts_with("CRYPT-") {
        return Err(MapError::new(
            Kind::Invalid,
            format!(
                "device {name} is not a crypt mapping (uuid '{}')",
                info.uuid
            ),
        ));
    }
    match ctl.remove(name, deferred) {
        Ok(dm::RemoveOutcome::Removed) => {
            let _ = dm::remove_node(name, info.dev);
            Ok(())
        }
        Ok(dm::RemoveOutcome::Deferred) => {
            eprintln!("Device {name} is still in use; it will be removed when it is closed.");
            Ok(())
        }
        Err(e) if e.is_busy() => Err(MapError::new(
            Kind::Busy,
            format!("device {name} is still in use"),
        )
        .hint("unmount it or close what holds it, or use --deferred")),
        Err(e) => Err(dm_err(e)),
    }
}

/// The `/dev/...` name of a block device number, from sysfs.
fn dev_name(dev: DevId) -> String {
    std::fs::read_to_string(format!("/sys/dev/block/{}:{}/uevent", dev.major, dev.minor))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME=").map(|n| format!("/dev/{n}")))
        })
        .unwrap_or_else(|| format!("{}:{}", dev.major, dev.minor))
}

/// `tazpod status NAME`: what `cryptsetup status` shows (never the key).
pub fn status(name: &str) -> Result<String, MapError> {
    let ctl = control()?;
    let path = dm::mapper_path(name);
    let (info, targets) = match ctl.table_status(name, true) {
        Ok(v) => v,
        Err(e) if e.is_not_found() => {
            return Err(MapError::new(
                Kind::Device,
                format!("{} is inactive", path.display()),
            ))
        }
        Err(e) => return Err(dm_err(e)),
    };
    let mut o = format!(
        "{} is active{}.\n",
        path.display(),
        if info.open_count > 0 {
            " and is in use"
        } else {
            ""
        }
    );
    let ty = if info.uuid.starts_with("CRYPT-LUKS2-") {
        "LUKS2"
    } else if info.uuid.starts_with("CRYPT-LUKS1-") {
        "LUKS1"
    } else if info.uuid.starts_with("CRYPT-PLAIN-") {
        "PLAIN"
    } else {
        "n/a"
    };
    o.push_str(&format!("  type:    {ty}\n"));
    let Some(t) = targets.iter().find(|t| t.target_type == "crypt") else {
        return Ok(o);
    };
    let Some(p) = t.params_str().and_then(table::parse_crypt) else {
        return Ok(o);
    };
    o.push_str(&format!("  cipher:  {}\n", p.cipher));
    o.push_str(&format!("  keysize: {} bits\n", p.key_size * 8));
    o.push_str(&format!(
        "  key location: {}\n",
        if p.keyring { "keyring" } else { "dm-crypt" }
    ));
    let data_dev = DevId::parse_sysfs(&p.device);
    let device = data_dev.map_or(p.device.clone(), dev_name);
    o.push_str(&format!("  device:  {device}\n"));
    if let Some(b) = data_dev.and_then(loopdev::find_backing_file) {
        o.push_str(&format!("  loop:    {}\n", b.display()));
    }
    o.push_str(&format!("  sector size:  {}\n", p.sector_size));
    o.push_str(&format!("  offset:  {} sectors\n", p.offset_sectors));
    o.push_str(&format!("  size:    {} sectors\n", t.length));
    if p.iv_offset != 0 {
        o.push_str(&format!("  skipped: {} sectors\n", p.iv_offset));
    }
    o.push_str(&format!(
        "  mode:    {}{}\n",
        if info.readonly() {
            "readonly"
        } else {
            "read/write"
        },
        if info.suspended() { " (suspended)" } else { "" }
    ));
    let has = |f: &str| p.features.iter().any(|x| x == f);
    if [
        "allow_discards",
        "same_cpu_crypt",
        "submit_from_crypt_cpus",
        "no_read_workqueue",
        "no_write_workqueue",
    ]
    .iter()
    .any(|f| has(f))
    {
        o.push_str(&format!(
            "  flags:   {}{}{}{}{}\n",
            if has("allow_discards") {
                "discards "
            } else {
                ""
            },
            if has("same_cpu_crypt") {
                "same_cpu_crypt "
            } else {
                ""
            },
            if has("submit_from_crypt_cpus") {
                "submit_from_crypt_cpus "
            } else {
                ""
            },
            if has("no_read_workqueue") {
                "no_read_workqueue "
            } else {
                ""
            },
            if has("no_write_workqueue") {
                "no_write_workqueue"
            } else {
                ""
            },
        ));
    }
    Ok(o)
}
