//! What the user asked for, and `update`: the one place user intent changes `UiState` and
//! becomes an engine `Command`. Pure (no I/O, no clock), so every key's effect is unit tested.

use crate::driver::command::{AudioCommand, Command};

use super::state::{AccountState, FIELD_LIMIT, Focus, Popup, UiState};
use crate::event::CallState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A character for the text being edited (dial field, transfer prompt, log search).
    Type(char),
    Backspace,
    /// Enter: dial / answer / confirm a prompt / open the selected log message.
    Submit,
    /// Esc: close the popup, stop the search, or leave the dial field.
    Cancel,
    Up,
    Down,
    FocusNext,
    FocusDial,
    /// The pad's call button: dial the field, or answer when it is empty.
    CallButton,
    /// A dial-pad digit (keyboard outside the field, or a mouse click): DTMF while a call is
    /// up, else it goes to the dial field.
    Digit(char),
    Answer,
    Reject,
    Hangup,
    ToggleHold,
    ToggleMute,
    StartTransfer,
    /// `T`: attended transfer: ask whom to consult, or (with the consultation call up)
    /// transfer the first call to it.
    AttendedTransfer,
    /// `J`: join the established calls into a local conference.
    Conference,
    /// `S`: split the conference: the selected call stays, the others go on hold.
    Split,
    /// `D`: do-not-disturb on / off.
    ToggleDnd,
    StartSearch,
    ShowHelp,
    /// `c`: the contacts and call history list.
    ShowContacts,
    AskQuit,
    ConfirmQuit,
    /// `l`: open / close the ladder diagram of the selected call.
    ToggleLadder,
    /// `e`: export the selected call's ladder as PlantUML (the run loop writes the file).
    ExportCall,
    /// `f`: the log shows only the selected call's messages / all again.
    CycleCallFilter,
    /// `F`: the log shows only one method (next method in the log each time, then all).
    CycleMethodFilter,
    /// `w` ("what's wrong?"): open / close the diagnosis pane.
    ToggleDiagnosis,
    /// `p`: voice processing (echo cancellation, noise suppression, gain) on / off for the
    /// selected call.
    ToggleProcessing,
    /// `R`: start / stop recording the selected call.
    ToggleRecording,
    /// `D`: the sound device picker.
    ShowDevices,
    /// `A`: the next account for outgoing calls and messages.
    CycleAccount,
    /// `E`: enable / disable the outgoing account (register and take calls, or not).
    ToggleAccount,
    /// `V`: dial the outgoing account's voicemail.
    DialVoicemail,
    /// `M`: the conversations (instant messages).
    ShowChats,
    /// `s`, `F2` or a click on the bottom line: every status message in full, newest first.
    ShowMessages,
    /// In the contacts list: `n` adds a contact, `e` edits the selected one, `x` deletes it
    /// (the user's own contacts only; the config's are read-only).
    NewContact,
    EditContact,
    DeleteContact,
}

/// Applies one user action; returns the command for the engine, if the action makes one.
pub fn update(state: &mut UiState, action: Action) -> Option<Command> {
    let command = apply(state, action);
    // A transfer request that came while another popup was open shows once it closed.
    state.show_pending_transfer_request();
    command
}

