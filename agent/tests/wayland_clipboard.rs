//! The Wayland clipboard bridge against a real compositor: a private headless `sway` per
//! test (`WLR_BACKENDS=headless`, no input devices, no Xwayland), `wl-copy` / `wl-paste`
//! (wl-clipboard) as the guest applications, a recording [`HostSink`] (plus a thread
//! answering REQUESTs) as the Spice client. sway and wl-clipboard are required: a missing
//! one fails the test, it is never skipped.
//!
//! Which protocol runs: Debian bookworm's sway 1.7 (wlroots 0.15) offers
//! `zwlr_data_control_manager_v1` version 2 (with the primary selection) and not
//! `ext_data_control_manager_v1` (wlroots 0.19 and later), so these tests exercise the wlr
//! path; the ext path differs only in the protocol objects (`wayland.rs`, the `Dispatch`
//! macro and the four wrapper enums). [`bridge_binds_a_data_control_protocol`] prints which
//! one was bound.
//!
//! sway refuses to start as root; the tests then run it as `nobody` in a runtime directory
//! that user owns (root, running the tests and the wl-clipboard tools, can still reach the
//! socket).

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use spice_agent::protocol::{ClipboardType, Message, Selection};
use spice_agent::session::clipboard::{ClipboardBackend, ClipboardLimits, WaylandClipboard};

// ----- sway ---------------------------------------------------------------------------------

