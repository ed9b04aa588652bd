//! tazpod: cryptsetup-style verbs over the pure `luks2` reader.
//!
//! `dump`, `open --test-passphrase` and `decrypt` only read: the device and the header file
//! are opened read-only and never written.

mod alloc;
mod benchmark;
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

use clap::{Args, Parser, Subcommand};
use error::{code, CliError};
use luks2::kdf::KdfLimits;
use luks2::unlock::UnlockOptions;
use luks2::volume::{DataSegment, Decryptor};
use passphrase::KeyArgs;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "tazpod",
    version,
    about = "Open LUKS2/LUKS1 volumes without cryptsetup, and keep credentials in a ghost-mode vault"
)]
struct Cli {
    /// Print more about what happens (which keyslot opened)
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the LUKS header (like cryptsetup luksDump)
    Dump(DumpArgs),
    /// Map DEVICE as /dev/mapper/NAME through dm-crypt (or only check a passphrase)
    Open(OpenArgs),
    /// Remove the mapping NAME
    Close(CloseArgs),
    /// Show the mapping NAME (like cryptsetup status)
    Status(StatusArgs),
    /// Decrypt the data area in userspace to OUTPUT (- for standard output)
    Decrypt(DecryptArgs),
    // --- ghost mode (src/ghost) ---
    /// Open the vault in a ghost session: a shell that alone sees it, locked when it exits
    /// (a vault that does not exist yet is created first)
    #[command(
        after_help = "When the vault file does not exist, it is created first as by \
        `tazpod init` (passphrase asked twice, or the whole --key-file; --size and the KDF \
        options apply), then the session starts on the new, empty vault."
    )]
    Unlock(ghost::cli::UnlockArgs),
    /// Create a new, empty vault (LUKS2 image with an ext4 filesystem) and exit
    #[command(
        after_help = "The passphrase is asked twice on the terminal, or read whole from \
        --key-file (- is standard input). mkfs.ext4 (e2fsprogs) must be installed. The image \
        is a sparse file owned by the caller, built under a temporary name next to the vault \
        and moved there only when complete: a failure leaves nothing. An existing vault is \
        replaced only with --force, after a typed YES (or --batch-mode), and never while it \
        is unlocked. `tazpod unlock` then opens it."
    )]
    Init(ghost::create::InitArgs),
    /// Inside a ghost session: end it
    Lock,
    /// Inside a ghost session: print `export NAME='value'` lines for the secrets map
    Env,
    /// Print the shell functions for ~/.bashrc or ~/.zshrc
    ShellInit(ghost::cli::ShellInitArgs),
    // --- rootless access (src/rootless) ---
    /// List a directory of the vault (rootless: decrypts and reads it in memory)
    Ls(rootless::LsArgs),
    /// Write files of the vault to standard output (rootless)
    Cat(rootless::CatArgs),
    /// Run COMMAND with secrets of the vault in its environment (rootless)
    Run(rootless::RunArgs),
    // --- writing headers (src/write.rs) ---
    /// Create a LUKS2 header on DEVICE (like cryptsetup luksFormat)
    Format(write::FormatArgs),
    /// Add a passphrase or key file in a new keyslot (like cryptsetup luksAddKey)
    AddKey(write::AddKeyArgs),
    /// Change the passphrase of the keyslot the old one opens (like cryptsetup luksChangeKey)
    ChangeKey(write::ChangeKeyArgs),
    /// Remove the keyslot the given passphrase opens (like cryptsetup luksRemoveKey)
    RemoveKey(write::RemoveKeyArgs),
    /// Wipe keyslot N (like cryptsetup luksKillSlot)
    KillSlot(write::KillSlotArgs),
    /// Set the label or a keyslot priority (like cryptsetup config)
    Config(write::ConfigArgs),
    /// Measure KDF and cipher speeds on this machine (like cryptsetup benchmark)
    Benchmark(benchmark::BenchmarkArgs),
}

/// Options shared by the verbs that read a header.
#[derive(Args, Debug, Clone)]
struct HeaderArgs {
    /// Read the LUKS header (and keyslots) from FILE instead of DEVICE (detached header)
    #[arg(long, value_name = "FILE")]
    header: Option<PathBuf>,
    /// Refuse KDFs that need more than N KiB of memory [default: min(4 GiB, 3/4 of available)]
    #[arg(long = "max-kdf-memory", value_name = "KiB")]
    max_kdf_memory: Option<u64>,
    /// Refuse a PBKDF2 (keyslot or digest) that would run longer than SECONDS on this machine
    /// (speed measured here) [default: 60]
    #[arg(long = "max-pbkdf2-time", value_name = "SECONDS")]
    pub max_pbkdf2_time: Option<u64>,
    /// Refuse an Argon2 time cost over PASSES [default: 1000]
    #[arg(long = "max-argon2-time", value_name = "PASSES")]
    pub max_argon2_time: Option<u32>,
}

