//! The terminal UI: the second front end over the engine's `Event`s and `Command`s.
//!
//! Layers: `keys` (key/mouse -> `Action`), `action::update` (Action -> state change + Command),
//! `state` (engine events -> state), `view` (pure render). This file is the shell: terminal
//! set-up and restore, and the event loop.

#[cfg(test)]
mod accounts_tests;
pub mod action;
pub mod history;
pub mod keys;
pub mod messaging;
pub mod state;
mod stderr;
pub mod view;

use std::io::{self, Stdout};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;

use crate::cli::Cli;
use crate::config::Config;
use crate::driver::command::Command;
use crate::driver::router;
use crate::event::Event;
use crate::session_export::SessionExport;

use self::action::update;
use self::state::UiState;

/// How long quitting (unregistering) may take before we leave anyway.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The duration timers move once a second while a call is up.
const TICK: Duration = Duration::from_secs(1);
/// Engine events applied before a redraw: a burst becomes one frame, not hundreds.
const EVENT_BATCH: usize = 256;

/// Runs the TUI until the user quits (or the engine stops).
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let mut setups = crate::app::sip_setups(&cli, &config)?;
    let accounts: Vec<String> = setups
        .iter()
        .map(|s| s.setup.account.name.clone())
        .collect();
    let enabled: Vec<bool> = setups.iter().map(|s| s.enabled).collect();
    // --ladder-out / --pcap-out work here as in headless mode (`session_export`).
    let (mut export, export_problems) = SessionExport::open(&cli);
    for account in &mut setups {
        account.setup.media.capture = export.media_tap();
    }
    let (event_tx, mut event_rx) = mpsc::channel::<Event>(4096);
    let handle = router::start(setups, event_tx)
        .await
        .context("cannot start the SIP engine")?;
    export.set_local(handle.listen);
    tracing::info!(listen = %handle.listen, ?accounts, "TUI engine ready");

    let mut state = UiState::new(&accounts, config.log.sip_trace_limit, Instant::now());
    for (status, enabled) in state.accounts.iter_mut().zip(enabled) {
        if !enabled {
            status.state = state::AccountState::Disabled;
        }
    }
    // Before the alternate screen: enumerating ALSA devices prints alsa-lib noise to stderr.
    (state.input_devices, state.output_devices) = crate::media::audio::device_ids();
    state.contacts = config.contacts.clone();
    // The account's auto_answer (or --auto-answer) answers ringing calls here too, as in
    // headless mode.
    state.auto_answer = crate::app::auto_answer(&cli, &config);
    // No --config and nothing at the default path: the built-in local account runs, and the
    // log pane says where the config file goes and how to try a call.
    if cli.config.is_none()
        && let Some(path) = Config::default_path().filter(|p| !p.exists())
    {
        // `~/…` when under the home dir: shorter, and what the user would type.
        let home = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf());
        let shown = match home.as_deref().and_then(|h| path.strip_prefix(h).ok()) {
            Some(rest) => format!("~/{}", rest.display()),
            None => path.display().to_string(),
        };
        state.first_run = Some(shown);
    }
    state.wall_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let history_path = history::default_path();
    let mut history_warning = None;
    if let Some(path) = history_path.clone() {
        // Before the terminal is set up; the file is small and bounded (1 MiB).
        let (calls, warning) = history::load(&path);
        state.history = calls;
        if let Some(warning) = warning {
            tracing::warn!("{warning}");
            history_warning = Some(warning);
        }
    }
    state.apply_event(
        Event::Ready {
            listen: handle.listen.to_string(),
            tls_listen: handle.tls_listen.map(|a| a.to_string()),
            accounts: handle.accounts.clone(),
        },
        Instant::now(),
    );
    if let Some(warning) = history_warning {
        state.set_status(format!("warning: {warning}"));
    }
    state.presence_accounts = config
        .accounts
        .iter()
        .filter(|a| a.presence && a.registrar.is_some())
        .map(|a| a.name.clone())
        .collect();
    state.voicemail_numbers = config
        .accounts
        .iter()
        .filter_map(|a| Some((a.name.clone(), a.voicemail.clone()?)))
        .collect();
    // The user's own contacts (added in the TUI), after the config's read-only ones.
    let contacts_path = messaging::contacts_path();
    if let Some(path) = &contacts_path {
        let (contacts, warning) = messaging::load_contacts(path);
        state.user_contacts = contacts;
        if let Some(warning) = warning {
            tracing::warn!("{warning}");
            state.set_status(format!("warning: {warning}"));
        }
    }
    // The conversations kept from earlier runs (bounded, cleaned again on load).
    let messages_path = messaging::messages_path();
    if let Some(path) = &messages_path {
        let (chats, warning) = messaging::load_chats(path);
        state.chats = chats;
        if let Some(warning) = warning {
            tracing::warn!("{warning}");
            state.set_status(format!("warning: {warning}"));
        }
    }
    for problem in export_problems {
        state.apply_event(problem, Instant::now());
    }

    // C libraries (alsa-lib) write to fd 2; keep that off the screen for as long as we own it.
    let _stderr = crate::logging::log_file_path(config.log.file.as_deref())
        .map(|log| log.with_extension("stderr.log"))
        .and_then(|path| stderr::StderrRedirect::to_file(&path).ok());
    let mut terminal = TerminalGuard::enter().context("cannot set up the terminal")?;
    let commands = handle.commands.clone();
    let mut task = handle.task;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut quit_deadline: Option<tokio::time::Instant> = None;
    let mut dirty = true;
    let mut input_closed = false;
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    // Exports run in blocking tasks; they report back here for the status line.
    let (export_tx, mut export_rx) = mpsc::channel::<String>(8);

    loop {
        if let Some(call_id) = state.export_request.take() {
            start_export(&mut state, &call_id, export_tx.clone());
        }
        if state.chats_dirty {
            state.chats_dirty = false;
            save_chats(messages_path.clone(), state.chats.clone());
        }
        if state.contacts_dirty {
            state.contacts_dirty = false;
            if let Some(path) = contacts_path.clone() {
                let contacts = state.user_contacts.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(error) = messaging::save_contacts(&path, &contacts) {
                        tracing::warn!(%error, path = %path.display(), "cannot save the contacts");
                    }
                });
            }
        }
        if dirty {
            state.dropped_traces = handle.dropped_traces.load(Ordering::Relaxed);
            terminal
                .terminal
                .draw(|frame| view::render(&state, frame))
                .context("cannot draw")?;
            dirty = false;
        }
        let ticking = state.needs_ticks();
        let auto_answer_at = state.auto_answer_due.map(|(_, at)| {
            tokio::time::Instant::now() + at.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            _ = sleep_until(auto_answer_at), if auto_answer_at.is_some() => {
                state.tick(Instant::now());
                if let Some(command) = action::auto_answer(&mut state, Instant::now()) {
                    send_commands(&mut state, Some(command), &commands);
                }
                dirty = true;
            }
            input = keys.next(), if !input_closed => match input {
                Some(Ok(TermEvent::Key(key))) => {
                    if let Some(action) = keys::key_action(&state, key) {
                        dirty |= act(&mut state, action, &commands);
                    }
                }
                Some(Ok(TermEvent::Mouse(mouse))) => {
                    let size = terminal.terminal.size().context("terminal size")?;
                    let areas = view::layout(&state, ratatui::layout::Rect::new(0, 0, size.width, size.height));
                    if let Some(action) = keys::mouse_action(&state, areas.dialpad, areas.bottom, mouse) {
                        dirty |= act(&mut state, action, &commands);
                    }
                }
                Some(Ok(TermEvent::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "terminal input failed");
                    state.set_status(format!("terminal input failed: {error}"));
                    dirty = true;
                }
                // The terminal is gone: nothing more can be typed, so quit.
                None => {
                    input_closed = true;
                    begin_quit(&mut state, &commands);
                }
            },
            Some(event) = event_rx.recv() => {
                let now = Instant::now();
                export.on_event(&event);
                if cli.levels {
                    log_levels(&event);
                }
                state.apply_event(event, now);
                let mut batch = 1;
                while batch < EVENT_BATCH
                    && let Ok(event) = event_rx.try_recv()
                {
                    export.on_event(&event);
                    if cli.levels {
                        log_levels(&event);
                    }
                    state.apply_event(event, now);
                    batch += 1;
                }
                dirty = true;
                if state.history_dirty {
                    state.history_dirty = false;
                    save_history(history_path.clone(), state.history.clone());
                }
            }
            Some(message) = export_rx.recv() => {
                state.set_status(message);
                dirty = true;
            }
            _ = tick.tick(), if ticking => {
                state.tick(Instant::now());
                dirty = true;
            }
            _ = async { match sigterm.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending::<()>().await } }, if !state.quitting => {
                begin_quit(&mut state, &commands);
                dirty = true;
            }
            _ = &mut task => break,
            _ = sleep_until(quit_deadline) => break,
        }
        if state.quitting && quit_deadline.is_none() {
            quit_deadline = Some(tokio::time::Instant::now() + QUIT_TIMEOUT);
        }
    }
    drop(terminal);
    // The screen is the user's shell again: say here what went wrong with the exports.
    for problem in export.finish().await {
        if let Event::Warning { message } | Event::Error { message } = problem {
            eprintln!("sipterm: {message}");
        }
    }
    Ok(())
}

