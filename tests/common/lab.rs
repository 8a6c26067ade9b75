//! The network lab: throw-away networks of Linux network namespaces for tests that need routing,
//! NAT, DNS or a LAN (DESIGN.md, "The network lab"). Needs root (CI runs as root).
//!
//! - A `Segment` is an L2 segment: a bridge in a namespace of its own.
//! - A `Host` is a namespace with lo up, one veth per segment it sits on (made straight inside
//!   the namespaces, so nothing appears in the root namespace), addresses and default routes.
//! - A `Router` forwards between segments; `Lab::nat_router` adds an nftables masquerade (cone
//!   or symmetric) and a stateful filter on its WAN side.
//! - `Lab::dns` runs dnsmasq, authoritative for `.test`; `Lab::use_dns` points a host's system
//!   resolver at it (/etc/netns/NS/resolv.conf, which `ip netns exec` mounts as
//!   /etc/resolv.conf). `Lab::kamailio` runs a proxy + registrar (lab/kamailio.rs).
//!
//! Every name carries the test process's PID (`stlab<PID>-<N>-<role>`). Dropping the `Lab`
//! kills every process inside its namespaces, deletes them and their /etc/netns dirs, even
//! while a test panics (then it also prints the servers' logs and keeps the lab dir).
//! `Lab::new` first removes what runs of dead test processes left behind.
//!
//! Traffic never leaves: no namespace has a link to the root namespace or a route out.

pub mod dns;
pub mod kamailio;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use super::HarnessError;
use super::process::{ChildGuard, Stdout, tail_of_file};

// Re-exported so a test names them from one place; each test binary uses a subset.
#[allow(unused_imports)]
pub use dns::{DnsAnswer, DnsRecord, DnsReply, DnsServer, QueryType};
#[allow(unused_imports)]
pub use kamailio::{KamailioLab, LabKamailio};

/// Every lab namespace name starts with this, then the creating test process's PID.
const PREFIX: &str = "stlab";
/// Where `ip netns add` mounts namespaces.
const NETNS_RUN_DIR: &str = "/var/run/netns";
/// Per-namespace files that `ip netns exec` mounts over /etc.
const NETNS_ETC_DIR: &str = "/etc/netns";
/// An `ip`/`nft` call that takes longer than this is stuck.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long processes in a namespace may take to die after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest role name (hosts, routers, segments): keeps namespace names readable.
const MAX_ROLE_LEN: usize = 20;

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);
/// The first `ip netns add` on a machine creates and mounts /var/run/netns; two at once can race
/// on that mount, so this process adds namespaces one at a time.
static NETNS_ADD: Mutex<()> = Mutex::new(());
static STALE_SWEEP: Once = Once::new();

/// True when the lab can run (root). Not root: with `CI` set this panics (CI must never skip a
/// lab test silently); otherwise it prints "skipped: needs root" and returns false.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: the network lab needs root, and CI is set: refusing to skip");
    }
    // Straight to stderr: libtest captures eprintln! of passing tests, and a skip must show.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped: needs root (the network lab makes network namespaces)"
    );
    false
}

/// NAT behaviour of `Lab::nat_router`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// `masquerade`: the source port is kept when free, one mapping for every destination
    /// (endpoint-independent mapping; filtering is address-and-port dependent, as conntrack is).
    Cone,
    /// `masquerade random`: a new random port per destination (address-and-port dependent
    /// mapping), the NAT that defeats STUN.
    Symmetric,
}

/// An L2 segment: a bridge (`br0`) alone in its namespace.
#[derive(Debug, Clone)]
pub struct Segment {
    name: String,
    netns: String,
}

impl Segment {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }
}

/// An address on a host interface, as `IP/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for InterfaceAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

impl std::str::FromStr for InterfaceAddr {
    type Err = HarnessError;

