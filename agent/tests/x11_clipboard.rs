//! The X11 clipboard bridge against a real X server: a private `Xvfb` per test, `xclip` as the
//! guest application, a recording [`HostSink`] (plus a thread answering REQUESTs) as the Spice
//! client. Xvfb and xclip are required: a missing one fails the test, it is never skipped.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use spice_agent::protocol::{cap, Caps, ClipboardType, Message, Selection};
use spice_agent::session::clipboard::{ClipboardBackend, ClipboardLimits, X11Clipboard};

mod common;
use common::*;

// ----- Xvfb ---------------------------------------------------------------------------------

struct Xvfb {
    child: Child,
    display: String,
}

static NEXT_DISPLAY: AtomicU32 = AtomicU32::new(0);

impl Xvfb {
    /// Starts Xvfb on a display number no one uses.
    fn start() -> Xvfb {
        let base = 200 + (std::process::id() % 400) * 8;
        for _ in 0..50 {
            let n = base + NEXT_DISPLAY.fetch_add(1, Ordering::SeqCst) % 3000;
            let socket = format!("/tmp/.X11-unix/X{n}");
            if Path::new(&format!("/tmp/.X{n}-lock")).exists() || Path::new(&socket).exists() {
                continue;
            }
            let child = Command::new("Xvfb")
                .arg(format!(":{n}"))
                .args(["-screen", "0", "640x480x24", "-nolisten", "tcp", "-noreset"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    panic!("Xvfb is not installed (Debian package xvfb); this test needs it")
                }
                Err(e) => panic!("cannot start Xvfb: {e}"),
            };
            let display = format!(":{n}");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // display taken after all: try the next
                }
                if Path::new(&socket).exists() && x11rb::connect(Some(&display)).is_ok() {
                    return Xvfb { child, display };
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start Xvfb on any display");
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // xclip daemons exit with their display.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- xclip --------------------------------------------------------------------------------

fn xclip_cmd(display: &str) -> Command {
    let mut c = Command::new("xclip");
    c.env("DISPLAY", display);
    c
}

/// `xclip -selection SEL [-t TARGET] -i`: xclip forks a daemon that owns the selection.
fn xclip_set(display: &str, selection: &str, target: Option<&str>, data: &[u8]) {
    let mut c = xclip_cmd(display);
    c.args(["-selection", selection]);
    if let Some(t) = target {
        c.args(["-t", t]);
    }
    let mut child = c
        .arg("-i")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run xclip (Debian package xclip): {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(data).expect("write to xclip");
    drop(stdin);
    let status = child.wait().expect("xclip");
    assert!(status.success(), "xclip -i failed");
}

/// `xclip -selection SEL [-t TARGET] -o`, killed after `timeout`: (exit success, stdout).
fn xclip_get(
    display: &str,
    selection: &str,
    target: Option<&str>,
    timeout: Duration,
) -> (bool, Vec<u8>) {
    let mut c = xclip_cmd(display);
    c.args(["-selection", selection]);
    if let Some(t) = target {
        c.args(["-t", t]);
    }
    let mut child = c
        .arg("-o")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run xclip (Debian package xclip): {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = thread::spawn(move || {
        let mut out = vec![];
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("xclip") {
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

// ----- the client side ----------------------------------------------------------------------

struct Harness {
    x: Xvfb,
    rec: Arc<Recorder>,
    clip: Arc<X11Clipboard>,
}

fn harness(limits: ClipboardLimits) -> Harness {
    let x = Xvfb::start();
    let rec = Arc::new(Recorder::default());
    let clip = X11Clipboard::start(Some(&x.display), rec.clone(), limits).expect("start bridge");
    clip.client_caps(&full_caps(), true);
    Harness {
        x,
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

/// Waits until `xclip -o` reads `want` (the grab is applied asynchronously).
fn paste_eventually(h: &Harness, selection: &str, target: Option<&str>, want: &[u8]) {
    let deadline = Instant::now() + PASTE;
    loop {
        let (ok, out) = xclip_get(&h.x.display, selection, target, PASTE);
        if ok && out == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "xclip -o {target:?} read {} bytes (ok={ok}), expected {}",
            out.len(),
            want.len()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

// ----- tests: guest → client ----------------------------------------------------------------

#[test]
fn guest_text_is_grabbed_with_serials_and_served() {
    let h = default_harness();
    let first = "first: héllo".as_bytes();
    let second = "Grüße aus dem Gast — 日本語 ✓".as_bytes();
    xclip_set(&h.x.display, "clipboard", None, first);
    let g = h
        .rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab");
    let Message::ClipboardGrab { serial, types, .. } = g else {
        unreachable!()
    };
    assert_eq!(serial, Some(0));
    assert_eq!(types, vec![ClipboardType::Utf8Text]);
    xclip_set(&h.x.display, "clipboard", None, second);
    let g = h
        .rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no second grab");
    assert!(
        matches!(
            g,
            Message::ClipboardGrab {
                serial: Some(1),
                ..
            }
        ),
        "{g:?}"
    );
    let m = request(&h, Selection::Clipboard, ClipboardType::Utf8Text);
    assert_eq!(
        m,
        Message::Clipboard {
            selection: Selection::Clipboard,
            type_: ClipboardType::Utf8Text,
            data: second.to_vec()
        }
    );
    // a type not offered is answered NONE
    let m = request(&h, Selection::Clipboard, ClipboardType::ImagePng);
    assert!(
        matches!(
            m,
            Message::Clipboard {
                type_: ClipboardType::None,
                ..
            }
        ),
        "{m:?}"
    );

    // PRIMARY has its own serial
    let prim = "primary ✓ ü".as_bytes();
    xclip_set(&h.x.display, "primary", None, prim);
    let g = h
        .rec
        .take(PASTE, is_grab(Selection::Primary))
        .expect("no primary grab");
    assert!(
        matches!(
            g,
            Message::ClipboardGrab {
                serial: Some(0),
                ..
            }
        ),
        "{g:?}"
    );
    let m = request(&h, Selection::Primary, ClipboardType::Utf8Text);
    assert!(
        matches!(&m, Message::Clipboard { data, .. } if data == prim),
        "{m:?}"
    );
}

#[test]
fn primary_needs_the_selection_cap() {
    let h = default_harness();
    h.clip
        .client_caps(&Caps::with(&[cap::CLIPBOARD_BY_DEMAND]), true);
    xclip_set(&h.x.display, "primary", None, b"p");
    xclip_set(&h.x.display, "clipboard", None, b"c");
    h.rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no clipboard grab");
    assert_eq!(h.rec.count(is_grab(Selection::Primary)), 0);
    // without CLIPBOARD_BY_DEMAND nothing is announced
    h.clip.client_caps(&Caps::with(&[]), true);
    xclip_set(&h.x.display, "clipboard", None, b"d");
    assert!(h
        .rec
        .take(Duration::from_secs(1), is_grab(Selection::Clipboard))
        .is_none());
}

#[test]
fn big_guest_text_is_read_through_incr() {
    let h = default_harness();
    // xclip switches to INCR at about 1 MiB (its maximum request size / 4)
    let big = text_of((1 << 20) + 50_000);
    xclip_set(&h.x.display, "clipboard", None, &big);
    h.rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab");
    let m = request(&h, Selection::Clipboard, ClipboardType::Utf8Text);
    let Message::Clipboard { type_, data, .. } = m else {
        unreachable!()
    };
    assert_eq!(type_, ClipboardType::Utf8Text);
    assert_eq!(data.len(), big.len());
    assert!(data == big, "INCR data differ");
}

#[test]
fn guest_owner_going_away_releases_at_once() {
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{ConnectionExt, CreateWindowAux, WindowClass};

    let h = default_harness();
    xclip_set(&h.x.display, "clipboard", None, b"bye");
    h.rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab");
    // A new owner that answers nothing (not even TARGETS), and whose client then exits.
    let (conn, screen) = x11rb::connect(Some(&h.x.display)).expect("connect");
    let root = conn.setup().roots[screen].root;
    let w = conn.generate_id().expect("id");
    conn.create_window(
        0,
        w,
        root,
        0,
        0,
        1,
        1,
        0,
        WindowClass::INPUT_ONLY,
        0,
        &CreateWindowAux::new(),
    )
    .expect("window");
    let clip = conn
        .intern_atom(false, b"CLIPBOARD")
        .expect("atom")
        .reply()
        .expect("atom")
        .atom;
    conn.set_selection_owner(w, clip, x11rb::CURRENT_TIME)
        .expect("own");
    conn.get_selection_owner(clip)
        .expect("owner")
        .reply()
        .expect("owner");
    thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    drop(conn);
    // The TARGETS conversion of the dead owner is abandoned (not left to the 10 s timeout)
    // and the client hears that the old offer is gone.
    let r = h
        .rec
        .take(PASTE, |m| matches!(m, Message::ClipboardRelease { .. }))
        .expect("no release when the owner went away");
    assert_eq!(
        r,
        Message::ClipboardRelease {
            selection: Selection::Clipboard
        }
    );
    xclip_set(&h.x.display, "clipboard", None, b"next");
    h.rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab for the next owner");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the dead owner's conversion blocked the selection for {:?}",
        t.elapsed()
    );
    let m = request(&h, Selection::Clipboard, ClipboardType::Utf8Text);
    assert!(
        matches!(&m, Message::Clipboard { data, .. } if data == b"next"),
        "{m:?}"
    );
}

#[test]
fn dropping_the_bridge_gives_up_the_selection() {
    let Harness { x, rec, clip } = default_harness();
    clip.client_message(Message::ClipboardGrab {
        selection: Selection::Clipboard,
        serial: Some(0),
        types: vec![ClipboardType::Utf8Text],
    });
    let deadline = Instant::now() + PASTE;
    while !xclip_get(&x.display, "clipboard", Some("TARGETS"), PASTE).0 {
        assert!(Instant::now() < deadline, "grab not applied");
        thread::sleep(Duration::from_millis(50));
    }
    drop(Arc::into_inner(clip).expect("one reference"));
    thread::sleep(Duration::from_millis(300));
    let (ok, _) = xclip_get(&x.display, "clipboard", Some("TARGETS"), PASTE);
    assert!(
        !ok,
        "the selection is still owned after the bridge was dropped"
    );
    drop(rec);
}

// ----- tests: client → guest ----------------------------------------------------------------

#[test]
fn client_text_is_pasted_in_the_guest() {
    let h = default_harness();
    let text = "vom Client: naïve café ✓ 中文".as_bytes().to_vec();
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, text.clone())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, "clipboard", None, &text);
    paste_eventually(&h, "clipboard", Some("UTF8_STRING"), &text);
    paste_eventually(&h, "clipboard", Some("text/plain;charset=utf-8"), &text);
    // STRING is ISO 8859-1; characters outside it become '?'
    let latin1: Vec<u8> = String::from_utf8(text.clone())
        .expect("utf8")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect();
    paste_eventually(&h, "clipboard", Some("STRING"), &latin1);
    let (ok, targets) = xclip_get(&h.x.display, "clipboard", Some("TARGETS"), PASTE);
    assert!(ok);
    let targets = String::from_utf8_lossy(&targets);
    for t in ["TARGETS", "UTF8_STRING", "STRING", "TEXT"] {
        assert!(
            targets.lines().any(|l| l == t),
            "{t} missing from {targets}"
        );
    }
    // PRIMARY too
    client_grab(&h, Selection::Primary, 0, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, "primary", None, &text);
}

#[test]
fn several_pending_requests_are_all_served() {
    let h = default_harness();
    let text = "pending ✓".as_bytes().to_vec();
    let (w, hh, rgb) = pixels();
    let png = encode_png(w, hh, &rgb);
    let _a = Answerer::start_delayed(
        &h,
        vec![
            (ClipboardType::Utf8Text, text.clone()),
            (ClipboardType::ImagePng, png.clone()),
        ],
        Duration::from_millis(700),
    );
    client_grab(
        &h,
        Selection::Clipboard,
        0,
        vec![ClipboardType::Utf8Text, ClipboardType::ImagePng],
    );
    let deadline = Instant::now() + PASTE;
    while !xclip_get(&h.x.display, "clipboard", Some("TARGETS"), PASTE).0 {
        assert!(Instant::now() < deadline, "grab not applied");
        thread::sleep(Duration::from_millis(50));
    }
    // All in flight at once, while the client takes its time.
    let pastes: Vec<_> = [
        (Some("UTF8_STRING"), text.clone()),
        (None, text.clone()),
        (Some("TEXT"), text.clone()),
        (Some("image/png"), png.clone()),
        (Some("image/png"), png.clone()),
    ]
    .into_iter()
    .map(|(target, want)| {
        let display = h.x.display.clone();
        thread::spawn(move || {
            let (ok, out) = xclip_get(&display, "clipboard", target, PASTE);
            assert!(
                ok && out == want,
                "{target:?}: ok={ok}, {} bytes",
                out.len()
            );
        })
    })
    .collect();
    for p in pastes {
        p.join().expect("paste failed");
    }
}

#[test]
fn big_client_text_is_served_with_incr() {
    let h = default_harness();
    let big = text_of(3 << 20);
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, big.clone())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, "clipboard", None, &big);
    // twice: the second comes from the cache
    paste_eventually(&h, "clipboard", None, &big);
}

#[test]
fn wrong_serial_is_discarded() {
    let h = default_harness();
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, b"accepted".to_vec())]);
    client_grab(&h, Selection::Clipboard, 5, vec![ClipboardType::Utf8Text]);
    thread::sleep(Duration::from_millis(300));
    let (ok, out) = xclip_get(&h.x.display, "clipboard", None, PASTE);
    assert!(
        !ok && out.is_empty(),
        "a grab with a wrong serial was applied"
    );
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, "clipboard", None, b"accepted");
    // counter is 1 now: serial 0 (= counter - 1) is accepted without increment, 1 then too
    drop(_a);
    let _b = Answerer::start(&h, vec![(ClipboardType::Utf8Text, b"second".to_vec())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, "clipboard", None, b"second");
    drop(_b);
    let _c = Answerer::start(&h, vec![(ClipboardType::Utf8Text, b"third".to_vec())]);
    client_grab(&h, Selection::Clipboard, 1, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, "clipboard", None, b"third");
    drop(_c);
    // serial 1 again is stale now (counter 2): still "third"
    let _d = Answerer::start(&h, vec![(ClipboardType::Utf8Text, b"stale".to_vec())]);
    client_grab(&h, Selection::Clipboard, 7, vec![ClipboardType::Utf8Text]);
    thread::sleep(Duration::from_millis(300));
    paste_eventually(&h, "clipboard", None, b"third");
}

#[test]
fn guest_grab_serials_follow_accepted_client_grabs() {
    let h = default_harness();
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    thread::sleep(Duration::from_millis(300));
    xclip_set(&h.x.display, "clipboard", None, b"guest");
    let g = h
        .rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab");
    assert!(
        matches!(
            g,
            Message::ClipboardGrab {
                serial: Some(1),
                ..
            }
        ),
        "{g:?}"
    );
    // a new client session starts over
    h.clip.client_caps(&full_caps(), true);
    let g = h
        .rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no re-announce");
    assert!(
        matches!(
            g,
            Message::ClipboardGrab {
                serial: Some(0),
                ..
            }
        ),
        "{g:?}"
    );
}

#[test]
fn silent_client_times_out_and_the_bridge_recovers() {
    let h = harness(ClipboardLimits {
        request_timeout: Duration::from_millis(1500),
        ..ClipboardLimits::default()
    });
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let (ok, out) = xclip_get(&h.x.display, "clipboard", None, Duration::from_secs(10));
    assert!(!ok && out.is_empty(), "got {out:?}");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "xclip was not refused in time"
    );
    h.rec.take(PASTE, is_request).expect("no request was sent");
    // the late answer is dropped; the next paste works
    h.clip.client_message(Message::Clipboard {
        selection: Selection::Clipboard,
        type_: ClipboardType::Utf8Text,
        data: b"late".to_vec(),
    });
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, b"on time".to_vec())]);
    paste_eventually(&h, "clipboard", None, b"on time");
}

#[test]
fn client_data_above_the_limit_is_refused() {
    let h = harness(ClipboardLimits {
        max_bytes: 64 * 1024,
        ..ClipboardLimits::default()
    });
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, text_of(100_000))]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    thread::sleep(Duration::from_millis(300));
    let (ok, out) = xclip_get(&h.x.display, "clipboard", None, PASTE);
    assert!(!ok && out.is_empty(), "oversized client data were served");
}

