//! Fan-out: which of an application's endpoints receive a message, and what
//! each does with it. The store reads the endpoints and writes the
//! deliveries inside the publish transaction; the rule itself lives here.

use crate::domain::filter::{Publication, Subscription, matches};
use crate::domain::status::{DeliveryOrder, DeliveryStatus, WhileDisabled};

/// An endpoint as the fan-out sees it: its subscription and its state.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    pub url: String,
    pub filter_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub owner_id: Option<String>,
    pub disabled: bool,
    pub while_disabled: WhileDisabled,
    pub ordering: DeliveryOrder,
}

impl Target {
    /// Whether the endpoint delivers one at a time, in publish order.
    pub fn is_fifo(&self) -> bool {
        self.ordering == DeliveryOrder::Fifo
    }

    fn subscription(&self) -> Subscription<'_> {
        Subscription {
            event_types: self.filter_types.as_deref(),
            channels: self.channels.as_deref(),
            owner: self.owner_id.as_deref(),
        }
    }

    /// What a message published now does at this endpoint.
    fn disposition(&self) -> Disposition {
        match (self.disabled, self.while_disabled) {
            (false, _) => Disposition::Deliver,
            (true, WhileDisabled::Hold) => Disposition::Hold,
            (true, WhileDisabled::Drop) => Disposition::Drop,
        }
    }
}

/// What a publish does for one matching endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Deliver,
    /// Kept until the disabled endpoint is enabled.
    Hold,
    /// Recorded as not sent: the endpoint is disabled and drops.
    Drop,
}

impl Disposition {
    /// The state a new delivery starts in.
    pub fn initial_status(self) -> DeliveryStatus {
        match self {
            Self::Deliver => DeliveryStatus::Pending,
            Self::Hold => DeliveryStatus::Held,
            Self::Drop => DeliveryStatus::Dropped,
        }
    }
}

/// The endpoints, among `targets`, that receive `publication`, each with
/// what it does with it, in the order given.
pub fn matching_endpoints<'t>(
    publication: &'t Publication<'t>,
    targets: &'t [Target],
) -> impl Iterator<Item = (&'t Target, Disposition)> + 't {
    targets
        .iter()
        .filter(|t| matches(&t.subscription(), publication))
        .map(|t| (t, t.disposition()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str) -> Target {
        Target {
            id: id.to_owned(),
            url: format!("https://example.com/{id}"),
            filter_types: None,
            channels: None,
            owner_id: None,
            disabled: false,
            while_disabled: WhileDisabled::Drop,
            ordering: DeliveryOrder::Parallel,
        }
    }

    fn publication(event_type: &str) -> Publication<'_> {
        Publication {
            event_type,
            channels: None,
            audience: None,
        }
    }

    fn matched<'t>(publication: &'t Publication<'t>, targets: &'t [Target]) -> Vec<(&'t str, Disposition)> {
        matching_endpoints(publication, targets)
            .map(|(t, d)| (t.id.as_str(), d))
            .collect()
    }

    #[test]
    fn every_enabled_endpoint_without_filters_receives_the_message() {
        let targets = [target("a"), target("b")];
        let publication = publication("user.created");
        assert_eq!(
            matched(&publication, &targets),
            [("a", Disposition::Deliver), ("b", Disposition::Deliver)]
        );
    }

    #[test]
    fn endpoints_filtering_other_event_types_are_left_out() {
        let mut other = target("other");
        other.filter_types = Some(vec!["invoice.paid".to_owned()]);
        let mut group = target("group");
        group.filter_types = Some(vec!["user.*".to_owned()]);
        let targets = [other, group];
        let publication = publication("user.created");
        assert_eq!(matched(&publication, &targets), [("group", Disposition::Deliver)]);
    }

    #[test]
    fn channels_and_audience_narrow_the_receivers() {
        let mut news = target("news");
        news.channels = Some(vec!["news".to_owned()]);
        let mut alice = target("alice");
        alice.owner_id = Some("alice".to_owned());
        let mut bob = target("bob");
        bob.owner_id = Some("bob".to_owned());
        let targets = [news, alice, bob];
        let channels = ["sport".to_owned()];
        let audience = ["bob".to_owned()];
        let publication = Publication {
            event_type: "score",
            channels: Some(&channels),
            audience: Some(&audience),
        };
        assert_eq!(matched(&publication, &targets), [("bob", Disposition::Deliver)]);
    }

    #[test]
    fn a_disabled_endpoint_holds_or_drops_as_it_was_told() {
        let mut holding = target("holding");
        holding.disabled = true;
        holding.while_disabled = WhileDisabled::Hold;
        let mut dropping = target("dropping");
        dropping.disabled = true;
        let targets = [holding, dropping];
        let publication = publication("user.created");
        assert_eq!(
            matched(&publication, &targets),
            [("holding", Disposition::Hold), ("dropping", Disposition::Drop)]
        );
    }

    #[test]
    fn each_disposition_starts_its_delivery_in_its_own_state() {
        assert_eq!(Disposition::Deliver.initial_status(), DeliveryStatus::Pending);
        assert_eq!(Disposition::Hold.initial_status(), DeliveryStatus::Held);
        assert_eq!(Disposition::Drop.initial_status(), DeliveryStatus::Dropped);
    }
}
