//! cryptsetup parity at the edges: headers both tools load, edited from the fixtures (JSON of
//! both copies rewritten, checksums recomputed), with the exit code of `open --test-passphrase`
//! (right and wrong passphrase), of activation and `decrypt`, the KDF cost caps, and `dump`.
//!
//! Each row records what tazpod must answer and what cryptsetup 2.6.1 answers; when cryptsetup
//! is installed it is run on a copy of every row it can judge (with a timeout) and must still
//! answer that, so a row documents a measured fact. Where the two differ on purpose, the row
//! says why (docs/on-disk.md has the list). Without cryptsetup the tazpod half still runs and
//! the oracle half says SKIPPING.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

mod common;

use serde_json::{json, Value};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PASS: &[u8] = b"fixture";
const WRONG: &[u8] = b"not-the-passphrase";

fn hdr_size(img: &[u8], at: usize) -> usize {
    u64::from_be_bytes(img[at + 8..at + 16].try_into().unwrap()) as usize
}

/// Recomputes the sha256 checksum of the LUKS2 copy at `at`.
fn fix_checksum(img: &mut [u8], at: usize) {
    let hs = hdr_size(img, at);
    img[at + 448..at + 512].fill(0);
    let sum = sha2::Sha256::digest(&img[at..at + hs]);
    img[at + 448..at + 448 + 32].copy_from_slice(&sum);
}

/// The JSON metadata of the primary copy.
fn json_of(img: &[u8]) -> Value {
    let hs = hdr_size(img, 0);
    let area = &img[4096..hs];
    let end = area.iter().position(|&b| b == 0).unwrap();
    serde_json::from_slice(&area[..end]).unwrap()
}

/// Writes `v` as the JSON of the copy at `at` and fixes its checksum.
fn put_json_at(img: &mut [u8], at: usize, v: &Value) {
    put_text_at(img, at, v.to_string().as_bytes());
}

/// The copy at `at` with `text` as its JSON area (zero padded), checksum fixed.
fn put_text_at(img: &mut [u8], at: usize, text: &[u8]) {
    let hs = hdr_size(img, at);
    let area = &mut img[at + 4096..at + hs];
    area.fill(0);
    area[..text.len()].copy_from_slice(text);
    fix_checksum(img, at);
}

/// `img` (LUKS2) with the metadata of both copies changed by `f`.
fn edit(mut img: Vec<u8>, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = json_of(&img);
    f(&mut v);
    let hs = hdr_size(&img, 0);
    put_json_at(&mut img, 0, &v);
    put_json_at(&mut img, hs, &v);
    img
}

/// The pbkdf2-sha256 fixture (passphrase "fixture", one keyslot at 32768 of 131072 bytes,
/// 32-byte key) changed by `f`.
fn pbkdf2(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    edit(common::image_fixture("pbkdf2-sha256.img"), f)
}

/// As [`pbkdf2`], on a 4 MiB device (room for the split key of a larger `key_size`).
fn pbkdf2_big(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut img = pbkdf2(f);
    img.resize(4 << 20, 0);
    img
}

/// The LUKS1 fixture luks1-xts-sha256 with `field` (offset, 32 bytes) set to `value`.
fn luks1_with(at: usize, value: &str) -> Vec<u8> {
    let mut img = common::image_fixture("luks1-xts-sha256.img");
    img[at..at + 32].fill(0);
    img[at..at + value.len()].copy_from_slice(value.as_bytes());
    img
}

fn ks0(v: &mut Value) -> &mut Value {
    &mut v["keyslots"]["0"]
}

struct Env {
    dir: tempfile::TempDir,
    right: PathBuf,
    wrong: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let right = dir.path().join("right.key");
        let wrong = dir.path().join("wrong.key");
        std::fs::write(&right, PASS).unwrap();
        std::fs::write(&wrong, WRONG).unwrap();
        Env { dir, right, wrong }
    }

    /// A fresh copy of `img` in the temporary directory.
    fn copy(&self, name: &str, img: &[u8]) -> PathBuf {
        let p = self
            .dir
            .path()
            .join(format!("{}.img", name.replace([' ', '/'], "_")));
        std::fs::write(&p, img).unwrap();
        p
    }
}

