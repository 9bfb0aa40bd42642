//! A message relay between a vhost-user frontend and the `vhost` crate's request handler, which
//! evens out frontends' known deviations from what the crate accepts.
//!
//! Why: User-Mode Linux's `virtio_uml` always sends SET_MEM_TABLE with room for two regions
//! (72 bytes) even when it describes one; `vhost` 0.18 requires exactly `8 + 32 * n` bytes and
//! drops the connection (`backend_req_handler.rs`, `set_mem_table`). The relay trims the
//! padding; every other message passes unchanged, file descriptors included. It costs one hop
//! for control messages only: rings and data stay in shared memory, kicks and calls in
//! eventfds. Remove it once `vhost` accepts padded tables.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// vhost-user message header: request u32, flags u32, payload size u32.
const HEADER: usize = 12;
/// Most payload bytes relayed in one message (the protocol's largest, GET/SET_CONFIG, is
/// 12 + 256 bytes; the vhost crate refuses anything over 4 KiB).
const MAX_PAYLOAD: usize = 64 * 1024;
/// Most file descriptors attached to one message (SET_MEM_TABLE's 8 regions).
const MAX_FDS: usize = 8;
/// SET_MEM_TABLE request code.
const SET_MEM_TABLE: u32 = 5;
/// SET_MEM_TABLE: num_regions u32 + padding u32, then 32-byte regions.
const MEM_TABLE_HEADER: usize = 8;
const MEM_REGION: usize = 32;

/// One message with its descriptors.
struct Msg {
    bytes: Vec<u8>,
    fds: Vec<File>,
}

/// Reads one message; `None` at a clean end of stream (between messages).
fn read_msg(s: &UnixStream) -> io::Result<Option<Msg>> {
    let mut hdr = [0u8; HEADER];
    let mut raw = [-1 as RawFd; MAX_FDS];
    let mut iov = [libc::iovec {
        iov_base: hdr.as_mut_ptr().cast(),
        iov_len: HEADER,
    }];
    // SAFETY: the iovec points at `hdr`, which lives across the call and is HEADER bytes long,
    // so the kernel writes only into it; `raw` has room for MAX_FDS descriptors.
    let (n, nfds) = unsafe { s.recv_with_fds(&mut iov, &mut raw) }.map_err(io::Error::from)?;
    // SAFETY: the kernel just installed these `nfds` descriptors in this process for us; no
    // one else owns them, so each becomes a File that closes it.
    let fds: Vec<File> = raw[..nfds.min(MAX_FDS)]
        .iter()
        .map(|&fd| unsafe { File::from_raw_fd(fd) })
        .collect();
    if n == 0 {
        return Ok(None);
    }
    let mut r = s;
    r.read_exact(&mut hdr[n..])?;
    let size = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
    if size > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("vhost-user message of {size} bytes"),
        ));
    }
    let mut bytes = Vec::with_capacity(HEADER + size);
    bytes.extend_from_slice(&hdr);
    bytes.resize(HEADER + size, 0);
    r.read_exact(&mut bytes[HEADER..])?;
    Ok(Some(Msg { bytes, fds }))
}

fn write_msg(s: &UnixStream, m: &Msg) -> io::Result<()> {
    let raw: Vec<RawFd> = m.fds.iter().map(AsRawFd::as_raw_fd).collect();
    let sent = s
        .send_with_fds(&[&m.bytes[..]], &raw)
        .map_err(io::Error::from)?;
    // The descriptors went with the first byte; the rest (rare) follows plainly.
    let mut w = s;
    w.write_all(&m.bytes[sent..])
}

/// Trims a SET_MEM_TABLE payload padded beyond its `num_regions` (User-Mode Linux). Returns
/// whether the message changed.
fn trim_mem_table(m: &mut Msg) -> bool {
    let req = u32::from_le_bytes([m.bytes[0], m.bytes[1], m.bytes[2], m.bytes[3]]);
    if req != SET_MEM_TABLE || m.bytes.len() < HEADER + MEM_TABLE_HEADER {
        return false;
    }
    let p = HEADER;
    let regions = u32::from_le_bytes([m.bytes[p], m.bytes[p + 1], m.bytes[p + 2], m.bytes[p + 3]]);
    let want = (regions as usize)
        .checked_mul(MEM_REGION)
        .and_then(|r| r.checked_add(MEM_TABLE_HEADER));
    match want {
        Some(want) if HEADER + want < m.bytes.len() => {
            m.bytes.truncate(HEADER + want);
            m.bytes[8..12].copy_from_slice(&(want as u32).to_le_bytes());
            true
        }
        _ => false,
    }
}

fn pump(from: &UnixStream, to: &UnixStream, fix: bool) -> io::Result<()> {
    let mut logged = false;
    while let Some(mut m) = read_msg(from)? {
        if fix && trim_mem_table(&mut m) && !logged {
            logged = true;
            tracing::debug!("vhost-user: SET_MEM_TABLE padding trimmed (User-Mode Linux)");
        }
        write_msg(to, &m)?;
    }
    Ok(())
}

