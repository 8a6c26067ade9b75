//! DNS in the lab: dnsmasq (Debian's dnsmasq-base) authoritative for `.test`, the system
//! resolver of a host pointed at it, and a minimal DNS client to check SRV and NAPTR answers
//! (glibc's getent only does addresses).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::super::HarnessError;
use super::super::process::{ChildGuard, Stdout, tail_of_file};
use super::{Host, Lab, write_resolv_conf};

/// The zone dnsmasq is authoritative for: every lab name ends in `.test` (RFC 2606), so a
/// mistake can never reach a real host.
const ZONE: &str = "test";
/// How long dnsmasq may take to answer its first query.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `DnsServer::query` waits for an answer (with retransmissions).
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
const RETRANSMIT_EVERY: Duration = Duration::from_millis(200);

/// One record served by `Lab::dns`. Names must end in `.test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsRecord {
    /// A and/or AAAA records (`--host-record`).
    Host { name: String, addrs: Vec<IpAddr> },
    /// An SRV record (`--srv-host`); several for one name give several targets.
    Srv {
        /// `_sip._udp.biloxi.test`
        name: String,
        target: String,
        port: u16,
        priority: u16,
        weight: u16,
    },
    /// A NAPTR record (`--naptr-record`) with an empty regexp, as RFC 3263 uses them.
    Naptr {
        name: String,
        order: u16,
        preference: u16,
        /// `s` (the replacement names an SRV record) or `a`.
        flags: String,
        /// `SIP+D2U`, `SIP+D2T`, `SIPS+D2T`, ...
        service: String,
        replacement: String,
    },
}

impl DnsRecord {
    pub fn host(name: &str, addrs: &[IpAddr]) -> DnsRecord {
        DnsRecord::Host {
            name: name.to_owned(),
            addrs: addrs.to_vec(),
        }
    }

    pub fn srv(name: &str, target: &str, port: u16, priority: u16, weight: u16) -> DnsRecord {
        DnsRecord::Srv {
            name: name.to_owned(),
            target: target.to_owned(),
            port,
            priority,
            weight,
        }
    }

    /// A NAPTR with flags `s` pointing at the SRV name `replacement`.
    pub fn naptr(
        name: &str,
        order: u16,
        preference: u16,
        service: &str,
        replacement: &str,
    ) -> DnsRecord {
        DnsRecord::Naptr {
            name: name.to_owned(),
            order,
            preference,
            flags: "s".to_owned(),
            service: service.to_owned(),
            replacement: replacement.to_owned(),
        }
    }

    /// The dnsmasq option that serves this record.
    fn dnsmasq_arg(&self) -> Result<String, HarnessError> {
        Ok(match self {
            DnsRecord::Host { name, addrs } => {
                check_name(name)?;
                if addrs.is_empty() {
                    return Err(HarnessError::InvalidInput {
                        what: "DNS host record",
                        value: name.clone(),
                        why: "no addresses",
                    });
                }
                let addrs: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
                format!("--host-record={name},{}", addrs.join(","))
            }
            DnsRecord::Srv {
                name,
                target,
                port,
                priority,
                weight,
            } => {
                check_name(name)?;
                check_name(target)?;
                format!("--srv-host={name},{target},{port},{priority},{weight}")
            }
            DnsRecord::Naptr {
                name,
                order,
                preference,
                flags,
                service,
                replacement,
            } => {
                check_name(name)?;
                check_name(replacement)?;
                check_token("NAPTR flags", flags)?;
                check_token("NAPTR service", service)?;
                format!(
                    "--naptr-record={name},{order},{preference},{flags},{service},,{replacement}"
                )
            }
        })
    }
}

/// A dnsmasq the Lab owns (it dies with the Lab).
#[derive(Debug, Clone)]
pub struct DnsServer {
    host: Host,
    addrs: Vec<IpAddr>,
    log: PathBuf,
}

impl DnsServer {
    /// The addresses it answers on (every address of its host).
    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs
    }

    /// Its first IPv4 address (else its first address): what `use_dns` usually gets.
    pub fn ip(&self) -> Result<IpAddr, HarnessError> {
        self.host.ip()
    }

    /// dnsmasq's log (every query and its answer).
    pub fn log(&self) -> String {
        tail_of_file(&self.log, 16384)
    }

    /// Asks it for `name`/`qtype` from a socket on `from` (the query crosses the lab network).
    pub fn query(
        &self,
        from: &Host,
        name: &str,
        qtype: QueryType,
    ) -> Result<DnsReply, HarnessError> {
        let server = SocketAddr::new(self.ip()?, 53);
        let local = from.ip().map(|ip| SocketAddr::new(ip, 0))?;
        let socket = from.udp_socket(local)?;
        query(&socket, server, name, qtype, QUERY_TIMEOUT)
    }
}

