//! The QXL device as a vfio-user PCI function, and the worker thread that drains its rings.
//!
//! Threads (../shared/design.md "Threads"): the vfio-user thread only touches registers and
//! wakes the worker; the worker runs [`QxlDevice::process`] and forwards [`DeviceEvent`]s to
//! the bridge through a channel, so the guest never waits on a Spice client.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use qxl_device::{BarIndex, InterruptLine, QxlDevice};
use tracing::debug;

use crate::vfio::{BarBacking, Intx, PciFunction};

/// Wakes the device worker.
#[derive(Debug, Default)]
pub struct Wake {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    /// Marks work pending and wakes the worker.
    pub fn wake(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_one();
    }
    /// Waits until woken or `timeout` passed; returns whether it was woken.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |woken| !*woken)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *guard, false)
    }
}

/// The device's INTx line, delivered through the vfio-user eventfd.
pub struct IntxLine(pub Arc<Intx>);

impl InterruptLine for IntxLine {
    fn set_level(&self, asserted: bool) {
        self.0.set_level(asserted);
    }
}

/// [`QxlDevice`] seen as a PCI function by the vfio-user transport.
pub struct QxlFunction {
    /// The device.
    pub dev: QxlDevice,
    wake: Arc<Wake>,
}

impl QxlFunction {
    /// Wraps `dev`; I/O that needs the worker wakes `wake`.
    pub fn new(dev: QxlDevice, wake: Arc<Wake>) -> Self {
        QxlFunction { dev, wake }
    }
}

fn bar_index(bar: u32) -> Option<BarIndex> {
    match bar {
        0 => Some(BarIndex::Ram),
        1 => Some(BarIndex::Vram),
        2 => Some(BarIndex::Rom),
        3 => Some(BarIndex::Io),
        4 => Some(BarIndex::Vram64),
        _ => None,
    }
}

impl PciFunction for QxlFunction {
    fn bars(&self) -> [BarBacking; 6] {
        use std::os::fd::AsRawFd;
        let mut out = [BarBacking::Absent; 6];
        for r in self.dev.bar_regions() {
            let i = r.info.bar as usize;
            out[i] = match r.mmap {
                Some((fd, offset)) => BarBacking::Mappable {
                    size: r.info.size,
                    fd: fd.as_raw_fd(),
                    offset,
                },
                None => BarBacking::Trapped {
                    size: r.info.size,
                    writable: r.info.bar != BarIndex::Rom,
                },
            };
        }
        out
    }

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        match u16::try_from(offset) {
            Ok(off) if off < 256 => self.dev.config_read(off, data),
            _ => data.fill(0xff),
        }
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) {
        if let Ok(off) = u16::try_from(offset) {
            for m in self.dev.config_write(off, data) {
                debug!("BAR {:?} moved {:?} -> {:?}", m.bar, m.old, m.new);
            }
        }
    }

    fn bar_read(&mut self, bar: u32, offset: u64, data: &mut [u8]) {
        match bar_index(bar) {
            Some(b) => self.dev.bar_read(b, offset, data),
            None => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, bar: u32, offset: u64, data: &[u8]) {
        if let Some(b) = bar_index(bar) {
            if self.dev.bar_write(b, offset, data).wake_worker {
                self.wake.wake();
            }
        }
    }

    fn reset(&mut self) {
        self.dev.reset();
    }
}

