//! The X11 clipboard bridge of the session agent: the CLIPBOARD and PRIMARY selections of the
//! guest's X display on one side, the Spice client's by-demand clipboard
//! (GRAB / REQUEST / CLIPBOARD / RELEASE, reference §3.3–3.4 and §7.1) on the other.
//!
//! # Design
//!
//! [`X11Clipboard::start`] opens its own X connection (x11rb's pure-Rust one), creates an
//! unmapped window that owns selections and receives conversions, asks XFixes for
//! selection-owner notifications on both selections, and starts two threads:
//!
//! - the **reader** blocks in `wait_for_event` and forwards every X event into a channel;
//! - the **worker** owns all state and handles, one at a time, X events, the client's
//!   messages (the public methods only push onto the same channel, so they never block), and
//!   deadlines (it waits on the channel with a timeout set to the nearest one).
//!
//! Nothing the worker does waits for another X client or for the Spice client: conversions
//! it asks of a guest application and requests it sends to the Spice client are state with
//! a deadline, finished by a later event or by the timeout. Only replies from the X server
//! itself (GetProperty, GetSelectionOwner) are waited for.
//!
//! **Guest → client.** A new owner that is not us → convert `TARGETS`, map the atoms to Spice
//! types and send GRAB with the selection's serial (an owner offering only BMP is announced
//! with PNG too: PNG is what Spice clients expect, the bridge converts). The owner gone →
//! RELEASE. A REQUEST from the client queues a conversion of the best atom for the type
//! (conversions run one at a time per selection, into a property of our window; INCR transfers
//! are followed chunk by chunk); the result, or `NONE` on failure, timeout or excess size, is
//! sent back: every request is answered.
//!
//! **Client → guest.** A GRAB that passes the serial rule makes our window the selection
//! owner. An application's SelectionRequest for `TARGETS`/`TIMESTAMP` is answered at once; a
//! data target sends REQUEST to the client (one per selection and type in flight; further X
//! requests for the same type join it) and stays pending until the data arrives or the
//! timeout refuses it. Data are kept for the current grab, so a second paste needs no round
//! trip. Data larger than one request allows are served with INCR.
//!
//! The grab serial is one counter per selection shared by both directions (reference §3.4):
//! our GRAB carries it and increments it; a client GRAB is taken when its serial equals the
//! counter (then incremented) or the counter − 1 (both sides grabbed at once: the client wins).
//!
//! An owner whose client or window goes away mid-conversion never answers: its conversion is
//! abandoned at once (not left to the timeout), and the conversion property is renamed after
//! every abandoned transfer so that a late writer cannot corrupt the next one.
//!
//! The Wayland counterpart is [`wayland`]; what both share (type mapping, serial rule, text
//! and image conversions) is in `common.rs`.
//!
//! Not bridged: SECONDARY, FILE_LIST (needs the WebDAV share), the `MULTIPLE` target (not
//! advertised), and line-ending conversion (the client does it from the GUEST_LINEEND caps).

