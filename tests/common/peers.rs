//! The real SIP peers installed on the machine: sipp (sip-tester 3.6),
//! Kamailio 5.6 and baresip 1.0. Everything binds and talks to 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::ports::{free_port_pair, udp_port_bound, wait_udp_answer};
use super::process::{ChildGuard, Stdout, tail_of_file};
use super::{HarnessError, test_data};

const LOOPBACK: &str = "127.0.0.1";
/// sipp ends by itself after this, whatever the scenario waits for.
const SIPP_GLOBAL_TIMEOUT: &str = "30s";
/// How long a peer may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- sipp ----

/// One sipp process running one scenario (by default once: `-m 1`).
pub struct Sipp {
    guard: ChildGuard,
    // Holds errors.log / messages.log; removed with the Sipp (errors quote them).
    _dir: tempfile::TempDir,
    /// The SIP port sipp listens on (UDP, 127.0.0.1).
    pub port: u16,
    /// sipp's media (RTP) port, echoed with -rtp_echo; PORT+2 is taken too.
    pub media_port: u16,
}

impl Sipp {
    /// `tests/data/sipp/<name>`.
    pub fn scenario(name: &str) -> PathBuf {
        test_data("sipp").join(name)
    }

    /// Starts a UAS scenario listening on 127.0.0.1:`port` and returns once
    /// its socket is bound. `extra_args` go last, so they can override
    /// the defaults (e.g. `["-m", "2"]`).
    pub fn uas(scenario: &Path, port: u16, extra_args: &[&str]) -> Result<Sipp, HarnessError> {
        let sipp = Self::spawn("sipp-uas", scenario, port, None, extra_args, true)?;
        sipp.wait_bound()
    }

    /// Like `uas`, without `-rtp_echo`: the scenario's own audio (`play_pcap_audio`) is the
    /// only RTP sipp sends, not interleaved with an echo of the caller's.
    pub fn uas_without_echo(
        scenario: &Path,
        port: u16,
        extra_args: &[&str],
    ) -> Result<Sipp, HarnessError> {
        let sipp = Self::spawn("sipp-uas", scenario, port, None, extra_args, false)?;
        sipp.wait_bound()
    }

    /// Starts a UAC scenario from 127.0.0.1:`port` towards `remote`.
    pub fn uac(
        scenario: &Path,
        port: u16,
        remote: SocketAddr,
        extra_args: &[&str],
    ) -> Result<Sipp, HarnessError> {
        Self::spawn("sipp-uac", scenario, port, Some(remote), extra_args, true)
    }

