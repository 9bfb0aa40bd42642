//! Test helpers (feature `test-utils`; not part of the default public surface): a minimal
//! split-ring driver and a mock Linux `virtio_console` driver that runs the multiport
//! handshake the way the real one does (DEVICE_READY, PORT_READY per PORT_ADD, receive buffers
//! posted per port, one buffer per `write()`).

use std::collections::{BTreeMap, VecDeque};

use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::console::abi::*;
use crate::console::ConsoleDevice;
use crate::VirtioDevice;

/// Guest memory of the mock driver.
pub type Mem = GuestMemoryMmap<()>;

/// Entries per mock queue.
pub const RING_SIZE: u16 = 16;
/// Bytes of each mock buffer (one per descriptor slot; Linux's port buffers are a page, its
/// writes at most 32 KiB).
pub const SLOT_BYTES: u64 = 0x8000;
const RING_AREA: u64 = 0x1_0000;
const BUF_AREA: u64 = 0x80_0000;

/// One split virtqueue as the driver sees it: one single-descriptor chain per slot.
#[derive(Debug)]
pub struct SplitRing {
    index: usize,
    base: u64,
    avail_idx: u16,
    last_used: u16,
    free: Vec<u16>,
}

impl SplitRing {
    /// The driver side of queue `index`.
    pub fn new(index: usize) -> Self {
        SplitRing {
            index,
            base: RING_AREA * index as u64,
            avail_idx: 0,
            last_used: 0,
            free: (0..RING_SIZE).rev().collect(),
        }
    }

    fn desc(&self) -> u64 {
        self.base
    }
    fn avail(&self) -> u64 {
        self.base + 16 * u64::from(RING_SIZE)
    }
    fn used(&self) -> u64 {
        self.base + 0x8000
    }

    /// Guest address of slot `slot`'s buffer.
    pub fn buf(&self, slot: u16) -> u64 {
        BUF_AREA + (self.index as u64 * u64::from(RING_SIZE) + u64::from(slot)) * SLOT_BYTES
    }

    /// The device's view: a ready `Queue` at this ring's addresses.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(RING_SIZE).expect("valid size");
        q.set_size(RING_SIZE);
        q.set_desc_table_address(Some(self.desc() as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail() as u32), Some(0));
        q.set_used_ring_address(Some(self.used() as u32), Some(0));
        q.set_ready(true);
        q
    }

    /// Free slots.
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// Posts one buffer: device-writable of `len` bytes, or device-readable holding `data`.
    /// Returns the slot, or `None` when the ring is full.
    pub fn post(&mut self, mem: &Mem, writable_len: Option<u32>, data: &[u8]) -> Option<u16> {
        let slot = self.free.pop()?;
        let addr = self.buf(slot);
        let (len, flags) = match writable_len {
            Some(l) => (l.min(SLOT_BYTES as u32), VRING_DESC_F_WRITE as u16),
            None => {
                let n = data.len().min(SLOT_BYTES as usize);
                mem.write_slice(&data[..n], GuestAddress(addr)).ok()?;
                (n as u32, 0)
            }
        };
        let d = self.desc() + 16 * u64::from(slot);
        mem.write_obj(addr, GuestAddress(d)).ok()?;
        mem.write_obj(len, GuestAddress(d + 8)).ok()?;
        mem.write_obj(flags, GuestAddress(d + 12)).ok()?;
        mem.write_obj(0u16, GuestAddress(d + 14)).ok()?;
        let a = self.avail() + 4 + 2 * u64::from(self.avail_idx % RING_SIZE);
        mem.write_obj(slot, GuestAddress(a)).ok()?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail() + 2))
            .ok()?;
        Some(slot)
    }

    /// Used entries since the last call, as (slot, bytes written by the device); their slots
    /// become free again.
    pub fn take_used(&mut self, mem: &Mem) -> Vec<(u16, u32)> {
        let idx: u16 = mem
            .read_obj(GuestAddress(self.used() + 2))
            .unwrap_or(self.last_used);
        let mut out = Vec::new();
        while self.last_used != idx {
            let e = self.used() + 4 + 8 * u64::from(self.last_used % RING_SIZE);
            let id: u32 = mem.read_obj(GuestAddress(e)).unwrap_or(0);
            let len: u32 = mem.read_obj(GuestAddress(e + 4)).unwrap_or(0);
            let slot = (id as u16) % RING_SIZE;
            out.push((slot, len));
            self.free.push(slot);
            self.last_used = self.last_used.wrapping_add(1);
        }
        out
    }
}