#[test]
fn guest_data_above_the_limits_is_answered_none() {
    let h = harness(ClipboardLimits {
        max_bytes: 64 * 1024,
        ..ClipboardLimits::default()
    });
    xclip_set(&h.x.display, "clipboard", None, &text_of(100_000));
    h.rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab");
    let m = request(&h, Selection::Clipboard, ClipboardType::Utf8Text);
    assert!(
        matches!(
            m,
            Message::Clipboard {
                type_: ClipboardType::None,
                ..
            }
        ),
        "{m:?}"
    );
    // the client's MAX_CLIPBOARD applies too
    xclip_set(&h.x.display, "clipboard", None, b"twenty bytes of text");
    h.rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab");
    h.clip.client_message(Message::MaxClipboard(10));
    let m = request(&h, Selection::Clipboard, ClipboardType::Utf8Text);
    assert!(
        matches!(
            m,
            Message::Clipboard {
                type_: ClipboardType::None,
                ..
            }
        ),
        "{m:?}"
    );
    h.clip.client_message(Message::MaxClipboard(-1));
    let m = request(&h, Selection::Clipboard, ClipboardType::Utf8Text);
    assert!(
        matches!(&m, Message::Clipboard { data, .. } if data == b"twenty bytes of text"),
        "{m:?}"
    );
}

