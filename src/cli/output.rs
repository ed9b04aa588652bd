//! Standard output for the verbs that print (a failed write is an error, exit 1).

use crate::error::{code, CliError};
use std::io::Write;

/// Writes `s` to standard output and flushes it.
pub(crate) fn print_out(s: &str) -> Result<(), CliError> {
    print_bytes(s.as_bytes())
}

/// Writes `b` to standard output and flushes it.
pub(crate) fn print_bytes(b: &[u8]) -> Result<(), CliError> {
    let mut o = std::io::stdout().lock();
    o.write_all(b).and_then(|()| o.flush()).map_err(|e| {
        CliError::new(
            code::INVALID,
            format!("cannot write to standard output: {e}"),
        )
    })
}
