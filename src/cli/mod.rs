//! The command layer: the command line (clap), and for each verb family a file that turns
//! its options into calls of the services below, and their errors into messages, hints and
//! cryptsetup's exit codes. Nothing below this layer sees clap.
//!
//! - [`luks`]: `dump`, `open`, `close`, `status`, `decrypt`;
//! - [`write`]: `format`, `add-key`, `change-key`, `remove-key`, `kill-slot`, `config`;
//! - [`rootless`]: `ls`, `cat`, `run`;
//! - `benchmark`: `benchmark`;
//! - `ghost`: `unlock`, `lock`, `env`, `shell-init` (the session engine is `crate::ghost`);
//! - `init`: `init`, and the options of creating a vault that `unlock` takes too (the
//!   creation itself is `crate::ghost::create` and `crate::ghost::session`);
//! - [`args`]: option groups several verb families share; `output`: writing to standard output.
//!
//! The verb files import from `args` and `output`, never from this file, which imports them.

pub mod args;
mod benchmark;
mod ghost;
mod init;
mod luks;
mod output;
mod rootless;
pub mod write;

use crate::error::{code, CliError};
use crate::{alloc, kernel, mapping};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tazpod",
    version,
    about = "Open LUKS2/LUKS1 volumes without cryptsetup, and keep credentials in a ghost-mode vault"
)]
pub struct Cli {
    /// Print more about what happens (which keyslot opened)
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the LUKS header (like cryptsetup luksDump)
    Dump(luks::DumpArgs),
    /// Map DEVICE as /dev/mapper/NAME through dm-crypt (or only check a passphrase)
    Open(luks::OpenArgs),
    /// Remove the mapping NAME
    Close(luks::CloseArgs),
    /// Show the mapping NAME (like cryptsetup status)
    Status(luks::StatusArgs),
    /// Decrypt the data area in userspace to OUTPUT (- for standard output)
    Decrypt(luks::DecryptArgs),
    // --- ghost mode (src/ghost) ---
    /// Open the vault in a ghost session: a shell that alone sees it, locked when it exits
    /// (a vault that does not exist yet is created first)
    #[command(
        after_help = "When the vault file does not exist, it is created first as by \
        `tazpod init` (passphrase asked twice, or the whole --key-file; --size and the KDF \
        options apply), then the session starts on the new, empty vault."
    )]
    Unlock(self::ghost::UnlockArgs),
    /// Create a new, empty vault (LUKS2 image with an ext4 filesystem) and exit
    #[command(
        after_help = "The passphrase is asked twice on the terminal, or read whole from \
        --key-file (- is standard input). mkfs.ext4 (e2fsprogs) must be installed. The image \
        is a sparse file owned by the caller, built under a temporary name next to the vault \
        and moved there only when complete: a failure leaves nothing. An existing vault is \
        replaced only with --force, after a typed YES (or --batch-mode), and never while it \
        is unlocked. `tazpod unlock` then opens it."
    )]
    Init(self::init::InitArgs),
    /// Inside a ghost session: end it
    Lock,
    /// Inside a ghost session: print `export NAME='value'` lines for the secrets map
    Env,
    /// Print the shell functions for ~/.bashrc or ~/.zshrc
    ShellInit(self::ghost::ShellInitArgs),
    // --- rootless access (cli/rootless.rs over src/rootless) ---
    /// List a directory of the vault (rootless: decrypts and reads it in memory)
    Ls(rootless::LsArgs),
    /// Write files of the vault to standard output (rootless)
    Cat(rootless::CatArgs),
    /// Run COMMAND with secrets of the vault in its environment (rootless)
    Run(rootless::RunArgs),
    // --- writing headers (src/write.rs) ---
    /// Create a LUKS2 header on DEVICE (like cryptsetup luksFormat)
    Format(self::write::FormatArgs),
    /// Add a passphrase or key file in a new keyslot (like cryptsetup luksAddKey)
    AddKey(self::write::AddKeyArgs),
    /// Change the passphrase of the keyslot the old one opens (like cryptsetup luksChangeKey)
    ChangeKey(self::write::ChangeKeyArgs),
    /// Remove the keyslot the given passphrase opens (like cryptsetup luksRemoveKey)
    RemoveKey(self::write::RemoveKeyArgs),
    /// Wipe keyslot N (like cryptsetup luksKillSlot)
    KillSlot(self::write::KillSlotArgs),
    /// Set the label or a keyslot priority (like cryptsetup config)
    Config(self::write::ConfigArgs),
    /// Measure KDF and cipher speeds on this machine (like cryptsetup benchmark)
    Benchmark(self::benchmark::BenchmarkArgs),
}