#[test]
fn unrequested_data_is_dropped() {
    let h = default_harness();
    h.clip.client_message(Message::Clipboard {
        selection: Selection::Clipboard,
        type_: ClipboardType::Utf8Text,
        data: b"unasked".to_vec(),
    });
    let text = b"asked".to_vec();
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, text.clone())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, "clipboard", None, &text);
}

#[test]
fn client_disconnect_and_release_give_up_the_selection() {
    let h = default_harness();
    let _a = Answerer::start(&h, vec![(ClipboardType::Utf8Text, b"mine".to_vec())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, "clipboard", None, b"mine");
    h.clip.client_message(Message::ClipboardRelease {
        selection: Selection::Clipboard,
    });
    thread::sleep(Duration::from_millis(300));
    let (ok, _) = xclip_get(&h.x.display, "clipboard", None, PASTE);
    assert!(!ok, "selection still served after RELEASE");
    client_grab(&h, Selection::Clipboard, 1, vec![ClipboardType::Utf8Text]);
    paste_eventually(&h, "clipboard", None, b"mine");
    h.clip.client_disconnected();
    thread::sleep(Duration::from_millis(300));
    let (ok, _) = xclip_get(&h.x.display, "clipboard", None, PASTE);
    assert!(!ok, "selection still served after the client left");
}

// ----- tests: images ------------------------------------------------------------------------

#[test]
fn guest_png_reaches_the_client_unchanged() {
    let h = default_harness();
    let (w, hh, rgb) = pixels();
    let png = encode_png(w, hh, &rgb);
    xclip_set(&h.x.display, "clipboard", Some("image/png"), &png);
    let g = h
        .rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab");
    assert!(
        matches!(&g, Message::ClipboardGrab { types, .. } if types.contains(&ClipboardType::ImagePng)),
        "{g:?}"
    );
    let m = request(&h, Selection::Clipboard, ClipboardType::ImagePng);
    assert!(
        matches!(&m, Message::Clipboard { type_: ClipboardType::ImagePng, data, .. } if *data == png)
    );
}

#[test]
fn guest_bmp_is_offered_and_sent_as_png() {
    let h = default_harness();
    let (w, hh, rgb) = pixels();
    xclip_set(
        &h.x.display,
        "clipboard",
        Some("image/bmp"),
        &encode_bmp24(w, hh, &rgb),
    );
    let g = h
        .rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab");
    let Message::ClipboardGrab { types, .. } = g else {
        unreachable!()
    };
    assert!(types.contains(&ClipboardType::ImagePng), "{types:?}");
    assert!(types.contains(&ClipboardType::ImageBmp), "{types:?}");
    let m = request(&h, Selection::Clipboard, ClipboardType::ImagePng);
    let Message::Clipboard { type_, data, .. } = m else {
        unreachable!()
    };
    assert_eq!(type_, ClipboardType::ImagePng);
    assert_eq!(decode_png(&data), (w, hh, rgb));
}

#[test]
fn client_png_is_served_as_png_and_bmp() {
    let h = default_harness();
    let (w, hh, rgb) = pixels();
    let png = encode_png(w, hh, &rgb);
    let _a = Answerer::start(&h, vec![(ClipboardType::ImagePng, png.clone())]);
    client_grab(&h, Selection::Clipboard, 0, vec![ClipboardType::ImagePng]);
    paste_eventually(&h, "clipboard", Some("image/png"), &png);
    let (ok, bmp) = xclip_get(&h.x.display, "clipboard", Some("image/bmp"), PASTE);
    assert!(ok, "image/bmp not served");
    assert_eq!(decode_bmp(&bmp), (w, hh, rgb));
}

// ----- a guest application that never answers ------------------------------------------------

#[test]
fn silent_guest_owner_gets_a_none_answer() {
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{
        AtomEnum, ConnectionExt, CreateWindowAux, EventMask, PropMode, SelectionNotifyEvent,
        WindowClass, SELECTION_NOTIFY_EVENT,
    };
    use x11rb::protocol::Event;
    use x11rb::wrapper::ConnectionExt as _;

    let h = harness(ClipboardLimits {
        request_timeout: Duration::from_millis(1500),
        ..ClipboardLimits::default()
    });
    // An owner that answers TARGETS (UTF8_STRING) and never delivers the data.
    let (conn, screen) = x11rb::connect(Some(&h.x.display)).expect("connect");
    let root = conn.setup().roots[screen].root;
    let w = conn.generate_id().expect("id");
    conn.create_window(
        0,
        w,
        root,
        0,
        0,
        1,
        1,
        0,
        WindowClass::INPUT_ONLY,
        0,
        &CreateWindowAux::new(),
    )
    .expect("window");
    let atom = |n: &str| {
        conn.intern_atom(false, n.as_bytes())
            .expect("atom")
            .reply()
            .expect("atom")
            .atom
    };
    let (clipboard, targets, utf8) = (atom("CLIPBOARD"), atom("TARGETS"), atom("UTF8_STRING"));
    conn.set_selection_owner(w, clipboard, x11rb::CURRENT_TIME)
        .expect("own");
    conn.flush().expect("flush");
    let conn = Arc::new(conn);
    let c2 = conn.clone();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let owner = thread::spawn(move || {
        while !done2.load(Ordering::SeqCst) {
            let Ok(Some(ev)) = c2.poll_for_event() else {
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            if let Event::SelectionRequest(r) = ev {
                if r.target == targets {
                    c2.change_property32(
                        PropMode::REPLACE,
                        r.requestor,
                        r.property,
                        AtomEnum::ATOM,
                        &[targets, utf8],
                    )
                    .expect("prop");
                    let n = SelectionNotifyEvent {
                        response_type: SELECTION_NOTIFY_EVENT,
                        sequence: 0,
                        time: r.time,
                        requestor: r.requestor,
                        selection: r.selection,
                        target: r.target,
                        property: r.property,
                    };
                    c2.send_event(false, r.requestor, EventMask::NO_EVENT, n)
                        .expect("send");
                    c2.flush().expect("flush");
                }
            }
        }
    });
    h.rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab");
    let t = Instant::now();
    let m = request(&h, Selection::Clipboard, ClipboardType::Utf8Text);
    assert!(
        matches!(
            m,
            Message::Clipboard {
                type_: ClipboardType::None,
                ..
            }
        ),
        "{m:?}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "answered before the timeout?"
    );
    done.store(true, Ordering::SeqCst);
    let _ = owner.join();
    // still working: a real owner now
    xclip_set(&h.x.display, "clipboard", None, b"after");
    h.rec
        .take(PASTE, is_grab(Selection::Clipboard))
        .expect("no grab");
    let m = request(&h, Selection::Clipboard, ClipboardType::Utf8Text);
    assert!(
        matches!(&m, Message::Clipboard { data, .. } if data == b"after"),
        "{m:?}"
    );
}
