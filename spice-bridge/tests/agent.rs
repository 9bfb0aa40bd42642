//! The agent channel end to end in process: a scripted Spice client, the server, the
//! `AgentBridge` and a virtio-console VDI port driven by a mock Linux `virtio_console` driver
//! (the guest side writes and reads the raw VDI byte stream as spice-vdagentd does).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spice_bridge::agent::wire::{self, msg, MonitorConfig};
use spice_bridge::agent::{AgentBridge, AgentMouseInput, AgentOptions, MonitorsSink};
use spice_bridge::input::{Buttons, InputSink, MouseMode, NullInput};
use spice_bridge::link::TicketPolicy;
use spice_bridge::testing::ScriptedClient;
use spice_bridge::wire::decode_exact;
use spice_bridge::wire::main::MainInit;
use spice_bridge::{DisplayModel, Server, ServerConfig, ServerHandle};
use vdi_port::console::{ConsoleDevice, ConsoleOptions, PortOptions};
use vdi_port::testing::MockConsoleDriver;

const AGENT_START: u16 = 106;
const AGENT_DATA: u16 = 107;
const S_AGENT_DISCONNECTED: u16 = 108;
const S_AGENT_DATA: u16 = 109;
const S_AGENT_TOKEN: u16 = 110;
const S_AGENT_CONNECTED_TOKENS: u16 = 115;

/// A display that takes client monitors configs while `takes` is set (a QXL guest driver that
/// unmasked the interrupt).
#[derive(Default)]
struct Monitors(Mutex<Vec<Vec<MonitorConfig>>>, AtomicBool);

impl MonitorsSink for Monitors {
    fn takes_monitors(&self) -> bool {
        self.1.load(Ordering::Relaxed)
    }

    fn client_monitors(&self, m: &[MonitorConfig]) {
        self.0.lock().unwrap().push(m.to_vec());
    }
}

struct Rig {
    server: Arc<ServerHandle>,
    bridge: Arc<AgentBridge>,
    input: Arc<AgentMouseInput>,
    monitors: Arc<Monitors>,
}

async fn start(dev_port: vdi_port::console::PortHandle) -> Rig {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let monitors = Arc::new(Monitors::default());
    let bridge = AgentBridge::new(
        AgentOptions::default(),
        Some(monitors.clone() as Arc<dyn MonitorsSink>),
    );
    let input = Arc::new(AgentMouseInput::new(Arc::new(NullInput), bridge.clone()));
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ticket: TicketPolicy::Disabled,
        ..Default::default()
    };
    let server = Arc::new(
        Server::start(config, DisplayModel::new(), input.clone(), bridge.clone())
            .await
            .unwrap(),
    );
    tokio::spawn(bridge.clone().run(dev_port, server.clone()));
    Rig {
        server,
        bridge,
        input,
        monitors,
    }
}

