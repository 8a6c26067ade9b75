//! Several accounts at once: one SIP engine (`sip_task`) per account, each with its own
//! sockets, registration, NAT state and calls, behind this small router. Front ends see one
//! command channel and one event stream, as with a single account: the router sends each
//! command to the engine it is about (the call's account, the account named, or the default
//! one) and passes every event on. Call numbers are unique across the engines
//! (`ua::CallNumbers`), so a call number alone names a call.
//!
//! Why engines per account rather than one user agent with several accounts: the call and
//! media path (`sip_task`, `media_task`, the UA's call code) stays exactly as it was, which
//! keeps this change apart from the ICE and audio work on the same files; and "each account
//! has its own registration, transport and NAT state" holds by construction (separate
//! sockets, STUN, keep-alives, accept_from and trusted proxies). The price: every account has
//! its own port, and conferences and attended transfers join calls of one account only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::command::{CallRef, Command};
use super::sip_task::{self, StartError};
use crate::app::AccountSetup;
use crate::event::{AccountListen, CallState, Event};

/// How long a disabled account's engine may take to unregister before its port is reused.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RouterHandle {
    pub commands: mpsc::Sender<Command>,
    /// The default account's address (the first running account).
    pub listen: SocketAddr,
    pub tls_listen: Option<SocketAddr>,
    /// Every running account and its address.
    pub accounts: Vec<AccountListen>,
    /// Ends once every engine has stopped after `Command::Quit`.
    pub task: JoinHandle<()>,
    pub dropped_traces: Arc<AtomicU64>,
}

