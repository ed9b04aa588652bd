//! The data segment and its userspace decryptor.
