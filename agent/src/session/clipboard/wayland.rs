//! The Wayland clipboard bridge of the session agent: the CLIPBOARD and PRIMARY selections of
//! a Wayland compositor that offers a data-control protocol on one side, the Spice client's
//! by-demand clipboard (GRAB / REQUEST / CLIPBOARD / RELEASE, reference §3.3–3.4 and §7.1) on
//! the other. It behaves like the X11 bridge ([`super::X11Clipboard`]); MIME types take the
//! place of X targets.
//!
//! # Protocols
//!
//! A regular Wayland client only sees the clipboard while it has keyboard focus; an agent
//! never has it. Data-control protocols let a privileged client watch and set a seat's
//! selections without focus. Two exist, with the same shape:
//!
//! - `ext-data-control-v1` (wayland-protocols staging, 2024): wlroots ≥ 0.19, KWin, …;
//!   always with the primary selection;
//! - `zwlr-data-control-unstable-v1`: wlroots since 0.7 (sway, labwc, Wayfire, …);
//!   version 2 adds the primary selection.
//!
//! [`WaylandClipboard::start`] binds `ext` when the compositor offers it, else `wlr`, else
//! fails with [`WaylandClipboardError::NoDataControl`] (GNOME's Mutter offers neither: the
//! session agent then falls back to the X11 bridge through Xwayland, when there is one).
//!
//! # Design
//!
//! One worker thread owns the Wayland connection and all state. It `poll`s the connection, a
//! wake-up pipe (the public methods queue a command on a channel and write a byte to it, so
//! they never block), and the pipes of the transfers in flight, with a timeout set to the
//! nearest deadline. Transfers are non-blocking and bounded: nothing waits on a guest
//! application or on the Spice client.
//!
//! **Guest → client.** A `selection` (or `primary_selection`) event naming a foreign offer:
//! its MIME types are mapped to Spice types and a GRAB goes to the client with the
//! selection's serial; no selection → RELEASE. A REQUEST from the client: the best MIME type
//! for the Spice type is received through a pipe (`receive`), read without blocking up to the
//! size cap and the timeout; the data (text as UTF-8, a BMP converted to PNG) or `NONE` is
//! sent back. Requests run one at a time per selection, in order; every one is answered.
//!
//! **Client → guest.** A GRAB that passes the serial rule becomes our data source, offering
//! the MIME types of the client's types (text under every usual text type, PNG also as BMP
//! and BMP also as PNG, converted here). When a guest application pastes, the source gets a
//! `send` event with a pipe: a REQUEST goes to the client (one per selection and type in
//! flight; further pastes join it) and the pipe waits, up to the timeout, for the data,
//! which are then written without blocking. Data are kept for the current grab, so a second
//! paste needs no round trip. Our source being `cancelled` (another application copied) ends
//! the grab; a client RELEASE clears the selection.
//!
//! **Our own offers.** Our sources also offer the MIME type [`OWN_MIME`]; a selection whose
//! offer lists it is ours coming back and is not announced to the client.
//!
//! The grab serials follow the same rule as on X11 (`common.rs`). Writes to a pipe whose
//! reader went away fail with `EPIPE` (Rust programs ignore `SIGPIPE`) and end that transfer
//! only.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wayland_client::backend::{ObjectId, WaylandError};
use wayland_client::globals::{registry_queue_init, BindError, GlobalError, GlobalListContents};
use wayland_client::protocol::{wl_registry::WlRegistry, wl_seat::WlSeat};
use wayland_client::{
    event_created_child, ConnectError, Connection, Dispatch, DispatchError, EventQueue, Proxy,
    QueueHandle,
};
use wayland_protocols::ext::data_control::v1::client::{
    ext_data_control_device_v1 as ext_device, ext_data_control_manager_v1 as ext_manager,
    ext_data_control_offer_v1 as ext_offer, ext_data_control_source_v1 as ext_source,
};
use wayland_protocols_wlr::data_control::v1::client::{
    zwlr_data_control_device_v1 as wlr_device, zwlr_data_control_manager_v1 as wlr_manager,
    zwlr_data_control_offer_v1 as wlr_offer, zwlr_data_control_source_v1 as wlr_source,
};

use super::common::{self, Conv};
use super::{ClipboardBackend, ClipboardLimits, HostSink};
use crate::protocol::{Caps, ClipboardType, Message, Selection};

/// The MIME type our own data sources offer besides the client's types, so that the
/// selection event announcing our own source is recognised and not echoed to the client.
pub const OWN_MIME: &str = "application/x-spice-agent-clipboard";

/// At most this many client REQUESTs wait per selection; more are answered NONE at once.
const MAX_QUEUED_JOBS: usize = 32;
/// At most this many guest pastes wait for client data, and as many are being written.
const MAX_PIPES: usize = 64;
/// The most MIME types kept per offer (a compositor relays what the owner lists).
const MAX_MIMES: usize = 128;
/// The most offers kept that no selection names yet.
const MAX_LOOSE_OFFERS: usize = 16;
/// Bytes read or written per system call.
const IO_CHUNK: usize = 64 * 1024;

