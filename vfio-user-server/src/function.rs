//! The PCI function behind the server: the [`PciFunction`] trait a device implements, how each
//! BAR is offered ([`BarBacking`]), the region and IRQ tables announced for it
//! ([`server_tables`]), INTx delivery through the VMM's eventfd with VFIO mask state
//! ([`Intx`]), and [`FunctionBackend`], the `vfio_user::ServerBackend` that routes region
//! accesses, resets and SET_IRQS to them.
//!
//! Region map (VFIO PCI indices): BAR0..5 = 0..5, expansion ROM = 6, config space = 7, VGA = 8.
//! Memory BARs backed by a memfd are offered mmap-able (one sparse area covering the BAR) when
//! the caller asks for mmap; otherwise every BAR traps (the fast mode under QEMU TCG). INTx goes
//! through the eventfd the VMM hands us; MASK/UNMASK are honoured.

use std::fs::File;
use std::io::Write;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use tracing::{debug, info, warn};
use vfio_bindings::bindings::vfio::{
    vfio_region_info, vfio_region_sparse_mmap_area, VFIO_IRQ_INFO_AUTOMASKED,
    VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE, VFIO_IRQ_SET_ACTION_MASK,
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK, VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_TYPE_MASK,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS,
    VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user::{IrqInfo, ServerBackend, ServerRegion, SparseArea};
/// How one BAR is offered to the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarBacking {
    /// Not present (size 0).
    Absent,
    /// Trapped: every access is a REGION_READ/WRITE message.
    Trapped {
        /// Size in bytes (power of two).
        size: u64,
        /// Whether the guest may write it (false for the ROM BAR).
        writable: bool,
    },
    /// Shared memory the VMM may map: `fd` at `offset`, `size` bytes.
    Mappable {
        /// Size in bytes (power of two).
        size: u64,
        /// memfd holding the BAR contents.
        fd: RawFd,
        /// Offset of the BAR in `fd`.
        offset: u64,
    },
}

/// A PCI function as the vfio-user transport sees it.
pub trait PciFunction: Send {
    /// The six BARs.
    fn bars(&self) -> [BarBacking; 6];
    /// Reads config space at `offset` (any width up to 4, or a whole dword run).
    fn config_read(&mut self, offset: u64, data: &mut [u8]);
    /// Writes config space.
    fn config_write(&mut self, offset: u64, data: &[u8]);
    /// Reads a trapped (or, for a VMM that does not map it, mappable) BAR.
    fn bar_read(&mut self, bar: u32, offset: u64, data: &mut [u8]);
    /// Writes a BAR.
    fn bar_write(&mut self, bar: u32, offset: u64, data: &[u8]);
    /// Device reset requested by the VMM.
    fn reset(&mut self);
}

/// A shared function: the server locks it for each access.
impl<D: PciFunction + ?Sized> PciFunction for Arc<Mutex<D>> {
    fn bars(&self) -> [BarBacking; 6] {
        lock(self).bars()
    }
    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        lock(self).config_read(offset, data)
    }
    fn config_write(&mut self, offset: u64, data: &[u8]) {
        lock(self).config_write(offset, data)
    }
    fn bar_read(&mut self, bar: u32, offset: u64, data: &mut [u8]) {
        lock(self).bar_read(bar, offset, data)
    }
    fn bar_write(&mut self, bar: u32, offset: u64, data: &[u8]) {
        lock(self).bar_write(bar, offset, data)
    }
    fn reset(&mut self) {
        lock(self).reset()
    }
}
/// INTx as the VMM sees it: an eventfd to write when the line goes up, with VFIO mask state.
///
/// The device reports its line level on every re-evaluation through [`Intx::set_level`];
/// we fire the eventfd when the level rises, and again when the guest acknowledges
/// (the device re-evaluates on UPDATE_IRQ) while the level is still high: QEMU ends the interrupt at the guest's first
/// BAR access, before the guest cleared the device's pending bits (test-rigs.md §3).
#[derive(Debug, Default)]
pub struct Intx {
    state: Mutex<IntxState>,
}

#[derive(Debug, Default)]
struct IntxState {
    trigger: Option<File>,
    masked: bool,
    level: bool,
    /// A rise that happened while masked: delivered at UNMASK.
    pending: bool,
    fired: u64,
}

