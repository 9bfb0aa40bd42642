//! The virtio-console device model (MULTIPORT) and the owner's per-port handles.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemory};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::abi::*;
use crate::device::{
    DeviceError, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
};

/// Largest queue size the device accepts.
pub const MAX_QUEUE_SIZE: u16 = 1024;
/// Default bound on bytes waiting for the guest, per port.
pub const DEFAULT_TO_GUEST_BYTES: usize = 256 * 1024;
/// Default bound on guest bytes waiting for the owner, per port. When it is reached the device
/// stops taking the port's transmitq buffers, so the guest's `write()` blocks: back-pressure,
/// not loss.
pub const DEFAULT_FROM_GUEST_BYTES: usize = 256 * 1024;
/// Longest port name accepted (Linux stores whatever fits a control buffer; real names are short).
pub const MAX_NAME_LEN: usize = 255;
/// Most bytes taken from one guest transmit chain (Linux writes at most 32 KiB per buffer);
/// longer chains are truncated and counted.
const MAX_CHAIN_READ: usize = 256 * 1024;
/// Each queued event costs at least this many bytes against the from-guest bound, so a guest
/// writing 1-byte buffers cannot queue millions of tiny events.
const EVENT_COST: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One named port of a [`ConsoleDevice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortOptions {
    /// The name the guest sees (`/sys/class/virtio-ports/vportNpM/name`, and through udev
    /// `/dev/virtio-ports/NAME`), e.g. `com.redhat.spice.0`.
    pub name: String,
    /// Whether the host side is open from the start (the guest sees PORT_OPEN 1 as soon as the
    /// port is ready). Change it later with [`PortHandle::set_host_open`].
    pub host_open: bool,
    /// An hvc console port (CONSOLE_PORT): the guest gets `/dev/hvcN` on it and a terminal size
    /// through [`PortHandle::resize`].
    pub console: bool,
}

impl PortOptions {
    /// A port named `name`, host side closed.
    pub fn new(name: impl Into<String>) -> Self {
        PortOptions {
            name: name.into(),
            host_open: false,
            console: false,
        }
    }

    /// The same port with the host side open from the start.
    pub fn opened(mut self) -> Self {
        self.host_open = true;
        self
    }
}

/// Construction options for a [`ConsoleDevice`].
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The ports, given ids 1, 2, ... in this order (port 0 is never used, as QEMU reserves it
    /// for a console). The device offers `max_nr_ports = ports.len() + 1`, so a VMM must
    /// create `2 * (ports.len() + 2)` virtqueues.
    pub ports: Vec<PortOptions>,
    /// Bound on bytes waiting for the guest, per port.
    pub to_guest_bytes: usize,
    /// Bound on guest bytes waiting for the owner, per port.
    pub from_guest_bytes: usize,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            ports: Vec::new(),
            to_guest_bytes: DEFAULT_TO_GUEST_BYTES,
            from_guest_bytes: DEFAULT_FROM_GUEST_BYTES,
        }
    }
}

/// Why a console could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// No ports, or more than the device supports.
    #[error("a console needs 1 to {max} ports, got {got}")]
    PortCount {
        /// Ports given.
        got: usize,
        /// Most ports supported.
        max: usize,
    },
    /// A port name is empty, too long, contains a NUL or a `/`, or is used twice.
    #[error("bad port name {0:?}")]
    BadName(String),
    /// Creating the wake eventfd failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// Most ports a device may carry (511 would still fit the spec; 64 keeps the queue count sane).
pub const MAX_PORTS: usize = 64;

/// What the guest did on a port, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortEvent {
    /// The guest opened the port (`open()` on `/dev/vportNpM`).
    Opened,
    /// Bytes the guest wrote (one transmit buffer; the stream has no message boundaries).
    Data(Vec<u8>),
    /// The guest closed the port, or its driver went away (reset, VMM disconnect).
    Closed,
}

/// Why [`PortHandle::write`] took nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// The guest has not opened the port; bytes would reach nobody (the Linux driver discards
    /// data for a closed port).
    #[error("the guest has not opened the port")]
    GuestClosed,
}

/// Counters of one port; read with [`PortHandle::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    /// Bytes written into the guest's receive buffers.
    pub bytes_to_guest: u64,
    /// Bytes the guest wrote that were queued for the owner.
    pub bytes_from_guest: u64,
    /// Guest bytes dropped because the host side was closed.
    pub bytes_dropped: u64,
    /// Guest opens.
    pub opens: u64,
    /// Guest closes (including driver resets of an open port).
    pub closes: u64,
    /// Times the from-guest bound was reached and the transmitq paused.
    pub stalls: u64,
    /// Transmit chains longer than the device reads (truncated).
    pub truncated_chains: u64,
}

