//! Runs a call's [`VoiceProcessor`] on a thread of its own. The processor (the `aec3` graph)
//! is not `Send`, so it cannot live in the media task, which tokio moves between threads; it
//! is built on its thread and stays there. Each tick the media task hands over the reference
//! played since the last tick and the captured frame, and waits (bounded) for the processed
//! frame: the same work as processing in place, on another core when one is free. Buffers go
//! back and forth, so nothing is allocated per tick.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

use crate::media::voice::{VoiceProcessor, VoiceSettings};

/// The longest the media task waits for a processed frame before sending it unprocessed
/// (a frame is 20 ms; processing one takes well under 1 ms on a laptop).
const PROCESS_TIMEOUT: Duration = Duration::from_millis(8);

enum Job {
    Process {
        seq: u64,
        played: Vec<i16>,
        frame: Vec<i16>,
    },
    Settings(VoiceSettings),
    ResetEchoPath,
}

struct Done {
    seq: u64,
    played: Vec<i16>,
    frame: Vec<i16>,
}

pub struct VoiceWorker {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<std::thread::JoinHandle<()>>,
    settings: VoiceSettings,
    codec_rate: u32,
    seq: u64,
    /// Reference samples since the last processed frame.
    played: Vec<i16>,
    /// Buffers back from the thread, for the next job.
    spare: Vec<Vec<i16>>,
    /// Frames sent unprocessed because the thread was late.
    late: u64,
}

impl VoiceWorker {
    pub fn start(codec_rate: u32, settings: VoiceSettings) -> Result<VoiceWorker, String> {
        let (jobs, job_rx) = channel::<Job>();
        let (done_tx, done) = channel::<Done>();
        let (ready_tx, ready_rx) = channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("sipterm-voice".into())
            .spawn(move || {
                let mut processor = match VoiceProcessor::new(codec_rate, settings) {
                    Ok(p) => {
                        let _ = ready_tx.send(Ok(()));
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let mut restarts = 0;
                while let Ok(job) = job_rx.recv() {
                    if processor.restarts() != restarts {
                        restarts = processor.restarts();
                        tracing::info!(
                            "echo path changed: echo canceller restarted ({restarts} so far)"
                        );
                    }
                    match job {
                        Job::Process {
                            seq,
                            played,
                            mut frame,
                        } => {
                            processor.handle_played(&played);
                            processor.process_capture(&mut frame);
                            if done_tx.send(Done { seq, played, frame }).is_err() {
                                return;
                            }
                        }
                        Job::Settings(settings) => {
                            if let Err(e) = processor.set_settings(settings) {
                                tracing::warn!("voice processing settings: {e}");
                            }
                        }
                        Job::ResetEchoPath => processor.reset_echo_path(),
                    }
                }
            })
            .map_err(|e| format!("cannot start the voice processing thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("the voice processing thread ended at start".into()),
        }
        Ok(VoiceWorker {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            settings,
            codec_rate,
            seq: 0,
            played: Vec::with_capacity(4096),
            spare: Vec::new(),
            late: 0,
        })
    }

    pub fn settings(&self) -> VoiceSettings {
        self.settings
    }

    pub fn codec_rate(&self) -> u32 {
        self.codec_rate
    }

    fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    pub fn set_settings(&mut self, settings: VoiceSettings) {
        if settings != self.settings {
            self.settings = settings;
            self.send(Job::Settings(settings));
        }
    }

    /// The echo path changed (another device): the canceller starts over.
    pub fn reset_echo_path(&self) {
        self.send(Job::ResetEchoPath);
    }

    /// What the speaker played (codec rate): the echo reference.
    pub fn handle_played(&mut self, samples: &[i16]) {
        self.played.extend_from_slice(samples);
        // Bounded even if frames stop being processed.
        let limit = self.codec_rate as usize;
        if self.played.len() > limit {
            let excess = self.played.len() - limit;
            self.played.drain(..excess);
        }
    }

    /// Processes one captured frame in place (unprocessed when the thread is late or gone).
    pub fn process_capture(&mut self, frame: &mut [i16]) {
        self.seq += 1;
        let mut played = self.spare.pop().unwrap_or_default();
        played.clear();
        std::mem::swap(&mut played, &mut self.played);
        let mut copy = self.spare.pop().unwrap_or_default();
        copy.clear();
        copy.extend_from_slice(frame);
        self.send(Job::Process {
            seq: self.seq,
            played,
            frame: copy,
        });
        loop {
            match self.done.recv_timeout(PROCESS_TIMEOUT) {
                Ok(done) => {
                    let fresh = done.seq == self.seq;
                    if fresh && done.frame.len() == frame.len() {
                        frame.copy_from_slice(&done.frame);
                    }
                    if self.spare.len() < 4 {
                        self.spare.push(done.played);
                        self.spare.push(done.frame);
                    }
                    if fresh {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.late += 1;
                    if self.late.is_power_of_two() {
                        tracing::warn!(
                            "voice processing late {} time(s): frame sent unprocessed",
                            self.late
                        );
                    }
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

impl Drop for VoiceWorker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
