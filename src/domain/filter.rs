//! Which endpoints receive which messages.

/// What an endpoint listens to. `None` means "everything".
pub struct Subscription<'a> {
    pub event_types: Option<&'a [String]>,
    pub channels: Option<&'a [String]>,
}

/// What a message is about.
pub struct Publication<'a> {
    pub event_type: &'a str,
    pub channels: Option<&'a [String]>,
}

/// An endpoint receives a message when it listens to its event type (or to all)
/// and, if it names channels, when the message carries one of them.
pub fn matches(sub: &Subscription<'_>, msg: &Publication<'_>) -> bool {
    let type_ok = match sub.event_types {
        None => true,
        Some([]) => true,
        Some(types) => types.iter().any(|t| t == msg.event_type),
    };
    let channel_ok = match sub.channels {
        None | Some([]) => true,
        Some(wanted) => msg.channels.is_some_and(|have| have.iter().any(|c| wanted.contains(c))),
    };
    type_ok && channel_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_filter_receives_everything() {
        let sub = Subscription {
            event_types: None,
            channels: None,
        };
        let msg = Publication {
            event_type: "ticket.created",
            channels: None,
        };
        assert!(matches(&sub, &msg));
    }

    #[test]
    fn event_type_filter_is_exact() {
        let types = v(&["ticket.created"]);
        let sub = Subscription {
            event_types: Some(&types),
            channels: None,
        };
        assert!(matches(
            &sub,
            &Publication {
                event_type: "ticket.created",
                channels: None
            }
        ));
        assert!(!matches(
            &sub,
            &Publication {
                event_type: "ticket.closed",
                channels: None
            }
        ));
    }

    #[test]
    fn channel_filter_needs_a_shared_channel() {
        let chans = v(&["ticket-42"]);
        let sub = Subscription {
            event_types: None,
            channels: Some(&chans),
        };
        let with = v(&["ticket-41", "ticket-42"]);
        let without = v(&["ticket-7"]);
        assert!(matches(
            &sub,
            &Publication {
                event_type: "a",
                channels: Some(&with)
            }
        ));
        assert!(!matches(
            &sub,
            &Publication {
                event_type: "a",
                channels: Some(&without)
            }
        ));
        assert!(!matches(
            &sub,
            &Publication {
                event_type: "a",
                channels: None
            }
        ));
    }
}
