//! tazpod: cryptsetup-style verbs over the pure `luks2` reader, and ghost mode.
//!
//! The layers, top to bottom (nothing imports upward; `tests/layering.rs` checks it):
//! `cli` (the command line, messages and exit codes) over the services (`unlock`, `write`,
//! `mapping`, `config`, `ghost`, `rootless`, `dump`, `benchmark`), over the kernel
//! interfaces (`kernel`) and the pure `luks2` library.

mod alloc;
mod benchmark;
mod cli;
mod device;
mod dump;
mod error;
mod kdfcal;
mod kernel;
mod mapping;
// Ghost mode: configuration, the session engine and its verbs.
mod config;
mod ghost;
mod passphrase;
mod preflight;
mod rootless;
mod shell;
mod table;
mod unlock;
// Writing headers.
mod write;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                error::code::INVALID
            } else {
                error::code::OK
            });
        }
    };
    match cli::run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.code)
        }
    }
}
