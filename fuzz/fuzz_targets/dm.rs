//! The device-mapper ioctl reply decoders and the crypt table parser (pure functions of the
//! binary crate, compiled from its sources), plus encode → decode round trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tazpod_fuzz::kernel::dm;
use tazpod_fuzz::table;

fuzz_target!(|data: &[u8]| {
    // Replies from the kernel.
    if let Ok(h) = dm::decode_header(data) {
        let _ = dm::decode_targets(data, &h);
        let _ = dm::decode_name_list(data, &h);
        let _ = dm::decode_target_versions(data, &h);
    }
    // Table parameters read back for `status`.
    let text = String::from_utf8_lossy(data);
    let _ = table::parse_crypt(&text);

    // Encode a TABLE_LOAD with fuzzed name and params; what encodes must decode the same.
    let (name, params) = text.split_once('\n').unwrap_or((&text, ""));
    let target = dm::Target::new(
        0,
        data.len() as u64,
        "crypt",
        zeroize::Zeroizing::new(params.as_bytes().to_vec()),
    );
    let targets = [target];
    let req = dm::Request {
        cmd: dm::Command::TableLoad,
        name,
        uuid: "",
        flags: 0,
        targets: &targets,
    };
    // A crypt table line built from fuzzed numbers parses back to the same fields.
    if data.len() >= 32 {
        let n = |i: usize| u64::from_le_bytes(data[i..i + 8].try_into().unwrap());
        let f = data[31];
        let sector_size = 512u32 << (f % 4);
        let t = table::CryptTarget {
            cipher: "aes-xts-plain64",
            key: table::TableKey::Keyring {
                len: (n(0) % 4096) as usize,
                description: "cryptsetup:0000-d0",
            },
            iv_offset: n(8),
            major: n(16) as u32,
            minor: (n(16) >> 32) as u32,
            offset_sectors: n(24) >> 8,
            sector_size,
            flags: table::CryptFlags {
                allow_discards: f & 16 != 0,
                same_cpu_crypt: f & 32 != 0,
                submit_from_crypt_cpus: f & 64 != 0,
                no_read_workqueue: f & 128 != 0,
                no_write_workqueue: f & 8 != 0,
            },
        };
        let p = table::parse_crypt(&t.params()).expect("built table parses");
        assert_eq!(p.iv_offset, t.iv_offset);
        assert_eq!(p.offset_sectors, t.offset_sectors);
        assert_eq!(p.sector_size, sector_size);
        assert_eq!(p.device, format!("{}:{}", t.major, t.minor));
        assert!(p.keyring);
    }

    if let Ok(buf) = dm::encode_request(&req, 0) {
        let h = dm::decode_header(&buf).expect("encoded header decodes");
        assert_eq!(h.name, name);
        let t = dm::decode_targets(&buf, &h).expect("encoded targets decode");
        assert_eq!(t.len(), 1);
        assert_eq!(&t[0].params[..], params.as_bytes());
        assert_eq!(t[0].target_type, "crypt");
    }
});