fn apply(state: &mut UiState, action: Action) -> Option<Command> {
    if let Some(popup) = state.popup.take() {
        return update_popup(state, popup, action);
    }
    if state.searching {
        update_search(state, action);
        return None;
    }
    match action {
        Action::Type(c) => {
            state.focus = Focus::Dial;
            push_char(&mut state.dial.text, c);
            state.dial.recall = None;
            None
        }
        Action::Backspace => {
            if state.focus == Focus::Dial {
                state.dial.text.pop();
                state.dial.recall = None;
            }
            None
        }
        Action::Submit => submit(state),
        Action::Cancel => {
            match state.focus {
                Focus::Dial => state.focus = Focus::Calls,
                // Esc in the log goes back to following the newest message.
                Focus::Log => {
                    let filtered = !state.log_filter.is_empty()
                        || state.log_call_filter.is_some()
                        || state.log_method_filter.is_some();
                    state.log_selected = None;
                    state.log_filter.clear();
                    state.log_call_filter = None;
                    state.log_method_filter = None;
                    // The status line still said "log: only INVITE" after the filters went.
                    if filtered {
                        state.set_status("log: every message, following the newest");
                    }
                }
                Focus::Calls => {}
            }
            None
        }
        Action::Up => {
            move_selection(state, -1);
            None
        }
        Action::Down => {
            move_selection(state, 1);
            None
        }
        Action::FocusNext => {
            state.focus = state.focus.next();
            None
        }
        Action::FocusDial => {
            state.focus = Focus::Dial;
            None
        }
        Action::CallButton => {
            state.focus = Focus::Dial;
            submit(state)
        }
        Action::Digit(c) => match state
            .selected_call()
            .filter(|call| call.is_up())
            .map(|call| call.id)
        {
            Some(id) => {
                state.set_status(format!("DTMF {c} sent to call {id}"));
                Some(Command::Dtmf(Some(id), c.to_string()))
            }
            _ => {
                state.focus = Focus::Dial;
                push_char(&mut state.dial.text, c);
                None
            }
        },
        Action::Answer => answer(state),
        Action::Reject => match state.selected_call() {
            Some(call) if call.is_ringing_in() => Some(Command::Reject(Some(call.id))),
            _ => answerable(state).map(|id| Command::Reject(Some(id))),
        },
        Action::Hangup => hangup(state),
        Action::ToggleHold => {
            let call = state.selected_call()?;
            if !call.is_up() {
                state.set_status("no call to hold");
                return None;
            }
            let (id, held) = (call.id, call.held);
            Some(if held {
                hold_others(state, id);
                Command::Resume(Some(id))
            } else {
                Command::Hold(Some(id))
            })
        }
        Action::ToggleMute => {
            let Some(call) = state.calls.get_mut(state.selected_call) else {
                state.set_status("no call to mute");
                return None;
            };
            // The engine does not report mute back, so the UI keeps the flag.
            call.muted = !call.muted;
            Some(Command::Mute(Some(call.id), call.muted))
        }
        Action::ToggleProcessing => {
            let Some(call) = state.selected_call() else {
                state.set_status("no call to process");
                return None;
            };
            // Anything running goes off; nothing running (or unknown yet) turns all on.
            let on = call.processing.as_deref().is_none_or(|p| p == "-");
            let id = call.id;
            state.set_status(format!(
                "call {id}: voice processing {}",
                if on { "on" } else { "off" }
            ));
            Some(Command::Audio(
                Some(id),
                AudioCommand::Processing {
                    echo_cancel: Some(on),
                    noise_suppression: Some(on),
                    auto_gain: Some(on),
                },
            ))
        }
        Action::ToggleRecording => {
            let Some(call) = state.selected_call() else {
                state.set_status("no call to record");
                return None;
            };
            let id = call.id;
            Some(Command::Audio(
                Some(id),
                if call.recording.is_some() {
                    AudioCommand::RecordStop
                } else {
                    AudioCommand::Record(None)
                },
            ))
        }
        Action::ShowDevices => {
            state.popup = Some(Popup::Devices { selected: 0 });
            None
        }
        Action::CycleAccount => {
            if state.accounts.len() < 2 {
                state.set_status("one account: calls and messages go out on it");
                return None;
            }
            state.outgoing_account = (state.outgoing_account + 1) % state.accounts.len();
            let name = state
                .outgoing_account_name()
                .unwrap_or_default()
                .to_string();
            state.set_status(format!("calls and messages go out on {name} (A: next)"));
            None
        }
        Action::ToggleAccount => {
            let account = state.accounts.get(state.outgoing_account)?;
            let enable = account.state == AccountState::Disabled;
            let name = account.name.clone();
            let word = if enable { "enabling" } else { "disabling" };
            state.set_status(format!("{word} account {name}"));
            Some(Command::Account(name, enable))
        }
        Action::DialVoicemail => {
            let name = state.outgoing_account_name()?.to_string();
            let number = state
                .voicemail_numbers
                .iter()
                .find(|(account, _)| *account == name)
                .map(|(_, number)| number.clone());
            match number {
                Some(number) => {
                    state.set_status(format!("{name}: calling voicemail ({number})"));
                    if state.accounts.len() > 1 {
                        Some(Command::DialOn(name, number))
                    } else {
                        Some(Command::Dial(number))
                    }
                }
                None => {
                    state.set_status(format!(
                        "{name}: no voicemail number (account key `voicemail`)"
                    ));
                    None
                }
            }
        }
        Action::ShowChats => {
            state.popup = Some(Popup::Chats { selected: 0 });
            None
        }
        // Only inside the contacts list.
        Action::NewContact | Action::EditContact | Action::DeleteContact => None,
        Action::StartTransfer => {
            match state.selected_call() {
                Some(call) if call.is_up() => {
                    state.popup = Some(Popup::Transfer {
                        call: call.id,
                        target: String::new(),
                    })
                }
                _ => state.set_status("no call to transfer"),
            }
            None
        }
        Action::AttendedTransfer => attended_transfer(state),
        Action::Conference => {
            let up = state.calls.iter().filter(|c| c.is_up()).count();
            if up < 2 {
                state.set_status("a conference needs two established calls");
                return None;
            }
            state.set_status("joining the calls into a conference");
            Some(Command::Conference(Vec::new()))
        }
        Action::Split => {
            if state.conference.is_empty() {
                state.set_status("no conference to split");
                return None;
            }
            let keep = state
                .selected_call()
                .map(|c| c.id)
                .filter(|id| state.conference.contains(id));
            Some(Command::Split(keep))
        }
        Action::ToggleDnd => Some(Command::Dnd(None)),
        Action::StartSearch => {
            state.searching = true;
            state.focus = Focus::Log;
            state.log_filter.clear();
            None
        }
        Action::ShowHelp => {
            state.popup = Some(Popup::Help);
            None
        }
        Action::ShowMessages => {
            state.popup = Some(Popup::Messages { scroll: 0 });
            None
        }
        Action::ShowContacts => {
            if state.contacts.is_empty()
                && state.user_contacts.is_empty()
                && state.history.is_empty()
            {
                state.set_status("no contacts and no calls yet: n adds a contact");
            }
            // Open even when empty: `n` adds the first contact from there.
            state.popup = Some(Popup::Contacts { selected: 0 });
            None
        }
        Action::AskQuit => {
            state.popup = Some(Popup::QuitConfirm);
            None
        }
        Action::ConfirmQuit => quit(state),
        Action::ToggleDiagnosis => {
            state.popup = Some(Popup::Diagnosis { scroll: 0 });
            None
        }
        Action::ToggleLadder => {
            match state.ladder_call_id() {
                Some(call_id) => state.popup = Some(Popup::Ladder { call_id, scroll: 0 }),
                None => state.set_status("no call in the SIP trace to draw"),
            }
            None
        }
        Action::ExportCall => {
            match state.ladder_call_id() {
                Some(call_id) => state.export_request = Some(call_id),
                None => state.set_status("no call in the SIP trace to export"),
            }
            None
        }
        Action::CycleCallFilter => {
            if state.log_call_filter.take().is_some() {
                state.set_status("log: all calls");
            } else {
                match state.selected_sip_call_id() {
                    Some(call_id) => {
                        state.set_status(format!("log: only Call-ID {call_id} (f: all)"));
                        state.log_call_filter = Some(call_id);
                    }
                    None => state.set_status("log filter: no call selected (or no Call-ID yet)"),
                }
            }
            state.log_selected = None;
            None
        }
        Action::CycleMethodFilter => {
            let methods = state.log_methods();
            let next = match &state.log_method_filter {
                None => methods.first().cloned(),
                Some(current) => methods
                    .iter()
                    .position(|m| m == current)
                    .and_then(|i| methods.get(i + 1))
                    .cloned(),
            };
            match &next {
                Some(method) => state.set_status(format!("log: only {method} (F: next method)")),
                None if methods.is_empty() => state.set_status("log filter: no SIP messages yet"),
                None => state.set_status("log: all methods"),
            }
            state.log_method_filter = next;
            state.log_selected = None;
            None
        }
    }
}

/// Longest contact name or URI typed in the TUI.
const MAX_CONTACT_FIELD: usize = 200;

/// Adds (`index` None) or replaces one of the user's contacts after checking it: a name, a
/// URI, a name no other contact has (names are dialed).
fn save_contact(
    state: &mut UiState,
    index: Option<usize>,
    name: &str,
    uri: &str,
    account: Option<String>,
) -> Result<String, String> {
    let (name, uri) = (name.trim(), uri.trim());
    if name.is_empty() || uri.is_empty() {
        return Err("a contact needs a name and a URI (Tab moves between the fields)".into());
    }
    let clash = state
        .contacts
        .iter()
        .chain(
            state
                .user_contacts
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != index)
                .map(|(_, c)| c),
        )
        .any(|c| c.name.trim().eq_ignore_ascii_case(name));
    if clash {
        return Err(format!("there is a contact named {name} already"));
    }
    let contact = crate::config::Contact {
        name: name.to_string(),
        uri: uri.to_string(),
        account,
    };
    let watch = watch_command(state, &contact, true);
    let message = match index.and_then(|i| state.user_contacts.get_mut(i)) {
        Some(existing) => {
            let old = std::mem::replace(existing, contact);
            if let Some(unwatch) = watch_command(state, &old, false) {
                state.outbox.push(unwatch);
            }
            format!("contact {name} saved")
        }
        None => {
            state.user_contacts.push(contact);
            format!("contact {name} added")
        }
    };
    state.outbox.extend(watch);
    state.contacts_dirty = true;
    Ok(message)
}

/// Watch (or stop watching) a contact's lamp when its account watches lamps: the engine
/// subscribes now instead of at the next start.
fn watch_command(
    state: &UiState,
    contact: &crate::config::Contact,
    watch: bool,
) -> Option<Command> {
    let account = contact
        .account
        .clone()
        .or_else(|| state.outgoing_account_name().map(str::to_string))?;
    if !state.presence_accounts.contains(&account) {
        return None;
    }
    let (account, target) = (Some(account), contact.uri.clone());
    Some(if watch {
        Command::Watch { account, target }
    } else {
        Command::Unwatch { account, target }
    })
}

