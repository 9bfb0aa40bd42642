//! Fuzz bodies (behind the `test-utils` feature), shared by the cargo-fuzz targets in `fuzz/`
//! and the corpus replay test (`tests/fuzz_corpus.rs`).

use crate::daemon::Core;
use crate::ipc;
use crate::protocol::{Dialect, Message, Reassembler};

/// Everything the host can send, as the agent reads it: byte 0 picks the split size of the
/// port stream; the rest is fed to the [`Reassembler`] in those pieces. Every whole message
/// is parsed in all four dialects; a message that parses must encode to bytes that parse back
/// to the same message (the agent's replies are built the same way). The same bytes are also
/// read as session-socket frames.
pub fn agent_messages(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).max(1);
    let mut r = Reassembler::new(64 * 1024);
    let mut out = Vec::new();
    for piece in rest.chunks(split) {
        if r.feed(piece, &mut out).is_err() {
            r.reset();
        }
    }
    for (_, m) in &out {
        for selection in [false, true] {
            for grab_serial in [false, true] {
                let d = Dialect {
                    selection,
                    grab_serial,
                };
                if let Ok(msg) = Message::parse(m.type_, &m.data, d) {
                    let again = Message::parse(msg.type_(), &msg.encode(d), d);
                    assert_eq!(again.as_ref(), Ok(&msg), "re-encoding changed the message");
                }
            }
        }
    }
    let mut frames = rest;
    while ipc::read_frame(&mut frames, 64 * 1024).is_ok() {}
}

/// The daemon's decisions under any sequence of events: byte 0 of each record picks the event
/// (port message on port 1 or 2, host up or down, session connect, frame, close), then a
/// length byte and that many bytes of message data. Nothing may panic, and the port's
/// open/close requests alternate.
pub fn daemon_core(data: &[u8]) {
    let mut core = Core::new(data.first().is_some_and(|b| b & 1 == 1));
    let mut rest = data;
    let mut open = false;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        let typ = u32::from(body.first().copied().unwrap_or(0) % 20);
        let id = u64::from(op >> 4);
        let actions = match op % 8 {
            0 | 1 => core.port_message(
                u32::from(op % 8) + 1,
                crate::protocol::RawMessage {
                    type_: typ,
                    opaque: 0,
                    data: body.get(1..).unwrap_or_default().to_vec(),
                },
            ),
            2 => core.host_connected(),
            3 => core.host_disconnected(),
            4 => core.session_connected(id),
            5 => {
                let frame = if body.first().is_some_and(|b| b & 1 == 1) {
                    ipc::Frame {
                        type_: ipc::LAYOUT,
                        data: body.get(1..).unwrap_or_default().to_vec(),
                    }
                } else {
                    ipc::Frame {
                        type_: typ,
                        data: body.get(1..).unwrap_or_default().to_vec(),
                    }
                };
                core.session_frame(id, frame)
            }
            _ => core.session_closed(id),
        };
        for a in actions {
            if let crate::daemon::Action::OpenPort(o) = a {
                assert_ne!(o, open, "OpenPort({o}) twice");
                open = o;
            }
        }
    }
}
