//! The virtio-input device model and its owner handle.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::abi::*;
use super::config::ConfigTable;
use super::InputKind;
use crate::device::VIRTIO_RING_F_INDIRECT_DESC;
use crate::device::{DeviceError, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};

/// Default bound on events waiting for guest buffers (reports plus their EV_SYN).
pub const DEFAULT_PENDING_EVENTS: usize = 256;
/// Largest queue size the device accepts.
pub const MAX_QUEUE_SIZE: u16 = 256;
/// Bytes of one statusq buffer the device looks at (8 events).
const MAX_STATUS_BYTES: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// LED bits the guest set (bit n = LED code n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedState(pub u8);

impl LedState {
    /// Num Lock LED on.
    pub fn num_lock(self) -> bool {
        self.0 & (1 << LED_NUML) != 0
    }
    /// Caps Lock LED on.
    pub fn caps_lock(self) -> bool {
        self.0 & (1 << LED_CAPSL) != 0
    }
    /// Scroll Lock LED on.
    pub fn scroll_lock(self) -> bool {
        self.0 & (1 << LED_SCROLLL) != 0
    }
}

/// Receives guest status events. Called from the device's worker thread; must not block.
pub trait StatusSink: Send + Sync {
    /// The guest changed its keyboard LEDs.
    fn leds_changed(&self, leds: LedState);
}

/// Construction options for an [`InputDevice`].
#[derive(Clone)]
pub struct InputOptions {
    /// Config ID_NAME (truncated to 128 bytes). Defaults to [`InputKind::default_name`].
    pub name: Option<String>,
    /// Config ID_SERIAL.
    pub serial: String,
    /// Bound on events waiting for guest buffers; reports that do not fit are dropped.
    pub pending_events: usize,
    /// Receives LED changes (keyboard only).
    pub status_sink: Option<Arc<dyn StatusSink>>,
}

impl Default for InputOptions {
    fn default() -> Self {
        InputOptions {
            name: None,
            serial: "spice-rs".into(),
            pending_events: DEFAULT_PENDING_EVENTS,
            status_sink: None,
        }
    }
}

impl fmt::Debug for InputOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputOptions")
            .field("name", &self.name)
            .field("serial", &self.serial)
            .field("pending_events", &self.pending_events)
            .field("status_sink", &self.status_sink.is_some())
            .finish()
    }
}

/// Why a report was not queued. Every variant is also counted in [`InputMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The pending queue has no room for the report (the guest is not reading its eventq).
    #[error("pending queue full ({pending} events waiting, report needs {needed})")]
    Full {
        /// Events already waiting.
        pending: usize,
        /// Events the report needs, EV_SYN included.
        needed: usize,
    },
    /// The guest driver is not active; events would arrive stale.
    #[error("guest driver not active")]
    Inactive,
    /// The report is empty or longer than the pending-queue bound.
    #[error("report of {0} events cannot be queued")]
    BadLength(usize),
    /// The scancode has no Linux key code.
    #[error("unknown scancode {0:#06x}")]
    UnknownScancode(u16),
}

/// Counters kept by the device; read them through [`InputHandle::stats`].
#[derive(Debug, Default)]
pub struct InputMetrics {
    reports_queued: AtomicU64,
    reports_delivered: AtomicU64,
    events_delivered: AtomicU64,
    reports_dropped_full: AtomicU64,
    reports_dropped_inactive: AtomicU64,
    reports_rejected: AtomicU64,
    bad_descriptors: AtomicU64,
    bad_status_events: AtomicU64,
    status_events: AtomicU64,
    led_changes: AtomicU64,
    queue_errors: AtomicU64,
}

