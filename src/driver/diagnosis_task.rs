//! The live diagnosis between the engine and the front ends: every event of the SIP task and
//! the media tasks passes through here on its way out, feeds the pure `diagnosis::Diagnoser`
//! (with the time), and the `diagnosis` events it produces follow the event that caused them.
//! Facts the front ends never see (DNS answers, ICMP errors, TLS failures) come in on a side
//! channel, `DiagnosisFeed`.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::diagnosis::{Diagnoser, Fact, Setup};
use crate::event::Event;

/// Events waiting for the diagnosis (the front end's channel holds as many again).
const QUEUE: usize = 4096;
/// Driver facts waiting; beyond it (an ICMP storm) they are dropped, never waited for.
const FACT_QUEUE: usize = 256;
/// At shutdown, how long the events already queued may take to go out.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the SIP task reports facts for the diagnosis. Never blocks.
#[derive(Debug, Clone)]
pub struct DiagnosisFeed {
    facts: Option<mpsc::Sender<Fact>>,
}

impl DiagnosisFeed {
    /// A feed that goes nowhere (the echo service has no diagnosis).
    pub fn disabled() -> DiagnosisFeed {
        DiagnosisFeed { facts: None }
    }

    pub fn note(&self, fact: Fact) {
        if let Some(facts) = &self.facts {
            let _ = facts.try_send(fact);
        }
    }
}

/// The running relay; `finish` waits until what is queued went out.
pub struct DiagnosisRelay {
    done: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl DiagnosisRelay {
    /// The engine stopped: forward what is still queued, then end.
    pub async fn finish(self) {
        let _ = self.done.send(());
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.task).await;
    }
}

/// Starts the relay in front of `front` (the front end's event channel). Returns the sender
/// the engine and its media tasks use instead, and the feed for the driver's own facts.
pub fn spawn(
    front: mpsc::Sender<Event>,
    setup: Setup,
) -> (mpsc::Sender<Event>, DiagnosisFeed, DiagnosisRelay) {
    let (events, mut events_rx) = mpsc::channel::<Event>(QUEUE);
    let (facts, mut facts_rx) = mpsc::channel::<Fact>(FACT_QUEUE);
    let (done, mut done_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut diagnoser = Diagnoser::new(setup);
        let mut finishing = false;
        loop {
            // Facts first: the driver reports one before the engine emits the events it
            // explains (a failed handshake before the failed registration).
            tokio::select! {
                biased;
                Some(fact) = facts_rx.recv() => {
                    diagnoser.handle_fact(fact, std::time::Instant::now());
                }
                event = events_rx.recv() => {
                    let Some(event) = event else { break };
                    diagnoser.handle_event(&event, std::time::Instant::now());
                    if front.send(event).await.is_err() {
                        return;
                    }
                }
                _ = &mut done_rx, if !finishing => {
                    finishing = true;
                    events_rx.close();
                }
            }
            while let Some(change) = diagnoser.poll_change() {
                let event = Event::Diagnosis {
                    state: change.state,
                    finding: change.finding,
                };
                if front.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    (
        events,
        DiagnosisFeed { facts: Some(facts) },
        DiagnosisRelay { done, task },
    )
}
