//! A LUKS1 header: the 592-byte parser and cryptsetup's keyslot checks, then the
//! device-size check through read_header.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = luks2::luks1::Luks1Header::parse(data) {
        let _ = h.required_device_size();
        let _ = h.cipher_spec();
    }
    let _ = luks2::read_header(&mut std::io::Cursor::new(data));
});
