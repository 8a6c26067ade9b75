//! Runs a call's [`VoiceProcessor`] on a thread of its own. The processor (the `aec3` graph)
//! is not `Send`, so it cannot live in the media task, which tokio moves between threads; it
//! is built on its thread and stays there. Each tick the media task hands over the reference
//! played since the last tick and the captured frame ([`VoiceWorker::submit`]), and goes on:
//! the processed frame comes back on a channel the task awaits with its sockets and timers
//! ([`VoiceWorker::processed`]), so waiting for it never holds up received audio. A frame
//! still missing at the next tick goes out unprocessed. Buffers go back and forth, so nothing
//! is allocated per tick.

use std::sync::mpsc::{Sender, channel};

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::media::voice::{VoiceProcessor, VoiceSettings};

enum Job {
    Process {
        seq: u64,
        played: Vec<i16>,
        frame: Vec<i16>,
    },
    Settings(VoiceSettings),
    ResetEchoPath,
}

/// A processed frame back from the thread ([`VoiceWorker::take`] copies it out).
pub struct Done {
    seq: u64,
    played: Vec<i16>,
    frame: Vec<i16>,
}

pub struct VoiceWorker {
    jobs: Option<Sender<Job>>,
    done: UnboundedReceiver<Done>,
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
        let (done_tx, done) = unbounded_channel::<Done>();
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

    /// Hands one captured frame (and the reference played since the last) to the thread;
    /// [`Self::processed`] brings it back.
    pub fn submit(&mut self, frame: &[i16]) {
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
    }

    /// The next frame back from the thread (`None`: the thread is gone).
    pub async fn processed(&mut self) -> Option<Done> {
        self.done.recv().await
    }

    /// Copies a processed frame into `frame` when it is the one submitted last (true); an
    /// older one, given up on at a tick, is only recycled.
    pub fn take(&mut self, done: Done, frame: &mut [i16]) -> bool {
        let fresh = done.seq == self.seq && done.frame.len() == frame.len();
        if fresh {
            frame.copy_from_slice(&done.frame);
        }
        if self.spare.len() < 4 {
            self.spare.push(done.played);
            self.spare.push(done.frame);
        }
        fresh
    }

    /// The last frame submitted did not come back before the next tick: it goes unprocessed.
    pub fn note_late(&mut self) {
        self.late += 1;
        if self.late.is_power_of_two() {
            tracing::warn!(
                "voice processing late {} time(s): frame sent unprocessed",
                self.late
            );
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
