//! In-process tests with a scripted client: link stage, main channel, display (pixels compared
//! through a client-side canvas), cursor, inputs, agent, hostile and slow clients, reconnects.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spice_bridge::input::{
    AgentDataError, AgentDataToken, AgentSink, Buttons, InputSink, KeyEvent, MouseButton, MouseMode,
};
use spice_bridge::link::TicketPolicy;
use spice_bridge::model::{Image, Rect, SurfaceFormat};
use spice_bridge::server::{ImageCompression, ServerHandle};
use spice_bridge::testing::*;
use spice_bridge::wire::decode_exact;
use spice_bridge::wire::display::server_id as ds;
use spice_bridge::wire::main::{ChannelsList, MainInit, Name};
use spice_bridge::{DisplayModel, Server, ServerConfig};

#[derive(Default)]
struct Rec {
    events: Mutex<Vec<String>>,
}

impl InputSink for Rec {
    fn key(&self, e: KeyEvent) {
        self.events
            .lock()
            .unwrap()
            .push(format!("key {:#x} {}", e.scancode, e.pressed));
    }
    fn mouse_motion(&self, dx: i32, dy: i32, b: Buttons) {
        self.events
            .lock()
            .unwrap()
            .push(format!("motion {dx} {dy} {}", b.0));
    }
    fn mouse_position(&self, x: u32, y: u32, d: u8, b: Buttons) {
        self.events
            .lock()
            .unwrap()
            .push(format!("pos {x} {y} {d} {}", b.0));
    }
    fn mouse_button(&self, bt: MouseButton, p: bool, b: Buttons) {
        self.events
            .lock()
            .unwrap()
            .push(format!("button {bt:?} {p} {}", b.0));
    }
    fn mouse_mode(&self, mode: MouseMode) {
        self.events.lock().unwrap().push(format!("mode {mode:?}"));
    }
}

impl AgentSink for Rec {
    fn client_data(&self, d: &[u8], _token: AgentDataToken) -> Result<(), AgentDataError> {
        self.events
            .lock()
            .unwrap()
            .push(format!("agent {}", d.len()));
        Ok(())
    }
}

async fn start(
    model: DisplayModel,
    password: Option<&str>,
    compression: ImageCompression,
) -> (ServerHandle, Arc<Rec>) {
    let rec = Arc::new(Rec::default());
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ticket: match password {
            Some(p) => TicketPolicy::Password {
                password: p.into(),
                expires: None,
            },
            None => TicketPolicy::Disabled,
        },
        name: Some("test-vm".into()),
        uuid: Some([7; 16]),
        compression,
        ..Default::default()
    };
    let key = spice_bridge::link::TicketKey::from_private(test_private_key()).unwrap();
    let h = Server::start_with_key(config, key, model, rec.clone(), rec.clone())
        .await
        .unwrap();
    (h, rec)
}

fn test_private_key() -> rsa::RsaPrivateKey {
    use std::sync::OnceLock;
    static K: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    K.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap())
        .clone()
}

