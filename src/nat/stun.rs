//! STUN Binding (RFC 5389) without I/O: [`binding_request`] encodes a request, [`parse`] reads
//! a response (XOR-MAPPED-ADDRESS, MAPPED-ADDRESS fallback, IPv4 and IPv6), [`is_stun`] tells a
//! STUN datagram from SIP or RTP sharing the socket, and [`BindingClient`] runs the §7.2.1
//! retransmission schedule as data (`handle_input` / `poll_transmit` / `poll_timeout`).
//!
//! Every length in a received message is checked against the bytes really there, the number of
//! attributes is bounded, and nothing is indexed without `get`: hostile input yields an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// RFC 5389 §6: the fixed value in bytes 4..8 of every STUN message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const HEADER_LEN: usize = 20;
/// A Binding request (method 0x001, class request).
pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_SUCCESS: u16 = 0x0101;
pub const BINDING_ERROR: u16 = 0x0111;

pub const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
pub const ATTR_ERROR_CODE: u16 = 0x0009;
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const ATTR_FINGERPRINT: u16 = 0x8028;
/// RFC 5389 §15.5: the CRC-32 is XOR-ed with this.
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// More attributes than this in one response is an attack or garbage, not a Binding response.
pub const MAX_ATTRIBUTES: usize = 32;
/// Largest message we accept (RFC 5389 §7.1 keeps UDP messages under the path MTU).
pub const MAX_MESSAGE: usize = 1280;

pub type TransactionId = [u8; 12];

/// Why a datagram is not a usable Binding response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("larger than {MAX_MESSAGE} bytes")]
    TooLong,
    #[error("the first two bits are not zero")]
    NotStun,
    #[error("wrong magic cookie")]
    BadCookie,
    #[error("message length {declared} does not match the {actual} bytes after the header")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("message length is not a multiple of 4")]
    Unaligned,
    #[error("attribute 0x{0:04x} runs past the end of the message")]
    TruncatedAttribute(u16),
    #[error("more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("address attribute with unknown family {0}")]
    BadFamily(u8),
    #[error("address attribute of the wrong length")]
    BadAddressLength,
    #[error("FINGERPRINT does not match")]
    BadFingerprint,
    #[error("attributes after FINGERPRINT")]
    AfterFingerprint,
    #[error("not a Binding response (type 0x{0:04x})")]
    UnexpectedType(u16),
    #[error("error response {0}")]
    ErrorResponse(u16),
    #[error("success response without a mapped address")]
    NoMappedAddress,
}

/// What [`parse`] found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The 14-bit message type (method and class), e.g. [`BINDING_SUCCESS`].
    pub kind: u16,
    pub transaction: TransactionId,
    pub xor_mapped: Option<SocketAddr>,
    pub mapped: Option<SocketAddr>,
    /// ERROR-CODE class*100 + number, for error responses.
    pub error_code: Option<u16>,
    /// Whether a FINGERPRINT was present (and matched: a mismatch is an error).
    pub fingerprint: bool,
}

impl Message {
    /// The reflexive address: XOR-MAPPED-ADDRESS, else the RFC 3489 MAPPED-ADDRESS.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.xor_mapped.or(self.mapped)
    }
}

/// Whether a datagram on a shared socket is STUN (RFC 7983 §7 / RFC 5389 §6: first byte 0 or
/// 1, the magic cookie in bytes 4..8). SIP starts with a letter, RTP/RTCP with 0x80..0xBF.
pub fn is_stun(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN
        && matches!(bytes.first(), Some(0 | 1))
        && bytes.get(4..8) == Some(&MAGIC_COOKIE.to_be_bytes()[..])
}

