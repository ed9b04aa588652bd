//! The JSON metadata: the json-c-compatible tokenizer and the validator, on a JSON area
//! (framing rules included) and on the text as `Metadata::parse` takes it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use luks2::metadata::Metadata;

fuzz_target!(|data: &[u8]| {
    // The whole input as a JSON area: '{' first, NUL-terminated, NUL-padded.
    let _ = Metadata::parse_area(data);
    // The input as text in the smallest header (12 KiB JSON area, padded by parse()).
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Metadata::parse(text, 16384);
    }
});
