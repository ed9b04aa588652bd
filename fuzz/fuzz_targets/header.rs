//! Binary header (both LUKS2 copies, or a LUKS1 header) from arbitrary bytes, checksums as
//! they come: exercises magic, version, size, offset and checksum checks and the copy choice.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = luks2::read_header(&mut std::io::Cursor::new(data));
});