/// Device-wide counters; read with [`ConsoleDevice::stats`].
#[derive(Debug, Default)]
struct Metrics {
    control_in: AtomicU64,
    control_out: AtomicU64,
    bad_control: AtomicU64,
    control_dropped: AtomicU64,
    bad_descriptors: AtomicU64,
    queue_errors: AtomicU64,
    port0_bytes_dropped: AtomicU64,
    emergency_writes: AtomicU64,
}

/// A snapshot of the device-wide counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsoleStats {
    /// Control messages received from the driver.
    pub control_in: u64,
    /// Control messages delivered to the driver.
    pub control_out: u64,
    /// Driver control messages refused (unknown event, bad port id, too short).
    pub bad_control: u64,
    /// Control messages dropped because the driver posted no buffers for too long.
    pub control_dropped: u64,
    /// Guest descriptor chains refused (wrong direction, outside memory, too small).
    pub bad_descriptors: u64,
    /// Queues parked because the driver broke the ring.
    pub queue_errors: u64,
    /// Bytes the guest wrote to port 0 (no port there) and that were dropped.
    pub port0_bytes_dropped: u64,
    /// Characters written to `emerg_wr` (not offered; counted if a driver writes anyway).
    pub emergency_writes: u64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

type Notify = Arc<dyn Fn() + Send + Sync>;

struct Port {
    id: u32,
    name: String,
    console: bool,
    /// Terminal size (cols, rows) of a console port.
    size: Option<(u16, u16)>,
    /// PORT_READY(1) seen since the last DEVICE_READY.
    ready: bool,
    guest_open: bool,
    host_open: bool,
    to_guest: VecDeque<u8>,
    events: VecDeque<PortEvent>,
    /// Cost of `events` against the from-guest bound (see [`EVENT_COST`]).
    event_cost: usize,
    /// The transmitq is paused on the from-guest bound.
    stalled: bool,
    notify: Option<Notify>,
    stats: PortStats,
}

impl Port {
    fn cost(ev: &PortEvent) -> usize {
        match ev {
            PortEvent::Data(d) => d.len().max(EVENT_COST),
            _ => EVENT_COST,
        }
    }

    /// Queues a state event. A Closed that directly follows a queued Opened cancels it (the
    /// owner never saw that open), so a guest opening and closing in a loop cannot grow the
    /// queue; Closed then Opened stays, because the owner must see the restart.
    fn push_state(&mut self, ev: PortEvent) {
        if ev == PortEvent::Closed && self.events.back() == Some(&PortEvent::Opened) {
            self.events.pop_back();
            self.event_cost -= EVENT_COST;
            return;
        }
        self.event_cost += EVENT_COST;
        self.events.push_back(ev);
    }
}

struct State {
    ports: Vec<Port>,
    control_out: VecDeque<ControlMsg>,
    control_bound: usize,
    driver_ready: bool,
    broken: Vec<bool>,
    /// One log line per kind of guest fault until reset.
    logged_bad_chain: bool,
    logged_bad_control: bool,
}

impl State {
    fn port_mut(&mut self, id: u32) -> Option<&mut Port> {
        let i = usize::try_from(id).ok()?.checked_sub(1)?;
        self.ports.get_mut(i)
    }

    /// Queues a control message. A PORT_OPEN replaces a queued PORT_OPEN for the same port
    /// (only the last state matters), so host-side flapping cannot grow the queue.
    fn push_control(&mut self, m: ControlMsg, metrics: &Metrics) {
        if m.event == PORT_OPEN {
            self.control_out
                .retain(|q| !(q.event == PORT_OPEN && q.id == m.id));
        }
        if self.control_out.len() >= self.control_bound {
            inc(&metrics.control_dropped);
            tracing::warn!(
                id = m.id,
                event = m.event,
                "virtio-console: control queue full (driver posts no buffers); message dropped"
            );
            return;
        }
        self.control_out.push_back(m);
    }
}

struct Shared {
    state: Mutex<State>,
    wake: EventFd,
    metrics: Metrics,
    active: AtomicBool,
    to_guest_bytes: usize,
    from_guest_bytes: usize,
}

impl Shared {
    fn wake(&self) {
        if let Err(e) = self.wake.write(1) {
            tracing::warn!(error = %e, "virtio-console: cannot signal the wake eventfd");
        }
    }
}

/// Runs the owners' notify callbacks outside the state lock (a callback may call back into a
/// handle).
fn run_notifies(n: Vec<Notify>) {
    for f in n {
        f();
    }
}

