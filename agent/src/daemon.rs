//! `spice-agentd`: the system part of the agent. It owns the VDI port and the uinput tablet,
//! answers the protocol's own messages, injects the client's pointer, and relays everything that
//! needs the user's session to the active session agent.
//!
//! [`Core`] is the decision logic without I/O (every input is a method, every output an
//! [`Action`]), so it is tested without a port, a socket or uinput; [`run`] wires it to them.
//!
//! Session agents are admitted by [`seat::check_peer`] (an active login session's, or root's).
//!
//! Policy, as spice-vdagentd's (reference §4.1): the port is opened only while a session agent
//! has reported its monitors, because an open port is what makes the server offer client mouse
//! mode, and the pointer cannot be placed without a layout. The most recent session agent with
//! a layout is the active one; only it gets the client's messages.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::ipc::{self, GuestMonitor};
use crate::port::{Readiness, Stop, VdiPort};
use crate::protocol::{
    cap, encode_chunks, msg, reply, type_name, xfer, Caps, ClipboardType, Dialect, Message,
    RawMessage, Reassembler, VDP_CLIENT_PORT,
};
use crate::seat;
use crate::uinput::{self, DesktopPoint, Tablet};

/// What the daemon is told at start.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The VDI port's path.
    pub port: PathBuf,
    /// The session socket's path.
    pub socket: PathBuf,
    /// Largest message taken from the host or a session (clipboard data is the big one).
    pub max_message: u32,
    /// Most session agents connected at once.
    pub max_sessions: usize,
    /// Refuse file transfers (FILE_XFER_DISABLED to the session).
    pub file_xfer_disabled: bool,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            port: PathBuf::from(crate::port::DEFAULT_PATH),
            socket: PathBuf::from(ipc::DEFAULT_SOCKET),
            max_message: 128 * 1024 * 1024,
            max_sessions: 16,
            file_xfer_disabled: false,
        }
    }
}

/// A session agent's id (its connection).
pub type SessionId = u64;

/// What [`Core`] wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the port.
    Port(Vec<u8>),
    /// Send a frame to a session agent.
    Session {
        /// Which.
        id: SessionId,
        /// Frame type.
        type_: u32,
        /// Frame data.
        data: Vec<u8>,
    },
    /// Move the uinput pointer.
    Mouse {
        /// Where.
        at: DesktopPoint,
        /// Buttons down.
        buttons: u32,
    },
    /// Open (true) or close (false) the port.
    OpenPort(bool),
}

/// The capabilities this agent announces.
pub fn our_caps() -> Caps {
    caps_announced(true)
}

/// Our capabilities, MOUSE_STATE only when the pointer can be placed: the active session
/// reported monitors. (Without it the server keeps server mouse mode, whose relative mouse
/// works, instead of a client mode whose motions would go nowhere.)
fn caps_announced(mouse: bool) -> Caps {
    let mut bits = vec![
        cap::MONITORS_CONFIG,
        cap::REPLY,
        cap::CLIPBOARD_BY_DEMAND,
        cap::CLIPBOARD_SELECTION,
        cap::SPARSE_MONITORS_CONFIG,
        cap::GUEST_LINEEND_LF,
        cap::MAX_CLIPBOARD,
        cap::GRAPHICS_DEVICE_INFO,
        cap::CLIPBOARD_NO_RELEASE_ON_REGRAB,
        cap::CLIPBOARD_GRAB_SERIAL,
    ];
    if mouse {
        bits.push(cap::MOUSE_STATE);
    }
    Caps::with(&bits)
}

/// The daemon's decisions.
#[derive(Debug, Default)]
pub struct Core {
    /// The client's capabilities (None: no client, or it has not announced yet).
    client_caps: Option<Caps>,
    /// Connected session agents, oldest first, with their layouts once reported.
    sessions: Vec<(SessionId, Option<Vec<GuestMonitor>>)>,
    /// The last GRAPHICS_DEVICE_INFO data (re-sent to a session agent that connects later).
    device_info: Option<Vec<u8>>,
    port_open: bool,
    file_xfer_disabled: bool,
    /// The host side is connected: what we announced then, MOUSE_STATE or not.
    announced_mouse: Option<bool>,
}

