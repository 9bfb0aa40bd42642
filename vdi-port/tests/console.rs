//! virtio-console (MULTIPORT) behaviour against a mock Linux `virtio_console` driver.

use vdi_port::console::abi::*;
use vdi_port::console::{
    ConsoleDevice, ConsoleError, ConsoleOptions, PortError, PortEvent, PortHandle, PortOptions,
};
use vdi_port::testing::MockConsoleDriver;
use vdi_port::VirtioDevice;

const AGENT: &str = "com.redhat.spice.0";
const GA: &str = "org.qemu.guest_agent.0";

fn console(to_guest: usize, from_guest: usize) -> (ConsoleDevice, Vec<PortHandle>) {
    ConsoleDevice::new(ConsoleOptions {
        ports: vec![PortOptions::new(AGENT).opened(), PortOptions::new(GA)],
        to_guest_bytes: to_guest,
        from_guest_bytes: from_guest,
    })
    .unwrap()
}

fn events(h: &PortHandle) -> Vec<PortEvent> {
    std::iter::from_fn(|| h.recv()).collect()
}

fn data_of(evs: &[PortEvent]) -> Vec<u8> {
    evs.iter()
        .flat_map(|e| match e {
            PortEvent::Data(d) => d.clone(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn config_space_and_queue_count() {
    let (dev, _) = console(1024, 1024);
    assert_eq!(dev.device_type(), 3);
    assert_eq!(dev.num_queues(), 8); // ports 0..=2, two queues each, plus the control pair
    assert_ne!(dev.features() & VIRTIO_CONSOLE_F_MULTIPORT, 0);
    let mut cfg = [0xaau8; 12];
    dev.read_config(0, &mut cfg);
    assert_eq!(cfg, [0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
    let mut tail = [0xaau8; 4];
    dev.read_config(10, &mut tail);
    assert_eq!(tail, [0; 4], "bytes past the config space read as zero");
    dev.write_config(8, b"x");
    assert_eq!(dev.stats().emergency_writes, 1);
}

#[test]
fn handshake_names_ports_and_opens_the_host_side() {
    let (dev, handles) = console(1024, 1024);
    let mut drv = MockConsoleDriver::new(&dev);
    drv.probe();
    assert_eq!(drv.port_id(AGENT), Some(1));
    assert_eq!(drv.port_id(GA), Some(2));
    assert!(
        drv.ports[&1].host_open,
        "agent port host side open from the start"
    );
    assert!(!drv.ports[&2].host_open);
    assert!(!drv.ports.contains_key(&0), "port 0 is never added");
    // The exact order Linux expects: PORT_ADD first, then per port NAME (and OPEN).
    let evs: Vec<(u32, u16)> = drv.control_log.iter().map(|m| (m.id, m.event)).collect();
    assert_eq!(
        evs,
        [
            (1, PORT_ADD),
            (2, PORT_ADD),
            (1, PORT_NAME),
            (1, PORT_OPEN),
            (2, PORT_NAME)
        ]
    );
    assert_eq!(handles[1].name(), GA);
    handles[1].set_host_open(true);
    drv.pump();
    assert!(drv.ports[&2].host_open);
    handles[1].set_host_open(false);
    drv.pump();
    assert!(!drv.ports[&2].host_open);
    assert_eq!(dev.stats().bad_control, 0);
}

#[test]
fn open_data_close_reach_the_owner_in_order_and_bytes_come_back_unchanged() {
    let (dev, h) = console(64 * 1024, 64 * 1024);
    let mut drv = MockConsoleDriver::new(&dev);
    drv.probe();
    assert_eq!(h[0].write(b"early"), Err(PortError::GuestClosed));
    drv.open(1);
    assert!(h[0].is_guest_open());
    // 1 MiB each way through the bounded buffers, echoed by the owner.
    let stream: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut to_send = &stream[..];
    let mut got_by_owner = Vec::new();
    let mut echo_backlog: Vec<u8> = Vec::new();
    let mut got_by_guest = Vec::new();
    let mut first = true;
    for _ in 0..10_000 {
        if !to_send.is_empty() && drv.tx_backlog(1) < 128 * 1024 {
            let n = to_send.len().min(100_000);
            drv.write(1, &to_send[..n]);
            to_send = &to_send[n..];
        }
        while let Some(ev) = h[0].recv() {
            match ev {
                PortEvent::Opened => {
                    assert!(first, "one open");
                    first = false;
                }
                PortEvent::Data(d) => {
                    assert!(!first, "data after the open");
                    got_by_owner.extend_from_slice(&d);
                    echo_backlog.extend_from_slice(&d);
                }
                PortEvent::Closed => panic!("no close yet"),
            }
        }
        let n = h[0].write(&echo_backlog).unwrap();
        echo_backlog.drain(..n);
        drv.pump();
        got_by_guest.extend(drv.read(1));
        if got_by_guest.len() == stream.len() {
            break;
        }
    }
    assert!(got_by_owner == stream, "guest → owner unchanged");
    assert!(got_by_guest == stream, "owner → guest unchanged");
    let st = h[0].stats();
    assert_eq!(st.bytes_from_guest, stream.len() as u64);
    assert_eq!(st.bytes_to_guest, stream.len() as u64);
    drv.close(1);
    assert_eq!(events(&h[0]), [PortEvent::Closed]);
    assert_eq!(h[0].write(b"late"), Err(PortError::GuestClosed));
}

#[test]
fn an_owner_that_does_not_read_pauses_the_guest_instead_of_losing_bytes() {
    let (dev, h) = console(4096, 8192);
    let mut drv = MockConsoleDriver::new(&dev);
    drv.probe();
    drv.open(1);
    let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    drv.write(1, &data);
    assert!(h[0].stats().stalls >= 1);
    assert!(
        h[0].stats().bytes_from_guest < data.len() as u64,
        "guest buffers wait in the transmitq"
    );
    // Reading wakes the device; the rest arrives in order.
    let mut got = Vec::new();
    for _ in 0..1000 {
        let evs = events(&h[0]);
        got.extend(data_of(&evs));
        drv.pump();
        if got.len() == data.len() {
            break;
        }
    }
    assert!(got == data);
    // To-guest bound: a partial write, then room after the guest reads.
    let n = h[0].write(&[7u8; 10_000]).unwrap();
    assert_eq!(n, 4096);
    assert_eq!(h[0].write(&[7u8; 10]).unwrap(), 0);
    drv.pump();
    assert!(h[0].write_room() > 0);
}

#[test]
fn guest_bytes_are_dropped_while_the_host_side_is_closed() {
    let (dev, h) = console(4096, 4096);
    let mut drv = MockConsoleDriver::new(&dev);
    drv.probe();
    drv.open(2);
    drv.write(2, b"nobody listens");
    assert_eq!(events(&h[1]), [PortEvent::Opened]);
    assert_eq!(h[1].stats().bytes_dropped, 14);
    h[1].set_host_open(true);
    drv.pump();
    drv.write(2, b"hello");
    assert_eq!(events(&h[1]), [PortEvent::Data(b"hello".to_vec())]);
}

#[test]
fn open_close_loops_do_not_grow_the_event_queue() {
    let (dev, h) = console(4096, 4096);
    let mut drv = MockConsoleDriver::new(&dev);
    drv.probe();
    for _ in 0..10_000 {
        drv.open(1);
        drv.close(1);
    }
    assert!(events(&h[0]).is_empty(), "never-seen opens cancel out");
    drv.open(1);
    let _ = events(&h[0]);
    for _ in 0..10_000 {
        drv.close(1);
        drv.open(1);
    }
    // Each restart the owner has not seen yet is at most one Closed+Opened pair... coalesced.
    let evs = events(&h[0]);
    assert_eq!(evs, [PortEvent::Closed, PortEvent::Opened]);
    assert_eq!(h[0].stats().opens, 10_001 + 10_000);
}

#[test]
fn a_driver_reset_closes_open_ports_for_the_owner() {
    let (dev, h) = console(4096, 4096);
    let mut drv = MockConsoleDriver::new(&dev);
    drv.probe();
    drv.open(1);
    drv.write(1, b"bye");
    dev.reset();
    assert_eq!(
        events(&h[0]),
        [
            PortEvent::Opened,
            PortEvent::Data(b"bye".to_vec()),
            PortEvent::Closed
        ]
    );
    assert!(!dev.is_active());
    // A fresh driver gets the whole handshake again.
    let mut drv = MockConsoleDriver::new(&dev);
    drv.probe();
    assert_eq!(drv.port_id(AGENT), Some(1));
}

#[test]
fn bad_control_messages_are_counted_not_fatal() {
    let (dev, h) = console(4096, 4096);
    let mut drv = MockConsoleDriver::new(&dev);
    drv.probe();
    for m in [
        ControlMsg::new(9, PORT_READY, 1),
        ControlMsg::new(0, PORT_OPEN, 1),
        ControlMsg::new(u32::MAX, PORT_OPEN, 1),
        ControlMsg::new(1, PORT_OPEN, 7),
        ControlMsg::new(1, PORT_NAME, 1),
        ControlMsg::new(1, 999, 1),
    ] {
        drv.send_control(m);
    }
    drv.pump();
    assert_eq!(dev.stats().bad_control, 6);
    assert!(events(&h[0]).is_empty());
    // Port 0's transmitq: bytes go nowhere, counted.
    // A second DEVICE_READY (driver re-probe) re-adds every port.
    let before = drv.control_log.len();
    drv.send_control(ControlMsg::new(BAD_ID, DEVICE_READY, 1));
    drv.pump();
    assert!(drv.control_log[before..]
        .iter()
        .any(|m| m.id == 2 && m.event == PORT_ADD));
}

#[test]
fn construction_refuses_bad_port_sets() {
    let bad = |names: &[&str]| {
        ConsoleDevice::new(ConsoleOptions {
            ports: names.iter().map(|n| PortOptions::new(*n)).collect(),
            ..Default::default()
        })
        .err()
    };
    assert!(matches!(bad(&[]), Some(ConsoleError::PortCount { .. })));
    assert!(matches!(bad(&["a", "a"]), Some(ConsoleError::BadName(_))));
    assert!(matches!(bad(&[""]), Some(ConsoleError::BadName(_))));
    assert!(matches!(bad(&["a/b"]), Some(ConsoleError::BadName(_))));
    assert!(bad(&["com.redhat.spice.0", "org.qemu.guest_agent.0"]).is_none());
}

#[test]
fn a_console_port_gets_console_port_and_its_size() {
    let (dev, h) = ConsoleDevice::new(ConsoleOptions {
        ports: vec![PortOptions {
            console: true,
            ..PortOptions::new("org.spice-rs.console.0").opened()
        }],
        ..Default::default()
    })
    .unwrap();
    h[0].resize(132, 43);
    let mut drv = MockConsoleDriver::new(&dev);
    drv.probe();
    let evs: Vec<(u16, Vec<u8>)> = drv
        .control_log
        .iter()
        .map(|m| (m.event, m.payload.clone()))
        .collect();
    assert_eq!(
        evs,
        [
            (PORT_ADD, vec![]),
            (CONSOLE_PORT, vec![]),
            (RESIZE, vec![43, 0, 132, 0]), // rows, then cols, as Linux reads them
            (PORT_NAME, b"org.spice-rs.console.0\0".to_vec()),
            (PORT_OPEN, vec![]),
        ]
    );
    h[0].resize(80, 25);
    drv.pump();
    assert_eq!(
        drv.control_log.last().map(|m| (m.event, m.payload.clone())),
        Some((RESIZE, vec![25, 0, 80, 0]))
    );
}
