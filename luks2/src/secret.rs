//! Secret newtypes: never `Clone`, `Debug` redacted, wiped on drop.

use zeroize::Zeroize;

/// A heap buffer of secret bytes that is zeroed (its whole capacity) when dropped.
///
/// It is filled in place: create it zeroed with [`SecretBuf::zeroed`] and write into
/// [`SecretBuf::as_mut_bytes`], so no unwiped temporary copy is made.
pub struct SecretBuf(Vec<u8>);

impl SecretBuf {
    /// A zero-filled secret buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        SecretBuf(vec![0u8; len])
    }

    /// Takes ownership of `v`. The vector's allocation is reused, not copied.
    pub fn from_vec(v: Vec<u8>) -> Self {
        SecretBuf(v)
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret bytes, writable.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Shortens the buffer to `len` bytes, wiping the bytes cut off.
    pub fn truncate(&mut self, len: usize) {
        if let Some(tail) = self.0.get_mut(len..) {
            tail.zeroize();
            self.0.truncate(len);
        }
    }
}

impl Drop for SecretBuf {
    fn drop(&mut self) {
        // `Vec::zeroize` clears the elements and the spare capacity.
        self.0.zeroize();
    }
}

impl std::fmt::Debug for SecretBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBuf([REDACTED; {}])", self.0.len())
    }
}

macro_rules! secret_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name(SecretBuf);

        impl $name {
            /// Wraps a secret buffer.
            pub fn new(buf: SecretBuf) -> Self {
                $name(buf)
            }
            /// Takes ownership of `v` (no copy is made).
            pub fn from_vec(v: Vec<u8>) -> Self {
                $name(SecretBuf::from_vec(v))
            }
            /// The secret bytes.
            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }
            /// Number of bytes.
            pub fn len(&self) -> usize {
                self.0.len()
            }
            /// Whether it is empty.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "([REDACTED; {}])"), self.0.len())
            }
        }
    };
}

secret_newtype!(
    /// A passphrase or key-file content, as bytes (no encoding is assumed, as in cryptsetup).
    Passphrase
);
secret_newtype!(
    /// The volume (master) key of a LUKS volume.
    VolumeKey
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let p = Passphrase::from_vec(b"hunter2".to_vec());
        let s = format!("{p:?}");
        assert!(!s.contains("hunter2"));
        assert_eq!(s, "Passphrase([REDACTED; 7])");
    }

    #[test]
    fn truncate_keeps_prefix() {
        let mut b = SecretBuf::from_vec(vec![1, 2, 3, 4]);
        b.truncate(2);
        assert_eq!(b.as_bytes(), &[1, 2]);
    }
}
