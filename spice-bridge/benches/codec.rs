//! Image codec benchmark: encode time, throughput and compressed size of BITMAP (raw), LZ and
//! LZ4 for full-HD desktop-like frames and for 1,000 small text-sized tiles.
//!
//! Run: `cargo bench -p spice-bridge --bench codec` (prints a table; no external harness).
//! Every encoding is decoded once and compared with the source before it is timed.

use std::time::{Duration, Instant};

use spice_bridge::codec::testimg::{self, Rng};
use spice_bridge::codec::{encode_bitmap, lz, lz4, SourceFormat, SourceImage};

#[derive(Clone, Copy)]
enum Codec {
    Bitmap,
    Lz,
    Lz4,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Bitmap => "BITMAP",
            Codec::Lz => "LZ",
            Codec::Lz4 => "LZ4",
        }
    }

    /// Encoded size of one image (the body after the descriptor, without `data_size`).
    fn encode(self, enc: &mut lz::LzEncoder, src: &SourceImage<'_>, out: &mut Vec<u8>) -> usize {
        out.clear();
        match self {
            Codec::Bitmap => {
                let img = encode_bitmap(src).expect("bitmap");
                img.body.len()
            }
            Codec::Lz => {
                enc.encode_into(src, out).expect("lz");
                out.len()
            }
            Codec::Lz4 => {
                lz4::encode_into(src, out).expect("lz4");
                out.len()
            }
        }
    }

    fn check(self, src: &SourceImage<'_>) {
        let raw: Vec<u8> = src.data.to_vec();
        match self {
            Codec::Bitmap => {}
            Codec::Lz => {
                let s = lz::encode(src).expect("lz");
                let d = lz::decode(&s, usize::MAX).expect("lz decode");
                let want: Vec<u32> = raw
                    .chunks_exact(4)
                    .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
                    .collect();
                assert!(d.pixels == want, "LZ round trip failed");
            }
            Codec::Lz4 => {
                let s = lz4::encode(src).expect("lz4");
                let d = lz4::decode(&s, src.width, src.height, usize::MAX).expect("lz4 decode");
                assert!(d.data == raw, "LZ4 round trip failed");
            }
        }
    }
}

struct Row {
    case: String,
    codec: &'static str,
    time: Duration,
    raw: usize,
    compressed: usize,
}

/// Median time of `iters` runs of encoding all `images`, and the total compressed size.
fn measure(codec: Codec, images: &[SourceImage<'_>], iters: usize) -> (Duration, usize) {
    let mut enc = lz::LzEncoder::new();
    let mut out = Vec::new();
    let mut times = Vec::with_capacity(iters);
    let mut size = 0;
    for _ in 0..iters {
        let t = Instant::now();
        size = 0;
        for img in images {
            size += codec.encode(&mut enc, img, &mut out);
        }
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], size)
}

fn main() {
    let (w, h) = (1920u32, 1080u32);
    let mut rng = Rng::new(42);
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "1920x1080 text on flat background",
            testimg::text(w, h, &mut rng),
        ),
        (
            "1920x1080 desktop (windows, text, photo)",
            testimg::desktop(w, h, &mut rng),
        ),
        ("1920x1080 gradient", testimg::gradient(w, h)),
        ("1920x1080 noise", testimg::noise(w, h, &mut rng)),
    ];
    let tiles: Vec<Vec<u8>> = (0..1000).map(|_| testimg::text(64, 16, &mut rng)).collect();

    let mut rows = Vec::new();
    for (name, pic) in &frames {
        let src = SourceImage {
            data: pic,
            width: w,
            height: h,
            stride: w as usize * 4,
            format: SourceFormat::Xrgb32,
        };
        for codec in [Codec::Bitmap, Codec::Lz, Codec::Lz4] {
            codec.check(&src);
            let (time, compressed) = measure(codec, std::slice::from_ref(&src), 11);
            rows.push(Row {
                case: name.to_string(),
                codec: codec.name(),
                time,
                raw: pic.len(),
                compressed,
            });
        }
    }
    let tile_srcs: Vec<SourceImage<'_>> = tiles
        .iter()
        .map(|t| SourceImage {
            data: t,
            width: 64,
            height: 16,
            stride: 256,
            format: SourceFormat::Xrgb32,
        })
        .collect();
    for codec in [Codec::Bitmap, Codec::Lz, Codec::Lz4] {
        for t in tile_srcs.iter().take(50) {
            codec.check(t);
        }
        let (time, compressed) = measure(codec, &tile_srcs, 11);
        rows.push(Row {
            case: "1000 tiles 64x16 text (total)".into(),
            codec: codec.name(),
            time,
            raw: tiles.iter().map(Vec::len).sum(),
            compressed,
        });
    }

    println!(
        "| {:<42} | {:<6} | {:>10} | {:>9} | {:>12} | {:>7} |",
        "case", "codec", "encode ms", "MB/s", "bytes", "ratio"
    );
    println!(
        "|{:-<44}|{:-<8}|{:-<12}|{:-<11}|{:-<14}|{:-<9}|",
        "", "", "", "", "", ""
    );
    for r in &rows {
        let secs = r.time.as_secs_f64();
        println!(
            "| {:<42} | {:<6} | {:>10.2} | {:>9.0} | {:>12} | {:>6.1}x |",
            r.case,
            r.codec,
            secs * 1e3,
            r.raw as f64 / 1e6 / secs.max(1e-9),
            r.compressed,
            r.raw as f64 / r.compressed as f64
        );
    }
    println!("(median of 11 runs; raw = 4 bytes/pixel; bytes exclude the 18-byte descriptor and the 4-byte data_size)");
}