fn port_msg(m: &Message, dialect: Dialect) -> Action {
    Action::Port(encode_chunks(
        VDP_CLIENT_PORT,
        m.type_(),
        0,
        &m.encode(dialect),
    ))
}

impl Core {
    /// A core; `file_xfer_disabled` refuses file transfers.
    pub fn new(file_xfer_disabled: bool) -> Core {
        Core {
            file_xfer_disabled,
            ..Core::default()
        }
    }

    /// The active session: the newest with a layout.
    fn active(&self) -> Option<(SessionId, &[GuestMonitor])> {
        self.sessions
            .iter()
            .rev()
            .find_map(|(id, l)| l.as_deref().map(|l| (*id, l)))
    }

    fn dialect(&self) -> Dialect {
        self.client_caps
            .as_ref()
            .map(Dialect::of_peer)
            .unwrap_or_default()
    }

    /// Whether the pointer can be placed: the active session reported at least one monitor.
    fn mouse_mappable(&self) -> bool {
        self.active().is_some_and(|(_, l)| !l.is_empty())
    }

    fn announce(&mut self, request: bool) -> Action {
        let mouse = self.mouse_mappable();
        self.announced_mouse = Some(mouse);
        let caps = Message::AnnounceCapabilities {
            request,
            caps: caps_announced(mouse),
        };
        port_msg(&caps, Dialect::default())
    }

    fn want_port(&mut self, out: &mut Vec<Action>) {
        let want = self.active().is_some();
        if want != self.port_open {
            self.port_open = want;
            out.push(Action::OpenPort(want));
        }
    }

    /// The host side of the port is connected (the port was opened, or the host came back):
    /// announce our capabilities and ask for the client's.
    pub fn host_connected(&mut self) -> Vec<Action> {
        self.client_caps = None;
        vec![self.announce(true)]
    }

    /// The host side went away (or the port was closed): no client any more.
    pub fn host_disconnected(&mut self) -> Vec<Action> {
        self.announced_mouse = None;
        self.client_gone()
    }

    fn client_gone(&mut self) -> Vec<Action> {
        self.client_caps = None;
        match self.active() {
            Some((id, _)) => vec![Action::Session {
                id,
                type_: msg::CLIENT_DISCONNECTED,
                data: vec![],
            }],
            None => vec![],
        }
    }

    /// A whole message from the port.
    pub fn port_message(&mut self, port: u32, m: RawMessage) -> Vec<Action> {
        let mut out = Vec::new();
        let parsed = Message::parse(m.type_, &m.data, self.dialect());
        let message = match parsed {
            Ok(message) => message,
            Err(e) => {
                warn!("host sent a bad {} on port {port}: {e}", type_name(m.type_));
                // Requests the protocol answers are answered, so no peer waits forever.
                if m.type_ == msg::MONITORS_CONFIG {
                    out.push(port_msg(
                        &Message::Reply {
                            type_: msg::MONITORS_CONFIG,
                            error: reply::ERROR,
                        },
                        self.dialect(),
                    ));
                }
                return out;
            }
        };
        let forward = |core: &Core, out: &mut Vec<Action>| match core.active() {
            Some((id, _)) => {
                out.push(Action::Session {
                    id,
                    type_: m.type_,
                    data: m.data.clone(),
                });
                true
            }
            None => false,
        };
        match message {
            Message::AnnounceCapabilities { request, caps } => {
                debug!("client capabilities {:x?} (request {request})", caps.0);
                self.client_caps = Some(caps);
                if request {
                    out.push(self.announce(false));
                }
                forward(self, &mut out);
            }
            Message::MouseState {
                x,
                y,
                buttons,
                display_id,
            } => match self.active() {
                Some((_, layout)) => {
                    match uinput::to_desktop(layout, u32::from(display_id), x, y) {
                        Some(at) => out.push(Action::Mouse { at, buttons }),
                        None => debug!("MOUSE_STATE for display {display_id}, not in the layout"),
                    }
                }
                None => debug!("MOUSE_STATE without a session layout"),
            },
            Message::ClientDisconnected => out.extend(self.client_gone()),
            Message::GraphicsDeviceInfo(_) => {
                self.device_info = Some(m.data.clone());
                forward(self, &mut out);
            }
            Message::ClipboardRequest { selection, .. } => {
                if !forward(self, &mut out) {
                    out.push(port_msg(
                        &Message::Clipboard {
                            selection,
                            type_: ClipboardType::None,
                            data: vec![],
                        },
                        self.dialect(),
                    ));
                }
            }
            Message::FileXferStart { id, .. } => {
                if !forward(self, &mut out) {
                    out.push(port_msg(
                        &Message::FileXferStatus {
                            id,
                            result: xfer::ERROR,
                            detail: vec![],
                        },
                        self.dialect(),
                    ));
                }
            }
            Message::MonitorsConfig(_) => {
                if !forward(self, &mut out) {
                    out.push(port_msg(
                        &Message::Reply {
                            type_: msg::MONITORS_CONFIG,
                            error: reply::ERROR,
                        },
                        self.dialect(),
                    ));
                }
            }
            Message::DisplayConfig { .. } => {
                // Windows-only effects; this agent does not announce the capability.
                out.push(port_msg(
                    &Message::Reply {
                        type_: msg::DISPLAY_CONFIG,
                        error: reply::SUCCESS,
                    },
                    self.dialect(),
                ));
            }
            Message::Reply { .. } => debug!("REPLY from the host ignored"),
            Message::Clipboard { .. }
            | Message::ClipboardGrab { .. }
            | Message::ClipboardRelease { .. }
            | Message::FileXferStatus { .. }
            | Message::FileXferData { .. }
            | Message::MaxClipboard(_)
            | Message::AudioVolumeSync { .. } => {
                if !forward(self, &mut out) {
                    debug!("{} dropped: no session agent", type_name(m.type_));
                }
            }
        }
        out
    }

