//! The filesystem side of `ls`, `cat` and `run`: listing directories, streaming files and
//! turning `ext4-view` errors into CLI errors, over any [`Ext4`] (no vault, no passphrase, no
//! terminal). The verbs give it the decrypting reader of a vault; the fuzz crate compiles this
//! file too (`fuzz/src/lib.rs`, `#[path]`) and its `ext4` target walks whole fuzzed images
//! with [`walk_all`], through the same code.
//!
//! Nothing here panics on a corrupt filesystem, and nothing loops for ever: a recursive listing
//! stops at [`MAX_DEPTH`] levels and after [`max_dirs`] directories (a directory loop in a
//! corrupt image would otherwise be walked again and again).

use crate::error::{code, CliError};
use ext4_view::{Ext4, Ext4Error, Ext4Read, FileType, Metadata};
use luks2::SecretBuf;
use std::io::{self, Write};

/// Bytes of plaintext moved per write by `cat` (the file is never loaded whole).
pub const CAT_CHUNK: usize = 64 * 1024;

/// Deepest directory `ls --recursive` descends into.
pub const MAX_DEPTH: usize = 128;

/// The smallest ext4 inode (`EXT2_GOOD_OLD_INODE_SIZE`): every directory takes at least this
/// much of the inode tables, which lie inside the filesystem.
const MIN_INODE_SIZE: u64 = 128;

/// How many directories a recursive listing may visit in a filesystem of `fs_len` bytes. Each
/// directory has its own inode (ext4 has no hard links to directories), and inodes take at
/// least [`MIN_INODE_SIZE`] bytes each inside the filesystem: a walk that visits more
/// directories than that has met a loop.
pub fn max_dirs(fs_len: u64) -> u64 {
    fs_len / MIN_INODE_SIZE
}

/// Loads the ext4 filesystem of `len` bytes that `reader` reads (the vault's data segment),
/// after [`check_geometry`] on its superblock. `ext4-view` checks the rest of the superblock
/// itself (tazpod builds the vendored copy in `third_party/ext4-view/`, see its `PATCHES.md`).
pub fn load(mut reader: Box<dyn Ext4Read>, vault: &str, len: u64) -> Result<Ext4, CliError> {
    let mut sb = [0u8; 1024];
    reader
        .read(1024, &mut sb)
        .map_err(|e| fs_error(vault, None, Ext4Error::Io(e)))?;
    check_geometry(&sb, len).map_err(|what| {
        CliError::new(
            code::INVALID,
            format!("{vault}: the filesystem in the vault is corrupt: {what}"),
        )
        .hint(corrupt_hint())
    })?;
    Ext4::load(reader).map_err(|e| fs_error(vault, None, e))
}

