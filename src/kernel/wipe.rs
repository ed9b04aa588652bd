//! A global allocator wrapper that zeroes memory when it is freed, once switched on.
//!
//! The rootless verbs (`ls`, `cat`, `run`) read the vault's filesystem through `ext4-view`,
//! whose block cache, directory buffers and file-read buffers are plain `Vec<u8>`s holding
//! decrypted blocks; they are freed without being wiped, so the plaintext would stay in the
//! heap's free lists, to be handed out again by a later allocation. Our own buffers are
//! [`luks2::SecretBuf`]s (wiped on drop) but a library's cannot be. [`WipeOnFree`] closes the
//! gap from below: once [`WipeOnFree::wipe_freed_memory`] is called, every `dealloc` first
//! zeroes the whole block, and `realloc` never lets the allocator move a block and free the
//! old one unwiped (it allocates, copies, wipes and frees itself).
//!
//! The zeroing is `explicit_bzero(3)`, which the compiler may not remove as a dead store (a
//! plain `memset` before `free` may be), at `memset` speed. The switch is off by default: the
//! other verbs free large buffers that hold no secret (Argon2's memory is wiped by `luks2`
//! itself) and need not pay for it.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Zeroes `len` bytes at `ptr` with `explicit_bzero`, a store the optimizer keeps.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub unsafe fn wipe(ptr: *mut u8, len: usize) {
    if len == 0 || ptr.is_null() {
        return;
    }
    // SAFETY: the caller guarantees `[ptr, ptr + len)` is writable; explicit_bzero writes
    // exactly those bytes and keeps no reference to them.
    unsafe { libc::explicit_bzero(ptr.cast(), len) }
}

/// The allocator `A`, with freed memory zeroed while switched on (see the module doc).
pub struct WipeOnFree<A> {
    inner: A,
    on: AtomicBool,
    wiped: AtomicU64,
}

impl<A> WipeOnFree<A> {
    /// `inner` with wiping off.
    pub const fn new(inner: A) -> Self {
        WipeOnFree {
            inner,
            on: AtomicBool::new(false),
            wiped: AtomicU64::new(0),
        }
    }

    /// From now on, zero every block before it is freed (for the rest of the process).
    pub fn wipe_freed_memory(&self) {
        self.on.store(true, Ordering::SeqCst);
    }

    /// Whether freed memory is zeroed.
    pub fn wiping(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Bytes zeroed on free so far.
    pub fn wiped_bytes(&self) -> u64 {
        self.wiped.load(Ordering::Relaxed)
    }

    /// Zeroes a block about to be freed, if switched on.
    ///
    /// # Safety
    /// `ptr` must be a live block of `size` bytes.
    unsafe fn before_free(&self, ptr: *mut u8, size: usize) {
        if self.wiping() {
            // SAFETY: the block is live and `size` bytes long (caller's guarantee).
            unsafe { wipe(ptr, size) };
            self.wiped.fetch_add(size as u64, Ordering::Relaxed);
        }
    }
}

// SAFETY: allocation is forwarded to `A` unchanged. `dealloc` only writes zeros into the block
// it is about to free (which the caller owns) before forwarding. `realloc`, when wiping, does
// what the `GlobalAlloc` contract describes realloc as: a new block from `A` with the same
// alignment and `new_size`, the first `min(old, new)` bytes copied, the old block freed; on
// failure it returns null and leaves the old block untouched, as realloc must.
unsafe impl<A: GlobalAlloc> GlobalAlloc for WipeOnFree<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (non-zero size).
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes from this allocator, which
        // the caller gives up; it is wiped, then freed by `A`, which made it.
        unsafe {
            self.before_free(ptr, layout.size());
            self.inner.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.wiping() {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, does not
        // overflow isize, so this layout is valid (the contract of `realloc`).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_size` is non-zero (realloc's contract).
        let new = unsafe { self.inner.alloc(new_layout) };
        if new.is_null() {
            return new;
        }
        // SAFETY: `ptr` is live for `layout.size()` bytes, `new` for `new_size`, they are
        // distinct blocks; then the old block is wiped and freed as in `dealloc`.
        unsafe {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::cell::RefCell;

    thread_local! {
        /// For each block [`Inspect`] freed on this thread: its size and whether every byte
        /// was zero at that moment.
        static FREED: RefCell<Vec<(usize, bool)>> = const { RefCell::new(Vec::new()) };
    }

    /// The system allocator, looking at each block just before freeing it (while it is still
    /// allocated, so reading it is sound).
    struct Inspect;

    // SAFETY: forwards to `System`; `dealloc` only reads the block it is about to free.
    unsafe impl GlobalAlloc for Inspect {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the block is live for `layout.size()` bytes until the call below.
            let zero = unsafe { std::slice::from_raw_parts(ptr, layout.size()) }
                .iter()
                .all(|b| *b == 0);
            FREED.with(|f| f.borrow_mut().push((layout.size(), zero)));
            // SAFETY: forwarded.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    fn freed() -> Vec<(usize, bool)> {
        FREED.with(|f| std::mem::take(&mut *f.borrow_mut()))
    }

    /// A block of `size` bytes from `a`, filled with 0xa5.
    fn filled(a: &WipeOnFree<Inspect>, size: usize) -> (*mut u8, Layout) {
        let layout = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: non-zero size; the block is then written within its bounds.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 0xa5, size);
            (p, layout)
        }
    }

    #[test]
    fn wipe_zeroes_exactly_the_range() {
        let mut v = vec![0x5au8; 100];
        // SAFETY: bytes 10..60 of a live vector.
        unsafe { wipe(v.as_mut_ptr().add(10), 50) };
        assert!(v[..10].iter().all(|b| *b == 0x5a));
        assert!(v[10..60].iter().all(|b| *b == 0));
        assert!(v[60..].iter().all(|b| *b == 0x5a));
        // SAFETY: an empty range and a null pointer are no-ops.
        unsafe { wipe(std::ptr::null_mut(), 10) };
    }

    #[test]
    fn freed_blocks_are_zero_once_switched_on() {
        let a = WipeOnFree::new(Inspect);
        freed();
        // Off: the block is freed as it is.
        let (p, l) = filled(&a, 4096);
        // SAFETY: a live block of this layout from `a`.
        unsafe { a.dealloc(p, l) };
        assert_eq!(freed(), vec![(4096, false)]);
        assert!(!a.wiping());
        a.wipe_freed_memory();
        assert!(a.wiping());
        let (p, l) = filled(&a, 4096);
        // SAFETY: as above.
        unsafe { a.dealloc(p, l) };
        assert_eq!(freed(), vec![(4096, true)]);
        assert_eq!(a.wiped_bytes(), 4096);
    }

    #[test]
    fn realloc_wipes_the_old_block_and_keeps_the_contents() {
        let a = WipeOnFree::new(Inspect);
        a.wipe_freed_memory();
        freed();
        for (from, to) in [(64usize, 100_000usize), (100_000, 64), (4096, 4096)] {
            let (p, l) = filled(&a, from);
            // SAFETY: a live block of layout `l` from `a`; the new block is read within
            // `min(from, to)` bytes, then freed with its own layout.
            unsafe {
                let q = a.realloc(p, l, to);
                assert!(!q.is_null());
                let kept = std::slice::from_raw_parts(q, from.min(to));
                assert!(kept.iter().all(|b| *b == 0xa5), "{from} -> {to}");
                assert_eq!(freed(), vec![(from, true)], "{from} -> {to}");
                a.dealloc(q, Layout::from_size_align(to, 16).unwrap());
            }
            freed();
        }
    }
}
