//! Argon2i and Argon2id (version 0x13, RFC 9106) with an AVX2 compression function.
//!
//! The layout follows the reference implementation's optimised code (libargon2 `opt.c`): the
//! previous block stays in 32 `ymm` registers (spilled to the stack by the compiler where
//! needed) from one block to the next, the reference block and, from the second pass on, the
//! block being overwritten are XORed in while they are loaded, and the result is stored once;
//! no 1 KiB block is copied. Lanes run on scoped threads, one slice (the RFC's synchronisation
//! point) at a time, so no worker thread outlives a call.
//!
//! The memory is obtained zeroed from the allocator (`alloc_zeroed`, which for large sizes is
//! fresh, untouched pages), so its first touch and page faults happen in the lane threads
//! during the first pass instead of in a serial fill; it is wiped (in parallel) and freed when
//! the hash is done, also on error paths.
//!
//! Without AVX2 (or off x86-64) the same code runs with a portable compression function;
//! [`accelerated`] tells callers whether the AVX2 path is in use, so they can prefer another
//! implementation otherwise.

use blake2::{
    digest::{
        block_api::{UpdateCore, VariableOutputCore},
        block_buffer::LazyBuffer,
        Digest, Output,
    },
    Blake2b512, Blake2bVarCore,
};
use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;
use zeroize::{Zeroize, Zeroizing};

/// 64-bit words in a 1 KiB block.
const WORDS: usize = 128;
/// Block size in bytes.
const BLOCK_BYTES: usize = 1024;
/// Synchronisation points (slices) per pass.
const SLICES: u32 = 4;
/// Pseudo-random reference indices per address block (data-independent addressing).
const ADDRESSES_PER_BLOCK: u32 = 128;
/// Argon2 version 0x13.
const VERSION: u32 = 0x13;
/// Most lanes the algorithm allows.
const MAX_LANES: u32 = 0x00FF_FFFF;
/// Most threads used, whatever the lane count.
const MAX_THREADS: usize = 64;

/// Argon2 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Argon2i: data-independent addressing throughout.
    I,
    /// Argon2id: data-independent in the first half of the first pass, then data-dependent.
    Id,
}

impl Variant {
    /// The type number `y` of RFC 9106.
    fn number(self) -> u32 {
        match self {
            Variant::I => 1,
            Variant::Id => 2,
        }
    }
}

/// Which compression function runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The best this CPU supports ([`accelerated`]).
    Auto,
    /// The portable one.
    Portable,
    /// AVX2; refused with [`Error::Unsupported`] on a CPU without it.
    Avx2,
}

/// Argon2 cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// i or id.
    pub variant: Variant,
    /// Passes over memory (t), at least 1.
    pub time: u32,
    /// Memory in KiB (m), at least 8 per lane.
    pub memory_kib: u32,
    /// Lanes (p), 1 to 2^24 − 1.
    pub lanes: u32,
}

/// Why a hash was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is outside what the algorithm accepts.
    InvalidParameter {
        /// `"time"`, `"lanes"`, `"memory"`, `"salt"`, `"output"`, `"password"`, …
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The memory could not be allocated.
    OutOfMemory,
    /// The requested backend is not available on this CPU.
    Unsupported,
    /// A lane thread ended abnormally.
    ThreadFailed,
    /// An internal consistency check failed (a reference block that another thread may be
    /// writing, or the block being written); the hash was abandoned. A bug in this crate.
    Internal,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidParameter { name, reason } => {
                write!(f, "invalid argon2 parameter {name}: {reason}")
            }
            Error::OutOfMemory => write!(f, "cannot allocate the argon2 memory"),
            Error::Unsupported => write!(f, "this CPU lacks the requested argon2 backend"),
            Error::ThreadFailed => write!(f, "an argon2 lane thread failed"),
            Error::Internal => write!(f, "internal error in argon2 (bad reference block)"),
        }
    }
}

impl std::error::Error for Error {}

fn invalid(name: &'static str, reason: &'static str) -> Error {
    Error::InvalidParameter { name, reason }
}

/// Whether [`hash`] uses the AVX2 compression function on this CPU.
pub fn accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Argon2 (version 0x13) of `password` and `salt` into `out`, with the best backend.
pub fn hash(params: &Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), Error> {
    hash_with(params, Backend::Auto, password, salt, &[], &[], out)
}

/// Argon2 (version 0x13) with a secret `secret` (K) and associated data `ad` (X), on the given
/// backend. `out.len()` is the tag length T (at least 4 bytes).
pub fn hash_with(
    params: &Params,
    backend: Backend,
    password: &[u8],
    salt: &[u8],
    secret: &[u8],
    ad: &[u8],
    out: &mut [u8],
) -> Result<(), Error> {
    let use_avx2 = match backend {
        Backend::Auto => accelerated(),
        Backend::Portable => false,
        Backend::Avx2 => {
            if !accelerated() {
                return Err(Error::Unsupported);
            }
            true
        }
    };
    let inst = Instance::new(params, salt, out.len())?;
    let len32 = |b: &[u8], name| u32::try_from(b.len()).map_err(|_| invalid(name, "too long"));
    let tag_len = len32(out, "output")?;
    let lens = [
        len32(password, "password")?,
        len32(salt, "salt")?,
        len32(secret, "secret")?,
        len32(ad, "associated data")?,
    ];

    // The memory first, so that no early return leaves H0 behind (it is wiped on drop anyway).
    let mut mem = Memory::zeroed(inst.total_blocks())?;

    // H0, written straight into its buffer (H0 ‖ j ‖ lane).
    let mut h = Blake2b512::new();
    for word in [
        params.lanes,
        tag_len,
        params.memory_kib,
        params.time,
        VERSION,
        params.variant.number(),
    ] {
        h.update(word.to_le_bytes());
    }
    for (len, data) in lens.iter().zip([password, salt, secret, ad]) {
        h.update(len.to_le_bytes());
        h.update(data);
    }
    let mut h0 = Zeroizing::new([0u8; 72]);
    h.finalize_into(as_output(h0.get_mut(..64).unwrap_or_default())?);

    let threads = thread_count(inst.lanes);
    let r = (|| {
        // The first two blocks of each lane.
        let mut bytes = Zeroizing::new([0u8; BLOCK_BYTES]);
        for lane in 0..inst.lanes {
            for j in 0..2u32 {
                if let Some(tail) = h0.get_mut(64..) {
                    tail.copy_from_slice(&[j.to_le_bytes(), lane.to_le_bytes()].concat());
                }
                blake2b_long(&[&*h0], &mut *bytes)?;
                let idx = inst.index(lane, j);
                let block = mem.block_mut(idx).ok_or(Error::OutOfMemory)?;
                block.load_bytes(&bytes);
            }
        }
        drop(bytes);
        for pass in 0..inst.passes {
            for slice in 0..SLICES {
                run_slice(&mem, &inst, pass, slice, threads, use_avx2)?;
            }
        }
        // The final block: XOR of each lane's last block.
        let mut last = Block::ZERO;
        for lane in 0..inst.lanes {
            let b = mem
                .block_mut(inst.index(lane, inst.lane_len - 1))
                .ok_or(Error::OutOfMemory)?;
            last.xor_with(b);
        }
        let bytes = Zeroizing::new(last.le_bytes());
        last.0.zeroize();
        blake2b_long(&[&*bytes], out)
    })();
    drop(h0);
    mem.wipe(threads);
    drop(mem);
    r
}