    fn from_str(text: &str) -> Result<Self, HarnessError> {
        let invalid = |why| HarnessError::InvalidInput {
            what: "interface address",
            value: text.to_owned(),
            why,
        };
        let (ip, prefix) = text.split_once('/').ok_or(invalid("expected IP/PREFIX"))?;
        let ip: IpAddr = ip.parse().map_err(|_| invalid("not an IP address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("bad prefix length"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(invalid("prefix longer than the address"));
        }
        Ok(InterfaceAddr { ip, prefix })
    }
}

/// A network namespace with interfaces on lab segments. Cheap to clone; it does not own the
/// namespace (the `Lab` does).
#[derive(Debug, Clone)]
pub struct Host {
    name: String,
    netns: String,
    addrs: Vec<InterfaceAddr>,
}

impl Host {
    /// The role name given at creation ("alice").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace name, for `ip netns exec` or `HeadlessOptions::netns`.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Every address given at creation (and by `Lab::attach`), in order.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.addrs.iter().map(|a| a.ip).collect()
    }

    pub fn interface_addrs(&self) -> &[InterfaceAddr] {
        &self.addrs
    }

    /// Its first IPv4 address.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.addrs.iter().find_map(|a| match a.ip {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
    }

    /// Its first IPv6 address.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.addrs.iter().find_map(|a| match a.ip {
            IpAddr::V6(ip) => Some(ip),
            IpAddr::V4(_) => None,
        })
    }

    /// Its first IPv4 address, else its first address; an error when it has none.
    pub fn ip(&self) -> Result<IpAddr, HarnessError> {
        self.ipv4()
            .map(IpAddr::V4)
            .or_else(|| self.addrs.first().map(|a| a.ip))
            .ok_or_else(|| HarnessError::InvalidInput {
                what: "lab host",
                value: self.name.clone(),
                why: "it has no address",
            })
    }

    /// `ip netns exec NS program`: add arguments and spawn it (ChildGuard::spawn or
    /// `Lab::spawn`). Whatever runs in the namespace is killed when the Lab drops.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns]).arg(program);
        command
    }

    /// Runs `ip -n NS ARGS...` (bounded) and returns its stdout.
    pub fn run_ip(&self, args: &[&str]) -> Result<String, HarnessError> {
        ip_in(&self.netns, args)
    }

    /// Runs `program ARGS...` in this namespace to its end (at most 10 s) and returns its
    /// stdout; an error quoting its stderr when it fails. For short tools (getent, nft, ip).
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, HarnessError> {
        let output = run_tool(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Adds a default route via `gateway` (its family picks the IPv4 or IPv6 table).
    pub fn add_default_route(&self, gateway: IpAddr) -> Result<(), HarnessError> {
        self.run_ip(&["route", "replace", "default", "via", &gateway.to_string()])
            .map(drop)
    }

    /// Runs `work` on a short-lived thread that has entered this namespace; sockets it makes
    /// stay in the namespace after the thread ends.
    pub fn enter<T: Send>(
        &self,
        work: impl FnOnce() -> std::io::Result<T> + Send,
    ) -> Result<T, HarnessError> {
        let path = Path::new(NETNS_RUN_DIR).join(&self.netns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<T, HarnessError> {
                    enter_netns(&path)?;
                    work().map_err(|e| HarnessError::io(format!("in namespace {}", self.netns), e))
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(HarnessError::io(
                        format!("in namespace {}", self.netns),
                        std::io::Error::other("the namespace thread panicked"),
                    ))
                })
        })
    }

    /// A UDP socket bound to `bind` inside this namespace (port 0: any free port).
    pub fn udp_socket(&self, bind: SocketAddr) -> Result<UdpSocket, HarnessError> {
        self.enter(move || UdpSocket::bind(bind))
            .map_err(|e| with_context(e, &format!("binding UDP {bind}")))
    }

    /// A TCP listener bound to `bind` inside this namespace.
    pub fn tcp_listener(&self, bind: SocketAddr) -> Result<TcpListener, HarnessError> {
        self.enter(move || TcpListener::bind(bind))
            .map_err(|e| with_context(e, &format!("binding TCP {bind}")))
    }

    /// Writes a sysctl of this namespace, e.g. `net/ipv4/ip_forward` (a path under
    /// /proc/sys/net, which shows the namespace of the thread that opens it).
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<(), HarnessError> {
        let path = Path::new("/proc/sys").join(key);
        self.enter(|| std::fs::write(&path, value))
            .map_err(|e| with_context(e, &format!("setting {key} = {value}")))
    }

    /// Reads a sysctl of this namespace (trimmed).
    pub fn sysctl(&self, key: &str) -> Result<String, HarnessError> {
        let path = Path::new("/proc/sys").join(key);
        self.enter(|| std::fs::read_to_string(&path))
            .map(|value| value.trim().to_owned())
            .map_err(|e| with_context(e, &format!("reading {key}")))
    }
}

