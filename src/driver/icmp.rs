//! ICMP errors on the SIP UDP socket (Linux `IP_RECVERR`): "port unreachable" from a dead
//! server becomes a transport error for the requests sent there at once, so RFC 3263 failover
//! moves to the next server now instead of after 32 s of retransmissions (Timer B/F), and a
//! call to a host where nothing listens fails in milliseconds. Without the option Linux drops
//! ICMP errors for unconnected UDP sockets.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// Error-queue entries read per call at most (a flood of ICMP cannot hold the reader).
const MAX_ERRORS_PER_DRAIN: usize = 64;

/// Asks the kernel to queue ICMP errors on `socket` (IPv4, and IPv6 for a v6 or dual-stack
/// socket). Failure only costs the fast failover; it is logged.
#[cfg(target_os = "linux")]
pub fn enable(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let on: libc::c_int = 1;
    let mut options = vec![(libc::SOL_IP, libc::IP_RECVERR)];
    if socket.local_addr().is_ok_and(|a| a.is_ipv6()) {
        options.push((libc::SOL_IPV6, libc::IPV6_RECVERR));
    }
    for (level, name) in options {
        // SAFETY: `fd` is an open socket owned by `socket` for the whole call; the value points
        // at a live c_int of the size passed.
        let set = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), level, name, "ICMP error reporting not enabled");
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn enable(_socket: &UdpSocket) {}

/// The destinations that ICMP said cannot be reached (port, host or network unreachable),
/// read from the socket's error queue without blocking.
#[cfg(target_os = "linux")]
pub fn drain(socket: &UdpSocket) -> Vec<SocketAddr> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let mut unreachable = Vec::new();
    for _ in 0..MAX_ERRORS_PER_DRAIN {
        // SAFETY: zeroed sockaddr_storage and msghdr are valid values of these C structs.
        let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut data = [0u8; 512];
        let mut control = [0u64; 64];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: every pointer in `msg` points at a live buffer of the length given, owned by
        // this stack frame; MSG_DONTWAIT never blocks.
        let got = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if got < 0 {
            break;
        }
        if is_unreachable(&msg)
            && let Some(dest) = socket_addr(&name)
        {
            unreachable.push(dest);
        }
    }
    unreachable
}

#[cfg(not(target_os = "linux"))]
pub fn drain(_socket: &UdpSocket) -> Vec<SocketAddr> {
    Vec::new()
}

/// Whether the error-queue message carries an ICMP "unreachable" kind of error.
#[cfg(target_os = "linux")]
fn is_unreachable(msg: &libc::msghdr) -> bool {
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR stay within
    // msg_control/msg_controllen, and CMSG_DATA of an IP(V6)_RECVERR message holds a
    // sock_extended_err (read unaligned).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let ours = (header.cmsg_level == libc::SOL_IP && header.cmsg_type == libc::IP_RECVERR)
                || (header.cmsg_level == libc::SOL_IPV6 && header.cmsg_type == libc::IPV6_RECVERR);
            if ours {
                let error: libc::sock_extended_err =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let from_icmp = error.ee_origin == libc::SO_EE_ORIGIN_ICMP
                    || error.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                let errno = error.ee_errno as libc::c_int;
                if from_icmp
                    && matches!(
                        errno,
                        libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH
                    )
                {
                    return true;
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    false
}

/// The destination of the datagram that caused the error (`msg_name` of the error message).
#[cfg(target_os = "linux")]
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in.
            let v4: libc::sockaddr_in =
                unsafe { std::ptr::read_unaligned((name as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(v4.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: ss_family says the storage holds a sockaddr_in6.
            let v6: libc::sockaddr_in6 =
                unsafe { std::ptr::read_unaligned((name as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::new(
                ip.to_canonical(),
                u16::from_be(v6.sin6_port),
            ))
        }
        _ => None,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A datagram to a loopback port where nothing listens comes back as "port unreachable"
    /// naming that port.
    #[tokio::test]
    async fn port_unreachable_names_the_destination() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        enable(&socket);
        // A port that was just free: bind and drop.
        let dead = {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
            probe.local_addr().expect("addr")
        };
        socket.send_to(b"OPTIONS", dead).await.expect("send");
        let mut buf = [0u8; 64];
        let error = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            socket.recv_from(&mut buf),
        )
        .await
        .expect("the error arrives")
        .expect_err("an error, not a datagram");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
        assert_eq!(drain(&socket), vec![dead]);
        assert!(drain(&socket).is_empty(), "drained");
    }
}
