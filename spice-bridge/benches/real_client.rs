//! Display throughput with a real client connected (remote-viewer under Xvfb), per image codec:
//! full-frame 1920x1080 updates and 1,000 small text-sized updates. Prints a table.
//!
//! Run: `cargo bench -p spice-bridge --bench real_client` (needs virt-viewer and xvfb).
//! Each run ends with a display-channel PING/PONG: the client handles messages in order, so
//! the PONG means every frame before it was decoded and drawn.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spice_bridge::input::{NullAgent, NullInput};
use spice_bridge::model::{Image, Rect, SurfaceFormat};
use spice_bridge::server::{ImageCompression, ServerHandle};
use spice_bridge::{DisplayModel, Server, ServerConfig};

const W: u32 = 1920;
const H: u32 = 1080;
const FRAMES: usize = 30;
const SMALL: usize = 1000;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn xorshift(s: &mut u32) -> u32 {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    *s
}

/// A desktop-like frame: flat background, a title bar, text-like glyph rows and a noisy
/// "photo" area.
fn frame(seed: u32) -> Image {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    let mut px = vec![0x00f0_f0f0u32; (W * H) as usize];
    for y in 0..40 {
        for x in 0..W {
            px[(y * W + x) as usize] = 0x0030_4060 + seed % 64;
        }
    }
    for row in 0..50u32 {
        for col in 0..150u32 {
            if xorshift(&mut s) % 4 == 0 {
                continue;
            }
            let (gx, gy) = (20 + col * 12, 60 + row * 20);
            let glyph = xorshift(&mut s);
            for y in 0..14 {
                for x in 0..8 {
                    if (glyph >> ((x + y * 3) % 32)) & 1 == 1 {
                        px[((gy + y) * W + gx + x) as usize] = 0x0010_1010;
                    }
                }
            }
        }
    }
    for y in 700..1000 {
        for x in 1300..1800 {
            px[(y * W + x) as usize] = xorshift(&mut s) & 0x00ff_ffff;
        }
    }
    Image::new(0, W, H, px).expect("frame")
}

fn glyph(seed: u32) -> Image {
    let mut s = seed | 1;
    let px = (0..8 * 16)
        .map(|_| {
            if xorshift(&mut s) % 3 == 0 {
                0x0010_1010
            } else {
                0x00ff_ffff
            }
        })
        .collect();
    Image::new(0, 8, 16, px).expect("glyph")
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Row {
    codec: &'static str,
    workload: String,
    n: usize,
    secs: f64,
    bytes: u64,
}

async fn run_codec(
    name: &'static str,
    comp: ImageCompression,
    display: &str,
    frames: &[Image],
    glyphs: &[Image],
) -> Vec<Row> {
    let model = DisplayModel::new();
    model
        .create_surface(0, W, H, SurfaceFormat::Xrgb32)
        .unwrap();
    model
        .fill(0, Rect::new(0, 0, W as i32, H as i32), 0x00f0_f0f0, &[])
        .unwrap();
    model.mark();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        compression: comp,
        ..Default::default()
    };
    let h: ServerHandle = Server::start(
        config,
        model.clone(),
        Arc::new(NullInput),
        Arc::new(NullAgent),
    )
    .await
    .unwrap();
    let _rv = Kill(
        Command::new("remote-viewer")
            .arg(format!("spice://127.0.0.1:{}", h.local_addr().port()))
            .env("DISPLAY", display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("remote-viewer (install virt-viewer)"),
    );
    wait_for("display channel", || h.has_display()).await;
    h.display_round_trip().await.expect("pong");
    let mut rows = Vec::new();

    let b0 = h.stats().display_bytes;
    let t = Instant::now();
    for (i, f) in frames.iter().cycle().take(FRAMES).enumerate() {
        model
            .draw_copy(0, Rect::new(0, 0, W as i32, H as i32), f, &[])
            .unwrap();
        model.mark();
        // keep the model at most two frames ahead of the client, so no frame is merged
        // into a refresh and every frame is counted
        if i % 2 == 1 {
            h.display_round_trip().await.expect("pong");
        }
    }
    h.display_round_trip().await.expect("pong");
    rows.push(Row {
        codec: name,
        workload: format!("full frame {W}x{H}"),
        n: FRAMES,
        secs: t.elapsed().as_secs_f64(),
        bytes: h.stats().display_bytes - b0,
    });

    let b0 = h.stats().display_bytes;
    let t = Instant::now();
    for i in 0..SMALL {
        let (x, y) = ((i % 200) as i32 * 9 + 10, (i / 200) as i32 * 18 + 100);
        model
            .draw_copy(0, Rect::new(x, y, 8, 16), &glyphs[i % glyphs.len()], &[])
            .unwrap();
    }
    model.mark();
    h.display_round_trip().await.expect("pong");
    rows.push(Row {
        codec: name,
        workload: "1,000 updates of 8x16".into(),
        n: SMALL,
        secs: t.elapsed().as_secs_f64(),
        bytes: h.stats().display_bytes - b0,
    });
    let st = model.stats();
    assert_eq!(
        st.overflows, 0,
        "{name}: frames were dropped; figures would be wrong"
    );
    h.shutdown().await;
    rows
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("spice-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = spice_bridge::testing::Xvfb::start(None, 2048, 1280).expect("Xvfb (install xvfb)");
    let display = x.display.clone();
    let frames: Vec<Image> = (0..4).map(frame).collect();
    let glyphs: Vec<Image> = (1..=64).map(glyph).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for (name, comp) in [
        ("BITMAP", ImageCompression::Off),
        ("LZ_RGB", ImageCompression::Lz),
        ("LZ4", ImageCompression::Lz4),
    ] {
        rows.extend(rt.block_on(run_codec(name, comp, &display, &frames, &glyphs)));
    }
    println!();
    println!(
        "| codec  | workload               | count | seconds | per second | bytes each | MB/s   |"
    );
    println!(
        "|--------|------------------------|-------|---------|------------|------------|--------|"
    );
    for r in rows {
        println!(
            "| {:<6} | {:<22} | {:>5} | {:>7.2} | {:>10.1} | {:>10} | {:>6.1} |",
            r.codec,
            r.workload,
            r.n,
            r.secs,
            r.n as f64 / r.secs,
            r.bytes / r.n as u64,
            r.bytes as f64 / r.secs / 1e6
        );
    }
}