    /// A session agent connected.
    pub fn session_connected(&mut self, id: SessionId) -> Vec<Action> {
        self.sessions.push((id, None));
        let mut out = vec![];
        if self.file_xfer_disabled {
            out.push(Action::Session {
                id,
                type_: ipc::FILE_XFER_DISABLED,
                data: vec![],
            });
        }
        out
    }

    /// A frame from a session agent.
    pub fn session_frame(&mut self, id: SessionId, frame: ipc::Frame) -> Vec<Action> {
        let mut out = vec![];
        if frame.type_ == ipc::LAYOUT {
            let Some(layout) = ipc::parse_layout(&frame.data) else {
                warn!(
                    "session {id}: malformed layout ({} bytes) ignored",
                    frame.data.len()
                );
                return out;
            };
            info!("session {id}: layout {layout:?}");
            let was_active = self.active().map(|(a, _)| a);
            if let Some(s) = self.sessions.iter_mut().find(|(s, _)| *s == id) {
                s.1 = Some(layout);
            }
            if was_active != Some(id) && self.active().map(|(a, _)| a) == Some(id) {
                // A new active session learns the client it serves.
                out.extend(self.catch_up(id));
            }
            self.want_port(&mut out);
            self.reannounce_if_mouse_changed(&mut out);
            return out;
        }
        if self.active().map(|(a, _)| a) != Some(id) {
            debug!(
                "session {id} is not active: {} dropped",
                type_name(frame.type_)
            );
            return out;
        }
        match frame.type_ {
            msg::REPLY
            | msg::CLIPBOARD
            | msg::CLIPBOARD_GRAB
            | msg::CLIPBOARD_REQUEST
            | msg::CLIPBOARD_RELEASE
            | msg::FILE_XFER_STATUS => {
                if self.port_open {
                    out.push(Action::Port(encode_chunks(
                        VDP_CLIENT_PORT,
                        frame.type_,
                        0,
                        &frame.data,
                    )));
                }
            }
            other => warn!(
                "session {id} sent {} ({other}), not a message for the client",
                type_name(other)
            ),
        }
        out
    }

    /// While the host is connected, a change of whether the pointer can be placed is announced
    /// again (the server then switches the mouse mode).
    fn reannounce_if_mouse_changed(&mut self, out: &mut Vec<Action>) {
        if let (Some(was), true) = (self.announced_mouse, self.port_open) {
            if was != self.mouse_mappable() {
                out.push(self.announce(false));
            }
        }
    }

