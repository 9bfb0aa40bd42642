//! The per-session agent (`spice-agent`): runs as the user in a graphical session, connects to
//! `spice-agentd`, and serves what needs the session: the clipboard ([`clipboard`]), the
//! resolution ([`randr`] on X11, [`mutter`] on GNOME Wayland, behind [`display`]) and file
//! transfer ([`file_xfer`]).

pub mod clipboard;
pub mod display;
pub mod file_xfer;
pub mod mutter;
pub mod randr;
pub mod wl_outputs;

use crate::protocol::Message;

/// Where the session part's messages to the client go (through `spice-agentd`). The sink
/// encodes in the client's dialect; callers fill in every field (a grab's serial included).
pub trait HostSink: Send + Sync {
    /// Sends one message to the client.
    fn send(&self, msg: Message);
}

use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::ipc;
use crate::protocol::{cap, msg, reply, type_name, Caps, Dialect};
use clipboard::{ClipboardBackend, ClipboardLimits, WaylandClipboard, X11Clipboard};
use display::DisplayBackend;
use file_xfer::FileXfers;
use mutter::Mutter;
use randr::Randr;
use wl_outputs::WlOutputs;

/// What the session agent is told at start.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// `spice-agentd`'s socket.
    pub socket: PathBuf,
    /// X display (`None`: $DISPLAY).
    pub display: Option<String>,
    /// Where transferred files go (`None`: the XDG download folder).
    pub download_dir: Option<PathBuf>,
    /// Bridge the clipboard.
    pub clipboard: bool,
    /// Largest clipboard taken or given, in bytes.
    pub max_clipboard: usize,
    /// How long to keep trying to reach the daemon at start (it may start after the session).
    pub connect_timeout: Duration,
}

/// The session agent's link to the daemon: frames out, messages encoded in the client's
/// dialect. It survives the daemon restarting (the stream is replaced on reconnect).
pub struct DaemonLink {
    stream: Mutex<Option<UnixStream>>,
    dialect: Mutex<Dialect>,
}

impl DaemonLink {
    fn new() -> Self {
        DaemonLink {
            stream: Mutex::new(None),
            dialect: Mutex::new(Dialect::default()),
        }
    }

