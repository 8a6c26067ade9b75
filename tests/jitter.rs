//! The adaptive jitter buffer against synthetic networks: deterministic packet schedules (a
//! small seeded PRNG, virtual time, no sleeps) with random and bursty loss, uniform and spiky
//! jitter, reordering, duplicates, sender clock drift and timestamp jumps. Each scenario runs
//! the buffer exactly as the media task does (packets inserted with their arrival time as they
//! come, one `pop_frame` per 20 ms tick) and checks what a listener would notice: how many
//! ticks play real audio rather than concealment, that playout never stalls into long silence
//! after it started, that the delay follows the jitter (low on a clean path, larger under
//! ±40 ms, back down after), and that the buffer stays bounded. Prints the results table.

use sipterm::media::jitter::{JitterBuffer, MAX_PACKETS, MAX_TARGET_FRAMES, Playout};

const FRAME: u32 = 160; // 20 ms at 8 kHz
const UNITS_PER_MS: f64 = 8.0;
const TICK_MS: f64 = 20.0;
/// Fixed one-way network delay under the jitter.
const BASE_DELAY_MS: f64 = 30.0;

/// xorshift64*: deterministic, good enough for schedules.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

#[derive(Clone, Copy)]
enum Loss {
    None,
    Random(f64),
    /// Gilbert model: `rate` overall, bursts of `mean_burst` packets on average.
    Bursty {
        rate: f64,
        mean_burst: f64,
    },
}

#[derive(Clone, Copy)]
enum Jitter {
    /// A millisecond or two of noise.
    Low,
    /// Extra delay uniform in 0..2*ms (that is ±ms around a mean).
    Uniform(f64),
    /// Low noise, and now and then the link stalls for `stall_ms` (uniform in half..full):
    /// every packet sent meanwhile arrives at the end of the stall.
    Spiky { stalls_per_s: f64, stall_ms: f64 },
}

#[derive(Clone)]
struct Scenario {
    name: &'static str,
    seconds: f64,
    loss: Loss,
    /// Jitter by phase: (from second, model).
    jitter: Vec<(f64, Jitter)>,
    /// Probability a packet is held back 1-2 frames (arrives after its successors).
    reorder: f64,
    /// Probability a packet arrives twice.
    duplicate: f64,
    /// Sender clock rate relative to ours minus one (+0.001: sends 0.1 % faster).
    drift: f64,
    /// Sender timestamp jumps by this many units at the middle of the run (0: none).
    jump: u32,
}

impl Scenario {
    fn new(name: &'static str, seconds: f64) -> Self {
        Self {
            name,
            seconds,
            loss: Loss::None,
            jitter: vec![(0.0, Jitter::Low)],
            reorder: 0.0,
            duplicate: 0.0,
            drift: 0.0,
            jump: 0,
        }
    }

    fn loss_rate(&self) -> f64 {
        match self.loss {
            Loss::None => 0.0,
            Loss::Random(p) => p,
            Loss::Bursty { rate, .. } => rate,
        }
    }

    fn jitter_at(&self, seconds: f64) -> Jitter {
        self.jitter
            .iter()
            .rev()
            .find(|(from, _)| seconds >= *from)
            .map_or(Jitter::Low, |(_, j)| *j)
    }
}

struct Arrival {
    at_ms: f64,
    sent_ms: f64,
    index: u32,
    timestamp: u32,
}