    fn spawn(
        name: &str,
        scenario: &Path,
        port: u16,
        remote: Option<SocketAddr>,
        extra_args: &[&str],
        echo: bool,
    ) -> Result<Sipp, HarnessError> {
        let (media_port, _) = free_port_pair()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("sipterm-{name}-"))
            .tempdir()
            .map_err(|e| HarnessError::io("creating the sipp log dir", e))?;
        let log_dir = dir.path().to_path_buf();
        let mut command = Command::new("sipp");
        command
            .current_dir(&log_dir)
            .arg("-sf")
            .arg(scenario)
            .args(["-i", LOOPBACK, "-p", &port.to_string()])
            // Without -mi the SDP names the host's primary address.
            .args(["-mi", LOOPBACK, "-mp", &media_port.to_string()])
            .args(echo.then_some("-rtp_echo"))
            .args(["-m", "1", "-nostdin"])
            .args(["-timeout", SIPP_GLOBAL_TIMEOUT, "-timeout_error"])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(log_dir.join("errors.log"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(log_dir.join("messages.log"))
            .args(extra_args);
        if let Some(remote) = remote {
            command.arg(remote.to_string());
        }
        let guard = ChildGuard::spawn(name, command, Stdout::File, Some(&log_dir))?;
        Ok(Sipp {
            guard,
            _dir: dir,
            port,
            media_port,
        })
    }

    fn wait_bound(mut self) -> Result<Sipp, HarnessError> {
        let started = std::time::Instant::now();
        while !udp_port_bound(self.port) {
            if let Some(status) = self.guard.try_exit_status() {
                return Err(HarnessError::PeerFailed {
                    name: self.guard.name().to_owned(),
                    status: status.to_string(),
                    log: self.log(),
                });
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                return Err(HarnessError::PeerHung {
                    name: self.guard.name().to_owned(),
                    waited: started.elapsed(),
                    log: self.log(),
                });
            }
            // Readiness poll of the socket table, not a fixed delay.
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(self)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Waits for sipp to end. Ok when it exits 0 (every call succeeded);
    /// otherwise the error carries its error log and message trace.
    pub fn wait_success(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        match self.guard.wait_timeout(timeout) {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(HarnessError::PeerFailed {
                name: self.guard.name().to_owned(),
                status: status.to_string(),
                log: self.log(),
            }),
            None => {
                let log = self.log();
                self.guard.kill();
                Err(HarnessError::PeerHung {
                    name: self.guard.name().to_owned(),
                    waited: timeout,
                    log,
                })
            }
        }
    }

    /// sipp's error log, stderr and the tail of its message trace.
    pub fn log(&self) -> String {
        let dir = self.guard.log_dir();
        format!(
            "log dir: {}\n--- errors.log ---\n{}\n--- stderr ---\n{}\n--- messages.log (tail) ---\n{}",
            dir.display(),
            tail_of_file(&dir.join("errors.log"), 4096),
            tail_of_file(&dir.join("stderr.log"), 2048),
            tail_of_file(&dir.join("messages.log"), 6144),
        )
    }

    /// Every SIP message sipp sent or received so far (its -trace_msg file).
    pub fn messages(&self) -> String {
        tail_of_file(&self.guard.log_dir().join("messages.log"), 1 << 20)
    }

    pub fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }
}

// ------------------------------------------------------------ Kamailio ----

/// Options for `Kamailio::start_with`.
#[derive(Debug, Clone, Copy)]
pub struct KamailioOptions {
    /// Challenge INVITEs from outside a dialog with 407 (default: true).
    pub invite_auth: bool,
    /// Digest challenges name SHA-256 (RFC 8760) instead of MD5.
    pub sha256: bool,
    /// Presence server too (PUBLISH, SUBSCRIBE presence / dialog / message-summary), its
    /// state in db_text tables under the instance's directory.
    pub presence: bool,
}

impl Default for KamailioOptions {
    fn default() -> Self {
        KamailioOptions {
            invite_auth: true,
            sha256: false,
            presence: false,
        }
    }
}

/// The TLS side of `Kamailio::start_tls`: port and PEM files.
#[derive(Debug, Clone)]
pub struct KamailioTls {
    pub port: u16,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A Kamailio registrar + proxy on udp and tcp 127.0.0.1:`port`, users and
/// passwords from the start call, bindings in memory.
/// Realm: the To domain for REGISTER, the From domain for INVITE.
pub struct Kamailio {
    guard: ChildGuard,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// Starts it with INVITE authentication on; returns once it answers OPTIONS.
    pub fn start(users: &[(&str, &str)], port: u16) -> Result<Kamailio, HarnessError> {
        Self::start_with(users, port, KamailioOptions::default())
    }

    pub fn start_with(
        users: &[(&str, &str)],
        port: u16,
        options: KamailioOptions,
    ) -> Result<Kamailio, HarnessError> {
        Self::start_inner(users, port, options, None)
    }

    /// Kamailio with these digest users on a free UDP port and a TLS listener on another free
    /// port, serving the test certificate (tests/common/certs.rs). Returns the UDP and TLS ports.
    pub fn start_with_test_tls(
        users: &[(&str, &str)],
        certs: &super::certs::Certs,
    ) -> Result<(Kamailio, u16, u16), HarnessError> {
        let port = super::ports::free_udp_port()?;
        let tls_port = loop {
            let p = super::ports::free_udp_port()?;
            if p != port {
                break p;
            }
        };
        let tls = KamailioTls {
            port: tls_port,
            cert: certs.cert_pem.clone(),
            key: certs.key_pem.clone(),
        };
        Ok((Kamailio::start_tls(users, port, &tls)?, port, tls_port))
    }

    /// Like `start`, plus a TLS listener on tls:127.0.0.1:`tls.port` presenting `tls.cert` /
    /// `tls.key` (tests/data/kamailio/tls.cfg; needs kamailio-tls-modules).
    pub fn start_tls(
        users: &[(&str, &str)],
        port: u16,
        tls: &KamailioTls,
    ) -> Result<Kamailio, HarnessError> {
        Self::start_inner(users, port, KamailioOptions::default(), Some(tls))
    }

    fn start_inner(
        users: &[(&str, &str)],
        port: u16,
        options: KamailioOptions,
        tls: Option<&KamailioTls>,
    ) -> Result<Kamailio, HarnessError> {
        let template_path = test_data("kamailio/registrar.cfg");
        let template = std::fs::read_to_string(&template_path)
            .map_err(|e| HarnessError::io(format!("reading {}", template_path.display()), e))?;
        let mut config = render_kamailio_config(&template, users, port)?;
        let dir = tempfile::Builder::new()
            .prefix("sipterm-kamailio-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating the kamailio dir", e))?;
        if let Some(tls) = tls {
            let tls_template_path = test_data("kamailio/tls.cfg");
            let tls_template = std::fs::read_to_string(&tls_template_path).map_err(|e| {
                HarnessError::io(format!("reading {}", tls_template_path.display()), e)
            })?;
            let tls_cfg = dir.path().join("tls.cfg");
            let tls_text = tls_template
                .replace("@CERT@", &tls.cert.display().to_string())
                .replace("@KEY@", &tls.key.display().to_string());
            std::fs::write(&tls_cfg, tls_text)
                .map_err(|e| HarnessError::io(format!("writing {}", tls_cfg.display()), e))?;
            config = config
                .replace("@TLS_PORT@", &tls.port.to_string())
                .replace("@TLS_CFG@", &tls_cfg.display().to_string());
        }
        if options.presence {
            // The presence modules' db_text tables (schema and versions from Debian's
            // kamailio package), empty, in a directory of this instance.
            let db = dir.path().join("db");
            std::fs::create_dir_all(&db)
                .map_err(|e| HarnessError::io("creating the db_text dir", e))?;
            let schemas = Path::new("/usr/share/kamailio/dbtext/kamailio");
            for table in [
                "version",
                "presentity",
                "active_watchers",
                "watchers",
                "xcap",
            ] {
                std::fs::copy(schemas.join(table), db.join(table)).map_err(|e| {
                    HarnessError::io(format!("copying the db_text table {table}"), e)
                })?;
            }
            config = config.replace("@DBDIR@", &db.display().to_string());
        }
        let config_path = dir.path().join("kamailio.cfg");
        std::fs::write(&config_path, config)
            .map_err(|e| HarnessError::io(format!("writing {}", config_path.display()), e))?;
        let mut command = Command::new("kamailio");
        command
            .arg("-f")
            .arg(&config_path)
            // -DD: stay in the foreground (children are forked into our group);
            // -E: log to stderr; -Y: runtime dir (default /run/kamailio needs root).
            .args(["-DD", "-E", "-n", "1", "-m", "64", "-M", "8"])
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-w")
            .arg(dir.path());
        if options.invite_auth {
            command.args(["-A", "WITH_INVITE_AUTH"]);
        }
        if tls.is_some() {
            command.args(["-A", "WITH_TLS"]);
        }
        if options.sha256 {
            command.args(["-A", "WITH_SHA256"]);
        }
        if options.presence {
            command.args(["-A", "WITH_PRESENCE"]);
        }
        let guard = ChildGuard::spawn("kamailio", command, Stdout::File, Some(dir.path()))?;
        let mut kamailio = Kamailio {
            guard,
            port,
            _dir: dir,
        };
        kamailio.wait_ready()?;
        Ok(kamailio)
    }

    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        match wait_udp_answer(self.addr(), STARTUP_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(error) => match self.guard.try_exit_status() {
                Some(status) => Err(HarnessError::PeerFailed {
                    name: "kamailio".to_owned(),
                    status: status.to_string(),
                    log: self.log(),
                }),
                None => Err(error),
            },
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kamailio's stderr log (config errors, "bad credentials" notices).
    pub fn log(&self) -> String {
        tail_of_file(&self.guard.log_dir().join("stderr.log"), 8192)
    }

    pub fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }
}

/// Fills the template's @PORT@ and @PASSWORDS@. User names and passwords are
/// restricted to characters that need no quoting in Kamailio's config.
pub fn render_kamailio_config(
    template: &str,
    users: &[(&str, &str)],
    port: u16,
) -> Result<String, HarnessError> {
    let mut passwords = String::new();
    for (user, password) in users {
        check_config_token("user name", user)?;
        check_config_token("password", password)?;
        passwords.push_str(&format!(
            "\tif ($au == \"{user}\") {{ $var(password) = \"{password}\"; }}\n"
        ));
    }
    Ok(template
        .replace("@PORT@", &port.to_string())
        .replace("@PASSWORDS@", passwords.trim_end()))
}

fn check_config_token(what: &'static str, value: &str) -> Result<(), HarnessError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-+!*~".contains(c);
    if value.is_empty() || value.len() > 64 || !value.chars().all(allowed) {
        return Err(HarnessError::InvalidInput {
            what,
            value: value.to_owned(),
            why: "use 1-64 characters from A-Z a-z 0-9 . _ - + ! * ~",
        });
    }
    Ok(())
}

// ------------------------------------------------------------- baresip ----

/// Where baresip registers, if anywhere.
#[derive(Debug, Clone)]
pub struct BaresipRegistration {
    pub registrar: SocketAddr,
    pub user: String,
    pub password: String,
}

/// A baresip configuration (see `Baresip::start_with`).
#[derive(Debug, Clone)]
pub struct BaresipConfig {
    pub sip_port: u16,
    /// The user part of its own address (sip:USER@127.0.0.1:PORT).
    pub user: String,
    /// WAV sent as the microphone: mono S16LE at the codec's rate (8000 Hz
    /// for PCMU/PCMA; aufile refuses other rates). None: ALSA's null device.
    pub audio_in: Option<PathBuf>,
    /// Answer incoming calls at once.
    pub auto_answer: bool,
    /// Codec modules to load, in baresip's preference order.
    pub codecs: Vec<&'static str>,
    pub registration: Option<BaresipRegistration>,
    /// Account `mediaenc` (e.g. `srtp-mand`); loads the srtp module. None: plain RTP.
    pub mediaenc: Option<&'static str>,
}

/// A running baresip, driven through its stdin (menu module commands:
/// `/dial sip:...`, `/accept`, `/hangup`, `/quit`).
/// Received audio is written by the sndfile module to
/// `<dir>/dump-<time>-dec.wav` (sent audio: `-enc.wav`); audio is played to
/// ALSA's null device.
pub struct Baresip {
    guard: ChildGuard,
    pub sip_port: u16,
    dir: PathBuf,
}

pub const BARESIP_MODULE_PATH: &str = "/usr/lib/baresip/modules";

impl Baresip {
    /// Local account `sip:baresip@127.0.0.1:PORT`, no registration, PCMU/PCMA.
    /// `audio_out_dir`: where the received/sent WAV dumps go (None: `dir`).
    pub fn start(
        dir: &Path,
        sip_port: u16,
        audio_in_wav: Option<&Path>,
        audio_out_dir: Option<&Path>,
        auto_answer: bool,
    ) -> Result<Baresip, HarnessError> {
        let config = BaresipConfig {
            sip_port,
            user: "baresip".to_owned(),
            audio_in: audio_in_wav.map(Path::to_path_buf),
            auto_answer,
            codecs: vec!["g711"],
            registration: None,
            mediaenc: None,
        };
        Self::start_with(dir, audio_out_dir, &config)
    }

    pub fn start_with(
        dir: &Path,
        audio_out_dir: Option<&Path>,
        config: &BaresipConfig,
    ) -> Result<Baresip, HarnessError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        let dump_dir = audio_out_dir.unwrap_or(dir);
        let config_text = render_baresip_config(config, dump_dir);
        let accounts_text = render_baresip_account(config)?;
        write_file(&dir.join("config"), &config_text)?;
        write_file(&dir.join("accounts"), &accounts_text)?;
        write_file(&dir.join("contacts"), "")?;

        let mut command = Command::new("baresip");
        command.arg("-f").arg(dir).current_dir(dir);
        let guard = ChildGuard::spawn("baresip", command, Stdout::File, Some(dir))?;
        let mut baresip = Baresip {
            guard,
            sip_port: config.sip_port,
            dir: dir.to_path_buf(),
        };
        if let Err(error) = wait_udp_answer(baresip.addr(), STARTUP_TIMEOUT) {
            return Err(match baresip.guard.try_exit_status() {
                Some(status) => HarnessError::PeerFailed {
                    name: "baresip".to_owned(),
                    status: status.to_string(),
                    log: baresip.log(),
                },
                None => error,
            });
        }
        Ok(baresip)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip_port))
    }

    /// Sends one console command, e.g. `/dial sip:bob@127.0.0.1:5062`.
    pub fn command(&mut self, line: &str) -> Result<(), HarnessError> {
        self.guard.send_line(line)
    }

    pub fn dial(&mut self, uri: &str) -> Result<(), HarnessError> {
        self.command(&format!("/dial {uri}"))
    }

    pub fn accept(&mut self) -> Result<(), HarnessError> {
        self.command("/accept")
    }

    pub fn hangup(&mut self) -> Result<(), HarnessError> {
        self.command("/hangup")
    }

    /// Asks baresip to quit and waits up to `timeout` for it; kills it otherwise.
    pub fn quit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = self.command("/quit");
        match self.guard.wait_timeout(timeout) {
            Some(status) => Some(status),
            None => self.guard.terminate(Duration::from_secs(1)),
        }
    }

    /// Waits until baresip's console output contains `needle` (e.g.
    /// "Call established", "terminated", "Incoming call").
    pub fn wait_output(&mut self, needle: &str, timeout: Duration) -> Result<(), HarnessError> {
        let started = std::time::Instant::now();
        let stdout = self.dir.join("stdout.log");
        loop {
            if tail_of_file(&stdout, 1 << 20).contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.guard.try_exit_status() {
                return Err(HarnessError::Exited {
                    name: "baresip".to_owned(),
                    status: status.to_string(),
                    what: format!("output {needle:?}"),
                    recent: self.log(),
                });
            }
            if started.elapsed() > timeout {
                return Err(HarnessError::Timeout {
                    what: format!("baresip output {needle:?}"),
                    waited: started.elapsed(),
                    recent: self.log(),
                });
            }
            // Polls a file baresip appends to; bounded by `timeout`.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The WAV files of decoded (received) audio written so far.
    pub fn received_audio_files(&self, audio_out_dir: Option<&Path>) -> Vec<PathBuf> {
        let dir = audio_out_dir.unwrap_or(&self.dir);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("dump-") && name.ends_with("-dec.wav"))
            })
            .collect();
        files.sort();
        files
    }

    /// baresip's console output (stdout) and stderr, tails.
    pub fn log(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            tail_of_file(&self.dir.join("stdout.log"), 6144),
            tail_of_file(&self.dir.join("stderr.log"), 2048)
        )
    }

    pub fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text)
        .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))
}

