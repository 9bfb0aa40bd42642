//! Inputs channel (reference sheet §5): keys as set-1 scancodes, mouse motion/position/buttons,
//! lock-key state both ways, MOUSE_MOTION_ACK after every 4 motion messages.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::transport::{Reader, Writer};
use tokio::sync::mpsc;

use super::{
    handle_base, msg, push, read_msg, BaseAction, ChannelError, MsgWriter, Out, OUTBOX_LEN,
};
use crate::input::{code_bytes, decode_scancodes, Buttons, InputSink, LockKeys, MouseButton};
use crate::session::ConnCtx;
use crate::wire::inputs::{InputsClientMessage, InputsInit, MouseMotionAck, MOTION_ACK_BUNCH};

/// Largest inputs message accepted.
pub const MAX_INPUTS_MSG: u32 = 256;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies one inputs message to the sink; returns true if it was a motion message (counted
/// for MOUSE_MOTION_ACK).
pub(crate) fn dispatch(sink: &dyn InputSink, m: InputsClientMessage) -> Result<bool, ChannelError> {
    let pressed = matches!(m, InputsClientMessage::MousePress(_));
    match m {
        InputsClientMessage::KeyDown(k) | InputsClientMessage::KeyUp(k) => {
            for e in decode_scancodes(&code_bytes(k.code)) {
                sink.key(e);
            }
        }
        InputsClientMessage::KeyScancode(b) => {
            for e in decode_scancodes(&b) {
                sink.key(e);
            }
        }
        InputsClientMessage::KeyModifiers(m) => sink.lock_keys(LockKeys(m.modifiers)),
        InputsClientMessage::MouseMotion(m) => {
            sink.mouse_motion(m.dx, m.dy, Buttons(m.buttons_state));
            return Ok(true);
        }
        InputsClientMessage::MousePosition(p) => {
            sink.mouse_position(p.x, p.y, p.display_id, Buttons(p.buttons_state));
            return Ok(true);
        }
        InputsClientMessage::MousePress(b) | InputsClientMessage::MouseRelease(b) => {
            let button = MouseButton::from_wire(b.button).ok_or(ChannelError::Malformed {
                msg_type: 0,
                err: crate::wire::WireError::BadValue {
                    what: "mouse button",
                    value: b.button.into(),
                },
            })?;
            sink.mouse_button(button, pressed, Buttons(b.buttons_state));
        }
    }
    Ok(false)
}

pub(crate) async fn run(ctx: ConnCtx, mut rd: Reader, wr: Writer) -> Result<(), ChannelError> {
    let (out, mut out_rx) = mpsc::channel::<Out>(OUTBOX_LEN);
    let mut w = MsgWriter::new(wr, ctx.linked.header, Arc::default())
        .one_write_per_message(ctx.transport.tls);
    w.send_msg(&InputsInit {
        keyboard_modifiers: ctx.shared.leds.load(Ordering::Relaxed),
    })
    .await?;
    w.flush().await?;
    *lock(&ctx.session.inputs_tx) = Some(out.clone());
    let writer = async move {
        while let Some(item) = out_rx.recv().await {
            if let Out::Msg(t, b) = item {
                w.send(t, &b).await?;
            }
            if out_rx.is_empty() {
                w.flush().await?;
            }
        }
        Ok::<(), ChannelError>(())
    };
    let reader = async {
        let sink = ctx.shared.input.clone();
        let mut motions: u32 = 0;
        let mut synced = false;
        while let Some((t, body)) = read_msg(&mut rd, ctx.linked.header, MAX_INPUTS_MSG).await? {
            if !matches!(
                handle_base(t, &body, false, &mut synced)?,
                BaseAction::NotBase
            ) {
                continue;
            }
            let m = InputsClientMessage::parse(t, &body).map_err(|err| match err {
                crate::wire::WireError::UnknownMessage { .. } => ChannelError::Unknown(t),
                err => ChannelError::Malformed { msg_type: t, err },
            })?;
            let motion = dispatch(sink.as_ref(), m)?;
            if motion {
                motions += 1;
                if motions % MOTION_ACK_BUNCH == 0 {
                    push(&out, msg(&MouseMotionAck {}))?;
                }
            }
        }
        Ok::<(), ChannelError>(())
    };
    let r = tokio::select! {
        r = reader => r,
        r = writer => r,
    };
    *lock(&ctx.session.inputs_tx) = None;
    r
}
