//! Connection floods against the `spice-bridge` daemon, as a hostile client would try them
//! (issue 12): thousands of TCP connections held open without a byte or with half a link
//! header, handshake garbage, and a descriptor limit the flood exhausts. Each time a real
//! client (the scripted client: link header, link message, RSA-OAEP ticket, then a secondary
//! channel with the session id) must still link, and the daemon must stay bounded in memory
//! and descriptors and clean up after the link deadline.
//!
//! The daemon's resident memory and open descriptors (`/proc/PID`) are printed before, during
//! and after each flood; run with `--nocapture` to see them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spice_bridge::testing::{spice_gtk_caps, ScriptedClient};
use spice_bridge::wire::decode_exact;
use spice_bridge::wire::main::MainInit;

const PASSWORD: &str = "s3cret";

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (the flood's client ends live
/// here) and returns it.
fn raise_own_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only access the struct on our stack.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        rl.rlim_cur = rl.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
    }
    rl.rlim_cur
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Daemon {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Daemon {
    /// Starts the daemon with a password, a QXL socket (no VMM attaches), a control socket and
    /// `extra` flags; `nofile` sets its RLIMIT_NOFILE (soft and hard) before exec.
    fn start(tag: &str, extra: &[&str], nofile: Option<u64>) -> Daemon {
        let dir = std::env::temp_dir().join(format!("sb-flood-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), format!("{PASSWORD}\n")).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spice-bridge"));
        cmd.args([
            "--qxl-socket",
            dir.join("qxl.sock").to_str().unwrap(),
            "--control-socket",
            dir.join("ctl.sock").to_str().unwrap(),
            "--password-file",
            dir.join("pw").to_str().unwrap(),
            "--spice-addr",
            &addr.to_string(),
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap());
        if let Some(n) = nofile {
            // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe
            // and touches nothing but its argument.
            unsafe {
                cmd.pre_exec(move || {
                    let rl = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let d = Daemon { child, dir, addr };
        let t0 = Instant::now();
        while !d.dir.join("ctl.sock").exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// (resident KiB, open descriptors, CPU time in clock ticks) of the daemon.
    fn figures(&self) -> (u64, usize, u64) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // fields after the ")" that ends the command name: utime is field 14, stime 15
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        (rss, fds, f[11] + f[12])
    }

    /// The control socket's `stats` reply as a map.
    fn stats(&self) -> HashMap<String, u64> {
        let mut s = UnixStream::connect(self.dir.join("ctl.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"stats\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let body = line
            .trim()
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("{line}"));
        body.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    }

    fn wait_stats(
        &self,
        what: &str,
        f: impl Fn(&HashMap<String, u64>) -> bool,
    ) -> HashMap<String, u64> {
        let t0 = Instant::now();
        loop {
            let s = self.stats();
            if f(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{what}: stats stayed {s:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// SIGTERM; the exit status.
    fn stop(mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Some(st) = self.child.try_wait().unwrap() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

/// A real link: main channel with the password, MAIN_INIT, then the display channel joining
/// the session. Returns the two linked connections (kept open by the caller) and the time
/// the two links took.
fn real_client_links(addr: SocketAddr) -> (Vec<ScriptedClient>, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t0 = Instant::now();
        let main = ScriptedClient::link(addr, 1, 0, PASSWORD, spice_gtk_caps(1))
            .await
            .expect("main link i/o");
        assert_eq!(main.result, Some(0), "main channel link result");
        let mut main = main.client.unwrap();
        let (t, b) = main.recv().await.unwrap();
        assert_eq!(t, 103, "MAIN_INIT first");
        let init: MainInit = decode_exact(&b).unwrap();
        let display = ScriptedClient::link(addr, 2, init.session_id, PASSWORD, spice_gtk_caps(2))
            .await
            .expect("display link i/o");
        assert_eq!(display.result, Some(0), "display channel link result");
        (vec![main, display.client.unwrap()], t0.elapsed())
    })
}

fn row(label: &str, (rss, fds, cpu): (u64, usize, u64)) {
    println!(
        "  {label:<28} RSS {:>7} KiB   fds {fds:>5}   cpu {cpu:>4} ticks",
        rss
    );
}

/// Link header and a SpiceLinkMess for a new session's main channel, without caps.
fn main_link_message() -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"REDQ");
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&18u32.to_le_bytes()); // size of the link message
    m.extend_from_slice(&0u32.to_le_bytes()); // connection id
    m.push(1); // main channel
    m.push(0); // channel id
    m.extend_from_slice(&0u32.to_le_bytes()); // common caps
    m.extend_from_slice(&0u32.to_le_bytes()); // channel caps
    m.extend_from_slice(&18u32.to_le_bytes()); // caps offset
    m
}

/// The first 8 bytes of a link header: magic and major version, then silence.
const HALF_HEADER: &[u8] = b"REDQ\x02\x00\x00\x00";

#[test]
fn idle_and_half_header_floods_do_not_lock_out_a_real_client() {
    const IDLE: usize = 1000;
    const HALF: usize = 1000;
    const GARBAGE: usize = 20;
    const STALLED: usize = 20;
    // the daemon's default --max-pending-connections
    const MAX_PENDING: u64 = 1024;
    raise_own_nofile();
    let d = Daemon::start("idle", &[], None);
    let before = d.figures();

    // The flood: idle sockets, half headers, then handshake garbage.
    let t_flood = Instant::now();
    let mut held = Vec::with_capacity(IDLE + HALF + STALLED);
    for _ in 0..IDLE {
        held.push(TcpStream::connect(d.addr).unwrap());
    }
    for _ in 0..HALF {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.write_all(HALF_HEADER).unwrap();
        held.push(s);
    }
    for _ in 0..GARBAGE {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // not "GET ": that would be a WebSocket upgrade
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        // the server answers with a link reply carrying INVALID_MAGIC (2), then closes
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        assert!(reply.len() >= 20, "garbage got {} bytes", reply.len());
        assert_eq!(&reply[..4], b"REDQ");
        assert_eq!(u32::from_le_bytes(reply[16..20].try_into().unwrap()), 2);
    }
    // Complete link messages, then silence: they get the link reply (which they never read)
    // and are closed at the deadline (or evicted).
    for _ in 0..STALLED {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.write_all(&main_link_message()).unwrap();
        held.push(s);
    }
    let total = (IDLE + HALF + GARBAGE + STALLED) as u64;
    let s = d.wait_stats("flood accepted", |s| s["connections"] >= total);
    let flood_took = t_flood.elapsed();
    let during = d.figures();

    // The real user links while the flood is held.
    let (clients, took) = real_client_links(d.addr);
    let with_user = d.figures();
    // (links_ok is counted just after the OK result goes out)
    // Every connection is pending, linked, or was closed with a count (evicted, timed out or
    // refused); the pool never holds more than its limit.
    let s2 = d.wait_stats("user linked", |s| {
        s["links_ok"] == 2
            && s["pending"] + s["pending_evicted"] + s["link_timeouts"] + s["links_refused"] + 2
                == s["connections"]
    });
    assert_eq!(s2["linked"], 2, "{s2:?}");
    assert!(s2["pending"] <= MAX_PENDING, "{s2:?}");
    assert!(s2["pending_evicted"] > 0, "{s2:?}");
    assert_eq!(s2["links_refused"], GARBAGE as u64, "{s2:?}");

    // After the link deadline every flood connection is gone; the user's channels stay.
    let s3 = d.wait_stats("flood timed out", |s| s["pending"] == 0);
    let after = d.figures();
    assert_eq!(s3["linked"], 2, "{s3:?}");
    assert_eq!(
        s3["link_timeouts"] + s3["pending_evicted"] + s3["links_refused"],
        total,
        "every flood connection is accounted for: {s3:?}"
    );

    println!(
        "flood: {IDLE} idle + {HALF} half-header connections held, {GARBAGE} garbage; \
         {STALLED} stalled after the link reply (opened in {flood_took:?}); defaults: --max-pending-connections {MAX_PENDING}, \
         --link-timeout 10"
    );
    row("before", before);
    row("during (flood held)", during);
    row("flood + user linked", with_user);
    row("after the link deadline", after);
    println!("  real client: main + display linked in {took:?} during the flood");
    println!("  stats during: {s:?}");
    println!("  stats after:  {s3:?}");
    let log = d.log();
    println!("  daemon log: {} lines", log.lines().count());

    // Bounded: the pool, not the flood, sets the daemon's descriptors.
    assert!(
        during.1 <= before.1 + MAX_PENDING as usize + 8,
        "fds {before:?} -> {during:?}"
    );
    assert!(after.1 <= before.1 + 4, "fds {before:?} -> {after:?}");
    assert!(
        during.0 < before.0 + 32 * 1024,
        "RSS {before:?} -> {during:?}"
    );
    assert!(!log.contains("panicked"), "{log}");
    drop(clients);
    drop(held);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn out_of_descriptors_evicts_the_oldest_pending_connection_without_spinning() {
    const FLOOD: usize = 600;
    const NOFILE: u64 = 256;
    raise_own_nofile();
    let d = Daemon::start("emfile", &["--link-timeout", "4"], Some(NOFILE));
    let before = d.figures();
    let mut held = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let mut s = TcpStream::connect(d.addr).unwrap();
        if i % 2 == 1 {
            s.write_all(HALF_HEADER).unwrap();
        }
        held.push(s);
    }
    // The daemon sits at its descriptor limit now (its control socket cannot accept either);
    // a real client still links: accepting it evicts the oldest pending connection.
    std::thread::sleep(Duration::from_millis(500));
    let during = d.figures();
    let (clients, took) = real_client_links(d.addr);
    let with_user = d.figures();
    // Held still: no spinning. Counters are read once the deadline freed descriptors.
    std::thread::sleep(Duration::from_secs(1));
    let held_cpu = d.figures().2 - with_user.2;
    let s = d.wait_stats("flood timed out", |s| {
        s["pending"] == 0 && s["links_ok"] == 2
    });
    std::thread::sleep(Duration::from_secs(1));
    let s2 = d.stats();
    let after = d.figures();
    println!("descriptor exhaustion: RLIMIT_NOFILE {NOFILE}, {FLOOD} connections held");
    row("before", before);
    row("during (at the fd limit)", during);
    row("flood + user linked", with_user);
    row("after the link deadline", after);
    println!("  real client: main + display linked in {took:?} at the fd limit");
    println!("  daemon CPU while the flood was held 1 s: {held_cpu} ticks");
    println!("  stats after: {s:?}");
    assert!(during.1 as u64 <= NOFILE, "{during:?}");
    assert!(s["accept_errors"] > 0, "EMFILE was hit: {s:?}");
    assert!(s["pending_evicted"] > 0, "{s:?}");
    assert_eq!(s["links_ok"], 2, "{s:?}");
    assert_eq!(s["linked"], 2, "{s:?}");
    assert_eq!(
        s2["accept_errors"], s["accept_errors"],
        "accept errors keep coming with nothing queued: {s:?} -> {s2:?}"
    );
    let log = d.log();
    assert!(log.contains("accept failed"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    drop(clients);
    drop(held);
    assert_eq!(d.stop(), Some(0));
}
