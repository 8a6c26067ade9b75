//! INVITE server transaction (RFC 3261 §17.2.1, with the Accepted state of RFC 6026).
//!
//! Proceeding --300-699--> Completed --ACK--> Confirmed --I--> Terminated
//!     |                       +--H--> Timeout
//!     +--2xx--> Accepted --L--> Terminated
//!
//! In Accepted the transaction does not retransmit the 2xx itself (the UA core does, through
//! `send_response`), absorbs INVITE retransmissions and lets ACKs through to the TU.

use std::time::{Duration, Instant};

use super::Action;
use super::timer::{AUTO_TRYING_DELAY, Timer, TimerConfig, TimerTable};
use crate::sip::message::{Message, Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// What became of an ACK that matched this transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// The ACK of our non-2xx final (or a retransmission of it): the transaction used it.
    Absorbed,
    /// An ACK in Accepted: it acknowledges a 2xx and belongs to the TU (RFC 6026 §7.1).
    ForTu,
}

#[derive(Debug)]
pub(crate) struct ServerInvite {
    request: Request,
    state: State,
    pub(crate) timers: TimerTable,
    reliable: bool,
    last_response: Option<Response>,
    /// The next Timer G interval: doubles from T1, capped at T2.
    retransmit_interval: Duration,
    config: TimerConfig,
}

impl ServerInvite {
    pub(crate) fn start(
        request: Request,
        reliable: bool,
        config: TimerConfig,
        now: Instant,
    ) -> Self {
        let mut timers = TimerTable::new();
        timers.set(Timer::Trying, now, AUTO_TRYING_DELAY);
        ServerInvite {
            request,
            state: State::Proceeding,
            timers,
            reliable,
            last_response: None,
            retransmit_interval: config.t1,
            config,
        }
    }

    pub(crate) fn request(&self) -> &Request {
        &self.request
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// A response from the TU. Responses the state does not allow (a second non-2xx final, a
    /// provisional after a final) are dropped.
    pub(crate) fn send_response(
        &mut self,
        response: Response,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        match self.state {
            State::Proceeding => {
                self.timers.stop(Timer::Trying);
                if response.is_provisional() {
                    self.transmit(response, out);
                } else if response.is_success() {
                    self.transmit(response, out);
                    self.timers.set(Timer::L, now, self.config.timeout());
                    self.state = State::Accepted;
                } else {
                    self.transmit(response, out);
                    if !self.reliable {
                        self.timers.set(Timer::G, now, self.retransmit_interval);
                    }
                    self.timers.set(Timer::H, now, self.config.timeout());
                    self.state = State::Completed;
                }
            }
            // The UA core retransmits its 2xx (and may send 2xx of other forks) through here.
            State::Accepted if response.is_success() => self.transmit(response, out),
            _ => {}
        }
    }

    /// A retransmission of the INVITE: answered with the last response, if any.
    pub(crate) fn on_retransmission(&mut self, out: &mut Vec<Action>) {
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(response) = &self.last_response
        {
            out.push(Action::Send(Message::Response(response.clone())));
        }
    }

    pub(crate) fn on_ack(&mut self, now: Instant) -> AckOutcome {
        match self.state {
            State::Completed => {
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    self.config.t4
                };
                self.timers.set(Timer::I, now, wait);
                self.state = State::Confirmed;
                AckOutcome::Absorbed
            }
            State::Accepted => AckOutcome::ForTu,
            State::Proceeding | State::Confirmed | State::Terminated => AckOutcome::Absorbed,
        }
    }

    pub(crate) fn on_timer(&mut self, timer: Timer, now: Instant, out: &mut Vec<Action>) {
        match (timer, self.state) {
            (Timer::Trying, State::Proceeding) => {
                let trying = trying_for(&self.request);
                self.transmit(trying, out);
            }
            (Timer::G, State::Completed) => {
                if let Some(response) = &self.last_response {
                    out.push(Action::Send(Message::Response(response.clone())));
                }
                self.retransmit_interval = self
                    .retransmit_interval
                    .saturating_mul(2)
                    .min(self.config.t2);
                self.timers.set(Timer::G, now, self.retransmit_interval);
            }
            (Timer::H, State::Completed) => {
                self.terminate();
                out.push(Action::Timeout);
            }
            (Timer::I, State::Confirmed) | (Timer::L, State::Accepted) => self.terminate(),
            _ => {}
        }
    }

    pub(crate) fn on_transport_error(&mut self, out: &mut Vec<Action>) {
        if self.state != State::Terminated {
            self.terminate();
            out.push(Action::TransportError);
        }
    }

    fn transmit(&mut self, response: Response, out: &mut Vec<Action>) {
        out.push(Action::Send(Message::Response(response.clone())));
        self.last_response = Some(response);
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.state = State::Terminated;
    }
}

/// A 100 Trying for `request` (RFC 3261 §8.2.6): Via, From, To (no tag added), Call-ID, CSeq and
/// Timestamp copied.
pub(crate) fn trying_for(request: &Request) -> Response {
    let mut trying = Response::new(100, "Trying");
    for header in request.headers.iter() {
        let copied = ["Via", "From", "To", "Call-ID", "CSeq", "Timestamp"]
            .iter()
            .any(|name| crate::sip::message::same_header(header.name, name));
        if copied {
            trying.headers.push(header.name, header.value);
        }
    }
    trying
}
