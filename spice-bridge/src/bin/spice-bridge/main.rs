//! `spice-bridge`: the daemon that plugs the QXL display, the input devices and the VDI port
//! into an unmodified VMM (vfio-user, vhost-user) and serves them to Spice clients. `--help`
//! documents every flag.
//!
//! Wiring only: the code it wires lives in the libraries (`qxl_device::Worker`,
//! `spice_bridge::qxl_display`, `spice_bridge::qxl_vfio`, `spice_bridge::agent`,
//! `vfio_user_server`, `vdi_port`).
//!
//! Threads: the vfio-user server (register accesses; one VMM connection at a time, the next
//! one accepted after a disconnect), the device worker (drains rings), the display bridge
//! (device events → display model), one vhost-user thread per virtio device, one per bridged
//! VDI port, the control socket and the tokio runtime serving Spice clients (and the agent
//! channel).

mod cli;
mod control;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use qxl_device::{DeviceEvent, QxlConfig, QxlDevice, Worker, WorkerConfig, WorkerHandle};
use spice_bridge::agent::wire::MonitorConfig;
use spice_bridge::agent::{AgentBridge, AgentMouseInput, AgentOptions, MonitorsSink};
use spice_bridge::guest_input::{GuestDevices, GuestInput};
use spice_bridge::input::{AgentSink, InputSink, NullAgent};
use spice_bridge::link::TicketPolicy;
use spice_bridge::qxl_display::{announce_client_presence, QxlDisplay};
use spice_bridge::qxl_vfio::{IntxLine, QxlFunction};
use spice_bridge::server::{Server, ServerConfig, TlsListen};
use spice_bridge::tls::TlsConfig;
use spice_bridge::DisplayModel;
use tracing::{error, info, warn};
use vdi_port::console::unix_bridge::UnixBridge;
use vdi_port::console::{ConsoleDevice, ConsoleOptions, PortHandle, PortOptions};
use vdi_port::input::{InputDevice, InputHandle, InputKind, InputOptions, LedState, StatusSink};
use vfio_user_server::{server_tables, FunctionBackend, Intx, PciFunction};