/// An RFC 5389 Binding request with no attributes.
pub fn binding_request(transaction: &TransactionId) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(transaction);
    out
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// Parses any STUN message header and the attributes a Binding client needs.
pub fn parse(bytes: &[u8]) -> Result<Message, StunError> {
    if bytes.len() < HEADER_LEN {
        return Err(StunError::TooShort);
    }
    if bytes.len() > MAX_MESSAGE {
        return Err(StunError::TooLong);
    }
    let kind = be16(bytes, 0).ok_or(StunError::TooShort)?;
    if kind & 0xC000 != 0 {
        return Err(StunError::NotStun);
    }
    let declared = usize::from(be16(bytes, 2).ok_or(StunError::TooShort)?);
    if be32(bytes, 4) != Some(MAGIC_COOKIE) {
        return Err(StunError::BadCookie);
    }
    let actual = bytes.len() - HEADER_LEN;
    if declared != actual {
        return Err(StunError::LengthMismatch { declared, actual });
    }
    if declared % 4 != 0 {
        return Err(StunError::Unaligned);
    }
    let mut transaction = [0u8; 12];
    transaction.copy_from_slice(bytes.get(8..HEADER_LEN).ok_or(StunError::TooShort)?);
    let mut message = Message {
        kind,
        transaction,
        xor_mapped: None,
        mapped: None,
        error_code: None,
        fingerprint: false,
    };
    let mut at = HEADER_LEN;
    let mut count = 0;
    while at < bytes.len() {
        count += 1;
        if count > MAX_ATTRIBUTES {
            return Err(StunError::TooManyAttributes);
        }
        if message.fingerprint {
            return Err(StunError::AfterFingerprint);
        }
        let attr = be16(bytes, at).ok_or(StunError::TruncatedAttribute(0))?;
        let len = usize::from(be16(bytes, at + 2).ok_or(StunError::TruncatedAttribute(attr))?);
        let start = at + 4;
        let value = bytes
            .get(start..start + len)
            .ok_or(StunError::TruncatedAttribute(attr))?;
        // Values are padded to 4 bytes; the padding must be there too.
        let padded = len.div_ceil(4) * 4;
        if start + padded > bytes.len() {
            return Err(StunError::TruncatedAttribute(attr));
        }
        match attr {
            ATTR_XOR_MAPPED_ADDRESS => {
                message.xor_mapped = Some(address(value, Some(&transaction))?);
            }
            ATTR_MAPPED_ADDRESS => message.mapped = Some(address(value, None)?),
            ATTR_ERROR_CODE => {
                if let (Some(class), Some(number)) = (value.get(2), value.get(3)) {
                    message.error_code = Some(u16::from(class & 7) * 100 + u16::from(*number));
                }
            }
            ATTR_FINGERPRINT => {
                let got = be32(value, 0).filter(|_| len == 4);
                let want = crc32(bytes.get(..at).unwrap_or_default()) ^ FINGERPRINT_XOR;
                if got != Some(want) {
                    return Err(StunError::BadFingerprint);
                }
                message.fingerprint = true;
            }
            // MESSAGE-INTEGRITY, SOFTWARE and the rest are not needed for an unauthenticated
            // Binding; comprehension-required unknowns only matter to servers (§7.3.1).
            _ => {}
        }
        at = start + padded;
    }
    Ok(message)
}

