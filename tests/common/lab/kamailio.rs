//! Kamailio 5.6 in a lab host's namespace: registrar for one domain, proxy for every other
//! (tests/data/kamailio/lab-proxy.cfg says what it does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::super::peers::render_kamailio_config;
use super::super::ports::wait_udp_answer_on;
use super::super::process::{ChildGuard, Stdout, tail_of_file};
use super::super::{HarnessError, test_data};
use super::{Host, Lab};

/// How long Kamailio may take to answer its first OPTIONS.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What `Lab::kamailio` starts.
#[derive(Debug, Clone, Default)]
pub struct KamailioLab<'a> {
    /// The domain it is registrar for (`atlanta.test`); also an alias, so `sip:atlanta.test`
    /// names it.
    pub domain: &'a str,
    /// Addresses it listens on, UDP and TCP each (addresses of its host).
    pub listen: &'a [SocketAddr],
    /// Record-Route dialog-creating requests. Off: the RFC 3261 §4 trapezoid, where ACK and BYE
    /// go end to end.
    pub record_route: bool,
    /// Digest users for REGISTER (realm = `domain`); empty: REGISTER without authentication.
    pub users: &'a [(&'a str, &'a str)],
    /// nathelper: registrations and Contacts from behind a NAT are reached at their source
    /// address.
    pub nat_helper: bool,
    /// The longest registration it grants (and the shortest it accepts goes down to 1 s);
    /// None: 10..=3600 s. Short ones make refreshes come quickly (NAT mapping tests).
    pub max_expires: Option<u32>,
}

/// A Kamailio the Lab owns (it dies with the Lab).
#[derive(Debug, Clone)]
pub struct LabKamailio {
    domain: String,
    addr: SocketAddr,
    addrs: Vec<SocketAddr>,
    log: PathBuf,
}

impl LabKamailio {
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Its first listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Its log: every request and reply it saw, config errors.
    pub fn log(&self) -> String {
        tail_of_file(&self.log, 32768)
    }
}

impl Lab {
    /// Starts Kamailio inside `host`'s namespace with `config`; returns once it answers an
    /// OPTIONS sent from inside that namespace. Foreign domains are resolved through the host's
    /// resolv.conf: call `use_dns` for it first.
    pub fn kamailio(
        &self,
        host: &Host,
        config: &KamailioLab<'_>,
    ) -> Result<LabKamailio, HarnessError> {
        let first = *config.listen.first().ok_or(HarnessError::InvalidInput {
            what: "Kamailio listen addresses",
            value: String::new(),
            why: "give at least one",
        })?;
        let dir = self.dir().join(format!("kamailio-{}", host.name()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        let config_path = dir.join("kamailio.cfg");
        std::fs::write(&config_path, render_config(config)?)
            .map_err(|e| HarnessError::io(format!("writing {}", config_path.display()), e))?;

        let mut command = host.command("kamailio");
        command
            .arg("-f")
            .arg(&config_path)
            // -DD: foreground (its children stay in our process group); -E: log to stderr;
            // -Y/-P/-w: runtime files in the lab dir instead of /run/kamailio.
            .args(["-DD", "-E", "-n", "1", "-m", "64", "-M", "8"])
            .arg("-Y")
            .arg(&dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-w")
            .arg(&dir);
        for define in defines(config) {
            command.args(["-A", define]);
        }
        let mut guard = ChildGuard::spawn("kamailio", command, Stdout::File, Some(&dir))?;
        let log = dir.join("stderr.log");
        self.add_log(
            format!("kamailio {} on {}", config.domain, host.name()),
            log.clone(),
        );
        let kamailio = LabKamailio {
            domain: config.domain.to_owned(),
            addr: first,
            addrs: config.listen.to_vec(),
            log,
        };
        let answered = host
            .udp_socket(SocketAddr::new(first.ip(), 0))
            .and_then(|probe| wait_udp_answer_on(&probe, first, STARTUP_TIMEOUT));
        if let Err(error) = answered {
            return Err(match guard.try_exit_status() {
                Some(status) => HarnessError::PeerFailed {
                    name: "kamailio".to_owned(),
                    status: status.to_string(),
                    log: kamailio.log(),
                },
                None => HarnessError::PeerHung {
                    name: "kamailio".to_owned(),
                    waited: STARTUP_TIMEOUT,
                    log: format!("{error}\n{}", kamailio.log()),
                },
            });
        }
        self.own(guard);
        Ok(kamailio)
    }
}

/// The template with the listen lines, domain and passwords filled in.
fn render_config(config: &KamailioLab<'_>) -> Result<String, HarnessError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    if !config.domain.ends_with(".test") || !config.domain.chars().all(allowed) {
        return Err(HarnessError::InvalidInput {
            what: "Kamailio domain",
            value: config.domain.to_owned(),
            why: "lab domains end in .test and use A-Z a-z 0-9 . -",
        });
    }
    let template_path = test_data("kamailio/lab-proxy.cfg");
    let template = std::fs::read_to_string(&template_path)
        .map_err(|e| HarnessError::io(format!("reading {}", template_path.display()), e))?;
    let listen: String = config
        .listen
        .iter()
        .map(|addr| format!("listen=udp:{addr}\nlisten=tcp:{addr}\n"))
        .collect();
    // The port placeholder of the shared renderer is unused here.
    let text = render_kamailio_config(&template, config.users, 0)?;
    let (min_expires, max_expires) = match config.max_expires {
        Some(max) => (1, max),
        None => (10, 3600),
    };
    Ok(text
        .replace("@LISTEN@", listen.trim_end())
        .replace("@DOMAIN@", config.domain)
        .replace("@MIN_EXPIRES@", &min_expires.to_string())
        .replace("@MAX_EXPIRES@", &max_expires.to_string()))
}

fn defines(config: &KamailioLab<'_>) -> Vec<&'static str> {
    let mut defines = Vec::new();
    if !config.users.is_empty() {
        defines.push("WITH_AUTH");
    }
    if config.record_route {
        defines.push("WITH_RR");
    }
    if config.nat_helper {
        defines.push("WITH_NAT");
    }
    if config.listen.iter().any(SocketAddr::is_ipv6) {
        defines.push("WITH_IPV6");
    }
    defines
}