const MIB: u64 = 1 << 20;
/// The device worker also drains the rings this often, as a safety net.
const WORKER_POLL: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        // --help and --version as clap formats them (exit 0).
        Err(cli::CliError::Clap(e)) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("spice-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("spice-bridge: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The QXL device on its worker, its INTx line (for the vfio-user transport) and the receiving
/// end of its event sink (for the display bridge).
struct Qxl {
    worker: Worker,
    intx: Arc<Intx>,
    events: Receiver<DeviceEvent>,
}

fn qxl_device(opts: &cli::Options) -> anyhow::Result<Qxl> {
    let intx = Arc::new(Intx::default());
    let (ev_tx, events) = std::sync::mpsc::channel();
    let cfg = QxlConfig {
        vga: !opts.secondary,
        ram_size: u64::from(opts.ram_mib) * MIB,
        vram_size: u64::from(opts.vram_mib) * MIB,
        vgamem_size: u64::from(opts.vgamem_mib) * MIB,
        ..QxlConfig::default()
    };
    let dev = QxlDevice::new(cfg, Arc::new(IntxLine(intx.clone())), Box::new(ev_tx))
        .context("QXL device")?;
    let worker = Worker::spawn_with(
        dev,
        WorkerConfig {
            poll: Some(WORKER_POLL),
        },
    )
    .context("worker thread")?;
    Ok(Qxl {
        worker,
        intx,
        events,
    })
}

/// Serves the QXL device on `--qxl-socket`: one VMM at a time; after a disconnect the line is
/// lowered, the device reset and the next VMM accepted.
fn serve_qxl_vfio_user(
    opts: &cli::Options,
    socket: &std::path::Path,
    qxl: WorkerHandle,
    intx: Arc<Intx>,
) -> anyhow::Result<()> {
    let func = QxlFunction::new(qxl);
    let (regions, irqs) = server_tables(&func.bars(), !opts.no_mmap);
    let vfu = vfio_user_server::Server::new(socket, irqs, regions)
        .with_context(|| format!("--qxl-socket {}", socket.display()))?;
    info!(
        socket = %socket.display(),
        mmap = !opts.no_mmap,
        "vfio-user QXL device ready"
    );
    std::thread::Builder::new()
        .name("vfio-user".into())
        .spawn(move || loop {
            let mut backend = FunctionBackend::new(func.clone(), intx.clone());
            match vfu.run(&mut backend) {
                Ok(_) => info!(
                    interrupts = intx.fired(),
                    "VMM disconnected; waiting for the next one"
                ),
                Err(e) => warn!("VMM connection ended: {e}"),
            }
            intx.set_level(false);
            backend.function().reset();
        })
        .context("vfio-user thread")?;
    Ok(())
}

/// The virtio-input devices the daemon serves, their owner handles and the guest's LED changes.
struct Inputs {
    devices: GuestDevices,
    tablet: Option<InputHandle>,
    leds: tokio::sync::watch::Receiver<LedState>,
}

/// Relays the guest keyboard's LED changes (device worker thread) to the Spice loop.
struct LedRelay(tokio::sync::watch::Sender<LedState>);

impl StatusSink for LedRelay {
    fn leds_changed(&self, leds: LedState) {
        self.0.send_replace(leds);
    }
}

/// Creates each virtio-input device asked for and serves it over vhost-user on its socket,
/// one thread each (one VMM connection at a time; the device is reset between them).
fn serve_inputs(opts: &cli::Options) -> anyhow::Result<Inputs> {
    let (led_tx, leds) = tokio::sync::watch::channel(LedState::default());
    let led_sink: Arc<dyn StatusSink> = Arc::new(LedRelay(led_tx));
    let mut devices = GuestDevices::default();
    let mut tablet = None;
    let sockets = [
        (
            InputKind::Keyboard,
            &opts.input.keyboard,
            "--keyboard-socket",
        ),
        (InputKind::Tablet, &opts.input.tablet, "--tablet-socket"),
        (InputKind::Mouse, &opts.input.mouse, "--mouse-socket"),
    ];
    for (kind, path, flag) in sockets {
        let Some(path) = path.clone() else { continue };
        if path.exists() {
            anyhow::bail!("{flag} {}: path exists (remove it first)", path.display());
        }
        let dev = InputDevice::new(
            kind,
            InputOptions {
                status_sink: (kind == InputKind::Keyboard).then(|| led_sink.clone()),
                ..InputOptions::default()
            },
        )
        .with_context(|| format!("{flag}: virtio-input device"))?;
        let handle = dev.handle();
        let server = vdi_port::vhost_user::VhostUserServer::bind(&path, Arc::new(dev))
            // (the vhost crates' errors are not Sync, so no `context` here)
            .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?;
        info!(socket = %path.display(), ?kind, "vhost-user virtio-input device ready");
        std::thread::Builder::new()
            .name(format!("vhost-user-{kind:?}").to_lowercase())
            .spawn(move || {
                if let Err(e) = server.run() {
                    error!(?kind, "vhost-user server stopped: {e}");
                }
            })
            .context("vhost-user thread")?;
        let h: Arc<dyn spice_bridge::guest_input::EvdevDevice> = Arc::new(handle.clone());
        match kind {
            InputKind::Keyboard => devices.keyboard = Some(h),
            InputKind::Tablet => {
                devices.tablet = Some(h);
                tablet = Some(handle);
            }
            InputKind::Mouse => devices.mouse = Some(h),
        }
    }
    Ok(Inputs {
        devices,
        tablet,
        leds,
    })
}

/// Writes the client's monitor layout (from the agent channel) into the QXL device, as the
/// control socket's `monitors` command does.
struct QxlMonitors(WorkerHandle);

impl MonitorsSink for QxlMonitors {
    fn takes_monitors(&self) -> bool {
        self.0.device().takes_client_monitors()
    }

    fn client_monitors(&self, monitors: &[MonitorConfig]) {
        let heads: Vec<qxl_device::ClientMonitor> = monitors
            .iter()
            .take(64)
            .map(|m| qxl_device::ClientMonitor {
                x: m.x.max(0) as u32,
                y: m.y.max(0) as u32,
                width: m.width,
                height: m.height,
            })
            .collect();
        let raised = self.0.device().set_client_monitors(&heads);
        info!(
            heads = heads.len(),
            raised, "client monitors config from the agent channel, for the QXL device"
        );
    }
}

/// The VDI port: its agent port (for the agent channel) and the threads serving it.
struct Vdi {
    agent: PortHandle,
}

/// Creates the virtio-console VDI port (port 1 = the Spice agent, then the `--vdi-port`
/// ports), serves it over vhost-user on `--vdi-socket` and each extra port on its Unix socket.
fn serve_vdi(opts: &cli::Options, socket: &std::path::Path) -> anyhow::Result<Vdi> {
    let mut ports = vec![PortOptions::new(cli::AGENT_PORT)];
    ports.extend(
        opts.vdi_ports
            .iter()
            .map(|(n, _)| PortOptions::new(n.clone())),
    );
    let (dev, mut handles) = ConsoleDevice::new(ConsoleOptions {
        ports,
        ..ConsoleOptions::default()
    })
    .context("--vdi-socket: virtio-console device")?;
    let queues = vdi_port::VirtioDevice::num_queues(&dev);
    let server = vdi_port::vhost_user::VhostUserServer::bind(socket, Arc::new(dev))
        .map_err(|e| anyhow::anyhow!("--vdi-socket {}: {e}", socket.display()))?;
    info!(
        socket = %socket.display(),
        ports = opts.vdi_ports.len() + 1,
        num_vqs = queues,
        "vhost-user VDI port ready (QEMU: vhost-user-test-device-pci,virtio-id=3,num_vqs={queues},config_size=12)"
    );
    std::thread::Builder::new()
        .name("vhost-user-vdi".into())
        .spawn(move || {
            if let Err(e) = server.run() {
                error!("vhost-user VDI port stopped: {e}");
            }
        })
        .context("vhost-user thread")?;
    let extra = handles.split_off(1);
    for ((name, path), port) in opts.vdi_ports.iter().zip(extra) {
        let bridge = UnixBridge::bind(path, port)
            .with_context(|| format!("--vdi-port {name}={}", path.display()))?;
        info!(port = %name, socket = %path.display(), "VDI port bridged to a Unix socket");
        std::thread::Builder::new()
            .name(format!("vdi-port-{name}"))
            .spawn(move || {
                if let Err(e) = bridge.run() {
                    error!("VDI port bridge stopped: {e}");
                }
            })
            .context("VDI port bridge thread")?;
    }
    let agent = handles.pop().context("agent port")?;
    Ok(Vdi { agent })
}

/// Every socket path the daemon creates (removed again on exit).
fn socket_paths(opts: &cli::Options) -> Vec<(&'static str, &std::path::Path)> {
    let mut v: Vec<(&'static str, &std::path::Path)> = Vec::new();
    v.extend(opts.qxl_socket.as_deref().map(|p| ("--qxl-socket", p)));
    v.extend(opts.vdi_socket.as_deref().map(|p| ("--vdi-socket", p)));
    v.extend(
        opts.vdi_ports
            .iter()
            .map(|(_, p)| ("--vdi-port", p.as_path())),
    );
    v.extend(
        opts.control_socket
            .as_deref()
            .map(|p| ("--control-socket", p)),
    );
    v.extend(
        opts.input
            .keyboard
            .as_deref()
            .map(|p| ("--keyboard-socket", p)),
    );
    v.extend(opts.input.tablet.as_deref().map(|p| ("--tablet-socket", p)));
    v.extend(opts.input.mouse.as_deref().map(|p| ("--mouse-socket", p)));
    v
}

/// Descriptors the daemon needs besides Spice connections (devices, memfds, eventfds, sockets,
/// the runtime).
const FD_RESERVE: usize = 128;

/// Raises the soft RLIMIT_NOFILE (up to the hard limit) so the pending pool and the linked
/// channels fit; says so when the hard limit is lower, in which case running out of
/// descriptors evicts the oldest pending connection instead.
fn raise_fd_limit(limits: &spice_bridge::server::ConnectionLimits) {
    let want = (limits.max_pending + limits.max_linked + FD_RESERVE) as libc::rlim_t;
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the rlimit struct we pass, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        warn!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if rl.rlim_cur >= want {
        return;
    }
    let new = libc::rlimit {
        rlim_cur: want.min(rl.rlim_max),
        rlim_max: rl.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct we pass; a refused value leaves the limit as is.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        warn!(
            "setrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if new.rlim_cur < want {
        warn!(
            "RLIMIT_NOFILE is {} (hard limit), below the {want} descriptors the connection \
             limits ask for; when descriptors run out the oldest pending Spice connection is \
             closed",
            new.rlim_cur
        );
    } else {
        info!(
            "RLIMIT_NOFILE raised from {} to {}",
            rl.rlim_cur, new.rlim_cur
        );
    }
}

fn run(opts: cli::Options) -> anyhow::Result<()> {
    raise_fd_limit(&opts.limits);
    for (flag, path) in socket_paths(&opts) {
        if path.exists() {
            anyhow::bail!(
                "{flag} {}: path exists (another daemon running? remove it first)",
                path.display()
            );
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;

    // Devices first, then Spice: clients can link before any VMM connects.
    let model = DisplayModel::new();
    let qxl_dev = opts
        .qxl_socket
        .as_ref()
        .map(|_| qxl_device(&opts))
        .transpose()?;
    let qxl = qxl_dev.as_ref().map(|q| q.worker.handle());
    let Inputs {
        devices,
        tablet,
        mut leds,
    } = serve_inputs(&opts)?;
    let guest_input = Arc::new(GuestInput::new(devices, model.clone()));
    let vdi = opts
        .vdi_socket
        .as_deref()
        .map(|s| serve_vdi(&opts, s))
        .transpose()?;
    let agent_bridge = vdi.as_ref().map(|_| {
        let monitors = qxl
            .clone()
            .map(|h| Arc::new(QxlMonitors(h)) as Arc<dyn MonitorsSink>);
        AgentBridge::new(AgentOptions::default(), monitors)
    });
    let (input_sink, agent_sink): (Arc<dyn InputSink>, Arc<dyn AgentSink>) = match &agent_bridge {
        Some(b) => (
            Arc::new(AgentMouseInput::new(guest_input.clone(), b.clone())),
            b.clone(),
        ),
        None => (guest_input.clone(), Arc::new(NullAgent)),
    };
    for entry in &opts.video_codecs.unsupported {
        warn!(codec = %entry, "video codec not implemented (MJPEG and VP8 are); skipped");
    }
    if opts.video_codecs.codecs.is_empty() {
        warn!("--video-codecs names no codec this daemon encodes: video streams are off");
    }
    let server_cfg = ServerConfig {
        listen: opts.spice_addr,
        ticket: match &opts.ticketing {
            cli::Ticketing::Password(p) => TicketPolicy::Password {
                password: p.clone(),
                expires: None,
            },
            cli::Ticketing::Disabled => TicketPolicy::Disabled,
        },
        name: Some(opts.name.clone()),
        uuid: None,
        client_mouse: false,
        compression: opts.compression,
        jpeg_wan: opts.jpeg_wan,
        zlib_glz_wan: opts.zlib_glz_wan,
        streaming_video: opts.streaming_video,
        video_codecs: opts.video_codecs.codecs.clone(),
        stream_idle_timeout: spice_bridge::server::STREAM_IDLE_TIMEOUT,
        limits: opts.limits,
        tls: opts
            .tls
            .as_ref()
            .map(|(addr, dir)| {
                TlsConfig::from_x509_dir(dir)
                    .map(|config| TlsListen {
                        listen: *addr,
                        config,
                    })
                    .with_context(|| format!("--x509-dir {}", dir.display()))
            })
            .transpose()?,
        channel_security: opts.channel_security.clone(),
    };
    let server = Arc::new(
        rt.block_on(Server::start(
            server_cfg,
            model.clone(),
            input_sink,
            agent_sink,
        ))
        .with_context(|| format!("spice server on {}", opts.spice_addr))?,
    );
    let addr = server.local_addr();
    match server.tls_addr() {
        Some(t) => info!(
            "spice://{}:{}?tls-port={}",
            addr.ip(),
            addr.port(),
            t.port()
        ),
        None => info!("spice://{}:{}", addr.ip(), addr.port()),
    }
    if let (Some(vdi), Some(bridge)) = (vdi, &agent_bridge) {
        rt.spawn(bridge.clone().run(vdi.agent, server.clone()));
    }

    // The QXL device: the bridge from its events to the display model, its vfio-user server.
    let stop = Arc::new(AtomicBool::new(false));
    let mut worker = None;
    if let (Some(q), Some(socket), Some(qxl)) = (qxl_dev, opts.qxl_socket.as_deref(), &qxl) {
        let Qxl {
            worker: w,
            intx,
            events,
        } = q;
        worker = Some(w);
        let display = QxlDisplay::new(model.clone(), qxl.clone());
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("bridge".into())
            .spawn(move || display.run(events, stop))
            .context("bridge thread")?;
        serve_qxl_vfio_user(&opts, socket, qxl.clone(), intx)?;
    }

    if let (Some(path), Some(qxl)) = (&opts.control_socket, &qxl) {
        let listener = std::os::unix::net::UnixListener::bind(path)
            .with_context(|| format!("--control-socket {}", path.display()))?;
        let qxl = qxl.clone();
        let server = server.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || control::serve(listener, qxl, server))
            .context("control thread")?;
    }

    // Run until SIGINT/SIGTERM, then remove the socket and stop. Meanwhile tell the guest,
    // as spice-server does, whether a display client is connected and what it can take.
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut present = false;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    info!("SIGINT: shutting down");
                    break;
                }
                _ = term.recv() => {
                    info!("SIGTERM: shutting down");
                    break;
                }
                Ok(()) = leds.changed() => {
                    let led = *leds.borrow_and_update();
                    let keys = guest_input.guest_leds(led);
                    info!(leds = keys.0, "guest keyboard LEDs changed; telling the client");
                    server.set_keyboard_leds(keys);
                }
                _ = tick.tick() => {
                    if let Some(qxl) = &qxl {
                        if server.has_display() != present {
                            present = !present;
                            announce_client_presence(&mut qxl.device(), present);
                        }
                    }
                    // As spice-server: client mouse mode while an absolute pointer is there,
                    // or an agent that takes MOUSE_STATE.
                    let tablet_up = tablet.as_ref().is_some_and(|t| t.is_active());
                    let agent_mouse = agent_bridge.as_ref().is_some_and(|b| b.mouse_available());
                    server.set_client_mouse_available(tablet_up || agent_mouse);
                }
            }
        }
        server.shutdown().await;
        Ok::<(), std::io::Error>(())
    })
    .context("signal handling")?;
    stop.store(true, Ordering::Relaxed);
    drop(worker); // stops and joins the device worker
    for (_, path) in socket_paths(&opts) {
        let _ = std::fs::remove_file(path);
    }
    info!("stopped");
    // The vfio-user thread may be blocked in accept(); leave without joining it.
    std::process::exit(0);
}
