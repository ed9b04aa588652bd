//! The writer's verbs: `format`, `add-key`, `change-key`, `remove-key`, `kill-slot` and
//! `config`, cryptsetup's luksFormat, luksAddKey, luksChangeKey, luksRemoveKey, luksKillSlot
//! and config. Each takes the writers' lock on the header (`crate::write`, which does the
//! header work) and opens keyslots through the unlock pipeline.

use crate::cli::args::KeyArgs;
use crate::device::metadata_lock;
use crate::error::{code, CliError};
use crate::kernel::{flock, tty};
use crate::passphrase::PassphraseError;
use crate::unlock::{HeaderRead, KeyRequest};
use crate::write::{
    confirm, execute, fmt_err, kill, last_keyslot_rule, load_rw, new_passphrase, open_for_format,
    open_rw, os_random, parse_size, remaining_opens, size_of, unlock_for_new_key, write_header,
    FormatOptions, KdfOptions, Loaded, Sink, DEFAULT_CIPHER, DEFAULT_HASH, DEFAULT_PBKDF,
    DEFAULT_SECTOR_SIZE, DEFAULT_TYPE,
};
use clap::Args;
use luks2::format;
use luks2::metadata::Priority;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// KDF options shared by `format` and `add-key` (cryptsetup's names and defaults).
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct KdfArgs {
    /// PBKDF for the new keyslot: argon2id, argon2i or pbkdf2
    #[arg(long, value_name = "TYPE", default_value = DEFAULT_PBKDF)]
    pub pbkdf: String,
    /// Unlock time of the new keyslot, in milliseconds [default: 2000]
    #[arg(short = 'i', long = "iter-time", value_name = "MS")]
    pub iter_time: Option<u64>,
    /// Argon2 memory cost in KiB [default: 1048576, at most half the available memory]
    #[arg(long = "pbkdf-memory", value_name = "KiB")]
    pub pbkdf_memory: Option<u32>,
    /// Argon2 threads [default: min(4, CPUs)]
    #[arg(long = "pbkdf-parallel", value_name = "N")]
    pub pbkdf_parallel: Option<u32>,
    /// Use this iteration count (Argon2 time cost) and skip the benchmark
    #[arg(long = "pbkdf-force-iterations", value_name = "N")]
    pub force_iterations: Option<u32>,
    /// Hash for PBKDF2, the anti-forensic splitter and the digest
    #[arg(long, value_name = "HASH", default_value = DEFAULT_HASH)]
    pub hash: String,
}

impl From<&KdfArgs> for KdfOptions {
    fn from(a: &KdfArgs) -> KdfOptions {
        KdfOptions {
            pbkdf: a.pbkdf.clone(),
            iter_time: a.iter_time,
            pbkdf_memory: a.pbkdf_memory,
            pbkdf_parallel: a.pbkdf_parallel,
            force_iterations: a.force_iterations,
            hash: a.hash.clone(),
        }
    }
}

/// `tazpod format`.
#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Only luks2 is written
    #[arg(long = "type", value_name = "TYPE", default_value = DEFAULT_TYPE)]
    pub luks_type: String,
    /// Data cipher
    #[arg(short = 'c', long, default_value = DEFAULT_CIPHER)]
    pub cipher: String,
    /// Volume key size in bits [default: 512 for XTS, 256 otherwise]
    #[arg(short = 's', long = "key-size", value_name = "BITS")]
    pub key_size: Option<usize>,
    /// Encryption sector size
    #[arg(long = "sector-size", value_name = "BYTES", default_value_t = DEFAULT_SECTOR_SIZE)]
    pub sector_size: u32,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Label of the volume
    #[arg(long)]
    pub label: Option<String>,
    /// Subsystem of the volume
    #[arg(long)]
    pub subsystem: Option<String>,
    /// Use this UUID instead of a random one
    #[arg(long)]
    pub uuid: Option<String>,
    /// Size of one header copy (16k … 4m)
    #[arg(long = "luks2-metadata-size", value_name = "SIZE", value_parser = parse_size)]
    pub metadata_size: Option<u64>,
    /// Size of the keyslots area
    #[arg(long = "luks2-keyslots-size", value_name = "SIZE", value_parser = parse_size)]
    pub keyslots_size: Option<u64>,
    /// Write the header to FILE (created if missing); the data starts at offset 0 of DEVICE
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    /// Do not ask for confirmation
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The device or image file to format
    pub device: PathBuf,
}

