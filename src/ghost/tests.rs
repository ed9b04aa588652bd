//! Orchestration tests through the recording host: the order of every step, the unwinding
//! after a failure at each setup step, teardown that attempts everything, the child's
//! privilege drop, joining.
#![allow(clippy::unwrap_used)]

use super::host::{ExecSpec, Fork, Identity, SecretVar, VolumeInfo};
use super::recording::RecordingHost;
use super::session::{
    run_holder, run_joiner, Bind, JoinTarget, Report, SessionEnd, SessionPlan, ShellPlan, VaultKey,
};
use crate::kernel::privs::WaitStatus;
use luks2::volume::DataSegment;
use luks2::VolumeKey;

fn user() -> Identity {
    Identity {
        name: "tazpod".into(),
        uid: 1000,
        gid: 1000,
        groups: vec![1000, 27],
        home: "/home/tazpod".into(),
        shell: "/bin/bash".into(),
    }
}

fn plan() -> SessionPlan {
    SessionPlan {
        vault: "/workspace/.tazpod-vault/vault.img".into(),
        name: "tazpod-v".into(),
        readonly: false,
        mapper_dir: "/dev/mapper".into(),
        mount_point: "/home/tazpod/secrets".into(),
        binds: vec![
            Bind {
                source: ".gcloud".into(),
                target: "/home/tazpod/.config/gcloud".into(),
                readonly: false,
            },
            Bind {
                source: ".kube".into(),
                target: "/home/tazpod/.kube".into(),
                readonly: true,
            },
        ],
        user: user(),
    }
}

fn shell() -> ShellPlan {
    ShellPlan {
        user: user(),
        exec: ExecSpec {
            program: "/bin/bash".into(),
            argv: vec!["-bash".into()],
            env: vec![
                ("TAZPOD_GHOST_MODE".into(), "true".into()),
                ("PATH".into(), "/usr/bin:/bin".into()),
            ],
            secrets: vec![
                SecretVar {
                    env: "GH_TOKEN".into(),
                    file: "/home/tazpod/secrets/gh/token".into(),
                    as_value: true,
                },
                SecretVar {
                    env: "KUBECONFIG".into(),
                    file: "/home/tazpod/secrets/.kube/config".into(),
                    as_value: false,
                },
            ],
            cwd: vec!["/work".into(), "/home/tazpod".into()],
        },
        no_new_privs: false,
        drop_bounding_set: true,
    }
}

fn vault() -> VaultKey {
    VaultKey {
        volume: VolumeInfo {
            version: 2,
            uuid: "0b7e0b1e-6f3a-4a32-9d41-8f1f2d3c4b5a".into(),
            persistent_flags: vec![],
            segment: DataSegment {
                offset: 16 << 20,
                size: None,
                encryption: "aes-xts-plain64".into(),
                key_size: 64,
                sector_size: 4096,
                iv_tweak: 0,
            },
            digest: 0,
        },
        key: VolumeKey::from_vec(vec![0x11; 64]),
    }
}

fn run(host: &mut RecordingHost, plan: &SessionPlan) -> Report {
    run_holder(host, plan, &shell(), vault())
}

const TMPFS: &str = "umount /dev/mapper";
const UNMAP: [&str; 1] = ["remove_mapping tazpod-v"];
const STAGING: &str = "/dev/mapper/.tazpod-vault";

/// The setup calls of a successful session, each with what must be undone (in order) when
/// it is the call that fails.
/// For a failure injected at row `i` of a table of (call, its unwinding): the failing
/// operation, a host that fails that call (the nth of its operation), and the calls expected
/// (the rows up to it, then its unwinding).
fn failing_at(
    table: &[(String, Vec<String>)],
    i: usize,
) -> (&'static str, RecordingHost, Vec<String>) {
    let op: &'static str = Box::leak(
        table[i]
            .0
            .split(' ')
            .next()
            .unwrap()
            .to_string()
            .into_boxed_str(),
    );
    let nth = table[..=i]
        .iter()
        .filter(|(c, _)| c.split(' ').next() == Some(op))
        .count();
    let host = RecordingHost {
        fail: Some((op, nth)),
        ..RecordingHost::default()
    };
    let mut want: Vec<String> = table[..=i].iter().map(|(c, _)| c.clone()).collect();
    want.extend(table[i].1.iter().cloned());
    (op, host, want)
}

