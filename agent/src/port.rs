//! The VDI port: the guest end of virtio-console port `com.redhat.spice.0`
//! (`../shared/reference/agent-and-vdiport.md` §1.5).
//!
//! The Linux driver allows one opener; while the host side is not connected, `poll` reports
//! `POLLHUP`, `read` returns 0 and `write` would block. So the port is opened non-blocking, a
//! reader waits with `poll` and tells "host gone" (HUP without data) from "data", and a writer
//! waits for `POLLOUT` up to a deadline instead of blocking the agent forever.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
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
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: one valid pollfd, its count 1; the fd is open for the call's duration.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n >= 0 {
                return Ok(if n == 0 { 0 } else { pfd.revents });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Waits up to `timeout` for bytes or a host disconnect.
    pub fn wait(&self, timeout: Duration) -> io::Result<Readiness> {
        let r = self.poll(libc::POLLIN, timeout)?;
        if r & libc::POLLIN != 0 {
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
