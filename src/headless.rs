//! The headless front end: one command per stdin line, one JSON event per stdout line.
//! Same engine and events as the TUI; scripts and tests drive sipterm through it.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::cli::Cli;
use crate::config::Config;
use crate::driver::command::{Command, parse_line};
use crate::driver::router;
use crate::event::Event;
use crate::session_export::SessionExport;

/// How long `quit` may take (unregistering) before we leave anyway.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes one event as a JSON line and flushes at once (a test reading the pipe sees it now).
pub fn emit(event: &Event) {
    let Ok(line) = serde_json::to_string(event) else {
        return;
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let mut setups = crate::app::sip_setups(&cli, &config)?;
    // --ladder-out / --pcap-out: the pcap file is written as the session goes (RTP included).
    let (mut export, problems) = SessionExport::open(&cli);
    for problem in &problems {
        emit(problem);
    }
    for account in &mut setups {
        account.setup.media.capture = export.media_tap();
    }
    let account_names: Vec<String> = setups
        .iter()
        .map(|s| s.setup.account.name.clone())
        .collect();
    let (event_tx, mut event_rx) = mpsc::channel::<Event>(4096);
    let handle = match router::start(setups, event_tx.clone()).await {
        Ok(handle) => handle,
        Err(e) => {
            emit(&Event::Error {
                message: e.to_string(),
            });
            return Err(e).context("cannot start the SIP engine");
        }
    };
    tracing::info!(listen = %handle.listen, accounts = ?account_names, "headless engine ready");
    emit(&Event::Ready {
        listen: handle.listen.to_string(),
        tls_listen: handle.tls_listen.map(|a| a.to_string()),
        accounts: handle.accounts.clone(),
    });
    export.set_local(handle.listen);

    let (line_tx, mut line_rx) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line_tx.send(line).await.is_err() {
                return;
            }
        }
        // EOF: no more commands, but keep running until a signal (daemon-like use).
    });

    let commands = handle.commands.clone();
    let mut task = handle.task;
    let mut quitting = false;
    let mut pending_auto_answer: Option<(Option<u64>, tokio::time::Instant)> = None;
    let mut quit_deadline = None;
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        let deadline = quit_deadline;
        tokio::select! {
            Some(event) = event_rx.recv() => {
                if let Event::Call { call, state, account, .. } = &event
                    && state == "incoming"
                    && let Some(delay) = crate::app::auto_answer_for(&cli, &config, account.as_deref())
                {
                    pending_auto_answer = Some((call.parse::<u64>().ok(), tokio::time::Instant::now() + delay));
                }
                export.on_event(&event);
                // Ten lines a second per call would drown the events scripts wait for.
                if !cli.levels && matches!(event, Event::Levels { .. }) {
                    continue;
                }
                emit(&event);
            }
            _ = async { match pending_auto_answer { Some((_, at)) => tokio::time::sleep_until(at).await, None => std::future::pending::<()>().await } } => {
                if let Some((call, _)) = pending_auto_answer.take() {
                    let _ = commands.send(Command::Answer(call)).await;
                }
            }
            Some(line) = line_rx.recv(), if !quitting => match parse_line(&line) {
                Ok(Some(Command::Quit)) => {
                    quitting = true;
                    quit_deadline = Some(tokio::time::Instant::now() + QUIT_TIMEOUT);
                    let _ = commands.send(Command::Quit).await;
                }
                Ok(Some(Command::Answer(call))) => {
                    pending_auto_answer = None;
                    let _ = commands.send(Command::Answer(call)).await;
                }
                Ok(Some(cmd)) => {
                    let _ = commands.send(cmd).await;
                }
                Ok(None) => {}
                Err(message) => emit(&Event::Error { message }),
            },
            _ = tokio::signal::ctrl_c(), if !quitting => {
                quitting = true;
                quit_deadline = Some(tokio::time::Instant::now() + QUIT_TIMEOUT);
                let _ = commands.send(Command::Quit).await;
            }
            _ = async { match sigterm.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending::<()>().await } }, if !quitting => {
                quitting = true;
                quit_deadline = Some(tokio::time::Instant::now() + QUIT_TIMEOUT);
                let _ = commands.send(Command::Quit).await;
            }
            _ = &mut task => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending::<()>().await } } => break,
        }
    }
    while let Ok(event) = event_rx.try_recv() {
        export.on_event(&event);
        if !cli.levels && matches!(event, Event::Levels { .. }) {
            continue;
        }
        emit(&event);
    }
    for problem in export.finish().await {
        emit(&problem);
    }
    Ok(())
}
