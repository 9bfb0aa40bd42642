//! virtio-input device behaviour through virtio-queue's mock driver.

use std::sync::{Arc, Mutex};

use vdi_port::input::abi::*;
use vdi_port::input::keymap::{keys::*, set1_to_linux};
use vdi_port::input::{InputDevice, InputKind, InputOptions, LedState, PushError, StatusSink};
use vdi_port::VirtioDevice;
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

type Mem = GuestMemoryMmap<()>;

fn mem() -> Mem {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap()
}

const BUF_BASE: u64 = 0x10_0000;

fn write_buf(i: u16) -> RawDescriptor {
    Descriptor::new(BUF_BASE + 8 * u64::from(i), 8, VRING_DESC_F_WRITE as u16, 0).into()
}

/// A driver-side queue. virtio-queue 0.18's `MockSplitQueue` places the used ring over the
/// tail of the avail ring (for size 4 the used flags land on avail entry 2), so the used ring
/// goes to its own page here and is read back directly.
struct Vq<'a> {
    mock: MockSplitQueue<'a, Mem>,
    mem: &'a Mem,
    used: u64,
}

impl<'a> Vq<'a> {
    fn new(mem: &'a Mem, start: u64, len: u16) -> Self {
        Vq {
            mock: MockSplitQueue::create(mem, GuestAddress(start), len),
            mem,
            used: start + 0x8000,
        }
    }
    fn queue(&self) -> Queue {
        let mut q: Queue = self.mock.create_queue().unwrap();
        q.set_used_ring_address(Some(self.used as u32), Some((self.used >> 32) as u32));
        q
    }
    fn add_desc_chains(
        &self,
        descs: &[RawDescriptor],
        offset: u16,
    ) -> Result<(), virtio_queue::mock::MockError> {
        self.mock.add_desc_chains(descs, offset)
    }
    fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }
    fn used_len(&self, i: u64) -> u32 {
        self.mem
            .read_obj(GuestAddress(self.used + 4 + 8 * i + 4))
            .unwrap()
    }
}

/// Posts `n` single-descriptor device-writable buffers, table slots starting at `first`.
fn post(vq: &Vq, first: u16, n: u16) {
    let descs: Vec<RawDescriptor> = (first..first + n).map(write_buf).collect();
    vq.add_desc_chains(&descs, first).unwrap();
}

fn event_at(mem: &Mem, slot: u16) -> InputEvent {
    InputEvent::from_bytes(
        mem.read_obj(GuestAddress(BUF_BASE + 8 * u64::from(slot)))
            .unwrap(),
    )
}

fn config(dev: &InputDevice, select: u8, subsel: u8) -> Vec<u8> {
    // QEMU's vhost-user-input writes the whole 136 bytes and reads them back.
    let mut img = [0u8; CONFIG_SIZE];
    img[0] = select;
    img[1] = subsel;
    img[2] = 0xee; // read-only: must be ignored
    dev.write_config(0, &img);
    let mut out = [0u8; CONFIG_SIZE];
    dev.read_config(0, &mut out);
    assert_eq!((out[0], out[1]), (select, subsel));
    out[8..8 + usize::from(out[2])].to_vec()
}

fn has_bit(bits: &[u8], code: u16) -> bool {
    bits.get(usize::from(code / 8))
        .is_some_and(|b| b & (1 << (code % 8)) != 0)
}

fn device(kind: InputKind) -> InputDevice {
    InputDevice::new(kind, InputOptions::default()).unwrap()
}