/// The baresip `config` file.
pub fn render_baresip_config(config: &BaresipConfig, dump_dir: &Path) -> String {
    let source = match &config.audio_in {
        Some(wav) => format!("aufile,{}", wav.display()),
        // No file: ALSA's null device gives silence.
        None => "alsa,null".to_owned(),
    };
    let mut text = format!(
        "# Written by tests/common/peers.rs for one test run.\n\
         poll_method\t\tepoll\n\
         sip_listen\t\t{LOOPBACK}:{port}\n\
         net_interface\t\t{LOOPBACK}\n\
         call_local_timeout\t120\n\
         call_max_calls\t\t4\n\
         audio_player\t\talsa,null\n\
         audio_source\t\t{source}\n\
         audio_alert\t\talsa,null\n\
         rtp_stats\t\tyes\n\
         module_path\t\t{BARESIP_MODULE_PATH}\n\
         module\t\t\tstdio.so\n",
        port = config.sip_port,
    );
    for codec in &config.codecs {
        text.push_str(&format!("module\t\t\t{codec}.so\n"));
    }
    if config.mediaenc.is_some() {
        text.push_str("module\t\t\tsrtp.so\n");
    }
    text.push_str(&format!(
        "module\t\t\taufile.so\n\
         module\t\t\talsa.so\n\
         module\t\t\tsndfile.so\n\
         module_tmp\t\tuuid.so\n\
         module_tmp\t\taccount.so\n\
         module_app\t\tmenu.so\n\
         snd_path\t\t{}\n",
        dump_dir.display()
    ));
    text
}

/// The baresip `accounts` file: one account.
pub fn render_baresip_account(config: &BaresipConfig) -> Result<String, HarnessError> {
    check_config_token("user name", &config.user)?;
    let answer = if config.auto_answer { "auto" } else { "manual" };
    let mut line = match &config.registration {
        None => format!(
            "<sip:{user}@{LOOPBACK}:{port}>;regint=0;answermode={answer}\n",
            user = config.user,
            port = config.sip_port,
        ),
        Some(registration) => {
            check_config_token("user name", &registration.user)?;
            check_config_token("password", &registration.password)?;
            format!(
                "<sip:{user}@{registrar}>;auth_user={user};auth_pass={password};regint=600;answermode={answer}\n",
                user = registration.user,
                registrar = registration.registrar,
                password = registration.password,
            )
        }
    };
    if let Some(mediaenc) = config.mediaenc {
        check_config_token("mediaenc", mediaenc)?;
        let end = line.trim_end().len();
        line.insert_str(end, &format!(";mediaenc={mediaenc}"));
    }
    Ok(line)
}
