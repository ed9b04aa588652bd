//! The dm-crypt table line cryptsetup loads for a LUKS volume, built exactly as cryptsetup's
//! `get_dm_crypt_params` does, and parsed back for `status`.
//!
//! `<cipher> <key> <iv_offset> <major:minor> <offset> [<n> <features>]`, with the key a keyring
//! reference `:<len>:logon:<description>` (or, as a fallback, hex).

use zeroize::Zeroizing;

/// Optional dm-crypt features, in the order cryptsetup writes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CryptFlags {
    /// `allow_discards`
    pub allow_discards: bool,
    /// `same_cpu_crypt`
    pub same_cpu_crypt: bool,
    /// `submit_from_crypt_cpus`
    pub submit_from_crypt_cpus: bool,
    /// `no_read_workqueue`
    pub no_read_workqueue: bool,
    /// `no_write_workqueue`
    pub no_write_workqueue: bool,
}

impl CryptFlags {
    /// Adds the LUKS2 persistent flags (`config.flags`) that map to dm-crypt features;
    /// other flags are ignored, as cryptsetup does.
    pub fn add_persistent(&mut self, flags: &[String]) {
        for f in flags {
            match f.as_str() {
                "allow-discards" => self.allow_discards = true,
                "same-cpu-crypt" => self.same_cpu_crypt = true,
                "submit-from-crypt-cpus" => self.submit_from_crypt_cpus = true,
                "no-read-workqueue" => self.no_read_workqueue = true,
                "no-write-workqueue" => self.no_write_workqueue = true,
                _ => {}
            }
        }
    }
}

/// How the table names the key.
pub enum TableKey<'a> {
    /// A `logon` key in the kernel keyring: `:<len>:logon:<description>`.
    Keyring {
        /// Key length in bytes.
        len: usize,
        /// Key description (`cryptsetup:<uuid>-d<digest>`).
        description: &'a str,
    },
    /// The key bytes, written as hex into the table (fallback only).
    Hex(&'a [u8]),
}

/// The parameters of one crypt target.
pub struct CryptTarget<'a> {
    /// dm-crypt cipher (`aes-xts-plain64`).
    pub cipher: &'a str,
    /// The key reference.
    pub key: TableKey<'a>,
    /// IV offset in 512-byte sectors (the segment's `iv_tweak`).
    pub iv_offset: u64,
    /// Data device number.
    pub major: u32,
    /// Data device number.
    pub minor: u32,
    /// Data offset in 512-byte sectors.
    pub offset_sectors: u64,
    /// Encryption sector size.
    pub sector_size: u32,
    /// Features.
    pub flags: CryptFlags,
}

impl CryptTarget<'_> {
    /// The target parameters (everything after `crypt`), in a buffer wiped on drop since a
    /// hex key may be in it.
    pub fn params(&self) -> Zeroizing<String> {
        let mut feats: Vec<String> = Vec::new();
        let f = &self.flags;
        for (on, name) in [
            (f.allow_discards, "allow_discards"),
            (f.same_cpu_crypt, "same_cpu_crypt"),
            (f.submit_from_crypt_cpus, "submit_from_crypt_cpus"),
            (f.no_read_workqueue, "no_read_workqueue"),
            (f.no_write_workqueue, "no_write_workqueue"),
        ] {
            if on {
                feats.push(name.to_string());
            }
        }
        if self.sector_size != 512 {
            feats.push(format!("sector_size:{}", self.sector_size));
        }
        let mut s = Zeroizing::new(String::with_capacity(256));
        s.push_str(self.cipher);
        s.push(' ');
        match &self.key {
            TableKey::Keyring { len, description } => {
                s.push_str(&format!(":{len}:logon:{description}"));
            }
            TableKey::Hex(k) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for b in k.iter() {
                    s.push(char::from(HEX[usize::from(b >> 4)]));
                    s.push(char::from(HEX[usize::from(b & 15)]));
                }
            }
        }
        s.push_str(&format!(
            " {} {}:{} {}",
            self.iv_offset, self.major, self.minor, self.offset_sectors
        ));
        if !feats.is_empty() {
            s.push_str(&format!(" {} {}", feats.len(), feats.join(" ")));
        }
        s
    }
}

/// The keyring description cryptsetup gives a volume key: `cryptsetup:<uuid>-d<digest>`.
pub fn key_description(uuid: &str, digest: u32) -> String {
    format!("cryptsetup:{uuid}-d{digest}")
}

/// The device-mapper UUID cryptsetup gives a LUKS mapping: `CRYPT-LUKS2-<uuid hex>-<name>`.
pub fn dm_uuid(version: u8, uuid: &str, name: &str) -> String {
    let compact: String = uuid.chars().filter(|c| *c != '-').collect();
    format!("CRYPT-LUKS{version}-{compact}-{name}")
}