fn tazpod(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tazpod"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// cryptsetup with a time limit (it has no KDF cost cap: a hostile row must not hang).
fn cryptsetup(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg("cryptsetup")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A failure line when cryptsetup (`theirs`) failed or printed other bytes than tazpod
/// (`ours`), with both outputs.
fn cryptsetup_differs(what: &str, ours: &Output, theirs: &Output) -> Option<String> {
    (code(theirs) != 0 || theirs.stdout != ours.stdout).then(|| {
        format!(
            "{what}: stdout differs from cryptsetup (exit {}):\n{}\n---\n{}",
            code(theirs),
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout)
        )
    })
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// What cryptsetup answers on a row.
enum Oracle {
    /// The same as tazpod.
    Same,
    /// Something else, on purpose (the reason is in the row's name and docs/on-disk.md).
    Differs(i32, i32),
    /// Not run: the answer depends on the host (device-mapper, overcommit policy) or the
    /// input would run for minutes.
    NotRun,
}

/// One `open --test-passphrase` row: tazpod's exit code with the right and a wrong
/// passphrase, and what cryptsetup answers.
struct Row {
    name: &'static str,
    img: Vec<u8>,
    right: i32,
    wrong: i32,
    oracle: Oracle,
    /// A fragment tazpod's error (right passphrase) must contain, when it fails.
    fragment: &'static str,
}

fn row(name: &'static str, img: Vec<u8>, right: i32, wrong: i32) -> Row {
    Row {
        name,
        img,
        right,
        wrong,
        oracle: Oracle::Same,
        fragment: "",
    }
}

impl Row {
    fn oracle(mut self, o: Oracle) -> Row {
        self.oracle = o;
        self
    }
    fn says(mut self, f: &'static str) -> Row {
        self.fragment = f;
        self
    }
}

/// Runs the rows; returns the failures and how many rows cryptsetup judged.
fn run_rows(rows: Vec<Row>) -> (Vec<String>, usize) {
    let env = Env::new();
    let cs = common::have_cryptsetup();
    let mut failures = Vec::new();
    let mut judged = 0;
    for r in rows {
        let img = env.copy(r.name, &r.img);
        let t = |key: &Path| tazpod(&["open", "--test-passphrase", "--key-file", p(key), p(&img)]);
        let (tr, tw) = (t(&env.right), t(&env.wrong));
        let err = String::from_utf8_lossy(&tr.stderr).into_owned();
        if (code(&tr), code(&tw)) != (r.right, r.wrong) {
            failures.push(format!(
                "{}: tazpod {}/{} (want {}/{}): {err}",
                r.name,
                code(&tr),
                code(&tw),
                r.right,
                r.wrong
            ));
        }
        if !err.contains(r.fragment) || err.contains("panicked") {
            failures.push(format!("{}: error {err:?} lacks {:?}", r.name, r.fragment));
        }
        let want = match r.oracle {
            Oracle::Same => (r.right, r.wrong),
            Oracle::Differs(a, b) => (a, b),
            Oracle::NotRun => continue,
        };
        if !cs {
            continue;
        }
        judged += 1;
        let c = |key: &Path| {
            code(&cryptsetup(&[
                "open",
                "--test-passphrase",
                "--key-file",
                p(key),
                p(&img),
            ]))
        };
        let got = (c(&env.right), c(&env.wrong));
        if got != want {
            failures.push(format!(
                "{}: cryptsetup {}/{} (recorded {}/{})",
                r.name, got.0, got.1, want.0, want.1
            ));
        }
    }
    (failures, judged)
}

fn finish(what: &str, n: usize, (failures, judged): (Vec<String>, usize)) {
    assert!(
        failures.is_empty(),
        "{} of {n} {what} rows fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{n} {what} rows pass ({judged} checked against cryptsetup)");
}

/// The passphrase test depends only on the keyslots and digests: a data segment both tools
/// load but cannot map still tests the passphrase (0 or 2), as with cryptsetup.
#[test]
fn passphrase_test_ignores_the_data_segment() {
    let rows = vec![
        row(
            "segment type unknown",
            pbkdf2(|v| v["segments"]["0"]["type"] = json!("x-future")),
            0,
            2,
        ),
        row(
            "segment encryption odd",
            pbkdf2(|v| v["segments"]["0"]["encryption"] = json!("foo-bar")),
            0,
            2,
        ),
        row(
            "segment encryption serpent",
            pbkdf2(|v| v["segments"]["0"]["encryption"] = json!("serpent-xts-plain64")),
            0,
            2,
        ),
        row(
            "segment sector_size 524288",
            pbkdf2(|v| v["segments"]["0"]["sector_size"] = json!(524_288)),
            0,
            2,
        ),
        row(
            "segment sector_size 1536",
            pbkdf2(|v| v["segments"]["0"]["sector_size"] = json!(1536)),
            0,
            2,
        ),
    ];
    let n = rows.len();
    finish("data-segment", n, run_rows(rows));
}

/// Activation, `decrypt` and the rootless verbs need a data segment they can map: refused
/// with exit 1 and a clear error before any passphrase is asked for.
#[test]
fn activation_and_decrypt_refuse_an_unmappable_segment() {
    let env = Env::new();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "type",
            pbkdf2(|v| v["segments"]["0"]["type"] = json!("x-future")),
            "data segment type 'x-future' is not supported",
        ),
        (
            "cipher",
            pbkdf2(|v| v["segments"]["0"]["encryption"] = json!("foo-bar")),
            "unsupported cipher \"foo-bar\"",
        ),
        (
            "sector",
            pbkdf2(|v| v["segments"]["0"]["sector_size"] = json!(524_288)),
            "sector size 524288",
        ),
    ];
    for (name, img, fragment) in cases {
        let img = env.copy(name, &img);
        let out = env.dir.path().join(format!("{name}.plain"));
        for args in [
            vec![
                "open",
                "--key-file",
                p(&env.right),
                p(&img),
                "tazpod-never-mapped",
            ],
            vec!["decrypt", "--key-file", p(&env.right), p(&img), p(&out)],
            vec!["ls", "--key-file", p(&env.right), "--vault", p(&img), "/"],
        ] {
            let o = tazpod(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(code(&o), 1, "{name} {args:?}: {err}");
            assert!(err.contains(fragment), "{name} {args:?}: {err}");
            assert!(!out.exists(), "{name}: decrypt left an output");
        }
    }
}

/// Exit codes mean what they say: a keyslot tazpod cannot use is never a wrong passphrase
/// (2), and where cryptsetup opens a keyslot so does tazpod.
#[test]
fn exit_codes_match_cryptsetup() {
    let overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    // cryptsetup allocates the split key of key_size 2^31 (8 TB): it fails at once unless the
    // kernel always overcommits, when it would summon the OOM killer instead.
    let huge_oracle = if matches!(overcommit.trim(), "0" | "2") {
        Oracle::Same
    } else {
        Oracle::NotRun
    };
    let rows = vec![
        row("base", pbkdf2(|_| {}), 0, 2),
        // The area offset is in bytes; cryptsetup reads from its 512-byte sector.
        row(
            "area offset 32769",
            pbkdf2(|v| {
                ks0(v)["area"]["offset"] = json!("32769");
                ks0(v)["area"]["size"] = json!("130560");
            }),
            0,
            2,
        ),
        row(
            "area offset 33279",
            pbkdf2(|v| {
                ks0(v)["area"]["offset"] = json!("33279");
                ks0(v)["area"]["size"] = json!("130560");
            }),
            0,
            2,
        ),
        row(
            "area offset 33280 (the next sector: the split key is not there)",
            pbkdf2(|v| {
                ks0(v)["area"]["offset"] = json!("33280");
                ks0(v)["area"]["size"] = json!("130560");
            }),
            2,
            2,
        ),
        // The split key is read for its own length, whatever the area's size says.
        row(
            "area size 1000",
            pbkdf2(|v| ks0(v)["area"]["size"] = json!("1000")),
            0,
            2,
        ),
        // Another key size: a split key that merges to a key the digest refuses.
        row(
            "key_size 65",
            pbkdf2_big(|v| ks0(v)["key_size"] = json!(65)),
            2,
            2,
        ),
        row(
            "key_size 511",
            pbkdf2_big(|v| ks0(v)["key_size"] = json!(511)),
            2,
            2,
        ),
        row(
            "key_size 513",
            pbkdf2_big(|v| ks0(v)["key_size"] = json!(513)),
            2,
            2,
        ),
        row(
            "key_size 64, split key past the end of the device",
            pbkdf2(|v| ks0(v)["key_size"] = json!(64)),
            1,
            1,
        )
        .says("the device or file ends before it"),
        row(
            "key_size 2^31",
            pbkdf2(|v| ks0(v)["key_size"] = json!(1u64 << 31)),
            3,
            3,
        )
        .oracle(huge_oracle)
        .says("--max-kdf-memory"),
        row(
            "key_size 0 (cryptsetup: out of memory, 3; tazpod: invalid, 1)",
            pbkdf2(|v| ks0(v)["key_size"] = json!(0)),
            1,
            1,
        )
        .oracle(Oracle::Differs(3, 3))
        .says("key_size is 0"),
        // Cipher and IV names are case-insensitive, the chain mode is not.
        row(
            "keyslot cipher AES",
            pbkdf2(|v| ks0(v)["area"]["encryption"] = json!("AES-xts-plain64")),
            0,
            2,
        ),
        row(
            "keyslot IV PLAIN64",
            pbkdf2(|v| ks0(v)["area"]["encryption"] = json!("aes-xts-PLAIN64")),
            0,
            2,
        ),
        row(
            "keyslot mode XTS",
            pbkdf2(|v| ks0(v)["area"]["encryption"] = json!("aes-XTS-plain64")),
            1,
            1,
        )
        .says("XTS"),
        row(
            "keyslot essiv hash SHA256",
            edit(common::image_fixture("cipher-aes-cbc-essiv.img"), |v| {
                ks0(v)["area"]["encryption"] = json!("aes-cbc-ESSIV:SHA256")
            }),
            0,
            2,
        ),
        row("LUKS1 cipherName AES", luks1_with(8, "AES"), 0, 2),
        row(
            "LUKS1 cipherMode xts-PLAIN64",
            luks1_with(40, "xts-PLAIN64"),
            0,
            2,
        ),
        // cryptsetup falls back to a dm-crypt mapping here: its answer depends on the host.
        row(
            "LUKS1 cipherMode XTS-plain64",
            luks1_with(40, "XTS-plain64"),
            1,
            1,
        )
        .oracle(Oracle::NotRun)
        .says("XTS"),
        // Where cryptsetup is wrong: it opens these with any passphrase.
        row(
            "digest hash invalid (cryptsetup opens with any passphrase)",
            pbkdf2(|v| v["digests"]["0"]["hash"] = json!("x-hash")),
            1,
            1,
        )
        .oracle(Oracle::Differs(0, 0))
        .says("unsupported digest hash 'x-hash'"),
        row(
            "digest missing (cryptsetup opens with any passphrase)",
            pbkdf2(|v| {
                v["digests"]["0"].as_object_mut().unwrap().remove("digest");
            }),
            1,
            1,
        )
        .oracle(Oracle::Differs(0, 0))
        .says("digest is missing"),
        row(
            "digest salt missing",
            pbkdf2(|v| {
                v["digests"]["0"].as_object_mut().unwrap().remove("salt");
            }),
            1,
            1,
        )
        .says("salt"),
        row(
            "digest hash missing",
            pbkdf2(|v| {
                v["digests"]["0"].as_object_mut().unwrap().remove("hash");
            }),
            1,
            1,
        )
        .says("hash is missing"),
        row(
            "digest iterations missing",
            pbkdf2(|v| {
                v["digests"]["0"]
                    .as_object_mut()
                    .unwrap()
                    .remove("iterations");
            }),
            1,
            1,
        )
        .says("iterations is missing"),
        // A keyslot that cannot be tried, next to others that refuse the passphrase: not
        // "wrong" (it may be the untried keyslot's passphrase), exit 1 as with cryptsetup.
        row(
            "keyslot 0 unusable, the others refuse",
            edit(common::image_fixture("priorities.img"), |v| {
                ks0(v)["kdf"]["hash"] = json!("x-hash")
            }),
            1,
            1,
        )
        .says("some could not be tried"),
    ];
    let n = rows.len();
    finish("exit-code", n, run_rows(rows));
}

/// With the fixture "priorities" (keyslots 0 and 1 open with "same"), an unusable keyslot 0
/// does not stop keyslot 1 from opening, and a wrong passphrase is exit 1, not 2, while a
/// keyslot could not be tried; cryptsetup also answers 1 to the wrong one.
#[test]
fn untried_keyslot_is_not_a_wrong_passphrase() {
    let env = Env::new();
    let img = env.copy(
        "prio",
        &edit(common::image_fixture("priorities.img"), |v| {
            v["keyslots"]["1"]["kdf"]["hash"] = json!("x-hash")
        }),
    );
    let same = env.dir.path().join("same.key");
    std::fs::write(&same, b"same").unwrap();
    let o = tazpod(&["open", "--test-passphrase", "--key-file", p(&same), p(&img)]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = tazpod(&[
        "open",
        "--test-passphrase",
        "--key-file",
        p(&env.wrong),
        p(&img),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 1, "{err}");
    assert!(
        err.contains("some could not be tried") && err.contains("keyslot 1:"),
        "{err}"
    );
    if common::have_cryptsetup() {
        let o = cryptsetup(&[
            "open",
            "--test-passphrase",
            "--key-file",
            p(&env.wrong),
            p(&img),
        ]);
        assert_eq!(code(&o), 1);
    }
}

/// Every untrusted cost is capped before any work, with exit 3 and a message naming the
/// keyslot (or digest), the cost and the flag that raises that cap. cryptsetup has no such
/// caps (a 2^31-iteration keyslot runs for many minutes there), so it is not run on these.
#[test]
fn kdf_costs_are_capped_before_work() {
    use std::time::{Duration, Instant};
    let env = Env::new();
    let huge = (1u64 << 31) - 1;
    let l1_iterations = |at: usize, n: u32| {
        let mut img = common::image_fixture("luks1-xts-sha256.img");
        img[at..at + 4].copy_from_slice(&n.to_be_bytes());
        img
    };
    /// (name, image, extra flags, exit code, fragments of the message)
    type Case = (
        &'static str,
        Vec<u8>,
        Vec<&'static str>,
        i32,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "keyslot pbkdf2 2^31-1",
            pbkdf2(|v| ks0(v)["kdf"]["iterations"] = json!(huge)),
            vec![],
            3,
            vec![
                "keyslot 0:",
                "2147483647 iterations",
                "over the limit of 60 s",
                "--max-pbkdf2-time",
            ],
        ),
        (
            "digest pbkdf2 2^31-1",
            pbkdf2(|v| v["digests"]["0"]["iterations"] = json!(huge)),
            vec![],
            3,
            vec![
                "digest 0 (verifying keyslot 0)",
                "2147483647",
                "--max-pbkdf2-time",
            ],
        ),
        (
            "LUKS1 keyslot iterations 2^31-1",
            // key slot 0's iteration count (big-endian, at 208 + 4).
            l1_iterations(212, huge as u32),
            vec![],
            3,
            vec!["keyslot 0:", "--max-pbkdf2-time"],
        ),
        (
            "LUKS1 mk-digest iterations 2^31-1",
            l1_iterations(164, huge as u32),
            vec![],
            3,
            vec!["digest 0", "--max-pbkdf2-time"],
        ),
        (
            "keyslot pbkdf2 200000, budget 0 s",
            pbkdf2(|v| ks0(v)["kdf"]["iterations"] = json!(200_000)),
            vec!["--max-pbkdf2-time", "0"],
            3,
            vec!["over the limit of 0 s", "--max-pbkdf2-time"],
        ),
        (
            // Runs (well within 60 s), derives another key: a wrong passphrase.
            "keyslot pbkdf2 200000, default budget",
            pbkdf2(|v| ks0(v)["kdf"]["iterations"] = json!(200_000)),
            vec![],
            2,
            vec![],
        ),
        (
            "argon2 time 1001",
            edit(common::image_fixture("argon2id.img"), |v| {
                ks0(v)["kdf"]["time"] = json!(1001)
            }),
            vec![],
            3,
            vec!["keyslot 0:", "time cost 1001", "--max-argon2-time"],
        ),
        (
            "argon2 time 1001, raised",
            edit(common::image_fixture("argon2id.img"), |v| {
                ks0(v)["kdf"]["time"] = json!(1001)
            }),
            vec!["--max-argon2-time", "1001"],
            2,
            vec![],
        ),
        (
            "argon2 memory over the limit",
            common::image_fixture("argon2id.img"),
            vec!["--max-kdf-memory", "32"],
            3,
            vec!["keyslot 0:", "64 KiB", "--max-kdf-memory"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, img, flags, want, fragments) in cases {
        let img = env.copy(name, &img);
        let mut args = vec!["open", "--test-passphrase", "--key-file", p(&env.right)];
        args.extend(flags.iter().copied());
        args.push(p(&img));
        let start = Instant::now();
        let o = tazpod(&args);
        let took = start.elapsed();
        let err = String::from_utf8_lossy(&o.stderr);
        if code(&o) != want || fragments.iter().any(|f| !err.contains(f)) {
            failures.push(format!("{name}: exit {} (want {want}): {err}", code(&o)));
        }
        // Refusals come before any KDF work (a speed measurement takes well under a second).
        if want == 3 && took > Duration::from_secs(10) {
            failures.push(format!("{name}: refused only after {took:?}"));
        }
        // Each cap names its own flag only.
        for flag in ["--max-kdf-memory", "--max-argon2-time", "--max-pbkdf2-time"] {
            if err.contains(flag) && !fragments.contains(&flag) {
                failures.push(format!("{name}: names {flag}: {err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `dump` says on standard error which header copy it used when the other was not (damaged
/// magic, checksum, JSON, or an older seqid), why, and how to repair; standard output stays
/// byte for byte what `cryptsetup luksDump` prints (run on a copy: it may repair while
/// reading).
#[test]
fn dump_names_the_header_copy_used() {
    let env = Env::new();
    let cs = common::have_cryptsetup();
    let base = common::image_fixture("pbkdf2-sha256.img");
    let hs = hdr_size(&base, 0);
    let mut primary_json = base.clone();
    {
        // Valid checksum, invalid metadata (a keyslot area outside the keyslots area).
        let mut v = json_of(&base);
        ks0(&mut v)["area"]["offset"] = json!("16777216");
        put_json_at(&mut primary_json, 0, &v);
    }
    let mut secondary_json = base.clone();
    {
        let mut v = json_of(&base);
        v["segments"]["0"]["offset"] = json!("12");
        put_json_at(&mut secondary_json, hs, &v);
    }
    let mut primary_csum = base.clone();
    primary_csum[4096 + 20] ^= 1;
    let mut secondary_magic = base.clone();
    secondary_magic[hs] = b'X';
    let mut stale_secondary = base.clone();
    {
        let seqid = u64::from_be_bytes(base[16..24].try_into().unwrap());
        stale_secondary[16..24].copy_from_slice(&(seqid + 1).to_be_bytes());
        fix_checksum(&mut stale_secondary, 0);
    }
    // (name, image, copy used, words of the reason)
    let cases: [(&str, Vec<u8>, Option<(&str, &str)>); 8] = [
        ("intact", base.clone(), None),
        (
            "primary magic",
            common::image_fixture("damaged-primary-magic.img"),
            Some(("secondary", "no LUKS2 magic at offset 0")),
        ),
        (
            "primary checksum",
            primary_csum,
            Some(("secondary", "fails its sha256 checksum")),
        ),
        (
            "primary JSON",
            primary_json,
            Some(("secondary", "invalid metadata")),
        ),
        (
            "secondary magic",
            secondary_magic,
            Some(("primary", "no LUKS2 magic at offset 16384")),
        ),
        (
            "secondary JSON",
            secondary_json,
            Some(("primary", "invalid metadata")),
        ),
        (
            "secondary older",
            stale_secondary,
            Some(("primary", "is older (seqid")),
        ),
        (
            "primary older",
            common::image_fixture("secondary-newer.img"),
            Some(("secondary", "is older (seqid 3)")),
        ),
    ];
    let mut failures = Vec::new();
    for (name, img, want) in cases {
        let path = env.copy(name, &img);
        let o = tazpod(&["dump", p(&path)]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        if code(&o) != 0 {
            failures.push(format!("{name}: exit {}: {err}", code(&o)));
            continue;
        }
        match want {
            None if !err.is_empty() => failures.push(format!("{name}: says {err:?}")),
            None => {}
            Some((used, why)) => {
                let ok = err.lines().count() == 1
                    && err.contains(&format!("using the {used} header copy"))
                    && err.contains(why)
                    && err.contains(&format!("cryptsetup repair {}", p(&path)));
                if !ok {
                    failures.push(format!("{name}: stderr {err:?}"));
                }
            }
        }
        if cs {
            let theirs = cryptsetup(&["luksDump", p(&env.copy(&format!("{name}-cs"), &img))]);
            failures.extend(cryptsetup_differs(name, &o, &theirs));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `dump` byte for byte as `cryptsetup luksDump` on headers both load, where tazpod's typed
/// reading differs from what cryptsetup prints: an unknown KDF type (time, memory, threads and
/// the salt), a digest without `iterations` (its salt and digest still printed), numbers past
/// 32 bits or negative, salts that are short, missing or not base64, a digest without `hash`.
/// Each row has lines the dump must contain (checked without cryptsetup too).
#[test]
fn dump_matches_cryptsetup_on_odd_kdf_and_digest_fields() {
    let env = Env::new();
    let cs = common::have_cryptsetup();
    let kdf = |f: fn(&mut Value)| pbkdf2(f);
    let argon = |f: fn(&mut Value)| edit(common::image_fixture("argon2id.img"), f);
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "unknown kdf type",
            kdf(|v| ks0(v)["kdf"]["type"] = json!("x-kdf")),
            vec![
                "\tPBKDF:      x-kdf\n\tTime cost:  0\n\tMemory:     0\n\tThreads:    0\n\tSalt:       ",
            ],
        ),
        (
            "unknown kdf type with argon2 fields",
            argon(|v| ks0(v)["kdf"]["type"] = json!("x-kdf")),
            vec!["\tTime cost:  4\n\tMemory:     64\n\tThreads:    1\n\tSalt:       6e df"],
        ),
        (
            "digest without iterations",
            kdf(|v| {
                v["digests"]["0"]
                    .as_object_mut()
                    .unwrap()
                    .remove("iterations");
            }),
            vec!["\tIterations: 0\n\tSalt:       90 06 19 1e", "\tDigest:     3f ec"],
        ),
        (
            "kdf iterations 2^32",
            kdf(|v| ks0(v)["kdf"]["iterations"] = json!(1u64 << 32)),
            vec!["\tIterations: 4294967296\n"],
        ),
        (
            "kdf iterations 2^64-1",
            kdf(|v| ks0(v)["kdf"]["iterations"] = json!(u64::MAX)),
            vec!["\tIterations: 18446744073709551615\n"],
        ),
        (
            "kdf iterations -5",
            kdf(|v| ks0(v)["kdf"]["iterations"] = json!(-5)),
            vec!["\tIterations: 18446744073709551611\n"],
        ),
        (
            "digest iterations 2^32",
            kdf(|v| v["digests"]["0"]["iterations"] = json!(1u64 << 32)),
            vec!["\tIterations: 4294967296\n\tSalt:"],
        ),
        (
            "digest iterations 2^64-1 (json_object_get_int64: INT64_MAX)",
            kdf(|v| v["digests"]["0"]["iterations"] = json!(u64::MAX)),
            vec!["\tIterations: 9223372036854775807\n\tSalt:"],
        ),
        (
            "argon2 time 2^32",
            argon(|v| ks0(v)["kdf"]["time"] = json!(1u64 << 32)),
            vec!["\tTime cost:  4294967296\n"],
        ),
        (
            "argon2 memory 2^32",
            argon(|v| ks0(v)["kdf"]["memory"] = json!(1u64 << 32)),
            vec!["\tMemory:     4294967296\n"],
        ),
        (
            "argon2 cpus -5",
            argon(|v| ks0(v)["kdf"]["cpus"] = json!(-5)),
            vec!["\tThreads:    18446744073709551611\n"],
        ),
        (
            "kdf salt of 3 bytes",
            kdf(|v| ks0(v)["kdf"]["salt"] = json!("AAAA")),
            vec!["\tSalt:       00 00 00 \n\tAF stripes"],
        ),
        (
            "kdf salt not base64 (nothing printed, not even the line end)",
            kdf(|v| ks0(v)["kdf"]["salt"] = json!("!!")),
            vec!["\tSalt:       \tAF stripes"],
        ),
        (
            "unknown kdf type without salt",
            kdf(|v| {
                ks0(v)["kdf"]["type"] = json!("x-kdf");
                ks0(v)["kdf"].as_object_mut().unwrap().remove("salt");
            }),
            vec!["\tSalt:       \n\tAF stripes"],
        ),
        (
            "digest salt of 3 bytes",
            kdf(|v| v["digests"]["0"]["salt"] = json!("AAAA")),
            vec!["\tSalt:       00 00 00 \n\tDigest:     3f"],
        ),
        (
            "priority 4096 (invalid)",
            kdf(|v| ks0(v)["priority"] = json!(4096)),
            vec!["\tPriority:   invalid\n"],
        ),
        (
            "key_size 2^29+1 (a 32-bit product)",
            kdf(|v| ks0(v)["key_size"] = json!((1u64 << 29) + 1)),
            vec!["\tKey:        8 bits\n"],
        ),
        (
            "area key_size 2^31+1",
            kdf(|v| ks0(v)["area"]["key_size"] = json!((1u64 << 31) + 1)),
            vec!["\tCipher key: 8 bits\n"],
        ),
        (
            "linear segment with encryption and sector_size",
            kdf(|v| v["segments"]["0"]["type"] = json!("linear")),
            vec!["  0: linear\n", "\tcipher: aes-xts-plain64\n\tsector: 512 [bytes]\n"],
        ),
        (
            "unknown segment type without encryption",
            kdf(|v| {
                let s = v["segments"]["0"].as_object_mut().unwrap();
                s.insert("type".into(), json!("x-seg"));
                s.remove("encryption");
                s.remove("sector_size");
            }),
            vec!["\tlength: (whole device)\n\n"],
        ),
        (
            "digest without hash",
            kdf(|v| {
                v["digests"]["0"].as_object_mut().unwrap().remove("hash");
            }),
            vec!["\tHash:       (null)\n\tIterations: 1000\n"],
        ),
    ];
    let mut failures = Vec::new();
    let n = cases.len();
    for (name, img, lines) in cases {
        let path = env.copy(name, &img);
        let o = tazpod(&["dump", p(&path)]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if code(&o) != 0 {
            failures.push(format!(
                "{name}: exit {}: {}",
                code(&o),
                String::from_utf8_lossy(&o.stderr)
            ));
            continue;
        }
        for l in lines {
            if !out.contains(l) {
                failures.push(format!("{name}: no {l:?} in\n{out}"));
            }
        }
        if cs {
            // On a copy: cryptsetup may rewrite a header while reading it.
            let theirs = cryptsetup(&["luksDump", p(&env.copy(&format!("{name}-cs"), &img))]);
            // Both print the path they were given on LUKS1 only; these are LUKS2.
            failures.extend(cryptsetup_differs(name, &o, &theirs));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{n} dump rows pass{}",
        if cs {
            " (each byte for byte against cryptsetup)"
        } else {
            ""
        }
    );
}

/// `dump` and `dump --json` byte for byte as `cryptsetup luksDump` (and its
/// `--dump-json-metadata`) on JSON text only json-c reads: a token with escapes (`\/`,
/// `\u0041`), a comment, a key given twice (first place, last value), doubles kept as written,
/// `NaN`, empty containers. The JSON is printed as json-c serializes what it parsed, not as
/// the text was stored.
#[test]
fn dump_json_matches_cryptsetup_on_json_c_text() {
    let env = Env::new();
    let base = common::image_fixture("pbkdf2-sha256.img");
    let text = json_of(&base).to_string();
    let token = r#""tokens":{"0":{"type":"luks2-keyring","keyslots":["0"],"key_description":"a\/b\u0041\t","x":1.50,"y":[],"z":{}, /* c */ "x":2.50e0,"n":NaN}}"#;
    let text = text.replace(r#""tokens":{}"#, token);
    assert!(text.contains("NaN"));
    let mut img = base.clone();
    let hs = hdr_size(&img, 0);
    put_text_at(&mut img, 0, text.as_bytes());
    put_text_at(&mut img, hs, text.as_bytes());
    let want_json = "\n      \"key_description\":\"a/bA\\t\",\n      \"x\":2.50e0,\n      \"y\":[\n      ],\n      \"z\":{\n      },\n      \"n\":NaN\n    }";
    let want_human = "  0: luks2-keyring\n\tKey description: a/bA\t\n\tKeyslot:    0\n";
    let mut failures = Vec::new();
    for (args, want) in [
        (vec!["dump"], want_human),
        (vec!["dump", "--json"], want_json),
    ] {
        let path = env.copy("lenient", &img);
        let o = tazpod(&[args.as_slice(), &[p(&path)]].concat());
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if code(&o) != 0 || !out.contains(want) {
            failures.push(format!(
                "{args:?}: exit {}, no {want:?} in\n{out}",
                code(&o)
            ));
        }
        if common::have_cryptsetup() {
            let cs_args: &[&str] = if args.len() == 2 {
                &["luksDump", "--dump-json-metadata"]
            } else {
                &["luksDump"]
            };
            // On a copy: cryptsetup may rewrite a header while reading it.
            let copy = env.copy("lenient-cs", &img);
            let theirs = cryptsetup(&[cs_args, &[p(&copy)]].concat());
            failures.extend(cryptsetup_differs(&format!("{args:?}"), &o, &theirs));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `dump --dump-volume-key` needs only keyslots and digests too: on a data segment tazpod
/// cannot map it prints what cryptsetup prints (byte for byte; each tool on a fresh copy
/// under the same path, which the dump names).
#[test]
fn volume_key_dump_ignores_the_data_segment() {
    let env = Env::new();
    let cs = common::have_cryptsetup();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "serpent fixture",
            common::image_fixture("cipher-serpent.img"),
            "Cipher name:   \tserpent\n",
        ),
        (
            "segment type unknown",
            pbkdf2(|v| v["segments"]["0"]["type"] = json!("x-future")),
            "Cipher name:   \taes\nCipher mode:   \txts-plain64\nPayload offset:\t320\n",
        ),
        (
            "segment sector_size 524288",
            pbkdf2(|v| v["segments"]["0"]["sector_size"] = json!(524_288)),
            "Payload offset:\t320\n",
        ),
        ("intact", pbkdf2(|_| {}), "MK bits:       \t256\n"),
    ];
    for (name, img, want) in cases {
        let path = env.copy(name, &img);
        let args = [
            "--dump-volume-key",
            "--batch-mode",
            "--key-file",
            p(&env.right),
            p(&path),
        ];
        let theirs = cs.then(|| {
            let mut a = vec!["luksDump"];
            a.extend(args);
            cryptsetup(&a)
        });
        // A fresh copy for tazpod.
        let path = env.copy(name, &img);
        let mut a = vec!["dump"];
        a.extend(args);
        let o = tazpod(&a);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            code(&o),
            0,
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            out.contains(want) && out.contains("MK dump:\t"),
            "{name}: {out}"
        );
        assert!(path.exists());
        if let Some(theirs) = theirs {
            assert_eq!(code(&theirs), 0, "{name}");
            assert_eq!(
                String::from_utf8_lossy(&theirs.stdout),
                out,
                "{name}: differs from cryptsetup"
            );
        }
    }
}
