//! The vault's dm-crypt mapping, through the mapping layer and the device-mapper ioctls.

use super::{shown, RealHost};
use crate::ghost::host::{HostError, HostResult, Mapper, MappingHandle, VaultMapRequest};
use crate::kernel::dm::{self, DmError};
use crate::mapping;
use crate::table::CryptFlags;
use std::io;
use std::os::unix::fs::OpenOptionsExt;

fn dm_error(op: &'static str, name: &str, e: impl std::fmt::Display) -> HostError {
    HostError::new(op, name, io::Error::other(e.to_string()))
}

/// A failed ioctl as a host error that keeps its cause: the errno's kind with the
/// device-mapper message (so a busy device stays exit 5).
fn dm_os_error(op: &'static str, name: &str, e: DmError) -> HostError {
    let kind = match e.errno() {
        Some(libc::EBUSY | libc::EEXIST) => io::ErrorKind::ResourceBusy,
        Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    HostError::new(op, name, io::Error::new(kind, e.to_string()))
}

/// A mapping failure as a host error that keeps its meaning as an error kind (busy, missing)
/// and the mapping's own error (message, hint, the kernel's errno) inside it.
fn mapping_error(op: &'static str, name: &str, e: mapping::MapError) -> HostError {
    let kind = match e.kind() {
        mapping::Kind::Busy => io::ErrorKind::ResourceBusy,
        mapping::Kind::Device => io::ErrorKind::NotFound,
        mapping::Kind::Invalid => io::ErrorKind::Other,
    };
    HostError::new(op, name, io::Error::new(kind, e))
}

fn control(name: &str) -> HostResult<dm::Control> {
    dm::Control::open().map_err(|e| dm_os_error("open device-mapper control for", name, e))
}

/// What to do with a device that already has the vault's mapping name when a session is
/// about to map it. The caller holds the vault's session lock and no session of it is live,
/// so such a device is a leftover of an earlier session, or someone else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftover {
    /// Never given a live table and not open: a setup killed between creating the device and
    /// resuming its table (nothing else can remove it). Removed, then the mapping goes on.
    Remove,
    /// Live, with a deferred removal pending: the last session's namespace is still dying.
    /// Waited for.
    Wait,
    /// Live and not going away (someone's device of that name): left alone; the mapping then
    /// fails as busy (exit 5).
    Keep,
}

fn leftover(info: &dm::DeviceInfo) -> Leftover {
    if !info.active_table() && info.open_count == 0 {
        Leftover::Remove
    } else if info.deferred_remove() {
        Leftover::Wait
    } else {
        Leftover::Keep
    }
}

/// How long a session waits for the last session's pending deferred removal.
const LEFTOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Clears the way for the mapping `name`: removes a half-created leftover and waits for a
/// pending deferred removal (see [`Leftover`]). A device it keeps is reported by the mapping.
fn clear_leftover(name: &str) -> HostResult<()> {
    let ctl = control(name)?;
    let start = std::time::Instant::now();
    loop {
        let info = match ctl.info(name) {
            Ok(info) => info,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(dm_os_error("look up mapping", name, e)),
        };
        match leftover(&info) {
            Leftover::Remove => match ctl.remove(name, false) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(()),
                // Opened in between: look again, for as long as a removal is waited for (then
                // the mapping reports the device as busy).
                Err(e) if e.is_busy() && start.elapsed() < LEFTOVER_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) if e.is_busy() => return Ok(()),
                Err(e) => return Err(dm_os_error("remove leftover mapping", name, e)),
            },
            Leftover::Wait if start.elapsed() < LEFTOVER_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Leftover::Wait | Leftover::Keep => return Ok(()),
        }
    }
}

impl Mapper for RealHost {
    fn map_vault(&mut self, req: &VaultMapRequest<'_>) -> HostResult<MappingHandle> {
        // The vault as the caller opened it, or the image being created: by descriptor.
        let data = match (&self.vault_file, &self.image) {
            (Some(f), _) => f,
            (None, Some(c)) => &c.file,
            (None, None) => {
                return Err(dm_error(
                    "map the vault as",
                    req.name,
                    "no open vault to map",
                ))
            }
        };
        clear_leftover(req.name)?;
        let m = mapping::activate_fd(
            &mapping::MapRequest {
                name: req.name,
                data: req.vault,
                volume: req.volume,
                key: req.key,
                readonly: req.readonly,
                flags: CryptFlags::default(),
                key_mode: mapping::KeyMode::KeyringOrHex,
                make_node: false,
            },
            data,
        )
        .map_err(|e| mapping_error("map the vault as", req.name, e))?;
        let node = req.node_dir.join(req.name);
        if let Err(e) = crate::kernel::ensure_device_node(&node, libc::S_IFBLK, m.dev) {
            if let Ok(ctl) = dm::Control::open() {
                let _ = ctl.remove(req.name, false);
            }
            return Err(dm_error("create node", &shown(&node), e));
        }
        Ok(MappingHandle {
            name: req.name.to_string(),
            node,
            dev: m.dev.to_raw(),
        })
    }

