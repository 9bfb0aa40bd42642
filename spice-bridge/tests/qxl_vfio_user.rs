//! The daemon's vfio-user path end to end in one process: the `vfio_user` crate's own
//! client plays the VMM against `vfio_user_server` serving `spice_bridge::qxl_vfio::QxlFunction`
//! over the real QXL device on its `qxl_device::Worker`. (The raw-protocol tests, posted-write
//! bursts, descriptor attribution and a hostile VMM, live with the server in
//! `vfio-user-server/tests/raw_vmm.rs`.)
use qxl_device::abi::dev::{io, irq, ram_off};
use qxl_device::{NullSink, QxlConfig, QxlDevice, Worker, WorkerConfig};
use spice_bridge::qxl_vfio::{IntxLine, QxlFunction};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::Duration;
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_REGION_INFO_FLAG_MMAP,
};
use vfio_user_server::{server_tables, FunctionBackend, Intx, PciFunction};

struct Rig {
    client: vfio_user::Client,
    _dir: std::path::PathBuf,
    _worker: Worker,
    irq: File,
    ram_header: u64,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn rig(mmap: bool) -> Rig {
    let dir = std::env::temp_dir().join(format!(
        "sb-vfio-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("qxl.sock");
    let intx = Arc::new(Intx::default());
    let cfg = QxlConfig {
        ram_size: 4 << 20,
        vgamem_size: 1 << 20,
        vram_size: 1 << 20,
        ..QxlConfig::default()
    };
    let dev = QxlDevice::new(cfg, Arc::new(IntxLine(intx.clone())), Box::new(NullSink)).unwrap();
    let ram_header = dev.layout().ram_header_offset as u64;
    let worker = Worker::spawn_with(
        dev,
        WorkerConfig {
            poll: Some(Duration::from_millis(20)),
        },
    )
    .unwrap();
    let func = QxlFunction::new(worker.handle());
    let (regions, irqs) = server_tables(&func.bars(), mmap);
    let server = vfio_user_server::Server::new(&sock, irqs, regions).unwrap();
    let mut backend = FunctionBackend::new(func, intx);
    std::thread::spawn(move || {
        let _ = server.run(&mut backend);
    });
    let mut client = vfio_user::Client::new(&sock).unwrap();
    // SAFETY: eventfd returns a new descriptor or -1; checked by the assert.
    let efd = unsafe { libc::eventfd(0, 0) };
    assert!(efd >= 0);
    client
        .set_irqs(
            0,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            0,
            1,
            &[efd],
        )
        .unwrap();
    Rig {
        client,
        _dir: dir,
        _worker: worker,
        // SAFETY: efd is a valid descriptor owned only by this File.
        irq: unsafe { File::from_raw_fd(efd) },
        ram_header,
    }
}

fn cfg32(c: &mut vfio_user::Client, off: u64) -> u32 {
    let mut b = [0u8; 4];
    c.region_read(7, off, &mut b).unwrap();
    u32::from_le_bytes(b)
}

#[test]
fn vmm_sees_qxl_identity_bar_sizes_and_rom() {
    let mut r = rig(true);
    let c = &mut r.client;
    assert_eq!(cfg32(c, 0), 0x0100_1b36, "vendor/device");
    assert_eq!(cfg32(c, 8) >> 8, 0x030000, "class VGA");
    assert_eq!(cfg32(c, 8) & 0xff, 5, "revision 5");
    c.region_write(7, 0x10, &u32::MAX.to_le_bytes()).unwrap();
    assert_eq!(
        cfg32(c, 0x10) & !0xf,
        !(4u32 << 20) + 1,
        "BAR0 sizing probe"
    );
    let reg0 = c.region(0).unwrap();
    assert_eq!(reg0.size, 4 << 20);
    assert_ne!(reg0.flags & VFIO_REGION_INFO_FLAG_MMAP, 0);
    assert!(reg0.file_offset.is_some(), "memfd handed to the VMM");
    let mut magic = [0u8; 4];
    c.region_read(2, 0, &mut magic).unwrap();
    assert_eq!(&magic, b"QXRO");
}

#[test]
fn no_mmap_mode_traps_every_bar() {
    let r = rig(false);
    for i in 0..4 {
        let reg = r.client.region(i).unwrap();
        assert_eq!(reg.flags & VFIO_REGION_INFO_FLAG_MMAP, 0, "region {i}");
        assert!(reg.file_offset.is_none());
    }
}

#[test]
fn async_memslot_add_raises_one_intx_through_the_eventfd() {
    let mut r = rig(false);
    let hdr = r.ram_header;
    let c = &mut r.client;
    // The guest's BIOS placed BAR0 at 0xE000_0000 and enabled memory decoding.
    c.region_write(7, 0x10, &0xE000_0000u32.to_le_bytes())
        .unwrap();
    c.region_write(7, 0x04, &3u16.to_le_bytes()).unwrap();
    c.region_write(3, io::RESET as u64, &[0]).unwrap();
    c.region_write(
        0,
        hdr + ram_off::INT_MASK as u64,
        &irq::IO_CMD.to_le_bytes(),
    )
    .unwrap();
    let mut slot = [0u8; 16];
    slot[..8].copy_from_slice(&0xE000_0000u64.to_le_bytes());
    slot[8..].copy_from_slice(&(0xE000_0000u64 + hdr).to_le_bytes());
    c.region_write(0, hdr + ram_off::MEM_SLOT as u64, &slot)
        .unwrap();
    c.region_write(3, io::MEMSLOT_ADD_ASYNC as u64, &[1])
        .unwrap();
    let mut n = [0u8; 8];
    r.irq.read_exact(&mut n).unwrap();
    assert!(u64::from_ne_bytes(n) >= 1);
    let mut pending = [0u8; 4];
    c.region_read(0, hdr + ram_off::INT_PENDING as u64, &mut pending)
        .unwrap();
    assert_eq!(
        u32::from_le_bytes(pending),
        irq::IO_CMD,
        "only IO_CMD pending"
    );
    assert!(r.irq.as_raw_fd() >= 0);
}
