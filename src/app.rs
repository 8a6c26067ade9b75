//! Glue between the config/CLI and the engine: builds the SIP set-up for the chosen account.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;

use crate::cli::{AudioFile, Cli};
use crate::config::{self, Config};
use crate::driver::media_task::{AudioEndpoint, MediaIo};
use crate::driver::nat::{DEFAULT_KEEPALIVE, IceAccount, NatSetup};
use crate::driver::sip_task::{DtmfMode, SipSetup};
use crate::driver::tls::TlsOptions;
use crate::driver::tone_task::{Ringtone, ToneSettings};
use crate::driver::transport::ListenerLimits;
use crate::media::tones::ToneRegion;
use crate::sdp::Codec;
use crate::sip::auth::Password;
use crate::sip::transaction::{TimerConfig, TransportKind};
use crate::sip::ua::{AccountParams, CallPolicy, MessagingPolicy, Rel100, WatcherPolicy};
use crate::sip::uri::Uri;

/// CRLFCRLF ping interval on TCP/TLS connections when the account does not set one.
const DEFAULT_STREAM_KEEPALIVE_SECS: u32 = 30;

/// One account to run: its engine's set-up and whether it starts enabled.
#[derive(Debug, Clone)]
pub struct AccountSetup {
    pub setup: SipSetup,
    pub enabled: bool,
}

/// The set-ups of every account to run (`Config::running_accounts`): the first (the
/// default outgoing account) listens on `[sip] listen` / `--listen`, the others on their own
/// `listen` or the same IP with a free port; they share call numbers.
pub fn sip_setups(cli: &Cli, config: &Config) -> anyhow::Result<Vec<AccountSetup>> {
    let accounts = config.running_accounts(cli.account.as_deref())?;
    let call_numbers = crate::sip::ua::CallNumbers::default();
    let mut setups = Vec::with_capacity(accounts.len());
    for (index, account) in accounts.into_iter().enumerate() {
        let mut setup = account_setup(cli, config, account)?;
        if index > 0 {
            setup.listen = account
                .listen
                .unwrap_or_else(|| std::net::SocketAddr::new(config.sip.listen.ip(), 0));
            // One TLS listener (the `[sip]` keys) only: the first account's.
            setup.tls.listen = None;
            // The config's permission warning once; each account's own self-loop warning.
            setup.warnings = config.self_loop_warning(account).into_iter().collect();
        } else if let Some(listen) = account.listen.filter(|_| cli.listen.is_none()) {
            setup.listen = listen;
        }
        setup.call_numbers = call_numbers.clone();
        setups.push(AccountSetup {
            setup,
            enabled: account.enabled || cli.account.is_some(),
        });
    }
    Ok(setups)
}

/// The set-up of the account `--account` names (or the first).
pub fn sip_setup(cli: &Cli, config: &Config) -> anyhow::Result<SipSetup> {
    let account = config.account(cli.account.as_deref())?;
    account_setup(cli, config, account)
}

/// `user@host` (lower-case) of every contact whose calls go through `account` (named, or
/// unnamed while `account` is the default one): who may watch it, and whom it watches.
pub fn contact_addresses(config: &Config, account: &str, is_default: bool) -> Vec<String> {
    // The config's contacts and those added in the TUI (contacts.toml in the data dir).
    let user = crate::ui::messaging::contacts_path()
        .map(|path| crate::ui::messaging::load_contacts(&path).0)
        .unwrap_or_default();
    config
        .contacts
        .iter()
        .chain(&user)
        .filter(|c| match &c.account {
            Some(name) => name == account,
            None => is_default,
        })
        .filter_map(|c| c.uri.parse::<Uri>().ok())
        .filter(|u| u.user.is_some())
        .map(|u| {
            format!(
                "{}@{}",
                u.user.as_deref().unwrap_or(""),
                u.host_unbracketed()
            )
            .to_ascii_lowercase()
        })
        .collect()
}

