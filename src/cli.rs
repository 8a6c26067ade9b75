//! Command-line flags (DESIGN.md, "CLI"). Parsing only: main.rs decides what to do with them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};

/// `sipterm [--config FILE] [--account NAME] [--headless] ...`
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "sipterm",
    version,
    about = "A terminal SIP softphone",
    after_long_help = include_str!("../assets/help.txt")
)]
pub struct Cli {
    /// Config file (default: ~/.config/sipterm/config.toml; without one a local account is used).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Account to use (its `name` in the config); default: the first account.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,

    /// No TUI: read commands from stdin, write JSON events to stdout, one per line.
    #[arg(long)]
    pub headless: bool,

    /// Local SIP address, overriding `[sip] listen` (port 0 picks a free port).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,

    /// Microphone replacement: a WAV file to send, or `null` for silence.
    #[arg(long, value_name = "FILE.wav|null")]
    pub audio_in: Option<AudioFile>,

    /// Speaker replacement: a WAV file to record into, or `null` to discard.
    #[arg(long, value_name = "FILE.wav|null")]
    pub audio_out: Option<AudioFile>,

    /// Answer incoming calls automatically after MS milliseconds (bare flag: at once).
    #[arg(
        long,
        value_name = "MS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "0"
    )]
    pub auto_answer: Option<u64>,

    /// Also write `levels` events (VU levels in dBFS, about ten a second per call): headless
    /// prints them on stdout; the TUI, whose screen always shows them as VU meters, writes
    /// the same JSON lines to its log file (see --log-file).
    #[arg(long)]
    pub levels: bool,

    /// Write the SIP message ladder of the session as PlantUML to FILE.
    #[arg(long, value_name = "FILE.puml")]
    pub ladder_out: Option<PathBuf>,

    /// Write every SIP, RTP and RTCP packet sent or received to FILE (pcap; SRTP keys masked).
    #[arg(long, value_name = "FILE.pcap")]
    pub pcap_out: Option<PathBuf>,

    /// List audio devices and exit.
    #[arg(long)]
    pub list_devices: bool,

    /// Log file, overriding `[log] file` and the default in the XDG state directory.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// More log detail: -v debug, -vv trace (overrides RUST_LOG and `[log] level`).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub tool: Option<Tool>,
}

/// Helpers for installing sipterm; each prints to stdout and exits.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Tool {
    /// Print a shell completion script, e.g. `sipterm completions bash > /etc/bash_completion.d/sipterm`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `sipterm man > ~/.local/share/man/man1/sipterm.1`.
    Man,
}

impl Tool {
    /// The script or page, generated from this very CLI definition (so it never goes stale).
    pub fn render(&self) -> std::io::Result<Vec<u8>> {
        use clap::CommandFactory;
        let mut command = Cli::command();
        let mut out = Vec::new();
        match self {
            Tool::Completions { shell } => {
                clap_complete::generate(*shell, &mut command, "sipterm", &mut out);
            }
            Tool::Man => clap_mangen::Man::new(command).render(&mut out)?,
        }
        Ok(out)
    }
}

impl Cli {
    /// How long to ring before answering, when auto-answer is on.
    pub fn auto_answer_delay(&self) -> Option<Duration> {
        self.auto_answer.map(Duration::from_millis)
    }
}

/// An audio endpoint given on the command line in place of a sound card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioFile {
    /// `null`: silence in, discard out.
    Null,
    /// A WAV file to play (input) or to record (output).
    Wav(PathBuf),
}

impl FromStr for AudioFile {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err("expected a WAV file path or `null`".to_string());
        }
        if text.eq_ignore_ascii_case("null") {
            return Ok(AudioFile::Null);
        }
        Ok(AudioFile::Wav(PathBuf::from(text)))
    }
}

