//! tazpod: cryptsetup-style verbs over a pure LUKS2 reader, and ghost mode.
fn main() {}
