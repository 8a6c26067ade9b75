//! Non-INVITE server transaction (RFC 3261 §17.2.2).
//!
//! Trying --1xx--> Proceeding --final--> Completed --J--> Terminated
//!   +-- final ----------------------------^

use std::time::{Duration, Instant};

use super::Action;
use super::timer::{Timer, TimerConfig, TimerTable};
use crate::sip::message::{Message, Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ServerNonInvite {
    /// Dropped once the final response is sent: a completed transaction only needs that
    /// response (for retransmissions of the request) and its key, and a flood keeps thousands
    /// of completed ones alive for Timer J.
    request: Option<Request>,
    state: State,
    pub(crate) timers: TimerTable,
    reliable: bool,
    last_response: Option<Response>,
    config: TimerConfig,
}

impl ServerNonInvite {
    pub(crate) fn start(request: Request, reliable: bool, config: TimerConfig) -> Self {
        ServerNonInvite {
            request: Some(request),
            state: State::Trying,
            timers: TimerTable::new(),
            reliable,
            last_response: None,
            config,
        }
    }

    pub(crate) fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    /// Final response sent, waiting for Timer J (only absorbs retransmissions).
    pub(crate) fn is_completed(&self) -> bool {
        self.state == State::Completed
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// A response from the TU; anything after the final is dropped.
    pub(crate) fn send_response(
        &mut self,
        response: Response,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return;
        }
        let is_final = response.is_final();
        out.push(Action::Send(Message::Response(response.clone())));
        self.last_response = Some(response);
        if is_final {
            let wait = if self.reliable {
                Duration::ZERO
            } else {
                self.config.timeout()
            };
            self.timers.set(Timer::J, now, wait);
            self.state = State::Completed;
            self.request = None;
        } else {
            self.state = State::Proceeding;
        }
    }

    /// A retransmission of the request: silent in Trying, otherwise the last response again.
    pub(crate) fn on_retransmission(&mut self, out: &mut Vec<Action>) {
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(response) = &self.last_response
        {
            out.push(Action::Send(Message::Response(response.clone())));
        }
    }

    pub(crate) fn on_timer(&mut self, timer: Timer, _now: Instant, _out: &mut Vec<Action>) {
        if (timer, self.state) == (Timer::J, State::Completed) {
            self.terminate();
        }
    }

    pub(crate) fn on_transport_error(&mut self, out: &mut Vec<Action>) {
        if self.state != State::Terminated {
            self.terminate();
            out.push(Action::TransportError);
        }
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.state = State::Terminated;
    }
}