#[derive(Args, Debug)]
struct DumpArgs {
    #[command(flatten)]
    header: HeaderArgs,
    /// Print the JSON metadata
    #[arg(long, conflicts_with = "dump_volume_key")]
    json: bool,
    /// Print the volume key (asks for a passphrase)
    #[arg(long = "dump-volume-key")]
    dump_volume_key: bool,
    /// Do not ask for confirmation
    #[arg(short = 'q', long = "batch-mode")]
    batch_mode: bool,
    /// With --dump-volume-key: try only this keyslot
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    key_slot: Option<u32>,
    #[command(flatten)]
    key: KeyArgs,
    /// The LUKS device or image file
    device: PathBuf,
}

#[derive(Args, Debug)]
struct OpenArgs {
    #[command(flatten)]
    header: HeaderArgs,
    /// Only check that the passphrase opens a keyslot; map nothing
    #[arg(long = "test-passphrase")]
    test_passphrase: bool,
    /// Try only this keyslot
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    key_slot: Option<u32>,
    /// Map read-only
    #[arg(short = 'r', long)]
    readonly: bool,
    /// Allow discards (TRIM) through the mapping
    #[arg(long = "allow-discards")]
    allow_discards: bool,
    /// dm-crypt same_cpu_crypt
    #[arg(long = "perf-same_cpu_crypt")]
    perf_same_cpu_crypt: bool,
    /// dm-crypt submit_from_crypt_cpus
    #[arg(long = "perf-submit_from_crypt_cpus")]
    perf_submit_from_crypt_cpus: bool,
    /// dm-crypt no_read_workqueue
    #[arg(long = "perf-no_read_workqueue")]
    perf_no_read_workqueue: bool,
    /// dm-crypt no_write_workqueue
    #[arg(long = "perf-no_write_workqueue")]
    perf_no_write_workqueue: bool,
    /// Put the volume key into the table as hex instead of the kernel keyring
    #[arg(long = "disable-keyring", conflicts_with = "no_hex_key")]
    disable_keyring: bool,
    /// Fail rather than fall back to a hex key when the keyring is refused
    #[arg(long = "no-hex-key")]
    no_hex_key: bool,
    #[command(flatten)]
    key: KeyArgs,
    /// The LUKS device or image file
    device: PathBuf,
    /// The mapping name (required unless --test-passphrase)
    name: Option<String>,
}

#[derive(Args, Debug)]
struct CloseArgs {
    /// If the mapping is in use, remove it when its last user closes it
    #[arg(long)]
    deferred: bool,
    /// The mapping name
    name: String,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// The mapping name
    name: String,
}

#[derive(Args, Debug)]
struct DecryptArgs {
    #[command(flatten)]
    header: HeaderArgs,
    /// Try only this keyslot
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    key_slot: Option<u32>,
    /// Overwrite OUTPUT if it is an existing non-empty regular file
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    key: KeyArgs,
    /// The LUKS device or image file
    device: PathBuf,
    /// Where to write the plaintext (- for standard output)
    output: PathBuf,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                code::INVALID
            } else {
                code::OK
            });
        }
    };
    match run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, CliError> {
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
        Command::Dump(a) => cmd_dump(a, verbose).map(|()| code::OK),
        Command::Open(a) => cmd_open(a, verbose).map(|()| code::OK),
        Command::Close(a) => mapping::close(&a.name, a.deferred)
            .map(|()| code::OK)
            .map_err(CliError::from),
        Command::Status(a) => print_out(&mapping::status(&a.name)?).map(|()| code::OK),
        Command::Decrypt(a) => cmd_decrypt(a, verbose).map(|()| code::OK),
        // Ghost mode (src/ghost): these return the session's exit status.
        Command::Unlock(a) => ghost::cli::cmd_unlock(a, verbose),
        Command::Init(a) => ghost::create::cmd_init(a, verbose),
        Command::Lock => ghost::cli::cmd_lock(),
        Command::Env => ghost::cli::cmd_env(),
        Command::ShellInit(a) => ghost::cli::cmd_shell_init(a),
        // Rootless access (src/rootless).
        Command::Ls(a) => rootless::ls(a, verbose).map(|()| code::OK),
        Command::Cat(a) => rootless::cat(a, verbose).map(|()| code::OK),
        Command::Run(a) => rootless::run(a, verbose).map(|()| code::OK),
        // Writing headers (src/write.rs).
        Command::Format(a) => write::cmd_format(a, verbose).map(|()| code::OK),
        Command::AddKey(a) => write::cmd_add_key(a, verbose).map(|()| code::OK),
        Command::ChangeKey(a) => write::cmd_change_key(a, verbose).map(|()| code::OK),
        Command::RemoveKey(a) => write::cmd_remove_key(a, verbose).map(|()| code::OK),
        Command::KillSlot(a) => write::cmd_kill_slot(a, verbose).map(|()| code::OK),
        Command::Config(a) => write::cmd_config(a, verbose).map(|()| code::OK),
        Command::Benchmark(a) => print_out(&benchmark::run(&a)?).map(|()| code::OK),
    }
}