/// What the mock driver knows about one port.
#[derive(Debug, Default, Clone)]
pub struct MockPort {
    /// PORT_ADD seen.
    pub added: bool,
    /// Name from PORT_NAME (NUL stripped).
    pub name: Option<String>,
    /// The host side is open (PORT_OPEN from the device).
    pub host_open: bool,
    /// The guest has the port open.
    pub open: bool,
    /// Bytes received and not yet taken with [`MockConsoleDriver::read`].
    pub received: Vec<u8>,
}

/// A mock Linux `virtio_console` driver over a [`ConsoleDevice`]. `pump` plays the transport:
/// it runs every queue until nothing moves.
pub struct MockConsoleDriver<'a> {
    /// The device under test.
    pub dev: &'a ConsoleDevice,
    /// Guest memory.
    pub mem: Mem,
    rings: Vec<SplitRing>,
    queues: Vec<Queue>,
    /// Ports by id.
    pub ports: BTreeMap<u32, MockPort>,
    /// Control messages received, in order.
    pub control_log: Vec<ControlMsg>,
    /// Guest writes waiting for transmit slots, per port.
    tx_backlog: BTreeMap<u32, VecDeque<Vec<u8>>>,
}

impl<'a> MockConsoleDriver<'a> {
    /// Sets up every queue (as the driver does at probe) and activates the device.
    pub fn new(dev: &'a ConsoleDevice) -> Self {
        let n = dev.num_queues();
        let mem = Mem::from_ranges(&[(
            GuestAddress(0),
            (BUF_AREA + n as u64 * u64::from(RING_SIZE) * SLOT_BYTES) as usize,
        )])
        .expect("mock memory");
        let rings: Vec<SplitRing> = (0..n).map(SplitRing::new).collect();
        let queues = rings.iter().map(SplitRing::queue).collect();
        dev.activate();
        MockConsoleDriver {
            dev,
            mem,
            rings,
            queues,
            ports: BTreeMap::new(),
            control_log: Vec::new(),
            tx_backlog: BTreeMap::new(),
        }
    }

    /// Probe: control receive buffers, DEVICE_READY, then the handshake until quiet.
    pub fn probe(&mut self) {
        for _ in 0..8 {
            self.rings[CONTROL_RX].post(&self.mem, Some(4096), &[]);
        }
        self.send_control(ControlMsg::new(BAD_ID, DEVICE_READY, 1));
        self.pump();
    }

    /// Sends a control message on the control transmitq (no pump).
    pub fn send_control(&mut self, m: ControlMsg) {
        self.rings[CONTROL_TX].post(&self.mem, None, &m.to_bytes());
        self.run(CONTROL_TX);
    }

    fn run(&mut self, i: usize) {
        let _ = self.dev.process_queue(i, &mut self.queues[i], &self.mem);
    }

    /// Runs the device on every queue and the driver's reactions until nothing changes.
    pub fn pump(&mut self) {
        for _ in 0..1000 {
            for i in 0..self.queues.len() {
                self.run(i);
            }
            if !self.react() {
                return;
            }
        }
        panic!("mock console driver: no quiescence after 1000 rounds");
    }

