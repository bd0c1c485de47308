//! Which endpoints receive which messages.

/// What an endpoint listens to. `None` means "everything".
pub struct Subscription<'a> {
    pub event_types: Option<&'a [String]>,
    pub channels: Option<&'a [String]>,
    /// The endpoint's owner, if it belongs to one.
    pub owner: Option<&'a str>,
}

/// What a message is about.
pub struct Publication<'a> {
    pub event_type: &'a str,
    pub channels: Option<&'a [String]>,
    /// Owners who may see the message; `None` means everyone.
    pub audience: Option<&'a [String]>,
}

/// An empty list of event types means every event, as no list does
/// (svix-react sends `[]` for "all"); kept as no list so it reads back one way.
pub fn every_event_if_empty(types: Option<Vec<String>>) -> Option<Vec<String>> {
    types.filter(|t| !t.is_empty())
}

/// An endpoint receives a message when it listens to its event type (or to all),
/// if it names channels, when the message carries one of them, and, if it has
/// an owner, when the message has no audience or names that owner.
pub fn matches(sub: &Subscription<'_>, msg: &Publication<'_>) -> bool {
    let type_ok = match sub.event_types {
        None => true,
        Some([]) => true,
        Some(types) => types.iter().any(|t| type_matches(t, msg.event_type)),
    };
    let channel_ok = match sub.channels {
        None | Some([]) => true,
        Some(wanted) => msg.channels.is_some_and(|have| have.iter().any(|c| wanted.contains(c))),
    };
    let owner_ok = match (sub.owner, msg.audience) {
        (Some(owner), Some(audience)) => audience.iter().any(|a| a == owner),
        _ => true,
    };
    type_ok && channel_ok && owner_ok
}

/// `ticket.*` matches every type in the `ticket.` group, at any depth.
fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('.') => event_type.starts_with(prefix),
        _ => pattern == event_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_empty_list_of_event_types_means_every_event() {
        assert_eq!(every_event_if_empty(Some(vec![])), None);
        assert_eq!(every_event_if_empty(None), None);
        assert_eq!(every_event_if_empty(Some(v(&["a.b"]))), Some(v(&["a.b"])));
    }

    #[test]
    fn no_filter_receives_everything() {
        let sub = Subscription {
            event_types: None,
            channels: None,
            owner: None,
        };
        let msg = Publication {
            event_type: "ticket.created",
            channels: None,
            audience: None,
        };
        assert!(matches(&sub, &msg));
    }

    #[test]
    fn event_type_filter_is_exact() {
        let types = v(&["ticket.created"]);
        let sub = Subscription {
            event_types: Some(&types),
            channels: None,
            owner: None,
        };
        assert!(matches(
            &sub,
            &Publication {
                event_type: "ticket.created",
                channels: None,
                audience: None,
            }
        ));
        assert!(!matches(
            &sub,
            &Publication {
                event_type: "ticket.closed",
                channels: None,
                audience: None,
            }
        ));
    }

    #[test]
    fn channel_filter_needs_a_shared_channel() {
        let chans = v(&["ticket-42"]);
        let sub = Subscription {
            event_types: None,
            channels: Some(&chans),
            owner: None,
        };
        let with = v(&["ticket-41", "ticket-42"]);
        let without = v(&["ticket-7"]);
        assert!(matches(
            &sub,
            &Publication {
                event_type: "a",
                channels: Some(&with),
                audience: None,
            }
        ));
        assert!(!matches(
            &sub,
            &Publication {
                event_type: "a",
                channels: Some(&without),
                audience: None,
            }
        ));
        assert!(!matches(
            &sub,
            &Publication {
                event_type: "a",
                channels: None,
                audience: None,
            }
        ));
    }

    #[test]
    fn a_group_wildcard_matches_the_whole_group() {
        assert!(type_matches("ticket.*", "ticket.created"));
        assert!(type_matches("ticket.*", "ticket.sla.breached"));
        assert!(!type_matches("ticket.*", "tickets.created"));
        assert!(!type_matches("ticket.*", "ticket"));
        assert!(!type_matches("ticket.created", "ticket.created.v2"));
    }

    #[test]
    fn an_owned_endpoint_sees_only_messages_for_its_owner() {
        let audience = v(&["user-1"]);
        let sub = |owner| Subscription {
            event_types: None,
            channels: None,
            owner,
        };
        let msg = |audience| Publication {
            event_type: "ticket.created",
            channels: None,
            audience,
        };
        assert!(matches(&sub(Some("user-1")), &msg(Some(&audience))));
        assert!(!matches(&sub(Some("user-2")), &msg(Some(&audience))));
        assert!(matches(&sub(Some("user-2")), &msg(None)), "no audience: everyone");
        assert!(
            matches(&sub(None), &msg(Some(&audience))),
            "an endpoint without owner sees all"
        );
    }
}
