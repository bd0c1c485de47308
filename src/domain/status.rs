//! Delivery and attempt states, with the integer codes the Svix API uses.

use serde::{Deserialize, Serialize};

/// Status of a delivery or of one attempt. The integers are part of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Success,
    Pending,
    Fail,
    Sending,
}

impl DeliveryStatus {
    pub fn code(self) -> i64 {
        match self {
            Self::Success => 0,
            Self::Pending => 1,
            Self::Fail => 2,
            Self::Sending => 3,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::Success),
            1 => Some(Self::Pending),
            2 => Some(Self::Fail),
            3 => Some(Self::Sending),
            _ => None,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Pending => "pending",
            Self::Fail => "fail",
            Self::Sending => "sending",
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
        ] {
            assert_eq!(DeliveryStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(DeliveryStatus::from_code(9), None);
    }
}
