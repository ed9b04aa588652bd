//! The kernel keyring: hand a volume key to dm-crypt as a `logon` key.
//!
//! This does what cryptsetup does (`lib/utils_keyring.c`,
//! `keyring_add_key_in_thread_keyring`): the key is added as type `logon`
//! with a description `cryptsetup:<…>` to the *thread* keyring, the table is
//! loaded with `:<len>:logon:<description>` in place of the hex key (dm-crypt
//! looks the key up with `request_key` in the keyrings of the thread doing
//! the TABLE_LOAD ioctl, and copies it), then the key is dropped from the
//! keyring. A `logon` key's payload cannot be read back from user space.
//!
//! When the keyring syscalls are refused (`ENOSYS`: no `CONFIG_KEYS`, or a
//! seccomp filter; `EPERM`: a seccomp filter, as in default container
//! profiles) the error is [`KeyringError::Refused`], so the caller can fall
//! back to a hex key in the table.

use std::ffi::CString;
use std::fmt;

use super::Errno;

/// A key's serial number (`key_serial_t`).
pub type KeySerial = i32;

const KEYCTL_REVOKE: libc::c_long = 3;
const KEYCTL_UNLINK: libc::c_long = 9;
const KEYCTL_READ: libc::c_long = 11;
const KEYCTL_INVALIDATE: libc::c_long = 21;

/// Largest `logon`/`user` payload the kernel takes.
pub const MAX_LOGON_PAYLOAD: usize = 32767;
/// Largest key description the kernel takes (`PAGE_SIZE - 1` on 4 KiB pages).
pub const MAX_DESCRIPTION: usize = 4095;

/// A keyring to add keys to or unlink them from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyring {
    /// `KEY_SPEC_THREAD_KEYRING`: this thread only (what cryptsetup uses).
    Thread,
    /// `KEY_SPEC_PROCESS_KEYRING`.
    Process,
    /// `KEY_SPEC_SESSION_KEYRING`.
    Session,
    /// `KEY_SPEC_USER_KEYRING`.
    User,
    /// A keyring by serial number.
    Id(KeySerial),
}

impl Keyring {
    /// The special or real keyring id given to the syscalls.
    pub fn raw(self) -> KeySerial {
        match self {
            Keyring::Thread => -1,
            Keyring::Process => -2,
            Keyring::Session => -3,
            Keyring::User => -4,
            Keyring::Id(id) => id,
        }
    }
}

/// A failed keyring operation.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringError {
    /// The keyring syscalls are not available to this process (`ENOSYS`
    /// or `EPERM`, typically a seccomp filter): fall back to a hex key.
    Refused {
        /// The syscall, e.g. `add_key`.
        op: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// The syscall failed for another reason.
    Os {
        /// The syscall or keyctl operation.
        op: &'static str,
        /// The key description or serial involved.
        key: String,
        /// The errno.
        errno: Errno,
    },
    /// The description is not a valid `logon` description.
    InvalidDescription(&'static str),
    /// The payload size is outside what the kernel takes.
    InvalidPayload(&'static str),
}

impl KeyringError {
    fn from_errno(op: &'static str, key: String, errno: Errno) -> KeyringError {
        match errno.raw() {
            libc::ENOSYS | libc::EPERM => KeyringError::Refused { op, errno },
            _ => KeyringError::Os { op, key, errno },
        }
    }

    /// True when the keyring cannot be used at all here (fall back to hex).
    pub fn is_refused(&self) -> bool {
        matches!(self, KeyringError::Refused { .. })
    }
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::Refused { op, errno } => write!(
                f,
                "kernel keyring unavailable: {op} refused ({errno}); a seccomp filter or a \
                 kernel without CONFIG_KEYS blocks it"
            ),
            KeyringError::Os { op, key, errno } => {
                write!(f, "kernel keyring {op} of '{key}' failed: {errno}")
            }
            KeyringError::InvalidDescription(why) => write!(f, "invalid key description: {why}"),
            KeyringError::InvalidPayload(why) => write!(f, "invalid key payload: {why}"),
        }
    }
}

impl std::error::Error for KeyringError {}

/// Checks a `logon` key description as the kernel does: `prefix:rest` with
/// a non-empty prefix, no NUL, at most 4095 bytes.
pub fn validate_logon_description(description: &str) -> Result<(), KeyringError> {
    if description.contains('\0') {
        return Err(KeyringError::InvalidDescription("contains a NUL byte"));
    }
    if description.len() > MAX_DESCRIPTION {
        return Err(KeyringError::InvalidDescription("longer than 4095 bytes"));
    }
    match description.find(':') {
        Some(0) | None => Err(KeyringError::InvalidDescription(
            "a logon key description must start with 'prefix:'",
        )),
        Some(_) => Ok(()),
    }
}

fn c_string(s: &str) -> Result<CString, KeyringError> {
    CString::new(s).map_err(|_| KeyringError::InvalidDescription("contains a NUL byte"))
}