/// The packets as they reach us, in arrival order.
fn schedule(scenario: &Scenario, seed: u64) -> Vec<Arrival> {
    let mut rng = Rng::new(seed);
    let interval = TICK_MS / (1.0 + scenario.drift);
    let count = (scenario.seconds * 1000.0 / interval) as u32;
    let base_timestamp = u32::MAX - 50 * FRAME; // wraps early in every run
    let mut bad = false;
    let mut stall_until = f64::NEG_INFINITY;
    let mut arrivals = Vec::new();
    for index in 0..count {
        let sent = f64::from(index) * interval;
        let mut timestamp = base_timestamp.wrapping_add(index.wrapping_mul(FRAME));
        if scenario.jump != 0 && index >= count / 2 {
            timestamp = timestamp.wrapping_add(scenario.jump);
        }
        let lost = match scenario.loss {
            Loss::None => false,
            Loss::Random(p) => rng.chance(p),
            Loss::Bursty { rate, mean_burst } => {
                let leave_bad = 1.0 / mean_burst;
                let enter_bad = rate * leave_bad / (1.0 - rate);
                bad = if bad {
                    !rng.chance(leave_bad)
                } else {
                    rng.chance(enter_bad)
                };
                bad
            }
        };
        let mut delay = BASE_DELAY_MS + rng.unit() * 2.0;
        match scenario.jitter_at(sent / 1000.0) {
            Jitter::Low => {}
            Jitter::Uniform(ms) => delay += rng.unit() * 2.0 * ms,
            Jitter::Spiky {
                stalls_per_s,
                stall_ms,
            } => {
                if sent >= stall_until && rng.chance(stalls_per_s * interval / 1000.0) {
                    stall_until = sent + stall_ms * (0.5 + 0.5 * rng.unit());
                }
                if sent < stall_until {
                    delay += stall_until - sent;
                }
            }
        }
        if rng.chance(scenario.reorder) {
            delay += TICK_MS * (1.0 + rng.unit());
        }
        if lost {
            continue;
        }
        arrivals.push(Arrival {
            at_ms: sent + delay,
            sent_ms: sent,
            index,
            timestamp,
        });
        if rng.chance(scenario.duplicate) {
            arrivals.push(Arrival {
                at_ms: sent + delay + rng.unit() * 30.0,
                sent_ms: sent,
                index,
                timestamp,
            });
        }
    }
    arrivals.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    arrivals
}

#[derive(Clone, Copy, PartialEq)]
enum Tick {
    Buffering,
    /// Real frame, with the delay jitter and buffer added to the fixed path: playout time
    /// minus send time minus [`BASE_DELAY_MS`] (what the buffer costs the listener).
    Played {
        delay_ms: f64,
    },
    Concealed,
}

struct Run {
    ticks: Vec<Tick>,
    late: u64,
    max_len: usize,
    /// Target delay (frames) at each tick.
    targets: Vec<u32>,
    stretched: u64,
    shrunk: u64,
    out_of_order: u32,
}

/// Plays the schedule through a buffer built like the media task's. Untimed, pops fall on
/// the 20 ms grid (`pop_frame`, what WAV-file calls and 10 ms packets use).
///
/// `timed`: pops with `pop_frame_at`, the playout clock moving earlier by each phase advance
/// the buffer asks for, as the media task's does with a 20 ms packet time.
fn simulate_mode(scenario: &Scenario, seed: u64, timed: bool) -> Run {
    let arrivals = schedule(scenario, seed);
    let mut buffer = JitterBuffer::new(FRAME, 3);
    // Our arrival clock has its own origin, close to wrapping too.
    let clock_origin: u32 = u32::MAX - 4000;
    let mut sent = std::collections::HashMap::new();
    let mut ticks = Vec::new();
    let mut targets = Vec::new();
    let mut max_len = 0;
    let mut pending = arrivals.iter().peekable();
    let mut last_index = None;
    let mut out_of_order = 0;
    let total_ticks = (scenario.seconds * 1000.0 / TICK_MS) as u32 + 20;
    let mut now = 0.0;
    for _ in 1..=total_ticks {
        now += TICK_MS;
        while let Some(arrival) = pending.next_if(|a| a.at_ms <= now) {
            sent.insert(arrival.index, arrival.sent_ms);
            let units = clock_origin.wrapping_add((arrival.at_ms * UNITS_PER_MS) as u32);
            buffer.insert_at(arrival.timestamp, &arrival.index.to_be_bytes(), units);
            max_len = max_len.max(buffer.len());
        }
        let mut advance_ms = 0.0;
        let playout = if timed {
            let playout =
                buffer.pop_frame_at(clock_origin.wrapping_add((now * UNITS_PER_MS) as u32));
            if let Some(units) = buffer.take_phase_advance() {
                assert!(
                    units < FRAME,
                    "a phase advance of {units} units: whole frames are skips"
                );
                advance_ms = f64::from(units) / UNITS_PER_MS;
            }
            playout
        } else {
            buffer.pop_frame()
        };
        let tick = match playout {
            Playout::Buffering => Tick::Buffering,
            Playout::Missing => Tick::Concealed,
            Playout::Frame(payload) => {
                let index = u32::from_be_bytes(payload.as_slice().try_into().unwrap());
                if last_index.is_some_and(|last| index <= last) {
                    out_of_order += 1;
                }
                last_index = Some(index);
                Tick::Played {
                    delay_ms: now - sent[&index] - BASE_DELAY_MS,
                }
            }
        };
        ticks.push(tick);
        // The next pop comes that much sooner.
        now -= advance_ms;
        targets.push(buffer.target_delay());
        max_len = max_len.max(buffer.len());
    }
    let stats = buffer.stats();
    Run {
        ticks,
        late: stats.late,
        max_len,
        targets,
        stretched: stats.stretched,
        shrunk: stats.shrunk,
        out_of_order,
    }
}