#[test]
fn config_space_keyboard() {
    let d = device(InputKind::Keyboard);
    assert_eq!(config(&d, CFG_ID_NAME, 0), b"spice-rs keyboard");
    assert_eq!(config(&d, CFG_ID_SERIAL, 0), b"spice-rs");
    let ids = config(&d, CFG_ID_DEVIDS, 0);
    assert_eq!(ids.len(), 8);
    assert_eq!(u16::from_le_bytes([ids[0], ids[1]]), BUS_VIRTUAL);
    let keys = config(&d, CFG_EV_BITS, EV_KEY as u8);
    for k in [
        1,
        KEY_A,
        KEY_LEFTSHIFT,
        88,
        KEY_RIGHTCTRL,
        KEY_UP,
        KEY_KPSLASH,
        KEY_KPENTER,
        KEY_LEFTMETA,
        KEY_PAUSE,
        KEY_SYSRQ,
        KEY_COMPOSE,
        KEY_MUTE,
        KEY_MEDIA,
    ] {
        assert!(has_bit(&keys, k), "key {k} missing");
    }
    assert!(!has_bit(&keys, BTN_LEFT));
    let leds = config(&d, CFG_EV_BITS, EV_LED as u8);
    assert_eq!(leds, [0b111]);
    assert!(!config(&d, CFG_EV_BITS, EV_REP as u8).is_empty());
    assert!(config(&d, CFG_EV_BITS, EV_ABS as u8).is_empty());
    assert!(config(&d, CFG_EV_BITS, EV_REL as u8).is_empty());
    assert!(config(&d, 0x77, 0).is_empty());
    // Partial reads at an offset (cloud-hypervisor and crosvm forward the real offset).
    d.write_config(0, &[CFG_ID_NAME]);
    d.write_config(1, &[0]);
    let mut b = [0u8; 6];
    d.read_config(8, &mut b);
    assert_eq!(&b, b"spice-");
    let mut tail = [0xffu8; 4];
    d.read_config(134, &mut tail);
    assert_eq!(tail, [0; 4], "bytes beyond config space read as zero");
}

#[test]
fn config_space_tablet() {
    let d = device(InputKind::Tablet);
    assert_eq!(config(&d, CFG_ID_NAME, 0), b"spice-rs tablet");
    let abs = config(&d, CFG_EV_BITS, EV_ABS as u8);
    assert!(has_bit(&abs, ABS_X) && has_bit(&abs, ABS_Y));
    let keys = config(&d, CFG_EV_BITS, EV_KEY as u8);
    for b in [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA] {
        assert!(has_bit(&keys, b));
    }
    assert!(!has_bit(&keys, KEY_A));
    let rel = config(&d, CFG_EV_BITS, EV_REL as u8);
    assert!(has_bit(&rel, REL_WHEEL) && !has_bit(&rel, REL_X));
    for axis in [ABS_X, ABS_Y] {
        let info = config(&d, CFG_ABS_INFO, axis as u8);
        assert_eq!(info.len(), 20);
        let le = |i: usize| u32::from_le_bytes(info[i..i + 4].try_into().unwrap());
        assert_eq!((le(0), le(4)), (0, 0x7fff));
    }
    assert!(config(&d, CFG_ABS_INFO, 2).is_empty());
}

#[test]
fn config_space_mouse() {
    let d = device(InputKind::Mouse);
    assert_eq!(config(&d, CFG_ID_NAME, 0), b"spice-rs mouse");
    let rel = config(&d, CFG_EV_BITS, EV_REL as u8);
    for a in [REL_X, REL_Y, REL_WHEEL] {
        assert!(has_bit(&rel, a));
    }
    assert!(config(&d, CFG_EV_BITS, EV_ABS as u8).is_empty());
    assert!(has_bit(&config(&d, CFG_EV_BITS, EV_KEY as u8), BTN_LEFT));
}

#[test]
fn keymap_spot_checks() {
    for (sc, key) in [
        (0x1e, 30),
        (0x2a, 42),
        (0xe01d, 97),
        (0xe048, 103),
        (0xe035, 98),
        (0xe01c, 96),
        (0x47, 71),
        (0xe05b, 125),
        (0xe11d, 119),
        (0xe037, 99),
        (0x01, 1),
        (0x58, 88),
        (0xe053, KEY_DELETE),
        (0xe05d, KEY_COMPOSE),
    ] {
        assert_eq!(set1_to_linux(sc), Some(key), "scancode {sc:#x}");
    }
    for sc in 0x01..=0x58u16 {
        assert!(set1_to_linux(sc).is_some(), "set-1 {sc:#x} unmapped");
    }
    assert_eq!(set1_to_linux(0), None);
    assert_eq!(set1_to_linux(0xe02a), None, "fake shift");
    assert_eq!(set1_to_linux(0xe21d), None);
}