/// tazpod's own cap on the number of block groups, checked on the superblock (`sb`, its 1024
/// bytes) before `ext4-view` loads the filesystem of `len` bytes.
///
/// `ext4-view` (the vendored copy, `third_party/ext4-view/PATCHES.md`) refuses a corrupt
/// geometry itself: a filesystem larger than its device, fewer than 8 blocks per group, more
/// groups than the kernel allows; and it no longer reserves memory for every group before
/// reading them. This check is kept because it still adds something: on a device that really
/// is that large, such as a sparse vault file of some TiB with a crafted superblock (8 blocks
/// per group), `ext4-view` would read and keep one descriptor per 8 KiB of the vault (hundreds
/// of millions of reads, GiBs of memory) before the walk starts. [`MAX_GROUPS`] bounds that,
/// and the message says it is tazpod's limit, not necessarily corruption. Everything else
/// (not ext4, a filesystem larger than the vault's data segment, too few blocks per group) is
/// left to `ext4-view`, which reports it as corruption.
pub fn check_geometry(sb: &[u8; 1024], len: u64) -> Result<(), String> {
    let u32_at = |at: usize| {
        sb.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    let magic = sb.get(0x38..0x3a) == Some(&[0x53, 0xef][..]);
    let log = u32_at(24);
    if !magic || log > 6 {
        return Ok(());
    }
    let block_size = 1024u64 << log;
    // s_blocks_count_hi counts only with the 64bit feature (incompat 0x80), as in the kernel
    // and the vendored ext4-view (its patch 6).
    let hi = if u32_at(0x60) & 0x80 != 0 {
        u64::from(u32_at(0x150)) << 32
    } else {
        0
    };
    let blocks = u64::from(u32_at(4)) | hi;
    let per_group = u64::from(u32_at(32));
    if blocks.checked_mul(block_size).is_none_or(|b| b > len) || per_group < 8 {
        // ext4-view refuses these ("more than the device holds", "blocks per group").
        return Ok(());
    }
    let groups = blocks.div_ceil(per_group);
    if groups > MAX_GROUPS {
        return Err(format!(
            "its superblock counts {groups} block groups ({blocks} blocks, {per_group} per \
             group); tazpod reads filesystems of at most {MAX_GROUPS} groups"
        ));
    }
    Ok(())
}

/// The most block groups a vault's filesystem may have: `ext4-view` keeps a descriptor of
/// 16 bytes in memory per group and reads each at load, so this caps that at 16 MiB and 2^20
/// reads. A filesystem made with mkfs.ext4's defaults reaches it at 128 TiB (4 KiB blocks) or
/// 8 TiB (1 KiB blocks). Without the cap, a large sparse vault file with a crafted superblock
/// (8 blocks per group) could make the load take GiBs and hours (the `ext4` fuzz target first
/// found the group count as an up-front 898 MB reservation, now gone from `ext4-view`).
pub const MAX_GROUPS: u64 = 1 << 20;

/// A vault path for messages: quoted, with control characters escaped.
pub fn shown(path: &[u8]) -> String {
    format!("'{}'", String::from_utf8_lossy(path).escape_debug())
}

/// The hint for a corrupt filesystem.
pub fn corrupt_hint() -> String {
    "`tazpod decrypt VAULT fs.img && e2fsck -fn fs.img` shows the damage (remove fs.img after)"
        .into()
}

/// Turns an `ext4-view` error met on `path` (or on the filesystem as a whole) into a CLI error
/// that says what is wrong and where.
pub fn fs_error(vault: &str, path: Option<&[u8]>, e: Ext4Error) -> CliError {
    let at = path.map_or_else(|| "the vault's filesystem".to_string(), shown);
    match e {
        Ext4Error::NotFound => CliError::new(
            code::INVALID,
            format!("{vault}: {at} does not exist in the vault"),
        )
        .hint("list a directory with `tazpod ls [PATH]`"),
        Ext4Error::NotADirectory => CliError::new(
            code::INVALID,
            format!("{vault}: {at} is not a directory (or a part of it is not)"),
        ),
        Ext4Error::IsADirectory => CliError::new(
            code::INVALID,
            format!("{vault}: {at} is a directory, not a file"),
        )
        .hint("list it with `tazpod ls`"),
        Ext4Error::IsASpecialFile => CliError::new(
            code::INVALID,
            format!("{vault}: {at} is not a regular file (a device, FIFO or socket)"),
        ),
        Ext4Error::TooManySymlinks => CliError::new(
            code::INVALID,
            format!("{vault}: {at}: too many levels of symbolic links (a symlink loop?)"),
        ),
        Ext4Error::Encrypted => CliError::new(
            code::INVALID,
            format!("{vault}: {at} uses ext4 file encryption (fscrypt), which tazpod cannot read"),
        ),
        Ext4Error::NotAbsolute | Ext4Error::MalformedPath | Ext4Error::PathTooLong => {
            CliError::new(
                code::INVALID,
                format!("{vault}: {at} is not a valid path in the vault: {e}"),
            )
        }
        Ext4Error::Io(inner) => CliError::new(
            code::DEVICE,
            format!("{vault}: reading {at} failed: {inner}"),
        ),
        Ext4Error::Incompatible(i) => CliError::new(
            code::INVALID,
            format!("{vault}: the filesystem uses a feature tazpod cannot read: {i}"),
        )
        .hint("open the vault with `tazpod open` or ghost mode instead (they need root)"),
        Ext4Error::Corrupt(c) => CliError::new(
            code::INVALID,
            match path {
                Some(p) => format!(
                    "{vault}: the filesystem in the vault is corrupt (reading {}): {c}",
                    shown(p)
                ),
                None => format!("{vault}: the filesystem in the vault is corrupt: {c}"),
            },
        )
        .hint(corrupt_hint()),
        other => CliError::new(code::INVALID, format!("{vault}: {at}: {other}")),
    }
}

/// Marks a failed write to standard output (never an exit code: the verbs replace it by
/// [`code::INVALID`] before the error leaves).
pub const WRITE_FAILED: u8 = 255;

/// A failed write to standard output. A closed pipe (`tazpod cat f | head`) is not an error:
/// it gives the quiet marker (code 0, see [`is_quiet`]).
pub fn write_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return CliError::new(code::OK, String::new());
    }
    CliError::new(
        WRITE_FAILED,
        format!("cannot write to standard output: {e}"),
    )
}

