//! Glue between the config/CLI and the engine: builds the SIP set-up for the chosen account.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};

use crate::cli::{AudioFile, Cli};
use crate::config::{self, Config};
use crate::driver::media_task::{AudioEndpoint, MediaIo};
use crate::driver::sip_task::SipSetup;
use crate::sdp::Codec;
use crate::sip::auth::Password;
use crate::sip::transaction::{TimerConfig, TransportKind};
use crate::sip::ua::AccountParams;
use crate::sip::uri::Uri;

pub fn sip_setup(cli: &Cli, config: &Config) -> anyhow::Result<SipSetup> {
    let account = config.account(cli.account.as_deref())?;
    let parse = |what: &str, text: &str| -> anyhow::Result<Uri> {
        text.parse::<Uri>().map_err(|e| {
            anyhow!(
                "account `{}`: {what} `{text}` is not a valid URI: {e}",
                account.name
            )
        })
    };
    let aor = parse("uri", &account.uri)?;
    let registrar = account
        .registrar
        .as_deref()
        .map(|r| parse("registrar", r))
        .transpose()?;
    let outbound_proxy = account
        .outbound_proxy
        .as_deref()
        .map(|r| parse("outbound_proxy", r))
        .transpose()?;
    let password = account
        .resolve_password()
        .with_context(|| format!("account `{}`", account.name))?
        .map(|s| Password::new(s.expose()));
    let transport = match account.transport {
        config::Transport::Udp => TransportKind::Udp,
        config::Transport::Tcp => TransportKind::Tcp,
        config::Transport::Tls => TransportKind::Tls,
    };
    let codecs: Vec<Codec> = account
        .codecs
        .iter()
        .filter_map(|c| codec_by_name(c))
        .collect();
    let t1 = Duration::from_millis(config.sip.t1_ms.max(1));
    Ok(SipSetup {
        listen: config.sip.listen,
        account: AccountParams {
            name: account.name.clone(),
            auth_username: account
                .auth_username()
                .map(str::to_string)
                .or_else(|| aor.user.clone())
                .unwrap_or_default(),
            aor,
            display_name: account.display_name.clone(),
            password,
            registrar,
            outbound_proxy,
            expires: account.expires,
            transport,
        },
        user_agent: config.sip.user_agent.clone(),
        timers: TimerConfig {
            t1,
            t2: Duration::from_secs(4).max(t1),
            t4: Duration::from_secs(5),
        },
        register_at_start: true,
        codecs: if codecs.is_empty() {
            vec![Codec::Opus, Codec::Pcmu, Codec::Pcma]
        } else {
            codecs
        },
        busy_when_in_call: false,
        srtp: match account.srtp {
            config::Srtp::Off => crate::sdp::SrtpPolicy::Off,
            config::Srtp::Optional => crate::sdp::SrtpPolicy::Optional,
            config::Srtp::Mandatory => crate::sdp::SrtpPolicy::Mandatory,
        },
        media: MediaIo {
            input: endpoint(cli.audio_in.as_ref(), &config.audio.input),
            output: endpoint(cli.audio_out.as_ref(), &config.audio.output),
        },
    })
}

fn codec_by_name(name: &str) -> Option<Codec> {
    match name.to_ascii_lowercase().as_str() {
        "opus" => Some(Codec::Opus),
        "pcmu" => Some(Codec::Pcmu),
        "pcma" => Some(Codec::Pcma),
        _ => None,
    }
}

fn endpoint(cli: Option<&AudioFile>, device: &str) -> AudioEndpoint {
    match cli {
        Some(AudioFile::Null) => AudioEndpoint::Null,
        Some(AudioFile::Wav(path)) => AudioEndpoint::Wav(PathBuf::from(path)),
        None if device.eq_ignore_ascii_case("null") => AudioEndpoint::Null,
        None => AudioEndpoint::Device(device.to_string()),
    }
}
