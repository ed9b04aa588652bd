//! Reading a passphrase from the terminal without echo.

use luks2::SecretBuf;
use std::io::{self, Write};
use zeroize::Zeroize;

/// Whether standard input is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the file descriptor number.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Restores the saved terminal attributes when dropped.
struct EchoGuard {
    saved: libc::termios,
}

impl EchoGuard {
    /// Turns off echo on standard input, remembering the previous settings.
    fn disable_echo() -> io::Result<EchoGuard> {
        // SAFETY: termios is plain old data; zeroed is a valid value that tcgetattr overwrites.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid, writable termios for the duration of the call.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let saved = t;
        t.c_lflag &= !(libc::ECHO | libc::ECHONL);
        t.c_lflag |= libc::ICANON;
        // SAFETY: `t` is a valid termios read back from the same descriptor.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EchoGuard { saved })
    }
}

impl Drop for EchoGuard {
    fn drop(&mut self) {
        // SAFETY: `saved` is the termios tcgetattr returned for this descriptor.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &self.saved);
        }
    }
}

/// Reads from standard input up to a newline (not included), at most `max` bytes, directly into
/// a secret buffer. Returns `Ok(None)` when more than `max` bytes come before the newline.
pub fn read_line_secret(max: usize) -> io::Result<Option<SecretBuf>> {
    Ok(match read_line(max)? {
        Line::Text(b) => Some(b),
        Line::Eof => Some(SecretBuf::zeroed(0)),
        Line::TooLong => None,
    })
}

/// A line of standard input, as [`read_line`] returns it.
pub enum Line {
    /// The bytes before the newline or the end of input (possibly none: an empty line).
    Text(SecretBuf),
    /// More than the allowed bytes came before the newline (the rest of the line is drained).
    TooLong,
    /// The input ended before a single byte (not even a newline) was read.
    Eof,
}

/// Like [`read_line_secret`], but tells an empty line from input that ended at once
/// (cryptsetup's "Nothing to read on input").
pub fn read_line(max: usize) -> io::Result<Line> {
    let mut buf = SecretBuf::zeroed(max + 1);
    let mut len = 0usize;
    let mut any = false;
    loop {
        let mut byte = [0u8; 1];
        // SAFETY: `byte` is a valid 1-byte writable buffer.
        let n = unsafe { libc::read(libc::STDIN_FILENO, byte.as_mut_ptr().cast(), 1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 && !any {
            return Ok(Line::Eof);
        }
        any = true;
        if n == 0 || byte[0] == b'\n' {
            break;
        }
        if len == max {
            // Drain the rest of the line so it does not reach the next prompt.
            byte.zeroize();
            drain_line();
            return Ok(Line::TooLong);
        }
        if let Some(slot) = buf.as_mut_bytes().get_mut(len) {
            *slot = byte[0];
        }
        byte.zeroize();
        len += 1;
    }
    buf.truncate(len);
    Ok(Line::Text(buf))
}

fn drain_line() {
    loop {
        let mut byte = [0u8; 1];
        // SAFETY: `byte` is a valid 1-byte writable buffer.
        let n = unsafe { libc::read(libc::STDIN_FILENO, byte.as_mut_ptr().cast(), 1) };
        if n <= 0 || byte[0] == b'\n' {
            return;
        }
    }
}

/// Prints `prompt` on standard error and reads a line from the terminal with echo off.
pub fn prompt_passphrase(prompt: &str, max: usize) -> io::Result<Option<SecretBuf>> {
    let mut err = io::stderr();
    err.write_all(prompt.as_bytes())?;
    err.flush()?;
    let guard = EchoGuard::disable_echo()?;
    let r = read_line_secret(max);
    drop(guard);
    err.write_all(b"\n")?;
    r
}
