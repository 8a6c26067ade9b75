//! Child processes that cannot outlive the test: each runs in its own
//! process group, which is killed on Drop; their output goes to files for
//! post-mortem, or (for JSON-lines children) through a reader thread so a
//! hung child cannot hang the test.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::HarnessError;

/// Lines kept for error messages.
const RECENT_LINES: usize = 40;
/// A single stdout line longer than this is cut (the reader still drains it).
const MAX_LINE_BYTES: u64 = 64 * 1024;
/// How often `wait_timeout` looks at the child.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Where a child's stdout goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// To `<log dir>/stdout.log` only.
    File,
    /// Line by line to `expect_line`, and also to `<log dir>/stdout.log`.
    Lines,
}

/// A running child process. Dropping it kills its whole process group.
pub struct ChildGuard {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<Receiver<String>>,
    recent: VecDeque<String>,
    exit_status: Option<ExitStatus>,
    log_dir: PathBuf,
    // Keeps the temp dir alive when the guard created it.
    _owned_dir: Option<tempfile::TempDir>,
}

impl ChildGuard {
    /// Starts `command` in a new process group with stdin piped, stderr to
    /// `<log dir>/stderr.log` and stdout as `stdout` says. `log_dir` None:
    /// a fresh temp dir (kept while the guard lives; see `log_dir()`).
    pub fn spawn(
        name: &str,
        mut command: Command,
        stdout: Stdout,
        log_dir: Option<&Path>,
    ) -> Result<ChildGuard, HarnessError> {
        let (owned_dir, log_dir) = match log_dir {
            Some(dir) => (None, dir.to_path_buf()),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("sipterm-{name}-"))
                    .tempdir()
                    .map_err(|e| HarnessError::io("creating a log dir", e))?;
                let path = dir.path().to_path_buf();
                (Some(dir), path)
            }
        };
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| HarnessError::io(format!("creating {}", log_dir.display()), e))?;
        let stdout_path = log_dir.join("stdout.log");
        let stderr_path = log_dir.join("stderr.log");
        let stderr_file = File::create(&stderr_path)
            .map_err(|e| HarnessError::io(format!("creating {}", stderr_path.display()), e))?;
        let stdout_file = File::create(&stdout_path)
            .map_err(|e| HarnessError::io(format!("creating {}", stdout_path.display()), e))?;

        command
            .stdin(Stdio::piped())
            .stderr(Stdio::from(stderr_file))
            // Own process group, so Drop can kill the children it forks.
            .process_group(0);
        // In Lines mode the reader thread copies stdout into the file.
        let mut stdout_copy = None;
        match stdout {
            Stdout::File => {
                command.stdout(Stdio::from(stdout_file));
            }
            Stdout::Lines => {
                command.stdout(Stdio::piped());
                stdout_copy = Some(stdout_file);
            }
        }
        let mut child = command
            .spawn()
            .map_err(|e| HarnessError::io(format!("starting {name} ({command:?})"), e))?;
        let stdin = child.stdin.take();
        let lines = match (stdout_copy, child.stdout.take()) {
            (Some(copy), Some(pipe)) => Some(spawn_line_reader(name, pipe, copy)?),
            _ => None,
        };
        Ok(ChildGuard {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            recent: VecDeque::new(),
            exit_status: None,
            log_dir,
            _owned_dir: owned_dir,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Directory holding stdout.log, stderr.log and anything the peer writes.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The exit status if the child has ended (without blocking).
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit_status.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit_status = Some(status);
        }
        self.exit_status
    }

    /// Waits up to `timeout` for the child to end; None if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            thread::sleep(POLL_EVERY.min(deadline - now));
        }
    }

    /// Writes `line` and a newline to the child's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<(), HarnessError> {
        let name = self.name.clone();
        let stdin = self.stdin.as_mut().ok_or_else(|| HarnessError::Io {
            action: format!("writing to {name}"),
            source: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin closed"),
        })?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| HarnessError::io(format!("writing {line:?} to {name}"), e))
    }

    /// Closes the child's stdin (EOF), e.g. to let it quit.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Reads stdout lines (Stdout::Lines only) until one satisfies `matches`;
    /// lines before it are skipped (and kept for the error message).
    pub fn expect_line(
        &mut self,
        mut matches: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        self.expect_line_described("a matching stdout line", &mut matches, timeout)
    }

    /// Like `expect_line`, naming what is awaited in the error.
    pub fn expect_line_described(
        &mut self,
        what: &str,
        matches: &mut dyn FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let Some(lines) = self.lines.as_ref() else {
                return Err(HarnessError::InvalidInput {
                    what: "expect_line call",
                    value: self.name.clone(),
                    why: "the child was not started with Stdout::Lines",
                });
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(remaining) {
                Ok(line) => {
                    let hit = matches(&line);
                    self.remember(line.clone());
                    if hit {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(HarnessError::Timeout {
                        what: format!("{what} from {}", self.name),
                        waited: started.elapsed(),
                        recent: self.recent_output(),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self
                        .wait_timeout(Duration::from_secs(1))
                        .map_or_else(|| "stdout closed".to_owned(), |s| s.to_string());
                    return Err(HarnessError::Exited {
                        name: self.name.clone(),
                        status,
                        what: what.to_owned(),
                        recent: self.recent_output(),
                    });
                }
            }
        }
    }

    /// The last stdout lines seen by `expect_line`, then the tail of stderr.
    pub fn recent_output(&self) -> String {
        let mut out: Vec<String> = self.recent.iter().cloned().collect();
        let stderr = tail_of_file(&self.log_dir.join("stderr.log"), 4096);
        if !stderr.is_empty() {
            out.push(format!("--- stderr ({}) ---", self.log_dir.display()));
            out.push(stderr);
        }
        out.join("\n")
    }

    /// Sends SIGTERM to the group, waits up to `grace`, then SIGKILL.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal_group("TERM");
        if let Some(status) = self.wait_timeout(grace) {
            // The leader is gone; stragglers in its group get killed too.
            self.signal_group("KILL");
            return Some(status);
        }
        self.kill();
        self.exit_status
    }

    /// SIGKILL to the whole process group, then reap the leader.
    pub fn kill(&mut self) {
        self.signal_group("KILL");
        let _ = self.child.kill();
        if self.exit_status.is_none()
            && let Ok(status) = self.child.wait()
        {
            self.exit_status = Some(status);
        }
    }

    fn signal_group(&self, signal: &str) {
        // The group id is the leader's pid (process_group(0)). The kernel does
        // not hand out a pid that is still some group's id, so this cannot hit
        // a stranger while any member of our group lives.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args([format!("-{signal}").as_str(), "--", group.as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn remember(&mut self, line: String) {
        if self.recent.len() == RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_line_reader(
    name: &str,
    pipe: impl Read + Send + 'static,
    mut copy: File,
) -> Result<Receiver<String>, HarnessError> {
    let (sender, receiver) = mpsc::channel();
    thread::Builder::new()
        .name(format!("{name}-stdout"))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            loop {
                let mut raw = Vec::new();
                // Bounded read: a child spewing one endless line cannot eat memory.
                match (&mut reader)
                    .take(MAX_LINE_BYTES)
                    .read_until(b'\n', &mut raw)
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if raw.last() != Some(&b'\n') && raw.len() as u64 == MAX_LINE_BYTES {
                    // Drop the rest of the overlong line, a bounded chunk at a time.
                    loop {
                        let mut rest = Vec::new();
                        match (&mut reader)
                            .take(MAX_LINE_BYTES)
                            .read_until(b'\n', &mut rest)
                        {
                            Ok(0) | Err(_) => break,
                            Ok(_) if rest.last() == Some(&b'\n') => break,
                            Ok(_) => {}
                        }
                    }
                    raw.push(b'\n');
                }
                let _ = copy.write_all(&raw);
                let line = String::from_utf8_lossy(&raw)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned();
                if sender.send(line).is_err() {
                    // Nobody listens any more; keep draining so the child
                    // never blocks on a full pipe.
                    continue;
                }
            }
        })
        .map_err(|e| HarnessError::io("starting the stdout reader thread", e))?;
    Ok(receiver)
}

/// The last `max_bytes` of a file, lossily decoded; empty if unreadable.
pub fn tail_of_file(path: &Path, max_bytes: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(max_bytes);
    String::from_utf8_lossy(bytes.get(start..).unwrap_or(&[])).into_owned()
}
