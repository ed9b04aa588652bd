//! A global allocator that asks for transparent huge pages on very large allocations.
//!
//! Argon2 fills its whole memory (1 GiB for cryptsetup's default) once per pass. In 4 KiB pages
//! that is 262 144 page faults, each zeroing a page, and a TLB miss on almost every random
//! reference; measured here (2-core AMD EPYC VM, argon2id 1 GiB t=4 p=2) the faults cost about
//! 0.7 s of system time and the TLB misses about 20 % of the user time. Most kernels are
//! configured with `transparent_hugepage=madvise`, so huge pages come only to ranges marked
//! `MADV_HUGEPAGE`.
//!
//! [`HugePageAlloc`] is the system allocator, except that an allocation of at least
//! [`THRESHOLD`] bytes gets `madvise(MADV_HUGEPAGE)` on the 2 MiB-aligned range inside it before
//! it is returned (before its pages are touched). The advice changes neither the contents nor
//! the ownership of the memory; if the kernel refuses it (THP disabled, an old kernel) the
//! allocation is used in small pages as before.

//!
//! **Not registered** as the global allocator at present (see `main.rs`): on the project VM
//! (KVM guest whose free memory is reported to the host) huge pages are always memory the host
//! has reclaimed, and faulting 1 GiB of it back cost 3–4 s of system time per Argon2 unlock,
//! against ~1 s of user time saved on TLB misses; with 4 KiB pages the guest reuses warm pages.
//! Measured with the `luks2-accel` Argon2; see docs/performance.md.
#![cfg_attr(not(test), allow(dead_code))]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations from this size on are advised to use huge pages: only KDF memory is that big.
pub const THRESHOLD: usize = 32 << 20;
/// The x86-64 (and arm64 4K-granule) PMD huge page size.
const HUGE: usize = 2 << 20;

/// The system allocator with `MADV_HUGEPAGE` on allocations of [`THRESHOLD`] bytes or more.
pub struct HugePageAlloc;

/// Advises huge pages for the 2 MiB-aligned part of `[ptr, ptr + size)`.
fn advise(ptr: *mut u8, size: usize) {
    if ptr.is_null() || size < THRESHOLD {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize).saturating_add(size) / HUGE * HUGE;
    if end > start {
        // SAFETY: `[start, end)` lies inside an allocation this allocator just made and owns;
        // MADV_HUGEPAGE only changes how the kernel backs the range (contents are preserved).
        // The result is ignored on purpose: without huge pages the memory works as before.
        let _ =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and returns
// its result; `advise` only adds a hint on memory `System` returned.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (non-zero size).
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (all our allocations do) with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        advise(p, new_size);
        p
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::HugePageAlloc;
    use std::alloc::{GlobalAlloc, Layout};

    /// A large zeroed allocation is usable and zeroed (the advice does not disturb contents),
    /// and on a kernel with THP in `madvise` mode its range is marked for huge pages.
    #[test]
    fn large_allocation_works_and_is_advised() {
        let layout = Layout::from_size_align(64 << 20, 16).unwrap();
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { HugePageAlloc.alloc_zeroed(layout) };
        assert!(!p.is_null());
        // SAFETY: `p` points to `layout.size()` zeroed bytes owned by this test until freed.
        let v = unsafe { std::slice::from_raw_parts_mut(p, layout.size()) };
        let flagged = check(v);
        // SAFETY: allocated above with this layout, not used afterwards.
        unsafe { HugePageAlloc.dealloc(p, layout) };
        assert!(flagged, "no MADV_HUGEPAGE on the allocation");
    }

    /// Checks contents and returns whether the range has the `hg` flag (true if THP is off).
    fn check(v: &mut [u8]) -> bool {
        assert!(v.iter().step_by(4096).all(|&b| b == 0));
        v[12345] = 7;
        let addr = v.as_ptr() as usize;
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if !thp.contains("[madvise]") && !thp.contains("[always]") {
            eprintln!("skipped the smaps check: THP is off");
            return true;
        }
        // The mapping containing the vector has the `hg` (MADV_HUGEPAGE) flag.
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut in_range = false;
        let mut flagged = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, hi)) = range.split_once('-') {
                    if let (Ok(lo), Ok(hi)) =
                        (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                    {
                        in_range = lo <= addr + (4 << 20) && addr + (4 << 20) < hi;
                        continue;
                    }
                }
            }
            if in_range && line.starts_with("VmFlags:") {
                flagged = line.split_whitespace().any(|f| f == "hg");
            }
        }
        assert_eq!(v[12345], 7);
        flagged
    }
}