/// For the verbs that handle key material: a non-dumpable process and, when `RLIMIT_MEMLOCK`
/// allows it, locked memory (see `kernel::secmem`), before any passphrase is read.
fn protect_if_secret(cmd: &Command, verbose: bool) {
    // The rootless verbs usually run as an ordinary user, whose RLIMIT_MEMLOCK is too low to
    // lock an Argon2 keyslot's memory: they are made non-dumpable all the same, and say what
    // was done only with --verbose, without the warning.
    let (max_kdf_memory, warn) = match cmd {
        Command::Open(a) => (kdf_limits(&a.header).max_memory_kib, true),
        Command::Decrypt(a) => (kdf_limits(&a.header).max_memory_kib, true),
        Command::Dump(a) if a.dump_volume_key => (kdf_limits(&a.header).max_memory_kib, true),
        Command::Ls(a) => (rootless::max_kdf_memory_kib(&a.vault), false),
        Command::Cat(a) => (rootless::max_kdf_memory_kib(&a.vault), false),
        Command::Run(a) => (rootless::max_kdf_memory_kib(&a.vault), false),
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

/// KDF limits of a verb that reads a header.
fn kdf_limits(h: &HeaderArgs) -> KdfLimits {
    unlock::kdf_limits_from(h.max_kdf_memory, h.max_pbkdf2_time, h.max_argon2_time)
}

/// Opens the header source (the `--header` file, or the device).
fn open_header(
    device: &PathBuf,
    h: &HeaderArgs,
) -> Result<(device::ReadOnly, luks2::Header), CliError> {
    let path = h.header.as_ref().unwrap_or(device);
    let mut f = device::ReadOnly::open(path)?;
    // Held until the keyslots are read (dropped with `f`, or by `release_lock`).
    f.lock_shared()?;
    let header = luks2::read_header(&mut f).map_err(|e| CliError::luks(&f.name, e))?;
    Ok((f, header))
}

fn cmd_dump(a: DumpArgs, verbose: bool) -> Result<(), CliError> {
    let (mut f, header) = open_header(&a.device, &a.header)?;
    let shown = f.name.clone();
    // Which header copy was used, when the other was not (standard output stays
    // cryptsetup's layout).
    if let Some(w) = dump::copy_warning(&header, &shown) {
        eprintln!("{w}");
    }
    let out: zeroize::Zeroizing<String> = if a.json {
        let mut s = dump::json(&header);
        if matches!(header, luks2::Header::Luks1(_)) {
            s.push('\n');
        }
        s.into()
    } else if a.dump_volume_key {
        // Like the passphrase test, the volume key needs only keyslots and digests.
        if !a.batch_mode && kernel::tty::stdin_is_tty() && a.key.key_file.is_none() {
            confirm_volume_key_dump()?;
        }
        let opts = UnlockOptions {
            keyslot: a.key_slot,
            limits: kdf_limits(&a.header),
        };
        let u = unlock::unlock_with(&mut f, &header, &a.key, &shown, &opts, verbose)?;
        dump::volume_key(&header, &shown, &u.volume_key)
    } else {
        dump::human(&header, &shown).into()
    };
    print_out(&out)
}

/// With --verbose, says which header copy was used when the other was not.
fn warn_copy_if(verbose: bool, header: &luks2::Header, shown: &str) {
    if verbose {
        if let Some(w) = dump::copy_warning(header, shown) {
            eprintln!("{w}");
        }
    }
}

fn confirm_volume_key_dump() -> Result<(), CliError> {
    eprint!(
        "The header dump with volume key is sensitive information\n\
         that allows access to encrypted partition without a passphrase.\n\
         This dump should be stored encrypted in a safe place.\n\
         Are you sure? (Type 'yes' in capital letters): "
    );
    let answer = kernel::tty::read_line_secret(64)
        .map_err(|e| CliError::new(code::INVALID, format!("cannot read the answer: {e}")))?;
    match answer {
        Some(a) if a.as_bytes() == b"YES" => Ok(()),
        _ => Err(CliError::new(code::PERMISSION, "operation aborted")),
    }
}

fn print_out(s: &str) -> Result<(), CliError> {
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes())
        .and_then(|()| o.flush())
        .map_err(|e| {
            CliError::new(
                code::INVALID,
                format!("cannot write to standard output: {e}"),
            )
        })
}

fn cmd_open(a: OpenArgs, verbose: bool) -> Result<(), CliError> {
    if !a.test_passphrase && a.name.is_none() {
        return Err(CliError::new(code::INVALID, "open needs a mapping NAME")
            .hint("tazpod open DEVICE NAME, or --test-passphrase to only check a passphrase"));
    }
    if !a.test_passphrase {
        // Root first: nothing else matters without it.
        preflight::need_privilege("open")?;
    }
    let (mut f, header) = open_header(&a.device, &a.header)?;
    let shown = f.name.clone();
    warn_copy_if(verbose, &header, &shown);
    let opts = UnlockOptions {
        keyslot: a.key_slot,
        limits: kdf_limits(&a.header),
    };
    // A passphrase test depends only on the keyslots and digests (as with cryptsetup: a data
    // segment of an unknown type, cipher or sector size still tests the passphrase);
    // activation needs a data segment that can be mapped, checked before the passphrase.
    let seg = if a.test_passphrase {
        None
    } else {
        Some(DataSegment::of(&header).map_err(|e| CliError::luks(&shown, e))?)
    };
    if !a.test_passphrase {
        // What mapping needs, after the header's own checks, before the passphrase or the KDF.
        preflight::can_map(std::fs::metadata(&a.device).is_ok_and(|m| m.is_file()))?;
    }
    if let Some(name) = a.name.as_deref().filter(|_| !a.test_passphrase) {
        // Refuse a taken name before asking for the passphrase.
        if let Ok(ctl) = mapping::control() {
            if ctl.info(name).is_ok() {
                return Err(CliError::new(
                    code::BUSY,
                    format!("device {name} already exists"),
                ));
            }
        }
    }
    let u = unlock::unlock_with(&mut f, &header, &a.key, &shown, &opts, verbose)?;
    if let (Some(name), Some(seg)) = (a.name.as_deref().filter(|_| !a.test_passphrase), &seg) {
        let flags = table::CryptFlags {
            allow_discards: a.allow_discards,
            same_cpu_crypt: a.perf_same_cpu_crypt,
            submit_from_crypt_cpus: a.perf_submit_from_crypt_cpus,
            no_read_workqueue: a.perf_no_read_workqueue,
            no_write_workqueue: a.perf_no_write_workqueue,
        };
        let key_mode = if a.disable_keyring {
            mapping::KeyMode::Hex
        } else if a.no_hex_key {
            mapping::KeyMode::KeyringOnly
        } else {
            mapping::KeyMode::KeyringOrHex
        };
        let m = mapping::activate(&mapping::MapRequest {
            name,
            data: &a.device,
            volume: &mapping::VolumeInfo::of(&header, seg.clone(), u.digest),
            key: &u.volume_key,
            readonly: a.readonly,
            flags,
            key_mode,
            make_node: true,
        })?;
        if verbose {
            eprintln!(
                "Mapped {} (dm {}:{}), key through the {}.",
                m.node
                    .map_or_else(|| name.to_string(), |p| p.display().to_string()),
                m.dev.major,
                m.dev.minor,
                if m.keyring {
                    "kernel keyring"
                } else {
                    "table (hex)"
                }
            );
        }
    }
    drop(u);
    if verbose {
        eprintln!("Command successful.");
    }
    Ok(())
}

fn cmd_decrypt(a: DecryptArgs, verbose: bool) -> Result<(), CliError> {
    let (mut hf, header) = open_header(&a.device, &a.header)?;
    let shown = hf.name.clone();
    warn_copy_if(verbose, &header, &shown);
    let seg = DataSegment::of(&header).map_err(|e| CliError::luks(&shown, e))?;
    // With a detached header, the data is on DEVICE; otherwise it is the same file.
    let mut data = if a.header.header.is_some() {
        Some(device::ReadOnly::open(&a.device)?)
    } else {
        None
    };
    let data_name = data.as_ref().map_or(shown.clone(), |d| d.name.clone());
    let size = match &mut data {
        Some(d) => d.size()?,
        None => hf.size()?,
    };
    seg.length_on(size)
        .map_err(|e| CliError::luks(&data_name, e))?;
    device::Output::check(&a.output, a.force, data.as_ref().unwrap_or(&hf))?;
    let opts = UnlockOptions {
        keyslot: a.key_slot,
        limits: kdf_limits(&a.header),
    };
    let u = unlock::unlock_with(&mut hf, &header, &a.key, &shown, &opts, verbose)?;
    let dec = Decryptor::new(seg, &u.volume_key).map_err(|e| CliError::luks(&shown, e))?;
    drop(u);
    hf.release_lock();
    let mut out = device::Output::create(&a.output)?;
    let src = data.as_mut().unwrap_or(&mut hf);
    let n = dec
        .copy(src, size, &mut out)
        .map_err(|e| CliError::luks(&data_name, e))?;
    out.finish()?;
    if verbose {
        eprintln!("Decrypted {n} bytes.");
    }
    Ok(())
}
