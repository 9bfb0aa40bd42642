//! The `spice-bridge` daemon binary as a user runs it: bad flags and unreadable files give a
//! one-line error and exit 2; a started daemon creates its sockets, accepts Spice links before
//! any VMM connects, and SIGTERM/SIGINT remove the sockets and exit 0.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test-only certificates (spice_bridge::testing::TEST_X509_DIR).
const X509: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/x509");

/// A started daemon, killed when the test ends, passing or not: a daemon left behind would
/// hold the test runner's output pipe open and hang whoever reads it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spice-bridge"))
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sb-daemon-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wait_for(path: &Path) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bad_command_lines_exit_2_with_one_line() {
    let dir = tempdir("bad");
    let sock = dir.join("q.sock");
    let sock = sock.to_str().unwrap();
    for args in [
        vec!["--no-such-flag"],
        vec!["--qxl-socket", sock],
        vec!["--qxl-socket", sock, "--password-file", "/nonexistent/pw"],
        vec![
            "--qxl-socket",
            sock,
            "--disable-ticketing",
            "--qxl-ram-mib",
            "48",
        ],
        vec![
            "--qxl-socket",
            sock,
            "--disable-ticketing",
            "--spice-addr",
            "nowhere",
        ],
        // TLS: the x509 dir must hold the three files; channel names as QEMU's
        vec![
            "--qxl-socket",
            sock,
            "--disable-ticketing",
            "--tls-addr",
            "127.0.0.1:0",
            "--x509-dir",
            "/nonexistent",
        ],
        vec![
            "--qxl-socket",
            sock,
            "--disable-ticketing",
            "--tls-addr",
            "127.0.0.1:0",
        ],
        vec![
            "--qxl-socket",
            sock,
            "--disable-ticketing",
            "--tls-addr",
            "127.0.0.1:0",
            "--x509-dir",
            X509,
            "--tls-channel",
            "dispaly",
        ],
        vec![
            "--qxl-socket",
            sock,
            "--disable-ticketing",
            "--tls-addr",
            "127.0.0.1:0",
            "--x509-dir",
            X509,
            "--tls-channel",
            "main",
            "--plaintext-channel",
            "main",
        ],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("spice-bridge: "), "{err}");
    }
    let help = bin().arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--spice-addr",
        "--password-file",
        "--disable-ticketing",
        "--qxl-socket",
        "--qxl-no-mmap",
        "--qxl-ram-mib",
        "--qxl-vram-mib",
        "--control-socket",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

fn start(dir: &Path, port: u16) -> Daemon {
    Daemon(spawn(
        bin()
            .args([
                "--qxl-socket",
                dir.join("qxl.sock").to_str().unwrap(),
                "--control-socket",
                dir.join("ctl.sock").to_str().unwrap(),
                "--disable-ticketing",
                "--spice-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .stderr(Stdio::null()),
    ))
}

/// Spawns with stdout away from the test runner's (see [`Daemon`]).
fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null()).spawn().unwrap()
}

