//! The process's global allocator.

/// The rootless verbs switch on the zeroing of freed memory (see `kernel::wipe`).
///
/// `kernel::hugepages::HugePageAlloc` (transparent huge pages for the KDF memory) is not the
/// inner allocator: on the project VM huge pages come from memory the host has reclaimed, and
/// faulting it back cost 3-4 s of system time per 1 GiB Argon2 unlock, more than the TLB misses
/// they save (measurements in docs/performance.md). On machines where huge pages are warm, wrap
/// `kernel::hugepages::HugePageAlloc` here instead of `System`.
#[global_allocator]
pub static ALLOC: crate::kernel::wipe::WipeOnFree<std::alloc::System> =
    crate::kernel::wipe::WipeOnFree::new(std::alloc::System);
