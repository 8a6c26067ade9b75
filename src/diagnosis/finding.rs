//! What the diagnosis says: a finding (code, one-sentence message, advice, evidence) and the
//! changes front ends see (a finding became active, or cleared).

use serde::{Serialize, Serializer};

/// How bad it is, for colours and sorting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Explains something that works differently than configured (a shorter expiry, a NAT).
    Info,
    /// Works, but worse than it should (loss, jitter, a NAT that forgot us).
    Warning,
    /// Something does not work (no audio, no registration, a failed call).
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// The facts behind a finding, in the order they were added: `(name, value)`. Values are text
/// (addresses, counters, header values), so every front end can print them as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence(pub Vec<(&'static str, String)>);

impl Evidence {
    pub fn new() -> Evidence {
        Evidence(Vec::new())
    }

    /// Adds one fact (builder style).
    pub fn with(mut self, name: &'static str, value: impl ToString) -> Evidence {
        self.0.push((name, value.to_string()));
        self
    }

    /// Adds one fact when there is one.
    pub fn with_some(self, name: &'static str, value: Option<impl ToString>) -> Evidence {
        match value {
            Some(value) => self.with(name, value),
            None => self,
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(n, v)| (*n, v.as_str()))
    }
}

/// A JSON object, in insertion order.
impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// One thing the diagnosis found. `(code, call)` names it: raising the same pair again updates
/// it, clearing removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier (`media.no_audio.private_address`): scripts and tests match on it.
    pub code: &'static str,
    pub severity: Severity,
    /// The call it concerns (our call number, as in `call` events), when it concerns one.
    #[serde(
        serialize_with = "call_as_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub call: Option<u64>,
    /// A few words for a crowded line (the TUI's call line): "no audio in".
    #[serde(skip)]
    pub label: &'static str,
    /// One sentence: what happened and its likely cause, in plain words.
    pub message: String,
    /// What to do about it.
    pub advice: String,
    pub evidence: Evidence,
    /// What the finding is about when several could share the code (a domain, a server); only
    /// a fact about that same subject clears it.
    #[serde(skip)]
    pub subject: Option<String>,
}

fn call_as_text<S: Serializer>(call: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
    match call {
        Some(id) => serializer.serialize_str(&id.to_string()),
        None => serializer.serialize_none(),
    }
}

impl Finding {
    pub fn new(
        code: &'static str,
        severity: Severity,
        label: &'static str,
        message: impl Into<String>,
        advice: impl Into<String>,
    ) -> Finding {
        Finding {
            code,
            severity,
            call: None,
            label,
            message: message.into(),
            advice: advice.into(),
            evidence: Evidence::new(),
            subject: None,
        }
    }

    pub fn on_call(mut self, call: u64) -> Finding {
        self.call = Some(call);
        self
    }

    pub fn about(mut self, subject: impl Into<String>) -> Finding {
        self.subject = Some(subject.into());
        self
    }

    pub fn with_evidence(mut self, evidence: Evidence) -> Finding {
        self.evidence = evidence;
        self
    }
}

/// Whether a change raised (or updated) a finding or cleared it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingState {
    Active,
    Cleared,
}

/// What the front ends hear: a finding became active (or its message changed), or ended.
/// Cleared findings carry what they said while active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub state: FindingState,
    pub finding: Finding,
}
