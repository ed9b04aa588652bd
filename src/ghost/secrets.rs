//! The `export NAME='value'` lines `tazpod env` prints for the secrets map.

use super::session::trim_newlines;
use crate::config::{SecretEntry, SecretKind};
use crate::shell::export_line;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use zeroize::Zeroize;

/// The `export` lines for `secrets` with the vault at `mount`; `read` returns a file's bytes.
/// Returns the output and the number of variables left out (each reported on stderr).
pub fn env_lines(
    secrets: &[SecretEntry],
    mount: &Path,
    mut read: impl FnMut(&Path) -> io::Result<Vec<u8>>,
) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut failed = 0;
    for s in secrets {
        let path = mount.join(&s.file);
        let mut value = match s.kind {
            SecretKind::Path => path.as_os_str().as_bytes().to_vec(),
            SecretKind::Value => match read(&path) {
                Ok(mut v) => {
                    trim_newlines(&mut v);
                    v
                }
                Err(e) => {
                    eprintln!(
                        "tazpod: {} not set: cannot read {}: {e}",
                        s.env,
                        path.display()
                    );
                    failed += 1;
                    continue;
                }
            },
        };
        match export_line(&s.env, &value) {
            Some(mut line) => {
                out.extend_from_slice(&line);
                line.zeroize();
            }
            None => {
                eprintln!(
                    "tazpod: {} not set: {} holds a NUL byte",
                    s.env,
                    path.display()
                );
                failed += 1;
            }
        }
        value.zeroize();
    }
    (out, failed)
}

/// A secret file's bytes, at most 1 MiB.
pub fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut v = Vec::new();
    f.take(1 << 20).read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn env_lines_for_values_paths_and_failures() {
        let secrets = vec![
            SecretEntry {
                env: "A".into(),
                file: "a".into(),
                kind: SecretKind::Value,
            },
            SecretEntry {
                env: "B".into(),
                file: "dir/b".into(),
                kind: SecretKind::Path,
            },
            SecretEntry {
                env: "MISSING".into(),
                file: "nope".into(),
                kind: SecretKind::Value,
            },
            SecretEntry {
                env: "NUL".into(),
                file: "nul".into(),
                kind: SecretKind::Value,
            },
        ];
        let read = |p: &Path| -> io::Result<Vec<u8>> {
            match p.to_str() {
                Some("/m/a") => Ok(b"it's\nmulti\n\n".to_vec()),
                Some("/m/nul") => Ok(b"a\0b".to_vec()),
                _ => Err(io::Error::from(io::ErrorKind::NotFound)),
            }
        };
        let (out, failed) = env_lines(&secrets, Path::new("/m"), read);
        assert_eq!(failed, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "export A='it'\\''s\nmulti'\nexport B='/m/dir/b'\n"
        );
    }
}