fn setup_table() -> Vec<(String, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let unmap_tmpfs = |pre: &[&str]| {
        let mut v = s(pre);
        v.extend(s(&UNMAP));
        v.push(TMPFS.into());
        v
    };
    let umount_staging = format!("umount {STAGING}");
    let rel = "release_mapping tazpod-v";
    vec![
        ("block_signals".into(), vec![]),
        ("unshare_mount_ns".into(), vec![]),
        ("make_rprivate /".into(), vec![]),
        ("mount_tmpfs /dev/mapper".into(), vec![]),
        (format!("make_dir {STAGING} 700"), s(&[TMPFS])),
        (
            "map_vault /workspace/.tazpod-vault/vault.img tazpod-v ro=false keylen=64".into(),
            s(&[TMPFS]),
        ),
        ("hold_mapping tazpod-v".into(), unmap_tmpfs(&[])),
        ("defer_remove tazpod-v".into(), unmap_tmpfs(&[rel])),
        (
            format!("mount_ext4 /dev/mapper/tazpod-v {STAGING} ro=false"),
            unmap_tmpfs(&[rel]),
        ),
        (rel.into(), unmap_tmpfs(&[&umount_staging, rel])),
        (
            format!("chown {STAGING} 1000:1000"),
            unmap_tmpfs(&[&umount_staging]),
        ),
        (
            format!("open_vault_dir .gcloud beneath {STAGING} as 1000 create=true"),
            unmap_tmpfs(&[&umount_staging]),
        ),
        (
            format!("open_vault_dir .kube beneath {STAGING} as 1000 create=true"),
            unmap_tmpfs(&[&umount_staging]),
        ),
        (
            "open_user_dir /home/tazpod/secrets as 1000 create=true owned=true".into(),
            unmap_tmpfs(&[&umount_staging]),
        ),
        (
            format!("move_mount {STAGING} /home/tazpod/secrets"),
            unmap_tmpfs(&[&umount_staging]),
        ),
        (
            "open_user_dir /home/tazpod/.config/gcloud as 1000 create=true owned=true".into(),
            unmap_tmpfs(&["umount /home/tazpod/secrets"]),
        ),
        (
            format!("bind_mount {STAGING}/.gcloud /home/tazpod/.config/gcloud ro=false"),
            unmap_tmpfs(&["umount /home/tazpod/secrets"]),
        ),
        (
            "open_user_dir /home/tazpod/.kube as 1000 create=true owned=true".into(),
            unmap_tmpfs(&[
                "umount /home/tazpod/.config/gcloud",
                "umount /home/tazpod/secrets",
            ]),
        ),
        (
            format!("bind_mount {STAGING}/.kube /home/tazpod/.kube ro=true"),
            unmap_tmpfs(&[
                "umount /home/tazpod/.config/gcloud",
                "umount /home/tazpod/secrets",
            ]),
        ),
        (
            "pending_signal".into(),
            unmap_tmpfs(&[
                "umount /home/tazpod/.kube",
                "umount /home/tazpod/.config/gcloud",
                "umount /home/tazpod/secrets",
            ]),
        ),
        (
            "session_ready".into(),
            unmap_tmpfs(&[
                "umount /home/tazpod/.kube",
                "umount /home/tazpod/.config/gcloud",
                "umount /home/tazpod/secrets",
            ]),
        ),
    ]
}

