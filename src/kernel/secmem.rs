//! Keeping key material out of core dumps, out of reach of ptrace, and out of swap.
//!
//! The library cannot lock its buffers (it is pure and has no `unsafe`), so the binary
//! protects the whole process before it reads a passphrase, for the verbs that handle secrets
//! (`open`, `decrypt`, `dump --dump-volume-key`):
//!
//! 1. `prctl(PR_SET_DUMPABLE, 0)`: no core file, and no ptrace or `/proc/PID/mem` access by
//!    processes of the same user (only by a process with `CAP_SYS_PTRACE`). It stays in force
//!    until the process exits or execs another program.
//! 2. `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`: every page, present and future, is
//!    locked once touched, so the secret buffers the library allocates later are never
//!    swapped. `MCL_ONFAULT` (Linux 4.4) locks pages as they are touched rather than faulting
//!    in whole mappings (thread stacks, allocator arenas) at once.
//!
//! Why the lock is conditional: with `MCL_FUTURE`, once the locked total would pass
//! `RLIMIT_MEMLOCK`, new mappings fail with `ENOMEM`, so allocations fail: an Argon2 keyslot
//! asking for 1 GiB would then be refused under the usual 8 MiB limit, and any other failed
//! allocation aborts the process. So memory is locked only when the limit allows what this
//! run may need: the process's current size plus the largest Argon2 memory it will accept
//! (`--max-kdf-memory` or its default) plus room for the largest keyslot area buffers. A
//! process with `CAP_IPC_LOCK` (root) has no limit. Otherwise it says so in one warning line
//! and goes on unlocked, as cryptsetup does when it cannot lock memory.

use std::io;

/// `CAP_IPC_LOCK` (linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;
/// Headroom for buffers besides the Argon2 memory: two keyslot areas of the largest
/// keyslots area (128 MiB each: encrypted material and its decryption) plus 64 MiB.
const HEADROOM_KIB: u64 = (2 * 128 + 64) * 1024;

/// What happened to the memory lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// All memory is locked (present and future pages).
    Locked {
        /// Whether `MCL_ONFAULT` was accepted (else future mappings are faulted in whole).
        on_fault: bool,
    },
    /// Not attempted: `RLIMIT_MEMLOCK` is below what this run may need.
    LimitTooLow {
        /// The soft limit, in KiB.
        limit_kib: u64,
        /// What this run may need, in KiB.
        needed_kib: u64,
    },
    /// `mlockall` failed.
    Failed(io::ErrorKind, String),
}

/// What [`protect_process`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// Whether the process is now non-dumpable.
    pub non_dumpable: bool,
    /// The memory lock.
    pub lock: LockOutcome,
}

impl Protection {
    /// One warning line for the user, if something could not be done.
    pub fn warning(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.non_dumpable {
            parts.push("cannot make the process non-dumpable".to_string());
        }
        match &self.lock {
            LockOutcome::Locked { .. } => {}
            LockOutcome::LimitTooLow {
                limit_kib,
                needed_kib,
            } => parts.push(format!(
                "memory is not locked: RLIMIT_MEMLOCK is {limit_kib} KiB, less than the \
                 {needed_kib} KiB this run could use (its address space plus the KDF memory \
                 limit, --max-kdf-memory), so key material could be swapped out (raise \
                 `ulimit -l`, run as root, or lower --max-kdf-memory)"
            )),
            LockOutcome::Failed(_, e) => parts.push(format!(
                "memory is not locked ({e}), so key material could be swapped out"
            )),
        }
        (!parts.is_empty()).then(|| format!("tazpod: warning: {}", parts.join("; ")))
    }
}

/// A `/proc/self/status` field in KiB (`VmSize:   1234 kB`), or a hex capability mask.
fn status_field(name: &str) -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().trim_end_matches(" kB").trim().to_string())
}

