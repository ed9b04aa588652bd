//! The filesystem side of `ls`, `cat` and `run`: listing directories, streaming files and
//! saying what an `ext4-view` error means and where it happened ([`TreeError`]), over any
//! [`Ext4`] (no vault, no passphrase, no terminal). The verbs give it the decrypting reader of a vault; the fuzz crate compiles this
//! file too (`fuzz/src/lib.rs`, `#[path]`) and its `ext4` target walks whole fuzzed images
//! with [`walk_all`], through the same code.
//!
//! Nothing here panics on a corrupt filesystem, and nothing loops for ever: a recursive listing
//! stops at [`MAX_DEPTH`] levels and after [`max_dirs`] directories (a directory loop in a
//! corrupt image would otherwise be walked again and again).

use ext4_view::{Ext4, Ext4Error, Ext4Read, FileType, Metadata};
use luks2::SecretBuf;
use std::fmt;
use std::io::{self, Write};

/// What stopped a walk of the filesystem. Each message starts with the vault's name (the
/// writes to the output excepted). The file imports nothing of the crate: the fuzz crate
/// compiles it alone.
#[derive(Debug)]
pub enum TreeError {
    /// `ext4-view` failed on `path` (`None`: on the filesystem as a whole).
    Fs {
        vault: String,
        path: Option<Vec<u8>>,
        error: Ext4Error,
    },
    /// [`check_geometry`] refused the superblock (`what`: its words).
    Geometry { vault: String, what: String },
    /// A directory nested more than [`MAX_DEPTH`] directories deep.
    TooDeep { vault: String, path: Vec<u8> },
    /// A recursive listing visited more directories than [`max_dirs`] allows.
    DirLoop { vault: String, path: Vec<u8> },
    /// A write to the output failed.
    Write(io::Error),
    /// The output's reader went away (a closed pipe, `tazpod cat f | head`): not an error, the
    /// verbs stop quietly.
    Closed,
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::Fs { vault, path, error } => {
                let at = path
                    .as_deref()
                    .map_or_else(|| "the vault's filesystem".to_string(), shown);
                match error {
                    Ext4Error::NotFound => write!(f, "{vault}: {at} does not exist in the vault"),
                    Ext4Error::NotADirectory => write!(
                        f,
                        "{vault}: {at} is not a directory (or a part of it is not)"
                    ),
                    Ext4Error::IsADirectory => {
                        write!(f, "{vault}: {at} is a directory, not a file")
                    }
                    Ext4Error::IsASpecialFile => write!(
                        f,
                        "{vault}: {at} is not a regular file (a device, FIFO or socket)"
                    ),
                    Ext4Error::TooManySymlinks => write!(
                        f,
                        "{vault}: {at}: too many levels of symbolic links (a symlink loop?)"
                    ),
                    Ext4Error::Encrypted => write!(
                        f,
                        "{vault}: {at} uses ext4 file encryption (fscrypt), which tazpod cannot \
                         read"
                    ),
                    Ext4Error::NotAbsolute | Ext4Error::MalformedPath | Ext4Error::PathTooLong => {
                        write!(f, "{vault}: {at} is not a valid path in the vault: {error}")
                    }
                    Ext4Error::Io(inner) => write!(f, "{vault}: reading {at} failed: {inner}"),
                    Ext4Error::Incompatible(i) => write!(
                        f,
                        "{vault}: the filesystem uses a feature tazpod cannot read: {i}"
                    ),
                    Ext4Error::Corrupt(c) => match path {
                        Some(p) => write!(
                            f,
                            "{vault}: the filesystem in the vault is corrupt (reading {}): {c}",
                            shown(p)
                        ),
                        None => write!(f, "{vault}: the filesystem in the vault is corrupt: {c}"),
                    },
                    other => write!(f, "{vault}: {at}: {other}"),
                }
            }
            TreeError::Geometry { vault, what } => {
                write!(f, "{vault}: the filesystem in the vault is corrupt: {what}")
            }
            TreeError::TooDeep { vault, path } => write!(
                f,
                "{vault}: {} is nested more than {MAX_DEPTH} directories deep (a directory loop?)",
                shown(path)
            ),
            TreeError::DirLoop { vault, path } => write!(
                f,
                "{vault}: listing {} visits more directories than the filesystem can hold (a \
                 directory loop: the filesystem in the vault is corrupt)",
                shown(path)
            ),
            TreeError::Write(e) => write!(f, "cannot write to standard output: {e}"),
            TreeError::Closed => write!(f, "the reader of the output went away"),
        }
    }
}

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
pub fn load(mut reader: Box<dyn Ext4Read>, vault: &str, len: u64) -> Result<Ext4, TreeError> {
    let mut sb = [0u8; 1024];
    reader
        .read(1024, &mut sb)
        .map_err(|e| fs_error(vault, None, Ext4Error::Io(e)))?;
    check_geometry(&sb, len).map_err(|what| TreeError::Geometry {
        vault: vault.to_string(),
        what,
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

/// The error of `ext4-view` met on `path` (or on the filesystem as a whole) of `vault`.
pub fn fs_error(vault: &str, path: Option<&[u8]>, error: Ext4Error) -> TreeError {
    TreeError::Fs {
        vault: vault.to_string(),
        path: path.map(<[u8]>::to_vec),
        error,
    }
}

/// A failed write to the output; a closed pipe is [`TreeError::Closed`].
pub fn write_error(e: io::Error) -> TreeError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        TreeError::Closed
    } else {
        TreeError::Write(e)
    }
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
    ) -> Result<(), TreeError> {
        if depth > MAX_DEPTH {
            return Err(TreeError::TooDeep {
                vault: self.vault.to_string(),
                path: path.to_vec(),
            });
        }
        self.dirs_left = self
            .dirs_left
            .checked_sub(1)
            .ok_or_else(|| TreeError::DirLoop {
                vault: self.vault.to_string(),
                path: path.to_vec(),
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
    pub fn entry(&mut self, full: &[u8], rel: &[u8], meta: &Metadata) -> Result<(), TreeError> {
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

    fn line(&mut self, bytes: &[u8]) -> Result<(), TreeError> {
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
) -> Result<u64, TreeError> {
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
) -> Result<WalkSummary, TreeError> {
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