mod common;
mod image;
pub mod wayland;

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use x11rb::connection::{Connection, RequestConnection};
use x11rb::errors::{ConnectError, ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::xfixes::{self, ConnectionExt as _, SelectionEventMask};
use x11rb::protocol::xproto::{
    self, Atom, AtomEnum, ChangeWindowAttributesAux, ClientMessageEvent, ConnectionExt as _,
    CreateWindowAux, EventMask, PropMode, Property, SelectionNotifyEvent, SelectionRequestEvent,
    Timestamp, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{COPY_DEPTH_FROM_PARENT, COPY_FROM_PARENT, CURRENT_TIME, NONE};

use super::HostSink;
use crate::protocol::{Caps, ClipboardType, Message, Selection};
use common::Conv;
pub use wayland::{WaylandClipboard, WaylandClipboardError};

/// What the session agent needs of a clipboard bridge, whichever the guest's display server
/// ([`X11Clipboard`], [`WaylandClipboard`]). Every method only queues work for the bridge's
/// own thread: none blocks.
pub trait ClipboardBackend: Send + Sync {
    /// The client's capabilities changed (ANNOUNCE_CAPABILITIES from the client). `new_client`
    /// is its `request` flag: a new client session, so the grab serials are reset and any grab
    /// the previous client held is dropped. A guest selection that is already owned is then
    /// announced to the client.
    fn client_caps(&self, caps: &Caps, new_client: bool);
    /// A clipboard message from the client: ClipboardGrab, ClipboardRequest, Clipboard (data),
    /// ClipboardRelease, MaxClipboard. Others are ignored.
    fn client_message(&self, msg: Message);
    /// The client went away: release what it owned in the guest.
    fn client_disconnected(&self);
}

/// Bounds on what the bridge moves and how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipboardLimits {
    /// The largest clipboard content taken from either side, in bytes (default 128 MiB).
    /// Guest data sent to the client is further bounded by the client's MAX_CLIPBOARD.
    pub max_bytes: usize,
    /// How long a guest application or the client may take to deliver data (default 10 s).
    pub request_timeout: Duration,
}

impl Default for ClipboardLimits {
    fn default() -> Self {
        ClipboardLimits {
            max_bytes: 128 << 20,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClipboardError {
    /// No connection to the X display.
    #[error("cannot connect to the X display: {0}")]
    Connect(#[from] ConnectError),
    /// The X connection failed.
    #[error("X connection failed: {0}")]
    Connection(#[from] ConnectionError),
    /// An X request failed.
    #[error("X request failed: {0}")]
    Reply(#[from] ReplyError),
    /// An X request that needed a new id failed.
    #[error("X request failed: {0}")]
    ReplyOrId(#[from] ReplyOrIdError),
    /// The X server has no XFixes extension (needed to follow selection owners).
    #[error("the X server has no XFixes extension")]
    NoXFixes,
    /// A thread could not be started.
    #[error("cannot start the clipboard thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The X11 clipboard bridge; see the [module documentation](self). Dropping it stops its
/// threads and closes its X connection (which gives up any selection it owns).
pub struct X11Clipboard {
    tx: mpsc::Sender<Cmd>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for X11Clipboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Clipboard").finish_non_exhaustive()
    }
}

/// What the worker thread handles.
enum Cmd {
    X(Event),
    XGone(String),
    Caps { caps: Caps, new_client: bool },
    Client(Message),
    Disconnected,
    Shutdown,
}

impl X11Clipboard {
    /// Connects to the X display (`None` = `$DISPLAY`), starts its own threads for X events.
    /// Nothing is sent to `host` before [`client_caps`](Self::client_caps) announces a client
    /// with CLIPBOARD_BY_DEMAND.
    pub fn start(
        display: Option<&str>,
        host: Arc<dyn HostSink>,
        limits: ClipboardLimits,
    ) -> Result<X11Clipboard, ClipboardError> {
        let (conn, screen) = RustConnection::connect(display)?;
        let conn = Arc::new(conn);
        let root = conn
            .setup()
            .roots
            .get(screen)
            .map(|s| s.root)
            .ok_or(ClipboardError::Connect(ConnectError::InvalidScreen))?;
        if conn
            .extension_information(xfixes::X11_EXTENSION_NAME)?
            .is_none()
        {
            return Err(ClipboardError::NoXFixes);
        }
        conn.xfixes_query_version(5, 0)?.reply()?;
        let win = conn.generate_id()?;
        conn.create_window(
            COPY_DEPTH_FROM_PARENT,
            win,
            root,
            -10,
            -10,
            1,
            1,
            0,
            WindowClass::INPUT_OUTPUT,
            COPY_FROM_PARENT,
            &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
        )?;
        let atoms = Atoms::intern(&conn)?;
        for sel in [atoms.clipboard, atoms.primary] {
            conn.xfixes_select_selection_input(
                root,
                sel,
                SelectionEventMask::SET_SELECTION_OWNER
                    | SelectionEventMask::SELECTION_WINDOW_DESTROY
                    | SelectionEventMask::SELECTION_CLIENT_CLOSE,
            )?;
        }
        conn.flush()?;
        // Chunks of at most 256 KiB, and never more than one request can carry (less a margin
        // for the ChangeProperty header).
        let chunk = conn
            .maximum_request_bytes()
            .saturating_sub(400)
            .clamp(4096, 262_144);

        let (tx, rx) = mpsc::channel();
        let reader_conn = Arc::clone(&conn);
        let reader_tx = tx.clone();
        thread::Builder::new()
            .name("clipboard-x11-events".into())
            .spawn(move || loop {
                match reader_conn.wait_for_event() {
                    Ok(ev) => {
                        if reader_tx.send(Cmd::X(ev)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = reader_tx.send(Cmd::XGone(e.to_string()));
                        break;
                    }
                }
            })
            .map_err(ClipboardError::Thread)?;

        let worker = Worker {
            sels: [
                Sel::new(Selection::Clipboard, atoms.clipboard, atoms.prop_clipboard),
                Sel::new(Selection::Primary, atoms.primary, atoms.prop_primary),
            ],
            conn,
            win,
            atoms,
            host,
            limits,
            caps: None,
            client_max: None,
            chunk,
            client_reqs: Vec::new(),
            xreqs: Vec::new(),
            incr_out: Vec::new(),
            x_alive: true,
            offer_ids: 0,
            prop_rotation: 0,
        };
        let worker = thread::Builder::new()
            .name("clipboard".into())
            .spawn(move || worker.run(rx))
            .map_err(ClipboardError::Thread)?;
        Ok(X11Clipboard {
            tx,
            worker: Some(worker),
        })
    }

    /// The client's capabilities changed (ANNOUNCE_CAPABILITIES from the client). `new_client`
    /// is its `request` flag: a new client session, so the grab serials are reset and any grab
    /// the previous client held is dropped. A guest selection that is already owned is then
    /// announced to the client.
    pub fn client_caps(&self, caps: &Caps, new_client: bool) {
        self.send(Cmd::Caps {
            caps: caps.clone(),
            new_client,
        });
    }

    /// A clipboard message from the client: ClipboardGrab, ClipboardRequest, Clipboard (data),
    /// ClipboardRelease, MaxClipboard. Others are ignored.
    pub fn client_message(&self, msg: Message) {
        self.send(Cmd::Client(msg));
    }

    /// The client went away: release what it owned in the guest.
    pub fn client_disconnected(&self) {
        self.send(Cmd::Disconnected);
    }

    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_err() {
            tracing::warn!("clipboard: worker thread is gone, message dropped");
        }
    }
}

impl ClipboardBackend for X11Clipboard {
    fn client_caps(&self, caps: &Caps, new_client: bool) {
        X11Clipboard::client_caps(self, caps, new_client);
    }
    fn client_message(&self, msg: Message) {
        X11Clipboard::client_message(self, msg);
    }
    fn client_disconnected(&self) {
        X11Clipboard::client_disconnected(self);
    }
}

impl Drop for X11Clipboard {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// The atoms the bridge uses.
struct Atoms {
    clipboard: Atom,
    primary: Atom,
    targets: Atom,
    timestamp: Atom,
    incr: Atom,
    atom: Atom,
    integer: Atom,
    utf8_string: Atom,
    string: Atom,
    text: Atom,
    text_plain_utf8: Atom,
    text_plain: Atom,
    png: Atom,
    bmp: Atom,
    x_bmp: Atom,
    x_ms_bmp: Atom,
    x_win_bitmap: Atom,
    tiff: Atom,
    jpeg: Atom,
    prop_clipboard: Atom,
    prop_primary: Atom,
    wakeup: Atom,
}

impl Atoms {
    fn intern(conn: &RustConnection) -> Result<Atoms, ClipboardError> {
        const NAMES: [&str; 18] = [
            "CLIPBOARD",
            "TARGETS",
            "TIMESTAMP",
            "INCR",
            "UTF8_STRING",
            "TEXT",
            "text/plain;charset=utf-8",
            "text/plain",
            "image/png",
            "image/bmp",
            "image/x-bmp",
            "image/x-MS-bmp",
            "image/x-win-bitmap",
            "image/tiff",
            "image/jpeg",
            "SPICE_CLIPBOARD_CLIPBOARD",
            "SPICE_CLIPBOARD_PRIMARY",
            "SPICE_CLIPBOARD_WAKEUP",
        ];
        let cookies = NAMES
            .iter()
            .map(|n| conn.intern_atom(false, n.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut a = Vec::with_capacity(NAMES.len());
        for c in cookies {
            a.push(c.reply()?.atom);
        }
        Ok(Atoms {
            clipboard: a[0],
            primary: AtomEnum::PRIMARY.into(),
            targets: a[1],
            timestamp: a[2],
            incr: a[3],
            atom: AtomEnum::ATOM.into(),
            integer: AtomEnum::INTEGER.into(),
            utf8_string: a[4],
            string: AtomEnum::STRING.into(),
            text: a[5],
            text_plain_utf8: a[6],
            text_plain: a[7],
            png: a[8],
            bmp: a[9],
            x_bmp: a[10],
            x_ms_bmp: a[11],
            x_win_bitmap: a[12],
            tiff: a[13],
            jpeg: a[14],
            prop_clipboard: a[15],
            prop_primary: a[16],
            wakeup: a[17],
        })
    }

    /// The targets that carry a Spice type, best first.
    fn for_type(&self, t: ClipboardType) -> Vec<Atom> {
        match t {
            ClipboardType::Utf8Text => vec![
                self.utf8_string,
                self.text_plain_utf8,
                self.string,
                self.text,
                self.text_plain,
            ],
            ClipboardType::ImagePng => vec![self.png],
            ClipboardType::ImageBmp => self.bmps().to_vec(),
            ClipboardType::ImageTiff => vec![self.tiff],
            ClipboardType::ImageJpg => vec![self.jpeg],
            _ => vec![],
        }
    }

    fn bmps(&self) -> [Atom; 4] {
        [self.bmp, self.x_bmp, self.x_ms_bmp, self.x_win_bitmap]
    }
}

/// One type a guest owner offers: the atom to convert.
type Offered = common::Offered<Atom>;

/// A client grab we serve in the guest.
struct ClientOffer {
    id: u64,
    types: Vec<ClipboardType>,
    /// When our ownership started (from XFixes; 0 until known).
    since: Timestamp,
    /// Data received for this grab, by type.
    cache: Vec<(ClipboardType, Arc<Vec<u8>>)>,
}

/// A conversion asked of a guest owner.
#[derive(Debug, Clone, Copy)]
enum Job {
    /// `TARGETS` of the owner of generation `gen`.
    Targets { gen: u64 },
    /// Data for a client REQUEST of `type_`.
    Data {
        type_: ClipboardType,
        atom: Atom,
        bmp_to_png: bool,
    },
}

impl Job {
    fn target(&self, atoms: &Atoms) -> Atom {
        match *self {
            Job::Targets { .. } => atoms.targets,
            Job::Data { atom, .. } => atom,
        }
    }
}

/// The conversion in progress on a selection.
struct Active {
    job: Job,
    deadline: Instant,
    /// Set once the owner answered with INCR: the property type of the chunks and the bytes.
    incr: Option<(Atom, Vec<u8>)>,
}

/// One selection's state.
struct Sel {
    which: Selection,
    atom: Atom,
    /// The property of our window conversions land in (renamed after an abandoned transfer,
    /// so a late owner cannot write into the next one).
    prop: Atom,
    serial: u32,
    /// Incremented on every owner change: a TARGETS answer for an older owner is dropped.
    gen: u64,
    /// What we announced to the client for the current guest owner.
    guest_offer: Option<Vec<Offered>>,
    jobs: VecDeque<Job>,
    active: Option<Active>,
    client_offer: Option<ClientOffer>,
}

impl Sel {
    fn new(which: Selection, atom: Atom, prop: Atom) -> Sel {
        Sel {
            which,
            atom,
            prop,
            serial: 0,
            gen: 0,
            guest_offer: None,
            jobs: VecDeque::new(),
            active: None,
            client_offer: None,
        }
    }
}

/// A REQUEST sent to the client, not answered yet.
struct ClientReq {
    sel: usize,
    type_: ClipboardType,
    offer_id: u64,
    deadline: Instant,
}

/// A guest application's SelectionRequest waiting for client data.
struct XReq {
    sel: usize,
    type_: ClipboardType,
    conv: Conv,
    ev: SelectionRequestEvent,
}

/// An INCR transfer we serve to a guest application.
struct IncrOut {
    requestor: Window,
    property: Atom,
    type_: Atom,
    data: Arc<Vec<u8>>,
    offset: usize,
    deadline: Instant,
}

/// At most this many client REQUESTs wait per selection; more are answered NONE at once.
const MAX_QUEUED_JOBS: usize = 32;
/// The largest TARGETS list read from a guest application.
const MAX_TARGETS_BYTES: usize = 64 * 1024;

type XResult<T> = Result<T, ClipboardError>;

struct Worker {
    conn: Arc<RustConnection>,
    win: Window,
    atoms: Atoms,
    host: Arc<dyn HostSink>,
    limits: ClipboardLimits,
    caps: Option<Caps>,
    /// The client's MAX_CLIPBOARD, when it set a non-negative one.
    client_max: Option<usize>,
    /// Largest property written in one request.
    chunk: usize,
    sels: [Sel; 2],
    client_reqs: Vec<ClientReq>,
    xreqs: Vec<XReq>,
    incr_out: Vec<IncrOut>,
    x_alive: bool,
    offer_ids: u64,
    prop_rotation: u32,
}

fn sel_index(s: Selection) -> Option<usize> {
    match s {
        Selection::Clipboard => Some(0),
        Selection::Primary => Some(1),
        Selection::Secondary => None,
    }
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        self.serve(&rx);
        // Close the channel first, then wake the reader: it sees the closed channel and ends,
        // and the connection closes with the last reference, giving up our selections.
        drop(rx);
        if self.x_alive {
            let ev = ClientMessageEvent::new(32, self.win, self.atoms.wakeup, [0u32; 5]);
            let _ = self
                .conn
                .send_event(false, self.win, EventMask::NO_EVENT, ev);
            let _ = self.conn.flush();
        }
    }

    /// Handles commands and deadlines until shutdown.
    fn serve(&mut self, rx: &mpsc::Receiver<Cmd>) {
        loop {
            let cmd = match self.next_deadline() {
                Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match cmd {
                Ok(Cmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.expire(Instant::now());
            if self.x_alive {
                if let Err(e) = self.conn.flush() {
                    self.x_gone(&e.to_string());
                }
            }
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        let r = match cmd {
            Cmd::X(ev) => self.on_x_event(ev),
            Cmd::XGone(e) => {
                self.x_gone(&e);
                Ok(())
            }
            Cmd::Caps { caps, new_client } => self.on_caps(caps, new_client),
            Cmd::Client(msg) => self.on_client(msg),
            Cmd::Disconnected => self.on_disconnected(),
            Cmd::Shutdown => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!("clipboard: {e}");
        }
    }

    fn x_gone(&mut self, why: &str) {
        if !self.x_alive {
            return;
        }
        tracing::warn!("clipboard: X connection lost ({why}); clipboard disabled");
        self.x_alive = false;
        for i in 0..self.sels.len() {
            let s = &mut self.sels[i];
            let mut failed: Vec<Job> = s.jobs.drain(..).collect();
            failed.extend(s.active.take().map(|a| a.job));
            s.client_offer = None;
            for job in failed {
                self.answer_job(i, job, None);
            }
            if self.sels[i].guest_offer.take().is_some() {
                self.send_release(i);
            }
        }
        self.xreqs.clear();
        self.incr_out.clear();
    }

    // ----- capabilities and helpers -------------------------------------------------------

    /// Whether selection `i` is bridged with the current client.
    fn enabled(&self, i: usize) -> bool {
        common::selection_enabled(self.caps.as_ref(), i)
    }

    /// The largest guest content sent to the client.
    fn send_limit(&self) -> usize {
        self.client_max
            .map_or(self.limits.max_bytes, |m| m.min(self.limits.max_bytes))
    }

    fn send_release(&self, i: usize) {
        if self.enabled(i) {
            self.host.send(Message::ClipboardRelease {
                selection: self.sels[i].which,
            });
        }
    }

    fn on_caps(&mut self, caps: Caps, new_client: bool) -> XResult<()> {
        let was: Vec<bool> = (0..2).map(|i| self.enabled(i)).collect();
        self.caps = Some(caps);
        if new_client {
            self.reset_client()?;
        }
        for (i, &was_enabled) in was.iter().enumerate() {
            let now = self.enabled(i);
            if !now {
                self.drop_client_offer(i)?;
                self.sels[i].guest_offer = None;
            } else if (new_client || !was_enabled) && self.x_alive {
                // Tell the (new) client about a guest owner it has not heard of.
                let owner = self
                    .conn
                    .get_selection_owner(self.sels[i].atom)?
                    .reply()?
                    .owner;
                if owner != NONE && owner != self.win {
                    self.new_guest_owner(i)?;
                }
            }
        }
        Ok(())
    }

    /// Forgets the previous client: serials, its grabs, its pending requests.
    fn reset_client(&mut self) -> XResult<()> {
        for i in 0..self.sels.len() {
            self.sels[i].serial = 0;
            self.sels[i].guest_offer = None;
            self.drop_client_offer(i)?;
        }
        self.client_reqs.clear();
        let xreqs = std::mem::take(&mut self.xreqs);
        for x in xreqs {
            self.refuse(&x.ev)?;
        }
        Ok(())
    }

    fn on_disconnected(&mut self) -> XResult<()> {
        self.reset_client()?;
        self.caps = None;
        self.client_max = None;
        for s in &mut self.sels {
            // Nobody is left to answer.
            s.jobs.clear();
        }
        Ok(())
    }

    /// Stops serving a client grab, giving up the X selection if we still own it.
    fn drop_client_offer(&mut self, i: usize) -> XResult<()> {
        let Some(offer) = self.sels[i].client_offer.take() else {
            return Ok(());
        };
        if !self.x_alive {
            return Ok(());
        }
        let atom = self.sels[i].atom;
        if self.conn.get_selection_owner(atom)?.reply()?.owner == self.win {
            let time = if offer.since != 0 {
                offer.since
            } else {
                CURRENT_TIME
            };
            self.conn.set_selection_owner(NONE, atom, time)?;
        }
        Ok(())
    }

    // ----- client messages ----------------------------------------------------------------

    fn on_client(&mut self, msg: Message) -> XResult<()> {
        match msg {
            Message::ClipboardGrab {
                selection,
                serial,
                types,
            } => self.on_client_grab(selection, serial, types),
            Message::ClipboardRequest { selection, type_ } => {
                self.on_client_request(selection, type_)
            }
            Message::Clipboard {
                selection,
                type_,
                data,
            } => self.on_client_data(selection, type_, data),
            Message::ClipboardRelease { selection } => match sel_index(selection) {
                Some(i) => self.drop_client_offer(i),
                None => Ok(()),
            },
            Message::MaxClipboard(n) => {
                self.client_max = usize::try_from(n).ok();
                Ok(())
            }
            other => {
                tracing::debug!("clipboard: ignoring {other:?}");
                Ok(())
            }
        }
    }

    fn on_client_grab(
        &mut self,
        selection: Selection,
        serial: Option<u32>,
        types: Vec<ClipboardType>,
    ) -> XResult<()> {
        let Some(i) = sel_index(selection).filter(|&i| self.enabled(i)) else {
            tracing::warn!("clipboard: grab of {selection:?}, which is not bridged; ignored");
            return Ok(());
        };
        if !self.x_alive {
            return Ok(());
        }
        let s = &mut self.sels[i];
        if !common::take_client_serial(&mut s.serial, serial) {
            tracing::debug!(
                "clipboard: {selection:?} grab with serial {serial:?}, expected {}; discarded",
                s.serial
            );
            return Ok(());
        }
        s.gen += 1;
        s.guest_offer = None;
        // Client requests for the guest data queued behind: the client owns it now.
        let stale: Vec<Job> = s.jobs.drain(..).collect();
        self.offer_ids += 1;
        let id = self.offer_ids;
        let s = &mut self.sels[i];
        s.client_offer = Some(ClientOffer {
            id,
            types,
            since: 0,
            cache: Vec::new(),
        });
        let atom = s.atom;
        for job in stale {
            self.answer_job(i, job, None);
        }
        self.conn
            .set_selection_owner(self.win, atom, CURRENT_TIME)?;
        if self.conn.get_selection_owner(atom)?.reply()?.owner != self.win {
            tracing::warn!("clipboard: could not take {selection:?} ownership");
            self.sels[i].client_offer = None;
        }
        Ok(())
    }

    fn on_client_request(&mut self, selection: Selection, type_: ClipboardType) -> XResult<()> {
        let none = Message::Clipboard {
            selection,
            type_: ClipboardType::None,
            data: vec![],
        };
        let Some(i) = sel_index(selection) else {
            self.host.send(none);
            return Ok(());
        };
        let s = &mut self.sels[i];
        let offered = s
            .guest_offer
            .as_ref()
            .and_then(|o| o.iter().find(|o| o.type_ == type_).cloned());
        match offered {
            Some(o) if self.x_alive && s.jobs.len() < MAX_QUEUED_JOBS => {
                s.jobs.push_back(Job::Data {
                    type_,
                    atom: o.target,
                    bmp_to_png: o.bmp_to_png,
                });
                self.start_next(i)
            }
            _ => {
                tracing::debug!("clipboard: {selection:?} request for {type_:?} refused");
                self.host.send(none);
                Ok(())
            }
        }
    }

    fn on_client_data(
        &mut self,
        selection: Selection,
        type_: ClipboardType,
        data: Vec<u8>,
    ) -> XResult<()> {
        let Some(i) = sel_index(selection) else {
            tracing::warn!("clipboard: data for {selection:?}, never requested; dropped");
            return Ok(());
        };
        // A NONE answers the oldest request on the selection; data the oldest of its type.
        let pos = self
            .client_reqs
            .iter()
            .position(|r| r.sel == i && (type_ == ClipboardType::None || r.type_ == type_));
        let Some(pos) = pos else {
            tracing::warn!(
                "clipboard: {} bytes of {type_:?} for {selection:?}, never requested; dropped",
                data.len()
            );
            return Ok(());
        };
        let req = self.client_reqs.remove(pos);
        if type_ == ClipboardType::None {
            return self.refuse_waiting(i, req.type_);
        }
        if data.len() > self.limits.max_bytes {
            tracing::warn!(
                "clipboard: client sent {} bytes of {type_:?}, more than {}; refused",
                data.len(),
                self.limits.max_bytes
            );
            return self.refuse_waiting(i, type_);
        }
        let data = Arc::new(data);
        if let Some(offer) = self.sels[i].client_offer.as_mut() {
            if offer.id == req.offer_id {
                offer.cache.retain(|(t, _)| *t != type_);
                offer.cache.push((type_, Arc::clone(&data)));
            }
        }
        let (ready, rest): (Vec<XReq>, Vec<XReq>) = std::mem::take(&mut self.xreqs)
            .into_iter()
            .partition(|x| x.sel == i && x.type_ == type_);
        self.xreqs = rest;
        for x in ready {
            self.deliver(&x.ev, x.conv, &data)?;
        }
        Ok(())
    }

    /// Refuses the X requests waiting for `type_` on selection `i`.
    fn refuse_waiting(&mut self, i: usize, type_: ClipboardType) -> XResult<()> {
        let (refused, rest): (Vec<XReq>, Vec<XReq>) = std::mem::take(&mut self.xreqs)
            .into_iter()
            .partition(|x| x.sel == i && x.type_ == type_);
        self.xreqs = rest;
        for x in refused {
            self.refuse(&x.ev)?;
        }
        Ok(())
    }

    // ----- X events -----------------------------------------------------------------------

    fn sel_of(&self, atom: Atom) -> Option<usize> {
        self.sels.iter().position(|s| s.atom == atom)
    }

    fn on_x_event(&mut self, ev: Event) -> XResult<()> {
        if !self.x_alive {
            return Ok(());
        }
        match ev {
            Event::XfixesSelectionNotify(ev) => {
                let Some(i) = self.sel_of(ev.selection) else {
                    return Ok(());
                };
                self.sels[i].gen += 1;
                // A TARGETS conversion of the previous owner is useless now; any conversion of
                // an owner whose client or window is gone will never be answered.
                let owner_died = ev.subtype != xfixes::SelectionEvent::SET_SELECTION_OWNER;
                self.abandon_active(i, owner_died)?;
                if ev.owner == self.win {
                    if let Some(o) = self.sels[i].client_offer.as_mut() {
                        o.since = ev.selection_timestamp;
                    }
                    return Ok(());
                }
                // Someone else (or no one) owns it now: our client grab, if any, is over.
                self.sels[i].client_offer = None;
                if ev.owner == NONE {
                    if self.sels[i].guest_offer.take().is_some() {
                        self.send_release(i);
                    }
                } else if self.enabled(i) {
                    self.new_guest_owner(i)?;
                }
            }
            Event::SelectionNotify(ev) if ev.requestor == self.win => {
                self.on_conversion_done(ev)?;
            }
            Event::PropertyNotify(ev) => {
                if ev.window == self.win && ev.state == Property::NEW_VALUE {
                    self.on_incr_chunk(ev.atom)?;
                } else if ev.state == Property::DELETE {
                    self.on_incr_deleted(ev.window, ev.atom)?;
                }
            }
            Event::SelectionRequest(ev) => self.on_selection_request(ev)?,
            Event::SelectionClear(ev) => {
                if let Some(i) = self.sel_of(ev.selection) {
                    // Another application took the selection; stop serving the client's.
                    self.sels[i].client_offer = None;
                }
            }
            Event::Error(e) => tracing::debug!("clipboard: X error {e:?}"),
            _ => {}
        }
        Ok(())
    }

    /// Gives up the running conversion of selection `i` if it is a TARGETS one (or any, with
    /// `any`), answering it as failed.
    fn abandon_active(&mut self, i: usize, any: bool) -> XResult<()> {
        let Some(active) = &self.sels[i].active else {
            return Ok(());
        };
        if !any && !matches!(active.job, Job::Targets { .. }) {
            return Ok(());
        }
        self.rotate_prop(i)?;
        self.finish(i, None)
    }

    /// A foreign owner appeared on selection `i`: ask for its targets.
    fn new_guest_owner(&mut self, i: usize) -> XResult<()> {
        let s = &mut self.sels[i];
        s.gen += 1;
        let gen = s.gen;
        // An older TARGETS job still queued is useless now.
        s.jobs.retain(|j| !matches!(j, Job::Targets { .. }));
        s.jobs.push_back(Job::Targets { gen });
        self.start_next(i)
    }

    /// Starts the next queued conversion of selection `i` if none is running.
    fn start_next(&mut self, i: usize) -> XResult<()> {
        while self.sels[i].active.is_none() {
            let Some(job) = self.sels[i].jobs.pop_front() else {
                return Ok(());
            };
            if let Job::Targets { gen } = job {
                if gen != self.sels[i].gen {
                    continue;
                }
            }
            let s = &self.sels[i];
            let r = self
                .conn
                .convert_selection(
                    self.win,
                    s.atom,
                    job.target(&self.atoms),
                    s.prop,
                    CURRENT_TIME,
                )
                .map(drop);
            if let Err(e) = r {
                self.answer_job(i, job, None);
                return Err(e.into());
            }
            self.sels[i].active = Some(Active {
                job,
                deadline: Instant::now() + self.limits.request_timeout,
                incr: None,
            });
        }
        Ok(())
    }

    fn on_conversion_done(&mut self, ev: SelectionNotifyEvent) -> XResult<()> {
        let Some(i) = self.sel_of(ev.selection) else {
            return Ok(());
        };
        let s = &self.sels[i];
        let Some(active) = &s.active else {
            return Ok(());
        };
        if active.incr.is_some() || ev.target != active.job.target(&self.atoms) {
            return Ok(()); // a late answer to an abandoned conversion
        }
        if ev.property == NONE {
            return self.finish(i, None);
        }
        if ev.property != s.prop {
            return Ok(());
        }
        let limit = self.read_limit(active.job);
        let prop = s.prop;
        let head = self
            .conn
            .get_property(false, self.win, prop, AtomEnum::ANY, 0, 0)?
            .reply()?;
        if head.type_ == self.atoms.incr {
            // The owner sends chunks each time we delete the property.
            self.conn.delete_property(self.win, prop)?;
            if let Some(a) = self.sels[i].active.as_mut() {
                a.incr = Some((NONE, Vec::new()));
                a.deadline = Instant::now() + self.limits.request_timeout;
            }
            return Ok(());
        }
        if head.type_ == NONE || head.bytes_after as usize > limit {
            tracing::warn!(
                "clipboard: {:?} conversion gave {} bytes (limit {limit}); refused",
                s.which,
                head.bytes_after
            );
            self.conn.delete_property(self.win, prop)?;
            return self.finish(i, None);
        }
        let words = head.bytes_after.div_ceil(4);
        let r = self
            .conn
            .get_property(true, self.win, prop, AtomEnum::ANY, 0, words)?
            .reply()?;
        self.finish(i, Some((r.type_, r.format, r.value)))
    }

    /// The most bytes a conversion for `job` may bring.
    fn read_limit(&self, job: Job) -> usize {
        match job {
            Job::Targets { .. } => MAX_TARGETS_BYTES,
            // A BMP is converted before it is sent: bound it by the memory limit only.
            Job::Data {
                bmp_to_png: true, ..
            } => self.limits.max_bytes,
            Job::Data { .. } => self.send_limit(),
        }
    }

    /// The owner wrote an INCR chunk into our property.
    fn on_incr_chunk(&mut self, prop: Atom) -> XResult<()> {
        let Some(i) = self
            .sels
            .iter()
            .position(|s| s.prop == prop && s.active.as_ref().is_some_and(|a| a.incr.is_some()))
        else {
            return Ok(());
        };
        let Some(active) = &self.sels[i].active else {
            return Ok(());
        };
        let have = active.incr.as_ref().map_or(0, |(_, d)| d.len());
        let limit = self.read_limit(active.job);
        let allow = limit.saturating_sub(have);
        let words = u32::try_from(allow / 4 + 1).unwrap_or(u32::MAX);
        let r = self
            .conn
            .get_property(true, self.win, prop, AtomEnum::ANY, 0, words)?
            .reply()?;
        if r.type_ == NONE {
            return Ok(()); // already read (a notification for our own delete)
        }
        if r.bytes_after > 0 || r.value.len() > allow {
            tracing::warn!(
                "clipboard: {:?} INCR transfer exceeds {limit} bytes; abandoned",
                self.sels[i].which
            );
            self.conn.delete_property(self.win, prop)?;
            self.rotate_prop(i)?;
            return self.finish(i, None);
        }
        let Some(active) = self.sels[i].active.as_mut() else {
            return Ok(());
        };
        active.deadline = Instant::now() + self.limits.request_timeout;
        let Some((type_, data)) = active.incr.as_mut() else {
            return Ok(());
        };
        if r.value.is_empty() {
            let (t, d) = (*type_, std::mem::take(data));
            return self.finish(i, Some((t, 8, d)));
        }
        *type_ = r.type_;
        data.extend_from_slice(&r.value);
        Ok(())
    }

    /// Gives selection `i` a fresh conversion property, so that an owner still writing into
    /// the old one after we gave up cannot disturb the next conversion.
    fn rotate_prop(&mut self, i: usize) -> XResult<()> {
        self.prop_rotation = self.prop_rotation.wrapping_add(1);
        let name = format!(
            "SPICE_CLIPBOARD_{}_{}",
            if i == 0 { "CLIPBOARD" } else { "PRIMARY" },
            self.prop_rotation % 64
        );
        self.sels[i].prop = self.conn.intern_atom(false, name.as_bytes())?.reply()?.atom;
        Ok(())
    }

    /// The running conversion of selection `i` ended with `result` (property type, format,
    /// bytes) or failed.
    fn finish(&mut self, i: usize, result: Option<(Atom, u8, Vec<u8>)>) -> XResult<()> {
        let Some(active) = self.sels[i].active.take() else {
            return Ok(());
        };
        self.answer_job(i, active.job, result);
        self.start_next(i)
    }

    /// Acts on the outcome of a conversion: a GRAB/RELEASE for TARGETS, the CLIPBOARD answer
    /// for data (NONE when `result` is `None` or unusable).
    fn answer_job(&mut self, i: usize, job: Job, result: Option<(Atom, u8, Vec<u8>)>) {
        let selection = self.sels[i].which;
        match job {
            Job::Targets { gen } => {
                if gen != self.sels[i].gen || !self.enabled(i) {
                    return;
                }
                let targets: Vec<Atom> = match &result {
                    Some((t, 32, v)) if *t == self.atoms.atom || *t == self.atoms.targets => v
                        .chunks_exact(4)
                        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    _ => vec![],
                };
                let offer = self.map_targets(&targets);
                if offer.is_empty() {
                    if self.sels[i].guest_offer.take().is_some() {
                        self.send_release(i);
                    }
                    return;
                }
                let s = &mut self.sels[i];
                let serial = s.serial;
                s.serial = s.serial.wrapping_add(1);
                let types = offer.iter().map(|o| o.type_).collect();
                s.guest_offer = Some(offer);
                self.host.send(Message::ClipboardGrab {
                    selection,
                    serial: Some(serial),
                    types,
                });
            }
            Job::Data {
                type_, bmp_to_png, ..
            } => {
                let data = result.and_then(|(ptype, _, bytes)| {
                    self.guest_bytes_for_client(type_, bmp_to_png, ptype, bytes)
                });
                let msg = match data {
                    Some(data) => Message::Clipboard {
                        selection,
                        type_,
                        data,
                    },
                    None => Message::Clipboard {
                        selection,
                        type_: ClipboardType::None,
                        data: vec![],
                    },
                };
                self.host.send(msg);
            }
        }
    }

    /// Turns what a guest owner delivered into what the client gets, or `None` to refuse.
    fn guest_bytes_for_client(
        &self,
        type_: ClipboardType,
        bmp_to_png: bool,
        ptype: Atom,
        bytes: Vec<u8>,
    ) -> Option<Vec<u8>> {
        common::guest_data_for_client(
            type_,
            bmp_to_png,
            ptype == self.atoms.string,
            bytes,
            self.limits.max_bytes,
            self.send_limit(),
        )
    }

    /// The Spice types a guest owner's targets map to, with the atom to convert for each.
    fn map_targets(&self, targets: &[Atom]) -> Vec<Offered> {
        common::map_offer(targets, |t| self.atoms.for_type(t))
    }

    // ----- serving the client's data in the guest ------------------------------------------

    fn notify(&self, ev: &SelectionRequestEvent, property: Atom) -> XResult<()> {
        let reply = SelectionNotifyEvent {
            response_type: xproto::SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: ev.time,
            requestor: ev.requestor,
            selection: ev.selection,
            target: ev.target,
            property,
        };
        self.conn
            .send_event(false, ev.requestor, EventMask::NO_EVENT, reply)?;
        Ok(())
    }

    fn refuse(&self, ev: &SelectionRequestEvent) -> XResult<()> {
        if !self.x_alive {
            return Ok(());
        }
        self.notify(ev, NONE)
    }

    /// The property an answer goes to (`None` from obsolete requestors means the target).
    fn answer_property(ev: &SelectionRequestEvent) -> Atom {
        if ev.property == NONE {
            ev.target
        } else {
            ev.property
        }
    }

    /// Which client type serves `target`, and how to convert it.
    fn plan(&self, target: Atom, types: &[ClipboardType]) -> Option<(ClipboardType, Conv)> {
        let a = &self.atoms;
        let has = |t| types.contains(&t);
        if [a.utf8_string, a.text_plain_utf8, a.text, a.text_plain].contains(&target)
            && has(ClipboardType::Utf8Text)
        {
            Some((ClipboardType::Utf8Text, Conv::AsIs))
        } else if target == a.string && has(ClipboardType::Utf8Text) {
            Some((ClipboardType::Utf8Text, Conv::Latin1))
        } else if target == a.png && has(ClipboardType::ImagePng) {
            Some((ClipboardType::ImagePng, Conv::AsIs))
        } else if target == a.png && has(ClipboardType::ImageBmp) {
            Some((ClipboardType::ImageBmp, Conv::BmpToPng))
        } else if a.bmps().contains(&target) && has(ClipboardType::ImageBmp) {
            Some((ClipboardType::ImageBmp, Conv::AsIs))
        } else if a.bmps().contains(&target) && has(ClipboardType::ImagePng) {
            Some((ClipboardType::ImagePng, Conv::PngToBmp))
        } else if target == a.tiff && has(ClipboardType::ImageTiff) {
            Some((ClipboardType::ImageTiff, Conv::AsIs))
        } else if target == a.jpeg && has(ClipboardType::ImageJpg) {
            Some((ClipboardType::ImageJpg, Conv::AsIs))
        } else {
            None
        }
    }

    fn on_selection_request(&mut self, ev: SelectionRequestEvent) -> XResult<()> {
        let Some(i) = self.sel_of(ev.selection) else {
            return self.refuse(&ev);
        };
        let Some(offer) = self.sels[i]
            .client_offer
            .as_ref()
            .filter(|_| ev.owner == self.win)
        else {
            return self.refuse(&ev);
        };
        let prop = Self::answer_property(&ev);
        let a = &self.atoms;
        if ev.target == a.targets {
            let mut list = vec![a.targets, a.timestamp];
            for &t in &offer.types {
                let atoms = match t {
                    // PNG can also be had as BMP, converted here.
                    ClipboardType::ImagePng if !offer.types.contains(&ClipboardType::ImageBmp) => {
                        vec![a.png, a.bmp]
                    }
                    // And BMP as PNG.
                    ClipboardType::ImageBmp if !offer.types.contains(&ClipboardType::ImagePng) => {
                        let mut v = a.bmps().to_vec();
                        v.push(a.png);
                        v
                    }
                    t => a.for_type(t),
                };
                for atom in atoms {
                    if !list.contains(&atom) {
                        list.push(atom);
                    }
                }
            }
            self.conn
                .change_property32(PropMode::REPLACE, ev.requestor, prop, a.atom, &list)?;
            return self.notify(&ev, prop);
        }
        if ev.target == a.timestamp {
            self.conn.change_property32(
                PropMode::REPLACE,
                ev.requestor,
                prop,
                a.integer,
                &[offer.since],
            )?;
            return self.notify(&ev, prop);
        }
        let Some((type_, conv)) = self.plan(ev.target, &offer.types) else {
            return self.refuse(&ev);
        };
        if let Some((_, data)) = offer.cache.iter().find(|(t, _)| *t == type_) {
            let data = Arc::clone(data);
            return self.deliver(&ev, conv, &data);
        }
        let offer_id = offer.id;
        let asked = self
            .client_reqs
            .iter()
            .any(|r| r.sel == i && r.type_ == type_);
        if !asked {
            self.host.send(Message::ClipboardRequest {
                selection: self.sels[i].which,
                type_,
            });
            self.client_reqs.push(ClientReq {
                sel: i,
                type_,
                offer_id,
                deadline: Instant::now() + self.limits.request_timeout,
            });
        }
        self.xreqs.push(XReq {
            sel: i,
            type_,
            conv,
            ev,
        });
        Ok(())
    }

    /// Writes client data, converted for the target, to the requestor (INCR when large).
    fn deliver(
        &mut self,
        ev: &SelectionRequestEvent,
        conv: Conv,
        data: &Arc<Vec<u8>>,
    ) -> XResult<()> {
        let a = &self.atoms;
        let bytes = match common::convert_for_guest(conv, data, self.limits.max_bytes) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("clipboard: client image not converted ({conv:?}): {e}");
                return self.refuse(ev);
            }
        };
        // TEXT lets the owner choose the encoding: UTF-8.
        let type_ = if ev.target == a.text {
            a.utf8_string
        } else {
            ev.target
        };
        let prop = Self::answer_property(ev);
        if bytes.len() <= self.chunk {
            self.conn
                .change_property8(PropMode::REPLACE, ev.requestor, prop, type_, &bytes)?;
            return self.notify(ev, prop);
        }
        // INCR: announce the size, then a chunk each time the requestor deletes the property.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.conn.change_window_attributes(
            ev.requestor,
            &ChangeWindowAttributesAux::new().event_mask(EventMask::PROPERTY_CHANGE),
        )?;
        self.conn
            .change_property32(PropMode::REPLACE, ev.requestor, prop, a.incr, &[len])?;
        self.notify(ev, prop)?;
        self.incr_out.push(IncrOut {
            requestor: ev.requestor,
            property: prop,
            type_,
            data: bytes,
            offset: 0,
            deadline: Instant::now() + self.limits.request_timeout,
        });
        Ok(())
    }

    /// A requestor deleted a property: if it is one of our INCR transfers, send the next chunk.
    fn on_incr_deleted(&mut self, window: Window, property: Atom) -> XResult<()> {
        let Some(pos) = self
            .incr_out
            .iter()
            .position(|t| t.requestor == window && t.property == property)
        else {
            return Ok(());
        };
        let t = &mut self.incr_out[pos];
        let end = (t.offset + self.chunk).min(t.data.len());
        let piece = t.data.get(t.offset..end).unwrap_or_default();
        self.conn
            .change_property8(PropMode::REPLACE, window, property, t.type_, piece)?;
        if piece.is_empty() {
            // The zero-length chunk ends the transfer.
            self.incr_out.remove(pos);
            self.unwatch(window)?;
        } else {
            t.offset = end;
            t.deadline = Instant::now() + self.limits.request_timeout;
        }
        Ok(())
    }

    /// Stops watching `window`'s properties once no transfer to it is left.
    fn unwatch(&self, window: Window) -> XResult<()> {
        if !self.incr_out.iter().any(|t| t.requestor == window) {
            self.conn.change_window_attributes(
                window,
                &ChangeWindowAttributesAux::new().event_mask(EventMask::NO_EVENT),
            )?;
        }
        Ok(())
    }

    // ----- deadlines ----------------------------------------------------------------------

    fn next_deadline(&self) -> Option<Instant> {
        let conv = self
            .sels
            .iter()
            .filter_map(|s| s.active.as_ref().map(|a| a.deadline));
        let reqs = self.client_reqs.iter().map(|r| r.deadline);
        let incr = self.incr_out.iter().map(|t| t.deadline);
        conv.chain(reqs).chain(incr).min()
    }

    fn expire(&mut self, now: Instant) {
        let r = self.expire_inner(now);
        if let Err(e) = r {
            tracing::warn!("clipboard: {e}");
        }
    }

    fn expire_inner(&mut self, now: Instant) -> XResult<()> {
        for i in 0..self.sels.len() {
            if self.sels[i]
                .active
                .as_ref()
                .is_some_and(|a| a.deadline <= now)
            {
                tracing::warn!(
                    "clipboard: {:?} owner did not deliver in time; conversion abandoned",
                    self.sels[i].which
                );
                if self.x_alive {
                    self.rotate_prop(i)?;
                }
                self.finish(i, None)?;
            }
        }
        let (expired, rest): (Vec<ClientReq>, Vec<ClientReq>) =
            std::mem::take(&mut self.client_reqs)
                .into_iter()
                .partition(|r| r.deadline <= now);
        self.client_reqs = rest;
        for r in expired {
            tracing::warn!(
                "clipboard: client did not answer the {:?} request for {:?} in time",
                self.sels[r.sel].which,
                r.type_
            );
            self.refuse_waiting(r.sel, r.type_)?;
        }
        let (expired, rest): (Vec<IncrOut>, Vec<IncrOut>) = std::mem::take(&mut self.incr_out)
            .into_iter()
            .partition(|t| t.deadline <= now);
        self.incr_out = rest;
        for t in expired {
            tracing::warn!(
                "clipboard: INCR transfer to window {:#x} stalled; dropped",
                t.requestor
            );
            self.unwatch(t.requestor)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits() {
        let l = ClipboardLimits::default();
        assert_eq!(l.max_bytes, 128 << 20);
        assert_eq!(l.request_timeout, Duration::from_secs(10));
    }
}
