//! Property test of the writer: whatever parameters and keyslot operations it is given, every
//! header it writes is accepted by tazpod's own reader (validation included), and the volume
//! key still comes back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod format_support;

use format_support::*;
use luks2::format::{self, Layout};
use proptest::prelude::*;
use std::io::Cursor;

fn header(image: &[u8]) -> luks2::header::Luks2Header {
    match luks2::read_header(&mut Cursor::new(image)).expect("reader accepts the writer's header") {
        luks2::Header::Luks2(h) => *h,
        luks2::Header::Luks1(_) => panic!("luks1"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn writer_output_is_valid(
        md in prop::sample::select(vec![16384u64, 32768, 65536]),
        ks_pages in 63u64..400,
        sector in prop::sample::select(vec![512u32, 1024, 2048, 4096]),
        key in prop::sample::select(vec![32usize, 64]),
        label in "[ -~]{0,47}",
        ops in prop::collection::vec((any::<bool>(), 0u32..6), 0..6),
        seed in any::<u64>(),
    ) {
        let mut p = params();
        p.layout = Layout::cryptsetup(Some(md), Some(ks_pages * 4096), false).unwrap();
        p.sector_size = sector;
        p.label = label.clone();
        let mut rng = TestRng::new(seed);
        let mut vk = vec![0u8; key];
        rng.fill(&mut vk).unwrap();
        let f = format::format(&p, &vk, b"p0", &mut |b: &mut [u8]| rng.fill(b));
        let f = match f {
            Ok(f) => f,
            // A keyslots area too small for one keyslot is refused, not written.
            Err(format::FormatError::NoSpace { .. }) => return Ok(()),
            Err(e) => panic!("{e}"),
        };
        let mut image = Vec::new();
        f.plan.apply_to(&mut image);
        let h = header(&image);
        prop_assert_eq!(&h.binary.label, &label);
        for (add, slot) in ops {
            let h = header(&image);
            let r = if add {
                format::add_keyslot(&h, &vk, 0, b"px", &spec(pbkdf2(), &p.encryption), Some(slot),
                    &mut |b: &mut [u8]| rng.fill(b)).map(|(plan, _)| plan)
            } else {
                format::remove_keyslot(&h, slot, &mut |b: &mut [u8]| rng.fill(b))
            };
            if let Ok(plan) = r {
                plan.apply_to(&mut image);
                header(&image);
            }
        }
        let h = header(&image);
        if !h.metadata.keyslots.is_empty() {
            // Slot 0 holds "p0" unless it was removed and added again with "px": one of the
            // two passphrases must open the volume key.
            let opened = our_unlock(&image, b"p0").or_else(|| our_unlock(&image, b"px"));
            prop_assert_eq!(opened, Some(vk.clone()));
        }
    }
}
