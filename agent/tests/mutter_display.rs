//! The Mutter DisplayConfig backend against a real Mutter: Debian bookworm's `mutter` 43 run as
//! `dbus-run-session -- mutter --headless --wayland --no-x11 --virtual-monitor 1280x800
//! --virtual-monitor 1024x768` in a private `XDG_RUNTIME_DIR`, `HOME` and `XDG_CONFIG_HOME`.
//! `mutter`, `dbus-run-session` (package `dbus-daemon`) and `gdbus` (package `libglib2.0-bin`)
//! are required: a missing one fails the test, it is never skipped.
//!
//! [`Mutter`] talks to that bus; every outcome is checked twice: through the backend's own
//! [`Mutter::layout`], and independently through `gdbus call ... GetCurrentState`, whose text
//! is read here without the backend's parser. Asserted:
//!
//! 1. the start layout: Meta-0 1280x800 at 0,0 (display 0), Meta-1 1024x768 at 1280,0;
//! 2. a MONITORS_CONFIG as spice-gtk sends it (USE_POS | PHYSICAL_SIZE, with the millimetre
//!    trailer), parsed by the agent's protocol code, swapping the two monitors: Meta-1 at 0,0,
//!    Meta-0 at 1024,0 and primary (the first client monitor); a `MonitorsChanged` arrives;
//! 3. the two stacked vertically (Meta-1 at 0,800);
//! 4. display 1 disabled (0x0): Meta-1 leaves the logical monitors, the layout has one monitor;
//! 5. a size the monitor has no mode for (1920x1080 on Meta-0, which only has 1280x800): the
//!    largest mode not larger is used, and Meta-1, asked at x 1920, is pulled to x 1280 so the
//!    monitors stay adjacent;
//! 6. GRAPHICS_DEVICE_INFO mapping display 0 to connector index 1: a one-monitor config turns
//!    on Meta-1 alone, reported as display 0;
//! 7. no `monitors.xml` was written (the config is applied as temporary).
//!
//! Not proven here: a change of mode *size*. Headless virtual monitors have exactly one mode
//! (the one on the command line), so the exact-size match is only unit-tested; so are scales
//! other than 1 (these monitors support 1.0 only) and rotations. A VM's QXL/virtio-gpu
//! connector lists more modes; that path is not run here.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use std::os::unix::net::UnixListener;

use spice_agent::ipc::{self, GuestMonitor};
use spice_agent::protocol::{msg, reply, DeviceDisplayInfo, Dialect, Message, MonitorConfig};
use spice_agent::session::mutter::{Mutter, BUS_NAME, INTERFACE, OBJECT_PATH};

/// Panics unless `bin` is on PATH.
fn require(bin: &str, package: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|d| d.join(bin).is_file()) {
        panic!("{bin} is not installed (Debian package {package}); this test needs it");
    }
}

/// A private session bus with a headless Mutter on it.
struct HeadlessMutter {
    session: Child,
    mutter_pid: i32,
    address: String,
    dir: PathBuf,
}