/// `--levels` in the TUI: the screen is taken, so the `levels` events headless mode would
/// print go to the log file instead, as the same JSON lines (the log's timestamp before each).
fn log_levels(event: &Event) {
    if matches!(event, Event::Levels { .. })
        && let Ok(line) = serde_json::to_string(event)
    {
        tracing::info!(target: crate::logging::LEVELS_TARGET, "{line}");
    }
}

/// Applies a user action; sends its command without ever blocking the loop. Returns true
/// (redraw) always: every action changes something visible or the status line.
fn act(state: &mut UiState, action: action::Action, commands: &mpsc::Sender<Command>) -> bool {
    state.tick(Instant::now());
    let command = update(state, action);
    send_commands(state, command, commands);
    true
}

/// Sends the queued commands, then `command`: the other calls go on hold before this one is
/// answered.
fn send_commands(state: &mut UiState, command: Option<Command>, commands: &mpsc::Sender<Command>) {
    let queued: Vec<Command> = state.outbox.drain(..).chain(command).collect();
    for command in queued {
        if let Err(error) = commands.try_send(command) {
            tracing::warn!(%error, "engine command queue full or closed");
            state.set_status(format!("engine busy, command dropped: {error}"));
        }
    }
}

/// Writes the call history on a blocking thread: file I/O never stalls the render loop.
fn save_history(path: Option<std::path::PathBuf>, calls: Vec<history::HistoryEntry>) {
    let Some(path) = path else { return };
    tokio::task::spawn_blocking(move || {
        if let Err(error) = history::save(&path, &calls) {
            tracing::warn!(%error, path = %path.display(), "cannot save the call history");
        }
    });
}

