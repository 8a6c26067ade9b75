//! What `cargo install --path .` gives a user: one binary that works wherever it is put (every
//! asset is compiled in; nothing is read from the source tree), and that prints its own shell
//! completions and man page, generated from the same CLI definition as `--help`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BIN: &str = env!("CARGO_BIN_EXE_sipterm");

/// Every long option of the CLI, as a user would look for it in a completion or the man page.
const OPTIONS: &[&str] = &[
    "--config",
    "--account",
    "--headless",
    "--listen",
    "--audio-in",
    "--audio-out",
    "--auto-answer",
    "--levels",
    "--ladder-out",
    "--pcap-out",
    "--list-devices",
    "--log-file",
    "--verbose",
];

fn run(args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let output = Command::new(BIN).args(args).output()?;
    assert!(
        output.status.success(),
        "sipterm {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_option() -> TestResult {
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell])?;
        println!("{shell}: {} bytes", script.len());
        for option in OPTIONS {
            // fish lists long options without their dashes (`-l pcap-out`).
            let bare = option.trim_start_matches('-');
            assert!(
                script.contains(option)
                    || (shell == "fish" && script.contains(&format!("-l {bare}"))),
                "{shell} completion lacks {option}"
            );
        }
    }
    // bash can load it: `complete` registers the function for sipterm.
    let script = run(&["completions", "bash"])?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sipterm.bash");
    std::fs::write(&path, script)?;
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p sipterm", path.display()))
        .output()?;
    let registered = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && registered.contains("sipterm"),
        "bash did not register the completion: {registered} {}",
        String::from_utf8_lossy(&check.stderr)
    );
    Ok(())
}

#[test]
fn man_page_documents_every_option() -> TestResult {
    let page = run(&["man"])?;
    assert!(
        page.starts_with(".ie") || page.contains(".TH sipterm"),
        "not roff:\n{page}"
    );
    assert!(page.contains(".TH sipterm 1"), "{page}");
    for option in OPTIONS {
        // roff escapes the dashes: `\-\-pcap\-out`.
        let escaped = option.replace('-', "\\-");
        assert!(
            page.contains(&escaped),
            "the man page lacks {option}:\n{page}"
        );
    }
    assert!(page.contains("completions"), "the subcommands are listed");
    // `man` renders it without complaint, when man is installed.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sipterm.1");
    std::fs::write(&path, &page)?;
    if let Ok(output) = Command::new("man")
        .arg("-l")
        .arg(&path)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
    {
        let text = String::from_utf8_lossy(&output.stdout);
        println!("man -l: {} lines", text.lines().count());
        assert!(
            !output.status.success() || text.contains("pcap"),
            "man rendered no options:\n{text}"
        );
    }
    Ok(())
}

/// The binary copied elsewhere (as `cargo install` does) and started outside the source tree,
/// with a fresh home: it starts on the built-in account and quits cleanly.
#[test]
fn an_installed_copy_runs_outside_the_source_tree() -> TestResult {
    let home = tempfile::tempdir()?;
    let bin_dir = home.path().join("bin");
    std::fs::create_dir_all(&bin_dir)?;
    let installed = bin_dir.join("sipterm");
    std::fs::copy(BIN, &installed)?;
    let mut child = Command::new(&installed)
        .args(["--headless", "--listen", "127.0.0.1:0"])
        .args(["--audio-in", "null", "--audio-out", "null"])
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_STATE_HOME", home.path().join("state"))
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // Lines come through a thread, so every wait below is bounded; a stuck child is killed
    // through its own handle (never by PID after it may have been reaped).
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let result = (|| -> TestResult {
        let ready = rx.recv_timeout(Duration::from_secs(20))?;
        println!("{ready}");
        let event: serde_json::Value = serde_json::from_str(&ready)?;
        assert_eq!(event["event"], "ready", "{ready}");
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        writeln!(stdin, "dial echo")?;
        loop {
            let line = rx.recv_timeout(Duration::from_secs(20))?;
            if line.contains("\"state\":\"confirmed\"") {
                break;
            }
        }
        writeln!(stdin, "quit")?;
        for _ in 0..200 {
            if let Some(status) = child.try_wait()? {
                assert!(status.success(), "{status:?}");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("sipterm did not exit after quit".into())
    })();
    if child.try_wait()?.is_none() {
        child.kill()?;
        child.wait()?;
    }
    result
}