impl Lab {
    /// Starts dnsmasq on every address of `host`, authoritative for `.test`, serving `records`
    /// (unknown `.test` names get NXDOMAIN; nothing is forwarded anywhere). Returns once it
    /// answers. Its log (every query) is in `logs()` and `DnsServer::log`.
    pub fn dns(&self, host: &Host, records: &[DnsRecord]) -> Result<DnsServer, HarnessError> {
        let addrs = host.addrs();
        if addrs.is_empty() {
            return Err(HarnessError::InvalidInput {
                what: "DNS server host",
                value: host.name().to_owned(),
                why: "it has no address to listen on",
            });
        }
        let dir = self.dir().join(format!("dnsmasq-{}", host.name()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        let log = dir.join("dnsmasq.log");
        let listen: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
        let mut command = host.command("dnsmasq");
        command
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
            ])
            .args(["--conf-file=/dev/null", "--user=root", "--log-queries"])
            .arg(format!("--log-facility={}", log.display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .arg(format!("--auth-zone={ZONE}"))
            // Authoritative (AA, NXDOMAIN for unknown names) on queries to these addresses.
            .arg(format!("--auth-server=ns.{ZONE},{}", listen.join(",")));
        for addr in &listen {
            command.arg(format!("--listen-address={addr}"));
        }
        for record in records {
            command.arg(record.dnsmasq_arg()?);
        }
        let guard = ChildGuard::spawn("dnsmasq", command, Stdout::File, Some(&dir))?;
        self.add_log(format!("dnsmasq on {}", host.name()), log.clone());
        self.add_log(
            format!("dnsmasq on {} stderr", host.name()),
            dir.join("stderr.log"),
        );
        let server = DnsServer {
            host: host.clone(),
            addrs,
            log,
        };
        self.own(wait_ready(&server, guard)?);
        Ok(server)
    }

    /// Points the system resolver of `host` at `server` (/etc/netns/NS/resolv.conf, mounted
    /// over /etc/resolv.conf for programs run with `ip netns exec`). A lost answer is retried
    /// after 1 s, so a test waiting on a lookup never hangs for glibc's default 5 s x 2.
    pub fn use_dns(&self, host: &Host, server: IpAddr) -> Result<(), HarnessError> {
        write_resolv_conf(
            host.netns(),
            &format!("nameserver {server}\noptions timeout:1 attempts:2\n"),
        )
    }
}

/// Waits until dnsmasq answers a query for the zone's SOA; kills it (through the guard) on
/// failure and quotes its log.
fn wait_ready(server: &DnsServer, mut guard: ChildGuard) -> Result<ChildGuard, HarnessError> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let error = match server.query(&server.host, ZONE, QueryType::Soa) {
            Ok(_) => return Ok(guard),
            Err(error) => error,
        };
        if let Some(status) = guard.try_exit_status() {
            return Err(HarnessError::PeerFailed {
                name: "dnsmasq".to_owned(),
                status: status.to_string(),
                log: format!("{}\n{}", guard.recent_output(), server.log()),
            });
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::PeerHung {
                name: "dnsmasq".to_owned(),
                waited: STARTUP_TIMEOUT,
                log: format!("{error}\n{}\n{}", guard.recent_output(), server.log()),
            });
        }
    }
}

fn check_name(name: &str) -> Result<(), HarnessError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_';
    if !name.ends_with(".test") || !name.chars().all(allowed) || name.contains("..") {
        return Err(HarnessError::InvalidInput {
            what: "lab DNS name",
            value: name.to_owned(),
            why: "lab names end in .test and use A-Z a-z 0-9 . - _",
        });
    }
    Ok(())
}

fn check_token(what: &'static str, value: &str) -> Result<(), HarnessError> {
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') {
        return Err(HarnessError::InvalidInput {
            what,
            value: value.to_owned(),
            why: "use A-Z a-z 0-9 +",
        });
    }
    Ok(())
}

// ---------------------------------------------------------- the client ----

/// The record types the lab's client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    A,
    Aaaa,
    Srv,
    Naptr,
    Soa,
}

impl QueryType {
    fn code(self) -> u16 {
        match self {
            QueryType::A => 1,
            QueryType::Soa => 6,
            QueryType::Aaaa => 28,
            QueryType::Srv => 33,
            QueryType::Naptr => 35,
        }
    }
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAnswer {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Naptr {
        order: u16,
        preference: u16,
        flags: String,
        service: String,
        regexp: String,
        replacement: String,
    },
    /// Any other type, by number.
    Other(u16),
}

/// A DNS response: its RCODE (0 NOERROR, 3 NXDOMAIN), the AA bit and the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsReply {
    pub rcode: u8,
    pub authoritative: bool,
    pub answers: Vec<DnsAnswer>,
}

static NEXT_QUERY_ID: AtomicU16 = AtomicU16::new(1);

