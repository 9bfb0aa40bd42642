//! PSNR of the lossy pictures a Spice server sent for the guest's `photo` and `video` workloads
//! (issue 11's lossy benchmark): reads the JPEG files `tests/lib/daemon_spiceproxy.py --dump`
//! wrote (stream frames and JPEG images, each named with its box; VP8 stream frames as .vp8
//! files, decoded in order by one libvpx decoder per stream), and compares each with the
//! picture the guest drew there: `pic_photo(x - ox, y - oy, f)` of `images/guest/qxltest.c`,
//! where (ox, oy) is where the workload's picture starts on the screen (`--origin`: 0,0 for the
//! full-screen slideshow, the video area's corner for `video` and `movie`); with `--movie`, the
//! pan of the `movie` workload, `pic_photo(x - ox + 3f, y - oy + f, 0)`. The guest frame `f` a picture
//! shows is not recorded on the wire, so each is compared with every frame `0..frames` and the
//! best match counts.
//!
//! ```text
//! cargo run --release -p spice-bridge --example frame_psnr -- [--movie] --frames N --origin OX,OY DIR
//! ```
//!
//! prints one `key=value` line: pictures (those that match a guest frame, best PSNR of 20 dB
//! or more), bytes (their JPEG data), mean_db, min_db, streamed (stream frames among them),
//! stream_bytes and stream_mean_db (of those), other (JPEG pictures of something else, such as
//! the screen before the loop).

use std::collections::HashMap;
use std::path::Path;

use spice_bridge::testing::{decode_jpeg, psnr};

/// `qxltest.c`'s triangle wave.
fn tri(v: u32) -> u32 {
    let v = v & 511;
    if v < 256 {
        v
    } else {
        511 - v
    }
}

/// `qxltest.c`'s `pic_photo` (0x00RRGGBB), the same integer steps.
fn pic_photo(x: u32, y: u32, f: u32) -> u32 {
    let a = tri(x.wrapping_add(y >> 1).wrapping_add(37u32.wrapping_mul(f)));
    let b = tri((x >> 1)
        .wrapping_add(y)
        .wrapping_add(y >> 1)
        .wrapping_add(11u32.wrapping_mul(f)));
    let c = tri(((x.wrapping_mul(x).wrapping_add(y.wrapping_mul(y))) >> 9)
        .wrapping_add(23u32.wrapping_mul(f)));
    let mut h =
        x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ f.wrapping_mul(83_492_791);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    let n = h & 7;
    let r = ((2 * a + c) / 3 + n).min(255);
    let g = ((b + 2 * c) / 3 + n).min(255);
    let bl = ((a + b) / 2 + (n >> 1)).min(255);
    (r << 16) | (g << 8) | bl
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Known values from tests/lib/qxlpic.py's pic_photo (the Python twin of the guest's).
    for ((x, y, f), want) in [
        ((0, 0, 0), 0x000000),
        ((100, 37, 3), 0xb86bb7),
        ((479, 269, 19), 0x943cc4),
        ((1023, 767, 5), 0x77dd77),
    ] {
        assert_eq!(pic_photo(x, y, f), want, "pic_photo({x}, {y}, {f})");
    }
    let movie = args.first().is_some_and(|a| a == "--movie");
    let args = &args[usize::from(movie)..];
    let (frames, origin, dir) = match args {
        [f, n, o, xy, dir] if f == "--frames" && o == "--origin" => {
            let (x, y) = xy.split_once(',').expect("--origin OX,OY");
            let origin: (u32, u32) = (x.parse().expect("OX"), y.parse().expect("OY"));
            (n.parse::<u32>().expect("--frames N"), origin, dir)
        }
        _ => {
            eprintln!("usage: frame_psnr [--movie] --frames N --origin OX,OY DIR");
            std::process::exit(2);
        }
    };
    let mut files: Vec<_> = std::fs::read_dir(Path::new(dir))
        .expect("dump directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg" || x == "vp8"))
        .collect();
    // VP8 frames refer to earlier ones: one decoder per stream id, fed in arrival order
    let mut vp8: HashMap<String, vpx_codec::Vp8Decoder> = HashMap::new();
    files.sort();
    let (mut n, mut bytes, mut sum, mut min, mut streamed) =
        (0u32, 0u64, 0f64, f64::INFINITY, 0u32);
    let mut other = 0u32;
    let (mut stream_bytes, mut stream_sum) = (0u64, 0f64);
    for path in &files {
        let data = std::fs::read(path).expect("read picture");
        let decoded = if path.extension().is_some_and(|x| x == "vp8") {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            // NNNNNN-stream-S-...: the stream id
            let sid = name.split('-').nth(2).unwrap_or("").to_string();
            let dec = vp8
                .entry(sid)
                .or_insert_with(|| vpx_codec::Vp8Decoder::new().expect("VP8 decoder"));
            match dec.decode(&data) {
                Ok(Some(f)) => Ok((
                    f.width,
                    f.height,
                    f.bgrx
                        .chunks_exact(4)
                        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
                        .collect(),
                )),
                Ok(None) => Err("no picture".to_string()),
                Err(e) => Err(e.to_string()),
            }
        } else {
            decode_jpeg(&data)
        };
        let (w, h, got) = match decoded {
            Ok(v) => v,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                continue;
            }
        };
        // The box is in the name: ...-WxH+X+Y.jpg
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let bx = name
            .rsplit('-')
            .next()
            .and_then(|b| {
                let mut it = b.split('+');
                let _wh = it.next()?;
                Some((
                    it.next()?.parse::<u32>().ok()?,
                    it.next()?.parse::<u32>().ok()?,
                ))
            })
            .unwrap_or(origin);
        let (dx, dy) = (bx.0.wrapping_sub(origin.0), bx.1.wrapping_sub(origin.1));
        let best = (0..frames)
            .map(|f| {
                // movie: the still picture of frame 0, 3 columns and 1 row further a frame
                let (sx, sy, sf) = if movie { (3 * f, f, 0) } else { (0, 0, f) };
                let want: Vec<u32> = (0..h)
                    .flat_map(|y| (0..w).map(move |x| pic_photo(dx + x + sx, dy + y + sy, sf)))
                    .collect();
                psnr(&got, &want)
            })
            .fold(0f64, f64::max);
        if best < 20.0 {
            other += 1;
            continue;
        }
        n += 1;
        bytes += data.len() as u64;
        sum += best;
        min = min.min(best);
        if path.to_string_lossy().contains("-stream-") {
            streamed += 1;
            stream_bytes += data.len() as u64;
            stream_sum += best;
        }
    }
    let mean = if n > 0 { sum / f64::from(n) } else { 0.0 };
    println!(
        "pictures={n} bytes={bytes} mean_db={mean:.2} min_db={:.2} streamed={streamed} \
         stream_bytes={stream_bytes} stream_mean_db={:.2} other={other}",
        if n > 0 { min } else { 0.0 },
        if streamed > 0 {
            stream_sum / f64::from(streamed)
        } else {
            0.0
        }
    );
}
