//! Main channel (reference sheet §3): MAIN_INIT, NAME/UUID, CHANNELS_LIST, mouse modes, agent
//! messages with token flow control.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::transport::{Reader, Writer};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{
    handle_base, msg, push, read_msg, BaseAction, ChannelError, MsgWriter, Out, OUTBOX_LEN,
};
use crate::input::MouseMode as InputMouseMode;
use crate::session::{AgentDataToken, ConnCtx, ServerError, Session};
use crate::wire::main::{
    cap, mouse_mode, AgentConnected, AgentConnectedTokens, AgentDisconnected, AgentToken,
    ChannelsList, MainClientMessage, MainInit, MouseMode, MultiMediaTime, Name, Uuid,
    AGENT_DATA_MAX, SERVER_AGENT_DATA,
};

/// AGENT_DATA messages a client may send before tokens come back (`REDS_AGENT_WINDOW_SIZE`).
pub const AGENT_WINDOW: u32 = 10;
/// Tokens are returned in bunches of this many (`REDS_TOKENS_TO_SEND`).
pub const TOKENS_TO_SEND: u32 = 5;
/// Interval of the main-channel keep-alive PING (`PING_TEST_TIMEOUT_MS`).
pub const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);
/// Largest main-channel message accepted.
pub const MAX_MAIN_MSG: u32 = 4096;
/// Zeros the network test's third PING carries (spice-server's `NET_TEST_BYTES`).
pub const NET_TEST_BYTES: u32 = 1024 * 250;
/// A link under this many bits a second is "low bandwidth" (spice-server: 10 Mbit/s); JPEG
/// with `jpeg-wan-compression=auto` is for those.
pub const LOW_BANDWIDTH_BPS: u64 = 10 * 1024 * 1024;

/// The main channel's network test (sheet §2.4), as spice-server runs it right after MAIN_INIT:
/// PINGs with ids 1 (warm-up), 2 (latency: its round trip) and 3 ([`NET_TEST_BYTES`] of padding:
/// its round trip less the latency is the time the bytes took). The keep-alive PINGs go on
/// from id 4.
#[derive(Debug)]
pub(crate) struct NetTest {
    sent: std::time::Instant,
    latency: Option<std::time::Duration>,
}

/// What a network test found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NetTestResult {
    /// Round trip of the empty PING.
    pub latency: std::time::Duration,
    /// Bits a second of the padded PING (`u64::MAX` when it came back no later than the
    /// empty one: too fast to measure).
    pub bits_per_sec: u64,
}

impl NetTestResult {
    /// Under [`LOW_BANDWIDTH_BPS`].
    pub fn low_bandwidth(&self) -> bool {
        self.bits_per_sec < LOW_BANDWIDTH_BPS
    }
}

impl NetTest {
    /// The PING ids of the test, in the order they are sent.
    pub const IDS: [u32; 3] = [1, 2, 3];

    /// A test whose three PINGs were written at `sent`.
    pub fn new(sent: std::time::Instant) -> Self {
        NetTest {
            sent,
            latency: None,
        }
    }

    /// The PINGs, to write in this order.
    pub fn pings() -> [crate::wire::base::Ping; 3] {
        Self::IDS.map(|id| crate::wire::base::Ping {
            id,
            timestamp: 0,
            padding: if id == Self::IDS[2] {
                NET_TEST_BYTES
            } else {
                0
            },
        })
    }

    /// Takes the PONG of `id` received at `now`: the result once the last one is in. A PONG
    /// for the padded PING before the latency PING's (the client answers in order, so only a
    /// broken one does this) counts as no result: a fast link.
    pub fn pong(&mut self, id: u32, now: std::time::Instant) -> Option<NetTestResult> {
        let rtt = now.saturating_duration_since(self.sent);
        if id == Self::IDS[1] {
            self.latency = Some(rtt);
            return None;
        }
        if id != Self::IDS[2] {
            return None;
        }
        let latency = self.latency.unwrap_or(rtt);
        let took = rtt.saturating_sub(latency).as_micros();
        let bits_per_sec = match took {
            0 => u64::MAX,
            us => {
                u64::try_from(u128::from(NET_TEST_BYTES) * 8 * 1_000_000 / us).unwrap_or(u64::MAX)
            }
        };
        Some(NetTestResult {
            latency,
            bits_per_sec,
        })
    }
}