#[test]
fn key_report_reaches_guest_buffers() {
    let m = mem();
    let vq = Vq::new(&m, 0, 16);
    post(&vq, 0, 4);
    let mut q = vq.queue();
    let d = device(InputKind::Keyboard);
    let h = d.handle();
    assert_eq!(h.key(0x1e, true), Err(PushError::Inactive));
    d.activate();
    assert!(h.is_active());
    h.key(0xe01d, true).unwrap();
    assert_eq!(d.wake_event().unwrap().read().unwrap(), 1);
    assert!(d.process_queue(EVENTQ, &mut q, &m).unwrap());
    assert_eq!(vq.used_idx(), 2);
    assert_eq!(event_at(&m, 0), InputEvent::key(KEY_RIGHTCTRL, true));
    assert_eq!(event_at(&m, 1), InputEvent::SYN);
    let s = h.stats();
    assert_eq!(
        (
            s.events_delivered,
            s.reports_delivered,
            s.reports_dropped_inactive
        ),
        (2, 1, 1)
    );
    // Used length is 8 per event.
    assert_eq!(vq.used_len(0), 8);
}

#[test]
fn report_is_all_or_nothing() {
    let m = mem();
    let vq = Vq::new(&m, 0, 16);
    post(&vq, 0, 2);
    let mut q = vq.queue();
    let d = device(InputKind::Tablet);
    let h = d.handle();
    d.activate();
    // X, Y, BTN_LEFT + SYN = 4 events, the guest posted 2 buffers.
    h.push_report(&[
        InputEvent::abs(ABS_X, 100),
        InputEvent::abs(ABS_Y, 200),
        InputEvent::key(BTN_LEFT, true),
    ])
    .unwrap();
    assert!(!d.process_queue(EVENTQ, &mut q, &m).unwrap());
    assert_eq!(vq.used_idx(), 0, "half a report must not be delivered");
    assert_eq!(h.pending_events(), 4);
    post(&vq, 2, 2);
    assert!(d.process_queue(EVENTQ, &mut q, &m).unwrap());
    assert_eq!(vq.used_idx(), 4);
    assert_eq!(event_at(&m, 0), InputEvent::abs(ABS_X, 100));
    assert_eq!(event_at(&m, 1), InputEvent::abs(ABS_Y, 200));
    assert_eq!(event_at(&m, 2), InputEvent::key(BTN_LEFT, true));
    assert_eq!(event_at(&m, 3), InputEvent::SYN);
    assert_eq!(h.pending_events(), 0);
}

#[test]
fn report_longer_than_queue_goes_in_queue_sized_pieces() {
    // QEMU's vhost-user-input-pci has vq_size 4.
    let m = mem();
    let vq = Vq::new(&m, 0, 4);
    post(&vq, 0, 4);
    let mut q = vq.queue();
    let d = device(InputKind::Mouse);
    let h = d.handle();
    d.activate();
    let evs = [
        InputEvent::rel(REL_X, 1),
        InputEvent::rel(REL_Y, -1),
        InputEvent::rel(REL_WHEEL, 1),
        InputEvent::key(BTN_LEFT, true),
        InputEvent::key(BTN_RIGHT, true),
    ];
    h.push_report(&evs).unwrap();
    assert!(d.process_queue(EVENTQ, &mut q, &m).unwrap());
    assert_eq!(vq.used_idx(), 4);
    assert_eq!(event_at(&m, 1), InputEvent::rel(REL_Y, -1));
    assert_eq!(h.stats().reports_delivered, 0);
    post(&vq, 0, 2);
    assert!(d.process_queue(EVENTQ, &mut q, &m).unwrap());
    assert_eq!(vq.used_idx(), 6);
    assert_eq!(event_at(&m, 0), InputEvent::key(BTN_RIGHT, true));
    assert_eq!(event_at(&m, 1), InputEvent::SYN);
    assert_eq!(h.stats().reports_delivered, 1);
}