/// Relays between `frontend` and `backend` on two threads until either side ends; then shuts
/// both sockets down so the other thread and both peers see the end.
pub(super) fn spawn(frontend: UnixStream, backend: UnixStream) -> io::Result<Relay> {
    let (f2, b2) = (frontend.try_clone()?, backend.try_clone()?);
    let (f3, b3) = (frontend.try_clone()?, backend.try_clone()?);
    let up = std::thread::Builder::new()
        .name("vhost-user-relay".into())
        .spawn(move || {
            let r = pump(&frontend, &backend, true);
            let _ = frontend.shutdown(Shutdown::Both);
            let _ = backend.shutdown(Shutdown::Both);
            r
        })?;
    let down = std::thread::Builder::new()
        .name("vhost-user-relay".into())
        .spawn(move || {
            let r = pump(&b2, &f2, false);
            let _ = f2.shutdown(Shutdown::Both);
            let _ = b2.shutdown(Shutdown::Both);
            r
        })?;
    Ok(Relay {
        threads: vec![up, down],
        sockets: [f3, b3],
    })
}

/// The two relay threads of one connection.
pub(super) struct Relay {
    threads: Vec<JoinHandle<io::Result<()>>>,
    sockets: [UnixStream; 2],
}

impl Relay {
    /// Ends the relay (both sockets shut down) and joins its threads. Returns the frontend's
    /// protocol error, if the relay ended on one (a message too large, or a hang-up in the
    /// middle of a message).
    pub(super) fn finish(self) -> Option<io::Error> {
        for s in &self.sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
        let mut frontend_error = None;
        for (i, t) in self.threads.into_iter().enumerate() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let protocol = matches!(
                        e.kind(),
                        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                    );
                    if i == 0 && protocol {
                        frontend_error = Some(e);
                    } else {
                        tracing::debug!(error = %e, "vhost-user relay ended");
                    }
                }
                Err(_) => tracing::warn!("vhost-user relay thread panicked"),
            }
        }
        frontend_error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(req: u32, payload: &[u8]) -> Msg {
        let mut bytes = req.to_le_bytes().to_vec();
        bytes.extend(1u32.to_le_bytes());
        bytes.extend((payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(payload);
        Msg {
            bytes,
            fds: Vec::new(),
        }
    }

    #[test]
    fn uml_mem_table_padding_is_trimmed() {
        // One region, padded to two (72 bytes), as virtio_uml sends it.
        let mut p = 1u32.to_le_bytes().to_vec();
        p.extend([0u8; 4]);
        p.extend([0x11u8; 32]);
        p.extend([0u8; 32]);
        let mut m = msg(SET_MEM_TABLE, &p);
        assert!(trim_mem_table(&mut m));
        assert_eq!(m.bytes.len(), HEADER + 40);
        assert_eq!(&m.bytes[8..12], &40u32.to_le_bytes());
        assert_eq!(&m.bytes[HEADER + 8..], &[0x11u8; 32]);
        // Exact tables, other requests and lying counts stay as they are.
        let mut exact = msg(SET_MEM_TABLE, &m.bytes[HEADER..]);
        assert!(!trim_mem_table(&mut exact));
        let mut other = msg(24, &p);
        assert!(!trim_mem_table(&mut other));
        let mut lying = msg(SET_MEM_TABLE, &[9, 0, 0, 0, 0, 0, 0, 0]);
        assert!(!trim_mem_table(&mut lying));
    }

    #[test]
    fn messages_and_descriptors_pass_through() {
        let (fa, fb) = UnixStream::pair().unwrap();
        let (ba, bb) = UnixStream::pair().unwrap();
        let relay = spawn(fb, ba).unwrap();
        // Frontend → backend with a descriptor.
        let f = File::open("/dev/null").unwrap();
        let m = msg(13, &[1, 2, 3, 4, 5, 6, 7, 8]);
        fa.send_with_fds(&[&m.bytes[..]], &[f.as_raw_fd()]).unwrap();
        let got = read_msg(&bb).unwrap().unwrap();
        assert_eq!(got.bytes, m.bytes);
        assert_eq!(got.fds.len(), 1);
        // Backend → frontend.
        let r = msg(1, &[9; 8]);
        write_msg(&bb, &r).unwrap();
        assert_eq!(read_msg(&fa).unwrap().unwrap().bytes, r.bytes);
        // The frontend hangs up: the backend sees the end, the relay finishes.
        drop(fa);
        assert!(read_msg(&bb).unwrap().is_none());
        assert!(relay.finish().is_none());
        // A frontend announcing a huge message is a protocol error.
        let (fa, fb) = UnixStream::pair().unwrap();
        let (ba, bb) = UnixStream::pair().unwrap();
        let relay = spawn(fb, ba).unwrap();
        (&fa).write_all(&[0xff; 40]).unwrap();
        assert!(read_msg(&bb).unwrap().is_none());
        assert!(relay.finish().is_some());
    }
}