use super::mm_time;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tells the session's client that the guest agent (dis)connected. A new agent restarts the
/// client's agent window (AGENT_CONNECTED_TOKENS carries it), so tokens still held for the old
/// agent are not returned.
pub(crate) fn agent_state_changed(s: &Session, connected: bool) {
    let guard = lock(&s.main_tx);
    let Some(tx) = guard.as_ref() else {
        return;
    };
    let m = if !connected {
        msg(&AgentDisconnected { error_code: 0 })
    } else if s.agent_tokens_cap.load(Ordering::Relaxed) {
        let mut owed = lock(&s.agent_owed);
        let epoch = s.agent_epoch.fetch_add(1, Ordering::Relaxed) + 1;
        *owed = (epoch, 0);
        s.client_agent_tokens.store(AGENT_WINDOW, Ordering::Relaxed);
        msg(&AgentConnectedTokens {
            num_tokens: AGENT_WINDOW,
        })
    } else {
        msg(&AgentConnected {})
    };
    let _ = tx.try_send(m);
}

/// Gives one AGENT_DATA credit back to the client: tokens go out in batches of
/// [`TOKENS_TO_SEND`] (as spice-server does). Credits of an older agent epoch are dropped.
pub(crate) fn return_agent_token(s: &Session, epoch: u64) {
    // Lock order as in `agent_state_changed`: the outbox, then the owed count.
    let tx = lock(&s.main_tx);
    let mut owed = lock(&s.agent_owed);
    if owed.0 != epoch {
        return;
    }
    owed.1 += 1;
    if owed.1 < TOKENS_TO_SEND {
        return;
    }
    // On a full outbox (or no main channel) the credit stays owed and goes out with the next
    // batch. The credit is counted before the AGENT_TOKEN can leave: once it is in the outbox
    // the writer may send it and the client spend it at once, and its AGENT_DATA must not meet
    // the old count (with remote-viewer under load that dropped the client as a flow-control
    // violator in the middle of a 1 MiB paste).
    if let Some(tx) = tx.as_ref() {
        s.client_agent_tokens.fetch_add(owed.1, Ordering::Relaxed);
        if tx.try_send(msg(&AgentToken { num_tokens: owed.1 })).is_ok() {
            owed.1 = 0;
        } else {
            let n = owed.1;
            let _ = s
                .client_agent_tokens
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                    Some(t.saturating_sub(n))
                });
        }
    }
}

/// Tells the session's client which mouse modes are available and which one is in use
/// (MAIN_MOUSE_MODE), after the server's offer changed.
pub(crate) fn mouse_mode_changed(s: &Session, supported: u16, current: u16) {
    if let Some(tx) = lock(&s.main_tx).as_ref() {
        let _ = tx.try_send(msg(&MouseMode {
            supported_modes: supported,
            current_mode: current,
        }));
    }
}

/// Sends agent stream bytes to the session's client, one token per chunk.
pub(crate) fn send_agent_data(s: &Session, data: &[u8]) -> Result<(), ServerError> {
    if !s.agent_started.load(Ordering::Relaxed) {
        return Err(ServerError::NoAgentClient);
    }
    let chunks = data.chunks(AGENT_DATA_MAX).count() as u64;
    s.server_agent_tokens
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
            t.checked_sub(chunks)
        })
        .map_err(|_| ServerError::NoTokens)?;
    let guard = lock(&s.main_tx);
    let tx = guard.as_ref().ok_or(ServerError::NoAgentClient)?;
    for c in data.chunks(AGENT_DATA_MAX) {
        tx.try_send(Out::Msg(SERVER_AGENT_DATA, c.to_vec()))
            .map_err(|_| ServerError::Busy)?;
    }
    Ok(())
}

struct MainState {
    attached: bool,
}