/// A crypt table read back from the kernel (`DM_TABLE_STATUS` with the table flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCrypt {
    /// Cipher.
    pub cipher: String,
    /// Key size in bytes.
    pub key_size: usize,
    /// Whether the key is a keyring reference (else hex; the kernel shows hex keys as zeros
    /// unless asked for them).
    pub keyring: bool,
    /// IV offset.
    pub iv_offset: u64,
    /// `major:minor` of the data device.
    pub device: String,
    /// Offset in sectors.
    pub offset_sectors: u64,
    /// Sector size.
    pub sector_size: u32,
    /// Feature words other than `sector_size:N`.
    pub features: Vec<String>,
}

/// Parses crypt target parameters. The key field is only measured, never kept.
pub fn parse_crypt(params: &str) -> Option<ParsedCrypt> {
    let mut it = params.split_ascii_whitespace();
    let cipher = it.next()?.to_string();
    let key = it.next()?;
    let (key_size, keyring) = if let Some(rest) = key.strip_prefix(':') {
        let len = rest.split(':').next()?.parse().ok()?;
        (len, true)
    } else {
        (key.len() / 2, false)
    };
    let iv_offset = it.next()?.parse().ok()?;
    let device = it.next()?.to_string();
    let offset_sectors = it.next()?.parse().ok()?;
    let mut sector_size = 512;
    let mut features = Vec::new();
    if let Some(n) = it.next() {
        let n: usize = n.parse().ok()?;
        for _ in 0..n {
            let w = it.next()?;
            if let Some(v) = w.strip_prefix("sector_size:") {
                sector_size = v.parse().ok()?;
            } else {
                features.push(w.to_string());
            }
        }
    }
    Some(ParsedCrypt {
        cipher,
        key_size,
        keyring,
        iv_offset,
        device,
        offset_sectors,
        sector_size,
        features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(key: TableKey<'_>, sector_size: u32, flags: CryptFlags) -> String {
        CryptTarget {
            cipher: "aes-xts-plain64",
            key,
            iv_offset: 0,
            major: 7,
            minor: 0,
            offset_sectors: 4096,
            sector_size,
            flags,
        }
        .params()
        .to_string()
    }

    #[test]
    fn keyring_table_like_cryptsetup() {
        // As `dmsetup table` shows a cryptsetup 2.6 LUKS2 mapping of a 4096-sector volume.
        let p = target(
            TableKey::Keyring {
                len: 64,
                description: "cryptsetup:ee0dc7d2-cf93-49c0-a78a-074fbabfeea7-d0",
            },
            4096,
            CryptFlags::default(),
        );
        assert_eq!(
            p,
            "aes-xts-plain64 :64:logon:cryptsetup:ee0dc7d2-cf93-49c0-a78a-074fbabfeea7-d0 0 7:0 4096 1 sector_size:4096"
        );
    }

    #[test]
    fn features_in_cryptsetup_order() {
        let mut f = CryptFlags::default();
        f.add_persistent(&[
            "no-write-workqueue".into(),
            "allow-discards".into(),
            "unknown-flag".into(),
            "same-cpu-crypt".into(),
        ]);
        let p = target(TableKey::Hex(&[0xab, 0x01]), 512, f);
        assert_eq!(
            p,
            "aes-xts-plain64 ab01 0 7:0 4096 3 allow_discards same_cpu_crypt no_write_workqueue"
        );
    }

    #[test]
    fn parse_round_trip() {
        let p = parse_crypt("aes-xts-plain64 :64:logon:cryptsetup:x-d0 8 253:1 32768 2 allow_discards sector_size:4096")
            .expect("parses");
        assert_eq!(p.key_size, 64);
        assert!(p.keyring);
        assert_eq!(p.iv_offset, 8);
        assert_eq!(p.device, "253:1");
        assert_eq!(p.sector_size, 4096);
        assert_eq!(p.features, vec!["allow_discards".to_string()]);
        let h = parse_crypt("aes-cbc-essiv:sha256 0000000000000000000000000000000000000000000000000000000000000000 0 7:3 4096")
            .expect("parses");
        assert_eq!(h.key_size, 32);
        assert!(!h.keyring);
        assert!(parse_crypt("aes 1 2").is_none());
    }

    #[test]
    fn uuids() {
        assert_eq!(
            dm_uuid(2, "ee0dc7d2-cf93-49c0-a78a-074fbabfeea7", "vault"),
            "CRYPT-LUKS2-ee0dc7d2cf9349c0a78a074fbabfeea7-vault"
        );
        assert_eq!(key_description("u", 1), "cryptsetup:u-d1");
    }
}
