//! virtio-console wire constants and the control-message layout (virtio 1.x, little-endian;
//! Linux `include/uapi/linux/virtio_console.h`; `../shared/reference/agent-and-vdiport.md` §1).

/// Virtio device id of a console.
pub const VIRTIO_ID_CONSOLE: u32 = 3;
/// Feature bit 1: `max_nr_ports` is valid and the control queues exist.
pub const VIRTIO_CONSOLE_F_MULTIPORT: u64 = 1 << 1;
/// Config space: cols u16, rows u16, max_nr_ports u32, emerg_wr u32.
pub const CONFIG_SIZE: usize = 12;
/// Config offset of `max_nr_ports`.
pub const CONFIG_MAX_NR_PORTS: usize = 4;
/// Config offset of `emerg_wr`.
pub const CONFIG_EMERG_WR: usize = 8;

/// Queue index of the control receiveq (device → driver).
pub const CONTROL_RX: usize = 2;
/// Queue index of the control transmitq (driver → device).
pub const CONTROL_TX: usize = 3;

/// Port id carried by DEVICE_READY ("no port").
pub const BAD_ID: u32 = 0xffff_ffff;
/// Size of a control message header.
pub const CONTROL_HEADER_SIZE: usize = 8;

/// Control event: the driver is ready (driver → device).
pub const DEVICE_READY: u16 = 0;
/// Control event: add port `id` (device → driver).
pub const PORT_ADD: u16 = 1;
/// Control event: remove port `id` (device → driver).
pub const PORT_REMOVE: u16 = 2;
/// Control event: port `id` is initialised (driver → device).
pub const PORT_READY: u16 = 3;
/// Control event: port `id` is an hvc console (device → driver).
pub const CONSOLE_PORT: u16 = 4;
/// Control event: console size (device → driver).
pub const RESIZE: u16 = 5;
/// Control event: the sender's side of port `id` opened (value 1) or closed (value 0).
pub const PORT_OPEN: u16 = 6;
/// Control event: the name of port `id` follows the header (device → driver).
pub const PORT_NAME: u16 = 7;

/// Receive queue index of port `id` (multiport numbering: port 0 uses 0/1, port n ≥ 1 uses
/// 2n+2 / 2n+3).
pub fn rx_queue(id: u32) -> Option<usize> {
    let id = usize::try_from(id).ok()?;
    if id == 0 {
        Some(0)
    } else {
        id.checked_mul(2)?.checked_add(2)
    }
}

/// The port whose data queue `index` is, and whether it is the port's transmitq.
/// `None` for the control queues.
pub fn queue_port(index: usize) -> Option<(u32, bool)> {
    match index {
        0 | 1 => Some((0, index == 1)),
        CONTROL_RX | CONTROL_TX => None,
        _ => Some((u32::try_from(index / 2 - 1).ok()?, index % 2 == 1)),
    }
}

/// One control message: the 8-byte header and, for PORT_NAME, the name bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMsg {
    /// Port id ([`BAD_ID`] for DEVICE_READY).
    pub id: u32,
    /// Event code.
    pub event: u16,
    /// Event value.
    pub value: u16,
    /// Bytes after the header (PORT_NAME's name).
    pub payload: Vec<u8>,
}

impl ControlMsg {
    /// A message without payload.
    pub fn new(id: u32, event: u16, value: u16) -> Self {
        ControlMsg {
            id,
            event,
            value,
            payload: Vec::new(),
        }
    }

    /// PORT_NAME for `id`: the name NUL-terminated, as QEMU sends it (Linux accepts both).
    pub fn port_name(id: u32, name: &str) -> Self {
        let mut payload = Vec::with_capacity(name.len() + 1);
        payload.extend_from_slice(name.as_bytes());
        payload.push(0);
        ControlMsg {
            id,
            event: PORT_NAME,
            value: 1,
            payload,
        }
    }

    /// RESIZE for console port `id`. The payload is rows then cols, the order the Linux driver
    /// reads (the spec text says cols first; Linux is the driver that runs).
    pub fn resize(id: u32, cols: u16, rows: u16) -> Self {
        let mut payload = rows.to_le_bytes().to_vec();
        payload.extend_from_slice(&cols.to_le_bytes());
        ControlMsg {
            id,
            event: RESIZE,
            value: 0,
            payload,
        }
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(CONTROL_HEADER_SIZE + self.payload.len());
        b.extend_from_slice(&self.id.to_le_bytes());
        b.extend_from_slice(&self.event.to_le_bytes());
        b.extend_from_slice(&self.value.to_le_bytes());
        b.extend_from_slice(&self.payload);
        b
    }

    /// Parses the header of a driver → device message (the driver sends no payload; any extra
    /// bytes are ignored). `None` if shorter than a header.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..CONTROL_HEADER_SIZE)?;
        Some(ControlMsg {
            id: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
            event: u16::from_le_bytes([h[4], h[5]]),
            value: u16::from_le_bytes([h[6], h[7]]),
            payload: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_numbering_follows_multiport() {
        assert_eq!(rx_queue(0), Some(0));
        assert_eq!(rx_queue(1), Some(4));
        assert_eq!(rx_queue(2), Some(6));
        assert_eq!(queue_port(4), Some((1, false)));
        assert_eq!(queue_port(5), Some((1, true)));
        assert_eq!(queue_port(7), Some((2, true)));
        assert_eq!(queue_port(1), Some((0, true)));
        assert_eq!(queue_port(2), None);
        assert_eq!(queue_port(3), None);
    }

    #[test]
    fn control_round_trip() {
        let m = ControlMsg::new(BAD_ID, DEVICE_READY, 1);
        assert_eq!(m.to_bytes(), [0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0]);
        assert_eq!(ControlMsg::parse(&m.to_bytes()), Some(m));
        assert_eq!(ControlMsg::parse(&[1, 2, 3]), None);
        let n = ControlMsg::port_name(1, "com.redhat.spice.0");
        assert_eq!(&n.to_bytes()[8..], b"com.redhat.spice.0\0");
    }
}