/// What `add-key` and `change-key` share: the new key, its KDF, the header and the old key.
#[derive(Args, Debug)]
pub struct NewKeyArgs {
    /// Read the new key from FILE instead of asking for it
    #[arg(long = "new-keyfile", value_name = "FILE")]
    pub new_keyfile: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Header file (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The LUKS device or image file
    pub device: PathBuf,
}

/// `tazpod add-key`.
#[derive(Args, Debug)]
pub struct AddKeyArgs {
    /// Slot for the new key [default: the first free one]
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    #[command(flatten)]
    pub new: NewKeyArgs,
}

/// `tazpod change-key`.
#[derive(Args, Debug)]
pub struct ChangeKeyArgs {
    /// Change only the passphrase of this keyslot
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    #[command(flatten)]
    pub new: NewKeyArgs,
}

/// `tazpod remove-key`.
#[derive(Args, Debug)]
pub struct RemoveKeyArgs {
    /// Header file (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    /// Do not ask for confirmation (needed to remove the last key without a terminal)
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The LUKS device or image file
    pub device: PathBuf,
}

/// `tazpod kill-slot`.
#[derive(Args, Debug)]
pub struct KillSlotArgs {
    /// Header file (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    /// Do not ask for confirmation (needed to kill the last slot without a terminal); on a
    /// terminal and without a key file, also no remaining passphrase is asked for
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    /// A remaining key (it must open another keyslot, or the killed one if it is the last)
    #[command(flatten)]
    pub key: KeyArgs,
    /// The LUKS device or image file
    pub device: PathBuf,
    /// The keyslot to wipe
    pub slot: u32,
}

/// `tazpod config`.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Set the label (an empty string removes it)
    #[arg(long)]
    pub label: Option<String>,
    /// Keyslot priority: ignore, normal or prefer (needs --key-slot)
    #[arg(long, requires = "key_slot")]
    pub priority: Option<String>,
    /// The keyslot whose priority changes
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    /// Header file (detached header)
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    /// The LUKS device or image file
    pub device: PathBuf,
}

impl FormatArgs {
    /// The header choices these options make.
    pub fn options(&self) -> FormatOptions {
        FormatOptions {
            luks_type: self.luks_type.clone(),
            cipher: self.cipher.clone(),
            key_size: self.key_size,
            sector_size: self.sector_size,
            kdf: KdfOptions::from(&self.kdf),
            label: self.label.clone(),
            subsystem: self.subsystem.clone(),
            uuid: self.uuid.clone(),
            metadata_size: self.metadata_size,
            keyslots_size: self.keyslots_size,
            detached: self.header.is_some(),
        }
    }
}

/// `tazpod format`.
pub fn cmd_format(a: FormatArgs, verbose: bool) -> Result<(), CliError> {
    let spec = crate::write::header_spec(&a.options())?;
    let layout = spec.layout;
    let shown = a.device.display().to_string();

    // The data device must hold the data offset plus at least one sector, in whole sectors.
    // The device that receives the header is opened exclusively (a block device in use is
    // refused); with --header the data device is not written, and cryptsetup does not check it.
    let mut dev = if a.header.is_some() {
        open_rw(&a.device, false)?
    } else {
        open_for_format(&a.device, false)?
    };
    let dev_size = size_of(&dev, &a.device)?;
    let sector = u64::from(a.sector_size);
    if dev_size <= layout.data_offset {
        return Err(CliError::new(
            code::DEVICE,
            format!(
                "{shown} is too small: {dev_size} bytes, LUKS2 with this layout needs more than {}",
                layout.data_offset
            ),
        ));
    }
    if sector == 0 || (dev_size - layout.data_offset) % sector != 0 {
        return Err(CliError::new(
            code::INVALID,
            format!("the size of {shown} is not a multiple of the sector size {sector}"),
        ));
    }
    let mut hdr = match &a.header {
        Some(h) => open_for_format(h, true)?,
        None => dev
            .try_clone()
            .map_err(|e| CliError::new(code::DEVICE, format!("{shown}: {e}")))?,
    };
    let hdr_name = a
        .header
        .as_ref()
        .map_or(shown.clone(), |h| h.display().to_string());
    // The writers' lock on the header device, held until the new header is synced.
    let _lock = metadata_lock(&hdr, &hdr_name, flock::Mode::Exclusive)?;
    // Refuse to overwrite a LUKS header without confirmation.
    let mut magic = [0u8; 6];
    // The header being replaced, if it is a LUKS2 header tazpod reads (read under the lock;
    // a damaged primary with an intact secondary counts).
    let old = match luks2::read_header(&mut hdr) {
        Ok(luks2::Header::Luks2(h)) => Some(*h),
        _ => None,
    };
    let has_luks = old.is_some()
        || (hdr.read_exact_at(&mut magic, 0).is_ok() && magic == luks2::header::MAGIC_PRIMARY);
    if !a.batch_mode {
        if has_luks {
            confirm(&format!(
                "WARNING: {hdr_name} already contains a LUKS header.\nThis will overwrite data on {hdr_name} irrevocably."
            ))?;
        } else if tty::stdin_is_tty() {
            confirm(&format!(
                "WARNING!\n========\nThis will overwrite data on {hdr_name} irrevocably."
            ))?;
        }
    }
    let pass = new_passphrase(None, Some(&a.key.source()), &shown)?;
    let f = write_header(&spec, &pass, &mut hdr, &hdr_name, verbose, old.as_ref())?;
    drop(f.volume_key);
    drop(hdr);
    dev.sync().ok();
    if verbose {
        eprintln!("Formatted {shown} as LUKS2, UUID {}.", f.uuid);
    }
    Ok(())
}