impl fmt::Display for AudioFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioFile::Null => f.write_str("null"),
            AudioFile::Wav(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sipterm").chain(args.iter().copied()))
    }

    fn parse_ok(args: &[&str]) -> Cli {
        match parse(args) {
            Ok(cli) => cli,
            Err(error) => panic!("{args:?} should parse: {error}"),
        }
    }

    #[test]
    fn no_flags_means_tui_with_defaults() {
        let cli = parse_ok(&[]);
        assert!(!cli.headless);
        assert_eq!(cli.config, None);
        assert_eq!(cli.account, None);
        assert_eq!(cli.listen, None);
        assert_eq!(cli.auto_answer, None);
        assert_eq!(cli.verbose, 0);
        assert!(!cli.list_devices);
    }

    #[test]
    fn config_and_account() {
        let cli = parse_ok(&["--config", "/tmp/x.toml", "--account", "alice"]);
        assert_eq!(cli.config, Some(PathBuf::from("/tmp/x.toml")));
        assert_eq!(cli.account.as_deref(), Some("alice"));
    }

    #[test]
    fn headless_and_listen() {
        let cli = parse_ok(&["--headless", "--listen", "127.0.0.1:5062"]);
        assert!(cli.headless);
        assert_eq!(cli.listen, Some("127.0.0.1:5062".parse().unwrap()));
        let v6 = parse_ok(&["--listen", "[::1]:0"]);
        assert_eq!(v6.listen, Some("[::1]:0".parse().unwrap()));
    }

    #[test]
    fn listen_without_port_is_rejected() {
        assert!(parse(&["--listen", "127.0.0.1"]).is_err());
        assert!(parse(&["--listen", "localhost:5060"]).is_err());
    }

    #[test]
    fn audio_files_and_null() {
        let cli = parse_ok(&["--audio-in", "hello.wav", "--audio-out", "null"]);
        assert_eq!(
            cli.audio_in,
            Some(AudioFile::Wav(PathBuf::from("hello.wav")))
        );
        assert_eq!(cli.audio_out, Some(AudioFile::Null));
        assert!(parse(&["--audio-in", ""]).is_err());
    }

    #[test]
    fn auto_answer_bare_means_immediately() {
        let cli = parse_ok(&["--auto-answer"]);
        assert_eq!(cli.auto_answer, Some(0));
        assert_eq!(cli.auto_answer_delay(), Some(Duration::ZERO));
    }

    #[test]
    fn auto_answer_with_delay() {
        let cli = parse_ok(&["--auto-answer=500"]);
        assert_eq!(cli.auto_answer, Some(500));
        assert_eq!(cli.auto_answer_delay(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn auto_answer_bare_before_another_flag() {
        let cli = parse_ok(&["--auto-answer", "--headless"]);
        assert_eq!(cli.auto_answer, Some(0));
        assert!(cli.headless);
    }

    #[test]
    fn auto_answer_rejects_garbage() {
        assert!(parse(&["--auto-answer=soon"]).is_err());
        assert!(parse(&["--auto-answer=-5"]).is_err());
    }

    #[test]
    fn ladder_pcap_and_log_outputs() {
        let cli = parse_ok(&[
            "--ladder-out",
            "call.puml",
            "--pcap-out",
            "call.pcap",
            "--log-file",
            "/tmp/s.log",
        ]);
        assert_eq!(cli.ladder_out, Some(PathBuf::from("call.puml")));
        assert_eq!(cli.pcap_out, Some(PathBuf::from("call.pcap")));
        assert_eq!(cli.log_file, Some(PathBuf::from("/tmp/s.log")));
    }

    #[test]
    fn list_devices() {
        assert!(parse_ok(&["--list-devices"]).list_devices);
    }

    #[test]
    fn verbose_counts() {
        assert_eq!(parse_ok(&["-v"]).verbose, 1);
        assert_eq!(parse_ok(&["-vv"]).verbose, 2);
        assert_eq!(parse_ok(&["--verbose", "--verbose"]).verbose, 2);
    }

    #[test]
    fn unknown_flag_is_an_error() {
        assert!(parse(&["--headles"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