/// Whether `e` stands for "the reader went away": stop quietly.
pub fn is_quiet(e: &CliError) -> bool {
    e.code == code::OK
}

/// What `ls` prints for each entry.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    /// Type and permissions, owner, group, size, and symlink targets.
    pub long: bool,
    /// The byte after each entry (newline, or NUL).
    pub end: u8,
}

/// Lists directories of `fs` to `out`, as `tazpod ls` does.
pub struct Lister<'a, W> {
    /// The filesystem.
    pub fs: &'a Ext4,
    /// The vault's name, for messages.
    pub vault: &'a str,
    /// What to print.
    pub fmt: Format,
    /// Where to print.
    pub out: &'a mut W,
    /// Directories a recursive listing may still visit (see [`max_dirs`]).
    pub dirs_left: u64,
    /// When set, every entry listed is also recorded here: full path and type.
    pub found: Option<&'a mut Vec<(Vec<u8>, FileType)>>,
}

impl<W: Write> Lister<'_, W> {
    /// Lists directory `path`; entries are shown as `prefix` + name.
    pub fn dir(
        &mut self,
        path: &[u8],
        prefix: &[u8],
        recursive: bool,
        depth: usize,
    ) -> Result<(), CliError> {
        if depth > MAX_DEPTH {
            return Err(CliError::new(
                code::INVALID,
                format!(
                    "{}: {} is nested more than {MAX_DEPTH} directories deep (a directory loop?)",
                    self.vault,
                    shown(path)
                ),
            )
            .hint(corrupt_hint()));
        }
        self.dirs_left = self.dirs_left.checked_sub(1).ok_or_else(|| {
            CliError::new(
                code::INVALID,
                format!(
                    "{}: listing {} visits more directories than the filesystem can hold \
                     (a directory loop: the filesystem in the vault is corrupt)",
                    self.vault,
                    shown(path)
                ),
            )
            .hint(corrupt_hint())
        })?;
        let mut entries = Vec::new();
        let dir = self
            .fs
            .read_dir(path)
            .map_err(|e| fs_error(self.vault, Some(path), e))?;
        for entry in dir {
            let entry = entry.map_err(|e| fs_error(self.vault, Some(path), e))?;
            let name = entry.file_name().as_ref().to_vec();
            if name == b"." || name == b".." {
                continue;
            }
            let ft = entry
                .file_type()
                .map_err(|e| fs_error(self.vault, Some(path), e))?;
            entries.push((name, ft));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, ft) in entries {
            let full = join(path, &name);
            let mut rel = prefix.to_vec();
            rel.extend_from_slice(&name);
            if self.fmt.long {
                let meta = self
                    .fs
                    .symlink_metadata(full.as_slice())
                    .map_err(|e| fs_error(self.vault, Some(&full), e))?;
                self.entry(&full, &rel, &meta)?;
            } else {
                self.line(&rel)?;
            }
            if let Some(found) = self.found.as_deref_mut() {
                found.push((full.clone(), ft));
            }
            if recursive && ft.is_dir() {
                rel.push(b'/');
                self.dir(&full, &rel, true, depth + 1)?;
            }
        }
        Ok(())
    }

    /// One entry in the chosen format.
    pub fn entry(&mut self, full: &[u8], rel: &[u8], meta: &Metadata) -> Result<(), CliError> {
        if !self.fmt.long {
            return self.line(rel);
        }
        let mut text = format!(
            "{} {:>5} {:>5} {:>10} ",
            mode_string(meta.file_type(), meta.mode()),
            meta.uid(),
            meta.gid(),
            meta.len()
        )
        .into_bytes();
        text.extend_from_slice(rel);
        if meta.is_symlink() {
            let target = self
                .fs
                .read_link(full)
                .map_err(|e| fs_error(self.vault, Some(full), e))?;
            text.extend_from_slice(b" -> ");
            text.extend_from_slice(target.as_ref());
        }
        self.line(&text)
    }

    fn line(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        self.out
            .write_all(bytes)
            .and_then(|()| self.out.write_all(&[self.fmt.end]))
            .map_err(write_error)
    }
}