#[derive(Debug)]
struct Summary {
    played_pct: f64,
    concealed_pct: f64,
    mean_delay_ms: f64,
    p95_delay_ms: f64,
    /// Longest run of Buffering ticks after playout first started.
    buffering_run: usize,
}

/// Figures over the ticks in [from_s, to_s).
fn summarize(run: &Run, from_s: f64, to_s: f64) -> Summary {
    let first = (from_s * 1000.0 / TICK_MS) as usize;
    let last = ((to_s * 1000.0 / TICK_MS) as usize).min(run.ticks.len());
    let window = &run.ticks[first..last];
    let mut delays: Vec<f64> = window
        .iter()
        .filter_map(|t| match t {
            Tick::Played { delay_ms } => Some(*delay_ms),
            _ => None,
        })
        .collect();
    let concealed = window.iter().filter(|t| **t == Tick::Concealed).count();
    delays.sort_by(f64::total_cmp);
    let started = run
        .ticks
        .iter()
        .position(|t| *t != Tick::Buffering)
        .unwrap_or(run.ticks.len());
    let mut buffering_run = 0;
    let mut current = 0;
    for tick in &run.ticks[started.max(first)..last] {
        if *tick == Tick::Buffering {
            current += 1;
            buffering_run = buffering_run.max(current);
        } else {
            current = 0;
        }
    }
    let n = window.len().max(1) as f64;
    Summary {
        played_pct: 100.0 * delays.len() as f64 / n,
        concealed_pct: 100.0 * concealed as f64 / n,
        mean_delay_ms: delays.iter().sum::<f64>() / delays.len().max(1) as f64,
        p95_delay_ms: delays
            .get((delays.len() as f64 * 0.95) as usize)
            .copied()
            .unwrap_or(0.0),
        buffering_run,
    }
}

fn row(scenario: &str, phase: &str, run: &Run, summary: &Summary, expected_packets: f64) -> String {
    format!(
        "| {scenario:<26} | {phase:<9} | {:>6.2} | {:>6.2} | {:>6.2} | {:>6.1} | {:>6.1} | {:>4} | {:>5} | {:>4}/{:<4} |",
        summary.played_pct,
        summary.concealed_pct,
        100.0 * run.late as f64 / expected_packets,
        summary.mean_delay_ms,
        summary.p95_delay_ms,
        run.max_len,
        summary.buffering_run,
        run.stretched,
        run.shrunk,
    )
}

const HEADER: &str = "| scenario                   | phase     | played | concl% | late%  | mean ms | p95 ms | maxlen | bufrun | str/shr   |";

