//! Ghost mode: `tazpod unlock` runs a shell that alone sees the decrypted vault, and leaves
//! nothing behind when it ends.
//!
//! The "Matryoshka" lifecycle:
//! 1. **outer** (`tazpod unlock`, in the command layer): inside a session already, say so; not root, re-execute
//!    through `sudo` with the options (never a secret, never an identity);
//! 2. **before anything is created**: who the caller is, from the kernel and sudo
//!    ([`caller`]); the vault opened once with the caller's rights; the header read, the
//!    passphrase got (key file read as the caller), the key verified, all on that descriptor;
//! 3. **setup as root** ([`session::setup`]): private mount namespace, `/` recursively
//!    private, a private tmpfs on `/dev/mapper`, the dm-crypt mapping (held open and marked
//!    for deferred removal before it is mounted), ext4 mounted nosuid/nodev on a root-only
//!    staging directory, chowned to the user, moved onto the user's mount point, bind mounts;
//! 4. **the inner shell** ([`session::spawn_shell`]): fork; the child drops every privilege
//!    for good, dies with its parent, closes stray descriptors, gets a clean environment
//!    plus the secrets map, and execs; the parent forwards signals and waits;
//! 5. **teardown** ([`session::teardown`]): in reverse order, every step attempted.
//!
//! A vault that does not exist is created first ([`create`]: `tazpod init`, or the first
//! `tazpod unlock`): image, LUKS2 header, mapping, `mkfs.ext4`, all undone on failure.
//!
//! A second `unlock` of the same vault joins the live session ([`lock`],
//! [`session::run_joiner`]). All system calls go through [`host::Host`], the supertrait of
//! [`host::Image`], [`host::Mapper`], [`host::Mounts`], [`host::Lock`] and [`host::Child`]:
//! [`real::RealHost`] performs them, the recording double of the tests writes them down.

pub mod caller;
pub mod create;
pub mod ending;
pub mod exec;
pub mod host;
pub mod lock;
pub mod real;
#[cfg(test)]
mod recording;
pub mod secrets;
pub mod session;
pub mod start;
pub mod sudo;
#[cfg(test)]
mod tests;