/// Adds a `logon` key with `description` (e.g. `cryptsetup:<uuid>-d0`) and
/// `payload` (the volume key) to `keyring`, replacing a key of the same
/// description there, and returns its serial.
///
/// The kernel copies `payload`; the caller keeps (and wipes) its buffer.
pub fn add_logon_key(
    description: &str,
    payload: &[u8],
    keyring: Keyring,
) -> Result<KeySerial, KeyringError> {
    validate_logon_description(description)?;
    if payload.is_empty() {
        return Err(KeyringError::InvalidPayload("empty"));
    }
    if payload.len() > MAX_LOGON_PAYLOAD {
        return Err(KeyringError::InvalidPayload("larger than 32767 bytes"));
    }
    let ktype = c_string("logon")?;
    let desc = c_string(description)?;
    // SAFETY: `ktype` and `desc` are valid NUL-terminated strings, and
    // `payload` is a live slice whose pointer and length are passed
    // together; the kernel only reads them during the call and copies the
    // payload. The keyring id is a plain integer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            ktype.as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            libc::c_long::from(keyring.raw()),
        )
    };
    if rc < 0 {
        return Err(KeyringError::from_errno(
            "add_key",
            description.to_owned(),
            Errno::last(),
        ));
    }
    KeySerial::try_from(rc).map_err(|_| KeyringError::Os {
        op: "add_key",
        key: description.to_owned(),
        errno: Errno(libc::ERANGE),
    })
}

/// `keyctl(op, serial, arg)` with integer arguments.
fn keyctl(
    op: libc::c_long,
    name: &'static str,
    serial: KeySerial,
    arg: libc::c_long,
) -> Result<libc::c_long, KeyringError> {
    // SAFETY: the operations used here (REVOKE, UNLINK, INVALIDATE) take
    // only integer arguments; no user memory is passed to the kernel.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, op, libc::c_long::from(serial), arg) };
    if rc < 0 {
        Err(KeyringError::from_errno(
            name,
            serial.to_string(),
            Errno::last(),
        ))
    } else {
        Ok(rc)
    }
}

/// Removes the link from `keyring` to the key (`KEYCTL_UNLINK`); the key is
/// destroyed when nothing else links it.
pub fn unlink(serial: KeySerial, keyring: Keyring) -> Result<(), KeyringError> {
    keyctl(
        KEYCTL_UNLINK,
        "KEYCTL_UNLINK",
        serial,
        libc::c_long::from(keyring.raw()),
    )
    .map(|_| ())
}

/// Revokes the key (`KEYCTL_REVOKE`): its payload is freed (and, for
/// `logon` keys, wiped) at once and further use fails with `EKEYREVOKED`.
pub fn revoke(serial: KeySerial) -> Result<(), KeyringError> {
    keyctl(KEYCTL_REVOKE, "KEYCTL_REVOKE", serial, 0).map(|_| ())
}

/// Invalidates the key (`KEYCTL_INVALIDATE`): it is unlinked from every
/// keyring and garbage-collected at once.
pub fn invalidate(serial: KeySerial) -> Result<(), KeyringError> {
    keyctl(KEYCTL_INVALIDATE, "KEYCTL_INVALIDATE", serial, 0).map(|_| ())
}

/// Checks that the keyring syscalls work here, as cryptsetup's
/// `keyring_check` does: a `request_key` for a key that cannot exist must
/// fail with anything but `ENOSYS`/`EPERM`.
pub fn check_available() -> Result<(), KeyringError> {
    let ktype = c_string("logon")?;
    let desc = c_string("tazpod:probe-that-does-not-exist")?;
    // SAFETY: `ktype` and `desc` are valid NUL-terminated strings; the
    // callout pointer is NULL (allowed: no upcall) and the destination
    // keyring 0 means none. The kernel keeps no pointer after the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_request_key,
            ktype.as_ptr(),
            desc.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            libc::c_long::from(0i32),
        )
    };
    if rc >= 0 {
        return Ok(());
    }
    match KeyringError::from_errno("request_key", String::new(), Errno::last()) {
        e @ KeyringError::Refused { .. } => Err(e),
        _ => Ok(()),
    }
}

/// A `logon` key in a keyring, dropped (revoked, then unlinked) when the
/// guard goes out of scope. Use it around the TABLE_LOAD that references
/// the key.
#[derive(Debug)]
pub struct LogonKey {
    serial: KeySerial,
    keyring: Keyring,
    description: String,
}

impl LogonKey {
    /// Adds `payload` as a `logon` key with `description` to this thread's
    /// keyring (as cryptsetup does). Load the dm table from the same thread.
    pub fn add_to_thread(description: &str, payload: &[u8]) -> Result<LogonKey, KeyringError> {
        let serial = add_logon_key(description, payload, Keyring::Thread)?;
        Ok(LogonKey {
            serial,
            keyring: Keyring::Thread,
            description: description.to_owned(),
        })
    }

    /// The key's serial.
    pub fn serial(&self) -> KeySerial {
        self.serial
    }

    /// The key's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The dm-crypt key string for a key of `key_len` bytes:
    /// `:<key_len>:logon:<description>`.
    pub fn dm_key_string(&self, key_len: usize) -> String {
        format!(":{key_len}:logon:{}", self.description)
    }