/// `dir` + `/` + `name`.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The type and permission column of `ls -l` (`drwxr-xr-x`).
pub fn mode_string(ft: FileType, mode: u16) -> String {
    let t = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_dev() {
        'c'
    } else if ft.is_block_dev() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_socket() {
        's'
    } else {
        '-'
    };
    let bit = |mask: u16, c: char| if mode & mask != 0 { c } else { '-' };
    let special = |x: bool, set: bool, on: char, off: char, plain: char| match (set, x) {
        (true, true) => on,
        (true, false) => off,
        (false, true) => plain,
        (false, false) => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(
        mode & 0o100 != 0,
        mode & 0o4000 != 0,
        's',
        'S',
        'x',
    ));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(
        mode & 0o010 != 0,
        mode & 0o2000 != 0,
        's',
        'S',
        'x',
    ));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(
        mode & 0o001 != 0,
        mode & 0o1000 != 0,
        't',
        'T',
        'x',
    ));
    s
}

/// Copies one file of the vault to `out` in [`CAT_CHUNK`] pieces through `buf`, at most `max`
/// bytes of it; returns the bytes copied.
pub fn stream(
    fs: &Ext4,
    vault: &str,
    path: &[u8],
    buf: &mut SecretBuf,
    out: &mut impl Write,
    max: u64,
) -> Result<u64, CliError> {
    let mut file = fs.open(path).map_err(|e| fs_error(vault, Some(path), e))?;
    let mut total = 0u64;
    loop {
        let room = usize::try_from(max.saturating_sub(total)).unwrap_or(usize::MAX);
        let cap = buf.len().min(room);
        let mut n = 0usize;
        while let Some(rest) = buf.as_mut_bytes().get_mut(n..cap).filter(|r| !r.is_empty()) {
            let got = file
                .read_bytes(rest)
                .map_err(|e| fs_error(vault, Some(path), e))?;
            if got == 0 {
                break;
            }
            n += got;
        }
        if n == 0 {
            return Ok(total);
        }
        let chunk = buf.as_bytes().get(..n).unwrap_or_default();
        out.write_all(chunk).map_err(write_error)?;
        total += n as u64;
    }
}

/// What [`walk_all`] did.
#[allow(dead_code)] // The binary's verbs walk one path at a time; the tests and fuzz target use it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalkSummary {
    /// Entries listed (all but `.` and `..`, in every directory).
    pub entries: usize,
    /// Files (and symlinks to files) read to the end or to the limit.
    pub files_read: usize,
    /// Bytes read from them.
    pub bytes: u64,
    /// Files or links that failed to read or resolve (each a clean error).
    pub failures: usize,
}

