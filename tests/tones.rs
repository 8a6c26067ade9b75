//! Tones, mute and levels as a user hears and sees them, through headless sipterms on
//! 127.0.0.1 whose "speaker" is a WAV file (--audio-out): the ringback a caller hears before
//! the callee answers and then the call audio, the busy tone after a reject (US region from
//! the config), the ringtone of an incoming call (built-in, a configured file, or off),
//! silence at the far end while muted, and the `levels` events (`--levels`) of a call to the
//! built-in echo service.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::headless::{Headless, HeadlessOptions, read_wav, sine, write_wav};
use sipterm::media::tones::{cadence, dominant_frequency, goertzel_power, rms};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const CALL: Duration = Duration::from_secs(10);

fn config(audio: &str) -> String {
    format!("[audio]\n{audio}\n\n[[account]]\nname = \"t\"\nuri = \"sip:t@127.0.0.1\"\n")
}

/// Waits until `path` is a complete WAV (finalized) with at least `seconds` of audio.
fn wait_wav(path: &Path, seconds: f32, timeout: Duration) -> Result<(u32, Vec<i16>), String> {
    let start = Instant::now();
    loop {
        if let Ok((rate, samples)) = read_wav(path)
            && samples.len() as f32 >= rate as f32 * seconds
        {
            return Ok((rate, samples));
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "{} did not get {seconds} s of audio in {timeout:?}",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How much audio `path` holds so far (ms), from its size while sipterm still writes it: the
/// test paces itself by the recording, not by the wall clock, so a loaded machine that runs
/// sipterm late shifts both alike. The file is written through an 8 KB buffer, so this lags the
/// truth by at most 8 KB of samples (256 ms at 16 kHz, 85 ms at 48 kHz); 0 before the header.
fn recorded_ms(path: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    let Some(rate) = bytes
        .get(24..28)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .filter(|&r| r > 0)
    else {
        return 0;
    };
    (bytes.len().saturating_sub(44) as u64 / 2) * 1000 / u64::from(rate)
}

/// Waits until `path` holds at least `ms` of audio; returns how much it holds.
fn wait_recorded(path: &Path, ms: u64, timeout: Duration) -> Result<u64, String> {
    let start = Instant::now();
    loop {
        let have = recorded_ms(path);
        if have >= ms {
            return Ok(have);
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "{} holds {have} ms of audio, not {ms} ms, after {timeout:?}",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ms_to_samples(rate: u32, ms: u32) -> usize {
    rate as usize * ms as usize / 1000
}

/// The caller hears ringback until the callee picks up: the caller's output WAV holds the EU
/// ringback (425 Hz, 1 s on, then off) and after it the callee's 1 kHz tone. The callee
/// answers once the caller's recording holds ~2 s of ringback, so the burst and the pause are
/// in the recording whatever the machine's load.
#[test]
fn caller_hears_ringback_then_the_call() -> TestResult {
    let dir = tempfile::tempdir()?;
    let callee_in = dir.path().join("callee_in.wav");
    write_wav(&callee_in, 48_000, &sine(1000.0, 48_000, 8.0, 12_000.0))?;
    let caller_out = dir.path().join("caller_out.wav");
    let mut callee = Headless::spawn(
        "callee",
        &HeadlessOptions {
            audio_in: Some(callee_in),
            ..HeadlessOptions::default()
        },
    )?;
    let mut caller = Headless::spawn(
        "caller",
        &HeadlessOptions {
            audio_out: Some(caller_out.clone()),
            ..HeadlessOptions::default()
        },
    )?;
    caller.send(&format!("dial {}", callee.uri("callee")))?;
    caller.expect_call_state("ringing", CALL)?;
    callee.expect_call_state("incoming", CALL)?;
    let rung = wait_recorded(&caller_out, 2000, CALL)?;
    callee.send("answer")?;
    caller.expect_call_state("confirmed", CALL)?;
    // 1.5 s of the call after the ringback (the answer came at `rung` ms or later).
    wait_recorded(&caller_out, rung + 1500, CALL)?;
    caller.send("hangup")?;
    caller.expect_call_state("terminated", CALL)?;
    callee.expect_call_state("terminated", CALL)?;
    let (rate, samples) = wait_wav(&caller_out, 2.5, Duration::from_secs(5))?;
    let runs = cadence(&samples, rate, 50, 300.0);
    println!("caller's output, {rate} Hz, on/off runs (ms): {runs:?}");
    assert!(runs.len() >= 3, "{runs:?}");
    let (on, on_ms) = runs[0];
    assert!(
        on && (900..=1100).contains(&on_ms),
        "ringback burst: {runs:?}"
    );
    let (off, off_ms) = runs[1];
    assert!(!off && off_ms >= 500, "ringback pause: {runs:?}");
    let burst = &samples[ms_to_samples(rate, 100)..ms_to_samples(rate, 900)];
    let burst_frequency = dominant_frequency(burst, rate);
    println!("ringback: {burst_frequency:.1} Hz for {on_ms} ms, then {off_ms} ms off");
    assert!((burst_frequency - 425.0).abs() < 3.0, "{burst_frequency}");
    // Then the call: the callee's 1 kHz after the pause.
    let call_start = ms_to_samples(rate, on_ms + off_ms);
    let call = samples
        .get(call_start + ms_to_samples(rate, 200)..call_start + ms_to_samples(rate, 1000))
        .ok_or("the call audio is shorter than 1 s")?;
    let call_frequency = dominant_frequency(call, rate);
    println!(
        "call audio from {} ms: {call_frequency:.1} Hz, rms {:.0}",
        on_ms + off_ms,
        rms(call)
    );
    assert!((call_frequency - 1000.0).abs() < 5.0, "{call_frequency}");
    assert!(rms(call) > 3000.0, "{}", rms(call));
    caller.quit(Duration::from_secs(5));
    callee.quit(Duration::from_secs(5));
    Ok(())
}

/// A reject (486) gives the caller about 3 s of busy tone; `tone_region = "us"` makes it
/// 480+620 Hz, 0.5 s on / 0.5 s off.
#[test]
fn rejected_caller_hears_the_us_busy_tone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let caller_out = dir.path().join("caller_out.wav");
    let mut callee = Headless::spawn("callee", &HeadlessOptions::default())?;
    let mut caller = Headless::spawn(
        "caller",
        &HeadlessOptions {
            audio_out: Some(caller_out.clone()),
            config_toml: Some(config("tone_region = \"us\"")),
            ..HeadlessOptions::default()
        },
    )?;
    caller.send(&format!("dial {}", callee.uri("callee")))?;
    callee.expect_call_state("incoming", CALL)?;
    callee.send("reject")?;
    let ended = caller.expect_call_state("terminated", CALL)?;
    assert_eq!(ended["code"], 486, "{ended}");
    let (rate, samples) = wait_wav(&caller_out, 2.9, Duration::from_secs(8))?;
    let runs = cadence(&samples, rate, 50, 300.0);
    println!(
        "busy tone at {rate} Hz: {:.2} s, runs {runs:?}",
        samples.len() as f32 / rate as f32
    );
    // The ringback may come first (the 180 before the reject); the busy tone is the tail.
    let seconds = samples.len() as f32 / rate as f32;
    let tail = &runs[runs.len().saturating_sub(6)..];
    assert!(tail.len() == 6, "{runs:?}");
    for (i, &(on, ms)) in tail.iter().enumerate() {
        assert_eq!(on, i % 2 == 0, "{runs:?}");
        assert!((450..=550).contains(&ms), "{runs:?}");
    }
    let burst_start = samples.len() - ms_to_samples(rate, 3000);
    let burst = &samples[burst_start..burst_start + ms_to_samples(rate, 450)];
    let (a, b, eu) = (
        goertzel_power(burst, rate, 480.0),
        goertzel_power(burst, rate, 620.0),
        goertzel_power(burst, rate, 425.0),
    );
    println!("{seconds:.2} s; power at 480 {a:.4}, 620 {b:.4}, 425 {eu:.6}");
    assert!(a > 0.001 && b > 0.001, "{a} {b}");
    assert!(a > 20.0 * eu, "{a} {eu}");
    // The busy tone stops after 3 s: three 0.5 s bursts in all. 620 Hz is busy-only (the US
    // ringback before the reject is 440+480 Hz), so count the recording's 50 ms windows of it.
    let window = ms_to_samples(rate, 50);
    let busy_ms = samples
        .chunks_exact(window)
        .filter(|w| goertzel_power(w, rate, 620.0) > 0.001)
        .count()
        * 50;
    println!("620 Hz in {busy_ms} ms of the recording");
    assert!(
        (1350..=1650).contains(&busy_ms),
        "the busy tone must sound 3 x 0.5 s, sounded {busy_ms} ms"
    );
    caller.quit(Duration::from_secs(5));
    callee.quit(Duration::from_secs(5));
    Ok(())
}

/// Rings a callee whose output is `out` with `audio` config until its recording holds 1.5 s
/// (or, with nothing recorded, for 1.5 s), then the caller gives up (CANCEL).
fn ring_callee(out: &Path, audio: &str, records: bool) -> TestResult {
    let mut callee = Headless::spawn(
        "callee",
        &HeadlessOptions {
            audio_out: Some(out.to_path_buf()),
            config_toml: Some(config(audio)),
            ..HeadlessOptions::default()
        },
    )?;
    let mut caller = Headless::spawn("caller", &HeadlessOptions::default())?;
    caller.send(&format!("dial {}", callee.uri("callee")))?;
    callee.expect_call_state("incoming", CALL)?;
    if records {
        wait_recorded(out, 1500, CALL)?;
    } else {
        std::thread::sleep(Duration::from_millis(1500));
    }
    caller.send("hangup")?;
    callee.expect_call_state("terminated", CALL)?;
    caller.quit(Duration::from_secs(5));
    callee.quit(Duration::from_secs(5));
    Ok(())
}

/// The built-in ringtone (a C6/E6 trill) plays while a call is incoming, and stops with it.
#[test]
fn incoming_call_rings_with_the_builtin_ringtone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("callee_out.wav");
    ring_callee(&out, "ringtone = \"builtin\"", true)?;
    // The file is complete only once the tone stopped: a ringtone that went on after the
    // CANCEL would play (and hold the file open) for 5 minutes.
    let (rate, samples) = wait_wav(&out, 1.0, Duration::from_secs(5))?;
    let seconds = samples.len() as f32 / rate as f32;
    let trill = &samples[..ms_to_samples(rate, 800)];
    let (c6, e6, off) = (
        goertzel_power(trill, rate, 1046.5),
        goertzel_power(trill, rate, 1318.5),
        goertzel_power(trill, rate, 700.0),
    );
    println!("ringtone: {seconds:.2} s recorded; C6 {c6:.4} E6 {e6:.4} 700 Hz {off:.6}");
    assert!(
        c6 > 0.005 && e6 > 0.005 && c6 > 50.0 * off,
        "{c6} {e6} {off}"
    );
    assert!(seconds >= 1.0, "rang {seconds} s for a ~1.5 s ring");
    Ok(())
}

/// `ringtone = "FILE.wav"` plays that file; `ringtone = "off"` plays nothing (the output file
/// is never created).
#[test]
fn ringtone_from_a_file_or_off() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tone = dir.path().join("my ring.wav");
    write_wav(&tone, 44_100, &sine(700.0, 44_100, 0.5, 10_000.0))?;
    let out = dir.path().join("file_out.wav");
    ring_callee(
        &out,
        &format!("ringtone = {:?}", tone.display().to_string()),
        true,
    )?;
    let (rate, samples) = wait_wav(&out, 1.0, Duration::from_secs(5))?;
    let first = &samples[..ms_to_samples(rate, 400)];
    let frequency = dominant_frequency(first, rate);
    println!(
        "ringtone from a file: {frequency:.1} Hz, rms {:.0}",
        rms(first)
    );
    assert!((frequency - 700.0).abs() < 3.0, "{frequency}");

    let silent = dir.path().join("off_out.wav");
    ring_callee(&silent, "ringtone = \"off\"", false)?;
    assert!(
        !silent.exists(),
        "ringtone = off still wrote {}",
        silent.display()
    );
    Ok(())
}

/// While the caller is muted the callee records silence; before and after, the caller's tone.
#[test]
fn muted_caller_sends_silence() -> TestResult {
    let dir = tempfile::tempdir()?;
    let caller_in = dir.path().join("caller_in.wav");
    write_wav(&caller_in, 8000, &sine(800.0, 8000, 10.0, 12_000.0))?;
    let callee_out = dir.path().join("callee_out.wav");
    let mut callee = Headless::spawn(
        "callee",
        &HeadlessOptions {
            audio_out: Some(callee_out.clone()),
            auto_answer_ms: Some(0),
            ..HeadlessOptions::default()
        },
    )?;
    let mut caller = Headless::spawn(
        "caller",
        &HeadlessOptions {
            audio_in: Some(caller_in),
            ..HeadlessOptions::default()
        },
    )?;
    caller.send(&format!("dial {}", callee.uri("callee")))?;
    caller.expect_call_state("confirmed", CALL)?;
    // Paced by the callee's recording: 1 s of tone, 1.5 s muted, 1 s of tone again.
    let mut at = wait_recorded(&callee_out, 1000, CALL)?;
    caller.send("mute")?;
    at = wait_recorded(&callee_out, at + 1500, CALL)?;
    caller.send("unmute")?;
    wait_recorded(&callee_out, at + 1000, CALL)?;
    caller.send("hangup")?;
    callee.expect_call_state("terminated", CALL)?;
    let (rate, samples) = wait_wav(&callee_out, 2.5, Duration::from_secs(5))?;
    let window = ms_to_samples(rate, 50);
    let levels: Vec<f32> = samples.chunks_exact(window).map(rms).collect();
    // The longest quiet stretch (RMS < 100 of 32768, -50 dBFS) after the call audio started.
    let first_loud = levels
        .iter()
        .position(|&l| l > 3000.0)
        .ok_or("no call audio")?;
    let (mut best, mut run, mut best_end) = (0usize, 0usize, 0usize);
    for (i, &level) in levels.iter().enumerate().skip(first_loud) {
        if level < 100.0 {
            run += 1;
            if run > best {
                best = run;
                best_end = i + 1;
            }
        } else {
            run = 0;
        }
    }
    let loud_after = levels
        .get(best_end..)
        .unwrap_or_default()
        .iter()
        .filter(|&&l| l > 3000.0)
        .count();
    println!(
        "callee's recording: quiet (<100 rms) for {} ms after {} ms of audio; {} ms loud after",
        best * 50,
        best_end.saturating_sub(best + first_loud) * 50,
        loud_after * 50
    );
    assert!(
        best * 50 >= 1000,
        "mute for 1.5 s gave only {} ms of silence",
        best * 50
    );
    assert!(
        best * 50 <= 2000,
        "silence ({} ms) longer than the mute",
        best * 50
    );
    assert!(
        best_end.saturating_sub(best + first_loud) >= 10,
        "too little audio before the mute"
    );
    assert!(
        loud_after >= 10,
        "the caller's tone did not come back after unmute"
    );
    caller.quit(Duration::from_secs(5));
    callee.quit(Duration::from_secs(5));
    Ok(())
}

/// `--levels` shows `levels` events ~10 a second during a call to the echo service: the
/// microphone at the input file's level, the speaker once the echo returns, -96 muted.
#[test]
fn levels_follow_the_microphone_and_the_echo() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.wav");
    // A sine with a 16384 peak: RMS 11585, -9.03 dBFS.
    write_wav(&input, 48_000, &sine(600.0, 48_000, 10.0, 16_384.0))?;
    let mut phone = Headless::spawn(
        "levels",
        &HeadlessOptions {
            audio_in: Some(input),
            extra_args: vec!["--levels".into()],
            ..HeadlessOptions::default()
        },
    )?;
    phone.send("dial echo")?;
    let call = phone.expect_call_state("confirmed", CALL)?;
    let id = call["call"].clone();
    let level = |e: &serde_json::Value, key: &str| e[key].as_f64().unwrap_or(f64::NAN);
    let started = Instant::now();
    let heard = phone.expect_event(
        "a level with the echo heard",
        |e| e["event"] == "levels" && e["speaker_db"].as_f64().is_some_and(|d| d > -20.0),
        Duration::from_secs(5),
    )?;
    println!("echo heard after {:?}: {heard}", started.elapsed());
    assert_eq!(heard["call"], id);
    // The next 10 levels events: each shows both levels.
    let mut recent = Vec::new();
    while recent.len() < 10 {
        recent.push(phone.expect_event(
            "another levels event",
            |e| e["event"] == "levels",
            Duration::from_secs(5),
        )?);
    }
    println!(
        "10 more levels events {:?} after the echo",
        started.elapsed()
    );
    for e in &recent {
        let mic = level(e, "mic_db");
        assert!(
            (mic + 9.03).abs() < 1.0,
            "mic level {mic} for a -9 dBFS input: {e}"
        );
        let speaker = level(e, "speaker_db");
        assert!(
            speaker > -20.0 && speaker <= 0.0,
            "speaker level {speaker}: {e}"
        );
    }
    phone.send("mute")?;
    let muted = phone.expect_event(
        "a muted mic level",
        |e| e["event"] == "levels" && e["mic_db"].as_f64() == Some(-96.0),
        Duration::from_secs(3),
    )?;
    println!("muted: {muted}");
    phone.send("hangup")?;
    phone.expect_call_state("terminated", CALL)?;
    phone.quit(Duration::from_secs(5));
    Ok(())
}

/// Without `--levels` headless stdout has no `levels` lines (they would drown the rest).
#[test]
fn headless_hides_levels_by_default() -> TestResult {
    let mut phone = Headless::spawn("quiet", &HeadlessOptions::default())?;
    phone.send("dial echo")?;
    phone.expect_call_state("confirmed", CALL)?;
    let _ = phone.expect_event("nothing", |_| false, Duration::from_millis(800));
    phone.send("hangup")?;
    phone.expect_call_state("terminated", CALL)?;
    phone.quit(Duration::from_secs(5));
    assert!(phone.events_of("levels").is_empty());
    assert!(
        !phone.events_of("media").is_empty(),
        "media events still show"
    );
    Ok(())
}

/// A sound output that cannot be opened: the ringtone gives one warning (not one per ring),
/// sipterm keeps running and the next call rings (silently) again.
#[test]
fn missing_output_device_warns_once_for_tones() -> TestResult {
    let config = "[audio]\ninput = \"null\"\noutput = \"no such speaker\"\n\n\
                  [[account]]\nname = \"t\"\nuri = \"sip:t@127.0.0.1\"\n";
    let mut callee = Headless::spawn_with(
        "nodevice",
        &HeadlessOptions {
            config_toml: Some(config.into()),
            ..HeadlessOptions::default()
        },
        &[],
        true,
    )?;
    let mut caller = Headless::spawn("caller", &HeadlessOptions::default())?;
    for round in 0..2 {
        caller.send(&format!("dial {}", callee.uri("callee")))?;
        callee.expect_call_state("incoming", CALL)?;
        if round == 0 {
            let warning = callee.expect_event(
                "a warning that tones are silent",
                |e| {
                    e["event"] == "warning"
                        && e["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("tones are silent"))
                },
                CALL,
            )?;
            println!("tone warning: {warning}");
        } else {
            // Give a second warning time to show up if there were one.
            let _ = callee.expect_event("nothing", |_| false, Duration::from_millis(1500));
        }
        caller.send("hangup")?;
        callee.expect_call_state("terminated", CALL)?;
        caller.expect_call_state("terminated", CALL)?;
    }
    let warnings: Vec<String> = callee
        .events_of("warning")
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    println!("warnings: {warnings:?}");
    let tone_warnings = warnings
        .iter()
        .filter(|m| m.contains("tones are silent"))
        .count();
    assert_eq!(tone_warnings, 1, "{warnings:?}");
    callee.quit(Duration::from_secs(5));
    caller.quit(Duration::from_secs(5));
    Ok(())
}

/// Call waiting: A calls B (A sends 1 kHz, B records), then C calls B while that call is up
/// and gives up (CANCEL) after ~2 s. B's speaker gets the EU call-waiting tone (425 Hz,
/// 0.2 s on / 0.2 s off / 0.2 s on, then 3.4 s off) mixed into the call from C's INVITE on,
/// none before, none after the CANCEL (the call lasts past where the next burst would be),
/// and A's 1 kHz throughout.
#[test]
fn second_incoming_call_beeps_into_the_active_call() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a_in = dir.path().join("a_in.wav");
    write_wav(&a_in, 48_000, &sine(1000.0, 48_000, 15.0, 12_000.0))?;
    let b_out = dir.path().join("b_out.wav");
    let mut b = Headless::spawn(
        "b",
        &HeadlessOptions {
            audio_out: Some(b_out.clone()),
            // No ringtone before the first call: B's WAV holds only the call.
            config_toml: Some(config("ringtone = \"off\"")),
            ..HeadlessOptions::default()
        },
    )?;
    let mut a = Headless::spawn(
        "a",
        &HeadlessOptions {
            audio_in: Some(a_in),
            ..HeadlessOptions::default()
        },
    )?;
    let mut c = Headless::spawn("c", &HeadlessOptions::default())?;
    a.send(&format!("dial {}", b.uri("b")))?;
    b.expect_call_state("incoming", CALL)?;
    b.send("answer")?;
    b.expect_call_state("confirmed", CALL)?;
    // Paced by B's recording (positions in it, not wall-clock time): 1.5 s of the call, then
    // C dials; C gives up 2 s (of recording) after B saw the INVITE; the call goes on to 5 s
    // after it, past where the next burst would come (4 s after the first).
    let before_dial = wait_recorded(&b_out, 1500, CALL)?;
    c.send(&format!("dial {}", b.uri("b")))?;
    let second = b.expect_call_state("incoming", CALL)?;
    let incoming = recorded_ms(&b_out);
    wait_recorded(&b_out, incoming + 2000, CALL)?;
    c.send("hangup")?;
    let cancelled = b.expect_event(
        "the waiting call ends",
        |e| e["event"] == "call" && e["state"] == "terminated" && e["call"] == second["call"],
        CALL,
    )?;
    println!(
        "recording at {before_dial} ms: C dials; at {incoming} ms: B shows it; ended: {cancelled}"
    );
    wait_recorded(&b_out, incoming + 5000, CALL)?;
    a.send("hangup")?;
    b.expect_call_state("terminated", CALL)?;
    let (rate, samples) = wait_wav(&b_out, 5.0, Duration::from_secs(8))?;
    let total_ms = (samples.len() as u64 * 1000 / u64::from(rate)) as u32;

    // 425 Hz per 50 ms window.
    let window = ms_to_samples(rate, 50);
    let beeping: Vec<bool> = samples
        .chunks_exact(window)
        .map(|w| goertzel_power(w, rate, 425.0) > 0.002)
        .collect();
    let runs = {
        let mut runs: Vec<(bool, u32)> = Vec::new();
        for &on in &beeping {
            match runs.last_mut() {
                Some((last, ms)) if *last == on => *ms += 50,
                _ => runs.push((on, 50)),
            }
        }
        runs
    };
    println!("B's output: {total_ms} ms at {rate} Hz; 425 Hz runs (ms): {runs:?}");
    let first = beeping
        .iter()
        .position(|&on| on)
        .ok_or("no call-waiting tone in B's output")? as u32
        * 50;
    println!("call-waiting tone starts at {first} ms of the recording");
    // Not before C dialled (the size lags the recording by at most 85 ms at 48 kHz; 256 ms
    // at 16 kHz), and by the time B showed the call (plus a frame or two of mixing).
    let (before_dial, incoming) = (before_dial as u32, incoming as u32);
    assert!(
        first + 300 >= before_dial && first <= incoming + 500,
        "tone at {first} ms; C dialled at {before_dial} ms, B showed it at {incoming} ms: {runs:?}"
    );
    // The EU cadence from its start: ~200 on, ~200 off, ~200 on, then off to the end (the
    // next burst would be at +4 s; C cancelled at ~+2 s).
    let from_first: Vec<(bool, u32)> = runs.iter().skip_while(|r| !r.0).copied().collect();
    assert!(from_first.len() == 4, "{from_first:?}");
    for (i, &(on, ms)) in from_first.iter().take(3).enumerate() {
        assert_eq!(on, i % 2 == 0, "{from_first:?}");
        assert!((150..=250).contains(&ms), "{from_first:?}");
    }
    // The silence after the second burst runs to the end of the recording, 3.4 s or more
    // past it: where the next burst would have sounded.
    assert!(
        !from_first[3].0 && from_first[3].1 >= 3600,
        "a burst after the CANCEL or a short recording: {from_first:?}"
    );
    // A's 1 kHz goes on throughout, beeping or not (after the jitter buffer's first frames).
    let seconds = samples.len() / window;
    let mut weakest = f32::MAX;
    for (i, w) in samples.chunks_exact(window).enumerate().skip(10) {
        if i + 4 >= seconds {
            break;
        }
        let power = goertzel_power(w, rate, 1000.0);
        weakest = weakest.min(power);
        assert!(power > 0.02, "1 kHz gone at {} ms: {power}", i * 50);
    }
    println!("weakest 1 kHz power per 50 ms window: {weakest:.4}");
    a.quit(Duration::from_secs(5));
    b.quit(Duration::from_secs(5));
    c.quit(Duration::from_secs(5));
    Ok(())
}