/// A snapshot of [`InputMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InputStats {
    /// Reports accepted into the pending queue.
    pub reports_queued: u64,
    /// Reports fully written to the guest.
    pub reports_delivered: u64,
    /// Events (EV_SYN included) written to the guest.
    pub events_delivered: u64,
    /// Reports dropped because the pending queue was full.
    pub reports_dropped_full: u64,
    /// Reports dropped because the guest driver was not active.
    pub reports_dropped_inactive: u64,
    /// Reports refused as empty, too long, or with an unknown scancode.
    pub reports_rejected: u64,
    /// Guest descriptor chains refused (too short, wrong direction, outside memory).
    pub bad_descriptors: u64,
    /// Guest status events the device does not understand.
    pub bad_status_events: u64,
    /// Guest status events accepted.
    pub status_events: u64,
    /// LED changes reported to the [`StatusSink`].
    pub led_changes: u64,
    /// Queues parked because the driver broke the ring.
    pub queue_errors: u64,
}

impl InputMetrics {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn add(c: &AtomicU64, n: usize) {
        c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Current values.
    pub fn snapshot(&self) -> InputStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        InputStats {
            reports_queued: l(&self.reports_queued),
            reports_delivered: l(&self.reports_delivered),
            events_delivered: l(&self.events_delivered),
            reports_dropped_full: l(&self.reports_dropped_full),
            reports_dropped_inactive: l(&self.reports_dropped_inactive),
            reports_rejected: l(&self.reports_rejected),
            bad_descriptors: l(&self.bad_descriptors),
            bad_status_events: l(&self.bad_status_events),
            status_events: l(&self.status_events),
            led_changes: l(&self.led_changes),
            queue_errors: l(&self.queue_errors),
        }
    }
}

/// Reports waiting for guest buffers. `events` counts every queued event; it never exceeds
/// `capacity`.
#[derive(Default)]
struct Pending {
    reports: VecDeque<Vec<InputEvent>>,
    /// Events of the front report already delivered (a report longer than the guest queue goes
    /// out in queue-sized pieces; see [`InputDevice`]).
    front_done: usize,
    events: usize,
    /// Whether the "dropping" warning was logged since the last delivery.
    warned_full: bool,
}

struct Shared {
    kind: InputKind,
    pending: Mutex<Pending>,
    capacity: usize,
    wake: EventFd,
    metrics: InputMetrics,
    active: AtomicBool,
    leds: AtomicU8,
}

/// A guest eventq buffer the device popped and holds until a report needs it.
#[derive(Debug, Clone, Copy)]
struct Held {
    head: u16,
    addr: GuestAddress,
}

#[derive(Default)]
struct Worker {
    held: Vec<Held>,
    broken: [bool; NUM_QUEUES],
    /// One log line per kind of guest fault until reset.
    logged_bad_chain: bool,
    logged_bad_status: bool,
}

/// A virtio-input device (keyboard, tablet or mouse).
///
/// Delivery rule: every report pushed through an [`InputHandle`] is followed by EV_SYN /
/// SYN_REPORT and is either queued whole or dropped whole. The device writes it into the
/// eventq only once it holds enough guest buffers for all of it, so the guest never sees half a
/// report. A report longer than the guest's queue size (QEMU's vhost-user-input uses 4) can
/// never fit; it goes out in queue-sized pieces, the last carrying the EV_SYN, and the guest's
/// input core applies it at the EV_SYN.
///
/// The device holds eventq buffers it has popped until events arrive, so a transport that
/// resets a queue must call [`VirtioDevice::reset`].
///
/// # In-process use
///
/// ```
/// use vdi_port::input::{abi, keymap, InputDevice, InputKind, InputOptions};
/// use vdi_port::VirtioDevice;
/// use virtio_queue::{desc::{split::Descriptor, RawDescriptor}, mock::MockSplitQueue, Queue};
/// use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
/// use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
///
/// let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
/// // The guest driver: an eventq of 16 entries with two 8-byte device-writable buffers.
/// let vq = MockSplitQueue::new(&mem, 16);
/// let bufs: Vec<RawDescriptor> = (0..2u64)
///     .map(|i| Descriptor::new(0x8000 + 8 * i, 8, VRING_DESC_F_WRITE as u16, 0).into())
///     .collect();
/// vq.add_desc_chains(&bufs, 0).unwrap();
/// let mut eventq: Queue = vq.create_queue().unwrap();
///
/// let kbd = InputDevice::new(InputKind::Keyboard, InputOptions::default()).unwrap();
/// let handle = kbd.handle();
/// kbd.activate(); // the VMM saw DRIVER_OK
///
/// // The Spice server (any thread) pushes a key press: KEY_A + EV_SYN.
/// handle.key(0x1e, true).unwrap();
///
/// // The VMM's event loop sees kbd.wake_event() readable (or a guest kick) and drains:
/// let _ = kbd.wake_event().unwrap().read();
/// let notify = kbd.process_queue(abi::EVENTQ, &mut eventq, &mem).unwrap();
/// assert!(notify); // the VMM now injects the queue interrupt
/// let ev: [u8; 8] = mem.read_obj(GuestAddress(0x8000)).unwrap();
/// assert_eq!(abi::InputEvent::from_bytes(ev), abi::InputEvent::key(30, true));
/// ```
pub struct InputDevice {
    shared: Arc<Shared>,
    config: ConfigTable,
    select: Mutex<(u8, u8)>,
    worker: Mutex<Worker>,
    sink: Option<Arc<dyn StatusSink>>,
}