    fn hold_mapping(&mut self, m: &MappingHandle) -> HostResult<()> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&m.node)
            .map_err(|e| HostError::new("open", shown(&m.node), e))?;
        self.hold = Some(f);
        Ok(())
    }

    fn defer_remove(&mut self, m: &MappingHandle) -> HostResult<()> {
        match control(&m.name)?.remove(&m.name, true) {
            Ok(dm::RemoveOutcome::Deferred) => Ok(()),
            // Not held open: it is gone already, and nothing can be mounted from it.
            Ok(dm::RemoveOutcome::Removed) => Err(HostError::new(
                "deferred removal of",
                &m.name,
                io::Error::other("the mapping was removed at once: it was not held open"),
            )),
            Err(e) => Err(dm_os_error("deferred removal of", &m.name, e)),
        }
    }

    fn release_mapping(&mut self, _m: &MappingHandle) -> HostResult<()> {
        self.hold = None;
        Ok(())
    }

    fn remove_mapping(&mut self, m: &MappingHandle) -> HostResult<()> {
        let ctl = control(&m.name)?;
        // Only our own mapping: the name could have been reused after a deferred removal.
        match ctl.info(&m.name) {
            Ok(info) if info.dev.to_raw() == m.dev => {}
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(dm_os_error("look up mapping", &m.name, e)),
        }
        match ctl.remove(&m.name, false) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            // Still open (a lazily detached mount): leave it to the deferred removal.
            Err(e) if e.is_busy() => ctl
                .remove(&m.name, true)
                .map(|_| ())
                .map_err(|e| dm_os_error("remove mapping", &m.name, e)),
            Err(e) => Err(dm_os_error("remove mapping", &m.name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::{code, host_exit_code};

    /// Only a device that never got a live table and is not open is removed; a dying
    /// session's mapping is waited for; anything live is left to fail the mapping as busy.
    #[test]
    fn leftovers_by_state() {
        let info = |flags, open_count| dm::DeviceInfo {
            name: "tazpod-1-2".into(),
            uuid: String::new(),
            dev: crate::kernel::DevId::from_raw(0),
            open_count,
            event_nr: 0,
            target_count: 0,
            flags,
        };
        const A: u32 = dm::flags::ACTIVE_PRESENT;
        for (flags, open, want) in [
            // Created, no table: killed between DEV_CREATE and TABLE_LOAD.
            (0, 0, Leftover::Remove),
            // Table loaded, never resumed.
            (dm::flags::INACTIVE_PRESENT, 0, Leftover::Remove),
            // Opened by someone while tableless: not ours to remove.
            (0, 1, Leftover::Keep),
            (A | dm::flags::DEFERRED_REMOVE, 1, Leftover::Wait),
            (A, 0, Leftover::Keep),
            (A, 1, Leftover::Keep),
            (A | dm::flags::INACTIVE_PRESENT, 0, Leftover::Keep),
        ] {
            assert_eq!(
                leftover(&info(flags, open)),
                want,
                "flags {flags:#x} open {open}"
            );
        }
    }

    /// A busy device is exit 5 in ghost mode as in `open`: the failure keeps its cause
    /// through the host layer (the mapping's exit code, the ioctl's errno).
    #[test]
    fn host_errors_keep_their_exit_code() {
        let failed = |kind, hint: Option<&str>| mapping::MapError::Failed {
            kind,
            message: "device tazpod-x is busy".into(),
            hint: hint.map(String::from),
            errno: Some(libc::EBUSY),
        };
        let e = mapping_error(
            "map the vault as",
            "tazpod-x",
            failed(mapping::Kind::Busy, Some("close it")),
        );
        assert_eq!(host_exit_code(&e), code::BUSY);
        assert!(e.to_string().contains("is busy (close it)"), "{e}");
        let cause = e
            .source
            .get_ref()
            .and_then(|c| c.downcast_ref::<mapping::MapError>());
        assert!(
            matches!(
                cause,
                Some(mapping::MapError::Failed {
                    errno: Some(libc::EBUSY),
                    ..
                })
            ),
            "{cause:?}"
        );
        for (k, want) in [
            (mapping::Kind::Device, code::DEVICE),
            (mapping::Kind::Invalid, code::INVALID),
        ] {
            let e = mapping_error("map the vault as", "v", failed(k, None));
            assert_eq!(host_exit_code(&e), want, "{k:?}");
        }
        let dm = |errno| DmError {
            op: "DEV_CREATE",
            name: "tazpod-x".into(),
            kind: dm::DmErrorKind::Os(crate::kernel::Errno(errno)),
        };
        let e = dm_os_error("remove mapping", "tazpod-x", dm(libc::EBUSY));
        assert_eq!(host_exit_code(&e), code::BUSY);
        assert!(e.to_string().contains("DEV_CREATE"), "{e}");
        let e = dm_os_error("look up mapping", "tazpod-x", dm(libc::ENXIO));
        assert_eq!(host_exit_code(&e), code::DEVICE);
        let e = dm_os_error("look up mapping", "tazpod-x", dm(libc::EINVAL));
        assert_eq!(host_exit_code(&e), code::INVALID);
    }
}