/// Threads for `lanes` lanes: one per lane, at most the CPU count (and [`MAX_THREADS`]).
fn thread_count(lanes: u32) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    usize::try_from(lanes)
        .unwrap_or(MAX_THREADS)
        .min(cpus)
        .clamp(1, MAX_THREADS)
}

/// The validated shape of the memory.
#[derive(Debug, Clone, Copy)]
struct Instance {
    lanes: u32,
    /// Blocks per lane (q = m' / p).
    lane_len: u32,
    /// Blocks per segment (q / 4).
    seg_len: u32,
    /// m' = 4 p ⌊m / 4p⌋.
    mem_blocks: u32,
    passes: u32,
    variant: Variant,
}

impl Instance {
    fn new(params: &Params, salt: &[u8], out_len: usize) -> Result<Instance, Error> {
        if params.time == 0 {
            return Err(invalid("time", "must be at least 1"));
        }
        if params.lanes == 0 || params.lanes > MAX_LANES {
            return Err(invalid("lanes", "must be 1 to 16777215"));
        }
        if u64::from(params.memory_kib) < 8 * u64::from(params.lanes) {
            return Err(invalid("memory", "must be at least 8 KiB per lane"));
        }
        if salt.len() < 8 {
            return Err(invalid("salt", "must be at least 8 bytes"));
        }
        if out_len < 4 {
            return Err(invalid("output", "must be at least 4 bytes"));
        }
        let seg_len = params.memory_kib / (SLICES * params.lanes);
        let lane_len = seg_len * SLICES;
        Ok(Instance {
            lanes: params.lanes,
            lane_len,
            seg_len,
            mem_blocks: lane_len * params.lanes,
            passes: params.time,
            variant: params.variant,
        })
    }

    fn total_blocks(&self) -> usize {
        usize::try_from(self.mem_blocks).unwrap_or(usize::MAX)
    }

    /// Index in memory of block `col` of lane `lane`.
    fn index(&self, lane: u32, col: u32) -> usize {
        let i = u64::from(lane) * u64::from(self.lane_len) + u64::from(col);
        usize::try_from(i).unwrap_or(usize::MAX)
    }

    fn data_independent(&self, pass: u32, slice: u32) -> bool {
        match self.variant {
            Variant::I => true,
            Variant::Id => pass == 0 && slice < SLICES / 2,
        }
    }

    /// The reference block (lane, column) for block `i` of the segment (pass, slice, lane),
    /// from the pseudo-random word `rand` (RFC 9106 section 3.4.1.2).
    fn reference(&self, pass: u32, slice: u32, lane: u32, i: u32, rand: u64) -> (u32, u32) {
        let ref_lane = if pass == 0 && slice == 0 {
            lane
        } else {
            let l = (rand >> 32) % u64::from(self.lanes);
            u32::try_from(l).unwrap_or(0)
        };
        let same = ref_lane == lane;
        let (seg, q, i64_) = (
            u64::from(self.seg_len),
            u64::from(self.lane_len),
            u64::from(i),
        );
        let at_start = u64::from(i == 0);
        let area = if pass == 0 {
            if slice == 0 {
                i64_.wrapping_sub(1)
            } else if same {
                u64::from(slice) * seg + i64_ - 1
            } else {
                u64::from(slice) * seg - at_start
            }
        } else if same {
            q - seg + i64_ - 1
        } else {
            q - seg - at_start
        };
        let x = rand & 0xFFFF_FFFF;
        let y = (x * x) >> 32;
        let rel = area
            .wrapping_sub(1)
            .wrapping_sub(area.wrapping_mul(y) >> 32);
        let start = if pass == 0 || slice == SLICES - 1 {
            0
        } else {
            u64::from(slice + 1) * seg
        };
        let col = start.wrapping_add(rel) % q.max(1);
        (ref_lane, u32::try_from(col).unwrap_or(0))
    }

    /// Checks the reference (`ref_lane`, `ref_col`) of block `i` of the segment
    /// (pass, slice, lane) against what `run_slice`'s soundness relies on: it is in the
    /// memory, not in a segment another thread is writing now (another lane's current
    /// segment, or in the first pass anything of another lane from the current segment on),
    /// and not the block being written nor its predecessor. An arithmetic mistake in
    /// [`Instance::reference`] thus becomes [`Error::Internal`] instead of a data race.
    fn check_reference(
        &self,
        pass: u32,
        slice: u32,
        lane: u32,
        i: u32,
        ref_lane: u32,
        ref_col: u32,
    ) -> Result<(), Error> {
        let seg = u64::from(self.seg_len.max(1));
        let (slice, c) = (u64::from(slice), u64::from(ref_col));
        let seg_start = slice * seg;
        let bad = if ref_lane != lane {
            c / seg == slice || (pass == 0 && c >= seg_start)
        } else {
            let col = seg_start + u64::from(i);
            let prev = if col == 0 {
                u64::from(self.lane_len).wrapping_sub(1)
            } else {
                col - 1
            };
            c == col || c == prev
        };
        if bad || ref_lane >= self.lanes || ref_col >= self.lane_len {
            Err(Error::Internal)
        } else {
            Ok(())
        }
    }
}