    fn catch_up(&self, id: SessionId) -> Vec<Action> {
        let mut out = vec![];
        if let Some(caps) = &self.client_caps {
            let m = Message::AnnounceCapabilities {
                request: false,
                caps: caps.clone(),
            };
            out.push(Action::Session {
                id,
                type_: msg::ANNOUNCE_CAPABILITIES,
                data: m.encode(Dialect::default()),
            });
        }
        if let Some(d) = &self.device_info {
            out.push(Action::Session {
                id,
                type_: msg::GRAPHICS_DEVICE_INFO,
                data: d.clone(),
            });
        }
        out
    }

    /// A session agent went away.
    pub fn session_closed(&mut self, id: SessionId) -> Vec<Action> {
        let was_active = self.active().map(|(a, _)| a);
        self.sessions.retain(|(s, _)| *s != id);
        let mut out = vec![];
        if was_active == Some(id) {
            if let Some((next, _)) = self.active() {
                out.extend(self.catch_up(next));
            }
        }
        self.want_port(&mut out);
        if !self.port_open {
            self.announced_mouse = None;
        }
        self.reannounce_if_mouse_changed(&mut out);
        out
    }
}

/// Events into [`run`]'s loop.
enum Event {
    /// Bytes from the port (of port generation `gen`).
    PortBytes(u64, Vec<u8>),
    /// The host side connected or went away.
    Host(u64, bool),
    /// The port failed; it will be reopened.
    PortFailed(u64, io::Error),
    SessionConnected(SessionId, UnixStream),
    SessionFrame(SessionId, ipc::Frame),
    SessionClosed(SessionId),
}

/// A running port: its reader thread stops when `stop` is set.
struct OpenPort {
    gen: u64,
    writer: VdiPort,
    stop: Arc<Stop>,
    reassembler: Reassembler,
}

fn spawn_port_reader(port: VdiPort, path: PathBuf, gen: u64, stop: Arc<Stop>, tx: Sender<Event>) {
    std::thread::spawn(move || {
        let mut port = port;
        let mut buf = vec![0u8; 64 * 1024];
        let mut host_up = false;
        // While the host is away poll reports HUP at once, so the reader sleeps between looks,
        // longer the longer it stays away (an idle guest without a client wakes once a second).
        let mut away_pause = HOST_AWAY_FIRST_PAUSE;
        loop {
            // Connected: block until bytes, a disconnect or the stop (no timer). Not connected
            // (or at start): look without waiting; "nothing to read" then means connected.
            let timeout = if host_up { None } else { Some(Duration::ZERO) };
            let r = match port.wait(timeout, Some(&stop)) {
                Ok(Readiness::Stopped) => return,
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Event::PortFailed(gen, e));
                    return;
                }
            };
            let up = r != Readiness::HostClosed;
            if up != host_up {
                host_up = up;
                if tx.send(Event::Host(gen, up)).is_err() {
                    return;
                }
            }
            match r {
                Readiness::Readable => match port.read(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        if tx.send(Event::PortBytes(gen, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Event::PortFailed(gen, e));
                        return;
                    }
                },
                Readiness::HostClosed => {
                    if !port.is_still(&path) {
                        let gone =
                            io::Error::new(io::ErrorKind::NotFound, "the port was unplugged");
                        let _ = tx.send(Event::PortFailed(gen, gone));
                        return;
                    }
                    stop.sleep(away_pause);
                    away_pause = (away_pause * 2).min(HOST_AWAY_MAX_PAUSE);
                    continue;
                }
                Readiness::Timeout | Readiness::Stopped => {}
            }
            away_pause = HOST_AWAY_FIRST_PAUSE;
        }
    });
}

/// The reader's first pause after it finds the host side away, doubled up to
/// [`HOST_AWAY_MAX_PAUSE`] while the host stays away.
const HOST_AWAY_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between looks at a port whose host side is away: how late at most a
/// client connecting is noticed.
const HOST_AWAY_MAX_PAUSE: Duration = Duration::from_secs(1);

fn peer_cred(s: &UnixStream) -> Option<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of the given length on a valid socket fd.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred)
}