/// A virtio-console device with MULTIPORT and named ports: the VDI port that carries the Spice
/// agent (`com.redhat.spice.0`) and any further named ports (for example the QEMU guest agent's
/// `org.qemu.guest_agent.0`).
///
/// The driver handshake follows Linux `virtio_console`: after DEVICE_READY the device adds every
/// port (PORT_ADD); on each PORT_READY it sends the port's name and, if the host side is open,
/// PORT_OPEN 1. Guest opens, data and closes reach the owner as [`PortEvent`]s in order through
/// the port's [`PortHandle`]; the owner's bytes go to the guest only while the guest has the port
/// open. Both directions are bounded: a full from-guest queue pauses the port's transmitq (the
/// guest's `write()` blocks), a full to-guest buffer makes [`PortHandle::write`] take fewer
/// bytes.
///
/// # In-process use
///
/// ```
/// use vdi_port::console::{abi, ConsoleDevice, ConsoleOptions, PortEvent, PortOptions};
/// use vdi_port::VirtioDevice;
/// use virtio_queue::{desc::{split::Descriptor, RawDescriptor}, mock::MockSplitQueue, Queue};
/// use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
/// use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
///
/// let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
/// let (console, ports) = ConsoleDevice::new(ConsoleOptions {
///     ports: vec![PortOptions::new("com.redhat.spice.0").opened()],
///     ..Default::default()
/// })
/// .unwrap();
/// console.activate(); // the VMM saw DRIVER_OK
///
/// // The driver posts a control receive buffer and sends DEVICE_READY on the control transmitq.
/// let crx = MockSplitQueue::new(&mem, 16);
/// crx.add_desc_chains(&[Descriptor::new(0x8000, 4096, VRING_DESC_F_WRITE as u16, 0).into()], 0)
///     .unwrap();
/// let mut crx_q: Queue = crx.create_queue().unwrap();
/// // A second ring, placed apart from the first (MockSplitQueue::new puts rings at 0).
/// let ctx = MockSplitQueue::create(&mem, GuestAddress(0x4000), 16);
/// mem.write_slice(&abi::ControlMsg::new(abi::BAD_ID, abi::DEVICE_READY, 1).to_bytes(),
///     GuestAddress(0x9000)).unwrap();
/// ctx.add_desc_chains(&[Descriptor::new(0x9000, 8, 0, 0).into()], 0).unwrap();
/// let mut ctx_q: Queue = ctx.create_queue().unwrap();
///
/// console.process_queue(abi::CONTROL_TX, &mut ctx_q, &mem).unwrap();
/// console.process_queue(abi::CONTROL_RX, &mut crx_q, &mem).unwrap();
/// // The driver reads PORT_ADD for port 1.
/// let mut msg = [0u8; 8];
/// mem.read_slice(&mut msg, GuestAddress(0x8000)).unwrap();
/// assert_eq!(abi::ControlMsg::parse(&msg), Some(abi::ControlMsg::new(1, abi::PORT_ADD, 1)));
/// assert_eq!(ports[0].recv(), None); // nothing opened yet
/// ```
pub struct ConsoleDevice {
    shared: Arc<Shared>,
    num_ports: u32,
}

impl fmt::Debug for ConsoleDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleDevice")
            .field("ports", &self.num_ports)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The owner's handle to one port: cloneable, thread-safe, never blocks on the guest.
#[derive(Clone)]
pub struct PortHandle {
    shared: Arc<Shared>,
    id: u32,
    name: Arc<str>,
}

