//! Helpers shared by the CLI integration tests (each test file uses some of them).
#![allow(dead_code)]

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;

/// Whether `tool --version` runs; if not, one loud line saying that `skipping` is skipped.
pub fn have(tool: &str, skipping: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("!!!!!! {tool} is not installed: SKIPPING {skipping} !!!!!!");
    }
    ok
}

/// Whether cryptsetup, the oracle, is installed (a loud line if not).
pub fn have_cryptsetup() -> bool {
    have("cryptsetup", "the cryptsetup oracle checks")
}

/// The bytes of `fixtures/images/NAME`.
pub fn image_fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/images")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A pseudo-terminal pair: (master, slave).
pub fn openpty() -> (OwnedFd, OwnedFd) {
    let mut master = -1;
    let mut slave = -1;
    // SAFETY: both pointers are valid for writes; name, termios and winsize may be null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty failed");
    // SAFETY: openpty returned two fresh descriptors that we now own.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}
