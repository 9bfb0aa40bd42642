//! Descriptor passing on the vfio-user socket: `recvmsg` collecting SCM_RIGHTS descriptors,
//! and `sendmsg` with one descriptor attached. The only `unsafe` of the crate (FFI).

use std::fs::File;
use std::io::Write;
use std::os::fd::RawFd;

use tracing::warn;

/// File descriptors accepted per `recvmsg` (the protocol's `max_msg_fds` is 1; QEMU may pass
/// more with SET_IRQS for MSI-X).
pub(crate) const MAX_FDS: usize = 16;

/// `recvmsg` into `buf`, collecting SCM_RIGHTS descriptors (close-on-exec).
pub(crate) fn recv_with_fds(
    stream: &std::os::unix::net::UnixStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Vec<File>)> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut cbuf = [0u64; 2 + MAX_FDS / 2 + 2];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no iov, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (covering `buf`) and `cbuf`, both live and writable
        // for the call; the kernel writes at most their lengths.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer the kernel filled, bounded by
    // msg_controllen; each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors
    // that now belong to this process and are wrapped exactly once.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<i32>();
                let len = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..len / std::mem::size_of::<i32>() {
                    fds.push(File::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        warn!("vfio-user: descriptors beyond {MAX_FDS} in one read were dropped");
    }
    Ok((n, fds))
}

/// Sends `data` with `fd` attached (SCM_RIGHTS), then the rest of `data` if the first
/// `sendmsg` was short.
pub fn send_with_fd(
    stream: &std::os::unix::net::UnixStream,
    data: &[u8],
    fd: RawFd,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as _;
    // SAFETY: the control buffer (32 bytes, aligned) holds one cmsghdr with one int; the
    // kernel only reads `data` through `iov` during the call.
    let n = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), fd);
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut s = stream;
    s.write_all(data.get(n as usize..).unwrap_or_default())
}