/// One 1 KiB block.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u64; WORDS]);

impl Block {
    const ZERO: Block = Block([0; WORDS]);

    fn load_bytes(&mut self, bytes: &[u8; BLOCK_BYTES]) {
        for (w, c) in self.0.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            *w = u64::from_le_bytes(b);
        }
    }

    fn le_bytes(&self) -> [u8; BLOCK_BYTES] {
        let mut out = [0u8; BLOCK_BYTES];
        for (c, w) in out.chunks_exact_mut(8).zip(self.0.iter()) {
            c.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    fn xor_with(&mut self, other: &Block) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a ^= b;
        }
    }
}

/// The Argon2 memory: zeroed on allocation, wiped by [`Memory::wipe`] (and on drop).
///
/// It is allocated with byte alignment 16 (so that the system allocator can serve it with
/// `calloc`, i.e. fresh zero pages that are not touched until the lanes write them; a larger
/// alignment makes Rust's system allocator `memset` the whole memory on one thread) and
/// 64 bytes more, and the blocks start at the first 64-byte (cache line) boundary in it.
struct Memory {
    raw: NonNull<u8>,
    raw_layout: Layout,
    ptr: NonNull<Block>,
    len: usize,
    /// Set by a complete [`Memory::wipe`]: `drop` need not wipe again.
    wiped: bool,
}

// SAFETY: `Memory` owns its allocation like a `Box<[Block]>`; blocks are plain integers. Shared
// use across the lane threads goes through raw pointers under the rules in `run_slice`.
unsafe impl Send for Memory {}
// SAFETY: as above; `&Memory` only hands out raw pointers (`block_ptr`), whose use is unsafe.
unsafe impl Sync for Memory {}

/// Cache line size: blocks start on a multiple of it.
const LINE: usize = 64;

impl Memory {
    fn zeroed(len: usize) -> Result<Memory, Error> {
        if len == 0 {
            return Err(invalid("memory", "must be at least 8 KiB per lane"));
        }
        let size = len
            .checked_mul(BLOCK_BYTES)
            .and_then(|n| n.checked_add(LINE))
            .ok_or(Error::OutOfMemory)?;
        let raw_layout = Layout::from_size_align(size, 16).map_err(|_| Error::OutOfMemory)?;
        // SAFETY: the layout has a non-zero size.
        let raw = NonNull::new(unsafe { std::alloc::alloc_zeroed(raw_layout) })
            .ok_or(Error::OutOfMemory)?;
        let offset = raw.as_ptr().align_offset(LINE);
        if offset >= LINE {
            // SAFETY: `raw` was just allocated with `raw_layout`.
            unsafe { std::alloc::dealloc(raw.as_ptr(), raw_layout) };
            return Err(Error::OutOfMemory);
        }
        // SAFETY: `offset < LINE`, so the pointer and the `len` blocks after it lie inside the
        // allocation of `len · BLOCK_BYTES + LINE` bytes; it is 64-byte aligned as `Block`
        // needs, and the zeroed bytes are valid blocks.
        let first = unsafe { raw.as_ptr().add(offset) };
        let ptr = NonNull::new(first.cast::<Block>()).ok_or(Error::OutOfMemory)?;
        Ok(Memory {
            raw,
            raw_layout,
            ptr,
            len,
            wiped: false,
        })
    }

    /// A pointer to block `i`, if it is in the memory.
    fn block_ptr(&self, i: usize) -> Option<*mut Block> {
        if i < self.len {
            // SAFETY: `i < len`, so the offset stays inside the allocation of `len` blocks.
            Some(unsafe { self.ptr.as_ptr().add(i) })
        } else {
            None
        }
    }

    /// Block `i`, exclusively (no lane thread runs while `&mut self` is held).
    fn block_mut(&mut self, i: usize) -> Option<&mut Block> {
        let p = self.block_ptr(i)?;
        // SAFETY: `p` is in bounds and aligned, the block is initialised (zeroed at
        // allocation), and `&mut self` guarantees no other access to the memory meanwhile.
        Some(unsafe { &mut *p })
    }

    /// The whole memory as words, exclusively.
    fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: the allocation holds `len` initialised blocks of `WORDS` u64 each, aligned for
        // u64 (`Block` is `repr(C)` over `[u64; WORDS]`), and `&mut self` makes it exclusive.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.as_ptr().cast::<u64>(),
                self.len.saturating_mul(WORDS),
            )
        }
    }

    /// Zeroes every word (volatile writes), on up to `threads` threads. If a thread cannot
    /// start, the memory is left for `drop` to wipe on this thread.
    fn wipe(&mut self, threads: usize) {
        let words = self.words_mut();
        let chunk = words.len().div_ceil(threads.max(1)).max(1);
        let all_started = std::thread::scope(|s| {
            let mut parts = words.chunks_mut(chunk);
            let first = parts.next();
            let mut all = true;
            for part in parts {
                let spawned = std::thread::Builder::new().spawn_scoped(s, move || part.zeroize());
                all &= spawned.is_ok();
            }
            if let Some(f) = first {
                f.zeroize();
            }
            all
        });
        self.wiped = all_started;
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        if !self.wiped {
            self.words_mut().zeroize();
        }
        // SAFETY: `raw` was allocated by the global allocator with exactly `raw_layout`.
        unsafe { std::alloc::dealloc(self.raw.as_ptr(), self.raw_layout) };
    }
}