/// The old key's unlock, the new key and the new keyslot's spec.
type NewKey = (
    luks2::unlock::Unlocked,
    luks2::Passphrase,
    luks2::format::KeyslotSpec,
);

/// The header under the writers' lock, the old key's unlock (only `slot`, when given), the
/// new key and its keyslot's spec: the first half of `add-key` and `change-key`.
fn open_for_new_key(
    a: &NewKeyArgs,
    slot: Option<u32>,
    verbose: bool,
) -> Result<(Loaded, NewKey), CliError> {
    let mut l = load_rw(&a.device, a.header.as_ref())?;
    let k = unlock_for_new_key(
        &mut l.file,
        &l.shown,
        &l.header,
        &a.key.source(),
        slot,
        a.new_keyfile.as_ref(),
        &KdfOptions::from(&a.kdf),
        verbose,
    )?;
    Ok((l, k))
}

/// `tazpod change-key`: the keyslot the old key opens gets the new key (same id, new area).
pub fn cmd_change_key(a: ChangeKeyArgs, verbose: bool) -> Result<(), CliError> {
    let (
        Loaded {
            file: mut f,
            shown,
            header: h,
            _lock,
        },
        (u, new, spec),
    ) = open_for_new_key(&a.new, a.key_slot, verbose)?;
    let slot = u.keyslot;
    let plan = format::change_keyslot(
        &h,
        u.volume_key.as_bytes(),
        slot,
        new.as_bytes(),
        &spec,
        &mut os_random,
    )
    .map_err(|e| fmt_err(&shown, e))?;
    drop(u);
    execute(&plan, &mut f, &shown)?;
    if verbose {
        eprintln!("Key slot {slot} changed.");
    }
    Ok(())
}

/// `tazpod add-key`.
pub fn cmd_add_key(a: AddKeyArgs, verbose: bool) -> Result<(), CliError> {
    let (
        Loaded {
            file: mut f,
            shown,
            header: h,
            _lock,
        },
        (u, new, spec),
    ) = open_for_new_key(&a.new, None, verbose)?;
    let vk = u.volume_key;
    let (plan, id) = format::add_keyslot(
        &h,
        vk.as_bytes(),
        u.digest,
        new.as_bytes(),
        &spec,
        a.key_slot,
        &mut os_random,
    )
    .map_err(|e| fmt_err(&shown, e))?;
    drop(vk);
    execute(&plan, &mut f, &shown)?;
    if verbose {
        eprintln!("Key slot {id} created.");
    }
    Ok(())
}

/// `tazpod remove-key`.
pub fn cmd_remove_key(a: RemoveKeyArgs, verbose: bool) -> Result<(), CliError> {
    let Loaded {
        file: mut f,
        shown,
        header: h,
        _lock,
    } = load_rw(&a.device, a.header.as_ref())?;
    let read = HeaderRead::of(luks2::Header::Luks2(Box::new(h.clone())), &shown);
    let u = read.unlock(
        &mut f,
        &KeyRequest {
            key: &a.key.source(),
            keyslot: None,
            limits: crate::unlock::default_limits(),
            // Only the removal is reported.
            verbose: false,
        },
    )?;
    drop(u.volume_key);
    kill(&mut f, &shown, &h, u.keyslot, a.batch_mode)?;
    if verbose {
        eprintln!("Key slot {} removed.", u.keyslot);
    }
    Ok(())
}