/// Sends one query for `name`/`qtype` from `socket` to `server`, retransmitting every 200 ms,
/// and parses the reply with the same id.
pub fn query(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    qtype: QueryType,
    timeout: Duration,
) -> Result<DnsReply, HarnessError> {
    let id = NEXT_QUERY_ID.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u16);
    let message = build_query(id, name, qtype)?;
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < timeout {
        // A refused send (nobody listens yet) is retried like a lost one.
        let _ = socket.send_to(&message, server);
        let wait_until = (Instant::now() + RETRANSMIT_EVERY).min(started + timeout);
        while let Some(wait) = wait_until
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
        {
            socket
                .set_read_timeout(Some(wait))
                .map_err(|e| HarnessError::io("setting the DNS query timeout", e))?;
            let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                continue;
            };
            let reply = buffer.get(..len).unwrap_or_default();
            if from == server && reply.get(..2) == Some(&id.to_be_bytes()[..]) {
                return parse_reply(reply).ok_or_else(|| HarnessError::InvalidInput {
                    what: "DNS reply",
                    value: format!("{reply:02x?}"),
                    why: "malformed",
                });
            }
        }
    }
    Err(HarnessError::Timeout {
        what: format!("a DNS answer from {server} for {name} ({qtype:?})"),
        waited: started.elapsed(),
        recent: String::new(),
    })
}

fn build_query(id: u16, name: &str, qtype: QueryType) -> Result<Vec<u8>, HarnessError> {
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(&id.to_be_bytes());
    // Flags: a standard query with recursion desired; one question.
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|&len| (1..64).contains(&len))
            .ok_or_else(|| HarnessError::InvalidInput {
                what: "DNS name",
                value: name.to_owned(),
                why: "labels are 1-63 bytes",
            })?;
        message.push(len);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    message.extend_from_slice(&qtype.code().to_be_bytes());
    message.extend_from_slice(&1u16.to_be_bytes()); // class IN
    Ok(message)
}

fn parse_reply(message: &[u8]) -> Option<DnsReply> {
    let mut reader = Reader { message, pos: 2 };
    let flags = reader.u16()?;
    let questions = reader.u16()?;
    let answer_count = reader.u16()?;
    reader.pos += 4; // authority and additional counts
    for _ in 0..questions {
        reader.name()?;
        reader.pos += 4; // type, class
    }
    let mut answers = Vec::new();
    for _ in 0..answer_count {
        reader.name()?;
        let rtype = reader.u16()?;
        reader.pos += 6; // class, TTL
        let len = usize::from(reader.u16()?);
        let end = reader.pos.checked_add(len)?;
        message.get(reader.pos..end)?;
        let answer = match rtype {
            1 => DnsAnswer::A(Ipv4Addr::from(<[u8; 4]>::try_from(reader.bytes(4)?).ok()?)),
            28 => DnsAnswer::Aaaa(Ipv6Addr::from(
                <[u8; 16]>::try_from(reader.bytes(16)?).ok()?,
            )),
            33 => DnsAnswer::Srv {
                priority: reader.u16()?,
                weight: reader.u16()?,
                port: reader.u16()?,
                target: reader.name()?,
            },
            35 => DnsAnswer::Naptr {
                order: reader.u16()?,
                preference: reader.u16()?,
                flags: reader.character_string()?,
                service: reader.character_string()?,
                regexp: reader.character_string()?,
                replacement: reader.name()?,
            },
            other => DnsAnswer::Other(other),
        };
        answers.push(answer);
        reader.pos = end;
    }
    Some(DnsReply {
        rcode: (flags & 0x000f) as u8,
        authoritative: flags & 0x0400 != 0,
        answers,
    })
}

/// Bounds-checked reads from a DNS message.
struct Reader<'a> {
    message: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, len: usize) -> Option<&[u8]> {
        let bytes = self.message.get(self.pos..self.pos.checked_add(len)?)?;
        self.pos += len;
        Some(bytes)
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes = self.bytes(2)?;
        Some(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn character_string(&mut self) -> Option<String> {
        let len = usize::from(*self.bytes(1)?.first()?);
        Some(String::from_utf8_lossy(self.bytes(len)?).into_owned())
    }

    /// A possibly compressed name, dotted; the root is "".
    fn name(&mut self) -> Option<String> {
        let mut labels = Vec::new();
        let mut pos = self.pos;
        let mut resume_at = None;
        // Each pointer must go backwards, so a hostile loop ends; this bounds it anyway.
        for _ in 0..128 {
            let len = *self.message.get(pos)?;
            match len {
                0 => {
                    self.pos = resume_at.unwrap_or(pos + 1);
                    return Some(labels.join("."));
                }
                len if len & 0xc0 == 0xc0 => {
                    let low = *self.message.get(pos + 1)?;
                    resume_at.get_or_insert(pos + 2);
                    pos = (usize::from(len & 0x3f) << 8) | usize::from(low);
                }
                len => {
                    let start = pos + 1;
                    let label = self.message.get(start..start + usize::from(len))?;
                    labels.push(String::from_utf8_lossy(label).into_owned());
                    pos = start + usize::from(len);
                }
            }
        }
        None
    }
}