/// A host that forwards between its segments (`Lab::router`, `Lab::nat_router`).
#[derive(Debug, Clone)]
pub struct Router {
    host: Host,
    lan_ip: IpAddr,
    wan_ip: IpAddr,
    wan_interface: String,
}

impl Router {
    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn netns(&self) -> &str {
        self.host.netns()
    }

    /// The address LAN hosts use as their gateway.
    pub fn lan_ip(&self) -> IpAddr {
        self.lan_ip
    }

    /// The public address the NAT maps LAN hosts to.
    pub fn wan_ip(&self) -> IpAddr {
        self.wan_ip
    }

    /// Sets the UDP conntrack timeouts in this router's namespace (they are per namespace):
    /// `unreplied` for flows seen one way only (`nf_conntrack_udp_timeout`), `replied` for
    /// flows with traffic both ways for over 2 s (`nf_conntrack_udp_timeout_stream`). Whole
    /// seconds, rounded up; an existing mapping picks up the new value at its next packet.
    pub fn set_udp_timeouts(
        &self,
        unreplied: Duration,
        replied: Duration,
    ) -> Result<(), HarnessError> {
        let seconds = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        self.host.set_sysctl(
            "net/netfilter/nf_conntrack_udp_timeout",
            &seconds(unreplied).to_string(),
        )?;
        self.host.set_sysctl(
            "net/netfilter/nf_conntrack_udp_timeout_stream",
            &seconds(replied).to_string(),
        )
    }

    /// Drops UDP forwarded towards `ip` (e.g. to force TURN over TCP).
    pub fn block_udp_to(&self, ip: IpAddr) -> Result<(), HarnessError> {
        let family = if ip.is_ipv4() { "ip" } else { "ip6" };
        let rule = format!("{family} daddr {ip} meta l4proto udp drop");
        nft_in(
            &self.host.netns,
            &["add", "rule", "inet", "lab", "forward", &rule],
        )
    }

    /// Drops TCP forwarded towards `ip` port `port` (e.g. to leave only TLS to TURN).
    pub fn block_tcp_to(&self, ip: IpAddr, port: u16) -> Result<(), HarnessError> {
        let family = if ip.is_ipv4() { "ip" } else { "ip6" };
        let rule = format!("{family} daddr {ip} tcp dport {port} drop");
        nft_in(
            &self.host.netns,
            &["add", "rule", "inet", "lab", "forward", &rule],
        )
    }

    pub fn wan_interface(&self) -> &str {
        &self.wan_interface
    }
}

/// A process the Lab started and owns (`Lab::spawn`); it dies with the Lab.
#[derive(Debug, Clone)]
pub struct LabProcess {
    pub name: String,
    pub pid: u32,
    /// Its stdout.log and stderr.log.
    pub log_dir: PathBuf,
}

/// A throw-away network. Dropping it removes everything it made (see the module docs).
pub struct Lab {
    id: String,
    dir: Option<tempfile::TempDir>,
    state: Mutex<LabState>,
}

#[derive(Default)]
struct LabState {
    /// In creation order.
    namespaces: Vec<String>,
    roles: HashSet<String>,
    next_bridge_port: u32,
    /// Interfaces per host namespace so far (names eth0, eth1, ...).
    interface_counts: HashMap<String, u32>,
    processes: Vec<ChildGuard>,
    /// Logs printed by `logs()`: (label, file).
    logs: Vec<(String, PathBuf)>,
}