/// Runs the device worker until `stop` is set: drains the rings whenever woken (and every
/// `poll` as a safety net), forwarding events through the device's sink.
pub fn run_worker(
    func: Arc<Mutex<QxlFunction>>,
    wake: Arc<Wake>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    poll: Duration,
) {
    use std::sync::atomic::Ordering;
    while !stop.load(Ordering::Relaxed) {
        wake.wait(poll);
        loop {
            let progress = {
                let mut f = func.lock().unwrap_or_else(|p| p.into_inner());
                f.dev.process()
            };
            if !progress.more {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The daemon's vfio-user path end to end in one process: the `vfio_user` crate's own
    //! client plays the VMM against our server and the real [`QxlDevice`].
    use super::*;
    use crate::vfio::{server_tables, VfioBackend};
    use qxl_device::abi::dev::{io, irq, ram_off};
    use qxl_device::{NullSink, QxlConfig};
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::sync::atomic::AtomicBool;
    use vfio_bindings::bindings::vfio::{
        VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_REGION_INFO_FLAG_MMAP,
    };

    struct Rig {
        client: vfio_user::Client,
        _dir: std::path::PathBuf,
        stop: Arc<AtomicBool>,
        wake: Arc<Wake>,
        irq: File,
        ram_header: u64,
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            self.wake.wake();
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
        let wake = Arc::new(Wake::default());
        let cfg = QxlConfig {
            ram_size: 4 << 20,
            vgamem_size: 1 << 20,
            vram_size: 1 << 20,
            ..QxlConfig::default()
        };
        let dev =
            QxlDevice::new(cfg, Arc::new(IntxLine(intx.clone())), Box::new(NullSink)).unwrap();
        let ram_header = dev.layout().ram_header_offset as u64;
        let func = Arc::new(Mutex::new(QxlFunction::new(dev, wake.clone())));
        let bars = func.lock().unwrap().bars();
        let (regions, irqs) = server_tables(&bars, mmap);
        let server = crate::vfio::Server::new(&sock, irqs, regions).unwrap();
        let mut backend = VfioBackend::new(func.clone(), intx);
        std::thread::spawn(move || {
            let _ = server.run(&mut backend);
        });
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (func, wake, stop) = (func.clone(), wake.clone(), stop.clone());
            std::thread::spawn(move || run_worker(func, wake, stop, Duration::from_millis(20)));
        }
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
            stop,
            wake,
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

    /// Raw vfio-user messages, as QEMU sends them (the crate's client always waits for a
    /// reply, so it cannot post writes).
    fn msg(id: u16, command: u16, flags: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(16 + body.len());
        m.extend_from_slice(&id.to_le_bytes());
        m.extend_from_slice(&command.to_le_bytes());
        m.extend_from_slice(&(16 + body.len() as u32).to_le_bytes());
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        m.extend_from_slice(body);
        m
    }

    fn reply(s: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
        let mut h = [0u8; 16];
        s.read_exact(&mut h).unwrap();
        assert_eq!(
            u32::from_le_bytes(h[8..12].try_into().unwrap()),
            1,
            "a plain reply"
        );
        let size = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        let mut b = vec![0u8; size - 16];
        s.read_exact(&mut b).unwrap();
        b
    }

    /// A trapped-BAR QXL function behind the daemon's vfio-user server on a fresh socket, for
    /// tests that speak raw vfio-user: (temp dir, socket, INTx, the serving thread).
    #[allow(clippy::type_complexity)]
    fn raw_server(
        name: &str,
    ) -> (
        std::path::PathBuf,
        std::path::PathBuf,
        Arc<Intx>,
        std::thread::JoinHandle<std::io::Result<crate::vfio::ConnStats>>,
    ) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("qxl.sock");
        let intx = Arc::new(Intx::default());
        let cfg = QxlConfig {
            ram_size: 4 << 20,
            vgamem_size: 1 << 20,
            vram_size: 1 << 20,
            ..QxlConfig::default()
        };
        let dev =
            QxlDevice::new(cfg, Arc::new(IntxLine(intx.clone())), Box::new(NullSink)).unwrap();
        let func = Arc::new(Mutex::new(QxlFunction::new(dev, Arc::new(Wake::default()))));
        let (regions, irqs) = server_tables(&func.lock().unwrap().bars(), false);
        let server = crate::vfio::Server::new(&sock, irqs, regions).unwrap();
        let mut backend = VfioBackend::new(func, intx.clone());
        let served = std::thread::spawn(move || server.run(&mut backend));
        (dir, sock, intx, served)
    }

    /// The NULL command-ring entry (device/README.md): with trapped BARs QEMU posts BAR writes,
    /// and a read queued behind a frame's worth of them timed out in QEMU (5 s) while the
    /// server paid three syscalls per message; the guest's ring index then read as all-ones.
    /// The server must take posted writes from the socket in bulk, in order, so a read behind
    /// them sees every one of them.
    #[test]
    fn posted_writes_are_taken_in_bulk_and_a_read_behind_them_sees_the_last() {
        use std::io::Write;
        const N: u32 = 20_000;
        let (dir, sock, _intx, served) = raw_server("sb-bulk");

        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        let caps = b"{\"capabilities\":{\"max_msg_fds\":8}}\0";
        let mut v = vec![0u8; 4];
        v.extend_from_slice(caps);
        s.write_all(&msg(1, 1, 0, &v)).unwrap();
        let version = reply(&mut s);
        assert!(String::from_utf8_lossy(&version[4..]).contains("max_data_xfer_size"));
        // N posted 8-byte writes to the same BAR0 offset (value = sequence number), sent as
        // one stream the way QEMU's queue drains into the socket, then one read.
        let off = 0x1000u64;
        let mut burst = Vec::with_capacity(N as usize * 40);
        for i in 1..=N {
            let mut body = Vec::with_capacity(24);
            body.extend_from_slice(&off.to_le_bytes());
            body.extend_from_slice(&0u32.to_le_bytes());
            body.extend_from_slice(&8u32.to_le_bytes());
            body.extend_from_slice(&u64::from(i).to_le_bytes());
            burst.extend_from_slice(&msg(2, 10, 1 << 4, &body));
        }
        let mut rd = off.to_le_bytes().to_vec();
        rd.extend_from_slice(&0u32.to_le_bytes());
        rd.extend_from_slice(&8u32.to_le_bytes());
        burst.extend_from_slice(&msg(3, 9, 0, &rd));
        s.write_all(&burst).unwrap();
        let got = reply(&mut s);
        assert_eq!(got.len(), 16 + 8);
        assert_eq!(
            u64::from_le_bytes(got[16..24].try_into().unwrap()),
            u64::from(N),
            "the read sees the last posted write"
        );
        drop(s);
        let stats = served.join().unwrap().unwrap();
        assert_eq!(stats.messages, u64::from(N) + 2);
        assert!(
            stats.socket_reads * 50 <= stats.messages,
            "posted writes must not cost a socket read each: {stats:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Descriptors ride with the message whose sendmsg carried them even when the server
    /// reads that message in one chunk with a burst of posted writes before it.
    #[test]
    fn an_eventfd_sent_behind_a_burst_of_posted_writes_reaches_set_irqs() {
        use std::io::Write;
        let (dir, sock, intx, served) = raw_server("sb-fds");

        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        let mut v = vec![0u8; 4];
        v.extend_from_slice(b"{}\0");
        s.write_all(&msg(1, 1, 0, &v)).unwrap();
        reply(&mut s);
        let mut burst = Vec::new();
        for i in 0..2000u64 {
            let mut body = 0x2000u64.to_le_bytes().to_vec();
            body.extend_from_slice(&0u32.to_le_bytes());
            body.extend_from_slice(&8u32.to_le_bytes());
            body.extend_from_slice(&i.to_le_bytes());
            burst.extend_from_slice(&msg(2, 10, 1 << 4, &body));
        }
        s.write_all(&burst).unwrap();
        // SET_IRQS: INTx trigger = an eventfd, in its own sendmsg with the descriptor.
        // SAFETY: eventfd returns a new descriptor or -1; checked by the assert.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        assert!(efd >= 0);
        let mut body = 20u32.to_le_bytes().to_vec();
        body.extend_from_slice(
            &(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER).to_le_bytes(),
        );
        for v in [0u32, 0, 1] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        crate::vfio::send_with_fd(&s, &msg(3, 8, 0, &body), efd).unwrap();
        assert!(reply(&mut s).is_empty(), "SET_IRQS acknowledged");
        // SAFETY: efd is a valid descriptor owned only by this File.
        let mut ev = unsafe { File::from_raw_fd(efd) };
        intx.set_level(true);
        let mut n = [0u8; 8];
        ev.read_exact(&mut n).unwrap();
        assert_eq!(
            u64::from_ne_bytes(n),
            1,
            "the line fired through the eventfd sent"
        );
        drop(s);
        let stats = served.join().unwrap().unwrap();
        assert_eq!(stats.messages, 2002);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A confused or hostile VMM: every command with short, empty and random bodies, bad region
    /// and interrupt indices, oversized reads, unknown commands and stray replies. Each request
    /// gets an error reply (or is dropped), the server never panics, and a good read afterwards
    /// still works; then a header with an impossible size ends only that connection.
    #[test]
    fn malformed_vmm_messages_get_error_replies_and_the_server_carries_on() {
        use std::io::Write;
        let (dir, sock, _intx, served) = raw_server("sb-hostile");
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();

        // Reads one reply; returns (flags, error, body).
        let any_reply = |s: &mut std::os::unix::net::UnixStream| {
            let mut h = [0u8; 16];
            s.read_exact(&mut h).unwrap();
            let size = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
            let mut b = vec![0u8; size - 16];
            s.read_exact(&mut b).unwrap();
            let flags = u32::from_le_bytes(h[8..12].try_into().unwrap());
            let err = u32::from_le_bytes(h[12..16].try_into().unwrap());
            (flags, err, b)
        };
        const ERROR: u32 = 1 << 5;
        // Short or empty bodies for every command that reads one: an error reply each.
        // (DEVICE_GET_INFO and DEVICE_RESET take no body and succeed.)
        for command in [2u16, 3, 5, 6, 7, 8, 9, 10] {
            for len in [0usize, 3, 7, 11] {
                s.write_all(&msg(100, command, 0, &vec![0xFF; len]))
                    .unwrap();
                let (flags, err, _) = any_reply(&mut s);
                assert_ne!(flags & ERROR, 0, "command {command} body {len}");
                assert_ne!(err, 0);
            }
        }
        // Bad region index, oversized read, a write longer than its body, bad irq index.
        let bad = [
            msg(
                101,
                9,
                0,
                &[
                    &0u64.to_le_bytes()[..],
                    &99u32.to_le_bytes(),
                    &4u32.to_le_bytes(),
                ]
                .concat(),
            ),
            msg(
                102,
                9,
                0,
                &[
                    &0u64.to_le_bytes()[..],
                    &0u32.to_le_bytes(),
                    &u32::MAX.to_le_bytes(),
                ]
                .concat(),
            ),
            msg(
                103,
                10,
                0,
                &[
                    &0u64.to_le_bytes()[..],
                    &0u32.to_le_bytes(),
                    &64u32.to_le_bytes(),
                    &[1, 2],
                ]
                .concat(),
            ),
            msg(
                104,
                8,
                0,
                &[
                    &20u32.to_le_bytes()[..],
                    &0u32.to_le_bytes(),
                    &77u32.to_le_bytes(),
                    &0u32.to_le_bytes(),
                    &0u32.to_le_bytes(),
                ]
                .concat(),
            ),
            msg(
                105,
                5,
                0,
                &[
                    &32u32.to_le_bytes()[..],
                    &0u32.to_le_bytes(),
                    &55u32.to_le_bytes(),
                ]
                .concat(),
            ),
            msg(106, 0x7777, 0, b"?"),
        ];
        for m in &bad {
            s.write_all(m).unwrap();
            let (flags, _, _) = any_reply(&mut s);
            assert_ne!(flags & ERROR, 0, "{:?}", &m[..4]);
        }
        // Random bodies for commands 0..=20 (a fixed xorshift): every one answered.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..400u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let command = (x % 21) as u16;
            let body: Vec<u8> = (0..(x >> 8) % 48).map(|k| (x >> (k % 56)) as u8).collect();
            // Flags 0: every request, good or bad, must be answered.
            s.write_all(&msg(200 + i as u16, command, 0, &body))
                .unwrap();
            let _ = any_reply(&mut s);
        }
        // A stray reply is dropped without an answer; the next good read is answered.
        s.write_all(&msg(300, 9, 1, &[0u8; 16])).unwrap();
        let mut rd = 0u64.to_le_bytes().to_vec();
        rd.extend_from_slice(&7u32.to_le_bytes()); // config region
        rd.extend_from_slice(&4u32.to_le_bytes());
        s.write_all(&msg(301, 9, 0, &rd)).unwrap();
        let id = reply(&mut s);
        assert_eq!(
            &id[16..20],
            &[0x36, 0x1b, 0x00, 0x01],
            "1b36:0100 still answers"
        );
        // A header whose size is smaller than a header: the connection ends with an error.
        let mut h = msg(302, 9, 0, &[]);
        h[4..8].copy_from_slice(&8u32.to_le_bytes());
        s.write_all(&h).unwrap();
        let r = served.join().unwrap();
        assert!(r.is_err(), "{r:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
