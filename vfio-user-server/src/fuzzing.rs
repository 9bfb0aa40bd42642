//! The bodies of the fuzz targets in `vfio-user-server/fuzz` (one function per target, same
//! name), so libFuzzer and the stable replay test `tests/fuzz_corpus_replay.rs` run the same code
//! on every committed corpus input. Each returns normally on any input the code handles correctly
//! and panics (an assertion) otherwise.

use std::sync::Arc;

use zerocopy::FromBytes;

use crate::abi::{MsgHeader, FLAG_ERROR, FLAG_REPLY, HDR_LEN};
use crate::decode::{Header, Request, MAX_DATA_XFER, MAX_MSG};
use crate::function::{server_tables, BarBacking, FunctionBackend, Intx, PciFunction};
use crate::server::{error_reply, handle, Reply, Tables};
use crate::testing::MockFunction;

/// The header and request decoders never panic, and what they accept keeps their promises
/// (size within bounds, write data exactly `count` bytes, reads capped).
///
/// Input: command (u16 LE) then a body; the whole input is also decoded as a header.
pub fn decode(data: &[u8]) {
    if let Ok(h) = Header::decode(data) {
        assert!((HDR_LEN..=MAX_MSG).contains(&h.size));
        assert_eq!(h.body_len() + HDR_LEN, h.size);
    }
    let Some((c, body)) = data.split_at_checked(2) else {
        return;
    };
    let command = u16::from_le_bytes([c[0], c[1]]);
    match Request::decode(command, body) {
        Ok(Request::RegionWrite(a, d)) => {
            assert_eq!(d.len(), a.count.get() as usize);
            assert!(d.len() + 16 <= body.len());
        }
        Ok(Request::RegionRead(a)) => assert!(a.count.get() <= MAX_DATA_XFER),
        Ok(Request::Version { capabilities, .. }) => assert_eq!(capabilities.len() + 4, body.len()),
        Ok(_) => {}
        Err(e) => assert!(e.errno() > 0),
    }
}

/// A message stream from a hostile VMM, framed like the server loop frames the socket, each
/// request decoded and handled against a [`MockFunction`] (tables with a mappable BAR too).
/// Nothing panics, every reply is well formed (its size field is its length, it answers the
/// request's id and command), and the function's state stays within its memory.
///
/// Input: concatenated vfio-user messages; framing stops at the first bad header, as the
/// server drops such a connection.
pub fn serve(data: &[u8]) {
    let mut bars = MockFunction::default().bars();
    // A mappable BAR exercises the sparse-mmap capability path; its descriptor is never sent.
    bars[2] = BarBacking::Mappable {
        size: 1 << 20,
        fd: -1,
        offset: 0,
    };
    let (regions, irqs) = server_tables(&bars, true);
    let tables = Tables { regions, irqs };
    let intx = Arc::new(Intx::default());
    let mut backend = FunctionBackend::new(MockFunction::default(), intx.clone());
    let mut read_buf = Vec::new();
    let mut rest = data;
    while let Ok(hdr) = Header::decode(rest) {
        let Some((m, tail)) = rest.split_at_checked(hdr.size) else {
            break;
        };
        rest = tail;
        if hdr.is_reply() {
            continue;
        }
        let body = &m[HDR_LEN..];
        let reply = match handle(&tables, &mut backend, &hdr, body, Vec::new(), &mut read_buf) {
            Ok(Reply::None) => {
                assert!(hdr.no_reply(), "only posted writes go unanswered");
                continue;
            }
            Ok(Reply::Bytes(b)) | Ok(Reply::WithFd(b, _)) => b,
            Err(errno) => {
                assert!(errno > 0);
                error_reply(&hdr, errno)
            }
        };
        let (h, _) = MsgHeader::read_from_prefix(&reply).expect("reply has a header");
        assert_eq!(h.size.get() as usize, reply.len(), "reply size field");
        assert_eq!((h.id.get(), h.command.get()), (hdr.id, hdr.command));
        assert_ne!(h.flags.get() & FLAG_REPLY, 0);
        if h.flags.get() & FLAG_ERROR != 0 {
            assert_ne!(h.error.get(), 0);
        }
    }
    let f = backend.function();
    assert_eq!(f.bar0.len(), 64 << 10);
    assert_eq!(f.config.len(), 256);
    intx.set_level(false);
}