/// Fills the segments of `slice` in every lane, lanes spread over `threads` threads.
///
/// Soundness of the shared memory: during one slice, the segment of lane `l` (columns
/// `slice·seg .. (slice+1)·seg` of lane `l`) is written only by the thread that fills lane `l`.
/// Argon2's reference rule (RFC 9106 3.4.1.2) never picks a block in the current segment of
/// another lane, nor the block being written; so a block is never read while another thread
/// writes it. The scope's join is the synchronisation point between slices.
fn run_slice(
    mem: &Memory,
    inst: &Instance,
    pass: u32,
    slice: u32,
    threads: usize,
    avx2: bool,
) -> Result<(), Error> {
    let work = |first: u32, step: u32| -> Result<(), Error> {
        let mut lane = first;
        while lane < inst.lanes {
            fill_segment(mem, inst, pass, slice, lane, avx2)?;
            lane = lane.saturating_add(step);
        }
        Ok(())
    };
    let step = u32::try_from(threads).unwrap_or(1).max(1);
    if step == 1 || inst.lanes == 1 {
        return work(0, 1);
    }
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        let mut not_started = Vec::new();
        for k in 1..step.min(inst.lanes) {
            match std::thread::Builder::new().spawn_scoped(s, move || work(k, step)) {
                Ok(h) => handles.push(h),
                Err(_) => not_started.push(k),
            }
        }
        let mut r = work(0, step);
        for k in not_started {
            r = r.and(work(k, step));
        }
        for h in handles {
            r = r.and(h.join().unwrap_or(Err(Error::ThreadFailed)));
        }
        r
    })
}

/// The pseudo-random words of data-independent addressing for one segment.
struct Addresses {
    input: Block,
    addresses: Block,
}

impl Addresses {
    fn new(inst: &Instance, pass: u32, lane: u32, slice: u32) -> Addresses {
        let mut input = Block::ZERO;
        for (w, v) in input.0.iter_mut().zip([
            pass,
            lane,
            slice,
            inst.mem_blocks,
            inst.passes,
            inst.variant.number(),
        ]) {
            *w = u64::from(v);
        }
        Addresses {
            input,
            addresses: Block::ZERO,
        }
    }

    /// Increments the counter and computes the next 128 pseudo-random words.
    fn next(&mut self) {
        if let Some(c) = self.input.0.get_mut(6) {
            *c = c.wrapping_add(1);
        }
        let mut tmp = Block::ZERO;
        portable::fill_block(&Block::ZERO, &self.input, &mut tmp, false);
        portable::fill_block(&Block::ZERO, &tmp, &mut self.addresses, false);
    }

    fn get(&self, i: u32) -> u64 {
        let k = usize::try_from(i % ADDRESSES_PER_BLOCK).unwrap_or(0);
        self.addresses.0.get(k).copied().unwrap_or(0)
    }
}

/// Where a segment starts: first column to compute, its memory index, its predecessor's.
struct SegmentStart {
    first: u32,
    lane_start: usize,
}

fn segment_start(inst: &Instance, pass: u32, slice: u32, lane: u32) -> SegmentStart {
    SegmentStart {
        first: if pass == 0 && slice == 0 { 2 } else { 0 },
        lane_start: inst.index(lane, 0),
    }
}

/// Fills one segment with the chosen compression function.
fn fill_segment(
    mem: &Memory,
    inst: &Instance,
    pass: u32,
    slice: u32,
    lane: u32,
    avx2: bool,
) -> Result<(), Error> {
    #[cfg(target_arch = "x86_64")]
    if avx2 && accelerated() {
        // SAFETY: AVX2 was detected on this CPU just above; the memory rules are those of
        // `run_slice`, which calls this once per (lane, slice) on one thread.
        return unsafe { avx2::fill_segment(mem, inst, pass, slice, lane) };
    }
    let _ = avx2;
    portable::fill_segment(mem, inst, pass, slice, lane)
}

/// Shared by both backends: the memory index of the reference block of column `col`.
fn reference_index(
    inst: &Instance,
    addr: &mut Option<Addresses>,
    pass: u32,
    slice: u32,
    lane: u32,
    i: u32,
    prev_first_word: u64,
) -> Result<usize, Error> {
    let rand = match addr {
        Some(a) => {
            if i.is_multiple_of(ADDRESSES_PER_BLOCK) {
                a.next();
            }
            a.get(i)
        }
        None => prev_first_word,
    };
    let (ref_lane, ref_col) = inst.reference(pass, slice, lane, i, rand);
    inst.check_reference(pass, slice, lane, i, ref_lane, ref_col)?;
    Ok(inst.index(ref_lane, ref_col))
}

/// The address generator of a segment, primed as the reference code does.
fn segment_addresses(inst: &Instance, pass: u32, slice: u32, lane: u32) -> Option<Addresses> {
    if !inst.data_independent(pass, slice) {
        return None;
    }
    let mut a = Addresses::new(inst, pass, lane, slice);
    if pass == 0 && slice == 0 {
        // Column 0 and 1 exist already; the first address block is made up front.
        a.next();
    }
    Some(a)
}

mod portable {
    //! The compression function G in plain Rust.
    use super::*;

    /// fBlaMka: `x + y + 2 · lo32(x) · lo32(y)`.
    #[inline(always)]
    fn bla(x: u64, y: u64) -> u64 {
        let m = (x & 0xFFFF_FFFF).wrapping_mul(y & 0xFFFF_FFFF);
        x.wrapping_add(y).wrapping_add(m.wrapping_add(m))
    }

    #[inline(always)]
    fn gb(a: &mut u64, b: &mut u64, c: &mut u64, d: &mut u64) {
        *a = bla(*a, *b);
        *d = (*d ^ *a).rotate_right(32);
        *c = bla(*c, *d);
        *b = (*b ^ *c).rotate_right(24);
        *a = bla(*a, *b);
        *d = (*d ^ *a).rotate_right(16);
        *c = bla(*c, *d);
        *b = (*b ^ *c).rotate_right(63);
    }

