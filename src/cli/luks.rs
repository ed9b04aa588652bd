//! The verbs over one LUKS device: `dump`, `open`, `close`, `status`, `decrypt`. Each goes
//! through the unlock pipeline (`crate::unlock`) when it needs the volume key.
//!
//! `dump`, `open --test-passphrase` and `decrypt` only read: the device and the header file
//! are opened read-only and never written.

use super::args::LimitArgs;
use super::output::print_out;
use crate::cli::args::KeyArgs;
use crate::error::{code, CliError};
use crate::passphrase::KeySource;
use crate::unlock::{self, HeaderRead, KeyRequest};
use crate::{device, dump, kernel, mapping, preflight, table};
use clap::Args;
use luks2::volume::Decryptor;
use std::path::PathBuf;

/// Options shared by the verbs that read a header.
#[derive(Args, Debug, Clone)]
pub struct HeaderArgs {
    /// Read the LUKS header (and keyslots) from FILE instead of DEVICE (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    #[command(flatten)]
    pub header: HeaderArgs,
    /// Print the JSON metadata
    #[arg(long, conflicts_with = "dump_volume_key")]
    pub json: bool,
    /// Print the volume key (asks for a passphrase)
    #[arg(long = "dump-volume-key")]
    pub dump_volume_key: bool,
    /// Do not ask for confirmation
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    /// With --dump-volume-key: try only this keyslot
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The LUKS device or image file
    pub device: PathBuf,
}

#[derive(Args, Debug)]
pub struct OpenArgs {
    #[command(flatten)]
    pub header: HeaderArgs,
    /// Only check that the passphrase opens a keyslot; map nothing
    #[arg(long = "test-passphrase")]
    pub test_passphrase: bool,
    /// Try only this keyslot
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    /// Map read-only
    #[arg(short = 'r', long)]
    pub readonly: bool,
    /// Allow discards (TRIM) through the mapping
    #[arg(long = "allow-discards")]
    pub allow_discards: bool,
    /// dm-crypt same_cpu_crypt
    #[arg(long = "perf-same_cpu_crypt")]
    pub perf_same_cpu_crypt: bool,
    /// dm-crypt submit_from_crypt_cpus
    #[arg(long = "perf-submit_from_crypt_cpus")]
    pub perf_submit_from_crypt_cpus: bool,
    /// dm-crypt no_read_workqueue
    #[arg(long = "perf-no_read_workqueue")]
    pub perf_no_read_workqueue: bool,
    /// dm-crypt no_write_workqueue
    #[arg(long = "perf-no_write_workqueue")]
    pub perf_no_write_workqueue: bool,
    /// Put the volume key into the table as hex instead of the kernel keyring
    #[arg(long = "disable-keyring", conflicts_with = "no_hex_key")]
    pub disable_keyring: bool,
    /// Fail rather than fall back to a hex key when the keyring is refused
    #[arg(long = "no-hex-key")]
    pub no_hex_key: bool,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The LUKS device or image file
    pub device: PathBuf,
    /// The mapping name (required unless --test-passphrase)
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct CloseArgs {
    /// If the mapping is in use, remove it when its last user closes it
    #[arg(long)]
    pub deferred: bool,
    /// The mapping name
    pub name: String,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The mapping name
    pub name: String,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub header: HeaderArgs,
    /// Try only this keyslot
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    /// Overwrite OUTPUT if it is an existing non-empty regular file
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The LUKS device or image file
    pub device: PathBuf,
    /// Where to write the plaintext (- for standard output)
    pub output: PathBuf,
}

/// Opens the header source (the `--header` file, or the device) read-only, takes
/// cryptsetup's shared metadata lock on it, and reads the header: step 1 of the unlock
/// pipeline.
fn open_header(
    device: &PathBuf,
    h: &HeaderArgs,
) -> Result<(device::ReadOnly, HeaderRead), CliError> {
    let path = h.header.as_ref().unwrap_or(device);
    let mut f = device::ReadOnly::open(path)?;
    // Held until the keyslots are read (dropped with `f`, or by `release_lock`).
    f.lock_shared()?;
    let name = f.name.clone();
    let read = unlock::read_header(&mut f, &name)?;
    Ok((f, read))
}

/// What step 3 of the unlock pipeline needs, from these verbs' options.
fn key_request<'a>(
    key: &'a KeySource,
    keyslot: Option<u32>,
    h: &HeaderArgs,
    verbose: bool,
) -> KeyRequest<'a> {
    KeyRequest {
        key,
        keyslot,
        limits: h.limits.limits(),
        verbose,
    }
}

pub fn cmd_dump(a: DumpArgs, verbose: bool) -> Result<(), CliError> {
    let (mut f, read) = open_header(&a.device, &a.header)?;
    let header = &read.header;
    let shown = f.name.clone();
    // Which header copy was used, when the other was not (standard output stays
    // cryptsetup's layout).
    if let Some(w) = dump::copy_warning(header, &shown) {
        eprintln!("{w}");
    }
    let out: zeroize::Zeroizing<String> = if a.json {
        let mut s = dump::json(header);
        if matches!(header, luks2::Header::Luks1(_)) {
            s.push('\n');
        }
        s.into()
    } else if a.dump_volume_key {
        // Like the passphrase test, the volume key needs only keyslots and digests.
        if !a.batch_mode && kernel::tty::stdin_is_tty() && a.key.key_file.is_none() {
            confirm_volume_key_dump()?;
        }
        let u = read.unlock(
            &mut f,
            &key_request(&a.key.source(), a.key_slot, &a.header, verbose),
        )?;
        dump::volume_key(header, &shown, &u.volume_key)
    } else {
        dump::human(header, &shown).into()
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

pub fn cmd_open(a: OpenArgs, verbose: bool) -> Result<(), CliError> {
    if !a.test_passphrase && a.name.is_none() {
        return Err(CliError::new(code::INVALID, "open needs a mapping NAME")
            .hint("tazpod open DEVICE NAME, or --test-passphrase to only check a passphrase"));
    }
    if !a.test_passphrase {
        // Root first: nothing else matters without it.
        preflight::need_privilege("open")?;
    }
    let (mut f, mut read) = open_header(&a.device, &a.header)?;
    let shown = f.name.clone();
    warn_copy_if(verbose, &read.header, &shown);
    // A passphrase test depends only on the keyslots and digests (as with cryptsetup: a data
    // segment of an unknown type, cipher or sector size still tests the passphrase);
    // activation needs a data segment that can be mapped, checked before the passphrase.
    let name = a.name.as_deref().filter(|_| !a.test_passphrase);
    if name.is_some() {
        read.need_segment()?;
        // What mapping needs, after the header's own checks, before the passphrase or the KDF.
        preflight::can_map(std::fs::metadata(&a.device).is_ok_and(|m| m.is_file()))?;
    }
    if let Some(name) = name {
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
    let u = read.unlock(
        &mut f,
        &key_request(&a.key.source(), a.key_slot, &a.header, verbose),
    )?;
    if let Some(name) = name {
        let volume = read.volume(&u)?;
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
            volume: &volume,
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

pub fn cmd_decrypt(a: DecryptArgs, verbose: bool) -> Result<(), CliError> {
    let (mut hf, mut read) = open_header(&a.device, &a.header)?;
    let shown = hf.name.clone();
    warn_copy_if(verbose, &read.header, &shown);
    let seg = read.need_segment()?.clone();
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
    let u = read.unlock(
        &mut hf,
        &key_request(&a.key.source(), a.key_slot, &a.header, verbose),
    )?;
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