impl Intx {
    /// Sets the line level as the device re-evaluated it. Fires the eventfd whenever the
    /// level is reported high: on a rising edge, and again on a re-evaluation while still
    /// high (the guest wrote UPDATE_IRQ, or new bits arrived), since the VMM may already have
    /// ended the previous interrupt (edge-style eventfd delivery).
    pub fn set_level(&self, level: bool) {
        let mut s = lock(&self.state);
        s.level = level;
        if level {
            s.fire();
        }
    }
    /// Number of times the eventfd was written (for tests and metrics).
    pub fn fired(&self) -> u64 {
        lock(&self.state).fired
    }
    fn set_trigger(&self, fd: Option<File>) {
        let mut s = lock(&self.state);
        s.trigger = fd;
        s.masked = false;
        if s.level {
            s.fire();
        }
    }
    fn set_masked(&self, masked: bool) {
        let mut s = lock(&self.state);
        s.masked = masked;
        if !masked && s.pending {
            s.pending = false;
            s.fire();
        }
    }
}

impl IntxState {
    fn fire(&mut self) {
        if self.masked {
            self.pending = true;
            return;
        }
        if let Some(fd) = self.trigger.as_mut() {
            if let Err(e) = fd.write_all(&1u64.to_ne_bytes()) {
                warn!("INTx eventfd write failed: {e}");
                return;
            }
            self.fired += 1;
        }
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the interrupt path down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The region and IRQ tables the vfio-user server announces for `dev`.
pub fn server_tables(bars: &[BarBacking; 6], mmap: bool) -> (Vec<ServerRegion>, Vec<IrqInfo>) {
    let mut regions = Vec::with_capacity(VFIO_PCI_NUM_REGIONS as usize);
    for index in 0..VFIO_PCI_NUM_REGIONS {
        let mut info = vfio_region_info {
            argsz: std::mem::size_of::<vfio_region_info>() as u32,
            index,
            ..Default::default()
        };
        let mut sparse_areas = Vec::new();
        let mut mmap_fd = None;
        if let Some(bar) = bars.get(index as usize) {
            match *bar {
                BarBacking::Absent => {}
                BarBacking::Trapped { size, writable } => {
                    info.size = size;
                    info.flags = VFIO_REGION_INFO_FLAG_READ;
                    if writable {
                        info.flags |= VFIO_REGION_INFO_FLAG_WRITE;
                    }
                }
                BarBacking::Mappable { size, fd, offset } => {
                    info.size = size;
                    info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
                    if mmap {
                        info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
                        info.offset = offset;
                        sparse_areas.push(SparseArea {
                            area: vfio_region_sparse_mmap_area { offset: 0, size },
                        });
                        mmap_fd = Some(fd);
                    }
                }
            }
        } else if index == VFIO_PCI_CONFIG_REGION_INDEX {
            info.size = 256;
            info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        }
        regions.push(ServerRegion {
            region_info: info,
            sparse_areas,
            mmap_fd,
        });
    }
    let irqs = (0..VFIO_PCI_NUM_IRQS)
        .map(|index| IrqInfo {
            index,
            flags: if index == VFIO_PCI_INTX_IRQ_INDEX {
                VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED
            } else {
                0
            },
            count: u32::from(index == VFIO_PCI_INTX_IRQ_INDEX),
        })
        .collect();
    (regions, irqs)
}

/// `vfio_user::ServerBackend` over a [`PciFunction`] and its INTx line.
pub struct FunctionBackend<D: PciFunction> {
    dev: D,
    intx: Arc<Intx>,
}

impl<D: PciFunction> FunctionBackend<D> {
    /// A backend serving `dev`, delivering interrupts through `intx`.
    pub fn new(dev: D, intx: Arc<Intx>) -> Self {
        FunctionBackend { dev, intx }
    }

    /// The function served.
    pub fn function(&mut self) -> &mut D {
        &mut self.dev
    }
}

impl<D: PciFunction> ServerBackend for FunctionBackend<D> {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> std::io::Result<()> {
        let dev = &mut self.dev;
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => dev.config_read(offset, data),
            0..=5 => dev.bar_read(region, offset, data),
            _ => data.fill(0xff),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let dev = &mut self.dev;
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => dev.config_write(offset, data),
            0..=5 => dev.bar_write(region, offset, data),
            _ => debug!("write to region {region} ignored"),
        }
        Ok(())
    }
    fn dma_map(
        &mut self,
        _flags: vfio_user::DmaMapFlags,
        _offset: u64,
        address: u64,
        size: u64,
        _fd: Option<File>,
    ) -> std::io::Result<()> {
        // QXL keeps everything it reads in its own BARs: guest RAM is never touched.
        debug!("DMA_MAP {address:#x}+{size:#x} accepted (unused)");
        Ok(())
    }

    fn dma_unmap(
        &mut self,
        _flags: vfio_user::DmaUnmapFlags,
        address: u64,
        size: u64,
    ) -> std::io::Result<()> {
        debug!("DMA_UNMAP {address:#x}+{size:#x} accepted");
        Ok(())
    }

    fn reset(&mut self) -> std::io::Result<()> {
        info!("VMM requested device reset");
        self.dev.reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> std::io::Result<()> {
        if index != VFIO_PCI_INTX_IRQ_INDEX {
            if count == 0 {
                return Ok(());
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("irq index {index} has no vectors"),
            ));
        }
        if start != 0 || count > 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("INTx has one vector (start {start} count {count})"),
            ));
        }
        let data = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
        match flags & VFIO_IRQ_SET_ACTION_TYPE_MASK {
            VFIO_IRQ_SET_ACTION_TRIGGER => {
                // count 0 with DATA_NONE disables the trigger (QEMU does this at realize).
                let fd = if data == VFIO_IRQ_SET_DATA_EVENTFD && count == 1 {
                    fds.into_iter().next()
                } else {
                    None
                };
                debug!(
                    "INTx trigger {}",
                    if fd.is_some() { "set" } else { "cleared" }
                );
                self.intx.set_trigger(fd);
            }
            VFIO_IRQ_SET_ACTION_MASK if data == VFIO_IRQ_SET_DATA_NONE => {
                self.intx.set_masked(true)
            }
            VFIO_IRQ_SET_ACTION_UNMASK if data == VFIO_IRQ_SET_DATA_NONE => {
                self.intx.set_masked(false)
            }
            VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_MASK => {
                // An UNMASK eventfd (KVM resample) needs no action from us: the line is re-fired
                // by set_level(true) when the guest acknowledges while still pending.
                debug!("INTx mask/unmask via eventfd accepted");
            }
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("unsupported SET_IRQS action {other:#x}"),
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    fn eventfd() -> (File, File) {
        // SAFETY: eventfd returns a new descriptor or -1; checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: fd is a fresh descriptor we own; dup gives a second owner.
        let dup = unsafe { libc::dup(fd) };
        assert!(dup >= 0);
        // SAFETY: both descriptors are valid and owned by exactly one File each.
        unsafe { (File::from_raw_fd(fd), File::from_raw_fd(dup)) }
    }

    fn count(f: &mut File) -> u64 {
        let mut b = [0u8; 8];
        match f.read(&mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            _ => 0,
        }
    }

    #[test]
    fn intx_fires_on_rise_and_on_reevaluation_while_high() {
        let intx = Intx::default();
        let (tx, mut rx) = eventfd();
        intx.set_trigger(Some(tx));
        intx.set_level(true);
        assert_eq!(count(&mut rx), 1, "rising edge fires");
        intx.set_level(true);
        assert_eq!(count(&mut rx), 1, "re-evaluation while high fires again");
        intx.set_level(false);
        assert_eq!(count(&mut rx), 0, "nothing while low");
        assert_eq!(intx.fired(), 2);
    }

    #[test]
    fn intx_rise_while_masked_is_delivered_at_unmask() {
        let intx = Intx::default();
        let (tx, mut rx) = eventfd();
        intx.set_trigger(Some(tx));
        intx.set_masked(true);
        intx.set_level(true);
        assert_eq!(count(&mut rx), 0);
        intx.set_masked(false);
        assert_eq!(count(&mut rx), 1);
    }

    #[test]
    fn tables_offer_mmap_only_when_asked() {
        let bars = [
            BarBacking::Mappable {
                size: 1 << 20,
                fd: 7,
                offset: 0,
            },
            BarBacking::Trapped {
                size: 8192,
                writable: false,
            },
            BarBacking::Absent,
            BarBacking::Trapped {
                size: 32,
                writable: true,
            },
            BarBacking::Absent,
            BarBacking::Absent,
        ];
        let (r, irqs) = server_tables(&bars, true);
        assert_eq!(r.len(), 9);
        assert_ne!(r[0].region_info.flags & VFIO_REGION_INFO_FLAG_MMAP, 0);
        assert_eq!(r[0].sparse_areas.len(), 1);
        assert_eq!(r[0].mmap_fd, Some(7));
        assert_eq!(r[1].region_info.flags, VFIO_REGION_INFO_FLAG_READ);
        assert_eq!(r[7].region_info.size, 256);
        assert_eq!(irqs[0].count, 1);
        assert_eq!(irqs[1].count, 0);
        let (r, _) = server_tables(&bars, false);
        assert_eq!(r[0].region_info.flags & VFIO_REGION_INFO_FLAG_MMAP, 0);
        assert!(r[0].sparse_areas.is_empty());
        assert!(r[0].mmap_fd.is_none());
    }
}