    /// The BLAKE2b round P on 16 words.
    #[inline(always)]
    fn round(v: &mut [u64; 16]) {
        let [v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15] = v;
        gb(v0, v4, v8, v12);
        gb(v1, v5, v9, v13);
        gb(v2, v6, v10, v14);
        gb(v3, v7, v11, v15);
        gb(v0, v5, v10, v15);
        gb(v1, v6, v11, v12);
        gb(v2, v7, v8, v13);
        gb(v3, v4, v9, v14);
    }

    /// Index in the block of word `k` (0..16) of column `c` (0..8).
    fn column_index(c: usize, k: usize) -> usize {
        16 * (k / 2) + 2 * c + k % 2
    }

    /// The working copies of one compression, kept by the caller for a whole segment and
    /// wiped once (volatile writes, on drop) when it ends, also on error paths.
    pub(super) struct Scratch {
        r: [u64; WORDS],
        z: [u64; WORDS],
    }

    impl Scratch {
        pub(super) fn new() -> Scratch {
            Scratch {
                r: [0; WORDS],
                z: [0; WORDS],
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            self.r.zeroize();
            self.z.zeroize();
        }
    }

    /// P on the 8 rows, then on the 8 columns.
    pub(super) fn permute(z: &mut [u64; WORDS]) {
        for chunk in z.chunks_exact_mut(16) {
            if let Ok(row) = <&mut [u64; 16]>::try_from(chunk) {
                round(row);
            }
        }
        // Local (in registers as far as possible; a field of `Scratch` costs ~5 % here) and
        // wiped at the end.
        let mut col = [0u64; 16];
        for c in 0..8 {
            for (k, w) in col.iter_mut().enumerate() {
                *w = z.get(column_index(c, k)).copied().unwrap_or(0);
            }
            round(&mut col);
            for (k, w) in col.iter().enumerate() {
                if let Some(dst) = z.get_mut(column_index(c, k)) {
                    *dst = *w;
                }
            }
        }
        // SAFETY: `col` is a valid, aligned, writable array of integers.
        unsafe { std::ptr::write_volatile(&mut col, [0; 16]) };
    }

    /// `next = P(prev ⊕ ref) ⊕ prev ⊕ ref`, also ⊕ the old `next` if `with_xor`.
    pub(super) fn fill_block(prev: &Block, refb: &Block, next: &mut Block, with_xor: bool) {
        fill_block_in(&mut Scratch::new(), prev, refb, next, with_xor);
    }

    /// [`fill_block`] with the caller's working copies.
    #[inline(always)]
    fn fill_block_in(
        scratch: &mut Scratch,
        prev: &Block,
        refb: &Block,
        next: &mut Block,
        with_xor: bool,
    ) {
        let Scratch { r, z } = scratch;
        for ((x, a), b) in r.iter_mut().zip(prev.0.iter()).zip(refb.0.iter()) {
            *x = a ^ b;
        }
        z.copy_from_slice(r);
        permute(z);
        for ((n, z), r) in next.0.iter_mut().zip(z.iter()).zip(r.iter()) {
            *n = if with_xor { *n ^ z ^ r } else { z ^ r };
        }
    }

