//! As root only: the whole lifecycle with the real host, device-mapper aside (the vault
//! is a tmpfs "mounted" where ext4 would be), in a forked single-threaded child.
#![allow(clippy::unwrap_used)]
use super::{shown, RealHost};
use crate::ghost::host::{
    Child, DirMode, DirRef, ExecSpec, Fork, FormatRequest, HostError, HostResult, Identity, Image,
    ImageRequest, Lock, Mapper, MappingHandle, Mounts, NewImage, VaultMapRequest, VolumeInfo,
};
use crate::ghost::session::{run_holder, Bind, Mkfs, SessionEnd, SessionPlan, ShellPlan, VaultKey};
use crate::kernel::mount;
use crate::kernel::privs::{self, WaitStatus};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use luks2::volume::DataSegment;
use luks2::VolumeKey;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The real host with the dm operations replaced: `mount_ext4` mounts a tmpfs.
struct NoDm(RealHost);

/// `impl $trait for NoDm`: the listed methods forwarded to the real host, then the
/// methods written out.
macro_rules! delegate {
    ($tr:ident { $($name:ident($($a:ident: $t:ty),*) -> $r:ty;)* } $($own:tt)*) => {
        impl $tr for NoDm {
            $(fn $name(&mut self, $($a: $t),*) -> $r { self.0.$name($($a),*) })*
            $($own)*
        }
    };
}