fn spawn_listener(listener: UnixListener, max_sessions: usize, max_frame: u32, tx: Sender<Event>) {
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        let mut next: SessionId = 1;
        for conn in listener.incoming() {
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    warn!("session socket accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let Some(cred) = peer_cred(&stream) else {
                warn!("session agent refused: no peer credentials");
                continue;
            };
            if live.load(Ordering::SeqCst) >= max_sessions {
                warn!(
                    "session agent refused: {max_sessions} connected already (pid {} uid {})",
                    cred.pid, cred.uid
                );
                continue;
            }
            let session = match seat::check_peer(&seat::SeatPaths::default(), cred.pid, cred.uid) {
                Ok(s) => s,
                Err(e) => {
                    warn!(
                        "session agent refused (pid {} uid {}): {e}",
                        cred.pid, cred.uid
                    );
                    continue;
                }
            };
            let id = next;
            next += 1;
            info!(
                "session agent {id} connected: pid {} uid {} session {}",
                cred.pid,
                cred.uid,
                session.as_deref().unwrap_or("(no logind, or root)")
            );
            let (Ok(reader), Ok(())) = (
                stream.try_clone(),
                stream.set_write_timeout(Some(Duration::from_secs(10))),
            ) else {
                continue;
            };
            live.fetch_add(1, Ordering::SeqCst);
            if tx.send(Event::SessionConnected(id, stream)).is_err() {
                return;
            }
            let (tx, live) = (tx.clone(), live.clone());
            std::thread::spawn(move || {
                let mut reader = io::BufReader::new(reader);
                loop {
                    match ipc::read_frame(&mut reader, max_frame) {
                        Ok(f) => {
                            if tx.send(Event::SessionFrame(id, f)).is_err() {
                                break;
                            }
                        }
                        Err(ipc::IpcError::Closed) => break,
                        Err(e) => {
                            warn!("session agent {id}: {e}; disconnecting it");
                            break;
                        }
                    }
                }
                live.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(Event::SessionClosed(id));
            });
        }
    });
}

/// Binds the session socket (0666: session agents of any user connect; the daemon decides
/// which one is active), replacing a stale socket file.
fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}