pub fn run(cli: Cli) -> Result<u8, CliError> {
    let verbose = cli.verbose;
    protect_if_secret(&cli.command, verbose);
    if matches!(
        cli.command,
        Command::Ls(_) | Command::Cat(_) | Command::Run(_)
    ) {
        // The ext4 reader's buffers hold decrypted blocks: zero them when freed.
        alloc::ALLOC.wipe_freed_memory();
    }
    match cli.command {
        Command::Dump(a) => luks::cmd_dump(a, verbose).map(|()| code::OK),
        Command::Open(a) => luks::cmd_open(a, verbose).map(|()| code::OK),
        Command::Close(a) => mapping::close(&a.name, a.deferred)
            .map(|()| code::OK)
            .map_err(CliError::from),
        Command::Status(a) => output::print_out(&mapping::status(&a.name)?).map(|()| code::OK),
        Command::Decrypt(a) => luks::cmd_decrypt(a, verbose).map(|()| code::OK),
        // Ghost mode (src/ghost): these return the session's exit status.
        Command::Unlock(a) => self::ghost::cmd_unlock(a, verbose),
        Command::Init(a) => self::init::cmd_init(a, verbose),
        Command::Lock => self::ghost::cmd_lock(),
        Command::Env => self::ghost::cmd_env(),
        Command::ShellInit(a) => self::ghost::cmd_shell_init(a),
        // Rootless access (cli/rootless.rs).
        Command::Ls(a) => rootless::ls(a, verbose).map(|()| code::OK),
        Command::Cat(a) => rootless::cat(a, verbose).map(|()| code::OK),
        Command::Run(a) => rootless::run(a, verbose).map(|()| code::OK),
        // Writing headers (src/write.rs).
        Command::Format(a) => self::write::cmd_format(a, verbose).map(|()| code::OK),
        Command::AddKey(a) => self::write::cmd_add_key(a, verbose).map(|()| code::OK),
        Command::ChangeKey(a) => self::write::cmd_change_key(a, verbose).map(|()| code::OK),
        Command::RemoveKey(a) => self::write::cmd_remove_key(a, verbose).map(|()| code::OK),
        Command::KillSlot(a) => self::write::cmd_kill_slot(a, verbose).map(|()| code::OK),
        Command::Config(a) => self::write::cmd_config(a, verbose).map(|()| code::OK),
        Command::Benchmark(a) => self::benchmark::cmd_benchmark(&a).map(|()| code::OK),
    }
}

/// For the verbs that handle key material: a non-dumpable process and, when `RLIMIT_MEMLOCK`
/// allows it, locked memory (see `kernel::secmem`), before any passphrase is read.
fn protect_if_secret(cmd: &Command, verbose: bool) {
    // The rootless verbs usually run as an ordinary user, whose RLIMIT_MEMLOCK is too low to
    // lock an Argon2 keyslot's memory: they are made non-dumpable all the same, and say what
    // was done only with --verbose, without the warning.
    let (max_kdf_memory, warn) = match cmd {
        Command::Open(a) => (a.header.limits.limits().max_memory_kib, true),
        Command::Decrypt(a) => (a.header.limits.limits().max_memory_kib, true),
        Command::Dump(a) if a.dump_volume_key => (a.header.limits.limits().max_memory_kib, true),
        Command::Ls(rootless::LsArgs { vault, .. })
        | Command::Cat(rootless::CatArgs { vault, .. })
        | Command::Run(rootless::RunArgs { vault, .. }) => {
            (vault.limits.limits().max_memory_kib, false)
        }
        _ => return,
    };
    let p = kernel::secmem::protect_process(max_kdf_memory);
    match p.warning() {
        Some(w) if warn => eprintln!("{w}"),
        Some(_) => {}
        None if verbose => eprintln!("Process made non-dumpable, memory locked."),
        None => {}
    }
    if !warn && verbose && p.warning().is_some() {
        let dump = if p.non_dumpable {
            "made non-dumpable"
        } else {
            "could not be made non-dumpable"
        };
        eprintln!(
            "Process {dump}; memory not locked (RLIMIT_MEMLOCK too low, or mlockall failed)."
        );
    }
}
