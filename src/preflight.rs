//! Up-front checks, before any passphrase prompt or KDF work, of what mapping a volume needs:
//! root or `CAP_SYS_ADMIN`, device-mapper (the control device answering the version ioctl)
//! and, for an image file, loop devices. Each failure is one line saying what is missing and
//! what to do (exit 1), instead of a late error after the passphrase.
//!
//! `TAZPOD_SKIP_PREFLIGHT=1` skips the kernel checks (not the privilege check): the later
//! steps then fail where the kernel lacks something. The tests use it to reach those steps on
//! a machine without device-mapper; it grants nothing.

use crate::kernel::{dm, loopdev, privs};
use std::fmt;

/// What mapping a volume lacks. [`fmt::Display`] gives the message and [`PreflightError::hint`]
/// what to do; the CLI adds the exit code (`From<PreflightError> for CliError`).
#[derive(Debug)]
pub enum PreflightError {
    /// `tazpod verb` maps a volume and runs without root or `CAP_SYS_ADMIN`.
    NotRoot { verb: String },
    /// Root without `CAP_SYS_ADMIN` (a container that dropped it).
    CapSysAdminDropped,
    /// The kernel has no usable device-mapper; `what` says how that showed.
    DeviceMapperMissing { what: String },
    /// The kernel has no usable loop devices; `what` says how that showed.
    LoopMissing { what: String },
}

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreflightError::NotRoot { verb } => write!(
                f,
                "tazpod {verb} maps a volume through device-mapper, which needs root (or \
                 CAP_SYS_ADMIN)"
            ),
            PreflightError::CapSysAdminDropped => f.write_str(
                "mapping a volume through device-mapper needs CAP_SYS_ADMIN, which this process \
                 does not have; nothing was asked or changed",
            ),
            PreflightError::DeviceMapperMissing { what } | PreflightError::LoopMissing { what } => {
                write!(f, "{what}; nothing was asked or changed")
            }
        }
    }
}

impl std::error::Error for PreflightError {}

impl PreflightError {
    /// What to do about it, ending with what still works without mapping.
    pub fn hint(&self) -> String {
        let first = match self {
            PreflightError::NotRoot { verb } => format!(
                "run it as root (sudo tazpod {verb} ...); in a container add --cap-add SYS_ADMIN"
            ),
            PreflightError::CapSysAdminDropped => "in a container add --cap-add SYS_ADMIN \
                                              (docs/containers.md lists all it needs)"
                .into(),
            PreflightError::DeviceMapperMissing { .. } => {
                "load the dm_mod and dm_crypt modules on the host (modprobe dm_crypt); in a \
                 container add --device /dev/mapper/control"
                    .into()
            }
            PreflightError::LoopMissing { .. } => {
                "load the loop module on the host (modprobe loop); \
                                              in a container add --device /dev/loop-control and \
                                              the /dev/loopN devices"
                    .into()
            }
        };
        format!("{first}; {READ_WITHOUT_MAPPING}")
    }
}

/// `CAP_SYS_ADMIN`'s bit in the capability sets.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether this process may use device-mapper: `CAP_SYS_ADMIN` in its effective set
/// (`CapEff` of `/proc/self/status`; root without it, in a container that dropped it, may
/// not), or effective uid 0 where that cannot be read.
pub fn privileged() -> bool {
    match cap_eff() {
        Some(c) => c & (1 << CAP_SYS_ADMIN) != 0,
        None => privs::geteuid() == 0,
    }
}

fn cap_eff() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let v = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(v.trim(), 16).ok()
}

/// The hint every "cannot map" message ends with: what still works without mapping.
pub const READ_WITHOUT_MAPPING: &str =
    "to read a vault without root or device-mapper, use `tazpod ls`, `tazpod cat` or `tazpod run`";

/// Whether the running kernel registered a misc device `name` (`/proc/misc`), which an
/// unprivileged process can read: `device-mapper` and `loop-control`. `None` when
/// `/proc/misc` cannot be read.
pub fn kernel_has(name: &str) -> Option<bool> {
    let s = std::fs::read_to_string("/proc/misc").ok()?;
    Some(s.lines().any(|l| l.split_whitespace().nth(1) == Some(name)))
}

