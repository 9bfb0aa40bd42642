//! An optional device worker thread for in-process VMMs (design.md: "vCPU threads only touch
//! registers and wake the worker; one device worker per QXL device").
//!
//! [`Worker`] owns the device behind a mutex. vCPU threads call [`Worker::bar_write`] /
//! [`Worker::bar_read`] (or lock [`Worker::device`] for anything else); when a write asks for
//! the worker, the worker thread wakes and calls [`QxlDevice::process`] until there is no
//! more work ([`WorkerConfig::poll`] adds a periodic drain). [`Worker::handle`] gives other
//! threads a [`WorkerHandle`]. Dropping the `Worker` stops and joins the thread.

use crate::device::QxlDevice;
use crate::pci::BarIndex;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Default)]
struct Signal {
    wake: bool,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    signal: Mutex<Signal>,
    cond: Condvar,
}

impl Shared {
    fn signal(&self) -> MutexGuard<'_, Signal> {
        self.signal.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How the worker thread waits for work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Also drain the rings this often when nobody woke the worker: a safety net for a
    /// guest that pushed a ring entry without a doorbell the transport delivered (the
    /// vfio-user daemon uses 50 ms). `None`: wake-ups only.
    pub poll: Option<Duration>,
}

/// A [`QxlDevice`] with its own worker thread.
#[derive(Debug)]
pub struct Worker {
    handle: WorkerHandle,
    thread: Option<JoinHandle<()>>,
}

/// A cloneable, thread-safe handle on a [`Worker`]'s device, for the threads around it
/// (vCPUs or a transport, a display bridge, a control socket). It does not keep the worker
/// thread alive: dropping the [`Worker`] stops the thread; handles then still reach the device
/// but nothing drains its rings.
#[derive(Clone, Debug)]
pub struct WorkerHandle {
    dev: Arc<Mutex<QxlDevice>>,
    shared: Arc<Shared>,
}

fn lock(dev: &Mutex<QxlDevice>) -> MutexGuard<'_, QxlDevice> {
    // The device never panics on guest input; if a sink or line callback panicked, keep
    // serving with the state as it is rather than poisoning every vCPU.
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

impl Worker {
    /// Moves `dev` behind a mutex and starts its worker thread ("qxl-worker"), which runs
    /// only when woken.
    pub fn spawn(dev: QxlDevice) -> std::io::Result<Self> {
        Self::spawn_with(dev, WorkerConfig::default())
    }

    /// As [`Worker::spawn`], with `config`.
    pub fn spawn_with(dev: QxlDevice, config: WorkerConfig) -> std::io::Result<Self> {
        let handle = WorkerHandle {
            dev: Arc::new(Mutex::new(dev)),
            shared: Arc::new(Shared::default()),
        };
        let h = handle.clone();
        let thread = std::thread::Builder::new()
            .name("qxl-worker".into())
            .spawn(move || run(&h.dev, &h.shared, config.poll))?;
        Ok(Worker {
            handle,
            thread: Some(thread),
        })
    }

    /// A handle for other threads.
    pub fn handle(&self) -> WorkerHandle {
        self.handle.clone()
    }

    /// The device, for config space, VBE, client state and snapshots. Do not hold the
    /// guard for long: the worker needs it too.
    pub fn device(&self) -> MutexGuard<'_, QxlDevice> {
        self.handle.device()
    }

    /// Wakes the worker (e.g. after [`QxlDevice::io_write`] called through [`Worker::device`]
    /// returned `wake_worker`).
    pub fn wake(&self) {
        self.handle.wake()
    }

    /// A trapped BAR write from a vCPU; wakes the worker when the device asks for it.
    pub fn bar_write(&self, bar: BarIndex, offset: u64, data: &[u8]) {
        self.handle.bar_write(bar, offset, data)
    }

    /// A trapped BAR read from a vCPU.
    pub fn bar_read(&self, bar: BarIndex, offset: u64, data: &mut [u8]) {
        self.handle.bar_read(bar, offset, data)
    }

    /// Resets the device (the VMM's device reset, or a VMM that went away).
    pub fn reset(&self) {
        self.handle.reset()
    }
}