/// Everything the verbs can do to a filesystem, on all of it: `ls -R --long` of the root
/// (every directory listed, every entry's metadata read, every symlink's target read), then,
/// for every entry that is not a directory, what `cat` and `run` do with it: its metadata
/// through symlinks and its content (at most `max_file_bytes` per file). Returns the first
/// error of the listing; a file that fails to read is counted, as `cat` goes on to the next.
#[allow(dead_code)] // Used by the tests and the fuzz target.
pub fn walk_all(
    fs: &Ext4,
    vault: &str,
    max_dirs: u64,
    max_file_bytes: u64,
) -> Result<WalkSummary, CliError> {
    let mut found = Vec::new();
    Lister {
        fs,
        vault,
        fmt: Format { long: true, end: 0 },
        out: &mut io::sink(),
        dirs_left: max_dirs,
        found: Some(&mut found),
    }
    .dir(b"/", b"", true, 0)?;
    let mut summary = WalkSummary {
        entries: found.len(),
        ..WalkSummary::default()
    };
    let mut buf = SecretBuf::zeroed(CAT_CHUNK);
    for (path, ft) in &found {
        if ft.is_dir() {
            continue;
        }
        let read = fs
            .metadata(path.as_slice())
            .map_err(|e| fs_error(vault, Some(path), e))
            .and_then(|_| stream(fs, vault, path, &mut buf, &mut io::sink(), max_file_bytes));
        match read {
            Ok(n) => {
                summary.files_read += 1;
                summary.bytes += n;
            }
            Err(_) => summary.failures += 1,
        }
    }
    Ok(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings() {
        let fs = FileType::Regular;
        assert_eq!(mode_string(fs, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(FileType::Directory, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(fs, 0o4754), "-rwsr-xr--");
        assert_eq!(mode_string(fs, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(FileType::Symlink, 0o777), "lrwxrwxrwx");
    }

    #[test]
    fn shown_escapes_and_join_adds_one_slash() {
        assert_eq!(shown(b"/new\nline"), "'/new\\nline'");
        assert_eq!(join(b"/", b"a"), b"/a");
        assert_eq!(join(b"/a", b"b"), b"/a/b");
    }

    /// A superblock: 1 KiB blocks, `blocks` of them, `per_group` per group.
    fn superblock(blocks: u32, per_group: u32) -> [u8; 1024] {
        let mut sb = [0u8; 1024];
        sb[4..8].copy_from_slice(&blocks.to_le_bytes());
        sb[32..36].copy_from_slice(&per_group.to_le_bytes());
        sb[0x38..0x3a].copy_from_slice(&[0x53, 0xef]);
        sb
    }

    #[test]
    fn the_group_count_is_capped() {
        assert_eq!(check_geometry(&superblock(512, 8192), 512 * 1024), Ok(()));
        // Left to ext4-view, which refuses them: larger than the device, too few or too many
        // blocks per group, not ext4.
        assert_eq!(check_geometry(&superblock(513, 8192), 512 * 1024), Ok(()));
        assert_eq!(check_geometry(&superblock(u32::MAX, 8), 1 << 20), Ok(()));
        for odd in [0, 7, 8193] {
            assert_eq!(check_geometry(&superblock(512, odd), 1 << 20), Ok(()));
        }
        let mut sb = superblock(u32::MAX, 0);
        sb[0x38] = 0;
        assert_eq!(check_geometry(&sb, 0), Ok(()));
        // A huge (sparse) device, 8 blocks per group: too many groups for tazpod.
        let e = check_geometry(&superblock(u32::MAX, 8), u64::MAX).unwrap_err();
        assert!(e.contains("536870912 block groups"), "{e}");
        let most = u32::try_from(MAX_GROUPS * 8).unwrap();
        assert_eq!(check_geometry(&superblock(most, 8), u64::MAX), Ok(()));
        assert!(check_geometry(&superblock(most + 1, 8), u64::MAX).is_err());
        // The high word counts only with the 64bit feature, as in the kernel and ext4-view.
        let mut sb = superblock(0, 8);
        sb[0x150] = 1;
        assert_eq!(check_geometry(&sb, u64::MAX), Ok(()));
        sb[0x60] |= 0x80;
        assert!(check_geometry(&sb, u64::MAX).is_err());
        sb[0x20..0x24].copy_from_slice(&(1u32 << 15).to_le_bytes());
        assert_eq!(check_geometry(&sb, u64::MAX), Ok(()));
    }

    #[test]
    fn max_dirs_is_one_per_smallest_inode() {
        assert_eq!(max_dirs(10 << 20), 81920);
    }
}