fn handle(
    ctx: &ConnCtx,
    st: &mut MainState,
    out: &mpsc::Sender<Out>,
    m: MainClientMessage,
) -> Result<(), ChannelError> {
    let shared = &ctx.shared;
    match m {
        MainClientMessage::ClientInfo(_) => {}
        MainClientMessage::AttachChannels => {
            if st.attached {
                return Err(ChannelError::OutOfOrder("second ATTACH_CHANNELS".into()));
            }
            st.attached = true;
            push(out, msg(&ChannelsList(vec![(2, 0), (3, 0), (4, 0)])))?;
        }
        MainClientMessage::MouseModeRequest(r) => {
            let supported = shared.supported_mouse_modes();
            match r.mode {
                mouse_mode::SERVER | mouse_mode::CLIENT if supported & r.mode != 0 => {
                    shared.mouse_mode.store(r.mode, Ordering::Relaxed);
                    shared.input.mouse_mode(if r.mode == mouse_mode::CLIENT {
                        InputMouseMode::Client
                    } else {
                        InputMouseMode::Server
                    });
                    info!(peer = %ctx.peer, mode = r.mode, "mouse mode set");
                }
                mouse_mode::SERVER | mouse_mode::CLIENT => {
                    info!(peer = %ctx.peer, mode = r.mode, "mouse mode not allowed; unchanged");
                }
                other => {
                    return Err(ChannelError::OutOfOrder(format!(
                        "MOUSE_MODE_REQUEST for invalid mode {other}"
                    )))
                }
            }
            push(
                out,
                msg(&MouseMode {
                    supported_modes: supported,
                    current_mode: shared.mouse_mode.load(Ordering::Relaxed),
                }),
            )?;
        }
        MainClientMessage::AgentStart(a) => {
            // spice-gtk sends AGENT_START again after every AGENT_CONNECTED.
            ctx.session.agent_started.store(true, Ordering::Relaxed);
            ctx.session
                .server_agent_tokens
                .store(a.num_tokens.into(), Ordering::Relaxed);
            shared.agent.client_started();
        }
        MainClientMessage::AgentToken(t) => {
            if !ctx.session.agent_started.load(Ordering::Relaxed) {
                return Err(ChannelError::OutOfOrder(
                    "AGENT_TOKEN before AGENT_START".into(),
                ));
            }
            let _ = ctx.session.server_agent_tokens.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |v| {
                    Some(
                        v.saturating_add(t.num_tokens.into())
                            .min(u64::from(u32::MAX) * 2),
                    )
                },
            );
        }
        MainClientMessage::AgentData(d) => {
            if !ctx.session.agent_started.load(Ordering::Relaxed) {
                return Err(ChannelError::OutOfOrder(
                    "AGENT_DATA before AGENT_START".into(),
                ));
            }
            if ctx
                .session
                .client_agent_tokens
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1))
                .is_err()
            {
                return Err(ChannelError::OutOfOrder(
                    "AGENT_DATA without a token (flow control violated)".into(),
                ));
            }
            let token = AgentDataToken::new(&ctx.session);
            shared
                .agent
                .client_data(&d.0, token)
                .map_err(|e| ChannelError::OutOfOrder(format!("agent data refused: {e}")))?;
        }
    }
    Ok(())
}