fn teardown_calls() -> Vec<String> {
    let mut v: Vec<String> = [
        "kill_namespace_stragglers",
        "umount /home/tazpod/.kube",
        "umount /home/tazpod/.config/gcloud",
        "umount /home/tazpod/secrets",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(UNMAP.iter().map(|s| s.to_string()));
    v.push(TMPFS.into());
    v
}

#[test]
fn full_session_order() {
    let mut host = RecordingHost::default();
    let r = run(&mut host, &plan());
    let mut want: Vec<String> = setup_table().into_iter().map(|(c, _)| c).collect();
    want.extend(
        ["fork", "wait_child 4242", "wait_for_joined_shells"]
            .iter()
            .map(|s| s.to_string()),
    );
    want.extend(teardown_calls());
    assert_eq!(host.calls, want);
    assert!(matches!(r.end, SessionEnd::Shell(WaitStatus::Exited(0))));
    assert!(r.cleanup_errors.is_empty());
    assert!(r.torn_down);
}

#[test]
fn failure_at_each_setup_step_unwinds_exactly_what_was_done() {
    let table = setup_table();
    for (i, (call, _)) in table.iter().enumerate() {
        let (op, mut host, want) = failing_at(&table, i);
        let r = run(&mut host, &plan());
        assert_eq!(host.calls, want, "failure injected at {call}");
        match r.end {
            SessionEnd::SetupFailed(e) => assert_eq!(e.op, op, "at {call}"),
            other => panic!("at {call}: {other:?}"),
        }
        assert!(r.cleanup_errors.is_empty());
        assert!(!host.calls.iter().any(|c| c == "fork"));
    }
}

#[test]
fn signal_during_setup_undoes_everything_and_starts_no_shell() {
    let mut host = RecordingHost {
        pending: Some(libc::SIGINT),
        ..RecordingHost::default()
    };
    let r = run(&mut host, &plan());
    let table = setup_table();
    let i = table
        .iter()
        .position(|(c, _)| c == "pending_signal")
        .unwrap();
    let mut want: Vec<String> = table[..=i].iter().map(|(c, _)| c.clone()).collect();
    want.extend(table[i].1.iter().cloned());
    assert_eq!(host.calls, want);
    assert!(matches!(r.end, SessionEnd::Interrupted(libc::SIGINT)));
}

#[test]
fn teardown_attempts_every_step_even_when_some_fail() {
    let mut host = RecordingHost {
        always_fail: vec!["umount", "remove_mapping"],
        ..RecordingHost::default()
    };
    let r = run(&mut host, &plan());
    assert_eq!(
        host.calls_from("kill_namespace_stragglers"),
        teardown_calls()
    );
    // three unmounts of the session, the mapping, and the tmpfs
    assert_eq!(r.cleanup_errors.len(), 5);
    assert!(r.torn_down);
    assert!(matches!(r.end, SessionEnd::Shell(_)));
}

#[test]
fn unwind_attempts_every_step_even_when_some_fail() {
    let mut host = RecordingHost {
        fail: Some(("bind_mount", 2)),
        always_fail: vec!["remove_mapping"],
        ..RecordingHost::default()
    };
    let r = run(&mut host, &plan());
    let tail = host.calls_from("umount /home/tazpod/.config/gcloud");
    assert_eq!(
        tail,
        vec![
            "umount /home/tazpod/.config/gcloud",
            "umount /home/tazpod/secrets",
            "remove_mapping tazpod-v",
            TMPFS
        ]
    );
    assert_eq!(r.cleanup_errors.len(), 1);
}

#[test]
fn exit_status_passes_through() {
    for st in [WaitStatus::Exited(3), WaitStatus::Signaled(libc::SIGHUP)] {
        let mut host = RecordingHost {
            wait_status: st,
            ..RecordingHost::default()
        };
        let r = run(&mut host, &plan());
        match r.end {
            SessionEnd::Shell(got) => assert_eq!(got, st),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn joined_shells_keep_the_vault_when_interrupted() {
    let mut host = RecordingHost {
        alone: false,
        ..RecordingHost::default()
    };
    let r = run(&mut host, &plan());
    assert_eq!(host.calls.last().unwrap(), "wait_for_joined_shells");
    assert!(!r.torn_down);
}

#[test]
fn readonly_session_maps_and_mounts_readonly_and_does_not_chown() {
    let mut p = plan();
    p.readonly = true;
    let mut host = RecordingHost::default();
    run(&mut host, &p);
    assert!(host
        .calls
        .iter()
        .any(|c| c.ends_with("tazpod-v ro=true keylen=64")));
    assert!(host
        .calls
        .iter()
        .any(|c| c == &format!("mount_ext4 /dev/mapper/tazpod-v {STAGING} ro=true")));
    assert!(!host.calls.iter().any(|c| c.starts_with("chown")));
    assert!(host
        .calls
        .iter()
        .any(|c| c == &format!("open_vault_dir .gcloud beneath {STAGING} as 1000 create=false")));
    assert!(host
        .calls
        .iter()
        .filter(|c| c.starts_with("bind_mount"))
        .all(|c| c.ends_with("ro=true")));
}

#[test]
fn child_drops_privileges_in_order_then_execs() {
    let mut host = RecordingHost {
        fork_as: Fork::Child,
        programs: vec!["/bin/bash".into()],
        ..RecordingHost::default()
    };
    host.files.insert(
        "/home/tazpod/secrets/gh/token".into(),
        b"ghp_secret\n".to_vec(),
    );
    let r = run(&mut host, &plan());
    assert!(matches!(r.end, SessionEnd::ChildReturned));
    assert_eq!(
        host.calls_from("fork"),
        vec![
            "fork",
            "set_groups [1000, 27]",
            "set_resgid 1000",
            "clear_ambient_caps",
            "drop_bounding_set",
            "set_resuid 1000",
            "clear_caps",
            "die_with_parent 1000",
            "close_stray_fds",
            "chdir /work",
            "read_secret /home/tazpod/secrets/gh/token",
            "reset_signals",
            "exec /bin/bash [\"-bash\"]",
            "child_exit 126",
        ]
    );
    let env: Vec<(String, String)> = host
        .exec_env
        .iter()
        .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
        .collect();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("TAZPOD_GHOST_MODE"), Some("true"));
    assert_eq!(get("TAZPOD_SHELL_PID"), Some("1000"));
    assert_eq!(get("GH_TOKEN"), Some("ghp_secret"));
    assert_eq!(get("KUBECONFIG"), Some("/home/tazpod/secrets/.kube/config"));
}

#[test]
fn child_with_no_new_privs_and_a_missing_secret() {
    let mut host = RecordingHost {
        fork_as: Fork::Child,
        programs: vec!["/bin/bash".into()],
        fail: Some(("chdir", 1)),
        ..RecordingHost::default()
    };
    let mut sp = shell();
    sp.no_new_privs = true;
    let p = plan();
    run_holder(&mut host, &p, &sp, vault());
    let c = host.calls_from("clear_caps");
    assert_eq!(c[1], "set_no_new_privs");
    assert_eq!(c[2], "die_with_parent 1000");
    // the first working directory fails, the second is used
    assert!(c.contains(&"chdir /work".to_string()));
    assert!(c.contains(&"chdir /home/tazpod".to_string()));
    // the unreadable secret is skipped, the shell still starts
    assert!(!host.exec_env.iter().any(|(k, _)| k == "GH_TOKEN"));
    assert!(host.exec_env.iter().any(|(k, _)| k == "KUBECONFIG"));
}

#[test]
fn child_stops_at_the_first_failed_drop_and_never_execs() {
    for op in [
        "set_groups",
        "set_resgid",
        "clear_ambient_caps",
        "drop_bounding_set",
        "set_resuid",
        "clear_caps",
        "die_with_parent",
        "close_stray_fds",
        "reset_signals",
    ] {
        let mut host = RecordingHost {
            fork_as: Fork::Child,
            programs: vec!["/bin/bash".into()],
            fail: Some((op, 1)),
            ..RecordingHost::default()
        };
        run(&mut host, &plan());
        assert!(!host.calls.iter().any(|c| c.starts_with("exec")), "{op}");
        assert_eq!(host.calls.last().unwrap(), "child_exit 126", "{op}");
    }
}

#[test]
fn missing_program_is_searched_in_path_then_127() {
    let mut host = RecordingHost {
        fork_as: Fork::Child,
        ..RecordingHost::default()
    };
    let mut sp = shell();
    sp.exec.program = "nosuch".into();
    sp.exec.argv = vec!["nosuch".into()];
    let p = plan();
    run_holder(&mut host, &p, &sp, vault());
    let execs: Vec<&String> = host
        .calls
        .iter()
        .filter(|c| c.starts_with("exec"))
        .collect();
    assert_eq!(
        execs,
        vec![
            "exec /usr/bin/nosuch [\"nosuch\"]",
            "exec /bin/nosuch [\"nosuch\"]"
        ]
    );
    assert_eq!(host.calls.last().unwrap(), "child_exit 127");
}

#[test]
fn joiner_enters_the_namespace_runs_a_shell_and_tears_nothing_down() {
    let mut host = RecordingHost {
        wait_status: WaitStatus::Exited(5),
        ..RecordingHost::default()
    };
    let r = run_joiner(
        &mut host,
        JoinTarget {
            pid: 77,
            ns_dev: 4,
            ns_ino: 4026532000,
        },
        &shell(),
    );
    assert_eq!(
        host.calls,
        vec![
            "block_signals",
            "join_namespace 77 4:4026532000",
            "fork",
            "wait_child 4242"
        ]
    );
    assert!(matches!(r.end, SessionEnd::Shell(WaitStatus::Exited(5))));
    assert!(!r.torn_down);
}

#[test]
fn joiner_that_cannot_enter_starts_nothing() {
    let mut host = RecordingHost {
        fail: Some(("join_namespace", 1)),
        ..RecordingHost::default()
    };
    let r = run_joiner(
        &mut host,
        JoinTarget {
            pid: 77,
            ns_dev: 4,
            ns_ino: 1,
        },
        &shell(),
    );
    assert_eq!(host.calls.len(), 2);
    assert!(matches!(r.end, SessionEnd::SetupFailed(_)));
}

// ---- creating a vault -------------------------------------------------------------------------

use super::host::{FormatRequest, ImageRequest};
use super::session::{create_vault, mkfs_args, run_creator, Mkfs, NewVault, SetupError};
use crate::write::HeaderSpec;
use luks2::Passphrase;
use std::path::Path;

const NEW_TEMP: &str = "/workspace/.tazpod-vault/.vault.img.tazpod-new-0000002a";
const NEW_NAME: &str = "tazpod-801-2a";

fn spec() -> HeaderSpec {
    crate::write::quick_spec()
}

fn new_vault<'a>(spec: &'a HeaderSpec, pass: &'a Passphrase, replace: bool) -> NewVault<'a> {
    NewVault {
        image: ImageRequest {
            path: "/workspace/.tazpod-vault/vault.img".into(),
            size: 512 << 20,
            owner: Some(user()),
            replace,
        },
        format: FormatRequest {
            spec,
            passphrase: pass,
            verbose: false,
        },
        mkfs: Mkfs::Tool("/sbin/mkfs.ext4".into()),
        root_owner: (1000, 1000),
    }
}

fn create_call() -> String {
    "create_image /workspace/.tazpod-vault/vault.img size=536870912 owner=1000 replace=false"
        .to_string()
}

fn mkfs_call() -> String {
    format!(
        "make_filesystem /sbin/mkfs.ext4 -q -F -L tazpod-vault -m 0 -b 4096 \
         -E root_owner=1000:1000,nodiscard /dev/mapper/{NEW_NAME}"
    )
}

/// The setup table of a session on an existing vault, turned into the one of a session that
/// creates its vault: the image and header first, the mapping named after the new file,
/// mkfs.ext4 and the move into place before the mount, and the image removed last by every
/// unwind after it exists.
fn creating_setup_table() -> Vec<(String, Vec<String>)> {
    let remove = format!("remove_image {NEW_TEMP}");
    let rename = |c: &str| renamed(c);
    let mut t = Vec::new();
    for (call, unwind) in setup_table() {
        let call = rename(&call);
        let mut unwind: Vec<String> = unwind.iter().map(|u| rename(u)).collect();
        if call == "block_signals" {
            t.push((call, unwind));
            t.push((create_call(), vec![]));
            t.push((
                format!("format_image {NEW_TEMP} pbkdf=pbkdf2"),
                vec![remove.clone()],
            ));
            continue;
        }
        unwind.push(remove.clone());
        if call.starts_with("mount_ext4") {
            t.push((mkfs_call(), unwind.clone()));
            t.push((
                format!("publish_image {NEW_TEMP} /workspace/.tazpod-vault/vault.img"),
                unwind.clone(),
            ));
        }
        t.push((call, unwind));
    }
    t
}

fn run_new(host: &mut RecordingHost) -> Report {
    let s = spec();
    let pass = Passphrase::from_vec(b"new".to_vec());
    let mut p = plan();
    p.name = String::new();
    run_creator(host, &p, &shell(), &new_vault(&s, &pass, false))
}

/// A call of a session on the existing vault, as made on a created one: the mapping is
/// named after the new file, which is mapped under its temporary name.
fn renamed(c: &str) -> String {
    c.split(' ')
        .map(|w| match w {
            "tazpod-v" => NEW_NAME.to_string(),
            "/dev/mapper/tazpod-v" => format!("/dev/mapper/{NEW_NAME}"),
            "/workspace/.tazpod-vault/vault.img" => NEW_TEMP.to_string(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Teardown of a session on a created vault: as usual, named after the new file; the vault
/// itself stays.
fn creating_teardown() -> Vec<String> {
    teardown_calls().iter().map(|c| renamed(c)).collect()
}

#[test]
fn unlock_of_a_missing_vault_creates_it_then_runs_the_session() {
    let mut host = RecordingHost::default();
    let r = run_new(&mut host);
    let mut want: Vec<String> = creating_setup_table().into_iter().map(|(c, _)| c).collect();
    want.extend(
        ["fork", "wait_child 4242", "wait_for_joined_shells"]
            .iter()
            .map(|s| s.to_string()),
    );
    want.extend(creating_teardown());
    assert_eq!(host.calls, want);
    assert!(matches!(r.end, SessionEnd::Shell(WaitStatus::Exited(0))));
    assert!(r.cleanup_errors.is_empty() && r.torn_down);
    // the session's end never removes the vault it created
    assert!(!host.calls.iter().any(|c| c.starts_with("remove_image")));
}

#[test]
fn failure_at_each_step_of_a_creating_session_removes_the_new_vault() {
    let table = creating_setup_table();
    for (i, (call, _)) in table.iter().enumerate() {
        let (op, mut host, want) = failing_at(&table, i);
        let r = run_new(&mut host);
        assert_eq!(host.calls, want, "failure injected at {call}");
        match r.end {
            SessionEnd::SetupFailed(e) => assert_eq!(e.op, op, "at {call}"),
            other => panic!("at {call}: {other:?}"),
        }
        assert!(r.cleanup_errors.is_empty());
        // once the image exists, the unwind ends by removing it
        let made = i > 1;
        assert_eq!(
            host.calls.last().unwrap() == &format!("remove_image {NEW_TEMP}"),
            made,
            "at {call}"
        );
    }
}

#[test]
fn a_signal_while_creating_removes_the_new_vault() {
    let mut host = RecordingHost {
        pending: Some(libc::SIGTERM),
        ..RecordingHost::default()
    };
    let r = run_new(&mut host);
    assert!(matches!(r.end, SessionEnd::Interrupted(libc::SIGTERM)));
    assert_eq!(
        host.calls.last().unwrap(),
        &format!("remove_image {NEW_TEMP}")
    );
    assert!(!host.calls.iter().any(|c| c == "fork"));
}

#[test]
fn a_failing_removal_of_the_new_vault_is_reported() {
    let mut host = RecordingHost {
        fail: Some(("make_filesystem", 1)),
        always_fail: vec!["remove_image"],
        ..RecordingHost::default()
    };
    let r = run_new(&mut host);
    assert!(matches!(r.end, SessionEnd::SetupFailed(_)));
    assert_eq!(r.cleanup_errors.len(), 1);
    assert_eq!(r.cleanup_errors[0].op, "remove_image");
}

#[test]
fn mkfs_gets_4096_byte_blocks_only_for_large_sectors() {
    let shown = |v: Vec<std::ffi::OsString>| {
        v.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        shown(mkfs_args(Path::new("/dev/mapper/x"), 4096, (1000, 100))),
        "-q -F -L tazpod-vault -m 0 -b 4096 -E root_owner=1000:100,nodiscard /dev/mapper/x"
    );
    assert_eq!(
        shown(mkfs_args(Path::new("/dev/mapper/x"), 512, (7, 8))),
        "-q -F -L tazpod-vault -m 0 -E root_owner=7:8,nodiscard /dev/mapper/x"
    );
}

/// `tazpod init`: the calls up to the end of mkfs.ext4, each with its unwind.
fn init_table() -> Vec<(String, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let remove = format!("remove_image {NEW_TEMP}");
    let unmap = |pre: &[&str]| {
        let mut v = s(pre);
        v.extend(UNMAP.iter().map(|u| renamed(u)));
        v.push(TMPFS.into());
        v.push(remove.clone());
        v
    };
    let rel = format!("release_mapping {NEW_NAME}");
    vec![
        ("block_signals".into(), vec![]),
        (create_call(), vec![]),
        (
            format!("format_image {NEW_TEMP} pbkdf=pbkdf2"),
            vec![remove.clone()],
        ),
        ("unshare_mount_ns".into(), vec![remove.clone()]),
        ("make_rprivate /".into(), vec![remove.clone()]),
        ("mount_tmpfs /dev/mapper".into(), vec![remove.clone()]),
        (
            format!("map_vault {NEW_TEMP} {NEW_NAME} ro=false keylen=64"),
            vec![TMPFS.into(), remove.clone()],
        ),
        (format!("hold_mapping {NEW_NAME}"), unmap(&[])),
        (format!("defer_remove {NEW_NAME}"), unmap(&[&rel])),
        (mkfs_call(), unmap(&[&rel])),
        ("pending_signal".into(), unmap(&[&rel])),
    ]
}

fn init_run(
    host: &mut RecordingHost,
    replace: bool,
) -> Result<Vec<super::host::HostError>, super::session::SetupFailure> {
    let s = spec();
    let pass = Passphrase::from_vec(b"new".to_vec());
    create_vault(
        host,
        &new_vault(&s, &pass, replace),
        Path::new("/dev/mapper"),
    )
}

/// After mkfs.ext4: the mapping goes, then the image moves into place.
fn init_tail() -> Vec<String> {
    let mut v = vec![format!("release_mapping {NEW_NAME}")];
    v.extend(UNMAP.iter().map(|u| renamed(u)));
    v.push(TMPFS.into());
    v.push(format!(
        "publish_image {NEW_TEMP} /workspace/.tazpod-vault/vault.img"
    ));
    v
}

#[test]
fn init_creates_maps_makes_the_filesystem_unmaps_then_publishes() {
    let mut host = RecordingHost::default();
    let warnings = init_run(&mut host, false).unwrap();
    assert!(warnings.is_empty());
    let mut want: Vec<String> = init_table().into_iter().map(|(c, _)| c).collect();
    want.extend(init_tail());
    assert_eq!(host.calls, want);
}

#[test]
fn init_failure_at_each_step_leaves_nothing() {
    let table = init_table();
    for (i, (call, _)) in table.iter().enumerate() {
        let (op, mut host, want) = failing_at(&table, i);
        let f = init_run(&mut host, false).unwrap_err();
        assert_eq!(host.calls, want, "failure injected at {call}");
        match f.error {
            SetupError::Host(e) => assert_eq!(e.op, op),
            SetupError::Interrupted(_) => panic!("at {call}"),
        }
        assert!(f.unwind_errors.is_empty());
    }
    // the move into place fails: the mapping is gone already, the image is removed
    let mut host = RecordingHost {
        fail: Some(("publish_image", 1)),
        ..RecordingHost::default()
    };
    assert!(init_run(&mut host, false).is_err());
    assert_eq!(
        host.calls_from("release_mapping").last().unwrap(),
        &format!("remove_image {NEW_TEMP}")
    );
    assert_eq!(
        host.calls
            .iter()
            .filter(|c| c.starts_with("remove_mapping"))
            .count(),
        1
    );
}

#[test]
fn init_interrupted_by_a_signal_leaves_nothing() {
    let mut host = RecordingHost {
        pending: Some(libc::SIGINT),
        ..RecordingHost::default()
    };
    let f = init_run(&mut host, false).unwrap_err();
    assert!(matches!(f.error, SetupError::Interrupted(libc::SIGINT)));
    assert_eq!(
        host.calls.last().unwrap(),
        &format!("remove_image {NEW_TEMP}")
    );
    assert!(!host.calls.iter().any(|c| c.starts_with("publish_image")));
}

#[test]
fn init_cleanup_failures_after_mkfs_are_warnings_and_the_vault_stays() {
    let mut host = RecordingHost {
        always_fail: vec!["remove_mapping"],
        ..RecordingHost::default()
    };
    let warnings = init_run(&mut host, true).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(host.calls.last().unwrap().starts_with("publish_image"));
    assert!(host.calls[1].ends_with("replace=true"));
    assert!(!host.calls.iter().any(|c| c.starts_with("remove_image")));
}

#[test]
fn bind_sources_are_opened_beneath_the_vault_root_never_by_joined_path() {
    let mut host = RecordingHost::default();
    run(&mut host, &plan());
    let opens: Vec<&String> = host
        .calls
        .iter()
        .filter(|c| c.starts_with("open_"))
        .collect();
    // every bind source: relative to the staging root, as the user
    for src in [".gcloud", ".kube"] {
        assert!(
            opens.contains(&&format!(
                "open_vault_dir {src} beneath {STAGING} as 1000 create=true"
            )),
            "{opens:?}"
        );
    }
    // nothing inside the vault goes through the path-based opener
    assert!(!opens
        .iter()
        .any(|c| c.starts_with("open_user_dir") && c.contains(STAGING)));
}
