//! Decode + render throughput against a plain memcpy of the same pixels (prints a table).
//!
//! Cases (issue 2, "How it is proven"):
//! - a 1920x1080 full-frame DRAW_COPY as Linux sends it (32BIT TOP_DOWN bitmap in one chunk,
//!   one clip rect, ROPD_OP_PUT), decoded and rendered into the primary;
//! - small draws at scattered positions: 10,000 16x16 and 64x64 COPYs, 1,000 256x256 COPYs,
//!   10,000 16x16 solid FILLs; the 16x16 COPY also split into decode only and render only.
//!
//! Every COPY row is compared with a memcpy of the same rows into a screen-sized buffer. A
//! small draw costs a fixed amount per command (copying and checking the drawable, image and
//! chunk headers; the device path adds the ring pop and the release, see `device_path`) that
//! a 16x16 memcpy of 1 KiB does not have; the table shows where that cost stops mattering.
//!
//! Run: `cargo bench -p qxl-device --bench render`.

use qxl_device::abi::cmd::*;
use qxl_device::decode::build::{copy_member, fill_member, qmask, solid_brush, Builder};
use qxl_device::decode::testmem::VecMemory;
use qxl_device::decode::*;
use qxl_device::mem::{GuestMemory, QxlPhys};
use qxl_device::render::Renderer;
use std::hint::black_box;
use std::time::{Duration, Instant};

const W: u32 = 1920;
const H: u32 = 1080;

/// Best of `reps` runs of `f` (each run does `ops` operations); returns time per op.
fn best(reps: usize, ops: u64, mut f: impl FnMut()) -> Duration {
    f(); // warm up
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best / ops as u32
}

struct Row {
    case: String,
    per_op: Duration,
    bytes_per_op: u64,
    ops_unit: bool,
    baseline: Duration,
}