delegate!(Image {
    create_image(r: &ImageRequest) -> HostResult<NewImage>;
    format_image(i: &NewImage, r: &FormatRequest<'_>) -> HostResult<VaultKey>;
    make_filesystem(how: &Mkfs, d: &Path, s: u32, o: (u32, u32)) -> HostResult<()>;
    publish_image(i: &NewImage) -> HostResult<()>;
    remove_image(i: &NewImage) -> HostResult<()>;
});

delegate!(Mounts {
    unshare_mount_ns() -> HostResult<()>;
    make_rprivate(p: &Path) -> HostResult<()>;
    mount_tmpfs(p: &Path) -> HostResult<()>;
    make_dir(p: &Path, m: u32) -> HostResult<()>;
    chown(p: &Path, u: u32, g: u32) -> HostResult<()>;
    open_user_dir(p: &Path, u: &Identity, m: DirMode) -> HostResult<DirRef>;
    open_vault_dir(r: &Path, p: &Path, u: &Identity, c: bool) -> HostResult<DirRef>;
    move_mount(f: &Path, t: &DirRef) -> HostResult<()>;
    bind_mount(f: &DirRef, t: &DirRef, r: bool) -> HostResult<()>;
    join_namespace(p: u32, d: u64, i: u64) -> HostResult<()>;
    kill_namespace_stragglers() -> HostResult<usize>;
    umount(p: &Path) -> HostResult<()>;
}
    fn mount_ext4(&mut self, _: &Path, target: &Path, _: bool) -> HostResult<()> {
        mount::mount_tmpfs(target, libc::MS_NOSUID | libc::MS_NODEV)
            .map_err(|e| HostError::new("mount", shown(target), e))
    }
);

delegate!(Lock {
    session_ready() -> HostResult<()>;
    wait_for_joined_shells() -> HostResult<bool>;
});

delegate!(Child {
    block_signals() -> HostResult<()>;
    pending_signal() -> HostResult<Option<i32>>;
    getpid() -> u32;
    fork() -> HostResult<Fork>;
    set_groups(g: &[u32]) -> HostResult<()>;
    set_resgid(g: u32) -> HostResult<()>;
    clear_ambient_caps() -> HostResult<()>;
    drop_bounding_set() -> HostResult<()>;
    set_resuid(u: u32) -> HostResult<()>;
    clear_caps() -> HostResult<()>;
    set_no_new_privs() -> HostResult<()>;
    die_with_parent(p: u32) -> HostResult<()>;
    close_stray_fds() -> HostResult<()>;
    chdir(d: &Path) -> HostResult<()>;
    read_secret(p: &Path) -> HostResult<Vec<u8>>;
    reset_signals() -> HostResult<()>;
    exec(p: &Path, a: &[OsString], e: &[(OsString, OsString)]) -> HostError;
    child_exit(c: i32, e: &HostError) -> ();
    wait_child(p: u32) -> HostResult<WaitStatus>;
});

/// No device-mapper: the mapping exists only as its handle.
impl Mapper for NoDm {
    fn map_vault(&mut self, req: &VaultMapRequest<'_>) -> HostResult<MappingHandle> {
        Ok(MappingHandle {
            name: req.name.into(),
            node: req.node_dir.join(req.name),
            dev: 0,
        })
    }
    fn hold_mapping(&mut self, _: &MappingHandle) -> HostResult<()> {
        Ok(())
    }
    fn defer_remove(&mut self, _: &MappingHandle) -> HostResult<()> {
        Ok(())
    }
    fn release_mapping(&mut self, _: &MappingHandle) -> HostResult<()> {
        Ok(())
    }
    fn remove_mapping(&mut self, _: &MappingHandle) -> HostResult<()> {
        Ok(())
    }
}

pub(super) const NOBODY: u32 = 65534;

/// Runs a whole session with `NoDm` in a forked child; returns its exit code and the
/// session report.
fn session_in_child(plan: SessionPlan, shell: ShellPlan, report: PathBuf) -> (i32, String) {
    let st = spawn_session(plan, shell, report.clone()).wait().unwrap();
    (
        st.code().unwrap_or(-1),
        std::fs::read_to_string(report).unwrap_or_default(),
    )
}

fn spawn_session(plan: SessionPlan, shell: ShellPlan, report_path: PathBuf) -> std::process::Child {
    let mut cmd = std::process::Command::new("/bin/true");
    // SAFETY: the closure runs in the forked child, which is single-threaded; it runs
    // the session and leaves with _exit, never returning to the test harness.
    unsafe {
        cmd.pre_exec(move || {
            // Closing std's exec-status pipe lets spawn() return now, not at our exit.
            privs::close_fds_from(3)?;
            let mut host = NoDm(RealHost::default());
            let vault = VaultKey {
                volume: VolumeInfo {
                    version: 2,
                    uuid: "u".into(),
                    persistent_flags: vec![],
                    segment: DataSegment {
                        offset: 0,
                        size: None,
                        encryption: "aes-xts-plain64".into(),
                        key_size: 64,
                        sector_size: 512,
                        iv_tweak: 0,
                    },
                    digest: 0,
                },
                key: VolumeKey::from_vec(vec![0; 64]),
            };
            let r = run_holder(&mut host, &plan, &shell, vault);
            let _ = std::fs::write(&report_path, format!("{r:?}"));
            let code = match r.end {
                SessionEnd::Shell(st) if r.cleanup_errors.is_empty() && r.torn_down => st.code(),
                _ => 99,
            };
            privs::exit_now(code)
        });
    }
    cmd.spawn().unwrap()
}

struct Scene {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    out: PathBuf,
    user: Identity,
}

/// The scene of a test that needs root (`None`, said on stderr, when not root).
fn root_scene() -> Option<Scene> {
    if privs::geteuid() != 0 {
        eprintln!("skipped: needs root");
        return None;
    }
    Some(scene())
}

/// A bind of `source` in the vault on `target`.
fn bind(source: &str, target: PathBuf, readonly: bool) -> Bind {
    Bind {
        source: source.into(),
        target,
        readonly,
    }
}

fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = root.join("home");
    let out = root.join("out");
    for d in [&home, &out] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    // A planted link to a root-owned directory.
    std::os::unix::fs::symlink("/etc", home.join("evil")).unwrap();
    let user = Identity {
        name: "nobody".into(),
        uid: NOBODY,
        gid: NOBODY,
        groups: vec![NOBODY],
        home: home.clone(),
        shell: "/bin/sh".into(),
    };
    Scene {
        _dir: dir,
        root,
        home,
        out,
        user,
    }
}

fn plan(s: &Scene, binds: Vec<Bind>) -> SessionPlan {
    SessionPlan {
        vault: "/nonexistent".into(),
        name: "tazpod-test".into(),
        readonly: false,
        mapper_dir: s.root.join("mapper"),
        mount_point: s.home.join("secrets"),
        binds,
        user: s.user.clone(),
    }
}

fn shell(s: &Scene, script: String) -> ShellPlan {
    ShellPlan {
        user: s.user.clone(),
        exec: ExecSpec {
            program: "/bin/sh".into(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![
                ("TAZPOD_GHOST_MODE".into(), "true".into()),
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("SECRET".into(), "plain".into()),
            ],
            secrets: vec![],
            cwd: vec![s.home.clone()],
        },
        no_new_privs: true,
        drop_bounding_set: true,
    }
}

fn nothing_left(s: &Scene) {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.contains(&s.root.display().to_string()),
        "a mount leaked"
    );
    assert!(!s.home.join("secrets/written").exists());
    assert_eq!(std::fs::read_dir(s.root.join("mapper")).unwrap().count(), 0);
}