impl fmt::Debug for InputDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputDevice")
            .field("kind", &self.shared.kind)
            .field("stats", &self.shared.metrics.snapshot())
            .finish()
    }
}

/// The owner's handle to an [`InputDevice`]: cloneable, thread-safe, never blocks on the guest.
#[derive(Clone)]
pub struct InputHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for InputHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputHandle")
            .field("kind", &self.shared.kind)
            .finish()
    }
}

impl InputHandle {
    /// Queues `events` followed by EV_SYN/SYN_REPORT as one report and wakes the device.
    /// All or nothing: on error nothing was queued (and a counter was bumped).
    pub fn push_report(&self, events: &[InputEvent]) -> Result<(), PushError> {
        let s = &*self.shared;
        let needed = match events.len().checked_add(1) {
            Some(n) if !events.is_empty() && n <= s.capacity => n,
            _ => {
                InputMetrics::inc(&s.metrics.reports_rejected);
                return Err(PushError::BadLength(events.len()));
            }
        };
        if !s.active.load(Ordering::Acquire) {
            InputMetrics::inc(&s.metrics.reports_dropped_inactive);
            return Err(PushError::Inactive);
        }
        {
            let mut p = lock(&s.pending);
            // `events <= capacity` always holds, so the subtraction cannot underflow.
            if s.capacity - p.events < needed {
                InputMetrics::inc(&s.metrics.reports_dropped_full);
                if !p.warned_full {
                    p.warned_full = true;
                    tracing::warn!(
                        kind = ?s.kind,
                        pending = p.events,
                        "virtio-input: guest is not reading its eventq; dropping reports"
                    );
                }
                return Err(PushError::Full {
                    pending: p.events,
                    needed,
                });
            }
            let mut report = Vec::with_capacity(needed);
            report.extend_from_slice(events);
            report.push(InputEvent::SYN);
            p.reports.push_back(report);
            p.events += needed;
        }
        InputMetrics::inc(&s.metrics.reports_queued);
        if let Err(e) = s.wake.write(1) {
            tracing::warn!(error = %e, "virtio-input: cannot signal the wake eventfd");
        }
        Ok(())
    }

    /// Keyboard helper: a set-1 scancode (Spice convention, see [`super::keymap`]) pressed or
    /// released, as one report.
    pub fn key(&self, scancode: u16, pressed: bool) -> Result<(), PushError> {
        match super::keymap::set1_to_linux(scancode) {
            Some(code) => self.push_report(&[InputEvent::key(code, pressed)]),
            None => {
                InputMetrics::inc(&self.shared.metrics.reports_rejected);
                Err(PushError::UnknownScancode(scancode))
            }
        }
    }

    /// The guest's current LED bits (keyboard).
    pub fn leds(&self) -> LedState {
        LedState(self.shared.leds.load(Ordering::Acquire))
    }

    /// Whether the guest driver is active (queues ready). The Spice server offers client mouse
    /// mode only while a tablet's driver is active.
    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Which kind of device this handle feeds.
    pub fn kind(&self) -> InputKind {
        self.shared.kind
    }

