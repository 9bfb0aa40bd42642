//! The QXL device as a vfio-user PCI function: glue between [`qxl_device`] (driven by its
//! [`Worker`](qxl_device::Worker)) and [`vfio_user_server`], so a daemon or a VMM serves QXL
//! to an unmodified VMM with
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use qxl_device::{QxlConfig, QxlDevice, NullSink, Worker};
//! # use spice_bridge::qxl_vfio::{IntxLine, QxlFunction};
//! # use vfio_user_server::{server_tables, FunctionBackend, Intx, PciFunction, Server};
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let intx = Arc::new(Intx::default());
//! let dev = QxlDevice::new(QxlConfig::default(), Arc::new(IntxLine(intx.clone())), Box::new(NullSink))?;
//! let worker = Worker::spawn(dev)?;
//! let func = QxlFunction::new(worker.handle());
//! let (regions, irqs) = server_tables(&func.bars(), true);
//! let server = Server::new(std::path::Path::new("/run/qxl.sock"), irqs, regions)?;
//! server.run(&mut FunctionBackend::new(func, intx))?;
//! # Ok(()) }
//! ```
//!
//! Threads (design.md "Threads"): the vfio-user thread only touches registers and wakes the
//! worker; the worker runs [`qxl_device::QxlDevice::process`].

use std::sync::Arc;

use qxl_device::{BarIndex, InterruptLine, WorkerHandle};
use tracing::debug;
use vfio_user_server::{BarBacking, Intx, PciFunction};

/// The device's INTx line, delivered through the vfio-user eventfd.
#[derive(Debug)]
pub struct IntxLine(pub Arc<Intx>);

impl InterruptLine for IntxLine {
    fn set_level(&self, asserted: bool) {
        self.0.set_level(asserted);
    }
}

/// A QXL device (behind its worker) seen as a PCI function by the vfio-user server. Cheap to
/// clone: it is a [`WorkerHandle`].
#[derive(Clone, Debug)]
pub struct QxlFunction {
    dev: WorkerHandle,
}

impl QxlFunction {
    /// Serves the device behind `dev`; writes that need the worker wake it.
    pub fn new(dev: WorkerHandle) -> Self {
        QxlFunction { dev }
    }

    /// The worker handle.
    pub fn handle(&self) -> &WorkerHandle {
        &self.dev
    }
}

/// The VFIO BAR number of each QXL BAR.
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
        let dev = self.dev.device();
        for r in dev.bar_regions() {
            let Some(slot) = out.get_mut(r.info.bar as usize) else {
                continue;
            };
            *slot = match r.mmap {
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
            Ok(off) if off < 256 => self.dev.device().config_read(off, data),
            _ => data.fill(0xff),
        }
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) {
        if let Ok(off) = u16::try_from(offset) {
            for m in self.dev.device().config_write(off, data) {
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
            self.dev.bar_write(b, offset, data);
        }
    }

    fn reset(&mut self) {
        self.dev.reset();
    }
}