#[test]
fn bounded_queue_drops_and_counts_when_guest_never_reads() {
    let m = mem();
    let vq = Vq::new(&m, 0, 16);
    let mut q = vq.queue();
    let opts = InputOptions {
        pending_events: 8,
        ..Default::default()
    };
    let d = InputDevice::new(InputKind::Keyboard, opts).unwrap();
    let h = d.handle();
    d.activate();
    for _ in 0..4 {
        h.key(0x1e, true).unwrap();
    }
    assert_eq!(
        h.key(0x1e, false),
        Err(PushError::Full {
            pending: 8,
            needed: 2
        })
    );
    assert_eq!(
        h.push_report(&[InputEvent::key(KEY_A, true); 8]),
        Err(PushError::BadLength(8))
    );
    assert_eq!(h.push_report(&[]), Err(PushError::BadLength(0)));
    assert_eq!(h.key(0x00, true), Err(PushError::UnknownScancode(0)));
    assert!(!d.process_queue(EVENTQ, &mut q, &m).unwrap());
    let s = h.stats();
    assert_eq!(
        (s.reports_queued, s.reports_dropped_full, s.reports_rejected),
        (4, 1, 3)
    );
    // Once the guest posts buffers, the queued reports come out in order.
    post(&vq, 0, 16);
    assert!(d.process_queue(EVENTQ, &mut q, &m).unwrap());
    assert_eq!(vq.used_idx(), 8);
    h.key(0x1e, false).unwrap();
}

#[derive(Default)]
struct Leds(Mutex<Vec<LedState>>);
impl StatusSink for Leds {
    fn leds_changed(&self, leds: LedState) {
        self.0.lock().unwrap().push(leds);
    }
}

fn status_buf(mem: &Mem, addr: u64, evs: &[InputEvent]) -> RawDescriptor {
    let bytes: Vec<u8> = evs.iter().flat_map(|e| e.to_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(addr)).unwrap();
    Descriptor::new(addr, bytes.len() as u32, 0, 0).into()
}

#[test]
fn led_status_events_reach_the_sink() {
    let m = mem();
    let vq = Vq::new(&m, 0, 16);
    let sink = Arc::new(Leds::default());
    let opts = InputOptions {
        status_sink: Some(sink.clone()),
        ..Default::default()
    };
    let d = InputDevice::new(InputKind::Keyboard, opts).unwrap();
    let h = d.handle();
    d.activate();
    let descs = [
        status_buf(
            &m,
            0x18_0000,
            &[InputEvent {
                type_: EV_LED,
                code: LED_CAPSL,
                value: 1,
            }],
        ),
        status_buf(
            &m,
            0x18_0100,
            &[
                InputEvent {
                    type_: EV_LED,
                    code: LED_NUML,
                    value: 1,
                },
                InputEvent::SYN,
            ],
        ),
    ];
    vq.add_desc_chains(&descs, 0).unwrap();
    let mut q = vq.queue();
    assert!(d.process_queue(STATUSQ, &mut q, &m).unwrap());
    assert_eq!(vq.used_idx(), 2);
    assert!(h.leds().caps_lock() && h.leds().num_lock() && !h.leds().scroll_lock());
    assert_eq!(*sink.0.lock().unwrap(), vec![LedState(0b011)]);
    // Caps off.
    vq.add_desc_chains(
        &[status_buf(
            &m,
            0x18_0200,
            &[InputEvent {
                type_: EV_LED,
                code: LED_CAPSL,
                value: 0,
            }],
        )],
        2,
    )
    .unwrap();
    d.process_queue(STATUSQ, &mut q, &m).unwrap();
    assert_eq!(h.leds(), LedState(0b001));
    assert_eq!(sink.0.lock().unwrap().len(), 2);
    assert_eq!(h.stats().status_events, 4);
    assert_eq!(h.stats().led_changes, 2);
}

