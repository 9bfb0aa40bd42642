//! The small-draw workload of the `device_path` bench, for an instruction count: ROUNDS x
//! 20,000 Linux-style 16x16 DRAW_COPYs (one chunk, one clip rectangle) through
//! `QxlDevice::process`, in batches of 32 as the driver queues them.
//!
//! Wall-clock figures on a shared VM drift by 2-4x from run to run; callgrind's instruction
//! count does not (device/README.md, "What the benchmarks show"):
//!
//!     cargo build --release -p qxl-device --features test-utils --example small_draws
//!     valgrind --tool=callgrind --toggle-collect='qxl_device::device::QxlDevice::process' \
//!         target/release/examples/small_draws 1
//!
//! and divide the collected instructions by 20,000. Without valgrind it prints the time per draw.

use qxl_device::abi::dev::io;
use qxl_device::testing::MockDriver;
use qxl_device::QxlConfig;
use std::time::{Duration, Instant};

const PER_ROUND: usize = 20_000;

fn main() {
    let (tw, th) = (16i32, 16i32);
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut spent = Duration::ZERO;
    for _ in 0..rounds {
        // A fresh driver per round: the mock allocates guest memory and never frees it.
        let mut d = MockDriver::new(QxlConfig::default()).expect("device");
        d.probe().expect("probe");
        d.create_primary(1920, 1080).expect("primary");
        d.set_auto_worker(false);
        let tile: Vec<u32> = (0..(tw * th) as u32).collect();
        let img = d.put_image_32(tw as u32, th as u32, &tile).expect("image");
        let mut k = 0i32;
        for _ in 0..PER_ROUND / 32 {
            for _ in 0..32 {
                let (x, y) = ((k * tw) % (1920 - tw), ((k * 7) * th) % (1080 - th));
                k += 1;
                let clip = d.put_clip_rects(&[[x, y, x + tw, y + th]]).expect("clip");
                let (a, _) = d
                    .put_draw_copy(0, img, tw, th, [x, y, x + tw, y + th], clip)
                    .expect("draw");
                d.push_command(1, a).expect("ring has room");
            }
            let t = Instant::now();
            while d.dev.process().more {}
            spent += t.elapsed();
            drop(d.take_events());
            d.outb_raw(io::FLUSH_RELEASE, 0);
            d.collect_releases().expect("releases");
            d.service_irq();
        }
    }
    let n = (rounds * PER_ROUND / 32 * 32) as f64;
    println!(
        "{:.3} us per 16x16 DRAW_COPY",
        spent.as_secs_f64() * 1e6 / n
    );
}
