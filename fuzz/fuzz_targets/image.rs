//! A whole LUKS2 image with cryptsetup's checksum fix-up (crypt2_load_fuzz.cc): the checksum
//! of both copies is recomputed over the mutated bytes before loading, so mutations reach the
//! JSON parser, the validator and the copy choice. Whatever loads is also dumped through the
//! data-segment path the CLI uses. The input is the start of the device: reads past its end
//! see zeros up to the largest size a header can ask for, so device-size checks pass.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut img = data.to_vec();
    tazpod_fuzz::fix_checksums(&mut img);
    let size = tazpod_fuzz::MAX_HEADER_AND_AREAS;
    if let Ok(h) = luks2::read_header(&mut tazpod_fuzz::Padded::new(&img, size)) {
        if let Ok(seg) = luks2::volume::DataSegment::of(&h) {
            let _ = seg.length_on(size);
        }
    }
});
