//! What the clipboard tests (X11, Wayland) share: a recording Spice client, test data and
//! image codecs written independently of the agent's.

#![allow(dead_code)] // each test crate uses a part

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use spice_agent::protocol::{cap, Caps, ClipboardType, Message, Selection};
use spice_agent::session::clipboard::ClipboardBackend;
use spice_agent::session::HostSink;

// ----- the client side ----------------------------------------------------------------------

/// The Spice client's end: records every message the bridge sends.
#[derive(Default)]
pub struct Recorder {
    pub msgs: Mutex<Vec<Message>>,
    pub cv: Condvar,
}

impl HostSink for Recorder {
    fn send(&self, msg: Message) {
        self.msgs.lock().expect("lock").push(msg);
        self.cv.notify_all();
    }
}

impl Recorder {
    /// Removes and returns the first message matching `pred`, waiting up to `timeout`.
    pub fn take(&self, timeout: Duration, pred: impl Fn(&Message) -> bool) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        let mut msgs = self.msgs.lock().expect("lock");
        loop {
            if let Some(pos) = msgs.iter().position(&pred) {
                return Some(msgs.remove(pos));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            msgs = self.cv.wait_timeout(msgs, deadline - now).expect("lock").0;
        }
    }

    pub fn count(&self, pred: impl Fn(&Message) -> bool) -> usize {
        self.msgs
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| pred(m))
            .count()
    }
}

pub fn is_grab(sel: Selection) -> impl Fn(&Message) -> bool {
    move |m| matches!(m, Message::ClipboardGrab { selection, .. } if *selection == sel)
}

pub fn is_data(sel: Selection) -> impl Fn(&Message) -> bool {
    move |m| matches!(m, Message::Clipboard { selection, .. } if *selection == sel)
}

pub fn is_request(m: &Message) -> bool {
    matches!(m, Message::ClipboardRequest { .. })
}

/// A client with the by-demand clipboard, both selections and grab serials.
pub fn full_caps() -> Caps {
    Caps::with(&[
        cap::CLIPBOARD_BY_DEMAND,
        cap::CLIPBOARD_SELECTION,
        cap::CLIPBOARD_GRAB_SERIAL,
    ])
}

/// About `len` bytes of multilingual UTF-8 text.
pub fn text_of(len: usize) -> Vec<u8> {
    let unit = "Grüße, 世界! ✓ line\n";
    let mut s = String::new();
    while s.len() < len {
        s.push_str(unit);
    }
    s.into_bytes()
}

// ----- images -------------------------------------------------------------------------------

/// A 37×23 RGB gradient (odd width: BMP rows need padding).
pub fn pixels() -> (u32, u32, Vec<u8>) {
    let (w, h) = (37u32, 23u32);
    let mut px = vec![];
    for y in 0..h {
        for x in 0..w {
            px.extend_from_slice(&[(x * 7) as u8, (y * 11) as u8, (x * y) as u8]);
        }
    }
    (w, h, px)
}

pub fn encode_png(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().expect("png header");
    wr.write_image_data(rgb).expect("png data");
    wr.finish().expect("png finish");
    out
}

/// PNG → (width, height, RGB).
pub fn decode_png(data: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut dec = png::Decoder::new(data);
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut r = dec.read_info().expect("png info");
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).expect("png frame");
    let ch = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let mut rgb = vec![];
    for row in buf.chunks(info.line_size).take(info.height as usize) {
        for p in row[..info.width as usize * ch].chunks(ch) {
            rgb.extend_from_slice(&p[..3]);
        }
    }
    (info.width, info.height, rgb)
}

