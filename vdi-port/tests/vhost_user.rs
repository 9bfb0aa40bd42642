//! The real vhost-user protocol in process: the `vhost` crate's frontend talks to our server.

use std::fs::File;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vdi_port::input::abi::*;
use vdi_port::input::{InputDevice, InputHandle, InputKind, InputOptions};
use vdi_port::vhost_user::{ServerMetrics, VhostUserServer};
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const MEM_SIZE: usize = 0x20_0000;
const QSIZE: u16 = 16;
const USED: u64 = 0x8000;
const BUFS: u64 = 0x10_0000;

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn memfd() -> File {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the returned fd (checked
    // below) is owned by the File.
    let fd = unsafe { libc::memfd_create(c"vdi-port-test".as_ptr(), 0) };
    assert!(fd >= 0);
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(MEM_SIZE as u64).unwrap();
    f
}

/// One frontend session: negotiate, read the name through SET/GET_CONFIG, set up the eventq,
/// push a key through the handle and read the events from the used ring.
fn session(path: &std::path::Path, handle: &InputHandle, scancode: u16, key: u16) {
    let file = memfd();
    let mem: GuestMemoryMmap<()> = GuestMemoryMmap::from_ranges_with_files([(
        GuestAddress(0),
        MEM_SIZE,
        Some(FileOffset::new(file.try_clone().unwrap(), 0)),
    )])
    .unwrap();
    let hva = mem.get_host_address(GuestAddress(0)).unwrap() as u64;

    let mut fe = Frontend::connect(path, 2).unwrap();
    fe.set_owner().unwrap();
    let features = fe.get_features().unwrap();
    assert_ne!(features & (1 << 32), 0, "VIRTIO_F_VERSION_1");
    assert_ne!(
        features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits(),
        0
    );
    fe.set_features(features).unwrap();
    let pf = fe.get_protocol_features().unwrap();
    assert!(pf.contains(VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ));
    fe.set_protocol_features(
        pf & (VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK),
    )
    .unwrap();
    assert_eq!(fe.get_queue_num().unwrap(), 2);

    fe.set_mem_table(&[VhostUserMemoryRegionInfo {
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: hva,
        mmap_offset: 0,
        mmap_handle: file.as_raw_fd(),
    }])
    .unwrap();

    // QEMU style: select/subsel written as the whole 136 bytes at offset 0, then a full read.
    let mut cfg = [0u8; CONFIG_SIZE];
    cfg[0] = CFG_ID_NAME;
    fe.set_config(0, VhostUserConfigFlags::WRITABLE, &cfg)
        .unwrap();
    let (_, payload) = fe
        .get_config(
            0,
            CONFIG_SIZE as u32,
            VhostUserConfigFlags::empty(),
            &[0u8; CONFIG_SIZE],
        )
        .unwrap();
    assert_eq!(payload.len(), CONFIG_SIZE);
    let n = usize::from(payload[2]);
    assert_eq!(&payload[8..8 + n], b"spice-rs keyboard");
    // Out of range: refused and counted; the connection survives.
    let _ = fe.set_config(130, VhostUserConfigFlags::WRITABLE, &[0u8; 16]);

    // The guest side of the eventq, laid out in the shared memory.
    let vq = MockSplitQueue::create(&mem, GuestAddress(0), QSIZE);
    let descs: Vec<RawDescriptor> = (0..4u64)
        .map(|i| Descriptor::new(BUFS + 8 * i, 8, VRING_DESC_F_WRITE as u16, 0).into())
        .collect();
    vq.add_desc_chains(&descs, 0).unwrap();

    let kick = EventFd::new(0).unwrap();
    let call = EventFd::new(0).unwrap();
    fe.set_vring_num(EVENTQ, QSIZE).unwrap();
    fe.set_vring_addr(
        EVENTQ,
        &VringConfigData {
            queue_max_size: QSIZE,
            queue_size: QSIZE,
            flags: 0,
            desc_table_addr: hva + vq.desc_table_addr().0,
            used_ring_addr: hva + USED,
            avail_ring_addr: hva + vq.avail_addr().0,
            log_addr: None,
        },
    )
    .unwrap();
    fe.set_vring_base(EVENTQ, 0).unwrap();
    fe.set_vring_call(EVENTQ, &call).unwrap();
    fe.set_vring_kick(EVENTQ, &kick).unwrap();
    fe.set_vring_enable(EVENTQ, true).unwrap();
    kick.write(1).unwrap();

    wait_for("the device to become active", || handle.is_active());
    handle.key(scancode, true).unwrap();
    let used_idx = || mem.read_obj::<u16>(GuestAddress(USED + 2)).unwrap();
    wait_for("two used entries", || used_idx() == 2);
    assert_eq!(call.read().unwrap(), 1);
    let ev = |i: u64| InputEvent::from_bytes(mem.read_obj(GuestAddress(BUFS + 8 * i)).unwrap());
    assert_eq!(ev(0), InputEvent::key(key, true));
    assert_eq!(ev(1), InputEvent::SYN);
    let used_len: u32 = mem.read_obj(GuestAddress(USED + 8)).unwrap();
    assert_eq!(used_len, 8);
    drop(fe);
}

fn finished(m: &ServerMetrics, n: u64) -> bool {
    m.connections_finished() >= n
}

#[test]
fn vhost_user_input_end_to_end_and_reconnect() {
    let dir = std::env::temp_dir().join(format!("vdi-port-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kbd.sock");
    let dev = Arc::new(InputDevice::new(InputKind::Keyboard, InputOptions::default()).unwrap());
    let handle = dev.handle();
    let server = VhostUserServer::bind(&path, dev).unwrap();
    let metrics = server.metrics();
    std::thread::spawn(move || server.run());

    session(&path, &handle, 0x1e, 30);
    wait_for("first disconnect", || finished(&metrics, 1));
    assert!(!handle.is_active(), "device reset after disconnect");

    // A frontend sending garbage: the connection is dropped, the server keeps going.
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        s.write_all(&[0xff; 40]).unwrap();
    }
    wait_for("garbage connection to end", || finished(&metrics, 2));
    assert_eq!(metrics.snapshot().protocol_errors, 1);

    // Reconnect: a working device again.
    session(&path, &handle, 0xe01d, 97);
    wait_for("second disconnect", || finished(&metrics, 3));
    let s = metrics.snapshot();
    assert_eq!(s.connections, 3);
    assert_eq!(
        s.config_errors, 2,
        "one out-of-range SET_CONFIG per session"
    );
    assert_eq!(handle.stats().events_delivered, 4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The VDI port over the real vhost-user protocol: what a VMM's generic vhost-user device
/// (QEMU `vhost-user-test-device-pci`, cloud-hypervisor `--generic-vhost-user`) reads before
/// the guest starts: features with MULTIPORT, the queue count it must create, and the config
/// space with `max_nr_ports`.
#[test]
fn vhost_user_console_features_queues_and_config() {
    use vdi_port::console::{abi, ConsoleDevice, ConsoleOptions, PortOptions};

    let dir = std::env::temp_dir().join(format!("vdi-port-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vdi.sock");
    let (dev, _ports) = ConsoleDevice::new(ConsoleOptions {
        ports: vec![
            PortOptions::new("com.redhat.spice.0"),
            PortOptions::new("org.qemu.guest_agent.0"),
        ],
        ..Default::default()
    })
    .unwrap();
    let server = VhostUserServer::bind(&path, Arc::new(dev)).unwrap();
    let metrics = server.metrics();
    std::thread::spawn(move || server.run());

    let mut fe = Frontend::connect(&path, 8).unwrap();
    fe.set_owner().unwrap();
    let features = fe.get_features().unwrap();
    assert_ne!(features & abi::VIRTIO_CONSOLE_F_MULTIPORT, 0);
    assert_ne!(features & (1 << 32), 0, "VIRTIO_F_VERSION_1");
    fe.set_features(features).unwrap();
    let pf = fe.get_protocol_features().unwrap();
    assert!(pf.contains(VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ));
    fe.set_protocol_features(
        pf & (VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ),
    )
    .unwrap();
    // Two ports plus the unused port 0 and the control pair: 2 * (2 + 2).
    assert_eq!(fe.get_queue_num().unwrap(), 8);
    let (_, cfg) = fe
        .get_config(0, 12, VhostUserConfigFlags::empty(), &[0u8; 12])
        .unwrap();
    assert_eq!(cfg, [0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
    drop(fe);
    wait_for("disconnect", || finished(&metrics, 1));
    assert_eq!(metrics.snapshot().protocol_errors, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