impl fmt::Debug for PortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortHandle")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl PortHandle {
    fn with_port<R>(&self, f: impl FnOnce(&mut Port) -> R) -> R {
        let mut st = lock(&self.shared.state);
        let port = st
            .port_mut(self.id)
            .expect("a handle's port id always exists");
        f(port)
    }

    /// The port id (1-based).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The port name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the callback the device runs (on its worker thread) whenever this port has new
    /// events or more room for [`write`](Self::write). It must not block; typically it wakes
    /// the owner's task.
    pub fn set_notify(&self, f: impl Fn() + Send + Sync + 'static) {
        self.with_port(|p| p.notify = Some(Arc::new(f)));
    }

    /// The next guest event, in order; `None` when there is none.
    pub fn recv(&self) -> Option<PortEvent> {
        let (ev, wake) = self.with_port(|p| {
            let ev = p.events.pop_front()?;
            p.event_cost = p.event_cost.saturating_sub(Port::cost(&ev));
            let wake = p.stalled && p.event_cost < self.shared.from_guest_bytes;
            if wake {
                p.stalled = false;
            }
            Some((ev, wake))
        })?;
        if wake {
            self.shared.wake();
        }
        Some(ev)
    }

    /// Queues bytes for the guest and returns how many were taken (fewer than `data.len()`,
    /// possibly 0, when the to-guest buffer is full; the notify callback runs when room frees).
    pub fn write(&self, data: &[u8]) -> Result<usize, PortError> {
        let n = self.with_port(|p| {
            if !p.guest_open {
                return Err(PortError::GuestClosed);
            }
            let room = self.shared.to_guest_bytes.saturating_sub(p.to_guest.len());
            let n = room.min(data.len());
            p.to_guest.extend(&data[..n]);
            Ok(n)
        })?;
        if n > 0 {
            self.shared.wake();
        }
        Ok(n)
    }

    /// Bytes [`write`](Self::write) would take now.
    pub fn write_room(&self) -> usize {
        self.with_port(|p| self.shared.to_guest_bytes.saturating_sub(p.to_guest.len()))
    }

    /// Bytes queued for the guest and not yet in its buffers.
    pub fn pending_to_guest(&self) -> usize {
        self.with_port(|p| p.to_guest.len())
    }

    /// Opens or closes the host side. The guest sees PORT_OPEN: while the host side is
    /// closed, its reads return EOF and guest bytes are dropped (as QEMU does for a closed
    /// chardev).
    pub fn set_host_open(&self, open: bool) {
        let mut st = lock(&self.shared.state);
        let metrics = &self.shared.metrics;
        let Some(p) = st.port_mut(self.id) else {
            return;
        };
        if p.host_open == open {
            return;
        }
        p.host_open = open;
        if !open {
            p.to_guest.clear();
        }
        let send = p.ready;
        if send {
            st.push_control(
                ControlMsg::new(self.id, PORT_OPEN, u16::from(open)),
                metrics,
            );
        }
        drop(st);
        if send {
            self.shared.wake();
        }
    }

    /// Sets the terminal size of a console port ([`PortOptions::console`]); the guest's hvc
    /// gets a RESIZE now if the port is ready, else when it is. Ignored on other ports.
    pub fn resize(&self, cols: u16, rows: u16) {
        let mut st = lock(&self.shared.state);
        let metrics = &self.shared.metrics;
        let Some(p) = st.port_mut(self.id) else {
            return;
        };
        if !p.console {
            return;
        }
        p.size = Some((cols, rows));
        let send = p.ready;
        if send {
            st.push_control(ControlMsg::resize(self.id, cols, rows), metrics);
        }
        drop(st);
        if send {
            self.shared.wake();
        }
    }

    /// Whether the guest has the port open.
    pub fn is_guest_open(&self) -> bool {
        self.with_port(|p| p.guest_open)
    }

    /// Counter snapshot.
    pub fn stats(&self) -> PortStats {
        self.with_port(|p| p.stats)
    }
}

/// Why a descriptor chain was refused. Read through `Debug` in the log line.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy)]
enum BadChain {
    WrongDirection,
    OutsideMemory(u64),
    TooSmall { need: usize, have: usize },
}