fn update_popup(state: &mut UiState, popup: Popup, action: Action) -> Option<Command> {
    match popup {
        Popup::Chats { selected } => {
            let count = state.chats.chats.len();
            let selected = match action {
                Action::Up => selected.saturating_sub(1),
                Action::Down => (selected + 1).min(count.saturating_sub(1)),
                Action::Cancel | Action::ShowChats => return None,
                Action::Submit => {
                    // The list shows the most recent conversation first.
                    let index = count.checked_sub(selected + 1)?;
                    state.chats.mark_read(index);
                    state.chats_dirty = true;
                    let chat = state.chats.chats.get(index)?;
                    state.popup = Some(Popup::Chat {
                        account: chat.account.clone(),
                        peer: chat.peer.clone(),
                        input: String::new(),
                    });
                    return None;
                }
                _ => selected,
            };
            state.popup = Some(Popup::Chats { selected });
            None
        }
        Popup::Chat {
            account,
            peer,
            mut input,
        } => match action {
            Action::Cancel => None,
            Action::Submit => {
                let text = input.trim().to_string();
                state.popup = Some(Popup::Chat {
                    account: account.clone(),
                    peer: peer.clone(),
                    input: String::new(),
                });
                if text.is_empty() {
                    return None;
                }
                Some(Command::Message {
                    account: Some(account),
                    target: peer,
                    text,
                })
            }
            Action::Type(c) | Action::Digit(c) => {
                if input.len() < crate::sip::im::MAX_TEXT_BYTES {
                    input.push(c);
                }
                state.popup = Some(Popup::Chat {
                    account,
                    peer,
                    input,
                });
                None
            }
            Action::Backspace => {
                input.pop();
                state.popup = Some(Popup::Chat {
                    account,
                    peer,
                    input,
                });
                None
            }
            _ => {
                state.popup = Some(Popup::Chat {
                    account,
                    peer,
                    input,
                });
                None
            }
        },
        Popup::Help => {
            if !matches!(action, Action::Cancel | Action::ShowHelp | Action::Submit) {
                state.popup = Some(Popup::Help);
            }
            None
        }
        Popup::QuitConfirm => match action {
            Action::ConfirmQuit => quit(state),
            // Anything else is a "no".
            _ => None,
        },
        Popup::Incoming { call, remote } => match action {
            Action::Answer | Action::Submit => answer_call(state, call),
            Action::Reject => Some(Command::Reject(Some(call))),
            // Esc hides the popup; the call keeps ringing in the calls panel.
            Action::Cancel => None,
            _ => {
                state.popup = Some(Popup::Incoming { call, remote });
                None
            }
        },
        Popup::Message { entry, scroll } => {
            let scroll = match action {
                Action::Up => scroll.saturating_sub(1),
                Action::Down => {
                    let lines = entry.raw.split(|b| *b == b'\n').count();
                    scroll
                        .saturating_add(1)
                        .min(u16::try_from(lines).unwrap_or(u16::MAX))
                }
                Action::Cancel | Action::Submit => return None,
                _ => scroll,
            };
            state.popup = Some(Popup::Message { entry, scroll });
            None
        }
        Popup::Contacts { selected } => {
            let choices = state.dial_choices();
            let last = choices.len().saturating_sub(1);
            let selected = match action {
                Action::Up => selected.saturating_sub(1),
                Action::Down => (selected + 1).min(last),
                Action::Cancel | Action::ShowContacts => return None,
                Action::Submit => {
                    let (label, target) = choices.get(selected)?.clone();
                    state.dial.remember(&target);
                    state.set_status(format!("calling {label}"));
                    return Some(state.dial_command(&target));
                }
                Action::NewContact => {
                    if state.user_contacts.len() >= super::messaging::MAX_USER_CONTACTS {
                        state.set_status("too many contacts: delete some first");
                    } else {
                        state.popup = Some(Popup::ContactEdit {
                            index: None,
                            name: String::new(),
                            uri: String::new(),
                            account: None,
                            field: 0,
                        });
                        return None;
                    }
                    selected
                }
                Action::EditContact | Action::DeleteContact => {
                    let Some(index) = state.user_contact_at(selected) else {
                        state.set_status(
                            "only contacts added here can be changed (the config's are read-only)",
                        );
                        state.popup = Some(Popup::Contacts { selected });
                        return None;
                    };
                    if action == Action::DeleteContact {
                        let gone = state.user_contacts.remove(index);
                        if let Some(unwatch) = watch_command(state, &gone, false) {
                            state.outbox.push(unwatch);
                        }
                        state.contacts_dirty = true;
                        state.set_status(format!("contact {} deleted", gone.name));
                        let last = state.dial_choices().len().saturating_sub(1);
                        state.popup = Some(Popup::Contacts {
                            selected: selected.min(last),
                        });
                        return None;
                    }
                    let contact = state.user_contacts.get(index)?.clone();
                    state.popup = Some(Popup::ContactEdit {
                        index: Some(index),
                        name: contact.name,
                        uri: contact.uri,
                        account: contact.account,
                        field: 0,
                    });
                    return None;
                }
                _ => selected,
            };
            state.popup = Some(Popup::Contacts { selected });
            None
        }
        Popup::ContactEdit {
            index,
            mut name,
            mut uri,
            mut account,
            mut field,
        } => {
            match action {
                Action::Cancel => {
                    state.popup = Some(Popup::Contacts { selected: 0 });
                    return None;
                }
                Action::Submit => match save_contact(state, index, &name, &uri, account.clone()) {
                    Ok(message) => {
                        state.set_status(message);
                        state.popup = Some(Popup::Contacts { selected: 0 });
                        return None;
                    }
                    Err(message) => state.set_status(message),
                },
                Action::FocusNext => field = (field + 1) % 3,
                // The account field: Up/Down go through "the outgoing one" and each account.
                Action::Up | Action::Down if field == 2 => {
                    let names: Vec<Option<String>> = std::iter::once(None)
                        .chain(state.accounts.iter().map(|a| Some(a.name.clone())))
                        .collect();
                    let at = names.iter().position(|n| *n == account).unwrap_or(0);
                    let next = if action == Action::Down {
                        (at + 1) % names.len()
                    } else {
                        (at + names.len() - 1) % names.len()
                    };
                    account = names.get(next).cloned().flatten();
                }
                Action::Type(c) | Action::Digit(c) if field < 2 => {
                    let text = if field == 0 { &mut name } else { &mut uri };
                    if text.chars().count() < MAX_CONTACT_FIELD {
                        text.push(c);
                    }
                }
                Action::Backspace if field < 2 => {
                    if field == 0 {
                        name.pop();
                    } else {
                        uri.pop();
                    }
                }
                _ => {}
            }
            state.popup = Some(Popup::ContactEdit {
                index,
                name,
                uri,
                account,
                field,
            });
            None
        }
        Popup::Ladder { call_id, scroll } => {
            let scroll = match action {
                Action::Up => scroll.saturating_sub(1),
                Action::Down => {
                    let rows = state.call_log(&call_id).len();
                    scroll
                        .saturating_add(1)
                        .min(u16::try_from(rows).unwrap_or(u16::MAX))
                }
                Action::ExportCall => {
                    state.export_request = Some(call_id.clone());
                    scroll
                }
                Action::Cancel | Action::Submit | Action::ToggleLadder => return None,
                _ => scroll,
            };
            state.popup = Some(Popup::Ladder { call_id, scroll });
            None
        }
        Popup::Messages { scroll } => {
            let scroll = match action {
                Action::Up => scroll.saturating_sub(1),
                Action::Down => scroll.saturating_add(1).min(
                    u16::try_from(super::view::messages::line_count(state)).unwrap_or(u16::MAX),
                ),
                Action::Cancel | Action::Submit | Action::ShowMessages => return None,
                _ => scroll,
            };
            state.popup = Some(Popup::Messages { scroll });
            None
        }
        Popup::Diagnosis { scroll } => {
            let scroll = match action {
                Action::Up => scroll.saturating_sub(1),
                Action::Down => scroll.saturating_add(1).min(
                    u16::try_from(super::view::diagnosis::line_count(state)).unwrap_or(u16::MAX),
                ),
                Action::Cancel | Action::Submit | Action::ToggleDiagnosis => return None,
                _ => scroll,
            };
            state.popup = Some(Popup::Diagnosis { scroll });
            None
        }
        Popup::Consult { call, mut target } => match action {
            Action::Cancel => None,
            Action::Submit => {
                let target = target.trim().to_string();
                if target.is_empty() {
                    state.set_status("attended transfer cancelled: no one to consult");
                    return None;
                }
                let target = state.resolve_contact(&target);
                // The call to transfer waits on hold while we talk to the target.
                if state
                    .calls
                    .iter()
                    .any(|c| c.id == call && c.state == CallState::Confirmed)
                {
                    state.outbox.push(Command::Hold(Some(call)));
                }
                state.consult = Some((call, None));
                state.set_status(format!(
                    "consulting {target}: T transfers call {call} to them, h hangs up"
                ));
                Some(Command::Dial(target))
            }
            Action::Type(c) | Action::Digit(c) => {
                push_char(&mut target, c);
                state.popup = Some(Popup::Consult { call, target });
                None
            }
            Action::Backspace => {
                target.pop();
                state.popup = Some(Popup::Consult { call, target });
                None
            }
            _ => {
                state.popup = Some(Popup::Consult { call, target });
                None
            }
        },
        Popup::TransferRequest { call, target } => match action {
            Action::Answer | Action::Submit => {
                state.set_status(format!("call {call}: transferring to {target}"));
                Some(Command::TransferAnswer(Some(call), true))
            }
            Action::Reject | Action::Cancel => {
                state.set_status(format!("call {call}: transfer refused"));
                Some(Command::TransferAnswer(Some(call), false))
            }
            _ => {
                state.popup = Some(Popup::TransferRequest { call, target });
                None
            }
        },
        Popup::Devices { selected } => {
            let choices = state.device_choices();
            let last = choices.len().saturating_sub(1);
            let selected = match action {
                Action::Up => selected.saturating_sub(1),
                Action::Down => (selected + 1).min(last),
                Action::Cancel | Action::ShowDevices => return None,
                Action::Submit => {
                    let (input, name) = choices.get(selected)?.clone();
                    let Some(call) = state.selected_call().map(|c| c.id) else {
                        state.set_status("no call: devices are chosen for a call in progress");
                        return None;
                    };
                    let what = if input { "input" } else { "output" };
                    state.set_status(format!("call {call}: switching {what} to {name}"));
                    return Some(Command::Audio(
                        Some(call),
                        if input {
                            AudioCommand::Devices {
                                input: Some(name),
                                output: None,
                            }
                        } else {
                            AudioCommand::Devices {
                                input: None,
                                output: Some(name),
                            }
                        },
                    ));
                }
                _ => selected,
            };
            state.popup = Some(Popup::Devices { selected });
            None
        }
        Popup::Transfer { call, mut target } => match action {
            Action::Cancel => None,
            Action::Submit => {
                let target = target.trim().to_string();
                if target.is_empty() {
                    state.set_status("transfer cancelled: no target");
                    return None;
                }
                state.set_status(format!("transferring call {call} to {target}"));
                Some(Command::Transfer(Some(call), target))
            }
            Action::Type(c) | Action::Digit(c) => {
                push_char(&mut target, c);
                state.popup = Some(Popup::Transfer { call, target });
                None
            }
            Action::Backspace => {
                target.pop();
                state.popup = Some(Popup::Transfer { call, target });
                None
            }
            _ => {
                state.popup = Some(Popup::Transfer { call, target });
                None
            }
        },
    }
}

