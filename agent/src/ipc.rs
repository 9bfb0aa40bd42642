//! The Unix socket between `spice-agentd` (system) and `spice-agent` (session).
//!
//! A frame is `type u32 | size u32 | data[size]`, little-endian. Types below 0x1000 are
//! `VD_AGENT_*` messages relayed as they are on the port (their data, in the client's dialect:
//! the daemon also relays the client's ANNOUNCE_CAPABILITIES, so the session reads and writes the
//! clipboard messages as the client expects). Types from 0x1000 are this socket's own.
//!
//! Unlike spice-vdagent's udscs, the receiver bounds every frame before allocating
//! (CVE-2026-57965 was an unchecked size in udscs) and the framing is fixed little-endian.

use std::io::{self, Read, Write};

/// Session → daemon: the guest's monitors ([`GuestMonitor`] list), at start and after every
/// layout change. The daemon maps client pointer positions with it and opens the port once it
/// has one.
pub const LAYOUT: u32 = 0x1000;
/// Daemon → session: file transfer is disabled (no DATA will be accepted).
pub const FILE_XFER_DISABLED: u32 = 0x1001;

/// Size of a frame header.
pub const FRAME_HEADER: usize = 8;

/// Where `spice-agentd` listens by default.
pub const DEFAULT_SOCKET: &str = "/run/spice-agent/session.sock";

/// A frame read from the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Message type (`VD_AGENT_*` or one of this module's).
    pub type_: u32,
    /// Data.
    pub data: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpcError {
    /// The peer closed the socket at a frame boundary.
    #[error("peer closed the connection")]
    Closed,
    /// A frame larger than allowed.
    #[error("frame of {size} bytes (limit {max})")]
    TooLarge {
        /// Declared size.
        size: u32,
        /// Limit.
        max: u32,
    },
    /// The socket failed (or closed mid-frame).
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, type_: u32, data: &[u8]) -> io::Result<()> {
    let size = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    let mut head = [0u8; FRAME_HEADER];
    head[..4].copy_from_slice(&type_.to_le_bytes());
    head[4..].copy_from_slice(&size.to_le_bytes());
    w.write_all(&head)?;
    w.write_all(data)?;
    w.flush()
}

/// Reads one frame of at most `max` data bytes.
pub fn read_frame(r: &mut impl Read, max: u32) -> Result<Frame, IpcError> {
    let mut head = [0u8; FRAME_HEADER];
    // A clean EOF before the first header byte is a close; anywhere else it is an error.
    let mut got = 0;
    while got < FRAME_HEADER {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Err(IpcError::Closed),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let type_ = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if size > max {
        return Err(IpcError::TooLarge { size, max });
    }
    let mut data = Vec::new();
    r.take(u64::from(size)).read_to_end(&mut data)?;
    if data.len() != size as usize {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Frame { type_, data })
}

/// One guest monitor: where Spice display `display_id` is in the guest's desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestMonitor {
    /// Spice display id.
    pub display_id: u32,
    /// Left edge in the desktop.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Most monitors in a layout.
pub const MAX_LAYOUT: usize = 64;

/// A [`LAYOUT`] frame's data.
pub fn encode_layout(monitors: &[GuestMonitor]) -> Vec<u8> {
    let mut d = Vec::with_capacity(monitors.len() * 20);
    for m in monitors.iter().take(MAX_LAYOUT) {
        d.extend_from_slice(&m.display_id.to_le_bytes());
        d.extend_from_slice(&m.x.to_le_bytes());
        d.extend_from_slice(&m.y.to_le_bytes());
        d.extend_from_slice(&m.width.to_le_bytes());
        d.extend_from_slice(&m.height.to_le_bytes());
    }
    d
}

/// Decodes a [`LAYOUT`] frame; `None` if its size is not a whole number of entries (or too many).
pub fn parse_layout(data: &[u8]) -> Option<Vec<GuestMonitor>> {
    if data.len() % 20 != 0 || data.len() / 20 > MAX_LAYOUT {
        return None;
    }
    let w = |c: &[u8], o: usize| u32::from_le_bytes([c[o], c[o + 1], c[o + 2], c[o + 3]]);
    Some(
        data.chunks_exact(20)
            .map(|c| GuestMonitor {
                display_id: w(c, 0),
                x: w(c, 4) as i32,
                y: w(c, 8) as i32,
                width: w(c, 12),
                height: w(c, 16),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let mut buf = vec![];
        write_frame(&mut buf, 4, b"hello").unwrap();
        write_frame(&mut buf, LAYOUT, &[]).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r, 100).unwrap().data, b"hello");
        assert_eq!(read_frame(&mut r, 100).unwrap().type_, LAYOUT);
        assert!(matches!(read_frame(&mut r, 100), Err(IpcError::Closed)));
        let mut r = &buf[..];
        assert!(matches!(
            read_frame(&mut r, 4),
            Err(IpcError::TooLarge { size: 5, max: 4 })
        ));
        let mut r = &buf[..6];
        assert!(matches!(read_frame(&mut r, 100), Err(IpcError::Io(_))));
    }

    #[test]
    fn layout_round_trips() {
        let l = vec![
            GuestMonitor {
                display_id: 0,
                x: 0,
                y: 0,
                width: 1024,
                height: 768,
            },
            GuestMonitor {
                display_id: 1,
                x: 1024,
                y: -5,
                width: 800,
                height: 600,
            },
        ];
        assert_eq!(parse_layout(&encode_layout(&l)), Some(l));
        assert_eq!(parse_layout(&[0; 19]), None);
    }
}