impl ConsoleDevice {
    /// Creates a console with `options.ports` and returns it with one handle per port, in
    /// port order.
    pub fn new(options: ConsoleOptions) -> Result<(Self, Vec<PortHandle>), ConsoleError> {
        let n = options.ports.len();
        if n == 0 || n > MAX_PORTS {
            return Err(ConsoleError::PortCount {
                got: n,
                max: MAX_PORTS,
            });
        }
        for (i, p) in options.ports.iter().enumerate() {
            let bad = p.name.is_empty()
                || p.name.len() > MAX_NAME_LEN
                || p.name.contains(['\0', '/'])
                || options.ports[..i].iter().any(|q| q.name == p.name);
            if bad {
                return Err(ConsoleError::BadName(p.name.clone()));
            }
        }
        let wake = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
        let ports: Vec<Port> = options
            .ports
            .iter()
            .zip(1u32..)
            .map(|(o, id)| Port {
                id,
                name: o.name.clone(),
                console: o.console,
                size: None,
                ready: false,
                guest_open: false,
                host_open: o.host_open,
                to_guest: VecDeque::new(),
                events: VecDeque::new(),
                event_cost: 0,
                stalled: false,
                notify: None,
                stats: PortStats::default(),
            })
            .collect();
        let num_ports = u32::try_from(n).expect("at most MAX_PORTS");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ports,
                control_out: VecDeque::new(),
                control_bound: 4 * n + 16,
                driver_ready: false,
                broken: vec![false; 2 * (n + 2)],
                logged_bad_chain: false,
                logged_bad_control: false,
            }),
            wake,
            metrics: Metrics::default(),
            active: AtomicBool::new(false),
            to_guest_bytes: options.to_guest_bytes.max(1),
            from_guest_bytes: options.from_guest_bytes.max(EVENT_COST),
        });
        let handles = options
            .ports
            .iter()
            .zip(1u32..)
            .map(|(o, id)| PortHandle {
                shared: shared.clone(),
                id,
                name: o.name.as_str().into(),
            })
            .collect();
        Ok((ConsoleDevice { shared, num_ports }, handles))
    }

    /// `max_nr_ports` in config space: the ports plus the unused port 0.
    pub fn max_nr_ports(&self) -> u32 {
        self.num_ports + 1
    }

    /// Device-wide counter snapshot.
    pub fn stats(&self) -> ConsoleStats {
        let m = &self.shared.metrics;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConsoleStats {
            control_in: l(&m.control_in),
            control_out: l(&m.control_out),
            bad_control: l(&m.bad_control),
            control_dropped: l(&m.control_dropped),
            bad_descriptors: l(&m.bad_descriptors),
            queue_errors: l(&m.queue_errors),
            port0_bytes_dropped: l(&m.port0_bytes_dropped),
            emergency_writes: l(&m.emergency_writes),
        }
    }

    fn park(&self, st: &mut State, index: usize, e: virtio_queue::Error) -> DeviceError {
        if let Some(b) = st.broken.get_mut(index) {
            *b = true;
        }
        inc(&self.shared.metrics.queue_errors);
        tracing::warn!(queue = index, error = %e, "virtio-console: driver broke the ring; queue parked until reset");
        DeviceError::QueueBroken { index, source: e }
    }

    fn bad_chain(&self, st: &mut State, queue: usize, head: u16, why: BadChain) {
        inc(&self.shared.metrics.bad_descriptors);
        if !st.logged_bad_chain {
            st.logged_bad_chain = true;
            tracing::warn!(queue, head, reason = ?why, "virtio-console: bad descriptor chain (logged once until reset)");
        }
    }

    fn bad_control(&self, st: &mut State, m: &ControlMsg, why: &str) {
        inc(&self.shared.metrics.bad_control);
        if !st.logged_bad_control {
            st.logged_bad_control = true;
            tracing::warn!(
                id = m.id,
                event = m.event,
                value = m.value,
                why,
                "virtio-console: bad control message (logged once until reset)"
            );
        }
    }

    /// Copies the readable bytes of a driver → device chain, at most `cap`. Returns the bytes
    /// and whether the chain held more.
    fn read_chain<M: GuestMemory>(
        chain: &DescriptorChain<&M>,
        mem: &M,
        cap: usize,
    ) -> Result<(Vec<u8>, bool), BadChain> {
        let mut out = Vec::new();
        let mut more = false;
        for desc in chain.clone() {
            if desc.is_write_only() {
                return Err(BadChain::WrongDirection);
            }
            let len = desc.len() as usize;
            let want = len.min(cap - out.len());
            if want < len {
                more = true;
            }
            if want == 0 {
                continue;
            }
            let start = out.len();
            out.resize(start + want, 0);
            mem.read_slice(&mut out[start..], desc.addr())
                .map_err(|_| BadChain::OutsideMemory(desc.addr().0))?;
        }
        Ok((out, more))
    }

    /// Writes `data` into the device-writable descriptors of a chain and returns the bytes
    /// written (less than `data.len()` when the chain is smaller).
    fn write_chain<M: GuestMemory>(
        chain: &DescriptorChain<&M>,
        mem: &M,
        data: &[u8],
    ) -> Result<usize, BadChain> {
        let mut done = 0usize;
        for desc in chain.clone() {
            if done == data.len() {
                break;
            }
            if !desc.is_write_only() {
                return Err(BadChain::WrongDirection);
            }
            let n = (desc.len() as usize).min(data.len() - done);
            mem.write_slice(&data[done..done + n], desc.addr())
                .map_err(|_| BadChain::OutsideMemory(desc.addr().0))?;
            done += n;
        }
        Ok(done)
    }

    /// Takes up to `limit` chains from `queue`, with notifications disabled while draining and
    /// re-checked after enabling (the usual virtio race).
    fn pop_chains<'a, M: GuestMemory>(
        &self,
        st: &mut State,
        index: usize,
        queue: &mut Queue,
        mem: &'a M,
        limit: usize,
    ) -> Result<Vec<DescriptorChain<&'a M>>, DeviceError> {
        let mut out = Vec::new();
        for _round in 0..4 {
            if out.len() >= limit {
                break;
            }
            if let Err(e) = queue.disable_notification(mem) {
                return Err(self.park(st, index, e));
            }
            match queue.iter(mem) {
                Ok(it) => out.extend(it.take(limit - out.len())),
                Err(e) => return Err(self.park(st, index, e)),
            }
            match queue.enable_notification(mem) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => return Err(self.park(st, index, e)),
            }
        }
        Ok(out)
    }

    fn finish<M: GuestMemory>(
        &self,
        st: &mut State,
        index: usize,
        queue: &mut Queue,
        mem: &M,
        used: bool,
    ) -> Result<bool, DeviceError> {
        if !used {
            return Ok(false);
        }
        queue
            .needs_notification(mem)
            .map_err(|e| self.park(st, index, e))
    }

    /// Control transmitq: DEVICE_READY, PORT_READY, PORT_OPEN from the driver.
    fn process_control_tx<M: GuestMemory>(
        &self,
        st: &mut State,
        queue: &mut Queue,
        mem: &M,
        notifies: &mut Vec<Notify>,
    ) -> Result<bool, DeviceError> {
        let chains = self.pop_chains(st, CONTROL_TX, queue, mem, usize::from(queue.size()))?;
        let used = !chains.is_empty();
        for chain in chains {
            let head = chain.head_index();
            match Self::read_chain(&chain, mem, CONTROL_HEADER_SIZE) {
                Ok((bytes, _)) => match ControlMsg::parse(&bytes) {
                    Some(m) => self.control_msg(st, m, notifies),
                    None => {
                        let m = ControlMsg::new(0, u16::MAX, 0);
                        self.bad_control(st, &m, "shorter than a header");
                    }
                },
                Err(why) => self.bad_chain(st, CONTROL_TX, head, why),
            }
            if let Err(e) = queue.add_used(mem, head, 0) {
                return Err(self.park(st, CONTROL_TX, e));
            }
        }
        self.finish(st, CONTROL_TX, queue, mem, used)
    }

    fn guest_closed(p: &mut Port, notifies: &mut Vec<Notify>) {
        if p.guest_open {
            p.guest_open = false;
            p.to_guest.clear();
            p.stats.closes += 1;
            p.push_state(PortEvent::Closed);
            tracing::info!(id = p.id, name = %p.name, "vdi port: guest closed port");
            notifies.extend(p.notify.clone());
        }
    }

    fn control_msg(&self, st: &mut State, m: ControlMsg, notifies: &mut Vec<Notify>) {
        let metrics = &self.shared.metrics;
        inc(&metrics.control_in);
        match m.event {
            DEVICE_READY => {
                if m.value != 1 {
                    tracing::warn!(
                        value = m.value,
                        "virtio-console: the driver reports a failed probe"
                    );
                    return;
                }
                // A (re)probing driver: every port starts over.
                st.control_out.clear();
                for p in &mut st.ports {
                    p.ready = false;
                    Self::guest_closed(p, notifies);
                }
                st.driver_ready = true;
                let ids: Vec<u32> = st.ports.iter().map(|p| p.id).collect();
                for id in ids {
                    st.push_control(ControlMsg::new(id, PORT_ADD, 1), metrics);
                }
                tracing::info!(ports = st.ports.len(), "virtio-console: driver ready");
            }
            PORT_READY => {
                let Some(p) = st.port_mut(m.id) else {
                    return self.bad_control(st, &m, "PORT_READY for an unknown port");
                };
                if m.value != 1 {
                    tracing::warn!(id = m.id, name = %p.name, "virtio-console: the driver failed to set up a port");
                    return;
                }
                p.ready = true;
                let (name, host_open, console, size) =
                    (p.name.clone(), p.host_open, p.console, p.size);
                if console {
                    st.push_control(ControlMsg::new(m.id, CONSOLE_PORT, 1), metrics);
                    if let Some((cols, rows)) = size {
                        st.push_control(ControlMsg::resize(m.id, cols, rows), metrics);
                    }
                }
                st.push_control(ControlMsg::port_name(m.id, &name), metrics);
                if host_open {
                    st.push_control(ControlMsg::new(m.id, PORT_OPEN, 1), metrics);
                }
            }
            PORT_OPEN => {
                let Some(p) = st.port_mut(m.id) else {
                    return self.bad_control(st, &m, "PORT_OPEN for an unknown port");
                };
                match m.value {
                    1 if !p.guest_open => {
                        p.guest_open = true;
                        p.stats.opens += 1;
                        p.push_state(PortEvent::Opened);
                        tracing::info!(id = p.id, name = %p.name, "vdi port: guest opened port");
                        notifies.extend(p.notify.clone());
                    }
                    0 => Self::guest_closed(p, notifies),
                    1 => {}
                    _ => self.bad_control(st, &m, "PORT_OPEN value not 0 or 1"),
                }
            }
            _ => self.bad_control(st, &m, "event not sent by drivers"),
        }
    }

    /// Control receiveq: queued device → driver messages, one per chain.
    fn process_control_rx<M: GuestMemory>(
        &self,
        st: &mut State,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<bool, DeviceError> {
        if st.control_out.is_empty() {
            return Ok(false);
        }
        let want = st.control_out.len();
        let chains = self.pop_chains(st, CONTROL_RX, queue, mem, want)?;
        let used = !chains.is_empty();
        for chain in chains {
            let head = chain.head_index();
            let Some(m) = st.control_out.pop_front() else {
                break;
            };
            let bytes = m.to_bytes();
            let len = match Self::write_chain(&chain, mem, &bytes) {
                Ok(n) if n == bytes.len() => {
                    inc(&self.shared.metrics.control_out);
                    n
                }
                Ok(n) => {
                    self.bad_chain(
                        st,
                        CONTROL_RX,
                        head,
                        BadChain::TooSmall {
                            need: bytes.len(),
                            have: n,
                        },
                    );
                    inc(&self.shared.metrics.control_dropped);
                    0
                }
                Err(why) => {
                    self.bad_chain(st, CONTROL_RX, head, why);
                    inc(&self.shared.metrics.control_dropped);
                    0
                }
            };
            let len = u32::try_from(len).unwrap_or(0);
            if let Err(e) = queue.add_used(mem, head, len) {
                return Err(self.park(st, CONTROL_RX, e));
            }
        }
        self.finish(st, CONTROL_RX, queue, mem, used)
    }

    /// A port's receiveq: owner bytes into the guest's buffers, while the guest has it open.
    fn process_port_rx<M: GuestMemory>(
        &self,
        st: &mut State,
        index: usize,
        id: u32,
        queue: &mut Queue,
        mem: &M,
        notifies: &mut Vec<Notify>,
    ) -> Result<bool, DeviceError> {
        let (open, pending) = match st.port_mut(id) {
            Some(p) => (p.guest_open, p.to_guest.len()),
            None => return Ok(false),
        };
        if !open || pending == 0 {
            return Ok(false);
        }
        let mut used = false;
        let mut freed = false;
        loop {
            let chains = self.pop_chains(st, index, queue, mem, 1)?;
            let Some(chain) = chains.into_iter().next() else {
                break;
            };
            used = true;
            let head = chain.head_index();
            let p = st.port_mut(id).expect("checked above");
            let (a, b) = p.to_guest.as_slices();
            let data: Vec<u8> = if a.is_empty() { b.to_vec() } else { a.to_vec() };
            let len = match Self::write_chain(&chain, mem, &data) {
                Ok(n) => {
                    p.to_guest.drain(..n);
                    p.stats.bytes_to_guest += n as u64;
                    freed |= n > 0;
                    n
                }
                Err(why) => {
                    self.bad_chain(st, index, head, why);
                    0
                }
            };
            let len = u32::try_from(len).unwrap_or(0);
            if let Err(e) = queue.add_used(mem, head, len) {
                return Err(self.park(st, index, e));
            }
            if st.port_mut(id).is_none_or(|p| p.to_guest.is_empty()) {
                break;
            }
        }
        if freed {
            if let Some(p) = st.port_mut(id) {
                notifies.extend(p.notify.clone());
            }
        }
        self.finish(st, index, queue, mem, used)
    }

    /// A port's transmitq: guest bytes to the owner, until the from-guest bound.
    fn process_port_tx<M: GuestMemory>(
        &self,
        st: &mut State,
        index: usize,
        id: u32,
        queue: &mut Queue,
        mem: &M,
        notifies: &mut Vec<Notify>,
    ) -> Result<bool, DeviceError> {
        let bound = self.shared.from_guest_bytes;
        let mut used = false;
        let mut delivered = false;
        loop {
            if let Some(p) = st.port_mut(id) {
                if p.event_cost >= bound {
                    if !p.stalled {
                        p.stalled = true;
                        p.stats.stalls += 1;
                        tracing::debug!(id, "virtio-console: owner not reading; transmitq paused");
                    }
                    break;
                }
            }
            let chains = self.pop_chains(st, index, queue, mem, 1)?;
            let Some(chain) = chains.into_iter().next() else {
                break;
            };
            used = true;
            let head = chain.head_index();
            match Self::read_chain(&chain, mem, MAX_CHAIN_READ) {
                Ok((bytes, more)) => match st.port_mut(id) {
                    Some(p) => {
                        if more {
                            p.stats.truncated_chains += 1;
                        }
                        if p.host_open && !bytes.is_empty() {
                            p.stats.bytes_from_guest += bytes.len() as u64;
                            let ev = PortEvent::Data(bytes);
                            p.event_cost += Port::cost(&ev);
                            p.events.push_back(ev);
                            delivered = true;
                        } else {
                            p.stats.bytes_dropped += bytes.len() as u64;
                        }
                    }
                    None => {
                        self.shared
                            .metrics
                            .port0_bytes_dropped
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                },
                Err(why) => self.bad_chain(st, index, head, why),
            }
            if let Err(e) = queue.add_used(mem, head, 0) {
                return Err(self.park(st, index, e));
            }
        }
        if delivered {
            if let Some(p) = st.port_mut(id) {
                notifies.extend(p.notify.clone());
            }
        }
        self.finish(st, index, queue, mem, used)
    }
}

impl VirtioDevice for ConsoleDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn num_queues(&self) -> usize {
        2 * (self.num_ports as usize + 2)
    }

    fn max_queue_size(&self) -> u16 {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC
            | VIRTIO_CONSOLE_F_MULTIPORT
    }

    fn config_size(&self) -> usize {
        CONFIG_SIZE
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut img = [0u8; CONFIG_SIZE];
        img[CONFIG_MAX_NR_PORTS..CONFIG_MAX_NR_PORTS + 4]
            .copy_from_slice(&self.max_nr_ports().to_le_bytes());
        crate::device::read_config_image(&img, offset, data);
    }

    fn write_config(&self, offset: u64, data: &[u8]) {
        // Only emerg_wr is writable, and EMERG_WRITE is not offered; count and log the byte.
        let hits = (0..data.len() as u64)
            .filter_map(|i| offset.checked_add(i))
            .any(|o| o == CONFIG_EMERG_WR as u64);
        if hits {
            inc(&self.shared.metrics.emergency_writes);
            tracing::debug!("virtio-console: emergency write ignored");
        }
    }

    fn activate(&self) {
        if !self.shared.active.swap(true, Ordering::AcqRel) {
            tracing::info!("virtio-console: guest driver active");
        }
    }

    fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::Acquire)
    }

    fn process_queue<M: GuestMemory>(
        &self,
        index: usize,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<bool, DeviceError> {
        if index >= self.num_queues() {
            return Err(DeviceError::BadQueueIndex(index));
        }
        let mut notifies = Vec::new();
        let r = {
            let mut st = lock(&self.shared.state);
            if st.broken[index] || !queue.ready() {
                return Ok(false);
            }
            match queue_port(index) {
                None if index == CONTROL_TX => {
                    let r = self.process_control_tx(&mut st, queue, mem, &mut notifies);
                    // Replies (PORT_ADD, PORT_NAME, ...) wait for the control receiveq; the
                    // transport runs it on the wake event.
                    if !st.control_out.is_empty() {
                        self.shared.wake();
                    }
                    r
                }
                None => self.process_control_rx(&mut st, queue, mem),
                Some((id, false)) => {
                    self.process_port_rx(&mut st, index, id, queue, mem, &mut notifies)
                }
                Some((id, true)) => {
                    self.process_port_tx(&mut st, index, id, queue, mem, &mut notifies)
                }
            }
        };
        run_notifies(notifies);
        r
    }

    fn wake_event(&self) -> Option<&EventFd> {
        Some(&self.shared.wake)
    }

    fn reset(&self) {
        let was_active = self.shared.active.swap(false, Ordering::AcqRel);
        let mut notifies = Vec::new();
        {
            let mut st = lock(&self.shared.state);
            st.control_out.clear();
            st.driver_ready = false;
            st.broken.iter_mut().for_each(|b| *b = false);
            st.logged_bad_chain = false;
            st.logged_bad_control = false;
            for p in &mut st.ports {
                p.ready = false;
                Self::guest_closed(p, &mut notifies);
                p.to_guest.clear();
                // Guest bytes already queued stay for the owner; the transmitq starts afresh.
                p.stalled = false;
            }
        }
        run_notifies(notifies);
        if was_active {
            tracing::info!("virtio-console: reset");
        }
    }
}
