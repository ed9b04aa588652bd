//! A [`Host`](super::host::Host) that performs nothing and records every call, with injectable failures: the
//! test double of the session orchestration.

use super::host::{
    Child, DirMode, DirRef, Fork, FormatRequest, HostError, HostResult, Identity, Image,
    ImageRequest, Lock, Mapper, MappingHandle, Mounts, NewImage, VaultMapRequest, VolumeInfo,
};
use super::session::VaultKey;
use crate::kernel::privs::WaitStatus;
use luks2::volume::DataSegment;
use luks2::VolumeKey;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// Records calls as `"op detail"` strings.
#[derive(Debug)]
pub struct RecordingHost {
    /// Every call, in order.
    pub calls: Vec<String>,
    /// Fail the `n`th (1-based) call of this op.
    pub fail: Option<(&'static str, usize)>,
    /// Also fail these ops every time (for teardown tests).
    pub always_fail: Vec<&'static str>,
    /// What `fork` returns.
    pub fork_as: Fork,
    /// What `wait_child` returns.
    pub wait_status: WaitStatus,
    /// What `pending_signal` returns.
    pub pending: Option<i32>,
    /// What `wait_for_joined_shells` returns.
    pub alone: bool,
    /// Contents `read_secret` returns.
    pub files: HashMap<PathBuf, Vec<u8>>,
    /// Programs that exist for `exec` (others fail with NotFound).
    pub programs: Vec<PathBuf>,
    /// The environment of the last `exec`.
    pub exec_env: Vec<(OsString, OsString)>,
    /// Calls per op so far (for `fail`).
    pub counts: HashMap<&'static str, usize>,
}

impl Default for RecordingHost {
    fn default() -> Self {
        RecordingHost {
            calls: Vec::new(),
            fail: None,
            always_fail: Vec::new(),
            fork_as: Fork::Parent(4242),
            wait_status: WaitStatus::Exited(0),
            pending: None,
            alone: true,
            files: HashMap::new(),
            programs: Vec::new(),
            exec_env: Vec::new(),
            counts: HashMap::new(),
        }
    }
}

impl RecordingHost {
    fn call(&mut self, op: &'static str, detail: impl AsRef<str>) -> HostResult<()> {
        let d = detail.as_ref();
        self.calls.push(if d.is_empty() {
            op.to_string()
        } else {
            format!("{op} {d}")
        });
        let n = self.counts.entry(op).or_insert(0);
        *n += 1;
        let injected = self.fail.is_some_and(|(f, k)| f == op && k == *n);
        if injected || self.always_fail.contains(&op) {
            return Err(HostError::new(
                op,
                d.to_string(),
                io::Error::other("injected failure"),
            ));
        }
        Ok(())
    }

