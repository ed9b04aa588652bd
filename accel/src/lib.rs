//! `luks2-accel`: the few hand-vectorised kernels of the `luks2` library.
//!
//! `luks2` itself forbids `unsafe`; this crate holds the code that needs it, as the RustCrypto
//! crates `luks2` depends on hold theirs. Every accelerated path is chosen at run time
//! (`is_x86_feature_detected!`), has a portable version next to it, and is tested against the
//! portable version and against the reference crates (known answers and random inputs).
//!
//! Rules for the `unsafe` here: `std::arch` only, every block with a `// SAFETY:` comment that
//! says why it holds, no panics outside tests, and a safe public API.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

pub mod argon2;
pub mod sha512;
pub mod xts;