    pub(super) fn fill_segment(
        mem: &Memory,
        inst: &Instance,
        pass: u32,
        slice: u32,
        lane: u32,
    ) -> Result<(), Error> {
        let start = segment_start(inst, pass, slice, lane);
        let mut addr = segment_addresses(inst, pass, slice, lane);
        let q = usize::try_from(inst.lane_len).map_err(|_| Error::OutOfMemory)?;
        let seg = usize::try_from(inst.seg_len).map_err(|_| Error::OutOfMemory)?;
        let slice_us = usize::try_from(slice).map_err(|_| Error::OutOfMemory)?;
        let mut scratch = Scratch::new();
        for i in start.first..inst.seg_len {
            let col = slice_us * seg + usize::try_from(i).map_err(|_| Error::OutOfMemory)?;
            let curr = start.lane_start + col;
            let prev = if col == 0 {
                start.lane_start + q - 1
            } else {
                curr - 1
            };
            let prev_p = mem.block_ptr(prev).ok_or(Error::OutOfMemory)?;
            let curr_p = mem.block_ptr(curr).ok_or(Error::OutOfMemory)?;
            // SAFETY: `prev` is an earlier block of this lane (or its last block, finished in
            // the previous pass); no thread writes it during this slice (`run_slice`).
            let prev_b = unsafe { &*prev_p };
            let r = reference_index(inst, &mut addr, pass, slice, lane, i, prev_b.0[0])?;
            let ref_p = mem.block_ptr(r).ok_or(Error::OutOfMemory)?;
            if ref_p == curr_p || prev_p == curr_p {
                return Err(Error::Internal);
            }
            // SAFETY: the reference block is never the current block (checked above) nor one
            // another thread writes during this slice (`run_slice`); the current block is
            // written only by this thread, and no other reference to it exists meanwhile.
            let (ref_b, curr_b) = unsafe { (&*ref_p, &mut *curr_p) };
            fill_block_in(&mut scratch, prev_b, ref_b, curr_b, pass != 0);
        }
        Ok(())
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The compression function with AVX2: one row of 16 words is 4 `ymm` registers.
    use super::*;
    use std::arch::x86_64::*;

    /// A block as 32 registers; registers `4r .. 4r+4` are row `r` (words `16r .. 16r+16`).
    type State = [__m256i; 32];

    /// The register copies of a segment's blocks (the previous block and `prev ⊕ ref`), kept
    /// for the whole segment so that one wipe (volatile writes, on drop, also on error paths)
    /// clears them when it ends.
    struct Regs {
        state: State,
        xy: State,
    }

    impl Drop for Regs {
        fn drop(&mut self) {
            // SAFETY: the fields are valid, aligned and writable, and all-zero bytes are a
            // valid `State`; the volatile writes keep the compiler from dropping these stores.
            unsafe {
                std::ptr::write_volatile(&mut self.state, std::mem::zeroed());
                std::ptr::write_volatile(&mut self.xy, std::mem::zeroed());
            }
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[inline(always)]
    unsafe fn bla(x: __m256i, y: __m256i) -> __m256i {
        // SAFETY: the caller guarantees AVX2 (these run inside the AVX2 backend only).
        unsafe {
            let m = _mm256_mul_epu32(x, y);
            _mm256_add_epi64(_mm256_add_epi64(x, y), _mm256_add_epi64(m, m))
        }
    }

    #[inline(always)]
    unsafe fn rotr32(x: __m256i) -> __m256i {
        // SAFETY: the caller guarantees AVX2 (these run inside the AVX2 backend only).
        unsafe { _mm256_shuffle_epi32::<0b10_11_00_01>(x) }
    }

    #[inline(always)]
    unsafe fn rotr24(x: __m256i) -> __m256i {
        // SAFETY: the caller guarantees AVX2 (these run inside the AVX2 backend only).
        unsafe {
            let m = _mm256_setr_epi8(
                3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10, 3, 4, 5, 6, 7, 0, 1, 2, 11,
                12, 13, 14, 15, 8, 9, 10,
            );
            _mm256_shuffle_epi8(x, m)
        }
    }

    #[inline(always)]
    unsafe fn rotr16(x: __m256i) -> __m256i {
        // SAFETY: the caller guarantees AVX2 (these run inside the AVX2 backend only).
        unsafe {
            let m = _mm256_setr_epi8(
                2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9, 2, 3, 4, 5, 6, 7, 0, 1, 10,
                11, 12, 13, 14, 15, 8, 9,
            );
            _mm256_shuffle_epi8(x, m)
        }
    }

    #[inline(always)]
    unsafe fn rotr63(x: __m256i) -> __m256i {
        // SAFETY: the caller guarantees AVX2 (these run inside the AVX2 backend only).
        unsafe { _mm256_xor_si256(_mm256_srli_epi64::<63>(x), _mm256_add_epi64(x, x)) }
    }

    /// Four registers: the rows `a`, `b`, `c`, `d` of one 4×4 matrix of words.
    type Quad<'a> = [&'a mut __m256i; 4];

    /// G on the four columns of two independent matrices, interleaved step by step.
    #[inline(always)]
    unsafe fn g2(x: &mut Quad<'_>, y: &mut Quad<'_>) {
        // SAFETY: the caller guarantees AVX2 (these run inside the AVX2 backend only).
        unsafe {
            let [a, b, c, d] = x;
            let [e, f, g, h] = y;
            **a = bla(**a, **b);
            **e = bla(**e, **f);
            **d = rotr32(_mm256_xor_si256(**d, **a));
            **h = rotr32(_mm256_xor_si256(**h, **e));
            **c = bla(**c, **d);
            **g = bla(**g, **h);
            **b = rotr24(_mm256_xor_si256(**b, **c));
            **f = rotr24(_mm256_xor_si256(**f, **g));
            **a = bla(**a, **b);
            **e = bla(**e, **f);
            **d = rotr16(_mm256_xor_si256(**d, **a));
            **h = rotr16(_mm256_xor_si256(**h, **e));
            **c = bla(**c, **d);
            **g = bla(**g, **h);
            **b = rotr63(_mm256_xor_si256(**b, **c));
            **f = rotr63(_mm256_xor_si256(**f, **g));
        }
    }

    /// Moves row `b` left by one word, `c` by two, `d` by three (diagonals become columns).
    #[inline(always)]
    unsafe fn diagonalize(x: &mut Quad<'_>) {
        // SAFETY: the caller guarantees AVX2 (these run inside the AVX2 backend only).
        unsafe {
            let [_, b, c, d] = x;
            **b = _mm256_permute4x64_epi64::<0b00_11_10_01>(**b);
            **c = _mm256_permute4x64_epi64::<0b01_00_11_10>(**c);
            **d = _mm256_permute4x64_epi64::<0b10_01_00_11>(**d);
        }
    }

    /// Undoes [`diagonalize`].
    #[inline(always)]
    unsafe fn undiagonalize(x: &mut Quad<'_>) {
        // SAFETY: the caller guarantees AVX2 (these run inside the AVX2 backend only).
        unsafe {
            let [_, b, c, d] = x;
            **b = _mm256_permute4x64_epi64::<0b10_01_00_11>(**b);
            **c = _mm256_permute4x64_epi64::<0b01_00_11_10>(**c);
            **d = _mm256_permute4x64_epi64::<0b00_11_10_01>(**d);
        }
    }

    /// The BLAKE2b round on two independent 4×4 matrices.
    #[inline(always)]
    unsafe fn round2(mut x: Quad<'_>, mut y: Quad<'_>) {
        // SAFETY: the caller guarantees AVX2 (these run inside the AVX2 backend only).
        unsafe {
            g2(&mut x, &mut y);
            diagonalize(&mut x);
            diagonalize(&mut y);
            g2(&mut x, &mut y);
            undiagonalize(&mut x);
            undiagonalize(&mut y);
        }
    }

    /// Swaps the two 64-bit words inside each 128-bit half.
    #[inline(always)]
    unsafe fn swap64(x: __m256i) -> __m256i {
        // SAFETY: the caller guarantees AVX2.
        unsafe { _mm256_shuffle_epi32::<0b01_00_11_10>(x) }
    }

    /// P on the two columns held in one register of each row (`x[r]` is row `r`'s): column
    /// `2j` in the low 128-bit halves, `2j + 1` in the high ones. Column word `w(2r)`,
    /// `w(2r+1)` is row `r`'s pair, so rows 0/1 are the matrix row `a` (`w0..w3`) split in
    /// two registers, rows 2/3 are `b`, 4/5 `c`, 6/7 `d`: the column step of G needs no
    /// shuffle, and the diagonal step only in-lane blends and swaps (libargon2's layout).
    #[inline(always)]
    unsafe fn column_pair(x: [&mut __m256i; 8]) {
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            let [a0, a1, b0, b1, c0, c1, d0, d1] = x;
            g2(
                &mut [&mut *a0, &mut *b0, &mut *c0, &mut *d0],
                &mut [&mut *a1, &mut *b1, &mut *c1, &mut *d1],
            );
            // Diagonals: lanes (w0, w1) meet (w5, w6), (w10, w11), (w15, w12); lanes
            // (w2, w3) meet (w7, w4), (w8, w9), (w13, w14).
            let (p, q) = (*b0, *b1);
            *b0 = swap64(_mm256_blend_epi32::<0x33>(p, q));
            *b1 = swap64(_mm256_blend_epi32::<0xCC>(p, q));
            std::mem::swap(c0, c1);
            let (p, q) = (*d0, *d1);
            *d0 = swap64(_mm256_blend_epi32::<0xCC>(p, q));
            *d1 = swap64(_mm256_blend_epi32::<0x33>(p, q));
            g2(
                &mut [&mut *a0, &mut *b0, &mut *c0, &mut *d0],
                &mut [&mut *a1, &mut *b1, &mut *c1, &mut *d1],
            );
            let (p, q) = (*b0, *b1);
            *b0 = swap64(_mm256_blend_epi32::<0xCC>(p, q));
            *b1 = swap64(_mm256_blend_epi32::<0x33>(p, q));
            std::mem::swap(c0, c1);
            let (p, q) = (*d0, *d1);
            *d0 = swap64(_mm256_blend_epi32::<0x33>(p, q));
            *d1 = swap64(_mm256_blend_epi32::<0xCC>(p, q));
        }
    }

    /// P on the rows (two at a time), then on the columns (two per register column).
    #[inline(always)]
    unsafe fn permute(s: &mut State, after_first: impl FnOnce(__m256i)) {
        // SAFETY: the caller guarantees AVX2 (these run inside the AVX2 backend only).
        unsafe {
            let [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15, s16, s17, s18, s19, s20, s21, s22, s23, s24, s25, s26, s27, s28, s29, s30, s31] =
                s;
            round2([s0, s1, s2, s3], [s4, s5, s6, s7]);
            round2([s8, s9, s10, s11], [s12, s13, s14, s15]);
            round2([s16, s17, s18, s19], [s20, s21, s22, s23]);
            round2([s24, s25, s26, s27], [s28, s29, s30, s31]);
            column_pair([s0, s4, s8, s12, s16, s20, s24, s28]);
            // Words 0..4 of the result are final here, a quarter before the end.
            after_first(*s0);
            column_pair([s1, s5, s9, s13, s17, s21, s25, s29]);
            column_pair([s2, s6, s10, s14, s18, s22, s26, s30]);
            column_pair([s3, s7, s11, s15, s19, s23, s27, s31]);
        }
    }

    /// Loads block `p` into registers.
    ///
    /// # Safety
    /// `p` points to a readable block no other thread writes meanwhile.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(p: *const Block) -> State {
        let mut s: State = [_mm256_setzero_si256(); 32];
        let base = p.cast::<__m256i>();
        for (k, x) in s.iter_mut().enumerate() {
            // SAFETY: a block is 32 registers' worth (k < 32), readable per the contract.
            *x = unsafe { _mm256_loadu_si256(base.add(k)) };
        }
        s
    }

