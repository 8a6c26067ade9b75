//! What front ends (TUI, headless) ask the engine to do. Higher level than the UA's commands:
//! the engine turns `Dial("bob@host")` into a URI, binds the RTP socket, then tells the UA.

/// A call number as the front ends show it (`"call":"3"`); `None` means "the obvious one".
pub type CallRef = Option<u64>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Dial on the default (outgoing) account.
    Dial(String),
    /// Dial on the named account.
    DialOn(String, String),
    Answer(CallRef),
    Reject(CallRef),
    Hangup(CallRef),
    Hold(CallRef),
    /// ICE restart (RFC 8445 §9): new credentials and candidates in a re-INVITE, e.g. after
    /// the network changed under a call.
    IceRestart(CallRef),
    Resume(CallRef),
    Mute(CallRef, bool),
    Dtmf(CallRef, String),
    Transfer(CallRef, String),
    /// Attended transfer: REFER the peer of the first call to the peer of the second (with
    /// Replaces); `None`s pick the held call and the other established one.
    AttendedTransfer(CallRef, CallRef),
    /// Answer the peer's transfer request (REFER) of a call: follow it or refuse it.
    TransferAnswer(CallRef, bool),
    /// Join calls into a local conference mixed here (none named: every established call).
    Conference(Vec<u64>),
    /// End the conference: this call (else the first leg) stays up, the others are held.
    Split(CallRef),
    /// Do-not-disturb on, off, or toggled (`None`).
    Dnd(Option<bool>),
    /// Call-forward-always to this target; `None` turns it off.
    Forward(Option<String>),
    /// Recording, voice processing and devices of a call's audio (`driver::call_audio`).
    Audio(CallRef, AudioCommand),
    Register,
    Unregister,
    /// An instant message to `target` from the named (else the default) account.
    Message {
        account: Option<String>,
        target: String,
        text: String,
    },
    /// Watch `target`'s presence and dialog state (busy lamp) through an account.
    Watch {
        account: Option<String>,
        target: String,
    },
    Unwatch {
        account: Option<String>,
        target: String,
    },
    /// Enable (start and register) or disable (unregister and stop) an account.
    Account(String, bool),
    Quit,
}

/// What a user changes about a call's audio while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioCommand {
    /// Start recording the call to this stereo WAV file (`None`: a new file in the data dir).
    Record(Option<std::path::PathBuf>),
    RecordStop,
    /// Switch processing stages on or off: `None` leaves a stage as it is.
    Processing {
        echo_cancel: Option<bool>,
        noise_suppression: Option<bool>,
        auto_gain: Option<bool>,
    },
    /// Move the call to other devices (`None` keeps that direction's device).
    Devices {
        input: Option<String>,
        output: Option<String>,
    },
}

