//! spice-html5 (Debian's `spice-html5`, the real browser client) in headless Debian
//! `chromium`, driven by playwright-core (`tests/browser/spice-html5.mjs`), against an
//! in-process server over WebSocket on the Spice port. Ignored by default;
//! `tests/e2e/spice-html5.sh` runs them. A missing chromium, spice-html5, node or npm is a
//! failure, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spice_bridge::input::{Buttons, InputSink, KeyEvent, MouseButton, NullAgent};
use spice_bridge::link::TicketPolicy;
use spice_bridge::server::ServerHandle;
use spice_bridge::testing::*;
use spice_bridge::{DisplayModel, Server, ServerConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn require(p: &str) {
    assert!(
        Path::new(p).exists(),
        "{p} is missing: run images/install-host-deps.sh (chromium, spice-html5, nodejs)"
    );
}

/// The browser driver directory with its pinned node modules installed (`npm ci`).
fn browser_dir() -> PathBuf {
    require("/usr/bin/chromium");
    require("/usr/share/spice-html5/spice_auto.html");
    require("/usr/bin/node");
    let dir = repo().join("tests/browser");
    if !dir.join("node_modules/playwright-core").is_dir() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (run images/install-host-deps.sh)");
        assert!(st.success(), "npm ci in tests/browser failed");
    }
    dir
}

/// Runs the driver script and returns its JSON line.
async fn drive(args: &[String]) -> String {
    let dir = browser_dir();
    let args = args.to_vec();
    // coreutils `timeout` ends a hung browser; the script has its own 20 s waits
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["90", "node", "spice-html5.mjs"])
            .args(&args)
            .current_dir(&dir)
            .output()
    })
    .await
    .unwrap()
    .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "driver failed ({}): {stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// A number field of the driver's JSON line.
fn field(json: &str, name: &str) -> i64 {
    let at = json
        .find(&format!("\"{name}\":"))
        .unwrap_or_else(|| panic!("no {name} in {json}"));
    let v: String = json[at + name.len() + 3..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    v.parse().unwrap_or_else(|_| panic!("{name} in {json}"))
}

#[derive(Default)]
struct Rec(Mutex<Vec<String>>);
impl InputSink for Rec {
    fn key(&self, e: KeyEvent) {
        let s = format!(
            "key {:#x} {}",
            e.scancode,
            if e.pressed { "down" } else { "up" }
        );
        self.0.lock().unwrap().push(s);
    }
    fn mouse_motion(&self, dx: i32, dy: i32, _: Buttons) {
        self.0.lock().unwrap().push(format!("motion {dx} {dy}"));
    }
    fn mouse_position(&self, x: u32, y: u32, _: u8, _: Buttons) {
        self.0.lock().unwrap().push(format!("pos {x} {y}"));
    }
    fn mouse_button(&self, b: MouseButton, p: bool, _: Buttons) {
        self.0.lock().unwrap().push(format!("button {b:?} {p}"));
    }
}

/// A server with QEMU's default image compression, auto_glz: spice-html5 announces a GLZ
/// window of 0 in DISPLAY_INIT, so it must get QUIC and LZ, never GLZ (which it cannot decode).
async fn serve(model: DisplayModel, ticket: TicketPolicy, rec: Arc<Rec>) -> ServerHandle {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ticket,
        name: Some("html5".into()),
        compression: spice_bridge::server::ImageCompression::Auto,
        ..Default::default()
    };
    Server::start(config, model, rec, Arc::new(NullAgent))
        .await
        .unwrap()
}