    /// Counter snapshot.
    pub fn stats(&self) -> InputStats {
        self.shared.metrics.snapshot()
    }

    /// Events waiting for guest buffers.
    pub fn pending_events(&self) -> usize {
        lock(&self.shared.pending).events
    }
}

/// Why a chain was refused. The fields are read through `Debug` in the log line.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy)]
enum BadChain {
    NotWritable,
    TooShort(u32),
    OutsideMemory(u64),
    Empty,
}

impl InputDevice {
    /// Creates a device of `kind`. Fails only if the wake eventfd cannot be created.
    pub fn new(kind: InputKind, options: InputOptions) -> Result<Self, DeviceError> {
        let name = options.name.as_deref().unwrap_or(kind.default_name());
        let config = ConfigTable::new(kind, name, &options.serial);
        let wake = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
        Ok(InputDevice {
            shared: Arc::new(Shared {
                kind,
                pending: Mutex::new(Pending::default()),
                capacity: options.pending_events.max(2),
                wake,
                metrics: InputMetrics::default(),
                active: AtomicBool::new(false),
                leds: AtomicU8::new(0),
            }),
            config,
            select: Mutex::new((0, 0)),
            worker: Mutex::new(Worker::default()),
            sink: options.status_sink,
        })
    }

    /// A new owner handle.
    pub fn handle(&self) -> InputHandle {
        InputHandle {
            shared: self.shared.clone(),
        }
    }

    /// The kind of device.
    pub fn kind(&self) -> InputKind {
        self.shared.kind
    }

    /// Counter snapshot.
    pub fn stats(&self) -> InputStats {
        self.shared.metrics.snapshot()
    }

    fn park(&self, w: &mut Worker, index: usize, e: virtio_queue::Error) -> DeviceError {
        if let Some(b) = w.broken.get_mut(index) {
            *b = true;
        }
        InputMetrics::inc(&self.shared.metrics.queue_errors);
        tracing::warn!(queue = index, error = %e, "virtio-input: driver broke the ring; queue parked until reset");
        DeviceError::QueueBroken { index, source: e }
    }

    fn log_bad_chain(&self, w: &mut Worker, queue: usize, head: u16, why: BadChain) {
        InputMetrics::inc(&self.shared.metrics.bad_descriptors);
        if !w.logged_bad_chain {
            w.logged_bad_chain = true;
            tracing::warn!(queue, head, reason = ?why, "virtio-input: bad descriptor chain (logged once until reset)");
        }
    }

    /// Checks an eventq chain: its first descriptor must be device-writable, at least 8 bytes,
    /// inside guest memory.
    fn check_event_chain<M: GuestMemory>(
        chain: &DescriptorChain<&M>,
        mem: &M,
    ) -> Result<GuestAddress, BadChain> {
        let first = chain.clone().next().ok_or(BadChain::Empty)?;
        if !first.is_write_only() {
            return Err(BadChain::NotWritable);
        }
        if (first.len() as usize) < EVENT_SIZE {
            return Err(BadChain::TooShort(first.len()));
        }
        if !mem.check_range(first.addr(), EVENT_SIZE, Permissions::Write) {
            return Err(BadChain::OutsideMemory(first.addr().0));
        }
        Ok(first.addr())
    }