/// The headless grammar: one command per line, e.g. `dial sip:bob@127.0.0.1:5070`,
/// `hangup`, `hangup 2`, `dtmf 123#`, `transfer sip:carol@host`. `Ok(None)` for blank lines
/// and `#` comments; errors are messages for an `error` event.
pub fn parse_line(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or_default();
    let args: Vec<&str> = words.collect();
    let call_ref = |args: &[&str]| -> Result<CallRef, String> {
        match args {
            [] => Ok(None),
            [n] => n
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("`{verb}`: `{n}` is not a call number")),
            _ => Err(format!("`{verb}` takes at most a call number")),
        }
    };
    let no_args = |c: Command| {
        if args.is_empty() {
            Ok(Some(c))
        } else {
            Err(format!("`{verb}` takes no argument"))
        }
    };
    let command = match verb {
        "dial" | "call" => match args.as_slice() {
            [target] => Command::Dial((*target).to_string()),
            ["--account", account, target] => {
                Command::DialOn((*account).to_string(), (*target).to_string())
            }
            _ => {
                return Err("usage: dial [--account NAME] <uri|user@host|number|echo>".into());
            }
        },
        "message" | "msg" => {
            let (account, rest) = match args.as_slice() {
                ["--account", account, rest @ ..] => (Some((*account).to_string()), rest),
                rest => (None, rest),
            };
            let [target, ..] = rest else {
                return Err("usage: message [--account NAME] <uri> <text>".into());
            };
            // The text is the rest of the line as typed (inner spaces kept).
            let text = text_after(line, rest.len()).unwrap_or_default();
            if text.trim().is_empty() {
                return Err("usage: message [--account NAME] <uri> <text>".into());
            }
            Command::Message {
                account,
                target: (*target).to_string(),
                text,
            }
        }
        "watch" | "unwatch" => {
            let (account, target) = match args.as_slice() {
                [target] => (None, *target),
                ["--account", account, target] => (Some((*account).to_string()), *target),
                _ => return Err(format!("usage: {verb} [--account NAME] <uri>")),
            };
            let target = target.to_string();
            if verb == "watch" {
                Command::Watch { account, target }
            } else {
                Command::Unwatch { account, target }
            }
        }
        "account" => match args.as_slice() {
            ["enable", name] => Command::Account((*name).to_string(), true),
            ["disable", name] => Command::Account((*name).to_string(), false),
            _ => return Err("usage: account enable|disable <name>".into()),
        },
        "answer" => Command::Answer(call_ref(&args)?),
        "reject" => Command::Reject(call_ref(&args)?),
        "hangup" | "bye" => Command::Hangup(call_ref(&args)?),
        "hold" => Command::Hold(call_ref(&args)?),
        "ice-restart" => Command::IceRestart(call_ref(&args)?),
        "resume" | "unhold" => Command::Resume(call_ref(&args)?),
        "mute" => Command::Mute(call_ref(&args)?, true),
        "unmute" => Command::Mute(call_ref(&args)?, false),
        "dtmf" => match args.as_slice() {
            [digits] if valid_digits(digits) => Command::Dtmf(None, digits.to_ascii_uppercase()),
            [call, digits] if valid_digits(digits) => Command::Dtmf(
                Some(
                    call.parse()
                        .map_err(|_| format!("`{call}` is not a call number"))?,
                ),
                digits.to_ascii_uppercase(),
            ),
            _ => return Err("usage: dtmf [call] <digits 0-9 * # A-D>".into()),
        },
        "transfer" => match args.as_slice() {
            [target] => Command::Transfer(None, (*target).to_string()),
            [call, target] => Command::Transfer(
                Some(
                    call.parse()
                        .map_err(|_| format!("`{call}` is not a call number"))?,
                ),
                (*target).to_string(),
            ),
            _ => return Err("usage: transfer [call] <uri>".into()),
        },
        "attended-transfer" | "atransfer" => match args.as_slice() {
            [] => Command::AttendedTransfer(None, None),
            [call, consult] => {
                Command::AttendedTransfer(Some(call_number(call)?), Some(call_number(consult)?))
            }
            _ => return Err("usage: attended-transfer [<call> <consultation call>]".into()),
        },
        "accept-transfer" => Command::TransferAnswer(call_ref(&args)?, true),
        "refuse-transfer" => Command::TransferAnswer(call_ref(&args)?, false),
        "conference" | "conf" => {
            let calls = args
                .iter()
                .map(|a| call_number(a))
                .collect::<Result<Vec<u64>, String>>()?;
            if calls.len() == 1 || calls.len() > crate::media::mixer::MAX_LEGS {
                return Err(format!(
                    "usage: conference [<call> <call> ...] (2 to {} calls; none: every established call)",
                    crate::media::mixer::MAX_LEGS
                ));
            }
            Command::Conference(calls)
        }
        "split" => Command::Split(call_ref(&args)?),
        "dnd" => match args.as_slice() {
            [] => Command::Dnd(None),
            ["on"] => Command::Dnd(Some(true)),
            ["off"] => Command::Dnd(Some(false)),
            _ => return Err("usage: dnd [on|off]".into()),
        },
        "forward" => match args.as_slice() {
            ["off"] => Command::Forward(None),
            [target] => Command::Forward(Some((*target).to_string())),
            _ => return Err("usage: forward <uri>|off".into()),
        },
        "record" => match args.as_slice() {
            [] => Command::Audio(None, AudioCommand::Record(None)),
            ["stop"] => Command::Audio(None, AudioCommand::RecordStop),
            [file] => Command::Audio(None, AudioCommand::Record(Some((*file).into()))),
            _ => return Err("usage: record [file.wav] | record stop".into()),
        },
        "processing" => {
            let usage = "usage: processing <aec|ns|agc|all> <on|off>";
            let (stage, on) = match args.as_slice() {
                [stage, "on"] => (*stage, true),
                [stage, "off"] => (*stage, false),
                _ => return Err(usage.into()),
            };
            let pick = |name: &str| (stage == name || stage == "all").then_some(on);
            if !matches!(stage, "aec" | "ns" | "agc" | "all") {
                return Err(usage.into());
            }
            Command::Audio(
                None,
                AudioCommand::Processing {
                    echo_cancel: pick("aec"),
                    noise_suppression: pick("ns"),
                    auto_gain: pick("agc"),
                },
            )
        }
        "device" => match args.as_slice() {
            ["input", name @ ..] if !name.is_empty() => Command::Audio(
                None,
                AudioCommand::Devices {
                    input: Some(name.join(" ")),
                    output: None,
                },
            ),
            ["output", name @ ..] if !name.is_empty() => Command::Audio(
                None,
                AudioCommand::Devices {
                    input: None,
                    output: Some(name.join(" ")),
                },
            ),
            _ => return Err("usage: device <input|output> <name|default|null>".into()),
        },
        "register" => return no_args(Command::Register),
        "unregister" => return no_args(Command::Unregister),
        "quit" | "exit" => return no_args(Command::Quit),
        _ => {
            return Err(format!(
                "unknown command `{verb}` (commands: dial, answer, reject, hangup, hold, resume, ice-restart, mute, unmute, dtmf, transfer, attended-transfer, accept-transfer, refuse-transfer, conference, split, dnd, forward, record, processing, device, message, watch, unwatch, account, register, unregister, quit)"
            ));
        }
    };
    Ok(Some(command))
}