fn signal_and_wait(Daemon(child): &mut Daemon, sig: i32) -> Option<i32> {
    // SAFETY: kill(2) on our own child's pid; a stale pid would only fail with ESRCH.
    unsafe { libc::kill(child.id() as i32, sig) };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

#[test]
fn serves_spice_before_any_vmm_and_cleans_up_on_signals() {
    for (tag, sig) in [("term", libc::SIGTERM), ("int", libc::SIGINT)] {
        let dir = tempdir(tag);
        let port = free_port();
        let mut child = start(&dir, port);
        assert!(
            wait_for(&dir.join("qxl.sock")),
            "vfio-user socket not created"
        );
        assert!(
            wait_for(&dir.join("ctl.sock")),
            "control socket not created"
        );
        // A Spice client can link now: send a link header and read the server's reply header.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::io::Write::write_all(&mut s, &main_link_request()).unwrap();
        let mut hdr = [0u8; 16];
        s.read_exact(&mut hdr).unwrap();
        assert_eq!(&hdr[..4], b"REDQ", "link reply magic");
        drop(s);
        assert_eq!(
            signal_and_wait(&mut child, sig),
            Some(0),
            "exit status on {tag}"
        );
        assert!(
            !dir.join("qxl.sock").exists(),
            "vfio-user socket left behind"
        );
        assert!(!dir.join("ctl.sock").exists(), "control socket left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_second_daemon_on_the_same_socket_refuses_to_start() {
    let dir = tempdir("twice");
    let port = free_port();
    let mut first = start(&dir, port);
    assert!(wait_for(&dir.join("qxl.sock")));
    let out = bin()
        .args([
            "--qxl-socket",
            dir.join("qxl.sock").to_str().unwrap(),
            "--disable-ticketing",
            "--spice-addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("path exists"));
    assert!(
        dir.join("qxl.sock").exists(),
        "the first daemon's socket must stay"
    );
    assert_eq!(signal_and_wait(&mut first, libc::SIGTERM), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A link message for the main channel (no caps).
fn main_link_request() -> Vec<u8> {
    let mut mess = Vec::new();
    mess.extend_from_slice(b"REDQ");
    mess.extend_from_slice(&2u32.to_le_bytes());
    mess.extend_from_slice(&2u32.to_le_bytes());
    mess.extend_from_slice(&18u32.to_le_bytes());
    mess.extend_from_slice(&0u32.to_le_bytes());
    mess.push(1);
    mess.push(0);
    mess.extend_from_slice(&0u32.to_le_bytes());
    mess.extend_from_slice(&0u32.to_le_bytes());
    mess.extend_from_slice(&18u32.to_le_bytes());
    mess
}

/// One control-socket command and its reply line.
fn control(sock: &Path, line: &str) -> String {
    use std::io::{BufRead, Write};
    let mut c = std::os::unix::net::UnixStream::connect(sock).unwrap();
    writeln!(c, "{line}").unwrap();
    let mut reply = String::new();
    std::io::BufReader::new(c).read_line(&mut reply).unwrap();
    reply.trim_end().to_string()
}

#[test]
fn tls_port_channel_policy_and_runtime_passwords() {
    let dir = tempdir("tls");
    let (port, tls_port) = (free_port(), free_port());
    let log = dir.join("daemon.log");
    let mut child = Daemon(spawn(
        bin()
            .args([
                "--qxl-socket",
                dir.join("qxl.sock").to_str().unwrap(),
                "--control-socket",
                dir.join("ctl.sock").to_str().unwrap(),
                "--disable-ticketing",
                "--spice-addr",
                &format!("127.0.0.1:{port}"),
                "--tls-addr",
                &format!("127.0.0.1:{tls_port}"),
                "--x509-dir",
                X509,
                "--tls-channel",
                "main",
            ])
            .stderr(std::fs::File::create(&log).unwrap()),
    ));
    let ctl = dir.join("ctl.sock");
    assert!(wait_for(&ctl), "control socket not created");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("spice://127.0.0.1:{port}?tls-port={tls_port}")),
        "{text}"
    );
    // main in the clear: a link reply carrying NEED_SECURED (5)
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut s, &main_link_request()).unwrap();
    let mut reply = [0u8; 20];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..4], b"REDQ");
    assert_eq!(u32::from_le_bytes(reply[16..20].try_into().unwrap()), 5);
    // main over the TLS port: a full handshake against the test CA, then a link reply with OK
    let cfg = spice_bridge::testing::test_tls_connector().config().clone();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let t = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut t = rustls::StreamOwned::new(conn, t);
    std::io::Write::write_all(&mut t, &main_link_request()).unwrap();
    let mut reply = [0u8; 20];
    t.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..4], b"REDQ");
    assert_eq!(u32::from_le_bytes(reply[16..20].try_into().unwrap()), 0);
    let stats = control(&ctl, "stats");
    assert!(stats.contains(" wrong_port=1 "), "{stats}");
    assert!(stats.contains(" tls_connections=1 "), "{stats}");
    // passwords at runtime, as QEMU's set_password / expire_password
    assert_eq!(
        control(&ctl, "expire_password +60"),
        "error expire_password: no password is set (ticketing is disabled)"
    );
    assert_eq!(control(&ctl, "set_password two words connected=keep"), "ok");
    assert_eq!(control(&ctl, "expire_password +60"), "ok");
    assert_eq!(control(&ctl, "expire_password never"), "ok");
    assert!(control(&ctl, "expire_password soon").starts_with("error expire_password: "));
    assert!(control(&ctl, "set_password x connected=maybe").starts_with("error set_password: "));
    assert!(control(&ctl, &format!("set_password {}", "y".repeat(61))).contains("longer than 60"));
    assert_eq!(signal_and_wait(&mut child, libc::SIGTERM), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("two words"),
        "the password must never be logged"
    );
    assert!(!text.contains(&"y".repeat(61)), "nor a refused one");
    let _ = std::fs::remove_dir_all(&dir);
}