fn out_dir() -> PathBuf {
    let d = repo().join("target/spice-html5");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, spice-html5 and node; run by tests/e2e/spice-html5.sh"]
async fn spice_html5_shows_the_scene_and_sends_input() {
    let model = DisplayModel::new();
    scene_gradient(&model);
    let rec = Arc::new(Rec::default());
    let h = serve(model.clone(), TicketPolicy::Disabled, rec.clone()).await;
    let (w, ht, px) = model_surface_rgb(&model, 0).unwrap();
    let dir = out_dir();
    let expected = dir.join("expected.rgb");
    let rgb: Vec<u8> = px
        .iter()
        .flat_map(|p| [(p >> 16) as u8, (p >> 8) as u8, *p as u8])
        .collect();
    std::fs::write(&expected, rgb).unwrap();
    let (cx, cy) = (123u32, 77u32);
    let t = Instant::now();
    let json = drive(&[
        "view".into(),
        h.local_addr().port().to_string(),
        expected.display().to_string(),
        w.to_string(),
        ht.to_string(),
        dir.display().to_string(),
        cx.to_string(),
        cy.to_string(),
    ])
    .await;
    eprintln!("driver ({:?}): {json}", t.elapsed());
    assert_eq!(
        field(&json, "diff"),
        0,
        "canvas differs from the scene (first differing pixel index in the JSON; \
         screenshot and canvas.rgb in {})",
        dir.display()
    );
    let s = h.stats();
    assert!(
        s.websocket_connections >= 4,
        "main, display, inputs, cursor: {s:?}"
    );
    assert!(s.images_sent > 0, "{s:?}");
    assert_eq!(s.glz_images, 0, "spice-html5 has no GLZ window: {s:?}");
    assert_eq!(s.websocket_refused, 0);
    // input: KeyA (set-1 scancode 0x1e) down and up, then a left click at (cx, cy)
    let t = Instant::now();
    let want_pos = format!("pos {cx} {cy}");
    loop {
        let ev = rec.0.lock().unwrap().clone();
        let key_down = ev.iter().position(|e| e == "key 0x1e down");
        let key_up = ev.iter().position(|e| e == "key 0x1e up");
        let pos = ev.iter().position(|e| *e == want_pos);
        let press = ev.iter().position(|e| e == "button Left true");
        let release = ev.iter().position(|e| e == "button Left false");
        if let (Some(kd), Some(ku), Some(p), Some(b), Some(r)) =
            (key_down, key_up, pos, press, release)
        {
            assert!(kd < ku && p < b && b < r, "order: {ev:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "input events missing (want key 0x1e down/up, {want_pos}, left press/release): {ev:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.shutdown().await;
}

/// spice-html5's QUIC decoder shows our QUIC photo scene (`scene_photo`, QUIC forced)
/// pixel for pixel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, spice-html5 and node; run by tests/e2e/spice-html5.sh"]
async fn spice_html5_decodes_quic_pixel_for_pixel() {
    let model = DisplayModel::new();
    scene_photo(&model);
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ticket: TicketPolicy::Disabled,
        name: Some("html5".into()),
        compression: spice_bridge::server::ImageCompression::Quic,
        ..Default::default()
    };
    let h = Server::start(
        config,
        model.clone(),
        Arc::new(Rec::default()),
        Arc::new(NullAgent),
    )
    .await
    .unwrap();
    let (w, ht, px) = model_surface_rgb(&model, 0).unwrap();
    let dir = out_dir().join("quic");
    std::fs::create_dir_all(&dir).unwrap();
    let expected = dir.join("expected.rgb");
    let rgb: Vec<u8> = px
        .iter()
        .flat_map(|p| [(p >> 16) as u8, (p >> 8) as u8, *p as u8])
        .collect();
    std::fs::write(&expected, rgb).unwrap();
    let json = drive(&[
        "view".into(),
        h.local_addr().port().to_string(),
        expected.display().to_string(),
        w.to_string(),
        ht.to_string(),
        dir.display().to_string(),
        "10".into(),
        "10".into(),
    ])
    .await;
    eprintln!("driver: {json}");
    assert_eq!(
        field(&json, "diff"),
        0,
        "canvas differs from the QUIC scene (screenshot and canvas.rgb in {})",
        dir.display()
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, spice-html5 and node; run by tests/e2e/spice-html5.sh"]
async fn spice_html5_wrong_ticket_is_refused_and_plain_spice_links_on_the_same_port() {
    let model = DisplayModel::new();
    scene_odd(&model);
    let ticket = TicketPolicy::Password {
        password: "right".into(),
        expires: None,
    };
    let h = serve(model, ticket, Arc::default()).await;
    let json = drive(&[
        "wrong-ticket".into(),
        h.local_addr().port().to_string(),
        "wrong".into(),
    ])
    .await;
    assert!(json.contains("\"denied\":true"), "{json}");
    let s = h.stats();
    assert!(s.websocket_connections >= 1, "{s:?}");
    assert!(s.links_refused >= 1, "{s:?}");
    assert_eq!(s.links_ok, 0, "{s:?}");
    // a plain Spice client on the same port
    let o = ScriptedClient::link(h.local_addr(), 1, 0, "right", spice_gtk_caps(1))
        .await
        .unwrap();
    assert_eq!(o.result, Some(0));
    h.shutdown().await;
}

/// Video streams reach spice-html5 too (it announces CODEC_MJPEG): a photo-like area redrawn
/// every 40 ms while the browser is connected goes as an MJPEG stream, which spice-html5 plays
/// (one JPEG `<img>` per frame); when the frames stop the stream is destroyed and the last frame
/// resent losslessly, so the canvas ends on the guest's picture pixel for pixel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, spice-html5 and node; run by tests/e2e/spice-html5.sh"]
async fn spice_html5_plays_an_mjpeg_stream_and_ends_exact() {
    use spice_bridge::model::{Rect, SurfaceFormat};
    use spice_bridge::server::StreamingVideo;
    let (w, ht) = (640u32, 480u32);
    let dest = Rect::new(100, 80, 320, 240);
    let frames: Vec<_> = (1..=20u32).map(|i| photo_image(0, 320, 240, i)).collect();
    let setup = |m: &DisplayModel| {
        m.create_surface(0, w, ht, SurfaceFormat::Xrgb32).unwrap();
        m.draw_copy(
            0,
            Rect::new(0, 0, w as i32, ht as i32),
            &pattern_image(0, w, ht, 3),
            &[],
        )
        .unwrap();
        m.mark();
    };
    // What the canvas must end on: the same drawing on a twin model.
    let twin = DisplayModel::new();
    setup(&twin);
    for f in &frames {
        twin.draw_copy(0, dest, f, &[]).unwrap();
    }
    let dir = out_dir().join("stream");
    std::fs::create_dir_all(&dir).unwrap();
    let expected = dir.join("expected.rgb");
    let rgb: Vec<u8> = model_surface_rgb(&twin, 0)
        .unwrap()
        .2
        .iter()
        .flat_map(|p| [(p >> 16) as u8, (p >> 8) as u8, *p as u8])
        .collect();
    std::fs::write(&expected, rgb).unwrap();

    let model = DisplayModel::new();
    setup(&model);
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ticket: TicketPolicy::Disabled,
        name: Some("html5".into()),
        streaming_video: StreamingVideo::Filter,
        stream_idle_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let h = Server::start(
        config,
        model.clone(),
        Arc::new(Rec::default()),
        Arc::new(NullAgent),
    )
    .await
    .unwrap();
    let args = vec![
        "view".into(),
        h.local_addr().port().to_string(),
        expected.display().to_string(),
        w.to_string(),
        ht.to_string(),
        dir.display().to_string(),
        "10".into(),
        "10".into(),
    ];
    let driver = tokio::spawn(async move { drive(&args).await });
    let t = Instant::now();
    while !h.has_display() {
        assert!(t.elapsed() < Duration::from_secs(30), "no display channel");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.display_round_trip()
        .await
        .expect("the browser answers pings");
    for f in &frames {
        model.draw_copy(0, dest, f, &[]).unwrap();
        model.mark();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let json = driver.await.unwrap();
    eprintln!("driver: {json}");
    let s = h.stats();
    eprintln!("streams {} frames {}", s.streams, s.stream_frames);
    assert_eq!(s.streams, 1, "the area went to spice-html5 as a stream");
    assert!(s.stream_frames >= 10);
    assert_eq!(
        field(&json, "diff"),
        0,
        "canvas differs from the final picture (screenshot and canvas.rgb in {})",
        dir.display()
    );
    h.shutdown().await;
}
