//! Passwords never leave the config: not in stdout, stderr, the log file (even at `-v`), the
//! pcap or the PlantUML ladder, nor in the error of a `password_command` that fails. And a
//! config file that holds a password and others may read gets one `warning` naming the file
//! and `chmod 600`.
//!
//! Needs kamailio (the Makefile installs it); without it the test fails.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::headless::{Headless, HeadlessOptions};
use common::peers::Kamailio;
use common::ports::free_udp_port;

const SIGNALLING: Duration = Duration::from_secs(20);
const PASSWORD: &str = "S3cr3t-PW-xyz";
const COMMAND_SECRET: &str = "Cmd-Secret-987";

fn start_kamailio(users: &[(&str, &str)]) -> Kamailio {
    let mut last = None;
    for _ in 0..3 {
        let port = free_udp_port().expect("free port");
        match Kamailio::start(users, port) {
            Ok(k) => return k,
            Err(e) => last = Some(e),
        }
    }
    panic!("kamailio did not start: {last:?}");
}

/// Where `needle` occurs in the file, as (file, byte offset); None when absent or unreadable
/// files are reported by the caller.
fn find_in(path: &Path, needle: &str) -> Option<usize> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// alice (password in the file) calls bob (password_command) through Kamailio, which
/// challenges REGISTER and INVITE: both log at -v and export pcap + ladder. Neither secret
/// appears in any of their outputs; the captures do hold the digest exchange (so the search
/// looked at the right bytes).
#[test]
fn secrets_stay_out_of_output_logs_and_exports() {
    let kamailio = start_kamailio(&[("alice", PASSWORD), ("bob", COMMAND_SECRET)]);
    let port = kamailio.port;
    let out = tempfile::Builder::new()
        .prefix("sipterm-secrets-")
        .tempdir()
        .expect("tempdir");
    let config = |name: &str, secret_line: &str| {
        format!(
            "[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@127.0.0.1:{port}\"\n\
             registrar = \"sip:127.0.0.1:{port}\"\n{secret_line}\n"
        )
    };
    let spawn = |name: &str, secret_line: &str, auto_answer_ms: Option<u64>| {
        let options = HeadlessOptions {
            auto_answer_ms,
            config_toml: Some(config(name, secret_line)),
            extra_args: vec![
                "-v".into(),
                "--pcap-out".into(),
                out.path()
                    .join(format!("{name}.pcap"))
                    .display()
                    .to_string(),
                "--ladder-out".into(),
                out.path()
                    .join(format!("{name}.puml"))
                    .display()
                    .to_string(),
            ],
            ..HeadlessOptions::default()
        };
        Headless::spawn(name, &options).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let mut alice = spawn("alice", &format!("password = \"{PASSWORD}\""), None);
    let mut bob = spawn(
        "bob",
        &format!("password_command = \"echo {COMMAND_SECRET}\""),
        Some(0),
    );
    for sipterm in [&mut alice, &mut bob] {
        sipterm
            .expect_event(
                "registered",
                |e| e["event"] == "registration" && e["state"] == "registered",
                SIGNALLING,
            )
            .unwrap_or_else(|e| panic!("{e}\n--- kamailio ---\n{}", kamailio.log()));
    }
    alice
        .send(&format!("dial sip:bob@127.0.0.1:{port}"))
        .expect("dial");
    alice
        .expect_call_state("confirmed", SIGNALLING)
        .unwrap_or_else(|e| panic!("{e}\n--- kamailio ---\n{}", kamailio.log()));
    bob.expect_call_state("confirmed", SIGNALLING)
        .expect("bob confirmed");
    alice.send("hangup").expect("hangup");
    bob.expect_call_state("terminated", SIGNALLING)
        .expect("bob terminated");
    for sipterm in [&mut alice, &mut bob] {
        let status = sipterm.quit(Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }

    let mut checked = Vec::new();
    for (sipterm, name) in [(&alice, "alice"), (&bob, "bob")] {
        let logs = sipterm.log_dir();
        let files = [
            logs.join("stdout.log"),
            logs.join("stderr.log"),
            logs.join("sipterm.log"),
            out.path().join(format!("{name}.pcap")),
            out.path().join(format!("{name}.puml")),
        ];
        for file in &files {
            for secret in [PASSWORD, COMMAND_SECRET] {
                assert_eq!(
                    find_in(file, secret),
                    None,
                    "{secret} found in {}",
                    file.display()
                );
            }
            checked.push(format!("{} ({} bytes)", file.display(), size(file)));
        }
        // The search looked at real content: the debug log and both exports carry the SIP
        // trace, including the digest answers to Kamailio's challenges.
        let log = logs.join("sipterm.log");
        assert!(
            find_in(&log, "REGISTER sip:").is_some(),
            "no SIP trace in the -v log"
        );
        assert!(
            find_in(&log, "Authorization: Digest").is_some(),
            "no digest in the log"
        );
        let pcap = out.path().join(format!("{name}.pcap"));
        assert!(
            find_in(&pcap, "Authorization: Digest").is_some(),
            "no digest in the pcap"
        );
        let puml = out.path().join(format!("{name}.puml"));
        assert!(
            find_in(&puml, "REGISTER").is_some(),
            "no REGISTER in the ladder"
        );
    }
    let invite_auth = alice
        .events_of("sip")
        .iter()
        .filter(|e| {
            e["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("SIP/2.0 407"))
        })
        .count();
    println!("checked (no secret in any): {checked:#?}; alice saw {invite_auth} 407 challenges");
    assert!(
        invite_auth > 0,
        "the INVITE was challenged (digest on the call too)"
    );
}

/// A password_command that fails after printing the secret (stdout and stderr): sipterm exits
/// with an error that names the account and the exit status, and the secret is nowhere.
#[test]
fn a_failing_password_command_does_not_echo_the_secret() {
    let config = format!(
        "[[account]]\nname = \"alice\"\nuri = \"sip:alice@127.0.0.1\"\n\
         password_command = \"echo {COMMAND_SECRET}; echo {COMMAND_SECRET} >&2; exit 1\"\n"
    );
    let mut sipterm =
        Headless::launch("sipterm", &HeadlessOptions::with_config(config)).expect("spawn");
    let status = sipterm.guard().wait_timeout(Duration::from_secs(20));
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let dir = sipterm.dir().to_path_buf();
    let stderr = sipterm.stderr_text();
    let stdout = sipterm.stdout_text();
    println!("stderr: {stderr}\nstdout: {stdout}");
    assert!(
        stderr.contains("password_command") && stderr.contains("alice"),
        "the error names the account and the key: {stderr}"
    );
    for (what, text) in [("stderr", &stderr), ("stdout", &stdout)] {
        assert!(!text.contains(COMMAND_SECRET), "secret in {what}: {text}");
    }
    // The log file, wherever the default put it under the temp HOME.
    for entry in walk(&dir) {
        if entry.extension().is_some_and(|e| e == "log") {
            assert_eq!(find_in(&entry, COMMAND_SECRET), None, "{}", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Starts a headless sipterm on `config` (written with `mode`) and returns the warnings it
/// reported before answering a command that goes through the engine (events arrive in order).
fn warnings_at_start(config: &str, mode: u32) -> (Vec<String>, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("sipterm-perm-")
        .tempdir()
        .expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).expect("write config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    let mut sipterm = Headless::spawn(
        "perm",
        &HeadlessOptions {
            extra_args: vec!["--config".into(), path.display().to_string()],
            ..HeadlessOptions::default()
        },
    )
    .expect("sipterm");
    // `hangup` with no call: an `error` from the engine, queued after any start-up warning.
    sipterm.send("hangup").expect("hangup");
    sipterm
        .expect_event(
            "the error for hangup",
            |e| e["event"] == "error",
            SIGNALLING,
        )
        .expect("error event");
    let warnings = sipterm
        .events_of("warning")
        .iter()
        .map(|w| w["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    sipterm.quit(Duration::from_secs(5));
    (warnings, path)
}

#[test]
fn a_config_others_can_read_with_a_password_gets_one_warning() {
    let with_password =
        "[[account]]\nname = \"alice\"\nuri = \"sip:alice@127.0.0.1\"\npassword = \"pw-123\"\n";
    let (warnings, path) = warnings_at_start(with_password, 0o644);
    println!("mode 644: {warnings:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&path.display().to_string()),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("chmod 600"), "{warnings:?}");
    assert!(!warnings[0].contains("pw-123"), "{warnings:?}");

    let (warnings, _) = warnings_at_start(with_password, 0o600);
    assert_eq!(warnings, Vec::<String>::new(), "mode 600");

    // password_command keeps the secret out of the file: no warning however readable.
    let with_command = "[[account]]\nname = \"alice\"\nuri = \"sip:alice@127.0.0.1\"\n\
                        password_command = \"echo pw-123\"\n";
    let (warnings, _) = warnings_at_start(with_command, 0o644);
    assert_eq!(warnings, Vec::<String>::new(), "password_command, mode 644");
}
