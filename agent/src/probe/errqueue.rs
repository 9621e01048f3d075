//! The socket error queue: `IP_RECVERR`/`IPV6_RECVERR` on, and `recvmsg(MSG_ERRQUEUE)` to read
//! which ICMP error (type, code, sender) ended a connect or answered a datagram.
//!
//! The crate's second documented exception to `deny(unsafe_code)`: socket2 has neither the
//! option nor control-message parsing. Every `unsafe` block is one FFI call on a borrowed fd
//! with buffers owned by the same stack frame, or a bounds-checked unaligned read of a control
//! message inside that buffer.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::BorrowedFd;

use super::outcome::Icmp;

/// `SO_EE_ORIGIN_ICMP` / `SO_EE_ORIGIN_ICMP6` from `linux/errqueue.h`.
const ORIGIN_ICMP: u8 = 2;
const ORIGIN_ICMP6: u8 = 3;
/// At most this many queued errors are read per call (the first ICMP one wins).
const MAX_QUEUED_READS: usize = 4;

/// Turns on extended error reporting, so ICMP errors (also "soft" ones such as host
/// unreachable on UDP) are reported and queued with their sender. Set before connecting.
pub(crate) fn enable_recv_err(socket: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    imp::enable_recv_err(socket, ipv6)
}

/// Reads the socket's error queue without blocking; the first ICMP-originated entry, if any.
pub(crate) fn read_icmp_error(socket: BorrowedFd<'_>) -> io::Result<Option<Icmp>> {
    for _ in 0..MAX_QUEUED_READS {
        match imp::recv_queued_error(socket)? {
            None => return Ok(None),
            Some(QueuedError {
                origin,
                icmp: Some(icmp),
                ..
            }) if origin == ORIGIN_ICMP || origin == ORIGIN_ICMP6 => return Ok(Some(icmp)),
            Some(_) => continue,
        }
    }
    Ok(None)
}

/// One `sock_extended_err` with its offender.
#[derive(Debug)]
struct QueuedError {
    origin: u8,
    icmp: Option<Icmp>,
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::mem::{self, size_of};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::ptr;

    use super::QueuedError;
    use crate::probe::outcome::Icmp;

    pub(super) fn enable_recv_err(socket: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
        let (level, name) = if ipv6 {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
        } else {
            (libc::IPPROTO_IP, libc::IP_RECVERR)
        };
        let on: libc::c_int = 1;
        // SAFETY: FFI call with a live fd and a pointer/length pair to a local c_int.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                name,
                ptr::from_ref(&on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(super) fn recv_queued_error(socket: BorrowedFd<'_>) -> io::Result<Option<QueuedError>> {
        // The queued skb carries the offending packet's payload; we only want the cmsg.
        let mut payload = [0u8; 64];
        // u64 elements: cmsghdr alignment.
        let mut control = [0u64; 64];
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&control) as _;
        // SAFETY: FFI call; msg points at buffers that outlive the call.
        let received = unsafe {
            libc::recvmsg(
                socket.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if received < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                _ => Err(error),
            };
        }
        let control_end = control.as_ptr() as usize + (msg.msg_controllen as usize);
        // SAFETY: msg was filled by the kernel; the CMSG_* macros walk inside msg_control.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR return headers inside the control buffer.
            let header = unsafe { ptr::read_unaligned(cmsg) };
            let is_recverr = (header.cmsg_level == libc::IPPROTO_IP
                && header.cmsg_type == libc::IP_RECVERR)
                || (header.cmsg_level == libc::IPPROTO_IPV6
                    && header.cmsg_type == libc::IPV6_RECVERR);
            if is_recverr {
                // SAFETY: CMSG_DATA of a header inside the buffer.
                let data = unsafe { libc::CMSG_DATA(cmsg) };
                let data_len = (header.cmsg_len as usize)
                    .saturating_sub(data as usize - cmsg as usize)
                    .min(control_end.saturating_sub(data as usize));
                return Ok(Some(parse_extended_error(data, data_len)));
            }
            // SAFETY: as above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        Ok(Some(QueuedError {
            origin: 0,
            icmp: None,
        }))
    }

    /// `struct sock_extended_err` followed by the offender's sockaddr (`SO_EE_OFFENDER`).
    fn parse_extended_error(data: *const u8, len: usize) -> QueuedError {
        let ee_size = size_of::<libc::sock_extended_err>();
        if len < ee_size {
            return QueuedError {
                origin: 0,
                icmp: None,
            };
        }
        // SAFETY: `len` bytes from `data` lie inside the control buffer (checked above).
        let ee: libc::sock_extended_err = unsafe { ptr::read_unaligned(data.cast()) };
        let offender_at = data.wrapping_add(ee_size);
        let offender_len = len - ee_size;
        let offender = if offender_len >= size_of::<libc::sa_family_t>() {
            // SAFETY: at least a family field is inside the buffer.
            let family: libc::sa_family_t = unsafe { ptr::read_unaligned(offender_at.cast()) };
            match libc::c_int::from(family) {
                libc::AF_INET if offender_len >= size_of::<libc::sockaddr_in>() => {
                    // SAFETY: a whole sockaddr_in is inside the buffer.
                    let sin: libc::sockaddr_in = unsafe { ptr::read_unaligned(offender_at.cast()) };
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))))
                }
                libc::AF_INET6 if offender_len >= size_of::<libc::sockaddr_in6>() => {
                    // SAFETY: a whole sockaddr_in6 is inside the buffer.
                    let sin6: libc::sockaddr_in6 =
                        unsafe { ptr::read_unaligned(offender_at.cast()) };
                    let v6 = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
                }
                _ => None,
            }
        } else {
            None
        };
        QueuedError {
            origin: ee.ee_origin,
            icmp: offender.map(|offender| Icmp {
                kind: ee.ee_type,
                code: ee.ee_code,
                offender,
            }),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::os::fd::BorrowedFd;

    use super::QueuedError;

    pub(super) fn enable_recv_err(_socket: BorrowedFd<'_>, _ipv6: bool) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "IP_RECVERR needs Linux",
        ))
    }

    pub(super) fn recv_queued_error(_socket: BorrowedFd<'_>) -> io::Result<Option<QueuedError>> {
        Ok(None)
    }
}