#[test]
fn real_lifecycle_without_device_mapper() {
    let Some(s) = root_scene() else { return };
    let binds = vec![
        bind(".cfg", s.home.join(".config/tool"), false),
        bind(".ro", s.home.join(".ro"), true),
    ];
    let script = format!(
        "set -e; o={out}; m={home}/secrets; id -u > $o/uid; \
         grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|CapInh)' /proc/self/status > $o/caps; \
         echo hi > $m/written; stat -c %u $m/written > $o/owner; \
         echo x > $m/.cfg/f; cat {home}/.config/tool/f > $o/bound; \
         if touch {home}/.ro/x 2>/dev/null; then echo rw; else echo ro; fi > $o/ro; \
         grep -c \" $m \" /proc/self/mountinfo > $o/mounted; \
         echo \"$TAZPOD_GHOST_MODE $SECRET\" > $o/env; exit 7",
        out = s.out.display(),
        home = s.home.display()
    );
    let (code, report) =
        session_in_child(plan(&s, binds), shell(&s, script), s.root.join("report"));
    assert_eq!(code, 7, "the shell's status passes through: {report}");
    let read = |f: &str| std::fs::read_to_string(s.out.join(f)).unwrap();
    assert_eq!(read("uid"), "65534\n");
    for l in read("caps").lines() {
        assert!(l.ends_with("0000000000000000"), "{l}");
    }
    assert_eq!(read("owner"), "65534\n");
    assert_eq!(read("bound"), "x\n");
    assert_eq!(read("ro"), "ro\n");
    assert_eq!(read("mounted"), "1\n");
    assert_eq!(read("env"), "true plain\n");
    nothing_left(&s);
}

