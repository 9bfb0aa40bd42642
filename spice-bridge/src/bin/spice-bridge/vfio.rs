//! vfio-user transport: serves one PCI function to a VMM (QEMU >= 10.1 `vfio-user-pci`,
//! cloud-hypervisor `--user-device`) with the `vfio_user` crate's server.
//!
//! Region map (VFIO PCI indices): BAR0..5 = 0..5, expansion ROM = 6, config space = 7, VGA = 8.
//! Memory BARs backed by a memfd are offered mmap-able (one sparse area covering the BAR) unless
//! the daemon runs with `--qxl-no-mmap`, in which case every BAR traps (reference test-rigs.md §3:
//! the fast mode under QEMU TCG). INTx goes through the eventfd the VMM hands us.

use std::fs::File;
use std::io::Write;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use tracing::{debug, info, warn};
use vfio_bindings::bindings::vfio::{
    vfio_region_info, vfio_region_sparse_mmap_area, VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET,
    VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
    VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK,
    VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_TYPE_MASK, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS,
    VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_FLAG_CAPS, VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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

/// `ServerBackend` over a shared [`PciFunction`] and its INTx line.
pub struct VfioBackend<D: PciFunction> {
    dev: Arc<Mutex<D>>,
    intx: Arc<Intx>,
}

impl<D: PciFunction> VfioBackend<D> {
    /// A backend serving `dev`, delivering interrupts through `intx`.
    pub fn new(dev: Arc<Mutex<D>>, intx: Arc<Intx>) -> Self {
        VfioBackend { dev, intx }
    }
}

impl<D: PciFunction> ServerBackend for VfioBackend<D> {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> std::io::Result<()> {
        let mut dev = lock(&self.dev);
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => dev.config_read(offset, data),
            0..=5 => dev.bar_read(region, offset, data),
            _ => data.fill(0xff),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut dev = lock(&self.dev);
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
        lock(&self.dev).reset();
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

// ------------------------------------------------------------------------------------------
// The vfio-user server loop
// ------------------------------------------------------------------------------------------
//
// Why not `vfio_user::Server::run`: it costs three syscalls and three allocations per message
// (header, body and data read separately). With every BAR trapped, QEMU posts BAR writes (sends
// them without waiting for a reply) and its vCPU runs ahead; a guest frame-buffer blit is
// ~400,000 posted 8-byte writes. A synchronous request (a BAR read) queued behind them is
// answered only after the server has applied all of them, and QEMU gives up on a request after
// `x-msg-timeout` (5 s): the guest's read then returns all-ones. Linux's qxl_ring_push reading
// `prod` as 0xFFFFFFFF writes its command into slot 31 and publishes `prod + 1` over a slot it
// never wrote: the all-zero command-ring entry of the NULL-entry question (device/README.md).
// This loop reads the socket in large chunks and parses every message out of one buffer, so a
// posted write costs no syscall and no allocation: 0.8 instead of 2.9 µs per posted write in a
// debug build, 0.03 instead of 2 µs in a release build (400,000 writes and a read, measured).

/// vfio-user message header (protocol §"Header").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct MsgHeader {
    id: u16,
    command: u16,
    size: u32,
    flags: u32,
    error: u32,
}

const HDR_LEN: usize = 16;
/// Largest REGION_READ/WRITE payload we announce (`max_data_xfer_size`).
const MAX_XFER: u32 = 1 << 20;
/// Largest message accepted: a REGION_WRITE of `MAX_XFER` bytes plus its headers.
const MAX_MSG: usize = HDR_LEN + 16 + MAX_XFER as usize;
/// Bytes asked of the socket per `recvmsg`.
const READ_CHUNK: usize = 256 << 10;
/// File descriptors accepted per `recvmsg` (the protocol's `max_msg_fds` is 1; QEMU may pass
/// more with SET_IRQS for MSI-X, which this device does not have).
const MAX_FDS: usize = 16;

const FLAG_REPLY: u32 = 1;
const FLAG_NO_REPLY: u32 = 1 << 4;
const FLAG_ERROR: u32 = 1 << 5;

mod cmd {
    pub const VERSION: u16 = 1;
    pub const DMA_MAP: u16 = 2;
    pub const DMA_UNMAP: u16 = 3;
    pub const DEVICE_GET_INFO: u16 = 4;
    pub const DEVICE_GET_REGION_INFO: u16 = 5;
    pub const GET_IRQ_INFO: u16 = 7;
    pub const SET_IRQS: u16 = 8;
    pub const REGION_READ: u16 = 9;
    pub const REGION_WRITE: u16 = 10;
    pub const DEVICE_RESET: u16 = 13;
}

impl MsgHeader {
    fn parse(b: &[u8]) -> Option<Self> {
        Some(MsgHeader {
            id: u16::from_le_bytes(b.get(0..2)?.try_into().ok()?),
            command: u16::from_le_bytes(b.get(2..4)?.try_into().ok()?),
            size: u32::from_le_bytes(b.get(4..8)?.try_into().ok()?),
            flags: u32::from_le_bytes(b.get(8..12)?.try_into().ok()?),
            error: u32::from_le_bytes(b.get(12..16)?.try_into().ok()?),
        })
    }
    fn no_reply(&self) -> bool {
        self.flags & FLAG_NO_REPLY != 0
    }
    /// The reply header to this request, for a reply of `size` bytes (header included).
    fn reply(&self, size: usize) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.command.to_le_bytes());
        b[4..8].copy_from_slice(&(size as u32).to_le_bytes());
        b[8..12].copy_from_slice(&FLAG_REPLY.to_le_bytes());
        b
    }
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Counters of one connection (tests and the disconnect log line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Messages handled.
    pub messages: u64,
    /// `recvmsg` calls that returned data.
    pub socket_reads: u64,
}

/// A vfio-user server for one PCI function: one VMM connection at a time.
pub struct Server {
    listener: std::os::unix::net::UnixListener,
    regions: Vec<ServerRegion>,
    irqs: Vec<IrqInfo>,
}

impl Server {
    /// Listens on `path` for a VMM; `irqs` and `regions` are announced as given.
    pub fn new(
        path: &std::path::Path,
        irqs: Vec<IrqInfo>,
        regions: Vec<ServerRegion>,
    ) -> std::io::Result<Self> {
        Ok(Server {
            listener: std::os::unix::net::UnixListener::bind(path)?,
            regions,
            irqs,
        })
    }

    /// Accepts one VMM connection and serves it until the VMM disconnects (`Ok`) or sends
    /// something this server cannot frame (`Err`; the connection is dropped).
    pub fn run(&self, backend: &mut dyn ServerBackend) -> std::io::Result<ConnStats> {
        let (stream, _) = self.listener.accept()?;
        let mut conn = Conn::new(stream);
        let r = conn.serve(self, backend);
        info!(
            messages = conn.stats.messages,
            socket_reads = conn.stats.socket_reads,
            "vfio-user connection closed"
        );
        r.map(|()| conn.stats)
    }
}

struct Conn {
    stream: std::os::unix::net::UnixStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    pos: u64,
    /// File descriptors received, each batch with the stream offset where its `recvmsg`
    /// ended: the kernel stops a read after the sendmsg that carried them, so they belong to
    /// the last message that starts before that offset.
    fds: std::collections::VecDeque<(u64, Vec<File>)>,
    read_buf: Vec<u8>,
    stats: ConnStats,
}

fn proto_err(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

impl Conn {
    fn new(stream: std::os::unix::net::UnixStream) -> Self {
        Conn {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            pos: 0,
            fds: Default::default(),
            read_buf: Vec::new(),
            stats: ConnStats::default(),
        }
    }

    /// Reads once more, with room for at least `need` bytes from `start`; false on EOF.
    fn fill(&mut self, need: usize) -> std::io::Result<bool> {
        let pending = self.end - self.start;
        if self.start > 0 && (pending == 0 || self.buf.len() - self.end < READ_CHUNK / 4) {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        let want = (self.start + need).max(self.end + READ_CHUNK / 4);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let (n, fds) = recv_with_fds(&self.stream, &mut self.buf[self.end..])?;
        if n == 0 {
            return Ok(false);
        }
        self.stats.socket_reads += 1;
        self.end += n;
        if !fds.is_empty() {
            let end_pos = self.pos + (self.end - self.start) as u64;
            self.fds.push_back((end_pos, fds));
        }
        Ok(true)
    }

    /// The descriptors that came with the message at stream offset `at`, `size` bytes long.
    fn take_fds(&mut self, at: u64, size: usize) -> Vec<File> {
        while let Some((end, _)) = self.fds.front() {
            if *end > at {
                break;
            }
            // Belonged to a message that did not expect any: closed.
            self.fds.pop_front();
        }
        match self.fds.front() {
            Some((end, _)) if *end <= at + size as u64 => {
                self.fds.pop_front().map(|(_, f)| f).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    fn serve(&mut self, srv: &Server, backend: &mut dyn ServerBackend) -> std::io::Result<()> {
        loop {
            while self.end - self.start < HDR_LEN {
                if !self.fill(HDR_LEN)? {
                    return if self.end == self.start {
                        Ok(())
                    } else {
                        Err(proto_err(
                            "connection closed inside a message header".into(),
                        ))
                    };
                }
            }
            let hdr = MsgHeader::parse(&self.buf[self.start..self.start + HDR_LEN])
                .ok_or_else(|| proto_err("short header".into()))?;
            let size = hdr.size as usize;
            if !(HDR_LEN..=MAX_MSG).contains(&size) {
                return Err(proto_err(format!(
                    "message {} (command {}) has size {size}",
                    hdr.id, hdr.command
                )));
            }
            while self.end - self.start < size {
                if !self.fill(size)? {
                    return Err(proto_err("connection closed inside a message".into()));
                }
            }
            let at = self.pos;
            let fds = self.take_fds(at, size);
            let (start, body_end) = (self.start + HDR_LEN, self.start + size);
            self.start += size;
            self.pos += size as u64;
            self.stats.messages += 1;
            if hdr.flags & FLAG_REPLY != 0 {
                // We never send requests, so a reply is a confused peer: drop it.
                warn!("vfio-user: unexpected reply {} ignored", hdr.id);
                continue;
            }
            let body = &self.buf[start..body_end];
            let reply = handle(srv, backend, &hdr, body, fds, &mut self.read_buf);
            match reply {
                Ok(Reply::None) => {}
                Ok(Reply::Bytes(b)) => {
                    if !hdr.no_reply() {
                        self.stream.write_all(&b)?;
                    }
                }
                Ok(Reply::WithFd(b, fd)) => send_with_fd(&self.stream, &b, fd)?,
                Err(errno) => {
                    debug!("vfio-user: command {} failed: errno {errno}", hdr.command);
                    let mut b = hdr.reply(HDR_LEN);
                    b[8..12].copy_from_slice(&(FLAG_REPLY | FLAG_ERROR).to_le_bytes());
                    b[12..16].copy_from_slice(&(errno as u32).to_le_bytes());
                    self.stream.write_all(&b)?;
                }
            }
        }
    }
}

enum Reply {
    /// Nothing to send (posted write).
    None,
    /// A reply (dropped if the request asked for none).
    Bytes(Vec<u8>),
    /// A reply carrying a file descriptor (region info of an mmap-able region).
    WithFd(Vec<u8>, RawFd),
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// One request: the reply, or an errno for an error reply.
fn handle(
    srv: &Server,
    backend: &mut dyn ServerBackend,
    hdr: &MsgHeader,
    body: &[u8],
    fds: Vec<File>,
    read_buf: &mut Vec<u8>,
) -> Result<Reply, i32> {
    let ack = || Reply::Bytes(hdr.reply(HDR_LEN).to_vec());
    match hdr.command {
        cmd::REGION_WRITE => {
            let (offset, region, count) = (
                le_u64(body, 0).ok_or(libc::EINVAL)?,
                le_u32(body, 8).ok_or(libc::EINVAL)?,
                le_u32(body, 12).ok_or(libc::EINVAL)? as usize,
            );
            let data = body.get(16..16 + count).ok_or(libc::EINVAL)?;
            if region as usize >= srv.regions.len() {
                return Err(libc::EINVAL);
            }
            backend
                .region_write(region, offset, data)
                .map_err(|e| errno_of(&e))?;
            if hdr.no_reply() {
                return Ok(Reply::None);
            }
            let mut b = hdr.reply(HDR_LEN + 16).to_vec();
            b.extend_from_slice(&body[..16]);
            Ok(Reply::Bytes(b))
        }
        cmd::REGION_READ => {
            let (offset, region, count) = (
                le_u64(body, 0).ok_or(libc::EINVAL)?,
                le_u32(body, 8).ok_or(libc::EINVAL)?,
                le_u32(body, 12).ok_or(libc::EINVAL)?,
            );
            if region as usize >= srv.regions.len() || count > MAX_XFER {
                return Err(libc::EINVAL);
            }
            read_buf.clear();
            read_buf.resize(count as usize, 0);
            backend
                .region_read(region, offset, read_buf)
                .map_err(|e| errno_of(&e))?;
            let mut b = hdr.reply(HDR_LEN + 16 + count as usize).to_vec();
            b.extend_from_slice(&body[..16]);
            b.extend_from_slice(read_buf);
            Ok(Reply::Bytes(b))
        }
        cmd::VERSION => {
            let (major, minor) = (
                body.get(0..2).ok_or(libc::EINVAL)?,
                body.get(2..4).ok_or(libc::EINVAL)?,
            );
            info!(
                "vfio-user client version {}.{}: {}",
                u16::from_le_bytes([major[0], major[1]]),
                u16::from_le_bytes([minor[0], minor[1]]),
                String::from_utf8_lossy(body.get(4..).unwrap_or_default())
                    .trim_end_matches('\0')
                    .chars()
                    .take(256)
                    .collect::<String>()
            );
            // SAFETY: sysconf has no memory effects.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096);
            let caps = format!(
                "{{\"capabilities\":{{\"max_msg_fds\":1,\"max_data_xfer_size\":{MAX_XFER},\"migration\":{{\"pgsize\":{page}}}}}}}\0"
            );
            let mut b = hdr.reply(HDR_LEN + 4 + caps.len()).to_vec();
            b.extend_from_slice(&[0, 0, 0, 0]); // version 0.0
            b.extend_from_slice(caps.as_bytes());
            Ok(Reply::Bytes(b))
        }
        cmd::DEVICE_GET_INFO => {
            let mut b = hdr.reply(HDR_LEN + 16).to_vec();
            b.extend_from_slice(&16u32.to_le_bytes());
            b.extend_from_slice(&(VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET).to_le_bytes());
            b.extend_from_slice(&(srv.regions.len() as u32).to_le_bytes());
            b.extend_from_slice(&(srv.irqs.len() as u32).to_le_bytes());
            Ok(Reply::Bytes(b))
        }
        cmd::DEVICE_GET_REGION_INFO => {
            let argsz = le_u32(body, 0).ok_or(libc::EINVAL)?;
            let index = le_u32(body, 8).ok_or(libc::EINVAL)?;
            let r = srv.regions.get(index as usize).ok_or(libc::EINVAL)?;
            let mut info = r.region_info;
            let mut caps = Vec::new();
            if !r.sparse_areas.is_empty() {
                caps.extend_from_slice(&(VFIO_REGION_INFO_CAP_SPARSE_MMAP as u16).to_le_bytes());
                caps.extend_from_slice(&1u16.to_le_bytes()); // version
                caps.extend_from_slice(&0u32.to_le_bytes()); // next
                caps.extend_from_slice(&(r.sparse_areas.len() as u32).to_le_bytes());
                caps.extend_from_slice(&0u32.to_le_bytes()); // reserved
                for a in &r.sparse_areas {
                    caps.extend_from_slice(&a.area.offset.to_le_bytes());
                    caps.extend_from_slice(&a.area.size.to_le_bytes());
                }
                let info_len = std::mem::size_of::<vfio_region_info>();
                info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
                info.argsz = (info_len + caps.len()) as u32;
                info.cap_offset = info_len as u32;
            }
            // A client whose buffer is too small for the capabilities gets the size it needs
            // (argsz) and asks again.
            let send_caps = !caps.is_empty() && argsz >= info.argsz;
            let len = HDR_LEN + 32 + if send_caps { caps.len() } else { 0 };
            let mut b = hdr.reply(len).to_vec();
            b.extend_from_slice(&info.argsz.to_le_bytes());
            b.extend_from_slice(&info.flags.to_le_bytes());
            b.extend_from_slice(&info.index.to_le_bytes());
            b.extend_from_slice(&info.cap_offset.to_le_bytes());
            b.extend_from_slice(&info.size.to_le_bytes());
            b.extend_from_slice(&info.offset.to_le_bytes());
            if send_caps {
                b.extend_from_slice(&caps);
                if let Some(fd) = r.mmap_fd {
                    return Ok(Reply::WithFd(b, fd));
                }
            }
            Ok(Reply::Bytes(b))
        }
        cmd::GET_IRQ_INFO => {
            let index = le_u32(body, 8).ok_or(libc::EINVAL)?;
            let irq = srv.irqs.get(index as usize).ok_or(libc::EINVAL)?;
            let mut b = hdr.reply(HDR_LEN + 16).to_vec();
            b.extend_from_slice(&16u32.to_le_bytes());
            b.extend_from_slice(&irq.flags.to_le_bytes());
            b.extend_from_slice(&irq.index.to_le_bytes());
            b.extend_from_slice(&irq.count.to_le_bytes());
            Ok(Reply::Bytes(b))
        }
        cmd::SET_IRQS => {
            let flags = le_u32(body, 4).ok_or(libc::EINVAL)?;
            let index = le_u32(body, 8).ok_or(libc::EINVAL)?;
            let start = le_u32(body, 12).ok_or(libc::EINVAL)?;
            let count = le_u32(body, 16).ok_or(libc::EINVAL)?;
            if index as usize >= srv.irqs.len() {
                return Err(libc::EINVAL);
            }
            if flags & VFIO_IRQ_SET_DATA_BOOL != 0 {
                return Err(libc::ENOTSUP);
            }
            backend
                .set_irqs(index, flags, start, count, fds)
                .map_err(|e| errno_of(&e))?;
            Ok(ack())
        }
        cmd::DMA_MAP => {
            let flags = le_u32(body, 4).ok_or(libc::EINVAL)?;
            let offset = le_u64(body, 8).ok_or(libc::EINVAL)?;
            let address = le_u64(body, 16).ok_or(libc::EINVAL)?;
            let size = le_u64(body, 24).ok_or(libc::EINVAL)?;
            if fds.len() > 1 {
                return Err(libc::EINVAL);
            }
            backend
                .dma_map(
                    vfio_user::DmaMapFlags::from_bits_truncate(flags),
                    offset,
                    address,
                    size,
                    fds.into_iter().next(),
                )
                .map_err(|e| errno_of(&e))?;
            Ok(ack())
        }
        cmd::DMA_UNMAP => {
            let flags = le_u32(body, 4).ok_or(libc::EINVAL)?;
            let address = le_u64(body, 8).ok_or(libc::EINVAL)?;
            let size = le_u64(body, 16).ok_or(libc::EINVAL)?;
            backend
                .dma_unmap(
                    vfio_user::DmaUnmapFlags::from_bits_truncate(flags),
                    address,
                    size,
                )
                .map_err(|e| errno_of(&e))?;
            let mut b = hdr.reply(HDR_LEN + 24).to_vec();
            b.extend_from_slice(body.get(0..24).ok_or(libc::EINVAL)?);
            Ok(Reply::Bytes(b))
        }
        cmd::DEVICE_RESET => {
            backend.reset().map_err(|e| errno_of(&e))?;
            Ok(ack())
        }
        _ => Err(libc::ENOTSUP),
    }
}

/// `recvmsg` into `buf`, collecting SCM_RIGHTS descriptors (close-on-exec).
fn recv_with_fds(
    stream: &std::os::unix::net::UnixStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Vec<File>)> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut cbuf = [0u64; 2 + MAX_FDS / 2 + 2];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no iov, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (covering `buf`) and `cbuf`, both live and writable
        // for the call; the kernel writes at most their lengths.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer the kernel filled, bounded by
    // msg_controllen; each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors
    // that now belong to this process and are wrapped exactly once.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<i32>();
                let len = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..len / std::mem::size_of::<i32>() {
                    fds.push(File::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        warn!("vfio-user: descriptors beyond {MAX_FDS} in one read were dropped");
    }
    Ok((n, fds))
}

/// Sends `data` with `fd` attached (SCM_RIGHTS), then the rest of `data` if the first
/// `sendmsg` was short.
pub(crate) fn send_with_fd(
    stream: &std::os::unix::net::UnixStream,
    data: &[u8],
    fd: RawFd,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as _;
    // SAFETY: the control buffer (32 bytes, aligned) holds one cmsghdr with one int; the
    // kernel only reads `data` through `iov` during the call.
    let n = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), fd);
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut s = stream;
    s.write_all(data.get(n as usize..).unwrap_or_default())
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