struct Running {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

struct Slot {
    name: String,
    setup: AccountSetup,
    engine: Option<Running>,
    /// A disabled engine still unregistering. Its command sender stays alive: a closed
    /// channel would make the engine shut down a second time, cutting the un-REGISTER short.
    stopping: Option<Running>,
}

struct Router {
    slots: Vec<Slot>,
    /// Live calls: number -> (slot, state).
    calls: BTreeMap<u64, (usize, CallState)>,
    /// The slot the last dial went to (commands naming no call before its call event).
    last_dial: Option<usize>,
    merged_tx: Option<mpsc::Sender<(usize, Event)>>,
    events: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
    quitting: bool,
}

/// Starts the engines of the enabled accounts (at least one must start) and the router.
pub async fn start(
    setups: Vec<AccountSetup>,
    events: mpsc::Sender<Event>,
) -> Result<RouterHandle, StartError> {
    let dropped = Arc::new(AtomicU64::new(0));
    let (merged_tx, merged_rx) = mpsc::channel::<(usize, Event)>(4096);
    let mut router = Router {
        slots: Vec::new(),
        calls: BTreeMap::new(),
        last_dial: None,
        merged_tx: Some(merged_tx),
        events: events.clone(),
        dropped: dropped.clone(),
        quitting: false,
    };
    let mut listen = None;
    let mut tls_listen = None;
    let mut accounts = Vec::new();
    let any_enabled = setups.iter().any(|s| s.enabled);
    for (index, setup) in setups.into_iter().enumerate() {
        let name = setup.setup.account.name.clone();
        router.slots.push(Slot {
            name: name.clone(),
            setup,
            engine: None,
            stopping: None,
        });
        let enabled = router.slots[index].setup.enabled || (!any_enabled && index == 0);
        if !enabled {
            continue;
        }
        match router.start_engine(index).await {
            Ok((bound, tls)) => {
                listen.get_or_insert(bound);
                if tls_listen.is_none() {
                    tls_listen = tls;
                }
                accounts.push(AccountListen {
                    name,
                    listen: bound.to_string(),
                });
            }
            // The first account's failure stops sipterm as before; a later one is reported.
            Err(e) if listen.is_none() => return Err(e),
            Err(e) => {
                let _ = events
                    .send(Event::Error {
                        message: format!("account {name}: {e}"),
                    })
                    .await;
            }
        }
    }
    let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let (commands, command_rx) = mpsc::channel(64);
    let task = tokio::spawn(router.run(command_rx, merged_rx));
    Ok(RouterHandle {
        commands,
        listen,
        tls_listen,
        accounts,
        task,
        dropped_traces: dropped,
    })
}

impl Router {
    /// Starts the engine of slot `index`; returns its SIP and TLS addresses.
    async fn start_engine(
        &mut self,
        index: usize,
    ) -> Result<(SocketAddr, Option<SocketAddr>), StartError> {
        let Some(merged) = self.merged_tx.clone() else {
            return Err(StartError::Stopping);
        };
        let Some(slot) = self.slots.get_mut(index) else {
            return Err(StartError::Stopping);
        };
        if let Some(old) = slot.stopping.take() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, old.task).await;
        }
        let (tx, mut rx) = mpsc::channel::<Event>(4096);
        let handle =
            sip_task::start_with(slot.setup.setup.clone(), tx, self.dropped.clone()).await?;
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if merged.send((index, event)).await.is_err() {
                    return;
                }
            }
        });
        slot.engine = Some(Running {
            commands: handle.commands,
            task: handle.task,
        });
        Ok((handle.listen, handle.tls_listen))
    }

    fn default_slot(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.engine.is_some())
    }

    fn slot_named(&self, name: &str) -> Result<usize, String> {
        match self.slots.iter().position(|s| s.name == name) {
            Some(i) if self.slots[i].engine.is_some() => Ok(i),
            Some(_) => Err(format!(
                "account {name} is disabled (account enable {name})"
            )),
            None => Err(format!(
                "no account named `{name}`; accounts: {}",
                self.slots
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut merged: mpsc::Receiver<(usize, Event)>,
    ) {
        let mut commands_open = true;
        loop {
            tokio::select! {
                command = commands.recv(), if commands_open && !self.quitting => match command {
                    Some(command) => self.route(command).await,
                    None => {
                        commands_open = false;
                        self.quit();
                    }
                },
                event = merged.recv() => match event {
                    Some((slot, event)) => {
                        self.observe(slot, &event);
                        let _ = self.events.send(event).await;
                    }
                    // Every engine stopped and the router holds no sender any more.
                    None => break,
                },
            }
        }
        for slot in &mut self.slots {
            if let Some(engine) = slot.engine.take() {
                let _ = engine.task.await;
            }
            if let Some(stopping) = slot.stopping.take() {
                let _ = tokio::time::timeout(STOP_TIMEOUT, stopping.task).await;
            }
        }
    }

    fn quit(&mut self) {
        self.quitting = true;
        // New engines need this sender; without it the merged stream ends with the engines.
        self.merged_tx = None;
        for slot in &self.slots {
            if let Some(engine) = &slot.engine {
                let _ = engine.commands.try_send(Command::Quit);
            }
        }
    }

    fn observe(&mut self, slot: usize, event: &Event) {
        if let Event::Call { call, state, .. } = event
            && let Ok(id) = call.parse::<u64>()
        {
            if *state == CallState::Terminated {
                self.calls.remove(&id);
            } else {
                self.calls.insert(id, (slot, *state));
            }
        }
    }

    async fn send_to(&mut self, slot: usize, command: Command) {
        let Some(engine) = self.slots.get(slot).and_then(|s| s.engine.as_ref()) else {
            return self.error("that account is disabled".into()).await;
        };
        if engine.commands.send(command).await.is_err() {
            self.error("the account's engine has stopped".into()).await;
        }
    }

    async fn error(&mut self, message: String) {
        let _ = self.events.send(Event::Error { message }).await;
    }

    /// The slot a command about `call` goes to, and the call it means. A named call goes to
    /// its account. With no call named: while every live call is on one account (or none is
    /// up), that account gets the command unchanged (its user agent picks the call, as with
    /// one account); across accounts the router picks it: the newest ringing call for
    /// answer/reject, else the newest established one, else the newest.
    fn call_target(&self, call: CallRef, ringing: bool) -> Option<(usize, CallRef)> {
        if let Some(id) = call {
            return self.calls.get(&id).map(|(slot, _)| (*slot, Some(id)));
        }
        let mut slots: Vec<usize> = self.calls.values().map(|(s, _)| *s).collect();
        slots.dedup();
        slots.sort_unstable();
        slots.dedup();
        match slots.as_slice() {
            [] => self
                .last_dial
                .or_else(|| self.default_slot())
                .map(|s| (s, None)),
            [one] => Some((*one, None)),
            _ => {
                let newest = |pick: &dyn Fn(CallState) -> bool| {
                    self.calls
                        .iter()
                        .rev()
                        .find(|(_, (_, state))| pick(*state))
                        .map(|(id, (slot, _))| (*slot, Some(*id)))
                };
                if ringing {
                    newest(&|s| s == CallState::Incoming)
                } else {
                    newest(&|s| matches!(s, CallState::Confirmed | CallState::Held))
                        .or_else(|| newest(&|_| true))
                }
            }
        }
    }

    async fn route_call(
        &mut self,
        call: CallRef,
        ringing: bool,
        make: impl FnOnce(CallRef) -> Command,
    ) {
        match self.call_target(call, ringing) {
            Some((slot, call)) => self.send_to(slot, make(call)).await,
            None => match call {
                Some(id) => self.error(format!("no call {id}")).await,
                None => self.error("no call".into()).await,
            },
        }
    }

    async fn broadcast(&mut self, command: Command) {
        let running: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.slots[*i].engine.is_some())
            .collect();
        for slot in running {
            self.send_to(slot, command.clone()).await;
        }
    }

    async fn by_account(&mut self, account: Option<&str>, command: Command) -> Option<usize> {
        let slot = match account {
            Some(name) => self.slot_named(name),
            None => self
                .default_slot()
                .ok_or_else(|| "no account is enabled".to_string()),
        };
        match slot {
            Ok(slot) => {
                self.send_to(slot, command).await;
                Some(slot)
            }
            Err(message) => {
                self.error(message).await;
                None
            }
        }
    }

    async fn route(&mut self, command: Command) {
        match command {
            Command::Dial(target) => {
                if let Some(slot) = self.by_account(None, Command::Dial(target)).await {
                    self.last_dial = Some(slot);
                }
            }
            Command::DialOn(account, target) => {
                let command = Command::DialOn(account.clone(), target);
                if let Some(slot) = self.by_account(Some(&account), command).await {
                    self.last_dial = Some(slot);
                }
            }
            Command::Message {
                account,
                target,
                text,
            } => {
                let command = Command::Message {
                    account: account.clone(),
                    target,
                    text,
                };
                self.by_account(account.as_deref(), command).await;
            }
            Command::Watch { account, target } => {
                let command = Command::Watch {
                    account: account.clone(),
                    target,
                };
                self.by_account(account.as_deref(), command).await;
            }
            Command::Unwatch { account, target } => {
                let command = Command::Unwatch {
                    account: account.clone(),
                    target,
                };
                self.by_account(account.as_deref(), command).await;
            }
            Command::Answer(call) => self.route_call(call, true, Command::Answer).await,
            Command::Reject(call) => self.route_call(call, true, Command::Reject).await,
            Command::Hangup(call) => self.route_call(call, false, Command::Hangup).await,
            Command::Hold(call) => self.route_call(call, false, Command::Hold).await,
            Command::IceRestart(call) => self.route_call(call, false, Command::IceRestart).await,
            Command::Resume(call) => self.route_call(call, false, Command::Resume).await,
            Command::Mute(call, on) => self.route_call(call, false, |c| Command::Mute(c, on)).await,
            Command::Dtmf(call, digits) => {
                self.route_call(call, false, |c| Command::Dtmf(c, digits))
                    .await
            }
            Command::Transfer(call, target) => {
                self.route_call(call, false, |c| Command::Transfer(c, target))
                    .await
            }
            Command::TransferAnswer(call, accept) => {
                self.route_call(call, false, |c| Command::TransferAnswer(c, accept))
                    .await
            }
            Command::Split(call) => self.route_call(call, false, Command::Split).await,
            Command::Audio(call, audio) => {
                self.route_call(call, false, |c| Command::Audio(c, audio))
                    .await
            }
            Command::AttendedTransfer(call, consult) => {
                let named = call.or(consult);
                match self.call_target(named, false) {
                    Some((slot, _)) => {
                        self.send_to(slot, Command::AttendedTransfer(call, consult))
                            .await
                    }
                    None => self.error("no call to transfer".into()).await,
                }
            }
            Command::Conference(calls) => {
                let slots: Vec<usize> = calls
                    .iter()
                    .filter_map(|c| self.calls.get(c).map(|(s, _)| *s))
                    .collect();
                let first = slots.first().copied();
                if slots.len() != calls.len() || slots.iter().any(|s| Some(*s) != first) {
                    return self
                        .error("a conference joins calls of one account only".into())
                        .await;
                }
                match first.or_else(|| self.call_target(None, false).map(|(s, _)| s)) {
                    Some(slot) => self.send_to(slot, Command::Conference(calls)).await,
                    None => self.error("no calls to join".into()).await,
                }
            }
            Command::Dnd(_) | Command::Forward(_) | Command::Register | Command::Unregister => {
                self.broadcast(command).await
            }
            Command::Account(name, enable) => self.set_enabled(&name, enable).await,
            Command::Quit => self.quit(),
        }
    }

    async fn set_enabled(&mut self, name: &str, enable: bool) {
        let Some(index) = self.slots.iter().position(|s| s.name == name) else {
            return self.error(format!("no account named `{name}`")).await;
        };
        let running = self.slots[index].engine.is_some();
        if enable == running {
            return;
        }
        if enable {
            match self.start_engine(index).await {
                Ok((listen, _)) => {
                    let event = Event::Account {
                        account: name.to_string(),
                        enabled: true,
                        listen: Some(listen.to_string()),
                    };
                    let _ = self.events.send(event).await;
                }
                Err(e) => self.error(format!("account {name}: {e}")).await,
            }
            return;
        }
        if let Some(engine) = self.slots[index].engine.take() {
            // Unregisters and hangs up its calls; the port is free once the task ended.
            let _ = engine.commands.send(Command::Quit).await;
            self.slots[index].stopping = Some(engine);
        }
        self.calls.retain(|_, (slot, _)| *slot != index);
        if self.last_dial == Some(index) {
            self.last_dial = None;
        }
        let event = Event::Account {
            account: name.to_string(),
            enabled: false,
            listen: None,
        };
        let _ = self.events.send(event).await;
    }
}
