//! Encode moving pictures, decode them with libvpx's decoder as a client would, and check what
//! comes back.

use vpx_codec::{Vp8Decoder, Vp8Encoder, Vp8Settings};

/// A smooth, moving picture (gradients and soft blobs: what a video looks like), frame `t`.
fn frame(w: u32, h: u32, t: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let fx = x as f64 + 3.0 * t as f64;
            let fy = y as f64 + 1.5 * t as f64;
            let r = 128.0 + 100.0 * (fx / 37.0).sin() * (fy / 53.0).cos();
            let g = 128.0 + 90.0 * ((fx + fy) / 71.0).sin();
            let b = 128.0 + 110.0 * (fy / 29.0).sin();
            v.extend_from_slice(&[b as u8, g as u8, r as u8, 0]);
        }
    }
    v
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let (mut se, mut n) = (0f64, 0f64);
    for (pa, pb) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for c in 0..3 {
            let d = pa[c] as f64 - pb[c] as f64;
            se += d * d;
            n += 1.0;
        }
    }
    if se == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / (se / n)).log10()
}

fn settings(width: u32, height: u32) -> Vp8Settings {
    Vp8Settings {
        width,
        height,
        cq_level: 10,
        max_kbps: 20_000,
        cpu_used: 8,
    }
}

#[test]
fn frames_decode_close_to_the_pictures_at_every_size() {
    // odd sizes, an SD one (BT.601) and an HD one (BT.709)
    for (w, h) in [(97u32, 33u32), (320, 240), (640, 600)] {
        let mut enc = Vp8Encoder::new(settings(w, h)).unwrap();
        let mut dec = Vp8Decoder::new().unwrap();
        let mut bytes = 0;
        for t in 0..12u32 {
            let pic = frame(w, h, t);
            let f = enc
                .encode(&pic, w as usize * 4, i64::from(t) * 40, false)
                .unwrap();
            if t == 0 {
                // a key frame: bit 0 of the first byte is 0
                assert_eq!(f[0] & 1, 0, "first frame is a key frame");
            }
            bytes += f.len();
            let d = dec.decode(&f).unwrap().expect("a picture");
            assert_eq!((d.width, d.height), (w, h));
            let db = psnr(&d.bgrx, &pic);
            eprintln!("{w}x{h} frame {t}: {} bytes, {db:.1} dB", f.len());
            // the 97x33 one is too small for VP8's 16x16 blocks to keep its quality
            let floor = if w < 100 { 25.0 } else { 38.0 };
            assert!(db > floor, "{w}x{h} frame {t}: {db:.1} dB");
        }
        let raw = (w * h * 4 * 12) as usize;
        assert!(bytes * 10 < raw, "{w}x{h}: {bytes} bytes for {raw} raw");
    }
}

#[test]
fn forced_key_frames_and_quality_changes() {
    let (w, h) = (160u32, 120u32);
    let mut enc = Vp8Encoder::new(settings(w, h)).unwrap();
    let a = enc
        .encode(&frame(w, h, 0), w as usize * 4, 0, false)
        .unwrap();
    let b = enc
        .encode(&frame(w, h, 1), w as usize * 4, 40, false)
        .unwrap();
    assert_eq!(a[0] & 1, 0);
    assert_eq!(b[0] & 1, 1, "an inter frame");
    let c = enc
        .encode(&frame(w, h, 2), w as usize * 4, 80, true)
        .unwrap();
    assert_eq!(c[0] & 1, 0, "forced key frame");
    // a coarser level spends fewer bits on the same change
    enc.set_cq_level(50).unwrap();
    enc.set_max_kbps(500).unwrap();
    let d = enc
        .encode(&frame(w, h, 0), w as usize * 4, 120, true)
        .unwrap();
    assert!(d.len() < c.len(), "{} vs {}", d.len(), c.len());
}

#[test]
fn bad_sizes_and_short_pictures_are_errors() {
    assert!(Vp8Encoder::new(settings(0, 10)).is_err());
    assert!(Vp8Encoder::new(settings(10, 16_384)).is_err());
    let mut enc = Vp8Encoder::new(settings(64, 64)).unwrap();
    assert!(enc.encode(&[0u8; 64 * 64 * 4 - 1], 256, 0, false).is_err());
    assert!(enc.encode(&[0u8; 64 * 64 * 4], 200, 0, false).is_err());
    // still usable after a refused picture
    assert!(enc.encode(&[7u8; 64 * 64 * 4], 256, 0, false).is_ok());
    let mut dec = Vp8Decoder::new().unwrap();
    assert!(dec.decode(&[0xff; 40]).is_err());
    assert!(dec.decode(&[]).is_err() || dec.decode(&[]).unwrap().is_none());
}

#[test]
fn flat_colours_come_back_at_odd_sizes_frame_after_frame() {
    // An odd height once put the V plane over U's last row (libvpx's own odd-height layout):
    // the first frame looked right and the next ones had the wrong colours.
    for (w, h) in [(3u32, 1u32), (33, 17), (34, 17), (33, 18), (16, 16)] {
        let mut enc = Vp8Encoder::new(settings(w, h)).unwrap();
        let mut dec = Vp8Decoder::new().unwrap();
        for (k, c) in [[10u8, 200, 30, 0], [200, 30, 0, 0], [0, 10, 200, 0]]
            .iter()
            .enumerate()
        {
            let pic: Vec<u8> = (0..w * h).flat_map(|_| *c).collect();
            let f = enc
                .encode(&pic, w as usize * 4, k as i64 * 40, false)
                .unwrap();
            let d = dec.decode(&f).unwrap().unwrap();
            for px in d.bgrx.chunks_exact(4) {
                for i in 0..3 {
                    assert!(
                        (i16::from(px[i]) - i16::from(c[i])).abs() <= 3,
                        "{w}x{h} frame {k}: {:?} for {:?}",
                        &px[..3],
                        &c[..3]
                    );
                }
            }
        }
    }
}