fn account_setup(
    cli: &Cli,
    config: &Config,
    account: &config::Account,
) -> anyhow::Result<SipSetup> {
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
        // The error names the account already (it said "account `a`: account `a`: ..." twice).
        .resolve_password()?
        .map(|s| Password::new(s.expose()));
    // Only when ICE is on and a TURN server set: a password manager is not asked for nothing.
    let turn_password = if account.ice && account.turn_server.is_some() {
        account.resolve_turn_password()?
    } else {
        None
    };
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
        calls: call_policy(account)?,
        dtmf: match account.dtmf {
            config::Dtmf::Auto => DtmfMode::Auto,
            config::Dtmf::Info => DtmfMode::Info,
            config::Dtmf::Inband => DtmfMode::Inband,
        },
        srtp: match account.srtp {
            config::Srtp::Off => crate::sdp::SrtpPolicy::Off,
            config::Srtp::Optional => crate::sdp::SrtpPolicy::Optional,
            config::Srtp::Mandatory => crate::sdp::SrtpPolicy::Mandatory,
        },
        media: MediaIo {
            input: endpoint(cli.audio_in.as_ref(), &config.audio.input),
            output: endpoint(cli.audio_out.as_ref(), &config.audio.output),
            rtp_latching: config.sip.rtp_latching,
            append_output: false,
            processing: crate::driver::call_audio::ProcessingConfig {
                echo_cancel: config.audio.echo_cancel,
                noise_suppression: config.audio.noise_suppression,
                auto_gain: config.audio.auto_gain,
            },
            capture: None,
        },
        nat: nat_setup(account, config, turn_password),
        tones: tone_settings(config),
        accept_from: match account.accept_from() {
            config::AcceptFrom::Proxy => crate::sip::ua::AcceptFrom::Proxy,
            config::AcceptFrom::Any => crate::sip::ua::AcceptFrom::Any,
        },
        warnings: config
            .permission_warning()
            .into_iter()
            .chain(config.self_loop_warning(account))
            .collect(),
        tls: TlsOptions {
            ca_file: config.sip.tls_ca_file.clone(),
            insecure: config.sip.tls_insecure,
            listen: config.sip.tls_listen,
            cert_file: config.sip.tls_cert.clone(),
            key_file: config.sip.tls_key.clone(),
        },
        stream_keepalive: Some(Duration::from_secs(u64::from(
            account
                .keepalive_secs
                .unwrap_or(DEFAULT_STREAM_KEEPALIVE_SECS),
        )))
        .filter(|d| !d.is_zero()),
        listener_limits: ListenerLimits {
            max_connections: config.sip.max_connections,
            message_timeout: Duration::from_secs(config.sip.message_timeout_secs),
        },
        messaging: MessagingPolicy {
            publish: account.presence && account.registrar.is_some(),
            mwi_subscribe: account.mwi && account.registrar.is_some(),
            watchers: match account.watchers {
                config::Watchers::Contacts => WatcherPolicy::Contacts,
                config::Watchers::Any => WatcherPolicy::Any,
                config::Watchers::None => WatcherPolicy::None,
            },
            contacts: contact_addresses(
                config,
                &account.name,
                config
                    .running_accounts(cli.account.as_deref())
                    .ok()
                    .and_then(|a| a.first().map(|f| f.name == account.name))
                    .unwrap_or(false),
            ),
        },
        call_numbers: crate::sip::ua::CallNumbers::default(),
    })
}

/// The account's PBX keys for the UA.
fn call_policy(account: &config::Account) -> anyhow::Result<CallPolicy> {
    let forward_to = account
        .forward_to
        .as_deref()
        .map(|target| {
            target.parse::<Uri>().map_err(|e| {
                anyhow!(
                    "account `{}`: forward_to `{target}` is not a valid URI: {e}",
                    account.name
                )
            })
        })
        .transpose()?;
    Ok(CallPolicy {
        rel100: match account.rel100 {
            config::Rel100::Supported => Rel100::Supported,
            config::Rel100::Required => Rel100::Required,
            config::Rel100::Off => Rel100::Off,
        },
        session_expires: (account.session_expires != 0).then_some(account.session_expires),
        min_se: account.min_se,
        dnd: account.dnd.then_some(account.dnd_code),
        forward_to,
        auto_accept_transfer: account.auto_accept_transfer,
    })
}

