//! Cursor channel (reference sheet §6): SET_ACK, INIT, then SET/MOVE/HIDE/TRAIL from the
//! display model, with a per-client cursor cache (256 entries, INVAL_ONE on eviction).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::transport::{Reader, Writer};
use tokio::sync::mpsc;

use super::{
    ack_window, handle_base, read_msg, BaseAction, ChannelError, MsgWriter, Out, OUTBOX_LEN,
};
use crate::model::{CursorOp, CursorState, Taken};
use crate::session::ConnCtx;
use crate::wire::cursor::{
    flags, Cursor, CursorHeader, CursorHide, CursorInit, CursorInvalOne, CursorMove, CursorSet,
    CursorTrail,
};
use crate::wire::types::Point16;

/// Cursor cache entries per client (`CLIENT_CURSOR_CACHE_SIZE`).
pub const CURSOR_CACHE_SIZE: usize = 256;
/// Largest cursor-channel message accepted from the client (base messages only).
pub const MAX_CURSOR_MSG: u32 = 64;

/// Client-side cursor cache mirror: ids in least-recently-used order.
#[derive(Debug, Default)]
pub(crate) struct CursorCache {
    ids: VecDeque<u64>,
}

impl CursorCache {
    /// Returns (cursor to send, id evicted from the client cache).
    pub(crate) fn cursor_for(&mut self, st: &CursorState) -> (Cursor, Option<u64>) {
        let Some(shape) = &st.shape else {
            return (
                Cursor {
                    flags: flags::NONE,
                    header: None,
                    data: vec![],
                },
                None,
            );
        };
        let header = CursorHeader {
            unique: shape.id,
            cursor_type: shape.kind.wire(),
            width: shape.width,
            height: shape.height,
            hot_spot_x: shape.hot_x,
            hot_spot_y: shape.hot_y,
        };
        if shape.id != 0 {
            if let Some(pos) = self.ids.iter().position(|&i| i == shape.id) {
                self.ids.remove(pos);
                self.ids.push_back(shape.id);
                return (
                    Cursor {
                        flags: flags::FROM_CACHE,
                        header: Some(header),
                        data: vec![],
                    },
                    None,
                );
            }
            let evicted = if self.ids.len() >= CURSOR_CACHE_SIZE {
                self.ids.pop_front()
            } else {
                None
            };
            self.ids.push_back(shape.id);
            return (
                Cursor {
                    flags: flags::CACHE_ME,
                    header: Some(header),
                    data: shape.data.to_vec(),
                },
                evicted,
            );
        }
        (
            Cursor {
                flags: 0,
                header: Some(header),
                data: shape.data.to_vec(),
            },
            None,
        )
    }
}

async fn send_state<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut MsgWriter<W>,
    cache: &mut CursorCache,
    st: &CursorState,
    init: bool,
) -> std::io::Result<()> {
    let (cursor, evicted) = cache.cursor_for(st);
    if let Some(id) = evicted {
        w.send_msg(&CursorInvalOne { id }).await?;
    }
    let position = Point16 { x: st.x, y: st.y };
    if init {
        w.send_msg(&CursorInit {
            position,
            trail_length: st.trail_length,
            trail_frequency: st.trail_frequency,
            visible: st.visible.into(),
            cursor,
        })
        .await
    } else {
        w.send_msg(&CursorSet {
            position,
            visible: st.visible.into(),
            cursor,
        })
        .await
    }
}

pub(crate) async fn run(ctx: ConnCtx, mut rd: Reader, wr: Writer) -> Result<(), ChannelError> {
    let (out, mut out_rx) = mpsc::channel::<Out>(OUTBOX_LEN);
    let model = ctx.shared.model.clone();
    let feed = model.subscribe_cursor();
    let mut w = MsgWriter::new(wr, ctx.linked.header, Arc::default())
        .one_write_per_message(ctx.transport.tls);
    w.start_acks(ack_window(&ctx.session)).await?;
    let mut cache = CursorCache::default();
    let st = model.cursor_refresh(&feed);
    send_state(&mut w, &mut cache, &st, true).await?;
    w.flush().await?;
    let feed2 = feed.clone();
    let writer = async move {
        loop {
            let open = w.window_open();
            tokio::select! {
                biased;
                item = out_rx.recv() => match item {
                    Some(Out::Ack) => w.acked(),
                    Some(Out::Msg(t, b)) => w.send(t, &b).await?,
                    Some(_) => {}
                    None => break,
                },
                _ = feed2.notify.notified(), if open => {
                    match feed2.take() {
                        Taken::Refresh => {
                            let st = model.cursor_refresh(&feed2);
                            send_state(&mut w, &mut cache, &st, false).await?;
                        }
                        Taken::Items(ops) => {
                            for op in ops {
                                match op {
                                    CursorOp::Set(st) => send_state(&mut w, &mut cache, &st, false).await?,
                                    CursorOp::Move(x, y) => w.send_msg(&CursorMove { position: Point16 { x, y } }).await?,
                                    CursorOp::Hide => w.send_msg(&CursorHide {}).await?,
                                    CursorOp::Trail(length, frequency) => w.send_msg(&CursorTrail { length, frequency }).await?,
                                }
                            }
                        }
                    }
                }
            }
            w.flush().await?;
        }
        Ok::<(), ChannelError>(())
    };
    let reader = async {
        let mut synced = false;
        while let Some((t, body)) = read_msg(&mut rd, ctx.linked.header, MAX_CURSOR_MSG).await? {
            match handle_base(t, &body, true, &mut synced)? {
                BaseAction::NotBase => return Err(ChannelError::Unknown(t)),
                BaseAction::Ack => super::push(&out, Out::Ack)?,
                BaseAction::Pong(_) | BaseAction::Done => {}
            }
        }
        Ok::<(), ChannelError>(())
    };
    let r = tokio::select! {
        r = reader => r,
        r = writer => r,
    };
    feed.close();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CursorKind, CursorShape};

    fn state(id: u64) -> CursorState {
        CursorState {
            shape: Some(std::sync::Arc::new(
                CursorShape::new(id, CursorKind::Mono, 8, 1, (0, 0), vec![0, 0xff]).unwrap(),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn cursor_cache_sends_once_then_from_cache_and_evicts_the_oldest() {
        let mut c = CursorCache::default();
        let (cur, ev) = c.cursor_for(&state(1));
        assert_eq!((cur.flags, cur.data.len(), ev), (flags::CACHE_ME, 2, None));
        let (cur, _) = c.cursor_for(&state(1));
        assert_eq!((cur.flags, cur.data.len()), (flags::FROM_CACHE, 0));
        for id in 2..=CURSOR_CACHE_SIZE as u64 {
            assert_eq!(c.cursor_for(&state(id)).1, None);
        }
        let (_, ev) = c.cursor_for(&state(9999));
        assert_eq!(ev, Some(1));
        let (cur, _) = c.cursor_for(&CursorState::default());
        assert_eq!(cur.flags, flags::NONE);
    }
}
