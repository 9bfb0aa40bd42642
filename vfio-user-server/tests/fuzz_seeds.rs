//! Writes the seed corpus of the fuzz targets (`fuzz/corpus/<target>/seed-*`):
//! `cargo test -p vfio-user-server --test fuzz_seeds -- --ignored`. One seed per command for
//! `decode` (a valid body and a truncated one) and a few VMM sessions for `serve` (QEMU's
//! start-up sequence, posted-write bursts, interrupt set-up, a hostile mix).

use std::path::Path;

use vfio_user_server::abi::cmd;
use vfio_user_server::testing::{msg, region_access};

fn irq_set(flags: u32, index: u32, start: u32, count: u32) -> Vec<u8> {
    [20u32, flags, index, start, count]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

fn bodies() -> Vec<(&'static str, u16, Vec<u8>)> {
    let mut version = vec![0, 0, 0, 0];
    version.extend_from_slice(b"{\"capabilities\":{\"max_msg_fds\":8}}\0");
    let mut write = region_access(0x100, 0, 8);
    write.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    let dma_map: Vec<u8> = [32u32.to_le_bytes(), 3u32.to_le_bytes()]
        .concat()
        .into_iter()
        .chain(
            [0u64, 0x1_0000_0000, 0x10_0000]
                .iter()
                .flat_map(|v| v.to_le_bytes()),
        )
        .collect();
    let dma_unmap: Vec<u8> = [24u32.to_le_bytes(), 0u32.to_le_bytes()]
        .concat()
        .into_iter()
        .chain(
            [0x1_0000_0000u64, 0x10_0000]
                .iter()
                .flat_map(|v| v.to_le_bytes()),
        )
        .collect();
    let region_info = |index: u32, argsz: u32| -> Vec<u8> {
        [argsz, 0, index]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    };
    vec![
        ("version", cmd::VERSION, version),
        ("dma_map", cmd::DMA_MAP, dma_map),
        ("dma_unmap", cmd::DMA_UNMAP, dma_unmap),
        ("get_info", cmd::DEVICE_GET_INFO, Vec::new()),
        (
            "region_info",
            cmd::DEVICE_GET_REGION_INFO,
            region_info(2, 32),
        ),
        (
            "region_info_caps",
            cmd::DEVICE_GET_REGION_INFO,
            region_info(2, 256),
        ),
        (
            "irq_info",
            cmd::GET_IRQ_INFO,
            [16u32, 0, 0].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        ("set_irqs_trigger", cmd::SET_IRQS, irq_set(0x24, 0, 0, 1)),
        ("set_irqs_mask", cmd::SET_IRQS, irq_set(0x09, 0, 0, 1)),
        ("set_irqs_unmask", cmd::SET_IRQS, irq_set(0x11, 0, 0, 1)),
        ("set_irqs_bool", cmd::SET_IRQS, irq_set(0x22, 0, 0, 1)),
        (
            "region_read_config",
            cmd::REGION_READ,
            region_access(0, 7, 4),
        ),
        (
            "region_read_bar1",
            cmd::REGION_READ,
            region_access(0x10, 1, 8),
        ),
        ("region_write", cmd::REGION_WRITE, write),
        ("reset", cmd::DEVICE_RESET, Vec::new()),
        ("io_fds", cmd::DEVICE_GET_REGION_IO_FDS, vec![0; 16]),
    ]
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

#[test]
#[ignore = "writes files under fuzz/corpus"]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let bodies = bodies();
    for (name, command, body) in &bodies {
        let mut d = command.to_le_bytes().to_vec();
        d.extend_from_slice(body);
        write(&root.join("decode"), name, &d);
        d.truncate(2 + body.len() / 2);
        write(&root.join("decode"), &format!("{name}-cut"), &d);
        write(&root.join("serve"), name, &msg(1, *command, 0, body));
    }
    // QEMU's start-up: version, info, every region and irq, INTx trigger, config reads.
    let mut startup = msg(1, cmd::VERSION, 0, &bodies[0].2);
    startup.extend(msg(2, cmd::DEVICE_GET_INFO, 0, &[]));
    for i in 0..9u32 {
        let b: Vec<u8> = [32u32, 0, i].iter().flat_map(|v| v.to_le_bytes()).collect();
        startup.extend(msg(3, cmd::DEVICE_GET_REGION_INFO, 0, &b));
    }
    for i in 0..5u32 {
        let b: Vec<u8> = [16u32, 0, i].iter().flat_map(|v| v.to_le_bytes()).collect();
        startup.extend(msg(4, cmd::GET_IRQ_INFO, 0, &b));
    }
    startup.extend(msg(5, cmd::SET_IRQS, 0, &irq_set(0x21, 0, 0, 0)));
    for off in (0..64u64).step_by(4) {
        startup.extend(msg(6, cmd::REGION_READ, 0, &region_access(off, 7, 4)));
    }
    write(&root.join("serve"), "qemu-startup", &startup);
    // Posted writes then a read behind them.
    let mut burst = Vec::new();
    for i in 0..64u64 {
        let mut b = region_access(0x1000, 0, 8);
        b.extend_from_slice(&i.to_le_bytes());
        burst.extend(msg(7, cmd::REGION_WRITE, 1 << 4, &b));
    }
    burst.extend(msg(8, cmd::REGION_READ, 0, &region_access(0x1000, 0, 8)));
    write(&root.join("serve"), "posted-burst", &burst);
    // Hostile: bad indices, stray reply, oversize read, short write data.
    let mut hostile = msg(9, cmd::REGION_READ, 0, &region_access(0, 99, 4));
    hostile.extend(msg(10, cmd::REGION_READ, 0, &region_access(0, 0, u32::MAX)));
    let mut short = region_access(0, 0, 64);
    short.extend_from_slice(&[1, 2]);
    hostile.extend(msg(11, cmd::REGION_WRITE, 0, &short));
    hostile.extend(msg(12, cmd::SET_IRQS, 0, &irq_set(0x24, 77, 0, 0)));
    hostile.extend(msg(13, cmd::REGION_READ, 1, &[0; 16]));
    hostile.extend(msg(14, 0x7777, 0, b"?"));
    hostile.extend(msg(
        15,
        cmd::REGION_READ,
        0,
        &region_access(u64::MAX - 2, 0, 8),
    ));
    write(&root.join("serve"), "hostile", &hostile);
}