/// `T`: completes the attended transfer in progress (the consultation call is up), or joins
/// two established calls (the held one is transferred to the other), or asks whom to consult.
fn attended_transfer(state: &mut UiState) -> Option<Command> {
    let up: Vec<(u64, bool)> = state
        .calls
        .iter()
        .filter(|c| c.is_up())
        .map(|c| (c.id, c.held))
        .collect();
    let is_up = |id: u64| up.iter().any(|(c, _)| *c == id);
    if let Some((transferee, Some(consult))) = state.consult
        && is_up(transferee)
        && is_up(consult)
    {
        state.consult = None;
        state.set_status(format!("transferring call {transferee} to call {consult}"));
        return Some(Command::AttendedTransfer(Some(transferee), Some(consult)));
    }
    if up.len() == 2 {
        // The held call goes to the one we talk to.
        let (transferee, consult) = match (up[0], up[1]) {
            ((a, true), (b, false)) => (a, b),
            ((a, false), (b, true)) => (b, a),
            ((a, _), (b, _)) => {
                let selected = state.selected_call().map(|c| c.id);
                if selected == Some(b) { (b, a) } else { (a, b) }
            }
        };
        state.set_status(format!("transferring call {transferee} to call {consult}"));
        return Some(Command::AttendedTransfer(Some(transferee), Some(consult)));
    }
    match state.selected_call() {
        Some(call) if call.is_up() => {
            state.popup = Some(Popup::Consult {
                call: call.id,
                target: String::new(),
            });
        }
        _ => state.set_status("no call to transfer"),
    }
    None
}

/// The account's auto-answer: when its delay for the ringing call is up, answer it (holding
/// the other calls first, like `a`). The run loop calls this at `auto_answer_due`.
pub fn auto_answer(state: &mut UiState, now: std::time::Instant) -> Option<Command> {
    let (id, at) = state.auto_answer_due?;
    if now < at {
        return None;
    }
    state.auto_answer_due = None;
    if !state.calls.iter().any(|c| c.id == id && c.is_ringing_in()) {
        return None;
    }
    if matches!(&state.popup, Some(Popup::Incoming { call, .. }) if *call == id) {
        state.popup = None;
    }
    state.set_status(format!("call {id} answered automatically"));
    answer_call(state, id)
}

fn update_search(state: &mut UiState, action: Action) {
    match action {
        Action::Type(c) | Action::Digit(c) => {
            push_char(&mut state.log_filter, c);
            state.log_selected = None;
        }
        Action::Backspace => {
            state.log_filter.pop();
        }
        // Enter keeps the filter and gives the keys back; Esc drops it.
        Action::Submit => state.searching = false,
        Action::Cancel => {
            state.searching = false;
            state.log_filter.clear();
        }
        _ => {}
    }
}