/// Why the Wayland bridge could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaylandClipboardError {
    /// No Wayland display to connect to, or the connection failed.
    #[error("cannot connect to the Wayland display: {0}")]
    Connect(#[from] ConnectError),
    /// The named Wayland socket could not be opened.
    #[error("cannot open the Wayland socket {0}: {1}")]
    Socket(PathBuf, #[source] std::io::Error),
    /// Listing the compositor's globals failed.
    #[error("cannot list the compositor's globals: {0}")]
    Globals(#[from] GlobalError),
    /// The compositor has no seat.
    #[error("the compositor offers no wl_seat")]
    NoSeat,
    /// The compositor offers neither ext-data-control-v1 nor wlr-data-control.
    #[error("the compositor offers no data-control protocol (ext-data-control-v1 or zwlr-data-control-v1)")]
    NoDataControl,
    /// The first exchange with the compositor failed.
    #[error("Wayland dispatch failed: {0}")]
    Dispatch(#[from] DispatchError),
    /// A pipe or thread could not be created.
    #[error("cannot set up the clipboard worker: {0}")]
    Io(#[source] std::io::Error),
}

/// The Wayland clipboard bridge; see the [module documentation](self). Dropping it stops its
/// thread and closes its Wayland connection (which gives up any selection it set).
pub struct WaylandClipboard {
    tx: mpsc::Sender<Cmd>,
    wake: File,
    protocol: &'static str,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WaylandClipboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaylandClipboard")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// What the worker thread handles besides Wayland events.
enum Cmd {
    Caps { caps: Caps, new_client: bool },
    Client(Message),
    Disconnected,
    Shutdown,
}

impl WaylandClipboard {
    /// Connects to the Wayland display (`None` = `$WAYLAND_DISPLAY`; a relative name is
    /// looked up in `$XDG_RUNTIME_DIR`), binds a data-control manager for the first seat and
    /// starts the worker thread. Fails with [`WaylandClipboardError::NoDataControl`] when the
    /// compositor offers no data-control protocol. Nothing is sent to `host` before
    /// [`client_caps`](Self::client_caps) announces a client with CLIPBOARD_BY_DEMAND.
    pub fn start(
        display: Option<&str>,
        host: Arc<dyn HostSink>,
        limits: ClipboardLimits,
    ) -> Result<WaylandClipboard, WaylandClipboardError> {
        let conn = match display {
            None => Connection::connect_to_env()?,
            Some(name) => {
                let path = match std::env::var_os("XDG_RUNTIME_DIR") {
                    Some(dir) if !name.starts_with('/') => PathBuf::from(dir).join(name),
                    _ => PathBuf::from(name),
                };
                let stream = UnixStream::connect(&path)
                    .map_err(|e| WaylandClipboardError::Socket(path.clone(), e))?;
                Connection::from_socket(stream)?
            }
        };
        let (globals, mut queue) = registry_queue_init::<Inbox>(&conn)?;
        let qh = queue.handle();
        let seat: WlSeat = globals.bind(&qh, 1..=1, ()).map_err(|e| match e {
            BindError::NotPresent | BindError::UnsupportedVersion => WaylandClipboardError::NoSeat,
        })?;
        let manager =
            match globals.bind::<ext_manager::ExtDataControlManagerV1, _, _>(&qh, 1..=1, ()) {
                Ok(m) => Manager::Ext(m),
                Err(_) => match globals.bind::<wlr_manager::ZwlrDataControlManagerV1, _, _>(
                    &qh,
                    1..=2,
                    (),
                ) {
                    Ok(m) => Manager::Wlr(m),
                    Err(_) => return Err(WaylandClipboardError::NoDataControl),
                },
            };
        let device = manager.get_device(&seat, &qh);
        let protocol = manager.name();
        let mut inbox = Inbox::default();
        // The compositor answers the binding with the current selections.
        queue.roundtrip(&mut inbox)?;
        tracing::info!(
            "clipboard: Wayland data control through {protocol}{}",
            if device.has_primary() {
                ""
            } else {
                " (no primary selection)"
            }
        );

        let (wake_rx, wake_tx) = pipe()?;
        set_nonblocking(&wake_rx)?;
        set_nonblocking(&wake_tx)?;
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            conn,
            queue,
            qh,
            inbox,
            manager,
            device,
            _seat: seat,
            host,
            limits,
            caps: None,
            client_max: None,
            alive: true,
            sels: [Sel::new(Selection::Clipboard), Sel::new(Selection::Primary)],
            offers: HashMap::new(),
            client_reqs: Vec::new(),
            waiting: Vec::new(),
            writing: Vec::new(),
            offer_ids: 0,
        };
        let wake_rx = File::from(wake_rx);
        let worker = thread::Builder::new()
            .name("clipboard-wayland".into())
            .spawn(move || worker.run(&rx, wake_rx))
            .map_err(WaylandClipboardError::Io)?;
        Ok(WaylandClipboard {
            tx,
            wake: File::from(wake_tx),
            protocol,
            worker: Some(worker),
        })
    }

    /// The data-control protocol in use: `"ext-data-control-v1"` or
    /// `"zwlr-data-control-v1"`.
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// The client's capabilities changed; see [`ClipboardBackend::client_caps`].
    pub fn client_caps(&self, caps: &Caps, new_client: bool) {
        self.send(Cmd::Caps {
            caps: caps.clone(),
            new_client,
        });
    }

    /// A clipboard message from the client; see [`ClipboardBackend::client_message`].
    pub fn client_message(&self, msg: Message) {
        self.send(Cmd::Client(msg));
    }

    /// The client went away: release what it owned in the guest.
    pub fn client_disconnected(&self) {
        self.send(Cmd::Disconnected);
    }

    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_err() {
            tracing::warn!("clipboard: Wayland worker thread is gone, message dropped");
            return;
        }
        // A full pipe already wakes the worker.
        let _ = (&self.wake).write(&[1]);
    }
}

impl ClipboardBackend for WaylandClipboard {
    fn client_caps(&self, caps: &Caps, new_client: bool) {
        WaylandClipboard::client_caps(self, caps, new_client);
    }
    fn client_message(&self, msg: Message) {
        WaylandClipboard::client_message(self, msg);
    }
    fn client_disconnected(&self) {
        WaylandClipboard::client_disconnected(self);
    }
}

impl Drop for WaylandClipboard {
    fn drop(&mut self) {
        self.send(Cmd::Shutdown);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

// ----- the two protocols behind one face ------------------------------------------------------

enum Manager {
    Ext(ext_manager::ExtDataControlManagerV1),
    Wlr(wlr_manager::ZwlrDataControlManagerV1),
}

impl Manager {
    fn name(&self) -> &'static str {
        match self {
            Manager::Ext(_) => "ext-data-control-v1",
            Manager::Wlr(_) => "zwlr-data-control-v1",
        }
    }

    fn get_device(&self, seat: &WlSeat, qh: &QueueHandle<Inbox>) -> Device {
        match self {
            Manager::Ext(m) => Device::Ext(m.get_data_device(seat, qh, ())),
            Manager::Wlr(m) => Device::Wlr(m.get_data_device(seat, qh, ())),
        }
    }

    fn create_source(&self, qh: &QueueHandle<Inbox>) -> Source {
        match self {
            Manager::Ext(m) => Source::Ext(m.create_data_source(qh, ())),
            Manager::Wlr(m) => Source::Wlr(m.create_data_source(qh, ())),
        }
    }
}

enum Device {
    Ext(ext_device::ExtDataControlDeviceV1),
    Wlr(wlr_device::ZwlrDataControlDeviceV1),
}

impl Device {
    /// Whether the device carries the primary selection (wlr: version 2).
    fn has_primary(&self) -> bool {
        match self {
            Device::Ext(_) => true,
            Device::Wlr(d) => d.version() >= 2,
        }
    }

    /// Sets selection `i` (0 CLIPBOARD, 1 PRIMARY) to `source`, or clears it.
    fn set(&self, i: usize, source: Option<&Source>) {
        match (self, source) {
            (Device::Ext(d), Some(Source::Ext(s))) if i == 0 => d.set_selection(Some(s)),
            (Device::Ext(d), Some(Source::Ext(s))) => d.set_primary_selection(Some(s)),
            (Device::Ext(d), None) if i == 0 => d.set_selection(None),
            (Device::Ext(d), None) => d.set_primary_selection(None),
            (Device::Wlr(d), Some(Source::Wlr(s))) if i == 0 => d.set_selection(Some(s)),
            (Device::Wlr(d), Some(Source::Wlr(s))) => d.set_primary_selection(Some(s)),
            (Device::Wlr(d), None) if i == 0 => d.set_selection(None),
            (Device::Wlr(d), None) => d.set_primary_selection(None),
            // Sources are made by the manager of the same protocol.
            _ => tracing::warn!("clipboard: source of the other protocol; not set"),
        }
    }
}

enum Source {
    Ext(ext_source::ExtDataControlSourceV1),
    Wlr(wlr_source::ZwlrDataControlSourceV1),
}

impl Source {
    fn id(&self) -> ObjectId {
        match self {
            Source::Ext(s) => s.id(),
            Source::Wlr(s) => s.id(),
        }
    }

    fn offer(&self, mime: &str) {
        match self {
            Source::Ext(s) => s.offer(mime.to_owned()),
            Source::Wlr(s) => s.offer(mime.to_owned()),
        }
    }

    fn destroy(&self) {
        match self {
            Source::Ext(s) => s.destroy(),
            Source::Wlr(s) => s.destroy(),
        }
    }
}

enum Offer {
    Ext(ext_offer::ExtDataControlOfferV1),
    Wlr(wlr_offer::ZwlrDataControlOfferV1),
}

impl Offer {
    fn id(&self) -> ObjectId {
        match self {
            Offer::Ext(o) => o.id(),
            Offer::Wlr(o) => o.id(),
        }
    }

    fn receive(&self, mime: &str, fd: std::os::fd::BorrowedFd<'_>) {
        match self {
            Offer::Ext(o) => o.receive(mime.to_owned(), fd),
            Offer::Wlr(o) => o.receive(mime.to_owned(), fd),
        }
    }

    fn destroy(&self) {
        match self {
            Offer::Ext(o) => o.destroy(),
            Offer::Wlr(o) => o.destroy(),
        }
    }
}

/// A Wayland event the worker acts on, the same for both protocols.
enum Ev {
    /// A new offer object (its MIME types follow).
    NewOffer(Offer),
    /// One MIME type of an offer.
    OfferMime(ObjectId, String),
    /// Selection `sel` (0 CLIPBOARD, 1 PRIMARY) is now this offer, or nothing.
    Selection { sel: usize, offer: Option<ObjectId> },
    /// The data device is inert.
    Finished,
    /// A guest application wants our source's data as `mime`, written to `fd`.
    Send {
        source: ObjectId,
        mime: String,
        fd: OwnedFd,
    },
    /// Our source is no longer the selection.
    Cancelled(ObjectId),
}

/// The event queue's state: events are collected here, then handled by the worker.
#[derive(Default)]
struct Inbox {
    events: Vec<Ev>,
}

impl Dispatch<WlRegistry, GlobalListContents> for Inbox {
    fn event(
        _: &mut Self,
        _: &WlRegistry,
        _: <WlRegistry as Proxy>::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        // Globals appearing later (a new seat) are not followed.
    }
}

impl Dispatch<WlSeat, ()> for Inbox {
    fn event(
        _: &mut Self,
        _: &WlSeat,
        _: <WlSeat as Proxy>::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

/// The `Dispatch` implementations of one data-control protocol, turning its events into
/// [`Ev`]s.
macro_rules! data_control_dispatch {
    ($variant:ident, $manager:ty, $device:ident :: $device_ty:ident, $source:ident :: $source_ty:ident, $offer:ident :: $offer_ty:ident) => {
        impl Dispatch<$manager, ()> for Inbox {
            fn event(
                _: &mut Self,
                _: &$manager,
                _: <$manager as Proxy>::Event,
                _: &(),
                _: &Connection,
                _: &QueueHandle<Self>,
            ) {
                // The manager has no events.
            }
        }

        impl Dispatch<$device::$device_ty, ()> for Inbox {
            fn event(
                state: &mut Self,
                _: &$device::$device_ty,
                event: $device::Event,
                _: &(),
                _: &Connection,
                _: &QueueHandle<Self>,
            ) {
                let ev = match event {
                    $device::Event::DataOffer { id } => Ev::NewOffer(Offer::$variant(id)),
                    $device::Event::Selection { id } => Ev::Selection {
                        sel: 0,
                        offer: id.map(|o| o.id()),
                    },
                    $device::Event::PrimarySelection { id } => Ev::Selection {
                        sel: 1,
                        offer: id.map(|o| o.id()),
                    },
                    $device::Event::Finished => Ev::Finished,
                    _ => return,
                };
                state.events.push(ev);
            }

            event_created_child!(Inbox, $device::$device_ty, [
                $device::EVT_DATA_OFFER_OPCODE => ($offer::$offer_ty, ()),
            ]);
        }

        impl Dispatch<$offer::$offer_ty, ()> for Inbox {
            fn event(
                state: &mut Self,
                offer: &$offer::$offer_ty,
                event: $offer::Event,
                _: &(),
                _: &Connection,
                _: &QueueHandle<Self>,
            ) {
                if let $offer::Event::Offer { mime_type } = event {
                    state.events.push(Ev::OfferMime(offer.id(), mime_type));
                }
            }
        }

        impl Dispatch<$source::$source_ty, ()> for Inbox {
            fn event(
                state: &mut Self,
                source: &$source::$source_ty,
                event: $source::Event,
                _: &(),
                _: &Connection,
                _: &QueueHandle<Self>,
            ) {
                let ev = match event {
                    $source::Event::Send { mime_type, fd } => Ev::Send {
                        source: source.id(),
                        mime: mime_type,
                        fd,
                    },
                    $source::Event::Cancelled => Ev::Cancelled(source.id()),
                    _ => return,
                };
                state.events.push(ev);
            }
        }
    };
}

data_control_dispatch!(
    Ext,
    ext_manager::ExtDataControlManagerV1,
    ext_device::ExtDataControlDeviceV1,
    ext_source::ExtDataControlSourceV1,
    ext_offer::ExtDataControlOfferV1
);
data_control_dispatch!(
    Wlr,
    wlr_manager::ZwlrDataControlManagerV1,
    wlr_device::ZwlrDataControlDeviceV1,
    wlr_source::ZwlrDataControlSourceV1,
    wlr_offer::ZwlrDataControlOfferV1
);

// ----- MIME types ---------------------------------------------------------------------------

/// The BMP MIME types in use (`image/bmp` first).
const BMP_MIMES: [&str; 4] = [
    "image/bmp",
    "image/x-bmp",
    "image/x-MS-bmp",
    "image/x-win-bitmap",
];

/// The MIME types that carry a Spice type, best first (what is read from a guest owner).
fn mimes_for_type(t: ClipboardType) -> Vec<&'static str> {
    match t {
        ClipboardType::Utf8Text => vec![
            "text/plain;charset=utf-8",
            "text/plain;charset=UTF-8",
            "UTF8_STRING",
            "text/plain",
            "TEXT",
            "STRING",
        ],
        ClipboardType::ImagePng => vec!["image/png"],
        ClipboardType::ImageBmp => BMP_MIMES.to_vec(),
        ClipboardType::ImageTiff => vec!["image/tiff"],
        ClipboardType::ImageJpg => vec!["image/jpeg"],
        _ => vec![],
    }
}

/// The MIME types our source offers for a client grab of `types` (the marker last).
fn mimes_for_client(types: &[ClipboardType]) -> Vec<&'static str> {
    let mut list = Vec::new();
    for &t in types {
        let mimes = match t {
            ClipboardType::Utf8Text => vec![
                "text/plain;charset=utf-8",
                "UTF8_STRING",
                "text/plain",
                "TEXT",
                "STRING",
            ],
            // PNG can also be had as BMP and BMP as PNG, converted here.
            ClipboardType::ImagePng if !types.contains(&ClipboardType::ImageBmp) => {
                vec!["image/png", "image/bmp"]
            }
            ClipboardType::ImageBmp if !types.contains(&ClipboardType::ImagePng) => {
                let mut v = BMP_MIMES.to_vec();
                v.push("image/png");
                v
            }
            t => mimes_for_type(t),
        };
        for m in mimes {
            if !list.contains(&m) {
                list.push(m);
            }
        }
    }
    if !list.is_empty() {
        list.push(OWN_MIME);
    }
    list
}

/// Which client type serves a guest paste of `mime`, and how to convert it.
fn plan(mime: &str, types: &[ClipboardType]) -> Option<(ClipboardType, Conv)> {
    let has = |t| types.contains(&t);
    let text = ["UTF8_STRING", "TEXT", "text/plain"].contains(&mime)
        || mime.eq_ignore_ascii_case("text/plain;charset=utf-8");
    if text && has(ClipboardType::Utf8Text) {
        Some((ClipboardType::Utf8Text, Conv::AsIs))
    } else if mime == "STRING" && has(ClipboardType::Utf8Text) {
        Some((ClipboardType::Utf8Text, Conv::Latin1))
    } else if mime == "image/png" && has(ClipboardType::ImagePng) {
        Some((ClipboardType::ImagePng, Conv::AsIs))
    } else if mime == "image/png" && has(ClipboardType::ImageBmp) {
        Some((ClipboardType::ImageBmp, Conv::BmpToPng))
    } else if BMP_MIMES.contains(&mime) && has(ClipboardType::ImageBmp) {
        Some((ClipboardType::ImageBmp, Conv::AsIs))
    } else if BMP_MIMES.contains(&mime) && has(ClipboardType::ImagePng) {
        Some((ClipboardType::ImagePng, Conv::PngToBmp))
    } else if mime == "image/tiff" && has(ClipboardType::ImageTiff) {
        Some((ClipboardType::ImageTiff, Conv::AsIs))
    } else if mime == "image/jpeg" && has(ClipboardType::ImageJpg) {
        Some((ClipboardType::ImageJpg, Conv::AsIs))
    } else {
        None
    }
}

// ----- file descriptors ---------------------------------------------------------------------

/// A close-on-exec pipe: (read end, write end). Both ends block; callers set
/// `O_NONBLOCK` on the end they keep (the flag is per end, so the other one, handed to
/// another process, stays blocking as it expects).
fn pipe() -> Result<(OwnedFd, OwnedFd), WaylandClipboardError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r != 0 {
        return Err(WaylandClipboardError::Io(std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), WaylandClipboardError> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL touch only its status flags.
    let r = unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK)
        }
    };
    if r < 0 {
        return Err(WaylandClipboardError::Io(std::io::Error::last_os_error()));
    }
    Ok(())
}

// ----- state --------------------------------------------------------------------------------

/// The foreign offer currently holding a selection.
struct GuestOffer {
    offer: Offer,
    mimes: Vec<String>,
}

/// A client grab we serve in the guest.
struct ClientOffer {
    id: u64,
    source: Source,
    types: Vec<ClipboardType>,
    /// Data received for this grab, by type.
    cache: Vec<(ClipboardType, Arc<Vec<u8>>)>,
}

/// A client REQUEST waiting to be read from the guest owner.
type Job = common::Offered<String>;

/// Guest data being read for the client.
struct Reading {
    job: Job,
    file: File,
    buf: Vec<u8>,
    limit: usize,
    deadline: Instant,
}

/// One selection's state.
struct Sel {
    which: Selection,
    serial: u32,
    /// The foreign offer holding the selection.
    current: Option<GuestOffer>,
    /// What we announced to the client for it.
    guest_offer: Option<Vec<common::Offered<String>>>,
    jobs: VecDeque<Job>,
    active: Option<Reading>,
    client_offer: Option<ClientOffer>,
}

impl Sel {
    fn new(which: Selection) -> Sel {
        Sel {
            which,
            serial: 0,
            current: None,
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

/// A guest paste waiting for client data.
struct Waiting {
    sel: usize,
    type_: ClipboardType,
    conv: Conv,
    file: File,
    deadline: Instant,
}

/// Client data being written to a guest application.
struct Writing {
    file: File,
    data: Arc<Vec<u8>>,
    offset: usize,
    deadline: Instant,
}

fn sel_index(s: Selection) -> Option<usize> {
    match s {
        Selection::Clipboard => Some(0),
        Selection::Primary => Some(1),
        Selection::Secondary => None,
    }
}

struct Worker {
    conn: Connection,
    queue: EventQueue<Inbox>,
    qh: QueueHandle<Inbox>,
    inbox: Inbox,
    manager: Manager,
    device: Device,
    _seat: WlSeat,
    host: Arc<dyn HostSink>,
    limits: ClipboardLimits,
    caps: Option<Caps>,
    /// The client's MAX_CLIPBOARD, when it set a non-negative one.
    client_max: Option<usize>,
    /// False once the compositor connection failed or the device went inert.
    alive: bool,
    sels: [Sel; 2],
    /// Offers announced by `data_offer` that no selection names yet, with their MIME types.
    offers: HashMap<ObjectId, GuestOffer>,
    client_reqs: Vec<ClientReq>,
    waiting: Vec<Waiting>,
    writing: Vec<Writing>,
    offer_ids: u64,
}

/// What `poll` watches besides the wake-up pipe and the connection.
#[derive(Clone, Copy)]
enum Watch {
    Reading(usize),
    Writing(usize),
    Waiting(usize),
}

impl Worker {
    fn run(mut self, rx: &mpsc::Receiver<Cmd>, mut wake: File) {
        self.serve(rx, &mut wake);
        for s in &self.sels {
            if let Some(o) = &s.client_offer {
                o.source.destroy();
            }
        }
        let _ = self.conn.flush();
    }

    fn serve(&mut self, rx: &mpsc::Receiver<Cmd>, wake: &mut File) {
        loop {
            loop {
                match rx.try_recv() {
                    Ok(Cmd::Shutdown) | Err(TryRecvError::Disconnected) => return,
                    Ok(cmd) => self.handle(cmd),
                    Err(TryRecvError::Empty) => break,
                }
            }
            if self.alive {
                if let Err(e) = self.queue.dispatch_pending(&mut self.inbox) {
                    self.gone(&e.to_string());
                }
                self.handle_events();
            }
            self.expire(Instant::now());
            if self.alive {
                if let Err(e) = self.conn.flush() {
                    if !matches!(&e, WaylandError::Io(io) if io.kind() == ErrorKind::WouldBlock) {
                        self.gone(&e.to_string());
                    }
                }
            }
            let guard = if self.alive {
                match self.queue.prepare_read() {
                    Some(g) => Some(g),
                    None => continue, // events already queued: dispatch them first
                }
            } else {
                None
            };
            let mut fds = vec![libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(g) = &guard {
                fds.push(libc::pollfd {
                    fd: g.connection_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let mut watches = Vec::new();
            for (i, s) in self.sels.iter().enumerate() {
                if let Some(r) = &s.active {
                    watches.push(Watch::Reading(i));
                    fds.push(libc::pollfd {
                        fd: r.file.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                }
            }
            for (i, w) in self.writing.iter().enumerate() {
                watches.push(Watch::Writing(i));
                fds.push(libc::pollfd {
                    fd: w.file.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                });
            }
            // A paste whose reader gives up shows as an error on its pipe.
            for (i, w) in self.waiting.iter().enumerate() {
                watches.push(Watch::Waiting(i));
                fds.push(libc::pollfd {
                    fd: w.file.as_raw_fd(),
                    events: 0,
                    revents: 0,
                });
            }
            let timeout = self.next_deadline().map_or(-1, |d| {
                let ms = d.saturating_duration_since(Instant::now()).as_millis() + 1;
                i32::try_from(ms).unwrap_or(i32::MAX)
            });
            let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
            // SAFETY: `fds` is a valid array of `nfds` pollfd structs that outlives the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    tracing::warn!("clipboard: poll failed: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            if fds[0].revents != 0 {
                let mut sink = [0u8; 64];
                while matches!(wake.read(&mut sink), Ok(n) if n > 0) {}
            }
            let base = if let Some(g) = guard {
                if fds[1].revents != 0 {
                    if let Err(e) = g.read() {
                        if !matches!(&e, WaylandError::Io(io) if io.kind() == ErrorKind::WouldBlock)
                        {
                            self.gone(&e.to_string());
                        }
                    }
                }
                2
            } else {
                1
            };
            let ready: Vec<Watch> = watches
                .iter()
                .zip(&fds[base..])
                .filter(|(_, p)| p.revents != 0)
                .map(|(w, _)| *w)
                .collect();
            self.service(&ready);
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Caps { caps, new_client } => self.on_caps(caps, new_client),
            Cmd::Client(msg) => self.on_client(msg),
            Cmd::Disconnected => self.on_disconnected(),
            Cmd::Shutdown => {}
        }
    }

    fn gone(&mut self, why: &str) {
        if !self.alive {
            return;
        }
        tracing::warn!("clipboard: Wayland connection lost ({why}); clipboard disabled");
        self.alive = false;
        for i in 0..self.sels.len() {
            let s = &mut self.sels[i];
            let mut failed: Vec<Job> = s.jobs.drain(..).collect();
            failed.extend(s.active.take().map(|r| r.job));
            s.client_offer = None;
            s.current = None;
            let which = s.which;
            for job in failed {
                self.host.send(none(which, job.type_));
            }
            if self.sels[i].guest_offer.take().is_some() {
                self.send_release(i);
            }
        }
        self.offers.clear();
        self.waiting.clear();
    }

    // ----- capabilities and helpers -------------------------------------------------------

    /// Whether selection `i` is bridged with the current client.
    fn enabled(&self, i: usize) -> bool {
        common::selection_enabled(self.caps.as_ref(), i) && (i == 0 || self.device.has_primary())
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

    fn on_caps(&mut self, caps: Caps, new_client: bool) {
        let was: Vec<bool> = (0..2).map(|i| self.enabled(i)).collect();
        self.caps = Some(caps);
        if new_client {
            self.reset_client();
        }
        for (i, &was_enabled) in was.iter().enumerate() {
            if !self.enabled(i) {
                self.drop_client_offer(i);
                self.sels[i].guest_offer = None;
            } else if new_client || !was_enabled {
                // Tell the (new) client about a guest owner it has not heard of.
                self.announce(i);
            }
        }
    }

    /// Forgets the previous client: serials, its grabs, its pending requests.
    fn reset_client(&mut self) {
        for i in 0..self.sels.len() {
            self.sels[i].serial = 0;
            self.sels[i].guest_offer = None;
            self.drop_client_offer(i);
        }
        self.client_reqs.clear();
        // Dropping the pipes gives the pasting applications an empty answer.
        self.waiting.clear();
    }

    fn on_disconnected(&mut self) {
        self.reset_client();
        self.caps = None;
        self.client_max = None;
        for s in &mut self.sels {
            // Nobody is left to answer.
            s.jobs.clear();
        }
    }

    /// Stops serving a client grab, clearing the selection if our source still holds it.
    fn drop_client_offer(&mut self, i: usize) {
        let Some(offer) = self.sels[i].client_offer.take() else {
            return;
        };
        if self.alive {
            // Our source has not been cancelled, so it is the selection.
            self.device.set(i, None);
            offer.source.destroy();
        }
    }

    // ----- client messages ----------------------------------------------------------------

    fn on_client(&mut self, msg: Message) {
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
            Message::ClipboardRelease { selection } => {
                if let Some(i) = sel_index(selection) {
                    self.drop_client_offer(i);
                }
            }
            Message::MaxClipboard(n) => self.client_max = usize::try_from(n).ok(),
            other => tracing::debug!("clipboard: ignoring {other:?}"),
        }
    }

    fn on_client_grab(
        &mut self,
        selection: Selection,
        serial: Option<u32>,
        types: Vec<ClipboardType>,
    ) {
        let Some(i) = sel_index(selection).filter(|&i| self.enabled(i)) else {
            tracing::warn!("clipboard: grab of {selection:?}, which is not bridged; ignored");
            return;
        };
        if !self.alive {
            return;
        }
        let s = &mut self.sels[i];
        if !common::take_client_serial(&mut s.serial, serial) {
            tracing::debug!(
                "clipboard: {selection:?} grab with serial {serial:?}, expected {}; discarded",
                s.serial
            );
            return;
        }
        s.guest_offer = None;
        // Client requests for the guest data queued behind: the client owns it now.
        let stale: Vec<Job> = s.jobs.drain(..).collect();
        for job in stale {
            self.host.send(none(selection, job.type_));
        }
        let mimes = mimes_for_client(&types);
        if mimes.is_empty() {
            tracing::debug!("clipboard: {selection:?} grab of no bridged type ({types:?})");
            self.drop_client_offer(i);
            return;
        }
        let source = self.manager.create_source(&self.qh);
        for m in &mimes {
            source.offer(m);
        }
        self.device.set(i, Some(&source));
        self.offer_ids += 1;
        let old = self.sels[i].client_offer.replace(ClientOffer {
            id: self.offer_ids,
            source,
            types,
            cache: Vec::new(),
        });
        if let Some(old) = old {
            old.source.destroy();
        }
    }

    fn on_client_request(&mut self, selection: Selection, type_: ClipboardType) {
        let Some(i) = sel_index(selection) else {
            self.host.send(none(selection, type_));
            return;
        };
        let s = &mut self.sels[i];
        let offered = s
            .guest_offer
            .as_ref()
            .and_then(|o| o.iter().find(|o| o.type_ == type_).cloned());
        match offered {
            Some(o) if self.alive && s.jobs.len() < MAX_QUEUED_JOBS => {
                s.jobs.push_back(o);
                self.start_next(i);
            }
            _ => {
                tracing::debug!("clipboard: {selection:?} request for {type_:?} refused");
                self.host.send(none(selection, type_));
            }
        }
    }

    fn on_client_data(&mut self, selection: Selection, type_: ClipboardType, data: Vec<u8>) {
        let Some(i) = sel_index(selection) else {
            tracing::warn!("clipboard: data for {selection:?}, never requested; dropped");
            return;
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
            return;
        };
        let req = self.client_reqs.remove(pos);
        if type_ == ClipboardType::None {
            self.refuse_waiting(i, req.type_);
            return;
        }
        if data.len() > self.limits.max_bytes {
            tracing::warn!(
                "clipboard: client sent {} bytes of {type_:?}, more than {}; refused",
                data.len(),
                self.limits.max_bytes
            );
            self.refuse_waiting(i, type_);
            return;
        }
        let data = Arc::new(data);
        if let Some(offer) = self.sels[i].client_offer.as_mut() {
            if offer.id == req.offer_id {
                offer.cache.retain(|(t, _)| *t != type_);
                offer.cache.push((type_, Arc::clone(&data)));
            }
        }
        let (ready, rest): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.sel == i && w.type_ == type_);
        self.waiting = rest;
        for w in ready {
            self.start_writing(w.file, w.conv, &data);
        }
    }

    /// Drops the guest pastes waiting for `type_` on selection `i` (they read nothing).
    fn refuse_waiting(&mut self, i: usize, type_: ClipboardType) {
        self.waiting.retain(|w| !(w.sel == i && w.type_ == type_));
    }

    // ----- Wayland events -----------------------------------------------------------------

    fn handle_events(&mut self) {
        let events = std::mem::take(&mut self.inbox.events);
        for ev in events {
            match ev {
                Ev::NewOffer(offer) => {
                    if self.offers.len() >= MAX_LOOSE_OFFERS {
                        tracing::warn!("clipboard: too many unused offers; the new one dropped");
                        offer.destroy();
                        continue;
                    }
                    self.offers.insert(
                        offer.id(),
                        GuestOffer {
                            offer,
                            mimes: Vec::new(),
                        },
                    );
                }
                Ev::OfferMime(id, mime) => {
                    if let Some(o) = self.offers.get_mut(&id) {
                        if o.mimes.len() < MAX_MIMES && !o.mimes.contains(&mime) {
                            o.mimes.push(mime);
                        }
                    }
                }
                Ev::Selection { sel, offer } => self.on_selection(sel, offer),
                Ev::Finished => self.gone("the data-control device finished"),
                Ev::Send { source, mime, fd } => self.on_send(&source, &mime, fd),
                Ev::Cancelled(id) => {
                    for i in 0..self.sels.len() {
                        if self.sels[i]
                            .client_offer
                            .as_ref()
                            .is_some_and(|o| o.source.id() == id)
                        {
                            if let Some(o) = self.sels[i].client_offer.take() {
                                o.source.destroy();
                            }
                        }
                    }
                }
            }
        }
    }

    /// Selection `i` changed to `offer` (or to nothing).
    fn on_selection(&mut self, i: usize, offer: Option<ObjectId>) {
        if let Some(old) = self.sels[i].current.take() {
            old.offer.destroy();
        }
        let new = offer.and_then(|id| {
            let o = self.offers.remove(&id);
            if o.is_none() {
                tracing::warn!("clipboard: selection names an unknown offer {id}");
            }
            o
        });
        match new {
            Some(o) if o.mimes.iter().any(|m| m == OWN_MIME) => {
                // Our own source coming back: the client's grab, nothing to announce.
                o.offer.destroy();
            }
            Some(o) => {
                self.sels[i].current = Some(o);
                if self.enabled(i) {
                    self.announce(i);
                }
            }
            None => {
                if self.sels[i].guest_offer.take().is_some() {
                    self.send_release(i);
                }
            }
        }
    }

    /// Sends a GRAB for the foreign offer holding selection `i` (or a RELEASE if it offers
    /// nothing bridged and an earlier offer had been announced).
    fn announce(&mut self, i: usize) {
        let Some(current) = &self.sels[i].current else {
            return;
        };
        let offered = common::map_offer(&current.mimes, |t| {
            mimes_for_type(t).into_iter().map(String::from).collect()
        });
        if offered.is_empty() {
            tracing::debug!(
                "clipboard: {:?} offer of no bridged type ({:?})",
                self.sels[i].which,
                current.mimes
            );
            if self.sels[i].guest_offer.take().is_some() {
                self.send_release(i);
            }
            return;
        }
        let s = &mut self.sels[i];
        let serial = s.serial;
        s.serial = s.serial.wrapping_add(1);
        let types = offered.iter().map(|o| o.type_).collect();
        s.guest_offer = Some(offered);
        self.host.send(Message::ClipboardGrab {
            selection: s.which,
            serial: Some(serial),
            types,
        });
    }

    /// Starts reading the next queued request of selection `i` if none is running.
    fn start_next(&mut self, i: usize) {
        while self.sels[i].active.is_none() {
            let Some(job) = self.sels[i].jobs.pop_front() else {
                return;
            };
            let which = self.sels[i].which;
            let Some(current) = self.sels[i].current.as_ref().filter(|_| self.alive) else {
                self.host.send(none(which, job.type_));
                continue;
            };
            let (rd, wr) = match pipe().and_then(|(rd, wr)| set_nonblocking(&rd).map(|_| (rd, wr)))
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("clipboard: {e}");
                    self.host.send(none(which, job.type_));
                    continue;
                }
            };
            current.offer.receive(&job.target, wr.as_fd());
            // The request holds its own copy of the write end; ours must go, or the read
            // never sees the end of the data.
            drop(wr);
            let limit = if job.bmp_to_png {
                // A BMP is converted before it is sent: bound it by the memory limit only.
                self.limits.max_bytes
            } else {
                self.send_limit()
            };
            self.sels[i].active = Some(Reading {
                job,
                file: File::from(rd),
                buf: Vec::new(),
                limit,
                deadline: Instant::now() + self.limits.request_timeout,
            });
        }
    }

    /// A guest application pastes from our source.
    fn on_send(&mut self, source: &ObjectId, mime: &str, fd: OwnedFd) {
        let Some(i) = self.sels.iter().position(|s| {
            s.client_offer
                .as_ref()
                .is_some_and(|o| o.source.id() == *source)
        }) else {
            tracing::debug!("clipboard: paste from a source no longer ours; refused");
            return;
        };
        let Some(offer) = self.sels[i].client_offer.as_ref() else {
            return;
        };
        let Some((type_, conv)) = plan(mime, &offer.types) else {
            tracing::debug!("clipboard: paste as {mime:?}, not offered; refused");
            return;
        };
        let file = File::from(fd);
        if let Some((_, data)) = offer.cache.iter().find(|(t, _)| *t == type_) {
            let data = Arc::clone(data);
            self.start_writing(file, conv, &data);
            return;
        }
        if self.waiting.len() >= MAX_PIPES {
            tracing::warn!("clipboard: {MAX_PIPES} pastes already wait; refused");
            return;
        }
        let offer_id = offer.id;
        let which = self.sels[i].which;
        let asked = self
            .client_reqs
            .iter()
            .any(|r| r.sel == i && r.type_ == type_);
        if !asked {
            self.host.send(Message::ClipboardRequest {
                selection: which,
                type_,
            });
            self.client_reqs.push(ClientReq {
                sel: i,
                type_,
                offer_id,
                deadline: Instant::now() + self.limits.request_timeout,
            });
        }
        self.waiting.push(Waiting {
            sel: i,
            type_,
            conv,
            file,
            deadline: Instant::now() + self.limits.request_timeout,
        });
    }

    /// Starts writing client data, converted for the paste, to a guest application's pipe.
    fn start_writing(&mut self, file: File, conv: Conv, data: &Arc<Vec<u8>>) {
        if self.writing.len() >= MAX_PIPES {
            tracing::warn!("clipboard: {MAX_PIPES} pastes already being written; refused");
            return;
        }
        let data = match common::convert_for_guest(conv, data, self.limits.max_bytes) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("clipboard: client image not converted ({conv:?}): {e}");
                return;
            }
        };
        let fd = OwnedFd::from(file);
        if let Err(e) = set_nonblocking(&fd) {
            tracing::warn!("clipboard: {e}");
            return;
        }
        self.writing.push(Writing {
            file: File::from(fd),
            data,
            offset: 0,
            deadline: Instant::now() + self.limits.request_timeout,
        });
    }

    // ----- transfers ----------------------------------------------------------------------

    /// Moves data on the pipes `poll` found ready.
    fn service(&mut self, ready: &[Watch]) {
        let mut done_writing = Vec::new();
        let mut gone_waiting = Vec::new();
        for &w in ready {
            match w {
                Watch::Reading(i) => self.read_some(i),
                Watch::Writing(k) => {
                    if self.write_some(k) {
                        done_writing.push(k);
                    }
                }
                Watch::Waiting(k) => gone_waiting.push(k),
            }
        }
        // Remove from the back so the indices stay valid.
        done_writing.sort_unstable();
        for k in done_writing.into_iter().rev() {
            self.writing.swap_remove(k);
        }
        gone_waiting.sort_unstable();
        for k in gone_waiting.into_iter().rev() {
            tracing::debug!("clipboard: a pasting application gave up");
            self.waiting.swap_remove(k);
        }
    }

    /// Reads what the guest owner of selection `i` wrote; finishes the request at the end of
    /// the data or past the limit.
    fn read_some(&mut self, i: usize) {
        let Some(r) = self.sels[i].active.as_mut() else {
            return;
        };
        let mut chunk = vec![0u8; IO_CHUNK];
        let outcome = loop {
            match r.file.read(&mut chunk) {
                Ok(0) => break Some(true),
                Ok(n) => {
                    if r.buf.len() + n > r.limit {
                        tracing::warn!(
                            "clipboard: {:?} owner sends more than {} bytes; refused",
                            self.sels[i].which,
                            r.limit
                        );
                        break Some(false);
                    }
                    r.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("clipboard: reading the guest data: {e}");
                    break Some(false);
                }
            }
        };
        if let Some(ok) = outcome {
            self.finish_reading(i, ok);
        }
    }

    /// Answers the running request of selection `i` with what was read (`ok`) or NONE.
    fn finish_reading(&mut self, i: usize, ok: bool) {
        let Some(r) = self.sels[i].active.take() else {
            return;
        };
        let which = self.sels[i].which;
        let data = if ok {
            common::guest_data_for_client(
                r.job.type_,
                r.job.bmp_to_png,
                r.job.target == "STRING",
                r.buf,
                self.limits.max_bytes,
                self.send_limit(),
            )
        } else {
            None
        };
        let msg = match data {
            Some(data) => Message::Clipboard {
                selection: which,
                type_: r.job.type_,
                data,
            },
            None => none(which, r.job.type_),
        };
        self.host.send(msg);
        self.start_next(i);
    }

    /// Writes more of transfer `k`; true when it is over (done or failed).
    fn write_some(&mut self, k: usize) -> bool {
        let Some(w) = self.writing.get_mut(k) else {
            return true;
        };
        loop {
            let end = (w.offset + IO_CHUNK).min(w.data.len());
            let Some(piece) = w.data.get(w.offset..end).filter(|p| !p.is_empty()) else {
                return true; // all written; dropping the file closes the pipe
            };
            match w.file.write(piece) {
                Ok(n) => {
                    w.offset += n;
                    w.deadline = Instant::now() + self.limits.request_timeout;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("clipboard: writing to a pasting application: {e}");
                    return true;
                }
            }
        }
    }

    // ----- deadlines ----------------------------------------------------------------------

    fn next_deadline(&self) -> Option<Instant> {
        let reading = self
            .sels
            .iter()
            .filter_map(|s| s.active.as_ref().map(|a| a.deadline));
        let reqs = self.client_reqs.iter().map(|r| r.deadline);
        let waiting = self.waiting.iter().map(|w| w.deadline);
        let writing = self.writing.iter().map(|w| w.deadline);
        reading.chain(reqs).chain(waiting).chain(writing).min()
    }

    fn expire(&mut self, now: Instant) {
        for i in 0..self.sels.len() {
            if self.sels[i]
                .active
                .as_ref()
                .is_some_and(|a| a.deadline <= now)
            {
                tracing::warn!(
                    "clipboard: {:?} owner did not deliver in time; request abandoned",
                    self.sels[i].which
                );
                self.finish_reading(i, false);
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
            self.refuse_waiting(r.sel, r.type_);
        }
        self.waiting.retain(|w| w.deadline > now);
        let before = self.writing.len();
        self.writing.retain(|w| w.deadline > now);
        if self.writing.len() < before {
            tracing::warn!("clipboard: a pasting application stopped reading; dropped");
        }
    }
}

/// The refusal of a request.
fn none(selection: Selection, type_: ClipboardType) -> Message {
    tracing::trace!("clipboard: {selection:?} {type_:?} answered NONE");
    Message::Clipboard {
        selection,
        type_: ClipboardType::None,
        data: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_types_to_mimes() {
        let m = mimes_for_client(&[ClipboardType::Utf8Text, ClipboardType::ImagePng]);
        assert_eq!(
            m,
            [
                "text/plain;charset=utf-8",
                "UTF8_STRING",
                "text/plain",
                "TEXT",
                "STRING",
                "image/png",
                "image/bmp",
                OWN_MIME
            ]
        );
        let b = mimes_for_client(&[ClipboardType::ImageBmp]);
        assert!(b.contains(&"image/png") && b.contains(&"image/bmp"));
        assert!(mimes_for_client(&[ClipboardType::FileList]).is_empty());
    }

    #[test]
    fn paste_plans() {
        let t = [ClipboardType::Utf8Text];
        assert_eq!(
            plan("text/plain;charset=UTF-8", &t),
            Some((ClipboardType::Utf8Text, Conv::AsIs))
        );
        assert_eq!(
            plan("STRING", &t),
            Some((ClipboardType::Utf8Text, Conv::Latin1))
        );
        assert_eq!(plan("image/png", &t), None);
        let bmp = [ClipboardType::ImageBmp];
        assert_eq!(
            plan("image/png", &bmp),
            Some((ClipboardType::ImageBmp, Conv::BmpToPng))
        );
        let png = [ClipboardType::ImagePng];
        assert_eq!(
            plan("image/x-bmp", &png),
            Some((ClipboardType::ImagePng, Conv::PngToBmp))
        );
    }

    #[test]
    fn guest_mimes_to_types() {
        let mimes: Vec<String> = ["text/plain", "image/bmp", "x-special/nautilus"]
            .into_iter()
            .map(String::from)
            .collect();
        let o = common::map_offer(&mimes, |t| {
            mimes_for_type(t).into_iter().map(String::from).collect()
        });
        let got: Vec<_> = o
            .iter()
            .map(|o| (o.type_, o.target.as_str(), o.bmp_to_png))
            .collect();
        assert_eq!(
            got,
            [
                (ClipboardType::Utf8Text, "text/plain", false),
                (ClipboardType::ImagePng, "image/bmp", true),
                (ClipboardType::ImageBmp, "image/bmp", false),
            ]
        );
    }
}