/// A 24-bit bottom-up BI_RGB BMP file.
pub fn encode_bmp24(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let stride = (w as usize * 3).div_ceil(4) * 4;
    let size = 54 + stride * h as usize;
    let mut b = b"BM".to_vec();
    b.extend_from_slice(&(size as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&54u32.to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.extend_from_slice(&(w as i32).to_le_bytes());
    b.extend_from_slice(&(h as i32).to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[0; 24]);
    for y in (0..h as usize).rev() {
        let mut row = vec![];
        for p in rgb[y * w as usize * 3..(y + 1) * w as usize * 3].chunks(3) {
            row.extend_from_slice(&[p[2], p[1], p[0]]);
        }
        row.resize(stride, 0);
        b.extend_from_slice(&row);
    }
    b
}

/// Reads a 24/32-bit uncompressed BMP file (either row order) → (width, height, RGB).
pub fn decode_bmp(b: &[u8]) -> (u32, u32, Vec<u8>) {
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    assert_eq!(&b[..2], b"BM", "not a BMP file");
    let off = u32_at(10) as usize;
    let w = u32_at(18) as i32;
    let h = u32_at(22) as i32;
    let bpp = u16::from_le_bytes([b[28], b[29]]) as usize;
    assert!(bpp == 24 || bpp == 32, "bpp {bpp}");
    let (w, hh) = (w as usize, h.unsigned_abs() as usize);
    let stride = (w * bpp / 8).div_ceil(4) * 4;
    let mut rgb = vec![];
    for y in 0..hh {
        let src = if h > 0 { hh - 1 - y } else { y };
        let row = &b[off + src * stride..off + src * stride + w * bpp / 8];
        for p in row.chunks(bpp / 8) {
            rgb.extend_from_slice(&[p[2], p[1], p[0]]);
        }
    }
    (w as u32, hh as u32, rgb)
}

// ----- the client driving a bridge ----------------------------------------------------------

/// How long a paste, or the answer to a request, may take.
pub const PASTE: Duration = Duration::from_secs(20);

/// A test's bridge under test and the recording client it sends to.
pub trait Bridge {
    /// The client's recorder.
    fn recorder(&self) -> Arc<Recorder>;
    /// The bridge (X11 or Wayland).
    fn backend(&self) -> Arc<dyn ClipboardBackend>;
}

/// A client that answers every REQUEST from `data` (by type) until dropped.
pub struct Answerer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Answerer {
    pub fn start(h: &impl Bridge, data: Vec<(ClipboardType, Vec<u8>)>) -> Answerer {
        Answerer::start_delayed(h, data, Duration::ZERO)
    }

    /// Like [`Answerer::start`], each answer `delay` after its request.
    pub fn start_delayed(
        h: &impl Bridge,
        data: Vec<(ClipboardType, Vec<u8>)>,
        delay: Duration,
    ) -> Answerer {
        let stop = Arc::new(AtomicBool::new(false));
        let (rec, clip, stop2) = (h.recorder(), h.backend(), stop.clone());
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Some(Message::ClipboardRequest { selection, type_ }) =
                    rec.take(Duration::from_millis(50), is_request)
                else {
                    continue;
                };
                thread::sleep(delay);
                let answer = data.iter().find(|(t, _)| *t == type_);
                clip.client_message(match answer {
                    Some((t, d)) => Message::Clipboard {
                        selection,
                        type_: *t,
                        data: d.clone(),
                    },
                    None => Message::Clipboard {
                        selection,
                        type_: ClipboardType::None,
                        data: vec![],
                    },
                });
            }
        });
        Answerer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The client grabs `selection` with `serial`, offering `types`.
pub fn client_grab(h: &impl Bridge, selection: Selection, serial: u32, types: Vec<ClipboardType>) {
    h.backend().client_message(Message::ClipboardGrab {
        selection,
        serial: Some(serial),
        types,
    });
}

/// The client requests `type_` of `selection`; the bridge's answer.
pub fn request(h: &impl Bridge, selection: Selection, type_: ClipboardType) -> Message {
    h.backend()
        .client_message(Message::ClipboardRequest { selection, type_ });
    h.recorder()
        .take(PASTE, is_data(selection))
        .expect("no answer to the request")
}