/// The message text: the line after its target word, as typed (inner spacing kept).
/// `words_left` counts the target and the text's words, the last words of the line.
fn text_after(line: &str, words_left: usize) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let skip = words.len().checked_sub(words_left)? + 1;
    let mut rest = line.trim_start();
    for _ in 0..skip {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[word_end..].trim_start();
    }
    Some(rest.trim_end().to_string())
}

fn call_number(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|_| format!("`{text}` is not a call number"))
}

fn valid_digits(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| crate::sip::ua::is_dtmf(c.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_headless_command_parses() {
        assert_eq!(
            parse_line("dial sip:bob@127.0.0.1:5070"),
            Ok(Some(Command::Dial("sip:bob@127.0.0.1:5070".into())))
        );
        assert_eq!(parse_line("answer"), Ok(Some(Command::Answer(None))));
        assert_eq!(parse_line("hangup 2"), Ok(Some(Command::Hangup(Some(2)))));
        assert_eq!(
            parse_line("dtmf 12#a"),
            Ok(Some(Command::Dtmf(None, "12#A".into())))
        );
        assert_eq!(
            parse_line("transfer sip:c@h"),
            Ok(Some(Command::Transfer(None, "sip:c@h".into())))
        );
        assert_eq!(parse_line("unmute"), Ok(Some(Command::Mute(None, false))));
        assert_eq!(parse_line("  # comment"), Ok(None));
        assert_eq!(parse_line("quit"), Ok(Some(Command::Quit)));
        assert_eq!(
            parse_line("attended-transfer 1 2"),
            Ok(Some(Command::AttendedTransfer(Some(1), Some(2))))
        );
        assert_eq!(
            parse_line("attended-transfer"),
            Ok(Some(Command::AttendedTransfer(None, None)))
        );
        assert_eq!(
            parse_line("ice-restart 2"),
            Ok(Some(Command::IceRestart(Some(2))))
        );
        assert_eq!(
            parse_line("accept-transfer"),
            Ok(Some(Command::TransferAnswer(None, true)))
        );
        assert_eq!(
            parse_line("refuse-transfer 3"),
            Ok(Some(Command::TransferAnswer(Some(3), false)))
        );
        assert_eq!(
            parse_line("conference 1 2"),
            Ok(Some(Command::Conference(vec![1, 2])))
        );
        assert_eq!(
            parse_line("conference"),
            Ok(Some(Command::Conference(vec![])))
        );
        assert_eq!(parse_line("split 2"), Ok(Some(Command::Split(Some(2)))));
        assert_eq!(parse_line("dnd on"), Ok(Some(Command::Dnd(Some(true)))));
        assert_eq!(parse_line("dnd"), Ok(Some(Command::Dnd(None))));
        assert_eq!(
            parse_line("forward sip:vm@h"),
            Ok(Some(Command::Forward(Some("sip:vm@h".into()))))
        );
        assert_eq!(parse_line("forward off"), Ok(Some(Command::Forward(None))));
        assert_eq!(
            parse_line("dial --account work 1234"),
            Ok(Some(Command::DialOn("work".into(), "1234".into())))
        );
        assert_eq!(
            parse_line("message --account home sip:bob@h  Grüße,  Bob! "),
            Ok(Some(Command::Message {
                account: Some("home".into()),
                target: "sip:bob@h".into(),
                text: "Grüße,  Bob!".into()
            }))
        );
        assert_eq!(
            parse_line("message bob hi"),
            Ok(Some(Command::Message {
                account: None,
                target: "bob".into(),
                text: "hi".into()
            }))
        );
        assert_eq!(
            parse_line("watch sip:bob@h"),
            Ok(Some(Command::Watch {
                account: None,
                target: "sip:bob@h".into()
            }))
        );
        assert_eq!(
            parse_line("account disable work"),
            Ok(Some(Command::Account("work".into(), false)))
        );
        assert!(parse_line("message bob").is_err());
        assert!(parse_line("account maybe work").is_err());
        assert_eq!(
            parse_line("record /tmp/call.wav"),
            Ok(Some(Command::Audio(
                None,
                AudioCommand::Record(Some("/tmp/call.wav".into()))
            )))
        );
        assert_eq!(
            parse_line("record"),
            Ok(Some(Command::Audio(None, AudioCommand::Record(None))))
        );
        assert_eq!(
            parse_line("record stop"),
            Ok(Some(Command::Audio(None, AudioCommand::RecordStop)))
        );
        assert_eq!(
            parse_line("processing ns off"),
            Ok(Some(Command::Audio(
                None,
                AudioCommand::Processing {
                    echo_cancel: None,
                    noise_suppression: Some(false),
                    auto_gain: None
                }
            )))
        );
        assert!(parse_line("processing loud on").is_err());
        assert_eq!(
            parse_line("device output pulseaudio:sipterm_out"),
            Ok(Some(Command::Audio(
                None,
                AudioCommand::Devices {
                    input: None,
                    output: Some("pulseaudio:sipterm_out".into())
                }
            )))
        );
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        assert!(parse_line("dial").is_err());
        assert!(parse_line("dtmf 12x").is_err());
        assert!(
            parse_line("hangup two")
                .err()
                .unwrap_or_default()
                .contains("two")
        );
        assert!(parse_line("register now").is_err());
        assert!(parse_line("conference 1").is_err());
        assert!(parse_line("attended-transfer 1").is_err());
        assert!(parse_line("dnd maybe").is_err());
        assert!(parse_line("forward").is_err());
        assert!(
            parse_line("frobnicate")
                .err()
                .unwrap_or_default()
                .contains("frobnicate")
        );
    }

    /// The README's "Headless protocol" section, where users look the grammar up.
    fn readme_protocol() -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(path).unwrap_or_default();
        let start = readme.find("## Headless protocol").unwrap_or(readme.len());
        let rest = &readme[start..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
        rest[..end].to_string()
    }

    /// Every verb `parse_line` knows, aliases included, is in the README's table (as `` `verb``),
    /// and every one of them parses (a verb missing here would be "unknown command").
    #[test]
    fn readme_lists_every_command_and_alias() {
        const VERBS: &[&str] = &[
            "dial",
            "call",
            "answer",
            "reject",
            "hangup",
            "bye",
            "hold",
            "resume",
            "unhold",
            "ice-restart",
            "mute",
            "unmute",
            "dtmf",
            "transfer",
            "attended-transfer",
            "atransfer",
            "accept-transfer",
            "refuse-transfer",
            "conference",
            "conf",
            "split",
            "dnd",
            "forward",
            "record",
            "processing",
            "device",
            "register",
            "unregister",
            "quit",
            "exit",
            "message",
            "watch",
            "unwatch",
            "account",
        ];
        let readme = readme_protocol();
        assert!(readme.contains("| command (aliases) |"), "{readme}");
        for verb in VERBS {
            let line = format!("{verb} x");
            let unknown = parse_line(&line).is_err_and(|e| e.starts_with("unknown command"));
            assert!(!unknown, "{verb} is not a command");
            assert!(
                readme.contains(&format!("`{verb}")),
                "README lacks `{verb}`"
            );
        }
        // The error for an unknown verb lists the same commands.
        let Err(message) = parse_line("frobnicate") else {
            panic!("frobnicate parsed");
        };
        for verb in VERBS
            .iter()
            .filter(|v| !["call", "bye", "unhold", "atransfer", "conf", "exit"].contains(v))
        {
            assert!(message.contains(verb), "{message} lacks {verb}");
        }
        // The optional call number is explained.
        assert!(
            readme.contains("`[call]` is an optional call number"),
            "{readme}"
        );
    }
}
