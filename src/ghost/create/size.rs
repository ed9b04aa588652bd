//! A new vault's sizes, and sizes as people read them (shared by the checks and their errors).

/// Size of a new vault (TazPod's).
pub const DEFAULT_SIZE: u64 = 512 << 20;
/// The smallest filesystem a new vault gets (after the LUKS2 header).
pub const MIN_FS_SIZE: u64 = 1 << 20;

/// `n` bytes for people: whole GiB, MiB or KiB when exact, else bytes.
pub fn human_size(n: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}
