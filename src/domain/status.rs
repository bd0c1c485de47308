//! Delivery and attempt states, with the integer codes the Svix API uses.

use serde::{Deserialize, Serialize};

/// Status of a delivery or of one attempt. The integers are part of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Success,
    Pending,
    Fail,
    Sending,
    /// Waiting for a disabled endpoint (`whileDisabled: hold`) to be enabled.
    Held,
    /// Never sent: the endpoint was disabled (`whileDisabled: drop`) or the
    /// payload was expunged first.
    Dropped,
}

impl DeliveryStatus {
    pub fn code(self) -> i64 {
        match self {
            Self::Success => 0,
            Self::Pending => 1,
            Self::Fail => 2,
            Self::Sending => 3,
            Self::Held => 4,
            Self::Dropped => 5,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::Success),
            1 => Some(Self::Pending),
            2 => Some(Self::Fail),
            3 => Some(Self::Sending),
            4 => Some(Self::Held),
            5 => Some(Self::Dropped),
            _ => None,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Pending => "pending",
            Self::Fail => "fail",
            Self::Sending => "sending",
            Self::Held => "held",
            Self::Dropped => "dropped",
        }
    }
}

/// Why an attempt was made: the schedule, or a person asking for a resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerType {
    Scheduled,
    Manual,
}

impl TriggerType {
    pub fn code(self) -> i64 {
        match self {
            Self::Scheduled => 0,
            Self::Manual => 1,
        }
    }

    pub fn from_code(code: i64) -> Self {
        if code == 1 { Self::Manual } else { Self::Scheduled }
    }
}

/// What a disabled endpoint does with the messages published meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhileDisabled {
    /// Record them as not sent; `replay-missing` can send them later.
    #[default]
    Drop,
    /// Keep them and send them, oldest first, once the endpoint is enabled.
    Hold,
}

impl WhileDisabled {
    pub fn name(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Hold => "hold",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "drop" => Some(Self::Drop),
            "hold" => Some(Self::Hold),
            _ => None,
        }
    }
}

/// The order an endpoint receives its messages in. Read from a string
/// only, so that any other value is a field error, not a malformed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum DeliveryOrder {
    /// Several at once, each retried on its own schedule: the fastest.
    #[default]
    Parallel,
    /// One at a time, in publish order: a delivery waits until the one
    /// before it succeeded or exhausted its retries.
    Fifo,
}

impl DeliveryOrder {
    pub fn name(self) -> &'static str {
        match self {
            Self::Parallel => "parallel",
            Self::Fifo => "fifo",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "parallel" => Some(Self::Parallel),
            "fifo" => Some(Self::Fifo),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not an ordering: use \"parallel\" or \"fifo\"")]
pub struct UnknownOrder(String);

impl TryFrom<String> for DeliveryOrder {
    type Error = UnknownOrder;
    fn try_from(text: String) -> Result<Self, UnknownOrder> {
        Self::parse(&text).ok_or(UnknownOrder(text))
    }
}

/// Long operations run in the background, as in the Svix API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Resend what failed in a window.
    EndpointRecover,
    /// Send what was never sent in a window.
    EndpointReplay,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::EndpointRecover => "endpoint.recover",
            Self::EndpointReplay => "endpoint.replay",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "endpoint.recover" => Some(Self::EndpointRecover),
            "endpoint.replay" => Some(Self::EndpointReplay),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Running,
    Finished,
    Failed,
}

impl TaskStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Self::Running),
            "finished" => Some(Self::Finished),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for s in [
            DeliveryStatus::Success,
            DeliveryStatus::Pending,
            DeliveryStatus::Fail,
            DeliveryStatus::Sending,
            DeliveryStatus::Held,
            DeliveryStatus::Dropped,
        ] {
            assert_eq!(DeliveryStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(DeliveryStatus::from_code(9), None);
    }

    #[test]
    fn an_ordering_is_read_from_its_name_only() {
        let read = |v: serde_json::Value| serde_json::from_value::<DeliveryOrder>(v).map_err(|e| e.to_string());
        assert_eq!(read(serde_json::json!("fifo")), Ok(DeliveryOrder::Fifo));
        assert_eq!(read(serde_json::json!("parallel")), Ok(DeliveryOrder::Parallel));
        assert!(read(serde_json::json!("lifo")).is_err_and(|e| e.contains("\"parallel\" or \"fifo\"")));
        assert!(read(serde_json::json!(1)).is_err());
        assert_eq!(
            serde_json::to_value(DeliveryOrder::Fifo).ok(),
            Some(serde_json::json!("fifo"))
        );
    }
}