/// Checks common to every scenario; returns the whole-run summary (after a 2 s warm-up).
fn check(scenario: &Scenario, run: &Run) -> Summary {
    let summary = summarize(run, 2.0, scenario.seconds);
    let loss = 100.0 * scenario.loss_rate();
    assert!(
        run.max_len <= MAX_PACKETS && run.max_len <= MAX_TARGET_FRAMES as usize + 12,
        "{}: buffer grew to {} packets",
        scenario.name,
        run.max_len
    );
    assert!(
        run.targets.iter().all(|t| *t <= MAX_TARGET_FRAMES),
        "{}: target above the cap",
        scenario.name
    );
    if scenario.jump == 0 {
        assert_eq!(
            summary.buffering_run, 0,
            "{}: playout stalled into Buffering after it started",
            scenario.name
        );
    }
    assert_eq!(
        run.out_of_order, 0,
        "{}: frames played out of order",
        scenario.name
    );
    // Real audio on at least the ticks the network delivered in time for, give or take.
    assert!(
        summary.played_pct >= 100.0 - loss - 4.0,
        "{}: only {:.2} % of ticks played real audio at {loss} % loss",
        scenario.name,
        summary.played_pct
    );
    assert!(
        summary.concealed_pct <= loss + 4.0,
        "{}: {:.2} % concealment at {loss} % loss",
        scenario.name,
        summary.concealed_pct
    );
    summary
}

fn expected_packets(scenario: &Scenario) -> f64 {
    scenario.seconds * 1000.0 / TICK_MS * (1.0 + scenario.drift)
}

