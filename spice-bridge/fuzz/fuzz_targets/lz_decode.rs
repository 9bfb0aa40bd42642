//! The LZ and LZ4 image decoders must never panic and never allocate beyond their limits,
//! whatever the bytes. Input: an LZ stream (seeds: `corpus/lz_decode/`, written by the
//! `write_fuzz_seeds` unit test). The same bytes are also fed to the LZ4 payload decoder with a
//! geometry taken from the first bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spice_bridge::codec::{lz, lz4};

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = lz::decode(data, 1 << 20) {
        // A successful decode yields exactly width x height pixels.
        assert_eq!(
            img.pixels.len(),
            img.header.width as usize * img.header.height as usize
        );
    }
    if data.len() >= 2 {
        let w = u32::from(data[0] % 64) + 1;
        let h = u32::from(data[1] % 64) + 1;
        if let Ok(d) = lz4::decode(&data[2..], w, h, 1 << 22) {
            assert!(d.data.len() <= 64 * 64 * 4);
        }
    }
});