#[test]
fn bad_guest_input_is_counted_not_fatal() {
    let m = mem();
    // eventq: a device-readable buffer, a 4-byte buffer, a buffer outside memory, then a good one.
    let vq = Vq::new(&m, 0, 16);
    let descs: [RawDescriptor; 4] = [
        Descriptor::new(BUF_BASE, 8, 0, 0).into(),
        Descriptor::new(BUF_BASE + 8, 4, VRING_DESC_F_WRITE as u16, 0).into(),
        Descriptor::new(0xffff_0000_0000, 8, VRING_DESC_F_WRITE as u16, 0).into(),
        write_buf(3),
    ];
    vq.add_desc_chains(&descs, 0).unwrap();
    let mut q = vq.queue();
    let d = device(InputKind::Keyboard);
    let h = d.handle();
    d.activate();
    h.key(0x1e, true).unwrap();
    assert!(d.process_queue(EVENTQ, &mut q, &m).unwrap());
    assert_eq!(h.stats().bad_descriptors, 3);
    assert_eq!(vq.used_idx(), 3, "bad chains are returned with length 0");
    post(&vq, 4, 1);
    d.process_queue(EVENTQ, &mut q, &m).unwrap();
    assert_eq!(vq.used_idx(), 5);
    assert_eq!(event_at(&m, 3), InputEvent::key(KEY_A, true));
    assert_eq!(event_at(&m, 4), InputEvent::SYN);

    // statusq: garbage events, a write-only buffer, a 5-byte buffer.
    let sq = Vq::new(&m, 0x1_0000, 16);
    let sdescs = [
        status_buf(
            &m,
            0x18_0000,
            &[
                InputEvent {
                    type_: 0x99,
                    code: 1,
                    value: 1,
                },
                InputEvent {
                    type_: EV_LED,
                    code: 9,
                    value: 1,
                },
                InputEvent {
                    type_: EV_LED,
                    code: 0,
                    value: 7,
                },
            ],
        ),
        Descriptor::new(0x18_0100, 8, VRING_DESC_F_WRITE as u16, 0).into(),
        Descriptor::new(0x18_0200, 5, 0, 0).into(),
    ];
    sq.add_desc_chains(&sdescs, 0).unwrap();
    let mut s = sq.queue();
    assert!(d.process_queue(STATUSQ, &mut s, &m).unwrap());
    assert_eq!(sq.used_idx(), 3);
    let st = h.stats();
    assert_eq!(
        (st.bad_status_events, st.bad_descriptors, st.led_changes),
        (3, 5, 0)
    );
    assert_eq!(h.leds(), LedState(0));

    // A tablet has no LEDs.
    let t = device(InputKind::Tablet);
    let tq = Vq::new(&m, 0x2_0000, 16);
    tq.add_desc_chains(
        &[status_buf(
            &m,
            0x18_0300,
            &[InputEvent {
                type_: EV_LED,
                code: 0,
                value: 1,
            }],
        )],
        0,
    )
    .unwrap();
    let mut tqq = tq.queue();
    t.process_queue(STATUSQ, &mut tqq, &m).unwrap();
    assert_eq!(t.stats().bad_status_events, 1);
    assert!(d.process_queue(7, &mut tqq, &m).is_err());
}

#[test]
fn broken_avail_index_parks_the_queue_until_reset() {
    let m = mem();
    let vq = Vq::new(&m, 0, 4);
    let mut q = vq.queue();
    vq.mock.avail().idx().store(100); // more than the queue size ahead
    let d = device(InputKind::Keyboard);
    d.activate();
    d.handle().key(0x1e, true).unwrap();
    assert!(d.process_queue(EVENTQ, &mut q, &m).is_err());
    assert_eq!(d.stats().queue_errors, 1);
    // Parked: no further errors, no spin.
    assert!(!d.process_queue(EVENTQ, &mut q, &m).unwrap());
    assert_eq!(d.stats().queue_errors, 1);
    d.reset();
    assert!(!d.is_active());
    assert_eq!(d.handle().pending_events(), 0);
}