    fn process_eventq<M: GuestMemory>(
        &self,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<bool, DeviceError> {
        let mut w = lock(&self.worker);
        if w.broken[EVENTQ] || !queue.ready() {
            return Ok(false);
        }
        let size = usize::from(queue.size());
        let mut used = false;

        // 1. Take the guest's buffers (at most a queue's worth held at once).
        for _round in 0..4 {
            if let Err(e) = queue.disable_notification(mem) {
                return Err(self.park(&mut w, EVENTQ, e));
            }
            let room = size.saturating_sub(w.held.len());
            let chains: Vec<DescriptorChain<&M>> = match queue.iter(mem) {
                Ok(it) => it.take(room).collect(),
                Err(e) => return Err(self.park(&mut w, EVENTQ, e)),
            };
            for chain in chains {
                let head = chain.head_index();
                match Self::check_event_chain(&chain, mem) {
                    Ok(addr) => w.held.push(Held { head, addr }),
                    Err(why) => {
                        self.log_bad_chain(&mut w, EVENTQ, head, why);
                        if let Err(e) = queue.add_used(mem, head, 0) {
                            return Err(self.park(&mut w, EVENTQ, e));
                        }
                        used = true;
                    }
                }
            }
            match queue.enable_notification(mem) {
                Ok(true) if w.held.len() < size => continue,
                Ok(_) => break,
                Err(e) => return Err(self.park(&mut w, EVENTQ, e)),
            }
        }

        // 2. Deliver whole reports (or queue-sized pieces of an oversized one).
        let mut p = lock(&self.shared.pending);
        let mut delivered = 0usize;
        let mut reports = 0usize;
        while let Some(report) = p.reports.front() {
            let remaining = report.len().saturating_sub(p.front_done);
            let chunk = remaining.min(size);
            if chunk == 0 || w.held.len() < chunk {
                break;
            }
            let start = p.front_done;
            let evs: Vec<InputEvent> = report[start..start + chunk].to_vec();
            let bufs: Vec<Held> = w.held.drain(..chunk).collect();
            for (ev, buf) in evs.iter().zip(bufs) {
                let len = match mem.write_slice(&ev.to_bytes(), buf.addr) {
                    Ok(()) => EVENT_SIZE as u32,
                    Err(_) => {
                        // Memory changed under a held buffer (vhost-user mem table update).
                        self.log_bad_chain(
                            &mut w,
                            EVENTQ,
                            buf.head,
                            BadChain::OutsideMemory(buf.addr.0),
                        );
                        0
                    }
                };
                if let Err(e) = queue.add_used(mem, buf.head, len) {
                    drop(p);
                    return Err(self.park(&mut w, EVENTQ, e));
                }
            }
            used = true;
            delivered += chunk;
            p.events = p.events.saturating_sub(chunk);
            if chunk == remaining {
                p.reports.pop_front();
                p.front_done = 0;
                reports += 1;
            } else {
                p.front_done += chunk;
            }
            p.warned_full = false;
        }
        drop(p);
        InputMetrics::add(&self.shared.metrics.events_delivered, delivered);
        InputMetrics::add(&self.shared.metrics.reports_delivered, reports);

        if !used {
            return Ok(false);
        }
        queue
            .needs_notification(mem)
            .map_err(|e| self.park(&mut w, EVENTQ, e))
    }

    fn process_statusq<M: GuestMemory>(
        &self,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<bool, DeviceError> {
        let mut w = lock(&self.worker);
        if w.broken[STATUSQ] || !queue.ready() {
            return Ok(false);
        }
        let size = usize::from(queue.size());
        let old_leds = self.shared.leds.load(Ordering::Acquire);
        let mut leds = old_leds;
        let mut used = false;
        for _round in 0..4 {
            if let Err(e) = queue.disable_notification(mem) {
                return Err(self.park(&mut w, STATUSQ, e));
            }
            let chains: Vec<DescriptorChain<&M>> = match queue.iter(mem) {
                Ok(it) => it.take(size).collect(),
                Err(e) => return Err(self.park(&mut w, STATUSQ, e)),
            };
            for chain in chains {
                let head = chain.head_index();
                match Self::read_status_chain(&chain, mem) {
                    Ok((buf, n)) => {
                        for ev in buf[..n].chunks_exact(EVENT_SIZE) {
                            let mut b = [0u8; EVENT_SIZE];
                            b.copy_from_slice(ev);
                            self.status_event(&mut w, InputEvent::from_bytes(b), &mut leds);
                        }
                    }
                    Err(why) => self.log_bad_chain(&mut w, STATUSQ, head, why),
                }
                if let Err(e) = queue.add_used(mem, head, 0) {
                    return Err(self.park(&mut w, STATUSQ, e));
                }
                used = true;
            }
            match queue.enable_notification(mem) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => return Err(self.park(&mut w, STATUSQ, e)),
            }
        }
        drop(w);
        if leds != old_leds {
            self.shared.leds.store(leds, Ordering::Release);
            InputMetrics::inc(&self.shared.metrics.led_changes);
            tracing::debug!(leds, "virtio-input: guest LEDs changed");
            if let Some(sink) = &self.sink {
                sink.leds_changed(LedState(leds));
            }
        }
        if !used {
            return Ok(false);
        }
        let mut w = lock(&self.worker);
        queue
            .needs_notification(mem)
            .map_err(|e| self.park(&mut w, STATUSQ, e))
    }

    /// Copies the readable bytes of a statusq chain (at most [`MAX_STATUS_BYTES`]); the chain
    /// must be device-readable only and a whole number of events.
    fn read_status_chain<M: GuestMemory>(
        chain: &DescriptorChain<&M>,
        mem: &M,
    ) -> Result<([u8; MAX_STATUS_BYTES], usize), BadChain> {
        let mut buf = [0u8; MAX_STATUS_BYTES];
        let mut n = 0usize;
        for desc in chain.clone() {
            if desc.is_write_only() {
                return Err(BadChain::NotWritable);
            }
            let want = (desc.len() as usize).min(MAX_STATUS_BYTES - n);
            if want == 0 {
                continue;
            }
            mem.read_slice(&mut buf[n..n + want], desc.addr())
                .map_err(|_| BadChain::OutsideMemory(desc.addr().0))?;
            n += want;
        }
        if n == 0 {
            return Err(BadChain::Empty);
        }
        if n % EVENT_SIZE != 0 {
            return Err(BadChain::TooShort(n as u32));
        }
        Ok((buf, n))
    }

    fn status_event(&self, w: &mut Worker, ev: InputEvent, leds: &mut u8) {
        let m = &self.shared.metrics;
        let ok = match ev.type_ {
            EV_SYN => true,
            // The guest may echo autorepeat settings; nothing to do.
            EV_REP => self.shared.kind == InputKind::Keyboard,
            EV_LED if self.shared.kind == InputKind::Keyboard && ev.code <= LED_SCROLLL => {
                match ev.value {
                    0 => {
                        *leds &= !(1 << ev.code);
                        true
                    }
                    1 => {
                        *leds |= 1 << ev.code;
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if ok {
            InputMetrics::inc(&m.status_events);
        } else {
            InputMetrics::inc(&m.bad_status_events);
            if !w.logged_bad_status {
                w.logged_bad_status = true;
                tracing::warn!(
                    type_ = ev.type_,
                    code = ev.code,
                    value = ev.value,
                    "virtio-input: unexpected guest status event (logged once until reset)"
                );
            }
        }
    }
}

impl VirtioDevice for InputDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_INPUT
    }

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> u16 {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC
    }

    fn config_size(&self) -> usize {
        CONFIG_SIZE
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let (select, subsel) = *lock(&self.select);
        let img = self.config.image(select, subsel);
        crate::device::read_config_image(&img, offset, data);
    }

    fn write_config(&self, offset: u64, data: &[u8]) {
        let mut sel = lock(&self.select);
        for (i, &b) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(0) => sel.0 = b,
                Some(1) => sel.1 = b,
                // size, reserved and the union are read-only for the driver.
                _ => {}
            }
        }
    }

    fn activate(&self) {
        if !self.shared.active.swap(true, Ordering::AcqRel) {
            tracing::info!(kind = ?self.shared.kind, "virtio-input: guest driver active");
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
        match index {
            EVENTQ => self.process_eventq(queue, mem),
            STATUSQ => self.process_statusq(queue, mem),
            _ => Err(DeviceError::BadQueueIndex(index)),
        }
    }

    fn wake_event(&self) -> Option<&EventFd> {
        Some(&self.shared.wake)
    }

    fn reset(&self) {
        let was_active = self.shared.active.swap(false, Ordering::AcqRel);
        *lock(&self.worker) = Worker::default();
        {
            let mut p = lock(&self.shared.pending);
            *p = Pending::default();
        }
        *lock(&self.select) = (0, 0);
        self.shared.leds.store(0, Ordering::Release);
        if was_active {
            tracing::info!(kind = ?self.shared.kind, "virtio-input: reset");
        }
    }
}