/// Writes the message history on a blocking thread, like the call history.
fn save_chats(path: Option<std::path::PathBuf>, chats: messaging::Chats) {
    let Some(path) = path else { return };
    tokio::task::spawn_blocking(move || {
        if let Err(error) = messaging::save_chats(&path, &chats) {
            tracing::warn!(%error, path = %path.display(), "cannot save the message history");
        }
    });
}

/// Writes the PlantUML ladder of one call to the XDG data dir in a blocking task (never in
/// the render loop); the status line says where, and later whether it worked.
fn start_export(state: &mut UiState, call_id: &str, done: mpsc::Sender<String>) {
    let Some(local) = state
        .listen
        .as_deref()
        .and_then(|l| l.parse::<std::net::SocketAddr>().ok())
    else {
        state.set_status("export: our SIP address is not known yet");
        return;
    };
    // Log times are relative to `started`; turn them into wall-clock times.
    let wall_start = std::time::SystemTime::now()
        .checked_sub(Instant::now().saturating_duration_since(state.started))
        .unwrap_or(std::time::UNIX_EPOCH);
    let records: Vec<crate::export::Record> = state
        .call_log(call_id)
        .into_iter()
        .filter_map(|e| {
            Some(crate::export::Record {
                time: wall_start + e.at,
                dir: e.dir,
                local,
                peer: e.peer.parse().ok()?,
                raw: e.raw.clone(),
            })
        })
        .collect();
    let Some(dir) =
        directories::ProjectDirs::from("", "", "sipterm").map(|d| d.data_dir().to_path_buf())
    else {
        state.set_status("export: no home directory for the data dir");
        return;
    };
    let name: String = call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let path = dir.join(format!("call-{name}.puml"));
    state.set_status(format!(
        "exporting {} messages to {}",
        records.len(),
        path.display()
    ));
    let title = format!("Call-ID {call_id}");
    tokio::task::spawn_blocking(move || {
        let all: Vec<&crate::export::Record> = records.iter().collect();
        let text = crate::export::plantuml::render(&all, Some(&title));
        // The plain-text dump of the same messages goes next to it (call-….txt).
        let dump = crate::export::text::render(&all);
        let result = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, text))
            .and_then(|()| std::fs::write(path.with_extension("txt"), dump));
        let message = match result {
            Ok(()) => format!("ladder written to {} (and .txt)", path.display()),
            Err(error) => format!("export to {} failed: {error}", path.display()),
        };
        let _ = done.blocking_send(message);
    });
}

/// Quits without asking (terminal closed, SIGTERM): the engine unregisters, then stops.
fn begin_quit(state: &mut UiState, commands: &mpsc::Sender<Command>) {
    if !state.quitting {
        state.quitting = true;
        state.set_status("quitting…");
        let _ = commands.try_send(Command::Quit);
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Raw mode + alternate screen + mouse for as long as it lives; restored on drop and, through
/// a panic hook, on panic (a panic must not leave the user's shell in raw mode).
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(error) = execute!(stdout, EnterAlternateScreen, EnableMouseCapture) {
            restore_terminal();
            return Err(error);
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(error) => {
                restore_terminal();
                Err(error)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        restore_terminal();
    }
}

fn restore_terminal() {
    stderr::restore();
    let _ = execute!(io::stdout(), DisableMouseCapture, LeaveAlternateScreen);
    let _ = disable_raw_mode();
}

fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}
