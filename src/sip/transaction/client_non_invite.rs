//! Non-INVITE client transaction (RFC 3261 §17.1.2).
//!
//! Trying --1xx--> Proceeding --final--> Completed --K--> Terminated
//!   +-- final ----------------------------^
//!   +--F--> Timeout (also from Proceeding)

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
pub(crate) struct ClientNonInvite {
    request: Request,
    state: State,
    pub(crate) timers: TimerTable,
    reliable: bool,
    /// The next Timer E interval: doubles from T1, capped at T2; T2 once in Proceeding.
    retransmit_interval: Duration,
    config: TimerConfig,
}

impl ClientNonInvite {
    pub(crate) fn start(
        request: Request,
        reliable: bool,
        config: TimerConfig,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Self {
        let mut timers = TimerTable::new();
        if !reliable {
            timers.set(Timer::E, now, config.t1);
        }
        timers.set(Timer::F, now, config.timeout());
        out.push(Action::Send(Message::Request(request.clone())));
        ClientNonInvite {
            request,
            state: State::Trying,
            timers,
            reliable,
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

    pub(crate) fn on_response(&mut self, response: Response, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Trying | State::Proceeding => {
                if response.is_provisional() {
                    self.state = State::Proceeding;
                } else {
                    self.timers.stop_all();
                    let wait = if self.reliable {
                        Duration::ZERO
                    } else {
                        self.config.t4
                    };
                    self.timers.set(Timer::K, now, wait);
                    self.state = State::Completed;
                }
                out.push(Action::PassResponse(response));
            }
            // Retransmitted finals are absorbed.
            State::Completed | State::Terminated => {}
        }
    }

    pub(crate) fn on_timer(&mut self, timer: Timer, now: Instant, out: &mut Vec<Action>) {
        match (timer, self.state) {
            (Timer::E, State::Trying) => {
                out.push(Action::Send(Message::Request(self.request.clone())));
                self.retransmit_interval = self
                    .retransmit_interval
                    .saturating_mul(2)
                    .min(self.config.t2);
                self.timers.set(Timer::E, now, self.retransmit_interval);
            }
            (Timer::E, State::Proceeding) => {
                out.push(Action::Send(Message::Request(self.request.clone())));
                self.timers.set(Timer::E, now, self.config.t2);
            }
            (Timer::F, State::Trying | State::Proceeding) => {
                self.terminate();
                out.push(Action::Timeout);
            }
            (Timer::K, State::Completed) => self.terminate(),
            _ => {}
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