    /// Sends a raw frame (dropped with a log line while the daemon is away).
    pub fn send_frame(&self, type_: u32, data: &[u8]) {
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stream) = s.as_mut() {
            if let Err(e) = ipc::write_frame(stream, type_, data) {
                warn!("daemon socket write failed: {e}");
                let _ = stream.shutdown(std::net::Shutdown::Both);
                *s = None;
            }
        } else {
            debug!(
                "{} dropped: not connected to spice-agentd",
                type_name(type_)
            );
        }
    }

    fn dialect(&self) -> Dialect {
        *self.dialect.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl HostSink for DaemonLink {
    fn send(&self, m: Message) {
        let d = self.dialect();
        self.send_frame(m.type_(), &m.encode(d));
    }
}

/// Holds an abstract Unix socket named for the user and display while the agent runs, so a
/// second instance (the systemd user unit and the XDG autostart entry both start one) exits.
fn single_instance(display: &str) -> io::Result<Option<std::os::unix::net::UnixListener>> {
    use std::os::linux::net::SocketAddrExt;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let name = format!("spice-agent-{uid}-{display}");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    match std::os::unix::net::UnixListener::bind_addr(&addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

fn send_layout(link: &DaemonLink, backend: &dyn DisplayBackend) {
    match backend.layout() {
        Ok(l) if !l.is_empty() => {
            info!("guest layout {l:?}");
            link.send_frame(ipc::LAYOUT, &ipc::encode_layout(&l));
        }
        Ok(_) => warn!("no monitor is on ({}); no layout reported", backend.name()),
        Err(e) => warn!("reading the layout: {e}"),
    }
}

/// The clipboard bridge for the session: Wayland (data control) when `$WAYLAND_DISPLAY` is
/// set and the compositor offers it, else X11 (Xwayland included) when there is an X display.
fn start_clipboard(
    x_display: Option<&str>,
    link: &Arc<DaemonLink>,
    limits: ClipboardLimits,
) -> Option<Box<dyn ClipboardBackend>> {
    if std::env::var_os("WAYLAND_DISPLAY").is_some() {
        match WaylandClipboard::start(None, link.clone(), limits) {
            Ok(c) => return Some(Box::new(c)),
            Err(e) if x_display.is_some() => info!("Wayland clipboard not used ({e}); trying X11"),
            Err(e) => warn!("clipboard disabled: {e}"),
        }
    }
    let x_display = x_display?;
    match X11Clipboard::start(Some(x_display), link.clone(), limits) {
        Ok(c) => Some(Box::new(c)),
        Err(e) => {
            warn!("clipboard disabled: {e}");
            None
        }
    }
}

/// Runs the session agent until the X display goes away. Returns Ok at once when another
/// instance serves this display. Without an X display (a Wayland session without Xwayland)
/// it runs with `$WAYLAND_DISPLAY`: the clipboard and file transfer, and the resolution only
/// where a Wayland display backend (Mutter) serves it.
pub fn run(opts: SessionOptions) -> anyhow::Result<()> {
    let x_display = opts
        .display
        .clone()
        .or_else(|| std::env::var("DISPLAY").ok());
    let instance_name = x_display
        .clone()
        .or_else(|| std::env::var("WAYLAND_DISPLAY").ok())
        .ok_or_else(|| {
            anyhow::anyhow!("no display: set DISPLAY or WAYLAND_DISPLAY, or pass --display")
        })?;
    let Some(_instance) = single_instance(&instance_name)? else {
        info!("another spice-agent serves {instance_name}; exiting");
        return Ok(());
    };
    let link = Arc::new(DaemonLink::new());
    let display = match start_display(x_display.as_deref(), &link) {
        Ok(d) => Some(d),
        Err(e) if x_display.is_none() => {
            info!("the resolution is not managed by this agent here ({e})");
            None
        }
        Err(e) => return Err(e),
    };
    let clipboard = if opts.clipboard {
        let limits = ClipboardLimits {
            max_bytes: opts.max_clipboard,
            ..ClipboardLimits::default()
        };
        start_clipboard(x_display.as_deref(), &link, limits)
    } else {
        None
    };
    let dir = opts
        .download_dir
        .clone()
        .unwrap_or_else(FileXfers::download_dir);
    info!("file transfers go to {}", dir.display());
    let mut xfers = FileXfers::new(dir);
    let deadline = std::time::Instant::now() + opts.connect_timeout;
    loop {
        let stream = match UnixStream::connect(&opts.socket) {
            Ok(s) => s,
            Err(e) => {
                if std::time::Instant::now() > deadline {
                    anyhow::bail!(
                        "cannot reach spice-agentd at {}: {e}",
                        opts.socket.display()
                    );
                }
                debug!("spice-agentd not there yet ({e})");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        info!("connected to spice-agentd at {}", opts.socket.display());
        *link.stream.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream.try_clone()?);
        match display.as_deref() {
            Some(d) => send_layout(&link, d),
            // No display backend (a Wayland compositor other than Mutter): an empty layout
            // still makes spice-agentd open the port for the clipboard and file transfer; it
            // then offers no client mouse mode, having nowhere to place the pointer.
            None => link.send_frame(ipc::LAYOUT, &ipc::encode_layout(&[])),
        }
        let mut ctx = Ctx {
            link: &link,
            display: display.as_deref(),
            clipboard: clipboard.as_deref(),
            xfers: &mut xfers,
            client_caps: Caps::default(),
        };
        let mut reader = io::BufReader::new(stream);
        let why = loop {
            match ipc::read_frame(
                &mut reader,
                u32::try_from(opts.max_clipboard)
                    .unwrap_or(u32::MAX)
                    .saturating_add(64),
            ) {
                Ok(f) => ctx.frame(f),
                Err(e) => break e,
            }
        };
        warn!("spice-agentd connection ended ({why}); reconnecting");
        *link.stream.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(c) = clipboard.as_ref() {
            c.client_disconnected();
        }
        xfers.client_disconnected();
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The display backend, with its watchers started (changes are reported to the daemon):
/// Mutter's DisplayConfig on GNOME Wayland ([`display::wants_mutter`], and the bus name is
/// there), else RandR on the X display.
fn start_display(
    x_display: Option<&str>,
    link: &Arc<DaemonLink>,
) -> anyhow::Result<Arc<dyn DisplayBackend>> {
    let env = |k: &str| std::env::var(k).ok();
    if display::wants_mutter(
        env("XDG_CURRENT_DESKTOP").as_deref(),
        env("WAYLAND_DISPLAY").as_deref(),
    ) {
        match Mutter::connect().and_then(|m| Ok((m.watch()?, m))) {
            Ok((mut changes, mutter)) => {
                info!("resolution through Mutter's DisplayConfig (GNOME Wayland)");
                let mutter: Arc<dyn DisplayBackend> = Arc::new(mutter);
                let (link, m) = (link.clone(), mutter.clone());
                std::thread::spawn(move || loop {
                    if !changes.wait() {
                        warn!("session bus connection (MonitorsChanged) lost");
                        std::process::exit(1);
                    }
                    send_layout(&link, m.as_ref());
                });
                return Ok(mutter);
            }
            Err(e) => {
                warn!("GNOME Wayland, but Mutter's DisplayConfig is not usable ({e}); trying RandR")
            }
        }
    }
    // Another Wayland compositor: its outputs are read (the pointer needs them), never set.
    // (RandR on its Xwayland would report and change nothing real.)
    if env("WAYLAND_DISPLAY").is_some_and(|w| !w.is_empty()) {
        match WlOutputs::connect(None) {
            Ok(w) => {
                info!("Wayland compositor without a display API: outputs read, modes not set");
                return Ok(Arc::new(w));
            }
            Err(e) => warn!("Wayland outputs not readable ({e})"),
        }
    }
    let x_display = x_display.ok_or_else(|| anyhow::anyhow!("no X display for RandR"))?;
    let randr = Arc::new(Randr::connect(Some(x_display))?);
    // RandR changes (ours, the user's, a hotplug's) are reported to the daemon.
    {
        let watcher = Randr::connect(Some(x_display))?;
        watcher.watch()?;
        let (link, randr) = (link.clone(), randr.clone());
        std::thread::spawn(move || loop {
            if let Err(e) = watcher.wait_change() {
                warn!("X connection (RandR events) lost: {e}");
                std::process::exit(1);
            }
            send_layout(&link, randr.as_ref());
        });
    }
    {
        let randr = randr.clone();
        std::thread::spawn(move || {
            let r = randr::watch_drm_hotplug(|| match randr.follow_preferred() {
                Ok(true) => info!("hotplug: outputs set to their preferred modes"),
                Ok(false) => debug!("hotplug: outputs already at their preferred modes"),
                Err(e) => warn!("hotplug: applying the preferred mode failed: {e}"),
            });
            if let Err(e) = r {
                warn!("no DRM hotplug events (kernel uevent socket: {e}); the preferred mode is not followed");
            }
        });
    }
    // A hotplug may have happened before we started.
    if let Err(e) = randr.follow_preferred() {
        warn!("applying the preferred mode failed: {e}");
    }
    Ok(randr)
}

/// What handles the daemon's frames.
struct Ctx<'a> {
    link: &'a DaemonLink,
    display: Option<&'a dyn DisplayBackend>,
    clipboard: Option<&'a dyn ClipboardBackend>,
    xfers: &'a mut FileXfers,
    client_caps: Caps,
}

impl Ctx<'_> {
    fn frame(&mut self, f: ipc::Frame) {
        if f.type_ == ipc::FILE_XFER_DISABLED {
            self.xfers.set_disabled(true);
            return;
        }
        let m = match Message::parse(f.type_, &f.data, self.link.dialect()) {
            Ok(m) => m,
            Err(e) => {
                warn!("bad {} from the client: {e}", type_name(f.type_));
                if f.type_ == msg::MONITORS_CONFIG {
                    self.link.send(Message::Reply {
                        type_: msg::MONITORS_CONFIG,
                        error: reply::ERROR,
                    });
                }
                return;
            }
        };
        match m {
            Message::AnnounceCapabilities { request, caps } => {
                *self.link.dialect.lock().unwrap_or_else(|p| p.into_inner()) =
                    Dialect::of_peer(&caps);
                if let Some(c) = self.clipboard {
                    c.client_caps(&caps, request);
                }
                self.client_caps = caps;
            }
            Message::MonitorsConfig(mc) => {
                let error = match self.display.map(|d| d.apply(&mc.monitors)) {
                    Some(Ok(())) => reply::SUCCESS,
                    Some(Err(e)) => {
                        warn!("monitors config {:?} not applied: {e}", mc.monitors);
                        reply::ERROR
                    }
                    None => {
                        warn!(
                            "monitors config {:?} not applied: no display backend",
                            mc.monitors
                        );
                        reply::ERROR
                    }
                };
                self.link.send(Message::Reply {
                    type_: msg::MONITORS_CONFIG,
                    error,
                });
            }
            Message::GraphicsDeviceInfo(entries) => {
                if let Some(d) = self.display {
                    d.set_device_info(&entries);
                    send_layout(self.link, d);
                }
            }
            Message::Clipboard { .. }
            | Message::ClipboardGrab { .. }
            | Message::ClipboardRequest { .. }
            | Message::ClipboardRelease { .. }
            | Message::MaxClipboard(_) => match self.clipboard {
                Some(c) => c.client_message(m),
                None => {
                    if let Message::ClipboardRequest { selection, .. } = m {
                        self.link.send(Message::Clipboard {
                            selection,
                            type_: crate::protocol::ClipboardType::None,
                            data: vec![],
                        });
                    }
                }
            },
            Message::FileXferStart { .. }
            | Message::FileXferData { .. }
            | Message::FileXferStatus { .. } => {
                let detailed = self.client_caps.has(cap::FILE_XFER_DETAILED_ERRORS);
                for r in self.xfers.handle(&m, detailed) {
                    self.link.send(r);
                }
            }
            Message::ClientDisconnected => {
                info!("client disconnected");
                if let Some(c) = self.clipboard {
                    c.client_disconnected();
                }
                self.xfers.client_disconnected();
                self.client_caps = Caps::default();
            }
            Message::AudioVolumeSync { .. } => {
                debug!("AUDIO_VOLUME_SYNC not applied (not announced)")
            }
            other => debug!("{} from the daemon ignored", type_name(other.type_())),
        }
    }
}