impl HeadlessMutter {
    fn start() -> HeadlessMutter {
        require("dbus-run-session", "dbus-daemon");
        require("mutter", "mutter");
        require("gdbus", "libglib2.0-bin");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "spice-agent-mutter-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["run", "home", "config"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let log = std::fs::File::create(dir.join("mutter.log")).unwrap();
        let mut session = Command::new("dbus-run-session")
            .args(["--", "sh", "-c"])
            .arg(
                "echo \"$DBUS_SESSION_BUS_ADDRESS\"; echo $$; exec mutter --headless --wayland \
                 --no-x11 --virtual-monitor 1280x800 --virtual-monitor 1024x768",
            )
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("HOME", dir.join("home"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dbus-run-session: {e}"));
        let mut out = BufReader::new(session.stdout.take().unwrap());
        let mut line = |what: &str| {
            let mut l = String::new();
            out.read_line(&mut l).unwrap();
            assert!(!l.trim().is_empty(), "dbus-run-session printed no {what}");
            l.trim().to_string()
        };
        let address = line("bus address");
        let mutter_pid = line("pid").parse().unwrap();
        let m = HeadlessMutter {
            session,
            mutter_pid,
            address,
            dir,
        };
        m.wait_ready();
        m
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mutter.log")).unwrap_or_default()
    }

    fn connect(&self) -> zbus::blocking::Connection {
        zbus::blocking::connection::Builder::address(self.address.as_str())
            .unwrap()
            .build()
            .unwrap()
    }

    /// Waits (on a loaded machine, up to a minute) until Mutter owns its bus name.
    fn wait_ready(&self) {
        let conn = self.connect();
        let dbus = zbus::blocking::fdo::DBusProxy::new(&conn).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            // SAFETY: kill with signal 0 only checks that the process exists.
            if unsafe { libc::kill(self.mutter_pid, 0) } != 0 {
                panic!("mutter exited at start; its log:\n{}", self.log());
            }
            let name = zbus::names::BusName::try_from(BUS_NAME).unwrap();
            if dbus.name_has_owner(name).unwrap_or(false) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "mutter did not take {BUS_NAME} in 60 s; its log:\n{}",
            self.log()
        );
    }

    /// `GetCurrentState` as `gdbus` prints it.
    fn gdbus_state(&self) -> String {
        let out = Command::new("gdbus")
            .args(["call", "--address", &self.address, "--dest", BUS_NAME])
            .args(["--object-path", OBJECT_PATH, "--method"])
            .arg(format!("{INTERFACE}.GetCurrentState"))
            .output()
            .expect("gdbus");
        assert!(
            out.status.success(),
            "gdbus failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for HeadlessMutter {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of the mutter this test started; dbus-run-session then ends
        // its bus daemon and exits.
        unsafe { libc::kill(self.mutter_pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.session.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above, harder.
        unsafe { libc::kill(self.mutter_pid, libc::SIGKILL) };
        let _ = self.session.kill();
        let _ = self.session.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A logical monitor as `gdbus` prints it: (x, y, primary, connector).
type Logical = (i32, i32, bool, String);

/// The logical monitors in `gdbus`'s text of a `GetCurrentState` reply, read without the
/// backend's parser: each is `(x, y, scale, [uint32 ]transform, primary, [('CONNECTOR', ...`,
/// the only tuples with a boolean right before a list of monitor specs.
fn gdbus_logical(text: &str) -> Vec<Logical> {
    let mut out = Vec::new();
    for key in ["true, [('", "false, [('"] {
        for (i, _) in text.match_indices(key) {
            let start = text[..i].rfind('(').unwrap();
            let head: Vec<&str> = text[start + 1..i].split(", ").collect();
            let conn_start = i + key.len();
            let conn_end = conn_start + text[conn_start..].find('\'').unwrap();
            out.push((
                head[0].parse().unwrap(),
                head[1].parse().unwrap(),
                key.starts_with("true"),
                text[conn_start..conn_end].to_string(),
            ));
        }
    }
    out.sort_by(|a, b| a.3.cmp(&b.3));
    out
}

fn lm(x: i32, y: i32, primary: bool, conn: &str) -> Logical {
    (x, y, primary, conn.to_string())
}

fn gm(display_id: u32, x: i32, y: i32, width: u32, height: u32) -> GuestMonitor {
    GuestMonitor {
        display_id,
        x,
        y,
        width,
        height,
    }
}

/// MONITORS_CONFIG bytes as spice-gtk 0.42 sends them: USE_POS | PHYSICAL_SIZE, each monitor
/// `(height, width, depth, x, y)`, then the `(height_mm, width_mm)` trailer per monitor.
fn monitors_config_bytes(monitors: &[(u32, u32, i32, i32)]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(monitors.len() as u32).to_le_bytes());
    d.extend_from_slice(&3u32.to_le_bytes());
    for &(w, h, x, y) in monitors {
        for v in [h, w, 32, x as u32, y as u32] {
            d.extend_from_slice(&v.to_le_bytes());
        }
    }
    for &(w, h, _, _) in monitors {
        let mm = |px: u32| (px * 254 / 960) as u16;
        d.extend_from_slice(&mm(h).to_le_bytes());
        d.extend_from_slice(&mm(w).to_le_bytes());
    }
    d
}

/// [`monitors_config_bytes`] through the agent's parser.
fn monitors_config(monitors: &[(u32, u32, i32, i32)]) -> Vec<MonitorConfig> {
    let d = monitors_config_bytes(monitors);
    match Message::parse(msg::MONITORS_CONFIG, &d, Dialect::default()) {
        Ok(Message::MonitorsConfig(mc)) => {
            assert!(mc.monitors.iter().all(|m| m.mm.is_some()));
            mc.monitors
        }
        other => panic!("MONITORS_CONFIG with PHYSICAL_SIZE not accepted: {other:?}"),
    }
}

#[test]
fn mutter_display_config_applies_and_reports_layouts() {
    let m = HeadlessMutter::start();
    let conn = m.connect();
    let backend = Mutter::on(&conn).expect("Mutter's DisplayConfig on the private bus");

    // MonitorsChanged, as the session agent's watcher sees it
    let mut changes = backend.watch().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        while changes.wait() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    let changed = |what: &str| {
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no MonitorsChanged after {what}"));
        while rx.try_recv().is_ok() {}
    };
    let check = |what: &str, logical: Vec<Logical>, layout: Vec<GuestMonitor>| {
        let text = m.gdbus_state();
        eprintln!("{what}: gdbus: {:?}", gdbus_logical(&text));
        assert_eq!(gdbus_logical(&text), logical, "{what}: gdbus says {text}");
        assert_eq!(
            backend.layout().unwrap(),
            layout,
            "{what}: the backend's layout"
        );
    };

    // 1. as started
    check(
        "start",
        vec![lm(0, 0, true, "Meta-0"), lm(1280, 0, false, "Meta-1")],
        vec![gm(0, 0, 0, 1280, 800), gm(1, 1280, 0, 1024, 768)],
    );

    // 2. swapped, from a PHYSICAL_SIZE config
    backend
        .apply(&monitors_config(&[(1280, 800, 1024, 0), (1024, 768, 0, 0)]))
        .unwrap();
    changed("the swap");
    check(
        "swap",
        vec![lm(1024, 0, true, "Meta-0"), lm(0, 0, false, "Meta-1")],
        vec![gm(0, 1024, 0, 1280, 800), gm(1, 0, 0, 1024, 768)],
    );

    // 3. stacked
    backend
        .apply(&monitors_config(&[(1280, 800, 0, 0), (1024, 768, 0, 800)]))
        .unwrap();
    changed("stacking");
    check(
        "stacked",
        vec![lm(0, 0, true, "Meta-0"), lm(0, 800, false, "Meta-1")],
        vec![gm(0, 0, 0, 1280, 800), gm(1, 0, 800, 1024, 768)],
    );

    // 4. display 1 off
    backend
        .apply(&monitors_config(&[(1280, 800, 0, 0), (0, 0, 0, 0)]))
        .unwrap();
    changed("disabling display 1");
    check(
        "one off",
        vec![lm(0, 0, true, "Meta-0")],
        vec![gm(0, 0, 0, 1280, 800)],
    );
    let text = m.gdbus_state();
    let meta1 = &text[text.find("(('Meta-1'").unwrap()..];
    let meta1 = &meta1[..meta1.find("})]").unwrap()];
    assert!(
        !meta1.contains("is-current"),
        "Meta-1 still has a current mode: {meta1}"
    );

    // 5. larger than any mode: the largest not larger, the next monitor pulled left
    backend
        .apply(&monitors_config(&[
            (1920, 1080, 0, 0),
            (1024, 768, 1920, 0),
        ]))
        .unwrap();
    changed("the too-large config");
    check(
        "too large",
        vec![lm(0, 0, true, "Meta-0"), lm(1280, 0, false, "Meta-1")],
        vec![gm(0, 0, 0, 1280, 800), gm(1, 1280, 0, 1024, 768)],
    );

    // 6. display 0 is connector 1
    backend.set_device_info(&[DeviceDisplayInfo {
        channel_id: 0,
        monitor_id: 0,
        device_display_id: 1,
        device_address: "pci/0000/02.0".into(),
    }]);
    backend
        .apply(&monitors_config(&[(1024, 768, 0, 0)]))
        .unwrap();
    changed("the device-info config");
    check(
        "device info",
        vec![lm(0, 0, true, "Meta-1")],
        vec![gm(0, 0, 0, 1024, 768)],
    );

    // 7. temporary: nothing saved
    let saved: &Path = &m.dir.join("config/monitors.xml");
    assert!(!saved.exists(), "a temporary config was saved to {saved:?}");
    let mut log = String::new();
    let _ = std::fs::File::open(m.dir.join("mutter.log")).map(|mut f| f.read_to_string(&mut log));
    assert!(
        !log.contains("CRITICAL"),
        "mutter logged a critical error:\n{log}"
    );
}

/// The `spice-agent` binary in a GNOME Wayland environment (`XDG_CURRENT_DESKTOP=GNOME`,
/// `WAYLAND_DISPLAY` set, the private bus as the session bus; `--no-clipboard`, since no X
/// server runs) picks the Mutter backend: a stand-in for `spice-agentd` on a Unix socket gets
/// the start LAYOUT from Mutter's state, sends a MONITORS_CONFIG with the PHYSICAL_SIZE
/// trailer, and gets a SUCCESS reply and the new LAYOUT (after `MonitorsChanged`).
#[test]
fn session_agent_picks_mutter_on_gnome_wayland() {
    let m = HeadlessMutter::start();
    let socket = m.dir.join("session.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_spice-agent"))
        .arg("--socket")
        .arg(&socket)
        .args(["--no-clipboard", "--connect-timeout", "60", "--debug"])
        .args(["--display", &format!("mutter-test-{}", std::process::id())])
        .arg("--download-dir")
        .arg(m.dir.join("home"))
        .env("XDG_CURRENT_DESKTOP", "GNOME")
        .env("XDG_RUNTIME_DIR", m.dir.join("run"))
        .env("WAYLAND_DISPLAY", "wayland-0")
        .env("DBUS_SESSION_BUS_ADDRESS", &m.address)
        .env("HOME", m.dir.join("home"))
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(m.dir.join("agent.log")).unwrap())
        .spawn()
        .expect("spice-agent");
    let agent_log = || std::fs::read_to_string(m.dir.join("agent.log")).unwrap_or_default();
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(st)) = agent.try_wait() {
                    panic!("spice-agent exited ({st}); its log:\n{}", agent_log());
                }
                assert!(
                    Instant::now() < deadline,
                    "spice-agent did not connect; its log:\n{}",
                    agent_log()
                );
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut next = |what: &str| {
        ipc::read_frame(&mut reader, 1 << 20).unwrap_or_else(|e| {
            panic!(
                "no {what} from spice-agent ({e}); its log:\n{}",
                agent_log()
            )
        })
    };
    let f = next("start LAYOUT");
    assert_eq!(f.type_, ipc::LAYOUT);
    assert_eq!(
        ipc::parse_layout(&f.data).unwrap(),
        vec![gm(0, 0, 0, 1280, 800), gm(1, 1280, 0, 1024, 768)]
    );
    let mut writer = stream;
    ipc::write_frame(
        &mut writer,
        msg::MONITORS_CONFIG,
        &monitors_config_bytes(&[(1280, 800, 0, 768), (1024, 768, 0, 0)]),
    )
    .unwrap();
    let want = vec![gm(0, 0, 768, 1280, 800), gm(1, 0, 0, 1024, 768)];
    let (mut replied, mut laid_out) = (false, false);
    while !(replied && laid_out) {
        let f = next("REPLY and LAYOUT");
        match f.type_ {
            ipc::LAYOUT => laid_out |= ipc::parse_layout(&f.data).unwrap() == want,
            msg::REPLY => {
                assert_eq!(
                    Message::parse(f.type_, &f.data, Dialect::default()).unwrap(),
                    Message::Reply {
                        type_: msg::MONITORS_CONFIG,
                        error: reply::SUCCESS
                    },
                    "spice-agent's log:\n{}",
                    agent_log()
                );
                replied = true;
            }
            t => panic!("unexpected frame type {t}"),
        }
    }
    let text = m.gdbus_state();
    assert_eq!(
        gdbus_logical(&text),
        vec![lm(0, 768, true, "Meta-0"), lm(0, 0, false, "Meta-1")],
        "gdbus says {text}"
    );
    assert!(agent_log().contains("Mutter's DisplayConfig"));
    let _ = agent.kill();
    let _ = agent.wait();
}