    /// Driver reactions to used buffers; returns whether anything happened.
    fn react(&mut self) -> bool {
        let mut moved = false;
        // Control messages.
        for (slot, len) in self.rings[CONTROL_RX].take_used(&self.mem) {
            moved = true;
            let mut b = vec![0u8; len as usize];
            let _ = self
                .mem
                .read_slice(&mut b, GuestAddress(self.rings[CONTROL_RX].buf(slot)));
            if let Some(mut m) = ControlMsg::parse(&b) {
                m.payload = b[CONTROL_HEADER_SIZE.min(b.len())..].to_vec();
                self.control(m);
            }
            self.rings[CONTROL_RX].post(&self.mem, Some(4096), &[]);
        }
        self.rings[CONTROL_TX].take_used(&self.mem);
        let ids: Vec<u32> = self.ports.keys().copied().collect();
        for id in ids {
            let (Some(rx), Some(tx)) = (rx_queue(id), rx_queue(id).map(|q| q + 1)) else {
                continue;
            };
            if tx >= self.rings.len() {
                continue;
            }
            for (slot, len) in self.rings[rx].take_used(&self.mem) {
                moved = true;
                let mut b = vec![0u8; len as usize];
                let _ = self
                    .mem
                    .read_slice(&mut b, GuestAddress(self.rings[rx].buf(slot)));
                let p = self.ports.entry(id).or_default();
                // Linux drops data for a port nobody has open.
                if p.open {
                    p.received.extend_from_slice(&b);
                }
                self.rings[rx].post(&self.mem, Some(4096), &[]);
            }
            if !self.rings[tx].take_used(&self.mem).is_empty() {
                moved = true;
            }
            while self.rings[tx].free_slots() > 0 {
                let Some(chunk) = self.tx_backlog.get_mut(&id).and_then(|b| b.pop_front()) else {
                    break;
                };
                self.rings[tx].post(&self.mem, None, &chunk);
                moved = true;
            }
        }
        moved
    }

    fn control(&mut self, m: ControlMsg) {
        self.control_log.push(m.clone());
        match m.event {
            PORT_ADD => {
                let fresh = !self.ports.get(&m.id).is_some_and(|p| p.added);
                self.ports.entry(m.id).or_default().added = true;
                if fresh {
                    if let Some(rx) = rx_queue(m.id).filter(|&q| q < self.rings.len()) {
                        for _ in 0..4 {
                            self.rings[rx].post(&self.mem, Some(4096), &[]);
                        }
                    }
                }
                self.send_control(ControlMsg::new(m.id, PORT_READY, 1));
            }
            PORT_NAME => {
                let p = self.ports.entry(m.id).or_default();
                if p.name.is_none() {
                    let end = m
                        .payload
                        .iter()
                        .position(|&b| b == 0)
                        .unwrap_or(m.payload.len());
                    p.name = Some(String::from_utf8_lossy(&m.payload[..end]).into_owned());
                }
            }
            PORT_OPEN => self.ports.entry(m.id).or_default().host_open = m.value == 1,
            _ => {}
        }
    }

    /// The port id named `name`.
    pub fn port_id(&self, name: &str) -> Option<u32> {
        self.ports
            .iter()
            .find(|(_, p)| p.name.as_deref() == Some(name))
            .map(|(&id, _)| id)
    }

    /// `open()` on the port.
    pub fn open(&mut self, id: u32) {
        self.ports.entry(id).or_default().open = true;
        self.send_control(ControlMsg::new(id, PORT_OPEN, 1));
        self.pump();
    }

    /// `close()` on the port (Linux discards unread data).
    pub fn close(&mut self, id: u32) {
        let p = self.ports.entry(id).or_default();
        p.open = false;
        p.received.clear();
        self.send_control(ControlMsg::new(id, PORT_OPEN, 0));
        self.pump();
    }

    /// `write()`s of at most 32 KiB each; they go out as transmit slots free up.
    pub fn write(&mut self, id: u32, data: &[u8]) {
        let q = self.tx_backlog.entry(id).or_default();
        for c in data.chunks(SLOT_BYTES as usize) {
            q.push_back(c.to_vec());
        }
        self.pump();
    }

    /// Guest writes not yet taken by the device.
    pub fn tx_backlog(&self, id: u32) -> usize {
        self.tx_backlog
            .get(&id)
            .map_or(0, |b| b.iter().map(Vec::len).sum())
    }

    /// Takes the bytes received on the port.
    pub fn read(&mut self, id: u32) -> Vec<u8> {
        std::mem::take(&mut self.ports.entry(id).or_default().received)
    }
}