struct Sway {
    child: Child,
    dir: PathBuf,
    runtime: PathBuf,
    /// The socket's name in `runtime`.
    name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

const NOBODY: u32 = 65534;

impl Sway {
    fn start() -> Sway {
        let dir = std::env::temp_dir().join(format!(
            "spice-agent-wl-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let runtime = dir.join("run");
        std::fs::create_dir(&runtime).expect("runtime dir");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            std::os::unix::fs::chown(&runtime, Some(NOBODY), Some(NOBODY)).expect("chown");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let config = dir.join("config");
        std::fs::write(
            &config,
            "xwayland disable\noutput HEADLESS-1 resolution 640x480\n",
        )
        .expect("sway config");
        let mut cmd = Command::new("sway");
        cmd.arg("-c")
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("WLR_BACKENDS", "headless")
            .env("WLR_LIBINPUT_NO_DEVICES", "1")
            .env("WLR_RENDERER", "pixman")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("sway.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            );
        if root {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("sway is not installed (Debian package sway); this test needs it")
            }
            Err(e) => panic!("cannot start sway: {e}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(name) = socket_in(&runtime) {
                return Sway {
                    child,
                    dir,
                    runtime,
                    name,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("sway.log")).unwrap_or_default();
                panic!("sway exited ({status}) before opening its socket:\n{log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sway opened no Wayland socket in 20 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn socket(&self) -> String {
        self.runtime.join(&self.name).to_string_lossy().into_owned()
    }

    fn tool(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("XDG_RUNTIME_DIR", &self.runtime)
            .env("WAYLAND_DISPLAY", &self.name)
            .env_remove("DISPLAY");
        c
    }
}

/// The compositor's socket in `runtime`, once it exists.
fn socket_in(runtime: &Path) -> Option<String> {
    std::fs::read_dir(runtime).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_socket = std::os::unix::fs::FileTypeExt::is_socket(&e.file_type().ok()?);
        (name.starts_with("wayland-") && is_socket).then_some(name)
    })
}

impl Drop for Sway {
    fn drop(&mut self) {
        // wl-copy daemons exit with their compositor.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ----- wl-clipboard -------------------------------------------------------------------------

/// `wl-copy [ARGS]` with `data` on stdin: it forks a daemon that owns the selection.
fn wl_copy(sway: &Sway, args: &[&str], data: &[u8]) {
    let mut child = sway
        .tool("wl-copy")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run wl-copy (Debian package wl-clipboard): {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(data).expect("write to wl-copy");
    drop(stdin);
    let status = child.wait().expect("wl-copy");
    assert!(status.success(), "wl-copy {args:?} failed");
}

/// `wl-paste --no-newline [ARGS]`, killed after `timeout`: (exit success, stdout).
fn wl_paste(sway: &Sway, args: &[&str], timeout: Duration) -> (bool, Vec<u8>) {
    let mut child = sway
        .tool("wl-paste")
        .arg("--no-newline")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run wl-paste (Debian package wl-clipboard): {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = thread::spawn(move || {
        let mut out = vec![];
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wl-paste") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let out = reader.join().expect("reader");
    (status.is_some_and(|s| s.success()), out)
}

// ----- harness ------------------------------------------------------------------------------

struct Harness {
    sway: Sway,
    rec: Arc<Recorder>,
    clip: Arc<WaylandClipboard>,
}

fn harness(limits: ClipboardLimits) -> Harness {
    let sway = Sway::start();
    let rec = Arc::new(Recorder::default());
    let clip =
        WaylandClipboard::start(Some(&sway.socket()), rec.clone(), limits).expect("start bridge");
    clip.client_caps(&full_caps(), true);
    Harness {
        sway,
        rec,
        clip: Arc::new(clip),
    }
}

impl Bridge for Harness {
    fn recorder(&self) -> Arc<Recorder> {
        self.rec.clone()
    }
    fn backend(&self) -> Arc<dyn ClipboardBackend> {
        self.clip.clone()
    }
}

fn default_harness() -> Harness {
    harness(ClipboardLimits::default())
}

fn grab(h: &Harness, sel: Selection) -> (Option<u32>, Vec<ClipboardType>) {
    match h.rec.take(PASTE, is_grab(sel)) {
        Some(Message::ClipboardGrab { serial, types, .. }) => (serial, types),
        other => panic!("no {sel:?} grab reached the client (got {other:?})"),
    }
}

/// Waits until `wl-paste ARGS` reads `want` (the grab is applied asynchronously).
fn paste_eventually(h: &Harness, args: &[&str], want: &[u8]) {
    let deadline = Instant::now() + PASTE;
    loop {
        let (ok, out) = wl_paste(&h.sway, args, PASTE);
        if ok && out == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "wl-paste {args:?} read {} bytes (ok={ok}), expected {}",
            out.len(),
            want.len()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the selection (`--primary` in `args` or not) is the bridge's own source.
fn wait_own_selection(h: &Harness, args: &[&str]) {
    let mut args = args.to_vec();
    args.push("--list-types");
    let deadline = Instant::now() + PASTE;
    loop {
        let (_, types) = wl_paste(&h.sway, &args, PASTE);
        if String::from_utf8_lossy(&types)
            .lines()
            .any(|l| l == spice_agent::session::clipboard::wayland::OWN_MIME)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the client grab never took the selection"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `wl-paste ARGS` reads something (the grab is applied asynchronously).
fn paste_some(h: &Harness, args: &[&str]) -> Vec<u8> {
    let deadline = Instant::now() + PASTE;
    loop {
        let (ok, out) = wl_paste(&h.sway, args, PASTE);
        if ok && !out.is_empty() {
            return out;
        }
        assert!(Instant::now() < deadline, "wl-paste {args:?} read nothing");
        thread::sleep(Duration::from_millis(100));
    }
}

// ----- tests --------------------------------------------------------------------------------

#[test]
fn bridge_binds_a_data_control_protocol() {
    let h = default_harness();
    let p = h.clip.protocol();
    eprintln!("bound {p}");
    assert!(
        p == "zwlr-data-control-v1" || p == "ext-data-control-v1",
        "unexpected protocol {p}"
    );
}

/// The read-only output backend (sway has no display API for clients) reports sway's headless
/// output at the size its config gives, so spice-agentd can place the pointer; a monitors
/// config is refused.
#[test]
fn wayland_outputs_give_the_layout() {
    use spice_agent::session::display::DisplayBackend;
    use spice_agent::session::wl_outputs::WlOutputs;
    let sway = Sway::start();
    let w = WlOutputs::connect(Some(Path::new(&sway.socket()))).expect("wl_output read");
    let l = w.layout().expect("layout");
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!((l[0].display_id, l[0].x, l[0].y), (0, 0, 0));
    assert_eq!((l[0].width, l[0].height), (640, 480));
    assert!(w.apply(&[]).is_err());
}

#[test]
fn guest_text_is_grabbed_with_serials_and_served() {
    let h = default_harness();
    let first = "first: héllo ✓".as_bytes();
    wl_copy(&h.sway, &[], first);
    let (serial, types) = grab(&h, Selection::Clipboard);
    assert_eq!(serial, Some(0));
    assert_eq!(types, [ClipboardType::Utf8Text]);
    match request(&h, Selection::Clipboard, ClipboardType::Utf8Text) {
        Message::Clipboard { type_, data, .. } => {
            assert_eq!(type_, ClipboardType::Utf8Text);
            assert_eq!(data, first);
        }
        other => panic!("unexpected {other:?}"),
    }
    // A second copy: the next serial, the new text.
    wl_copy(&h.sway, &[], b"second");
    let (serial, _) = grab(&h, Selection::Clipboard);
    assert_eq!(serial, Some(1));
    match request(&h, Selection::Clipboard, ClipboardType::Utf8Text) {
        Message::Clipboard { data, .. } => assert_eq!(data, b"second"),
        other => panic!("unexpected {other:?}"),
    }
    // A type the owner does not offer is refused.
    match request(&h, Selection::Clipboard, ClipboardType::ImagePng) {
        Message::Clipboard { type_, data, .. } => {
            assert_eq!(type_, ClipboardType::None);
            assert!(data.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    // Clearing the clipboard releases it.
    let status = h
        .sway
        .tool("wl-copy")
        .arg("--clear")
        .status()
        .expect("wl-copy --clear");
    assert!(status.success());
    let rel = h.rec.take(PASTE, |m| {
        matches!(m, Message::ClipboardRelease { selection } if *selection == Selection::Clipboard)
    });
    assert!(rel.is_some(), "no release after wl-copy --clear");
}

#[test]
fn client_text_is_pasted_in_the_guest_and_not_echoed() {
    let h = default_harness();
    let text = text_of(300_000); // several pipe buffers: non-blocking writes
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, text.clone())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, &[], &text);
    // Text types wl-paste may ask for by name.
    let (ok, types) = wl_paste(&h.sway, &["--list-types"], PASTE);
    assert!(ok);
    let types = String::from_utf8_lossy(&types).into_owned();
    for t in [
        "text/plain;charset=utf-8",
        "UTF8_STRING",
        "text/plain",
        "TEXT",
        "STRING",
    ] {
        assert!(types.lines().any(|l| l == t), "{t} not offered: {types}");
    }
    paste_eventually(&h, &["--type", "UTF8_STRING"], &text);
    // The paste from the cache needs no second request; our own selection is never
    // announced back to the client.
    assert_eq!(h.rec.count(is_request), 0);
    assert_eq!(h.rec.count(is_grab(Selection::Clipboard)), 0, "grab echoed");
}

#[test]
fn client_text_as_string_is_latin1() {
    let h = default_harness();
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, "café €".into())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    paste_eventually(
        &h,
        &["--type", "STRING"],
        &[b'c', b'a', b'f', 0xe9, b' ', b'?'],
    );
}

#[test]
fn guest_png_reaches_the_client_unchanged() {
    let h = default_harness();
    let (w, hh, px) = pixels();
    let png = encode_png(w, hh, &px);
    wl_copy(&h.sway, &["--type", "image/png"], &png);
    let (_, types) = grab(&h, Selection::Clipboard);
    assert_eq!(types, [ClipboardType::ImagePng]);
    match request(&h, Selection::Clipboard, ClipboardType::ImagePng) {
        Message::Clipboard { type_, data, .. } => {
            assert_eq!(type_, ClipboardType::ImagePng);
            assert_eq!(data, png);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn guest_bmp_is_offered_and_sent_as_png() {
    let h = default_harness();
    let (w, hh, px) = pixels();
    wl_copy(&h.sway, &["--type", "image/bmp"], &encode_bmp24(w, hh, &px));
    let (_, types) = grab(&h, Selection::Clipboard);
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(types.contains(&ClipboardType::ImagePng) && types.contains(&ClipboardType::ImageBmp));
    match request(&h, Selection::Clipboard, ClipboardType::ImagePng) {
        Message::Clipboard { type_, data, .. } => {
            assert_eq!(type_, ClipboardType::ImagePng);
            assert_eq!(decode_png(&data), (w, hh, px));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn client_png_is_served_as_png_and_bmp() {
    let h = default_harness();
    let (w, hh, px) = pixels();
    let png = encode_png(w, hh, &px);
    let _a = Answerer::start(&h, vec![(ClipboardType::ImagePng, png.clone())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::ImagePng]);
    paste_eventually(&h, &["--type", "image/png"], &png);
    let bmp = paste_some(&h, &["--type", "image/bmp"]);
    assert_eq!(decode_bmp(&bmp), (w, hh, px));
}

#[test]
fn client_bmp_arrives_as_png() {
    let h = default_harness();
    let (w, hh, px) = pixels();
    let bmp = encode_bmp24(w, hh, &px);
    let _a = Answerer::start(&h, vec![(ClipboardType::ImageBmp, bmp.clone())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::ImageBmp]);
    let png = paste_some(&h, &["--type", "image/png"]);
    assert_eq!(decode_png(&png), (w, hh, px.clone()));
    paste_eventually(&h, &["--type", "image/bmp"], &bmp);
}

#[test]
fn primary_selection_both_ways() {
    let h = default_harness();
    wl_copy(&h.sway, &["--primary"], b"primary from the guest");
    let (serial, types) = grab(&h, Selection::Primary);
    assert_eq!(serial, Some(0));
    assert_eq!(types, [ClipboardType::Utf8Text]);
    match request(&h, Selection::Primary, ClipboardType::Utf8Text) {
        Message::Clipboard {
            selection, data, ..
        } => {
            assert_eq!(selection, Selection::Primary);
            assert_eq!(data, b"primary from the guest");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(h.rec.count(is_grab(Selection::Clipboard)), 0);
    let _a = Answerer::start(
        &h,
        vec![(ClipboardType::Utf8Text, b"primary from the client".to_vec())],
    );
    client_grab(&h, Selection::Primary, 1, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, &["--primary"], b"primary from the client");
    // The CLIPBOARD selection is untouched.
    let (_, out) = wl_paste(&h.sway, &[], PASTE);
    assert!(out.is_empty(), "CLIPBOARD got {out:?}");
}

#[test]
fn data_above_the_cap_is_refused_both_ways() {
    let h = harness(ClipboardLimits {
        max_bytes: 64 * 1024,
        ..ClipboardLimits::default()
    });
    // guest → client: over the cap → NONE; under it → the data.
    wl_copy(&h.sway, &[], &text_of(100_000));
    grab(&h, Selection::Clipboard);
    match request(&h, Selection::Clipboard, ClipboardType::Utf8Text) {
        Message::Clipboard { type_, data, .. } => {
            assert_eq!(type_, ClipboardType::None);
            assert!(data.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    let small = text_of(60_000);
    wl_copy(&h.sway, &[], &small);
    grab(&h, Selection::Clipboard);
    match request(&h, Selection::Clipboard, ClipboardType::Utf8Text) {
        Message::Clipboard { data, .. } => assert_eq!(data, small),
        other => panic!("unexpected {other:?}"),
    }
    // The client's MAX_CLIPBOARD lowers it further.
    h.clip.client_message(Message::MaxClipboard(1000));
    match request(&h, Selection::Clipboard, ClipboardType::Utf8Text) {
        Message::Clipboard { type_, .. } => assert_eq!(type_, ClipboardType::None),
        other => panic!("unexpected {other:?}"),
    }
    // client → guest: oversized data are not served.
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, text_of(100_000))]);
    client_grab(&h, Selection::Clipboard, 2, vec![ClipboardType::Utf8Text]);
    wait_own_selection(&h, &[]);
    let (_, out) = wl_paste(&h.sway, &[], PASTE);
    assert!(out.is_empty(), "oversized client data were served");
}

#[test]
fn silent_client_times_out_and_the_bridge_recovers() {
    let h = harness(ClipboardLimits {
        request_timeout: Duration::from_millis(1500),
        ..ClipboardLimits::default()
    });
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    // wl-paste is refused (no data) within the timeout, not left hanging.
    let deadline = Instant::now() + PASTE;
    loop {
        let t = Instant::now();
        let (_, out) = wl_paste(&h.sway, &[], Duration::from_secs(10));
        assert!(out.is_empty(), "got {out:?}");
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "wl-paste was not answered in time"
        );
        if h.rec.take(Duration::ZERO, is_request).is_some() {
            assert!(
                t.elapsed() >= Duration::from_millis(1000),
                "answered too early"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no request reached the client");
        thread::sleep(Duration::from_millis(100));
    }
    // The late answer is dropped; the next grab and paste work, and so does the other way.
    h.clip.client_message(Message::Clipboard {
        selection: Selection::Clipboard,
        type_: ClipboardType::Utf8Text,
        data: b"late".to_vec(),
    });
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, b"on time".to_vec())]);
    client_grab(&h, Selection::Clipboard, 1, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, &[], b"on time");
    drop(_a);
    wl_copy(&h.sway, &[], b"guest again");
    let (serial, _) = grab(&h, Selection::Clipboard);
    assert_eq!(serial, Some(2));
}

#[test]
fn wrong_serial_is_discarded() {
    let h = default_harness();
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, b"stale".to_vec())]);
    client_grab(&h, Selection::Clipboard, 7, vec![ClipboardType::Utf8Text]);
    thread::sleep(Duration::from_millis(500));
    let (_, out) = wl_paste(&h.sway, &[], PASTE);
    assert!(out.is_empty(), "a grab with a wrong serial was taken");
}

#[test]
fn client_release_and_disconnect_clear_the_selection() {
    let h = default_harness();
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, b"held".to_vec())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, &[], b"held");
    h.clip.client_message(Message::ClipboardRelease {
        selection: Selection::Clipboard,
    });
    let deadline = Instant::now() + PASTE;
    while wl_paste(&h.sway, &[], PASTE).0 {
        assert!(
            Instant::now() < deadline,
            "selection still held after RELEASE"
        );
        thread::sleep(Duration::from_millis(100));
    }
    client_grab(&h, Selection::Clipboard, 1, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, &[], b"held");
    h.clip.client_disconnected();
    let deadline = Instant::now() + PASTE;
    while wl_paste(&h.sway, &[], PASTE).0 {
        assert!(
            Instant::now() < deadline,
            "selection still held after disconnect"
        );
        thread::sleep(Duration::from_millis(100));
    }
}
