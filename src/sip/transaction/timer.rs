//! Transaction timers as data (RFC 3261 §17, table 4; RFC 6026 L and M).
//!
//! Each transaction owns a `TimerTable`: one optional deadline per timer. Nothing here reads the
//! clock; deadlines are computed from the `now` handed in by the caller.

use std::time::{Duration, Instant};

/// RTT estimate (RFC 3261 §17.1.1.1 default).
pub const T1: Duration = Duration::from_millis(500);
/// Maximum retransmit interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// Maximum duration a message remains in the network.
pub const T4: Duration = Duration::from_secs(5);
/// How long an INVITE server transaction waits for the TU before sending 100 Trying itself
/// (RFC 3261 §17.2.1).
pub const AUTO_TRYING_DELAY: Duration = Duration::from_millis(200);
/// Timer D lower bound on unreliable transports (RFC 3261 table 4: "> 32s for UDP").
pub const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// The base timer values; everything else derives from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: T1,
            t2: T2,
            t4: T4,
        }
    }
}

impl TimerConfig {
    /// 64*T1: timers B, F, H, J (unreliable), L and M.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// Every timer a transaction can arm. `Trying` is the 200 ms auto-100 of an INVITE server
/// transaction; `L` and `M` are the Accepted-state timers of RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Client INVITE request retransmission (unreliable only).
    A,
    /// Client INVITE timeout.
    B,
    /// Client INVITE wait for response retransmissions in Completed.
    D,
    /// Client non-INVITE request retransmission (unreliable only).
    E,
    /// Client non-INVITE timeout.
    F,
    /// Server INVITE final response retransmission (unreliable only).
    G,
    /// Server INVITE wait for ACK.
    H,
    /// Server INVITE wait for ACK retransmissions in Confirmed.
    I,
    /// Server non-INVITE wait for request retransmissions in Completed.
    J,
    /// Client non-INVITE wait for response retransmissions in Completed.
    K,
    /// Server INVITE Accepted state (RFC 6026).
    L,
    /// Client INVITE Accepted state (RFC 6026).
    M,
    /// Server INVITE: send 100 Trying if the TU stays silent.
    Trying,
}

impl Timer {
    const COUNT: usize = 13;
    const ALL: [Timer; Timer::COUNT] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
        Timer::Trying,
    ];

    fn slot(self) -> usize {
        self as usize
    }
}

/// One optional deadline per timer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerTable {
    deadlines: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    pub fn new() -> Self {
        TimerTable::default()
    }

    /// Arms `timer` to fire `after` from `now`. A deadline that overflows `Instant` (absurd
    /// configuration) leaves the timer unarmed rather than panicking.
    pub fn set(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.deadlines[timer.slot()] = now.checked_add(after);
    }

    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.slot()] = None;
    }

    pub fn stop_all(&mut self) {
        self.deadlines = [None; Timer::COUNT];
    }

    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.slot()]
    }

    pub fn is_armed(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest armed deadline.
    pub fn earliest(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the timer with the earliest deadline at or before `now`, so that
    /// timers fire in deadline order even when the caller is late.
    pub fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let (timer, _) = Timer::ALL
            .iter()
            .filter_map(|&timer| self.get(timer).map(|at| (timer, at)))
            .filter(|&(_, at)| at <= now)
            .min_by_key(|&(_, at)| at)?;
        self.stop(timer);
        Some(timer)
    }
}