/// Runs the daemon until the process is killed. Errors: the socket cannot be bound.
pub fn run(opts: DaemonOptions) -> io::Result<()> {
    let listener = bind_socket(&opts.socket)?;
    info!("listening for session agents on {}", opts.socket.display());
    let (tx, rx): (Sender<Event>, Receiver<Event>) = mpsc::channel();
    // Frames from a session carry at most a message plus headers.
    spawn_listener(
        listener,
        opts.max_sessions,
        opts.max_message.saturating_add(64),
        tx.clone(),
    );
    let mut core = Core::new(opts.file_xfer_disabled);
    let mut sessions: HashMap<SessionId, UnixStream> = HashMap::new();
    let mut port: Option<OpenPort> = None;
    let mut want_port = false;
    let mut gen = 0u64;
    let mut tablet: Option<Tablet> = None;
    let mut open_failures = 0u32;
    let writer_tx = session_writer();
    loop {
        // (Re)open the port while it is wanted; retry while it is missing or busy.
        if want_port && port.is_none() {
            let opened = VdiPort::open(&opts.port)
                .and_then(|p| Ok((p.try_clone()?, p, Arc::new(Stop::new()?))));
            match opened {
                Ok((reader, writer, stop)) => {
                    gen += 1;
                    open_failures = 0;
                    info!("opened {}", opts.port.display());
                    spawn_port_reader(reader, opts.port.clone(), gen, stop.clone(), tx.clone());
                    port = Some(OpenPort {
                        gen,
                        writer,
                        stop,
                        reassembler: Reassembler::new(opts.max_message),
                    });
                }
                Err(e) => {
                    // EBUSY: another agent (spice-vdagentd) holds it; retried each second, so
                    // the port is taken as soon as it is released. Logged once a minute.
                    if open_failures % 60 == 0 {
                        warn!(
                            "cannot open {}: {e} (retrying every second)",
                            opts.port.display()
                        );
                    }
                    open_failures = open_failures.wrapping_add(1);
                }
            }
        }
        // A timer only while the port is wanted but not open (the retry); otherwise an idle
        // agent sleeps until something happens.
        let ev = if want_port && port.is_none() {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(ev) => ev,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        } else {
            match rx.recv() {
                Ok(ev) => ev,
                Err(mpsc::RecvError) => return Ok(()),
            }
        };
        let actions = match ev {
            Event::PortBytes(g, bytes) => {
                let Some(p) = port.as_mut().filter(|p| p.gen == g) else {
                    continue;
                };
                let mut msgs = Vec::new();
                let r = p.reassembler.feed(&bytes, &mut msgs);
                let mut actions = Vec::new();
                for (chunk_port, m) in msgs {
                    debug!("host -> agent: {m}");
                    actions.extend(core.port_message(chunk_port, m));
                }
                if let Err(e) = r {
                    // Out of sync: reopen the port, as spice-vdagentd does.
                    warn!("agent port stream out of sync ({e}); reopening the port");
                    if let Some(p) = port.take() {
                        p.stop.raise();
                    }
                    actions.extend(core.host_disconnected());
                }
                actions
            }
            Event::Host(g, up) => {
                let Some(p) = port.as_mut().filter(|p| p.gen == g) else {
                    continue;
                };
                info!(
                    "host side of the agent port {}",
                    if up { "connected" } else { "gone" }
                );
                p.reassembler.reset();
                if up {
                    core.host_connected()
                } else {
                    core.host_disconnected()
                }
            }
            Event::PortFailed(g, e) => {
                if port.as_ref().is_some_and(|p| p.gen == g) {
                    warn!("agent port failed: {e}; reopening");
                    port = None;
                    std::thread::sleep(Duration::from_millis(500));
                    core.host_disconnected()
                } else {
                    continue;
                }
            }
            Event::SessionConnected(id, s) => {
                sessions.insert(id, s);
                core.session_connected(id)
            }
            Event::SessionFrame(id, f) => core.session_frame(id, f),
            Event::SessionClosed(id) => {
                info!("session agent {id} disconnected");
                sessions.remove(&id);
                core.session_closed(id)
            }
        };
        for a in actions {
            match a {
                Action::Port(bytes) => {
                    if let Some(p) = port.as_mut() {
                        if let Err(e) = p.writer.write_all(&bytes, Duration::from_secs(5)) {
                            warn!("agent port write ({} bytes) failed: {e}", bytes.len());
                        }
                    }
                }
                Action::Session { id, type_, data } => {
                    if let Some(s) = sessions.get(&id).and_then(|s| s.try_clone().ok()) {
                        // Written off this thread: a session that stops reading must not stall
                        // the port (its socket has a write timeout; the queue is bounded).
                        if writer_tx.try_send((id, s, type_, data)).is_err() {
                            warn!(
                                "session agent {id}: send queue full, {} dropped",
                                type_name(type_)
                            );
                        }
                    }
                }
                Action::Mouse { at, buttons } => {
                    if tablet.is_none() {
                        match Tablet::create() {
                            Ok(t) => tablet = Some(t),
                            Err(e) => warn!("cannot create the uinput tablet: {e}"),
                        }
                    }
                    if let Some(t) = tablet.as_mut() {
                        if let Err(e) = t.motion(at, buttons) {
                            warn!("uinput write failed: {e}; re-creating the tablet");
                            tablet = None;
                        }
                    }
                }
                Action::OpenPort(open) => {
                    want_port = open;
                    // The tablet exists before the first MOUSE_STATE: the desktop needs a moment
                    // (seconds, under emulation) to add a new input device, and motion sent
                    // before that is lost.
                    if open && tablet.is_none() {
                        match Tablet::create() {
                            Ok(t) => tablet = Some(t),
                            Err(e) => warn!("cannot create the uinput tablet: {e}"),
                        }
                    }
                    if !open {
                        if let Some(p) = port.take() {
                            info!("closing the agent port (no session agent)");
                            p.stop.raise();
                        }
                    }
                }
            }
        }
    }
}

type SessionSend = (SessionId, UnixStream, u32, Vec<u8>);