pub(crate) async fn run(ctx: ConnCtx, mut rd: Reader, wr: Writer) -> Result<(), ChannelError> {
    let shared = ctx.shared.clone();
    let (out, mut out_rx) = mpsc::channel::<Out>(OUTBOX_LEN);
    ctx.session.agent_tokens_cap.store(
        ctx.linked.channel_caps.has(cap::AGENT_CONNECTED_TOKENS),
        Ordering::Relaxed,
    );
    let mut w = MsgWriter::new(wr, ctx.linked.header, Arc::default())
        .one_write_per_message(ctx.transport.tls);
    // MAIN_INIT must be first (sheet §3.3).
    w.send_msg(&MainInit {
        session_id: ctx.session.id,
        display_channels_hint: 1,
        supported_mouse_modes: shared.supported_mouse_modes().into(),
        current_mouse_mode: shared.mouse_mode.load(Ordering::Relaxed).into(),
        agent_connected: shared.agent_connected.load(Ordering::Relaxed).into(),
        agent_tokens: AGENT_WINDOW,
        multi_media_time: mm_time(),
        ram_hint: 0,
    })
    .await?;
    if ctx.linked.channel_caps.has(cap::NAME_AND_UUID) {
        if let Some(n) = &shared.config.name {
            w.send_msg(&Name(n.clone())).await?;
        }
        if let Some(u) = shared.config.uuid {
            w.send_msg(&Uuid { uuid: u }).await?;
        }
    }
    w.send_msg(&MultiMediaTime { time: mm_time() }).await?;
    for p in NetTest::pings() {
        w.send_msg(&p).await?;
    }
    w.flush().await?;
    let mut net_test = Some(NetTest::new(std::time::Instant::now()));
    *lock(&ctx.session.main_tx) = Some(out.clone());

    let writer = async move {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let mut ping_id = NetTest::IDS[2];
        loop {
            let item = tokio::select! {
                item = out_rx.recv() => item,
                _ = ping.tick() => {
                    ping_id = ping_id.wrapping_add(1);
                    Some(Out::Ping(ping_id))
                }
            };
            let Some(item) = item else { break };
            match item {
                Out::Msg(t, b) => w.send(t, &b).await?,
                Out::Ping(id) => {
                    w.send_msg(&crate::wire::base::Ping {
                        id,
                        timestamp: u64::from(mm_time()) * 1000,
                        padding: 0,
                    })
                    .await?
                }
                _ => {}
            }
            if out_rx.is_empty() {
                w.flush().await?;
            }
        }
        Ok::<(), ChannelError>(())
    };
    let reader = async {
        let mut st = MainState { attached: false };
        let mut synced = false;
        while let Some((t, body)) = read_msg(&mut rd, ctx.linked.header, MAX_MAIN_MSG).await? {
            match handle_base(t, &body, false, &mut synced)? {
                BaseAction::NotBase => {}
                BaseAction::Pong(id) => {
                    debug!(id, "main pong");
                    let result = net_test
                        .as_mut()
                        .and_then(|t| t.pong(id, std::time::Instant::now()));
                    if let Some(r) = result {
                        net_test = None;
                        ctx.session
                            .low_bandwidth
                            .store(r.low_bandwidth(), Ordering::Relaxed);
                        shared.stats.net_tests.fetch_add(1, Ordering::Relaxed);
                        if r.low_bandwidth() {
                            shared
                                .stats
                                .low_bandwidth_links
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        info!(
                            peer = %ctx.peer,
                            latency_ms = r.latency.as_secs_f64() * 1e3,
                            mbit_per_sec = r.bits_per_sec as f64 / (1024.0 * 1024.0),
                            low_bandwidth = r.low_bandwidth(),
                            "network test"
                        );
                    }
                    continue;
                }
                _ => continue,
            }
            let m = MainClientMessage::parse(t, &body).map_err(|err| match err {
                crate::wire::WireError::UnknownMessage { .. } => ChannelError::Unknown(t),
                err => ChannelError::Malformed { msg_type: t, err },
            })?;
            handle(&ctx, &mut st, &out, m)?;
        }
        Ok::<(), ChannelError>(())
    };
    let r = tokio::select! {
        r = reader => r,
        r = writer => r,
    };
    *lock(&ctx.session.main_tx) = None;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn net_test_rates_the_padded_ping_by_its_extra_round_trip() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = NetTest::new(t0);
        assert_eq!(t.pong(1, ms(5)), None, "warm-up");
        assert_eq!(t.pong(2, ms(10)), None, "latency");
        assert_eq!(
            t.pong(99, ms(11)),
            None,
            "a keep-alive id is not the test's"
        );
        // 256,000 bytes in 400 ms: 5.12 Mbit/s, a slow link
        let r = t.pong(3, ms(410)).unwrap();
        assert_eq!(r.latency, Duration::from_millis(10));
        assert_eq!(r.bits_per_sec, 5_120_000);
        assert!(r.low_bandwidth());
        // in 100 ms: 20.48 Mbit/s, fast
        let mut t = NetTest::new(t0);
        t.pong(2, ms(10));
        assert!(!t.pong(3, ms(110)).unwrap().low_bandwidth());
        // back no later than the empty one, or the empty one never answered: too fast to measure
        let mut t = NetTest::new(t0);
        t.pong(2, ms(10));
        assert_eq!(t.pong(3, ms(10)).unwrap().bits_per_sec, u64::MAX);
        assert_eq!(
            NetTest::new(t0).pong(3, ms(500)).unwrap().bits_per_sec,
            u64::MAX
        );
    }

    #[test]
    fn net_test_pings_are_two_empty_then_the_padded_one() {
        let p = NetTest::pings();
        let v: Vec<(u32, u32)> = p.iter().map(|p| (p.id, p.padding)).collect();
        assert_eq!(v, [(1, 0), (2, 0), (3, NET_TEST_BYTES)]);
    }
}