fn main() {
    let limits = Limits::default();
    let mem = VecMemory::with_slot(64 << 20);
    let b = Builder::new(&mem);
    let frame_bytes = (W * H * 4) as usize;

    // Primary surface in guest memory, and the renderer.
    let prim = mem.alloc(1, frame_bytes);
    let desc = validate_surface(&mem, W, H, (W * 4) as i32, 32, prim, &limits).unwrap();
    let mut r = Renderer::new(1024, 256 << 20);
    r.create_surface(0, &desc, false, &mem).unwrap();

    // Full-frame DRAW_COPY, Linux style.
    let pixels: Vec<u32> = (0..W * H).map(|i| i.wrapping_mul(2_654_435_761)).collect();
    let img = b.argb_image(W, H, &pixels);
    let full = Rect::new(0, 0, W as i32, H as i32);
    let clip = b.clip_rects(&[full]);
    let c = copy_member(img, full, ropd::OP_PUT, 0, qmask(false, 0, 0, QxlPhys(0)));
    let frame_cmd = b.drawable(0, draw_type::COPY, full, clip, &c);

    // memcpy baseline: the same bytes from one host buffer to another.
    let src_bytes: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    let mut dst_bytes = vec![0u8; frame_bytes];
    let memcpy_frame = best(20, 1, || {
        dst_bytes.copy_from_slice(black_box(&src_bytes));
        black_box(&dst_bytes);
    });
    let decode_only = best(20, 1, || {
        black_box(decode_display(&mem, cmd_type::DRAW, frame_cmd, &limits).unwrap());
    });
    let frame = best(20, 1, || {
        let cmd = decode_display(&mem, cmd_type::DRAW, frame_cmd, &limits).unwrap();
        r.draw(&cmd, &mem).unwrap();
    });
    // Check the frame landed (not a timing assertion: a correctness guard for the bench).
    assert_eq!(
        r.snapshot(0).unwrap().pixels[12345] & 0xFF_FFFF,
        pixels[12345] & 0xFF_FFFF
    );
    let update = best(10, 1, || {
        r.update_area(0, full, &mem).unwrap();
    });

    // Small draws: COPYs of a TxT tile at scattered positions (10,000 of them; 1,000 for the
    // largest tile), each against a memcpy of the same rows into a screen-sized buffer; then
    // 16x16 solid FILLs. The 16x16 COPY is also timed as decode only and render only.
    let mut tiles = Vec::new();
    let mut screen = vec![0u8; frame_bytes];
    let mut copies16 = Vec::new();
    for (t, n) in [(16usize, 10_000usize), (64, 10_000), (256, 1_000)] {
        let tile_px: Vec<u32> = (0..(t * t) as u32).collect();
        let tile = b.argb_image(t as u32, t as u32, &tile_px);
        let pos = |i: usize| {
            (
                (i * 37) % (W as usize / t) * t,
                (i * 11) % (H as usize / t) * t,
            )
        };
        let cmds: Vec<QxlPhys> = (0..n)
            .map(|i| {
                let (x, y) = pos(i);
                let (x, y, t) = (x as i32, y as i32, t as i32);
                let c = copy_member(
                    tile,
                    Rect::new(0, 0, t, t),
                    ropd::OP_PUT,
                    0,
                    qmask(false, 0, 0, QxlPhys(0)),
                );
                b.drawable(
                    0,
                    draw_type::COPY,
                    Rect::new(x, y, x + t, y + t),
                    QxlPhys(0),
                    &c,
                )
            })
            .collect();
        let src: Vec<u8> = tile_px.iter().flat_map(|p| p.to_le_bytes()).collect();
        let row = t * 4;
        let memcpy = best(10, n as u64, || {
            for i in 0..n {
                let (x, y) = pos(i);
                for r in 0..t {
                    let o = ((y + r) * W as usize + x) * 4;
                    screen[o..o + row].copy_from_slice(black_box(&src[r * row..r * row + row]));
                }
            }
            black_box(&screen);
        });
        let draws = best(10, n as u64, || {
            for &a in &cmds {
                let cmd = decode_display(&mem, cmd_type::DRAW, a, &limits).unwrap();
                r.draw(&cmd, &mem).unwrap();
            }
        });
        // Correctness guard for the bench: the last tile landed.
        let (x, y) = pos(n - 1);
        let snap = r.snapshot(0).unwrap();
        assert_eq!(
            snap.pixels[(y + 1) * W as usize + x + 2] & 0xFF_FFFF,
            t as u32 + 2
        );
        if t == 16 {
            copies16 = cmds;
        }
        tiles.push((t, memcpy, draws));
    }
    let memcpy_small = tiles[0].1;
    let small_decode = best(10, copies16.len() as u64, || {
        for &a in &copies16 {
            black_box(decode_display(&mem, cmd_type::DRAW, a, &limits).unwrap());
        }
    });
    let decoded: Vec<_> = copies16
        .iter()
        .map(|&a| decode_display(&mem, cmd_type::DRAW, a, &limits).unwrap())
        .collect();
    let small_render = best(10, decoded.len() as u64, || {
        for c in &decoded {
            r.draw(c, &mem).unwrap();
        }
    });
    drop(decoded);
    const N: usize = 10_000;
    let fills: Vec<QxlPhys> = (0..N)
        .map(|i| {
            let x = ((i * 37) % (W as usize / 16)) as i32 * 16;
            let y = ((i * 11) % (H as usize / 16)) as i32 * 16;
            let f = fill_member(
                solid_brush(i as u32),
                ropd::OP_PUT,
                qmask(false, 0, 0, QxlPhys(0)),
            );
            b.drawable(
                0,
                draw_type::FILL,
                Rect::new(x, y, x + 16, y + 16),
                QxlPhys(0),
                &f,
            )
        })
        .collect();
    let small_fills = best(10, N as u64, || {
        for &a in &fills {
            let cmd = decode_display(&mem, cmd_type::DRAW, a, &limits).unwrap();
            r.draw(&cmd, &mem).unwrap();
        }
    });
    let _ = mem.read_u32(prim);

    // Hostile: a FILL with MAX_CLIP_RECTS tall, overlapping clip rects with distinct tops.
    let rects: Vec<Rect> = (0..MAX_CLIP_RECTS as i32)
        .map(|i| {
            Rect::new(
                (i * 7) % (W as i32 - 64),
                i / 4,
                (i * 7) % (W as i32 - 64) + 64,
                H as i32,
            )
        })
        .collect();
    let clip = b.clip_rects(&rects);
    let f = fill_member(
        solid_brush(0x777777),
        ropd::OP_XOR,
        qmask(false, 0, 0, QxlPhys(0)),
    );
    let hostile_cmd = b.drawable(0, draw_type::FILL, full, clip, &f);
    let hostile = best(3, 1, || {
        let cmd = decode_display(&mem, cmd_type::DRAW, hostile_cmd, &limits).unwrap();
        r.draw(&cmd, &mem).unwrap();
    });

    let mut rows = vec![
        Row {
            case: "memcpy 1920x1080x4".into(),
            per_op: memcpy_frame,
            bytes_per_op: frame_bytes as u64,
            ops_unit: false,
            baseline: memcpy_frame,
        },
        Row {
            case: "full-frame DRAW_COPY decode only".into(),
            per_op: decode_only,
            bytes_per_op: frame_bytes as u64,
            ops_unit: false,
            baseline: memcpy_frame,
        },
        Row {
            case: "full-frame DRAW_COPY decode+render".into(),
            per_op: frame,
            bytes_per_op: frame_bytes as u64,
            ops_unit: false,
            baseline: memcpy_frame,
        },
        Row {
            case: "UPDATE_AREA full frame (write-back)".into(),
            per_op: update,
            bytes_per_op: frame_bytes as u64,
            ops_unit: false,
            baseline: memcpy_frame,
        },
        Row {
            case: "hostile FILL, 4096 overlapping clip rects".into(),
            per_op: hostile,
            bytes_per_op: frame_bytes as u64,
            ops_unit: false,
            baseline: memcpy_frame,
        },
    ];
    for &(t, memcpy, draws) in &tiles {
        let bytes = (t * t * 4) as u64;
        rows.push(Row {
            case: format!("memcpy {t}x{t}x4 tile"),
            per_op: memcpy,
            bytes_per_op: bytes,
            ops_unit: true,
            baseline: memcpy,
        });
        rows.push(Row {
            case: format!("{t}x{t} DRAW_COPY decode+render"),
            per_op: draws,
            bytes_per_op: bytes,
            ops_unit: true,
            baseline: memcpy,
        });
    }
    for (case, per_op) in [
        ("16x16 DRAW_COPY decode only", small_decode),
        ("16x16 DRAW_COPY render only", small_render),
        ("16x16 DRAW_FILL decode+render", small_fills),
    ] {
        rows.push(Row {
            case: case.into(),
            per_op,
            bytes_per_op: 1024,
            ops_unit: true,
            baseline: memcpy_small,
        });
    }
    println!(
        "{:<42} {:>12} {:>14} {:>12} {:>10}",
        "case", "time/op", "MB/s", "ops/s", "vs memcpy"
    );
    for r in rows {
        let secs = r.per_op.as_secs_f64();
        let mbs = r.bytes_per_op as f64 / secs / 1e6;
        let ops = 1.0 / secs;
        let ratio = secs / r.baseline.as_secs_f64();
        let t = if secs < 1e-3 {
            format!("{:.2} us", secs * 1e6)
        } else {
            format!("{:.3} ms", secs * 1e3)
        };
        let ops_s = if r.ops_unit {
            format!("{ops:.0}")
        } else {
            format!("{ops:.1}")
        };
        println!(
            "{:<42} {:>12} {:>14.0} {:>12} {:>9.2}x",
            r.case, t, mbs, ops_s, ratio
        );
    }
}