impl Lab {
    /// An empty lab. Also removes namespaces and /etc/netns dirs left by lab runs whose test
    /// process is gone (a killed `cargo test`), once per process.
    pub fn new() -> Result<Lab, HarnessError> {
        STALE_SWEEP.call_once(remove_stale_labs);
        let id = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("sipterm-{id}-"))
            .tempdir()
            .map_err(|e| HarnessError::io("creating the lab dir", e))?;
        Ok(Lab {
            id,
            dir: Some(dir),
            state: Mutex::new(LabState::default()),
        })
    }

    /// Prefix of every namespace name in this lab (`stlab<PID>-<N>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where configs and logs of the lab's servers live (kept when a test panics).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("/tmp"), |d| d.path())
    }

    /// A new L2 segment.
    pub fn segment(&self, name: &str) -> Result<Segment, HarnessError> {
        let netns = self.add_namespace(name)?;
        ip_in(&netns, &["link", "add", "name", "br0", "type", "bridge"])?;
        ip_in(&netns, &["link", "set", "br0", "up"])?;
        Ok(Segment {
            name: name.to_owned(),
            netns,
        })
    }

    /// A host on `segment` with `addrs` (`"IP/PREFIX"`) on its `eth0` and a default route via
    /// each of `gateways` (an IPv4 and/or an IPv6 address; empty: no default route).
    pub fn host(
        &self,
        name: &str,
        segment: &Segment,
        addrs: &[&str],
        gateways: &[&str],
    ) -> Result<Host, HarnessError> {
        let mut host = self.bare_host(name)?;
        self.attach(&mut host, segment, addrs)?;
        for gateway in gateways {
            let gateway: IpAddr = gateway.parse().map_err(|_| HarnessError::InvalidInput {
                what: "gateway",
                value: (*gateway).to_owned(),
                why: "not an IP address",
            })?;
            host.add_default_route(gateway)?;
        }
        Ok(host)
    }

    /// Puts `host` on one more segment: a new `ethN` with `addrs`; returns the interface name.
    pub fn attach(
        &self,
        host: &mut Host,
        segment: &Segment,
        addrs: &[&str],
    ) -> Result<String, HarnessError> {
        let addrs = addrs
            .iter()
            .map(|a| a.parse::<InterfaceAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        let (interface, bridge_port) = {
            let mut state = self.lock();
            let port = format!("p{}", state.next_bridge_port);
            state.next_bridge_port += 1;
            let count = state
                .interface_counts
                .entry(host.netns.clone())
                .or_insert(0);
            let interface = format!("eth{count}");
            *count += 1;
            (interface, port)
        };
        // Made inside the host's namespace with the peer born in the segment's: no interface
        // ever exists in the root namespace.
        ip_in(
            &host.netns,
            &[
                "link",
                "add",
                "name",
                &interface,
                "type",
                "veth",
                "peer",
                "name",
                &bridge_port,
                "netns",
                &segment.netns,
            ],
        )?;
        ip_in(
            &segment.netns,
            &["link", "set", &bridge_port, "master", "br0"],
        )?;
        ip_in(&segment.netns, &["link", "set", &bridge_port, "up"])?;
        for addr in &addrs {
            let addr_text = addr.to_string();
            let mut args = vec!["addr", "add", &addr_text, "dev", &interface];
            if addr.ip.is_ipv6() {
                // Usable at once instead of "tentative" for a second (DAD).
                args.push("nodad");
            }
            ip_in(&host.netns, &args)?;
        }
        ip_in(&host.netns, &["link", "set", &interface, "up"])?;
        host.addrs.extend(addrs);
        Ok(interface)
    }

    /// A router with one interface per link (`(segment, addrs)`), forwarding IPv4 and IPv6.
    pub fn router(&self, name: &str, links: &[(&Segment, &[&str])]) -> Result<Host, HarnessError> {
        let mut host = self.bare_host(name)?;
        for (segment, addrs) in links {
            self.attach(&mut host, segment, addrs)?;
        }
        enable_forwarding(&host)?;
        Ok(host)
    }

    /// A home router: `lan_addr` on `lan` (its LAN hosts' gateway), `wan_addr` on `wan`, IPv4
    /// masquerade on the WAN side as `kind` says, and a stateful filter: from the WAN only
    /// replies to LAN-initiated flows pass. IPv6 is forwarded without NAT.
    pub fn nat_router(
        &self,
        name: &str,
        lan: &Segment,
        lan_addr: &str,
        wan: &Segment,
        wan_addr: &str,
        kind: NatKind,
    ) -> Result<Router, HarnessError> {
        let mut host = self.bare_host(name)?;
        self.attach(&mut host, lan, &[lan_addr])?;
        let wan_interface = self.attach(&mut host, wan, &[wan_addr])?;
        let (Some(lan_ip), Some(wan_ip)) = (host.addrs.first(), host.addrs.get(1)) else {
            return Err(HarnessError::InvalidInput {
                what: "NAT router",
                value: name.to_owned(),
                why: "needs a LAN and a WAN address",
            });
        };
        let (lan_ip, wan_ip) = (lan_ip.ip, wan_ip.ip);
        enable_forwarding(&host)?;
        let ruleset = nat_ruleset(&wan_interface, kind);
        let path = self.dir().join(format!("{name}.nft"));
        std::fs::write(&path, ruleset)
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
        let path_text = path.display().to_string();
        nft_in(&host.netns, &["-f", &path_text])?;
        Ok(Router {
            host,
            lan_ip,
            wan_ip,
            wan_interface,
        })
    }

    /// Starts `command` (usually `host.command(...)`), owned by the Lab: killed when it drops.
    /// stdout and stderr go to `<lab dir>/<name>/`; `logs()` shows their tails.
    pub fn spawn(&self, name: &str, command: Command) -> Result<LabProcess, HarnessError> {
        let log_dir = self.dir().join(name);
        let guard = ChildGuard::spawn(name, command, Stdout::File, Some(&log_dir))?;
        let process = LabProcess {
            name: name.to_owned(),
            pid: guard.pid(),
            log_dir: log_dir.clone(),
        };
        let mut state = self.lock();
        state
            .logs
            .push((format!("{name} stderr"), log_dir.join("stderr.log")));
        state
            .logs
            .push((format!("{name} stdout"), log_dir.join("stdout.log")));
        state.processes.push(guard);
        Ok(process)
    }

    /// The tails of every server log in the lab (dnsmasq, Kamailio, `spawn`ed processes).
    pub fn logs(&self) -> String {
        let state = self.lock();
        let mut out = String::new();
        for (label, path) in &state.logs {
            out.push_str(&format!("--- {label} ({}) ---\n", path.display()));
            out.push_str(&tail_of_file(path, 6144));
            out.push('\n');
        }
        out
    }

    /// Registers a log file for `logs()` and the panic report.
    fn add_log(&self, label: String, path: PathBuf) {
        self.lock().logs.push((label, path));
    }

    /// Adds a server's guard to the processes killed on Drop.
    fn own(&self, guard: ChildGuard) {
        self.lock().processes.push(guard);
    }

    fn lock(&self) -> MutexGuard<'_, LabState> {
        // A panic while holding the lock leaves the state consistent enough to clean up.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A namespace with lo up and nothing else.
    fn bare_host(&self, name: &str) -> Result<Host, HarnessError> {
        let netns = self.add_namespace(name)?;
        // Programs run in the namespace must not reach for the machine's own DNS servers: until
        // `use_dns`, the resolver asks 127.0.0.1 inside the namespace, where nothing listens.
        write_resolv_conf(
            &netns,
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )?;
        Ok(Host {
            name: name.to_owned(),
            netns,
            addrs: Vec::new(),
        })
    }

    /// `ip netns add <id>-<role>` with lo up and IPv6 DAD off (so addresses given later are
    /// usable at once); recorded before anything can fail so Drop removes it.
    fn add_namespace(&self, role: &str) -> Result<String, HarnessError> {
        check_role(role)?;
        let netns = format!("{}-{role}", self.id);
        {
            let mut state = self.lock();
            if !state.roles.insert(role.to_owned()) {
                return Err(HarnessError::InvalidInput {
                    what: "lab role name",
                    value: role.to_owned(),
                    why: "already used in this lab (hosts, routers and segments share names)",
                });
            }
        }
        {
            let _serial = NETNS_ADD.lock().unwrap_or_else(|p| p.into_inner());
            run_tool(Command::new("ip").args(["netns", "add", &netns]))?;
        }
        self.lock().namespaces.push(netns.clone());
        ip_in(&netns, &["link", "set", "lo", "up"])?;
        let host = Host {
            name: role.to_owned(),
            netns: netns.clone(),
            addrs: Vec::new(),
        };
        for conf in ["all", "default"] {
            host.set_sysctl(&format!("net/ipv6/conf/{conf}/accept_dad"), "0")?;
        }
        Ok(netns)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("=== network lab {} logs ===\n{}", self.id, self.logs());
        }
        let state = std::mem::take(&mut *self.lock());
        // Servers first, each through its guard (process group killed, leader reaped).
        drop(state.processes);
        for netns in state.namespaces.iter().rev() {
            if let Err(error) = remove_namespace(netns) {
                eprintln!("network lab cleanup: {error}");
            }
        }
        if panicking && let Some(dir) = self.dir.take() {
            eprintln!(
                "network lab {}: files kept in {}",
                self.id,
                dir.keep().display()
            );
        }
    }
}

