//! The VDI port: the guest end of virtio-console port `com.redhat.spice.0`
//! (`../shared/reference/agent-and-vdiport.md` §1.5).
//!
//! The Linux driver allows one opener; while the host side is not connected, `poll` reports
//! `POLLHUP`, `read` returns 0 and `write` would block. So the port is opened non-blocking, a
//! reader waits with `poll` and tells "host gone" (HUP without data) from "data", and a writer
//! waits for `POLLOUT` up to a deadline instead of blocking the agent forever.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The port's usual path (udev's `/dev/virtio-ports/<name>` link).
pub const DEFAULT_PATH: &str = "/dev/virtio-ports/com.redhat.spice.0";

/// What [`VdiPort::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Bytes to read.
    Readable,
    /// The host side is not connected (and nothing is left to read).
    HostClosed,
    /// Nothing within the timeout.
    Timeout,
    /// The [`Stop`] given to [`VdiPort::wait`] was raised.
    Stopped,
}

/// Tells a thread blocked in [`VdiPort::wait`] to give the port up: an eventfd the wait polls
/// beside the port, so an idle agent sleeps in `poll` without a timer (a closed port must be
/// released at once: the driver allows one opener, and the reopen would find it busy).
#[derive(Debug)]
pub struct Stop {
    fd: OwnedFd,
    raised: AtomicBool,
}

impl Stop {
    /// A stop not raised yet.
    pub fn new() -> io::Result<Stop> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Stop {
            // SAFETY: fd was just returned by eventfd and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            raised: AtomicBool::new(false),
        })
    }

    /// Raises it: the waiting thread wakes and sees [`Readiness::Stopped`].
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Relaxed);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. Failure (counter full) still
        // leaves it readable, which is all the waiter needs.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Whether it was raised.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed)
    }

    /// Sleeps up to `timeout` unless the stop is raised first.
    pub fn sleep(&self, timeout: Duration) {
        let mut pfd = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let _ = poll_fds(&mut pfd, Some(timeout));
    }
}

/// `poll(2)` retried on EINTR; `None` waits without a timeout. Returns how many fds are ready.
fn poll_fds(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX)
    });
    loop {
        // SAFETY: a valid pollfd slice and its length; the fds stay open during the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// An open VDI port.
#[derive(Debug)]
pub struct VdiPort {
    file: File,
}

impl VdiPort {
    /// Opens the port (read/write, non-blocking, close-on-exec). `EBUSY` means another agent
    /// (spice-vdagentd) has it open.
    pub fn open(path: &Path) -> io::Result<VdiPort> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)?;
        Ok(VdiPort { file })
    }

    /// A second handle on the same open port (for a writer thread).
    pub fn try_clone(&self) -> io::Result<VdiPort> {
        Ok(VdiPort {
            file: self.file.try_clone()?,
        })
    }

    fn poll(&self, events: libc::c_short, timeout: Duration) -> io::Result<libc::c_short> {
        let mut pfd = [libc::pollfd {
            fd: self.file.as_raw_fd(),
            events,
            revents: 0,
        }];
        let n = poll_fds(&mut pfd, Some(timeout))?;
        Ok(if n == 0 { 0 } else { pfd[0].revents })
    }

    /// Waits for bytes, a host disconnect or `stop`, up to `timeout` (`None`: no timeout).
    pub fn wait(&self, timeout: Option<Duration>, stop: Option<&Stop>) -> io::Result<Readiness> {
        let mut pfd = [
            libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.map_or(-1, |s| s.fd.as_raw_fd()), // negative: ignored by poll
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        poll_fds(&mut pfd, timeout)?;
        let r = pfd[0].revents;
        if stop.is_some_and(Stop::is_raised) {
            Ok(Readiness::Stopped)
        } else if r & libc::POLLIN != 0 {
            Ok(Readiness::Readable)
        } else if r & (libc::POLLHUP | libc::POLLERR) != 0 {
            Ok(Readiness::HostClosed)
        } else {
            Ok(Readiness::Timeout)
        }
    }

    /// Whether `path` still names the device this port has open. A hot-unplugged port keeps
    /// reporting "host closed" on the old descriptor forever; its path goes away (or names the
    /// new port once it is plugged back), which is how the agent notices and reopens.
    pub fn is_still(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.rdev() == b.rdev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Reads what is there (0: nothing, host side closed).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            r => r,
        }
    }

    /// Writes all of `bytes`, waiting for room (the host reading) until `deadline` passes.
    pub fn write_all(&mut self, mut bytes: &[u8], deadline: Duration) -> io::Result<()> {
        let end = Instant::now() + deadline;
        while !bytes.is_empty() {
            match self.file.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the host is not reading the agent port",
                        ));
                    }
                    let r = self.poll(libc::POLLOUT, left.min(Duration::from_millis(200)))?;
                    if r & libc::POLLOUT == 0 {
                        // HUP (host gone) returns at once: do not spin until the deadline
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO opened read/write stands in for the port (never HUP: the test holds both ends).
    fn fifo_port() -> (VdiPort, std::path::PathBuf) {
        let path =
            std::env::temp_dir().join(format!("spice-agent-port-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        (VdiPort::open(&path).unwrap(), path)
    }

    #[test]
    fn an_idle_wait_blocks_until_bytes_or_the_stop() {
        let (mut port, path) = fifo_port();
        let stop = std::sync::Arc::new(Stop::new().unwrap());
        assert_eq!(
            port.wait(Some(Duration::ZERO), Some(&stop)).unwrap(),
            Readiness::Timeout
        );
        port.write_all(b"x", Duration::from_secs(1)).unwrap();
        assert_eq!(port.wait(None, Some(&stop)).unwrap(), Readiness::Readable);
        let mut b = [0u8; 4];
        assert_eq!(port.read(&mut b).unwrap(), 1);
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s.raise();
        });
        let t0 = Instant::now();
        assert_eq!(port.wait(None, Some(&stop)).unwrap(), Readiness::Stopped);
        assert!(t0.elapsed() >= Duration::from_millis(40));
        t.join().unwrap();
        let _ = std::fs::remove_file(path);
    }
}