    /// The calls made, from the first one named `op` on.
    pub fn calls_from(&self, op: &str) -> Vec<String> {
        let start = self
            .calls
            .iter()
            .position(|c| c == op || c.starts_with(&format!("{op} ")))
            .unwrap_or(self.calls.len());
        self.calls[start..].to_vec()
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

impl Image for RecordingHost {
    fn create_image(&mut self, req: &ImageRequest) -> HostResult<NewImage> {
        self.call(
            "create_image",
            format!(
                "{} size={} owner={} replace={}",
                p(&req.path),
                req.size,
                req.owner.as_ref().map_or(0, |u| u.uid),
                req.replace
            ),
        )?;
        // As the real host names it: `.NAME.tazpod-new-XXXXXXXX` next to the vault, and the
        // `<dev>-<ino>` in hex of the new file.
        let mut temp = std::ffi::OsString::from(".");
        temp.push(req.path.file_name().unwrap_or_default());
        temp.push(".tazpod-new-0000002a");
        Ok(NewImage {
            temp: req.path.with_file_name(temp),
            path: req.path.clone(),
            id: "801-2a".into(),
        })
    }

    fn format_image(&mut self, image: &NewImage, req: &FormatRequest<'_>) -> HostResult<VaultKey> {
        self.call(
            "format_image",
            format!("{} pbkdf={}", p(&image.temp), req.spec.kdf.pbkdf),
        )?;
        // What the real host reads back from the header it wrote with this spec: the spec's
        // UUID (else a random one), cipher, key length, sector size and data offset, digest 0
        // of keyslot 0, no persistent flags.
        let uuid = req.spec.uuid.clone();
        Ok(VaultKey {
            volume: VolumeInfo {
                version: 2,
                uuid: uuid.unwrap_or_else(|| "0b8c2a4e-6f1d-4c3a-9e57-2d4f6a8b1c3e".into()),
                persistent_flags: vec![],
                segment: DataSegment {
                    offset: req.spec.layout.data_offset,
                    size: None,
                    encryption: req.spec.cipher.clone(),
                    key_size: req.spec.key_len,
                    sector_size: req.spec.sector_size,
                    iv_tweak: 0,
                },
                digest: 0,
            },
            key: VolumeKey::from_vec(vec![0x22; req.spec.key_len]),
        })
    }

    fn make_filesystem(
        &mut self,
        how: &super::session::Mkfs,
        device: &Path,
        sector_size: u32,
        owner: (u32, u32),
    ) -> HostResult<()> {
        let what = match how {
            super::session::Mkfs::Builtin => {
                format!("builtin {} root_owner={}:{}", p(device), owner.0, owner.1)
            }
            super::session::Mkfs::Tool(program) => {
                let args = super::session::mkfs_args(device, sector_size, owner);
                let shown: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
                format!("{} {}", p(program), shown.join(" "))
            }
        };
        self.call("make_filesystem", what)
    }

    fn publish_image(&mut self, image: &NewImage) -> HostResult<()> {
        self.call(
            "publish_image",
            format!("{} {}", p(&image.temp), p(&image.path)),
        )
    }

    fn remove_image(&mut self, image: &NewImage) -> HostResult<()> {
        self.call("remove_image", p(&image.temp))
    }
}

impl Mapper for RecordingHost {
    fn map_vault(&mut self, req: &VaultMapRequest<'_>) -> HostResult<MappingHandle> {
        self.call(
            "map_vault",
            format!(
                "{} {} ro={} keylen={}",
                p(req.vault),
                req.name,
                req.readonly,
                req.key.len()
            ),
        )?;
        Ok(MappingHandle {
            name: req.name.to_string(),
            node: req.node_dir.join(req.name),
            dev: (253 << 8) | 7,
        })
    }

    fn hold_mapping(&mut self, m: &MappingHandle) -> HostResult<()> {
        self.call("hold_mapping", &m.name)
    }

    fn defer_remove(&mut self, m: &MappingHandle) -> HostResult<()> {
        self.call("defer_remove", &m.name)
    }

    fn release_mapping(&mut self, m: &MappingHandle) -> HostResult<()> {
        self.call("release_mapping", &m.name)
    }

    fn remove_mapping(&mut self, m: &MappingHandle) -> HostResult<()> {
        self.call("remove_mapping", &m.name)
    }
}

impl Mounts for RecordingHost {
    fn unshare_mount_ns(&mut self) -> HostResult<()> {
        self.call("unshare_mount_ns", "")
    }

    fn make_rprivate(&mut self, path: &Path) -> HostResult<()> {
        self.call("make_rprivate", p(path))
    }

    fn mount_tmpfs(&mut self, target: &Path) -> HostResult<()> {
        self.call("mount_tmpfs", p(target))
    }

    fn make_dir(&mut self, path: &Path, mode: u32) -> HostResult<()> {
        self.call("make_dir", format!("{} {mode:o}", p(path)))
    }

    fn mount_ext4(&mut self, device: &Path, target: &Path, readonly: bool) -> HostResult<()> {
        self.call(
            "mount_ext4",
            format!("{} {} ro={readonly}", p(device), p(target)),
        )
    }

    fn chown(&mut self, path: &Path, uid: u32, gid: u32) -> HostResult<()> {
        self.call("chown", format!("{} {uid}:{gid}", p(path)))
    }

    fn open_user_dir(&mut self, path: &Path, user: &Identity, mode: DirMode) -> HostResult<DirRef> {
        self.call(
            "open_user_dir",
            format!(
                "{} as {} create={} owned={}",
                p(path),
                user.uid,
                mode.create,
                mode.owned
            ),
        )?;
        Ok(DirRef::by_path(path))
    }

    fn open_vault_dir(
        &mut self,
        root: &Path,
        rel: &Path,
        user: &Identity,
        create: bool,
    ) -> HostResult<DirRef> {
        self.call(
            "open_vault_dir",
            format!(
                "{} beneath {} as {} create={create}",
                p(rel),
                p(root),
                user.uid
            ),
        )?;
        Ok(DirRef::by_path(&root.join(rel)))
    }

    fn move_mount(&mut self, from: &Path, to: &DirRef) -> HostResult<()> {
        self.call("move_mount", format!("{} {}", p(from), p(&to.path)))
    }

    fn bind_mount(&mut self, from: &DirRef, to: &DirRef, readonly: bool) -> HostResult<()> {
        self.call(
            "bind_mount",
            format!("{} {} ro={readonly}", p(&from.path), p(&to.path)),
        )
    }

    fn join_namespace(&mut self, pid: u32, ns_dev: u64, ns_ino: u64) -> HostResult<()> {
        self.call("join_namespace", format!("{pid} {ns_dev}:{ns_ino}"))
    }

    fn kill_namespace_stragglers(&mut self) -> HostResult<usize> {
        self.call("kill_namespace_stragglers", "")?;
        Ok(0)
    }

    fn umount(&mut self, target: &Path) -> HostResult<()> {
        self.call("umount", p(target))
    }
}

impl Lock for RecordingHost {
    fn session_ready(&mut self) -> HostResult<()> {
        self.call("session_ready", "")
    }

    fn wait_for_joined_shells(&mut self) -> HostResult<bool> {
        self.call("wait_for_joined_shells", "")?;
        Ok(self.alone)
    }
}

impl Child for RecordingHost {
    fn block_signals(&mut self) -> HostResult<()> {
        self.call("block_signals", "")
    }

    fn pending_signal(&mut self) -> HostResult<Option<i32>> {
        self.call("pending_signal", "")?;
        Ok(self.pending)
    }

    fn getpid(&mut self) -> u32 {
        1000
    }

    fn fork(&mut self) -> HostResult<Fork> {
        self.call("fork", "")?;
        Ok(self.fork_as)
    }

    fn set_groups(&mut self, groups: &[u32]) -> HostResult<()> {
        self.call("set_groups", format!("{groups:?}"))
    }

    fn set_resgid(&mut self, gid: u32) -> HostResult<()> {
        self.call("set_resgid", gid.to_string())
    }

    fn clear_ambient_caps(&mut self) -> HostResult<()> {
        self.call("clear_ambient_caps", "")
    }

    fn drop_bounding_set(&mut self) -> HostResult<()> {
        self.call("drop_bounding_set", "")
    }

    fn set_resuid(&mut self, uid: u32) -> HostResult<()> {
        self.call("set_resuid", uid.to_string())
    }

    fn clear_caps(&mut self) -> HostResult<()> {
        self.call("clear_caps", "")
    }

    fn set_no_new_privs(&mut self) -> HostResult<()> {
        self.call("set_no_new_privs", "")
    }

    fn die_with_parent(&mut self, parent: u32) -> HostResult<()> {
        self.call("die_with_parent", parent.to_string())
    }

    fn close_stray_fds(&mut self) -> HostResult<()> {
        self.call("close_stray_fds", "")
    }

    fn chdir(&mut self, dir: &Path) -> HostResult<()> {
        self.call("chdir", p(dir))
    }

    fn read_secret(&mut self, path: &Path) -> HostResult<Vec<u8>> {
        self.call("read_secret", p(path))?;
        self.files.get(path).cloned().ok_or_else(|| {
            HostError::new("read", p(path), io::Error::from(io::ErrorKind::NotFound))
        })
    }

    fn reset_signals(&mut self) -> HostResult<()> {
        self.call("reset_signals", "")
    }

    fn exec(
        &mut self,
        program: &Path,
        argv: &[OsString],
        env: &[(OsString, OsString)],
    ) -> HostError {
        let shown: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into()).collect();
        if let Err(e) = self.call("exec", format!("{} {shown:?}", p(program))) {
            return e;
        }
        self.exec_env = env.to_vec();
        let kind = if self.programs.iter().any(|x| x == program) {
            // A real exec would not return; report "permission denied" to end the child.
            io::ErrorKind::PermissionDenied
        } else {
            io::ErrorKind::NotFound
        };
        HostError::new("exec", p(program), io::Error::from(kind))
    }

    fn child_exit(&mut self, code: i32, _err: &HostError) {
        self.calls.push(format!("child_exit {code}"));
    }

    fn wait_child(&mut self, pid: u32) -> HostResult<WaitStatus> {
        self.call("wait_child", pid.to_string())?;
        Ok(self.wait_status)
    }
}