/// When incoming calls answer by themselves: `--auto-answer[=MS]`, else the account's
/// `auto_answer`. Both front ends schedule it (the TUI holds the other calls first).
pub fn auto_answer(cli: &Cli, config: &Config) -> Option<Duration> {
    cli.auto_answer_delay().or_else(|| {
        config
            .account(cli.account.as_deref())
            .ok()
            .and_then(|a| a.auto_answer)
            .map(Duration::from_millis)
    })
}

/// Auto-answer for a call on `account` (the `account` of its `call` event): `--auto-answer`,
/// else that account's `auto_answer`.
pub fn auto_answer_for(cli: &Cli, config: &Config, account: Option<&str>) -> Option<Duration> {
    cli.auto_answer_delay().or_else(|| {
        let account = match account {
            Some(name) => config.accounts.iter().find(|a| a.name == name),
            None => config.account(cli.account.as_deref()).ok(),
        };
        account
            .and_then(|a| a.auto_answer)
            .map(Duration::from_millis)
    })
}

fn tone_settings(config: &Config) -> ToneSettings {
    let ringtone = match config.audio.ringtone.trim() {
        text if text.eq_ignore_ascii_case("off") => Ringtone::Off,
        text if text.eq_ignore_ascii_case("builtin") => Ringtone::Builtin,
        path => Ringtone::File(PathBuf::from(path)),
    };
    let region = match config.audio.tone_region {
        config::ToneRegion::Eu => ToneRegion::Eu,
        config::ToneRegion::Us => ToneRegion::Us,
    };
    ToneSettings {
        ringtone,
        region,
        ring_device: config.audio.ring_device.clone(),
    }
}

fn codec_by_name(name: &str) -> Option<Codec> {
    match name.to_ascii_lowercase().as_str() {
        "opus" => Some(Codec::Opus),
        "pcmu" => Some(Codec::Pcmu),
        "pcma" => Some(Codec::Pcma),
        "g722" => Some(Codec::G722),
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

/// STUN and keep-alives: the account's `stun_server` else `[sip]`'s; keep-alives every
/// `keepalive_secs` (0 = off), by default 29 s when behind NAT (a STUN server is set).
fn nat_setup(
    account: &config::Account,
    config: &Config,
    turn_password: Option<config::Secret>,
) -> NatSetup {
    let stun_server = account
        .stun_server
        .clone()
        .or_else(|| config.sip.stun_server.clone());
    let keepalive = match account.keepalive_secs {
        Some(0) => None,
        Some(secs) => Some(Duration::from_secs(u64::from(secs))),
        None if stun_server.is_some() => Some(DEFAULT_KEEPALIVE),
        None => None,
    };
    NatSetup {
        stun_server,
        keepalive,
        keepalive_off: account.keepalive_secs == Some(0),
        ice: account.ice.then(|| IceAccount {
            turn_server: account.turn_server.clone(),
            turn_username: account.turn_username.clone().unwrap_or_default(),
            turn_password: turn_password
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
            tls_ca_file: config.sip.tls_ca_file.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_defaults_to_29_s_behind_nat_and_0_turns_it_off() {
        let mut config = Config::default();
        let mut account = config::Account::new("a", "sip:a@example.com");
        assert_eq!(nat_setup(&account, &config, None).stun_server, None);
        assert_eq!(nat_setup(&account, &config, None).keepalive, None);
        config.sip.stun_server = Some("127.0.0.1:3478".into());
        let nat = nat_setup(&account, &config, None);
        assert_eq!(nat.stun_server.as_deref(), Some("127.0.0.1:3478"));
        assert_eq!(nat.keepalive, Some(DEFAULT_KEEPALIVE));
        account.stun_server = Some("10.0.0.1".into());
        account.keepalive_secs = Some(0);
        let nat = nat_setup(&account, &config, None);
        assert_eq!(nat.stun_server.as_deref(), Some("10.0.0.1"));
        assert_eq!(nat.keepalive, None);
        account.keepalive_secs = Some(5);
        assert_eq!(
            nat_setup(&account, &config, None).keepalive,
            Some(Duration::from_secs(5))
        );
    }
}