// ------------------------------------------------------------ helpers ----

fn check_role(role: &str) -> Result<(), HarnessError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if role.is_empty() || role.len() > MAX_ROLE_LEN || !role.chars().all(allowed) {
        return Err(HarnessError::InvalidInput {
            what: "lab role name",
            value: role.to_owned(),
            why: "use 1-20 characters from a-z 0-9 -",
        });
    }
    Ok(())
}

fn enable_forwarding(host: &Host) -> Result<(), HarnessError> {
    host.set_sysctl("net/ipv4/ip_forward", "1")?;
    host.set_sysctl("net/ipv6/conf/all/forwarding", "1")
}

/// The router's nftables ruleset: masquerade out of the WAN interface, and from the WAN only
/// replies to flows the LAN started (like any home router). Rules added later
/// (`block_udp_to`) go into `inet lab forward`.
/// The home router's rules. Unsolicited UDP to the router itself is dropped, as home routers
/// do; that also keeps conntrack from remembering it: a remembered inbound flow
/// (peer:p -> wan:q) takes the port that the LAN host's own outgoing flow to the same peer
/// needs, so a hole punched at the same moment from both sides (ICE checks between two cone
/// NATs) would be remapped to another port and never meet.
fn nat_ruleset(wan_interface: &str, kind: NatKind) -> String {
    let masquerade = match kind {
        NatKind::Cone => "masquerade",
        NatKind::Symmetric => "masquerade random",
    };
    format!(
        "table ip lab_nat {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"{wan_interface}\" {masquerade}\n\
         \t}}\n\
         }}\n\
         table inet lab {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname \"{wan_interface}\" ct state != {{ established, related }} drop\n\
         \t}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname \"{wan_interface}\" meta l4proto udp ct state new drop\n\
         \t}}\n\
         }}\n"
    )
}