    /// `state` is the previous block; computes the block at `next` from it and the reference
    /// block `refp`, stores it there and leaves it in `state` (`xy`: the caller's room for
    /// `prev ⊕ ref`, overwritten).
    ///
    /// # Safety
    /// `refp` is readable and `next` is readable and writable, no other thread writes either
    /// meanwhile, and no other thread reads `next`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn fill_block(
        state: &mut State,
        xy: &mut State,
        refp: *const Block,
        next: *mut Block,
        with_xor: bool,
        prefetch: impl FnOnce(u64) -> Option<*const Block>,
    ) {
        let rb = refp.cast::<__m256i>();
        let nb = next.cast::<__m256i>();
        if with_xor {
            for (k, (s, t)) in state.iter_mut().zip(xy.iter_mut()).enumerate() {
                // SAFETY: k < 32 stays inside the reference and next blocks, readable per the
                // contract.
                let (r, n) =
                    unsafe { (_mm256_loadu_si256(rb.add(k)), _mm256_loadu_si256(nb.add(k))) };
                *s = _mm256_xor_si256(*s, r);
                *t = _mm256_xor_si256(*s, n);
            }
        } else {
            for (k, (s, t)) in state.iter_mut().zip(xy.iter_mut()).enumerate() {
                // SAFETY: k < 32 stays inside the reference block, readable per the contract.
                let r = unsafe { _mm256_loadu_si256(rb.add(k)) };
                *s = _mm256_xor_si256(*s, r);
                *t = *s;
            }
        }
        // As soon as the new block's first word is known, the next block's reference block
        // (whose address depends on it) is prefetched, so that its cache and TLB misses overlap
        // the rest of this block's work. A prefetch never faults and changes no result.
        let xy0 = xy[0];
        let early = |s0: __m256i| {
            let w0 = _mm256_extract_epi64::<0>(_mm256_xor_si256(s0, xy0)) as u64;
            if let Some(p) = prefetch(w0) {
                let p = p.cast::<i8>();
                for line in 0..16 {
                    // `p + 64·line` (line < 16) stays inside the block `block_ptr` returned.
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * line));
                }
            }
        };
        // SAFETY: this function runs with AVX2 enabled (target_feature).
        unsafe { permute(state, early) };
        for (k, (s, t)) in state.iter_mut().zip(xy.iter()).enumerate() {
            *s = _mm256_xor_si256(*s, *t);
            // SAFETY: k < 32 stays inside the next block, writable per the contract.
            unsafe { _mm256_storeu_si256(nb.add(k), *s) };
        }
    }

    /// Test hook: one block through this backend.
    #[cfg(test)]
    pub(super) fn fill_block_test(prev: &Block, refb: &Block, next: &mut Block, with_xor: bool) {
        assert!(accelerated());
        // SAFETY: AVX2 is present (asserted); the pointers come from live references.
        unsafe {
            let mut s = load(prev);
            let mut xy = load(refb);
            fill_block(&mut s, &mut xy, refb, next, with_xor, |_| None);
        }
    }

    /// # Safety
    /// AVX2 is available, and the caller follows `run_slice`'s rules: this call is the only
    /// writer of this lane's segment during the slice.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn fill_segment(
        mem: &Memory,
        inst: &Instance,
        pass: u32,
        slice: u32,
        lane: u32,
    ) -> Result<(), Error> {
        let start = segment_start(inst, pass, slice, lane);
        let mut addr = segment_addresses(inst, pass, slice, lane);
        let q = usize::try_from(inst.lane_len).map_err(|_| Error::OutOfMemory)?;
        let seg = usize::try_from(inst.seg_len).map_err(|_| Error::OutOfMemory)?;
        let slice_us = usize::try_from(slice).map_err(|_| Error::OutOfMemory)?;
        let first_col = slice_us * seg + usize::try_from(start.first).unwrap_or(0);
        let prev = if first_col == 0 {
            start.lane_start + q - 1
        } else {
            start.lane_start + first_col - 1
        };
        let prev_p = mem.block_ptr(prev).ok_or(Error::OutOfMemory)?;
        // SAFETY: the previous block is finished (an earlier column of this lane, or the
        // lane's last block from the previous pass) and nobody writes it in this slice.
        let mut regs = Regs {
            state: unsafe { load(prev_p) },
            xy: [_mm256_setzero_si256(); 32],
        };
        for i in start.first..inst.seg_len {
            let col = slice_us * seg + usize::try_from(i).map_err(|_| Error::OutOfMemory)?;
            let curr = start.lane_start + col;
            let first_word = _mm256_extract_epi64::<0>(regs.state[0]) as u64;
            let r = reference_index(inst, &mut addr, pass, slice, lane, i, first_word)?;
            // Where block i + 1 will look, from the first word of block i (data-dependent
            // addressing) or from the address block (data-independent, if it is not about
            // to be renewed).
            let next_i = i + 1;
            let addr_ref = addr.as_ref();
            let prefetch = move |w0: u64| -> Option<*const Block> {
                if next_i >= inst.seg_len {
                    return None;
                }
                let rand = match addr_ref {
                    Some(_) if next_i.is_multiple_of(ADDRESSES_PER_BLOCK) => return None,
                    Some(a) => a.get(next_i),
                    None => w0,
                };
                let (l, c) = inst.reference(pass, slice, lane, next_i, rand);
                mem.block_ptr(inst.index(l, c)).map(|p| p.cast_const())
            };
            if r == curr {
                return Err(Error::Internal);
            }
            let ref_p = mem.block_ptr(r).ok_or(Error::OutOfMemory)?;
            let curr_p = mem.block_ptr(curr).ok_or(Error::OutOfMemory)?;
            // SAFETY: AVX2 is available (caller's contract); the reference block is not the
            // current one (checked) and no thread writes it in this slice; the current block
            // belongs to this lane's segment, which only this call touches (`run_slice`).
            unsafe {
                fill_block(
                    &mut regs.state,
                    &mut regs.xy,
                    ref_p,
                    curr_p,
                    pass != 0,
                    prefetch,
                )
            };
        }
        Ok(())
    }
}