/// MAPPED-ADDRESS / XOR-MAPPED-ADDRESS value (§15.1, §15.2); `xor` carries the transaction id.
fn address(value: &[u8], xor: Option<&TransactionId>) -> Result<SocketAddr, StunError> {
    let family = *value.get(1).ok_or(StunError::BadAddressLength)?;
    let mut port = be16(value, 2).ok_or(StunError::BadAddressLength)?;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match family {
        1 => {
            if value.len() != 8 {
                return Err(StunError::BadAddressLength);
            }
            let mut raw = be32(value, 4).ok_or(StunError::BadAddressLength)?;
            if xor.is_some() {
                raw ^= MAGIC_COOKIE;
            }
            IpAddr::V4(Ipv4Addr::from(raw))
        }
        2 => {
            if value.len() != 20 {
                return Err(StunError::BadAddressLength);
            }
            let mut raw = [0u8; 16];
            raw.copy_from_slice(value.get(4..20).ok_or(StunError::BadAddressLength)?);
            if let Some(transaction) = xor {
                let mask = cookie.iter().chain(transaction.iter());
                for (b, m) in raw.iter_mut().zip(mask) {
                    *b ^= m;
                }
            }
            IpAddr::V6(Ipv6Addr::from(raw))
        }
        other => return Err(StunError::BadFamily(other)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// CRC-32 (ISO-HDLC, as in RFC 5389 §15.5).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Encodes a Binding success response carrying `mapped` as XOR-MAPPED-ADDRESS (for tests and
/// tiny servers; a client never sends one).
pub fn binding_success(transaction: &TransactionId, mapped: SocketAddr) -> Vec<u8> {
    let mut value = vec![0u8];
    let port = mapped.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match mapped.ip() {
        IpAddr::V4(v4) => {
            value.push(1);
            value.extend_from_slice(&port.to_be_bytes());
            value.extend_from_slice(&(u32::from(v4) ^ MAGIC_COOKIE).to_be_bytes());
        }
        IpAddr::V6(v6) => {
            value.push(2);
            value.extend_from_slice(&port.to_be_bytes());
            let mask = MAGIC_COOKIE.to_be_bytes();
            let mask = mask.iter().chain(transaction.iter());
            value.extend(v6.octets().iter().zip(mask).map(|(b, m)| b ^ m));
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + value.len());
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(transaction);
    out.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(&value);
    out
}

/// The retransmission schedule of RFC 5389 §7.2.1: the first request at once, each next one
/// after a doubled RTO, `requests` in all, then `last_wait_factor` × RTO for the last answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub rto: Duration,
    /// Rc: requests sent in all (RFC default 7).
    pub requests: u32,
    /// Rm: how many RTOs to wait after the last request (RFC default 16).
    pub last_wait_factor: u32,
}

impl Schedule {
    /// RFC 5389 defaults: RTO 500 ms, Rc 7, Rm 16 — gives up after 39.5 s.
    pub const RFC5389: Schedule = Schedule {
        rto: Duration::from_millis(500),
        requests: 7,
        last_wait_factor: 16,
    };

    /// A short schedule for a call about to start: `requests` tries from `rto`, then 2 × RTO.
    pub fn quick(rto: Duration, requests: u32) -> Schedule {
        Schedule {
            rto,
            requests: requests.max(1),
            last_wait_factor: 2,
        }
    }

    /// When each request goes out, from the first one.
    pub fn send_offsets(&self) -> Vec<Duration> {
        let mut at = Duration::ZERO;
        let mut rto = self.rto;
        let mut out = Vec::new();
        for i in 0..self.requests {
            if i > 0 {
                at += rto;
                rto = rto.saturating_mul(2);
            }
            out.push(at);
        }
        out
    }

    /// When the transaction fails without an answer, from the first request.
    pub fn give_up_after(&self) -> Duration {
        self.send_offsets().last().copied().unwrap_or_default()
            + self.rto.saturating_mul(self.last_wait_factor)
    }
}

/// Why a Binding transaction ended without an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingFailure {
    #[error("no answer from the STUN server after {0} requests")]
    Timeout(u32),
    #[error("the STUN server answered with an error: {0}")]
    Rejected(StunError),
}

/// One Binding transaction, sans-IO. Feed it datagrams from the server and the clock; it says
/// what to send and when, and ends with the mapped address or a failure.
#[derive(Debug, Clone)]
pub struct BindingClient {
    server: SocketAddr,
    transaction: TransactionId,
    request: Vec<u8>,
    offsets: Vec<Duration>,
    give_up: Duration,
    started: Instant,
    /// Requests handed out by `poll_transmit` so far.
    sent: usize,
    outcome: Option<Result<SocketAddr, BindingFailure>>,
}

impl BindingClient {
    pub fn new(
        server: SocketAddr,
        transaction: TransactionId,
        schedule: Schedule,
        now: Instant,
    ) -> Self {
        BindingClient {
            server,
            request: binding_request(&transaction),
            transaction,
            offsets: schedule.send_offsets(),
            give_up: schedule.give_up_after(),
            started: now,
            sent: 0,
            outcome: None,
        }
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The next request to send, when one is due at `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if self.outcome.is_some() {
            return None;
        }
        let due = *self.offsets.get(self.sent)?;
        if now.saturating_duration_since(self.started) < due {
            return None;
        }
        self.sent += 1;
        Some((self.server, self.request.clone()))
    }

    /// When to call `poll_transmit` / `handle_timeout` next; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let offset = self.offsets.get(self.sent).copied().unwrap_or(self.give_up);
        Some(self.started + offset)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_none()
            && self.sent >= self.offsets.len()
            && now.saturating_duration_since(self.started) >= self.give_up
        {
            self.outcome = Some(Err(BindingFailure::Timeout(self.sent as u32)));
        }
    }

    /// A datagram from `from`. Returns whether it answered this transaction (other STUN
    /// traffic, a stale transaction or another source is ignored and left to the caller).
    pub fn handle_input(&mut self, from: SocketAddr, bytes: &[u8]) -> bool {
        if self.outcome.is_some() || from != self.server {
            return false;
        }
        let Ok(message) = parse(bytes) else {
            return false;
        };
        if message.transaction != self.transaction {
            return false;
        }
        self.outcome = Some(match message.kind {
            BINDING_SUCCESS => message
                .mapped_address()
                .ok_or(BindingFailure::Rejected(StunError::NoMappedAddress)),
            BINDING_ERROR => Err(BindingFailure::Rejected(StunError::ErrorResponse(
                message.error_code.unwrap_or(0),
            ))),
            other => Err(BindingFailure::Rejected(StunError::UnexpectedType(other))),
        });
        true
    }

    /// The result, once there is one.
    pub fn outcome(&self) -> Option<&Result<SocketAddr, BindingFailure>> {
        self.outcome.as_ref()
    }
}

/// A transaction id from any 96 bits of entropy the caller has (ids need only be unique).
pub fn transaction_id(seed: u64, counter: u32) -> TransactionId {
    let mut id = [0u8; 12];
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ u64::from(counter);
    id[..8].copy_from_slice(&mixed.to_be_bytes());
    id[8..].copy_from_slice(&counter.wrapping_mul(2_654_435_761).to_be_bytes());
    id
}