    /// Revokes the key (wiping its payload) and unlinks it from its keyring,
    /// reporting the first error.
    pub fn drop_key(self) -> Result<(), KeyringError> {
        let this = std::mem::ManuallyDrop::new(self);
        let revoked = revoke(this.serial);
        let unlinked = unlink(this.serial, this.keyring);
        revoked.and(unlinked)
    }
}

impl Drop for LogonKey {
    fn drop(&mut self) {
        let _ = revoke(self.serial);
        let _ = unlink(self.serial, self.keyring);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The `/proc/keys` line of a key, if this process can see it.
    fn proc_keys_line(serial: KeySerial) -> Option<String> {
        let prefix = format!("{serial:08x} ");
        std::fs::read_to_string("/proc/keys")
            .ok()?
            .lines()
            .find(|l| l.starts_with(&prefix))
            .map(str::to_owned)
    }

    fn keyctl_read(serial: KeySerial, buf: &mut [u8]) -> Result<libc::c_long, Errno> {
        // SAFETY: `buf` is a live, exclusively borrowed slice whose pointer
        // and length are passed together; the kernel writes at most
        // `buf.len()` bytes into it during the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_READ,
                libc::c_long::from(serial),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if rc < 0 {
            Err(Errno::last())
        } else {
            Ok(rc)
        }
    }

    fn unique_description() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("cryptsetup:tazpod-test-{}-{nanos}", std::process::id())
    }

    #[test]
    fn descriptions_are_checked() {
        assert!(validate_logon_description("cryptsetup:abc-d0").is_ok());
        assert!(validate_logon_description("nocolon").is_err());
        assert!(validate_logon_description(":noprefix").is_err());
        assert!(validate_logon_description("a:b\0c").is_err());
        assert!(validate_logon_description(&format!("a:{}", "x".repeat(4094))).is_err());
        assert!(matches!(
            add_logon_key("cryptsetup:x", &[], Keyring::Thread),
            Err(KeyringError::InvalidPayload(_))
        ));
        assert!(matches!(
            add_logon_key("cryptsetup:x", &vec![0u8; 32768], Keyring::Thread),
            Err(KeyringError::InvalidPayload(_))
        ));
    }

    #[test]
    fn refused_errnos_are_classified() {
        for e in [libc::ENOSYS, libc::EPERM] {
            assert!(KeyringError::from_errno("add_key", String::new(), Errno(e)).is_refused());
        }
        let e = KeyringError::from_errno("add_key", "cryptsetup:x".into(), Errno(libc::EDQUOT));
        assert!(!e.is_refused());
        assert!(e.to_string().contains("cryptsetup:x"));
    }

    #[test]
    fn keyring_specials() {
        assert_eq!(Keyring::Thread.raw(), -1);
        assert_eq!(Keyring::Process.raw(), -2);
        assert_eq!(Keyring::Session.raw(), -3);
        assert_eq!(Keyring::User.raw(), -4);
        assert_eq!(Keyring::Id(42).raw(), 42);
    }

    #[test]
    fn add_and_revoke_a_logon_key() {
        if let Err(e) = check_available() {
            eprintln!("skipped: {e}");
            return;
        }
        let desc = unique_description();
        let payload = [0x5au8; 64];
        let serial = match add_logon_key(&desc, &payload, Keyring::Thread) {
            Ok(s) => s,
            Err(e) if e.is_refused() => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert!(serial > 0);
        let line = proc_keys_line(serial).expect("key listed in /proc/keys");
        assert!(line.contains(" logon "), "{line}");
        assert!(line.contains(&desc), "{line}");

        // A logon key's payload cannot be read back.
        let mut buf = [0u8; 64];
        assert_eq!(keyctl_read(serial, &mut buf), Err(Errno(libc::EOPNOTSUPP)));

        revoke(serial).unwrap();
        unlink(serial, Keyring::Thread).unwrap();
        // Unlinked and revoked: the key is garbage-collected shortly.
        let deadline = Instant::now() + Duration::from_secs(5);
        while proc_keys_line(serial).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(proc_keys_line(serial), None);
        assert!(unlink(serial, Keyring::Thread).is_err());
    }

    #[test]
    fn guard_drops_the_key() {
        if check_available().is_err() {
            eprintln!("skipped: keyring unavailable");
            return;
        }
        let desc = unique_description();
        let key = match LogonKey::add_to_thread(&desc, &[1u8; 32]) {
            Ok(k) => k,
            Err(e) if e.is_refused() => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let serial = key.serial();
        assert_eq!(key.dm_key_string(32), format!(":32:logon:{desc}"));
        assert!(proc_keys_line(serial).is_some());
        drop(key);
        let deadline = Instant::now() + Duration::from_secs(5);
        while proc_keys_line(serial).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(proc_keys_line(serial), None);

        let key = LogonKey::add_to_thread(&desc, &[2u8; 32]).unwrap();
        let serial = key.serial();
        key.drop_key().unwrap();
        assert!(revoke(serial).is_err());
    }
}
