//! Knative-style status: conditions with reason and message, the generation last acted on,
//! and an address for addressable resources. Whichever control plane runs Herald reports
//! resources through these types, so `herald get`, the admin API and (later) the Kubernetes
//! status subresource show the same thing.

use serde::{Deserialize, Serialize};

/// `True`, `False` or `Unknown`, as Kubernetes spells condition status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339; moves only when `status` changes.
    pub last_transition_time: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Addressable {
    pub url: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    /// A Trigger's resolved subscriber (Knative's `status.subscriberUri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_uri: Option<String>,
    /// A resolved dead-letter sink (Knative's `status.deadLetterSinkUri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
    /// Kind-specific fields, as Knative names them (`physicalSubscription`,
    /// `channelStatuses`, ...).
    #[serde(flatten, default)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A condition's outcome, before it is stamped with a transition time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Ok,
    Failed { reason: String, message: String },
    Unknown { reason: String, message: String },
}

impl Check {
    pub fn failed(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Failed {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn unknown(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Unknown {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }
}

impl Status {
    /// Sets condition `kind` to `check`, keeping its transition time unless its status changed.
    pub fn set(&mut self, kind: &str, check: &Check) {
        let (status, reason, message) = match check {
            Check::Ok => (ConditionStatus::True, None, None),
            Check::Failed { reason, message } => (
                ConditionStatus::False,
                Some(reason.clone()),
                Some(message.clone()),
            ),
            Check::Unknown { reason, message } => (
                ConditionStatus::Unknown,
                Some(reason.clone()),
                Some(message.clone()),
            ),
        };
        let now = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now();
                }
                c.status = status;
                c.reason = reason;
                c.message = message;
            }
            None => self.conditions.push(Condition {
                kind: kind.to_string(),
                status,
                reason,
                message,
                last_transition_time: now(),
            }),
        }
    }

    /// Sets each dependent condition, then `Ready` as their conjunction: the first one not
    /// true gives Ready its status, reason and message (Knative's living condition set).
    pub fn set_all(&mut self, dependents: &[(&str, Check)]) {
        let mut ready = Check::Ok;
        for (kind, check) in dependents {
            self.set(kind, check);
            if ready.is_ok() && !check.is_ok() {
                ready = check.clone();
            }
        }
        self.set(READY, &ready);
        // Ready first, then the dependents in the order given, whatever was there before.
        let order = |c: &Condition| {
            std::iter::once(READY)
                .chain(dependents.iter().map(|(k, _)| *k))
                .position(|k| k == c.kind)
                .unwrap_or(usize::MAX)
        };
        self.conditions.sort_by_key(order);
    }

    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    pub fn is_ready(&self) -> bool {
        self.condition(READY)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }
}

pub const READY: &str = "Ready";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_follows_the_first_failing_dependent_and_keeps_transition_times() {
        let mut s = Status::default();
        s.set_all(&[
            (
                "BrokerReady",
                Check::failed("BrokerDoesNotExist", "no broker b"),
            ),
            ("SubscriberResolved", Check::Ok),
        ]);
        let ready = s.condition(READY).unwrap().clone();
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason.as_deref(), Some("BrokerDoesNotExist"));
        assert_eq!(s.conditions[0].kind, READY);
        s.set_all(&[
            (
                "BrokerReady",
                Check::failed("BrokerDoesNotExist", "still none"),
            ),
            ("SubscriberResolved", Check::Ok),
        ]);
        assert_eq!(
            s.condition(READY).unwrap().last_transition_time,
            ready.last_transition_time
        );
        s.set_all(&[
            ("BrokerReady", Check::Ok),
            ("SubscriberResolved", Check::Ok),
        ]);
        assert!(s.is_ready());
    }
}