/// The thread that writes frames to session agents (bounded queue).
fn session_writer() -> SyncSender<SessionSend> {
    let (tx, rx) = mpsc::sync_channel::<SessionSend>(256);
    std::thread::spawn(move || {
        for (id, mut s, type_, data) in rx {
            if let Err(e) = ipc::write_frame(&mut s, type_, &data) {
                warn!("session agent {id}: write failed: {e}");
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Selection, VDP_SERVER_PORT};

    fn raw(m: &Message, d: Dialect) -> RawMessage {
        RawMessage {
            type_: m.type_(),
            opaque: 0,
            data: m.encode(d),
        }
    }

    fn layout() -> ipc::Frame {
        ipc::Frame {
            type_: ipc::LAYOUT,
            data: ipc::encode_layout(&[GuestMonitor {
                display_id: 0,
                x: 0,
                y: 0,
                width: 800,
                height: 600,
            }]),
        }
    }

    fn port_messages(actions: &[Action]) -> Vec<(u32, Vec<u8>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Port(b) => {
                    let mut r = Reassembler::new(1 << 20);
                    let mut out = vec![];
                    r.feed(b, &mut out).unwrap();
                    Some(out.into_iter().map(|(_, m)| (m.type_, m.data)))
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The MOUSE_STATE bit of the AnnounceCapabilities among `actions`, if one is there.
    fn announced_mouse(actions: &[Action]) -> Option<bool> {
        port_messages(actions).iter().find_map(|(t, d)| {
            match Message::parse(*t, d, Dialect::default()).ok()? {
                Message::AnnounceCapabilities { caps, .. } => Some(caps.has(cap::MOUSE_STATE)),
                _ => None,
            }
        })
    }

    #[test]
    fn an_empty_layout_opens_the_port_without_client_mouse() {
        let mut c = Core::new(false);
        c.session_connected(1);
        let empty = ipc::Frame {
            type_: ipc::LAYOUT,
            data: ipc::encode_layout(&[]),
        };
        // a Wayland session without a display backend: clipboard and files, no pointer
        assert_eq!(
            c.session_frame(1, empty.clone()),
            vec![Action::OpenPort(true)]
        );
        assert_eq!(announced_mouse(&c.host_connected()), Some(false));
        // monitors reported later: announced again, now with MOUSE_STATE
        assert_eq!(announced_mouse(&c.session_frame(1, layout())), Some(true));
        // unchanged: no new announcement
        assert_eq!(announced_mouse(&c.session_frame(1, layout())), None);
        // a newer session without monitors becomes the active one: MOUSE_STATE withdrawn
        c.session_connected(2);
        assert_eq!(announced_mouse(&c.session_frame(2, empty)), Some(false));
        // it leaves: the first session's monitors place the pointer again
        assert_eq!(announced_mouse(&c.session_closed(2)), Some(true));
        // no host: nothing announced
        c.host_disconnected();
        c.session_connected(3);
        assert_eq!(
            announced_mouse(&c.session_frame(
                3,
                ipc::Frame {
                    type_: ipc::LAYOUT,
                    data: ipc::encode_layout(&[]),
                }
            )),
            None
        );
    }

    #[test]
    fn port_opens_with_a_session_layout_and_closes_without() {
        let mut c = Core::new(false);
        assert!(c.session_connected(1).is_empty());
        assert_eq!(c.session_frame(1, layout()), vec![Action::OpenPort(true)]);
        let hello = c.host_connected();
        let m = port_messages(&hello);
        assert_eq!(m[0].0, msg::ANNOUNCE_CAPABILITIES);
        assert_eq!(
            Message::parse(m[0].0, &m[0].1, Dialect::default()).unwrap(),
            Message::AnnounceCapabilities {
                request: true,
                caps: our_caps()
            }
        );
        assert_eq!(c.session_closed(1), vec![Action::OpenPort(false)]);
    }

    #[test]
    fn client_caps_are_answered_and_relayed() {
        let mut c = Core::new(false);
        c.session_connected(7);
        c.session_frame(7, layout());
        let client = Message::AnnounceCapabilities {
            request: true,
            caps: Caps::with(&[cap::CLIPBOARD_BY_DEMAND, cap::CLIPBOARD_SELECTION]),
        };
        let a = c.port_message(VDP_CLIENT_PORT, raw(&client, Dialect::default()));
        assert_eq!(port_messages(&a)[0].0, msg::ANNOUNCE_CAPABILITIES);
        assert!(a.iter().any(|a| matches!(
            a,
            Action::Session {
                id: 7,
                type_: msg::ANNOUNCE_CAPABILITIES,
                ..
            }
        )));
        // then clipboard messages are read with the selection prefix
        let d = Dialect {
            selection: true,
            grab_serial: false,
        };
        let grab = Message::ClipboardGrab {
            selection: Selection::Primary,
            serial: None,
            types: vec![ClipboardType::Utf8Text],
        };
        let a = c.port_message(VDP_CLIENT_PORT, raw(&grab, d));
        assert_eq!(
            a,
            vec![Action::Session {
                id: 7,
                type_: msg::CLIPBOARD_GRAB,
                data: grab.encode(d)
            }]
        );
    }

    #[test]
    fn mouse_state_maps_through_the_layout() {
        let mut c = Core::new(false);
        let ms = Message::MouseState {
            x: 10,
            y: 20,
            buttons: 2,
            display_id: 0,
        };
        assert!(c
            .port_message(VDP_SERVER_PORT, raw(&ms, Dialect::default()))
            .is_empty());
        c.session_connected(1);
        c.session_frame(1, layout());
        let a = c.port_message(VDP_SERVER_PORT, raw(&ms, Dialect::default()));
        assert_eq!(
            a,
            vec![Action::Mouse {
                at: DesktopPoint {
                    x: 10,
                    y: 20,
                    width: 800,
                    height: 600
                },
                buttons: 2
            }]
        );
    }

    #[test]
    fn requests_without_a_session_are_answered() {
        let mut c = Core::new(false);
        let req = Message::ClipboardRequest {
            selection: Selection::Clipboard,
            type_: ClipboardType::Utf8Text,
        };
        let a = c.port_message(VDP_CLIENT_PORT, raw(&req, Dialect::default()));
        let m = port_messages(&a);
        assert_eq!(m[0].0, msg::CLIPBOARD);
        let start = Message::FileXferStart {
            id: 3,
            keyfile: "[vdagent-file-xfer]\nname=x\nsize=1\n".into(),
        };
        let m = port_messages(&c.port_message(VDP_CLIENT_PORT, raw(&start, Dialect::default())));
        assert_eq!(
            Message::parse(m[0].0, &m[0].1, Dialect::default()).unwrap(),
            Message::FileXferStatus {
                id: 3,
                result: xfer::ERROR,
                detail: vec![]
            }
        );
        // a malformed MONITORS_CONFIG gets an error REPLY
        let bad = RawMessage {
            type_: msg::MONITORS_CONFIG,
            opaque: 0,
            data: vec![0; 3],
        };
        let m = port_messages(&c.port_message(VDP_CLIENT_PORT, bad));
        assert_eq!(
            Message::parse(m[0].0, &m[0].1, Dialect::default()).unwrap(),
            Message::Reply {
                type_: msg::MONITORS_CONFIG,
                error: reply::ERROR
            }
        );
    }

    #[test]
    fn only_the_active_session_speaks() {
        let mut c = Core::new(false);
        c.session_connected(1);
        c.session_frame(1, layout());
        c.session_connected(2);
        c.session_frame(2, layout());
        let grab = ipc::Frame {
            type_: msg::CLIPBOARD_GRAB,
            data: vec![0, 0, 0, 0, 1, 0, 0, 0],
        };
        assert!(c.session_frame(1, grab.clone()).is_empty());
        assert_eq!(c.session_frame(2, grab.clone()).len(), 1);
        // session 2 leaves: session 1 is active again, the port stays open
        assert!(!c.session_closed(2).contains(&Action::OpenPort(false)));
        assert_eq!(c.session_frame(1, grab).len(), 1);
        // a session may not send the host's own messages
        let bogus = ipc::Frame {
            type_: msg::MOUSE_STATE,
            data: vec![0; 13],
        };
        assert!(c.session_frame(1, bogus).is_empty());
    }
}