fn push_char(text: &mut String, c: char) {
    if text.chars().count() < FIELD_LIMIT && !c.is_control() {
        text.push(c);
    }
}

fn submit(state: &mut UiState) -> Option<Command> {
    match state.focus {
        Focus::Dial => {
            let target = state.dial.text.trim().to_string();
            if target.is_empty() {
                return match answerable(state) {
                    Some(id) => answer_call(state, id),
                    None => {
                        state.set_status("type a number or sip: URI, then Enter");
                        None
                    }
                };
            }
            state.dial.remember(&target);
            state.dial.text.clear();
            // A contact name dials the contact's URI (the engine only knows URIs and numbers),
            // on the contact's account or the outgoing one.
            let resolved = state.resolve_contact(&target);
            let command = state.dial_command(&target);
            let on = match &command {
                Command::DialOn(account, _) => format!(" on {account}"),
                _ => String::new(),
            };
            if resolved == target {
                state.set_status(format!("calling {target}{on}"));
            } else {
                state.set_status(format!("calling {target} ({resolved}){on}"));
            }
            Some(command)
        }
        Focus::Calls => answer(state),
        Focus::Log => {
            let visible = state.visible_log();
            let index = state.log_selected.or_else(|| visible.last().copied())?;
            let entry = state.log.get(index)?.clone();
            state.popup = Some(Popup::Message { entry, scroll: 0 });
            None
        }
    }
}

/// The call `a` / Enter would answer: the selected one if it rings, else the first ringing.
fn answerable(state: &UiState) -> Option<u64> {
    match state.selected_call() {
        Some(call) if call.is_ringing_in() => Some(call.id),
        _ => state.ringing_call().map(|c| c.id),
    }
}

fn answer(state: &mut UiState) -> Option<Command> {
    match answerable(state) {
        Some(id) => answer_call(state, id),
        None => {
            state.set_status("no incoming call to answer");
            None
        }
    }
}

/// Answers `id`, holding the other active calls first (call waiting).
fn answer_call(state: &mut UiState, id: u64) -> Option<Command> {
    hold_others(state, id);
    // The answered call is the one the keys act on now.
    if let Some(index) = state.calls.iter().position(|c| c.id == id) {
        state.selected_call = index;
    }
    Some(Command::Answer(Some(id)))
}

/// Queues a hold for every call that is up and not on hold, except `except`: answering or
/// resuming a call puts the one the user talks to on hold first, as baresip
/// (`call_hold_other_calls`, `uag_hold_others`) and MicroSIP do. Two open calls would
/// otherwise both hear the microphone, and each hear the other side of the other call.
fn hold_others(state: &mut UiState, except: u64) {
    let others: Vec<u64> = state
        .calls
        .iter()
        .filter(|c| c.id != except && c.state == CallState::Confirmed)
        .map(|c| c.id)
        .collect();
    if others.is_empty() {
        return;
    }
    let list: Vec<String> = others.iter().map(u64::to_string).collect();
    state.set_status(format!(
        "call {} on hold, switching to call {except}",
        list.join(", ")
    ));
    state
        .outbox
        .extend(others.into_iter().map(|id| Command::Hold(Some(id))));
}

fn hangup(state: &mut UiState) -> Option<Command> {
    match state.selected_call() {
        Some(call) if call.is_ringing_in() => Some(Command::Reject(Some(call.id))),
        Some(call) => Some(Command::Hangup(Some(call.id))),
        None => {
            state.set_status("no call to hang up");
            None
        }
    }
}

fn quit(state: &mut UiState) -> Option<Command> {
    state.quitting = true;
    state.set_status("quitting…");
    Some(Command::Quit)
}