#[test]
fn sigkill_of_the_session_process_leaves_nothing() {
    let Some(s) = root_scene() else { return };
    let script = format!(
        "echo $$ > {o}/pid.tmp && mv {o}/pid.tmp {o}/pid && exec sleep 60",
        o = s.out.display()
    );
    let mut child = spawn_session(plan(&s, vec![]), shell(&s, script), s.root.join("r"));
    let pidfile = s.out.join("pid");
    for _ in 0..200 {
        if pidfile.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let shell_pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{shell_pid}")).exists());
    child.kill().unwrap();
    child.wait().unwrap();
    // The inner command dies with its parent (PR_SET_PDEATHSIG); reap-free check: its
    // /proc entry goes once init reaps it.
    let mut gone = false;
    for _ in 0..200 {
        let stat = std::fs::read_to_string(format!("/proc/{shell_pid}/stat"));
        if stat.map_or(true, |t| t.contains(") Z ")) {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(gone, "the inner command survived its session process");
    nothing_left(&s);
}

fn wait_for(p: &Path) {
    for _ in 0..250 {
        if p.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{} never appeared", p.display());
}

#[test]
fn a_second_shell_joins_the_live_session() {
    let Some(s) = root_scene() else { return };
    let o = s.out.display().to_string();
    let m = s.home.join("secrets").display().to_string();
    // The first shell writes a file in the vault, then waits for the joiner to finish.
    let first = format!(
        "echo one > {m}/from-first && touch {o}/ready && \
         while [ ! -e {o}/joined ]; do sleep 0.05; done"
    );
    let mut holder = spawn_session(plan(&s, vec![]), shell(&s, first), s.root.join("r1"));
    wait_for(&s.out.join("ready"));
    let pid = holder.id();
    let ns = mount::mount_ns_of(Some(pid)).unwrap();
    assert_ne!(ns, mount::mount_ns_of(None).unwrap());
    let second = shell(
        &s,
        format!("cat {m}/from-first > {o}/seen; id -u >> {o}/seen; touch {o}/joined"),
    );
    let mut joiner = std::process::Command::new("/bin/true");
    // SAFETY: runs in the forked single-threaded child, which leaves with _exit.
    unsafe {
        joiner.pre_exec(move || {
            privs::close_fds_from(3)?;
            let mut host = RealHost::default();
            let r = crate::ghost::session::run_joiner(
                &mut host,
                crate::ghost::session::JoinTarget {
                    pid,
                    ns_dev: ns.dev,
                    ns_ino: ns.ino,
                },
                &second,
            );
            privs::exit_now(match r.end {
                SessionEnd::Shell(st) => st.code(),
                _ => 99,
            })
        });
    }
    assert_eq!(joiner.status().unwrap().code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(s.out.join("seen")).unwrap(),
        "one\n65534\n"
    );
    assert_eq!(holder.wait().unwrap().code(), Some(0));
    nothing_left(&s);
}

#[test]
fn a_bind_over_a_root_directory_is_refused_and_unwound() {
    let Some(s) = root_scene() else { return };
    let binds = vec![
        bind(".cfg", s.home.join(".config/tool"), false),
        bind(".x", s.home.join("evil"), false),
    ];
    let (code, report) = session_in_child(
        plan(&s, binds),
        shell(&s, "exit 0".into()),
        s.root.join("report"),
    );
    assert_eq!(code, 99);
    assert!(report.contains("owned by uid 0"), "{report}");
    assert!(report.contains("cleanup_errors: []"), "{report}");
    nothing_left(&s);
}

#[test]
fn open_user_dir_resolves_as_the_user() {
    if privs::geteuid() != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    std::os::unix::fs::symlink("/root", home.join("to-root")).unwrap();
    std::os::unix::fs::symlink("/etc", home.join("to-etc")).unwrap();
    let user = Identity {
        name: "nobody".into(),
        uid: NOBODY,
        gid: NOBODY,
        groups: vec![NOBODY],
        home: home.clone(),
        shell: "/bin/sh".into(),
    };
    let mut h = RealHost::default();
    let mk = DirMode {
        create: true,
        owned: true,
    };
    // created as the user
    let d = h.open_user_dir(&home.join("a/b"), &user, mk).unwrap();
    assert!(d.fd.is_some());
    assert_eq!(std::fs::metadata(home.join("a/b")).unwrap().uid(), NOBODY);
    // root-only places cannot be reached, root-owned ones are refused as targets
    let e = h
        .open_user_dir(&home.join("to-root/x"), &user, mk)
        .unwrap_err();
    assert_eq!(e.source.kind(), io::ErrorKind::PermissionDenied, "{e}");
    assert!(!Path::new("/root/x").exists());
    let e = h
        .open_user_dir(&home.join("to-etc"), &user, mk)
        .unwrap_err();
    assert!(e.to_string().contains("owned by uid 0"), "{e}");
    // root's own rights are back afterwards
    assert!(std::fs::File::create(dir.path().join("root-can-write")).is_ok());
}

#[test]
fn bind_sources_resolve_beneath_the_vault_without_links() {
    if privs::geteuid() != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // the vault's root, owned by the user as after the chown
    let vault = dir.path().join("vault");
    std::fs::create_dir(&vault).unwrap();
    std::os::unix::fs::chown(&vault, Some(NOBODY), Some(NOBODY)).unwrap();
    std::os::unix::fs::symlink("/", vault.join("rootlink")).unwrap();
    std::os::unix::fs::symlink("real", vault.join("inner-link")).unwrap();
    std::fs::create_dir(vault.join("real")).unwrap();
    let user = nobody(dir.path());
    let mut h = RealHost::default();
    // a real directory, and a missing one made as the user
    assert!(h
        .open_vault_dir(&vault, Path::new("real"), &user, false)
        .is_ok());
    let d = h
        .open_vault_dir(&vault, Path::new("new/sub"), &user, true)
        .unwrap();
    assert_eq!(d.path, vault.join("new/sub"));
    assert_eq!(
        std::fs::metadata(vault.join("new/sub")).unwrap().uid(),
        NOBODY
    );
    // a link out of the vault, a link inside it, through a link: refused
    for bad in ["rootlink", "rootlink/etc", "rootlink/root/x", "inner-link"] {
        let e = h
            .open_vault_dir(&vault, Path::new(bad), &user, true)
            .unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{bad}: {e}");
    }
    assert!(!Path::new("/root/x").exists());
    // nothing but plain names
    assert!(h
        .open_vault_dir(&vault, Path::new("../x"), &user, true)
        .is_err());
    // root's own rights are back afterwards
    assert!(std::fs::File::create(dir.path().join("root-can-write")).is_ok());
}

pub(super) fn nobody(home: &Path) -> Identity {
    Identity {
        name: "nobody".into(),
        uid: NOBODY,
        gid: NOBODY,
        groups: vec![NOBODY],
        home: home.to_path_buf(),
        shell: "/bin/sh".into(),
    }
}