/// `tazpod kill-slot`, as cryptsetup 2.6.1's `luksKillSlot`: unless `--batch-mode` is given
/// on a terminal without a key file, a remaining passphrase is read ("Enter any remaining
/// passphrase: ") and must open another keyslot than the one killed, or, when it is the last
/// keyslot, that keyslot itself (after the typed "YES", which a key file or `--batch-mode`
/// skips; see [`last_keyslot_rule`]). Input that ends before its first byte (an empty pipe,
/// `--key-file -` with nothing on it) skips the check, as cryptsetup does.
pub fn cmd_kill_slot(a: KillSlotArgs, verbose: bool) -> Result<(), CliError> {
    let Loaded {
        file: mut f,
        shown,
        header: h,
        _lock,
    } = load_rw(&a.device, a.header.as_ref())?;
    let slot = a.slot;
    if !h.metadata.keyslots.contains_key(&slot) {
        return Err(CliError::new(
            code::INVALID,
            format!("{shown}: keyslot {slot} is not active"),
        ));
    }
    if verbose {
        eprintln!("Keyslot {slot} is selected for deletion.");
    }
    let last = h.metadata.keyslots.len() == 1;
    let key_file = a.key.key_file.is_some();
    if !a.batch_mode || key_file || !tty::stdin_is_tty() {
        if last && !a.batch_mode && !key_file {
            last_keyslot_rule(&shown, slot)?;
        }
        match crate::passphrase::read_once(&a.key.source(), "Enter any remaining passphrase: ")? {
            Some(pass) => {
                let opened = remaining_opens(&mut f, &h, slot, last, &pass)
                    .map_err(|e| CliError::luks(&shown, e))?;
                if verbose {
                    eprintln!("Key slot {opened} unlocked.");
                }
            }
            // The last keyslot is never wiped on input that held nothing (cryptsetup wipes it);
            // --batch-mode says so explicitly.
            None if last && !a.batch_mode => {
                return Err(CliError::from(PassphraseError::NothingToRead).hint(format!(
                    "keyslot {slot} is the last keyslot and was NOT wiped; give a passphrase \
                     that opens it, or --batch-mode"
                )))
            }
            None => eprintln!(
                "tazpod: nothing to read on input; keyslot {slot} is wiped without a passphrase check"
            ),
        }
    }
    let plan = format::remove_keyslot(&h, slot, &mut os_random).map_err(|e| fmt_err(&shown, e))?;
    execute(&plan, &mut f, &shown)?;
    if verbose {
        eprintln!("Keyslot {slot} is wiped.");
    }
    Ok(())
}

/// `tazpod config`.
pub fn cmd_config(a: ConfigArgs, _verbose: bool) -> Result<(), CliError> {
    let priority = match a.priority.as_deref() {
        None => None,
        Some(p) => {
            let p = match p {
                "ignore" => Priority::Ignore,
                "normal" => Priority::Normal,
                "prefer" => Priority::High,
                other => {
                    return Err(CliError::new(
                        code::INVALID,
                        format!("--priority {other}: use ignore, normal or prefer"),
                    ))
                }
            };
            let slot = a
                .key_slot
                .ok_or_else(|| CliError::new(code::INVALID, "--priority needs --key-slot"))?;
            Some((slot, p))
        }
    };
    if a.label.is_none() && priority.is_none() {
        return Err(CliError::new(code::INVALID, "nothing to change")
            .hint("give --label and/or --priority with --key-slot"));
    }
    let Loaded {
        file: mut f,
        shown,
        header: h,
        _lock,
    } = load_rw(&a.device, a.header.as_ref())?;
    let plan = format::configure(&h, a.label.as_deref(), priority, &mut os_random)
        .map_err(|e| fmt_err(&shown, e))?;
    Ok(execute(&plan, &mut f, &shown)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults built in code are the command line's own (clap parses a bare command).
    #[test]
    fn defaults_are_the_command_lines() {
        use clap::{Command, FromArgMatches};
        let m = FormatArgs::augment_args(Command::new("format"))
            .try_get_matches_from(["format", "/dev/x"])
            .unwrap();
        let parsed = FormatArgs::from_arg_matches(&m).unwrap();
        assert_eq!(parsed.options(), FormatOptions::default());
        assert_eq!(KdfOptions::from(&parsed.kdf), KdfOptions::default());
    }
}