/// Up/Down: dial history in the field, the call list in the calls pane, the log selection in
/// the log pane (leaving follow mode; Down past the newest entry goes back to following).
fn move_selection(state: &mut UiState, step: isize) {
    match state.focus {
        Focus::Dial => {
            let history = &state.dial.history;
            if history.is_empty() {
                return;
            }
            let next = match (state.dial.recall, step < 0) {
                (None, true) => Some(history.len() - 1),
                (None, false) => None,
                (Some(i), true) => Some(i.saturating_sub(1)),
                (Some(i), false) if i + 1 < history.len() => Some(i + 1),
                (Some(_), false) => None,
            };
            state.dial.text = next
                .and_then(|i| history.get(i))
                .cloned()
                .unwrap_or_default();
            state.dial.recall = next;
        }
        Focus::Calls => {
            if state.calls.is_empty() {
                return;
            }
            let last = state.calls.len() - 1;
            state.selected_call = if step < 0 {
                state.selected_call.saturating_sub(1)
            } else {
                (state.selected_call + 1).min(last)
            };
        }
        Focus::Log => {
            let visible = state.visible_log();
            let Some(&newest) = visible.last() else {
                return;
            };
            let position = state
                .log_selected
                .and_then(|sel| visible.iter().position(|&i| i == sel));
            state.log_selected = match (position, step < 0) {
                (None, true) => Some(newest),
                (None, false) => None,
                (Some(p), true) => visible.get(p.saturating_sub(1)).copied(),
                (Some(p), false) => visible.get(p + 1).copied(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::event::{Direction, Event};

    fn state() -> UiState {
        UiState::new(&["alice".into()], 100, Instant::now())
    }

    fn with_call(state: &mut UiState, id: &str, call_state: CallState) {
        let now = state.now;
        state.apply_event(
            Event::Call {
                call: id.into(),
                state: call_state,
                remote: "sip:bob@biloxi.com".into(),
                code: None,
                reason: None,
                sip_call_id: None,
                account: None,
            },
            now,
        );
    }

    fn type_text(state: &mut UiState, text: &str) {
        for c in text.chars() {
            assert_eq!(update(state, Action::Type(c)), None);
        }
    }

    #[test]
    fn attended_transfer_consults_then_transfers_to_the_consulted_call() {
        let mut s = state();
        s.focus = Focus::Calls;
        with_call(&mut s, "1", CallState::Confirmed);
        assert_eq!(update(&mut s, Action::AttendedTransfer), None);
        assert!(matches!(s.popup, Some(Popup::Consult { call: 1, .. })));
        type_text(&mut s, "carol");
        assert_eq!(
            update(&mut s, Action::Submit),
            Some(Command::Dial("carol".into()))
        );
        // The call to transfer went on hold first.
        assert_eq!(s.outbox, vec![Command::Hold(Some(1))]);
        s.outbox.clear();
        assert_eq!(s.consult, Some((1, None)));
        with_call(&mut s, "1", CallState::Held);
        with_call(&mut s, "2", CallState::Calling);
        assert_eq!(s.consult, Some((1, Some(2))));
        with_call(&mut s, "2", CallState::Confirmed);
        assert_eq!(
            update(&mut s, Action::AttendedTransfer),
            Some(Command::AttendedTransfer(Some(1), Some(2)))
        );
        assert_eq!(s.consult, None);
    }

    #[test]
    fn attended_transfer_with_two_calls_up_sends_the_held_one_to_the_other() {
        let mut s = state();
        s.focus = Focus::Calls;
        with_call(&mut s, "1", CallState::Confirmed);
        with_call(&mut s, "2", CallState::Confirmed);
        with_call(&mut s, "1", CallState::Held);
        assert_eq!(
            update(&mut s, Action::AttendedTransfer),
            Some(Command::AttendedTransfer(Some(1), Some(2)))
        );
        // Nothing to transfer without a call.
        let mut idle = state();
        idle.focus = Focus::Calls;
        assert_eq!(update(&mut idle, Action::AttendedTransfer), None);
        assert_eq!(idle.popup, None);
    }

    #[test]
    fn a_transfer_request_is_accepted_or_refused_from_its_popup() {
        let mut s = state();
        s.focus = Focus::Calls;
        with_call(&mut s, "1", CallState::Confirmed);
        let request = Event::TransferRequest {
            call: "1".into(),
            target: "sip:carol@c".into(),
            referred_by: None,
        };
        s.apply_event(request.clone(), s.now);
        assert!(matches!(
            s.popup,
            Some(Popup::TransferRequest { call: 1, .. })
        ));
        assert_eq!(
            update(&mut s, Action::Answer),
            Some(Command::TransferAnswer(Some(1), true))
        );
        assert_eq!(s.popup, None);
        s.apply_event(request.clone(), s.now);
        assert_eq!(
            update(&mut s, Action::Cancel),
            Some(Command::TransferAnswer(Some(1), false))
        );
        // While another popup is open the request waits, then shows when it closes.
        s.popup = Some(Popup::QuitConfirm);
        s.apply_event(request, s.now);
        assert_eq!(s.popup, Some(Popup::QuitConfirm));
        assert_eq!(update(&mut s, Action::Cancel), None);
        assert!(matches!(
            s.popup,
            Some(Popup::TransferRequest { call: 1, .. })
        ));
    }

    #[test]
    fn conference_split_and_do_not_disturb_keys() {
        let mut s = state();
        s.focus = Focus::Calls;
        with_call(&mut s, "1", CallState::Confirmed);
        assert_eq!(
            update(&mut s, Action::Conference),
            None,
            "one call is no conference"
        );
        with_call(&mut s, "2", CallState::Confirmed);
        assert_eq!(
            update(&mut s, Action::Conference),
            Some(Command::Conference(Vec::new()))
        );
        assert_eq!(update(&mut s, Action::Split), None, "no conference yet");
        let now = s.now;
        s.apply_event(
            Event::Conference {
                calls: vec!["1".into(), "2".into()],
            },
            now,
        );
        assert_eq!(s.conference, vec![1, 2]);
        s.selected_call = 1;
        assert_eq!(update(&mut s, Action::Split), Some(Command::Split(Some(2))));
        with_call(&mut s, "1", CallState::Terminated);
        assert_eq!(s.conference, vec![2]);
        assert_eq!(update(&mut s, Action::ToggleDnd), Some(Command::Dnd(None)));
        s.apply_event(
            Event::Dnd {
                on: true,
                code: 480,
            },
            now,
        );
        assert_eq!(s.dnd, Some(480));
        s.apply_event(
            Event::Dnd {
                on: false,
                code: 480,
            },
            now,
        );
        assert_eq!(s.dnd, None);
    }

    #[test]
    fn auto_answer_answers_after_the_delay_and_holds_the_call_in_progress() {
        let mut s = state();
        s.auto_answer = Some(std::time::Duration::from_millis(250));
        let t0 = s.now;
        with_call(&mut s, "1", CallState::Confirmed);
        with_call(&mut s, "2", CallState::Incoming);
        assert_eq!(
            s.auto_answer_due,
            Some((2, t0 + std::time::Duration::from_millis(250)))
        );
        assert_eq!(
            auto_answer(&mut s, t0 + std::time::Duration::from_millis(100)),
            None
        );
        assert_eq!(
            auto_answer(&mut s, t0 + std::time::Duration::from_millis(300)),
            Some(Command::Answer(Some(2)))
        );
        assert_eq!(s.outbox, vec![Command::Hold(Some(1))]);
        assert_eq!(s.auto_answer_due, None);
        // A call that stopped ringing (cancelled, answered by hand) is left alone.
        with_call(&mut s, "3", CallState::Incoming);
        with_call(&mut s, "3", CallState::Terminated);
        assert_eq!(s.auto_answer_due, None);
        let mut off = state();
        with_call(&mut off, "1", CallState::Incoming);
        assert_eq!(off.auto_answer_due, None, "no auto_answer configured");
    }

    #[test]
    fn enter_dials_the_typed_target_and_remembers_it() {
        let mut s = state();
        type_text(&mut s, "bob@biloxi.com");
        assert_eq!(
            update(&mut s, Action::Submit),
            Some(Command::Dial("bob@biloxi.com".into()))
        );
        assert_eq!(s.dial.text, "");
        assert_eq!(s.dial.history, vec!["bob@biloxi.com".to_string()]);
    }

    #[test]
    fn enter_on_an_empty_field_answers_the_ringing_call() {
        let mut s = state();
        with_call(&mut s, "4", CallState::Incoming);
        s.popup = None; // dismissed with Esc
        assert_eq!(
            update(&mut s, Action::Submit),
            Some(Command::Answer(Some(4)))
        );
    }

    #[test]
    fn enter_on_an_empty_field_with_nothing_ringing_explains_itself() {
        let mut s = state();
        assert_eq!(update(&mut s, Action::Submit), None);
        assert!(s.status.is_some());
    }

    #[test]
    fn up_and_down_recall_dial_history_like_a_shell() {
        let mut s = state();
        for target in ["100", "200", "300"] {
            type_text(&mut s, target);
            update(&mut s, Action::Submit);
        }
        update(&mut s, Action::Up);
        assert_eq!(s.dial.text, "300");
        update(&mut s, Action::Up);
        update(&mut s, Action::Up);
        update(&mut s, Action::Up);
        assert_eq!(s.dial.text, "100");
        update(&mut s, Action::Down);
        assert_eq!(s.dial.text, "200");
        update(&mut s, Action::Down);
        update(&mut s, Action::Down);
        assert_eq!(s.dial.text, "");
    }

    #[test]
    fn incoming_popup_answers_and_rejects_that_call() {
        let mut s = state();
        with_call(&mut s, "9", CallState::Incoming);
        let mut rejecting = s.clone();
        assert_eq!(
            update(&mut s, Action::Answer),
            Some(Command::Answer(Some(9)))
        );
        assert_eq!(s.popup, None);
        assert_eq!(
            update(&mut rejecting, Action::Reject),
            Some(Command::Reject(Some(9)))
        );
    }

    #[test]
    fn esc_hides_the_incoming_popup_without_rejecting() {
        let mut s = state();
        with_call(&mut s, "9", CallState::Incoming);
        assert_eq!(update(&mut s, Action::Cancel), None);
        assert_eq!(s.popup, None);
        assert_eq!(s.calls.len(), 1);
    }

    #[test]
    fn hold_toggles_with_the_call_state_and_mute_with_the_ui_flag() {
        let mut s = state();
        with_call(&mut s, "1", CallState::Confirmed);
        assert_eq!(
            update(&mut s, Action::ToggleHold),
            Some(Command::Hold(Some(1)))
        );
        with_call(&mut s, "1", CallState::Held);
        assert_eq!(
            update(&mut s, Action::ToggleHold),
            Some(Command::Resume(Some(1)))
        );
        assert_eq!(
            update(&mut s, Action::ToggleMute),
            Some(Command::Mute(Some(1), true))
        );
        assert_eq!(
            update(&mut s, Action::ToggleMute),
            Some(Command::Mute(Some(1), false))
        );
    }

    #[test]
    fn hangup_on_a_ringing_call_rejects_it() {
        let mut s = state();
        with_call(&mut s, "3", CallState::Incoming);
        s.popup = None;
        assert_eq!(
            update(&mut s, Action::Hangup),
            Some(Command::Reject(Some(3)))
        );
        with_call(&mut s, "3", CallState::Confirmed);
        assert_eq!(
            update(&mut s, Action::Hangup),
            Some(Command::Hangup(Some(3)))
        );
    }

    #[test]
    fn a_waiting_call_is_answered_with_the_first_on_hold_and_either_can_be_resumed() {
        let mut s = state();
        with_call(&mut s, "1", CallState::Confirmed);
        with_call(&mut s, "2", CallState::Incoming);
        assert!(matches!(s.popup, Some(Popup::Incoming { call: 2, .. })));
        assert_eq!(s.calls.len(), 2);
        // The keys stay on the call the user talks to while the second one rings.
        assert_eq!(s.selected_call().map(|c| c.id), Some(1));
        assert_eq!(
            update(&mut s, Action::Answer),
            Some(Command::Answer(Some(2)))
        );
        assert_eq!(s.outbox, vec![Command::Hold(Some(1))], "first call held");
        assert_eq!(s.selected_call().map(|c| c.id), Some(2));
        s.outbox.clear();
        with_call(&mut s, "1", CallState::Held);
        with_call(&mut s, "2", CallState::Confirmed);

        // Select the held call and resume it: the other one goes on hold.
        s.focus = Focus::Calls;
        update(&mut s, Action::Up);
        assert_eq!(s.selected_call().map(|c| c.id), Some(1));
        assert_eq!(
            update(&mut s, Action::ToggleHold),
            Some(Command::Resume(Some(1)))
        );
        assert_eq!(s.outbox, vec![Command::Hold(Some(2))]);
        s.outbox.clear();
        with_call(&mut s, "2", CallState::Held);
        with_call(&mut s, "1", CallState::Confirmed);

        // Holding the active call holds only that one.
        assert_eq!(
            update(&mut s, Action::ToggleHold),
            Some(Command::Hold(Some(1)))
        );
        assert!(s.outbox.is_empty());
        with_call(&mut s, "1", CallState::Held);

        // Hang up either: the selected one goes, the other stays selectable.
        assert_eq!(
            update(&mut s, Action::Hangup),
            Some(Command::Hangup(Some(1)))
        );
        with_call(&mut s, "1", CallState::Terminated);
        assert_eq!(s.calls.len(), 1);
        assert_eq!(s.selected_call().map(|c| c.id), Some(2));
        // Both on hold before: resuming the last one holds nothing else.
        assert_eq!(
            update(&mut s, Action::ToggleHold),
            Some(Command::Resume(Some(2)))
        );
        assert!(s.outbox.is_empty());
        assert_eq!(
            update(&mut s, Action::Hangup),
            Some(Command::Hangup(Some(2)))
        );
    }

    #[test]
    fn enter_on_the_empty_field_answers_a_waiting_call_holding_the_first() {
        let mut s = state();
        with_call(&mut s, "1", CallState::Confirmed);
        with_call(&mut s, "2", CallState::Incoming);
        update(&mut s, Action::Cancel); // the popup hidden: the call rings in the panel
        s.focus = Focus::Dial;
        assert_eq!(
            update(&mut s, Action::Submit),
            Some(Command::Answer(Some(2)))
        );
        assert_eq!(s.outbox, vec![Command::Hold(Some(1))]);
        // `r` on a waiting call rejects it, not the call in progress.
        let mut s = state();
        with_call(&mut s, "1", CallState::Confirmed);
        with_call(&mut s, "2", CallState::Incoming);
        update(&mut s, Action::Cancel);
        s.focus = Focus::Calls;
        assert_eq!(
            update(&mut s, Action::Reject),
            Some(Command::Reject(Some(2)))
        );
        assert!(s.outbox.is_empty());
    }

    #[test]
    fn quit_needs_confirmation() {
        let mut s = state();
        assert_eq!(update(&mut s, Action::AskQuit), None);
        assert_eq!(s.popup, Some(Popup::QuitConfirm));
        // Any other key says no.
        assert_eq!(update(&mut s, Action::Type('n')), None);
        assert_eq!(s.popup, None);
        assert!(!s.quitting);
        update(&mut s, Action::AskQuit);
        assert_eq!(update(&mut s, Action::ConfirmQuit), Some(Command::Quit));
        assert!(s.quitting);
    }

    #[test]
    fn transfer_prompt_sends_the_typed_target() {
        let mut s = state();
        with_call(&mut s, "5", CallState::Confirmed);
        update(&mut s, Action::StartTransfer);
        for c in "carol@h".chars() {
            update(&mut s, Action::Type(c));
        }
        update(&mut s, Action::Backspace);
        update(&mut s, Action::Type('x'));
        assert_eq!(
            update(&mut s, Action::Submit),
            Some(Command::Transfer(Some(5), "carol@x".into()))
        );
        assert_eq!(s.popup, None);
    }

    #[test]
    fn digits_send_dtmf_during_a_call_and_fill_the_field_otherwise() {
        let mut s = state();
        s.focus = Focus::Calls;
        assert_eq!(update(&mut s, Action::Digit('5')), None);
        assert_eq!(s.dial.text, "5");
        assert_eq!(s.focus, Focus::Dial);
        with_call(&mut s, "1", CallState::Confirmed);
        assert_eq!(
            update(&mut s, Action::Digit('#')),
            Some(Command::Dtmf(Some(1), "#".into()))
        );
    }

    #[test]
    fn log_selection_moves_and_enter_opens_the_full_message() {
        let mut s = state();
        for summary in ["INVITE sip:bob@b SIP/2.0", "SIP/2.0 180 Ringing"] {
            let now = s.now;
            s.apply_event(
                Event::Sip {
                    dir: Direction::Out,
                    peer: "127.0.0.1:5060".into(),
                    summary: summary.into(),
                    raw: Arc::from(summary.as_bytes()),
                },
                now,
            );
        }
        s.focus = Focus::Log;
        update(&mut s, Action::Up);
        assert_eq!(s.log_selected, Some(1));
        update(&mut s, Action::Up);
        assert_eq!(s.log_selected, Some(0));
        update(&mut s, Action::Submit);
        match &s.popup {
            Some(Popup::Message { entry, .. }) => {
                assert_eq!(entry.summary, "INVITE sip:bob@b SIP/2.0")
            }
            other => panic!("expected the message popup, got {other:?}"),
        }
        update(&mut s, Action::Cancel);
        assert_eq!(s.popup, None);
        // Down past the newest goes back to follow mode.
        update(&mut s, Action::Down);
        update(&mut s, Action::Down);
        assert_eq!(s.log_selected, None);
    }

    #[test]
    fn search_filters_the_log_and_esc_clears_it() {
        let mut s = state();
        update(&mut s, Action::StartSearch);
        for c in "bye".chars() {
            update(&mut s, Action::Type(c));
        }
        assert_eq!(s.log_filter, "bye");
        assert_eq!(s.dial.text, "", "search text must not reach the dial field");
        update(&mut s, Action::Submit);
        assert!(!s.searching);
        assert_eq!(s.log_filter, "bye");
        update(&mut s, Action::StartSearch);
        update(&mut s, Action::Cancel);
        assert_eq!(s.log_filter, "");
    }

    fn with_contacts(state: &mut UiState) {
        state.contacts = vec![
            crate::config::Contact {
                name: "Bob Smith".into(),
                uri: "sip:bob@biloxi.com".into(),
                account: None,
            },
            crate::config::Contact {
                name: "echo test".into(),
                uri: "echo".into(),
                account: None,
            },
        ];
    }

    #[test]
    fn a_contact_name_dials_its_uri_and_anything_else_is_dialed_as_typed() {
        let mut s = state();
        with_contacts(&mut s);
        type_text(&mut s, "bob smith");
        assert_eq!(
            update(&mut s, Action::Submit),
            Some(Command::Dial("sip:bob@biloxi.com".into()))
        );
        type_text(&mut s, "  Echo Test ");
        assert_eq!(
            update(&mut s, Action::Submit),
            Some(Command::Dial("echo".into()))
        );
        type_text(&mut s, "bob");
        assert_eq!(
            update(&mut s, Action::Submit),
            Some(Command::Dial("bob".into())),
            "a prefix of a name is not the name"
        );
    }

    #[test]
    fn the_contacts_popup_lists_contacts_then_newest_calls_and_enter_dials() {
        let mut s = state();
        assert_eq!(update(&mut s, Action::ShowContacts), None);
        // Nothing to list yet: it opens anyway, `n` adds the first contact there.
        assert!(s.status.as_deref().is_some_and(|m| m.contains("n adds")));
        s.popup = None;
        with_contacts(&mut s);
        with_call(&mut s, "1", CallState::Calling);
        let now = s.now;
        s.apply_event(
            Event::Call {
                call: "1".into(),
                state: CallState::Terminated,
                remote: "sip:carol@chicago.com".into(),
                code: Some(486),
                reason: Some("Busy Here".into()),
                sip_call_id: None,
                account: None,
            },
            now,
        );
        assert!(s.history_dirty);
        assert_eq!(s.history.len(), 1);
        assert_eq!(s.history[0].result, "486 Busy Here");
        assert_eq!(s.history[0].direction, "out");
        update(&mut s, Action::ShowContacts);
        assert_eq!(s.popup, Some(Popup::Contacts { selected: 0 }));
        for _ in 0..5 {
            update(&mut s, Action::Down);
        }
        assert_eq!(
            s.popup,
            Some(Popup::Contacts { selected: 2 }),
            "stops at the end"
        );
        update(&mut s, Action::Up);
        update(&mut s, Action::Down);
        assert_eq!(
            update(&mut s, Action::Submit),
            Some(Command::Dial("sip:carol@chicago.com".into()))
        );
        assert_eq!(s.popup, None);
        update(&mut s, Action::ShowContacts);
        assert_eq!(update(&mut s, Action::Cancel), None);
        assert_eq!(s.popup, None);
    }

    #[test]
    fn missed_and_answered_calls_are_recorded() {
        let mut s = state();
        with_call(&mut s, "7", CallState::Incoming);
        with_call(&mut s, "7", CallState::Terminated);
        with_call(&mut s, "8", CallState::Incoming);
        with_call(&mut s, "8", CallState::Confirmed);
        with_call(&mut s, "8", CallState::Terminated);
        let results: Vec<(&str, &str)> = s
            .history
            .iter()
            .map(|h| (h.direction.as_str(), h.result.as_str()))
            .collect();
        assert_eq!(results, vec![("in", "missed"), ("in", "answered")]);
    }

    #[test]
    fn the_dial_field_is_bounded() {
        let mut s = state();
        for _ in 0..FIELD_LIMIT + 10 {
            update(&mut s, Action::Type('1'));
        }
        assert_eq!(s.dial.text.len(), FIELD_LIMIT);
    }

    fn sip_in(state: &mut UiState, first: &str, call_id: &str, cseq: &str) {
        let raw = format!("{first}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n\r\n");
        let now = state.now;
        state.apply_event(
            Event::Sip {
                dir: Direction::In,
                peer: "127.0.0.1:5060".into(),
                summary: first.into(),
                raw: Arc::from(raw.into_bytes()),
            },
            now,
        );
    }

    #[test]
    fn f_filters_the_log_to_the_selected_call_and_capital_f_cycles_methods() {
        let mut s = state();
        s.focus = Focus::Log;
        assert_eq!(update(&mut s, Action::CycleCallFilter), None);
        assert_eq!(s.log_call_filter, None, "no call selected");
        let now = s.now;
        s.apply_event(
            Event::Call {
                call: "1".into(),
                state: CallState::Calling,
                remote: "sip:bob@b".into(),
                code: None,
                reason: None,
                sip_call_id: Some("c1@x".into()),
                account: None,
            },
            now,
        );
        sip_in(&mut s, "INVITE sip:bob@b SIP/2.0", "c1@x", "1 INVITE");
        sip_in(&mut s, "OPTIONS sip:a@b SIP/2.0", "other@x", "1 OPTIONS");
        sip_in(&mut s, "SIP/2.0 180 Ringing", "c1@x", "1 INVITE");
        sip_in(&mut s, "BYE sip:a@b SIP/2.0", "c1@x", "2 BYE");
        update(&mut s, Action::CycleCallFilter);
        assert_eq!(s.log_call_filter.as_deref(), Some("c1@x"));
        assert_eq!(s.visible_log(), vec![0, 2, 3]);
        // F: BYE, INVITE, OPTIONS (sorted), then all again; combined with the call filter.
        update(&mut s, Action::CycleMethodFilter);
        assert_eq!(s.log_method_filter.as_deref(), Some("BYE"));
        assert_eq!(s.visible_log(), vec![3]);
        update(&mut s, Action::CycleMethodFilter);
        assert_eq!(s.log_method_filter.as_deref(), Some("INVITE"));
        assert_eq!(s.visible_log(), vec![0, 2]);
        update(&mut s, Action::CycleMethodFilter);
        assert_eq!(s.log_method_filter.as_deref(), Some("OPTIONS"));
        assert!(s.visible_log().is_empty());
        update(&mut s, Action::CycleMethodFilter);
        assert_eq!(s.log_method_filter, None);
        update(&mut s, Action::CycleCallFilter);
        assert_eq!(s.log_call_filter, None);
        assert_eq!(s.visible_log().len(), 4);
        // Esc in the log clears every filter.
        update(&mut s, Action::CycleCallFilter);
        update(&mut s, Action::CycleMethodFilter);
        update(&mut s, Action::Cancel);
        assert!(!s.log_filtered());
        // ...and the status line no longer names the method filter that is gone.
        assert_eq!(
            s.status.as_deref(),
            Some("log: every message, following the newest")
        );
    }
}
