//! The `spice-bridge` daemon binary as a user runs it: bad flags and unreadable files give a
//! one-line error and exit 2; a started daemon creates its sockets, accepts Spice links before
//! any VMM connects, and SIGTERM/SIGINT remove the sockets and exit 0.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn start(dir: &Path, port: u16) -> Child {
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
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal_and_wait(child: &mut Child, sig: i32) -> Option<i32> {
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
        let mut mess = Vec::new();
        mess.extend_from_slice(b"REDQ");
        mess.extend_from_slice(&2u32.to_le_bytes());
        mess.extend_from_slice(&2u32.to_le_bytes());
        mess.extend_from_slice(&18u32.to_le_bytes()); // size of the link message below
        mess.extend_from_slice(&0u32.to_le_bytes()); // connection id
        mess.push(1); // main channel
        mess.push(0); // channel id
        mess.extend_from_slice(&0u32.to_le_bytes()); // common caps
        mess.extend_from_slice(&0u32.to_le_bytes()); // channel caps
        mess.extend_from_slice(&18u32.to_le_bytes()); // caps offset (no caps follow)
        std::io::Write::write_all(&mut s, &mess).unwrap();
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