/// A 64-byte buffer as BLAKE2b's output array, so that digests are written in place.
fn as_output(b: &mut [u8]) -> Result<&mut Output<Blake2b512>, Error> {
    <&mut Output<Blake2b512>>::try_from(b).map_err(|_| invalid("output", "bad length"))
}

/// H' of RFC 9106: the variable-length BLAKE2b of the concatenated `inputs` into `out`.
fn blake2b_long(inputs: &[&[u8]], out: &mut [u8]) -> Result<(), Error> {
    let len_bytes = u32::try_from(out.len())
        .map(u32::to_le_bytes)
        .map_err(|_| invalid("output", "too long"))?;
    if out.is_empty() {
        return Err(invalid("output", "must be at least 4 bytes"));
    }
    if out.len() <= 64 {
        let mut hasher =
            Blake2bVarCore::new(out.len()).map_err(|_| invalid("output", "bad length"))?;
        let mut buf = LazyBuffer::new(&len_bytes);
        for input in inputs {
            buf.digest_blocks(input, |blocks| hasher.update_blocks(blocks));
        }
        let mut full = Zeroizing::new([0u8; 64]);
        hasher.finalize_variable_core(&mut buf, as_output(full.as_mut_slice())?);
        if let Some(src) = full.get(..out.len()) {
            out.copy_from_slice(src);
        }
        return Ok(());
    }
    // V_i, hashed in place (no temporary copy): the hashers wipe their state on drop.
    let mut v = Zeroizing::new([0u8; 64]);
    let mut d = Blake2b512::new();
    d.update(len_bytes);
    for input in inputs {
        d.update(input);
    }
    d.finalize_into(as_output(v.as_mut_slice())?);
    let (head, mut rest) = out.split_at_mut(32);
    if let Some(src) = v.get(..32) {
        head.copy_from_slice(src);
    }
    while rest.len() > 64 {
        let (chunk, tail) = rest.split_at_mut(32);
        rest = tail;
        let d = Blake2b512::new_with_prefix(v.as_slice());
        d.finalize_into(as_output(v.as_mut_slice())?);
        if let Some(src) = v.get(..32) {
            chunk.copy_from_slice(src);
        }
    }
    let mut hasher =
        Blake2bVarCore::new(rest.len()).map_err(|_| invalid("output", "bad length"))?;
    let mut buf = LazyBuffer::new(&*v);
    let mut full = Zeroizing::new([0u8; 64]);
    hasher.finalize_variable_core(&mut buf, as_output(full.as_mut_slice())?);
    if let Some(src) = full.get(..rest.len()) {
        rest.copy_from_slice(src);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
