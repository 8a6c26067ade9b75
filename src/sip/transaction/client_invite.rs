//! INVITE client transaction (RFC 3261 §17.1.1, with the Accepted state of RFC 6026).
//!
//! Calling --1xx--> Proceeding --300-699--> Completed --D--> Terminated
//!    |                 |--2xx--> Accepted --M--> Terminated
//!    +--B--> Timeout

use std::time::{Duration, Instant};

use super::Action;
use super::key::TopVia;
use super::timer::{TIMER_D_UNRELIABLE, Timer, TimerConfig, TimerTable};
use crate::sip::message::{Message, Method, Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ClientInvite {
    request: Request,
    state: State,
    pub(crate) timers: TimerTable,
    reliable: bool,
    /// The next Timer A interval: T1, doubling after each retransmission (no cap for INVITE,
    /// RFC 3261 §17.1.1.2).
    retransmit_interval: Duration,
    /// The ACK for the non-2xx final, kept to answer retransmissions of that final.
    ack: Option<Request>,
    config: TimerConfig,
}

impl ClientInvite {
    pub(crate) fn start(
        request: Request,
        reliable: bool,
        config: TimerConfig,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Self {
        let mut timers = TimerTable::new();
        if !reliable {
            timers.set(Timer::A, now, config.t1);
        }
        timers.set(Timer::B, now, config.timeout());
        out.push(Action::Send(Message::Request(request.clone())));
        ClientInvite {
            request,
            state: State::Calling,
            timers,
            reliable,
            retransmit_interval: config.t1,
            ack: None,
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
            State::Calling | State::Proceeding => {
                if response.is_provisional() {
                    // In Proceeding the INVITE is no longer retransmitted and there is no timeout:
                    // the TU cancels or waits (Timer C is a proxy matter).
                    self.timers.stop(Timer::A);
                    self.timers.stop(Timer::B);
                    self.state = State::Proceeding;
                    out.push(Action::PassResponse(response));
                } else if response.is_success() {
                    self.timers.stop_all();
                    self.timers.set(Timer::M, now, self.config.timeout());
                    self.state = State::Accepted;
                    out.push(Action::PassResponse(response));
                } else {
                    self.timers.stop_all();
                    let ack = self.build_ack(&response);
                    out.push(Action::Send(Message::Request(ack.clone())));
                    self.ack = Some(ack);
                    let wait = if self.reliable {
                        Duration::ZERO
                    } else {
                        TIMER_D_UNRELIABLE
                    };
                    self.timers.set(Timer::D, now, wait);
                    self.state = State::Completed;
                    out.push(Action::PassResponse(response));
                }
            }
            State::Completed => {
                // A retransmitted final: our ACK was lost, send it again; the TU already knows.
                if !response.is_success()
                    && !response.is_provisional()
                    && let Some(ack) = &self.ack
                {
                    out.push(Action::Send(Message::Request(ack.clone())));
                }
            }
            State::Accepted => {
                // Every 2xx goes up: each may come from another fork and needs its own ACK.
                if response.is_success() {
                    out.push(Action::PassResponse(response));
                }
            }
            State::Terminated => {}
        }
    }

    pub(crate) fn on_timer(&mut self, timer: Timer, now: Instant, out: &mut Vec<Action>) {
        match (timer, self.state) {
            (Timer::A, State::Calling) => {
                out.push(Action::Send(Message::Request(self.request.clone())));
                self.retransmit_interval = self.retransmit_interval.saturating_mul(2);
                self.timers.set(Timer::A, now, self.retransmit_interval);
            }
            (Timer::B, State::Calling) => {
                self.terminate();
                out.push(Action::Timeout);
            }
            (Timer::D, State::Completed) | (Timer::M, State::Accepted) => self.terminate(),
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

    /// The ACK for a non-2xx final (RFC 3261 §17.1.1.3): Request-URI, Call-ID, From and the
    /// CSeq number of the INVITE, To of the response, only the INVITE's top Via, its Route set.
    fn build_ack(&self, response: &Response) -> Request {
        let invite = &self.request.headers;
        let mut ack = Request::new(Method::Ack, self.request.uri.clone());
        if let Some(via) = TopVia::of(invite) {
            ack.headers.push("Via", via.raw);
        }
        if let Some(max_forwards) = invite.get("Max-Forwards") {
            ack.headers.push("Max-Forwards", max_forwards);
        }
        for route in invite.get_all("Route") {
            ack.headers.push("Route", route);
        }
        if let Some(from) = invite.get("From") {
            ack.headers.push("From", from);
        }
        if let Some(to) = response.headers.get("To").or_else(|| invite.get("To")) {
            ack.headers.push("To", to);
        }
        if let Some(call_id) = invite.get("Call-ID") {
            ack.headers.push("Call-ID", call_id);
        }
        if let Some((number, _)) = super::key::cseq(invite) {
            ack.headers.push("CSeq", format!("{number} ACK"));
        }
        ack
    }
}