/// Pumps the mock driver (the VMM's vhost-user thread would) until `cond` holds.
async fn pump_until(
    drv: &mut MockConsoleDriver<'_>,
    mut cond: impl FnMut(&mut MockConsoleDriver<'_>) -> bool,
) {
    let t = Instant::now();
    loop {
        drv.pump();
        if cond(drv) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "condition not reached"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Guest-side reader of the VDI stream: (port, message bytes) as whole messages.
#[derive(Default)]
struct GuestReader {
    bytes: Vec<u8>,
}

impl GuestReader {
    fn take_chunks(&mut self, drv: &mut MockConsoleDriver<'_>) -> Vec<(u32, Vec<u8>)> {
        self.bytes.extend(drv.read(1));
        let mut out = Vec::new();
        loop {
            if self.bytes.len() < 8 {
                return out;
            }
            let port = u32::from_le_bytes(self.bytes[0..4].try_into().unwrap());
            let size = u32::from_le_bytes(self.bytes[4..8].try_into().unwrap()) as usize;
            if self.bytes.len() < 8 + size {
                return out;
            }
            out.push((port, self.bytes[8..8 + size].to_vec()));
            self.bytes.drain(..8 + size);
        }
    }
}

async fn main_client(server: &ServerHandle) -> (ScriptedClient, MainInit) {
    let mut m = ScriptedClient::connect(server.local_addr(), 1, 0, "").await;
    let (t, b) = m.recv().await.unwrap();
    assert_eq!(t, 103);
    let init: MainInit = decode_exact(&b).unwrap();
    (m, init)
}

/// A main-channel client once the agent opened its port: AGENT_CONNECTED_TOKENS heard,
/// AGENT_START sent and handled (agent output goes only to such a client).
async fn started_client(rig: &Rig, drv: &mut MockConsoleDriver<'_>) -> ScriptedClient {
    let (mut m, _) = main_client(&rig.server).await;
    drv.open(1);
    m.recv_until(S_AGENT_CONNECTED_TOKENS).await.unwrap();
    m.send(AGENT_START, &u32::MAX.to_le_bytes()).await.unwrap();
    let t = Instant::now();
    while !rig.server.has_agent_client() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "AGENT_START handled in time"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    m
}

/// Receives client AGENT_DATA until `n` bytes arrived; returns the pieces.
async fn recv_agent_data(m: &mut ScriptedClient, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut total = 0;
    while total < n {
        let (t, b) = tokio::time::timeout(Duration::from_secs(10), m.recv())
            .await
            .expect("agent data in time")
            .unwrap();
        if t == S_AGENT_DATA {
            total += b.len();
            got.push(b);
        }
    }
    got
}

fn caps_msg(request: bool, bits: &[u32]) -> Vec<u8> {
    let mut w = 0u32;
    for b in bits {
        w |= 1 << b;
    }
    let mut d = u32::from(request).to_le_bytes().to_vec();
    d.extend(w.to_le_bytes());
    wire::message(msg::ANNOUNCE_CAPABILITIES, &d)
}

fn monitors_msg(w: u32, h: u32) -> Vec<u8> {
    let mut d = Vec::new();
    for v in [1u32, 3, h, w, 32, 0, 0] {
        d.extend(v.to_le_bytes());
    }
    d.extend([0u8; 4]); // VDAgentMonitorMM (PHYSICAL_SIZE flag)
    wire::message(msg::MONITORS_CONFIG, &d)
}

/// A one-port VDI port (the agent's) with the bridge and server running; drive it with
/// [`ready_driver`].
async fn agent_port() -> (ConsoleDevice, Rig) {
    let (dev, ports) = ConsoleDevice::new(ConsoleOptions {
        ports: vec![PortOptions::new("com.redhat.spice.0")],
        ..Default::default()
    })
    .unwrap();
    let rig = start(ports[0].clone()).await;
    (dev, rig)
}

/// The mock guest driver, probed, once the bridge has opened the host side (PORT_OPEN 1).
async fn ready_driver(dev: &ConsoleDevice) -> MockConsoleDriver<'_> {
    let mut drv = MockConsoleDriver::new(dev);
    drv.probe();
    pump_until(&mut drv, |d| d.ports.get(&1).is_some_and(|p| p.host_open)).await;
    drv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_channel_relays_both_ways_with_connect_disconnect_and_mouse() {
    let (dev, rig) = agent_port().await;
    let mut drv = ready_driver(&dev).await;

    let (mut m, init) = main_client(&rig.server).await;
    assert_eq!(init.agent_connected, 0);
    // The agent (spice-vdagentd) opens the port: the client hears AGENT_CONNECTED_TOKENS.
    drv.open(1);
    let msgs = m.recv_until(S_AGENT_CONNECTED_TOKENS).await.unwrap();
    assert_eq!(msgs.last().unwrap().1, 10u32.to_le_bytes());
    assert!(rig.bridge.is_connected());
    m.send(AGENT_START, &u32::MAX.to_le_bytes()).await.unwrap();

    // Client → agent: each AGENT_DATA is one chunk on port 1, unchanged. MONITORS_CONFIG goes
    // to the agent while the display cannot take it.
    let mut reader = GuestReader::default();
    let client_caps = caps_msg(true, &[0, 1, 5, 6]);
    let mon = monitors_msg(1280, 800);
    m.send(AGENT_DATA, &client_caps).await.unwrap();
    m.send(AGENT_DATA, &mon).await.unwrap();
    let mut chunks = Vec::new();
    pump_until(&mut drv, |d| {
        chunks.extend(reader.take_chunks(d));
        chunks.len() == 2
    })
    .await;
    assert_eq!(chunks, [(1, client_caps.clone()), (1, mon)]);
    assert!(rig.monitors.0.lock().unwrap().is_empty());
    // Once the display takes it (as spice-server intercepts for a QXL driver that unmasked the
    // interrupt), MONITORS_CONFIG reaches the display only; a message after it in the same
    // AGENT_DATA still reaches the agent.
    rig.monitors.1.store(true, Ordering::Relaxed);
    let mut both = monitors_msg(1440, 900);
    both.extend(&client_caps);
    m.send(AGENT_DATA, &both).await.unwrap();
    let mut chunks = Vec::new();
    pump_until(&mut drv, |d| {
        chunks.extend(reader.take_chunks(d));
        !chunks.is_empty()
    })
    .await;
    assert_eq!(chunks, [(1, client_caps)]);
    let got = rig.monitors.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0][0].width, got[0][0].height), (1440, 900));
    assert_eq!(rig.bridge.stats().monitors_configs, 1);

    // Agent → client: one chunk per message (as spice-vdagentd writes), any size; the client
    // gets AGENT_DATA of at most 2048 bytes, each from one message.
    let agent_caps = caps_msg(false, &[0, 1, 2, 5, 6]);
    let clip: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut clip_msg_data = 1u32.to_le_bytes().to_vec(); // VD_AGENT_CLIPBOARD_UTF8_TEXT
    clip_msg_data.extend(&clip);
    let clip_msg = wire::message(msg::CLIPBOARD, &clip_msg_data);
    let mut stream = wire::chunk(1, &agent_caps);
    stream.extend(wire::chunk(1, &clip_msg));
    drv.write(1, &stream);
    let pieces = recv_agent_data(&mut m, agent_caps.len() + clip_msg.len()).await;
    assert_eq!(
        pieces[0], agent_caps,
        "caps message alone in its AGENT_DATA"
    );
    assert!(pieces.iter().all(|p| p.len() <= 2048));
    assert_eq!(pieces[1..].concat(), clip_msg);
    assert_eq!(pieces.len(), 1 + clip_msg.len().div_ceil(2048));
    // The agent announced MOUSE_STATE: client mouse through the agent.
    assert!(rig.bridge.mouse_available());

    // Client-mode pointer events become MOUSE_STATE on the server port.
    rig.input.mouse_mode(MouseMode::Client);
    rig.input.mouse_position(640, 400, 0, Buttons(0));
    rig.input
        .mouse_button(spice_bridge::input::MouseButton::Left, true, Buttons(1));
    // Pending states are coalesced: the last one always arrives.
    let want = wire::mouse_state(640, 400, 2, 0);
    let mut chunks = Vec::new();
    pump_until(&mut drv, |d| {
        chunks.extend(reader.take_chunks(d));
        chunks
            .last()
            .is_some_and(|(_, c)| c[wire::MSG_HEADER_SIZE..] == want[..])
    })
    .await;
    assert!(chunks.iter().all(|(p, c)| *p == 2
        && c[..wire::MSG_HEADER_SIZE]
            == wire::message(msg::MOUSE_STATE, &want)[..wire::MSG_HEADER_SIZE]));

    // Tokens: 20 messages go through, the client sending only while it has credit (as
    // spice-gtk does); the credit comes back in fives once the chunks are in the port.
    let mut tokens = 10 - 3;
    let mut returned = Vec::new();
    for i in 0..20u8 {
        while tokens == 0 {
            let msgs = m.recv_until(S_AGENT_TOKEN).await.unwrap();
            let n = u32::from_le_bytes(msgs.last().unwrap().1[..4].try_into().unwrap());
            returned.push(n);
            tokens += n;
        }
        let b = wire::message(msg::CLIPBOARD, &[i; 100]);
        m.send(AGENT_DATA, &b).await.unwrap();
        tokens -= 1;
        pump_until(&mut drv, |_| true).await;
    }
    assert!(returned.iter().all(|&n| n == 5), "{returned:?}");
    assert!(returned.len() >= 2);
    let mut n = 0;
    pump_until(&mut drv, |d| {
        n += reader.take_chunks(d).len();
        n == 20
    })
    .await;

    // The agent closes (restart): AGENT_DISCONNECTED, and a message cut in half is dropped.
    let whole = wire::message(msg::CLIPBOARD, &[7; 5000]);
    let half = wire::chunk(1, &whole);
    drv.write(1, &half[..1000]);
    pump_until(&mut drv, |_| true).await;
    drv.close(1);
    let msgs = m.recv_until(S_AGENT_DISCONNECTED).await.unwrap();
    // Whatever of the half message reached the client is its start, before the disconnect.
    let seen: Vec<u8> = msgs
        .iter()
        .filter(|(t, _)| *t == S_AGENT_DATA)
        .flat_map(|(_, b)| b.clone())
        .collect();
    assert!(seen.len() <= 992 && whole.starts_with(&seen));
    assert!(!rig.bridge.is_connected() && !rig.bridge.mouse_available());
    drv.open(1);
    m.recv_until(S_AGENT_CONNECTED_TOKENS).await.unwrap();
    m.send(AGENT_START, &u32::MAX.to_le_bytes()).await.unwrap();
    let fresh = caps_msg(false, &[1]);
    drv.write(1, &wire::chunk(1, &fresh));
    assert_eq!(recv_agent_data(&mut m, fresh.len()).await, [fresh]);

    // A guest that breaks the framing: the host side closes (the agent reads EOF), the client
    // hears AGENT_DISCONNECTED; once the agent closes, the host side opens again.
    drv.write(1, &wire::chunk(7, b"garbage"));
    m.recv_until(S_AGENT_DISCONNECTED).await.unwrap();
    pump_until(&mut drv, |d| !d.ports[&1].host_open).await;
    assert_eq!(rig.bridge.stats().agent_protocol_errors, 1);
    drv.close(1);
    pump_until(&mut drv, |d| d.ports[&1].host_open).await;
    drv.open(1);
    m.recv_until(S_AGENT_CONNECTED_TOKENS).await.unwrap();

    // The client leaves: the agent gets CLIENT_DISCONNECTED on the server port.
    m.send(AGENT_START, &u32::MAX.to_le_bytes()).await.unwrap();
    m.close().await;
    let mut chunks = Vec::new();
    pump_until(&mut drv, |d| {
        chunks.extend(reader.take_chunks(d));
        !chunks.is_empty()
    })
    .await;
    assert_eq!(
        chunks.last().unwrap(),
        &(2, wire::message(msg::CLIENT_DISCONNECTED, &[]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_agent_data_drops_only_that_client() {
    let (dev, rig) = agent_port().await;
    let mut drv = ready_driver(&dev).await;
    drv.open(1);
    // The display takes MONITORS_CONFIG, so the server checks it (an agent checks its own).
    rig.monitors.1.store(true, Ordering::Relaxed);
    for bad in [
        {
            let mut b = wire::message(msg::CLIPBOARD, b"x");
            b[0] = 9; // protocol
            b
        },
        wire::message(0, b""),
        {
            // MONITORS_CONFIG claiming 3 monitors with data for one
            let mut b = monitors_msg(800, 600);
            b[20..24].copy_from_slice(&3u32.to_le_bytes());
            b
        },
    ] {
        let (mut m, init) = main_client(&rig.server).await;
        assert_eq!(init.agent_connected, 1);
        m.send(AGENT_START, &u32::MAX.to_le_bytes()).await.unwrap();
        m.send(AGENT_DATA, &bad).await.unwrap();
        assert!(m.closed_by_server().await);
    }
    assert_eq!(rig.bridge.stats().client_errors, 3);
    // A well-behaved client still works.
    let (mut m, _) = main_client(&rig.server).await;
    m.send(AGENT_START, &u32::MAX.to_le_bytes()).await.unwrap();
    let ok = caps_msg(true, &[0]);
    m.send(AGENT_DATA, &ok).await.unwrap();
    let mut reader = GuestReader::default();
    let mut chunks = Vec::new();
    pump_until(&mut drv, |d| {
        chunks.extend(reader.take_chunks(d));
        chunks.iter().any(|(p, c)| *p == 1 && *c == ok)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_data_while_the_agent_restarts_is_held_for_the_next_agent() {
    let (dev, rig) = agent_port().await;
    let mut drv = ready_driver(&dev).await;
    let mut m = started_client(&rig, &mut drv).await;

    // A 3,000-byte message in two AGENT_DATA; the agent leaves between them.
    let mut reader = GuestReader::default();
    let cut = wire::message(msg::CLIPBOARD, &[3; 2980]);
    m.send(AGENT_DATA, &cut[..2048]).await.unwrap();
    let mut chunks = Vec::new();
    pump_until(&mut drv, |d| {
        chunks.extend(reader.take_chunks(d));
        chunks.len() == 1
    })
    .await;
    drv.close(1);
    m.recv_until(S_AGENT_DISCONNECTED).await.unwrap();
    reader.bytes.clear();

    // The rest of the cut message (in flight) is for nobody; a whole new message sent while no
    // agent is there waits for the next one (a client that ignored AGENT_DISCONNECTED).
    m.send(AGENT_DATA, &cut[2048..]).await.unwrap();
    let fresh = wire::message(msg::CLIPBOARD_GRAB, &1u32.to_le_bytes());
    m.send(AGENT_DATA, &fresh).await.unwrap();
    let t = Instant::now();
    while rig.bridge.stats().client_held_no_agent < 1 {
        assert!(t.elapsed() < Duration::from_secs(10), "held in time");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let s = rig.bridge.stats();
    assert_eq!((s.client_dropped_no_agent, s.client_held_no_agent), (1, 1));
    pump_until(&mut drv, |_| true).await;
    assert!(drv.read(1).is_empty(), "nothing reaches a closed port");

    // The agent comes back: it gets exactly the held message.
    drv.open(1);
    m.recv_until(S_AGENT_CONNECTED_TOKENS).await.unwrap();
    let mut chunks = Vec::new();
    pump_until(&mut drv, |d| {
        chunks.extend(reader.take_chunks(d));
        !chunks.is_empty()
    })
    .await;
    assert_eq!(chunks, [(1, fresh)]);
}

/// spice-vdagentd writes a clipboard as one message in one chunk; 1 MiB is 512 AGENT_DATA
/// pieces, far more than the bridge's to-client backlog (64). Found with Debian's
/// spice-vdagent and remote-viewer (tests/bench/clipboard.sh): the bridge stopped reading the
/// port when its backlog was full, sent the backlog, then waited for a port notification that
/// had already been consumed, so the last part of the message stayed in the port for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_to_client_message_larger_than_the_backlog_arrives_whole() {
    let (dev, rig) = agent_port().await;
    let mut drv = ready_driver(&dev).await;
    let mut m = started_client(&rig, &mut drv).await;

    let mut data = 1u32.to_le_bytes().to_vec(); // VD_AGENT_CLIPBOARD_UTF8_TEXT
    data.extend((0..(1u32 << 20)).map(|i| (i % 253) as u8));
    let clip = wire::message(msg::CLIPBOARD, &data);
    let n = clip.len();
    let client = tokio::spawn(async move { recv_agent_data(&mut m, n).await });
    // The guest writes as the port takes it (the VMM's queue thread pumps the rings).
    drv.write(1, &wire::chunk(1, &clip));
    pump_until(&mut drv, |d| d.tx_backlog(1) == 0 && client.is_finished()).await;
    let pieces = client.await.unwrap();
    assert_eq!(pieces.concat(), clip);
    assert_eq!(pieces.len(), clip.len().div_ceil(2048));
}