/// Refuses, before anything else, a `verb` that maps a volume run without the privilege to.
pub fn need_privilege(verb: &str) -> Result<(), PreflightError> {
    if privileged() {
        return Ok(());
    }
    Err(PreflightError::NotRoot {
        verb: verb.to_string(),
    })
}

/// As an unprivileged caller about to re-run itself through sudo: whether this kernel has
/// device-mapper (and loop devices, when `image` is true) at all, from `/proc/misc`, so that
/// no password or passphrase is asked for nothing.
pub fn kernel_can_map(image: bool) -> Result<(), PreflightError> {
    if skipped() {
        return Ok(());
    }
    if kernel_has("device-mapper") == Some(false) {
        return Err(PreflightError::DeviceMapperMissing {
            what: "this kernel has no device-mapper (no `device-mapper` in /proc/misc)".into(),
        });
    }
    if image && kernel_has("loop-control") == Some(false) {
        return Err(PreflightError::LoopMissing {
            what: "this kernel has no loop devices (no `loop-control` in /proc/misc)".into(),
        });
    }
    Ok(())
}

/// As root: opens device-mapper's control device and asks its version, and for an image file
/// opens `/dev/loop-control`.
pub fn can_map(image: bool) -> Result<(), PreflightError> {
    if !privileged() {
        return Err(PreflightError::CapSysAdminDropped);
    }
    if skipped() {
        return Ok(());
    }
    if let Err(e) = dm::Control::open() {
        return Err(PreflightError::DeviceMapperMissing {
            what: e.to_string(),
        });
    }
    if image {
        if let Err(e) = loopdev::check_control() {
            return Err(PreflightError::LoopMissing {
                what: format!("loop devices cannot be used ({e})"),
            });
        }
    }
    Ok(())
}

fn skipped() -> bool {
    std::env::var_os("TAZPOD_SKIP_PREFLIGHT").is_some_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use crate::error::testing::assert_converts;

    #[test]
    fn proc_misc_names_are_matched_whole() {
        // This machine's kernel: whatever it has, the answer is a yes or no, never a panic.
        let _ = kernel_has("device-mapper");
        assert_eq!(kernel_has("no-such-misc-device-name"), Some(false));
    }

    #[test]
    fn each_error_has_its_message_hint_and_exit_code() {
        let read = READ_WITHOUT_MAPPING;
        let hints = [
            format!(
                "run it as root (sudo tazpod open ...); in a container add --cap-add SYS_ADMIN; \
                 {read}"
            ),
            format!(
                "in a container add --cap-add SYS_ADMIN (docs/containers.md lists all it \
                 needs); {read}"
            ),
            format!(
                "load the dm_mod and dm_crypt modules on the host (modprobe dm_crypt); in a \
                 container add --device /dev/mapper/control; {read}"
            ),
            format!(
                "load the loop module on the host (modprobe loop); in a container add --device \
                 /dev/loop-control and the /dev/loopN devices; {read}"
            ),
        ];
        let [privilege, cap, dm, lo] = hints.each_ref().map(|h| Some(h.as_str()));
        assert_converts(vec![
            (
                PreflightError::NotRoot {
                    verb: "open".into(),
                },
                code::INVALID,
                "tazpod open maps a volume through device-mapper, which needs root (or \
                 CAP_SYS_ADMIN)"
                    .into(),
                privilege,
            ),
            (
                PreflightError::CapSysAdminDropped,
                code::INVALID,
                "mapping a volume through device-mapper needs CAP_SYS_ADMIN, which this process \
                 does not have; nothing was asked or changed"
                    .into(),
                cap,
            ),
            (
                PreflightError::DeviceMapperMissing {
                    what: "no dm".into(),
                },
                code::INVALID,
                "no dm; nothing was asked or changed".into(),
                dm,
            ),
            (
                PreflightError::LoopMissing {
                    what: "no loop".into(),
                },
                code::INVALID,
                "no loop; nothing was asked or changed".into(),
                lo,
            ),
        ]);
    }
}