impl WorkerHandle {
    /// The device. Do not hold the guard for long: the worker needs it too.
    pub fn device(&self) -> MutexGuard<'_, QxlDevice> {
        lock(&self.dev)
    }

    /// Wakes the worker.
    pub fn wake(&self) {
        self.shared.signal().wake = true;
        self.shared.cond.notify_one();
    }

    /// A trapped BAR write; wakes the worker when the device asks for it.
    pub fn bar_write(&self, bar: BarIndex, offset: u64, data: &[u8]) {
        let action = lock(&self.dev).bar_write(bar, offset, data);
        if action.wake_worker {
            self.wake();
        }
    }

    /// A trapped BAR read.
    pub fn bar_read(&self, bar: BarIndex, offset: u64, data: &mut [u8]) {
        lock(&self.dev).bar_read(bar, offset, data);
    }

    /// Resets the device ([`QxlDevice::reset`]).
    pub fn reset(&self) {
        lock(&self.dev).reset();
    }
}

fn run(dev: &Mutex<QxlDevice>, shared: &Shared, poll: Option<Duration>) {
    loop {
        {
            let mut s = shared.signal();
            match poll {
                Some(p) => {
                    s = shared
                        .cond
                        .wait_timeout_while(s, p, |s| !s.wake && !s.stop)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                None => {
                    while !s.wake && !s.stop {
                        s = shared.cond.wait(s).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
            if s.stop {
                return;
            }
            s.wake = false;
        }
        // Bounded per call; the lock is released between calls so vCPUs get in.
        while lock(dev).process().more {}
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.handle.shared.signal().stop = true;
        self.handle.shared.cond.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::dev::{io, irq, ram_off};
    use crate::sink::{InterruptLine, NullSink};
    use crate::QxlConfig;
    use std::sync::mpsc;

    struct ChanLine(Mutex<mpsc::Sender<bool>>);
    impl InterruptLine for ChanLine {
        fn set_level(&self, asserted: bool) {
            if let Ok(tx) = self.0.lock() {
                let _ = tx.send(asserted);
            }
        }
    }

    #[test]
    fn async_io_completes_on_the_worker_thread() {
        async_io_completes(WorkerConfig::default(), true);
    }

    /// With a poll interval the worker drains even when the doorbell never woke it.
    #[test]
    fn a_polling_worker_completes_async_io_without_a_wake() {
        async_io_completes(
            WorkerConfig {
                poll: Some(Duration::from_millis(10)),
            },
            false,
        );
    }

    fn async_io_completes(config: WorkerConfig, wake: bool) {
        let (tx, rx) = mpsc::channel();
        let cfg = QxlConfig {
            ram_size: 4 << 20,
            vgamem_size: 1 << 20,
            vram_size: 1 << 20,
            ..Default::default()
        };
        let dev =
            QxlDevice::new(cfg, Arc::new(ChanLine(Mutex::new(tx))), Box::new(NullSink)).unwrap();
        let w = Worker::spawn_with(dev, config).unwrap();
        let hdr = {
            let mut d = w.device();
            d.config_write(0x10, &0xE000_0000u32.to_le_bytes());
            d.config_write(0x04, &3u16.to_le_bytes());
            d.layout().ram_header_offset as u64
        };
        w.bar_write(BarIndex::Io, io::RESET as u64, &[0]);
        w.bar_write(
            BarIndex::Ram,
            hdr + ram_off::INT_MASK as u64,
            &irq::IO_CMD.to_le_bytes(),
        );
        let mut slot = [0u8; 16];
        slot[..8].copy_from_slice(&0xE000_0000u64.to_le_bytes());
        slot[8..].copy_from_slice(&0xE000_1000u64.to_le_bytes());
        w.bar_write(BarIndex::Ram, hdr + ram_off::MEM_SLOT as u64, &slot);
        while rx.try_recv().is_ok() {}
        if wake {
            w.bar_write(BarIndex::Io, io::MEMSLOT_ADD_ASYNC as u64, &[1]);
        } else {
            let action =
                w.handle()
                    .device()
                    .bar_write(BarIndex::Io, io::MEMSLOT_ADD_ASYNC as u64, &[1]);
            assert!(action.wake_worker, "the device asked for the worker");
        }
        // The worker completes it and raises IO_CMD: the line goes high.
        let mut high = false;
        while let Ok(level) = rx.recv_timeout(Duration::from_secs(10)) {
            if level {
                high = true;
                break;
            }
        }
        assert!(high, "IO_CMD raised by the worker");
        let d = w.device();
        assert!(d.memslot(1).is_some());
        assert!(!d.async_pending());
        drop(d);
        drop(w); // joins the worker
    }
}