/// Links main, reads MAIN_INIT (+NAME/UUID/MM time), attaches; returns (client, session id).
async fn main_session(h: &ServerHandle, pw: &str) -> (ScriptedClient, u32) {
    let mut m = ScriptedClient::connect(h.local_addr(), 1, 0, pw).await;
    let (t, b) = m.recv().await.unwrap();
    assert_eq!(t, 103, "MAIN_INIT first");
    let init: MainInit = decode_exact(&b).unwrap();
    m.send(104, &[]).await.unwrap();
    let msgs = m.recv_until(104).await.unwrap();
    let (_, list) = msgs.last().unwrap();
    assert_eq!(
        decode_exact::<ChannelsList>(list).unwrap().0,
        vec![(2, 0), (3, 0), (4, 0)]
    );
    (m, init.session_id)
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "condition not reached"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn main_channel_init_name_uuid_channels_and_mouse_mode() {
    let (h, _) = start(DisplayModel::new(), Some("pw"), ImageCompression::Lz).await;
    let mut m = ScriptedClient::connect(h.local_addr(), 1, 0, "pw").await;
    let (t, b) = m.recv().await.unwrap();
    assert_eq!(t, 103);
    let init: MainInit = decode_exact(&b).unwrap();
    assert_ne!(init.session_id, 0);
    assert_eq!(init.supported_mouse_modes, 3);
    assert_eq!(init.agent_tokens, 10);
    let (t, b) = m.recv().await.unwrap();
    assert_eq!(
        (t, decode_exact::<Name>(&b).unwrap().0.as_str()),
        (113, "test-vm")
    );
    let (t, b) = m.recv().await.unwrap();
    assert_eq!((t, b), (114, vec![7; 16]));
    m.send(105, &2u16.to_le_bytes()).await.unwrap();
    let msgs = m.recv_until(105).await.unwrap();
    assert_eq!(msgs.last().unwrap().1, vec![3, 0, 2, 0]);
    m.send(104, &[]).await.unwrap();
    let msgs = m.recv_until(104).await.unwrap();
    assert_eq!(msgs.last().unwrap().1, vec![3, 0, 0, 0, 2, 0, 3, 0, 4, 0]);
    h.shutdown().await;
}

/// As spice-server: client mode is offered only while an absolute pointer is attached; when it
/// goes away in client mode the server falls back to server mode and tells client and sink.
#[tokio::test]
async fn client_mouse_mode_follows_the_tablet() {
    let (h, rec) = start(DisplayModel::new(), None, ImageCompression::Lz).await;
    let (mut m, _) = main_session(&h, "").await;
    m.send(105, &2u16.to_le_bytes()).await.unwrap();
    let msgs = m.recv_until(105).await.unwrap();
    assert_eq!(
        msgs.last().unwrap().1,
        vec![3, 0, 2, 0],
        "client mode granted"
    );
    assert_eq!(h.mouse_mode(), MouseMode::Client);

    h.set_client_mouse_available(false);
    let msgs = m.recv_until(105).await.unwrap();
    assert_eq!(
        msgs.last().unwrap().1,
        vec![1, 0, 1, 0],
        "tablet gone: server only"
    );
    assert_eq!(h.mouse_mode(), MouseMode::Server);
    m.send(105, &2u16.to_le_bytes()).await.unwrap();
    let msgs = m.recv_until(105).await.unwrap();
    assert_eq!(
        msgs.last().unwrap().1,
        vec![1, 0, 1, 0],
        "client mode refused"
    );

    h.set_client_mouse_available(true);
    let msgs = m.recv_until(105).await.unwrap();
    assert_eq!(msgs.last().unwrap().1, vec![3, 0, 1, 0], "offered again");
    m.send(105, &2u16.to_le_bytes()).await.unwrap();
    let msgs = m.recv_until(105).await.unwrap();
    assert_eq!(msgs.last().unwrap().1, vec![3, 0, 2, 0]);
    let ev = rec.events.lock().unwrap().clone();
    let modes: Vec<&String> = ev.iter().filter(|e| e.starts_with("mode")).collect();
    assert_eq!(modes, ["mode Client", "mode Server", "mode Client"]);
    h.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_refused_with_permission_denied() {
    let (h, _) = start(DisplayModel::new(), Some("right"), ImageCompression::Lz).await;
    let o = ScriptedClient::link(h.local_addr(), 1, 0, "wrong", spice_gtk_caps(1))
        .await
        .unwrap();
    assert_eq!(o.result, Some(7));
    assert!(o.client.is_none());
    assert_eq!(h.stats().links_refused, 1);
    assert!(!h.has_client());
    let o = ScriptedClient::link(h.local_addr(), 1, 0, "right", spice_gtk_caps(1))
        .await
        .unwrap();
    assert_eq!(o.result, Some(0));
    h.shutdown().await;
}

#[tokio::test]
async fn secondary_channels_need_the_session_id_and_a_known_type() {
    let (h, _) = start(DisplayModel::new(), None, ImageCompression::Lz).await;
    let (_m, sid) = main_session(&h, "").await;
    let o = ScriptedClient::link(h.local_addr(), 2, sid ^ 1, "", spice_gtk_caps(2))
        .await
        .unwrap();
    assert_eq!(o.result, Some(8), "BAD_CONNECTION_ID");
    let o = ScriptedClient::link(h.local_addr(), 5, sid, "", spice_gtk_caps(5))
        .await
        .unwrap();
    assert_eq!(o.result, Some(9), "CHANNEL_NOT_AVAILABLE");
    let o = ScriptedClient::link(h.local_addr(), 2, sid, "", spice_gtk_caps(2))
        .await
        .unwrap();
    assert_eq!(o.result, Some(0));
    h.shutdown().await;
}

async fn display_client(h: &ServerHandle, sid: u32) -> ScriptedClient {
    display_client_acks(h, sid).await.0
}

/// [`display_client`], also giving the ACK window its SET_ACK asked for.
async fn display_client_acks(h: &ServerHandle, sid: u32) -> (ScriptedClient, u32) {
    let mut d = ScriptedClient::connect(h.local_addr(), 2, sid, "").await;
    let (t, b) = d.recv().await.unwrap();
    assert_eq!(t, 3, "SET_ACK first");
    let window = u32::from_le_bytes(b[4..8].try_into().unwrap());
    // ACK_SYNC, then DISPLAY_INIT (1, 20 Mi pixels, 1, 3 Mi)
    d.send(1, &1u32.to_le_bytes()).await.unwrap();
    let mut init = vec![1u8];
    init.extend_from_slice(&20_971_520i64.to_le_bytes());
    init.push(1);
    init.extend_from_slice(&3_145_728i32.to_le_bytes());
    d.send(101, &init).await.unwrap();
    (d, window)
}

#[tokio::test]
async fn display_snapshot_and_live_draws_match_the_model_pixel_for_pixel() {
    for comp in [
        ImageCompression::Off,
        ImageCompression::Lz,
        ImageCompression::Lz4,
        ImageCompression::Glz,
    ] {
        let model = DisplayModel::new();
        scene_gradient(&model);
        let (h, _) = start(model.clone(), None, comp).await;
        let (_m, sid) = main_session(&h, "").await;
        let mut d = display_client(&h, sid).await;
        let mut canvas = ClientCanvas::default();
        let mut n = 0;
        read_to_mark(&mut d, &mut canvas, &mut n).await;
        assert_eq!(
            canvas.surface(0),
            model_surface_rgb(&model, 0),
            "{comp:?} snapshot"
        );
        // live: odd scene replaces the primary, then the off-screen scroll scene
        scene_odd(&model);
        read_to_mark(&mut d, &mut canvas, &mut n).await;
        assert_eq!(
            canvas.surface(0),
            model_surface_rgb(&model, 0),
            "{comp:?} odd"
        );
        model.destroy_surface(0).unwrap();
        scene_scroll_offscreen(&model);
        read_to_mark(&mut d, &mut canvas, &mut n).await;
        assert_eq!(
            canvas.surface(1),
            model_surface_rgb(&model, 1),
            "{comp:?} offscreen"
        );
        assert_eq!(
            canvas.surface(0),
            model_surface_rgb(&model, 0),
            "{comp:?} scroll"
        );
        // palettes were sent once each, then taken from the palette cache
        assert_eq!(canvas.image_types.get(&200).copied(), Some(27), "{comp:?}");
        // glyph images were cached after first use
        assert!(
            canvas.image_types.get(&103).copied().unwrap_or(0) > 1000,
            "{:?}",
            canvas.image_types
        );
        let want = match comp {
            ImageCompression::Off => 0,
            ImageCompression::Lz => 101,
            ImageCompression::Lz4 => 109,
            ImageCompression::Quic | ImageCompression::Auto | ImageCompression::AutoLz => 1,
            ImageCompression::Glz => 102,
        };
        assert!(
            canvas.image_types.get(&want).copied().unwrap_or(0) > 0,
            "{comp:?}: {:?}",
            canvas.image_types
        );
        h.shutdown().await;
    }
}

/// A 200x100 primary showing a many-colour, sharp-edged picture (neither LZ_PLT nor QUIC, so
/// GLZ with auto_glz), served with auto_glz, its main channel linked: (model, picture, server,
/// main channel, session id).
async fn glz_scene() -> (DisplayModel, Image, ServerHandle, ScriptedClient, u32) {
    let px: Vec<u32> = (0..200 * 100u32)
        .map(|i| ((i % 200) / 10 * 7919 + (i / 200) / 5 * 104_729) & 0xff_ffff)
        .collect();
    let img = Image::new(0, 200, 100, px).unwrap();
    let model = DisplayModel::new();
    model
        .create_surface(0, 200, 100, SurfaceFormat::Xrgb32)
        .unwrap();
    model
        .draw_copy(0, Rect::new(0, 0, 200, 100), &img, &[])
        .unwrap();
    let (h, _) = start(model.clone(), None, ImageCompression::Auto).await;
    let (m, sid) = main_session(&h, "").await;
    (model, img, h, m, sid)
}

/// GLZ goes only to a client that announced a GLZ window: with auto_glz, a client whose
/// DISPLAY_INIT carries window 0 (as spice-html5's does) gets LZ_RGB and never GLZ_RGB, while
/// one with spice-gtk's window gets GLZ_RGB; both see the model's pixels.
#[tokio::test]
async fn glz_only_to_clients_with_a_glz_window() {
    for window in [0i32, 3_145_728] {
        let (model, img, h, _m, sid) = glz_scene().await;
        let mut d = ScriptedClient::connect(h.local_addr(), 2, sid, "").await;
        let (t, _) = d.recv().await.unwrap();
        assert_eq!(t, 3, "SET_ACK first");
        d.send(1, &1u32.to_le_bytes()).await.unwrap();
        // spice-html5's DISPLAY_INIT is (1, 10 Mi, 0, 0)
        let mut init = vec![1u8];
        init.extend_from_slice(&10_485_760i64.to_le_bytes());
        init.push(u8::from(window != 0));
        init.extend_from_slice(&window.to_le_bytes());
        d.send(101, &init).await.unwrap();
        let mut canvas = ClientCanvas::default();
        let mut n = 0;
        // the snapshot, then the same picture drawn again live
        read_to_mark(&mut d, &mut canvas, &mut n).await;
        model
            .draw_copy(0, Rect::new(0, 0, 200, 100), &img, &[])
            .unwrap();
        model.mark();
        read_to_mark(&mut d, &mut canvas, &mut n).await;
        assert_eq!(canvas.surface(0), model_surface_rgb(&model, 0));
        let glz = canvas.image_types.get(&102).copied().unwrap_or(0);
        let lz = canvas.image_types.get(&101).copied().unwrap_or(0);
        if window == 0 {
            assert_eq!(
                (glz, h.stats().glz_images),
                (0, 0),
                "{:?}",
                canvas.image_types
            );
            assert!(lz >= 2, "{:?}", canvas.image_types);
        } else {
            assert_eq!(
                (glz, h.stats().glz_images),
                (2, 2),
                "{:?}",
                canvas.image_types
            );
            assert_eq!(lz, 0, "{:?}", canvas.image_types);
        }
        h.shutdown().await;
    }
}

#[tokio::test]
async fn slow_client_never_blocks_the_model_and_gets_a_full_refresh() {
    let model = DisplayModel::with_queue_limit(256 * 1024);
    model
        .create_surface(0, 320, 200, SurfaceFormat::Xrgb32)
        .unwrap();
    let (h, _) = start(model.clone(), None, ImageCompression::Off).await;
    let (_m, sid) = main_session(&h, "").await;
    let mut d = display_client(&h, sid).await;
    let mut canvas = ClientCanvas::default();
    let mut n = 0;
    read_to_mark(&mut d, &mut canvas, &mut n).await;
    // the client stops reading; the model keeps drawing full frames. If a model call waited
    // for the client this would hang, so it runs on a blocking thread under a hang detector.
    let frames: Vec<_> = (0..300u32).map(|i| pattern_image(0, 320, 200, i)).collect();
    let m2 = model.clone();
    let drawing = tokio::task::spawn_blocking(move || {
        for f in &frames {
            m2.draw_copy(0, Rect::new(0, 0, 320, 200), f, &[]).unwrap();
        }
    });
    tokio::time::timeout(Duration::from_secs(120), drawing)
        .await
        .expect("model calls must not wait for a client that does not read")
        .unwrap();
    assert!(model.stats().overflows >= 1, "queue should have overflowed");
    model
        .fill(0, Rect::new(10, 10, 5, 5), 0xabcdef, &[])
        .unwrap();
    model.mark();
    // now read until the client shows the model
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        read_to_mark(&mut d, &mut canvas, &mut n).await;
        if canvas.surface(0) == model_surface_rgb(&model, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "client never caught up");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn inputs_reach_the_sink_and_motion_is_acked_every_four() {
    let (h, rec) = start(DisplayModel::new(), None, ImageCompression::Lz).await;
    let (_m, sid) = main_session(&h, "").await;
    let mut i = ScriptedClient::connect(h.local_addr(), 3, sid, "").await;
    let (t, b) = i.recv().await.unwrap();
    assert_eq!((t, b), (101, vec![0, 0]), "INPUTS_INIT");
    i.send(101, &0x1eu32.to_le_bytes()).await.unwrap(); // 'a' down
    i.send(102, &0x9eu32.to_le_bytes()).await.unwrap(); // 'a' up
    i.send(101, &0x1de0u32.to_le_bytes()).await.unwrap(); // right ctrl down
    i.send(104, &[0xe0, 0x48, 0xe0, 0xc8]).await.unwrap(); // up arrow press+release
    for k in 0i32..8 {
        let mut b = k.to_le_bytes().to_vec();
        b.extend_from_slice(&(-1i32).to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        i.send(111, &b).await.unwrap();
    }
    let mut p = 100u32.to_le_bytes().to_vec();
    p.extend_from_slice(&50u32.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    p.push(0);
    i.send(112, &p).await.unwrap();
    i.send(113, &[1, 1, 0]).await.unwrap();
    i.send(114, &[1, 0, 0]).await.unwrap();
    i.send(113, &[5, 16, 0]).await.unwrap();
    let (t, _) = i.recv().await.unwrap();
    assert_eq!(t, 111);
    let (t, _) = i.recv().await.unwrap();
    assert_eq!(t, 111, "two acks for 8 motions");
    wait_for(|| rec.events.lock().unwrap().len() >= 17).await;
    let ev = rec.events.lock().unwrap().clone();
    assert_eq!(
        &ev[..5],
        &[
            "key 0x1e true",
            "key 0x1e false",
            "key 0xe01d true",
            "key 0xe048 true",
            "key 0xe048 false"
        ]
    );
    assert_eq!(ev[5], "motion 0 -1 0");
    assert_eq!(ev[13], "pos 100 50 0 0");
    assert_eq!(
        &ev[14..],
        &[
            "button Left true 1",
            "button Left false 0",
            "button WheelDown true 16"
        ]
    );
    h.set_keyboard_leds(spice_bridge::input::LockKeys(4));
    let (t, b) = i.recv().await.unwrap();
    assert_eq!((t, b), (102, vec![4, 0]));
    h.shutdown().await;
}

#[tokio::test]
async fn cursor_init_set_and_cache() {
    let model = DisplayModel::new();
    let (h, _) = start(model.clone(), None, ImageCompression::Lz).await;
    let (_m, sid) = main_session(&h, "").await;
    let mut c = ScriptedClient::connect(h.local_addr(), 4, sid, "").await;
    assert_eq!(c.recv().await.unwrap().0, 3);
    let (t, b) = c.recv().await.unwrap();
    assert_eq!(t, 101, "CURSOR_INIT");
    assert_eq!(&b[9..11], &1u16.to_le_bytes(), "no cursor yet: flags NONE");
    model.set_cursor(test_cursor());
    let (t, b) = c.recv().await.unwrap();
    assert_eq!(t, 103);
    assert_eq!(&b[5..7], &2u16.to_le_bytes(), "CACHE_ME");
    assert_eq!(b.len(), 5 + 2 + 17 + 32 * 32 * 4);
    model.move_cursor(10, 20);
    assert_eq!(c.recv().await.unwrap(), (104, vec![10, 0, 20, 0]));
    model.set_cursor(test_cursor());
    let (t, b) = c.recv().await.unwrap();
    assert_eq!(t, 103);
    assert_eq!(&b[5..7], &4u16.to_le_bytes(), "FROM_CACHE");
    assert_eq!(b.len(), 5 + 2 + 17);
    model.hide_cursor();
    assert_eq!(c.recv().await.unwrap().0, 105);
    model.set_cursor_trail(3, 4);
    assert_eq!(c.recv().await.unwrap(), (106, vec![3, 0, 4, 0]));
    h.shutdown().await;
}

#[tokio::test]
async fn agent_data_flows_with_tokens() {
    let (h, rec) = start(DisplayModel::new(), None, ImageCompression::Lz).await;
    let (mut m, _) = main_session(&h, "").await;
    assert!(h.send_agent_data(&[1; 10]).is_err(), "no AGENT_START yet");
    m.send(106, &u32::MAX.to_le_bytes()).await.unwrap();
    for _ in 0..5 {
        m.send(107, &[9; 100]).await.unwrap();
    }
    let msgs = m.recv_until(110).await.unwrap();
    assert_eq!(msgs.last().unwrap().1, 5u32.to_le_bytes().to_vec());
    wait_for(|| rec.events.lock().unwrap().len() == 5).await;
    h.send_agent_data(&[3; 5000]).unwrap();
    let mut sizes = vec![];
    for _ in 0..3 {
        let (t, b) = m.recv().await.unwrap();
        assert_eq!(t, 109);
        sizes.push(b.len());
    }
    assert_eq!(sizes, vec![2048, 2048, 904]);
    // AGENT_DATA before AGENT_START is out of order and closes the connection
    drop(m);
    let (mut m, _) = main_session(&h, "").await;
    m.send(107, &[1]).await.unwrap();
    assert!(m.closed_by_server().await);
    h.shutdown().await;
}

#[tokio::test]
async fn hostile_messages_close_only_that_connection() {
    let (h, _) = start(DisplayModel::new(), None, ImageCompression::Lz).await;
    let (mut m, sid) = main_session(&h, "").await;
    // oversized: header announcing 1 GiB on the inputs channel, no body sent
    let mut i = ScriptedClient::connect(h.local_addr(), 3, sid, "").await;
    i.recv().await.unwrap();
    i.send_header_only(111, 1 << 30).await.unwrap();
    assert!(i.closed_by_server().await);
    // unknown message type
    let mut i = ScriptedClient::connect(h.local_addr(), 3, sid, "").await;
    i.recv().await.unwrap();
    i.send(999, &[]).await.unwrap();
    assert!(i.closed_by_server().await);
    // truncated body
    let mut i = ScriptedClient::connect(h.local_addr(), 3, sid, "").await;
    i.recv().await.unwrap();
    i.send(111, &[1, 2, 3]).await.unwrap();
    assert!(i.closed_by_server().await);
    // display message before DISPLAY_INIT
    let mut d = ScriptedClient::connect(h.local_addr(), 2, sid, "").await;
    d.recv().await.unwrap();
    d.send(103, &[6]).await.unwrap();
    assert!(d.closed_by_server().await);
    // ACK without SET_ACK on main
    assert_eq!(h.stats().protocol_errors, 4);
    // the main channel is still fine
    m.send(105, &1u16.to_le_bytes()).await.unwrap();
    assert_eq!(m.recv_until(105).await.unwrap().last().unwrap().0, 105);
    m.send(2, &[]).await.unwrap();
    assert!(m.closed_by_server().await);
    h.shutdown().await;
}

#[tokio::test]
async fn garbage_link_gets_an_error_reply() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (h, _) = start(DisplayModel::new(), None, ImageCompression::Lz).await;
    let mut s = tokio::net::TcpStream::connect(h.local_addr())
        .await
        .unwrap();
    // ("GET " would start a WebSocket upgrade)
    s.write_all(b"PUT / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut b = vec![0u8; 194];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b[16..20], &2u32.to_le_bytes(), "INVALID_MAGIC");
    h.shutdown().await;
}

#[tokio::test]
async fn new_client_replaces_old_and_twenty_reconnects_work() {
    let model = DisplayModel::new();
    scene_odd(&model);
    let (h, _) = start(model.clone(), None, ImageCompression::Lz).await;
    let (mut old, _) = main_session(&h, "").await;
    let (_new, sid) = main_session(&h, "").await;
    assert!(old.closed_by_server().await, "old client dropped");
    assert_eq!(h.stats().sessions_replaced, 1);
    drop(_new);
    let _ = sid;
    for _ in 0..20 {
        let (m, sid) = main_session(&h, "").await;
        let mut d = display_client(&h, sid).await;
        let mut canvas = ClientCanvas::default();
        let mut n = 0;
        read_to_mark(&mut d, &mut canvas, &mut n).await;
        assert_eq!(canvas.surface(0), model_surface_rgb(&model, 0));
        d.close().await;
        m.close().await;
    }
    wait_for(|| !h.has_client()).await;
    h.shutdown().await;
}

#[tokio::test]
async fn full_data_header_when_the_client_lacks_mini_header() {
    let (h, _) = start(DisplayModel::new(), None, ImageCompression::Lz).await;
    let caps = (
        spice_bridge::wire::types::Caps(vec![0x3]),
        spice_bridge::wire::types::Caps(vec![]),
    );
    let o = ScriptedClient::link(h.local_addr(), 1, 0, "", caps)
        .await
        .unwrap();
    let mut m = o.client.expect("linked");
    let (t, b) = m.recv().await.unwrap();
    assert_eq!((t, b.len()), (103, 32), "MAIN_INIT in a full header");
    m.send(104, &[]).await.unwrap();
    assert_eq!(m.recv_until(104).await.unwrap().last().unwrap().0, 104);
    h.shutdown().await;
}

#[tokio::test]
async fn monitors_config_and_reset_reach_the_client() {
    use spice_bridge::model::Monitor;
    use spice_bridge::wire::display::MonitorsConfig;
    let model = DisplayModel::new();
    scene_odd(&model);
    let (h, _) = start(model.clone(), None, ImageCompression::Lz).await;
    let (_m, sid) = main_session(&h, "").await;
    let mut d = display_client(&h, sid).await;
    let msgs = d.recv_until(ds::MARK).await.unwrap();
    let mc = msgs
        .iter()
        .find(|(t, _)| *t == ds::MONITORS_CONFIG)
        .expect("MONITORS_CONFIG after SURFACE_CREATE");
    let mc: MonitorsConfig = decode_exact(&mc.1).unwrap();
    assert_eq!(
        (mc.heads.len(), mc.heads[0].width, mc.heads[0].height),
        (1, 333, 211)
    );
    let mons = [
        Monitor {
            id: 0,
            x: 0,
            y: 0,
            width: 200,
            height: 211,
        },
        Monitor {
            id: 1,
            x: 200,
            y: 0,
            width: 133,
            height: 211,
        },
    ];
    model.set_monitors(2, &mons).unwrap();
    let (t, b) = d.recv().await.unwrap();
    assert_eq!(t, ds::MONITORS_CONFIG);
    let mc: MonitorsConfig = decode_exact(&b).unwrap();
    assert_eq!(mc.max_allowed, 2);
    assert_eq!(
        mc.heads.iter().map(|h| (h.x, h.width)).collect::<Vec<_>>(),
        vec![(0, 200), (200, 133)]
    );
    model.reset();
    let (t, b) = d.recv().await.unwrap();
    assert_eq!((t, b), (ds::SURFACE_DESTROY, vec![0, 0, 0, 0]));
    assert_eq!(d.recv().await.unwrap().0, ds::RESET);
    h.shutdown().await;
}

#[tokio::test]
async fn agent_connect_and_disconnect_are_announced() {
    let (h, _) = start(DisplayModel::new(), None, ImageCompression::Lz).await;
    let (mut m, _) = main_session(&h, "").await;
    h.set_agent_connected(true);
    let msgs = m.recv_until(115).await.unwrap();
    assert_eq!(
        msgs.last().unwrap().1,
        10u32.to_le_bytes().to_vec(),
        "AGENT_CONNECTED_TOKENS"
    );
    h.set_agent_connected(false);
    let msgs = m.recv_until(108).await.unwrap();
    assert_eq!(msgs.last().unwrap().1, vec![0; 4], "AGENT_DISCONNECTED");
    // a new client sees agent_connected in MAIN_INIT
    h.set_agent_connected(true);
    let mut m2 = ScriptedClient::connect(h.local_addr(), 1, 0, "").await;
    let (t, b) = m2.recv().await.unwrap();
    assert_eq!(t, 103);
    assert_eq!(decode_exact::<MainInit>(&b).unwrap().agent_connected, 1);
    h.shutdown().await;
}

#[tokio::test]
async fn set_password_keeps_fails_or_disconnects_the_connected_client() {
    use spice_bridge::server::{PasswordError, WhenConnected};
    let (h, _) = start(DisplayModel::new(), None, ImageCompression::Lz).await;
    let (mut client, _) = main_session(&h, "").await;
    assert_eq!(
        h.set_password("pw", WhenConnected::Fail),
        Err(PasswordError::ClientConnected)
    );
    h.set_password("pw", WhenConnected::Keep).unwrap();
    assert!(h.has_client(), "keep: the client stays");
    h.set_password("pw2", WhenConnected::Disconnect).unwrap();
    assert!(
        client.closed_by_server().await,
        "disconnect: the client goes"
    );
    // the new password links, the old one does not
    let (_c, _) = main_session(&h, "pw2").await;
    let before = h.stats();
    let r = ScriptedClient::link(h.local_addr(), 1, 0, "pw", spice_gtk_caps(1))
        .await
        .unwrap();
    assert_eq!(r.result, Some(7), "old password: PERMISSION_DENIED");
    assert_eq!(h.stats().links_refused, before.links_refused + 1);
    assert_eq!(
        h.set_password("a\0b", WhenConnected::Keep),
        Err(PasswordError::Nul)
    );
    h.shutdown().await;
}

/// Issue 11 item 1: a full-frame picture that repeats the previous one shifted (a scroll) goes
/// to the client as a COPY_BITS plus the new strip, and the client's picture is still exact.
#[tokio::test]
async fn a_scrolled_full_frame_goes_as_copy_bits_and_the_new_strip() {
    let (w, h) = (800u32, 600u32);
    let page = |first: u32| {
        let px = (0..h)
            .flat_map(|y| {
                let line = first + y;
                (0..w).map(move |x| {
                    if line % 9 == 4 {
                        0x00ff_ffff
                    } else {
                        pattern(x, line, 7)
                    }
                })
            })
            .collect();
        spice_bridge::model::Image::new(0, w, h, px).unwrap()
    };
    let model = DisplayModel::new();
    model
        .create_surface(0, w, h, SurfaceFormat::Xrgb32)
        .unwrap();
    let full = Rect::new(0, 0, w as i32, h as i32);
    model.draw_copy(0, full, &page(0), &[]).unwrap();
    model.mark();
    let (hd, _) = start(model.clone(), None, ImageCompression::Lz).await;
    let (_m, sid) = main_session(&hd, "").await;
    let mut d = display_client(&hd, sid).await;
    let mut canvas = ClientCanvas::default();
    let mut n = 0;
    read_to_mark(&mut d, &mut canvas, &mut n).await;
    let first = hd.stats().display_bytes;
    let mut kinds = Vec::new();
    for step in 1..=5u32 {
        model.draw_copy(0, full, &page(step * 24), &[]).unwrap();
        model.mark();
        kinds.extend(read_to_mark(&mut d, &mut canvas, &mut n).await);
        assert_eq!(
            canvas.surface(0),
            model_surface_rgb(&model, 0),
            "scroll step {step}"
        );
    }
    let scrolled = hd.stats().display_bytes - first;
    assert_eq!(model.stats().moves, 5);
    assert_eq!(
        kinds.iter().filter(|&&t| t == ds::COPY_BITS).count(),
        5,
        "{kinds:?}"
    );
    // 24 new rows of 600 per step: far less than one whole frame (the first one, LZ)
    eprintln!("first frame {first} bytes, five scrolls {scrolled} bytes");
    assert!(scrolled * 3 < first, "{scrolled} vs {first}");
    hd.shutdown().await;
}

/// Serves `model` with `config`, links main and display channels as spice-gtk does and reads
/// the first picture: (server, main, display, the client's canvas, display messages read).
async fn display_session(
    model: &DisplayModel,
    config: ServerConfig,
) -> (
    ServerHandle,
    ScriptedClient,
    ScriptedClient,
    ClientCanvas,
    u32,
) {
    let rec = Arc::new(Rec::default());
    let h = Server::start(config, model.clone(), rec.clone(), rec)
        .await
        .unwrap();
    let (m, sid) = main_session(&h, "").await;
    let mut d = display_client(&h, sid).await;
    let mut canvas = ClientCanvas::default();
    let mut n = 0;
    read_to_mark(&mut d, &mut canvas, &mut n).await;
    (h, m, d, canvas, n)
}

/// A blank `w` x `h` primary served with `streaming-video=filter` and streams ending after
/// `idle_ms` without a frame, with main and display linked: (model, server, main, display,
/// canvas, display messages read).
async fn stream_session(
    w: u32,
    h: u32,
    idle_ms: u64,
) -> (
    DisplayModel,
    ServerHandle,
    ScriptedClient,
    ScriptedClient,
    ClientCanvas,
    u32,
) {
    let model = DisplayModel::new();
    model
        .create_surface(0, w, h, SurfaceFormat::Xrgb32)
        .unwrap();
    model.mark();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        streaming_video: spice_bridge::server::StreamingVideo::Filter,
        stream_idle_timeout: Duration::from_millis(idle_ms),
        ..Default::default()
    };
    let (hd, m, d, canvas, n) = display_session(&model, config).await;
    (model, hd, m, d, canvas, n)
}

/// Ends a video frame: MARK, the client reads up to it, then 40 ms (video rate).
async fn next_frame(
    model: &DisplayModel,
    d: &mut ScriptedClient,
    canvas: &mut ClientCanvas,
    n: &mut u32,
) {
    model.mark();
    read_to_mark(d, canvas, n).await;
    tokio::time::sleep(Duration::from_millis(40)).await;
}

/// Reads until `destroys` streams were destroyed and the client shows the model's primary
/// exactly (the lossless resends).
async fn streams_end_exact(
    model: &DisplayModel,
    d: &mut ScriptedClient,
    canvas: &mut ClientCanvas,
    destroys: usize,
) {
    let want = model_surface_rgb(model, 0).unwrap();
    read_until(d, canvas, "stream destroys and the lossless frames", |c| {
        c.stream_messages[2] == destroys && c.surface(0).unwrap() == want
    })
    .await;
}

/// Applies display messages to `canvas` until `done` holds; fails naming `what` after 10 s.
async fn read_until(
    d: &mut ScriptedClient,
    canvas: &mut ClientCanvas,
    what: &str,
    done: impl Fn(&ClientCanvas) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(canvas) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (t, b) = tokio::time::timeout(left, d.recv())
            .await
            .unwrap_or_else(|_| panic!("{what} within 10 s"))
            .unwrap();
        canvas.apply(t, &b);
    }
}

/// Issue 11, video streams: a photo-like area redrawn every 40 ms becomes an MJPEG stream at
/// the fifth frame (the first four go as images), each later frame is one STREAM_DATA that decodes
/// close to the guest's picture (lossy), and when the frames stop the stream is destroyed and
/// the last frame resent losslessly: the client ends exactly on the model's picture, having
/// received fewer bytes than the same frames sent losslessly.
#[tokio::test]
async fn video_rate_photo_area_streams_mjpeg_and_ends_lossless() {
    use spice_bridge::server::StreamingVideo;
    let mut bytes = Vec::new();
    for mode in [StreamingVideo::Filter, StreamingVideo::Off] {
        let model = DisplayModel::new();
        model
            .create_surface(0, 640, 480, SurfaceFormat::Xrgb32)
            .unwrap();
        model
            .fill(0, Rect::new(0, 0, 640, 480), 0x0030_3030, &[])
            .unwrap();
        model.mark();
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            compression: ImageCompression::Auto,
            streaming_video: mode,
            // With JPEG on too: the resend at the stream's end must still be lossless.
            jpeg_wan: if mode == StreamingVideo::Off {
                spice_bridge::server::JpegWan::Auto
            } else {
                spice_bridge::server::JpegWan::Always
            },
            stream_idle_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let (h, _m, mut d, mut canvas, mut n) = display_session(&model, config).await;
        let before = h.stats().display_bytes;
        let dest = Rect::new(100, 80, 320, 240);
        for i in 0..12u32 {
            // Odd frames carry their destination as a one-rectangle clip, as the Linux qxl
            // driver sends a dirty rectangle: that does not clip, and they stream too.
            let clip = if i % 2 == 1 { vec![dest] } else { vec![] };
            model
                .draw_copy(0, dest, &photo_image(0, 320, 240, i + 1), &clip)
                .unwrap();
            model.mark();
            read_to_mark(&mut d, &mut canvas, &mut n).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let want = model_surface_rgb(&model, 0).unwrap();
        let shown = canvas.surface(0).unwrap();
        let db = psnr(&shown.2, &want.2);
        if mode == StreamingVideo::Off {
            assert_eq!(canvas.stream_messages, [0, 0, 0]);
            assert_eq!(shown, want, "without streams every frame is exact");
            bytes.push(h.stats().display_bytes - before);
            h.shutdown().await;
            continue;
        }
        assert_eq!(
            canvas.stream_messages,
            [1, 8, 0],
            "create after 5 frames, 8 frames"
        );
        assert!(
            (32.0..f64::INFINITY).contains(&db),
            "a streamed frame: {db:.1} dB"
        );
        let s = h.stats();
        assert_eq!((s.streams, s.stream_frames), (1, 8));
        // No frame for 300 ms: STREAM_DESTROY, then the last frame losslessly.
        read_until(&mut d, &mut canvas, "destroy and lossless frame", |c| {
            c.stream_messages[2] > 0 && c.surface(0).unwrap() == want
        })
        .await;
        assert!(canvas.streams.is_empty());
        bytes.push(h.stats().display_bytes - before);
        eprintln!("stream: last frame at {db:.1} dB before the lossless resend");
        h.shutdown().await;
    }
    eprintln!(
        "12 frames 320x240: {} bytes streamed (4 JPEG images, 8 MJPEG frames, 1 lossless \
         resend) vs {} bytes as lossless images",
        bytes[0], bytes[1]
    );
    assert!(bytes[0] * 2 < bytes[1], "{bytes:?}");
}

/// Issue 11, stream bit rate: the server asks a client with the STREAM_REPORT capability for
/// reports (STREAM_ACTIVATE_REPORT after STREAM_CREATE); reports with dropped frames step the
/// JPEG quality down, so later frames of the same content are smaller, and a report for a
/// stream that has ended (or with a stale tag) is ignored, not a protocol error.
#[tokio::test]
async fn stream_reports_with_drops_lower_the_frame_size() {
    use spice_bridge::wire::display::{StreamActivateReport, StreamData, StreamReport};
    let (model, h, _m, mut d, mut canvas, mut n) = stream_session(640, 480, 1500).await;
    let dest = Rect::new(100, 80, 320, 240);
    // Draws frame i and returns the STREAM_DATA sizes and the activation seen until its MARK.
    async fn frame(
        model: &DisplayModel,
        d: &mut ScriptedClient,
        canvas: &mut ClientCanvas,
        n: &mut u32,
        dest: Rect,
        i: u32,
    ) -> (Vec<usize>, Option<StreamActivateReport>) {
        model
            .draw_copy(0, dest, &photo_image(0, 320, 240, i), &[])
            .unwrap();
        model.mark();
        let (mut sizes, mut act) = (Vec::new(), None);
        loop {
            let (t, b) = d.recv().await.unwrap();
            canvas.apply(t, &b);
            *n += 1;
            if *n % 20 == 0 {
                d.send(2, &[]).await.unwrap();
            }
            match t {
                ds::STREAM_DATA => sizes.push(decode_exact::<StreamData>(&b).unwrap().data.len()),
                ds::STREAM_ACTIVATE_REPORT => act = Some(decode_exact(&b).unwrap()),
                ds::MARK => return (sizes, act),
                _ => {}
            }
        }
    }
    let mut first = Vec::new();
    let mut activation = None;
    for i in 1..=10 {
        let (s, a) = frame(&model, &mut d, &mut canvas, &mut n, dest, i).await;
        first.extend(s);
        activation = activation.or(a);
    }
    let act = activation.expect("STREAM_ACTIVATE_REPORT after STREAM_CREATE");
    assert_eq!((act.max_window_size, act.timeout_ms), (5, 1000));
    let report = |unique_id: u32, drops: u32| StreamReport {
        stream_id: act.stream_id,
        unique_id,
        start_frame_mm_time: 0,
        end_frame_mm_time: 0,
        num_frames: 5,
        num_drops: drops,
        last_frame_delay: 10,
        audio_delay: u32::MAX,
    };
    // a stale tag changes nothing; six reports with drops walk the quality from 80 to 20
    d.send(
        102,
        &spice_bridge::wire::to_vec(&report(act.unique_id + 1, 5)),
    )
    .await
    .unwrap();
    for _ in 0..6 {
        d.send(102, &spice_bridge::wire::to_vec(&report(act.unique_id, 3)))
            .await
            .unwrap();
    }
    // (the reports travel on the display socket: give the server a moment to read them)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut after = Vec::new();
    for i in 11..=16 {
        after.extend(frame(&model, &mut d, &mut canvas, &mut n, dest, i).await.0);
    }
    let avg = |v: &[usize]| v.iter().sum::<usize>() / v.len().max(1);
    eprintln!(
        "stream frames: {} bytes a frame at quality 80, {} after six reports with drops",
        avg(&first),
        avg(&after)
    );
    assert_eq!((first.len(), after.len()), (6, 6));
    assert!(avg(&after) * 2 < avg(&first), "{first:?} then {after:?}");
    let shown = canvas.surface(0).unwrap();
    let db = psnr(&shown.2, &model_surface_rgb(&model, 0).unwrap().2);
    assert!(db > 25.0, "quality 20 still shows the picture: {db:.1} dB");
    // The stream ends (1.5 s idle); a report arriving after that is ignored.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    d.send(102, &spice_bridge::wire::to_vec(&report(act.unique_id, 1)))
        .await
        .unwrap();
    read_until(&mut d, &mut canvas, "stream destroy", |c| {
        c.stream_messages[2] > 0
    })
    .await;
    // the channel still serves draws
    model
        .fill(0, Rect::new(0, 0, 10, 10), 0x00ff_0000, &[])
        .unwrap();
    model.mark();
    read_to_mark(&mut d, &mut canvas, &mut n).await;
    assert_eq!(canvas.surface(0), model_surface_rgb(&model, 0));
    h.shutdown().await;
}

/// Issue 11, `jpeg-wan-compression=auto` (the default): the main channel's network test decides,
/// as spice-server's does. Right after MAIN_INIT come three PINGs, the last with 250 KiB of
/// padding. A client whose answer to the padded one comes 400 ms after its answer to the empty
/// one is on a link under 10 Mbit/s: it gets the photo as JPEG (lossy, close) and the wide ACK
/// window (40). A client that answers at once gets it losslessly, pixel for pixel, and 20.
#[tokio::test]
async fn network_test_makes_auto_send_jpeg_only_on_a_slow_link() {
    for slow in [true, false] {
        let model = DisplayModel::new();
        scene_photo(&model);
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            compression: ImageCompression::Auto,
            ..Default::default()
        };
        let rec = Arc::new(Rec::default());
        let h = Server::start(config, model.clone(), rec.clone(), rec)
            .await
            .unwrap();
        let mut m = ScriptedClient::connect(h.local_addr(), 1, 0, "").await;
        let (mut sid, mut pings) = (0, Vec::new());
        while pings.len() < 3 {
            let (t, b) = m.recv().await.unwrap();
            match t {
                103 => sid = decode_exact::<MainInit>(&b).unwrap().session_id,
                4 => pings.push(b),
                _ => {}
            }
        }
        let sizes: Vec<usize> = pings.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [12, 12, 12 + 256_000],
            "PING id u32, timestamp u64, padding"
        );
        // PONG: the PING's id and timestamp, without the padding
        m.send(3, &pings[0][..12]).await.unwrap();
        m.send(3, &pings[1][..12]).await.unwrap();
        if slow {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        m.send(3, &pings[2][..12]).await.unwrap();
        wait_for(|| h.stats().net_tests == 1).await;
        assert_eq!(h.stats().low_bandwidth_links, u64::from(slow));
        m.send(104, &[]).await.unwrap();
        m.recv_until(104).await.unwrap();
        let (mut d, window) = display_client_acks(&h, sid).await;
        assert_eq!(
            window,
            if slow { 40 } else { 20 },
            "spice-server's wide window when slow"
        );
        let (mut canvas, mut n) = (ClientCanvas::default(), 0);
        read_to_mark(&mut d, &mut canvas, &mut n).await;
        let want = model_surface_rgb(&model, 0).unwrap();
        let got = canvas.surface(0).unwrap();
        let jpegs = h.stats().jpeg_images;
        eprintln!(
            "slow link {slow}: {jpegs} JPEG, {} display bytes",
            h.stats().display_bytes
        );
        if slow {
            assert!(jpegs >= 1, "no JPEG on a slow link");
            let db = psnr(&got.2, &want.2);
            assert!((30.0..f64::INFINITY).contains(&db), "PSNR {db:.1} dB");
        } else {
            assert_eq!(jpegs, 0, "JPEG on a fast link");
            assert!(got == want, "the lossless picture differs");
        }
        h.shutdown().await;
    }
}

/// Issue 11, a picture over a running stream (subtitles, a player's controls): it goes as an
/// image and the stream runs on, as spice-server keeps its stream (clipped) under such draws;
/// when the stream stops, the lossless resend has the subtitles in, so the client ends exact.
#[tokio::test]
async fn a_picture_over_a_stream_keeps_it_and_the_client_ends_exact() {
    let (model, h, _m, mut d, mut canvas, mut n) = stream_session(640, 480, 300).await;
    let dest = Rect::new(100, 80, 320, 240);
    let subs = Rect::new(140, 280, 240, 24);
    for i in 0..10u32 {
        model
            .draw_copy(0, dest, &photo_image(0, 320, 240, i + 1), &[])
            .unwrap();
        if i >= 6 {
            // a line of subtitles, two colours, redrawn over each frame
            let text = (0..240 * 24)
                .map(|p| text_pixel(p % 240, p / 240, i))
                .collect();
            model
                .draw_copy(0, subs, &Image::new(0, 240, 24, text).unwrap(), &[])
                .unwrap();
        }
        next_frame(&model, &mut d, &mut canvas, &mut n).await;
    }
    assert_eq!(
        canvas.stream_messages,
        [1, 6, 0],
        "one stream from the 5th frame to the 10th, not ended by the subtitles"
    );
    streams_end_exact(&model, &mut d, &mut canvas, 1).await;
    assert_eq!(h.stats().streams, 1);
    h.shutdown().await;
}

/// Issue 11, two videos at once (a page with two players): both areas become streams of their
/// own (two STREAM_CREATEs, frames of each), and when they stop each ends with its last frame
/// resent losslessly, so the client ends exact.
#[tokio::test]
async fn two_videos_stream_at_once_and_the_client_ends_exact() {
    let (model, h, _m, mut d, mut canvas, mut n) = stream_session(800, 400, 300).await;
    let players = [Rect::new(20, 40, 320, 240), Rect::new(420, 100, 352, 200)];
    for i in 0..8u32 {
        for (k, p) in players.iter().enumerate() {
            let img = photo_image(0, p.width(), p.height(), 2 * i + k as u32 + 1);
            model.draw_copy(0, *p, &img, &[]).unwrap();
        }
        next_frame(&model, &mut d, &mut canvas, &mut n).await;
    }
    assert_eq!(
        canvas.stream_messages,
        [2, 8, 0],
        "two streams from the 5th frame, 4 frames each"
    );
    streams_end_exact(&model, &mut d, &mut canvas, 2).await;
    assert!(canvas.streams.is_empty());
    assert_eq!((h.stats().streams, h.stats().stream_frames), (2, 8));
    h.shutdown().await;
}

/// A client that lags (it stops reading while the guest draws 60 frames) is not sent the frames
/// that newer ones paint over before they could leave (as spice-server drops covered drawables
/// from a client's pipe): it gets fewer, the newest sooner, and ends on the model's picture.
#[tokio::test]
async fn a_lagging_client_is_not_sent_frames_newer_ones_paint_over() {
    let model = DisplayModel::new();
    model
        .create_surface(0, 200, 150, SurfaceFormat::Xrgb32)
        .unwrap();
    model.mark();
    let (h, _) = start(model.clone(), None, ImageCompression::Off).await;
    let (_m, sid) = main_session(&h, "").await;
    let mut d = display_client(&h, sid).await;
    let (mut canvas, mut n) = (ClientCanvas::default(), 0);
    read_to_mark(&mut d, &mut canvas, &mut n).await;
    let full = Rect::new(0, 0, 200, 150);
    for i in 0..60u32 {
        model
            .draw_copy(0, full, &pattern_image(0, 200, 150, i), &[])
            .unwrap();
        model.mark();
    }
    let mut copies = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while canvas.surface(0) != model_surface_rgb(&model, 0) {
        let types = read_to_mark(&mut d, &mut canvas, &mut n).await;
        copies += types.iter().filter(|&&t| t == ds::DRAW_COPY).count();
        assert!(Instant::now() < deadline, "client never caught up");
    }
    let dropped = h.stats().draws_superseded;
    eprintln!("60 frames drawn while the client lagged: {copies} sent, {dropped} dropped");
    assert!(
        dropped > 0 && copies < 60,
        "{copies} sent, {dropped} dropped"
    );
    h.shutdown().await;
}

/// spice-gtk keeps one GLZ window a session (cleared only when the session connects): a display
/// channel that reconnects within the session must go on with the session's GLZ ids, or the
/// client's window would take the new pictures for old ones. The client here keeps its window
/// (the canvas) across the two display connections, as spice-gtk does.
#[tokio::test]
async fn a_display_channel_that_reconnects_goes_on_with_the_sessions_glz_ids() {
    let (model, _, h, _m, sid) = glz_scene().await;
    let mut canvas = ClientCanvas::default();
    for round in 0..2 {
        let mut d = display_client(&h, sid).await;
        let mut n = 0;
        read_to_mark(&mut d, &mut canvas, &mut n).await;
        assert_eq!(
            canvas.surface(0),
            model_surface_rgb(&model, 0),
            "round {round}"
        );
        d.close().await;
        wait_for(|| h.stats().linked == 1).await;
    }
    let held: Vec<u64> = canvas.glz.as_ref().unwrap().held_ids().collect();
    assert_eq!(h.stats().glz_images, 2);
    assert_eq!(
        held.last(),
        Some(&1),
        "the second connection's picture is GLZ id 1"
    );
    h.shutdown().await;
}