fn write_resolv_conf(netns: &str, text: &str) -> Result<(), HarnessError> {
    let dir = Path::new(NETNS_ETC_DIR).join(netns);
    std::fs::create_dir_all(&dir)
        .map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join("resolv.conf");
    std::fs::write(&path, text)
        .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))
}

/// Moves the calling thread into the namespace mounted at `path`.
fn enter_netns(path: &Path) -> Result<(), HarnessError> {
    let file =
        File::open(path).map_err(|e| HarnessError::io(format!("opening {}", path.display()), e))?;
    // SAFETY: setns on a valid, open namespace fd only changes this thread's network namespace;
    // the thread is ours and ends after the caller's work.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(HarnessError::io(
            format!("entering {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn with_context(error: HarnessError, context: &str) -> HarnessError {
    match error {
        HarnessError::Io { action, source } => HarnessError::Io {
            action: format!("{context} ({action})"),
            source,
        },
        other => other,
    }
}

/// `ip -n NETNS ARGS...`; its stdout.
fn ip_in(netns: &str, args: &[&str]) -> Result<String, HarnessError> {
    let output = run_tool(Command::new("ip").args(["-n", netns]).args(args))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `nft ARGS...` inside NETNS.
fn nft_in(netns: &str, args: &[&str]) -> Result<(), HarnessError> {
    run_tool(
        Command::new("ip")
            .args(["netns", "exec", netns, "nft"])
            .args(args),
    )
    .map(drop)
}

/// Runs a short tool (ip, nft) to its end, at most TOOL_TIMEOUT; an error quoting its stderr
/// when it fails.
fn run_tool(command: &mut Command) -> Result<Output, HarnessError> {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError::io(format!("starting {what}"), e))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < TOOL_TIMEOUT => {
                // These tools finish in milliseconds; the poll only bounds a stuck one.
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Timeout {
                    what,
                    waited: started.elapsed(),
                    recent: String::new(),
                });
            }
            Err(e) => return Err(HarnessError::io(format!("waiting for {what}"), e)),
        }
    };
    // The tools print little; the pipes held it all while they ran.
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_end(&mut stdout);
    }
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_end(&mut stderr);
    }
    if !status.success() {
        return Err(HarnessError::PeerFailed {
            name: what,
            status: status.to_string(),
            log: String::from_utf8_lossy(&stderr).into_owned(),
        });
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Kills every process inside `netns` (all were started by this lab: nothing else enters its
/// namespaces), waits for them to go, then deletes the namespace and its /etc/netns dir.
fn remove_namespace(netns: &str) -> Result<(), HarnessError> {
    kill_namespace_processes(netns)?;
    let deleted = run_tool(Command::new("ip").args(["netns", "delete", netns])).map(drop);
    let etc = Path::new(NETNS_ETC_DIR).join(netns);
    if etc.exists() {
        std::fs::remove_dir_all(&etc)
            .map_err(|e| HarnessError::io(format!("removing {}", etc.display()), e))?;
    }
    deleted
}

fn kill_namespace_processes(netns: &str) -> Result<(), HarnessError> {
    let started = Instant::now();
    loop {
        let output = run_tool(Command::new("ip").args(["netns", "pids", netns]))?;
        let pids: Vec<libc::pid_t> = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .filter(|&pid| pid > 1)
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        if started.elapsed() > KILL_TIMEOUT {
            return Err(HarnessError::Timeout {
                what: format!("processes {pids:?} in {netns} to die"),
                waited: started.elapsed(),
                recent: String::new(),
            });
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions; the pid was listed as living in
            // a namespace this lab (or a dead run of it) made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The PID in a lab namespace name (`stlab<PID>-...`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Removes namespaces (killing what runs in them) and /etc/netns dirs of lab runs whose test
/// process no longer exists. `Lab::new` calls it once per process.
/// A PID that was reused by another process hides its leftovers until that process ends: the
/// safe direction.
pub fn remove_stale_labs() {
    let is_stale = |name: &str| {
        owner_pid(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    for dir in [NETNS_RUN_DIR, NETNS_ETC_DIR] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_stale(&name) {
                continue;
            }
            let removed = if dir == NETNS_RUN_DIR {
                remove_namespace(&name)
            } else {
                std::fs::remove_dir_all(entry.path()).map_err(|e| {
                    HarnessError::io(format!("removing {}", entry.path().display()), e)
                })
            };
            // Straight to stderr (not captured by libtest): a leak should be seen.
            let _ = match removed {
                Ok(()) => writeln!(
                    std::io::stderr(),
                    "network lab: removed {name}, left by an earlier run"
                ),
                Err(error) => writeln!(
                    std::io::stderr(),
                    "network lab: could not remove stale {name}: {error}"
                ),
            };
        }
    }
}