/// Whether the effective capability set holds `CAP_IPC_LOCK` (no memlock limit then).
fn has_ipc_lock() -> bool {
    status_field("CapEff")
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// The soft `RLIMIT_MEMLOCK` in KiB, `None` when unlimited.
fn memlock_limit_kib() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return Some(0);
    }
    if r.rlim_cur == libc::RLIM_INFINITY {
        None
    } else {
        Some(r.rlim_cur / 1024)
    }
}

/// What this run may lock, in KiB: the current address space, the largest Argon2 memory
/// accepted, and headroom.
pub fn needed_kib(max_kdf_memory_kib: u64) -> u64 {
    let vm = status_field("VmSize")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(64 * 1024);
    vm.saturating_add(max_kdf_memory_kib)
        .saturating_add(HEADROOM_KIB)
}

/// Makes the process non-dumpable and locks its memory when the limit allows it (see the
/// module documentation). Never fails: what could not be done is reported in the result.
pub fn protect_process(max_kdf_memory_kib: u64) -> Protection {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument and touches no memory of ours.
    let non_dumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0;
    let needed = needed_kib(max_kdf_memory_kib);
    let lock = match (has_ipc_lock(), memlock_limit_kib()) {
        (false, Some(limit)) if limit < needed => LockOutcome::LimitTooLow {
            limit_kib: limit,
            needed_kib: needed,
        },
        _ => lock_all(),
    };
    Protection { non_dumpable, lock }
}

/// `mlockall` of present and future pages, on fault when the kernel supports it.
fn lock_all() -> LockOutcome {
    let flags = libc::MCL_CURRENT | libc::MCL_FUTURE;
    // SAFETY: mlockall takes flags only.
    if unsafe { libc::mlockall(flags | libc::MCL_ONFAULT) } == 0 {
        return LockOutcome::Locked { on_fault: true };
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        // A kernel before 4.4 does not know MCL_ONFAULT.
        // SAFETY: as above.
        if unsafe { libc::mlockall(flags) } == 0 {
            return LockOutcome::Locked { on_fault: false };
        }
        let e = io::Error::last_os_error();
        return LockOutcome::Failed(e.kind(), e.to_string());
    }
    LockOutcome::Failed(e.kind(), e.to_string())
}

/// Free plus buffer memory from `sysinfo(2)`, in bytes: what is available when there is no
/// `/proc` to read `MemAvailable` from (an empty root). `None` if the call fails.
pub fn sysinfo_free_bytes() -> Option<u64> {
    // SAFETY: sysinfo is plain old data; zeroed is valid and the call fills it.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `si` is a valid, writable sysinfo for the duration of the call.
    if unsafe { libc::sysinfo(&mut si) } != 0 {
        return None;
    }
    let unit = u64::from(si.mem_unit.max(1));
    let free = si.freeram.saturating_add(si.bufferram);
    Some(free.saturating_mul(unit))
}

/// Whether the process is currently dumpable (`PR_GET_DUMPABLE`).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no pointer.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}

/// `VmLck` of this process in KiB (locked memory), for tests and `--verbose`.
pub fn locked_kib() -> Option<u64> {
    status_field("VmLck").and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_covers_kdf_memory_and_headroom() {
        let n = needed_kib(1 << 20);
        assert!(n >= (1 << 20) + HEADROOM_KIB, "{n}");
    }

    #[test]
    fn warning_names_the_limit() {
        let p = Protection {
            non_dumpable: true,
            lock: LockOutcome::LimitTooLow {
                limit_kib: 8192,
                needed_kib: 5_000_000,
            },
        };
        let w = p.warning().unwrap();
        assert!(
            w.starts_with("tazpod: warning: memory is not locked"),
            "{w}"
        );
        assert!(w.contains("8192 KiB") && w.contains("ulimit -l"), "{w}");
        assert!(!w.contains('\n'));
        let ok = Protection {
            non_dumpable: true,
            lock: LockOutcome::Locked { on_fault: true },
        };
        assert_eq!(ok.warning(), None);
    }
}