#[test]
fn jitter_buffer_results() {
    let uniform40 = Jitter::Uniform(40.0);
    let spiky = Jitter::Spiky {
        stalls_per_s: 0.3,
        stall_ms: 160.0,
    };
    let mut scenarios = vec![Scenario::new("clean", 60.0)];
    for (name, rate) in [
        ("loss 5% random", 0.05),
        ("loss 10% random", 0.10),
        ("loss 20% random", 0.20),
    ] {
        let mut s = Scenario::new(name, 60.0);
        s.loss = Loss::Random(rate);
        scenarios.push(s);
    }
    for (name, rate) in [
        ("loss 5% bursty", 0.05),
        ("loss 10% bursty", 0.10),
        ("loss 20% bursty", 0.20),
    ] {
        let mut s = Scenario::new(name, 60.0);
        s.loss = Loss::Bursty {
            rate,
            mean_burst: 3.0,
        };
        scenarios.push(s);
    }
    let mut s = Scenario::new("jitter ±40 ms uniform", 60.0);
    s.jitter = vec![(0.0, uniform40)];
    scenarios.push(s);
    let mut s = Scenario::new("jitter spiky (stalls)", 60.0);
    s.jitter = vec![(0.0, spiky)];
    scenarios.push(s);
    let mut s = Scenario::new("±40 ms + 10% bursty loss", 60.0);
    s.jitter = vec![(0.0, uniform40)];
    s.loss = Loss::Bursty {
        rate: 0.10,
        mean_burst: 3.0,
    };
    scenarios.push(s);
    let mut s = Scenario::new("reorder 10% + dup 10%", 60.0);
    s.reorder = 0.10;
    s.duplicate = 0.10;
    scenarios.push(s);
    let mut s = Scenario::new("drift +0.1% (10 min)", 600.0);
    s.drift = 0.001;
    scenarios.push(s);
    let mut s = Scenario::new("drift -0.1% (10 min)", 600.0);
    s.drift = -0.001;
    scenarios.push(s);
    let mut s = Scenario::new("drift -0.1% + ±40 ms", 600.0);
    s.drift = -0.001;
    s.jitter = vec![(0.0, uniform40)];
    scenarios.push(s);
    // Drift with moderate jitter: the buffer must not hunt (stretch/skip over and over).
    for (name, drift) in [
        ("drift +0.1% + ±20 ms", 0.001),
        ("drift -0.1% + ±20 ms", -0.001),
    ] {
        let mut s = Scenario::new(name, 600.0);
        s.drift = drift;
        s.jitter = vec![(0.0, Jitter::Uniform(20.0))];
        scenarios.push(s);
    }
    let mut s = Scenario::new("timestamp jump mid-call", 60.0);
    s.jump = 80_000 * 7;
    scenarios.push(s);

    println!("{HEADER}");
    let mut failures = Vec::new();
    // Both schedules: pops on the 20 ms grid, and timed pops whose phase follows the packets.
    for (mode, timed) in [("grid", false), ("timed", true)] {
        for (seed, scenario) in scenarios.iter().enumerate() {
            let run = simulate_mode(scenario, seed as u64 + 1, timed);
            let result = std::panic::catch_unwind(|| check(scenario, &run));
            let summary = summarize(&run, 2.0, scenario.seconds);
            println!(
                "{}",
                row(
                    scenario.name,
                    "all",
                    &run,
                    &summary,
                    expected_packets(scenario)
                )
                .replacen("| all", &format!("| {mode:<3}"), 1)
            );
            if let Err(panic) = result {
                failures.push(
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .map(|message| format!("{mode}: {message}"))
                        .unwrap_or_else(|| format!("{mode}: {}", scenario.name)),
                );
                continue;
            }
            let late_pct = 100.0 * run.late as f64 / expected_packets(scenario);
            let delay = summary.mean_delay_ms;
            let checks: Vec<(bool, String)> = match scenario.name {
                "clean" | "loss 5% random" | "loss 10% random" | "loss 20% random"
                | "loss 5% bursty" | "loss 10% bursty" | "loss 20% bursty" => vec![
                    (
                        delay <= 50.0,
                        format!("mean delay {delay:.1} ms on a clean path"),
                    ),
                    // Timed, a packet waits the guard and the path's 2 ms of noise, not the
                    // phase between its arrival and the 20 ms grid.
                    (
                        !timed || delay <= 12.0,
                        format!("mean delay {delay:.1} ms on a clean path with timed pops"),
                    ),
                    (
                        run.late == 0,
                        format!("{} late packets on a clean path", run.late),
                    ),
                ],
                "jitter ±40 ms uniform" | "±40 ms + 10% bursty loss" | "drift -0.1% + ±40 ms" => {
                    vec![
                        (
                            (60.0..=160.0).contains(&delay),
                            format!("mean delay {delay:.1} ms under ±40 ms jitter"),
                        ),
                        (
                            late_pct <= 5.0,
                            format!("{late_pct:.2} % late under ±40 ms"),
                        ),
                    ]
                }
                "jitter spiky (stalls)" => vec![(
                    delay <= 160.0,
                    format!("mean delay {delay:.1} ms with stalls"),
                )],
                "reorder 10% + dup 10%" => vec![
                    (
                        late_pct <= 1.0,
                        format!("{late_pct:.2} % late with 1-2 frame reordering"),
                    ),
                    (
                        delay <= 100.0,
                        format!("mean delay {delay:.1} ms with reordering"),
                    ),
                ],
                _ => vec![],
            };
            for (ok, message) in checks {
                if !ok {
                    failures.push(format!("{mode}: {}: {message}", scenario.name));
                }
            }
            if scenario.drift != 0.0 {
                // Neither grows nor starves: the last minute looks like the second.
                let early = summarize(&run, 60.0, 120.0);
                let late = summarize(&run, scenario.seconds - 60.0, scenario.seconds);
                println!(
                    "{}",
                    row(
                        scenario.name,
                        "min 2",
                        &run,
                        &early,
                        expected_packets(scenario)
                    )
                );
                println!(
                    "{}",
                    row(
                        scenario.name,
                        "min 10",
                        &run,
                        &late,
                        expected_packets(scenario)
                    )
                );
                // Drift needs one stretch (sender slower) or skip (faster) per frame of clock
                // difference; more than that is the buffer hunting around its target.
                let needed = scenario.drift.abs() * scenario.seconds * 1000.0 / TICK_MS;
                let adjustments = (run.stretched + run.shrunk) as f64;
                if adjustments > needed * 1.5 + 5.0 {
                    failures.push(format!(
                        "{}: {} stretches + {} skips where the drift needs {needed:.0}",
                        scenario.name, run.stretched, run.shrunk
                    ));
                }
                if (late.mean_delay_ms - early.mean_delay_ms).abs() > 30.0 {
                    failures.push(format!(
                        "{}: delay moved from {:.1} to {:.1} ms over the call",
                        scenario.name, early.mean_delay_ms, late.mean_delay_ms
                    ));
                }
            }
            if scenario.jump != 0 {
                // Restarting after the jump costs a few ticks of buffering, not seconds.
                let middle = summarize(
                    &run,
                    scenario.seconds / 2.0 - 2.0,
                    scenario.seconds / 2.0 + 5.0,
                );
                if middle.buffering_run > MAX_TARGET_FRAMES as usize + 2 {
                    failures.push(format!(
                        "{}: {} ticks of buffering after the jump",
                        scenario.name, middle.buffering_run
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

/// Delay follows the jitter: low on a clean path, larger while ±40 ms jitter lasts, and back
/// down once it is over.
#[test]
fn delay_grows_under_jitter_and_shrinks_back() {
    for timed in [false, true] {
        delay_grows_and_shrinks(timed);
    }
}

fn delay_grows_and_shrinks(timed: bool) {
    let mut scenario = Scenario::new("clean → ±40 ms → clean", 90.0);
    scenario.jitter = vec![
        (0.0, Jitter::Low),
        (30.0, Jitter::Uniform(40.0)),
        (60.0, Jitter::Low),
    ];
    let run = simulate_mode(&scenario, 99, timed);
    check(&scenario, &run);
    let before = summarize(&run, 10.0, 30.0);
    let during = summarize(&run, 40.0, 60.0);
    let after = summarize(&run, 75.0, 90.0);
    let onset = summarize(&run, 30.0, 35.0);
    println!("{HEADER}");
    for (phase, summary) in [
        ("10-30 s", &before),
        ("30-35 s", &onset),
        ("40-60 s", &during),
        ("75-90 s", &after),
    ] {
        println!(
            "{}",
            row(
                scenario.name,
                phase,
                &run,
                summary,
                expected_packets(&scenario)
            )
        );
    }
    assert!(before.mean_delay_ms <= 50.0, "{before:?}");
    assert!(
        during.mean_delay_ms >= before.mean_delay_ms + 30.0,
        "delay did not grow under jitter: {before:?} then {during:?}"
    );
    assert!(during.concealed_pct <= 5.0, "{during:?}");
    assert!(
        after.mean_delay_ms <= before.mean_delay_ms + 15.0,
        "delay did not come back down: {before:?}, {during:?}, then {after:?}"
    );
    // Growing is quick: within 5 s of the onset, little worse than steady state.
    assert!(onset.concealed_pct <= 10.0, "{onset:?}");
}

/// Without arrival times (`insert`), the buffer keeps the fixed delay it was built with.
#[test]
fn plain_insert_keeps_the_fixed_delay() {
    let mut buffer = JitterBuffer::new(FRAME, 3);
    let mut buffering = 0;
    for index in 0..500u32 {
        buffer.insert(index * FRAME, &index.to_be_bytes());
        match buffer.pop_frame() {
            Playout::Buffering => buffering += 1,
            Playout::Frame(_) => {}
            Playout::Missing => panic!("missing frame {index} on a perfect stream"),
        }
        assert_eq!(buffer.target_delay(), 3);
    }
    assert_eq!(buffering, 3);
    assert_eq!(buffer.len(), 3, "three frames stay queued: the fixed delay");
}
